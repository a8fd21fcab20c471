//! Admin commands, apart from the hot path: `install`/`uninstall` (PATH shims and
//! fail2ban wiring), `doctor` (is every firewall call really going through xtlock?),
//! `stats` (what the log says) and `status` (who holds the locks now).

pub mod backends;
pub mod bypass;
pub mod divert;
pub mod doctor;
pub mod install;
pub mod lockdir;
pub mod stats;
pub mod status;

use crate::resolve::{Candidate, SelfIdentity, find_in_path};
use crate::status::Failure;
use std::path::{Path, PathBuf};

/// The programs xtlock can stand in front of: `install` shims each one found, doctor
/// checks each one, and `install --divert` diverts those that are package files
/// (`divert::is_package_file`). The -legacy ebtables and arptables come from Debian's
/// ebtables and arptables packages (iptables 1.8.9 ships only their -nft variants).
pub const TOOLS: &[&str] = &[
    "iptables",
    "ip6tables",
    "iptables-restore",
    "ip6tables-restore",
    "iptables-save",
    "ip6tables-save",
    "iptables-legacy",
    "iptables-legacy-restore",
    "iptables-legacy-save",
    "ip6tables-legacy",
    "ip6tables-legacy-restore",
    "ip6tables-legacy-save",
    "iptables-nft",
    "iptables-nft-restore",
    "iptables-nft-save",
    "ip6tables-nft",
    "ip6tables-nft-restore",
    "ip6tables-nft-save",
    "ebtables",
    "ebtables-restore",
    "ebtables-save",
    "ebtables-nft",
    "ebtables-nft-restore",
    "ebtables-nft-save",
    "ebtables-legacy",
    "ebtables-legacy-restore",
    "ebtables-legacy-save",
    "arptables",
    "arptables-restore",
    "arptables-save",
    "arptables-nft",
    "arptables-nft-restore",
    "arptables-nft-save",
    "arptables-legacy",
    "arptables-legacy-restore",
    "arptables-legacy-save",
    "ipset",
];

/// Where `install` puts the shims: before /usr/sbin in Debian's and systemd's PATH.
pub const DEFAULT_SHIM_DIR: &str = "/usr/local/sbin";
/// The PATH systemd gives services (and so fail2ban) on a merged-/usr system.
pub const SYSTEMD_PATH: &str = crate::resolve::DEFAULT_PATH;
pub const FAIL2BAN_ACTION_DIR: &str = "/etc/fail2ban/action.d";
/// The first line of a fail2ban file written by `install --fail2ban`, so that
/// `uninstall` and a second `install` know it is ours.
pub const FAIL2BAN_MARKER: &str =
    "# Written by `xtlock install --fail2ban`; `xtlock uninstall --fail2ban` removes it.";

/// The xtlock binary that is running, by a path that is stable (not /proc/self/exe).
pub fn own_binary() -> Result<PathBuf, String> {
    std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| format!("cannot find my own binary: {}", crate::text::errno_text(&e)))
}

/// The running binary's identity, for `is_xtlock_link`.
pub fn me() -> Result<SelfIdentity, Failure> {
    SelfIdentity::current().ok_or_else(|| Failure::Own("cannot read /proc/self/exe".into()))
}

/// Is `path` a symlink to xtlock (this binary, or any file named xtlock)?
pub fn is_xtlock_link(path: &Path, me: &SelfIdentity) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    meta.file_type().is_symlink()
        && (me.is(path)
            || std::fs::read_link(path).is_ok_and(|t| t.file_name().is_some_and(|n| n == "xtlock")))
}

/// The first regular file named `name` in `path_var`, whatever it is.
pub fn first_in_path(name: &str, path_var: &str) -> Option<PathBuf> {
    let any_file = |p: &Path| match p.is_file() {
        true => Candidate::Program,
        false => Candidate::Missing,
    };
    find_in_path(name.as_ref(), Some(path_var.as_ref()), any_file).ok()
}
