//! The test sandbox: a temp dir with `shim/` (links to the built xtlock) ahead of
//! `real/` (the fake program, or links to the real iptables) in PATH, a private lock
//! file, a log file, and no syslog. The XTLOCK_* variables of the outer environment
//! are cleared so a nested test run cannot leak into the one under test.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The binary under test; XTLOCK_TEST_BIN runs the suite against another build (to
/// show that a test fails on an older version).
pub fn xtlock_bin() -> PathBuf {
    std::env::var_os("XTLOCK_TEST_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_xtlock")),
        PathBuf::from,
    )
}

/// The fake program, compiled once per test run from tests/cli/fake/.
pub fn fake_bin() -> &'static Path {
    static FAKE: OnceLock<PathBuf> = OnceLock::new();
    FAKE.get_or_init(|| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/fake/fake_iptables.rs");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("fake_iptables.{}", std::process::id()));
        let status = Command::new(std::env::var_os("RUSTC").unwrap_or("rustc".into()))
            .args(["--edition", "2021", "-O", "-o"])
            .arg(&out)
            .arg(&source)
            .status()
            .expect("run rustc to build the fake");
        assert!(status.success(), "building the fake failed");
        out
    })
}

pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["shim", "real", "state"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        std::fs::write(dir.path().join("xtlock.conf"), "").unwrap();
        Sandbox { dir }
    }

    /// A sandbox with `iptables` as a shim ahead of the fake `iptables`.
    pub fn with_fake(names: &[&str]) -> Sandbox {
        let sandbox = Sandbox::new();
        for name in names {
            sandbox.install_fake(name);
            sandbox.link_shim(name);
        }
        sandbox
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn install_fake(&self, name: &str) {
        std::fs::copy(fake_bin(), self.path("real").join(name)).unwrap();
    }

    pub fn link_shim(&self, name: &str) {
        std::os::unix::fs::symlink(xtlock_bin(), self.path("shim").join(name)).unwrap();
    }

    pub fn lock_file(&self) -> PathBuf {
        self.path("xtlock.lock")
    }

    pub fn log_file(&self) -> PathBuf {
        self.path("xtlock.log")
    }

    pub fn search_path(&self) -> String {
        format!(
            "{}:{}:/usr/sbin:/usr/bin:/sbin:/bin",
            self.path("shim").display(),
            self.path("real").display()
        )
    }

    /// A command with the sandbox's environment, xtlock's own variables cleared.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        for (key, _) in std::env::vars_os() {
            if key.as_bytes().starts_with(b"XTLOCK_") || key.as_bytes().starts_with(b"FAKE_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("PATH", self.search_path())
            .env("XTLOCK_CONFIG", self.path("xtlock.conf"))
            .env("XTLOCK_LOCK_FILE", self.lock_file())
            .env("XTLOCK_LOG_FILE", self.log_file())
            .env("XTLOCK_SYSLOG_SOCKET", "")
            .env("XTLOCK_JOURNAL_SOCKET", "")
            .env("FAKE_LOG", self.path("state/argv.log"))
            .env("FAKE_COUNTER", self.path("state/counter"))
            .stdin(Stdio::null());
        // A test runner started as a shell's background job has SIGINT and SIGQUIT
        // ignored (POSIX, for asynchronous lists), and a caller's ignored signals stay
        // ignored through xtlock, as bare: each caller under test starts from the
        // defaults, unless the test itself ignores one (its pre_exec runs after this).
        // SAFETY: only async-signal-safe signal(2) calls, in the child before exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                for signal in [libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGHUP] {
                    libc::signal(signal, libc::SIG_DFL);
                }
                Ok(())
            });
        }
        cmd
    }

    /// The shim, called by name through PATH as callers do.
    pub fn shim(&self, name: &str) -> Command {
        self.command(self.path("shim").join(name)).tap_arg0(name)
    }

    /// `xtlock ARGS...` by its own name.
    pub fn xtlock(&self) -> Command {
        self.command(xtlock_bin())
    }

    /// argv records the fake wrote: one Vec of args per call.
    pub fn calls(&self) -> Vec<Vec<Vec<u8>>> {
        let raw = std::fs::read(self.path("state/argv.log")).unwrap_or_default();
        parse_records(&raw)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    /// A script for `xtlock sh -c`: a nested `iptables -A INPUT -j TARGET` in the
    /// background that runs until state/go exists, and the script ends as soon as that
    /// call has started (state/started). Returns the script and the path of go.
    pub fn background_nested_call(&self, target: &str) -> (String, PathBuf) {
        let go = self.path("state/go");
        let started = self.path("state/started");
        let script = format!(
            "FAKE_WAIT_FOR={go} FAKE_STARTED={started} iptables -A INPUT -j {target} >/dev/null 2>&1 & \
             while [ ! -s {started} ]; do sleep 0.01; done",
            go = go.display(),
            started = started.display()
        );
        (script, go)
    }

    /// `iptables -A INPUT -j TARGET` through the shim, marking overlaps in state/.
    pub fn writer(&self, target: &str) -> std::process::Child {
        self.shim("iptables")
            .args(["-A", "INPUT", "-j", target])
            .env("FAKE_BUSY_DIR", self.path("state"))
            .env("XTLOCK_TIMEOUT", "30")
            .spawn()
            .unwrap()
    }

    /// Let another user (a test's `setpriv --reuid=65534`) traverse the sandbox and let
    /// the fake count its calls; the lock file stays root's.
    pub fn open_to_other_users(&self) {
        for (path, mode) in [
            (self.dir.path().to_path_buf(), 0o755),
            (self.path("state"), 0o777),
            (self.path("state/counter"), 0o666),
            (self.path("state/argv.log"), 0o666),
        ] {
            std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .unwrap();
        }
    }

    pub fn counter(&self) -> u32 {
        // 0 also while the fake is writing it.
        std::fs::read_to_string(self.path("state/counter"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

trait TapArg0 {
    fn tap_arg0(self, name: &str) -> Self;
}

impl TapArg0 for Command {
    fn tap_arg0(mut self, name: &str) -> Command {
        std::os::unix::process::CommandExt::arg0(&mut self, name);
        self
    }
}

fn parse_records(raw: &[u8]) -> Vec<Vec<Vec<u8>>> {
    let mut calls = Vec::new();
    let mut rest = raw;
    while !rest.is_empty() {
        let mut args = Vec::new();
        while rest[0] != b'\n' {
            let colon = rest.iter().position(|&b| b == b':').unwrap();
            let len: usize = std::str::from_utf8(&rest[..colon])
                .unwrap()
                .parse()
                .unwrap();
            args.push(rest[colon + 1..colon + 1 + len].to_vec());
            rest = &rest[colon + 1 + len..];
        }
        rest = &rest[1..];
        calls.push(args);
    }
    calls
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("spawn")
}

pub fn code(output: &Output) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    output
        .status
        .code()
        .unwrap_or_else(|| 128 + output.status.signal().unwrap())
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Log lines whose event= matches, parsed as key=value pairs.
pub fn events(log: &str, event: &str) -> Vec<Vec<(String, String)>> {
    log.lines()
        .filter_map(|line| line.split_once("]: ").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_once(": ").map(|(_, fields)| fields))
        .map(xtlock::text::parse_fields)
        .filter(|fields| {
            fields
                .first()
                .is_some_and(|(k, v)| k == "event" && v == event)
        })
        .collect()
}

pub fn field<'a>(fields: &'a [(String, String)], key: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

pub const EAGAIN: &str = "iptables: Resource temporarily unavailable.\n";

pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// For tests that need root, unshare or the real iptables: a failure under CI, where
/// .ci/run installs everything; a visible skip elsewhere.
pub fn require(what: &str, available: bool) -> bool {
    if available {
        return true;
    }
    if std::env::var_os("CI").is_some_and(|v| v == "true") {
        panic!("CI=true but {what} is not available: .ci/run must provide it");
    }
    eprintln!("SKIPPED: {what} is not available");
    false
}

/// Root, unshare, network namespaces and each of `programs`: what the tests that run
/// real programs in a private namespace need (a visible skip, or a failure under CI).
pub fn private_netns_with(programs: &[&str]) -> bool {
    require("root", is_root())
        && require("unshare", have("unshare"))
        && programs.iter().all(|p| require(p, have(p)))
        && require(
            "network namespaces",
            Command::new("unshare")
                .args(["-n", "true"])
                .status()
                .is_ok_and(|s| s.success()),
        )
}

/// Is `program` on PATH?
pub fn have(program: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Where `program` is on PATH.
pub fn which(program: &str) -> std::path::PathBuf {
    let out = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{program} is not on PATH");
    std::path::PathBuf::from(String::from_utf8(out.stdout).unwrap().trim_end())
}

/// The number after `key=` in a script's `key=value ...` result line.
pub fn result_value(line: &str, key: &str) -> u32 {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
        .parse()
        .unwrap()
}

/// The `mode=...` result line a scenario script printed, or a panic with its output.
pub fn result_line(script: &str, out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("mode="))
        .unwrap_or_else(|| {
            panic!(
                "{script} printed no result: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    eprintln!("{line}");
    line.to_string()
}

/// Run tests/SCRIPT ARGS under `unshare -n -m` (at most 15 minutes).
pub fn run_in_private_namespace(script: &str, args: &[&std::ffi::OsStr]) -> std::process::Output {
    run_in_namespaces(&["-n", "-m"], script, args)
}

/// Run tests/SCRIPT ARGS with bash under `unshare FLAGS`, telling it the host's network,
/// mount and PID namespaces so it can refuse to run in them (tests/private-namespace.sh).
pub fn run_in_namespaces(
    flags: &[&str],
    script: &str,
    args: &[&std::ffi::OsStr],
) -> std::process::Output {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(script);
    let namespace = |kind: &str| std::fs::read_link(format!("/proc/self/ns/{kind}")).unwrap();
    Command::new("timeout")
        .args(["900", "unshare"])
        .args(flags)
        .arg("bash")
        .arg(path)
        .args(args)
        .env("HOST_NETNS", namespace("net"))
        .env("HOST_MNTNS", namespace("mnt"))
        .env("HOST_PIDNS", namespace("pid"))
        .env_remove("XTLOCK_TOKEN")
        .env_remove("XTLOCK_DEPTH")
        .output()
        .unwrap()
}

/// A directory's entries and, for links, their targets: to show a round trip left it as it was.
pub fn listing(dir: &Path) -> Vec<(String, Option<PathBuf>)> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_link(e.path()).ok(),
            )
        })
        .collect();
    entries.sort();
    entries
}

pub fn alive(pid: u32) -> bool {
    // A zombie has no cmdline; a reaped process has no /proc entry.
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

/// Wait, but never forever: a test that hangs is a test that failed.
pub fn wait_bounded(child: &mut std::process::Child) -> std::process::ExitStatus {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > std::time::Duration::from_secs(10) {
            let _ = child.kill();
            panic!("pid {} did not end within 10 s", child.id());
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// A fifo at `path`.
pub fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo {}",
        path.display()
    );
}

/// Run `cmd` with `input` on its stdin, stdout and stderr captured.
pub fn with_input(cmd: &mut std::process::Command, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(input);
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// A scenario script's `case=NAME ok` line, or a panic with all it printed.
pub fn assert_case_ok(name: &str, out: &std::process::Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&format!("case={name} ok")),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
