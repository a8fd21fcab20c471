//! One firewall call, in the order it happens (as flock.c's main reads):
//! classify and resolve → a read runs in our place → a restore's input is made ready →
//! lock (or join the ancestor that holds it) → attempts → release → pass stderr → log.
//! Logging happens only after the lock is released: a slow log never holds it.

use crate::classify::{self, Backend, Effect, Kind, Wait};
use crate::config::Config;
use crate::lock::{Held, LockError, LockFile};
use crate::log::{Event, EventKind, Logger};
use crate::nesting;
use crate::resolve::{self, SelfIdentity};
use crate::restore::Prepared;
use crate::retry::{self, RestoreCall, Step, Verdict};
use crate::run::{self, Attempt, Input, Program, RunError, Stderr};
use crate::status::{Exit, Failure};
use crate::wait::StdinPump;
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A waiter logs when it waited longer than this.
const SLOW_WAIT: Duration = Duration::from_secs(1);

pub enum Target {
    /// A bare name, looked up in PATH, skipping xtlock.
    Name(OsString),
    /// A name with a `/`, taken as given.
    Path(PathBuf),
    /// A shim called by this path (as ufw calls /usr/sbin/iptables): if that path is
    /// xtlock by `install --divert`, the program it replaced; else the name, in PATH.
    CalledAs(PathBuf, OsString),
}

pub struct Call {
    /// The program's file name, for the PATH lookup and logs (classification goes by
    /// `classify::dispatch_name(arg0)`, what the real program dispatches on).
    pub name: OsString,
    /// argv[0] for the real program: what our caller used.
    pub arg0: OsString,
    pub target: Target,
    pub args: Vec<OsString>,
}

impl Call {
    /// A shim called as `arg0`: always looked up by its file name in PATH (skipping
    /// xtlock), even when called by a path, which would otherwise name xtlock itself.
    pub fn shim(arg0: OsString, args: Vec<OsString>) -> Call {
        let name = file_name(&arg0);
        let target = match arg0.as_encoded_bytes().contains(&b'/') {
            true => Target::CalledAs(PathBuf::from(&arg0), name.clone()),
            false => Target::Name(name.clone()),
        };
        Call {
            target,
            name,
            arg0,
            args,
        }
    }

    /// `xtlock PROGRAM ARGS...`.
    pub fn new(program: OsString, args: Vec<OsString>) -> Call {
        let target = match program.as_encoded_bytes().contains(&b'/') {
            true => Target::Path(PathBuf::from(&program)),
            false => Target::Name(program.clone()),
        };
        Call {
            name: file_name(&program),
            arg0: program,
            target,
            args,
        }
    }

    fn display_name(&self) -> String {
        self.name.to_string_lossy().into_owned()
    }

    fn event(&self, kind: EventKind) -> Event {
        Event::new(kind)
            .field("prog", self.name.as_encoded_bytes())
            .field("args", crate::text::shell_join_bytes(&self.args))
    }
}

fn file_name(program: &OsStr) -> OsString {
    Path::new(program)
        .file_name()
        .map_or_else(|| program.to_os_string(), OsStr::to_os_string)
}

/// Who called us: the parent's pid and command line.
fn with_caller(event: Event) -> Event {
    let ppid = std::os::unix::process::parent_id();
    event
        .field("caller_pid", ppid.to_string())
        .field("caller", crate::procinfo::describe(ppid))
}

/// One call. Every event is logged at the end, after the lock is released.
pub fn run(call: &Call, config: &Config, logger: &Logger) -> Result<Exit, Failure> {
    let mut events = Vec::new();
    let result = run_logged(call, config, &mut events);
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

fn run_logged(call: &Call, config: &Config, events: &mut Vec<Event>) -> Result<Exit, Failure> {
    let start = Instant::now();
    let depth = check_depth(call)?;
    let path = resolve_program(call)?;
    // Found by following links (a few system calls): only when the decision needs it.
    let backend = std::cell::OnceCell::new();
    let backend = || *backend.get_or_init(|| backend_of(&path));
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

    if runs_in_our_place(&kind, backend, config.verbose) {
        let e = run::exec(&program(&env, None));
        return Err(spawn_failure(&path, e));
    }

    let prepared = match &kind {
        Kind::Restore(args) => Some(
            crate::restore::prepare(args.as_ref(), config.max_stdin)
                .map_err(|f| Failure::Own(format!("{}: {f}", call.display_name())))?,
        ),
        _ => None,
    };
    // A program that reads its stdin to the end from a pipe takes the lock once its
    // input starts, and its input is drained into memory while it waits: a locked
    // writer feeding the pipe never blocks on a reader that holds or awaits the lock.
    let mut pump = match (&kind, &prepared) {
        (_, Some(Prepared::Buffered(_))) => None,
        _ if classify::reads_stdin_to_eof(&kind) => StdinPump::for_stdin(config.max_stdin as usize),
        _ => None,
    };
    if let Some(pump) = &pump {
        pump.wait_for_input();
    }
    let lock_start = Instant::now();
    let timeout = lock_timeout(&kind, config.timeout);
    let guard = lock(call, config, timeout, pump.as_mut(), events)?;
    // Our program's nested calls join us by this token (an empty one: there is none).
    env.push((
        nesting::TOKEN_VAR,
        guard.token().map(nesting::token_text).unwrap_or_default(),
    ));
    let waited = lock_start.elapsed();
    if waited > SLOW_WAIT {
        let e = call
            .event(EventKind::SlowWait)
            .field("wait_ms", waited.as_millis().to_string());
        events.push(with_caller(e));
    }
    crate::signals::install();

    let input = match (&prepared, &pump) {
        (Some(Prepared::Buffered(bytes)), _) => Input::Replay(bytes),
        (_, Some(pump)) if !pump.bytes.is_empty() => Input::Relay {
            prefix: &pump.bytes,
            then_stdin: !pump.eof,
        },
        _ => Input::Inherit,
    };
    let outcome = attempts(
        &Attempts {
            call,
            config,
            program: &program(&env, guard.fd_for(backend())),
            kind: &kind,
            prepared: prepared.as_ref(),
            input: &input,
            deadline: lock_start + timeout,
            waited,
        },
        events,
    );
    guard.release();
    let outcome = outcome?;
    let attempt = &outcome.attempt;
    if !attempt.stderr_passed {
        let _ = std::io::stderr().write_all(&attempt.stderr);
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
        _ => Exit::Status(attempt.shell_status()),
    })
}

/// Reads need neither the lock nor a spawn: exec the program in our place. A read of
/// the legacy backend without `-w` stays on the write path: iptables 1.6 to 1.8.7 then
/// fail at once if iptables' own lock is busy, and xtlock's queue spares them that.
/// Under --verbose a read is spawned, so that it is logged.
pub fn runs_in_our_place(
    kind: &Kind,
    backend: impl FnOnce() -> Option<Backend>,
    verbose: bool,
) -> bool {
    if verbose {
        return false;
    }
    match kind {
        Kind::Save | Kind::Read => true,
        Kind::Restore(Some(crate::restore::RestoreArgs::HelpOrVersion)) => true,
        Kind::Command(command) => match command.effect {
            Effect::HelpOrVersion => true,
            Effect::ReadOnly => command.wait != Wait::Absent || backend() == Some(Backend::Nft),
            Effect::Write => false,
        },
        Kind::Restore(_) | Kind::StdinToEof | Kind::Other => false,
    }
}

/// The caller's `iptables -w N` bounds xtlock's wait too; `-w` alone or none: the
/// configured timeout.
pub fn lock_timeout(kind: &Kind, configured: Duration) -> Duration {
    match kind {
        Kind::Command(c) => match c.wait {
            Wait::Seconds(n) if n > 0 => Duration::from_secs(n as u64),
            _ => configured,
        },
        _ => configured,
    }
}

/// The backend of the multi-call binary `path` reaches through its links.
fn backend_of(path: &Path) -> Option<Backend> {
    let real = std::fs::canonicalize(path).ok()?;
    classify::backend_of_multi(real.file_name()?)
}

/// A copy of xtlock ahead of the real program would run itself forever.
fn check_depth(call: &Call) -> Result<u32, Failure> {
    let depth = nesting::depth(std::env::var_os(nesting::DEPTH_VAR).as_deref());
    if depth < nesting::MAX_DEPTH {
        return Ok(depth);
    }
    let name = call.display_name();
    Err(Failure::Own(format!(
        "{name}: xtlock calls nested {depth} deep; is a copy of xtlock ahead of the real {name} in PATH?"
    )))
}

enum Guard {
    /// We hold the lock; our nested calls join by `token` (None: the lock file is
    /// read-only, so there is no record and they find us in /proc).
    Held { held: Held, token: Option<u64> },
    /// Nested under an ancestor's lock: our gate read lock on `lock` keeps the next
    /// holder from starting while we run.
    Nested { lock: LockFile, token: Option<u64> },
    /// A caller that is not root may not open the lock file: run as bare would.
    Unlocked,
}

impl Guard {
    /// The descriptor that holds our lock (or gate read lock), for the program to keep
    /// when it is one of iptables' multi-call binaries (`backend` known): if xtlock is
    /// SIGKILLed, the next caller still waits for the program. Never for anything else,
    /// a script named iptables included, whose background children (a daemon, a
    /// `sleep &`) would hold the lock for ever.
    fn fd_for(&self, backend: Option<Backend>) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        backend?;
        match self {
            Guard::Held { held, .. } => Some(held.file().as_raw_fd()),
            Guard::Nested { lock, .. } => Some(lock.file().as_raw_fd()),
            Guard::Unlocked => None,
        }
    }

    fn token(&self) -> Option<u64> {
        match self {
            Guard::Held { token, .. } | Guard::Nested { token, .. } => *token,
            Guard::Unlocked => None,
        }
    }

    /// Never waits: a nested call still running keeps the next holder waiting, not us.
    fn release(self) {
        match &self {
            Guard::Held { .. } => nesting::checkpoint("holder-done"),
            Guard::Nested { .. } => nesting::checkpoint("nested-done"),
            Guard::Unlocked => {}
        }
        match self {
            Guard::Held {
                held,
                token: Some(token),
            } => nesting::close_domain(held.file(), token),
            Guard::Nested {
                lock,
                token: Some(token),
            } => nesting::leave(lock.file(), token),
            _ => {}
        }
    }
}

fn lock(
    call: &Call,
    config: &Config,
    timeout: Duration,
    mut pump: Option<&mut StdinPump>,
    events: &mut Vec<Event>,
) -> Result<Guard, Failure> {
    let start = Instant::now();
    let deadline = start + timeout;
    let lock_failed = |events: &mut Vec<Event>, message: String| {
        let e = call
            .event(EventKind::LockFailed)
            .field("wait_ms", start.elapsed().as_millis().to_string())
            .field("error", &message);
        events.push(with_caller(e));
        Failure::Lock(message)
    };
    let path = &config.lock_file;
    let io_failed = |events: &mut Vec<Event>, e| {
        lock_failed(events, LockError::Lock(path.clone(), e).to_string())
    };
    let lock = match LockFile::open(path) {
        Ok(lock) => lock,
        // Root never runs unlocked: only a caller without root's rights runs as bare.
        Err(e) if e.is_permission() && !crate::procinfo::running_as_root() => {
            let e = call
                .event(EventKind::Unlocked)
                .field("error", e.to_string())
                .field(
                    "reason",
                    "the caller may not open the lock file; the program runs as it would bare",
                );
            events.push(with_caller(e));
            return Ok(Guard::Unlocked);
        }
        Err(e) => return Err(lock_failed(events, e.to_string())),
    };
    let our_token = nesting::token_from_env(std::env::var_os(nesting::TOKEN_VAR).as_deref());
    if let Some(token) = our_token {
        match nesting::join(lock.file(), token, deadline, pump.as_deref_mut()) {
            Ok(true) => {
                nesting::checkpoint("nested-joined");
                return Ok(Guard::Nested {
                    lock,
                    token: Some(token),
                });
            }
            Ok(false) => {}
            Err(e) => return Err(io_failed(events, e)),
        }
    }
    let held = match lock.try_acquire() {
        Ok(Ok(held)) => held,
        Ok(Err(busy)) => {
            // Without a token (env -i, sudo), an ancestor in /proc may hold it for us.
            if our_token.is_none() {
                match nesting::join_by_ancestry(&busy, deadline, pump.as_deref_mut()) {
                    Ok(Some(token)) => return Ok(Guard::Nested { lock: busy, token }),
                    Ok(None) => {}
                    Err(e) => return Err(io_failed(events, e)),
                }
            }
            busy.acquire(deadline, timeout, pump.as_deref_mut())
                .map_err(|e| lock_failed(events, e.to_string()))?
        }
        Err(e) => return Err(lock_failed(events, e.to_string())),
    };
    nesting::checkpoint("holder-locked");
    match nesting::open_domain(held.file(), deadline, pump) {
        Ok(token) => Ok(Guard::Held { held, token }),
        Err(nesting::OpenError::NestedStillRunning) => {
            let message = format!(
                "timed out after {}s waiting for {}: nested calls of its previous holder still run",
                timeout.as_secs_f64(),
                path.display()
            );
            Err(lock_failed(events, message))
        }
        Err(nesting::OpenError::Io(e)) => Err(io_failed(events, e)),
    }
}

/// What every attempt of one call shares.
struct Attempts<'a> {
    call: &'a Call,
    config: &'a Config,
    program: &'a Program<'a>,
    kind: &'a Kind,
    prepared: Option<&'a Prepared>,
    input: &'a Input<'a>,
    deadline: Instant,
    waited: Duration,
}

/// The attempt whose outcome is the call's.
struct Outcome {
    attempt: Attempt,
    attempts: u32,
    /// A signal ended the backoff before the next attempt: die by it.
    interrupted_by: Option<i32>,
}

/// Run until success, a failure that is final, or no attempts or time left.
fn attempts(a: &Attempts, events: &mut Vec<Event>) -> Result<Outcome, Failure> {
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
            RunError::Spawn(e) => spawn_failure(program.path, e),
            RunError::Wait(e) => Failure::Own(format!(
                "cannot wait for {}: {}",
                program.path.display(),
                crate::lock::errno_text(&e)
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

fn resolve_program(call: &Call) -> Result<PathBuf, Failure> {
    let me = SelfIdentity::current();
    let probe = |p: &Path| match &me {
        Some(me) => me.probe(p),
        // Neither /proc nor the path we were run by: we cannot tell ourselves apart;
        // the depth guard still stops a loop.
        None => resolve::Candidate::Program,
    };
    let path_var = std::env::var_os("PATH");
    let found = match &call.target {
        Target::Name(name) => resolve::find_in_path(name, path_var.as_deref(), probe),
        Target::Path(path) => resolve::check_path(path, probe),
        Target::CalledAs(path, name) => match probe(path) {
            resolve::Candidate::Diverted(real) => Ok(real),
            _ => resolve::find_in_path(name, path_var.as_deref(), probe),
        },
    };
    let name = call.display_name();
    found.map_err(|e| match &e {
        resolve::ResolveError::NotExecutable { .. } => Failure::CannotRun(format!("{name}: {e}")),
        resolve::ResolveError::NotFound { .. } => Failure::NotFound(e.to_string()),
    })
}

fn spawn_failure(path: &Path, e: std::io::Error) -> Failure {
    let message = format!(
        "cannot run {}: {}",
        path.display(),
        crate::lock::errno_text(&e)
    );
    match e.raw_os_error() {
        Some(libc::ENOENT) => Failure::NotFound(message),
        _ => Failure::CannotRun(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Command;

    fn command(effect: Effect, wait: Wait) -> Kind {
        Kind::Command(Command {
            effect,
            wait,
            check: false,
        })
    }

    #[test]
    fn which_calls_run_in_our_place() {
        use Effect::*;
        let nft = Some(Backend::Nft);
        let legacy = Some(Backend::Legacy);
        let cases = [
            (Kind::Save, legacy, true),
            (Kind::Read, None, true),
            (Kind::StdinToEof, None, false),
            (command(HelpOrVersion, Wait::Absent), legacy, true),
            (command(ReadOnly, Wait::Unbounded), legacy, true),
            (command(ReadOnly, Wait::Seconds(5)), None, true),
            (command(ReadOnly, Wait::Absent), nft, true),
            (command(ReadOnly, Wait::Absent), legacy, false),
            (command(ReadOnly, Wait::Absent), None, false),
            (command(Write, Wait::Unbounded), nft, false),
            (Kind::Other, nft, false),
            (Kind::Restore(None), nft, false),
        ];
        for (kind, backend, want) in cases {
            assert_eq!(
                runs_in_our_place(&kind, || backend, false),
                want,
                "{kind:?} {backend:?}"
            );
            assert!(
                !runs_in_our_place(&kind, || backend, true),
                "verbose spawns {kind:?}"
            );
        }
    }

    #[test]
    fn the_callers_wait_bounds_ours() {
        let configured = Duration::from_secs(30);
        let t = |wait| lock_timeout(&command(Effect::Write, wait), configured);
        assert_eq!(t(Wait::Absent), configured);
        assert_eq!(t(Wait::Unbounded), configured);
        assert_eq!(t(Wait::Seconds(5)), Duration::from_secs(5));
        assert_eq!(t(Wait::Seconds(60)), Duration::from_secs(60));
        assert_eq!(t(Wait::Seconds(0)), configured);
        assert_eq!(lock_timeout(&Kind::Other, configured), configured);
    }
}
