//! `doctor`'s look at the lock file's directory (/run) as this process sees it: a
//! sandboxed service can have it read-only (systemd's ProtectSystem=strict) or not at
//! all. What xtlock then does follows `lock::open_file` and `guard::take`; `verdict`
//! says it, as a pure function of what `look` saw.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// May this process write (create in) a directory, or open a file?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Yes,
    ReadOnlyFs,
    Denied,
    Missing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    Writable,
    /// Readable, not writable: a read-only file system, a mode, `chattr +i`.
    ReadOnly,
    Unreadable,
    Absent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub file: FileState,
    /// Write access to the lock file's directory.
    pub dir: Access,
    /// Where the directory is missing: write access to its nearest existing ancestor
    /// (xtlock creates the missing ones, `lock::LockFile::open`).
    pub ancestor: Access,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok(String),
    Note(String),
    Problem(String, String),
}

/// What xtlock does with this lock file, for callers with the privileges of this one
/// (`privileged`: root or CAP_NET_ADMIN, `procinfo::may_change_firewall`). None: the
/// ordinary case (writable, or made by the first call), which `check_lock` reports.
pub fn verdict(path: &Path, dir: &Path, f: Facts, privileged: bool) -> Option<Verdict> {
    let p = path.display();
    let d = dir.display();
    // guard::take: a caller that may not open the lock file runs as bare only when it
    // may not change the firewall anyway (iptables then fails on its own); one that
    // may is refused (exit 4), never run unlocked.
    let refused = |why: String, fix: String| match privileged {
        true => Verdict::Problem(
            format!(
                "lock {p}: {why}: every call of a root or CAP_NET_ADMIN caller like this one exits 4"
            ),
            fix,
        ),
        false => Verdict::Note(format!(
            "lock {p}: {why}: calls of this user run unlocked, as bare (it may not change the firewall; with CAP_NET_ADMIN they would exit 4)"
        )),
    };
    let tmpfiles = format!(
        "create it before such callers start where {d} is writable (tmpfiles.d: `f {p} 0600 root root -`), or set lock_file to a writable place"
    );
    match (f.file, f.dir, f.ancestor) {
        (FileState::Writable, ..) => None,
        // lock::open_file: EROFS, EACCES or EPERM on the read-write open makes it open
        // the file read-only, and flock(2) locks any open descriptor.
        (FileState::ReadOnly, ..) => Some(Verdict::Note(format!(
            "lock {p}: read-only here: xtlock opens it read-only and still locks it (flock needs no write access), so calls share it"
        ))),
        (FileState::Unreadable, ..) => Some(refused(
            "this user may not open it".into(),
            format!("let the callers' user read {p}, or run them as root"),
        )),
        (FileState::Absent, Access::Yes, _) => None,
        // The read-write open fails with EROFS and the read-only one finds no file:
        // lock::open_file returns EROFS, which is no permission error (exit 4 for all).
        (FileState::Absent, Access::ReadOnlyFs, _) => Some(Verdict::Problem(
            format!(
                "lock {p}: absent, and {d} is read-only (a sandboxed service): every call exits 4 (cannot open lock file {p}: Read-only file system)"
            ),
            tmpfiles,
        )),
        (FileState::Absent, Access::Denied, _) => Some(refused(
            format!("absent, and this user may not create it in {d}"),
            tmpfiles,
        )),
        (FileState::Absent, Access::Missing, Access::Yes) => Some(Verdict::Ok(format!(
            "lock {p}: {d} is missing; the first call creates it (mode 0755) and the lock file"
        ))),
        (FileState::Absent, Access::Missing, Access::ReadOnlyFs) => Some(Verdict::Problem(
            format!(
                "lock {p}: {d} is missing and cannot be made (read-only file system): every call exits 4 (cannot create directory {d} for the lock file)"
            ),
            format!(
                "create {d} and the lock file where they can be made (tmpfiles.d: `d {d} 0755 root root -`, `f {p} 0600 root root -`), or set lock_file to a writable place"
            ),
        )),
        (FileState::Absent, Access::Missing, _) => Some(refused(
            format!("{d} is missing and this user may not create it"),
            format!(
                "create {d} (tmpfiles.d: `d {d} 0755 root root -`), or set lock_file to a writable place"
            ),
        )),
    }
}

/// iptables' own lock in a read-only directory: legacy iptables 1.8.9 opens it with
/// O_CREAT (xshared.c), which fails with EROFS when the file is absent ("Fatal: can't
/// open lock file ...", exit 4), through xtlock or not; an existing one opens fine.
pub fn xtables_verdict(path: &Path, dir: Access, exists: bool) -> Option<Verdict> {
    let p = path.display();
    (!exists && dir == Access::ReadOnlyFs).then(|| {
        Verdict::Problem(
            format!(
                "iptables' lock {p}: absent in a read-only directory: every legacy iptables call exits 4 (Fatal: can't open lock file {p}: Read-only file system), through xtlock or not"
            ),
            format!("create it before such callers start where it is writable (tmpfiles.d: `f {p} 0600 root root -`)"),
        )
    })
}

/// faccessat(2) with the effective ids, as open(2) and mkdir(2) check.
fn access(path: &Path, mode: libc::c_int) -> Access {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return Access::Missing;
    };
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    let rc = unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), mode, libc::AT_EACCESS) };
    if rc == 0 {
        return Access::Yes;
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EROFS) => Access::ReadOnlyFs,
        Some(libc::ENOENT | libc::ENOTDIR) => Access::Missing,
        _ => Access::Denied,
    }
}

/// Write access to the directory of `path`.
pub fn dir_access(path: &Path) -> Access {
    access(
        path.parent().unwrap_or(Path::new("/")),
        libc::W_OK | libc::X_OK,
    )
}

/// The lock file and its directory as this process finds them.
pub fn look(path: &Path) -> Facts {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let file = match std::fs::symlink_metadata(path) {
        Err(_) => FileState::Absent,
        Ok(_) => match access(path, libc::R_OK | libc::W_OK) {
            Access::Yes => FileState::Writable,
            _ if access(path, libc::R_OK) == Access::Yes => FileState::ReadOnly,
            _ => FileState::Unreadable,
        },
    };
    let dir_access = access(dir, libc::W_OK | libc::X_OK);
    let ancestor = match dir_access {
        Access::Missing => dir
            .ancestors()
            .skip(1)
            .find(|a| a.exists())
            .map_or(Access::Missing, |a| access(a, libc::W_OK | libc::X_OK)),
        other => other,
    };
    Facts {
        file,
        dir: dir_access,
        ancestor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        use Access::*;
        use FileState::*;
        let p = Path::new("/run/xtlock.lock");
        let d = Path::new("/run");
        let kind = |v: &Option<Verdict>| match v {
            None => "none",
            Some(Verdict::Ok(_)) => "ok",
            Some(Verdict::Note(_)) => "note",
            Some(Verdict::Problem(..)) => "problem",
        };
        for (file, dir, ancestor, privileged, want, says) in [
            (Writable, Yes, Yes, true, "none", ""),
            (Absent, Yes, Yes, true, "none", ""),
            // ProtectSystem=strict with the host's lock file there: shared, locked read-only.
            (
                ReadOnly,
                ReadOnlyFs,
                ReadOnlyFs,
                true,
                "note",
                "opens it read-only and still locks it",
            ),
            (ReadOnly, Yes, Yes, false, "note", "opens it read-only"),
            // ... and without it: every call fails, root or not.
            (
                Absent,
                ReadOnlyFs,
                ReadOnlyFs,
                true,
                "problem",
                "every call exits 4 (cannot open lock file /run/xtlock.lock: Read-only file system)",
            ),
            (
                Absent,
                ReadOnlyFs,
                ReadOnlyFs,
                false,
                "problem",
                "every call exits 4",
            ),
            (
                Unreadable,
                Yes,
                Yes,
                true,
                "problem",
                "may not open it: every call of a root or CAP_NET_ADMIN caller like this one exits 4",
            ),
            (Unreadable, Yes, Yes, false, "note", "run unlocked, as bare"),
            (
                Absent,
                Denied,
                Denied,
                false,
                "note",
                "may not create it in /run: calls of this user run unlocked",
            ),
            (Absent, Denied, Denied, true, "problem", "exits 4"),
            (
                Absent,
                Missing,
                Yes,
                true,
                "ok",
                "the first call creates it",
            ),
            (
                Absent,
                Missing,
                ReadOnlyFs,
                true,
                "problem",
                "cannot be made (read-only file system): every call exits 4",
            ),
            (Absent, Missing, Denied, false, "note", "run unlocked"),
        ] {
            let facts = Facts {
                file,
                dir,
                ancestor,
            };
            let v = verdict(p, d, facts, privileged);
            assert_eq!(kind(&v), want, "{facts:?} privileged={privileged}: {v:?}");
            let text = match &v {
                Some(Verdict::Ok(t) | Verdict::Note(t) | Verdict::Problem(t, _)) => t.clone(),
                None => String::new(),
            };
            assert!(text.contains(says), "{facts:?}: {text}");
        }
    }

    #[test]
    fn xtables_verdicts() {
        let p = Path::new("/run/xtables.lock");
        assert!(
            matches!(xtables_verdict(p, Access::ReadOnlyFs, false), Some(Verdict::Problem(t, _)) if t.contains("every legacy iptables call exits 4"))
        );
        assert_eq!(xtables_verdict(p, Access::ReadOnlyFs, true), None);
        assert_eq!(xtables_verdict(p, Access::Yes, false), None);
        assert_eq!(xtables_verdict(p, Access::Missing, false), None);
    }

    #[test]
    fn look_at_a_temp_dir() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("x.lock");
        let f = look(&lock);
        assert_eq!((f.file, f.dir), (FileState::Absent, Access::Yes));
        std::fs::write(&lock, "").unwrap();
        assert_eq!(look(&lock).file, FileState::Writable);
        let deep = dir.path().join("a/b/x.lock");
        let f = look(&deep);
        assert_eq!(
            (f.file, f.dir, f.ancestor),
            (FileState::Absent, Access::Missing, Access::Yes)
        );
    }
}
