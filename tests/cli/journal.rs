//! Issue 11: xtlock's entries in a real systemd-journald (tests/journal/journal.sh runs
//! one in a private PID and mount namespace): fields and priorities, `xtlock stats`
//! over the journal, and a healthy docker-like start that logs nothing at notice.

use crate::common::*;
use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

fn case(name: &str) {
    let journald = Path::new("/lib/systemd/systemd-journald");
    if !require("root", is_root())
        || !require("unshare", have("unshare"))
        || !require("systemd-journald", journald.exists())
        || !require("journalctl", have("journalctl"))
        || !require("python3", have("python3"))
    {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/journal/journal.sh");
    let out = Command::new("timeout")
        .args(["300", "unshare", "-m", "-p", "-f", "--mount-proc", "bash"])
        .arg(script)
        .arg(xtlock_bin())
        .arg(OsStr::new(name))
        .env(
            "HOST_MNTNS",
            std::fs::read_link("/proc/self/ns/mnt").unwrap(),
        )
        .env(
            "HOST_PIDNS",
            std::fs::read_link("/proc/self/ns/pid").unwrap(),
        )
        .env_remove("XTLOCK_HOLDER")
        .env_remove("XTLOCK_DEPTH")
        .output()
        .unwrap();
    assert_case_ok(name, &out);
}

#[test]
fn each_event_reaches_the_journal_with_its_fields_and_priority() {
    case("fields");
}

#[test]
fn stats_count_the_journals_events() {
    case("stats");
}

#[test]
fn a_healthy_docker_like_start_logs_nothing_at_notice() {
    case("healthy");
}
