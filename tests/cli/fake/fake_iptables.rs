//! A stand-in for iptables, for what the real one cannot do on demand: fail N times
//! with a scripted message, die by a signal, hang, or prove that calls never overlap.
//! Built by the test harness with rustc; driven by FAKE_* environment variables so that
//! its argv stays exactly what xtlock passed.

use std::env::var_os;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

fn var(name: &str) -> Option<String> {
    var_os(name).map(|v| v.to_string_lossy().into_owned())
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    let calls = bump_counter();
    if let Some(log) = var_os("FAKE_LOG") {
        // One record per call: each arg as LEN:BYTES, then a newline. Binary-safe.
        let mut record = Vec::new();
        for arg in &args {
            record.extend_from_slice(format!("{}:", arg.len()).as_bytes());
            record.extend_from_slice(arg.as_bytes());
        }
        record.push(b'\n');
        append(PathBuf::from(log), &record);
    }
    if let Some(file) = var_os("FAKE_SIGNALS_FILE") {
        // What the caller's signal set-up looks like from here: ignored and blocked.
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let lines: Vec<&str> = status.lines().filter(|l| l.starts_with("SigIgn") || l.starts_with("SigBlk")).collect();
        std::fs::write(PathBuf::from(file), lines.join("\n")).unwrap();
    }
    if let Some(dir) = var_os("FAKE_STDIN_DIR") {
        let mut input = Vec::new();
        std::io::stdin().read_to_end(&mut input).unwrap();
        std::fs::write(PathBuf::from(dir).join(format!("stdin.{calls}")), input).unwrap();
    }
    let busy = var_os("FAKE_BUSY_DIR").map(|d| PathBuf::from(d).join("busy"));
    if let Some(busy) = &busy {
        // mkdir is atomic: if it exists, another call is running right now.
        if std::fs::create_dir(busy).is_err() {
            append(busy.with_file_name("overlaps"), b"overlap\n");
        }
    }
    if let Some(file) = var_os("FAKE_STARTED") {
        append(PathBuf::from(file), format!("{}\n", std::process::id()).as_bytes());
    }
    if let Some(file) = var_os("FAKE_WAIT_FOR") {
        let file = PathBuf::from(file);
        while !file.exists() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    if let Some(ms) = var("FAKE_SLEEP_MS") {
        std::thread::sleep(Duration::from_millis(ms.parse().unwrap()));
    }
    if let Some(busy) = &busy {
        let _ = std::fs::remove_dir(busy);
    }
    if var_os("FAKE_HANG").is_some() {
        if let Some(file) = var_os("FAKE_PIDFILE") {
            std::fs::write(PathBuf::from(file), std::process::id().to_string()).unwrap();
        }
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    if let Some(bytes) = var("FAKE_STDOUT_BYTES") {
        let chunk = vec![b'x'; 65536];
        let mut left: usize = bytes.parse().unwrap();
        let mut out = std::io::stdout().lock();
        while left > 0 {
            let n = left.min(chunk.len());
            out.write_all(&chunk[..n]).unwrap();
            left -= n;
        }
    }
    if let Some(bytes) = var("FAKE_STDERR_BYTES") {
        let chunk = vec![b'e'; 65536];
        let mut left: usize = bytes.parse().unwrap();
        let mut err = std::io::stderr().lock();
        while left > 0 {
            let n = left.min(chunk.len());
            err.write_all(&chunk[..n]).unwrap();
            left -= n;
        }
    }
    let failing = var("FAKE_FAIL_TIMES").is_some_and(|n| calls <= n.parse().unwrap());
    if failing {
        let text = var_os("FAKE_FAIL_STDERR").unwrap_or_default();
        std::io::stderr().write_all(text.as_bytes()).unwrap();
        std::process::exit(var("FAKE_FAIL_CODE").map_or(4, |c| c.parse().unwrap()));
    }
    if let Some(text) = var_os("FAKE_STDERR") {
        std::io::stderr().write_all(text.as_bytes()).unwrap();
    }
    if let Some(stdout) = var_os("FAKE_STDOUT") {
        std::io::stdout().write_all(stdout.as_bytes()).unwrap();
    }
    if let Some(signal) = var("FAKE_SIGNAL") {
        let pid = std::process::id();
        let status = std::process::Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status();
        let _ = status;
        std::thread::sleep(Duration::from_secs(5));
    }
    std::process::exit(var("FAKE_EXIT").map_or(0, |c| c.parse().unwrap()));
}

/// Count calls in FAKE_COUNTER (calls under xtlock are serialised, so no race).
fn bump_counter() -> u32 {
    let Some(path) = var_os("FAKE_COUNTER") else { return 1 };
    let path = PathBuf::from(path);
    let n = std::fs::read_to_string(&path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0) + 1;
    std::fs::write(&path, n.to_string()).unwrap();
    n
}

fn append(path: PathBuf, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}
