//! One run of the real program, from spawn to reaping: same argv[0], same arguments,
//! the caller's environment, file descriptors and signal dispositions. The call ends
//! when the program exits, not when its pipes close: a background process it started
//! may keep stderr open for as long as it likes, and must not keep the lock.
//!
//! posix_spawn by hand rather than std's Command: Command resets the signal mask and
//! SIGPIPE for the child, and the program must get the caller's.

use std::ffi::{CString, OsStr, OsString};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// How much of stderr is kept for the classifier and the log; the rest of a longer
/// stderr goes straight to the caller.
pub const STDERR_KEPT: usize = 64 << 10;

pub struct Program<'a> {
    pub path: &'a Path,
    pub arg0: &'a OsStr,
    pub args: &'a [OsString],
    /// Variables set (or replaced) for the program.
    pub env: &'a [(&'static str, String)],
}

pub enum Input<'a> {
    /// The caller's stdin, as it is.
    Inherit,
    /// These bytes, written to a pipe.
    Replay(&'a [u8]),
}

pub enum Stderr {
    /// The caller's stderr, as it is (a call that is never retried).
    Inherit,
    /// Captured for the classifier; the caller gets it after the attempt.
    Capture,
}

pub struct Attempt {
    /// The wait status.
    pub status: i32,
    /// The first STDERR_KEPT bytes of stderr (empty when inherited).
    pub stderr: Vec<u8>,
    /// stderr was longer than STDERR_KEPT and has already reached the caller whole.
    pub stderr_passed: bool,
    pub elapsed: Duration,
}

impl Attempt {
    pub fn exit_code(&self) -> Option<i32> {
        libc::WIFEXITED(self.status).then(|| libc::WEXITSTATUS(self.status))
    }

    pub fn signal(&self) -> Option<i32> {
        libc::WIFSIGNALED(self.status).then(|| libc::WTERMSIG(self.status))
    }

    pub fn shell_status(&self) -> u8 {
        crate::status::shell_status(self.status)
    }
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn set_nonblocking(fd: RawFd) {
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

/// argv and envp for posix_spawn: the caller's environment with `extra` set.
fn spawn_vectors(program: &Program) -> io::Result<(Vec<CString>, Vec<CString>)> {
    let mut argv = vec![cstring(program.arg0.as_bytes())?];
    for arg in program.args {
        argv.push(cstring(arg.as_bytes())?);
    }
    let mut envp = Vec::new();
    for (key, value) in std::env::vars_os() {
        if program.env.iter().any(|(k, _)| OsStr::new(k) == key) {
            continue;
        }
        let mut entry = key.into_vec_bytes();
        entry.push(b'=');
        entry.extend_from_slice(value.as_bytes());
        envp.push(cstring(&entry)?);
    }
    for (key, value) in program.env {
        envp.push(cstring(format!("{key}={value}").as_bytes())?);
    }
    Ok((argv, envp))
}

trait IntoVecBytes {
    fn into_vec_bytes(self) -> Vec<u8>;
}

impl IntoVecBytes for OsString {
    fn into_vec_bytes(self) -> Vec<u8> {
        std::os::unix::ffi::OsStringExt::into_vec(self)
    }
}

fn null_terminated(strings: &[CString]) -> Vec<*mut libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr() as *mut libc::c_char)
        .chain(std::iter::once(std::ptr::null_mut()))
        .collect()
}

/// Spawn the program with `stdin_fd`/`stderr_fd` in place of 0 and 2 (None: inherited).
fn spawn(program: &Program, stdin_fd: Option<RawFd>, stderr_fd: Option<RawFd>) -> io::Result<i32> {
    let path = cstring(program.path.as_os_str().as_bytes())?;
    let (argv, envp) = spawn_vectors(program)?;
    let (argv, envp) = (null_terminated(&argv), null_terminated(&envp));
    unsafe {
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        libc::posix_spawn_file_actions_init(&mut actions);
        libc::posix_spawnattr_init(&mut attr);
        if let Some(fd) = stdin_fd {
            libc::posix_spawn_file_actions_adddup2(&mut actions, fd, 0);
        }
        if let Some(fd) = stderr_fd {
            libc::posix_spawn_file_actions_adddup2(&mut actions, fd, 2);
        }
        // The caller's mask (xtlock blocks nothing) and the caller's dispositions.
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_SETMASK, std::ptr::null(), &mut mask);
        libc::posix_spawnattr_setsigmask(&mut attr, &mask);
        let defaults = crate::signals::child_defaults();
        libc::posix_spawnattr_setsigdefault(&mut attr, &defaults);
        libc::posix_spawnattr_setflags(
            &mut attr,
            (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short,
        );
        let mut pid = 0;
        let rc = libc::posix_spawn(
            &mut pid,
            path.as_ptr(),
            &actions,
            &attr,
            argv.as_ptr(),
            envp.as_ptr(),
        );
        libc::posix_spawn_file_actions_destroy(&mut actions);
        libc::posix_spawnattr_destroy(&mut attr);
        match rc {
            0 => Ok(pid),
            errno => Err(io::Error::from_raw_os_error(errno)),
        }
    }
}

/// Replace this process with the program (a read: nothing to lock, retry or log).
/// Returns only if the exec failed.
pub fn exec(program: &Program) -> io::Error {
    let (path, vectors) = match (
        cstring(program.path.as_os_str().as_bytes()),
        spawn_vectors(program),
    ) {
        (Ok(path), Ok(vectors)) => (path, vectors),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let (argv, envp) = (null_terminated(&vectors.0), null_terminated(&vectors.1));
    crate::signals::restore_for_exec();
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr().cast(), envp.as_ptr().cast()) };
    io::Error::last_os_error()
}

/// An fd that becomes readable when the child exits: a pidfd (Linux 5.3), or else a
/// pipe written by a thread that waits for the child without reaping it.
fn exit_notifier(pid: i32) -> io::Result<OwnedFd> {
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd >= 0 {
        return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
    }
    let (read, write) = pipe()?;
    std::thread::spawn(move || {
        wait_without_reaping(pid);
        drop(write);
    });
    Ok(read)
}

fn wait_without_reaping(pid: i32) {
    loop {
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

fn reap(pid: i32) -> i32 {
    let mut status = 0;
    loop {
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return status;
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            // Cannot happen with SIGCHLD at its default; report a plain failure.
            return 125 << 8;
        }
    }
}

/// What is read from the program's stderr: a bounded prefix, then pass-through.
struct StderrSink {
    kept: Vec<u8>,
    passed: bool,
}

impl StderrSink {
    fn take(&mut self, bytes: &[u8]) {
        if !self.passed && self.kept.len() + bytes.len() <= STDERR_KEPT {
            self.kept.extend_from_slice(bytes);
            return;
        }
        let mut caller = io::stderr().lock();
        if !self.passed {
            self.passed = true;
            let _ = caller.write_all(&self.kept);
        }
        let _ = caller.write_all(bytes);
    }
}

fn read_some(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Spawn and wait for the program's exit; stderr and stdin are served meanwhile.
pub fn run_once(program: &Program, input: &Input, stderr: &Stderr) -> io::Result<Attempt> {
    let start = Instant::now();
    let stderr_pipe = match stderr {
        Stderr::Capture => Some(pipe()?),
        Stderr::Inherit => None,
    };
    let stdin_pipe = match input {
        Input::Replay(_) => Some(pipe()?),
        Input::Inherit => None,
    };
    let pid = spawn(
        program,
        stdin_pipe.as_ref().map(|(read, _)| read.as_raw_fd()),
        stderr_pipe.as_ref().map(|(_, write)| write.as_raw_fd()),
    )?;
    crate::signals::child_started(pid);
    let stderr_read = stderr_pipe.map(|(read, _write)| read);
    let stdin_write = stdin_pipe.map(|(_read, write)| write);
    let exited = exit_notifier(pid);
    let mut sink = StderrSink {
        kept: Vec::new(),
        passed: false,
    };
    match exited {
        Ok(exited) => serve(&exited, stderr_read, stdin_write, input, &mut sink),
        Err(_) => wait_without_reaping(pid),
    }
    crate::signals::child_exited();
    let status = reap(pid);
    Ok(Attempt {
        status,
        stderr: sink.kept,
        stderr_passed: sink.passed,
        elapsed: start.elapsed(),
    })
}

/// Until the program exits: read its stderr, feed its stdin. Then take what is already
/// in the stderr pipe without waiting for writers that outlive it.
fn serve(
    exited: &OwnedFd,
    mut stderr: Option<OwnedFd>,
    mut stdin: Option<OwnedFd>,
    input: &Input,
    sink: &mut StderrSink,
) {
    let mut to_write = match input {
        Input::Replay(bytes) => *bytes,
        Input::Inherit => &[],
    };
    if let Some(fd) = &stderr {
        set_nonblocking(fd.as_raw_fd());
    }
    if let Some(fd) = &stdin {
        set_nonblocking(fd.as_raw_fd());
    }
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if to_write.is_empty() {
            stdin = None; // EOF for the program
        }
        let mut fds = vec![libc::pollfd {
            fd: exited.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        for (fd, events) in [(&stderr, libc::POLLIN), (&stdin, libc::POLLOUT)] {
            if let Some(fd) = fd {
                fds.push(libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events,
                    revents: 0,
                });
            }
        }
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if rc < 0 {
            continue; // EINTR: a forwarded signal
        }
        let ready = |fd: &Option<OwnedFd>| {
            fd.as_ref()
                .is_some_and(|fd| fds.iter().any(|p| p.fd == fd.as_raw_fd() && p.revents != 0))
        };
        if ready(&stderr) {
            match read_some(stderr.as_ref().map_or(-1, |f| f.as_raw_fd()), &mut buf) {
                Ok(0) => stderr = None,
                Ok(n) => sink.take(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => stderr = None,
            }
        }
        if ready(&stdin) {
            let fd = stdin.as_ref().map_or(-1, |f| f.as_raw_fd());
            let n = unsafe { libc::write(fd, to_write.as_ptr().cast(), to_write.len()) };
            if n >= 0 {
                to_write = &to_write[n as usize..];
            } else if !matches!(
                io::Error::last_os_error().kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) {
                to_write = &[]; // EPIPE: the program stopped reading
            }
        }
        if fds[0].revents != 0 {
            break;
        }
    }
    // The program has exited: what it wrote is in the pipe now. Take that much (a
    // bounded amount: a writer that outlives it may go on), never wait for more.
    if let Some(fd) = stderr {
        let mut budget = 16usize << 20;
        while budget > 0 {
            match read_some(fd.as_raw_fd(), &mut buf) {
                Ok(n) if n > 0 => {
                    sink.take(&buf[..n]);
                    budget = budget.saturating_sub(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => break,
            }
        }
    }
}
