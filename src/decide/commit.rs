//! A batch of queued commands as one `*-restore --noflush` transaction (group commit),
//! and what the restore's output says happened to it.
//!
//! The input is framed by comment lines, which a restore run with `--verbose` echoes to
//! stdout as it reaches them (iptables-restore.c and xtables-restore.c, 1.8.9; with
//! `--noflush`, `-v` changes nothing else). Its stdout and stderr go to one file, the
//! echo flushed at once and stderr unbuffered, so the file keeps their order:
//! - the last mark comes after `COMMIT`, so its echo proves that the commit succeeded,
//!   even when nobody is left to see the restore's exit status (a holder that took over
//!   reads the file);
//! - a mark before each command tells whose a warning is (`-p ipv6-frag` on ip6tables
//!   succeeds and warns): what lies between the marks of command k and k+1 is its stderr.
//!
//! ```text
//! # xtlock batch ID begin        line 1
//! *filter                        line 2
//! # xtlock batch ID line 0       line 3
//! -A f2b-sshd -s 192.0.2.1 ...   line 4         command k: line 4 + 2k
//! # xtlock batch ID line 1       line 5
//! -A f2b-sshd -s 192.0.2.2 ...   line 6
//! COMMIT                         line 3 + 2n
//! # xtlock batch ID committed    line 4 + 2n
//! ```

/// The restore input for commands `lines` of `table`, batch `id`.
pub fn restore_input(id: &str, table: &str, lines: &[&str]) -> Vec<u8> {
    let mut text = format!("# xtlock batch {id} begin\n*{table}\n");
    for (k, line) in lines.iter().enumerate() {
        text.push_str(&format!("# xtlock batch {id} line {k}\n{line}\n"));
    }
    text.push_str(&format!("COMMIT\n# xtlock batch {id} committed\n"));
    text.into_bytes()
}

/// What happened to a batch of `n` commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judged {
    /// The COMMIT took: every command is applied. `stderr[k]`: what command k printed
    /// (a warning), as it would have alone.
    Committed {
        stderr: Vec<Vec<u8>>,
        /// Printed at the COMMIT, after the last command's mark: nobody's to give.
        stray_output: Vec<u8>,
    },
    /// Nothing was committed; command `at` (0-based) is the first the restore refused.
    Refused { at: usize },
    /// Nothing was committed, and no command is named: the restore never started or
    /// never read its input.
    NothingCommitted,
    /// The restore named its COMMIT line. nft commits a batch whole or not at all, so
    /// for nft nothing was (a jump to a missing chain is refused there). Legacy iptables
    /// may have (`xtinfo`): a rule the kernel refuses (`REJECT --reject-with tcp-reset`
    /// without `-p tcp`) changed nothing, but a writer that bypasses every lock can make
    /// the commit fail after the table was replaced.
    CommitFailed,
    /// It may have committed or not: the restore died after it began.
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
pub fn judge(id: &str, n: usize, output: &[u8], ended: Option<Ended>) -> Judged {
    let begin = format!("# xtlock batch {id} begin\n");
    let committed = format!("# xtlock batch {id} committed\n");
    let Some(after_begin) = find(output, begin.as_bytes()).map(|at| at + begin.len()) else {
        // It never read its first line: nothing of ours reached the kernel.
        return Judged::NothingCommitted;
    };
    if let Some(end) = find(output, committed.as_bytes()) {
        let body = &output[after_begin..end.max(after_begin)];
        let (stderr, stray_output) = per_command(id, n, body);
        return Judged::Committed {
            stderr,
            stray_output,
        };
    }
    let commit_line = 3 + 2 * n;
    match named_line(&String::from_utf8_lossy(output)) {
        Some(line) if (4..commit_line).contains(&line) && line % 2 == 0 => {
            Judged::Refused { at: (line - 4) / 2 }
        }
        Some(line) if line == commit_line => Judged::CommitFailed,
        // The header, a mark or a line we never wrote: nothing of ours was applied.
        Some(_) => Judged::NothingCommitted,
        None => match ended {
            Some(Ended::Exited(code)) if code != 0 => Judged::NothingCommitted,
            Some(Ended::Exited(_)) => Judged::Unknown("it exited 0 without its commit mark"),
            Some(Ended::Signaled(_)) => Judged::Unknown("the restore was killed while it ran"),
            None => Judged::Unknown("the restore died while it ran"),
        },
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Split what lies between the begin and committed marks at the command marks: before
/// the first (the `*table` line prints nothing) and after the last command's output
/// (printed at the COMMIT) is stray.
fn per_command(id: &str, n: usize, body: &[u8]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut stderr = vec![Vec::new(); n];
    let mut stray = Vec::new();
    let mut rest = body;
    let mut current: Option<usize> = None;
    for k in 0..n {
        let mark = format!("# xtlock batch {id} line {k}\n");
        let Some(at) = find(rest, mark.as_bytes()) else {
            break;
        };
        match current {
            Some(c) => stderr[c].extend_from_slice(&rest[..at]),
            None => stray.extend_from_slice(&rest[..at]),
        }
        rest = &rest[at + mark.len()..];
        current = Some(k);
    }
    match current {
        Some(c) => stderr[c].extend_from_slice(rest),
        None => stray.extend_from_slice(rest),
    }
    (stderr, stray)
}

/// Where to split a batch that committed nothing and named no line: at the first
/// command that jumps or goes to the chain the error names (nft refuses a jump to a
/// missing chain at the COMMIT: "Chain 'X' does not exist"). Any split of a batch that
/// committed nothing keeps its meaning (its commands still run in order, each in a
/// batch that commits or alone), so this only saves restores; None: split in halves.
pub fn culprit(output: &[u8], lines: &[&str]) -> Option<usize> {
    let text = String::from_utf8_lossy(output);
    let chain = text.lines().find_map(|line| {
        let rest = line.split_once("Chain '")?.1;
        rest.strip_suffix("' does not exist")
    })?;
    lines.iter().position(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        words
            .windows(2)
            .any(|w| matches!(w[0], "-j" | "--jump" | "-g" | "--goto") && w[1] == chain)
    })
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

    fn marks(k: usize) -> String {
        format!("# xtlock batch 7 line {k}\n")
    }

    fn committed(stderr: [&str; 3], stray: &str) -> Judged {
        Judged::Committed {
            stderr: stderr.iter().map(|s| s.as_bytes().to_vec()).collect(),
            stray_output: stray.as_bytes().to_vec(),
        }
    }

    #[test]
    fn the_culprit_jumps_to_the_missing_chain() {
        let out = b"# xtlock batch 7 begin\niptables-nft-restore v1.8.9 (nf_tables): Chain 'NOPE' does not exist\nError occurred at line: 9\n";
        let lines = [
            "-A INPUT -j ACCEPT",
            "-A INPUT -j NOPEX",
            "-A INPUT -s 1.2.3.4 -j NOPE",
        ];
        assert_eq!(culprit(out, &lines), Some(2));
        assert_eq!(culprit(out, &lines[..2]), None);
        assert_eq!(culprit(b"iptables-restore: line 9 failed\n", &lines), None);
    }

    #[test]
    fn input_frames_the_commands() {
        let input = restore_input("7", "nat", &["-A A -j B", "-N C"]);
        assert_eq!(
            String::from_utf8(input).unwrap(),
            "# xtlock batch 7 begin\n*nat\n# xtlock batch 7 line 0\n-A A -j B\n\
             # xtlock batch 7 line 1\n-N C\nCOMMIT\n# xtlock batch 7 committed\n"
        );
    }

    #[test]
    fn judge_table() {
        let all = format!("{BEGIN}{}{}{}{DONE}", marks(0), marks(1), marks(2));
        let legacy_failed = |line: usize| format!("{BEGIN}iptables-restore: line {line} failed\n");
        let cases: Vec<(String, Option<Ended>, Judged)> = vec![
            (
                all.clone(),
                Some(Ended::Exited(0)),
                committed(["", "", ""], ""),
            ),
            // The parent is gone: the mark alone says it committed.
            (all.clone(), None, committed(["", "", ""], "")),
            // Killed after its mark: committed all the same.
            (
                all.clone(),
                Some(Ended::Signaled(9)),
                committed(["", "", ""], ""),
            ),
            // A warning is its command's.
            (
                format!(
                    "{BEGIN}{}{}Warning: never matched protocol: ipv6-frag. use extension match instead.\n{}{DONE}",
                    marks(0),
                    marks(1),
                    marks(2)
                ),
                Some(Ended::Exited(0)),
                committed(
                    [
                        "",
                        "Warning: never matched protocol: ipv6-frag. use extension match instead.\n",
                        "",
                    ],
                    "",
                ),
            ),
            // Printed before the first mark (at `*table`): nobody's.
            (
                format!("{BEGIN}odd\n{}{}{}{DONE}", marks(0), marks(1), marks(2)),
                Some(Ended::Exited(0)),
                committed(["", "", ""], "odd\n"),
            ),
            // Another batch's marks are not ours.
            (
                "# xtlock batch 8 begin\n# xtlock batch 8 committed\n".into(),
                None,
                Judged::NothingCommitted,
            ),
            // Command 1 is on line 6.
            (
                legacy_failed(6),
                Some(Ended::Exited(1)),
                Judged::Refused { at: 1 },
            ),
            (
                format!(
                    "{BEGIN}iptables-nft-restore: line 4 failed: Bad rule (does a matching rule exist in that chain?).\n"
                ),
                Some(Ended::Exited(1)),
                Judged::Refused { at: 0 },
            ),
            (
                format!(
                    "{BEGIN}iptables-restore v1.8.9 (legacy): Couldn't load target `NOPE':No such file or directory\n\nError occurred at line: 8\nTry `iptables-restore -h' or 'iptables-restore --help' for more information.\n"
                ),
                Some(Ended::Exited(2)),
                Judged::Refused { at: 2 },
            ),
            // The COMMIT (line 9): nft for a jump to a missing chain, legacy for a rule
            // the kernel refuses.
            (
                format!(
                    "{BEGIN}iptables-nft-restore v1.8.9 (nf_tables): Chain 'NOPE' does not exist\nError occurred at line: 9\n"
                ),
                Some(Ended::Exited(2)),
                Judged::CommitFailed,
            ),
            (
                legacy_failed(9),
                Some(Ended::Exited(1)),
                Judged::CommitFailed,
            ),
            // A mark's line: not a command's.
            (
                legacy_failed(5),
                Some(Ended::Exited(1)),
                Judged::NothingCommitted,
            ),
            ("".into(), None, Judged::NothingCommitted),
            (
                "".into(),
                Some(Ended::Signaled(9)),
                Judged::NothingCommitted,
            ),
            (
                BEGIN.into(),
                Some(Ended::Signaled(9)),
                Judged::Unknown("the restore was killed while it ran"),
            ),
            (
                format!("{BEGIN}{}", marks(0)),
                None,
                Judged::Unknown("the restore died while it ran"),
            ),
            (
                format!("{BEGIN}Another app is currently holding the xtables lock.\n"),
                Some(Ended::Exited(4)),
                Judged::NothingCommitted,
            ),
        ];
        for (output, ended, want) in cases {
            assert_eq!(
                judge("7", 3, output.as_bytes(), ended),
                want,
                "{output:?} {ended:?}"
            );
        }
    }
}
