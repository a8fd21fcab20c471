//! Logging: syslog to a socket the test binds itself, the log file, and the rule that a
//! successful call prints nothing of xtlock's and a dead log target changes nothing.

use crate::common::*;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

#[test]
fn failures_reach_syslog_with_ident_and_fields() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let socket_path = sb.path("log.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let out = run(sb
        .shim("iptables")
        .args(["-I", "INPUT", "-j", "f2b-sshd"])
        .env("XTLOCK_SYSLOG_SOCKET", &socket_path)
        .env("FAKE_FAIL_TIMES", "1")
        .env("FAKE_FAIL_STDERR", EAGAIN));
    assert_eq!(code(&out), 0);
    let mut buf = vec![0u8; 65536];
    let n = socket.recv(&mut buf).unwrap();
    let message = String::from_utf8_lossy(&buf[..n]);
    // <PRI> with facility daemon (3) and severity warning (4): 3*8+4 = 28.
    assert!(message.starts_with("<28>"), "{message}");
    assert!(message.contains(" xtlock["), "{message}");
    assert!(
        message.contains(
            "event=retry prog=iptables args=\"-I INPUT -j f2b-sshd\" attempt=1/5 status=4"
        ),
        "{message}"
    );
    assert!(
        message.contains(r#"stderr="iptables: Resource temporarily unavailable.\n""#),
        "{message}"
    );
}

#[test]
fn success_logs_nothing_unless_verbose() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let out = run(sb.shim("iptables").arg("-L"));
    assert!(out.stderr.is_empty());
    assert_eq!(sb.log(), "");
    let out = run(sb.xtlock().args(["-v", "iptables", "-L"]));
    assert!(out.stderr.is_empty(), "verbose goes to the log, not stderr");
    let calls = events(&sb.log(), "call");
    assert_eq!(calls.len(), 1, "{}", sb.log());
    assert_eq!(
        (field(&calls[0], "status"), field(&calls[0], "attempts")),
        ("0", "1")
    );
    let out = run(sb.shim("iptables").env("XTLOCK_VERBOSE", "1"));
    assert_eq!(code(&out), 0);
    assert_eq!(events(&sb.log(), "call").len(), 2);
}

#[test]
fn dead_log_targets_never_fail_the_command() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let out = run(sb
        .shim("iptables")
        .env("XTLOCK_SYSLOG_SOCKET", sb.path("no-such.sock"))
        .env("XTLOCK_LOG_FILE", "/nonexistent/dir/xtlock.log")
        .env("FAKE_FAIL_TIMES", "1")
        .env("FAKE_FAIL_STDERR", EAGAIN)
        .env("FAKE_EXIT", "3"));
    assert_eq!(code(&out), 3);
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    assert_eq!(sb.counter(), 2);
}

#[test]
fn full_disk_log_file_never_fails_the_command() {
    // /dev/full is a device, not a log file: skipped before any write.
    let sb = Sandbox::with_fake(&["iptables"]);
    if std::path::Path::new("/dev/full").exists() {
        let out = run(sb
            .shim("iptables")
            .env("XTLOCK_LOG_FILE", "/dev/full")
            .env("FAKE_EXIT", "1")
            .env("FAKE_STDERR", "x\n"));
        assert_eq!((code(&out), stderr(&out)), (1, "x\n".to_string()));
    }
    // A regular log file on a file system that is full: the write itself fails (ENOSPC).
    // A one-page tmpfs in a private mount namespace, filled before the call.
    if !require("root and unshare", is_root() && have("unshare")) {
        return;
    }
    let full = sb.path("full");
    std::fs::create_dir(&full).unwrap();
    let script = r#"
        mount -t tmpfs -o size=4k xtlock-test-full "$1" || exit 100
        head -c 65536 /dev/zero > "$1/filler" 2>/dev/null
        iptables -A INPUT; status=$?
        [ -e "$1/xtlock.log" ] && echo log-created
        [ -s "$1/xtlock.log" ] || echo log-empty
        exit $status
    "#;
    let out = run(sb
        .command("unshare")
        .args(["-m", "sh", "-c", script, "sh"])
        .arg(&full)
        .env("XTLOCK_LOG_FILE", full.join("xtlock.log"))
        .env("FAKE_EXIT", "1")
        .env("FAKE_STDERR", "x\n"));
    assert_eq!((code(&out), stderr(&out)), (1, "x\n".to_string()));
    // The logger did open the file and its write failed: the case under test happened.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "log-created\nlog-empty\n"
    );
}

#[test]
fn bad_config_is_logged_and_the_command_still_runs() {
    let sb = Sandbox::with_fake(&["iptables"]);
    std::fs::write(sb.path("xtlock.conf"), "timeout = 5\nretries = \"lots\"\n").unwrap();
    let out = run(sb.shim("iptables").args(["-A", "INPUT"]));
    assert_eq!(code(&out), 0);
    assert!(out.stderr.is_empty());
    assert_eq!(sb.calls().len(), 1);
    let warnings = events(&sb.log(), "config");
    assert_eq!(warnings.len(), 1, "{}", sb.log());
    let problem = field(&warnings[0], "problem");
    assert!(problem.contains("xtlock.conf:2: invalid type"), "{problem}");
}

#[test]
fn a_wait_over_one_second_is_logged() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let mut holder = crate::lock::hold_lock(&sb, 2);
    let out = run(sb
        .shim("iptables")
        .args(["-A", "INPUT"])
        .env("XTLOCK_TIMEOUT", "20"));
    holder.wait().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "a slow call is still a quiet one");
    let slow = events(&sb.log(), "slow-wait");
    assert_eq!(slow.len(), 1, "{}", sb.log());
    let waited: u64 = field(&slow[0], "wait_ms").parse().unwrap();
    assert!(waited >= 1000, "{waited}");
}

/// Issue 9: xtlock's own failures are logged too (at err), not only printed.
#[test]
fn own_failures_are_logged() {
    let sb = Sandbox::new();
    let out = run(sb.xtlock().arg("no-such-program-xtlock-test"));
    assert_eq!(code(&out), 127);
    let logged = events(&sb.log(), "xtlock-failed");
    assert_eq!(field(&logged[0], "status"), "127", "{}", sb.log());
    assert!(
        sb.log().contains(": error: event=xtlock-failed"),
        "{}",
        sb.log()
    );
}
