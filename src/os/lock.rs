//! The one system-wide lock: an exclusive flock(2) on a small file, taken with a bounded,
//! blocking wait. Blocking (not polling) means the kernel hands the lock to the next
//! waiter the moment it is released.

use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::wait::{self, StdinPump, Waited};

pub const DEFAULT_LOCK_FILE: &str = "/run/xtlock.lock";

#[derive(Debug)]
pub enum LockError {
    Symlink(PathBuf),
    NotAFile(PathBuf),
    CreateDir(PathBuf, io::Error),
    Open(PathBuf, io::Error),
    Lock(PathBuf, io::Error),
    TimedOut {
        path: PathBuf,
        after: Duration,
        holder: Option<String>,
    },
    /// A queued call's result came while it waited (group commit): no lock needed.
    Served,
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::Symlink(p) => {
                write!(f, "refusing lock file {}: it is a symlink", p.display())
            }
            LockError::NotAFile(p) => {
                write!(
                    f,
                    "cannot use lock file {}: not a regular file",
                    p.display()
                )
            }
            LockError::CreateDir(p, e) => {
                write!(
                    f,
                    "cannot create directory {} for the lock file: {}",
                    p.display(),
                    crate::text::errno_text(e)
                )
            }
            LockError::Open(p, e) => write!(
                f,
                "cannot open lock file {}: {}",
                p.display(),
                crate::text::errno_text(e)
            ),
            LockError::Lock(p, e) => write!(
                f,
                "cannot lock {}: {}",
                p.display(),
                crate::text::errno_text(e)
            ),
            LockError::TimedOut {
                path,
                after,
                holder,
            } => {
                write!(
                    f,
                    "timed out after {}s waiting for {}",
                    after.as_secs_f64(),
                    path.display()
                )?;
                if let Some(holder) = holder {
                    write!(f, " (held by {holder})")?;
                }
                Ok(())
            }
            LockError::Served => write!(f, "served by the holder while waiting"),
        }
    }
}

pub struct LockFile {
    file: File,
    path: PathBuf,
    identity: (u64, u64),
}

/// Holding the lock: dropping it (or exiting) releases it.
pub struct Held {
    file: File,
}

impl Held {
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl LockError {
    /// The caller may not open the lock file (not root): it may still be allowed to run
    /// the program (CAP_NET_ADMIN), or get the program's own error, as bare.
    pub fn is_permission(&self) -> bool {
        matches!(self, LockError::Open(_, e) | LockError::CreateDir(_, e)
            if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)))
    }
}

impl LockFile {
    /// Open (creating it 0600, and its directory, if missing) without following a
    /// symlink: a lock path that is a link could be pointed anywhere by whoever owns it.
    pub fn open(path: &Path) -> Result<LockFile, LockError> {
        let file = match open_file(path) {
            // The directory is created only when missing (/run is a tmpfs, emptied at boot).
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
                let Some(dir) = dir else {
                    return Err(LockError::Open(path.to_path_buf(), e));
                };
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(dir)
                    .map_err(|e| LockError::CreateDir(dir.to_path_buf(), e))?;
                open_file(path)
            }
            other => other,
        };
        let file = file.map_err(|e| classify_open_error(path, e))?;
        let meta = file
            .metadata()
            .map_err(|e| LockError::Open(path.to_path_buf(), e))?;
        if !meta.is_file() {
            return Err(LockError::NotAFile(path.to_path_buf()));
        }
        Ok(LockFile {
            file,
            path: path.to_path_buf(),
            identity: (meta.dev(), meta.ino()),
        })
    }

    /// (device, inode) of the open file: what /proc names it by.
    pub fn identity(&self) -> (u64, u64) {
        self.identity
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// Take the lock if it is free this instant.
    pub fn try_acquire(self) -> Result<Result<Held, LockFile>, LockError> {
        match self.file.try_lock() {
            Ok(()) if self.still_at_path() => Ok(Ok(Held { file: self.file })),
            // Locked a file that was replaced meanwhile: queue for the one at the path.
            Ok(()) => LockFile::open(&self.path).map(Err),
            Err(TryLockError::WouldBlock) => Ok(Err(self)),
            Err(TryLockError::Error(e)) => Err(LockError::Lock(self.path.clone(), e)),
        }
    }

    /// Take the lock, waiting until `deadline` (`timeout` is for the message), with the
    /// caller's stdin pumped meanwhile if `pump` is given, or until `wake` is readable.
    pub fn acquire(
        self,
        deadline: Instant,
        timeout: Duration,
        mut pump: Option<&mut StdinPump>,
        wake: Option<std::os::fd::RawFd>,
    ) -> Result<Held, LockError> {
        let mut lock_file = self;
        loop {
            lock_file.wait_for_flock(deadline, timeout, pump.as_deref_mut(), wake)?;
            // If the file was deleted or replaced while we waited, we hold a lock nobody
            // else will ever ask for: open the path again and lock that.
            if lock_file.still_at_path() {
                return Ok(Held {
                    file: lock_file.file,
                });
            }
            lock_file = LockFile::open(&lock_file.path)?;
        }
    }

    /// Block in flock(2) until `deadline`.
    fn wait_for_flock(
        &self,
        deadline: Instant,
        timeout: Duration,
        pump: Option<&mut StdinPump>,
        wake: Option<std::os::fd::RawFd>,
    ) -> Result<(), LockError> {
        match self.file.try_lock() {
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => return Err(LockError::Lock(self.path.clone(), e)),
        }
        let lock_error = |e| LockError::Lock(self.path.clone(), e);
        let waiter = self.file.try_clone().map_err(lock_error)?;
        match wait::until(deadline, pump, wake, move || waiter.lock()).map_err(lock_error)? {
            Waited::Woken => Err(LockError::Served),
            Waited::Done(Ok(())) => Ok(()),
            Waited::Done(Err(e)) => Err(lock_error(e)),
            Waited::TimedOut => Err(LockError::TimedOut {
                path: self.path.clone(),
                after: timeout,
                holder: self.holder(),
            }),
        }
    }

    fn still_at_path(&self) -> bool {
        let named = std::fs::symlink_metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        named == Some(self.identity)
    }

    /// "pid 812: iptables -N f2b-sshd", from /proc/locks, for a waiter's message.
    pub fn holder(&self) -> Option<String> {
        let (dev, ino) = self.identity;
        let pids = crate::procinfo::flock_holders(dev, ino);
        let pid = *pids.first()?;
        Some(format!("pid {pid}: {}", crate::procinfo::describe(pid)))
    }
}

/// Are these two paths one file (device and inode, links followed)? One that does not
/// exist yet is the other if its absolute path is the same (it will be made there).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => std::path::absolute(a).ok() == std::path::absolute(b).ok(),
    }
}

/// O_NOFOLLOW refuses a symlink; O_NONBLOCK keeps a FIFO planted at the path from
/// hanging us. On a read-only file system, a file we may not write, or an immutable one
/// (`chattr +i`: EPERM even for root) the file is opened read-only: flock works on any
/// descriptor, as long as the file exists.
fn open_file(path: &Path) -> io::Result<File> {
    let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK;
    let writable = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(flags)
        .open(path);
    match writable {
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EROFS | libc::EACCES | libc::EPERM)
            ) =>
        {
            OpenOptions::new()
                .read(true)
                .custom_flags(flags)
                .open(path)
                .map_err(|_| e)
        }
        other => other,
    }
}

fn classify_open_error(path: &Path, e: io::Error) -> LockError {
    match e.raw_os_error() {
        Some(libc::ELOOP) => LockError::Symlink(path.to_path_buf()),
        Some(libc::EISDIR) => LockError::NotAFile(path.to_path_buf()),
        _ => LockError::Open(path.to_path_buf(), e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lock at `path`, taken at once.
    fn held_at(path: &Path) -> Held {
        LockFile::open(path)
            .unwrap()
            .acquire_for(Duration::ZERO)
            .unwrap()
    }

    trait AcquireFor {
        fn acquire_for(self, timeout: Duration) -> Result<Held, LockError>;
    }

    impl AcquireFor for LockFile {
        fn acquire_for(self, timeout: Duration) -> Result<Held, LockError> {
            self.acquire(Instant::now() + timeout, timeout, None, None)
        }
    }

    #[test]
    fn creates_file_and_dir_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/x.lock");
        let held = LockFile::open(&path)
            .unwrap()
            .acquire_for(Duration::from_secs(1))
            .unwrap();
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        drop(held);
    }

    #[test]
    fn refuses_symlink_and_directory() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = LockFile::open(&link).err().unwrap();
        assert!(matches!(err, LockError::Symlink(_)), "{err}");
        assert!(!target.exists(), "nothing created through the link");
        let err = LockFile::open(dir.path()).err().unwrap();
        assert!(matches!(err, LockError::NotAFile(_)), "{err}");
    }

    #[test]
    fn times_out_naming_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let _held = held_at(&path);
        let start = Instant::now();
        let err = LockFile::open(&path)
            .unwrap()
            .acquire_for(Duration::from_millis(100))
            .err()
            .unwrap();
        // The waiter waited its whole timeout before giving up.
        assert!(start.elapsed() >= Duration::from_millis(100), "{err}");
        let text = err.to_string();
        let want = format!(
            "timed out after 0.1s waiting for {} (held by pid {}:",
            path.display(),
            std::process::id()
        );
        assert!(text.starts_with(&want), "{text}");
    }

    #[test]
    fn waiter_gets_lock_when_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let held = held_at(&path);
        let path2 = path.clone();
        let (got, waited) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let result = LockFile::open(&path2)
                .unwrap()
                .acquire_for(Duration::from_secs(10));
            let _ = got.send(result.map(drop).map_err(|e| e.to_string()));
        });
        // While we hold it, the waiter must still be waiting (not locked, not failed).
        assert!(
            waited.recv_timeout(Duration::from_millis(300)).is_err(),
            "the waiter did not wait for the holder"
        );
        drop(held);
        let result = waited.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(result.is_ok(), "{result:?}");
    }

    #[test]
    fn relocks_a_replaced_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let stale = LockFile::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let held = stale.acquire_for(Duration::ZERO).unwrap();
        // The lock we hold must be on the file now at the path.
        let fresh = LockFile::open(&path).unwrap();
        let err = fresh.acquire_for(Duration::ZERO).err();
        assert!(matches!(err, Some(LockError::TimedOut { .. })), "{err:?}");
        drop(held);
    }
}
