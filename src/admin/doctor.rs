//! `xtlock doctor`: is every firewall call on this host going through xtlock, and is
//! anything in its way? One line per finding; each problem names its fix. Exit 0 when
//! healthy, 1 otherwise.

use super::{SYSTEMD_PATH, TOOLS, first_in_path, is_xtlock_link};
use crate::config::{Layer, Sources};
use crate::output::outln;
use crate::resolve::find_in_path;
use crate::status::Failure;
use crate::text::printable;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

pub struct Options {
    pub fail2ban_dir: std::path::PathBuf,
    /// Where to look for `install --divert`'s work (`/`, or a temp root in tests).
    pub root: std::path::PathBuf,
}

pub(super) struct Report {
    problems: u32,
}

impl Report {
    // Findings quote what other processes say (a lock holder's command line, a
    // program's --version): one line each, whatever they hold.
    pub(super) fn ok(&self, text: impl AsRef<str>) {
        outln!("ok: {}", printable(text.as_ref()));
    }
    pub(super) fn note(&self, text: impl AsRef<str>) {
        outln!("note: {}", printable(text.as_ref()));
    }
    pub(super) fn problem(&mut self, text: impl AsRef<str>, fix: impl AsRef<str>) {
        self.problems += 1;
        outln!(
            "problem: {}; fix: {}",
            printable(text.as_ref()),
            printable(fix.as_ref())
        );
    }
}

pub fn doctor(options: &Options) -> Result<u8, Failure> {
    let me = super::me()?;
    let mut report = Report { problems: 0 };
    let path_var = std::env::var("PATH").unwrap_or_default();
    let systemd = Path::new("/run/systemd/system").exists();

    let (config, warnings) =
        crate::config::load(&Sources::process(), Layer::default()).map_err(Failure::Own)?;
    match warnings.as_slice() {
        [] => report.ok(format!("config: {}", describe_config(&config))),
        _ => {
            for warning in &warnings {
                report.problem(
                    format!("config: {warning}"),
                    "correct it, or remove the file to use the defaults",
                );
            }
        }
    }

    let mut shimmed_iptables = false;
    let mut bypassed = Vec::new();
    let mut services_bypass = Vec::new();
    // The files this host's tools really run, to tell another iptables build from them.
    let mut host_builds = Vec::new();
    for tool in TOOLS {
        let Some(first) = first_in_path(tool, &path_var) else {
            continue;
        };
        let real = match find_in_path(tool.as_ref(), Some(path_var.as_ref()), |p| me.probe(p)) {
            Ok(real) => real,
            Err(e) => {
                report.problem(
                    format!("{tool}: {e}"),
                    "install the real program, or remove the shim",
                );
                continue;
            }
        };
        let backend = backend_of(&real, tool);
        if let Ok(file) = std::fs::canonicalize(&real)
            && let Some(id) = crate::procscan::id_of(&file)
            && !host_builds.iter().any(|(h, _)| *h == id)
        {
            host_builds.push((id, file));
        }
        // A diverted file is a link to xtlock too: ask that first, to say which it is.
        if matches!(me.probe(&first), crate::resolve::Candidate::Diverted(_)) {
            shimmed_iptables |= *tool == "iptables";
            report.ok(format!(
                "{tool}: {} reaches xtlock (diverted), real {} ({backend})",
                first.display(),
                real.display()
            ));
        } else if is_xtlock_link(&first, &me) {
            shimmed_iptables |= *tool == "iptables";
            report.ok(format!(
                "{tool}: shim {} first in PATH, real {} ({backend})",
                first.display(),
                real.display()
            ));
        } else {
            bypassed.push(*tool);
        }
        let reaches = |p: &Path| {
            is_xtlock_link(p, &me) || matches!(me.probe(p), crate::resolve::Candidate::Diverted(_))
        };
        if systemd && !first_in_path(tool, SYSTEMD_PATH).is_some_and(|p| reaches(&p)) {
            services_bypass.push(*tool);
        }
    }
    if !bypassed.is_empty() {
        report.problem(
            format!(
                "{} reach the real program first in PATH, not xtlock: {}",
                bypassed.len(),
                bypassed.join(", ")
            ),
            "`xtlock install` (shims in /usr/local/sbin), or `xtlock install --divert` for callers with absolute paths",
        );
    }
    if !services_bypass.is_empty() {
        report.problem(
            format!(
                "{} do not reach xtlock from services (systemd's PATH {SYSTEMD_PATH}): {}",
                services_bypass.len(),
                services_bypass.join(", ")
            ),
            "`xtlock install` (into /usr/local/sbin)",
        );
    }
    if !systemd {
        report.note("no systemd here: the PATH services get was not checked");
    }

    for (ok, text) in super::divert::check(&options.root, &me) {
        match ok {
            true => report.ok(text),
            false => report.problem(text, "`xtlock install --divert` (again)"),
        }
    }
    check_lock(&config.lock_file, &mut report);
    super::bypass::check(&config.lock_file, &host_builds, &mut report);
    super::backends::check(&me, &mut report);
    check_fail2ban(&options.fail2ban_dir, shimmed_iptables, &mut report);
    check_log(&config, &mut report);
    Ok(if report.problems == 0 { 0 } else { 1 })
}

fn describe_config(config: &crate::config::Config) -> String {
    format!(
        "lock_file={} timeout={}s retries={} max_stdin={}",
        config.lock_file.display(),
        config.timeout.as_secs_f64(),
        config.retries,
        config.max_stdin
    )
}

/// What the names of a tool and of the file it reaches say about its backend.
#[derive(Debug, PartialEq, Eq)]
enum BackendHint {
    Known(&'static str),
    /// Ask the program itself (`--version`, run under the tool's own name).
    AskVersion,
    /// Never run: a restore program may apply its input whatever its arguments.
    /// arptables 0.0.5's arptables-legacy-restore (a perl script) flushes every chain
    /// before it reads a line, `--version` or not.
    NotAsked,
}

/// The backend from the names alone: the multi-call binary a program's links reach
/// (as a call knows it), else a `-legacy` or `-nft` in the file's name (a diverted
/// `NAME.xtlock-real` counts as NAME: ebtables-legacy, arptables-legacy-save).
fn backend_hint(file: &str, tool: &str) -> BackendHint {
    match crate::classify::backend_of_multi(file.as_ref()) {
        Some(crate::classify::Backend::Legacy) => return BackendHint::Known("legacy"),
        Some(crate::classify::Backend::Nft) => return BackendHint::Known("nf_tables"),
        None => {}
    }
    let name = file
        .strip_suffix(crate::resolve::DIVERT_SUFFIX)
        .unwrap_or(file);
    let words: Vec<&str> = name.split('-').collect();
    if words.contains(&"legacy") {
        BackendHint::Known("legacy")
    } else if words.contains(&"nft") {
        BackendHint::Known("nf_tables")
    } else if tool.ends_with("-restore") || name.ends_with("-restore") {
        BackendHint::NotAsked
    } else {
        BackendHint::AskVersion
    }
}

/// "legacy" or "nf_tables" (`backend_hint`); else the first line of `PROGRAM
/// --version`, run under the tool's own name (a diverted `NAME.xtlock-real` that is a
/// multi-call binary dispatches on argv[0]).
fn backend_of(program: &Path, tool: &str) -> String {
    use std::os::unix::process::CommandExt;
    let file = std::fs::canonicalize(program)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    match backend_hint(&file, tool) {
        BackendHint::Known(backend) => return backend.into(),
        BackendHint::NotAsked => return "backend not asked: doctor runs no restore program".into(),
        BackendHint::AskVersion => {}
    }
    let output = Command::new(program).arg0(tool).arg("--version").output();
    let text = output
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let first = text.lines().next().unwrap_or("").trim();
    if first.contains("(legacy)") {
        "legacy".into()
    } else if first.contains("(nf_tables)") {
        "nf_tables".into()
    } else if first.is_empty() {
        "version unknown".into()
    } else {
        first.to_string()
    }
}

fn check_lock(path: &Path, report: &mut Report) {
    use super::lockdir::{self, Verdict};
    let dir = path.parent().unwrap_or(Path::new("/"));
    let verdict = lockdir::verdict(
        path,
        dir,
        lockdir::look(path),
        crate::procinfo::may_change_firewall(),
    );
    let said = verdict.is_some();
    match verdict {
        Some(Verdict::Ok(text)) => report.ok(text),
        Some(Verdict::Note(text)) => report.note(text),
        Some(Verdict::Problem(text, fix)) => report.problem(text, fix),
        None => {}
    }
    let xtables = super::status::xtables_lock();
    let exists = std::fs::symlink_metadata(&xtables).is_ok();
    if let Some(Verdict::Problem(text, fix)) =
        lockdir::xtables_verdict(&xtables, lockdir::dir_access(&xtables), exists)
    {
        report.problem(text, fix);
    }
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(_) if said => return,
        Err(_) => {
            report.ok(format!(
                "lock {}: not created yet (the first call makes it)",
                path.display()
            ));
            return;
        }
    };
    if meta.file_type().is_symlink() || !meta.is_file() {
        report.problem(
            format!(
                "lock {}: not a regular file, so every call fails",
                path.display()
            ),
            "remove it; xtlock creates it",
        );
        return;
    }
    let holders = crate::procinfo::flock_holders(meta.dev(), meta.ino());
    match holders.first() {
        None => report.ok(format!("lock {}: free", path.display())),
        Some(&pid) => {
            let age = crate::procinfo::age_secs(pid).unwrap_or(0.0);
            let who = format!(
                "pid {pid} ({}), running for {age:.0}s",
                crate::procinfo::describe(pid)
            );
            if age > 1.0 {
                report.problem(
                    format!(
                        "lock {}: held by {who}; every other call waits for it",
                        path.display()
                    ),
                    format!("if it is stuck, end it: kill {pid}"),
                );
            } else {
                report.ok(format!("lock {}: held just now by {who}", path.display()));
            }
        }
    }
}

fn check_fail2ban(dir: &Path, shimmed_iptables: bool, report: &mut Report) {
    if !dir.is_dir() {
        return;
    }
    let local = dir.join("iptables.local");
    let routed = std::fs::read_to_string(&local).is_ok_and(|t| {
        t.lines()
            .any(|l| l.trim_start().starts_with("iptables =") && l.contains("xtlock"))
    });
    if routed {
        report.ok(format!(
            "fail2ban: {} routes its iptables actions through xtlock",
            local.display()
        ));
    } else if shimmed_iptables {
        report.ok("fail2ban: its iptables actions reach the xtlock shim through PATH");
    } else {
        report.problem(
            format!(
                "fail2ban: its iptables actions do not go through xtlock (no {})",
                local.display()
            ),
            "`xtlock install --fail2ban`",
        );
    }
}

fn check_log(config: &crate::config::Config, report: &mut Report) {
    let syslog = config
        .syslog_socket
        .as_ref()
        .filter(|s| std::fs::symlink_metadata(s).is_ok());
    let file = config.log_file.as_ref();
    match (syslog, file) {
        (Some(socket), _) => report.ok(format!(
            "log: syslog at {}{}",
            socket.display(),
            file.map(|f| format!(" and {}", f.display()))
                .unwrap_or_default()
        )),
        (None, Some(file)) => report.ok(format!("log: {} (no syslog socket)", file.display())),
        (None, None) => report.problem(
            format!(
                "log: no syslog socket at {} and no log_file: failures are logged nowhere",
                config
                    .syslog_socket
                    .as_ref()
                    .map_or("(off)".into(), |s| s.display().to_string())
            ),
            "set log_file in /etc/xtlock.conf",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_hints() {
        use BackendHint::*;
        for (file, tool, want) in [
            ("xtables-legacy-multi", "iptables", Known("legacy")),
            ("xtables-nft-multi", "ebtables-restore", Known("nf_tables")),
            ("ebtables-legacy", "ebtables", Known("legacy")),
            (
                "ebtables-legacy.xtlock-real",
                "ebtables-legacy",
                Known("legacy"),
            ),
            (
                "arptables-legacy-restore",
                "arptables-restore",
                Known("legacy"),
            ),
            (
                "arptables-legacy-restore.xtlock-real",
                "arptables-legacy-restore",
                Known("legacy"),
            ),
            (
                "iptables-nft-restore.xtlock-real",
                "iptables-nft-restore",
                Known("nf_tables"),
            ),
            // Names that say nothing: a restore is never run, anything else is asked.
            ("arptables-restore", "arptables-restore", NotAsked),
            ("restore-wrapper", "iptables-restore", NotAsked),
            ("iptables-restore.xtlock-real", "iptables-restore", NotAsked),
            ("ipset", "ipset", AskVersion),
            ("ipset.xtlock-real", "ipset", AskVersion),
            ("iptables", "iptables", AskVersion),
            ("iptables-save", "iptables-save", AskVersion),
            // "nft" must be a word of the name, not a part of one.
            ("nftables-thing", "iptables", AskVersion),
        ] {
            assert_eq!(backend_hint(file, tool), want, "{file} as {tool}");
        }
    }
}
