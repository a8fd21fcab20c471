//! `xtlock install --divert`: put xtlock at the absolute paths that callers such as ufw
//! run (/usr/sbin/iptables, fixed at build time), which a PATH shim never sees.
//!
//! On Debian, /usr/sbin/iptables (and ip6tables, -save, -restore) is an
//! update-alternatives link to /usr/sbin/iptables-nft or -legacy, which are package
//! files. The alternatives are left alone; the package files they point to (and every
//! other tool xtlock shims that is a package file, such as ipset) are diverted
//! (`dpkg-divert --rename` to NAME.xtlock-real) and replaced by links to xtlock. So
//! `update-alternatives --set` only picks another diverted file, and a package upgrade
//! installs the new binary at the diverted name. xtlock finds the real program beside
//! the link it was reached through (`resolve::diverted_real`), never from PATH.

use super::is_xtlock_link;
use crate::output::{errln, outln};
use crate::resolve::{Candidate, DIVERT_SUFFIX, SelfIdentity};
use crate::status::Failure;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What `--divert` covers: every tool the shims cover that Debian installs as a package
/// file in /usr/sbin, that is every tool but the update-alternatives links. Those are
/// left alone: each points to a package file diverted here (the -legacy and -nft
/// tools), so a caller reaches xtlock whichever one `update-alternatives` picks. ipset
/// is a package file with no alternative: diverted itself (and `ipset-translate`, a
/// link to it, reaches xtlock through it).
pub fn is_package_file(tool: &str) -> bool {
    !ALTERNATIVES.contains(&tool)
}

/// The tools `install --divert` diverts, in TOOLS' order.
pub fn diverted_names() -> impl Iterator<Item = &'static str> {
    super::TOOLS.iter().copied().filter(|t| is_package_file(t))
}

/// The update-alternatives links callers run (Debian's iptables 1.8.9 postinst
/// registers iptables, ip6tables, ebtables and arptables with -restore and -save as
/// slaves; the ebtables and arptables packages add their -legacy choices to the same
/// names). They must reach xtlock once the files they point to are diverted.
pub const ALTERNATIVES: &[&str] = &[
    "iptables",
    "iptables-restore",
    "iptables-save",
    "ip6tables",
    "ip6tables-restore",
    "ip6tables-save",
    "ebtables",
    "ebtables-restore",
    "ebtables-save",
    "arptables",
    "arptables-restore",
    "arptables-save",
];
const SBIN: &str = "/usr/sbin";

pub struct Options {
    /// `/`, or a temp root (tests): dpkg-divert's --root.
    pub root: PathBuf,
    pub dry_run: bool,
}

/// (path as dpkg knows it, path on disk)
fn paths(root: &Path, name: &str) -> (String, PathBuf) {
    let logical = format!("{SBIN}/{name}");
    (logical.clone(), root.join(logical.trim_start_matches('/')))
}

fn diverted_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(DIVERT_SUFFIX);
    PathBuf::from(s)
}

fn dpkg_divert(root: &Path, args: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new("dpkg-divert");
    if root != Path::new("/") {
        cmd.arg("--root").arg(root);
    }
    let out = cmd
        .args(["--package", "xtlock", "--rename"])
        .args(args)
        .output()
        .map_err(|e| format!("cannot run dpkg-divert: {}", crate::text::errno_text(&e)))?;
    match out.status.success() {
        true => Ok(()),
        false => Err(format!(
            "dpkg-divert {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

pub fn install(options: &Options) -> Result<u8, Failure> {
    let own = super::own_binary().map_err(Failure::Own)?;
    let me = super::me()?;
    let mut problems = 0;
    for name in diverted_names() {
        let (logical, path) = paths(&options.root, name);
        let real = diverted_path(&path);
        if std::fs::symlink_metadata(&path).is_err() {
            continue; // not on this host
        }
        if is_xtlock_link(&path, &me) && std::fs::symlink_metadata(&real).is_ok() {
            outln!("already diverted {}", path.display());
            continue;
        }
        if std::fs::symlink_metadata(&real).is_ok() {
            errln!(
                "xtlock: skipped {}: {} exists already",
                path.display(),
                real.display()
            );
            problems += 1;
            continue;
        }
        if options.dry_run {
            outln!(
                "would divert {} to {} and link it to {}",
                path.display(),
                real.display(),
                own.display()
            );
            continue;
        }
        let divert = format!("{logical}{DIVERT_SUFFIX}");
        if let Err(e) = dpkg_divert(&options.root, &["--divert", &divert, "--add", &logical]) {
            errln!("xtlock: {e}");
            problems += 1;
            continue;
        }
        if let Err(e) = std::os::unix::fs::symlink(&own, &path) {
            // Put the real program back rather than leave the path empty.
            errln!(
                "xtlock: cannot link {}: {}; undoing",
                path.display(),
                crate::text::errno_text(&e)
            );
            let _ = dpkg_divert(&options.root, &["--remove", &logical]);
            problems += 1;
            continue;
        }
        outln!(
            "diverted {} (the real one is now {})",
            path.display(),
            real.display()
        );
    }
    Ok(if problems == 0 { 0 } else { 1 })
}

pub fn uninstall(options: &Options) -> Result<u8, Failure> {
    let me = super::me()?;
    let mut problems = 0;
    for name in diverted_names() {
        let (logical, path) = paths(&options.root, name);
        if std::fs::symlink_metadata(diverted_path(&path)).is_err() {
            continue;
        }
        let ours = is_xtlock_link(&path, &me);
        if options.dry_run {
            outln!("would restore {}", path.display());
            continue;
        }
        if ours && std::fs::remove_file(&path).is_err() {
            problems += 1;
            continue;
        }
        match dpkg_divert(&options.root, &["--remove", &logical]) {
            Ok(()) => outln!("restored {}", path.display()),
            Err(e) => {
                errln!("xtlock: {e}");
                problems += 1;
            }
        }
    }
    Ok(if problems == 0 { 0 } else { 1 })
}

/// For doctor: one finding per diverted path and per alternatives link: (ok, text).
pub fn check(root: &Path, me: &SelfIdentity) -> Vec<(bool, String)> {
    let mut findings = Vec::new();
    let mut any = false;
    for name in diverted_names() {
        let (_, path) = paths(root, name);
        let real = diverted_path(&path);
        if std::fs::symlink_metadata(&real).is_err() {
            continue;
        }
        any = true;
        if is_xtlock_link(&path, me) {
            findings.push((
                true,
                format!(
                    "{} is diverted to xtlock (real: {})",
                    path.display(),
                    real.display()
                ),
            ));
        } else {
            findings.push((
                false,
                format!(
                    "{}: the diversion was undone, it is no longer xtlock",
                    path.display()
                ),
            ));
        }
    }
    if any {
        for name in ALTERNATIVES {
            let (_, path) = paths(root, name);
            if std::fs::symlink_metadata(&path).is_err() {
                continue;
            }
            // xtlock, reached through a diverted file: exactly what a call resolves by.
            if matches!(me.probe(&path), Candidate::Diverted(_)) {
                findings.push((true, format!("{} reaches xtlock", path.display())));
            } else {
                findings.push((
                    false,
                    format!(
                        "{} does not reach a diverted file, so its callers bypass xtlock",
                        path.display()
                    ),
                ));
            }
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_files_are_diverted_alternatives_are_not() {
        for (tool, diverted) in [
            ("iptables", false),
            ("iptables-restore", false),
            ("ip6tables-save", false),
            ("ebtables", false),
            ("ebtables-restore", false),
            ("arptables-save", false),
            ("iptables-legacy", true),
            ("iptables-nft-restore", true),
            ("ip6tables-legacy-save", true),
            ("ebtables-nft", true),
            ("ebtables-legacy-restore", true),
            ("arptables-legacy-save", true),
            ("ipset", true),
        ] {
            assert_eq!(is_package_file(tool), diverted, "{tool}");
        }
    }

    #[test]
    fn every_tool_is_either_diverted_or_an_alternative() {
        let diverted: Vec<&str> = diverted_names().collect();
        for tool in crate::admin::TOOLS {
            assert!(
                diverted.contains(tool) != ALTERNATIVES.contains(tool),
                "{tool}"
            );
        }
        for alternative in ALTERNATIVES {
            assert!(crate::admin::TOOLS.contains(alternative), "{alternative}");
        }
    }
}
