//! `xtlock status` (issue 18): the holder and waiters of xtlock's lock and of iptables'
//! own, read while the locks are held, never taken.

use crate::common::*;
use crate::lock::{hold_lock, wait_for_file};
use std::time::Duration;

#[test]
fn status_names_the_holder_and_the_waiters_and_says_when_it_is_stuck() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let xtables = sb.path("xtables.lock");
    let mut holder = hold_lock(&sb, 30);
    let mut waiter = sb
        .shim("iptables")
        .args(["-A", "INPUT", "-j", "WAITER"])
        .env("XTLOCK_TIMEOUT", "30")
        .spawn()
        .unwrap();
    // iptables' own lock held by another process (as a legacy iptables -w would).
    let ready = sb.path("state/xtables-held");
    let mut xtables_holder = std::process::Command::new("flock")
        .arg(&xtables)
        .args(["-c", &format!("touch {}; exec sleep 30", ready.display())])
        .spawn()
        .unwrap();
    wait_for_file(&ready);
    // The waiter queues: its flock shows in /proc/locks as a `->` line.
    let start = std::time::Instant::now();
    let out = loop {
        let out = run(sb.xtlock().arg("status").env("XTABLES_LOCKFILE", &xtables));
        if String::from_utf8_lossy(&out.stdout).contains("waiting: pid")
            || start.elapsed() > Duration::from_secs(10)
        {
            break out;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(code(&out), 0, "{text}{}", stderr(&out));
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with(&format!(
            "xtlock's lock {}: held by pid {} for ",
            sb.lock_file().display(),
            holder.id()
        )) && first.contains("sh -c"),
        "{text}"
    );
    assert!(
        text.contains(&format!("  waiting: pid {} for ", waiter.id()))
            && text.contains("-j WAITER"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "iptables' own lock {}: held by pid {}",
            xtables.display(),
            xtables_holder.id()
        )),
        "{text}"
    );
    // Held past the configured timeout: exit 1, and JSON says so too.
    std::thread::sleep(Duration::from_millis(300));
    let out = run(sb
        .xtlock()
        .args(["status", "--json"])
        .env("XTLOCK_TIMEOUT", "0.2")
        .env("XTABLES_LOCKFILE", &xtables));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["held_past_timeout"], true);
    assert_eq!(json["locks"][0]["holders"][0]["pid"], holder.id());
    assert_eq!(json["locks"][0]["waiters"][0]["pid"], waiter.id());
    assert_eq!(json["locks"][1]["holders"][0]["pid"], xtables_holder.id());
    for child in [&mut holder, &mut waiter, &mut xtables_holder] {
        let _ = child.kill();
        let _ = child.wait();
    }
    // Nothing held: free, exit 0, and status itself took nothing.
    let out = run(sb.xtlock().arg("status").env("XTABLES_LOCKFILE", &xtables));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(code(&out), 0, "{text}");
    assert!(
        text.contains("xtlock's lock") && text.contains(": free"),
        "{text}"
    );
}

#[test]
fn status_as_a_user_says_what_it_can_see() {
    if !require("root", is_root()) || !require("setpriv", have("setpriv")) {
        return;
    }
    let sb = Sandbox::with_fake(&["iptables"]);
    let mut holder = hold_lock(&sb, 30);
    std::fs::set_permissions(
        sb.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = run(sb
        .command("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(xtlock_bin())
        .arg("status"));
    let _ = holder.kill();
    let _ = holder.wait();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(code(&out), 0, "{text}{}", stderr(&out));
    assert!(
        text.contains(&format!("held by pid {}", holder.id())),
        "{text}"
    );
    assert!(text.contains("note: as uid 65534"), "{text}");
}
