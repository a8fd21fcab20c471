//! A script run under the lock that calls iptables again must not deadlock; a marker
//! that does not come from a live ancestor must not let a call skip the lock.

use crate::common::*;
use crate::lock::hold_lock;
use std::os::unix::fs::MetadataExt;

#[test]
fn nested_call_under_the_lock_does_not_deadlock() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let out = run(sb.xtlock().args([
        "--timeout",
        "2",
        "sh",
        "-c",
        "iptables -N inner && iptables -A inner -j RETURN",
    ]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(sb.calls().len(), 2);
    let calls = sb.calls();
    assert_eq!(calls[0][1], b"-N");
}

#[test]
fn nested_calls_still_exclude_outsiders() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let mut holder = hold_lock(&sb, 30);
    let out = run(sb.shim("iptables").arg("-L").env("XTLOCK_TIMEOUT", "0.2"));
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(code(&out), 4, "an unrelated call waits");
}

#[test]
fn stale_or_foreign_markers_do_not_bypass_the_lock() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let mut holder = hold_lock(&sb, 30);
    let meta = std::fs::metadata(sb.lock_file()).unwrap();
    let markers = [
        // The real holder, but not our ancestor (copied into our environment).
        format!("{}:{}:{}", holder.id(), meta.dev(), meta.ino()),
        // An ancestor (the test runner), which does not hold the lock.
        format!("{}:{}:{}", std::process::id(), meta.dev(), meta.ino()),
        // Gone.
        format!("999999999:{}:{}", meta.dev(), meta.ino()),
        // Another file.
        format!("{}:{}:{}", holder.id(), meta.dev(), meta.ino() + 1),
        "garbage".to_string(),
    ];
    for marker in markers {
        let out = run(sb
            .shim("iptables")
            .arg("-L")
            .env("XTLOCK_TIMEOUT", "0.2")
            .env("XTLOCK_HOLDER", &marker));
        assert_eq!(code(&out), 4, "marker {marker} bypassed the lock");
    }
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(sb.calls().is_empty());
}
