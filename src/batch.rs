//! Group commit: the caller that gets the lock commits the commands queued behind it
//! (single iptables commands of the same program and table, `batchable`) as one
//! `*-restore --noflush` transaction, and each queued caller exits with what its
//! command alone would have given (README, "What every call does").
//!
//! - One COMMIT: all or nothing. A batch the restore refuses committed nothing; it is
//!   split at the line it names (the lines before as a batch, that one alone for its
//!   exact error, the rest as a batch) or, when it names none, in halves. A command run
//!   alone runs as the caller would have run it, with today's retries.
//! - Queue order: commands run in the order they were queued.
//! - The restore runs in its own process group (callers' groups get killed: fail2ban,
//!   timeout(1)) and keeps the lock's descriptor; its output goes to a file in the queue,
//!   so a holder that took over after a crash can judge the batch (`commit::judge`).
//! - Queued callers learn their result from a file and a FIFO, never by taking the lock.

use crate::classify::Backend;
use crate::commit::{self, Ended, Judged};
use crate::config::Config;
use crate::invocation::{Call, with_caller};
use crate::log::{Event, EventKind};
use crate::queue::{Queue, Request, RunRecord, Served, Settled, Ticket};
use crate::xtinfo::TableShape;
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// The applets of iptables' multi-call binaries whose single commands a restore of the
/// same binary can carry (`NAME-restore`).
const APPLETS: [&str; 6] = [
    "iptables",
    "ip6tables",
    "iptables-legacy",
    "ip6tables-legacy",
    "iptables-nft",
    "ip6tables-nft",
];

/// Variables that change what iptables does; calls batched together agree on them.
/// Not `XTABLES_LOCKFILE`: which iptables lock a command takes under xtlock's own lock
/// decides nothing of what it does (the batch takes the holder's).
const IPTABLES_ENV: [&str; 5] = [
    "XTABLES_LIBDIR",
    "IPTABLES_LIB_DIR",
    "IP6TABLES_LIB_DIR",
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
];

/// The most commands one restore carries (its marks must fit the room reserved for
/// its output: `queue::start_run`).
pub const MAX_BATCH: usize = 1000;

/// The kinds of run a record names: a batch's restore, or one command run alone.
const RESTORE_RUN: &str = "restore";
const SINGLE_RUN: &str = "single";

/// How long a holder waits for the callers of the last batch to queue again (`gather`).
const GATHER_STEP: std::time::Duration = std::time::Duration::from_micros(250);
const GATHER_MAX: std::time::Duration = std::time::Duration::from_millis(5);
/// A batch committed longer ago than this says nothing of who is coming.
pub const GATHER_RECENT: std::time::Duration = std::time::Duration::from_millis(50);

/// The restore reads lines into a 10,240-byte buffer (`restore::fgets_lines`).
const MAX_LINE: usize = 10_000;

/// A call that may wait in the queue: its request and how to commit it.
pub struct Candidate {
    /// The request but its `compat`, which `request` adds when the call first needs it:
    /// a call that gets the lock at once and finds nobody queued never does.
    partial: Request,
    request: std::cell::OnceCell<Option<Request>>,
    table: String,
    restore_arg0: OsString,
    backend: Backend,
}

/// Whether this call's command may be committed with others: batching on, a single
/// command of a known shape (`batchable`) for one of iptables' multi-call binaries,
/// and a caller whose user and network namespace can be told.
pub fn candidate(
    call: &Call,
    path: &Path,
    backend: Option<Backend>,
    config: &Config,
) -> Option<Candidate> {
    if !config.batch {
        return None;
    }
    // Only iptables' own multi-call binaries: a script named iptables never batches.
    let backend = backend?;
    let name = crate::classify::dispatch_name(&call.arg0);
    let (applet, args) = crate::classify::applet(name, &call.args);
    let applet = applet.to_str().filter(|a| APPLETS.contains(a))?;
    let batch_line = crate::batchable::batch_line(args)?;
    if batch_line.line.len() >= MAX_LINE {
        return None;
    }
    let restore_arg0 = OsString::from(format!("{applet}-restore"));
    Some(Candidate {
        request: std::cell::OnceCell::new(),
        partial: Request {
            compat: String::new(),
            program: path.to_path_buf(),
            arg0: call.arg0.clone(),
            args: call.args.clone(),
            line: batch_line.line,
        },
        table: batch_line.table,
        restore_arg0,
        backend,
    })
}

impl Candidate {
    /// The request to queue or lead with; None when who the caller is cannot be told.
    pub fn request(&self) -> Option<&Request> {
        self.request
            .get_or_init(|| {
                if self.backend == Backend::Legacy && !xtables_lock_opens() {
                    return None;
                }
                let compat = compat_key(&self.partial.program, &self.restore_arg0, &self.table)?;
                Some(Request {
                    compat,
                    ..self.partial.clone()
                })
            })
            .as_ref()
    }
}

/// Would this caller's legacy iptables open its own lock file? Bare, one that cannot
/// (`XTABLES_LOCKFILE` in a missing directory, a directory) fails with "Fatal: can't
/// open lock file" (exit 4) before it does anything, so it must run alone, never in a
/// holder's restore (which opens the holder's lock file). Which file it is decides
/// nothing else under our lock, so it is not in the batch key: writers with a lock
/// file each still batch together. Opened as iptables opens it (xshared.c 1.8.9,
/// `xtables_lock`: O_CREAT, 0600, relative to the cwd; unset or empty: the default),
/// which makes it as the command itself would have; only a regular file counts.
fn xtables_lock_opens() -> bool {
    let path = crate::classify::iptables_lock_path(
        std::env::var_os(crate::classify::IPTABLES_LOCK_VAR).as_deref(),
    );
    let Ok(path) = std::ffi::CString::new(path.into_os_string().into_encoded_bytes()) else {
        return false;
    };
    // (std's OpenOptions will not create a file opened for reading only.) Not blocking:
    // a FIFO there would hang iptables, and must not hang us, maybe holding the lock.
    let flags = libc::O_CREAT | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY;
    // SAFETY: a valid NUL-terminated path; the descriptor is ours, owned at once.
    let fd = unsafe { libc::open(path.as_ptr(), flags, 0o600) };
    if fd < 0 {
        return false;
    }
    // SAFETY: `fd` is a descriptor we just opened and own alone.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    // Anything but a regular file (a FIFO, a device) runs alone, as the caller's own.
    file.metadata().is_ok_and(|m| m.is_file())
}

/// Who may be batched with whom: the holder runs everyone's command as itself, so one
/// user with the same capabilities in the same user namespace; one network namespace
/// (whose tables), mount namespace and root (whose /etc/services and /etc/protocols
/// `--dport ssh` and `-p tcp` read); one program file, restore, table and iptables
/// environment. None when any of them cannot be told.
fn compat_key(program: &Path, restore_arg0: &OsStr, table: &str) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let id = |path: &str| {
        let meta = std::fs::metadata(path).ok()?;
        Some(format!("{}:{}", meta.dev(), meta.ino()))
    };
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let caps = status
        .lines()
        .find(|l| l.starts_with("CapEff:"))?
        .to_string();
    let places = format!(
        "user={} mnt={} root={} {caps}",
        id("/proc/self/ns/user")?,
        id("/proc/self/ns/mnt")?,
        id("/proc/self/root")?
    );
    let net = std::fs::metadata("/proc/self/ns/net").ok()?;
    let real = std::fs::metadata(program).ok()?;
    let env: Vec<String> = IPTABLES_ENV
        .iter()
        .map(|name| format!("{name}={:?}", std::env::var_os(name)))
        .collect();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    Some(format!(
        "uid={euid} {places} net={}:{} program={}@{}:{} restore={} table={table} {}",
        net.dev(),
        net.ino(),
        program.display(),
        real.dev(),
        real.ino(),
        restore_arg0.to_string_lossy(),
        env.join(" ")
    ))
}

/// What the holder does with its own command.
pub enum Led {
    /// Nothing to combine it with: run it as every call runs.
    Alone,
    /// It ran, with the others (or was run for us before we got the lock).
    Served(Served),
}

/// The holder's side: everything a run needs.
pub struct Holder<'a> {
    pub queue: &'a Queue,
    pub own: &'a Candidate,
    pub ticket: Option<&'a Ticket>,
    pub call: &'a Call,
    pub config: &'a Config,
    /// Our lock's descriptor, kept by each program we run.
    pub lock_fd: Option<RawFd>,
    pub deadline: Instant,
}

/// One command of a run; `key` None is the holder's own (not queued).
struct Item {
    key: Option<String>,
    request: Request,
    own: bool,
}

impl Holder<'_> {
    /// Under the lock: settle what a holder that died left, then commit our command
    /// with those queued for the same program and table.
    pub fn lead(&self, events: &mut Vec<Event>) -> Led {
        let own_key = self.ticket.map(|t| t.key.as_str());
        let settled = self.queue.recover(settle_orphan, own_key);
        if let Some(served) = settled.or_else(|| self.ticket.and_then(Ticket::result)) {
            return Led::Served(served);
        }
        // Queued, not pending and no result: a holder took it and its outcome could not
        // be written. Running it again could apply it twice.
        if let Some(ticket) = self.ticket
            && !ticket.is_pending()
        {
            // Seen once in a storm of SIGKILLs without a full /run: say what is known.
            let why = "a holder took it, and its result is missing (a full /run?)";
            return Led::Served(Served::Unknown(why.into()));
        }
        let Some(own_request) = self.own.request() else {
            if let Some(ticket) = self.ticket {
                ticket.withdraw();
            }
            return Led::Alone;
        };
        self.gather();
        let mut items: Vec<Item> = self
            .queue
            .pending()
            .into_iter()
            .filter(|(_, request)| request.compat == own_request.compat)
            .map(|(key, request)| Item {
                own: Some(key.as_str()) == own_key,
                key: Some(key),
                request,
            })
            .collect();
        // The rest wait for the next holder; our own goes in all the same.
        if items.len() > MAX_BATCH {
            let own_item = items
                .iter()
                .position(|i| i.own)
                .filter(|&at| at >= MAX_BATCH);
            let own_item = own_item.map(|at| items.remove(at));
            items.truncate(MAX_BATCH);
            items.extend(own_item);
        }
        if !items.iter().any(|i| i.own) {
            items.push(Item {
                key: None,
                request: own_request.clone(),
                own: true,
            });
        }
        if items.len() == 1 {
            // Ours alone: take it out of the queue (we hold the lock, so nobody has
            // claimed it) and run it as any call.
            if let Some(ticket) = self.ticket {
                ticket.withdraw();
            }
            return Led::Alone;
        }
        items.retain(|item| item.key.as_deref().is_none_or(|key| self.queue.claim(key)));
        let mut own = None;
        self.commit(&items, &mut own, events);
        self.queue.note_batch(items.len());
        let mut e = self
            .call
            .event(EventKind::Batch)
            .field("commands", items.len().to_string())
            .field("table", &self.own.table);
        if self.config.verbose {
            // Which calls were combined, in queue order (ours: our pid).
            let pids: Vec<String> = items
                .iter()
                .map(|i| {
                    let key = i.key.as_deref();
                    let pid = key.and_then(crate::queue::pid_of_key);
                    pid.unwrap_or(std::process::id()).to_string()
                })
                .collect();
            e = e.field("pids", pids.join(","));
        }
        events.push(with_caller(e));
        Led::Served(own.unwrap_or_else(|| Served::Unknown("it was not run".into())))
    }

    /// In a storm, the callers of the last batch start their next commands as soon as
    /// they have their results, a few milliseconds after this holder got the lock; one
    /// restore more costs far more than that (a legacy table copied out and back, and
    /// time when only the restore runs). So a holder whose predecessor committed a batch
    /// of n a moment ago waits until n-1 others are queued, GATHER_MAX at most.
    fn gather(&self) {
        let Some(expected) = self.queue.recent_batch(GATHER_RECENT) else {
            return;
        };
        let start = Instant::now();
        while self.queue.waiting() + 1 < expected && start.elapsed() < GATHER_MAX {
            std::thread::sleep(GATHER_STEP);
        }
    }

    /// Commit `items` in order, delivering each result as soon as it is known.
    fn commit(&self, items: &[Item], own: &mut Option<Served>, events: &mut Vec<Event>) {
        match items {
            [] => {}
            [one] => self.single(one, own),
            _ => match self.restore(items, own, events) {
                // That command alone (for its own message), the others as batches.
                (Judged::Refused { at }, _) | (Judged::NothingCommitted, Some(at)) => {
                    self.commit(&items[..at], own, events);
                    self.commit(&items[at..=at], own, events);
                    self.commit(&items[at + 1..], own, events);
                }
                (Judged::NothingCommitted, None) => {
                    let (first, rest) = items.split_at(items.len() / 2);
                    self.commit(first, own, events);
                    self.commit(rest, own, events);
                }
                // Delivered by `restore`, before its record was removed.
                (Judged::Committed { .. } | Judged::Unknown(_) | Judged::CommitFailed, _) => {}
            },
        }
    }

    /// False: its result could not be written (the run's record must then stay, for
    /// the next holder to deliver it from there, never to run it again).
    fn deliver(&self, item: &Item, served: Served, own: &mut Option<Served>) -> bool {
        match (&item.key, item.own) {
            (_, true) => {
                *own = Some(served);
                true
            }
            (Some(key), false) => self.queue.deliver(key, &served),
            (None, false) => true,
        }
    }

    /// One restore for `items`. A batch that committed (or may have) is delivered here,
    /// before its record goes: a holder taking over after a crash then judges it again
    /// from its output, and never runs a command of it a second time.
    /// With the judgement, where to split a batch that committed nothing (`culprit`).
    fn restore(
        &self,
        items: &[Item],
        own: &mut Option<Served>,
        events: &mut Vec<Event>,
    ) -> (Judged, Option<usize>) {
        let record = RunRecord {
            kind: RESTORE_RUN.into(),
            keys: items.iter().map(|i| i.key.clone()).collect(),
        };
        let Ok((id, output)) = self.queue.start_run(&record) else {
            return (Judged::NothingCommitted, None); // run one by one
        };
        crate::nesting::checkpoint("batch-recorded");
        let lines: Vec<&str> = items.iter().map(|i| i.request.line.as_str()).collect();
        let input = commit::restore_input(&id, &self.own.table, &lines);
        let before = self.table_shape();
        let ended = self.run_restore(&input, output);
        let text = self.queue.run_output(&id);
        let judged = match commit::judge(&id, items.len(), &text, ended) {
            // A transaction of nf_tables is whole or nothing.
            Judged::CommitFailed if self.own.backend == Backend::Nft => Judged::NothingCommitted,
            // Legacy: only if the table is as it was (`xtinfo`).
            Judged::CommitFailed => match (before, self.table_shape()) {
                (before, after) if before == after && before != TableShape::Unknown => {
                    Judged::NothingCommitted
                }
                _ => Judged::Unknown(
                    "its COMMIT failed after the table changed (a writer that bypasses the lock?)",
                ),
            },
            judged => judged,
        };
        crate::nesting::checkpoint("batch-judged");
        let mut delivered = true;
        match &judged {
            Judged::Committed {
                stderr,
                stray_output,
            } => {
                if !stray_output.is_empty() {
                    let e = self
                        .call
                        .event(EventKind::BatchOutput)
                        .field("output", stray_output);
                    events.push(with_caller(e));
                }
                delivered = items
                    .iter()
                    .zip(stderr)
                    .all(|(item, stderr)| self.deliver(item, applied(stderr), own));
            }
            Judged::Unknown(why) => {
                let e = self
                    .call
                    .event(EventKind::BatchUnknown)
                    .field("commands", items.len().to_string())
                    .field("why", *why)
                    .field("output", &text);
                events.push(with_caller(e));
                let served = Served::Unknown(format!("the batch that carried it: {why}"));
                delivered = items
                    .iter()
                    .all(|item| self.deliver(item, served.clone(), own));
            }
            Judged::Refused { .. } | Judged::NothingCommitted | Judged::CommitFailed => {}
        }
        if delivered {
            self.queue.end_run(&id);
        }
        let culprit = match judged {
            Judged::NothingCommitted => commit::culprit(&text, &lines),
            _ => None,
        };
        (judged, culprit)
    }

    /// The legacy table's shape, to tell a failed COMMIT that changed nothing.
    fn table_shape(&self) -> TableShape {
        match self.own.backend {
            Backend::Legacy => {
                let ipv6 = self.own.restore_arg0.as_bytes().starts_with(b"ip6");
                crate::xtinfo::table_shape(&self.own.table, ipv6)
            }
            Backend::Nft => TableShape::Unknown,
        }
    }

    /// Spawn `NAME-restore --noflush --verbose` with `input`, in its own process group,
    /// keeping the lock's descriptor, its output into `output`. None: it did not run.
    fn run_restore(&self, input: &[u8], output: std::fs::File) -> Option<Ended> {
        let mut command = Command::new(&self.own.partial.program);
        command
            .arg0(&self.own.restore_arg0)
            .args(["--noflush", "--verbose"])
            .stdin(Stdio::piped())
            .stdout(output.try_clone().ok()?)
            .stderr(output);
        let mut child = spawn_keeping_lock(&mut command, self.lock_fd).ok()?;
        crate::nesting::checkpoint("batch-started");
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(input);
        }
        let status = child.wait().ok()?;
        Some(match status.signal() {
            Some(signal) => Ended::Signaled(signal),
            None => Ended::Exited(status.code().unwrap_or(1)),
        })
    }

    /// Run one command alone, as its caller would have, with today's retries; its
    /// stdout and stderr kept for its caller.
    fn single(&self, item: &Item, own: &mut Option<Served>) {
        let record = RunRecord {
            kind: SINGLE_RUN.into(),
            keys: vec![item.key.clone()],
        };
        let id = match self.queue.start_run(&record) {
            Ok((id, _)) => Some(id),
            // Unrecorded, a crash would leave it unknown: give a queued command back to
            // its caller, who runs it itself; our own has nobody else to tell.
            Err(_) => match &item.key {
                Some(key) if !item.own => return self.queue.unclaim(key),
                _ => None,
            },
        };
        crate::nesting::checkpoint("single-recorded");
        let served = self.run_with_retries(&item.request);
        if self.deliver(item, served, own)
            && let Some(id) = id
        {
            self.queue.end_run(&id);
        }
    }

    fn run_with_retries(&self, request: &Request) -> Served {
        use crate::retry::{self, Step};
        let max_attempts = self.config.retries + 1;
        let mut attempt_no = 1;
        loop {
            let mut command = Command::new(&request.program);
            command
                .arg0(&request.arg0)
                .args(&request.args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let output = match spawn_keeping_lock(&mut command, self.lock_fd)
                .and_then(|child| child.wait_with_output())
            {
                Ok(output) => output,
                Err(e) => {
                    let failure = crate::status::Failure::cannot_run(&request.program, &e);
                    return Served::Unknown(failure.message().to_string());
                }
            };
            let status = output.status.into_raw();
            let verdict = retry::classify(output.status.code(), &output.stderr, None);
            let delay = retry::backoff(attempt_no, fastrand::f64());
            let step = retry::next_step(
                verdict,
                attempt_no,
                max_attempts,
                Instant::now() + delay <= self.deadline,
                crate::signals::received().is_some(),
                false,
            );
            if step == Step::Retry && crate::signals::sleep_unless_signalled(delay).is_none() {
                attempt_no += 1;
                continue;
            }
            return Served::Ran {
                status,
                stdout: output.stdout,
                stderr: output.stderr,
            };
        }
    }
}

/// A command the batch applied: exit 0, and what it printed (a warning) on stderr.
fn applied(stderr: &[u8]) -> Served {
    Served::Ran {
        status: 0,
        stdout: Vec::new(),
        stderr: stderr.to_vec(),
    }
}

/// A run whose holder died, judged by the holder that took over (the program it ran
/// has exited: it kept the lock's descriptor). Its output file says how far it got.
fn settle_orphan(record: &RunRecord, id: &str, output: &[u8]) -> Settled {
    if record.kind != RESTORE_RUN {
        let why = "the holder that was running it alone died";
        return Settled::Deliver(vec![Served::Unknown(why.into()); record.keys.len()]);
    }
    match commit::judge(id, record.keys.len(), output, None) {
        Judged::Committed { stderr, .. } => {
            Settled::Deliver(stderr.iter().map(|e| applied(e)).collect())
        }
        Judged::Refused { .. } | Judged::NothingCommitted => Settled::Requeue,
        // Whether a legacy table changed cannot be told once its holder is gone.
        Judged::CommitFailed => {
            let why = "the batch that carried it, whose holder died: its COMMIT failed";
            Settled::Deliver(vec![Served::Unknown(why.into()); record.keys.len()])
        }
        Judged::Unknown(why) => {
            let why = format!("the batch that carried it, whose holder died: {why}");
            Settled::Deliver(vec![Served::Unknown(why); record.keys.len()])
        }
    }
}

/// Spawn with our lock's descriptor left open in the program (a copy without
/// close-on-exec, closed here once it is started), in a process group of its own.
fn spawn_keeping_lock(
    command: &mut Command,
    lock_fd: Option<RawFd>,
) -> std::io::Result<std::process::Child> {
    command.process_group(0);
    // SAFETY: dup of a descriptor we hold open; the copy is closed below.
    let copy = lock_fd.map(|fd| unsafe { libc::dup(fd) });
    let child = command.spawn();
    if let Some(fd) = copy.filter(|&fd| fd >= 0) {
        // SAFETY: `fd` is the copy made above, ours alone.
        unsafe { libc::close(fd) };
    }
    child
}

/// The result of a queued call, as its exit: stdout and stderr written as the program
/// wrote them, then its status; or xtlock's own failure when nobody can say.
pub fn finish_served(
    served: Served,
    name: &str,
) -> Result<crate::status::Exit, crate::status::Failure> {
    match served {
        Served::Ran {
            status,
            stdout,
            stderr,
        } => {
            crate::output::pass_through(crate::output::Stream::Stdout, &stdout);
            crate::output::pass_through(crate::output::Stream::Stderr, &stderr);
            Ok(crate::status::Exit::Status(crate::status::shell_status(
                status,
            )))
        }
        Served::Unknown(why) => Err(crate::status::Failure::Own(format!(
            "{name}: whether the command was applied is unknown ({why}); check with -C"
        ))),
    }
}
