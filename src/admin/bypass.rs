//! `doctor`'s look at the processes of this network namespace: which of them write its
//! firewall past xtlock's lock (a container or chroot with its own /run, a libiptc
//! user, another iptables build). The facts come from `procscan`; what they mean is
//! decided here, by pure functions.

use super::doctor::Report;
use crate::procscan::{self, FileId};
use std::path::{Path, PathBuf};

/// Why a process counts as a firewall writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writer {
    /// One of iptables' own programs (or xtlock standing in for one), by name.
    Program(String),
    /// A daemon that runs iptables by name from its own root, so a container's copy of
    /// it uses the container's iptables and /run: dockerd, kube-proxy (kubernetes#46103),
    /// firewalld, fail2ban-server. A short list of the callers users report; any other
    /// caller shows while its iptables runs, as a `Program`.
    Daemon(String),
    /// A library that writes tables itself (libiptc: libip4tc, libip6tc) or that
    /// iptables' extensions load (libxtables), mapped into the process.
    Library(String),
}

impl Writer {
    fn describe(&self) -> String {
        match self {
            Writer::Program(name) => format!("runs {name}"),
            Writer::Daemon(name) => format!("{name} runs iptables"),
            Writer::Library(lib) => format!("has {lib} mapped"),
        }
    }
}

const DAEMONS: [&str; 4] = ["dockerd", "kube-proxy", "firewalld", "fail2ban-server"];

/// iptables' multi-call binaries, by file name or by the kernel's 15-byte comm of it.
fn is_multi(name: &str) -> bool {
    matches!(
        name,
        "xtables-legacy-multi" | "xtables-nft-multi" | "xtables-legacy-" | "xtables-nft-mul"
    )
}

/// A program of iptables' family (the names xtlock stands in for, old single-binary
/// builds such as 1.4's /sbin/iptables and iptables-multi included).
fn is_iptables_program(name: &str) -> bool {
    is_multi(name)
        || ["iptables", "ip6tables", "ebtables", "arptables"]
            .iter()
            .any(|t| name == *t || name.strip_prefix(t).is_some_and(|r| r.starts_with('-')))
        || name == "ipset"
}

/// libiptc's libraries: they read a table, change it in memory and write it back, with
/// no lock of their own (iptables 1.8.9 libiptc/libiptc.c: the lock is in iptables'
/// xshared.c, not in the library).
fn libiptc_in(mapped: &[String]) -> Option<&str> {
    mapped.iter().map(String::as_str).find(|n| {
        ["libip4tc.so", "libip6tc.so", "libiptc.so"]
            .iter()
            .any(|l| n.starts_with(l))
    })
}

/// Is the process a firewall writer, and why: its program's name (the file it runs, or
/// its comm when that is unreadable), then the libraries it maps.
pub fn writer_kind(comm: &str, exe_name: &str, mapped: &[String]) -> Option<Writer> {
    for name in [exe_name, comm] {
        if is_iptables_program(name) {
            return Some(Writer::Program(name.to_string()));
        }
    }
    // xtlock run under a tool's name has that name as its comm.
    if exe_name == "xtlock" && is_iptables_program(comm) {
        return Some(Writer::Program(comm.to_string()));
    }
    if let Some(daemon) = DAEMONS.iter().find(|d| **d == comm || **d == exe_name) {
        return Some(Writer::Daemon(daemon.to_string()));
    }
    libiptc_in(mapped)
        .or_else(|| {
            mapped
                .iter()
                .map(String::as_str)
                .find(|n| n.starts_with("libxtables.so"))
        })
        .map(|lib| Writer::Library(lib.to_string()))
}

/// The lock file a process sees at xtlock's lock path, next to ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockView {
    /// The same file as ours, or (none made yet) the same directory.
    Shared,
    Absent,
    Other(FileId),
}

/// `file`/`dir`: the (dev, ino) of the lock file and of its directory, ours and as the
/// process sees them through /proc/PID/root.
pub fn lock_view(
    ours: (Option<FileId>, Option<FileId>),
    theirs: (Option<FileId>, Option<FileId>),
) -> LockView {
    match (ours, theirs) {
        ((Some(a), _), (Some(b), _)) if a == b => LockView::Shared,
        (_, (Some(b), _)) => LockView::Other(b),
        // No file on their side: the same directory means their first call makes ours.
        ((_, Some(a)), (None, Some(b))) if a == b => LockView::Shared,
        _ => LockView::Absent,
    }
}

/// What doctor knows of one process of this network namespace.
#[derive(Debug, Clone)]
pub struct Facts {
    pub writer: Option<Writer>,
    /// The libiptc library it maps, if any.
    pub libiptc: Option<String>,
    pub exe_name: String,
    /// Its program is one of iptables' multi-call binaries, and not one of the host's
    /// (by dev, ino).
    pub multi: bool,
    pub host_build: bool,
    pub root_differs: bool,
    /// The lock file's directory (/run) it sees is another than ours.
    pub run_differs: bool,
    /// Its parent is xtlock: it runs under xtlock's lock (whichever that is).
    pub under_xtlock: bool,
    pub lock: LockView,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// (a) A writer that does not see our lock file.
    OtherLock {
        writer: Writer,
        lock: LockView,
        other_build: bool,
        other_root: bool,
    },
    /// (b) libiptc in a process that is not iptables: no lock at all.
    Libiptc(String),
    /// (c) An iptables build other than the host's, or the host's in another root,
    /// run bare.
    OtherBuild { in_other_root: bool },
}

/// The one finding a process gives, if any; the first rule that applies wins.
pub fn judge(f: &Facts) -> Option<Finding> {
    let is_xtlock = f.exe_name == "xtlock";
    match (&f.writer, f.lock) {
        (Some(writer), lock) if lock != LockView::Shared => {
            return Some(Finding::OtherLock {
                writer: writer.clone(),
                lock,
                other_build: f.multi && !f.host_build,
                other_root: f.root_differs,
            });
        }
        _ => {}
    }
    if f.under_xtlock {
        return None;
    }
    if let Some(lib) = &f.libiptc
        && !is_xtlock
        && !is_iptables_program(&f.exe_name)
    {
        return Some(Finding::Libiptc(lib.clone()));
    }
    // Run bare with another /run, iptables takes that /run's xtables.lock, which no
    // caller on the host shares, even when xtlock's own lock file is bind-mounted there.
    if f.multi && (!f.host_build || f.root_differs || f.run_differs) {
        return Some(Finding::OtherBuild {
            in_other_root: f.root_differs || f.run_differs,
        });
    }
    None
}

fn show_id((dev, ino): FileId) -> String {
    format!(
        "{:02x}:{:02x}:{ino}",
        libc::major(dev as libc::dev_t),
        libc::minor(dev as libc::dev_t)
    )
}

/// The finding as doctor's one line: (problem, fix).
pub fn finding_text(
    pid: u32,
    command: &str,
    finding: &Finding,
    lock_file: &Path,
    ours: Option<FileId>,
    exe: &str,
    host_exe: Option<&Path>,
) -> (String, String) {
    let who = format!("pid {pid} ({command})");
    let seen = procscan::in_root_of(pid, lock_file);
    match finding {
        Finding::OtherLock {
            writer,
            lock,
            other_build,
            other_root,
        } => {
            let what = match (lock, ours) {
                (LockView::Other(id), Some(o)) => format!(
                    "another file (inode {}, ours {} is {})",
                    show_id(*id),
                    lock_file.display(),
                    show_id(o)
                ),
                (LockView::Other(id), None) => format!(
                    "a file of its own (inode {}; ours {} is not made yet)",
                    show_id(*id),
                    lock_file.display()
                ),
                _ => "absent there".to_string(),
            };
            let build = match other_build {
                true => format!(", with its own iptables build {exe}"),
                false => String::new(),
            };
            let whose = match other_root {
                true => "its root is another (a container or chroot)",
                false => "its mount namespace has another /run",
            };
            (
                format!(
                    "{who} {} in this network namespace{build} but cannot share xtlock's lock: it sees {} ({what}); {whose}",
                    writer.describe(),
                    seen.display(),
                ),
                format!(
                    "bind-mount {} into its root at the same path and run its iptables through xtlock (README: containers), or run it on the host",
                    lock_file.display()
                ),
            )
        }
        Finding::Libiptc(lib) => (
            format!(
                "{who} has {lib} mapped: it writes the firewall through libiptc, which takes no lock (as miniupnpd does)"
            ),
            "have it run iptables commands (through xtlock) instead, e.g. miniupnpd's nftables backend, or keep it from writing while others do".into(),
        ),
        Finding::OtherBuild { in_other_root } => {
            let why = match (in_other_root, host_exe) {
                (true, _) => "in another root or /run".to_string(),
                (false, Some(host)) => format!("not the host's {}", host.display()),
                (false, None) => "not the host's".to_string(),
            };
            (
                format!(
                    "{who} runs another iptables build {exe} ({why}), not under xtlock: it takes only the xtables lock of its own root and build (iptables before 1.6 locked an abstract socket instead)"
                ),
                "run it through xtlock with the host's lock file bind-mounted (README: containers), or use the host's iptables".into(),
            )
        }
    }
}

fn file_name(path: Option<&Path>) -> String {
    path.and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Look at every process of our network namespace; one line per process that bypasses
/// xtlock's lock. `host_builds`: the (dev, ino) and path of the real programs this
/// host's tools reach.
pub(super) fn check(lock_file: &Path, host_builds: &[(FileId, PathBuf)], report: &mut Report) {
    let (our_netns, our_root) = procscan::ours();
    let Some(our_netns) = our_netns else {
        report.note("processes: cannot read /proc/self/ns/net; not checked");
        return;
    };
    let dir = lock_file.parent().unwrap_or(Path::new("/"));
    let ours = (procscan::own_id_of(lock_file), procscan::id_of(dir));
    let host_multi = host_builds
        .iter()
        .find(|(_, p)| is_multi(&file_name(Some(p))))
        .map(|(_, p)| p.as_path());
    let (mut seen, mut unreadable, mut found) = (0, 0, 0);
    for pid in procscan::pids() {
        let p = procscan::read(pid);
        match p.netns {
            // Gone meanwhile, or (denied) another user's.
            None => {
                unreadable += u32::from(p.denied);
                continue;
            }
            Some(ns) if ns != our_netns => continue,
            Some(_) => seen += 1,
        }
        let exe_name = file_name(p.exe.as_deref());
        let mapped = procscan::mapped_files(pid);
        let theirs = (
            procscan::own_id_of(&procscan::in_root_of(pid, lock_file)),
            procscan::id_of(&procscan::in_root_of(pid, dir)),
        );
        let parent_exe = crate::procinfo::parent_of(pid)
            .and_then(|pp| std::fs::read_link(format!("/proc/{pp}/exe")).ok());
        let facts = Facts {
            writer: writer_kind(&p.comm, &exe_name, &mapped),
            libiptc: libiptc_in(&mapped).map(str::to_string),
            multi: is_multi(&exe_name) || is_multi(&p.comm),
            host_build: p
                .exe_id
                .is_some_and(|id| host_builds.iter().any(|(h, _)| *h == id)),
            root_differs: p.root.is_some() && p.root != our_root,
            run_differs: theirs.1 != ours.1,
            under_xtlock: file_name(parent_exe.as_deref()) == "xtlock",
            lock: lock_view(ours, theirs),
            exe_name,
        };
        if let Some(finding) = judge(&facts) {
            found += 1;
            let exe = p
                .exe
                .as_deref()
                .map_or_else(|| p.comm.clone(), |e| e.display().to_string());
            let (text, fix) = finding_text(
                pid,
                &crate::procinfo::describe(pid),
                &finding,
                lock_file,
                ours.0,
                &exe,
                host_multi,
            );
            report.problem(text, fix);
        }
    }
    if found == 0 {
        report.ok(format!(
            "processes: none of the {seen} in this network namespace writes its firewall past xtlock's lock"
        ));
    }
    if unreadable > 0 {
        report.note(match crate::procinfo::running_as_root() {
            true => format!("processes: {unreadable} could not be read, even as root"),
            false => format!(
                "processes: {unreadable} could not be read (another user's: run doctor as root to see them all)"
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn libs(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn writers() {
        use Writer::*;
        let p = |s: &str| Some(Program(s.into()));
        for (comm, exe, mapped, want) in [
            (
                "iptables",
                "xtables-legacy-multi",
                &[][..],
                p("xtables-legacy-multi"),
            ),
            ("xtables-nft-mul", "", &[], p("xtables-nft-mul")),
            ("iptables-legacy", "", &[], p("iptables-legacy")),
            ("ip6tables-resto", "", &[], p("ip6tables-resto")),
            ("ipset", "ipset", &[], p("ipset")),
            ("ebtables", "ebtables-legacy", &[], p("ebtables-legacy")),
            // xtlock as a shim: its comm is the tool's name.
            ("iptables", "xtlock", &[], p("iptables")),
            ("dockerd", "dockerd", &[], Some(Daemon("dockerd".into()))),
            (
                "kube-proxy",
                "kube-proxy",
                &[],
                Some(Daemon("kube-proxy".into())),
            ),
            (
                "fail2ban-server",
                "python3.11",
                &[],
                Some(Daemon("fail2ban-server".into())),
            ),
            (
                "miniupnpd",
                "miniupnpd",
                &["libc.so.6", "libip4tc.so.2.0.0"],
                Some(Library("libip4tc.so.2.0.0".into())),
            ),
            (
                "tc",
                "tc",
                &["libxtables.so.12.7.0"],
                Some(Library("libxtables.so.12.7.0".into())),
            ),
            // Names that only look alike.
            ("iptablesd", "iptablesd", &[], None),
            ("xtables-monito", "xtables-monitor", &[], None),
            ("sshd", "sshd", &["libc.so.6"], None),
            ("nft", "nft", &["libnftables.so.1"], None),
            ("xtlock", "xtlock", &[], None),
        ] {
            assert_eq!(writer_kind(comm, exe, &libs(mapped)), want, "{comm} {exe}");
        }
    }

    #[test]
    fn lock_views() {
        let (a, b, d, e) = ((1, 10), (1, 11), (1, 2), (3, 2));
        for (ours, theirs, want) in [
            ((Some(a), Some(d)), (Some(a), Some(d)), LockView::Shared),
            // The file bind-mounted into another /run: same inode, another directory.
            ((Some(a), Some(d)), (Some(a), Some(e)), LockView::Shared),
            ((Some(a), Some(d)), (Some(b), Some(e)), LockView::Other(b)),
            ((None, Some(d)), (Some(b), Some(e)), LockView::Other(b)),
            ((Some(a), Some(d)), (None, Some(e)), LockView::Absent),
            ((Some(a), Some(d)), (None, None), LockView::Absent),
            // Not made yet on either side, the same directory: the first call makes it.
            ((None, Some(d)), (None, Some(d)), LockView::Shared),
            ((None, None), (None, None), LockView::Absent),
        ] {
            assert_eq!(lock_view(ours, theirs), want, "{ours:?} {theirs:?}");
        }
    }

    #[test]
    fn judgements() {
        let base = Facts {
            writer: None,
            libiptc: None,
            exe_name: "sleep".into(),
            multi: false,
            host_build: false,
            root_differs: false,
            run_differs: false,
            under_xtlock: false,
            lock: LockView::Shared,
        };
        let iptables = Facts {
            writer: Some(Writer::Program("xtables-legacy-multi".into())),
            exe_name: "xtables-legacy-multi".into(),
            multi: true,
            host_build: true,
            ..base.clone()
        };
        let miniupnpd = Facts {
            writer: Some(Writer::Library("libip4tc.so.2".into())),
            libiptc: Some("libip4tc.so.2".into()),
            exe_name: "miniupnpd".into(),
            ..base.clone()
        };
        let other_lock = |f: &Facts, lock, other_build, other_root| {
            Some(Finding::OtherLock {
                writer: f.writer.clone().unwrap(),
                lock,
                other_build,
                other_root,
            })
        };
        let cases: Vec<(&str, Facts, Option<Finding>)> = vec![
            ("a process that writes nothing", base.clone(), None),
            (
                "not a writer, with its own /run",
                Facts {
                    lock: LockView::Absent,
                    root_differs: true,
                    ..base.clone()
                },
                None,
            ),
            ("the host's iptables, our lock", iptables.clone(), None),
            (
                "the host's iptables under a private /run",
                Facts {
                    lock: LockView::Absent,
                    ..iptables.clone()
                },
                other_lock(&iptables, LockView::Absent, false, false),
            ),
            (
                "a container's iptables build, its own lock file",
                Facts {
                    lock: LockView::Other((9, 9)),
                    root_differs: true,
                    host_build: false,
                    ..iptables.clone()
                },
                other_lock(&iptables, LockView::Other((9, 9)), true, true),
            ),
            // The README recipe: the host's lock bind-mounted, the container's iptables
            // run by xtlock there.
            (
                "a container's iptables under xtlock, lock shared",
                Facts {
                    root_differs: true,
                    host_build: false,
                    under_xtlock: true,
                    ..iptables.clone()
                },
                None,
            ),
            (
                "a container's iptables run bare, lock shared",
                Facts {
                    root_differs: true,
                    host_build: false,
                    ..iptables.clone()
                },
                Some(Finding::OtherBuild {
                    in_other_root: true,
                }),
            ),
            (
                "another build in our root",
                Facts {
                    host_build: false,
                    ..iptables.clone()
                },
                Some(Finding::OtherBuild {
                    in_other_root: false,
                }),
            ),
            (
                "miniupnpd in our root",
                miniupnpd.clone(),
                Some(Finding::Libiptc("libip4tc.so.2".into())),
            ),
            (
                "miniupnpd with its own /run",
                Facts {
                    lock: LockView::Absent,
                    root_differs: true,
                    ..miniupnpd.clone()
                },
                other_lock(&miniupnpd, LockView::Absent, false, true),
            ),
            (
                "iptables itself maps libip4tc",
                Facts {
                    libiptc: Some("libip4tc.so.2".into()),
                    ..iptables.clone()
                },
                None,
            ),
            (
                "xtlock never maps it, but is not miniupnpd",
                Facts {
                    exe_name: "xtlock".into(),
                    ..miniupnpd.clone()
                },
                None,
            ),
            (
                "a libiptc user started by xtlock",
                Facts {
                    under_xtlock: true,
                    ..miniupnpd.clone()
                },
                None,
            ),
        ];
        for (name, facts, want) in cases {
            assert_eq!(judge(&facts), want, "{name}");
        }
    }

    #[test]
    fn lines() {
        let lock = Path::new("/run/xtlock.lock");
        let (text, fix) = finding_text(
            42,
            "iptables-legacy -w -A INPUT",
            &Finding::OtherLock {
                writer: Writer::Program("xtables-legacy-multi".into()),
                lock: LockView::Absent,
                other_build: false,
                other_root: false,
            },
            lock,
            Some((0x1a, 7)),
            "/usr/sbin/xtables-legacy-multi",
            None,
        );
        assert_eq!(
            text,
            "pid 42 (iptables-legacy -w -A INPUT) runs xtables-legacy-multi in this network namespace but cannot share xtlock's lock: it sees /proc/42/root/run/xtlock.lock (absent there); its mount namespace has another /run"
        );
        assert!(
            fix.starts_with("bind-mount /run/xtlock.lock into its root"),
            "{fix}"
        );
        let (text, _) = finding_text(
            42,
            "c",
            &Finding::OtherLock {
                writer: Writer::Daemon("kube-proxy".into()),
                lock: LockView::Other((0x1b, 9)),
                other_build: true,
                other_root: true,
            },
            lock,
            Some((0x1a, 7)),
            "/usr/sbin/xtables-nft-multi",
            None,
        );
        assert!(
            text.contains("kube-proxy runs iptables in this network namespace, with its own iptables build /usr/sbin/xtables-nft-multi but")
                && text.contains("(another file (inode 00:1b:9, ours /run/xtlock.lock is 00:1a:7))"),
            "{text}"
        );
        let (text, _) = finding_text(
            7,
            "miniupnpd",
            &Finding::Libiptc("libip4tc.so.2".into()),
            lock,
            None,
            "",
            None,
        );
        assert_eq!(
            text,
            "pid 7 (miniupnpd) has libip4tc.so.2 mapped: it writes the firewall through libiptc, which takes no lock (as miniupnpd does)"
        );
    }
}
