//! Issue 12: calls that change nothing run in xtlock's place (exec): no lock, no spawn,
//! no capture, so they never queue behind a writer. The decision itself is table-tested
//! in src/classify.rs and src/call.rs; here the built binary shows it end to end.

use crate::common::*;
use crate::lock::hold_lock;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The pid the fake ran as: with exec, the very process the caller started.
fn ran_in_place(sb: &Sandbox, name: &str, args: &[&str]) -> (i32, bool) {
    let started = sb.path("state/started");
    let _ = std::fs::remove_file(&started);
    let mut child = sb
        .shim(name)
        .args(args)
        .env("FAKE_STARTED", &started)
        .env("FAKE_EXIT", "1")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_bounded(&mut child);
    let pid: u32 = std::fs::read_to_string(&started)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (status.code().unwrap(), pid == child.id())
}

#[test]
fn reads_run_while_another_caller_holds_the_lock() {
    let sb = Sandbox::with_fake(&["iptables", "ip6tables", "iptables-save", "iptables-restore"]);
    let mut holder = hold_lock(&sb, 60);
    let start = Instant::now();
    let reads: &[(&str, &[&str])] = &[
        (
            "iptables",
            &[
                "-w", "-C", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT",
            ],
        ),
        ("iptables", &["--wait", "5", "-nvL", "INPUT"]),
        ("ip6tables", &["-w", "-S"]),
        ("iptables", &["-m", "limit", "--help"]),
        ("iptables", &["-V"]),
        ("iptables-save", &["-t", "nat"]),
        ("iptables-restore", &["--help"]),
    ];
    for (name, args) in reads {
        let (code, in_place) = ran_in_place(&sb, name, args);
        assert_eq!(code, 1, "{name} {args:?}: the program's own status");
        assert!(in_place, "{name} {args:?} was not exec'd");
    }
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "reads waited for the lock"
    );
    // Writes, a zeroing list, and a legacy-style read without -w (backend unknown
    // here) still queue: with a 1 s timeout they give up on the held lock.
    let writes: &[&[&str]] = &[
        &["-A", "INPUT", "-j", "DROP"],
        &["-w", "-L", "-Z"],
        &["-C", "INPUT", "-j", "DROP"],
        &[
            "-w",
            "-C",
            "INPUT",
            "-m",
            "comment",
            "--comment",
            "-A",
            "-j",
            "DROP",
        ],
    ];
    for args in writes {
        let out = run(sb.shim("iptables").args(*args).env("XTLOCK_TIMEOUT", "1"));
        assert_eq!(code(&out), 4, "{args:?}: {}", stderr(&out));
    }
    let _ = holder.kill();
    let _ = holder.wait();
}

#[test]
fn under_verbose_a_read_is_spawned_and_logged() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let (status, in_place) = ran_in_place(&sb, "iptables", &["-w", "-L"]);
    assert_eq!((status, in_place), (1, true));
    assert!(sb.log().is_empty(), "a read logs nothing: {}", sb.log());
    let out = run(sb
        .shim("iptables")
        .args(["-w", "-L"])
        .env("XTLOCK_VERBOSE", "1"));
    assert_eq!(code(&out), 0);
    let calls = events(&sb.log(), "call");
    assert_eq!(field(&calls[0], "args"), "-w -L");
}
