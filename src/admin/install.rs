//! `xtlock install` and `uninstall`: make (or remove) the PATH shims, one symlink per
//! firewall tool found on the host, and optionally fail2ban's `action.d/iptables.local`.
//! Idempotent; never overwrites or removes anything that is not its own.

use super::{FAIL2BAN_MARKER, SYSTEMD_PATH, TOOLS, first_in_path, is_xtlock_link};
use crate::output::{errln, outln};
use crate::resolve::SelfIdentity;
use crate::status::Failure;
use std::path::{Path, PathBuf};

pub struct Options {
    /// Where the shims go; None: no shims (`install --divert` alone).
    pub dir: Option<PathBuf>,
    pub fail2ban_dir: Option<PathBuf>,
    pub dry_run: bool,
}

/// The fail2ban override: every iptables action runs `xtlock iptables -w ...`.
pub fn fail2ban_local(xtlock: &Path) -> String {
    let x = xtlock.display();
    format!(
        "{FAIL2BAN_MARKER}\n\
         # Routes fail2ban's iptables actions (IPv4 and IPv6) through xtlock, keeping <lockingopt>.\n\n\
         [Init]\niptables = {x} iptables <lockingopt>\n\n\
         [Init?family=inet6]\niptables = {x} ip6tables <lockingopt>\n"
    )
}

pub fn install(options: &Options) -> Result<u8, Failure> {
    let own = super::own_binary().map_err(Failure::Own)?;
    let me = super::me()?;
    let mut problems = match &options.dir {
        Some(dir) => install_shims(dir, &own, &me, options.dry_run)?,
        None => 0,
    };
    if let Some(fail2ban_dir) = &options.fail2ban_dir {
        problems += install_fail2ban(fail2ban_dir, &own, options.dry_run);
    }
    Ok(if problems == 0 { 0 } else { 1 })
}

fn install_shims(dir: &Path, own: &Path, me: &SelfIdentity, dry_run: bool) -> Result<u32, Failure> {
    let path_var = std::env::var("PATH").unwrap_or_default();
    let mut problems = 0;
    if !dir.is_dir() && !dry_run {
        std::fs::create_dir_all(dir).map_err(|e| {
            Failure::Own(format!(
                "cannot create {}: {}",
                dir.display(),
                crate::text::errno_text(&e)
            ))
        })?;
    }
    for tool in TOOLS {
        let link = dir.join(tool);
        // A tool "exists on the host" if a real one is in PATH (the shim dir aside).
        let real = real_tool(tool, &path_var, dir, me);
        if is_xtlock_link(&link, me) {
            outln!("already linked {}", link.display());
            continue;
        }
        if std::fs::symlink_metadata(&link).is_ok() {
            outln!(
                "skipped {}: exists and is not an xtlock link",
                link.display()
            );
            problems += 1;
            continue;
        }
        let Some(real) = real else { continue };
        if dry_run {
            outln!(
                "would link {} -> {} (for {})",
                link.display(),
                own.display(),
                real.display()
            );
            continue;
        }
        match std::os::unix::fs::symlink(own, &link) {
            Ok(()) => {
                outln!(
                    "linked {} -> {} (for {})",
                    link.display(),
                    own.display(),
                    real.display()
                );
            }
            Err(e) => {
                errln!(
                    "xtlock: cannot link {}: {}",
                    link.display(),
                    crate::text::errno_text(&e)
                );
                problems += 1;
            }
        }
    }
    for (label, path_var) in [
        ("the current PATH", path_var.as_str()),
        ("systemd's PATH for services", SYSTEMD_PATH),
    ] {
        if let Some(warning) = order_warning(dir, path_var) {
            errln!("xtlock: warning: {warning} ({label})");
        }
    }
    Ok(problems)
}

/// The real program `tool` resolves to with `dir` (our shims) taken out of PATH.
fn real_tool(tool: &str, path_var: &str, dir: &Path, me: &SelfIdentity) -> Option<PathBuf> {
    let without_dir: Vec<PathBuf> = std::env::split_paths(path_var)
        .filter(|d| d != dir)
        .collect();
    let joined = std::env::join_paths(without_dir).ok()?;
    let found = first_in_path(tool, &joined.to_string_lossy())?;
    (!is_xtlock_link(&found, me)).then_some(found)
}

/// Does `dir` come before the directories that hold the real tools?
pub fn order_warning(dir: &Path, path_var: &str) -> Option<String> {
    let dirs: Vec<PathBuf> = std::env::split_paths(path_var).collect();
    let Some(shim_at) = dirs.iter().position(|d| d == dir) else {
        return Some(format!(
            "{} is not in PATH, so its shims are never run",
            dir.display()
        ));
    };
    let real_before: Vec<String> = TOOLS
        .iter()
        .filter_map(|tool| {
            dirs[..shim_at]
                .iter()
                .map(|d| d.join(tool))
                .find(|p| p.is_file())
        })
        .map(|p| p.display().to_string())
        .collect();
    let real_before = match real_before.len() {
        0..=3 => real_before.join(", "),
        n => format!("{} and {} more", real_before[..3].join(", "), n - 3),
    };
    (!real_before.is_empty()).then(|| {
        format!(
            "{} comes after {} in PATH, so those calls bypass xtlock",
            dir.display(),
            real_before
        )
    })
}

fn install_fail2ban(dir: &Path, own: &Path, dry_run: bool) -> u32 {
    let local = dir.join("iptables.local");
    let content = fail2ban_local(own);
    match std::fs::read_to_string(&local) {
        Ok(existing) if existing == content => {
            outln!("already written {}", local.display());
            return 0;
        }
        Ok(existing) if !existing.starts_with(FAIL2BAN_MARKER) => {
            errln!(
                "xtlock: not overwriting {}: it is not ours; add the [Init] lines from `xtlock install --fail2ban --dry-run` by hand",
                local.display()
            );
            return 1;
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            errln!(
                "xtlock: cannot read {}: {}",
                local.display(),
                crate::text::errno_text(&e)
            );
            return 1;
        }
        _ => {}
    }
    if dry_run {
        outln!("would write {}:\n{content}", local.display());
        return 0;
    }
    match std::fs::write(&local, &content) {
        Ok(()) => {
            outln!("wrote {} (restart fail2ban to use it)", local.display());
            0
        }
        Err(e) => {
            errln!(
                "xtlock: cannot write {}: {}",
                local.display(),
                crate::text::errno_text(&e)
            );
            1
        }
    }
}

pub fn uninstall(options: &Options) -> Result<u8, Failure> {
    let me = super::me()?;
    let mut problems = 0;
    let shim_dir = options.dir.as_deref();
    for link in TOOLS.iter().filter_map(|tool| Some(shim_dir?.join(tool))) {
        if !is_xtlock_link(&link, &me) {
            continue;
        }
        if options.dry_run {
            outln!("would remove {}", link.display());
        } else if let Err(e) = std::fs::remove_file(&link) {
            errln!(
                "xtlock: cannot remove {}: {}",
                link.display(),
                crate::text::errno_text(&e)
            );
            problems += 1;
        } else {
            outln!("removed {}", link.display());
        }
    }
    if let Some(dir) = &options.fail2ban_dir {
        let local = dir.join("iptables.local");
        match std::fs::read_to_string(&local) {
            Ok(text) if text.starts_with(FAIL2BAN_MARKER) => {
                if options.dry_run {
                    outln!("would remove {}", local.display());
                } else if std::fs::remove_file(&local).is_ok() {
                    outln!("removed {} (restart fail2ban)", local.display());
                } else {
                    problems += 1;
                }
            }
            Ok(_) => {
                outln!("left {}: not ours", local.display());
            }
            Err(_) => {}
        }
    }
    Ok(if problems == 0 { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_warnings() {
        let dir = tempfile::tempdir().unwrap();
        let (shim, real) = (dir.path().join("shim"), dir.path().join("real"));
        std::fs::create_dir_all(&shim).unwrap();
        std::fs::create_dir_all(&real).unwrap();
        std::fs::write(real.join("iptables"), "").unwrap();
        let path = |dirs: &[&Path]| std::env::join_paths(dirs).unwrap().into_string().unwrap();
        assert_eq!(order_warning(&shim, &path(&[&shim, &real])), None);
        let w = order_warning(&shim, &path(&[&real, &shim])).unwrap();
        assert!(
            w.contains("comes after") && w.contains("real/iptables"),
            "{w}"
        );
        let w = order_warning(&shim, &path(&[&real])).unwrap();
        assert!(w.contains("is not in PATH"), "{w}");
    }
}
