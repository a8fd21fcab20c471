//! The lock protocol (src/os/nesting.rs) with each participant SIGKILLed at each of its
//! steps: the holder after it took the lock, with its record written and the gate
//! held, after its program ended (a nested call still running); the nested call once
//! joined and once its program ended. After each kill: nothing ran twice, no two writers
//! ran at once, the next caller runs exactly once and nothing hangs.

use crate::common::*;
use crate::lock::wait_for_file;
use std::process::Child;

struct Scenario {
    sb: Sandbox,
}

impl Scenario {
    fn new() -> Scenario {
        Scenario {
            sb: Sandbox::with_fake(&["iptables"]),
        }
    }

    /// The fake installed as iptables' multi-call binary, `iptables` a link to it, as
    /// on Debian: only such a program keeps our lock's descriptor.
    fn multi_call() -> Scenario {
        let sb = Sandbox::new();
        sb.install_fake("xtables-legacy-multi");
        std::os::unix::fs::symlink("xtables-legacy-multi", sb.path("real/iptables")).unwrap();
        sb.link_shim("iptables");
        Scenario { sb }
    }

    /// `xtlock sh -c SCRIPT`, stopping at `step` (its pid in state/stopped).
    fn holder(&self, step: &str, script: &str) -> Child {
        self.sb
            .xtlock()
            .args(["sh", "-c", script])
            .env(
                "XTLOCK_TEST_CHECKPOINT",
                format!("{step}:{}", self.sb.path("state/stopped").display()),
            )
            .env("FAKE_BUSY_DIR", self.sb.path("state"))
            .env("XTLOCK_TIMEOUT", "30")
            .spawn()
            .unwrap()
    }

    /// Kill whoever stopped at the checkpoint.
    fn kill_stopped(&self) {
        let file = self.sb.path("state/stopped");
        wait_for_file(&file);
        let mut pid = String::new();
        for _ in 0..1000 {
            pid = std::fs::read_to_string(&file).unwrap();
            if !pid.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let pid: i32 = pid.trim().parse().unwrap();
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    }

    /// A caller from outside: must run exactly once, alone, in bounded time.
    fn outsider(&self) -> Child {
        self.sb.writer("OUTSIDER")
    }

    fn outsider_runs(&self) {
        let mut outsider = self.outsider();
        assert_eq!(wait_bounded(&mut outsider).code(), Some(0));
    }

    fn runs_of(&self, target: &str) -> usize {
        self.sb
            .calls()
            .iter()
            .filter(|argv| argv.last().is_some_and(|a| a == target.as_bytes()))
            .count()
    }

    fn assert_alone(&self) {
        assert!(
            !self.sb.path("state/overlaps").exists(),
            "two writers ran at once"
        );
    }
}

#[test]
fn a_holder_killed_after_taking_the_lock() {
    let s = Scenario::new();
    let mut holder = s.holder("holder-locked", "iptables -A INPUT -j NESTED");
    s.kill_stopped();
    let _ = holder.wait();
    s.outsider_runs();
    assert_eq!(s.runs_of("NESTED"), 0, "the killed holder's program ran");
    assert_eq!(s.runs_of("OUTSIDER"), 1);
    s.assert_alone();
}

#[test]
fn a_holder_killed_with_its_record_written_and_the_gate_held() {
    let s = Scenario::new();
    let mut holder = s.holder("holder-recorded", "iptables -A INPUT -j NESTED");
    s.kill_stopped();
    let _ = holder.wait();
    s.outsider_runs();
    assert_eq!(s.runs_of("NESTED"), 0);
    assert_eq!(s.runs_of("OUTSIDER"), 1);
    s.assert_alone();
}

#[test]
fn a_holder_killed_after_its_program_while_a_nested_call_runs() {
    let s = Scenario::new();
    let (script, go) = s.sb.background_nested_call("NESTED");
    let mut holder = s.holder("holder-done", &script);
    s.kill_stopped();
    let _ = holder.wait();
    // The nested call still runs; the next caller waits for it, then runs.
    let mut outsider = s.outsider();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(s.runs_of("OUTSIDER"), 0, "ran beside the nested call");
    std::fs::write(&go, "").unwrap();
    assert_eq!(wait_bounded(&mut outsider).code(), Some(0));
    assert_eq!(s.runs_of("NESTED"), 1);
    assert_eq!(s.runs_of("OUTSIDER"), 1);
    s.assert_alone();
}

#[test]
fn a_nested_call_killed_once_joined() {
    let s = Scenario::new();
    let mut holder = s.holder(
        "nested-joined",
        "iptables -A INPUT -j NESTED; [ $? -eq 137 ] && exit 0; exit 1",
    );
    s.kill_stopped();
    assert_eq!(wait_bounded(&mut holder).code(), Some(0));
    s.outsider_runs();
    assert_eq!(s.runs_of("NESTED"), 0);
    assert_eq!(s.runs_of("OUTSIDER"), 1);
    s.assert_alone();
}

#[test]
fn a_nested_call_killed_after_its_program() {
    let s = Scenario::new();
    let mut holder = s.holder("nested-done", "iptables -A INPUT -j NESTED; exit 0");
    s.kill_stopped();
    assert_eq!(wait_bounded(&mut holder).code(), Some(0));
    s.outsider_runs();
    assert_eq!(s.runs_of("NESTED"), 1);
    assert_eq!(s.runs_of("OUTSIDER"), 1);
    s.assert_alone();
}

/// The holder SIGKILLed while its program runs: the program (iptables' own binary)
/// keeps the lock (its copy of the descriptor), so the next caller waits for it, not
/// only for xtlock. (A script named iptables never gets it: see
/// lifetime::a_background_process_holding_stderr_keeps_neither_the_call_nor_the_lock.)
#[test]
fn a_holder_killed_while_its_program_runs() {
    let s = Scenario::multi_call();
    let go = s.sb.path("state/go");
    let started = s.sb.path("state/started");
    let mut holder =
        s.sb.shim("iptables")
            .args(["-A", "INPUT", "-j", "KILLED_HOLDER"])
            .env("FAKE_WAIT_FOR", &go)
            .env("FAKE_STARTED", &started)
            .env("FAKE_BUSY_DIR", s.sb.path("state"))
            .spawn()
            .unwrap();
    wait_for_file(&started);
    holder.kill().unwrap();
    let _ = holder.wait();
    let mut outsider = s.outsider();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(s.runs_of("OUTSIDER"), 0, "ran beside the orphaned program");
    std::fs::write(&go, "").unwrap();
    assert_eq!(wait_bounded(&mut outsider).code(), Some(0));
    assert_eq!(s.runs_of("KILLED_HOLDER"), 1);
    assert_eq!(s.runs_of("OUTSIDER"), 1);
    s.assert_alone();
}

/// A nested call SIGKILLed while its program runs: the program keeps the gate read
/// lock, so the next holder waits for it.
#[test]
fn a_nested_call_killed_while_its_program_runs() {
    let s = Scenario::multi_call();
    let go = s.sb.path("state/go");
    let started = s.sb.path("state/started");
    let script = format!(
        "FAKE_WAIT_FOR={go} FAKE_STARTED={started} iptables -A INPUT -j NESTED & \
         while [ ! -s {started} ]; do sleep 0.01; done; \
         kill -9 $!; wait",
        go = go.display(),
        started = started.display()
    );
    let mut holder =
        s.sb.xtlock()
            .args(["sh", "-c", &script])
            .env("FAKE_BUSY_DIR", s.sb.path("state"))
            .spawn()
            .unwrap();
    let _ = wait_bounded(&mut holder);
    let mut outsider = s.outsider();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        s.runs_of("OUTSIDER"),
        0,
        "ran beside the orphaned nested program"
    );
    std::fs::write(&go, "").unwrap();
    assert_eq!(wait_bounded(&mut outsider).code(), Some(0));
    assert_eq!(s.runs_of("NESTED"), 1);
    assert_eq!(s.runs_of("OUTSIDER"), 1);
    s.assert_alone();
}
