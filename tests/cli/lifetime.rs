//! Issue 9: the lock lives exactly as long as the program, and exit, signals, logs and
//! nesting behave as a caller expects. Each test failed on 0.1.

use crate::common::*;
use crate::lock::{hold_lock, wait_for_file};
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A "real" iptables that is a script: it leaves a background process holding the
/// stderr pipe (and stdout) open, and writes its pid down so the test can end it.
fn script_leaving_a_background_process(sb: &Sandbox) -> std::path::PathBuf {
    let pidfile = sb.path("state/background.pid");
    let script = format!(
        "#!/bin/sh\nsleep 60 &\necho $! > {}\necho done\n",
        pidfile.display()
    );
    let real = sb.path("real/iptables");
    std::fs::write(&real, script).unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&real).unwrap().permissions(),
        0o755,
    );
    std::fs::set_permissions(&real, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    sb.link_shim("iptables");
    pidfile
}

fn kill_pidfile(path: &std::path::Path) {
    if let Ok(pid) = std::fs::read_to_string(path) {
        unsafe { libc::kill(pid.trim().parse().unwrap(), libc::SIGKILL) };
    }
}

/// Case 1: the call ends when the program exits, not when its pipes close; the lock
/// is free for the next caller at once.
#[test]
fn a_background_process_holding_stderr_keeps_neither_the_call_nor_the_lock() {
    let sb = Sandbox::new();
    let pidfile = script_leaving_a_background_process(&sb);
    for mut cmd in [sb.shim("iptables"), {
        let mut c = sb.xtlock();
        c.args([
            "sh",
            "-c",
            &format!("sleep 60 & echo $! > {}; echo done", pidfile.display()),
        ]);
        c
    }] {
        let start = Instant::now();
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Read nothing yet: the pipes stay open as long as the background process lives.
        let status = wait_bounded(&mut child);
        assert_eq!(status.code(), Some(0));
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "returned only when the background process ended"
        );
        let next = run(sb.xtlock().args(["--timeout", "2", "true"]));
        assert_eq!(code(&next), 0, "the lock was kept: {}", stderr(&next));
        kill_pidfile(&pidfile);
    }
}

/// Case 2: a caller that ignores SIGCHLD gets the program's status, not 126.
#[test]
fn a_caller_ignoring_sigchld_gets_the_programs_status() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let mut cmd = sb.shim("iptables");
    cmd.args(["-A", "INPUT", "-j", "DROP"])
        .env("FAKE_EXIT", "3");
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGCHLD, libc::SIG_IGN);
            Ok(())
        });
    }
    let out = run(&mut cmd);
    assert_eq!((code(&out), stderr(&out)), (3, String::new()));
    assert_eq!(sb.counter(), 1);
}

/// Case 3: a log file that is a FIFO nobody reads, and a syslog socket nobody reads,
/// never hold a call up.
#[test]
fn log_targets_that_never_drain_never_block() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let fifo = sb.path("log.fifo");
    mkfifo(&fifo);
    let socket_path = sb.path("syslog.sock");
    let _never_read = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    let start = Instant::now();
    // Each failed call logs with its stderr; 50 of them fill the socket's queue.
    for _ in 0..50 {
        let mut child = sb
            .shim("iptables")
            .env("XTLOCK_LOG_FILE", &fifo)
            .env("XTLOCK_SYSLOG_SOCKET", &socket_path)
            .env("FAKE_EXIT", "1")
            .env("FAKE_STDERR", "x".repeat(3000))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        assert_eq!(wait_bounded(&mut child).code(), Some(1));
    }
    assert!(start.elapsed() < Duration::from_secs(60));
}

/// Case 4: Ctrl-C stops a shell loop of calls, as it does bare: xtlock dies by the
/// SIGINT its program died by ("wait and cooperative exit").
#[test]
fn ctrl_c_stops_a_shell_loop() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let pidfile = sb.path("state/child.pid");
    let shim = sb.path("shim/iptables");
    let mut shell = sb
        .command("bash")
        .args([
            "-c",
            &format!("for i in 1 2 3; do {} -L; done; echo after", shim.display()),
        ])
        .env("FAKE_HANG", "1")
        .env("FAKE_PIDFILE", &pidfile)
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let _cleanup = KillGroup(shell.id() as i32);
    wait_for_file(&pidfile);
    // As a terminal does: SIGINT to the whole foreground process group.
    assert_eq!(unsafe { libc::kill(-(shell.id() as i32), libc::SIGINT) }, 0);
    let status = wait_bounded(&mut shell);
    let mut out = String::new();
    shell
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGINT),
        "bash went on: {status:?}"
    );
    assert_eq!((out.as_str(), sb.counter()), ("", 1));
}

/// Kills a process group when the test ends, passed or not.
struct KillGroup(i32);

impl Drop for KillGroup {
    fn drop(&mut self) {
        unsafe { libc::kill(-self.0, libc::SIGKILL) };
    }
}

/// Case 4: what the caller ignores or blocks stays so for the program, as bare; and
/// what it leaves at the default stays at the default.
#[test]
fn ignored_and_blocked_signals_reach_the_program_unchanged() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let seen = |program: std::path::PathBuf, file: &str, nohup: bool| {
        let file = sb.path(file);
        let mut cmd = sb.command(program);
        cmd.arg0("iptables").env("FAKE_SIGNALS_FILE", &file);
        if nohup {
            unsafe {
                cmd.pre_exec(|| {
                    // nohup's SIGHUP, a background job's SIGINT, a blocked SIGUSR1.
                    libc::signal(libc::SIGHUP, libc::SIG_IGN);
                    libc::signal(libc::SIGINT, libc::SIG_IGN);
                    libc::signal(libc::SIGPIPE, libc::SIG_IGN);
                    let mut set: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&mut set);
                    libc::sigaddset(&mut set, libc::SIGUSR1);
                    libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                    Ok(())
                });
            }
        }
        assert_eq!(code(&run(&mut cmd)), 0);
        std::fs::read_to_string(file).unwrap()
    };
    for nohup in [true, false] {
        let bare = seen(sb.path("real/iptables"), "state/bare", nohup);
        let through = seen(sb.path("shim/iptables"), "state/through", nohup);
        assert_eq!(bare.contains("SigBlk:\t0000000000000200"), nohup, "{bare}");
        assert_eq!(through, bare, "nohup: {nohup}");
    }
}

/// Case 4: SIGTERM during the retry backoff ends the call at once, without another
/// attempt.
#[test]
fn a_signal_during_the_backoff_ends_the_call_at_once() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let mut child = sb
        .shim("iptables")
        .env("XTLOCK_RETRIES", "100")
        .env("XTLOCK_TIMEOUT", "120")
        .env("FAKE_FAIL_TIMES", "1000")
        .env("FAKE_FAIL_STDERR", EAGAIN)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while sb.counter() < 6 {
        assert!(start.elapsed() < Duration::from_secs(30), "no retries");
        std::thread::sleep(Duration::from_millis(5));
    }
    // From the 6th attempt on the backoff is 160 ms to 1.5 s: mostly asleep.
    let at_signal = sb.counter();
    let signalled = Instant::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_bounded(&mut child);
    assert!(signalled.elapsed() < Duration::from_secs(5));
    assert!(
        sb.counter() <= at_signal + 1,
        "attempts went on after SIGTERM"
    );
    // Whether it came during the backoff or the program's run: the caller's signal.
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
}

/// Case 5: 200 MB of stderr from a failed call: passed through whole, held in memory
/// only up to a bound (the call runs with 64 MiB of data segment at most), and logged
/// cut short.
#[test]
fn huge_stderr_is_passed_through_with_bounded_memory() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let bytes = 200usize << 20;
    let mut cmd = sb.shim("iptables");
    cmd.env("FAKE_STDERR_BYTES", bytes.to_string())
        .env("FAKE_EXIT", "1")
        .stderr(Stdio::piped());
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 64 << 20,
                rlim_max: 64 << 20,
            };
            libc::setrlimit(libc::RLIMIT_DATA, &limit);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let counter = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0usize;
        loop {
            match stderr.read(&mut buf).unwrap() {
                0 => return total,
                n => {
                    assert!(buf[..n].iter().all(|&b| b == b'e'));
                    total += n;
                }
            }
        }
    });
    let status = wait_bounded(&mut child);
    assert_eq!(status.code(), Some(1), "{status:?}");
    assert_eq!(counter.join().unwrap(), bytes);
    let log = sb.log();
    assert!(log.len() < 16 << 10, "log of {} bytes", log.len());
    assert!(log.contains("...(truncated)"));
}

/// Case 6: a nested call finds its ancestor's lock with hundreds of other flocks on the
/// host (0.1 read one page of /proc/locks and waited for its own ancestor).
#[test]
fn nested_calls_see_their_holder_among_hundreds_of_locks() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let dir = tempfile::tempdir().unwrap();
    let _others: Vec<_> = (0..400)
        .map(|i| {
            let f = std::fs::File::create(dir.path().join(i.to_string())).unwrap();
            f.lock().unwrap();
            f
        })
        .collect();
    for _ in 0..5 {
        let out = run(sb
            .xtlock()
            .args(["sh", "-c", "iptables -A INPUT -j DROP"])
            .env("XTLOCK_TIMEOUT", "20"));
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    assert_eq!(sb.counter(), 5);
}

/// Case 6: a nested call whose environment was cleared (env -i, sudo) is still nested.
#[test]
fn a_nested_call_under_env_i_is_still_nested() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let shim = sb.path("shim/iptables");
    // env -i drops XTLOCK_LOCK_FILE too: the config file names the lock instead.
    std::fs::write(
        sb.path("xtlock.conf"),
        format!("lock_file = {:?}\n", sb.lock_file()),
    )
    .unwrap();
    let conf = sb.path("xtlock.conf");
    let script = format!(
        "exec env -i PATH={path} XTLOCK_CONFIG={conf} XTLOCK_TIMEOUT=20 XTLOCK_SYSLOG_SOCKET= XTLOCK_JOURNAL_SOCKET= FAKE_COUNTER={counter} {shim} -A INPUT -j DROP",
        path = sb.search_path(),
        conf = conf.display(),
        counter = sb.path("state/counter").display(),
        shim = shim.display(),
    );
    let start = Instant::now();
    let out = run(sb.xtlock().args(["sh", "-c", &script]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "waited for its own ancestor"
    );
    assert_eq!(sb.counter(), 1);
}

/// Case 6: a nested call that outlives the call holding the lock for it never runs
/// beside the next holder: the holder keeps the lock until it is done.
#[test]
fn a_nested_call_outliving_its_holder_never_overlaps_the_next_caller() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let started = sb.path("state/started");
    let go = sb.path("state/go");
    let busy = sb.path("state");
    // The holder's script puts a nested call in the background and exits as soon as
    // that call is running.
    // Its output goes elsewhere: nothing but the lock ties the holder to it.
    let script = format!(
        "FAKE_WAIT_FOR={go} iptables -A INPUT -j DROP >/dev/null 2>&1 & \
         while [ ! -s {started} ]; do sleep 0.01; done; exit 0",
        go = go.display(),
        started = started.display()
    );
    let mut holder = sb
        .xtlock()
        .args(["sh", "-c", &script])
        .env("FAKE_STARTED", &started)
        .env("FAKE_BUSY_DIR", &busy)
        .spawn()
        .unwrap();
    wait_for_file(&started);
    // The outsider comes while the nested call still runs.
    let mut outsider = sb
        .shim("iptables")
        .args(["-A", "INPUT", "-j", "ACCEPT"])
        .env("FAKE_BUSY_DIR", &busy)
        .env("XTLOCK_TIMEOUT", "30")
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        sb.counter(),
        1,
        "the outsider ran while the nested call was running"
    );
    std::fs::write(&go, "").unwrap();
    assert_eq!(wait_bounded(&mut holder).code(), Some(0));
    assert_eq!(wait_bounded(&mut outsider).code(), Some(0));
    assert_eq!(sb.counter(), 2);
    assert!(
        !sb.path("state/overlaps").exists(),
        "two writers ran at once"
    );
}

/// Case 6: with no /proc (a chroot), a shim still finds the real program and runs it,
/// and a call nested directly under its holder still runs.
#[test]
fn without_proc_a_shim_still_runs_the_program() {
    if !require("root", is_root()) || !require("unshare", have("unshare")) {
        return;
    }
    let sb = Sandbox::with_fake(&["iptables"]);
    let host_mnt = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let script = format!(
        "[ \"$(readlink /proc/self/ns/mnt)\" != {host:?} ] || exit 3; \
         mount --make-rprivate / && mount -t tmpfs none /proc || exit 3; \
         {shim} -A INPUT -j DROP || exit $?; \
         {xtlock} {shim} -A INPUT -j ACCEPT",
        host = host_mnt.to_string_lossy(),
        shim = sb.path("shim/iptables").display(),
        xtlock = xtlock_bin().display(),
    );
    let start = Instant::now();
    let out = run(sb
        .command("unshare")
        .args(["-m", "sh", "-c", &script])
        .env("XTLOCK_TIMEOUT", "20"));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(start.elapsed() < Duration::from_secs(15));
    assert_eq!(sb.counter(), 2);
}

/// Case 7: the caller's `-w N` bounds xtlock's wait, both ways.
#[test]
fn the_callers_wait_bounds_xtlocks_wait() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let mut holder = hold_lock(&sb, 30);
    let start = Instant::now();
    let out = run(sb
        .shim("iptables")
        .args(["-w", "2", "-A", "INPUT", "-j", "DROP"]));
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("xtlock: timed out after 2s"),
        "{}",
        stderr(&out)
    );
    assert!(start.elapsed() < Duration::from_secs(20));
    let _ = holder.kill();
    let _ = holder.wait();
    // -w 30 outlasts a configured timeout of 1 s.
    let mut holder = hold_lock(&sb, 3);
    let out = run(sb
        .shim("iptables")
        .args(["-w", "30", "-A", "INPUT", "-j", "DROP"])
        .env("XTLOCK_TIMEOUT", "1"));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let _ = holder.wait();
}

/// Issue 15 item 11: ebtables and arptables refuse `-w` (not in their option tables),
/// so their `-w 1` bounds nothing: xtlock waits the configured timeout (20 s here), not
/// 1 s. Before, it gave up after 1 s with exit 4.
#[test]
fn ebtables_w_does_not_bound_xtlocks_wait() {
    let sb = Sandbox::with_fake(&["ebtables"]);
    std::fs::write(sb.path("xtlock.conf"), "timeout = 20\n").unwrap();
    let mut holder = hold_lock(&sb, 60);
    let mut call = sb
        .shim("ebtables")
        .args(["-w", "1", "-A", "INPUT", "-j", "DROP"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Three times the caller's -w: an xtlock that took it as its bound has given up.
    std::thread::sleep(Duration::from_secs(3));
    let still_waiting = call.try_wait().unwrap().is_none();
    let _ = holder.kill();
    let _ = holder.wait();
    let status = wait_bounded(&mut call);
    let mut err = String::new();
    call.stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        still_waiting,
        "gave up before the configured timeout: {status:?} {err}"
    );
    assert_eq!(status.code(), Some(0), "{err}");
    assert_eq!(sb.counter(), 1, "the program ran once the lock was free");
}

/// Case 8: a caller that may not open the lock file gets what it would get bare.
#[test]
fn a_caller_without_access_to_the_lock_runs_as_bare() {
    if !require("root", is_root()) || !require("setpriv", have("setpriv")) {
        return;
    }
    let sb = Sandbox::with_fake(&["iptables"]);
    // Root made the lock file (0600); nobody may traverse the sandbox and count calls.
    assert_eq!(code(&run(&mut sb.shim("iptables"))), 0);
    sb.open_to_other_users();
    let out = run(sb
        .command("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(sb.path("shim/iptables"))
        .args(["-A", "INPUT", "-j", "DROP"])
        .env("FAKE_STDERR", "the program's own words\n")
        .env("FAKE_EXIT", "4"));
    assert_eq!(
        (code(&out), stderr(&out)),
        (4, "the program's own words\n".into())
    );
    assert_eq!(sb.counter(), 2);
}
