//! The real fail2ban, end to end (tests/fail2ban/e2e.sh, run in a fresh network and
//! mount namespace): 20 jails and two other writers, each call with its own
//! XTABLES_LOCKFILE. Bare it must lose rules; through xtlock, routed by the .local file
//! or by PATH shims, every chain, jump and ban is there exactly once.

use crate::common::*;

#[derive(Debug, Default)]
struct Outcome {
    missing: u32,
    duplicated: u32,
    errors: u32,
    leftover: u32,
    writer_failures: u32,
    line: String,
}

fn available() -> bool {
    require("root", is_root())
        && require("fail2ban-server", have("fail2ban-server"))
        && require("iptables-legacy", have("iptables-legacy"))
}

fn e2e(mode: &str) -> Outcome {
    let xtlock = xtlock_bin();
    let xtlock = xtlock.as_os_str();
    let out = run_in_private_namespace("fail2ban/e2e.sh", &[mode.as_ref(), xtlock]);
    let line = result_line("e2e.sh", &out);
    let value = |key: &str| result_value(&line, key);
    Outcome {
        missing: value("missing"),
        duplicated: value("duplicated"),
        errors: value("errors"),
        leftover: value("leftover"),
        writer_failures: value("writer_failures"),
        line: line.clone(),
    }
}

fn assert_clean(outcome: &Outcome) {
    let got = (
        outcome.missing,
        outcome.duplicated,
        outcome.errors,
        outcome.leftover,
        outcome.writer_failures,
    );
    assert_eq!(got, (0, 0, 0, 0, 0), "{}", outcome.line);
}

#[test]
fn fail2ban_bare_loses_rules() {
    if !available() {
        return;
    }
    // Proves the two tests below can fail: the same setup without xtlock goes wrong.
    let bare = (0..2)
        .map(|_| e2e("bare"))
        .find(|o| o.missing + o.errors > 0);
    let bare = bare.expect(
        "two bare runs of fail2ban and two racing writers lost nothing: the test cannot tell",
    );
    // Usually fail2ban logs errors too; a loaded machine has also lost a rule with none
    // logged (missing=1 errors=0): the silent loss xtlock exists for. Either shows it.
    eprintln!("{}", bare.line);
}

#[test]
fn fail2ban_routed_by_the_local_file_loses_nothing() {
    if available() {
        assert_clean(&e2e("local"));
    }
}

#[test]
fn fail2ban_routed_by_path_shims_loses_nothing() {
    if available() {
        assert_clean(&e2e("shim"));
    }
}
