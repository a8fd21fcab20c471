//! What xtlock costs, measured against the bare tool, flock(1) and the floor (a minimal
//! program that only spawns and waits), all in one run in a private network namespace:
//!
//!     cargo run --release --example bench [-- --runs N --rounds R --skip-contention]
//!
//! Prints tables; every ratio is against a baseline measured in the same run. Needs
//! root, unshare(1), iptables-legacy, flock(1) and a C compiler (for the floor).

#[path = "shared/mod.rs"]
mod shared;
use shared::{machine, median, ratio, sh, whole_ms};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const INSIDE: &str = "XTLOCK_BENCH_INSIDE";
const RULE: [&str; 8] = ["-C", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"];

/// The same floor in Rust with std, built static and non-PIE like xtlock: what the Rust
/// runtime and std::process cost before xtlock does anything.
const FLOOR_RS: &str = r#"
fn main() {
    let mut args = std::env::args_os().skip(1);
    let program = args.next().expect("program");
    let status = std::process::Command::new(program).args(args).status().expect("spawn");
    std::process::exit(status.code().unwrap_or(125));
}
"#;

/// The floor of any program in front of iptables that needs nothing after it: exec.
const EXEC_C: &str = r#"
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc < 2) return 127;
    execvp(argv[1], argv + 1);
    return 127;
}
"#;

/// The floor: spawn argv[1..] and wait, nothing else. Built static and dynamic.
const FLOOR_C: &str = r#"
#include <spawn.h>
#include <sys/wait.h>
extern char **environ;
int main(int argc, char **argv) {
    pid_t pid; int status;
    if (argc < 2 || posix_spawnp(&pid, argv[1], 0, 0, argv + 1, environ) != 0) return 127;
    if (waitpid(pid, &status, 0) < 0) return 125;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
"#;

struct Options {
    runs: usize,
    rounds: usize,
    contention: bool,
    /// Another xtlock build to measure beside this one (`--baseline PATH`).
    baseline: Option<PathBuf>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // Helper roles, run by the hand-off measurement.
    if args.get(1).map(String::as_str) == Some("--stamp") {
        stamp(
            Path::new(&args[2]),
            args.get(3).map(|ms| ms.parse().unwrap()),
        );
        return;
    }
    let mut options = Options {
        runs: 200,
        rounds: 5,
        contention: true,
        baseline: None,
    };
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--runs" => options.runs = iter.next().unwrap().parse().unwrap(),
            "--rounds" => options.rounds = iter.next().unwrap().parse().unwrap(),
            "--skip-contention" => options.contention = false,
            // Absolute: the shims are symlinks made elsewhere, and a dangling one would
            // silently measure the bare program.
            "--baseline" => {
                let path = iter.next().expect("--baseline PATH");
                options.baseline = Some(std::fs::canonicalize(path).expect("--baseline PATH"))
            }
            other => panic!("bench: unknown argument {other}"),
        }
    }
    if std::env::var_os(INSIDE).is_none() {
        enter_namespace(&args);
        return;
    }
    run_benchmarks(&options);
}

/// Build xtlock, then run this same benchmark again inside `unshare -n -m`.
fn enter_namespace(args: &[String]) {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let built = Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
        .args([
            "build",
            "--release",
            "--quiet",
            "--bin",
            "xtlock",
            "--manifest-path",
        ])
        .arg(&manifest)
        .status()
        .expect("run cargo");
    assert!(built.success(), "cargo build failed");
    let status = Command::new("unshare")
        .args(["-n", "-m", "--"])
        .args(args)
        .env(INSIDE, std::fs::read_link("/proc/self/ns/net").unwrap())
        .env(
            "XTLOCK_BENCH_HOST_MNTNS",
            std::fs::read_link("/proc/self/ns/mnt").unwrap(),
        )
        .status()
        .expect("run unshare (root needed)");
    std::process::exit(status.code().unwrap_or(1));
}

fn run_benchmarks(options: &Options) {
    // Never touch a rule unless this is a new network namespace with only lo in it.
    let host_netns = std::env::var_os(INSIDE).unwrap();
    let own = std::fs::read_link("/proc/self/ns/net").unwrap();
    let links = sh("ip -o link show | wc -l");
    assert!(
        own.as_os_str() != host_netns && links.trim() == "1",
        "not in a fresh network namespace"
    );
    let host_mntns = std::env::var_os("XTLOCK_BENCH_HOST_MNTNS").unwrap();
    assert!(
        std::fs::read_link("/proc/self/ns/mnt").unwrap().as_os_str() != host_mntns,
        "no private mount namespace"
    );
    sh("mount --make-rprivate / && mount -t tmpfs xtlock-bench /run");

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let xtlock = root.join("target/release/xtlock");
    let work = PathBuf::from("/run/bench");
    std::fs::create_dir_all(work.join("shim")).unwrap();
    std::os::unix::fs::symlink(&xtlock, work.join("shim/iptables-legacy")).unwrap();
    if let Some(baseline) = &options.baseline {
        std::fs::create_dir_all(work.join("baseline")).unwrap();
        std::os::unix::fs::symlink(baseline, work.join("baseline/iptables-legacy")).unwrap();
    }
    std::fs::write(work.join("floor.c"), FLOOR_C).unwrap();
    std::fs::write(work.join("exec.c"), EXEC_C).unwrap();
    sh(&format!(
        "cc -O2 -static -o {w}/floor-static {w}/floor.c && cc -O2 -o {w}/floor-dynamic {w}/floor.c \
         && cc -O2 -static -o {w}/exec-static {w}/exec.c",
        w = work.display()
    ));
    std::fs::write(work.join("floor.rs"), FLOOR_RS).unwrap();
    sh(&format!(
        "rustc --edition 2021 -O -C panic=abort -C target-feature=+crt-static -C relocation-model=static -o {w}/floor-rust {w}/floor.rs",
        w = work.display()
    ));
    for port in ["80", "443", "8080", "22"] {
        sh(&format!(
            "iptables-legacy -A INPUT -p tcp --dport {port} -j ACCEPT"
        ));
    }
    println!("xtlock benchmark: {}", machine());
    println!("{}", sh("iptables-legacy --version").trim());
    println!();

    overhead(options, &work, &xtlock);
    handoff(options, &work, &xtlock);
    peak_rss(&work, &xtlock);
    if options.contention {
        contention(root, &xtlock, options.baseline.as_deref());
    }
}

fn overhead(options: &Options, work: &Path, xtlock: &Path) {
    let ipt = "iptables-legacy";
    let flock_file = work.join("flock.lock");
    let env_off = [
        ("XTLOCK_SYSLOG_SOCKET", ""),
        ("XTLOCK_JOURNAL_SOCKET", ""),
        ("XTLOCK_LOCK_FILE", "/run/xtlock.lock"),
    ];
    let path = |name: &str| work.join(name).to_string_lossy().into_owned();
    let shim = path("shim/iptables-legacy");
    let xt = xtlock.to_string_lossy().into_owned();
    // (name, argv before the rule, index of its floor). A legacy -C without -w stays on
    // xtlock's write path (lock, spawn, wait); with -w it is a read, exec'd in place.
    const BARE: usize = 0;
    const BARE_W: usize = 1;
    const EXEC: usize = 2;
    const SPAWN: usize = 3;
    let mut variants: Vec<(&str, Vec<OsString>, usize)> = vec![
        ("bare iptables-legacy -C", argv(&[ipt]), BARE),
        ("bare iptables-legacy -w -C", argv(&[ipt, "-w"]), BARE_W),
        (
            "floor: static exec, -w -C",
            argv(&[&path("exec-static"), ipt, "-w"]),
            EXEC,
        ),
        (
            "floor: static spawn+wait",
            argv(&[&path("floor-static"), ipt]),
            SPAWN,
        ),
        (
            "floor: dynamic spawn+wait",
            argv(&[&path("floor-dynamic"), ipt]),
            SPAWN,
        ),
        (
            "floor: Rust std, static",
            argv(&[&path("floor-rust"), ipt]),
            SPAWN,
        ),
        (
            "flock(1) FILE iptables",
            argv(&["flock", &flock_file.to_string_lossy(), ipt]),
            SPAWN,
        ),
        ("xtlock iptables (prefix)", argv(&[&xt, ipt]), SPAWN),
        ("write path: shim, -C", argv(&[&shim]), SPAWN),
        ("read: shim, -w -C (exec)", argv(&[&shim, "-w"]), EXEC),
    ];
    if options.baseline.is_some() {
        let old = path("baseline/iptables-legacy");
        variants.push(("baseline: shim, -C", argv(&[&old]), SPAWN));
        variants.push(("baseline: shim, -w -C", argv(&[&old, "-w"]), EXEC));
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
    for _ in 0..options.rounds {
        // Interleaved call by call, so drift on the machine hits every variant alike;
        // one median per variant per round.
        let mut round: Vec<Vec<Duration>> = vec![Vec::with_capacity(options.runs); variants.len()];
        for _ in 0..options.runs {
            for (i, (_, cmd, _)) in variants.iter().enumerate() {
                round[i].push(time_call(cmd, &env_off));
            }
        }
        for (i, times) in round.iter().enumerate() {
            samples[i].push(median(times));
        }
    }
    let bare = median(&samples[BARE]);
    println!(
        "1. Overhead of one uncontended call: `{ipt} [-w] {}` on a 4-rule table",
        RULE.join(" ")
    );
    println!(
        "   ({} rounds x {} calls each, interleaved call by call; median of each round, then median/min/max over rounds)",
        options.rounds, options.runs
    );
    println!(
        "   {:<28} {:>9} {:>9} {:>9} {:>8} {:>9}",
        "variant", "median", "min", "max", "x bare", "x floor"
    );
    for (i, (name, _, floor)) in variants.iter().enumerate() {
        let m = median(&samples[i]);
        let (lo, hi) = (
            samples[i].iter().min().unwrap(),
            samples[i].iter().max().unwrap(),
        );
        let floor_name = match *floor {
            EXEC => "exec",
            SPAWN => "spawn",
            _ => "",
        };
        println!(
            "   {:<28} {:>9} {:>9} {:>9} {:>7.2}x {:>8.2}x {floor_name}",
            name,
            ms(m),
            ms(*lo),
            ms(*hi),
            ratio(m, bare),
            ratio(m, median(&samples[*floor]))
        );
    }
    println!();
}

/// Wall time of one call of `cmd RULE...`.
fn time_call(cmd: &[OsString], env: &[(&str, &str)]) -> Duration {
    let start = Instant::now();
    let status = Command::new(&cmd[0])
        .args(&cmd[1..])
        .args(RULE)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    let elapsed = start.elapsed();
    // -C answers 0 (the rule is there).
    assert!(status.success(), "{cmd:?} failed");
    elapsed
}

/// From the holder's last instruction to the waiter's first: the lock hand-off,
/// process exit and the next spawn included.
fn handoff(options: &Options, work: &Path, xtlock: &Path) {
    let me = std::env::current_exe().unwrap();
    let mut results = Vec::new();
    for name in ["flock(1)", "xtlock"] {
        let mut gaps = Vec::new();
        for i in 0..options.runs.min(50) {
            let (held, next) = (
                work.join(format!("held.{i}")),
                work.join(format!("next.{i}")),
            );
            let wrap = |out: &Path, sleep_ms: Option<u32>| {
                let mut cmd = match name {
                    "xtlock" => {
                        let mut c = Command::new(xtlock);
                        c.env("XTLOCK_SYSLOG_SOCKET", "")
                            .env("XTLOCK_LOCK_FILE", "/run/handoff.lock");
                        c
                    }
                    _ => {
                        let mut c = Command::new("flock");
                        c.arg("/run/handoff.lock");
                        c
                    }
                };
                cmd.arg(&me).arg("--stamp").arg(out);
                if let Some(ms) = sleep_ms {
                    cmd.arg(ms.to_string());
                }
                cmd.spawn().unwrap()
            };
            let mut holder = wrap(&held, Some(100));
            std::thread::sleep(Duration::from_millis(30));
            let mut waiter = wrap(&next, None);
            holder.wait().unwrap();
            waiter.wait().unwrap();
            let read = |p: &Path| {
                std::fs::read_to_string(p)
                    .unwrap()
                    .trim()
                    .parse::<u128>()
                    .unwrap()
            };
            gaps.push(Duration::from_nanos(
                (read(&next).saturating_sub(read(&held))) as u64,
            ));
        }
        results.push((name, gaps));
    }
    println!(
        "3. Hand-off: holder's last instruction -> waiter's first (release, exit, wake, spawn)"
    );
    let base = median(&results[0].1);
    for (name, gaps) in &results {
        let m = median(gaps);
        println!(
            "   {:<28} median {:>9}  min {:>9}  max {:>9}  {:.2}x flock(1)",
            name,
            ms(m),
            ms(*gaps.iter().min().unwrap()),
            ms(*gaps.iter().max().unwrap()),
            ratio(m, base)
        );
    }
    println!();
}

fn stamp(out: &Path, sleep_ms: Option<u64>) {
    if let Some(ms) = sleep_ms {
        std::thread::sleep(Duration::from_millis(ms));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    std::fs::write(out, now.as_nanos().to_string()).unwrap();
}

/// Peak RSS of the xtlock process. wait4 reports max(own, children's), so the child
/// here is the static floor program doing nothing: its RSS is a few pages.
fn peak_rss(work: &Path, xtlock: &Path) {
    let floor = work.join("floor-static");
    // Reaped by wait4 below, which std's Child::wait cannot do with rusage.
    #[allow(clippy::zombie_processes)]
    let run = |cmd: &mut Command| -> (u64, bool) {
        let child = cmd
            .env("XTLOCK_SYSLOG_SOCKET", "")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut status = 0;
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
        (usage.ru_maxrss as u64, status == 0)
    };
    let (floor_kib, _) = run(Command::new(&floor).arg("true"));
    let (xt_kib, ok) = run(Command::new(xtlock).arg(&floor).arg("true"));
    let (ipt_kib, _) = run(Command::new(xtlock).arg("iptables-legacy").args(RULE));
    assert!(ok);
    println!("4. Peak RSS (wait4 ru_maxrss: the process or its largest child)");
    println!("   {:<28} {:>6} KiB", "floor-static true", floor_kib);
    println!(
        "   {:<28} {:>6} KiB  {:.2} MiB",
        "xtlock floor-static true",
        xt_kib,
        xt_kib as f64 / 1024.0
    );
    println!(
        "   {:<28} {:>6} KiB  (iptables' own RSS included)",
        "xtlock iptables-legacy -C", ipt_kib
    );
    println!();
}

/// (failed, missing, duplicated), wall time, and the probes' p50 and p99.
type RaceRun = ((u64, u64, u64), Duration, Option<(Duration, Duration)>);

/// One run of examples/race.sh; the probes' figures when `probes` > 0.
fn race(root: &Path, xtlock: &Path, mode: &str, probes: u32) -> RaceRun {
    let out = Command::new("sh")
        .arg(root.join("examples/race.sh"))
        .arg("--xtlock")
        .arg(xtlock)
        .args([
            "--mode",
            mode,
            "--workers",
            "128",
            "--bans",
            "5",
            "--probes",
            &probes.to_string(),
        ])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("mode="))
        .expect("race.sh result");
    let get = |key: &str| -> u64 {
        line.split(' ')
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .unwrap()
            .parse()
            .unwrap()
    };
    let lost = (get("failed"), get("missing"), get("duplicated"));
    let probes = (probes > 0).then(|| {
        (
            Duration::from_micros(get("probe_p50_us")),
            Duration::from_micros(get("probe_p99_us")),
        )
    });
    (lost, Duration::from_millis(get("wall_ms")), probes)
}

/// 128 workers released together, each -N, -A -j RETURN, -I INPUT -j and 5 bans, each
/// with its own XTABLES_LOCKFILE (except "shared", which shares iptables' own lock).
/// Then the same with 8 readers probing meanwhile, for their latency.
fn contention(root: &Path, xtlock: &Path, baseline: Option<&Path>) {
    println!(
        "2. Contention: 128 fail2ban-style workers x 8 commands (examples/race.sh --workers 128 --bans 5)"
    );
    println!(
        "   {:<34} {:>6} {:>7} {:>5} {:>9} {:>9} {:>9} {:>8}",
        "mode", "failed", "missing", "dups", "wall", "min", "max", "x flock"
    );
    let mut modes = vec![
        ("bare (own locks: unprotected)", "bare", xtlock),
        ("bare -w, iptables' lock shared", "shared", xtlock),
        ("flock(1) around each call", "flock", xtlock),
        ("xtlock", "xtlock", xtlock),
    ];
    if let Some(baseline) = baseline {
        modes.push(("baseline xtlock", "xtlock", baseline));
    }
    let mut rows = Vec::new();
    for (label, mode, binary) in &modes {
        let mut walls = Vec::new();
        let mut worst = (0, 0, 0);
        for _ in 0..3 {
            let (lost, wall, _) = race(root, binary, mode, 0);
            walls.push(wall);
            worst = worst.max(lost);
        }
        rows.push((label, worst, walls));
    }
    let flock_wall = median(&rows[2].2);
    for (label, (failed, missing, dups), walls) in &rows {
        let m = median(walls);
        println!(
            "   {:<34} {:>6} {:>7} {:>5} {:>9} {:>9} {:>9} {:>7.2}x",
            label,
            failed,
            missing,
            dups,
            whole_ms(m),
            whole_ms(*walls.iter().min().unwrap()),
            whole_ms(*walls.iter().max().unwrap()),
            ratio(m, flock_wall)
        );
    }
    println!("   (failed/missing/dups: the worst of 3 runs; wall: median, min, max of 3)");
    println!();
    println!(
        "2b. Readers meanwhile: 8 loops of `-w -C INPUT -p tcp --dport 22 -j ACCEPT` during the same race"
    );
    println!(
        "   {:<34} {:>10} {:>10} {:>13} {:>9}",
        "mode", "p50", "p99", "p99 x bare -w", "wall"
    );
    let mut probe_rows = Vec::new();
    for (label, mode, binary) in &modes {
        let (mut p50s, mut p99s, mut walls) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..3 {
            let (_, wall, probes) = race(root, binary, mode, 8);
            let (p50, p99) = probes.unwrap();
            p50s.push(p50);
            p99s.push(p99);
            walls.push(wall);
        }
        probe_rows.push((label, median(&p50s), median(&p99s), median(&walls)));
    }
    let shared_p99 = probe_rows[1].2;
    for (label, p50, p99, wall) in &probe_rows {
        println!(
            "   {:<34} {:>10} {:>10} {:>12.2}x {:>9}",
            label,
            ms(*p50),
            ms(*p99),
            ratio(*p99, shared_p99),
            whole_ms(*wall)
        );
    }
    println!(
        "   (median over 3 runs of each run's p50 and p99; a probe pauses 20 ms between calls)"
    );
    println!();
}

fn argv(parts: &[&str]) -> Vec<OsString> {
    parts.iter().map(OsString::from).collect()
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}
