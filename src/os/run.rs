//! One run of the real program, from spawn to reaping: same argv[0], same arguments,
//! the caller's environment, file descriptors and signal dispositions. The call ends
//! when the program exits, not when its pipes close: a background process it started
//! may keep stderr open for as long as it likes, and must not keep the lock.
//!
//! posix_spawn by hand rather than std's Command: Command resets the signal mask and
//! SIGPIPE for the child, and the program must get the caller's.

use std::ffi::{CString, OsStr, OsString};
use std::io;
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
    /// Our lock's descriptor, left open in the program so that the lock lives as long
    /// as the program does, even if xtlock is killed (flock(1) does the same).
    pub lock_fd: Option<RawFd>,
}

pub enum Input<'a> {
    /// The caller's stdin, as it is.
    Inherit,
    /// These bytes, written to a pipe.
    Replay(&'a [u8]),
    /// What was read from the caller's stdin while we waited for the lock, then (unless
    /// that was all) the rest of it as it comes, through a pipe.
    Relay { prefix: &'a [u8], then_stdin: bool },
}

/// Why there is no attempt to judge: xtlock's own failure, never the program's status.
#[derive(Debug)]
pub enum RunError {
    /// The program could not be started.
    Spawn(io::Error),
    /// It was started but its status could not be had.
    Wait(io::Error),
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

/// Both ends close-on-exec: the program gets one only through a dup2 file action.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = std::io::pipe()?;
    Ok((read.into(), write.into()))
}

/// Only on pipes xtlock made itself, never on a descriptor it shares with its caller.
fn set_nonblocking(fd: RawFd) {
    // SAFETY: `fd` is an open pipe end we own; F_GETFL/F_SETFL touch only its flags.
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
    // posix_spawn can give the program a default disposition, never an ignored one; a
    // caller that ignores SIGCHLD (which xtlock cannot, or the kernel would reap the
    // program before we learn its status) gets it ignored through fork and exec.
    if crate::signals::was_ignored(libc::SIGCHLD) {
        return fork_exec(&path, &argv, &envp, stdin_fd, stderr_fd, program.lock_fd);
    }
    // SAFETY: the attribute and file-action objects are initialised before use and
    // destroyed after; path, argv and envp are NUL-terminated and outlive the call.
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
        // dup2 onto itself clears close-on-exec (POSIX.1-2024; glibc 2.29, bug 23640).
        if let Some(fd) = program.lock_fd {
            libc::posix_spawn_file_actions_adddup2(&mut actions, fd, fd);
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

/// fork, then in the child only async-signal-safe calls (the vectors are built before
/// the fork): the dup2s, SIGCHLD ignored as the caller had it, the dispositions
/// `restore_for_exec` would set, execve. An exec failure's errno comes back through a
/// close-on-exec pipe, so it reads as posix_spawn's would.
fn fork_exec(
    path: &CString,
    argv: &[*mut libc::c_char],
    envp: &[*mut libc::c_char],
    stdin_fd: Option<RawFd>,
    stderr_fd: Option<RawFd>,
    lock_fd: Option<RawFd>,
) -> io::Result<i32> {
    let (report_read, report_write) = pipe()?;
    let defaults = crate::signals::child_defaults();
    // SAFETY: the child calls only async-signal-safe functions on memory prepared
    // before the fork, and leaves by execve or _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: as above; every pointer is valid in the child's copy of our memory.
        unsafe {
            for (fd, target) in [(stdin_fd, 0), (stderr_fd, 2)] {
                if let Some(fd) = fd {
                    libc::dup2(fd, target);
                }
            }
            if let Some(fd) = lock_fd {
                libc::fcntl(fd, libc::F_SETFD, 0);
            }
            for signal in 1..libc::SIGRTMIN() {
                if libc::sigismember(&defaults, signal) == 1 {
                    libc::signal(signal, libc::SIG_DFL);
                }
            }
            libc::signal(libc::SIGCHLD, libc::SIG_IGN);
            libc::execve(path.as_ptr(), argv.as_ptr().cast(), envp.as_ptr().cast());
            let errno = *libc::__errno_location();
            libc::write(
                report_write.as_raw_fd(),
                (&errno as *const i32).cast(),
                std::mem::size_of::<i32>(),
            );
            libc::_exit(127);
        }
    }
    drop(report_write);
    let mut errno = [0u8; 4];
    match read_some(report_read.as_raw_fd(), &mut errno) {
        Ok(4) => {
            let mut status = 0;
            // SAFETY: reaping our own child, which has exited or is about to.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno)))
        }
        _ => Ok(pid),
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
    // SAFETY: path, argv and envp are NUL-terminated and outlive the call (it returns
    // only on failure).
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr().cast(), envp.as_ptr().cast()) };
    io::Error::last_os_error()
}

/// An fd that becomes readable when the child exits: a pidfd (Linux 5.3), or else a
/// pipe written by a thread that waits for the child without reaping it.
fn exit_notifier(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd >= 0 {
        // SAFETY: a descriptor pidfd_open just returned, owned by nothing else.
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
        // SAFETY: siginfo_t is plain data; all-zero is valid, and waitid fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid out-pointer; WNOWAIT leaves the child unreaped.
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

fn reap(pid: i32) -> io::Result<i32> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer; `pid` is our unreaped child.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return Ok(status);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
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
        use crate::output::{Stream, pass_through};
        if !self.passed {
            self.passed = true;
            pass_through(Stream::Stderr, &self.kept);
        }
        pass_through(Stream::Stderr, bytes);
    }
}

fn read_some(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Spawn and wait for the program's exit; stderr and stdin are served meanwhile.
pub fn run_once(program: &Program, input: &Input, stderr: &Stderr) -> Result<Attempt, RunError> {
    let start = Instant::now();
    let stderr_pipe = match stderr {
        Stderr::Capture => Some(pipe().map_err(RunError::Spawn)?),
        Stderr::Inherit => None,
    };
    let stdin_pipe = match input {
        Input::Replay(_) | Input::Relay { .. } => Some(pipe().map_err(RunError::Spawn)?),
        Input::Inherit => None,
    };
    let pid = spawn(
        program,
        stdin_pipe.as_ref().map(|(read, _)| read.as_raw_fd()),
        stderr_pipe.as_ref().map(|(_, write)| write.as_raw_fd()),
    )
    .map_err(RunError::Spawn)?;
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
    let status = reap(pid).map_err(RunError::Wait)?;
    Ok(Attempt {
        status,
        stderr: sink.kept,
        stderr_passed: sink.passed,
        elapsed: start.elapsed(),
    })
}

/// What the program's stdin pipe is fed: bytes we hold, then maybe the caller's stdin.
struct Feed<'a> {
    held: &'a [u8],
    /// A chunk read from the caller's stdin, and how much of it was written.
    chunk: Vec<u8>,
    chunk_at: usize,
    from_caller: bool,
}

impl Feed<'_> {
    fn pending(&self) -> &[u8] {
        match self.held.is_empty() {
            false => self.held,
            true => &self.chunk[self.chunk_at..],
        }
    }

    fn consume(&mut self, n: usize) {
        match self.held.is_empty() {
            false => self.held = &self.held[n..],
            true => self.chunk_at += n,
        }
    }

    fn done(&self) -> bool {
        self.pending().is_empty() && !self.from_caller
    }

    /// The caller's stdin is readable: take a chunk (0: its end).
    fn refill(&mut self) {
        self.chunk.resize(64 << 10, 0);
        self.chunk_at = 0;
        match read_some(0, &mut self.chunk) {
            Ok(n) => {
                self.chunk.truncate(n);
                self.from_caller = n > 0;
            }
            // Another reader of a shared, non-blocking stdin took what poll saw.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) =>
            {
                self.chunk.clear()
            }
            Err(_) => {
                self.chunk.clear();
                self.from_caller = false;
            }
        }
    }
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
    let mut feed = match input {
        Input::Replay(bytes) => Feed {
            held: bytes,
            chunk: Vec::new(),
            chunk_at: 0,
            from_caller: false,
        },
        Input::Relay { prefix, then_stdin } => Feed {
            held: prefix,
            chunk: Vec::new(),
            chunk_at: 0,
            from_caller: *then_stdin,
        },
        Input::Inherit => Feed {
            held: &[],
            chunk: Vec::new(),
            chunk_at: 0,
            from_caller: false,
        },
    };
    if let Some(fd) = &stderr {
        set_nonblocking(fd.as_raw_fd());
    }
    if let Some(fd) = &stdin {
        set_nonblocking(fd.as_raw_fd());
    }
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if feed.done() {
            stdin = None; // EOF for the program
        }
        let mut fds = vec![libc::pollfd {
            fd: exited.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // The program's stdin is polled for room while we hold bytes for it, the
        // caller's for more input once we hold none.
        let caller_stdin = stdin.is_some() && feed.pending().is_empty() && feed.from_caller;
        let program_stdin = stdin.as_ref().filter(|_| !feed.pending().is_empty());
        for (fd, events) in [
            (stderr.as_ref().map(|f| f.as_raw_fd()), libc::POLLIN),
            (program_stdin.map(|f| f.as_raw_fd()), libc::POLLOUT),
            (caller_stdin.then_some(0), libc::POLLIN),
        ] {
            if let Some(fd) = fd {
                fds.push(libc::pollfd {
                    fd,
                    events,
                    revents: 0,
                });
            }
        }
        // SAFETY: `fds` is a valid array of pollfd for the duration of the call.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if rc < 0 {
            continue; // EINTR: a forwarded signal
        }
        let ready = |fd: RawFd| fds.iter().any(|p| p.fd == fd && p.revents != 0);
        if let Some(fd) = stderr.as_ref().map(|f| f.as_raw_fd())
            && ready(fd)
        {
            match read_some(fd, &mut buf) {
                Ok(0) => stderr = None,
                Ok(n) => sink.take(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => stderr = None,
            }
        }
        if let Some(fd) = program_stdin.map(|f| f.as_raw_fd())
            && ready(fd)
        {
            let pending = feed.pending();
            // SAFETY: `pending` is a valid slice for the duration of the call.
            let n = unsafe { libc::write(fd, pending.as_ptr().cast(), pending.len()) };
            if n >= 0 {
                feed.consume(n as usize);
            } else if !matches!(
                io::Error::last_os_error().kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) {
                stdin = None; // EPIPE: the program stopped reading
                feed = Feed {
                    held: &[],
                    chunk: Vec::new(),
                    chunk_at: 0,
                    from_caller: false,
                };
            }
        }
        if caller_stdin && ready(0) {
            feed.refill();
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
