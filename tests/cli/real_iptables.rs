//! The real iptables, legacy and nft, in a private network and mount namespace made by
//! examples/race.sh (which refuses to touch a rule unless the namespace is fresh).

use crate::common::*;
use crate::lock::hold_lock;
use std::path::Path;
use std::process::Command;

fn available(program: &str) -> bool {
    private_netns_with(&[program])
}

struct RaceResult {
    failed: u32,
    missing: u32,
    duplicated: u32,
    line: String,
}

fn race(backend: &str, mode: &str, workers: u32) -> RaceResult {
    race_with_bans(backend, mode, workers, 4)
}

fn race_with_bans(backend: &str, mode: &str, workers: u32, bans: u32) -> RaceResult {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/race.sh");
    let out = Command::new("sh")
        .arg(script)
        .arg("--xtlock")
        .arg(xtlock_bin())
        .args(["--backend", backend, "--mode", mode])
        .args([
            "--workers",
            &workers.to_string(),
            "--bans",
            &bans.to_string(),
        ])
        .output()
        .unwrap();
    let line = result_line("race.sh", &out);
    let value = |key: &str| result_value(&line, key);
    RaceResult {
        failed: value("failed"),
        missing: value("missing"),
        duplicated: value("duplicated"),
        // With what went wrong (race.sh names the first failures on stderr).
        line: format!("{line}\n{}", stderr(&out)),
    }
}

fn assert_lost_nothing(result: &RaceResult) {
    let got = (result.failed, result.missing, result.duplicated);
    assert_eq!(got, (0, 0, 0), "{}", result.line);
}

#[test]
fn legacy_race_loses_rules_bare_and_none_through_xtlock() {
    if !available("iptables-legacy") {
        return;
    }
    // The bare run proves the test can fail: without xtlock the race must show.
    let bare = (0..3)
        .map(|_| race("legacy", "bare", 64))
        .find(|r| r.failed > 0);
    let bare =
        bare.expect("three bare runs of 64 racing workers lost nothing: the test cannot tell");
    assert!(bare.missing > 0, "{}", bare.line);
    let locked = race("legacy", "xtlock", 64);
    assert_lost_nothing(&locked);
}

#[test]
fn nft_backend_through_xtlock_loses_nothing() {
    if !available("iptables-nft") {
        return;
    }
    let locked = race("nft", "xtlock", 64);
    assert_lost_nothing(&locked);
}

#[test]
fn load_1024_calls_from_64_clients_all_land_once() {
    if !available("iptables-legacy") {
        return;
    }
    // 64 workers x (3 + 13 bans) = 1024 calls; a call that timed out would count as failed.
    let locked = race_with_bans("legacy", "xtlock", 64, 13);
    assert!(locked.line.contains("commands=1024"), "{}", locked.line);
    assert_lost_nothing(&locked);
}

/// One shell command run as root in a fresh namespace with the shim first in PATH.
fn in_namespace(script: &str) -> (i32, String, String) {
    let sb = Sandbox::new();
    for name in ["iptables-legacy", "iptables-legacy-restore", "iptables-nft"] {
        sb.link_shim(name);
    }
    in_namespace_of(&sb, script)
}

/// One shell command run as root in a fresh namespace, with `sb`'s shims first in PATH
/// and its lock file, config and log.
pub fn in_namespace_of(sb: &Sandbox, script: &str) -> (i32, String, String) {
    let guarded = format!(
        "[ \"$(readlink /proc/self/ns/net)\" != \"$HOST_NETNS\" ] && [ \"$(ip -o link show | wc -l)\" -eq 1 ] || {{ echo 'not a fresh netns' >&2; exit 99; }}\n\
         mount -t tmpfs xtlock-test /run || exit 98\n{script}"
    );
    let out = sb
        .command("unshare")
        .args(["-n", "-m", "sh", "-c", &guarded])
        .env(
            "HOST_NETNS",
            std::fs::read_link("/proc/self/ns/net").unwrap(),
        )
        .output()
        .unwrap();
    (
        code(&out),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr(&out),
    )
}

#[test]
fn real_answers_pass_through_unchanged() {
    if !available("iptables-legacy") {
        return;
    }
    for backend in ["legacy", "nft"] {
        let script = format!(
            "iptables-{backend} -N f2b-x; echo n1=$?\n\
             iptables-{backend} -N f2b-x; echo n2=$?\n\
             iptables-{backend} -C INPUT -j f2b-x; echo c=$?\n\
             iptables-{backend} -A INPUT -j f2b-x; echo a=$?\n\
             iptables-{backend} -C INPUT -j f2b-x; echo c2=$?\n\
             iptables-{backend} -A INPUT -j NO-SUCH-TARGET; echo bad=$?\n\
             iptables-{backend} -S INPUT"
        );
        let (status, stdout, stderr) = in_namespace(&script);
        assert_eq!(status, 0, "{backend}: {stderr}");
        assert!(
            stdout.contains("n1=0\nn2=1\nc=1\na=0\nc2=0\nbad=2\n"),
            "{backend}: {stdout}"
        );
        assert!(stdout.contains("-A INPUT -j f2b-x"), "{backend}: {stdout}");
        assert!(
            stderr.contains("iptables: Chain already exists.\n"),
            "{backend}: {stderr}"
        );
        assert!(
            !stderr.contains("xtlock"),
            "{backend}: xtlock spoke: {stderr}"
        );
    }
}

#[test]
fn concurrent_noflush_restores_through_xtlock_all_land() {
    if !available("iptables-legacy-restore") {
        return;
    }
    let script = r#"
        i=1
        while [ $i -le 16 ]; do
            XTABLES_LOCKFILE=/run/xt.$i printf '*filter\n:r%s - [0:0]\n-A r%s -j RETURN\nCOMMIT\n' $i $i | iptables-legacy-restore --noflush || echo "failed $i" &
            i=$((i + 1))
        done
        wait
        iptables-legacy-save -t filter | grep -c '^-A r[0-9]* -j RETURN$'
    "#;
    let (status, stdout, stderr) = in_namespace(script);
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(stdout.trim(), "16", "{stdout}\n{stderr}");
}

/// Issue 15 item 8: run as `iptables-legacy-save/.`, xtables-legacy-multi finds no applet
/// named `.` (basename from <libgen.h>) and runs argv[1]: here a write. It must queue
/// for the lock like any write, not run in our place as a save.
#[test]
fn a_write_behind_an_odd_arg0_waits_for_the_lock() {
    if !available("iptables-legacy") {
        return;
    }
    let sb = Sandbox::new();
    sb.link_shim("iptables-legacy-save");
    let odd = |program: &str| {
        format!(
            "bash -c 'exec -a \"$0\" \"$@\"' 'iptables-legacy-save/.' {program} iptables -A INPUT -j ACCEPT"
        )
    };
    // Bare, the real program does add the rule: the premise of this test.
    let (status, stdout, stderr) = in_namespace_of(
        &sb,
        &format!(
            "{}; echo bare=$?; iptables-legacy -S INPUT",
            odd(&which("iptables-legacy-save").display().to_string())
        ),
    );
    assert_eq!(status, 0, "{stderr}");
    assert!(
        stdout.contains("bare=0\n") && stdout.contains("-A INPUT -j ACCEPT"),
        "{stdout}"
    );
    // Through the shim while the test holds the lock: it waits, gives up, adds nothing.
    let shim = sb.path("shim/iptables-legacy-save");
    let through = odd(&shim.display().to_string());
    let mut holder = hold_lock(&sb, 60);
    let (status, stdout, stderr) = in_namespace_of(
        &sb,
        &format!("XTLOCK_TIMEOUT=2 {through}; echo held=$?; iptables-legacy -S INPUT"),
    );
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(status, 0, "{stderr}");
    assert!(
        stdout.contains("held=4\n"),
        "ran without the lock: {stdout}\n{stderr}"
    );
    assert!(!stdout.contains("-A INPUT -j ACCEPT"), "{stdout}");
    assert!(stderr.starts_with("xtlock: timed out after 2s"), "{stderr}");
    // With the lock free, the same call runs (locked) and adds the rule.
    let (status, stdout, stderr) = in_namespace_of(
        &sb,
        &format!("{through}; echo free=$?; iptables-legacy -S INPUT"),
    );
    assert_eq!(status, 0, "{stderr}");
    assert!(
        stdout.contains("free=0\n") && stdout.contains("-A INPUT -j ACCEPT"),
        "{stdout}\n{stderr}"
    );
}

/// Issue 15 item 10: iptables-restore reads lines with fgets into a 10,240-byte buffer,
/// so a longer line counts as two. Here the tail of a long line is a bad rule, reported
/// as "line 3 failed"; line 3 of the text is COMMIT, but to iptables it is the tail.
/// A failing rule fails every time: one run, the program's own stderr and status.
#[test]
fn a_bad_rule_in_an_over_long_line_is_not_taken_for_a_failed_commit() {
    if !available("iptables-legacy-restore") {
        return;
    }
    let sb = Sandbox::new();
    sb.link_shim("iptables-legacy-restore");
    let head = "-A INPUT -j ACCEPT";
    let rules = format!(
        "*filter\n{head}{}-A NO-SUCH-CHAIN -j ACCEPT\nCOMMIT\n",
        " ".repeat(10239 - head.len())
    );
    std::fs::write(sb.path("state/rules"), &rules).unwrap();
    let state = sb.path("state");
    let script = format!(
        "cd {state}\n\
         {bare} < rules > bare.out 2> bare.err; echo bare=$?\n\
         iptables-legacy-restore < rules > shim.out 2> shim.err; echo shim=$?",
        state = state.display(),
        bare = which("iptables-legacy-restore").display()
    );
    let (status, stdout, stderr) = in_namespace_of(&sb, &script);
    assert_eq!(status, 0, "{stderr}");
    let read = |name: &str| std::fs::read(state.join(name)).unwrap();
    assert_eq!(
        read("bare.err"),
        b"iptables-restore: line 3 failed\n",
        "the premise: iptables counts the long line as two"
    );
    assert!(stdout.contains("bare=1\nshim=1\n"), "{stdout}");
    assert_eq!(read("shim.err"), read("bare.err"));
    assert_eq!(read("shim.out"), read("bare.out"));
    let log = sb.log();
    assert!(events(&log, "retry").is_empty(), "replayed: {log}");
    assert!(events(&log, "gave-up").is_empty(), "{log}");
    let failed = events(&log, "failed");
    assert_eq!(failed.len(), 1, "{log}");
    assert_eq!(field(&failed[0], "attempt"), "1/5", "{log}");
}

/// Legacy iptables takes its own lock (`XTABLES_LOCKFILE`, else /run/xtables.lock)
/// while it runs under xtlock's: when that is xtlock's own lock file (the variable set
/// to it, or xtlock's lock_file set to /run/xtables.lock), it would wait for xtlock for
/// ever. Each call ends at once with exit 4 and one line naming both (before: a hang),
/// alone and queued behind a holder; bare, the same calls succeed.
#[test]
fn iptables_own_lock_being_xtlocks_is_refused_not_a_deadlock() {
    if !available("iptables-legacy") {
        return;
    }
    let script = r#"
        rule='-A INPUT -s 10.6.6.6 -j DROP'
        XTABLES_LOCKFILE=$XTLOCK_LOCK_FILE timeout 20 iptables-legacy -w $rule; echo variable=$?
        XTLOCK_LOCK_FILE=/run/xtables.lock timeout 20 iptables-legacy -w $rule; echo config=$?
        flock "$XTLOCK_LOCK_FILE" sleep 1 &
        sleep 0.2
        XTABLES_LOCKFILE=$XTLOCK_LOCK_FILE timeout 20 iptables-legacy -w $rule & a=$!
        XTABLES_LOCKFILE=$XTLOCK_LOCK_FILE timeout 20 iptables-legacy -w $rule; echo queued=$?
        wait $a; echo queued_too=$?
        wait
        echo rules=$(PATH=/usr/sbin:/usr/bin:/sbin:/bin iptables-legacy-save | grep -c 10.6.6.6)
        XTABLES_LOCKFILE=$XTLOCK_LOCK_FILE PATH=/usr/sbin:/usr/bin:/sbin:/bin timeout 20 iptables-legacy -w $rule; echo bare=$?
    "#;
    let (status, stdout, stderr) = in_namespace(script);
    assert_eq!(status, 0, "{stdout}\n{stderr}");
    for case in [
        "variable=4",
        "config=4",
        "queued=4",
        "queued_too=4",
        "rules=0",
        "bare=0",
    ] {
        assert!(
            stdout.contains(&format!("{case}\n")),
            "{case}: {stdout}\n{stderr}"
        );
    }
    assert!(
        stderr.contains("its own lock file") && stderr.contains("is xtlock's lock file"),
        "{stderr}"
    );
}
