//! Unusual callers against the real iptables in a private namespace
//! (tests/inputs/cases.sh): issue 8's pipes, FIFOs, multi-call restores and a restore
//! fed in pieces; issue 12's unprivileged help and lists.

use crate::common::*;
use std::ffi::OsStr;

fn case(name: &str) {
    if !require("root", is_root())
        || !require("unshare", have("unshare"))
        || !require("iptables-legacy", have("iptables-legacy"))
        || !require("runuser", have("runuser"))
    {
        return;
    }
    let bin = xtlock_bin();
    let out = run_in_private_namespace("inputs/cases.sh", &[bin.as_os_str(), OsStr::new(name)]);
    assert_case_ok(name, &out);
}

#[test]
fn a_restore_reads_a_process_substitution() {
    case("procsub");
}

#[test]
fn a_restore_reads_dev_stdin_on_a_pipe() {
    case("devstdin");
}

#[test]
fn a_restore_reads_a_fifo() {
    case("fifo");
}

#[test]
fn a_multi_call_restore_is_replayed_after_iptables_lock_was_busy() {
    case("multi-lock-busy");
}

#[test]
fn a_save_runs_while_a_noflush_restore_waits_for_input() {
    case("mid-restore");
}

#[test]
fn unprivileged_help_and_errors_are_the_programs_own() {
    case("unprivileged");
}

#[test]
fn a_noflush_restore_fed_by_a_locked_writer_through_a_pipe() {
    case("locked-feeder");
}

/// Issue 18: a save -> edit -> restore cycle run as one `xtlock sh -c '...'` is one
/// transaction: a writer adding rules meanwhile loses nothing (bare it loses most).
#[test]
fn a_save_edit_restore_cycle_under_one_call_loses_no_concurrent_write() {
    case("transaction");
}

/// A --noflush restore whose input was pumped while it waited for the lock, then
/// relayed: status, stdout, stderr and tables as bare (legacy and nft); the feeder and
/// the program each SIGKILLed mid-way.
#[test]
fn a_pumped_and_relayed_restore_input_is_as_bare() {
    case("relay");
}
