//! `xtlock stats`: what the log says about recent calls: events by kind (answers and
//! refusals apart from retries, give-ups and lock timeouts), what retries rescued, how
//! long calls waited for the lock, and who waited longest. Reads the log file when one
//! is set, else the journal's structured entries (`journalctl -t xtlock -o json`) that
//! journald attributes to xtlock (`from_xtlock`). Everything it prints that came from
//! outside (callers' command lines, paths) is escaped onto one line (`text::printable`).

use crate::log::EventKind;
use crate::output::Stream;
use crate::status::Failure;
use crate::text::printable;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

pub struct Options {
    pub since: Option<Duration>,
    pub log_file: Option<PathBuf>,
    pub json: bool,
    /// node_exporter's textfile collector format instead of the table.
    pub prometheus: bool,
}

/// One event of xtlock's log: the xtlock pid, the time (when known) and the fields
/// (`event` first).
#[derive(Debug, PartialEq)]
pub struct LogLine {
    pub pid: u32,
    pub time: Option<SystemTime>,
    pub fields: Vec<(String, String)>,
    /// Who sent it, as journald says (journal entries only).
    pub sender: Option<Sender>,
}

/// What journald itself recorded about the sender of an entry: `_UID` from the socket's
/// credentials (SCM_CREDENTIALS, checked by the kernel), `_EXE` from /proc/PID/exe.
/// The sender's own fields (SYSLOG_IDENTIFIER, XTLOCK_*) are whatever it wrote.
#[derive(Debug, Default, PartialEq)]
pub struct Sender {
    pub uid: Option<u32>,
    pub exe: Option<String>,
}

/// Is this entry xtlock's own? Any program may write `SYSLOG_IDENTIFIER=xtlock` and
/// `XTLOCK_EVENT=...` to the journal's socket; only journald's trusted fields tell who
/// did. (`own` is this binary's canonical path.)
/// - `_COMM` cannot tell: it is the name the binary was exec'd by (the shim's,
///   `iptables`, or a diverted `iptables-legacy`), cut to 15 bytes, and a forger names
///   its program as it likes.
/// - `_EXE` is the binary the kernel runs, links resolved: xtlock's, whatever the name.
///   It counts when it is this very binary, or, for root, any binary named xtlock (the
///   shims may point at another install than the one running stats); a user may name
///   any program xtlock. A running binary replaced by an upgrade reads `... (deleted)`.
/// - But journald reads /proc only when it gets to the datagram, and xtlock logs just
///   before it exits: most of its entries have no `_EXE` at all (systemd 252's
///   journald, 25 calls in a row: 3 had `_EXE`, 13 `_COMM`). An entry without `_EXE`
///   counts only from root (`_UID` 0): root could write the journal's files anyway; a
///   user's forgery is refused.
pub fn from_xtlock(sender: &Sender, own: Option<&Path>) -> bool {
    let root = sender.uid == Some(0);
    let Some(exe) = &sender.exe else {
        return root;
    };
    let exe = Path::new(exe.strip_suffix(" (deleted)").unwrap_or(exe));
    own == Some(exe)
        || (root
            && exe
                .file_name()
                .is_some_and(|n| n == crate::personality::OWN_NAME))
}

impl LogLine {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parse a log-file line (`TIME xtlock[PID]: SEVERITY: event=...`) or a syslog line
/// (`... xtlock[PID]: event=...`).
pub fn parse_line(line: &str) -> Option<LogLine> {
    let start = line.find("xtlock[")?;
    let rest = &line[start + "xtlock[".len()..];
    let (pid, rest) = rest.split_once("]: ")?;
    let body = match rest.split_once(": ") {
        Some((severity, body)) if !severity.contains('=') && !severity.contains(' ') => body,
        _ => rest,
    };
    let fields = crate::text::parse_fields(body);
    if fields.first().is_none_or(|(k, _)| k != "event") {
        return None;
    }
    let time = line[..start]
        .split_whitespace()
        .next()
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok());
    Some(LogLine {
        pid: pid.parse().ok()?,
        time,
        fields,
        sender: None,
    })
}

/// Parse one entry of `journalctl -o json`: xtlock's own `XTLOCK_*` fields, with the
/// pid and time journald recorded. A value journalctl could not print as text comes
/// as an array of bytes.
pub fn parse_journal_entry(line: &str) -> Option<LogLine> {
    let entry: serde_json::Value = serde_json::from_str(line).ok()?;
    let object = entry.as_object()?;
    let text = |value: &serde_json::Value| -> Option<String> {
        match value {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Array(bytes) => {
                let bytes: Option<Vec<u8>> =
                    bytes.iter().map(|b| b.as_u64().map(|b| b as u8)).collect();
                Some(String::from_utf8_lossy(&bytes?).into_owned())
            }
            _ => None,
        }
    };
    let event = text(object.get("XTLOCK_EVENT")?)?;
    let mut fields = vec![("event".to_string(), event)];
    for (key, value) in object {
        if let Some(name) = key.strip_prefix("XTLOCK_")
            && name != "EVENT"
            && let Some(value) = text(value)
        {
            fields.push((name.to_ascii_lowercase(), value));
        }
    }
    let micros: Option<u64> = object
        .get("__REALTIME_TIMESTAMP")
        .and_then(text)?
        .parse()
        .ok();
    let sender = Sender {
        uid: object
            .get("_UID")
            .and_then(text)
            .and_then(|u| u.parse().ok()),
        exe: object.get("_EXE").and_then(text),
    };
    Some(LogLine {
        pid: object.get("_PID").and_then(text)?.parse().ok()?,
        time: micros.map(|us| SystemTime::UNIX_EPOCH + Duration::from_micros(us)),
        fields,
        sender: Some(sender),
    })
}

pub fn stats(options: &Options) -> Result<u8, Failure> {
    let Log {
        source,
        lines,
        ignored,
    } = read_log(options)?;
    let cutoff = options.since.map(|d| SystemTime::now() - d);
    let lines: Vec<LogLine> = lines
        .into_iter()
        .filter(|l| match (cutoff, l.time) {
            (Some(cutoff), Some(time)) => time >= cutoff,
            _ => true,
        })
        .collect();
    let summary = Summary {
        ignored,
        ..summarize(&lines)
    };
    let text = match (options.json, options.prometheus) {
        (true, _) => format!("{}\n", summary.to_json(&source)),
        (_, true) => summary.to_prometheus(),
        _ => summary.to_table(&source),
    };
    crate::output::write(Stream::Stdout, text.as_bytes());
    Ok(0)
}

struct Log {
    source: String,
    lines: Vec<LogLine>,
    /// Journal entries that claim to be xtlock's but are another program's.
    ignored: usize,
}

fn read_log(options: &Options) -> Result<Log, Failure> {
    if let Some(file) = &options.log_file {
        let text = std::fs::read_to_string(file).map_err(|e| {
            Failure::Own(format!(
                "cannot read {}: {}",
                file.display(),
                crate::text::errno_text(&e)
            ))
        })?;
        let lines = text.lines().filter_map(parse_line).collect();
        return Ok(Log {
            source: file.display().to_string(),
            lines,
            ignored: 0,
        });
    }
    if let Some(failure) = unreadable_journal() {
        return Err(failure);
    }
    let own = super::own_binary().ok();
    let mut journal = Command::new("journalctl");
    journal.args(["-t", "xtlock", "-o", "json", "--no-pager", "-q"]);
    if let Some(since) = options.since {
        journal.arg(format!("--since=-{}s", since.as_secs()));
    }
    match journal.output() {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let (lines, others): (Vec<LogLine>, Vec<LogLine>) =
                text.lines().filter_map(parse_journal_entry).partition(|l| {
                    l.sender
                        .as_ref()
                        .is_some_and(|s| from_xtlock(s, own.as_deref()))
                });
            Ok(Log {
                source: "journald".into(),
                lines,
                ignored: others.len(),
            })
        }
        _ => Err(Failure::Own(
            "no log to read: no log_file is set and journalctl gave nothing; use --log-file PATH"
                .into(),
        )),
    }
}

/// The system journal's files, where journald keeps them (persistent, then volatile).
const JOURNAL_DIRS: [&str; 2] = ["/var/log/journal", "/run/log/journal"];

/// A user who may not read the system journal gets no error from journalctl, only no
/// entries (and with -q not even its hint), which would read as "0 events". So look
/// first: are there system journal files, and may we open one? (journald makes them
/// readable to root and, by ACL or group, to systemd-journal, adm and wheel: the
/// file is the judge, not a list of groups.)
fn unreadable_journal() -> Option<Failure> {
    let mut seen = false;
    for dir in JOURNAL_DIRS {
        let Ok(machines) = std::fs::read_dir(dir) else {
            continue;
        };
        for machine in machines.flatten() {
            let Ok(files) = std::fs::read_dir(machine.path()) else {
                seen = true; // a journal directory we may not list
                continue;
            };
            for file in files.flatten() {
                let name = file.file_name();
                let name = name.to_string_lossy();
                if name.starts_with("system") && name.ends_with(".journal") {
                    if std::fs::File::open(file.path()).is_ok() {
                        return None;
                    }
                    seen = true;
                }
            }
        }
    }
    seen.then(|| {
        Failure::Own(
            "cannot read the system journal: permission denied; run as root or as a member of group systemd-journal or adm, or use --log-file PATH"
                .into(),
        )
    })
}

/// What the log says, counted.
#[derive(Debug, Default, PartialEq)]
pub struct Summary {
    pub events: usize,
    /// Every event kind and its count.
    pub by_kind: BTreeMap<String, usize>,
    /// Calls that were retried, and how many of them ended in success.
    pub retried_calls: usize,
    pub rescued_calls: usize,
    /// Lock wait per call (ms): the largest its events report.
    /// Journal entries under xtlock's name written by another program: not counted.
    pub ignored: usize,
    /// (caller, longest ms, events), longest first, at most 5.
    pub slowest: Vec<(String, u64, usize)>,
    /// Every call's lock wait (sorted) and run time under the lock (ms), where the log
    /// has them.
    pub wait_ms: Vec<u64>,
    pub hold_ms: Vec<u64>,
    /// When the last event of severity error was logged.
    pub last_error: Option<SystemTime>,
    /// The number of commands of each batch (group commit).
    pub batch_sizes: Vec<u64>,
}

/// Histogram buckets (seconds) for lock wait and hold: a hand-off is ~2 ms, a table
/// copy under a storm up to seconds, a timeout 30 s.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0];

fn histogram(out: &mut String, name: &str, help: &str, values_ms: &[u64]) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} histogram\n"));
    for le in BUCKETS {
        let n = values_ms
            .iter()
            .filter(|&&ms| ms as f64 / 1000.0 <= le)
            .count();
        out.push_str(&format!("{name}_bucket{{le=\"{le}\"}} {n}\n"));
    }
    let sum: u64 = values_ms.iter().sum();
    out.push_str(&format!(
        "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}\n",
        values_ms.len(),
        sum as f64 / 1000.0,
        values_ms.len()
    ));
}

impl Summary {
    /// The lock wait at quantile `q` (0.5: the median, 1: the max), if any call waited.
    pub fn wait_at(&self, q: f64) -> Option<u64> {
        let last = self.wait_ms.len().checked_sub(1)?;
        Some(self.wait_ms[(last as f64 * q).round() as usize])
    }

    fn count(&self, kind: EventKind) -> usize {
        self.by_kind.get(kind.name()).copied().unwrap_or(0)
    }

    pub fn to_table(&self, source: &str) -> String {
        let mut out = format!("source: {}, {} events", printable(source), self.events);
        if self.ignored > 0 {
            out += &format!(
                " ({} entries of other programs under xtlock's name ignored)",
                self.ignored
            );
        }
        out += "\n\n";
        out += &format!("{:<14} {:>7}  {}\n", "events", "count", "meaning");
        for &kind in EventKind::ALL {
            out += &format!(
                "{:<14} {:>7}  {}\n",
                label(kind),
                self.count(kind),
                kind.meaning()
            );
        }
        out += &format!(
            "\nrescued: {} of {} retried calls succeeded\n",
            self.rescued_calls, self.retried_calls
        );
        if let Some(max) = self.batch_sizes.iter().max() {
            let commands: u64 = self.batch_sizes.iter().sum();
            out += &format!(
                "batches: {} committed {commands} commands (mean {:.1}, max {max})\n",
                self.batch_sizes.len(),
                commands as f64 / self.batch_sizes.len() as f64
            );
        }
        match (self.wait_at(0.5), self.wait_at(0.99), self.wait_at(1.0)) {
            (Some(p50), Some(p99), Some(max)) => {
                out += &format!(
                    "lock wait over {} calls: p50 {p50} ms, p99 {p99} ms, max {max} ms\n",
                    self.wait_ms.len()
                )
            }
            _ => out += "lock wait: no figures (verbose logs every call's)\n",
        }
        if !self.slowest.is_empty() {
            out += "\nslowest callers      ms  events  caller\n";
            for (caller, ms, n) in &self.slowest {
                out += &format!("{:>21} {n:>7}  {}\n", ms, printable(caller));
            }
        }
        out
    }

    /// node_exporter's textfile collector format (Prometheus text exposition 0.0.4).
    /// Counters count the whole log read: run it without --since, and a journal vacuum
    /// shows as a counter reset, which rate() handles.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::from(
            "# HELP xtlock_events_total Events in xtlock's log, by kind.\n\
             # TYPE xtlock_events_total counter\n",
        );
        for kind in EventKind::ALL {
            out.push_str(&format!(
                "xtlock_events_total{{event=\"{}\",severity=\"{}\"}} {}\n",
                kind.name(),
                kind.severity().name(),
                self.count(*kind)
            ));
        }
        for (name, help, value) in [
            (
                "xtlock_retried_calls_total",
                "Calls that needed a retry.",
                self.retried_calls,
            ),
            (
                "xtlock_rescued_calls_total",
                "Retried calls that then succeeded.",
                self.rescued_calls,
            ),
            (
                "xtlock_ignored_entries_total",
                "Journal entries under xtlock's name from other programs.",
                self.ignored,
            ),
            (
                "xtlock_batched_commands_total",
                "Commands committed in batches (group commit).",
                self.batch_sizes.iter().sum::<u64>() as usize,
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
            ));
        }
        histogram(
            &mut out,
            "xtlock_lock_wait_seconds",
            "Lock wait of the calls the log has (failures; every call under --verbose).",
            &self.wait_ms,
        );
        histogram(
            &mut out,
            "xtlock_lock_hold_seconds",
            "Run time under the lock of the calls the log has.",
            &self.hold_ms,
        );
        let last = self
            .last_error
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0.0, |d| d.as_secs_f64());
        out.push_str(&format!(
            "# HELP xtlock_last_error_timestamp_seconds When xtlock last logged an error (0: never).\n\
             # TYPE xtlock_last_error_timestamp_seconds gauge\n\
             xtlock_last_error_timestamp_seconds {last:.3}\n"
        ));
        out
    }

    pub fn to_json(&self, source: &str) -> String {
        let slowest: Vec<serde_json::Value> = self
            .slowest
            .iter()
            .map(|(caller, ms, n)| serde_json::json!({"caller": caller, "ms": ms, "events": n}))
            .collect();
        serde_json::json!({
            "source": source,
            "events": self.events,
            "ignored_entries": self.ignored,
            "by_kind": self.by_kind,
            "retried_calls": self.retried_calls,
            "rescued_calls": self.rescued_calls,
            "batches": {"count": self.batch_sizes.len(), "commands": self.batch_sizes.iter().sum::<u64>(), "max": self.batch_sizes.iter().max()},
            "lock_wait_ms": {"calls": self.wait_ms.len(), "p50": self.wait_at(0.5), "p99": self.wait_at(0.99), "max": self.wait_at(1.0)},
            "slowest_callers": slowest,
        })
        .to_string()
    }
}

/// The row name of each kind in the table (a match, so that a new kind needs one).
pub fn label(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Call => "calls",
        EventKind::Answer => "answers",
        EventKind::Failed => "refusals",
        EventKind::Retry => "retries",
        EventKind::GaveUp => "gave up",
        EventKind::NotRetried => "not retried",
        EventKind::LockFailed => "lock timeouts",
        EventKind::Killed => "killed",
        EventKind::Unlocked => "unlocked",
        EventKind::XtlockFailed => "xtlock errors",
        EventKind::SlowWait => "slow waits",
        EventKind::Config => "config ignored",
        EventKind::Batch => "batches",
        EventKind::Flushed => "flushes",
        EventKind::BatchOutput => "batch warnings",
        EventKind::BatchUnknown => "batches unknown",
    }
}

/// Count the events (pure, for tests).
pub fn summarize(lines: &[LogLine]) -> Summary {
    let mut summary = Summary {
        events: lines.len(),
        ..Summary::default()
    };
    for line in lines {
        if let Some(kind) = line.get("event") {
            *summary.by_kind.entry(kind.to_string()).or_default() += 1;
        }
    }
    let pids_of = |kind: EventKind| -> HashSet<u32> {
        lines
            .iter()
            .filter(|l| l.get("event") == Some(kind.name()))
            .map(|l| l.pid)
            .collect()
    };
    let retried = pids_of(EventKind::Retry);
    let unrescued: HashSet<u32> = [
        EventKind::GaveUp,
        EventKind::Failed,
        EventKind::NotRetried,
        EventKind::Killed,
    ]
    .into_iter()
    .flat_map(pids_of)
    .collect();
    summary.retried_calls = retried.len();
    summary.rescued_calls = retried.difference(&unrescued).count();
    let mut wait_by_call: HashMap<u32, u64> = HashMap::new();
    for line in lines {
        if let Some(ms) = line.get("wait_ms").and_then(|v| v.parse::<u64>().ok()) {
            let slot = wait_by_call.entry(line.pid).or_default();
            *slot = (*slot).max(ms);
        }
    }
    summary.wait_ms = wait_by_call.into_values().collect();
    summary.wait_ms.sort_unstable();
    let mut hold_by_call: HashMap<u32, u64> = HashMap::new();
    for line in lines {
        if let Some(ms) = line.get("run_ms").and_then(|v| v.parse::<u64>().ok()) {
            *hold_by_call.entry(line.pid).or_default() += ms;
        }
    }
    summary.hold_ms = hold_by_call.into_values().collect();
    summary.batch_sizes = lines
        .iter()
        .filter(|l| l.get("event") == Some(EventKind::Batch.name()))
        .filter_map(|l| l.get("commands")?.parse().ok())
        .collect();
    summary.last_error = lines
        .iter()
        .filter(|l| {
            l.get("event")
                .and_then(EventKind::from_name)
                .is_some_and(|k| k.severity() == crate::log::Severity::Error)
        })
        .filter_map(|l| l.time)
        .max();
    let mut by_caller: BTreeMap<String, (u64, usize)> = BTreeMap::new();
    for line in lines {
        let Some(caller) = line.get("caller") else {
            continue;
        };
        let ms = ["total_ms", "wait_ms"]
            .iter()
            .find_map(|k| line.get(k)?.parse::<u64>().ok())
            .unwrap_or(0);
        let entry = by_caller.entry(caller.to_string()).or_default();
        entry.0 = entry.0.max(ms);
        entry.1 += 1;
    }
    let mut slowest: Vec<(String, u64, usize)> = by_caller
        .into_iter()
        .map(|(caller, (ms, n))| (caller, ms, n))
        .collect();
    slowest.sort_by_key(|(_, ms, _)| std::cmp::Reverse(*ms));
    slowest.truncate(5);
    summary.slowest = slowest;
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_and_syslog_lines() {
        let file = r#"2026-11-26T05:34:47.336Z xtlock[5481]: warning: event=retry prog=iptables args="-I INPUT" wait_ms=3 caller="sh -c x""#;
        let line = parse_line(file).unwrap();
        assert_eq!(
            (line.pid, line.get("event"), line.get("caller")),
            (5481, Some("retry"), Some("sh -c x"))
        );
        assert!(line.time.is_some());
        let syslog = "<28>Nov 26 05:34:46 xtlock[5356]: event=failed prog=iptables status=1";
        let line = parse_line(syslog).unwrap();
        assert_eq!((line.pid, line.get("status")), (5356, Some("1")));
        assert_eq!(parse_line("random text"), None);
        assert_eq!(parse_line("x xtlock[1]: no fields here"), None);
    }

    #[test]
    fn parses_journal_entries() {
        let entry = r#"{"__REALTIME_TIMESTAMP":"1764135287336000","_PID":"5481","MESSAGE":"event=retry","PRIORITY":"4","XTLOCK_EVENT":"retry","XTLOCK_PROG":"iptables","XTLOCK_STDERR":[105,112,10],"XTLOCK_WAIT_MS":"3"}"#;
        let line = parse_journal_entry(entry).unwrap();
        assert_eq!(line.pid, 5481);
        assert_eq!(line.get("event"), Some("retry"));
        assert_eq!(line.get("stderr"), Some("ip\n"));
        assert_eq!(line.get("wait_ms"), Some("3"));
        assert!(line.time.is_some());
        assert_eq!(line.sender, Some(Sender::default()));
        let sent = r#"{"__REALTIME_TIMESTAMP":"1","_PID":"7","_UID":"0","_EXE":"/usr/bin/xtlock","XTLOCK_EVENT":"retry"}"#;
        let sender = parse_journal_entry(sent).unwrap().sender.unwrap();
        assert_eq!(sender.uid, Some(0));
        assert_eq!(sender.exe.as_deref(), Some("/usr/bin/xtlock"));
        assert_eq!(parse_journal_entry(r#"{"MESSAGE":"other"}"#), None);
        assert_eq!(parse_journal_entry("not json"), None);
    }

    #[test]
    fn summary_counts() {
        let text = "\
t xtlock[1]: warning: event=retry wait_ms=5 caller=a
t xtlock[1]: info: event=call status=0 wait_ms=5 total_ms=40 caller=a
t xtlock[2]: warning: event=retry wait_ms=0 caller=b
t xtlock[2]: error: event=gave-up wait_ms=0 caller=b
t xtlock[2]: info: event=call status=4 wait_ms=0 total_ms=900 caller=b
t xtlock[3]: info: event=call status=0 wait_ms=100 total_ms=120 caller=c
t xtlock[4]: info: event=failed status=1 caller=d
t xtlock[5]: error: event=lock-failed wait_ms=30000 caller=e
t xtlock[6]: info: event=batch commands=12 table=filter caller=f
t xtlock[7]: info: event=batch commands=3 table=nat caller=f
";
        let lines: Vec<LogLine> = text.lines().filter_map(parse_line).collect();
        let summary = summarize(&lines);
        assert_eq!((summary.retried_calls, summary.rescued_calls), (2, 1));
        assert_eq!(summary.by_kind["failed"], 1);
        assert_eq!(summary.by_kind["lock-failed"], 1);
        assert_eq!(
            (summary.wait_at(0.5), summary.wait_at(1.0)),
            (Some(100), Some(30000))
        );
        let table = summary.to_table("test");
        assert!(table.contains("refusals             1"), "{table}");
        assert!(table.contains("lock timeouts        1"), "{table}");
        assert!(table.contains("rescued: 1 of 2 retried calls"), "{table}");
        let json: serde_json::Value = serde_json::from_str(&summary.to_json("test")).unwrap();
        assert_eq!(json["by_kind"]["retry"], 2);
        assert_eq!(json["rescued_calls"], 1);
        assert_eq!(json["lock_wait_ms"]["max"], 30000);
        assert!(
            table.contains("batches: 2 committed 15 commands (mean 7.5, max 12)"),
            "{table}"
        );
        assert_eq!(json["batches"]["commands"], 15);
        let prometheus = summary.to_prometheus();
        assert!(
            prometheus.contains("\nxtlock_batched_commands_total 15\n"),
            "{prometheus}"
        );
        assert!(
            prometheus.contains("xtlock_events_total{event=\"batch\",severity=\"info\"} 2"),
            "{prometheus}"
        );
    }

    #[test]
    fn only_entries_journald_attributes_to_xtlock_count() {
        let own = Some(Path::new("/usr/bin/xtlock"));
        let sender = |uid: Option<u32>, exe: Option<&str>| Sender {
            uid,
            exe: exe.map(String::from),
        };
        let cases = [
            // xtlock exited before journald read /proc: root's word only.
            (sender(Some(0), None), true),
            (sender(Some(65534), None), false),
            (sender(None, None), false),
            // This binary, whoever ran it.
            (sender(Some(0), Some("/usr/bin/xtlock")), true),
            (sender(Some(1000), Some("/usr/bin/xtlock")), true),
            (sender(Some(0), Some("/usr/bin/xtlock (deleted)")), true),
            // Another xtlock install: root's only (a user may name anything xtlock).
            (sender(Some(0), Some("/usr/local/bin/xtlock")), true),
            (sender(Some(1000), Some("/home/u/xtlock")), false),
            // Another program writing xtlock's fields.
            (sender(Some(0), Some("/usr/bin/logger")), false),
            (sender(Some(0), Some("/usr/bin/python3.11")), false),
            (sender(Some(0), Some("/usr/bin/xtlock-evil")), false),
            (sender(Some(1000), Some("/usr/bin/systemd-cat")), false),
        ];
        for (sender, want) in cases {
            assert_eq!(from_xtlock(&sender, own), want, "{sender:?}");
        }
        assert!(!from_xtlock(
            &sender(Some(1000), Some("/usr/bin/xtlock")),
            None
        ));
    }

    #[test]
    fn callers_and_sources_stay_on_their_line() {
        let summary = Summary {
            events: 1,
            slowest: vec![("sh -c 'a\nb' \x1b[2J".into(), 5, 1)],
            ..Summary::default()
        };
        let table = summary.to_table("/tmp/log\nfile");
        assert!(!table.contains('\x1b'), "{table}");
        assert!(
            table.contains("source: /tmp/log\\nfile, 1 events\n"),
            "{table}"
        );
        assert!(table.contains("  1  sh -c 'a\\nb' \\x1b[2J\n"), "{table}");
    }

    #[test]
    fn stats_know_every_kind() {
        // One event of each kind, as the logger writes it: each is counted in its row.
        let text: String = EventKind::ALL
            .iter()
            .enumerate()
            .map(|(pid, kind)| {
                let event = crate::log::Event::new(*kind);
                format!(
                    "t xtlock[{pid}]: {}: {}\n",
                    kind.severity().name(),
                    event.text()
                )
            })
            .collect();
        let lines: Vec<LogLine> = text.lines().filter_map(parse_line).collect();
        let summary = summarize(&lines);
        let table = summary.to_table("test");
        for &kind in EventKind::ALL {
            assert_eq!(summary.by_kind.get(kind.name()), Some(&1), "{kind:?}");
            let row = format!("{:<14} {:>7}  {}", label(kind), 1, kind.meaning());
            assert!(table.contains(&row), "{kind:?}: {table}");
        }
        let labels: HashSet<&str> = EventKind::ALL.iter().map(|&k| label(k)).collect();
        assert_eq!(labels.len(), EventKind::ALL.len(), "two kinds share a row");
    }
}
