//! The admin commands against temp directories: install/uninstall round trip, the
//! fail2ban file, doctor on a healthy install and on each injected problem, and stats.

use crate::common::*;
use std::path::Path;
use std::process::Stdio;

fn with_shim_first(sb: &Sandbox, cmd: &mut std::process::Command) {
    cmd.env(
        "PATH",
        format!(
            "{}:/usr/sbin:/usr/bin:/sbin:/bin",
            sb.path("shim").display()
        ),
    );
}

#[test]
fn install_uninstall_round_trip_leaves_the_directory_as_it_was() {
    let sb = Sandbox::new();
    let dir = sb.path("shim");
    std::fs::write(dir.join("iptables-save"), "#!/bin/sh\n# not ours\n").unwrap();
    std::fs::write(dir.join("unrelated"), "x").unwrap();
    let before = listing(&dir);
    let mut cmd = sb.xtlock();
    with_shim_first(&sb, &mut cmd);
    let out = run(cmd.args(["install", "--dir"]).arg(&dir));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(code(&out), 1, "a skipped file is reported: {stdout}");
    assert!(
        stdout.contains(&format!("linked {}/iptables -> ", dir.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "skipped {}/iptables-save: exists and is not an xtlock link",
            dir.display()
        )),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("iptables-save")).unwrap(),
        "#!/bin/sh\n# not ours\n"
    );
    assert!(std::fs::read_link(dir.join("iptables")).is_ok());
    // Idempotent.
    let again = run(sb.xtlock().args(["install", "--dir"]).arg(&dir));
    assert!(String::from_utf8_lossy(&again.stdout).contains("already linked"));
    let out = run(sb.xtlock().args(["uninstall", "--dir"]).arg(&dir));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(listing(&dir), before);
}

#[test]
fn install_warns_when_the_shim_dir_comes_too_late() {
    let sb = Sandbox::new();
    let dir = sb.path("shim");
    let mut cmd = sb.xtlock();
    cmd.env(
        "PATH",
        format!("/usr/sbin:/usr/bin:/sbin:/bin:{}", dir.display()),
    );
    let out = run(cmd.args(["install", "--dry-run", "--dir"]).arg(&dir));
    let err = stderr(&out);
    let want = format!(
        "xtlock: warning: {} comes after /usr/sbin/iptables, ",
        dir.display()
    );
    assert!(
        err.contains(&want) && err.contains("so those calls bypass xtlock (the current PATH)"),
        "{err}"
    );
    assert!(listing(&dir).is_empty(), "dry run changed nothing");
}

#[test]
fn fail2ban_file_is_written_refused_and_removed() {
    let sb = Sandbox::new();
    let f2b = sb.path("action.d");
    std::fs::create_dir(&f2b).unwrap();
    let install = |extra: &[&str]| {
        run(sb
            .xtlock()
            .args(["install", "--fail2ban", "--fail2ban-dir"])
            .arg(&f2b)
            .arg("--dir")
            .arg(sb.path("shim"))
            .args(extra))
    };
    let out = install(&[]);
    let local = std::fs::read_to_string(f2b.join("iptables.local")).unwrap();
    assert!(
        local.contains("[Init]\niptables = ") && local.contains(" iptables <lockingopt>"),
        "{local}"
    );
    assert!(
        local.contains("[Init?family=inet6]\niptables = ")
            && local.contains(" ip6tables <lockingopt>"),
        "{local}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("wrote"));
    // Ours: rewriting is fine. Not ours: refused, untouched.
    std::fs::write(
        f2b.join("iptables.local"),
        "[Init]\niptables = iptables -w\n",
    )
    .unwrap();
    let out = install(&[]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("not overwriting"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(f2b.join("iptables.local")).unwrap(),
        "[Init]\niptables = iptables -w\n"
    );
    let out = run(sb
        .xtlock()
        .args(["uninstall", "--fail2ban", "--fail2ban-dir"])
        .arg(&f2b)
        .arg("--dir")
        .arg(sb.path("shim")));
    assert!(String::from_utf8_lossy(&out.stdout).contains("not ours"));
    assert!(f2b.join("iptables.local").exists());
}

fn doctor(sb: &Sandbox, path: &str) -> (i32, String) {
    let out = run(sb
        .xtlock()
        .args(["doctor", "--fail2ban-dir"])
        .arg(sb.path("action.d"))
        .env("PATH", path));
    (
        code(&out),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn healthy_install() -> (Sandbox, String) {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.path("action.d")).unwrap();
    let out = run(sb
        .xtlock()
        .args(["install", "--fail2ban", "--fail2ban-dir"])
        .arg(sb.path("action.d"))
        .arg("--dir")
        .arg(sb.path("shim")));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let path = format!(
        "{}:/usr/sbin:/usr/bin:/sbin:/bin",
        sb.path("shim").display()
    );
    (sb, path)
}

#[test]
fn doctor_reports_a_healthy_install() {
    if !require("iptables", Path::new("/usr/sbin/iptables").exists()) {
        return;
    }
    let (sb, path) = healthy_install();
    let (status, report) = doctor(&sb, &path);
    assert_eq!(status, 0, "{report}");
    assert!(!report.contains("problem:"), "{report}");
    assert!(
        report.contains(&format!(
            "ok: iptables: shim {}/iptables first in PATH, real /usr/sbin/iptables",
            sb.path("shim").display()
        )),
        "{report}"
    );
    assert!(report.contains("ok: fail2ban:"), "{report}");
}

#[test]
fn doctor_names_each_injected_problem() {
    if !require("iptables", Path::new("/usr/sbin/iptables").exists()) {
        return;
    }
    let (sb, path) = healthy_install();
    // 1. The shim directory after the real binaries.
    let late = format!(
        "/usr/sbin:/usr/bin:/sbin:/bin:{}",
        sb.path("shim").display()
    );
    let (status, report) = doctor(&sb, &late);
    assert_eq!(status, 1);
    // One line for all of them, naming each, with the fix.
    let bypass: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("reach the real program first in PATH, not xtlock"))
        .collect();
    assert_eq!(bypass.len(), 1, "{report}");
    assert!(
        bypass[0].contains(": iptables, ip6tables")
            && bypass[0].contains("; fix: `xtlock install`"),
        "{report}"
    );
    // 2. The lock held by a sleeping process.
    let mut holder = std::process::Command::new("flock")
        .arg(sb.lock_file())
        .args(["sleep", "30"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (status, report) = doctor(&sb, &path);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(status, 1);
    let want = format!(
        "problem: lock {}: held by pid {} (flock {} sleep 30), running for ",
        sb.lock_file().display(),
        holder.id(),
        sb.lock_file().display()
    );
    assert!(report.contains(&want), "{report}");
    assert!(
        report.contains(&format!(
            "fix: if it is stuck, end it: kill {}",
            holder.id()
        )),
        "{report}"
    );
    // 3. A bad config file.
    std::fs::write(sb.path("xtlock.conf"), "timeout = \"soon\"\n").unwrap();
    let (status, report) = doctor(&sb, &path);
    assert_eq!(status, 1);
    assert!(
        report.contains("problem: config: ignoring config file ")
            && report.contains("xtlock.conf:1: invalid type for `timeout`"),
        "{report}"
    );
    // 4. fail2ban not routed.
    std::fs::remove_file(sb.path("action.d/iptables.local")).unwrap();
    std::fs::write(sb.path("xtlock.conf"), "").unwrap();
    let (status, report) = doctor(&sb, "/usr/sbin:/usr/bin:/sbin:/bin");
    assert_eq!(status, 1);
    assert!(
        report.contains("problem: fail2ban: its iptables actions do not go through xtlock"),
        "{report}"
    );
}

#[test]
fn stats_summarise_the_log_file() {
    let sb = Sandbox::with_fake(&["iptables"]);
    for _ in 0..3 {
        run(sb.shim("iptables").env("XTLOCK_VERBOSE", "1"));
    }
    std::fs::remove_file(sb.path("state/counter")).unwrap();
    run(sb
        .shim("iptables")
        .env("XTLOCK_VERBOSE", "1")
        .env("FAKE_FAIL_TIMES", "1")
        .env("FAKE_FAIL_STDERR", EAGAIN));
    run(sb
        .shim("iptables")
        .env("XTLOCK_VERBOSE", "1")
        .env("FAKE_EXIT", "1"));
    let out = run(sb.xtlock().args(["stats", "--since", "1h"]));
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(report.contains("\ncalls                5 "), "{report}");
    assert!(report.contains("\nrefusals             1 "), "{report}");
    assert!(report.contains("\nretries              1 "), "{report}");
    assert!(
        report.contains("rescued: 1 of 1 retried calls succeeded"),
        "{report}"
    );
    assert!(report.contains("lock wait over 5 calls: p50 "), "{report}");
    let json = run(sb.xtlock().args(["stats", "--json"]));
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        (
            json["by_kind"]["call"].as_u64(),
            json["rescued_calls"].as_u64()
        ),
        (Some(5), Some(1))
    );
}

#[test]
fn shipped_config_example_parses_and_states_the_defaults() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/xtlock.conf"))
            .unwrap();
    // As shipped (all commented out) it sets nothing; uncommented, it is the defaults.
    let shipped = xtlock::config::parse_layer(text.as_bytes()).unwrap();
    assert_eq!(shipped, xtlock::config::Layer::default());
    let uncommented: String = text
        .lines()
        .map(|l| {
            l.strip_prefix('#')
                .filter(|l| l.contains(" = "))
                .unwrap_or(l)
        })
        .collect::<Vec<_>>()
        .join("\n");
    let layer = xtlock::config::parse_layer(uncommented.as_bytes()).unwrap();
    let mut from_example = xtlock::config::Config::default();
    layer.apply_to(&mut from_example);
    // log_file is the one key whose default is "none": the example names a path.
    let defaults = xtlock::config::Config {
        log_file: from_example.log_file.clone(),
        ..Default::default()
    };
    assert_eq!(from_example, defaults);
}

#[test]
fn man_pages_render_every_command_and_option() {
    let dir = tempfile::tempdir().unwrap();
    clap_mangen::generate_to(xtlock::cli::command(), dir.path()).unwrap();
    let page = |name: &str| {
        std::fs::read_to_string(dir.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let main = page("xtlock.1");
    for want in [
        "lock\\-file",
        "timeout",
        "journal\\-socket",
        "install",
        "doctor",
        "stats",
    ] {
        assert!(main.contains(want), "xtlock.1 lacks {want}:\n{main}");
    }
    // Every page the main page refers to is generated, with its own options.
    for (name, options) in [
        (
            "xtlock-install.1",
            &["\\-\\-divert", "\\-\\-fail2ban", "\\-\\-dir"][..],
        ),
        (
            "xtlock-uninstall.1",
            &["\\-\\-divert", "\\-\\-fail2ban"][..],
        ),
        ("xtlock-doctor.1", &["\\-\\-root"][..]),
        ("xtlock-stats.1", &["\\-\\-since", "\\-\\-json"][..]),
    ] {
        let reference = format!("{}(1)", name.trim_end_matches(".1").replace('-', "\\-"));
        assert!(
            main.contains(&reference),
            "xtlock.1 does not name {reference}"
        );
        let text = page(name);
        for option in options {
            assert!(text.contains(option), "{name} lacks {option}:\n{text}");
        }
    }
}

/// doctor learns a backend from names, never by running a restore program: arptables
/// 0.0.5's arptables-legacy-restore (a perl script) flushes every chain before it reads
/// a line, whatever its arguments, so `arptables-restore --version` would empty the
/// host's arptables. Here a restore whose name says nothing must not run at all.
#[test]
fn doctor_never_runs_a_restore_program() {
    let sb = Sandbox::with_fake(&["arptables-restore", "ipset"]);
    let path = format!(
        "{}:{}",
        sb.path("shim").display(),
        sb.path("real").display()
    );
    let (_, report) = doctor(&sb, &path);
    let ran: Vec<String> = sb
        .calls()
        .iter()
        .map(|argv| String::from_utf8_lossy(&argv[0]).into_owned())
        .collect();
    assert_eq!(ran, ["ipset"], "only ipset was asked its version: {report}");
    assert!(
        report.contains("ok: arptables-restore: shim ")
            && report.contains("(backend not asked: doctor runs no restore program)"),
        "{report}"
    );
}

#[test]
fn doctor_escapes_a_lock_holders_command_line() {
    use std::os::unix::process::CommandExt;
    let sb = Sandbox::with_fake(&["iptables"]);
    let mut holder = crate::lock::hold_lock_with_a_hostile_command_line(&sb);
    let out = run(sb
        .xtlock()
        .arg0("xtlock")
        .args(["doctor", "--fail2ban-dir"])
        .arg(sb.path("action.d")));
    holder.kill().unwrap();
    holder.wait().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let held: Vec<&str> = report.lines().filter(|l| l.contains("held")).collect();
    assert_eq!(held.len(), 1, "{report}");
    assert!(held[0].contains("evil\\n\\x1b[2Jholder"), "{report}");
    assert!(!report.contains('\x1b'), "{report}");
}

/// Issue 18: `stats --prometheus` is node_exporter's textfile format, as Prometheus'
/// own Python parser reads it, with the counts and buckets of the log it read.
#[test]
fn stats_for_prometheus_parse_and_count() {
    let parser = "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as f\n\
                  for fam in f(sys.stdin.read()):\n    for s in fam.samples:\n        print(s.name, sorted(s.labels.items()), s.value)\n";
    let have_parser = std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import prometheus_client.parser"])
        .status()
        .is_ok_and(|s| s.success());
    if !require("python3-prometheus-client", have_parser) {
        return;
    }
    let sb = Sandbox::new();
    let log = sb.path("x.log");
    std::fs::write(
        &log,
        "2026-11-26T05:34:47.336Z xtlock[5481]: warning: event=retry prog=iptables args=\"-I INPUT\" wait_ms=3 run_ms=2 caller=x\n\
         2026-11-26T05:34:48.336Z xtlock[5481]: error: event=gave-up prog=iptables args=\"-I INPUT\" wait_ms=40 run_ms=3 caller=x\n\
         2026-11-26T05:34:49.500Z xtlock[5482]: info: event=failed prog=iptables args=\"-I INPUT\" wait_ms=1500 run_ms=7 caller=y\n",
    )
    .unwrap();
    let out = run(sb
        .xtlock()
        .args(["stats", "--prometheus", "--log-file"])
        .arg(&log));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let parsed = with_input(
        std::process::Command::new("/usr/bin/python3").args(["-c", parser]),
        &out.stdout,
    );
    let samples = String::from_utf8_lossy(&parsed.stdout).into_owned();
    assert!(parsed.status.success(), "{}", stderr(&parsed));
    for want in [
        "xtlock_events_total [('event', 'retry'), ('severity', 'warning')] 1.0",
        "xtlock_events_total [('event', 'gave-up'), ('severity', 'error')] 1.0",
        "xtlock_events_total [('event', 'lock-failed'), ('severity', 'error')] 0.0",
        "xtlock_retried_calls_total [] 1.0",
        "xtlock_lock_wait_seconds_bucket [('le', '0.05')] 1.0",
        "xtlock_lock_wait_seconds_bucket [('le', '5')] 2.0",
        "xtlock_lock_wait_seconds_count [] 2.0",
        "xtlock_lock_hold_seconds_sum [] 0.012",
        "xtlock_last_error_timestamp_seconds [] 1795671288.336",
    ] {
        assert!(
            samples.lines().any(|l| l == want),
            "{want} not in:\n{samples}"
        );
    }
}
