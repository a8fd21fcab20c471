//! A batch of queued commands as one `*-restore --noflush` transaction (group commit),
//! and what the restore's output says happened to it.
//!
//! The input is framed by two comment lines, which a restore run with `--verbose`
//! echoes to stdout as it reaches them (iptables-restore.c and xtables-restore.c, 1.8.9;
//! with `--noflush`, `-v` changes nothing else). The second comes after `COMMIT`, so
//! its echo proves that the commit succeeded, even when nobody is left to see the
//! restore's exit status (its output goes to a file, and a holder that took over reads it):
//!
//! ```text
//! # xtlock batch ID begin       line 1
//! *filter                       line 2
//! -A f2b-sshd -s 192.0.2.1 ...   lines 3 .. 3+n-1: the commands, in queue order
//! COMMIT                        line 3+n
//! # xtlock batch ID committed   line 4+n
//! ```

use crate::classify::Backend;

/// The restore input for commands `lines` of `table`, batch `id`.
pub fn restore_input(id: &str, table: &str, lines: &[&str]) -> Vec<u8> {
    let mut text = format!("# xtlock batch {id} begin\n*{table}\n");
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    text.push_str(&format!("COMMIT\n# xtlock batch {id} committed\n"));
    text.into_bytes()
}

/// What happened to a batch of `n` commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judged {
    /// The COMMIT took: every command is applied.
    Committed {
        /// It printed more than the markers (a warning of some line): nobody's to give.
        stray_output: bool,
    },
    /// Nothing was committed; command `at` (0-based) is the first the restore refused.
    Refused { at: usize },
    /// Nothing was committed, and no command is named (nft names the COMMIT line for a
    /// rule the kernel refused; the restore never started or never read its input).
    NothingCommitted,
    /// It may have committed or not: the restore died after it began, or (legacy) its
    /// COMMIT failed, which can follow a replaced table (IPTABLES-FACTS.md).
    Unknown(&'static str),
}

/// How the restore ended, when its parent saw it (None: a holder that took over).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Signaled(i32),
}

/// Judge batch `id` of `n` commands from the restore's output (stdout and stderr, in
/// one file) and, when known, how it ended.
pub fn judge(id: &str, n: usize, output: &[u8], ended: Option<Ended>, backend: Backend) -> Judged {
    let text = String::from_utf8_lossy(output);
    let begin = format!("# xtlock batch {id} begin");
    let committed = format!("# xtlock batch {id} committed");
    let lines: Vec<&str> = text.lines().collect();
    let began = lines.contains(&begin.as_str());
    if lines.contains(&committed.as_str()) {
        let stray_output = lines
            .iter()
            .any(|l| *l != begin && *l != committed && !l.is_empty());
        return Judged::Committed { stray_output };
    }
    if !began {
        // It never read its first line: nothing of ours reached the kernel.
        return Judged::NothingCommitted;
    }
    let commit_line = 3 + n;
    let failed = named_line(&text);
    match failed {
        Some(line) if (3..commit_line).contains(&line) => Judged::Refused { at: line - 3 },
        Some(line) if line == commit_line => match backend {
            // nf_tables commits a batch whole or not at all: the kernel refused it.
            Backend::Nft => Judged::NothingCommitted,
            Backend::Legacy => Judged::Unknown("its COMMIT failed"),
        },
        // The header or a line we never wrote: nothing of ours was applied.
        Some(_) => Judged::NothingCommitted,
        None => match ended {
            Some(Ended::Exited(code)) if code != 0 => Judged::NothingCommitted,
            Some(Ended::Exited(_)) => Judged::Unknown("it exited 0 without its commit mark"),
            Some(Ended::Signaled(_)) => Judged::Unknown("the restore was killed while it ran"),
            None => Judged::Unknown("the restore died while it ran"),
        },
    }
}

/// The line a restore names in its error: `PROG: line N failed` (nft adds `: reason`),
/// or a parameter problem's `Error occurred at line: N` (xtables_error, xshared.c).
fn named_line(text: &str) -> Option<usize> {
    text.lines().find_map(|line| {
        if let Some(n) = line.strip_prefix("Error occurred at line: ") {
            return n.trim_end().parse().ok();
        }
        let (prog, rest) = line.split_once(": line ")?;
        if prog.contains(' ') {
            return None;
        }
        let (n, tail) = rest.split_once(" failed")?;
        (tail.is_empty() || tail.starts_with(": ")).then(|| n.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEGIN: &str = "# xtlock batch 7 begin\n";
    const DONE: &str = "# xtlock batch 7 committed\n";

    #[test]
    fn input_frames_the_commands() {
        let input = restore_input("7", "nat", &["-A A -j B", "-N C"]);
        assert_eq!(
            String::from_utf8(input).unwrap(),
            "# xtlock batch 7 begin\n*nat\n-A A -j B\n-N C\nCOMMIT\n# xtlock batch 7 committed\n"
        );
    }

    #[test]
    fn judge_table() {
        use Backend::{Legacy, Nft};
        let legacy_failed = |line: usize| format!("{BEGIN}iptables-restore: line {line} failed\n");
        let cases: Vec<(String, Option<Ended>, Backend, Judged)> = vec![
            (
                format!("{BEGIN}{DONE}"),
                Some(Ended::Exited(0)),
                Legacy,
                Judged::Committed {
                    stray_output: false,
                },
            ),
            // The parent is gone: the mark alone says it committed.
            (
                format!("{BEGIN}{DONE}"),
                None,
                Nft,
                Judged::Committed {
                    stray_output: false,
                },
            ),
            // Killed after its mark: committed all the same.
            (
                format!("{BEGIN}{DONE}"),
                Some(Ended::Signaled(9)),
                Nft,
                Judged::Committed {
                    stray_output: false,
                },
            ),
            (
                format!("{BEGIN}Warning: weird character\n{DONE}"),
                Some(Ended::Exited(0)),
                Legacy,
                Judged::Committed { stray_output: true },
            ),
            // Another batch's marks are not ours.
            (
                "# xtlock batch 8 begin\n# xtlock batch 8 committed\n".into(),
                None,
                Legacy,
                Judged::NothingCommitted,
            ),
            (
                legacy_failed(4),
                Some(Ended::Exited(1)),
                Legacy,
                Judged::Refused { at: 1 },
            ),
            (
                format!(
                    "{BEGIN}iptables-nft-restore: line 3 failed: Bad rule (does a matching rule exist in that chain?).\n"
                ),
                Some(Ended::Exited(1)),
                Nft,
                Judged::Refused { at: 0 },
            ),
            (
                format!(
                    "{BEGIN}iptables-restore v1.8.9 (legacy): Couldn't load target `NOPE':No such file or directory\n\nError occurred at line: 5\nTry `iptables-restore -h' or 'iptables-restore --help' for more information.\n"
                ),
                Some(Ended::Exited(2)),
                Legacy,
                Judged::Refused { at: 2 },
            ),
            // nft names the COMMIT line (3 + n) for a jump to a chain that is missing.
            (
                format!(
                    "{BEGIN}iptables-nft-restore v1.8.9 (nf_tables): Chain 'NOPE' does not exist\nError occurred at line: 6\n"
                ),
                Some(Ended::Exited(2)),
                Nft,
                Judged::NothingCommitted,
            ),
            (
                legacy_failed(6),
                Some(Ended::Exited(1)),
                Legacy,
                Judged::Unknown("its COMMIT failed"),
            ),
            ("".into(), None, Legacy, Judged::NothingCommitted),
            (
                "".into(),
                Some(Ended::Signaled(9)),
                Legacy,
                Judged::NothingCommitted,
            ),
            (
                BEGIN.into(),
                Some(Ended::Signaled(9)),
                Nft,
                Judged::Unknown("the restore was killed while it ran"),
            ),
            (
                BEGIN.into(),
                None,
                Legacy,
                Judged::Unknown("the restore died while it ran"),
            ),
            (
                format!("{BEGIN}Another app is currently holding the xtables lock.\n"),
                Some(Ended::Exited(4)),
                Legacy,
                Judged::NothingCommitted,
            ),
        ];
        for (output, ended, backend, want) in cases {
            // Three commands: lines 3-5, COMMIT on line 6.
            assert_eq!(
                judge("7", 3, output.as_bytes(), ended, backend),
                want,
                "{output:?} {ended:?}"
            );
        }
    }
}
