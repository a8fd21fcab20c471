//! What the benchmarks in examples/ share: timing arithmetic, a shell helper and the
//! machine's description for their headers.

use std::process::Command;
use std::time::Duration;

pub fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

pub fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

pub fn whole_ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

pub fn sh(script: &str) -> String {
    let out = Command::new("sh").args(["-c", script]).output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn machine() -> String {
    let cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2")
        .trim()
        .to_string();
    format!(
        "{} cores, {cpu}, kernel {}",
        sh("nproc").trim(),
        sh("uname -r").trim()
    )
}
