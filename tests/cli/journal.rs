//! Issue 11: xtlock's entries in a real systemd-journald (tests/journal/journal.sh runs
//! one in a private PID and mount namespace): fields and priorities, `xtlock stats`
//! over the journal (only xtlock's own entries, escaped, and a clear refusal for a user
//! who may not read it), and a healthy docker-like start that logs nothing at notice.

use crate::common::*;
use std::ffi::OsStr;
use std::path::Path;

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
    let bin = xtlock_bin();
    let out = run_in_namespaces(
        &["-m", "-p", "-f", "--mount-proc"],
        "journal/journal.sh",
        &[bin.as_os_str(), OsStr::new(name)],
    );
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

#[test]
fn stats_count_only_entries_journald_attributes_to_xtlock() {
    case("forged");
}

#[test]
fn stats_escape_a_callers_newline_and_esc() {
    case("control");
}

#[test]
fn stats_tell_a_user_who_cannot_read_the_journal() {
    case("nobody");
}
