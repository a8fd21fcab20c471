//! xtlock's own output (its one-line errors, the admin commands' reports, clap's help and
//! usage), through one writer that never panics. `println!` and `eprintln!` panic when a
//! write fails, and the release build aborts on a panic (SIGABRT, a core dump, 134).
//! xtlock ignores SIGPIPE (`signals::process_setup`), so a reader that went away shows
//! up here as EPIPE. As ripgrep and uutils do, BrokenPipe means "the reader is gone":
//! stop writing to that stream, quietly, and end with the status the command would have
//! had. Any other write error on stdout (a full disk) is an error of ours: `finish`
//! reports it once, as GNU's close_stdout does. The program's own bytes (its captured
//! stderr, a queued call's output) go through `pass_through`: a gone reader there is
//! what the program would have met bare, and the call ends as it would have.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

static STDOUT_GONE: AtomicBool = AtomicBool::new(false);
static STDERR_GONE: AtomicBool = AtomicBool::new(false);
/// The first write error on stdout other than EPIPE (an errno), else 0.
static STDOUT_ERROR: AtomicI32 = AtomicI32::new(0);

impl Stream {
    fn gone(self) -> &'static AtomicBool {
        match self {
            Stream::Stdout => &STDOUT_GONE,
            Stream::Stderr => &STDERR_GONE,
        }
    }
}

/// What a failed write means for the rest of the run.
#[derive(Debug, PartialEq, Eq)]
pub enum OnError {
    /// The reader is gone: write no more, say nothing, keep the status.
    Quiet,
    /// A real failure (ENOSPC, EIO): write no more, and on stdout report it at the end.
    Report,
}

/// Pure, for the table test.
pub fn on_error(kind: io::ErrorKind) -> OnError {
    match kind {
        io::ErrorKind::BrokenPipe => OnError::Quiet,
        _ => OnError::Report,
    }
}

/// Write all of `bytes` to `stream`, flushed; after a failure, nothing more goes to it.
pub fn write(stream: Stream, bytes: &[u8]) {
    if stream.gone().load(Ordering::Relaxed) {
        return;
    }
    if let Err(e) = write_to(stream, bytes) {
        stream.gone().store(true, Ordering::Relaxed);
        if stream == Stream::Stdout && on_error(e.kind()) == OnError::Report {
            let errno = e.raw_os_error().unwrap_or(libc::EIO);
            let _ = STDOUT_ERROR.compare_exchange(0, errno, Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}

/// All of `bytes`, flushed.
fn write_to(stream: Stream, bytes: &[u8]) -> io::Result<()> {
    match stream {
        Stream::Stdout => {
            let mut out = io::stdout().lock();
            out.write_all(bytes).and_then(|()| out.flush())
        }
        Stream::Stderr => io::stderr().lock().write_all(bytes),
    }
}

/// Set when the program's own bytes met a reader that is gone (`pass_through`).
static PASSED_TO_NO_READER: AtomicBool = AtomicBool::new(false);

/// Write the program's own bytes (its captured stderr, a queued call's output) to the
/// caller. A reader that is gone is remembered, not reported: bare, the program would
/// have met it itself (`passed_to_no_reader`).
pub fn pass_through(stream: Stream, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    if write_to(stream, bytes).is_err_and(|e| e.kind() == io::ErrorKind::BrokenPipe) {
        PASSED_TO_NO_READER.store(true, Ordering::Relaxed);
    }
}

/// Did the program's bytes meet a reader that is gone? Bare, the program would have
/// died there by SIGPIPE (unless the caller ignores it).
pub fn passed_to_no_reader() -> bool {
    PASSED_TO_NO_READER.load(Ordering::Relaxed)
}

/// At the end of a command of xtlock's own: a write error on stdout other than a gone
/// reader, as xtlock's own failure (the output is incomplete; the caller must know).
pub fn finish() -> Result<(), String> {
    match STDOUT_ERROR.load(Ordering::Relaxed) {
        0 => Ok(()),
        errno => Err(format!(
            "cannot write to standard output: {}",
            crate::text::errno_text(&io::Error::from_raw_os_error(errno))
        )),
    }
}

/// `println!` through `write`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::write(
            $crate::output::Stream::Stdout,
            format!("{}\n", format_args!($($arg)*)).as_bytes(),
        )
    };
}

/// `eprintln!` through `write`.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::output::write(
            $crate::output::Stream::Stderr,
            format!("{}\n", format_args!($($arg)*)).as_bytes(),
        )
    };
}

pub(crate) use errln;
pub(crate) use outln;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gone_reader_is_quiet_other_errors_are_reported() {
        use io::ErrorKind::*;
        let cases = [
            (BrokenPipe, OnError::Quiet),
            (StorageFull, OnError::Report),
            (PermissionDenied, OnError::Report),
            (Other, OnError::Report),
        ];
        for (kind, want) in cases {
            assert_eq!(on_error(kind), want, "{kind:?}");
        }
    }
}
