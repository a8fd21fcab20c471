//! One firewall call from start to finish: resolve the real program, take the lock
//! (unless an ancestor holds it), run it, retry what is safe to retry, pass its stderr
//! and status through, and log what went wrong.

use crate::config::Config;
use crate::lock::LockFile;
use crate::log::{Event, Logger, Severity, shell_join_bytes};
use crate::nesting::{self, Marker};
use crate::resolve::{self, SelfIdentity};
use crate::retry::{self, RestoreCall, Verdict};
use crate::run::{self, Attempt, Input, Program};
use std::ffi::{OsStr, OsString};
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A waiter logs when it waited longer than this.
const SLOW_WAIT: Duration = Duration::from_secs(1);

/// An error of xtlock's own (not the program's status): printed as `xtlock: MESSAGE`.
#[derive(Debug, PartialEq, Eq)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

pub mod exit {
    /// The lock could not be had (timeout, bad lock file): iptables' "resource problem".
    pub const LOCK: u8 = 4;
    /// Usage or internal error of xtlock.
    pub const OWN: u8 = 125;
    pub const NOT_EXECUTABLE: u8 = 126;
    pub const NOT_FOUND: u8 = 127;
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

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
    /// The program's file name, for restore detection and logs.
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
        let name = PathBuf::from(&arg0)
            .file_name()
            .map(OsStr::to_os_string)
            .unwrap_or_default();
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
        let path = PathBuf::from(&program);
        let name = path
            .file_name()
            .map(OsStr::to_os_string)
            .unwrap_or_else(|| program.clone());
        let target = if program.as_encoded_bytes().contains(&b'/') {
            Target::Path(path)
        } else {
            Target::Name(program.clone())
        };
        Call {
            name,
            arg0: program,
            target,
            args,
        }
    }

    fn display_name(&self) -> String {
        self.name.to_string_lossy().into_owned()
    }

    fn event(&self, severity: Severity, name: &str) -> Event {
        Event::new(severity, name)
            .field("prog", self.name.as_encoded_bytes())
            .field("args", shell_join_bytes(&self.args))
    }
}

/// One call: resolve, read a restore's input, lock, run (with retries), pass through.
pub fn run(call: &Call, config: &Config, logger: &Logger) -> Result<u8, Failure> {
    let start = Instant::now();
    let depth = check_depth(call)?;
    let path = resolve_program(call)?;
    let asks_for_help = only_asks_for_help(&call.args);
    // Read a restore's input before taking the lock: the caller may be slow to write it.
    let restore = (crate::restore::is_restore_program(&call.name) && !asks_for_help)
        .then(|| RestoreInput::read(call, config.max_stdin))
        .transpose()?;

    let mut env = vec![(nesting::DEPTH_VAR, (depth + 1).to_string())];
    let held = match asks_for_help {
        true => None,
        false => lock_unless_nested(call, config, logger, start, &mut env)?,
    };
    let waited = start.elapsed();
    crate::signals::install();

    let program = Program {
        path: &path,
        arg0: &call.arg0,
        args: &call.args,
        env: &env,
    };
    let outcome = run_with_retries(
        call,
        config,
        logger,
        &program,
        restore.as_ref(),
        start,
        waited,
    )?;
    drop(held);

    // The caller sees the final attempt's stderr byte for byte, and nothing of ours.
    let _ = std::io::stderr().write_all(&outcome.attempt.stderr);
    if let Some(event) = outcome.failure_event {
        logger.log(event);
    }
    if config.verbose {
        let e = call
            .event(Severity::Info, "call")
            .field("status", outcome.attempt.exit_code().to_string())
            .field("attempts", outcome.attempts.to_string())
            .field("wait_ms", waited.as_millis().to_string())
            .field("total_ms", start.elapsed().as_millis().to_string());
        logger.log(e.caller());
    }
    Ok(outcome.attempt.exit_code())
}

/// A copy of xtlock ahead of the real program would run itself forever.
fn check_depth(call: &Call) -> Result<u32, Failure> {
    let depth = nesting::depth(std::env::var_os(nesting::DEPTH_VAR).as_deref());
    if depth < nesting::MAX_DEPTH {
        return Ok(depth);
    }
    let name = call.display_name();
    Err(Failure::new(
        exit::OWN,
        format!(
            "{name}: xtlock calls nested {depth} deep; is a copy of xtlock ahead of the real {name} in PATH?"
        ),
    ))
}

/// What a `*-restore` call reads, kept so that a failed COMMIT can be replayed.
struct RestoreInput {
    args: crate::restore::RestoreArgs,
    /// The rules text: stdin, read into memory, or the file named in the arguments.
    bytes: Option<Vec<u8>>,
}

impl RestoreInput {
    fn read(call: &Call, limit: u64) -> Result<RestoreInput, Failure> {
        let args = crate::restore::parse_args(&call.args);
        let bytes = match &args.input_file {
            // A terminal is a person typing rules: pass it through, no replay.
            None if std::io::stdin().is_terminal() => None,
            None => Some(read_stdin(limit, &call.display_name())?),
            Some(file) => read_limited(file, limit),
        };
        Ok(RestoreInput { args, bytes })
    }

    fn stdin(&self) -> Input<'_> {
        match (&self.args.input_file, &self.bytes) {
            (None, Some(bytes)) => Input::Replay(bytes),
            _ => Input::Inherit,
        }
    }

    fn for_classifier(&self) -> RestoreCall<'_> {
        RestoreCall {
            noflush: self.args.noflush && !self.args.test_only,
            input: self.bytes.as_deref(),
        }
    }
}

/// Take the lock, unless a live marker says our ancestor holds it for us; then tell
/// the child (through `env`) that we hold it.
fn lock_unless_nested(
    call: &Call,
    config: &Config,
    logger: &Logger,
    start: Instant,
    env: &mut Vec<(&'static str, String)>,
) -> Result<Option<crate::lock::Held>, Failure> {
    let lock =
        LockFile::open(&config.lock_file).map_err(|e| Failure::new(exit::LOCK, e.to_string()))?;
    let nested = std::env::var_os(nesting::HOLDER_VAR)
        .and_then(|v| Marker::parse(&v))
        .is_some_and(|marker| marker.is_live_for(lock.identity()));
    if nested {
        return Ok(None); // the ancestor's marker is inherited as it is
    }
    let held = acquire(call, lock, config, logger, start)?;
    let (dev, ino) = held.identity;
    env.push((
        nesting::HOLDER_VAR,
        Marker {
            pid: std::process::id(),
            dev,
            ino,
        }
        .render(),
    ));
    Ok(Some(held))
}

struct Outcome {
    attempt: Attempt,
    attempts: u32,
    /// How the final attempt failed, to log once the lock is released.
    failure_event: Option<Event>,
}

/// Run until success, a failure that is final, or no attempts or time left. Retries
/// keep the lock and stay within the timeout.
fn run_with_retries(
    call: &Call,
    config: &Config,
    logger: &Logger,
    program: &Program,
    restore: Option<&RestoreInput>,
    start: Instant,
    waited: Duration,
) -> Result<Outcome, Failure> {
    let input = restore.map_or(Input::Inherit, RestoreInput::stdin);
    let attempts = config.retries + 1;
    let deadline = start + config.timeout;
    let mut attempt_no = 1;
    loop {
        let attempt = run::run_once(program, &input).map_err(|e| spawn_failure(program.path, e))?;
        let verdict = retry::classify(
            attempt.status.code(),
            &attempt.stderr,
            restore.map(RestoreInput::for_classifier),
        );
        // One line per failed attempt, named by what xtlock did about it.
        let event = |severity, outcome: &str| {
            call.event(severity, outcome)
                .field("attempt", format!("{attempt_no}/{attempts}"))
                .field("status", attempt.exit_code().to_string())
                .field("wait_ms", waited.as_millis().to_string())
                .field("run_ms", attempt.elapsed.as_millis().to_string())
        };
        let failure_event = match verdict {
            Verdict::Final if attempt.status.success() => None,
            Verdict::Final => Some(event(Severity::Notice, "failed")),
            Verdict::Unsafe(reason) => {
                Some(event(Severity::Warning, "not-retried").field("reason", reason))
            }
            Verdict::Retry(reason) => {
                let delay = retry::backoff(attempt_no, fastrand::f64());
                let why_not = if crate::signals::received().is_some() {
                    Some("interrupted by a signal")
                } else if attempt_no >= attempts {
                    Some("no attempts left")
                } else if Instant::now() + delay > deadline {
                    Some("timeout reached")
                } else {
                    None
                };
                match why_not {
                    Some(why) => Some(
                        event(Severity::Error, "gave-up")
                            .field("reason", reason)
                            .field("why", why),
                    ),
                    None => {
                        let e = event(Severity::Warning, "retry")
                            .field("reason", reason)
                            .field("delay_ms", delay.as_millis().to_string());
                        logger.log(with_stderr(e, &attempt));
                        std::thread::sleep(delay);
                        attempt_no += 1;
                        continue;
                    }
                }
            }
        };
        let failure_event = failure_event.map(|e| with_stderr(e, &attempt));
        return Ok(Outcome {
            attempt,
            attempts: attempt_no,
            failure_event,
        });
    }
}

fn with_stderr(event: Event, attempt: &Attempt) -> Event {
    event.caller().field("stderr", &attempt.stderr)
}

fn resolve_program(call: &Call) -> Result<PathBuf, Failure> {
    let me = SelfIdentity::current();
    let probe = |p: &std::path::Path| match &me {
        Some(me) => me.probe(p),
        // No /proc: we cannot tell ourselves apart; the depth guard still stops a loop.
        None => resolve::Candidate::Program,
    };
    let found = match &call.target {
        Target::Name(name) => {
            resolve::find_in_path(name, std::env::var_os("PATH").as_deref(), probe)
        }
        Target::Path(path) => resolve::check_path(path, probe),
        Target::CalledAs(path, name) => match probe(path) {
            resolve::Candidate::Diverted(real) => Ok(real),
            _ => resolve::find_in_path(name, std::env::var_os("PATH").as_deref(), probe),
        },
    };
    let name = call.display_name();
    found.map_err(|e| {
        let message = match &e {
            resolve::ResolveError::NotExecutable { .. } => format!("{name}: {e}"),
            resolve::ResolveError::NotFound { .. } => e.to_string(),
        };
        Failure::new(e.exit_code(), message)
    })
}

fn acquire(
    call: &Call,
    lock: LockFile,
    config: &Config,
    logger: &Logger,
    start: Instant,
) -> Result<crate::lock::Held, Failure> {
    match lock.acquire(config.timeout) {
        Ok(held) => {
            if held.waited > SLOW_WAIT {
                let e = call
                    .event(Severity::Notice, "slow-wait")
                    .field("wait_ms", held.waited.as_millis().to_string());
                logger.log(e.caller());
            }
            Ok(held)
        }
        Err(e) => {
            let message = e.to_string();
            let event = call
                .event(Severity::Error, "lock-failed")
                .field("wait_ms", start.elapsed().as_millis().to_string())
                .field("error", &message);
            logger.log(event.caller());
            Err(Failure::new(exit::LOCK, message))
        }
    }
}

/// `iptables -h` or `--version` changes nothing: no need to queue for the lock.
fn only_asks_for_help(args: &[OsString]) -> bool {
    matches!(args, [one] if ["-h", "--help", "-V", "--version"].iter().any(|h| one == h))
}

fn read_stdin(limit: u64, name: &str) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| {
            Failure::new(
                exit::OWN,
                format!(
                    "{name}: cannot read standard input: {}",
                    crate::lock::errno_text(&e)
                ),
            )
        })?;
    if bytes.len() as u64 > limit {
        return Err(Failure::new(
            exit::OWN,
            format!(
                "{name}: standard input is larger than {limit} bytes (max_stdin); nothing was run"
            ),
        ));
    }
    Ok(bytes)
}

fn read_limited(path: &std::path::Path, limit: u64) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(limit)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
}

fn spawn_failure(path: &std::path::Path, e: std::io::Error) -> Failure {
    let code = match e.raw_os_error() {
        Some(libc::ENOENT) => exit::NOT_FOUND,
        _ => exit::NOT_EXECUTABLE,
    };
    Failure::new(
        code,
        format!(
            "cannot run {}: {}",
            path.display(),
            crate::lock::errno_text(&e)
        ),
    )
}
