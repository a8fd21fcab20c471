//! `xtlock stats`: what the log says about recent calls: how many, how many failed, what
//! retries rescued, how long calls waited for the lock, and who waited longest. Reads the
//! log file when one is set, else journald (`journalctl -t xtlock`).

use crate::status::Failure;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime};

pub struct Options {
    pub since: Option<Duration>,
    pub log_file: Option<PathBuf>,
}

/// One line of xtlock's log: the xtlock pid, the time (log file only) and the fields.
#[derive(Debug, PartialEq)]
pub struct LogLine {
    pub pid: u32,
    pub time: Option<SystemTime>,
    pub fields: Vec<(String, String)>,
}

impl LogLine {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parse a log-file line (`TIME xtlock[PID]: SEVERITY: event=...`) or a syslog/journal
/// line (`... xtlock[PID]: event=...`).
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
    })
}

pub fn stats(options: &Options) -> Result<u8, Failure> {
    let (source, text) = read_log(options)?;
    let cutoff = options.since.map(|d| SystemTime::now() - d);
    let lines: Vec<LogLine> = text
        .lines()
        .filter_map(parse_line)
        .filter(|l| match (cutoff, l.time) {
            (Some(cutoff), Some(time)) => time >= cutoff,
            _ => true,
        })
        .collect();
    print!("{}", summarize(&source, &lines));
    Ok(0)
}

fn read_log(options: &Options) -> Result<(String, String), Failure> {
    if let Some(file) = &options.log_file {
        let text = std::fs::read_to_string(file).map_err(|e| {
            Failure::Own(format!(
                "cannot read {}: {}",
                file.display(),
                crate::lock::errno_text(&e)
            ))
        })?;
        return Ok((file.display().to_string(), text));
    }
    let mut journal = Command::new("journalctl");
    journal.args(["-t", "xtlock", "-o", "short", "--no-pager"]);
    if let Some(since) = options.since {
        journal.arg(format!("--since=-{}s", since.as_secs()));
    }
    match journal.output() {
        Ok(out) if out.status.success() => Ok((
            "journald".into(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )),
        _ => Err(Failure::Own(
            "no log to read: no log_file is set and journalctl gave nothing; use --log-file PATH"
                .into(),
        )),
    }
}

/// The report, from parsed lines (pure, for tests).
pub fn summarize(source: &str, lines: &[LogLine]) -> String {
    let mut out = format!("source: {source}, {} events\n", lines.len());
    let count = |event: &str| {
        lines
            .iter()
            .filter(|l| l.get("event") == Some(event))
            .count()
    };
    let calls = count("call");
    if calls > 0 {
        out += &format!("calls: {calls}\n");
    } else {
        out += "calls: not logged (set verbose = true to log every call)\n";
    }
    let failed = count("failed") + count("gave-up") + count("not-retried") + count("lock-failed");
    out += &format!(
        "failures: {failed} (failed {}, gave up after retries {}, not retried as unsafe {}, lock not had {})\n",
        count("failed"),
        count("gave-up"),
        count("not-retried"),
        count("lock-failed")
    );
    let retried: HashSet<u32> = lines
        .iter()
        .filter(|l| l.get("event") == Some("retry"))
        .map(|l| l.pid)
        .collect();
    let gave_up: HashSet<u32> = lines
        .iter()
        .filter(|l| l.get("event") == Some("gave-up"))
        .map(|l| l.pid)
        .collect();
    out += &format!(
        "retries: {} in {} calls; rescued: {} calls succeeded after a retry\n",
        count("retry"),
        retried.len(),
        retried.difference(&gave_up).count()
    );
    // Wait times: one per call (the largest its lines report).
    let mut wait_by_call: HashMap<u32, u64> = HashMap::new();
    for line in lines {
        if let Some(ms) = line.get("wait_ms").and_then(|v| v.parse::<u64>().ok()) {
            let slot = wait_by_call.entry(line.pid).or_default();
            *slot = (*slot).max(ms);
        }
    }
    let mut waits: Vec<u64> = wait_by_call.values().copied().collect();
    waits.sort_unstable();
    if waits.is_empty() {
        out += "lock wait: no figures\n";
    } else {
        let pick = |q: f64| waits[((waits.len() - 1) as f64 * q).round() as usize];
        out += &format!(
            "lock wait ms over {} calls: p50 {} p99 {} max {}\n",
            waits.len(),
            pick(0.5),
            pick(0.99),
            waits[waits.len() - 1]
        );
    }
    let mut by_caller: BTreeMap<String, (u64, u32)> = BTreeMap::new();
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
    let mut slowest: Vec<(String, (u64, u32))> = by_caller.into_iter().collect();
    slowest.sort_by_key(|(_, (ms, _))| std::cmp::Reverse(*ms));
    if !slowest.is_empty() {
        out += "slowest callers (longest ms, events):\n";
        for (caller, (ms, n)) in slowest.iter().take(5) {
            out += &format!("  {ms:>7} ms {n:>5}  {caller}\n");
        }
    }
    out
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
    fn summary_counts() {
        let text = "\
t xtlock[1]: warning: event=retry wait_ms=5 caller=a
t xtlock[1]: info: event=call status=0 wait_ms=5 total_ms=40 caller=a
t xtlock[2]: warning: event=retry wait_ms=0 caller=b
t xtlock[2]: error: event=gave-up wait_ms=0 caller=b
t xtlock[2]: info: event=call status=4 wait_ms=0 total_ms=900 caller=b
t xtlock[3]: info: event=call status=0 wait_ms=100 total_ms=120 caller=c
";
        let lines: Vec<LogLine> = text.lines().filter_map(parse_line).collect();
        let report = summarize("test", &lines);
        assert!(report.contains("calls: 3\n"), "{report}");
        assert!(report.contains("failures: 1 "), "{report}");
        assert!(
            report.contains("retries: 2 in 2 calls; rescued: 1 calls"),
            "{report}"
        );
        assert!(report.contains("p50 5 p99 100 max 100"), "{report}");
        assert!(
            report.contains("900 ms") && report.find("900 ms") < report.find("120 ms"),
            "{report}"
        );
    }
}
