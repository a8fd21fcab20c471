//! A script run under the lock that calls iptables again must not deadlock; a marker
//! that does not come from a live ancestor must not let a call skip the lock.

use crate::common::*;
use crate::lock::hold_lock;

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

/// The token in the lock file's record, written by the holder that runs now.
fn recorded_token(sb: &Sandbox) -> String {
    let record = std::fs::read(sb.lock_file()).unwrap();
    let text = String::from_utf8_lossy(&record);
    let token = text
        .strip_prefix("xtlock-token ")
        .and_then(|rest| rest.get(..16))
        .unwrap_or_else(|| panic!("no token recorded: {text:?}"));
    token.to_string()
}

#[test]
fn stale_or_foreign_markers_do_not_bypass_the_lock() {
    let sb = Sandbox::with_fake(&["iptables"]);
    // The token a finished holder gave its program: stale once it has returned.
    let out = run(sb
        .xtlock()
        .args(["sh", "-c", "printf %s \"$XTLOCK_TOKEN\""]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let stale = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stale.len(), 16, "{stale:?}");
    let mut holder = hold_lock(&sb, 30);
    let live = recorded_token(&sb);
    assert_ne!(stale, live);
    let other = format!("{:016x}", u64::from_str_radix(&live, 16).unwrap() ^ 1);
    let markers = [
        stale,
        // Another holder's token, one bit off.
        other,
        // The live token, but not exactly a token.
        format!("+{}", &live[1..]),
        format!("{live}\n"),
        "garbage".to_string(),
    ];
    let with_token = |marker: &str| {
        run(sb
            .shim("iptables")
            .arg("-L")
            .env("XTLOCK_TIMEOUT", "0.2")
            .env(xtlock::nesting::TOKEN_VAR, marker))
    };
    for marker in &markers {
        let out = with_token(marker);
        assert_eq!(code(&out), 4, "token {marker:?} bypassed the lock");
    }
    assert!(sb.calls().is_empty());
    // The control: the holder's own token does join (the variable is the one read).
    let out = with_token(&live);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(sb.calls().len(), 1);
    holder.kill().unwrap();
    holder.wait().unwrap();
}
