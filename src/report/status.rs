//! How a call ends, in one table (as uutils `timeout`'s status.rs): the program's own
//! status passes through; xtlock's own failures each have one code and one message.

use std::fmt;

/// The program's outcome, as the caller must see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Exit with this status (the program's own, or 128+n when it died by a signal
    /// that xtlock did not receive).
    Status(u8),
    /// The program died by this signal, which xtlock received too (a Ctrl-C, a kill of
    /// the process group): die by it as well, so that a shell loop stops ("wait and
    /// cooperative exit").
    Signal(i32),
}

/// A failure of xtlock's own, never the program's: printed as `xtlock: MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Usage, configuration, a nesting loop, an admin command that failed: 125.
    Own(String),
    /// The lock could not be had (timeout, a bad lock file): 4, iptables' own "resource
    /// problem", which callers already treat as "try again later".
    Lock(String),
    /// The program exists but cannot be run: 126.
    CannotRun(String),
    /// No program of that name: 127.
    NotFound(String),
}

/// xtlock's own failure, and a usage error (clap's, in `cli`).
pub const OWN_FAILURE: u8 = 125;

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Own(_) => OWN_FAILURE,
            Failure::Lock(_) => 4,
            Failure::CannotRun(_) => 126,
            Failure::NotFound(_) => 127,
        }
    }

    /// The program could not be started: not there (127), or not runnable (126).
    pub fn cannot_run(path: &std::path::Path, e: &std::io::Error) -> Failure {
        let message = format!(
            "cannot run {}: {}",
            path.display(),
            crate::text::errno_text(e)
        );
        match e.raw_os_error() {
            Some(libc::ENOENT) => Failure::NotFound(message),
            _ => Failure::CannotRun(message),
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Failure::Own(m) | Failure::Lock(m) | Failure::CannotRun(m) | Failure::NotFound(m) => m,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// The shell's status for a wait status: the exit code, or 128+n for death by signal n.
pub fn shell_status(wait_status: i32) -> u8 {
    if libc::WIFEXITED(wait_status) {
        libc::WEXITSTATUS(wait_status) as u8
    } else if libc::WIFSIGNALED(wait_status) {
        (128 + libc::WTERMSIG(wait_status)) as u8
    } else {
        125
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(Failure::Own("x".into()).exit_code(), 125);
        assert_eq!(Failure::Lock("x".into()).exit_code(), 4);
        assert_eq!(Failure::CannotRun("x".into()).exit_code(), 126);
        assert_eq!(Failure::NotFound("x".into()).exit_code(), 127);
    }

    #[test]
    fn wait_statuses() {
        assert_eq!(shell_status(0), 0);
        assert_eq!(shell_status(4 << 8), 4);
        assert_eq!(shell_status(255 << 8), 255);
        assert_eq!(shell_status(libc::SIGKILL), 137);
        assert_eq!(
            shell_status(libc::SIGINT | 0x80),
            130,
            "with a core dump flag"
        );
    }
}
