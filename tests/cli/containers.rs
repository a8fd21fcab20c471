//! README's container recipe with a real dockerd (Debian's docker.io) that the test starts
//! itself in a private PID, mount and network namespace (tests/docker/containers.sh):
//! containers with `--network host` and their own /run race a writer of the namespace
//! they share. Bare, each has its own iptables lock and commands fail; through xtlock,
//! with the one lock file bind-mounted into each container, nothing is lost.

use crate::common::*;
use std::ffi::OsStr;

/// 4 containers and the namespace itself, each 3 loops at once of 40 appends.
const CONTAINERS: &str = "4";
const LOOPS: &str = "3";
const RULES: &str = "40";
/// The race usually shows in the first bare run; a quiet machine gets a few more.
const BARE_RUNS: &str = "3";

#[test]
fn containers_sharing_the_hosts_lock_file_lose_nothing() {
    if !private_netns_with(&[
        "dockerd",
        "docker",
        "iptables-legacy",
        "iptables-legacy-save",
    ]) || !require(
        "PID namespaces",
        std::process::Command::new("unshare")
            .args(["-p", "-f", "--mount-proc", "true"])
            .status()
            .is_ok_and(|s| s.success()),
    ) {
        return;
    }
    let xtlock = xtlock_bin();
    let args: Vec<&OsStr> = [xtlock.as_os_str()]
        .into_iter()
        .chain([CONTAINERS, LOOPS, RULES, BARE_RUNS].map(OsStr::new))
        .collect();
    let out = run_in_namespaces(
        &["-m", "-n", "-p", "-f", "--mount-proc"],
        "docker/containers.sh",
        &args,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprint!("{stderr}");
    if let Some(reason) = stdout.lines().find_map(|l| l.strip_prefix("SKIPPED: ")) {
        assert_eq!(code(&out), 77, "{stdout}");
        require(reason, false);
        return;
    }
    assert!(
        out.status.success() && stdout.lines().any(|l| l == "done"),
        "containers.sh failed ({}):\n{stdout}\n{stderr}",
        code(&out)
    );
    let runs: Vec<&str> = stdout.lines().filter(|l| l.starts_with("mode=")).collect();
    for run in &runs {
        eprintln!("{run}");
    }
    let value = |line: &str, key: &str| result_value(line, key);

    let bare: Vec<&&str> = runs
        .iter()
        .filter(|l| l.starts_with("mode=bare "))
        .collect();
    assert!(!bare.is_empty(), "no bare run:\n{stdout}");
    let raced = bare.iter().any(|l| {
        ["failed", "missing", "duplicated", "extra"]
            .iter()
            .any(|k| value(l, k) > 0)
    });
    if !raced {
        eprintln!(
            "SKIPPED: the bare half: the race did not show in {} bare runs (no failure, nothing lost)",
            bare.len()
        );
    }

    let through = runs
        .iter()
        .find(|l| l.starts_with("mode=xtlock "))
        .unwrap_or_else(|| panic!("no xtlock run:\n{stdout}"));
    let commands = value(through, "commands");
    for key in ["failed", "missing", "duplicated", "extra"] {
        assert_eq!(value(through, key), 0, "{key} through xtlock: {through}");
    }
    // Every command went through an xtlock (the writers' PATH has the shim first): one
    // `call` each, or one line of a batch.
    assert_eq!(
        value(through, "calls") + value(through, "batched"),
        commands,
        "commands xtlock ran: {through}"
    );
    // No attempt failed at all, so none was retried: the writers never overlapped. Had
    // each container its own lock (the `unbound` run), xtlock would retry the kernel's
    // EAGAIN, and a legacy "Invalid argument" it may not retry would count as failed.
    assert_eq!(
        value(through, "retries"),
        0,
        "retried through xtlock: {through}"
    );
    assert!(value(through, "waited") > 0, "no call waited: {through}");
    // Without the bind mount each container's xtlock batches against writers it does not
    // see: a legacy batch whose COMMIT then fails may or may not have landed, and its
    // callers are told so (125); none is ever applied twice.
    let unbound = runs
        .iter()
        .find(|l| l.starts_with("mode=unbound "))
        .unwrap_or_else(|| panic!("no unbound run:\n{stdout}"));
    eprintln!("without the bind mount: {unbound}");
    assert_eq!(value(unbound, "duplicated"), 0, "{unbound}");
    assert_eq!(value(unbound, "extra"), 0, "{unbound}");

    // `-v FILE:/run/xtlock.lock` with no FILE on the host makes a directory there; a call
    // on the host then fails with one line and exit 4, never running unlocked.
    let absent = stdout
        .lines()
        .find(|l| l.starts_with("absent_lock_file: "))
        .unwrap_or_else(|| panic!("no absent_lock_file line:\n{stdout}"));
    assert!(
        absent.contains("a host call: exit 4 lines=1 rule=0 xtlock: "),
        "{absent}"
    );
    eprintln!("{absent}");
}
