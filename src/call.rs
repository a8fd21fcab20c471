//! One firewall call, in the order it happens (as flock.c's main reads):
//! classify and resolve → a read runs in our place → the input is made ready → lock
//! (or join the caller that holds it for us) → attempts → release → pass stderr → log.
//! Every decision is a named step in its own module; logging happens only after the
//! lock is released, so a slow log never holds it.

use crate::attempts::{self, Attempts};
use crate::batch;
use crate::classify;
use crate::config::Config;
use crate::guard::Guard;
use crate::input::Prepared;
use crate::invocation::{Call, with_caller};
use crate::log::{Event, EventKind, Logger};
use crate::nesting;
use crate::queue::Queue;
use crate::resolve;
use crate::run::{self, Input, Program};
use crate::status::{Exit, Failure};
use crate::turn::{self, Turn};
use crate::wait::StdinPump;
use std::time::{Duration, Instant};

/// A waiter logs when it waited longer than this.
const SLOW_WAIT: Duration = Duration::from_secs(1);

/// One call. Every event is logged at the end, after the lock is released.
pub fn run(call: &Call, config: &Config, logger: &Logger) -> Result<Exit, Failure> {
    let mut events = Vec::new();
    let result = run_logged(call, config, &mut events).map(as_bare_after_a_gone_reader);
    if let Err(failure) = &result
        && !events.iter().any(|e| e.kind == EventKind::LockFailed)
    {
        let e = call
            .event(EventKind::XtlockFailed)
            .field("status", failure.exit_code().to_string())
            .field("error", failure.message());
        events.push(with_caller(e));
    }
    for event in &events {
        logger.log(event);
    }
    result
}

/// Bare, a program whose output meets a reader that is gone dies there by SIGPIPE,
/// unless the caller ignores or blocks it (then its write fails and it goes on).
/// xtlock passes the program's captured stderr (and a queued call's output) on itself,
/// so the call ends as the program would have.
fn as_bare_after_a_gone_reader(exit: Exit) -> Exit {
    match exit {
        Exit::Status(_)
            if crate::output::passed_to_no_reader() && crate::signals::sigpipe_kills() =>
        {
            Exit::Signal(libc::SIGPIPE)
        }
        exit => exit,
    }
}

fn run_logged(call: &Call, config: &Config, events: &mut Vec<Event>) -> Result<Exit, Failure> {
    let start = Instant::now();
    // 1. Classify and resolve.
    let depth = nesting::check_depth(&call.display_name())?;
    let path = resolve::program_for(&call.target, &call.display_name())?;
    // Found by following links (a few system calls): only when a decision needs it.
    let backend = std::cell::OnceCell::new();
    let backend = || *backend.get_or_init(|| resolve::backend_of(&path));
    let posixly_correct = std::env::var_os("POSIXLY_CORRECT").is_some();
    let name = classify::dispatch_name(&call.arg0);
    let kind = classify::classify(name, &call.args, backend, posixly_correct);
    let mut env = vec![(nesting::DEPTH_VAR, (depth + 1).to_string())];
    let program = |env, lock_fd| Program {
        path: &path,
        arg0: &call.arg0,
        args: &call.args,
        env,
        lock_fd,
    };

    // 2. A read runs in our place: no lock, no spawn.
    if classify::runs_in_our_place(&kind, backend, config.verbose) {
        let e = run::exec(&program(&env, None));
        return Err(Failure::cannot_run(&path, &e));
    }

    // Legacy iptables takes a lock of its own while it runs under ours: if that is our
    // lock file, it would wait for us for ever.
    if classify::takes_iptables_lock(&kind, backend()) {
        let var = std::env::var_os(classify::IPTABLES_LOCK_VAR);
        let theirs = classify::iptables_lock_path(var.as_deref());
        if crate::lock::same_file(&theirs, &config.lock_file) {
            return Err(Failure::Lock(format!(
                "{}: its own lock file {} is xtlock's lock file, which it would wait for for ever; \
                 unset XTABLES_LOCKFILE, or give xtlock another lock_file",
                call.display_name(),
                theirs.display()
            )));
        }
    }

    // 3. The input, made ready before the lock (a slow writer is not lock wait): a full
    // restore's stdin read whole to be replayable; a program that reads its stdin to
    // the end from a pipe waits for its first input, and has it pumped while it waits
    // for the lock, so that a writer feeding the pipe never blocks on it.
    let prepared = match &kind {
        classify::Kind::Restore(args) => Some(
            crate::input::prepare(args.as_ref(), config.max_stdin)
                .map_err(|f| Failure::Own(format!("{}: {f}", call.display_name())))?,
        ),
        _ => None,
    };
    let mut pump = match prepared {
        Some(Prepared::Buffered(_)) => None,
        _ if classify::reads_stdin_to_eof(&kind) => StdinPump::for_stdin(config.max_stdin as usize),
        _ => None,
    };
    if let Some(pump) = &pump {
        pump.wait_for_input();
    }

    // 4. Lock, or join the caller that holds it for us. A single command that could be
    // committed with others waits in the queue of group commit (`batch`), from which
    // the holder may run it for us.
    let lock_start = Instant::now();
    let timeout = classify::lock_timeout(&kind, config.timeout);
    let candidate = turn::candidate(call, &kind, &path, backend, config);
    let queue = Queue::of(&config.lock_file);
    let turn = turn::wait(
        call,
        config,
        candidate.as_ref(),
        &queue,
        timeout,
        pump.as_mut(),
    )?;
    let (guard, ticket) = match turn {
        Turn::Run { guard, ticket } => (guard, ticket),
        Turn::Served(served) => return batch::finish_served(served, &call.display_name()),
        Turn::NoLock(message) => {
            let message = match &pump {
                Some(pump) if pump.is_full() => format!(
                    "{message}; its input filled max_stdin ({} bytes) while it waited",
                    config.max_stdin
                ),
                _ => message,
            };
            let e = call
                .event(EventKind::LockFailed)
                .field("wait_ms", lock_start.elapsed().as_millis().to_string())
                .field("error", &message);
            events.push(with_caller(e));
            return Err(Failure::Lock(message));
        }
    };
    if let Guard::Unlocked { error } = &guard {
        let e = call.event(EventKind::Unlocked).field("error", error).field(
            "reason",
            "the caller may not open the lock file; the program runs as it would bare",
        );
        events.push(with_caller(e));
    }
    // Our program's nested calls join us by this token (an empty one: there is none).
    let token = guard.token().map(nesting::token_text);
    env.push((nesting::TOKEN_VAR, token.unwrap_or_default()));
    let waited = lock_start.elapsed();
    if waited > SLOW_WAIT {
        let e = call
            .event(EventKind::SlowWait)
            .field("wait_ms", waited.as_millis().to_string());
        events.push(with_caller(e));
    }
    crate::signals::install();

    // 5. Under the lock, the queued commands our command can be committed with run
    // together with it (group commit).
    if let (Some(own), Guard::Held { .. }) = (&candidate, &guard)
        && (ticket.is_some() || !queue.is_idle(batch::GATHER_RECENT))
    {
        let holder = batch::Holder {
            queue: &queue,
            own,
            ticket: ticket.as_ref(),
            call,
            config,
            lock_fd: guard.fd_for(backend()),
            deadline: lock_start + timeout,
        };
        let led = holder.lead(events);
        if let batch::Led::Served(served) = led {
            // Our claimed entry goes before the lock: the next holder would take a
            // claim with no result for one whose holder died, and run it again.
            if let Some(ticket) = ticket {
                ticket.finish();
            }
            guard.release();
            if let Some(signal) = crate::signals::received() {
                return Ok(Exit::Signal(signal));
            }
            return batch::finish_served(served, &call.display_name());
        }
    }

    // 6. Attempts, under the lock; then release it.
    let input = match (&prepared, &pump) {
        (Some(Prepared::Buffered(bytes)), _) => Input::Replay(bytes),
        (_, Some(pump)) if !pump.bytes.is_empty() => Input::Relay {
            prefix: &pump.bytes,
            then_stdin: !pump.eof,
        },
        _ => Input::Inherit,
    };
    // A flush has its tables looked at before and after, still under the lock.
    let watch = crate::flushes::Watch::start(call, &kind, &path, backend());
    let attempts = Attempts {
        call,
        config,
        program: &program(&env, guard.fd_for(backend())),
        kind: &kind,
        prepared: prepared.as_ref(),
        input: &input,
        deadline: lock_start + timeout,
        waited,
    };
    let outcome = attempts::run(&attempts, events);
    if let Some(event) = watch.and_then(|w| w.finish(call)) {
        events.push(event);
    }
    guard.release();
    if let Some(ticket) = ticket {
        ticket.finish();
    }

    // 7. Pass the last attempt's stderr and status through.
    let outcome = outcome?;
    let attempt = &outcome.attempt;
    if !attempt.stderr_passed {
        crate::output::pass_through(crate::output::Stream::Stderr, &attempt.stderr);
    }
    if config.verbose {
        let e = call
            .event(EventKind::Call)
            .field("status", attempt.shell_status().to_string())
            .field("attempts", outcome.attempts.to_string())
            .field("wait_ms", waited.as_millis().to_string())
            .field("total_ms", start.elapsed().as_millis().to_string());
        events.push(with_caller(e));
    }
    if let Some(signal) = outcome.interrupted_by {
        return Ok(Exit::Signal(signal));
    }
    Ok(match attempt.signal() {
        Some(signal) if crate::signals::received() == Some(signal) => Exit::Signal(signal),
        // It wrote to a reader that is gone (a stream of the caller's it inherited, a
        // pipe of its own): bare, the caller would see this very death.
        Some(libc::SIGPIPE) => Exit::Signal(libc::SIGPIPE),
        _ => Exit::Status(attempt.shell_status()),
    })
}
