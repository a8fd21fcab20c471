//! The attempts of one call, under the lock: run, judge the outcome (`retry`), and run
//! again after a backoff while what failed committed nothing, attempts and time are
//! left and no signal came. Each step leaves its event for the log.

use crate::classify::Kind;
use crate::config::Config;
use crate::input::Prepared;
use crate::invocation::{Call, with_caller};
use crate::log::{Event, EventKind};
use crate::retry::{self, RestoreCall, Step, Verdict};
use crate::run::{self, Attempt, Input, Program, RunError, Stderr};
use crate::status::Failure;
use std::time::{Duration, Instant};

/// What every attempt of one call shares.
pub struct Attempts<'a> {
    pub call: &'a Call,
    pub config: &'a Config,
    pub program: &'a Program<'a>,
    pub kind: &'a Kind,
    pub prepared: Option<&'a Prepared>,
    pub input: &'a Input<'a>,
    pub deadline: Instant,
    pub waited: Duration,
}

/// The attempt whose outcome is the call's.
pub struct Outcome {
    pub attempt: Attempt,
    pub attempts: u32,
    /// A signal ended the backoff before the next attempt: die by it.
    pub interrupted_by: Option<i32>,
}

/// Run until success, a failure that is final, or no attempts or time left.
pub fn run(a: &Attempts, events: &mut Vec<Event>) -> Result<Outcome, Failure> {
    let Attempts {
        call,
        config,
        program,
        kind,
        prepared,
        input,
        deadline,
        waited,
    } = *a;
    // Only what may be retried needs its stderr read; the rest keeps the caller's.
    let stderr = match kind {
        Kind::Command(_) | Kind::Restore(_) => Stderr::Capture,
        Kind::Save | Kind::Read | Kind::StdinToEof | Kind::Other => Stderr::Inherit,
    };
    let max_attempts = config.retries + 1;
    let mut attempt_no = 1;
    loop {
        let attempt = run::run_once(program, input, &stderr).map_err(|e| match e {
            RunError::Spawn(e) => Failure::cannot_run(program.path, &e),
            RunError::Wait(e) => Failure::Own(format!(
                "cannot wait for {}: {}",
                program.path.display(),
                crate::text::errno_text(&e)
            )),
        })?;
        let verdict = match kind {
            Kind::Command(_) => retry::classify(attempt.exit_code(), &attempt.stderr, None),
            Kind::Restore(_) => retry::classify(
                attempt.exit_code(),
                &attempt.stderr,
                prepared.map(|prepared| RestoreCall {
                    input: prepared.replay(),
                }),
            ),
            Kind::Save | Kind::Read | Kind::StdinToEof | Kind::Other => Verdict::Final,
        };
        let delay = retry::backoff(attempt_no, fastrand::f64());
        let step = retry::next_step(
            verdict,
            attempt_no,
            max_attempts,
            Instant::now() + delay <= deadline,
            crate::signals::received().is_some(),
            attempt.stderr_passed,
        );
        let event = |kind| {
            let e = call
                .event(kind)
                .field("attempt", format!("{attempt_no}/{max_attempts}"))
                .field("status", attempt.shell_status().to_string())
                .field("wait_ms", waited.as_millis().to_string())
                .field("run_ms", attempt.elapsed.as_millis().to_string());
            with_caller(e).field("stderr", &attempt.stderr)
        };
        match (step, verdict) {
            (Step::Retry, Verdict::Retry(reason)) => {
                let e = event(EventKind::Retry)
                    .field("reason", reason)
                    .field("delay_ms", delay.as_millis().to_string());
                events.push(e);
                if let Some(signal) = crate::signals::sleep_unless_signalled(delay) {
                    let e = event(EventKind::GaveUp)
                        .field("reason", reason)
                        .field("why", "interrupted by a signal");
                    events.push(e);
                    return Ok(Outcome {
                        attempt,
                        attempts: attempt_no,
                        interrupted_by: Some(signal),
                    });
                }
                attempt_no += 1;
                continue;
            }
            (Step::GiveUp(why), Verdict::Retry(reason)) => {
                events.push(
                    event(EventKind::GaveUp)
                        .field("reason", reason)
                        .field("why", why),
                );
                // Nothing was committed and the caller asked us to stop: die by it.
                if let Some(signal) = crate::signals::received() {
                    return Ok(Outcome {
                        attempt,
                        attempts: attempt_no,
                        interrupted_by: Some(signal),
                    });
                }
            }
            (_, Verdict::Unsafe(reason)) => {
                events.push(event(EventKind::NotRetried).field("reason", reason));
            }
            _ => {
                if let Some(event_kind) = final_event(kind, &attempt, config.verbose) {
                    events.push(event(event_kind));
                }
            }
        }
        return Ok(Outcome {
            attempt,
            attempts: attempt_no,
            interrupted_by: None,
        });
    }
}

/// How a final outcome is logged, if at all: an answer (`-C` saying "absent") is not a
/// failure; a refusal (exit 1-3) is worth a note; a death by signal is worth a warning.
pub fn final_event(kind: &Kind, attempt: &Attempt, verbose: bool) -> Option<EventKind> {
    let is_check = matches!(kind, Kind::Command(c) if c.check);
    match (attempt.exit_code(), attempt.signal()) {
        (Some(0), _) => None,
        (Some(1), _) if is_check => verbose.then_some(EventKind::Answer),
        (Some(_), _) => Some(EventKind::Failed),
        (None, Some(_)) => Some(EventKind::Killed),
        (None, None) => None,
    }
}
