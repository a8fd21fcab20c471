//! `install --divert` against a temp root (dpkg-divert --root), laid out as Debian 12
//! lays out iptables: /usr/sbin/iptables -> /etc/alternatives/iptables ->
//! /usr/sbin/iptables-legacy (a package file, itself a link to the multi-call binary).

use crate::common::*;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

fn have_dpkg_divert() -> bool {
    require("dpkg-divert", have("dpkg-divert"))
}

struct Root {
    sb: Sandbox,
    root: PathBuf,
}

impl Root {
    fn new() -> Root {
        let sb = Sandbox::new();
        let root = sb.path("root");
        for dir in ["usr/sbin", "etc/alternatives", "var/lib/dpkg"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        let sbin = root.join("usr/sbin");
        std::fs::copy(fake_bin(), sbin.join("xtables-legacy-multi")).unwrap();
        for name in ["iptables-legacy", "iptables-nft", "iptables-legacy-save"] {
            symlink("xtables-legacy-multi", sbin.join(name)).unwrap();
        }
        symlink(
            sbin.join("iptables-legacy"),
            root.join("etc/alternatives/iptables"),
        )
        .unwrap();
        symlink(
            root.join("etc/alternatives/iptables"),
            sbin.join("iptables"),
        )
        .unwrap();
        Root { sb, root }
    }

    fn sbin(&self, name: &str) -> PathBuf {
        self.root.join("usr/sbin").join(name)
    }

    fn xtlock(&self, args: &[&str]) -> std::process::Output {
        run(self.sb.xtlock().args(args).arg("--root").arg(&self.root))
    }

    /// Run ROOT/usr/sbin/iptables by its absolute path, as ufw does; true if it went
    /// through xtlock (a verbose `call` event was logged) and reached the fake.
    fn call_absolute(&self) -> bool {
        self.call_sbin("iptables")
    }

    /// Run ROOT/usr/sbin/NAME by its absolute path; true if it went through xtlock.
    fn call_sbin(&self, name: &str) -> bool {
        let before = (events(&self.sb.log(), "call").len(), self.sb.calls().len());
        let out = run(self
            .sb
            .command(self.sbin(name))
            .arg("-L")
            .env("XTLOCK_VERBOSE", "1"));
        assert_eq!(code(&out), 0, "{name}: {}", stderr(&out));
        let after = (events(&self.sb.log(), "call").len(), self.sb.calls().len());
        assert_eq!(after.1, before.1 + 1, "{name}: the real program ran once");
        assert_eq!(
            self.sb.calls().last().unwrap()[0],
            self.sbin(name).as_os_str().as_encoded_bytes(),
            "{name}: same argv[0]"
        );
        after.0 == before.0 + 1
    }
}

#[test]
fn divert_round_trip_survives_alternatives_and_upgrades() {
    if !have_dpkg_divert() {
        return;
    }
    let r = Root::new();
    let before = listing(&r.root.join("usr/sbin"));
    assert!(
        !r.call_absolute(),
        "bare: the absolute path bypasses xtlock"
    );

    let out = r.xtlock(&["install", "--divert"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("diverted {}", r.sbin("iptables-legacy").display())),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_link(r.sbin("iptables-legacy.xtlock-real")).unwrap(),
        Path::new("xtables-legacy-multi")
    );
    assert!(
        r.call_absolute(),
        "diverted: the absolute path goes through xtlock"
    );
    // By name through PATH too, without finding itself.
    let mut by_name = r.sb.command("iptables");
    by_name.env("PATH", r.root.join("usr/sbin")).arg("-L");
    assert_eq!(code(&run(&mut by_name)), 0);

    // `update-alternatives --set iptables /usr/sbin/iptables-nft` picks another diverted file.
    std::fs::remove_file(r.root.join("etc/alternatives/iptables")).unwrap();
    symlink(
        r.sbin("iptables-nft"),
        r.root.join("etc/alternatives/iptables"),
    )
    .unwrap();
    assert!(r.call_absolute(), "after update-alternatives --set");
    // A package upgrade writes the new binary at the diverted name.
    std::fs::remove_file(r.sbin("iptables-legacy.xtlock-real")).unwrap();
    symlink(
        "xtables-legacy-multi",
        r.sbin("iptables-legacy.xtlock-real"),
    )
    .unwrap();
    assert!(r.call_absolute(), "after an upgrade");
    // Idempotent.
    let again = r.xtlock(&["install", "--divert"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already diverted"));

    let out = r.xtlock(&["uninstall", "--divert"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    std::fs::remove_file(r.root.join("etc/alternatives/iptables")).unwrap();
    symlink(
        r.sbin("iptables-legacy"),
        r.root.join("etc/alternatives/iptables"),
    )
    .unwrap();
    assert_eq!(
        listing(&r.root.join("usr/sbin")),
        before,
        "uninstall undoes exactly"
    );
    assert_eq!(
        std::fs::read_to_string(r.root.join("var/lib/dpkg/diversions")).unwrap(),
        ""
    );
    assert!(!r.call_absolute());
}

#[test]
fn doctor_notices_an_undone_diversion() {
    if !have_dpkg_divert() {
        return;
    }
    let r = Root::new();
    assert_eq!(code(&r.xtlock(&["install", "--divert"])), 0);
    let doctor = |r: &Root| {
        let out = r.xtlock(&["doctor", "--fail2ban-dir", "/nonexistent"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let report = doctor(&r);
    assert!(
        report.contains(&format!(
            "ok: {} is diverted to xtlock",
            r.sbin("iptables-legacy").display()
        )),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "ok: {} reaches xtlock",
            r.sbin("iptables").display()
        )),
        "{report}"
    );
    // Something put the original back over xtlock's link.
    std::fs::remove_file(r.sbin("iptables-legacy")).unwrap();
    symlink("xtables-legacy-multi", r.sbin("iptables-legacy")).unwrap();
    let report = doctor(&r);
    let want = format!(
        "problem: {}: the diversion was undone, it is no longer xtlock; fix: `xtlock install --divert` (again)",
        r.sbin("iptables-legacy").display()
    );
    assert!(report.contains(&want), "{report}");
    assert!(
        report.contains(&format!(
            "problem: {} does not reach a diverted file",
            r.sbin("iptables").display()
        )),
        "{report}"
    );
}

/// Issue 10: options compose. `--divert --fail2ban` writes (and removes) the fail2ban
/// file too; `--divert --dir` makes (and removes) shims too; nothing is dropped.
#[test]
fn divert_composes_with_fail2ban_and_dir() {
    if !have_dpkg_divert() {
        return;
    }
    let root = Root::new();
    let f2b = root.sb.path("action.d");
    let shims = root.sb.path("shims");
    std::fs::create_dir_all(&f2b).unwrap();
    let (f2b_s, shims_s) = (f2b.to_str().unwrap(), shims.to_str().unwrap());
    let out = root.xtlock(&[
        "install",
        "--divert",
        "--fail2ban",
        "--fail2ban-dir",
        f2b_s,
        "--dir",
        shims_s,
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(f2b.join("iptables.local").exists(), "fail2ban file written");
    assert!(
        std::fs::symlink_metadata(shims.join("iptables")).is_ok(),
        "shims made"
    );
    assert!(
        std::fs::symlink_metadata(root.sbin("iptables-legacy.xtlock-real")).is_ok(),
        "diverted"
    );
    let out = root.xtlock(&[
        "uninstall",
        "--divert",
        "--fail2ban",
        "--fail2ban-dir",
        f2b_s,
        "--dir",
        shims_s,
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        !f2b.join("iptables.local").exists(),
        "fail2ban file removed"
    );
    assert!(
        std::fs::symlink_metadata(shims.join("iptables")).is_err(),
        "shims removed"
    );
    assert!(
        std::fs::symlink_metadata(root.sbin("iptables-legacy.xtlock-real")).is_err(),
        "undiverted"
    );
    // --divert alone leaves the default shim directory alone.
    let out = root.xtlock(&["install", "--divert", "--dry-run"]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("/usr/local/sbin"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Issue 15: `--divert` covers every tool the shims cover that is a package file in
/// /usr/sbin, not only iptables': ipset (and `ipset-translate`, a package link to it),
/// and the -legacy ebtables and arptables behind their alternatives. Doctor agrees.
#[test]
fn divert_covers_ipset_and_the_legacy_ebtables_and_arptables() {
    if !have_dpkg_divert() {
        return;
    }
    let r = Root::new();
    for name in ["ipset", "ebtables-legacy", "arptables-legacy-restore"] {
        std::fs::copy(fake_bin(), r.sbin(name)).unwrap();
    }
    symlink("ipset", r.sbin("ipset-translate")).unwrap();
    for (link, file) in [
        ("ebtables", "ebtables-legacy"),
        ("arptables-restore", "arptables-legacy-restore"),
    ] {
        symlink(r.sbin(file), r.root.join("etc/alternatives").join(link)).unwrap();
        symlink(r.root.join("etc/alternatives").join(link), r.sbin(link)).unwrap();
    }
    let before = listing(&r.root.join("usr/sbin"));
    let through = ["ipset", "ipset-translate", "ebtables", "ebtables-legacy"];
    for name in through {
        assert!(!r.call_sbin(name), "bare: {name} bypasses xtlock");
    }

    let out = r.xtlock(&["install", "--divert"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for name in through {
        assert!(r.call_sbin(name), "diverted: {name} goes through xtlock");
    }
    // Doctor, with the root's /usr/sbin as PATH: every tool there reaches xtlock.
    let report = run(r
        .sb
        .xtlock()
        .args(["doctor", "--fail2ban-dir", "/nonexistent", "--root"])
        .arg(&r.root)
        .env("PATH", r.root.join("usr/sbin")));
    let report = String::from_utf8_lossy(&report.stdout);
    for name in ["ipset", "ebtables-legacy", "arptables-legacy-restore"] {
        let want = format!("ok: {} is diverted to xtlock", r.sbin(name).display());
        assert!(report.contains(&want), "{want}\n{report}");
    }
    for name in ["ebtables", "arptables-restore"] {
        let want = format!("ok: {} reaches xtlock", r.sbin(name).display());
        assert!(report.contains(&want), "{want}\n{report}");
    }
    assert!(!report.contains("problem: "), "{report}");

    let out = r.xtlock(&["uninstall", "--divert"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        listing(&r.root.join("usr/sbin")),
        before,
        "uninstall undoes exactly"
    );
    assert_eq!(
        std::fs::read_to_string(r.root.join("var/lib/dpkg/diversions")).unwrap(),
        ""
    );
}
