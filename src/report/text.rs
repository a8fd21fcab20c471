//! Text for people and for logs: shell quoting of command lines, and the logfmt
//! `key=value` form of an event (values escaped so that any stderr or argument fits on
//! one line), with its parser for `xtlock stats`. No I/O here.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

/// xtlock's own name: its personality when called by it, and its log identifier.
pub const OWN_NAME: &str = "xtlock";

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

/// Text from outside (a command line, a path, a program's output) for a terminal or a
/// table: unchanged unless it holds a control character (a newline would break the
/// line, an ESC could rewrite the screen); then escaped as `escape` does, backslashes
/// and quotes too, so that it reads back unambiguously.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    match text.chars().any(char::is_control) {
        true => std::borrow::Cow::Owned(escape(text.as_bytes())),
        false => std::borrow::Cow::Borrowed(text),
    }
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

/// strerror's text without Rust's " (os error N)" suffix, as flock(1) prints it.
pub fn errno_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
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
    fn printable_table() {
        let cases = [
            ("sh -c 'iptables -L'", "sh -c 'iptables -L'"),
            ("\"it's\" a\\b", "\"it's\" a\\b"),
            ("caf\u{e9}", "caf\u{e9}"),
            ("sh -c 'a\nb'", "sh -c 'a\\nb'"),
            ("\x1b[2Jclear", "\\x1b[2Jclear"),
            ("tab\there \"q\"", "tab\\there \\\"q\\\""),
            ("c1 \u{9b}31m", "c1 \\xc2\\x9b31m"),
        ];
        for (raw, want) in cases {
            assert_eq!(printable(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn fields_round_trip() {
        let line = format!(
            "event=retry prog=iptables args={} stderr={}",
            quote_value(b"-A INPUT -m comment --comment 'a b'"),
            quote_value(b"iptables: Resource temporarily unavailable.\n")
        );
        let fields = parse_fields(&line);
        assert_eq!(fields[2].1, "-A INPUT -m comment --comment 'a b'");
        assert_eq!(fields[3].1, "iptables: Resource temporarily unavailable.\n");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn shell_join_quotes() {
        let args: Vec<OsString> = ["-A", "INPUT", "a b", "", "it's"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(shell_join(&args), "-A INPUT 'a b' '' \"it's\"");
    }
}
