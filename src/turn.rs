//! How a call gets its turn: it takes the lock, joins the caller that holds it for us,
//! or, as a single command that could be committed with others (`batch`), waits in the
//! queue of group commit, from which a holder may run the command for it.
//!
//! A queued call whose command a holder claimed (renamed its entry) must never run it
//! itself, even after its own timeout: the holder's result is its result.

use crate::batch::{self, Candidate};
use crate::classify::{self, Backend, Kind};
use crate::config::Config;
use crate::guard::{self, Guard};
use crate::invocation::Call;
use crate::queue::{Queue, Served, Ticket};
use crate::status::Failure;
use crate::wait::StdinPump;
use std::path::Path;
use std::time::Duration;

/// What the wait for the lock ended in.
pub enum Turn {
    /// Ours to run under `guard`; `ticket` is our queue entry (withdrawn, or claimed by
    /// a holder we then succeeded), to finish once we are done.
    Run {
        guard: Guard,
        ticket: Option<Ticket>,
    },
    /// A holder ran our command: its result is ours.
    Served(Served),
    /// The lock could not be had: why, for the caller and the log.
    NoLock(String),
}

/// The command this call could commit with others, if it may wait in the queue: a
/// write of a batchable shape (`batch::candidate`), not with `-w N` (once a holder has
/// claimed it, the caller could no longer keep its own deadline).
pub fn candidate(
    call: &Call,
    kind: &Kind,
    path: &Path,
    backend: impl Fn() -> Option<Backend>,
    config: &Config,
) -> Option<Candidate> {
    match kind {
        Kind::Command(c)
            if c.effect == classify::Effect::Write
                && !matches!(c.wait, classify::Wait::Seconds(_)) =>
        {
            batch::candidate(call, path, backend(), config)
        }
        _ => None,
    }
}

/// Wait for our turn within `timeout`, the caller's stdin pumped meanwhile. Err: a
/// failure of ours that is not the lock's (a wake without a result; a join after a
/// holder took our command, which only the lock may settle).
pub fn wait(
    call: &Call,
    config: &Config,
    candidate: Option<&Candidate>,
    queue: &Queue,
    timeout: Duration,
    pump: Option<&mut StdinPump>,
) -> Result<Turn, Failure> {
    let mut ticket: Option<Ticket> = None;
    let mut taken = guard::take(&config.lock_file, timeout, pump, &mut || {
        ticket = queue.enqueue(candidate?.request()?);
        crate::nesting::checkpoint("queued");
        ticket.as_ref().map(Ticket::wake_fd)
    });
    let taken_by_holder = taken.is_err() && ticket.as_ref().is_some_and(|t| !t.withdraw());
    if taken_by_holder && let Some(ticket) = &ticket {
        // A holder took our command before we gave up: its result is ours, applied or
        // not. Wait for it (or for the lock, to settle it if that holder died) once more.
        taken = guard::take(&config.lock_file, timeout, None, &mut || {
            Some(ticket.wake_fd())
        });
    }
    let name = call.display_name();
    match taken {
        Ok(Guard::Served) => {
            let served = ticket.as_ref().and_then(Ticket::result);
            if let Some(ticket) = ticket {
                ticket.finish();
            }
            let served =
                served.ok_or_else(|| Failure::Own(format!("{name}: woken without a result")))?;
            Ok(Turn::Served(served))
        }
        // A holder has our command: only the lock lets us settle it, never a join.
        Ok(guard) if taken_by_holder && !matches!(guard, Guard::Held { .. }) => {
            Err(Failure::Lock(format!("{name}: {TAKEN_BY_HOLDER}")))
        }
        Ok(guard) => Ok(Turn::Run { guard, ticket }),
        Err(message) => {
            if let Some(ticket) = ticket {
                ticket.finish();
            }
            Ok(Turn::NoLock(if taken_by_holder {
                format!("{message}; {TAKEN_BY_HOLDER}")
            } else {
                message
            }))
        }
    }
}

const TAKEN_BY_HOLDER: &str =
    "the holder had taken the command into a batch and may still apply it";
