//! Running the real program once: same argv[0], same arguments, stdout streamed straight
//! through, stderr captured so xtlock can decide whether to retry and log it, and stdin
//! either inherited or replayed from memory (for `*-restore`).

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct Program<'a> {
    pub path: &'a Path,
    pub arg0: &'a OsStr,
    pub args: &'a [OsString],
    pub env: &'a [(&'static str, String)],
}

pub enum Input<'a> {
    Inherit,
    Replay(&'a [u8]),
}

pub struct Attempt {
    pub status: ExitStatus,
    pub stderr: Vec<u8>,
    pub elapsed: Duration,
}

impl Attempt {
    /// The status a shell would report: the exit code, or 128+n for death by signal n.
    pub fn exit_code(&self) -> u8 {
        exit_code(self.status)
    }
}

pub fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => (128 + signal) as u8,
        (None, None) => 125,
    }
}

/// Spawn (never exec: we keep the lock, may retry, and must log) and wait.
pub fn run_once(program: &Program, input: &Input) -> io::Result<Attempt> {
    let start = Instant::now();
    let mut command = Command::new(program.path);
    command
        .arg0(program.arg0)
        .args(program.args)
        .envs(program.env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .stdin(match input {
            Input::Inherit => Stdio::inherit(),
            Input::Replay(_) => Stdio::piped(),
        });
    let mut child = command.spawn()?;
    crate::signals::child_started(child.id());
    let mut stderr = Vec::new();
    let stdin = child.stdin.take();
    let mut child_stderr = child.stderr.take();
    std::thread::scope(|scope| {
        if let (Some(mut pipe), Input::Replay(bytes)) = (stdin, input) {
            // A writer thread: the child may fill its stderr pipe before reading all of
            // stdin. A child that stops reading early (EPIPE) is its own business.
            scope.spawn(move || {
                let _ = pipe.write_all(bytes);
            });
        }
        if let Some(pipe) = child_stderr.as_mut() {
            let _ = pipe.read_to_end(&mut stderr);
        }
    });
    wait_without_reaping(child.id());
    crate::signals::child_exited();
    let status = child.wait()?;
    Ok(Attempt {
        status,
        stderr,
        elapsed: start.elapsed(),
    })
}

/// Block until the child has exited, leaving it a zombie so its pid stays reserved.
fn wait_without_reaping(pid: u32) {
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
