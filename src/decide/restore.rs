//! What xtlock must know about a `*-restore` call before it runs: the options as the
//! program's own getopt_long reads them (iptables 1.8.9 iptables-restore.c for legacy,
//! xtables-restore.c for nft and ebtables), whether its input is stdin or a file, and
//! which input line a "line N failed" message points at.

use crate::getopt::{HasArg, Item, LongOpt, Parser, long};
use std::ffi::OsString;

/// Which program's option rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// iptables-legacy-restore, ip6tables-legacy-restore.
    Legacy,
    /// iptables-nft-restore, ip6tables-nft-restore, arptables-nft-restore.
    Nft,
    /// ebtables-restore (nft): only -n and -v, always stdin.
    Ebtables,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Stdin,
    /// The one operand, opened by the program with fopen.
    File(OsString),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreArgs {
    /// The program will restore.
    Apply {
        /// `-n`/`--noflush`: tables are amended, not rewritten, so a replay could add twice.
        noflush: bool,
        /// `-t`/`--test`: nothing is committed at all.
        test_only: bool,
        table: Option<OsString>,
        input: Input,
    },
    /// `-h` or `-V`: the program prints and exits before it reads anything.
    HelpOrVersion,
    /// The program refuses this argv (usage error) before it reads anything.
    Rejected,
}

const LEGACY_SHORTS: &str = "bcvVthnwWM:T:";
const NFT_SHORTS: &str = "bcvVthnM:T:wW";
const LEGACY_LONGS: &[LongOpt] = &[
    long("counters", HasArg::No, b'c'),
    long("verbose", HasArg::No, b'v'),
    long("version", HasArg::No, b'V'),
    long("test", HasArg::No, b't'),
    long("help", HasArg::No, b'h'),
    long("noflush", HasArg::No, b'n'),
    long("modprobe", HasArg::Required, b'M'),
    long("table", HasArg::Required, b'T'),
    long("wait", HasArg::Optional, b'w'),
    long("wait-interval", HasArg::Optional, b'W'),
];
const NFT_LONGS: &[LongOpt] = &[
    long("counters", HasArg::No, b'c'),
    long("verbose", HasArg::No, b'v'),
    long("version", HasArg::No, b'V'),
    long("test", HasArg::No, b't'),
    long("help", HasArg::No, b'h'),
    long("noflush", HasArg::No, b'n'),
    long("modprobe", HasArg::Required, b'M'),
    long("table", HasArg::Required, b'T'),
    // Listed, but their vals '4' and '6' fall to the switch's default: usage error.
    long("ipv4", HasArg::No, b'4'),
    long("ipv6", HasArg::No, b'6'),
    long("wait", HasArg::Optional, b'w'),
    long("wait-interval", HasArg::Optional, b'W'),
];
const EBTABLES_LONGS: &[LongOpt] = &[
    long("noflush", HasArg::No, b'n'),
    long("verbose", HasArg::No, b'v'),
];

/// Parse `args` (without argv[0]) exactly as the program's option loop does.
pub fn parse_args(flavor: Flavor, args: &[OsString], posixly_correct: bool) -> RestoreArgs {
    let (shorts, longs) = match flavor {
        Flavor::Legacy => (LEGACY_SHORTS, LEGACY_LONGS),
        Flavor::Nft => (NFT_SHORTS, NFT_LONGS),
        Flavor::Ebtables => ("nv", EBTABLES_LONGS),
    };
    let mut parser = Parser::new(args, shorts, longs, posixly_correct);
    let (mut noflush, mut test_only, mut table) = (false, false, None);
    while let Some(item) = parser.next_item() {
        let Ok(Item::Opt(val, optarg)) = item else {
            return RestoreArgs::Rejected;
        };
        let ok = match (flavor, val) {
            (_, b'n') => {
                noflush = true;
                true
            }
            (Flavor::Ebtables, b'v') => true,
            (Flavor::Ebtables, _) => false,
            (_, b'h' | b'V') => return RestoreArgs::HelpOrVersion,
            (_, b'b' | b'c' | b'v' | b'M') => true,
            (_, b't') => {
                test_only = true;
                true
            }
            (_, b'T') => {
                table = optarg;
                true
            }
            // parse_wait_time: the value, attached or the next word, must scan as %i.
            (Flavor::Legacy, b'w') => match optarg.or_else(|| parser.take_word_argument()) {
                Some(value) => crate::scan::scan_int(value.as_encoded_bytes()).is_some(),
                None => true,
            },
            // parse_wait_interval: a value is required and must scan as %u, <= 999999.
            (Flavor::Legacy, b'W') => optarg
                .or_else(|| parser.take_word_argument())
                .and_then(|value| crate::scan::scan_unsigned(value.as_encoded_bytes()))
                .is_some_and(|usec| usec <= 999_999),
            // Ignored by nft, which skips the next word unless it looks like an option.
            (Flavor::Nft, b'w' | b'W') => {
                if optarg.is_none() {
                    parser.take_word_argument();
                }
                true
            }
            _ => false,
        };
        if !ok {
            return RestoreArgs::Rejected;
        }
    }
    let mut operands = parser.operands();
    let input = match (flavor, operands.len()) {
        // ebtables-restore has no file operand: whatever is left over is ignored.
        (Flavor::Ebtables, _) | (_, 0) => Input::Stdin,
        (_, 1) => Input::File(operands.remove(0)),
        _ => return RestoreArgs::Rejected,
    };
    RestoreArgs::Apply {
        noflush,
        test_only,
        table,
        input,
    }
}

/// The input of a restore that may be replayed, or why it never is, from its options
/// alone: the one place where `--noflush` (tables amended, not rewritten: a replay could
/// add twice) and `--test` rule a replay out.
pub fn replayable_input(args: Option<&RestoreArgs>) -> Result<&Input, &'static str> {
    match args {
        None => Err("the options cannot be known for sure"),
        Some(RestoreArgs::Apply { noflush: true, .. }) => {
            Err("--noflush: the commit may have applied")
        }
        Some(RestoreArgs::Apply {
            test_only: true, ..
        }) => Err("--test commits nothing"),
        Some(RestoreArgs::Apply { input, .. }) => Ok(input),
        Some(RestoreArgs::HelpOrVersion | RestoreArgs::Rejected) => {
            Err("the program reads no input")
        }
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

/// The buffer both restores read lines into: `char buffer[10240]` with
/// `fgets(buffer, sizeof(buffer), in)` (iptables 1.8.9 iptables-restore.c
/// ip46tables_restore_main, xtables-restore.c xtables_restore_parse; ebtables-restore
/// and arptables-restore share the latter).
const RESTORE_LINE_BUFFER: usize = 10240;

/// The input as the restore's fgets loop reads it, one piece per "line" it counts: up
/// to and including a newline, but never more than 10,239 bytes. A longer line is
/// counted as two or more lines, and its tail is parsed as a line of its own.
pub fn fgets_lines(input: &[u8]) -> impl Iterator<Item = &[u8]> {
    let max = RESTORE_LINE_BUFFER - 1;
    let mut rest = input;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let limit = rest.len().min(max);
        let len = rest[..limit]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(limit, |i| i + 1);
        let (line, tail) = rest.split_at(len);
        rest = tail;
        Some(line)
    })
}

/// Is line `n` (1-based, counted as iptables counts it: `fgets_lines`) of the input a
/// COMMIT as iptables reads one? Legacy compares the whole line with "COMMIT\n"
/// (iptables-restore.c, strcmp); nft also takes a final "COMMIT" with no newline.
/// Nothing else: `COMMIT ` fails in iptables every time.
pub fn line_is_commit(input: &[u8], n: usize) -> bool {
    if n == 0 {
        return false;
    }
    matches!(fgets_lines(input).nth(n - 1), Some(b"COMMIT\n" | b"COMMIT"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(
        noflush: bool,
        test_only: bool,
        table: Option<&str>,
        file: Option<&str>,
    ) -> RestoreArgs {
        RestoreArgs::Apply {
            noflush,
            test_only,
            table: table.map(OsString::from),
            input: file.map_or(Input::Stdin, |f| Input::File(f.into())),
        }
    }

    fn parse(flavor: Flavor, list: &[&str]) -> RestoreArgs {
        let args: Vec<OsString> = list.iter().map(OsString::from).collect();
        parse_args(flavor, &args, false)
    }

    #[test]
    fn legacy_table() {
        use RestoreArgs::{HelpOrVersion, Rejected};
        let cases: Vec<(&[&str], RestoreArgs)> = vec![
            (&[], apply(false, false, None, None)),
            (&["-n"], apply(true, false, None, None)),
            (&["--noflush"], apply(true, false, None, None)),
            (&["--nof"], apply(true, false, None, None)),
            (&["--noflu"], apply(true, false, None, None)),
            (&["-wn"], apply(true, false, None, None)),
            (&["-cwn"], apply(true, false, None, None)),
            (&["-vn"], apply(true, false, None, None)),
            (
                &["-c", "-n", "rules.v4"],
                apply(true, false, None, Some("rules.v4")),
            ),
            (
                &["rules.v4", "-n"],
                apply(true, false, None, Some("rules.v4")),
            ),
            (&["rules.v4"], apply(false, false, None, Some("rules.v4"))),
            (&["-T", "nat"], apply(false, false, Some("nat"), None)),
            (&["--tab", "nat"], apply(false, false, Some("nat"), None)),
            (&["-Tnat"], apply(false, false, Some("nat"), None)),
            (
                &["-w", "5", "rules"],
                apply(false, false, None, Some("rules")),
            ),
            (&["-w", "0x5"], apply(false, false, None, None)),
            (&["-w", "-n"], apply(true, false, None, None)),
            (&["--wait=5", "f"], apply(false, false, None, Some("f"))),
            (&["-W", "100000", "-n"], apply(true, false, None, None)),
            (&["--test"], apply(false, true, None, None)),
            (&["-tv"], apply(false, true, None, None)),
            (
                &["--", "-odd-name"],
                apply(false, false, None, Some("-odd-name")),
            ),
            // Refused before any input is read.
            (&["-w", "rules"], Rejected),
            (&["-w5"], Rejected),
            (&["-W"], Rejected),
            (&["-W", "1000000"], Rejected),
            (&["--wa"], Rejected),
            (&["a", "b"], Rejected),
            (&["--ipv4"], Rejected),
            (&["-x"], Rejected),
            (&["-h", "-n"], HelpOrVersion),
            (&["--vers"], HelpOrVersion),
        ];
        for (list, want) in cases {
            assert_eq!(parse(Flavor::Legacy, list), want, "{list:?}");
        }
    }

    #[test]
    fn nft_and_ebtables_differ() {
        // nft ignores -w and skips the word after it: the file name is swallowed.
        assert_eq!(
            parse(Flavor::Nft, &["-w", "rules"]),
            apply(false, false, None, None)
        );
        assert_eq!(parse(Flavor::Nft, &["--ipv4"]), RestoreArgs::Rejected);
        assert_eq!(parse(Flavor::Nft, &["-wn"]), apply(true, false, None, None));
        assert_eq!(
            parse(Flavor::Ebtables, &["-n", "file"]),
            apply(true, false, None, None)
        );
        assert_eq!(parse(Flavor::Ebtables, &["-t"]), RestoreArgs::Rejected);
    }

    #[test]
    fn only_a_full_restore_is_replayable() {
        let stdin = Ok(&Input::Stdin);
        let cases = [
            (apply(false, false, None, None), stdin),
            (apply(false, false, Some("nat"), None), stdin),
            (
                apply(true, false, None, None),
                Err("--noflush: the commit may have applied"),
            ),
            (
                apply(true, true, None, Some("f")),
                Err("--noflush: the commit may have applied"),
            ),
            (
                apply(false, true, None, None),
                Err("--test commits nothing"),
            ),
            (
                RestoreArgs::HelpOrVersion,
                Err("the program reads no input"),
            ),
            (RestoreArgs::Rejected, Err("the program reads no input")),
        ];
        for (args, want) in cases {
            assert_eq!(replayable_input(Some(&args)), want, "{args:?}");
        }
        assert_eq!(
            replayable_input(Some(&apply(false, false, None, Some("f")))),
            Ok(&Input::File("f".into()))
        );
        assert_eq!(
            replayable_input(None),
            Err("the options cannot be known for sure")
        );
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
        assert!(line_is_commit(b"*filter\nCOMMIT", 2));
        assert!(!line_is_commit(b"COMMIT \n", 1));
        assert!(!line_is_commit(b"COMMIT\r\n", 1));
        assert!(!line_is_commit(b" COMMIT\n", 1));
    }

    /// `*filter`, a rule line of `len` bytes (its newline included), then `COMMIT`.
    fn with_rule_of(len: usize) -> Vec<u8> {
        let mut input = b"*filter\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', len - 1));
        input.extend_from_slice(b"\nCOMMIT\n");
        input
    }

    #[test]
    fn long_lines_count_as_iptables_counts_them() {
        // (rule line length with its newline, the line number iptables gives COMMIT)
        let cases = [
            (10238, 3),
            (10239, 3), // 10,238 bytes and the newline: one fgets
            (10240, 4), // 10,239 bytes, then the newline alone as a line
            (10241, 4),
            (20000, 4),
            (20478, 4),
            (20479, 5), // 2 x 10,239 bytes, then the newline
        ];
        for (len, commit_line) in cases {
            let input = with_rule_of(len);
            let lines: Vec<&[u8]> = fgets_lines(&input).collect();
            assert_eq!(lines.len(), commit_line, "{len}");
            assert_eq!(lines.concat(), input, "{len}: the pieces are the input");
            assert!(lines.iter().all(|l| l.len() < RESTORE_LINE_BUFFER));
            assert!(line_is_commit(&input, commit_line), "{len}");
            for n in 1..commit_line {
                assert!(!line_is_commit(&input, n), "{len}: line {n}");
            }
        }
        // The tail of a long line is parsed as a line: here it is a COMMIT.
        let mut input = vec![b'#'; 10239];
        input.extend_from_slice(b"COMMIT\n");
        assert!(line_is_commit(&input, 2));
        assert!(!line_is_commit(b"COMMIT\n", 2));
        assert_eq!(fgets_lines(b"").count(), 0);
        assert_eq!(
            fgets_lines(b"a\nb").collect::<Vec<_>>(),
            [&b"a\n"[..], b"b"]
        );
    }
}
