//! What xtlock needs to know about `*-restore` calls: whether the input is read from
//! stdin (so it must be buffered to be replayed), whether `--noflush` makes a replay
//! unsafe, and which input line a "line N failed" message points at.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

pub fn is_restore_program(name: &OsStr) -> bool {
    name.as_bytes().ends_with(b"-restore")
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct RestoreArgs {
    /// `-n`/`--noflush`: tables are amended, not rewritten, so a replay could add twice.
    pub noflush: bool,
    /// `-t`/`--test`: nothing is committed at all.
    pub test_only: bool,
    /// The rules file, when given instead of stdin.
    pub input_file: Option<PathBuf>,
}

/// Parse as iptables-restore's getopt does: short flags may be bundled (`-nv`),
/// -T/-M/-W take a value, -w takes an optional one (attached, or a following number).
pub fn parse_args(args: &[OsString]) -> RestoreArgs {
    let mut parsed = RestoreArgs::default();
    let mut iter = args.iter().peekable();
    while let Some(arg) = iter.next() {
        let bytes = arg.as_bytes();
        let takes_next = match bytes {
            b"--" => {
                parsed.input_file = iter.next().map(PathBuf::from);
                break;
            }
            b"--noflush" => {
                parsed.noflush = true;
                false
            }
            b"--test" => {
                parsed.test_only = true;
                false
            }
            b"--table" | b"--modprobe" | b"--wait-interval" => true,
            b"--wait" => {
                skip_number(&mut iter);
                false
            }
            [b'-', b'-', ..] => false,
            [b'-', flags @ ..] if !flags.is_empty() => parse_short(flags, &mut parsed, &mut iter),
            _ => {
                parsed.input_file = Some(PathBuf::from(arg));
                false
            }
        };
        if takes_next {
            iter.next();
        }
    }
    parsed
}

/// Returns whether the next argument is this option's value.
fn parse_short<'a>(
    flags: &[u8],
    parsed: &mut RestoreArgs,
    iter: &mut std::iter::Peekable<impl Iterator<Item = &'a OsString>>,
) -> bool {
    for (i, flag) in flags.iter().enumerate() {
        let attached = i + 1 < flags.len();
        match flag {
            b'n' => parsed.noflush = true,
            b't' => parsed.test_only = true,
            b'T' | b'M' | b'W' => return !attached,
            b'w' => {
                if !attached {
                    skip_number(iter);
                }
                return false;
            }
            _ => {}
        }
    }
    false
}

fn skip_number<'a>(iter: &mut std::iter::Peekable<impl Iterator<Item = &'a OsString>>) {
    if iter
        .peek()
        .is_some_and(|a| !a.is_empty() && a.as_bytes().iter().all(u8::is_ascii_digit))
    {
        iter.next();
    }
}

/// The N of a `...-restore: line N failed` line, if stderr has one.
pub fn failed_line(stderr: &[u8]) -> Option<usize> {
    stderr.split(|&b| b == b'\n').find_map(|line| {
        let line = std::str::from_utf8(line).ok()?.trim_end();
        let (prog, rest) = line.split_once(": line ")?;
        if prog.contains(' ') {
            return None;
        }
        rest.strip_suffix(" failed")?.parse().ok()
    })
}

/// Is line `n` (1-based) of the input a COMMIT?
pub fn line_is_commit(input: &[u8], n: usize) -> bool {
    n >= 1
        && input
            .split(|&b| b == b'\n')
            .nth(n - 1)
            .is_some_and(|l| l.trim_ascii() == b"COMMIT")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn args_table() {
        let file = |f: &str| Some(PathBuf::from(f));
        let cases: Vec<(&[&str], bool, Option<PathBuf>)> = vec![
            (&[], false, None),
            (&["-n"], true, None),
            (&["--noflush"], true, None),
            (&["-vn"], true, None),
            (&["-c", "-n", "rules.v4"], true, file("rules.v4")),
            (&["rules.v4"], false, file("rules.v4")),
            (&["-T", "nat"], false, None),
            (&["-Tnat"], false, None), // the n of "nat" is a value, not --noflush
            (&["-T", "n"], false, None),
            (&["-w", "5", "rules"], false, file("rules")),
            (&["-w", "rules"], false, file("rules")),
            (&["-w5"], false, None),
            (&["--wait", "5"], false, None),
            (&["-W", "100000", "-n"], true, None),
            (&["-M", "/sbin/modprobe"], false, None),
            (&["--", "-odd-name"], false, file("-odd-name")),
        ];
        for (list, noflush, input_file) in cases {
            let got = parse_args(&args(list));
            assert_eq!(
                (got.noflush, got.input_file),
                (noflush, input_file),
                "{list:?}"
            );
        }
        assert!(parse_args(&args(&["--test"])).test_only);
        assert!(parse_args(&args(&["-tv"])).test_only);
    }

    #[test]
    fn failed_line_table() {
        assert_eq!(failed_line(b"iptables-restore: line 7 failed\n"), Some(7));
        assert_eq!(failed_line(b"ip6tables-restore: line 12 failed"), Some(12));
        assert_eq!(
            failed_line(b"warn\niptables-legacy-restore: line 3 failed\n"),
            Some(3)
        );
        assert_eq!(failed_line(b"iptables-restore: line x failed\n"), None);
        assert_eq!(failed_line(b"Bad argument: line 3 failed\n"), None);
        assert_eq!(failed_line(b""), None);
    }

    #[test]
    fn commit_lines() {
        let input = b"*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n";
        assert!(line_is_commit(input, 4));
        assert!(!line_is_commit(input, 3));
        assert!(!line_is_commit(input, 0));
        assert!(!line_is_commit(input, 99));
        assert!(line_is_commit(b"COMMIT \r\n", 1));
    }

    #[test]
    fn restore_names() {
        for name in [
            "iptables-restore",
            "ip6tables-legacy-restore",
            "iptables-nft-restore",
        ] {
            assert!(is_restore_program(OsStr::new(name)));
        }
        for name in ["iptables", "iptables-save", "iptables-restore-translate"] {
            assert!(!is_restore_program(OsStr::new(name)));
        }
    }
}
