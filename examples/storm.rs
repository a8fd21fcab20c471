//! A storm of writers, as fail2ban makes when it restores its bans at start: N jails at
//! once, each creating its chain and jump, then inserting K bans one command at a time.
//! Every row runs in its own fresh private network namespace, all rows in one run:
//!
//!     cargo run --release --example storm -- [--jails N] [--bans K] [--backend legacy|nft|both]
//!         [--xtlock PATH] [--runs R] [--failures]
//!
//! Defaults: legacy 20 jails x 300 bans, nft 20 x 150 (the sizes the goals are set at),
//! one run. `--failures` mixes in failing commands (1 in 10 deletes an absent rule, 1 in
//! 25 names a missing target) and compares bare with xtlock only. After every row the
//! ruleset is counted and each command's exit status and stderr compared with the bare
//! row's; a row that differs is printed, never hidden. Needs root, unshare(1), flock(1)
//! and iptables (legacy and/or nft).

#[path = "shared/mod.rs"]
mod shared;
use shared::{machine, median, ratio, sh, whole_ms};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const HOST_NETNS: &str = "XTLOCK_STORM_HOST_NETNS";
const HOST_MNTNS: &str = "XTLOCK_STORM_HOST_MNTNS";
/// Where a row keeps its lock files and records, inside the row's private /run.
const WORK: &str = "/run/storm";
const REJECT: [&str; 4] = ["-j", "REJECT", "--reject-with", "icmp-port-unreachable"];

/// The goals of group commit: xtlock with batching on, against bare, at these sizes.
const GOALS: [(&str, usize, usize, f64); 2] = [("legacy", 20, 300, 0.35), ("nft", 20, 150, 0.75)];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Row {
    /// `iptables -w`, all writers sharing iptables' own lock.
    Bare,
    /// `flock FILE iptables -w`, each writer its own XTABLES_LOCKFILE.
    Flock,
    /// `XTLOCK_BATCH=off xtlock iptables -w`, each writer its own XTABLES_LOCKFILE.
    XtlockOff,
    /// The same with `XTLOCK_BATCH=on`.
    XtlockOn,
    /// Floor: all the commands as one `iptables-restore --noflush`.
    Restore,
    /// Floor: the same storm with /bin/true in place of iptables (the callers' own cost).
    True,
}

impl Row {
    const ALL: [Row; 6] = [
        Row::Bare,
        Row::Flock,
        Row::XtlockOff,
        Row::XtlockOn,
        Row::Restore,
        Row::True,
    ];

    fn name(self) -> &'static str {
        match self {
            Row::Bare => "bare",
            Row::Flock => "flock",
            Row::XtlockOff => "xtlock-off",
            Row::XtlockOn => "xtlock-on",
            Row::Restore => "restore",
            Row::True => "true",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Row::Bare => "bare -w, iptables' lock shared",
            Row::Flock => "flock(1), own iptables locks",
            Row::XtlockOff => "xtlock, XTLOCK_BATCH=off",
            Row::XtlockOn => "xtlock, XTLOCK_BATCH=on",
            Row::Restore => "floor: one restore --noflush",
            Row::True => "floor: /bin/true storm",
        }
    }

    fn from_name(name: &str) -> Row {
        *Row::ALL
            .iter()
            .find(|r| r.name() == name)
            .unwrap_or_else(|| panic!("storm: unknown row {name}"))
    }

    /// Rows whose commands are iptables' own, so statuses and stderr must equal bare's.
    fn runs_iptables_per_command(self) -> bool {
        !matches!(self, Row::Restore | Row::True)
    }
}

/// One command of a jail, and whether iptables accepts it.
struct Step {
    args: Vec<String>,
    ok: bool,
}

/// What one jail runs, in order: its chain, its jump, then its bans. With `failures`,
/// ban b is replaced by a delete of a rule never added when b % 10 == 3 (1 in 10) and
/// by a rule naming a missing target when b % 25 == 0 (1 in 25; never the same b).
fn jail_steps(jail: usize, bans: usize, failures: bool) -> Vec<Step> {
    assert!(
        jail < 256 && bans < 65536,
        "addresses are 10.JAIL.B/256.B%256"
    );
    let chain = format!("f2b-j{jail}");
    let addr = |net: u8, b: usize| format!("{net}.{jail}.{}.{}", b >> 8, b & 255);
    let strs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut steps = vec![
        Step {
            args: strs(&["-N", &chain]),
            ok: true,
        },
        Step {
            args: strs(&["-A", "INPUT", "-j", &chain]),
            ok: true,
        },
    ];
    for b in 1..=bans {
        let step = if failures && b % 25 == 0 {
            Step {
                args: strs(&["-I", &chain, "1", "-s", &addr(10, b), "-j", "NOSUCHCHAIN"]),
                ok: false,
            }
        } else if failures && b % 10 == 3 {
            // 11.0.0.0/8 is never banned.
            let mut args = strs(&["-D", &chain, "-s", &addr(11, b)]);
            args.extend(strs(&REJECT));
            Step { args, ok: false }
        } else {
            let mut args = strs(&["-I", &chain, "1", "-s", &addr(10, b)]);
            args.extend(strs(&REJECT));
            Step { args, ok: true }
        };
        steps.push(step);
    }
    steps
}

/// Rules each jail's chain holds after its steps.
fn expected_bans(bans: usize, failures: bool) -> usize {
    jail_steps(0, bans, failures)
        .iter()
        .filter(|s| s.ok && s.args[0] == "-I")
        .count()
}

/// What is wrong with the filter table in `save` (iptables-save output): each jail's
/// chain must hold `bans` rules and INPUT exactly one jump to it; nothing else (or, when
/// `bans` is None, nothing at all).
fn ruleset_problems(save: &str, jails: usize, bans: Option<usize>) -> Vec<String> {
    let mut chains: BTreeMap<String, usize> = BTreeMap::new();
    let mut jumps: BTreeMap<String, usize> = BTreeMap::new();
    let mut in_filter = false;
    for line in save.lines() {
        if line.starts_with('*') {
            in_filter = line == "*filter";
        } else if !in_filter {
        } else if let Some(decl) = line.strip_prefix(':') {
            chains
                .entry(decl.split(' ').next().unwrap().to_string())
                .or_default();
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let chain = rule.split(' ').next().unwrap();
            *chains.entry(chain.to_string()).or_default() += 1;
            if chain == "INPUT" {
                let target = rule.rsplit(' ').next().unwrap();
                *jumps.entry(target.to_string()).or_default() += 1;
            }
        }
    }
    let mut problems = Vec::new();
    let builtin = ["INPUT", "FORWARD", "OUTPUT"];
    let mut expected: BTreeMap<String, usize> =
        builtin.iter().map(|c| (c.to_string(), 0)).collect();
    if let Some(bans) = bans {
        expected.insert("INPUT".into(), jails);
        for j in 0..jails {
            expected.insert(format!("f2b-j{j}"), bans);
            let n = jumps.get(&format!("f2b-j{j}")).copied().unwrap_or(0);
            if n != 1 {
                problems.push(format!("INPUT jumps to f2b-j{j}: {n}, expected 1"));
            }
        }
    }
    for (chain, want) in &expected {
        // A table never touched is not printed at all: its built-in chains count as empty.
        match chains.get(chain) {
            None if !builtin.contains(&chain.as_str()) => {
                problems.push(format!("chain {chain} missing"))
            }
            n if n.copied().unwrap_or(0) != *want => problems.push(format!(
                "{chain}: {} rules, expected {want}",
                n.copied().unwrap_or(0)
            )),
            _ => {}
        }
    }
    for chain in chains.keys().filter(|c| !expected.contains_key(*c)) {
        problems.push(format!("unexpected chain {chain}"));
    }
    problems
}

struct Options {
    jails: Option<usize>,
    bans: Option<usize>,
    backends: Vec<&'static str>,
    xtlock: Option<PathBuf>,
    runs: usize,
    failures: bool,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--jail") => return jail(&args),
        Some("--row") => return row(&args),
        _ => {}
    }
    let mut options = Options {
        jails: None,
        bans: None,
        backends: vec!["legacy"],
        xtlock: None,
        runs: 1,
        failures: false,
    };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = || {
            iter.next()
                .unwrap_or_else(|| panic!("storm: {arg} needs a value"))
        };
        match arg.as_str() {
            "--jails" => options.jails = Some(value().parse().unwrap()),
            "--bans" => options.bans = Some(value().parse().unwrap()),
            "--runs" => options.runs = value().parse().unwrap(),
            "--xtlock" => options.xtlock = Some(value().into()),
            "--failures" => options.failures = true,
            "--backend" => {
                options.backends = match value().as_str() {
                    "legacy" => vec!["legacy"],
                    "nft" => vec!["nft"],
                    "both" => vec!["legacy", "nft"],
                    other => panic!("storm: unknown backend {other}"),
                }
            }
            other => panic!("storm: unknown argument {other}"),
        }
    }
    let xtlock = match options.xtlock.clone() {
        Some(path) => path,
        None => build_xtlock(),
    };
    assert!(xtlock.is_file(), "storm: no xtlock at {}", xtlock.display());
    let xtlock = std::fs::canonicalize(xtlock).unwrap();

    println!("xtlock storm benchmark: {}", machine());
    for backend in &options.backends {
        println!("{}", sh(&format!("iptables-{backend} --version")).trim());
    }
    println!("xtlock: {}", xtlock.display());
    println!("load average at start: {}", loadavg());
    println!();
    let mut verdicts = Vec::new();
    for backend in &options.backends {
        let (default_jails, default_bans) = if *backend == "nft" {
            (20, 150)
        } else {
            (20, 300)
        };
        let jails = options.jails.unwrap_or(default_jails);
        let bans = options.bans.unwrap_or(default_bans);
        verdicts.extend(storm(backend, jails, bans, &options, &xtlock));
    }
    if !verdicts.is_empty() {
        println!("Goals (group commit): xtlock with batching on, wall time against bare");
        for line in verdicts {
            println!("   {line}");
        }
    }
}

/// The default: this worktree's release build, built first (as examples/bench.rs does).
fn build_xtlock() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
        .args([
            "build",
            "--release",
            "--quiet",
            "--bin",
            "xtlock",
            "--manifest-path",
        ])
        .arg(root.join("Cargo.toml"))
        .status()
        .expect("run cargo");
    assert!(built.success(), "cargo build failed");
    root.join("target/release/xtlock")
}

/// What one row of one run gave.
struct Outcome {
    wall: Duration,
    /// CPU time (user + system) of all the row's processes: less swayed than wall time
    /// by other load on the machine.
    cpu: Duration,
    /// What is wrong with the ruleset afterwards.
    problems: Vec<String>,
    /// One line per command: jail, index, exit status, stderr.
    records: Vec<String>,
}

/// All rows of one backend, `options.runs` times, rows interleaved; prints the table and
/// returns the goal's verdict.
fn storm(
    backend: &str,
    jails: usize,
    bans: usize,
    options: &Options,
    xtlock: &Path,
) -> Vec<String> {
    let rows: Vec<Row> = if options.failures {
        vec![Row::Bare, Row::XtlockOff, Row::XtlockOn]
    } else {
        Row::ALL.to_vec()
    };
    let steps: Vec<Vec<Step>> = (0..jails)
        .map(|j| jail_steps(j, bans, options.failures))
        .collect();
    let commands = jails * (bans + 2);
    let expected_fail = steps.iter().flatten().filter(|s| !s.ok).count();
    println!(
        "{backend}: {jails} jails x {bans} bans at once, each `-N`, `-A INPUT -j` and its bans one `-I CHAIN 1 -s ADDR {}` at a time ({commands} commands{})",
        REJECT.join(" "),
        if options.failures {
            format!(", {expected_fail} of them failing")
        } else {
            String::new()
        }
    );
    let out = tempfile::tempdir().unwrap();
    let mut walls: Vec<Vec<Duration>> = vec![Vec::new(); rows.len()];
    let mut cpus: Vec<Vec<Duration>> = vec![Vec::new(); rows.len()];
    // Per row: runs whose ruleset was wrong, commands whose status was not the expected
    // one, commands whose status or stderr differed from bare's in the same run.
    let mut wrong_rules = vec![0usize; rows.len()];
    let mut wrong_status = vec![0usize; rows.len()];
    let mut unlike_bare = vec![0usize; rows.len()];
    for run in 0..options.runs {
        let mut bare_records = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let outcome = run_row(
                *row,
                backend,
                jails,
                bans,
                options.failures,
                xtlock,
                out.path(),
            );
            println!(
                "   run {}/{} {:<12} {:>9}  cpu {:>9}{}",
                run + 1,
                options.runs,
                row.name(),
                whole_ms(outcome.wall),
                whole_ms(outcome.cpu),
                if outcome.problems.is_empty() {
                    String::new()
                } else {
                    format!("  RULESET WRONG: {}", outcome.problems.join("; "))
                }
            );
            walls[i].push(outcome.wall);
            cpus[i].push(outcome.cpu);
            wrong_rules[i] += usize::from(!outcome.problems.is_empty());
            if !row.runs_iptables_per_command() {
                continue;
            }
            assert_eq!(outcome.records.len(), commands, "a jail lost records");
            let flat: Vec<&Step> = steps.iter().flatten().collect();
            for (record, step) in outcome.records.iter().zip(&flat) {
                let status_ok = record.split(' ').nth(2) == Some("0");
                if status_ok != step.ok {
                    wrong_status[i] += 1;
                    if wrong_status[i] <= 3 {
                        println!(
                            "      {} unexpected: {} {}",
                            row.name(),
                            record,
                            step.args.join(" ")
                        );
                    }
                }
            }
            if *row == Row::Bare {
                bare_records = outcome.records;
            } else {
                for (mine, bare) in outcome.records.iter().zip(&bare_records) {
                    if mine != bare {
                        unlike_bare[i] += 1;
                        if unlike_bare[i] <= 3 {
                            println!(
                                "      {} differs from bare:\n        bare: {bare}\n        {}: {mine}",
                                row.name(),
                                row.name()
                            );
                        }
                    }
                }
            }
        }
    }
    println!();
    println!(
        "   {:<32} {:>9} {:>9} {:>9} {:>8} {:>9} {:>8} {:>9} {:>8} {:>9}",
        "row", "median", "min", "max", "x bare", "cpu", "x bare", "ruleset", "status", "vs bare"
    );
    let bare = median(&walls[0]);
    let bare_cpu = median(&cpus[0]);
    let mut ratios = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        let m = median(&walls[i]);
        ratios.insert(row.name(), ratio(m, bare));
        let (status, vs) = if row.runs_iptables_per_command() {
            (
                if wrong_status[i] == 0 {
                    "ok".into()
                } else {
                    format!("{} BAD", wrong_status[i])
                },
                if *row == Row::Bare {
                    "-".into()
                } else if unlike_bare[i] == 0 {
                    "same".into()
                } else {
                    format!("{} DIFF", unlike_bare[i])
                },
            )
        } else {
            ("-".to_string(), "-".to_string())
        };
        println!(
            "   {:<32} {:>9} {:>9} {:>9} {:>7.3}x {:>9} {:>7.3}x {:>9} {:>8} {:>9}",
            row.label(),
            whole_ms(m),
            whole_ms(*walls[i].iter().min().unwrap()),
            whole_ms(*walls[i].iter().max().unwrap()),
            ratio(m, bare),
            whole_ms(median(&cpus[i])),
            ratio(median(&cpus[i]), bare_cpu),
            if wrong_rules[i] == 0 {
                "ok".into()
            } else {
                format!("{} WRONG", wrong_rules[i])
            },
            status,
            vs,
        );
    }
    println!(
        "   (wall: from releasing all jails at once to the last one's exit; median, min, max of {} run(s);",
        options.runs
    );
    println!(
        "    cpu: user + system time of all the row's processes, median; load average now: {}",
        loadavg()
    );
    println!(
        "    ruleset: each chain's rule count by iptables-save after every run; status: each command's exit status as expected;"
    );
    println!(
        "    vs bare: each command's exit status and stderr byte for byte against bare's in the same run)"
    );
    println!();
    let mut verdicts = Vec::new();
    if !options.failures
        && let Some((_, gj, gb, goal)) = GOALS.iter().find(|g| g.0 == backend)
    {
        let r = ratios["xtlock-on"];
        let size = if (jails, bans) == (*gj, *gb) {
            String::new()
        } else {
            format!(" (this run {jails} x {bans}: indicative only)")
        };
        let clean = wrong_rules.iter().all(|&n| n == 0)
            && wrong_status.iter().all(|&n| n == 0)
            && unlike_bare.iter().all(|&n| n == 0);
        verdicts.push(format!(
            "{backend} {gj} x {gb}: xtlock on <= {goal:.2}x bare: {r:.3}x, {}{}{size}",
            if r <= *goal { "met" } else { "NOT MET" },
            if clean {
                ""
            } else {
                ", and some row was WRONG (see above)"
            },
        ));
    }
    verdicts
}

/// Run one row in a fresh private network namespace: this program again, `--row`.
fn run_row(
    row: Row,
    backend: &str,
    jails: usize,
    bans: usize,
    failures: bool,
    xtlock: &Path,
    out: &Path,
) -> Outcome {
    let _ = std::fs::remove_file(out.join("result"));
    let _ = std::fs::remove_file(out.join("records"));
    let me = std::env::current_exe().unwrap();
    let status = Command::new("unshare")
        .args(["-n", "-m", "--"])
        .arg(me)
        .args(["--row", row.name(), "--backend", backend])
        .args(["--jails", &jails.to_string(), "--bans", &bans.to_string()])
        .args(["--failures", if failures { "1" } else { "0" }])
        .arg("--xtlock")
        .arg(xtlock)
        .arg("--out")
        .arg(out)
        .env(HOST_NETNS, std::fs::read_link("/proc/self/ns/net").unwrap())
        .env(HOST_MNTNS, std::fs::read_link("/proc/self/ns/mnt").unwrap())
        .status()
        .expect("run unshare (root needed)");
    assert!(
        status.success(),
        "storm: row {} failed: {status}",
        row.name()
    );
    let result = std::fs::read_to_string(out.join("result")).unwrap();
    let mut lines = result.lines();
    let wall = Duration::from_nanos(lines.next().unwrap().parse().unwrap());
    let cpu = Duration::from_nanos(lines.next().unwrap().parse().unwrap());
    let problems = lines.map(String::from).collect();
    let records = std::fs::read_to_string(out.join("records"))
        .map(|r| r.lines().map(String::from).collect())
        .unwrap_or_default();
    Outcome {
        wall,
        cpu,
        problems,
        records,
    }
}

/// Inside a row's namespace: refuse unless it is fresh, run the row, count the ruleset.
fn row(args: &[String]) {
    let get = |key: &str| -> &str {
        let at = args
            .iter()
            .position(|a| a == key)
            .unwrap_or_else(|| panic!("storm: no {key}"));
        &args[at + 1]
    };
    let row = Row::from_name(get("--row"));
    let backend = get("--backend");
    let jails: usize = get("--jails").parse().unwrap();
    let bans: usize = get("--bans").parse().unwrap();
    let failures = get("--failures") == "1";
    let xtlock = get("--xtlock");
    let out = Path::new(get("--out"));

    // Never touch a rule unless this is a new network namespace with only lo in it.
    let own = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert!(
        Some(own.as_os_str()) != std::env::var_os(HOST_NETNS).as_deref()
            && sh("ip -o link show | wc -l").trim() == "1",
        "storm: not in a fresh network namespace; refusing to touch any rule"
    );
    assert!(
        Some(std::fs::read_link("/proc/self/ns/mnt").unwrap().as_os_str())
            != std::env::var_os(HOST_MNTNS).as_deref(),
        "storm: no private mount namespace; refusing to mount /run"
    );
    sh("mount --make-rprivate / && mount -t tmpfs xtlock-storm /run");
    std::fs::create_dir_all(WORK).unwrap();
    let program = format!("iptables-{backend}");

    let cpu_before = children_cpu();
    let wall = if row == Row::Restore {
        restore(&program, jails, bans, failures)
    } else {
        let prefix: Vec<String> = match row {
            Row::Bare | Row::XtlockOff | Row::XtlockOn => vec![program.clone(), "-w".into()],
            Row::Flock => vec![
                "flock".into(),
                format!("{WORK}/flock.lock"),
                program.clone(),
                "-w".into(),
            ],
            Row::True => vec!["/bin/true".into(), "-w".into()],
            Row::Restore => unreachable!(),
        };
        let prefix = match row {
            Row::XtlockOff | Row::XtlockOn => [vec![xtlock.to_string()], prefix].concat(),
            _ => prefix,
        };
        let mut drivers = Vec::new();
        for j in 0..jails {
            let mut cmd = Command::new(std::env::current_exe().unwrap());
            cmd.args(["--jail", &j.to_string(), "--bans", &bans.to_string()])
                .args(["--failures", if failures { "1" } else { "0" }])
                .args(["--record", &format!("{WORK}/records.{j}"), "--"])
                .args(&prefix)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped());
            // Bare shares iptables' own lock (/run/xtables.lock, private here); every other
            // writer has its own, so only the wrapper's lock serialises them: the situation
            // xtlock exists for.
            match row {
                Row::Bare => cmd.env_remove("XTABLES_LOCKFILE"),
                _ => cmd.env("XTABLES_LOCKFILE", format!("{WORK}/xtables.{j}.lock")),
            };
            if let Row::XtlockOff | Row::XtlockOn = row {
                cmd.env(
                    "XTLOCK_BATCH",
                    if row == Row::XtlockOn { "on" } else { "off" },
                )
                .env("XTLOCK_LOCK_FILE", format!("{WORK}/xtlock.lock"))
                .env("XTLOCK_SYSLOG_SOCKET", "")
                .env("XTLOCK_JOURNAL_SOCKET", "")
                .env("XTLOCK_CONFIG", format!("{WORK}/no-xtlock.conf"));
            }
            drivers.push(cmd.spawn().expect("spawn a jail"));
        }
        // Each jail says it is ready, then waits for its stdin to close: all start at once.
        for driver in &mut drivers {
            let mut byte = [0u8];
            driver.stdout.take().unwrap().read_exact(&mut byte).unwrap();
        }
        let start = Instant::now();
        for driver in &mut drivers {
            drop(driver.stdin.take());
        }
        for driver in &mut drivers {
            assert!(driver.wait().unwrap().success(), "a jail's driver failed");
        }
        let wall = start.elapsed();
        if row.runs_iptables_per_command() {
            let mut all = String::new();
            for j in 0..jails {
                all += &std::fs::read_to_string(format!("{WORK}/records.{j}")).unwrap();
            }
            std::fs::write(out.join("records"), all).unwrap();
        }
        wall
    };
    let cpu = children_cpu() - cpu_before;
    let save = sh(&format!("iptables-{backend}-save"));
    let want = (row != Row::True).then(|| expected_bans(bans, failures));
    let mut result = format!("{}\n{}\n", wall.as_nanos(), cpu.as_nanos());
    for problem in ruleset_problems(&save, jails, want) {
        result += &problem;
        result.push('\n');
    }
    std::fs::write(out.join("result"), result).unwrap();
}

/// The floor: every jail's commands, in order, as one `--noflush` restore.
fn restore(program: &str, jails: usize, bans: usize, failures: bool) -> Duration {
    assert!(
        !failures,
        "a restore is all or nothing: no floor with failures"
    );
    let mut text = String::from("*filter\n");
    for j in 0..jails {
        for step in jail_steps(j, bans, false) {
            text += &step.args.join(" ");
            text.push('\n');
        }
    }
    text += "COMMIT\n";
    let input = format!("{WORK}/rules");
    std::fs::write(&input, text).unwrap();
    let start = Instant::now();
    let status = Command::new(format!("{program}-restore"))
        .arg("--noflush")
        .stdin(std::fs::File::open(&input).unwrap())
        .status()
        .unwrap();
    let wall = start.elapsed();
    assert!(status.success(), "{program}-restore failed");
    wall
}

/// One jail (a driver, the same for every row): say ready, wait for the start, then run
/// each command as `PREFIX ARGS` and wait for it, in order; record its status and stderr.
fn jail(args: &[String]) {
    let get = |key: &str| -> &str {
        let at = args.iter().position(|a| a == key).unwrap();
        &args[at + 1]
    };
    let j: usize = get("--jail").parse().unwrap();
    let bans: usize = get("--bans").parse().unwrap();
    let failures = get("--failures") == "1";
    let record = get("--record");
    let prefix = &args[args.iter().position(|a| a == "--").unwrap() + 1..];
    let steps = jail_steps(j, bans, failures);
    std::io::stdout().write_all(b"r").unwrap();
    std::io::stdout().flush().unwrap();
    let mut rest = Vec::new();
    std::io::stdin().read_to_end(&mut rest).unwrap();
    let mut lines = String::new();
    for (i, step) in steps.iter().enumerate() {
        let out = Command::new(&prefix[0])
            .args(&prefix[1..])
            .args(&step.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("spawn a command");
        let status = match out.status.code() {
            Some(code) => code.to_string(),
            None => format!("{:?}", out.status),
        };
        lines += &format!(
            "{j} {i} {status} {:?}\n",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::write(record, lines).unwrap();
}

/// User + system time of this process's children that were waited for (and theirs).
fn children_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given, zeroed and of the right type.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) },
        0
    );
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The 1, 5 and 15 minute load averages: other work on the machine sways wall times.
fn loadavg() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap();
    text.split(' ').take(3).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_one_in_ten_and_one_in_twenty_five_and_never_the_same_command() {
        // (bans, failures, rules left per chain, failing commands)
        for (bans, failures, left, failing) in [
            (20, false, 20, 0),
            (50, true, 43, 7),
            (300, true, 258, 42),
            (150, true, 129, 21),
        ] {
            let steps = jail_steps(3, bans, failures);
            assert_eq!(steps.len(), bans + 2);
            assert_eq!(expected_bans(bans, failures), left, "{bans} {failures}");
            assert_eq!(steps.iter().filter(|s| !s.ok).count(), failing);
        }
    }

    #[test]
    fn every_ban_of_every_jail_has_its_own_address() {
        let mut seen = std::collections::HashSet::new();
        for j in 0..20 {
            for step in jail_steps(j, 300, false).iter().skip(2) {
                assert!(seen.insert(step.args[4].clone()), "{:?}", step.args);
            }
        }
        assert_eq!(seen.len(), 6000);
    }

    const GOOD: &str = "# Generated by iptables-save v1.8.9\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:f2b-j0 - [0:0]\n:f2b-j1 - [0:0]\n-A INPUT -j f2b-j0\n-A INPUT -j f2b-j1\n-A f2b-j0 -s 10.0.0.2/32 -j REJECT --reject-with icmp-port-unreachable\n-A f2b-j0 -s 10.0.0.1/32 -j REJECT --reject-with icmp-port-unreachable\n-A f2b-j1 -s 10.1.0.2/32 -j REJECT --reject-with icmp-port-unreachable\n-A f2b-j1 -s 10.1.0.1/32 -j REJECT --reject-with icmp-port-unreachable\nCOMMIT\n";

    #[test]
    fn ruleset_problems_names_each_difference() {
        let no_ban = GOOD.replace(
            "-A f2b-j1 -s 10.1.0.2/32 -j REJECT --reject-with icmp-port-unreachable\n",
            "",
        );
        let two_jumps = GOOD.replace("-A INPUT -j f2b-j1\n", "-A INPUT -j f2b-j0\n");
        let no_chain = GOOD
            .replace(":f2b-j1 - [0:0]\n", "")
            .replace("-A f2b-j1", "-A f2b-jx");
        let nat = format!("*nat\n:f2b-j9 - [0:0]\n-A f2b-j9 -j RETURN\nCOMMIT\n{GOOD}");
        let cases: [(&str, usize, Option<usize>, &[&str]); 8] = [
            (GOOD, 2, Some(2), &[]),
            (&nat, 2, Some(2), &[]),
            ("", 2, None, &[]),
            (
                "",
                1,
                Some(0),
                &[
                    "chain f2b-j0 missing",
                    "INPUT jumps to f2b-j0: 0, expected 1",
                    "INPUT: 0 rules, expected 1",
                ],
            ),
            (
                GOOD,
                2,
                None,
                &[
                    "INPUT: 2 rules, expected 0",
                    "unexpected chain f2b-j0",
                    "unexpected chain f2b-j1",
                ],
            ),
            (&no_ban, 2, Some(2), &["f2b-j1: 1 rules, expected 2"]),
            (
                &two_jumps,
                2,
                Some(2),
                &[
                    "INPUT jumps to f2b-j1: 0, expected 1",
                    "INPUT jumps to f2b-j0: 2, expected 1",
                ],
            ),
            (
                &no_chain,
                2,
                Some(2),
                &["chain f2b-j1 missing", "unexpected chain f2b-jx"],
            ),
        ];
        for (save, jails, bans, want) in cases {
            let mut got = ruleset_problems(save, jails, bans);
            let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{save}");
        }
    }
}
