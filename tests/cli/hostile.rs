//! Issue 15: the next layer of unusual callers (nesting across PID namespaces, root
//! without the lock, waits that must end on the caller's signal, parents with thousands
//! of descriptors, a caller that ignores SIGCHLD). Each test fails on the build before.

use crate::common::*;
use crate::lock::{hold_lock, wait_for_file};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::time::{Duration, Instant};

/// Item 3: a nested call in a new PID namespace with its own /proc (bwrap, firejail, a
/// container sharing the lock file) cannot see its ancestor, yet joins it.
#[test]
fn a_nested_call_in_a_new_pid_namespace_joins_its_holder() {
    if !require("root", is_root()) || !require("unshare", have("unshare")) {
        return;
    }
    let sb = Sandbox::with_fake(&["iptables"]);
    let start = Instant::now();
    let out = run(sb
        .xtlock()
        .args(["unshare", "-p", "-f", "-m", "--mount-proc"])
        .args(["sh", "-c", "iptables -A INPUT -j DROP"])
        .env("XTLOCK_TIMEOUT", "8"));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(sb.counter(), 1);
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "waited for its own ancestor"
    );
}

/// Item 4: a holder whose program left a nested call running in the background
/// returns when its program does, and the next caller still waits for that call.
#[test]
fn a_holder_does_not_wait_for_a_background_nested_call() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let (script, go) = sb.background_nested_call("DROP");
    let mut holder = sb
        .xtlock()
        .args(["sh", "-c", &format!("{script}; exit 7")])
        .env("FAKE_BUSY_DIR", sb.path("state"))
        .spawn()
        .unwrap();
    let status = wait_bounded_or(&mut holder, || std::fs::write(&go, "").unwrap());
    assert_eq!(
        status.code(),
        Some(7),
        "the holder waited for its background call"
    );
    // The next caller waits for the background call (started, not finished), and a
    // SIGTERM ends that wait as it would end the program: by the signal.
    let mut outsider = sb.writer("ACCEPT");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sb.counter(), 1, "the outsider ran beside the nested call");
    unsafe { libc::kill(outsider.id() as i32, libc::SIGTERM) };
    let status = wait_bounded(&mut outsider);
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    let mut second = sb.writer("ACCEPT");
    std::fs::write(&go, "").unwrap();
    assert_eq!(wait_bounded(&mut second).code(), Some(0));
    assert_eq!(sb.counter(), 2);
    assert!(
        !sb.path("state/overlaps").exists(),
        "two writers ran at once"
    );
}

/// The sandbox's lock file, made immutable (`chattr +i`) until the guard drops; None
/// (after saying SKIPPED) where the file system cannot.
fn immutable_lock_file(sb: &Sandbox) -> Option<impl Drop + '_> {
    struct Mutable<'a>(&'a Sandbox);
    impl Drop for Mutable<'_> {
        fn drop(&mut self) {
            chattr(self.0, "-i");
        }
    }
    fn chattr(sb: &Sandbox, flag: &str) -> bool {
        std::process::Command::new("chattr")
            .arg(flag)
            .arg(sb.lock_file())
            .status()
            .is_ok_and(|s| s.success())
    }
    if !require("root", is_root()) || !require("chattr", have("chattr")) {
        return None;
    }
    std::fs::write(sb.lock_file(), "").unwrap();
    require("chattr +i on the temp dir's file system", chattr(sb, "+i")).then_some(Mutable(sb))
}

/// Wait up to 10 s; on timeout run `cleanup` (so the old build's stuck call ends) and fail.
fn wait_bounded_or(
    child: &mut std::process::Child,
    cleanup: impl FnOnce(),
) -> std::process::ExitStatus {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cleanup();
    let _ = child.wait();
    panic!("pid {} did not end within 10 s", child.id());
}

/// Item 2: root never runs without the lock. An immutable lock file (`chattr +i`)
/// refuses a read-write open even to root; xtlock locks it through a read-only one.
#[test]
fn root_waits_for_an_immutable_lock_file() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let Some(_undo) = immutable_lock_file(&sb) else {
        return;
    };
    // Held by a process that is not our ancestor (an ancestor's lock is ours to join).
    let ready = sb.path("state/ready");
    let mut holder = std::process::Command::new("flock")
        .arg(sb.lock_file())
        .args(["-c", &format!("touch {}; exec sleep 30", ready.display())])
        .spawn()
        .unwrap();
    wait_for_file(&ready);
    let out = run(sb
        .shim("iptables")
        .args(["-A", "INPUT", "-j", "DROP"])
        .env("XTLOCK_TIMEOUT", "1"));
    assert_eq!(code(&out), 4, "{} {}", stderr(&out), sb.log());
    assert!(
        stderr(&out).starts_with("xtlock: timed out"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sb.counter(), 0, "ran beside the holder");
    let _ = holder.kill();
    let _ = holder.wait();
    let out = run(sb.shim("iptables").args(["-A", "INPUT", "-j", "DROP"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(sb.counter(), 1);
}

/// Item 7: a busy call whose parent has thousands of descriptors looks only at those
/// that name the lock file, and never stats one (a stat of a descriptor on a hung NFS
/// or FUSE mount never returns).
#[test]
fn a_busy_call_never_stats_its_ancestors_descriptors() {
    if !require("strace", have("strace")) {
        return;
    }
    let sb = Sandbox::with_fake(&["iptables"]);
    let mut holder = hold_lock(&sb, 30);
    let trace = sb.path("state/trace");
    let script = format!(
        "ulimit -n 8192; i=0; while [ $i -lt 3000 ]; do eval \"exec $((i + 100))</dev/null\"; i=$((i + 1)); done; \
         touch {ready}; strace -f -qq -e trace=stat,lstat,newfstatat,statx,fstat -o {trace} {shim} -A INPUT -j DROP",
        ready = sb.path("state/ready").display(),
        trace = trace.display(),
        shim = sb.path("shim/iptables").display(),
    );
    let mut caller = sb
        .command("bash")
        .args(["-c", &script])
        .env("XTLOCK_TIMEOUT", "60")
        .spawn()
        .unwrap();
    wait_for_file(&sb.path("state/ready"));
    // Let it queue behind the holder before the holder goes.
    std::thread::sleep(Duration::from_millis(500));
    let _ = holder.kill();
    let _ = holder.wait();
    let status = wait_bounded_or(&mut caller, || {});
    assert_eq!(status.code(), Some(0));
    let trace = std::fs::read_to_string(&trace).unwrap();
    let stats = trace.lines().filter(|l| l.contains("/fd/")).count();
    assert_eq!(stats, 0, "stat calls on /proc/PID/fd entries: {stats}");
}

/// Item 12: a caller that ignores SIGCHLD gives its program SIGCHLD ignored, as bare.
#[test]
fn an_ignored_sigchld_reaches_the_program() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let signals = |program: std::path::PathBuf, file: &str| {
        let file = sb.path(file);
        let mut cmd = sb.command(program);
        cmd.arg0("iptables")
            .args(["-A", "INPUT"])
            .env("FAKE_SIGNALS_FILE", &file);
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGCHLD, libc::SIG_IGN);
                Ok(())
            });
        }
        assert_eq!(code(&run(&mut cmd)), 0);
        std::fs::read_to_string(file).unwrap()
    };
    let bare = signals(sb.path("real/iptables"), "state/bare");
    let shim = signals(sb.path("shim/iptables"), "state/shim");
    let ignored = bare
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:\t"))
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .unwrap();
    assert_ne!(ignored & (1 << (libc::SIGCHLD - 1)), 0, "{bare}");
    assert_eq!(shim, bare);
}

/// Item 2, for a caller that is not root but may change the firewall (CAP_NET_ADMIN,
/// as a service running as a user with that capability): it never runs unlocked
/// either. (A caller without it runs as bare: `lifetime::a_caller_without_access_...`.)
#[test]
fn a_user_with_cap_net_admin_never_runs_unlocked() {
    if !require("root", is_root()) || !require("setpriv", have("setpriv")) {
        return;
    }
    let sb = Sandbox::with_fake(&["iptables"]);
    assert_eq!(code(&run(&mut sb.shim("iptables"))), 0); // root makes the lock file (0600)
    sb.open_to_other_users();
    let out = run(sb
        .command("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["--inh-caps=+net_admin", "--ambient-caps=+net_admin", "--"])
        .arg(sb.path("shim/iptables"))
        .args(["-A", "INPUT", "-j", "DROP"]));
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("xtlock: cannot open lock file"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sb.counter(), 1, "ran without the lock");
}

/// Item 2 with item 4: through a read-only lock file (no record can be written), the
/// next caller still waits for a nested call whose holder has returned.
#[test]
fn a_read_only_lock_file_still_orders_holders_after_nested_calls() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let Some(undo) = immutable_lock_file(&sb) else {
        return;
    };
    let (script, go) = sb.background_nested_call("NESTED");
    let mut holder = sb
        .xtlock()
        .args(["sh", "-c", &script])
        .env("FAKE_BUSY_DIR", sb.path("state"))
        .spawn()
        .unwrap();
    let holder_status = wait_bounded_or(&mut holder, || std::fs::write(&go, "").unwrap());
    let mut next = sb.writer("NEXT");
    std::thread::sleep(Duration::from_millis(300));
    let ran_early = sb.counter();
    std::fs::write(&go, "").unwrap();
    let next_status = wait_bounded(&mut next);
    drop(undo);
    assert_eq!(holder_status.code(), Some(0));
    assert_eq!(ran_early, 1, "the next caller ran beside the nested call");
    assert_eq!(next_status.code(), Some(0));
    assert!(
        !sb.path("state/overlaps").exists(),
        "two writers ran at once"
    );
}
