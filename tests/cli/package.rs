//! Issue 10: the .deb through its whole life, in a disposable root
//! (tests/package/lifecycle.sh): install, `install --fail2ban --divert`, calls by
//! absolute path through xtlock, update-alternatives both ways, an iptables reinstall,
//! an upgrade of xtlock, then `dpkg -r`, `dpkg -P`, `apt-get remove` and a removal whose
//! prerm could not run; after each, every tool works and nothing of xtlock's is left;
//! the round trip leaves /usr/sbin and the diversions as they were. The host's own
//! /usr/sbin, alternatives and diversions are compared before and after.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The .deb: XTLOCK_DEB (.ci/run builds it), else built here with cargo-deb in a
/// target directory of its own, once for all the tests here. Every test that finds
/// none says SKIPPED (or fails under CI), not only the first to ask.
fn package() -> Option<PathBuf> {
    static DEB: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    let deb = DEB.get_or_init(build_package).clone();
    require("cargo-deb (or XTLOCK_DEB)", deb.is_some()).then(|| deb.unwrap())
}

fn build_package() -> Option<PathBuf> {
    if let Some(deb) = std::env::var_os("XTLOCK_DEB") {
        return Some(PathBuf::from(deb));
    }
    if !have("cargo-deb") {
        return None;
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("deb");
    let cargo = std::env::var_os("CARGO").unwrap_or("cargo".into());
    let ok = Command::new(&cargo)
        .args(["run", "-q", "--example", "manpage"])
        .current_dir(manifest)
        .status()
        .unwrap()
        .success();
    assert!(ok, "the man page was not built");
    let out = Command::new(&cargo)
        .args(["deb", "-q"])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(manifest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo deb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string();
    Some(PathBuf::from(path))
}

/// The iptables package, to reinstall it inside the disposable root.
fn iptables_package() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("iptables-deb");
    std::fs::create_dir_all(&dir).unwrap();
    let found = || {
        std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
    };
    if found().is_none() {
        let _ = Command::new("apt-get")
            .args(["download", "-q", "iptables"])
            .current_dir(&dir)
            .output();
    }
    let deb = found();
    require("apt-get download iptables", deb.is_some()).then(|| deb.unwrap())
}

/// What the host must still have afterwards.
fn host_state() -> String {
    let out = Command::new("sh")
        .args([
            "-c",
            "cd /usr/sbin && for f in *; do if [ -L \"$f\" ]; then echo \"$f -> $(readlink \"$f\")\"; else echo \"$f $(stat -c %s:%Y \"$f\")\"; fi; done; \
             ls -l /etc/alternatives | sed 1d; dpkg-divert --list '*' | sort; dpkg -s xtlock 2>&1 | head -2",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_package_keeps_the_firewall_working_through_its_whole_life() {
    if !require("root", is_root())
        || !require("unshare", have("unshare"))
        || !require("dpkg-divert", have("dpkg-divert"))
        || !require("iptables", have("iptables-legacy"))
    {
        return;
    }
    let (Some(deb), Some(iptables)) = (package(), iptables_package()) else {
        return;
    };
    let before = host_state();
    let out = run_in_namespaces(
        &["-m", "-n", "-p", "-f", "--mount-proc"],
        "package/lifecycle.sh",
        &[deb.as_os_str(), iptables.as_os_str()],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(
        out.status.success() && stdout.lines().any(|l| l == "step=round-trip ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "remove-clean",
        "purge-clean",
        "apt-remove-clean",
        "backstop-clean",
        "xtlock-upgrade-through",
        "divert-only-ipset-through",
    ] {
        assert!(
            stdout.contains(&format!("step={step} ok")),
            "no {step}: {stdout}"
        );
    }
    assert_eq!(host_state(), before, "the host changed");
}

/// lintian, pedantic, has nothing to say that debian/lintian-overrides does not explain.
#[test]
fn lintian_finds_nothing_unexplained() {
    if !require("lintian", have("lintian")) {
        return;
    }
    let Some(deb) = package() else { return };
    let out = Command::new("lintian")
        .args(["--pedantic", "--fail-on", "error,warning,info,pedantic"])
        .arg(&deb)
        .output()
        .unwrap();
    let said: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .filter(|l| !l.contains("running with root privileges"))
        .map(str::to_string)
        .collect();
    assert!(out.status.success() && said.is_empty(), "{said:#?}");
}

/// Admins see the version in `xtlock --version`, `doctor` and `dpkg -l`: Cargo.toml's,
/// the newest released section of CHANGELOG.md (under an `Unreleased` one) and the top
/// entry of debian/changelog (upstream part, same day) must all say the same.
#[test]
fn versions_agree_across_cargo_changelog_and_debian() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |name: &str| std::fs::read_to_string(manifest.join(name)).unwrap();
    let cargo = env!("CARGO_PKG_VERSION");

    let changelog = read("CHANGELOG.md");
    let sections: Vec<&str> = changelog
        .lines()
        .filter_map(|l| l.strip_prefix("## ["))
        .collect();
    assert!(
        sections
            .first()
            .is_some_and(|s| s.starts_with("Unreleased]")),
        "CHANGELOG.md must start with an Unreleased section: {sections:?}"
    );
    let (released, date) = sections[1]
        .split_once("] - ")
        .unwrap_or_else(|| panic!("`## [VERSION] - YYYY-MM-DD`: {}", sections[1]));

    let debian = read("debian/changelog");
    let top = debian.lines().next().unwrap();
    let debian_version = top
        .strip_prefix("xtlock (")
        .and_then(|rest| rest.split_once(')'))
        .map(|(version, _)| version)
        .unwrap_or_else(|| panic!("debian/changelog: {top}"));
    let upstream = debian_version
        .rsplit_once('-')
        .map_or(debian_version, |(u, _)| u);
    let trailer = debian.lines().find(|l| l.starts_with(" -- ")).unwrap();
    // " -- NAME <MAIL>  Thu, 03 Dec 2026 12:00:00 +0000": day, month, year.
    let day: Vec<&str> = trailer
        .split_once(", ")
        .map(|(_, d)| d.split(' ').take(3).collect())
        .unwrap_or_default();
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = months
        .iter()
        .position(|m| Some(m) == day.get(1))
        .map(|i| i + 1);
    let debian_date = format!("{}-{:02}-{}", day[2], month.unwrap_or(0), day[0]);

    assert_eq!(
        (released, upstream, date),
        (cargo, cargo, debian_date.as_str()),
        "Cargo.toml {cargo}; CHANGELOG.md {released} of {date}; debian/changelog {debian_version} of {debian_date}"
    );

    // And the binary says it: `xtlock --version`.
    let out = run(Sandbox::new().xtlock().arg("--version"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("xtlock {cargo}\n")
    );
}
