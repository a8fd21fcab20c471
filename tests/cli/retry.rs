//! Retries: only failures that committed nothing, with the retried stderr in the log and
//! only the final attempt's stderr for the caller.

use crate::common::*;

#[test]
fn eagain_is_retried_and_the_caller_sees_only_success() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let out = run(sb
        .shim("iptables")
        .args(["-I", "INPUT", "-j", "f2b-sshd"])
        .env("FAKE_FAIL_TIMES", "2")
        .env("FAKE_FAIL_STDERR", EAGAIN));
    assert_eq!(code(&out), 0);
    assert!(
        out.stderr.is_empty(),
        "retried stderr leaked: {}",
        stderr(&out)
    );
    assert_eq!(sb.counter(), 3);
    let retries = events(&sb.log(), "retry");
    assert_eq!(retries.len(), 2, "{}", sb.log());
    assert_eq!(field(&retries[0], "attempt"), "1/5");
    assert_eq!(field(&retries[1], "attempt"), "2/5");
    assert_eq!(field(&retries[0], "status"), "4");
    assert_eq!(field(&retries[0], "stderr"), EAGAIN);
    assert_eq!(field(&retries[0], "args"), "-I INPUT -j f2b-sshd");
    assert!(field(&retries[0], "reason").contains("EAGAIN"));
    assert!(!field(&retries[0], "caller_pid").is_empty());
}

#[test]
fn lock_contention_message_is_retried() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let text = "Can't lock /run/xtables.lock: Resource temporarily unavailable\nAnother app is currently holding the xtables lock. Stopped waiting after 1s.\n";
    let out = run(sb
        .shim("iptables")
        .env("FAKE_FAIL_TIMES", "1")
        .env("FAKE_FAIL_STDERR", text));
    assert_eq!((code(&out), sb.counter()), (0, 2));
}

#[test]
fn persistent_eagain_gives_up_with_the_real_stderr_and_status() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let out = run(sb
        .shim("iptables")
        .env("FAKE_FAIL_TIMES", "99")
        .env("FAKE_FAIL_STDERR", EAGAIN));
    assert_eq!(code(&out), 4);
    assert_eq!(stderr(&out), EAGAIN, "exactly the final attempt's stderr");
    assert_eq!(sb.counter(), 5, "default: 5 attempts");
    let gave_up = events(&sb.log(), "gave-up");
    assert_eq!(gave_up.len(), 1);
    assert_eq!(field(&gave_up[0], "attempt"), "5/5");
}

#[test]
fn retries_option_and_variable() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let out = run(sb
        .xtlock()
        .args(["--retries", "1", "iptables"])
        .env("FAKE_FAIL_TIMES", "99")
        .env("FAKE_FAIL_STDERR", EAGAIN));
    assert_eq!((code(&out), sb.counter()), (4, 2));
    let sb = Sandbox::with_fake(&["iptables"]);
    let out = run(sb
        .shim("iptables")
        .env("XTLOCK_RETRIES", "0")
        .env("FAKE_FAIL_TIMES", "99")
        .env("FAKE_FAIL_STDERR", EAGAIN));
    assert_eq!((code(&out), sb.counter()), (4, 1));
}

#[test]
fn failures_that_may_have_committed_are_never_retried() {
    let cases: &[(&str, &str)] = &[
        (
            "1",
            "iptables: Invalid argument. Run `dmesg' for more information.\n",
        ),
        (
            "4",
            "iptables: Invalid argument. Run `dmesg' for more information.\n",
        ),
        ("1", "iptables: No chain/target/match by that name.\n"),
        ("1", EAGAIN),
        (
            "2",
            "iptables v1.8.9 (legacy): Couldn't load target `f2b-x':No such file or directory\n",
        ),
        ("3", EAGAIN),
        (
            "4",
            "Fatal: can't open lock file /run/xtables.lock: Permission denied\n",
        ),
        (
            "4",
            "Can't lock /run/xtables.lock: Resource temporarily unavailable\n",
        ),
    ];
    for (status, text) in cases {
        let sb = Sandbox::with_fake(&["iptables"]);
        let out = run(sb
            .shim("iptables")
            .env("FAKE_FAIL_TIMES", "1")
            .env("FAKE_FAIL_CODE", status)
            .env("FAKE_FAIL_STDERR", text));
        assert_eq!(code(&out).to_string(), *status, "{text}");
        assert_eq!(stderr(&out), *text);
        assert_eq!(sb.counter(), 1, "retried {status} {text}");
        let failed = events(&sb.log(), "failed");
        assert_eq!(failed.len(), 1, "{}", sb.log());
        assert_eq!(field(&failed[0], "stderr"), *text);
    }
}

#[test]
fn retries_stay_inside_the_timeout() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let start = std::time::Instant::now();
    let out = run(sb
        .shim("iptables")
        .env("XTLOCK_TIMEOUT", "0.05")
        .env("XTLOCK_RETRIES", "100")
        .env("FAKE_FAIL_TIMES", "999")
        .env("FAKE_FAIL_STDERR", EAGAIN));
    assert_eq!(code(&out), 4);
    assert!(
        sb.counter() < 20,
        "{} attempts in a 50 ms budget",
        sb.counter()
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    let gave_up = events(&sb.log(), "gave-up");
    assert_eq!(field(&gave_up[0], "why"), "timeout reached");
}
