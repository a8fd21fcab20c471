//! The lock: calls never overlap, the wait is bounded and names the holder, and a lock
//! path that could be abused is refused.

use crate::common::*;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Start `xtlock sh -c 'touch READY; sleep SECS'` and return once it holds the lock.
pub fn hold_lock(sb: &Sandbox, secs: u32) -> Child {
    let ready = sb.path("state/holder-ready");
    let _ = std::fs::remove_file(&ready);
    let script = format!("touch {}; exec sleep {secs}", ready.display());
    let child = sb
        .xtlock()
        .args(["sh", "-c", &script])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_file(&ready);
    child
}

pub fn wait_for_file(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn concurrent_calls_never_overlap() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let calls: Vec<Child> = (0..32)
        .map(|i| {
            sb.shim("iptables")
                .args(["-A", "INPUT", "-s", &format!("10.0.0.{i}")])
                .env("FAKE_BUSY_DIR", sb.path("state"))
                .env("FAKE_SLEEP_MS", "5")
                .env_remove("FAKE_COUNTER")
                .spawn()
                .unwrap()
        })
        .collect();
    for mut call in calls {
        assert!(call.wait().unwrap().success());
    }
    assert_eq!(sb.calls().len(), 32);
    assert!(!sb.path("state/overlaps").exists(), "two calls ran at once");
}

#[test]
fn without_the_lock_the_same_calls_do_overlap() {
    // The check above can fail: run the fake bare and it sees overlaps.
    let sb = Sandbox::with_fake(&["iptables"]);
    let calls: Vec<Child> = (0..8)
        .map(|_| {
            sb.command(sb.path("real/iptables"))
                .env("FAKE_BUSY_DIR", sb.path("state"))
                .env("FAKE_SLEEP_MS", "200")
                .spawn()
                .unwrap()
        })
        .collect();
    for mut call in calls {
        call.wait().unwrap();
    }
    assert!(sb.path("state/overlaps").exists());
}

#[test]
fn timeout_names_the_holder_and_runs_nothing() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let mut holder = hold_lock(&sb, 30);
    let start = Instant::now();
    let out = run(sb
        .shim("iptables")
        .args(["-N", "f2b-sshd"])
        .env("XTLOCK_TIMEOUT", "0.3"));
    let waited = start.elapsed();
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(code(&out), 4);
    let want = format!(
        "xtlock: timed out after 0.3s waiting for {} (held by pid {}: {} sh -c ",
        sb.lock_file().display(),
        holder.id(),
        xtlock_bin().display()
    );
    assert!(
        stderr(&out).starts_with(&want),
        "{}\nwant {want}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).lines().count(), 1);
    assert!(waited >= Duration::from_millis(300));
    assert!(sb.calls().is_empty(), "nothing ran");
    let failed = events(&sb.log(), "lock-failed");
    assert_eq!(failed.len(), 1, "{}", sb.log());
    assert_eq!(field(&failed[0], "args"), "-N f2b-sshd");
}

#[test]
fn waiter_runs_as_soon_as_holder_is_killed() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let mut holder = hold_lock(&sb, 30);
    let waiter = sb
        .shim("iptables")
        .arg("-L")
        .env("XTLOCK_TIMEOUT", "20")
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(sb.calls().is_empty(), "waiter must wait");
    // SIGKILL to the holding xtlock: the kernel releases its flock with it.
    let start = Instant::now();
    holder.kill().unwrap();
    holder.wait().unwrap();
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(code(&out), 0);
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(sb.calls().len(), 1);
}

#[test]
fn symlinked_lock_file_is_refused() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let target = sb.path("state/elsewhere");
    std::os::unix::fs::symlink(&target, sb.lock_file()).unwrap();
    let out = run(sb.shim("iptables").arg("-L"));
    assert_eq!(code(&out), 4);
    assert_eq!(
        stderr(&out),
        format!(
            "xtlock: refusing lock file {}: it is a symlink\n",
            sb.lock_file().display()
        )
    );
    assert!(!target.exists(), "nothing created through the link");
    assert!(sb.calls().is_empty(), "nothing ran");
}

#[test]
fn lock_file_that_is_a_directory_is_refused() {
    let sb = Sandbox::with_fake(&["iptables"]);
    std::fs::create_dir(sb.lock_file()).unwrap();
    let out = run(sb.shim("iptables").arg("-L"));
    assert_eq!(code(&out), 4);
    assert_eq!(
        stderr(&out),
        format!(
            "xtlock: cannot use lock file {}: not a regular file\n",
            sb.lock_file().display()
        )
    );
    assert!(sb.calls().is_empty());
}

#[test]
fn missing_lock_directory_is_created() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let lock = sb.path("run/sub/xtlock.lock");
    let mut call = sb.shim("iptables");
    // The usual umask, whatever the test runner's: the modes below are xtlock's.
    // SAFETY: umask(2) is async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut call, || {
            libc::umask(0o022);
            Ok(())
        });
    }
    let out = run(call.env("XTLOCK_LOCK_FILE", &lock));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&lock), 0o600);
    assert_eq!(mode(lock.parent().unwrap()), 0o755);
    assert_eq!(mode(&sb.path("run")), 0o755);
}

#[test]
fn help_and_version_of_the_program_skip_the_lock() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let mut holder = hold_lock(&sb, 30);
    let out = run(sb
        .shim("iptables")
        .arg("--version")
        .env("XTLOCK_TIMEOUT", "0.1"));
    let blocked = run(sb.shim("iptables").arg("-L").env("XTLOCK_TIMEOUT", "0.1"));
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(code(&blocked), 4, "the same lock does block a real call");
}

#[test]
fn the_lock_fd_is_not_inherited() {
    let sb = Sandbox::with_fake(&[]);
    let out = run(sb.xtlock().args(["sh", "-c", "ls -l /proc/self/fd/"]));
    let listing = String::from_utf8_lossy(&out.stdout);
    // The listing is there (stdin is /dev/null), so the lock file's absence means something.
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(listing.contains(" 0 -> /dev/null"), "{listing}");
    assert!(!listing.contains("xtlock.lock"), "{listing}");
}

/// flock(1) holding the sandbox's lock, with a newline and ESC in its command line.
pub fn hold_lock_with_a_hostile_command_line(sb: &Sandbox) -> Child {
    let ready = sb.path("state/hostile-ready");
    let script = format!("touch {}; exec sleep 60", ready.display());
    let child = std::process::Command::new("flock")
        .arg(sb.lock_file())
        .args(["sh", "-c", &script, "evil\n\x1b[2Jholder"])
        .spawn()
        .unwrap();
    wait_for_file(&ready);
    child
}

#[test]
fn a_holders_newline_and_esc_stay_inside_the_one_line_error() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let mut holder = hold_lock_with_a_hostile_command_line(&sb);
    let out = run(sb
        .shim("iptables")
        .args(["-N", "f2b-sshd"])
        .env("XTLOCK_TIMEOUT", "0.2"));
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let message = stderr(&out);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(!message.contains('\x1b'), "{message}");
    assert!(message.contains("evil\\n\\x1b[2Jholder"), "{message}");
}
