//! `doctor`'s look for mixed backends: rules in both the legacy and the nf_tables
//! iptables tables of this network namespace, where callers that use one backend do
//! not see the other's chains ("Chain already exists", netavark#274, kube-router#1777).
//!
//! It reads without creating a table or loading a module:
//! - legacy: /proc/net/ip_tables_names and ip6_tables_names list the tables that exist
//!   in this namespace (reading a procfs file loads nothing; the files exist only when
//!   ip_tables/ip6_tables is loaded or built in). Only when a table is listed is
//!   `iptables-legacy-save` run, with no `-t`: iptables 1.8.9's iptables-save.c then
//!   walks that same list (`for_each_table`) and asks for no other table, so neither the
//!   kernel's table autoload (`iptable_filter` etc., which a `-t filter` would trigger)
//!   nor a modprobe happens.
//! - nf_tables: any nft table needs the nf_tables module, so when it is not loaded
//!   there is none, and nothing is asked (asking would open a NETLINK_NETFILTER socket,
//!   and the kernel would load nfnetlink and nf_tables on demand). It is loaded when
//!   /proc/modules lists it, /sys/module/nf_tables exists, modules.builtin names it, or
//!   the kernel has no module support (no /proc/modules): then `iptables-nft-save` reads
//!   the tables over netlink, which creates none (it only lists; tests/cli/doctor.rs
//!   checks /proc/net/ip_tables_names and `nft list ruleset` after it in a fresh netns).

use super::doctor::Report;
use std::path::Path;
use std::process::{Command, Stdio};

/// May doctor ask nf_tables for its tables?
#[derive(Debug, PartialEq, Eq)]
pub enum NftProbe {
    /// Yes: asking loads nothing, for this reason.
    Ask(&'static str),
    /// No: nf_tables is not loaded, so no nft table exists.
    NotLoaded,
}

/// `proc_modules`: /proc/modules (None: absent); `sys_module`: /sys/module/nf_tables
/// exists; `builtin`: /lib/modules/RELEASE/modules.builtin, if readable.
pub fn nft_probe(proc_modules: Option<&str>, sys_module: bool, builtin: Option<&str>) -> NftProbe {
    let Some(modules) = proc_modules else {
        return NftProbe::Ask("this kernel loads no modules (no /proc/modules)");
    };
    if modules
        .lines()
        .any(|l| l.split(' ').next() == Some("nf_tables"))
    {
        return NftProbe::Ask("nf_tables is loaded");
    }
    if sys_module {
        return NftProbe::Ask("nf_tables is loaded (/sys/module/nf_tables)");
    }
    if builtin.is_some_and(|b| b.lines().any(|l| l.ends_with("/nf_tables.ko"))) {
        return NftProbe::Ask("nf_tables is built in");
    }
    NftProbe::NotLoaded
}

/// The tables of an `*-save` output that hold anything beyond the built-in chains with
/// ACCEPT policies: a rule, a chain of one's own, or another policy.
pub fn tables_with_rules(save: &str) -> Vec<String> {
    let mut tables: Vec<String> = Vec::new();
    let mut current: Option<&str> = None;
    for line in save.lines() {
        if let Some(name) = line.strip_prefix('*') {
            current = Some(name.trim());
            continue;
        }
        let Some(table) = current else { continue };
        let holds = line.starts_with("-A ")
            || line.strip_prefix(':').is_some_and(|chain| {
                chain
                    .split_whitespace()
                    .nth(1)
                    .is_some_and(|policy| policy != "ACCEPT")
            });
        if holds && !tables.iter().any(|t| t == table) {
            tables.push(table.to_string());
        }
    }
    tables
}

/// One family's tables: those that exist, and those of them that hold rules.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Seen {
    pub with_rules: Vec<String>,
    /// Tables that exist but hold nothing (legacy tables spring up on any read).
    pub empty: Vec<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok(String),
    Note(String),
    Problem(String, String),
}

/// The lines doctor prints. `nft`: None when it was not asked (`why` says why).
pub fn verdict(legacy: &Seen, nft: Option<&Seen>, why: &str) -> Vec<Verdict> {
    let list = |v: &[String]| v.join(", ");
    let nft_rules = nft.map_or(&[][..], |n| &n.with_rules[..]);
    let mut lines = Vec::new();
    match (legacy.with_rules.is_empty(), nft_rules.is_empty()) {
        (false, false) => lines.push(Verdict::Problem(
            format!(
                "backends: legacy and nft tables both present: legacy {}; nf_tables {}: a caller of one backend does not see the other's rules and chains",
                list(&legacy.with_rules),
                list(nft_rules)
            ),
            "use one backend: `update-alternatives --set iptables /usr/sbin/iptables-nft` (and ip6tables; or -legacy), move the other's rules over (`iptables-legacy-save | iptables-nft-restore`) and flush its tables".into(),
        )),
        (false, true) => lines.push(Verdict::Ok(format!(
            "backends: legacy only ({})",
            list(&legacy.with_rules)
        ))),
        (true, false) => lines.push(Verdict::Ok(format!("backends: nf_tables only ({})", list(nft_rules)))),
        (true, true) => lines.push(Verdict::Ok("backends: no iptables rules in this network namespace".into())),
    }
    if !legacy.empty.is_empty() && !nft_rules.is_empty() {
        lines.push(Verdict::Note(format!(
            "backends: empty legacy tables exist ({}): iptables-nft warns of them; a read with iptables-legacy made them",
            list(&legacy.empty)
        )));
    }
    if nft.is_none() {
        lines.push(Verdict::Note(format!(
            "backends: nf_tables not asked: {why}"
        )));
    }
    lines
}

/// Run a save program (the real one, never xtlock), or None if it is not there or fails.
fn save_output(name: &str, me: &crate::resolve::SelfIdentity) -> Option<String> {
    let path_var = std::env::var("PATH").unwrap_or_default();
    let program =
        crate::resolve::find_in_path(name.as_ref(), Some(path_var.as_ref()), |p| me.probe(p))
            .ok()?;
    let out = Command::new(program)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn prefixed(family: &str, tables: Vec<String>) -> Vec<String> {
    tables
        .into_iter()
        .map(|t| format!("{family} {t}"))
        .collect()
}

pub(super) fn check(me: &crate::resolve::SelfIdentity, report: &mut Report) {
    let mut legacy = Seen::default();
    let mut unread = Vec::new();
    for (family, names, save) in [
        ("ip", "/proc/net/ip_tables_names", "iptables-legacy-save"),
        ("ip6", "/proc/net/ip6_tables_names", "ip6tables-legacy-save"),
    ] {
        let listed: Vec<String> = std::fs::read_to_string(names)
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if listed.is_empty() {
            continue;
        }
        match save_output(save, me) {
            Some(text) => {
                let full = tables_with_rules(&text);
                let empty = listed
                    .iter()
                    .filter(|t| !full.contains(t))
                    .cloned()
                    .collect();
                legacy.with_rules.extend(prefixed(family, full));
                legacy.empty.extend(prefixed(family, empty));
            }
            // Cannot tell what they hold: count them as holding rules, and say so.
            None => {
                unread.push(save);
                legacy.with_rules.extend(prefixed(family, listed));
            }
        }
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let probe = nft_probe(
        std::fs::read_to_string("/proc/modules").ok().as_deref(),
        Path::new("/sys/module/nf_tables").exists(),
        std::fs::read_to_string(format!("/lib/modules/{}/modules.builtin", release.trim()))
            .ok()
            .as_deref(),
    );
    let (nft, why) = match probe {
        NftProbe::NotLoaded => (
            Some(Seen::default()),
            "nf_tables is not loaded, so no nft table exists",
        ),
        NftProbe::Ask(why) => {
            let mut seen = Seen::default();
            let mut asked = true;
            for (family, save) in [("ip", "iptables-nft-save"), ("ip6", "ip6tables-nft-save")] {
                match save_output(save, me) {
                    Some(text) => seen
                        .with_rules
                        .extend(prefixed(family, tables_with_rules(&text))),
                    None => asked = false,
                }
            }
            match asked {
                true => (Some(seen), why),
                false => (
                    None,
                    "iptables-nft-save or ip6tables-nft-save is missing or failed",
                ),
            }
        }
    };
    for line in verdict(&legacy, nft.as_ref(), why) {
        match line {
            Verdict::Ok(t) => report.ok(t),
            Verdict::Note(t) => report.note(t),
            Verdict::Problem(t, fix) => report.problem(t, fix),
        }
    }
    for save in unread {
        report.note(format!(
            "backends: {save} missing or failed: legacy tables counted as holding rules"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes() {
        use NftProbe::*;
        let loaded = "nf_conntrack 1 0 - Live 0x0\nnf_tables 331776 0 - Live 0x0\n";
        let other = "nf_tables_set 1 0 - Live 0x0\nx_tables 1 0 - Live 0x0\n";
        let builtin = "kernel/net/netfilter/nfnetlink.ko\nkernel/net/netfilter/nf_tables.ko\n";
        for (modules, sys, builtin, want) in [
            (
                None,
                false,
                None,
                Ask("this kernel loads no modules (no /proc/modules)"),
            ),
            (Some(loaded), false, None, Ask("nf_tables is loaded")),
            (Some(other), false, None, NotLoaded),
            (
                Some(""),
                true,
                None,
                Ask("nf_tables is loaded (/sys/module/nf_tables)"),
            ),
            (Some(""), false, Some(builtin), Ask("nf_tables is built in")),
            (
                Some(""),
                false,
                Some("kernel/net/netfilter/nfnetlink.ko\n"),
                NotLoaded,
            ),
            (Some(""), false, None, NotLoaded),
        ] {
            assert_eq!(
                nft_probe(modules, sys, builtin),
                want,
                "{modules:?} {sys} {builtin:?}"
            );
        }
    }

    #[test]
    fn rules_in_save_output() {
        let save = "\
# Warning: iptables-legacy tables present, use iptables-legacy-save to see them
# Generated by iptables-nft-save v1.8.9 (nf_tables) on Thu Dec  3 16:39:52 2026
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:DOCKER - [0:0]
COMMIT
*mangle
:PREROUTING DROP [0:0]
COMMIT
";
        assert_eq!(tables_with_rules(save), ["filter", "nat", "mangle"]);
        assert!(tables_with_rules("").is_empty());
        assert!(tables_with_rules("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n").is_empty());
    }

    #[test]
    fn verdicts() {
        let s = |r: &[&str], e: &[&str]| Seen {
            with_rules: r.iter().map(|x| x.to_string()).collect(),
            empty: e.iter().map(|x| x.to_string()).collect(),
        };
        let both = verdict(
            &s(&["ip filter"], &[]),
            Some(&s(&["ip filter", "ip6 nat"], &[])),
            "",
        );
        assert!(
            matches!(&both[..], [Verdict::Problem(t, f)]
            if t == "backends: legacy and nft tables both present: legacy ip filter; nf_tables ip filter, ip6 nat: a caller of one backend does not see the other's rules and chains"
                && f.starts_with("use one backend: `update-alternatives")),
            "{both:?}"
        );
        assert_eq!(
            verdict(&s(&[], &[]), Some(&s(&[], &[])), ""),
            [Verdict::Ok(
                "backends: no iptables rules in this network namespace".into()
            )]
        );
        assert_eq!(
            verdict(&s(&["ip filter"], &[]), Some(&s(&[], &[])), ""),
            [Verdict::Ok("backends: legacy only (ip filter)".into())]
        );
        // Empty legacy tables beside nft rules: worth a note, not a problem.
        let v = verdict(&s(&[], &["ip filter"]), Some(&s(&["ip nat"], &[])), "");
        assert!(
            matches!(&v[..], [Verdict::Ok(_), Verdict::Note(n)] if n.contains("empty legacy tables exist (ip filter)")),
            "{v:?}"
        );
        let v = verdict(&s(&["ip filter"], &[]), None, "no iptables-nft-save");
        assert!(
            matches!(&v[..], [Verdict::Ok(_), Verdict::Note(n)] if n == "backends: nf_tables not asked: no iptables-nft-save"),
            "{v:?}"
        );
    }
}
