//! `xtlock status`: who holds xtlock's lock and iptables' own, who waits, for how long.
//! It only reads (/proc/locks, /proc/PID, the lock file's record) and never takes a lock,
//! so it answers while a lock is stuck. Exit 1 when a lock has been held longer than the
//! configured timeout (every waiter behind it will give up).

use crate::output::outln;
use crate::procinfo::{self, LockLine};
use crate::status::Failure;
use crate::text::printable;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct Options {
    pub lock_file: PathBuf,
    pub timeout: Duration,
    pub json: bool,
}

/// iptables' own lock: `XTABLES_LOCKFILE` (iptables 1.8.6+) or the built-in path.
pub(super) fn xtables_lock() -> PathBuf {
    std::env::var_os("XTABLES_LOCKFILE")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("/run/xtables.lock"), PathBuf::from)
}

struct Process {
    pid: u32,
    command: String,
    caller: String,
    /// How long it has held (or waited), in seconds, where known.
    for_secs: Option<f64>,
}

struct LockState {
    name: &'static str,
    path: PathBuf,
    /// Why the file could not be looked at, if it could not.
    unseen: Option<String>,
    holders: Vec<Process>,
    waiters: Vec<Process>,
    nested: usize,
}

fn process(pid: u32, for_secs: Option<f64>) -> Process {
    let caller = procinfo::parent_of(pid).map_or_else(|| "?".into(), procinfo::describe);
    Process {
        pid,
        command: procinfo::describe(pid),
        caller,
        for_secs,
    }
}

fn look(name: &'static str, path: &Path, record: bool) -> LockState {
    let mut state = LockState {
        name,
        path: path.to_path_buf(),
        unseen: None,
        holders: Vec::new(),
        waiters: Vec::new(),
        nested: 0,
    };
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return state, // never used
        Err(e) => {
            state.unseen = Some(crate::text::errno_text(&e));
            return state;
        }
    };
    // The holder's own record says since when it holds; else its age is the bound.
    let recorded = record
        .then(|| std::fs::File::open(path).ok())
        .flatten()
        .and_then(|f| crate::nesting::record_holder(&f));
    for line in procinfo::locks_on(meta.dev(), meta.ino()) {
        match line {
            LockLine::Holder(pid) => {
                let since = recorded
                    .filter(|(holder, _)| *holder == pid)
                    .map(|(_, since_ms)| held_for(since_ms));
                state
                    .holders
                    .push(process(pid, since.or_else(|| procinfo::age_secs(pid))));
            }
            LockLine::Waiter(pid) => state.waiters.push(process(pid, procinfo::age_secs(pid))),
            LockLine::Reader => state.nested += 1,
        }
    }
    state
}

fn held_for(since_ms: u128) -> f64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    now.saturating_sub(since_ms) as f64 / 1000.0
}

pub fn status(options: &Options) -> Result<u8, Failure> {
    let locks = [
        look("xtlock", &options.lock_file, true),
        look("iptables", &xtables_lock(), false),
    ];
    let limit = options.timeout.as_secs_f64();
    let stuck = locks
        .iter()
        .flat_map(|l| &l.holders)
        .any(|h| h.for_secs.is_some_and(|s| s > limit));
    if options.json {
        outln!("{}", json(&locks, stuck));
    } else {
        for lock in &locks {
            print_lock(lock, limit);
        }
        // SAFETY: geteuid cannot fail and has no preconditions.
        let uid = unsafe { libc::geteuid() };
        if uid != 0 {
            outln!("note: as uid {uid}, processes of other users may show as ?");
        }
    }
    Ok(u8::from(stuck))
}

fn seconds(secs: Option<f64>) -> String {
    secs.map_or_else(|| "?".into(), |s| format!("{s:.1} s"))
}

fn print_lock(lock: &LockState, limit: f64) {
    let owner = match lock.name {
        "xtlock" => "xtlock's lock",
        _ => "iptables' own lock",
    };
    let title = format!("{owner} {}", printable(&lock.path.to_string_lossy()));
    if let Some(why) = &lock.unseen {
        outln!("{title}: cannot look at it: {why}");
        return;
    }
    if lock.holders.is_empty() {
        outln!("{title}: free");
    }
    for h in &lock.holders {
        let over = h.for_secs.is_some_and(|s| s > limit);
        outln!(
            "{title}: held by pid {} for {}{}: {} (caller: {})",
            h.pid,
            seconds(h.for_secs),
            if over {
                ", longer than the timeout"
            } else {
                ""
            },
            printable(&h.command),
            printable(&h.caller)
        );
    }
    for w in &lock.waiters {
        outln!(
            "  waiting: pid {} for {}: {} (caller: {})",
            w.pid,
            seconds(w.for_secs),
            printable(&w.command),
            printable(&w.caller)
        );
    }
    if lock.nested > 0 {
        outln!("  nested calls running under it: {}", lock.nested);
    }
}

fn json(locks: &[LockState], stuck: bool) -> serde_json::Value {
    let process = |p: &Process| {
        serde_json::json!({
            "pid": p.pid, "command": p.command, "caller": p.caller,
            "seconds": p.for_secs.map(|s| (s * 1000.0).round() / 1000.0),
        })
    };
    let locks: Vec<_> = locks
        .iter()
        .map(|l| {
            serde_json::json!({
                "lock": l.name,
                "path": l.path.to_string_lossy(),
                "unseen": l.unseen,
                "holders": l.holders.iter().map(process).collect::<Vec<_>>(),
                "waiters": l.waiters.iter().map(process).collect::<Vec<_>>(),
                "nested": l.nested,
            })
        })
        .collect();
    serde_json::json!({ "locks": locks, "held_past_timeout": stuck })
}
