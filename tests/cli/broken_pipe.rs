//! Issue 15: a reader that went away (`xtlock doctor | head -1`, a caller that closed
//! the pipe of xtlock's stderr) never kills xtlock: no SIGABRT, no core dump, the
//! status the command would have had. The stream is a pipe whose read end is closed
//! before xtlock starts, so every write to it fails with EPIPE.

use crate::common::*;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Output, Stdio};

#[derive(Debug, Clone, Copy)]
enum Closed {
    Stdout,
    Stderr,
}

/// A pipe nobody will ever read.
fn pipe_without_reader() -> Stdio {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Stdio::from(writer)
}

fn run_with(closed: Closed, cmd: &mut Command) -> Output {
    match closed {
        Closed::Stdout => cmd.stdout(pipe_without_reader()),
        Closed::Stderr => cmd.stderr(pipe_without_reader()),
    };
    cmd.output().unwrap()
}

/// `xtlock` by its own name (argv[0] decides; XTLOCK_TEST_BIN may name another file).
fn own(sb: &Sandbox) -> Command {
    let mut cmd = sb.xtlock();
    cmd.arg0("xtlock");
    cmd
}

/// With stdout, then stderr, without a reader: not killed by a signal, and `want`.
fn assert_status(what: &str, want: i32, mut make: impl FnMut() -> Command) {
    for closed in [Closed::Stdout, Closed::Stderr] {
        let out = run_with(closed, &mut make());
        assert_eq!(
            out.status.signal(),
            None,
            "{what}, {closed:?} closed: killed by a signal\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
        assert_eq!(
            code(&out),
            want,
            "{what}, {closed:?} closed\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
    }
}

#[test]
fn a_lock_timeout_without_a_reader_is_still_4() {
    let sb = Sandbox::with_fake(&["iptables"]);
    // Held by a process that is not xtlock's ancestor (an ancestor would make it a
    // nested call).
    let ready = sb.path("state/held");
    let script = format!("touch {}; exec sleep 60", ready.display());
    let mut holder = Command::new("flock")
        .arg(sb.lock_file())
        .args(["sh", "-c", &script])
        .spawn()
        .unwrap();
    crate::lock::wait_for_file(&ready);
    assert_status("lock timeout", 4, || {
        let mut cmd = sb.shim("iptables");
        cmd.args(["-A", "INPUT", "-j", "DROP"])
            .env("XTLOCK_TIMEOUT", "0.2");
        cmd
    });
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(sb.calls().is_empty(), "nothing ran");
}

#[test]
fn a_program_not_found_without_a_reader_is_still_127() {
    let sb = Sandbox::new();
    assert_status("not found", 127, || {
        let mut cmd = own(&sb);
        cmd.arg("xtlock-test-no-such-program");
        cmd
    });
}

#[test]
fn doctor_without_a_reader_keeps_its_status() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let doctor = || {
        let mut cmd = own(&sb);
        cmd.args(["doctor", "--fail2ban-dir"])
            .arg(sb.path("no-fail2ban"))
            .arg("--root")
            .arg(sb.path("root"));
        cmd
    };
    let read = run(&mut doctor());
    assert!(!read.stdout.is_empty(), "doctor printed nothing");
    let want = code(&read);
    assert!(want == 0 || want == 1, "doctor: {want}\n{}", stderr(&read));
    assert_status("doctor", want, doctor);
}

#[test]
fn stats_without_a_reader_is_still_0() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let refused = run(sb
        .shim("iptables")
        .args(["-N", "x"])
        .env("FAKE_FAIL_TIMES", "1")
        .env("FAKE_FAIL_CODE", "1")
        .env("FAKE_FAIL_STDERR", "iptables: Chain already exists.\n"));
    assert_eq!(code(&refused), 1);
    assert!(sb.log().contains("event=failed"), "{}", sb.log());
    assert_status("stats", 0, || {
        let mut cmd = own(&sb);
        cmd.args(["stats", "--log-file"]).arg(sb.log_file());
        cmd
    });
}

#[test]
fn help_and_version_without_a_reader_are_still_0() {
    let sb = Sandbox::new();
    for arg in ["--help", "--version", "stats --help"] {
        assert_status(arg, 0, || {
            let mut cmd = own(&sb);
            cmd.args(arg.split(' '));
            cmd
        });
    }
    // A usage error is on stderr: 125 either way.
    assert_status("--no-such-option", 125, || {
        let mut cmd = own(&sb);
        cmd.arg("--no-such-option");
        cmd
    });
}

#[test]
fn install_without_a_reader_does_all_its_work() {
    let sb = Sandbox::new();
    sb.install_fake("iptables");
    // Not in PATH: install warns on stderr after linking.
    let dir = sb.path("shims-elsewhere");
    assert_status("install", 0, || {
        let _ = std::fs::remove_dir_all(&dir);
        let mut cmd = own(&sb);
        cmd.args(["install", "--dir"]).arg(&dir);
        cmd
    });
    assert!(
        std::fs::read_link(dir.join("iptables")).is_ok(),
        "install linked nothing"
    );
}

#[test]
fn a_full_disk_on_stdout_is_an_error_of_ours() {
    // Not a gone reader: the output is incomplete, and the caller is told (as GNU's
    // close_stdout does), with xtlock's own status.
    let sb = Sandbox::new();
    std::fs::write(sb.log_file(), "").unwrap();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = own(&sb)
        .args(["stats", "--log-file"])
        .arg(sb.log_file())
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), None, "{}", stderr(&out));
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "xtlock: cannot write to standard output: No space left on device\n"
    );
}

/// The program's own stderr to a caller whose reader is gone: bare, iptables dies by
/// SIGPIPE at its error message; through xtlock, which passes the captured stderr on,
/// the call ends the same way (before: exit 1). A caller that ignores SIGPIPE sees the
/// program's exit 1 both ways. Real iptables-legacy in a private network namespace.
#[test]
fn the_programs_stderr_to_a_gone_reader_ends_the_call_as_bare() {
    if !private_netns_with(&["iptables-legacy", "python3"]) {
        return;
    }
    let sb = Sandbox::new();
    sb.link_shim("iptables-legacy");
    let run = |program: &str, sigpipe: Sigpipe| {
        // dash empties the signal mask at start: a blocked SIGPIPE is set up after it.
        let exec = match sigpipe {
            Sigpipe::Blocked => BLOCK_SIGPIPE_AND_EXEC,
            Sigpipe::Default | Sigpipe::Ignored => "exec \"$@\"",
        };
        let guarded = format!(
            "[ \"$(ip -o link show | wc -l)\" -eq 1 ] || exit 99\n\
             mount -t tmpfs xtlock-test /run || exit 98\n{exec}"
        );
        let mut cmd = sb.command("unshare");
        cmd.args(["-n", "-m", "sh", "-c", &guarded, "sh", program])
            .args(["-w", "-X", "no-such-chain"])
            .stderr(pipe_without_reader());
        set_sigpipe(&mut cmd, sigpipe);
        let out = cmd.output().unwrap();
        (out.status.code(), out.status.signal())
    };
    let bare = which("iptables-legacy");
    let shim = sb.path("shim/iptables-legacy");
    for sigpipe in [Sigpipe::Default, Sigpipe::Ignored, Sigpipe::Blocked] {
        let want = run(&bare.display().to_string(), sigpipe);
        let premise = match sigpipe {
            Sigpipe::Default => (None, Some(libc::SIGPIPE)),
            Sigpipe::Ignored | Sigpipe::Blocked => (Some(1), None),
        };
        assert_eq!(want, premise, "bare, SIGPIPE {sigpipe:?}");
        let got = run(&shim.display().to_string(), sigpipe);
        assert_eq!(got, want, "through xtlock, SIGPIPE {sigpipe:?}");
    }
}

#[derive(Debug, Clone, Copy)]
enum Sigpipe {
    Default,
    Ignored,
    Blocked,
}

/// Exec "$@" with SIGPIPE blocked and at its default (python ignores it at start).
const BLOCK_SIGPIPE_AND_EXEC: &str = "exec python3 -c 'import os, signal, sys\n\
signal.signal(signal.SIGPIPE, signal.SIG_DFL)\n\
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPIPE})\n\
os.execvp(sys.argv[1], sys.argv[1:])' \"$@\"";

/// A caller that ignores SIGPIPE: the program inherits it ignored (through sh too).
fn set_sigpipe(cmd: &mut Command, sigpipe: Sigpipe) {
    if let Sigpipe::Ignored = sigpipe {
        // SAFETY: signal(2) only, in the child before exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGPIPE, libc::SIG_IGN);
                Ok(())
            });
        }
    }
}

/// A script writing to the caller's stderr (inherited, not captured) with no reader
/// dies by SIGPIPE; through `xtlock sh -c` the caller sees that death too, not 141.
#[test]
fn a_program_that_dies_by_sigpipe_ends_the_call_by_it() {
    let sb = Sandbox::new();
    for via_xtlock in [false, true] {
        let mut cmd = match via_xtlock {
            true => sb.xtlock(),
            false => sb.command("sh"),
        };
        if via_xtlock {
            cmd.arg("sh");
        }
        cmd.args(["-c", "echo x >&2; exit 3"])
            .stderr(pipe_without_reader());
        let out = cmd.output().unwrap();
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "through xtlock: {via_xtlock}: {:?}",
            out.status
        );
    }
}
