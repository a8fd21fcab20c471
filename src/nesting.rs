//! Calls within calls. A script run under the lock may call iptables again through a
//! shim; that nested call must not wait for a lock its own ancestor holds. It is
//! recognised by what the kernel says, not by the environment (which `env -i` and sudo
//! clear): a live ancestor holds an exclusive flock on this very lock file.
//!
//! A nested call may outlive the call that holds the lock for it (the script put it in
//! the background). So that it never runs beside the next holder, the two meet on an
//! open-file-description lock on byte 0 of the lock file (F_OFD_SETLKW; independent of
//! flock on Linux): a nested call holds a read lock while it runs, and a holder takes
//! the write lock, waiting for its nested calls, before it releases the flock. A nested
//! call that comes too late finds the flock released and queues like any other caller.
//! (If the holder is killed by SIGKILL, the kernel releases both at once; nothing can
//! help then.)
//!
//! And a copy of xtlock placed ahead of the real program must end in an error, not a
//! fork loop: the depth counter (as rustup's RUST_RECURSION_COUNT).

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsRawFd;

/// Set for the program: how many xtlock calls enclose it.
pub const DEPTH_VAR: &str = "XTLOCK_DEPTH";
/// Set for the program: the pid of the xtlock that holds the lock for it. Only used
/// where /proc cannot be read (then a nested call trusts its direct parent alone).
pub const HOLDER_VAR: &str = "XTLOCK_HOLDER";
pub const MAX_DEPTH: u32 = 16;

pub fn depth(value: Option<&OsStr>) -> u32 {
    value
        .and_then(|v| v.to_str())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn ofd_lock(file: &File, kind: libc::c_short, wait: bool) -> bool {
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = 0;
    lock.l_len = 1;
    let command = if wait {
        libc::F_OFD_SETLKW
    } else {
        libc::F_OFD_SETLK
    };
    loop {
        if unsafe { libc::fcntl(file.as_raw_fd(), command, &lock) } == 0 {
            return true;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return false;
        }
    }
}

/// Is the lock (dev, ino), busy as we found it, held for us by an ancestor? If so,
/// hold the read lock that keeps the holder from leaving while we run.
pub fn join_ancestor(file: &File, identity: (u64, u64)) -> bool {
    if !ofd_lock(file, libc::F_RDLCK as libc::c_short, true) {
        return holder_is_parent_without_proc();
    }
    let (dev, ino) = identity;
    let held_for_us = if std::path::Path::new("/proc/self/fd").exists() {
        crate::procinfo::ancestors()
            .into_iter()
            .any(|pid| crate::procinfo::holds_flock(pid, dev, ino))
    } else {
        holder_is_parent_without_proc()
    };
    if !held_for_us {
        ofd_lock(file, libc::F_UNLCK as libc::c_short, false);
    }
    held_for_us
}

/// Without /proc nothing but our parent can be checked: an xtlock that holds the lock
/// for its child keeps it until that child has exited.
fn holder_is_parent_without_proc() -> bool {
    std::env::var_os(HOLDER_VAR)
        .and_then(|v| v.to_str()?.parse::<u32>().ok())
        .is_some_and(|pid| pid == std::os::unix::process::parent_id())
}

/// The holder, done: wait until no nested call of ours runs, then the flock may go.
pub fn wait_for_nested_calls(file: &File) {
    ofd_lock(file, libc::F_WRLCK as libc::c_short, true);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_rw(path: &std::path::Path) -> File {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .unwrap()
    }

    #[test]
    fn depth_parse() {
        assert_eq!(depth(None), 0);
        assert_eq!(depth(Some(OsStr::new("3"))), 3);
        assert_eq!(depth(Some(OsStr::new("junk"))), 0);
    }

    #[test]
    fn a_lock_held_by_nobody_above_us_is_not_ours() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let open = || open_rw(&path);
        let holder = open();
        holder.lock().unwrap(); // held by us: we are not our own ancestor
        let meta = holder.metadata().unwrap();
        let ours = open();
        assert!(!join_ancestor(&ours, (meta.dev(), meta.ino())));
        // The read lock was given back: a holder can take the write lock at once.
        let other = open();
        assert!(ofd_lock(&other, libc::F_WRLCK as libc::c_short, false));
    }

    #[test]
    fn a_holder_waits_for_its_nested_calls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let open = || open_rw(&path);
        let nested = open();
        assert!(ofd_lock(&nested, libc::F_RDLCK as libc::c_short, false));
        let holder = open();
        assert!(
            !ofd_lock(&holder, libc::F_WRLCK as libc::c_short, false),
            "a nested call runs"
        );
        drop(nested);
        assert!(ofd_lock(&holder, libc::F_WRLCK as libc::c_short, false));
    }
}
