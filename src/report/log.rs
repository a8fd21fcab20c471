//! Where what happened is written: journald's native socket (structured fields, so
//! `journalctl -t xtlock XTLOCK_EVENT=gave-up` works), else syslog (`/dev/log`, ident
//! `xtlock`), and an optional log file, one logfmt line per event.
//!
//! Logging must never stop or slow a firewall call: every write is non-blocking and
//! bounded, a target that is not what it should be (a FIFO instead of a file, a socket
//! whose reader stopped) is skipped, and callers log only after the lock is released.

use crate::text::quote_value;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

pub const DEFAULT_SYSLOG_SOCKET: &str = "/dev/log";
pub const DEFAULT_JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
/// The most of one value (stderr, arguments) an event carries.
pub const MAX_VALUE: usize = 4096;
/// rsyslog's default maxMessageSize; journald takes this much on /dev/log too.
const MAX_SYSLOG_DATAGRAM: usize = 8192;
/// Well under journald's datagram limit (its socket buffer), without a memfd.
const MAX_JOURNAL_DATAGRAM: usize = 64 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }

    /// syslog(3)'s level number, which journald's PRIORITY field uses too.
    pub fn priority(self) -> u8 {
        match self {
            Severity::Error => 3,
            Severity::Warning => 4,
            Severity::Info => 6,
        }
    }
}

/// Declares `EventKind` from one table, so that `ALL` lists every kind by construction.
macro_rules! event_kinds {
    ($($(#[$doc:meta])* $kind:ident => $name:literal, $severity:ident, $meaning:literal;)*) => {
        /// Every event xtlock logs: its name in the log (`event=`, `XTLOCK_EVENT`), its
        /// severity, and what it means (`xtlock stats` shows it).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventKind {
            $($(#[$doc])* $kind,)*
        }

        impl EventKind {
            pub const ALL: &[EventKind] = &[$(EventKind::$kind,)*];

            /// The name in the log, which `journalctl XTLOCK_EVENT=NAME` filters on.
            pub fn name(self) -> &'static str {
                match self {
                    $(EventKind::$kind => $name,)*
                }
            }

            pub fn severity(self) -> Severity {
                match self {
                    $(EventKind::$kind => Severity::$severity,)*
                }
            }

            /// One line on what it means.
            pub fn meaning(self) -> &'static str {
                match self {
                    $(EventKind::$kind => $meaning,)*
                }
            }
        }
    };
}

// A healthy start (docker's probes, fail2ban's chains that exist) logs nothing at notice
// or above: answers and refusals are info (README, Log).
event_kinds! {
    /// Verbose only: every call, with its status, attempts and times.
    Call => "call", Info, "every call (verbose only)";
    /// Verbose only: `-C` said "absent" (exit 1), an answer, not a failure.
    Answer => "answer", Info, "-C said absent (verbose only)";
    /// The program refused for good (any other non-zero status).
    Failed => "failed", Info, "the program's own error (exit 1-3)";
    Retry => "retry", Warning, "a transient failure, run again";
    /// Still transient after the last attempt, the timeout, or a signal.
    GaveUp => "gave-up", Error, "still transient after the retries";
    /// Looked transient, but a replay could apply twice.
    NotRetried => "not-retried", Warning, "transient, but a replay was unsafe";
    LockFailed => "lock-failed", Error, "xtlock's lock not had in time";
    Killed => "killed", Warning, "the program died by a signal";
    /// The caller may not open the lock file: the program ran as bare.
    Unlocked => "unlocked", Warning, "caller may not open the lock: ran bare";
    /// xtlock's own failure: 125, 126 or 127.
    XtlockFailed => "xtlock-failed", Error, "xtlock's own failure (125-127)";
    SlowWait => "slow-wait", Info, "waited over 1 s for the lock";
    /// A flush (`-F`/`-X` without a chain, a full restore) took chains or rules that
    /// were there before: who, and what is gone.
    Flushed => "flushed", Warning, "a flush took chains or rules away";
    /// Queued commands committed together by one holder (`commands`: how many).
    Batch => "batch", Info, "queued commands committed together";
    /// A batch committed but printed more than its marks: nobody's to pass on.
    BatchOutput => "batch-output", Warning, "a committed batch printed a warning";
    /// A batch may or may not have committed: its callers were told.
    BatchUnknown => "batch-unknown", Error, "a batch's commit could not be told";
    /// A config file or variable was ignored.
    Config => "config", Warning, "a config file or variable was ignored";
}

impl EventKind {
    pub fn from_name(name: &str) -> Option<EventKind> {
        EventKind::ALL.iter().copied().find(|k| k.name() == name)
    }
}

/// One event: its kind and fields, rendered as logfmt for syslog and files, and as
/// `XTLOCK_<KEY>` fields for the journal.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventKind,
    pub fields: Vec<(&'static str, Vec<u8>)>,
}

impl Event {
    pub fn new(kind: EventKind) -> Event {
        Event {
            kind,
            fields: Vec::new(),
        }
    }

    pub fn severity(&self) -> Severity {
        self.kind.severity()
    }

    /// Add a field; a value longer than MAX_VALUE is cut and marked.
    pub fn field(mut self, key: &'static str, value: impl AsRef<[u8]>) -> Event {
        let value = value.as_ref();
        let value = match value.len() > MAX_VALUE {
            true => [&value[..MAX_VALUE], b"...(truncated)"].concat(),
            false => value.to_vec(),
        };
        self.fields.push((key, value));
        self
    }

    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_slice())
    }

    /// `event=NAME key=value ...`.
    pub fn text(&self) -> String {
        let mut line = format!("event={}", self.kind.name());
        for (key, value) in &self.fields {
            line.push(' ');
            line.push_str(key);
            line.push('=');
            line.push_str(&quote_value(value));
        }
        line
    }

    /// journald's native protocol (systemd's "Native Journal Protocol" document):
    /// `KEY=value\n`, or for a value with a newline `KEY\n`, its length as 64-bit little
    /// endian, the bytes, `\n`.
    pub fn journal_datagram(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut put = |key: &str, value: &[u8]| {
            out.extend_from_slice(key.as_bytes());
            if value.contains(&b'\n') {
                out.push(b'\n');
                out.extend_from_slice(&(value.len() as u64).to_le_bytes());
            } else {
                out.push(b'=');
            }
            out.extend_from_slice(value);
            out.push(b'\n');
        };
        put("MESSAGE", self.text().as_bytes());
        put(
            "PRIORITY",
            self.severity().priority().to_string().as_bytes(),
        );
        put("SYSLOG_IDENTIFIER", crate::text::OWN_NAME.as_bytes());
        put("SYSLOG_FACILITY", b"3");
        put("XTLOCK_EVENT", self.kind.name().as_bytes());
        for (key, value) in &self.fields {
            put(&format!("XTLOCK_{}", key.to_ascii_uppercase()), value);
        }
        out
    }
}

pub struct Logger {
    journal_socket: Option<PathBuf>,
    syslog_socket: Option<PathBuf>,
    file: Option<PathBuf>,
}

impl Logger {
    pub fn new(
        journal_socket: Option<PathBuf>,
        syslog_socket: Option<PathBuf>,
        file: Option<PathBuf>,
    ) -> Logger {
        Logger {
            journal_socket,
            syslog_socket,
            file,
        }
    }

    /// Write the event everywhere it goes; never blocks, never fails.
    pub fn log(&self, event: &Event) {
        let to_journal = self.journal_socket.as_deref().is_some_and(|socket| {
            send(socket, &cut(event.journal_datagram(), MAX_JOURNAL_DATAGRAM))
        });
        if !to_journal && let Some(socket) = &self.syslog_socket {
            send(socket, &syslog_datagram(event));
        }
        if let Some(path) = &self.file {
            append_line(path, event);
        }
    }
}

fn cut(mut bytes: Vec<u8>, max: usize) -> Vec<u8> {
    bytes.truncate(max);
    bytes
}

/// One datagram, without waiting: a receiver that stopped reading loses it.
fn send(socket: &Path, datagram: &[u8]) -> bool {
    let Ok(sender) = UnixDatagram::unbound() else {
        return false;
    };
    let _ = sender.set_nonblocking(true);
    sender.send_to(datagram, socket).is_ok()
}

/// RFC 3164 as glibc's syslog(3) writes it to /dev/log: `<PRI>Mmm dd hh:mm:ss
/// xtlock[PID]: MESSAGE`, facility daemon.
fn syslog_datagram(event: &Event) -> Vec<u8> {
    let pri = 3 * 8 + event.severity().priority();
    let mut datagram = format!(
        "<{pri}>{} {}[{}]: {}",
        local_timestamp(),
        crate::text::OWN_NAME,
        std::process::id(),
        event.text()
    )
    .into_bytes();
    datagram.truncate(MAX_SYSLOG_DATAGRAM);
    datagram
}

fn local_timestamp() -> String {
    // SAFETY: `tm` is plain data filled by localtime_r (the reentrant form); strftime
    // writes at most `buf.len()` bytes into `buf` and returns how many.
    unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&now, &mut tm);
        let mut buf = [0u8; 32];
        let n = libc::strftime(
            buf.as_mut_ptr().cast(),
            buf.len(),
            c"%b %e %H:%M:%S".as_ptr(),
            &tm,
        );
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

/// One line, appended with one write (O_APPEND keeps lines of concurrent calls whole),
/// to a regular file only: O_NONBLOCK lets a FIFO planted there fail to open instead
/// of hanging the call, and whatever else opens is checked and skipped.
fn append_line(path: &Path, event: &Event) {
    let now = humantime::format_rfc3339_millis(std::time::SystemTime::now());
    let line = format!(
        "{now} xtlock[{}]: {}: {}\n",
        std::process::id(),
        event.severity().name(),
        event.text()
    );
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let Ok(mut file) = file else { return };
    if file.metadata().is_ok_and(|m| m.is_file() && m.nlink() > 0) {
        let _ = file.write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_one_name_that_round_trips() {
        let mut names = std::collections::HashSet::new();
        for &kind in EventKind::ALL {
            assert!(names.insert(kind.name()), "{kind:?}: name used twice");
            assert_eq!(EventKind::from_name(kind.name()), Some(kind));
            assert!(!kind.meaning().is_empty(), "{kind:?}");
        }
        assert_eq!(EventKind::from_name("no-such-event"), None);
        // What callers and README rely on (a healthy start logs nothing at notice).
        use EventKind::*;
        let severities = [
            (Answer, Severity::Info),
            (Failed, Severity::Info),
            (Retry, Severity::Warning),
            (GaveUp, Severity::Error),
            (LockFailed, Severity::Error),
            (XtlockFailed, Severity::Error),
        ];
        for (kind, severity) in severities {
            assert_eq!(kind.severity(), severity, "{kind:?}");
        }
    }

    #[test]
    fn long_values_are_cut() {
        let event = Event::new(EventKind::Failed).field("stderr", vec![b'a'; MAX_VALUE * 3]);
        let value = event.get("stderr").unwrap();
        assert_eq!(value.len(), MAX_VALUE + b"...(truncated)".len());
        assert!(value.ends_with(b"...(truncated)"));
    }

    #[test]
    fn journal_fields() {
        let event = Event::new(EventKind::Retry)
            .field("prog", "iptables")
            .field("stderr", "line one\nline two\n");
        let datagram = event.journal_datagram();
        let text = String::from_utf8_lossy(&datagram);
        assert!(text.contains("PRIORITY=4\n"), "{text}");
        assert!(text.contains("SYSLOG_IDENTIFIER=xtlock\n"));
        assert!(text.contains("XTLOCK_EVENT=retry\n"));
        assert!(text.contains("XTLOCK_PROG=iptables\n"));
        let binary = [
            b"XTLOCK_STDERR\n".as_slice(),
            &18u64.to_le_bytes(),
            b"line one\nline two\n\n",
        ]
        .concat();
        assert!(datagram.windows(binary.len()).any(|w| w == binary));
    }

    #[test]
    fn syslog_to_a_bound_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket_path = dir.path().join("log.sock");
        let socket = UnixDatagram::bind(&socket_path).unwrap();
        let logger = Logger::new(None, Some(socket_path), None);
        logger.log(&Event::new(EventKind::Retry).field("k", "v w"));
        let mut buf = [0u8; 4096];
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let n = socket.recv(&mut buf).unwrap();
        let got = String::from_utf8_lossy(&buf[..n]);
        assert!(got.starts_with("<28>"), "{got}");
        assert!(
            got.contains(&format!(
                "xtlock[{}]: event=retry k=\"v w\"",
                std::process::id()
            )),
            "{got}"
        );
    }

    /// Runs `f` on a thread and fails (rather than hangs) if it has not returned
    /// within 30 s: a logger that blocks is what these tests look for.
    fn returns_within_bounds(what: &str, f: impl FnOnce() + Send + 'static) {
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            f();
            let _ = done.send(());
        });
        assert!(
            finished
                .recv_timeout(std::time::Duration::from_secs(30))
                .is_ok(),
            "{what}: the logger blocked"
        );
    }

    #[test]
    fn a_receiver_that_stopped_reading_never_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let socket_path = dir.path().join("log.sock");
        let never_read = UnixDatagram::bind(&socket_path).unwrap();
        let logger = Logger::new(None, Some(socket_path), None);
        let big = Event::new(EventKind::GaveUp).field("stderr", vec![b'e'; MAX_VALUE]);
        // Far more than the socket queue holds; each send must give up, not wait.
        returns_within_bounds("a full syslog socket", move || {
            for _ in 0..2000 {
                logger.log(&big);
            }
        });
        // The first ones did arrive: the sends were made, not skipped.
        let mut buf = [0u8; 8192];
        never_read.set_nonblocking(true).unwrap();
        let n = never_read.recv(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"<27>"), "{:?}", &buf[..n.min(40)]);
    }

    #[test]
    fn dead_and_wrong_targets_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mkfifo = |path: &Path| {
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: `c` is NUL-terminated and outlives the call.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        };
        let log_to = |file: PathBuf| {
            let logger = Logger::new(
                Some("/nonexistent/journal".into()),
                Some("/nonexistent/log.sock".into()),
                Some(file),
            );
            logger.log(&Event::new(EventKind::LockFailed));
        };
        // A FIFO nobody reads (opening it for writing would wait for a reader), a
        // missing directory, a directory: each skipped, none waited for.
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        for file in [
            fifo,
            "/nonexistent/dir/x.log".into(),
            dir.path().to_path_buf(),
        ] {
            returns_within_bounds(&file.display().to_string(), move || log_to(file));
        }
        // A FIFO someone reads: it opens, but it is no log file, so nothing goes in.
        let read_fifo = dir.path().join("read-fifo");
        mkfifo(&read_fifo);
        let mut reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&read_fifo)
            .unwrap();
        log_to(read_fifo);
        let mut got = Vec::new();
        let _ = std::io::Read::read_to_end(&mut reader, &mut got);
        assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
        // A symlink, even to a regular file, is not followed (O_NOFOLLOW).
        let target = dir.path().join("target.log");
        std::fs::write(&target, "").unwrap();
        let link = dir.path().join("link.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        log_to(link);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "");
        // The control: a regular file gets the line, so the skips above were skips.
        let file = dir.path().join("x.log");
        log_to(file.clone());
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.ends_with(": error: event=lock-failed\n"), "{text}");
    }
}
