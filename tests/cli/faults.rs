//! Faults around a call: signals to xtlock while the child runs or while it waits, a
//! hung child ended by the caller's timeout, and a lock file on a read-only file system.

use crate::common::*;
use crate::lock::{hold_lock, wait_for_file};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Start the shim in front of a fake that hangs; returns it and the fake's pid.
fn start_hanging(sb: &Sandbox, own_group: bool) -> (std::process::Child, u32) {
    let pidfile = sb.path("state/child.pid");
    let mut cmd = sb.shim("iptables");
    cmd.env("FAKE_HANG", "1")
        .env("FAKE_PIDFILE", &pidfile)
        .stderr(Stdio::piped());
    if own_group {
        // As fail2ban does: the command runs in its own process group, killed on timeout.
        cmd.process_group(0);
    }
    let xtlock = cmd.spawn().unwrap();
    wait_for_file(&pidfile);
    std::thread::sleep(Duration::from_millis(20));
    let child = std::fs::read_to_string(&pidfile).unwrap().parse().unwrap();
    (xtlock, child)
}

fn signal(pid: u32, sig: i32) {
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

#[test]
fn signals_are_forwarded_to_the_child_and_leave_no_orphan() {
    use std::os::unix::process::ExitStatusExt;
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT] {
        let sb = Sandbox::with_fake(&["iptables"]);
        let (mut xtlock, child) = start_hanging(&sb, false);
        signal(xtlock.id(), sig);
        let status = wait_bounded(&mut xtlock);
        // The program died by the signal xtlock received: xtlock dies by it too.
        assert_eq!(status.signal(), Some(sig), "signal {sig}: {status:?}");
        assert!(!alive(child), "child {child} survived signal {sig}");
    }
}

#[test]
fn a_signal_while_waiting_for_the_lock_ends_xtlock_and_runs_nothing() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let mut holder = hold_lock(&sb, 30);
    let mut waiter = sb.shim("iptables").args(["-A", "INPUT"]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let start = Instant::now();
    signal(waiter.id(), libc::SIGTERM);
    let status = wait_bounded(&mut waiter);
    assert!(start.elapsed() < Duration::from_secs(2), "exits at once");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(libc::SIGTERM),
        "ended by the signal, as the shell expects"
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(sb.calls().is_empty(), "nothing ran");
}

#[test]
fn a_hung_child_is_ended_with_its_caller_process_group() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let (mut xtlock, child) = start_hanging(&sb, true);
    assert_eq!(
        unsafe { libc::kill(-(xtlock.id() as i32), libc::SIGKILL) },
        0
    );
    wait_bounded(&mut xtlock);
    let start = Instant::now();
    while alive(child) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "hung child {child} survived"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // And the lock is free again.
    let out = run(sb
        .shim("iptables")
        .env("XTLOCK_TIMEOUT", "1")
        .env_remove("FAKE_HANG"));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

#[test]
fn lock_file_on_a_read_only_file_system() {
    if !require("root", is_root()) {
        return;
    }
    let sb = Sandbox::with_fake(&["iptables"]);
    let ro = sb.path("ro");
    std::fs::create_dir(&ro).unwrap();
    // A private mount namespace, so the read-only mount is ours alone.
    let script = format!(
        "mount -t tmpfs ro {ro} && : > {ro}/exists.lock && mount -o remount,ro {ro} || exit 99\n\
         XTLOCK_LOCK_FILE={ro}/exists.lock iptables -A INPUT; echo existing=$?\n\
         XTLOCK_LOCK_FILE={ro}/missing.lock iptables -A INPUT; echo missing=$?\n",
        ro = ro.display()
    );
    let out = run(sb.command("unshare").args(["-m", "sh", "-c", &script]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("existing=0\nmissing=4\n"),
        "{stdout}\n{}",
        stderr(&out)
    );
    let want = format!(
        "xtlock: cannot open lock file {}/missing.lock: Read-only file system\n",
        ro.display()
    );
    assert_eq!(stderr(&out), want);
    assert_eq!(sb.calls().len(), 1, "only the call with a usable lock ran");
}

/// The caller stops reading while a long stderr streams through (past the 64 KiB kept):
/// bare, a C program such as iptables dies by SIGPIPE at its next write, so the call
/// ends by SIGPIPE (the comparison with the real iptables is in `broken_pipe`); a
/// caller that ignores SIGPIPE gets the program's own status.
#[test]
fn a_closed_stderr_pipe_ends_the_call_as_bare() {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    for ignore_sigpipe in [false, true] {
        let sb = Sandbox::with_fake(&["iptables"]);
        let mut cmd = sb.shim("iptables");
        cmd.env("FAKE_SLEEP_MS", "300")
            .env("FAKE_STDERR", "x".repeat(100_000))
            .env("FAKE_EXIT", "3")
            .stderr(Stdio::piped());
        if ignore_sigpipe {
            // SAFETY: signal(2) only, in the child before exec.
            unsafe {
                cmd.pre_exec(|| {
                    libc::signal(libc::SIGPIPE, libc::SIG_IGN);
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().unwrap();
        drop(child.stderr.take());
        let status = wait_bounded(&mut child);
        match ignore_sigpipe {
            false => assert_eq!(status.signal(), Some(libc::SIGPIPE), "{status:?}"),
            true => assert_eq!(status.code(), Some(3), "{status:?}"),
        }
    }
}

#[test]
fn closed_standard_descriptors_are_reopened_not_reused() {
    let sb = Sandbox::with_fake(&[]);
    // xtlock started with stderr closed: its fd 2 must be /dev/null, not the lock file.
    let script = format!(
        "exec 2>&-; exec {} sh -c 'ls -l /proc/$PPID/fd/'",
        xtlock_bin().display()
    );
    let out = run(sb.command("sh").args(["-c", &script]));
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.lines().any(|l| l.contains(" 2 -> /dev/null")),
        "{listing}"
    );
    assert!(
        !listing
            .lines()
            .any(|l| l.contains(" 2 -> ") && l.contains("xtlock.lock")),
        "{listing}"
    );
}

/// A `waitpid` that fails (strace injects ECHILD into wait4) is xtlock's own failure:
/// 125 with one line naming it, logged as `xtlock-failed`, never passed off as the
/// program's own status (before: logged as the program's `failed`, status 125).
#[test]
fn a_failed_wait_is_xtlocks_own_failure() {
    if !require("strace", have("strace")) {
        return;
    }
    let sb = Sandbox::new();
    let out = sb
        .command("strace")
        .args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=wait4"])
        .args(["-e", "inject=wait4:error=ECHILD"])
        .arg(xtlock_bin())
        .arg("/bin/true")
        .output()
        .unwrap();
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "xtlock: cannot wait for /bin/true: No child processes\n"
    );
    let log = sb.log();
    assert!(log.contains("event=xtlock-failed"), "{log}");
    assert!(!log.contains("event=failed"), "{log}");
}
