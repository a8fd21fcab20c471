//! Where what went wrong is written: syslog (ident `xtlock`, so `journalctl -t xtlock`
//! finds it) and an optional log file. One line per event, `key=value` pairs (logfmt),
//! values quoted and escaped so that any stderr or argument fits on one line. A log
//! target that fails is skipped: logging never fails the firewall command.

use std::cell::RefCell;
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

pub const DEFAULT_SYSLOG_SOCKET: &str = "/dev/log";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Notice,
    Warning,
    Error,
}

impl Severity {
    fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Notice => "notice",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One log line under construction: `event=NAME key=value ...`.
pub struct Event {
    severity: Severity,
    line: Vec<u8>,
}

impl Event {
    pub fn new(severity: Severity, name: &str) -> Event {
        let mut event = Event {
            severity,
            line: Vec::new(),
        };
        event.line.extend_from_slice(b"event=");
        event.line.extend_from_slice(name.as_bytes());
        event
    }

    pub fn field(mut self, key: &str, value: impl AsRef<[u8]>) -> Event {
        self.line.push(b' ');
        self.line.extend_from_slice(key.as_bytes());
        self.line.push(b'=');
        self.line
            .extend_from_slice(quote_value(value.as_ref()).as_bytes());
        self
    }

    /// Who called us: the parent's pid and command line.
    pub fn caller(self) -> Event {
        let ppid = std::os::unix::process::parent_id();
        self.field("caller_pid", ppid.to_string())
            .field("caller", crate::procinfo::describe(ppid))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.line).into_owned()
    }
}

type SyslogWriter = syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>;

pub struct Logger {
    syslog_socket: Option<PathBuf>,
    file: Option<PathBuf>,
    // Connected on first use: most calls log nothing and should not pay for a socket.
    syslog: RefCell<Option<SyslogWriter>>,
}

impl Logger {
    pub fn new(syslog_socket: Option<PathBuf>, file: Option<PathBuf>) -> Logger {
        Logger {
            syslog_socket,
            file,
            syslog: RefCell::new(None),
        }
    }

    pub fn log(&self, event: Event) {
        let text = event.text();
        self.to_syslog(event.severity, &text);
        self.to_file(event.severity, &text);
    }

    fn to_syslog(&self, severity: Severity, text: &str) {
        let Some(socket) = &self.syslog_socket else {
            return;
        };
        let mut slot = self.syslog.borrow_mut();
        if slot.is_none() {
            let formatter = syslog::Formatter3164 {
                facility: syslog::Facility::LOG_DAEMON,
                hostname: None,
                process: crate::personality::OWN_NAME.into(),
                pid: std::process::id(),
            };
            *slot = syslog::unix_custom(formatter, socket).ok();
        }
        let Some(writer) = slot.as_mut() else { return };
        let _ = match severity {
            Severity::Info => writer.info(text),
            Severity::Notice => writer.notice(text),
            Severity::Warning => writer.warning(text),
            Severity::Error => writer.err(text),
        };
    }

    fn to_file(&self, severity: Severity, text: &str) {
        let Some(path) = &self.file else { return };
        let now = humantime::format_rfc3339_millis(std::time::SystemTime::now());
        let line = format!(
            "{now} xtlock[{}]: {}: {text}\n",
            std::process::id(),
            severity.name()
        );
        // O_APPEND and one write per line keep lines from concurrent calls whole.
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path);
        if let Ok(mut file) = file {
            let _ = file.write_all(line.as_bytes());
        }
    }
}

/// A logfmt value: bare when it is one plain word, else double-quoted with `\"`, `\\`,
/// `\n`, `\t`, `\r`, `\xNN` for other control characters and for bytes that are not UTF-8.
pub fn quote_value(value: &[u8]) -> String {
    let plain = !value.is_empty()
        && value
            .iter()
            .all(|&b| b.is_ascii_graphic() && !matches!(b, b'"' | b'=' | b'\\'));
    if plain {
        return String::from_utf8_lossy(value).into_owned();
    }
    format!("\"{}\"", escape(value))
}

/// Escape control characters and invalid UTF-8 so bytes from outside fit on one line.
pub fn escape(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len());
    for chunk in value.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => {
                    for b in c.to_string().bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// A command line as a shell would need it typed, for logs and messages.
pub fn shell_join(args: &[OsString]) -> String {
    let bytes = shell_join_bytes(args);
    String::from_utf8(bytes).unwrap_or_else(|e| escape(e.as_bytes()))
}

pub fn shell_join_bytes(args: &[OsString]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        match shlex::bytes::try_quote(arg.as_bytes()) {
            Ok(quoted) => out.extend_from_slice(&quoted),
            Err(_) => out.extend_from_slice(arg.as_bytes()),
        }
    }
    out
}

/// Parse one logfmt line back into pairs (for `xtlock stats` and the tests).
pub fn parse_fields(line: &str) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    let mut rest = line.trim_start();
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].rsplit(' ').next().unwrap_or("").to_string();
        let after = &rest[eq + 1..];
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    '\\' => match chars.next().map(|(_, c)| c) {
                        Some('n') => value.push('\n'),
                        Some('t') => value.push('\t'),
                        Some('r') => value.push('\r'),
                        Some(other) => {
                            value.push('\\');
                            value.push(other);
                        }
                        None => {}
                    },
                    c => value.push(c),
                }
            }
            (value, &quoted[end.min(quoted.len())..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        fields.push((key, value));
        rest = tail.trim_start();
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_table() {
        let cases: &[(&[u8], &str)] = &[
            (b"iptables", "iptables"),
            (b"", "\"\""),
            (b"-A INPUT", "\"-A INPUT\""),
            (b"a=b", "\"a=b\""),
            (b"say \"hi\"", "\"say \\\"hi\\\"\""),
            (b"line1\nline2\n", "\"line1\\nline2\\n\""),
            (b"\x1b[31mred", "\"\\x1b[31mred\""),
            (b"bad \xff\xfe utf8", "\"bad \\xff\\xfe utf8\""),
            ("caf\u{e9}".as_bytes(), "\"caf\u{e9}\""),
            (b"back\\slash", "\"back\\\\slash\""),
        ];
        for (raw, want) in cases {
            assert_eq!(quote_value(raw), *want, "{raw:?}");
        }
    }

    #[test]
    fn event_round_trips() {
        let event = Event::new(Severity::Warning, "retry")
            .field("prog", "iptables")
            .field("args", "-A INPUT -m comment --comment 'a b'")
            .field("stderr", b"iptables: Resource temporarily unavailable.\n");
        let fields = parse_fields(&event.text());
        let get = |k: &str| {
            fields
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("event"), Some("retry"));
        assert_eq!(get("args"), Some("-A INPUT -m comment --comment 'a b'"));
        assert_eq!(
            get("stderr"),
            Some("iptables: Resource temporarily unavailable.\n")
        );
        assert!(!event.text().contains('\n'));
    }

    #[test]
    fn shell_join_quotes() {
        let args: Vec<OsString> = ["-A", "INPUT", "a b", "", "it's"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(shell_join(&args), "-A INPUT 'a b' '' \"it's\"");
    }

    #[test]
    fn syslog_to_a_bound_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket_path = dir.path().join("log.sock");
        let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
        let logger = Logger::new(Some(socket_path), None);
        logger.log(Event::new(Severity::Warning, "test").field("k", "v w"));
        let mut buf = [0u8; 4096];
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let n = socket.recv(&mut buf).unwrap();
        let got = String::from_utf8_lossy(&buf[..n]);
        assert!(got.starts_with('<'), "{got}");
        assert!(
            got.contains(&format!(
                "xtlock[{}]: event=test k=\"v w\"",
                std::process::id()
            )),
            "{got}"
        );
    }

    #[test]
    fn dead_targets_are_harmless() {
        let logger = Logger::new(
            Some("/nonexistent/log.sock".into()),
            Some("/nonexistent/dir/x.log".into()),
        );
        logger.log(Event::new(Severity::Error, "test"));
    }
}
