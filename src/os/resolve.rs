//! Finding the real program: the next executable of our name in PATH that is not
//! xtlock itself (ccache's masquerade rules). argv[0] is never trusted for "is it me":
//! candidates are compared with the running binary by (device, inode) once symlinks are
//! followed. That is what a canonical path names, and it also catches hard links, which
//! canonical paths miss, without a readlink per path component.

use crate::classify::Backend;
use crate::status::Failure;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// How the caller named the program.
pub enum Target {
    /// A bare name, looked up in PATH, skipping xtlock.
    Name(OsString),
    /// A name with a `/`, taken as given.
    Path(PathBuf),
    /// A shim called by this path (as ufw calls /usr/sbin/iptables): if that path is
    /// xtlock by `install --divert`, the program it replaced; else the name, in PATH.
    CalledAs(PathBuf, OsString),
}

/// Used when PATH is unset: the PATH systemd gives services (src/basic/path-util.h,
/// DEFAULT_PATH_NORMAL), not glibc execvp's `/bin:/usr/bin`, which misses /usr/sbin
/// where iptables lives.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What one PATH candidate turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Candidate {
    Missing,
    NotExecutable,
    Xtlock,
    Program,
    /// xtlock put in place of a program by `xtlock install --divert`: the real one is
    /// where dpkg-divert moved it.
    Diverted(PathBuf),
}

/// `xtlock install --divert` renames /usr/sbin/NAME to /usr/sbin/NAME.xtlock-real.
pub const DIVERT_SUFFIX: &str = ".xtlock-real";

/// If `path` reaches xtlock through a file that `install --divert` replaced, the real
/// program that file was: each link on the way (/usr/sbin/iptables, then
/// /etc/alternatives/iptables, then /usr/sbin/iptables-nft) is checked for a diverted
/// original beside it.
pub fn diverted_real(path: &Path) -> Option<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        let mut diverted = current.clone().into_os_string();
        diverted.push(DIVERT_SUFFIX);
        let diverted = PathBuf::from(diverted);
        if std::fs::metadata(&diverted).is_ok_and(|m| m.is_file()) {
            return Some(diverted);
        }
        let target = std::fs::read_link(&current).ok()?;
        current = match target.is_absolute() {
            true => target,
            false => current.parent()?.join(target),
        };
    }
    None
}

#[derive(Debug, PartialEq, Eq)]
pub enum ResolveError {
    /// No such program (the caller exits 127: `status::Failure::NotFound`).
    NotFound {
        name: OsString,
        skipped_self: Vec<PathBuf>,
    },
    /// The only match (or the path given) cannot be executed (126: `CannotRun`).
    NotExecutable { path: PathBuf },
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::NotFound { name, skipped_self } => {
                let name = Path::new(name).display();
                if name.to_string().contains('/') {
                    return write!(f, "{name}: no such file");
                }
                write!(f, "{name}: not found in PATH")?;
                if !skipped_self.is_empty() {
                    let list: Vec<String> = skipped_self
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect();
                    write!(f, " (skipped {}: that is xtlock)", list.join(", "))?;
                }
                Ok(())
            }
            ResolveError::NotExecutable { path } => {
                write!(f, "{}: permission denied (not executable)", path.display())
            }
        }
    }
}

/// Walk `path_var` for `name`. Acceptance rules, in order:
/// 1. the entry exists and is a regular file once symlinks are followed;
/// 2. it is executable by us;
/// 3. it is not xtlock (the same inode as the running binary),
///    so a shim never finds itself, whatever name or link it was called by.
///
/// The returned path is the PATH entry itself, not its canonical target: xtables
/// multi-call binaries dispatch on the name they are run by.
pub fn find_in_path(
    name: &OsStr,
    path_var: Option<&OsStr>,
    probe: impl Fn(&Path) -> Candidate,
) -> Result<PathBuf, ResolveError> {
    let path_var = path_var.unwrap_or(OsStr::new(DEFAULT_PATH));
    let mut skipped_self = Vec::new();
    let mut not_executable = None;
    for dir in std::env::split_paths(path_var) {
        // An empty PATH element means the current directory, as in execvp.
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = dir.join(name);
        match probe(&candidate) {
            Candidate::Program => return Ok(candidate),
            Candidate::Diverted(real) => return Ok(real),
            Candidate::Xtlock => skipped_self.push(candidate),
            Candidate::NotExecutable => {
                not_executable.get_or_insert(candidate);
            }
            Candidate::Missing => {}
        }
    }
    match not_executable {
        Some(path) => Err(ResolveError::NotExecutable { path }),
        None => Err(ResolveError::NotFound {
            name: name.to_os_string(),
            skipped_self,
        }),
    }
}

/// A program named by a path (it contains a `/`) is taken as it is, xtlock included:
/// running xtlock under a shim name through a path is a nested call, not a loop.
pub fn check_path(
    path: &Path,
    probe: impl Fn(&Path) -> Candidate,
) -> Result<PathBuf, ResolveError> {
    match probe(path) {
        Candidate::Program | Candidate::Xtlock => Ok(path.to_path_buf()),
        Candidate::Diverted(real) => Ok(real),
        Candidate::NotExecutable => Err(ResolveError::NotExecutable {
            path: path.to_path_buf(),
        }),
        Candidate::Missing => Err(ResolveError::NotFound {
            name: path.as_os_str().to_os_string(),
            skipped_self: Vec::new(),
        }),
    }
}

/// The running binary, identified the way the kernel does.
#[derive(Debug, Clone)]
pub struct SelfIdentity {
    dev: u64,
    ino: u64,
}

impl SelfIdentity {
    /// /proc/self/exe names our inode even after an upgrade replaced the file. (Then the
    /// new binary at the shim's path is another inode and is run as the "real" program;
    /// it finds the real one itself, and runs under our lock as a nested call.)
    /// Without /proc (a chroot), the path the kernel ran us by (AT_EXECFN) still leads
    /// to our file.
    pub fn current() -> Option<SelfIdentity> {
        let meta = std::fs::metadata("/proc/self/exe")
            .or_else(|_| std::fs::metadata(exec_path()?))
            .ok()?;
        Some(SelfIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// Is `path` (once symlinks are followed) this very binary?
    pub fn is(&self, path: &Path) -> bool {
        std::fs::metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == (self.dev, self.ino))
    }

    /// The real file-system probe used by `find_in_path`.
    pub fn probe(&self, candidate: &Path) -> Candidate {
        let Ok(meta) = std::fs::metadata(candidate) else {
            return Candidate::Missing;
        };
        if !meta.is_file() {
            return Candidate::Missing;
        }
        if (meta.dev(), meta.ino()) == (self.dev, self.ino) {
            return diverted_real(candidate).map_or(Candidate::Xtlock, Candidate::Diverted);
        }
        if !is_executable(candidate) {
            return Candidate::NotExecutable;
        }
        Candidate::Program
    }
}

/// The file name given to execve for this process, from the auxiliary vector.
fn exec_path() -> std::io::Result<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let not_found = || std::io::Error::from(std::io::ErrorKind::NotFound);
    // SAFETY: getauxval has no preconditions; it returns 0 for an absent entry.
    let pointer = unsafe { libc::getauxval(libc::AT_EXECFN) } as *const libc::c_char;
    if pointer.is_null() {
        return Err(not_found());
    }
    // SAFETY: AT_EXECFN points at the NUL-terminated file name the kernel put on our
    // stack at exec, which lives as long as the process.
    let name = unsafe { std::ffi::CStr::from_ptr(pointer) };
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes())))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // access(2) answers for our real uid, and knows about root's special case.
    // SAFETY: `c_path` is NUL-terminated and outlives the call.
    unsafe { libc::access(c_path.as_ptr(), libc::X_OK) == 0 }
}

/// The real program `target` names (never xtlock itself), or why there is none.
pub fn program_for(target: &Target, name: &str) -> Result<PathBuf, Failure> {
    let me = SelfIdentity::current();
    let probe = |p: &Path| match &me {
        Some(me) => me.probe(p),
        // Neither /proc nor the path we were run by: we cannot tell ourselves apart;
        // the depth guard still stops a loop.
        None => Candidate::Program,
    };
    let path_var = std::env::var_os("PATH");
    let found = match target {
        Target::Name(name) => find_in_path(name, path_var.as_deref(), probe),
        Target::Path(path) => check_path(path, probe),
        Target::CalledAs(path, name) => match probe(path) {
            Candidate::Diverted(real) => Ok(real),
            _ => find_in_path(name, path_var.as_deref(), probe),
        },
    };
    found.map_err(|e| match &e {
        ResolveError::NotExecutable { .. } => Failure::CannotRun(format!("{name}: {e}")),
        ResolveError::NotFound { .. } => Failure::NotFound(e.to_string()),
    })
}

/// The backend of the multi-call binary `path` reaches through its links.
pub fn backend_of(path: &Path) -> Option<Backend> {
    let real = std::fs::canonicalize(path).ok()?;
    crate::classify::backend_of_multi(real.file_name()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn stub(entries: &[(&str, Candidate)]) -> impl Fn(&Path) -> Candidate {
        let map: HashMap<PathBuf, Candidate> = entries
            .iter()
            .map(|(p, c)| (PathBuf::from(p), c.clone()))
            .collect();
        move |p: &Path| map.get(p).cloned().unwrap_or(Candidate::Missing)
    }

    use Candidate::*;

    #[test]
    fn path_walk_table() {
        struct Case {
            path: &'static str,
            fs: Vec<(&'static str, Candidate)>,
            want: Result<&'static str, &'static str>,
        }
        let cases = vec![
            // The shim first, the real one later: skip the shim.
            Case {
                path: "/shim:/usr/sbin",
                fs: vec![("/shim/iptables", Xtlock), ("/usr/sbin/iptables", Program)],
                want: Ok("/usr/sbin/iptables"),
            },
            // The first real one wins, even before the shim.
            Case {
                path: "/usr/sbin:/shim",
                fs: vec![("/shim/iptables", Xtlock), ("/usr/sbin/iptables", Program)],
                want: Ok("/usr/sbin/iptables"),
            },
            // Two shim links (symlink and hard link) both skipped.
            Case {
                path: "/a:/b:/c",
                fs: vec![
                    ("/a/iptables", Xtlock),
                    ("/b/iptables", Xtlock),
                    ("/c/iptables", Program),
                ],
                want: Ok("/c/iptables"),
            },
            // Only xtlock in PATH: not found, naming what was skipped.
            Case {
                path: "/a:/b",
                fs: vec![("/a/iptables", Xtlock)],
                want: Err("iptables: not found in PATH (skipped /a/iptables: that is xtlock)"),
            },
            // Nothing at all.
            Case {
                path: "/a:/b",
                fs: vec![],
                want: Err("iptables: not found in PATH"),
            },
            // Not executable, then a good one: the good one.
            Case {
                path: "/a:/b",
                fs: vec![("/a/iptables", NotExecutable), ("/b/iptables", Program)],
                want: Ok("/b/iptables"),
            },
            // Only a non-executable one: 126, naming it.
            Case {
                path: "/a:/b",
                fs: vec![("/b/iptables", NotExecutable)],
                want: Err("/b/iptables: permission denied (not executable)"),
            },
            // Empty elements mean the current directory.
            Case {
                path: "/a::/b",
                fs: vec![("./iptables", Program), ("/b/iptables", Program)],
                want: Ok("./iptables"),
            },
            // A diverted xtlock: the program it replaced.
            Case {
                path: "/shim:/usr/sbin",
                fs: vec![
                    ("/shim/iptables", Xtlock),
                    (
                        "/usr/sbin/iptables",
                        Diverted("/usr/sbin/iptables-nft.xtlock-real".into()),
                    ),
                ],
                want: Ok("/usr/sbin/iptables-nft.xtlock-real"),
            },
            Case {
                path: "",
                fs: vec![("./iptables", Program)],
                want: Ok("./iptables"),
            },
        ];
        for case in cases {
            let got = find_in_path(
                OsStr::new("iptables"),
                Some(OsStr::new(case.path)),
                stub(&case.fs),
            );
            let got = got
                .map(|p| p.display().to_string())
                .map_err(|e| e.to_string());
            let want = case.want.map(str::to_string).map_err(str::to_string);
            assert_eq!(got, want, "PATH={}", case.path);
        }
    }

    #[test]
    fn unset_path_uses_default() {
        let got = find_in_path(
            OsStr::new("iptables"),
            None,
            stub(&[("/usr/sbin/iptables", Program)]),
        );
        assert_eq!(got, Ok(PathBuf::from("/usr/sbin/iptables")));
    }

    #[test]
    fn explicit_path() {
        let probe = stub(&[
            ("/x/ok", Program),
            ("/x/noexec", NotExecutable),
            ("/x/me", Xtlock),
        ]);
        assert_eq!(
            check_path(Path::new("/x/ok"), &probe),
            Ok(PathBuf::from("/x/ok"))
        );
        assert_eq!(
            check_path(Path::new("/x/me"), &probe),
            Ok(PathBuf::from("/x/me"))
        );
        assert!(matches!(
            check_path(Path::new("/x/noexec"), &probe),
            Err(ResolveError::NotExecutable { .. })
        ));
        let missing = check_path(Path::new("/x/gone"), &probe).unwrap_err();
        assert!(matches!(missing, ResolveError::NotFound { .. }));
        assert_eq!(missing.to_string(), "/x/gone: no such file");
    }

    #[test]
    fn real_probe_knows_itself() {
        let me = SelfIdentity::current().expect("identity");
        let exe = std::env::current_exe().unwrap();
        assert_eq!(me.probe(&exe), Xtlock);
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("iptables");
        std::os::unix::fs::symlink(&exe, &link).unwrap();
        assert_eq!(me.probe(&link), Xtlock);
        let copy = dir.path().join("copy");
        std::fs::copy(&exe, &copy).unwrap();
        assert_eq!(
            me.probe(&copy),
            Program,
            "a copy is another inode: the depth guard catches it"
        );
        assert_eq!(
            me.probe(dir.path()),
            Missing,
            "a directory is not a program"
        );
    }
}
