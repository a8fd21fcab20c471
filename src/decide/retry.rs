//! Which failures are safe to run again, and how long to wait first. Only failures
//! where iptables committed nothing are retried: a retry of a rule that did land adds
//! it twice. The facts behind each rule are in README ("What is retried").

use std::time::Duration;

/// iptables' exit status for a resource problem (lock busy, kernel EAGAIN).
const RESOURCE_PROBLEM: i32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Success, or a failure that is the answer (exit 1 of `-C`, a bad rule, ...).
    Final,
    /// Nothing was committed; the same call may be made again.
    Retry(&'static str),
    /// Looks transient, but a replay could apply a change twice.
    Unsafe(&'static str),
}

/// What a `*-restore` call looked like, for the restore-only rules.
#[derive(Debug, Clone, Copy)]
pub struct RestoreCall<'a> {
    /// The rules text when the same bytes can be given again (buffered stdin, or a
    /// regular file), else why not: `--noflush`, `--test` and inputs that cannot be
    /// given again are ruled out before the call (restore::replayable_input, prepare).
    pub input: Result<&'a [u8], &'static str>,
}

/// `exit_code` is None when the program died by a signal.
pub fn classify(exit_code: Option<i32>, stderr: &[u8], restore: Option<RestoreCall>) -> Verdict {
    let Some(code) = exit_code.filter(|&c| c != 0) else {
        return Verdict::Final;
    };
    let lines = || stderr.split(|&b| b == b'\n').map(<[u8]>::trim_ascii_end);
    let transient = if code == RESOURCE_PROBLEM {
        lines().find_map(transient_reason)
    } else {
        None
    };
    match restore {
        None => transient.map_or(Verdict::Final, Verdict::Retry),
        Some(call) => classify_restore(code, transient, stderr, call),
    }
}

/// A restore takes the lock and commits table by table, so even a lock failure can come
/// after an earlier table was committed: only a full restore (each table rewritten
/// whole) may be replayed, and only with the very same input.
fn classify_restore(
    code: i32,
    transient: Option<&'static str>,
    stderr: &[u8],
    call: RestoreCall,
) -> Verdict {
    let failed_line = (code == 1)
        .then(|| crate::restore::failed_line(stderr))
        .flatten();
    let reason = match (transient, failed_line) {
        (Some(reason), _) => reason,
        // Which line failed says nothing of why: only that a replay rewrites it whole.
        (None, Some(_)) => "a COMMIT failed; a full restore is safe to replay",
        _ => return Verdict::Final,
    };
    let input = match call.input {
        Ok(input) => input,
        Err(why) => return Verdict::Unsafe(why),
    };
    match (transient, failed_line) {
        (None, Some(n)) if !crate::restore::line_is_commit(input, n) => Verdict::Final,
        _ => Verdict::Retry(reason),
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The attempt's outcome is the call's.
    Stop,
    /// Run again after the delay.
    Retry,
    /// Transient, but no attempt, time or patience is left.
    GiveUp(&'static str),
}

/// Retry only a transient failure, while attempts and time are left and no signal came.
pub fn next_step(
    verdict: Verdict,
    attempt_no: u32,
    max_attempts: u32,
    delay_fits: bool,
    signalled: bool,
    stderr_passed: bool,
) -> Step {
    match verdict {
        Verdict::Final | Verdict::Unsafe(_) => Step::Stop,
        Verdict::Retry(_) if signalled => Step::GiveUp("interrupted by a signal"),
        Verdict::Retry(_) if stderr_passed => Step::GiveUp("its stderr already reached the caller"),
        Verdict::Retry(_) if attempt_no >= max_attempts => Step::GiveUp("no attempts left"),
        Verdict::Retry(_) if !delay_fits => Step::GiveUp("timeout reached"),
        Verdict::Retry(_) => Step::Retry,
    }
}

/// One line at a time, so that words inside a rule comment never count: the EAGAIN rule
/// takes the whole line; the lock-busy rule the start of its line, which iptables 1.8.9
/// (xshared.c, xtables_lock) ends with "Stopped waiting after Ns." or "Perhaps you want
/// to use the -w option?". Since 1.8.8 a lock timeout also prints `Can't lock
/// /run/xtables.lock: Resource temporarily unavailable` first, covered by its second
/// line.
fn transient_reason(line: &[u8]) -> Option<&'static str> {
    let line = std::str::from_utf8(line).ok()?;
    if line.starts_with("Another app is currently holding the xtables lock") {
        return Some("the xtables lock was busy");
    }
    // `iptables: Resource temporarily unavailable.`: EAGAIN from the kernel's table
    // replace, because the table changed between read and write. Nothing committed.
    let program = line.strip_suffix(": Resource temporarily unavailable.")?;
    (!program.is_empty() && !program.contains(char::is_whitespace))
        .then_some("kernel EAGAIN: the table changed, nothing was committed")
}

/// Exponential backoff with jitter: 10, 20, 40 ... ms (capped at 1 s), each scaled by a
/// factor in [0.5, 1.5) from `unit` in [0, 1), so that racing writers spread out.
pub fn backoff(attempt: u32, unit: f64) -> Duration {
    let base_ms = 10u64 << attempt.saturating_sub(1).min(7);
    let base = Duration::from_millis(base_ms.min(1000));
    base.mul_f64(0.5 + unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EAGAIN: &[u8] = b"iptables: Resource temporarily unavailable.\n";
    const LOCK_BUSY: &[u8] = b"Can't lock /run/xtables.lock: Resource temporarily unavailable\n\
        Another app is currently holding the xtables lock. Stopped waiting after 1s.\n";

    fn is_retry(v: Verdict) -> bool {
        matches!(v, Verdict::Retry(_))
    }

    #[test]
    fn plain_calls() {
        let cases: &[(Option<i32>, &[u8], bool)] = &[
            (Some(0), b"", false),
            (Some(0), EAGAIN, false),
            (Some(4), EAGAIN, true),
            (Some(4), b"ip6tables: Resource temporarily unavailable.\n", true),
            (Some(4), b"iptables-legacy: Resource temporarily unavailable.", true),
            (Some(4), LOCK_BUSY, true),
            (Some(4), b"Another app is currently holding the xtables lock. Perhaps you want to use the -w option?\n", true),
            // The Can't-lock line alone is not the kernel's EAGAIN line.
            (Some(4), b"Can't lock /run/xtables.lock: Resource temporarily unavailable\n", false),
            (Some(4), b"Fatal: can't open lock file /run/xtables.lock: Permission denied\n", false),
            (Some(4), b"", false),
            (Some(1), EAGAIN, false),
            (Some(2), EAGAIN, false),
            (Some(3), EAGAIN, false),
            (Some(1), b"iptables: Invalid argument. Run `dmesg' for more information.\n", false),
            (Some(4), b"iptables: Invalid argument. Run `dmesg' for more information.\n", false),
            (Some(1), b"iptables: No chain/target/match by that name.\n", false),
            (Some(2), b"iptables v1.8.9 (legacy): Couldn't load target `f2b-x'\n", false),
            // A substring inside another message does not count.
            (Some(4), b"comment foo: Resource temporarily unavailable.\n", false),
            (Some(4), b"xx iptables: Resource temporarily unavailable. yy\n", false),
            (None, EAGAIN, false),
        ];
        for (code, stderr, want) in cases {
            let got = classify(*code, stderr, None);
            assert_eq!(
                is_retry(got),
                *want,
                "{code:?} {:?} -> {got:?}",
                String::from_utf8_lossy(stderr)
            );
        }
    }

    #[test]
    fn restore_calls() {
        let input: &[u8] = b"*filter\n-A INPUT -j ACCEPT\nCOMMIT\n";
        let full = RestoreCall { input: Ok(input) };
        let noflush = RestoreCall {
            input: Err("--noflush: the commit may have applied"),
        };
        let unknown = RestoreCall {
            input: Err("the input cannot be replayed"),
        };
        let failed_commit = b"iptables-restore: line 3 failed\n";
        let failed_rule = b"iptables-restore: line 2 failed\n";
        assert!(is_retry(classify(Some(1), failed_commit, Some(full))));
        assert_eq!(classify(Some(1), failed_rule, Some(full)), Verdict::Final);
        assert!(matches!(
            classify(Some(1), failed_commit, Some(noflush)),
            Verdict::Unsafe(_)
        ));
        assert!(matches!(
            classify(Some(1), failed_commit, Some(unknown)),
            Verdict::Unsafe(_)
        ));
        assert!(is_retry(classify(Some(4), LOCK_BUSY, Some(full))));
        assert!(matches!(
            classify(Some(4), LOCK_BUSY, Some(noflush)),
            Verdict::Unsafe(_)
        ));
        assert_eq!(classify(Some(2), failed_commit, Some(full)), Verdict::Final);
        assert_eq!(classify(Some(0), failed_commit, Some(full)), Verdict::Final);
        assert!(matches!(
            classify(Some(4), LOCK_BUSY, Some(unknown)),
            Verdict::Unsafe("the input cannot be replayed")
        ));
        // `COMMIT ` is not a COMMIT to iptables: it fails the same way every time.
        let spaced = RestoreCall {
            input: Ok(b"*filter\n-A INPUT -j ACCEPT\nCOMMIT \n"),
        };
        assert_eq!(
            classify(Some(1), failed_commit, Some(spaced)),
            Verdict::Final
        );
    }

    #[test]
    #[rustfmt::skip]
    fn steps() {
        let retry = Verdict::Retry("x");
        let cases = [
            (Verdict::Final, 1, true, false, false, Step::Stop),
            (Verdict::Unsafe("x"), 1, true, false, false, Step::Stop),
            (retry, 1, true, false, false, Step::Retry),
            (retry, 4, true, false, false, Step::Retry),
            (retry, 5, true, false, false, Step::GiveUp("no attempts left")),
            (retry, 1, false, false, false, Step::GiveUp("timeout reached")),
            (retry, 1, true, true, false, Step::GiveUp("interrupted by a signal")),
            (retry, 1, true, false, true, Step::GiveUp("its stderr already reached the caller")),
        ];
        for (verdict, attempt, fits, signalled, passed, want) in cases {
            assert_eq!(
                next_step(verdict, attempt, 5, fits, signalled, passed),
                want,
                "{verdict:?} {attempt}"
            );
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        assert_eq!(backoff(1, 0.5), Duration::from_millis(10));
        assert_eq!(backoff(2, 0.5), Duration::from_millis(20));
        assert_eq!(backoff(3, 0.0), Duration::from_millis(20));
        assert_eq!(backoff(4, 0.5), Duration::from_millis(80));
        assert_eq!(backoff(30, 0.5), Duration::from_millis(1000));
        assert!(backoff(30, 1.0) <= Duration::from_millis(1500));
        assert_eq!(backoff(0, 0.5), Duration::from_millis(10));
    }
}
