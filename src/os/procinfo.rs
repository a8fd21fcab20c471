//! Reading /proc: who a process is, who its parent is, and who holds an flock.
//! Used to name the lock holder in errors and to recognise a nested call. Text
//! formatting lives in `text`; nothing here writes a log.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

/// Is this process root (effective uid 0)?
pub fn running_as_root() -> bool {
    // SAFETY: geteuid cannot fail and has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// May this process change the firewall: root, or CAP_NET_ADMIN in its effective set
/// (a service running as a user with that capability)? Read with capget(2), which
/// needs no /proc.
pub fn may_change_firewall() -> bool {
    if running_as_root() {
        return true;
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    const CAP_NET_ADMIN: u32 = 12;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: version 3 takes a header and two data structs, laid out as the kernel's
    // (linux/capability.h); pid 0 is this thread.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    // If the kernel will not say, assume the caller may: it then never runs unlocked.
    rc != 0 || data[0].effective & (1 << CAP_NET_ADMIN) != 0
}

/// A process's argv, or None if it is gone or unreadable.
pub fn cmdline(pid: u32) -> Option<Vec<OsString>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if raw.is_empty() {
        return None; // a zombie or a kernel thread
    }
    let raw = raw.strip_suffix(b"\0").unwrap_or(&raw);
    Some(
        raw.split(|&b| b == 0)
            .map(|a| OsString::from_vec(a.to_vec()))
            .collect(),
    )
}

/// `cmdline` joined for humans (shell-quoted), or `?` if unknown.
pub fn describe(pid: u32) -> String {
    match cmdline(pid) {
        Some(argv) => crate::text::shell_join(&argv),
        None => "?".to_string(),
    }
}

/// The parent of `pid`, from /proc/PID/stat (the field after the `(comm)`).
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_ppid(&stat)
}

fn parse_stat_ppid(stat: &str) -> Option<u32> {
    // comm may contain spaces and parentheses: the last ')' ends it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// How long `pid` has been running, in seconds (from its start time in /proc/PID/stat).
pub fn age_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    // Field 22 of stat; `rest` starts at field 3.
    let start_ticks: f64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((uptime - start_ticks / ticks_per_sec).max(0.0))
}

/// Our parent, grandparent, ... up to (not including) init, nearest first, as the
/// mounted /proc numbers them (read through /proc/self, so that a process in a PID
/// namespace under its parent's /proc still sees its ancestors). Without /proc, none.
pub fn ancestors() -> Vec<u32> {
    let mut chain = Vec::new();
    let Some(mut current) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| parse_stat_ppid(&stat))
    else {
        return chain;
    };
    while current > 1 && chain.len() < 256 && !chain.contains(&current) {
        chain.push(current);
        match parent_of(current) {
            Some(parent) => current = parent,
            None => break,
        }
    }
    chain
}

/// Does an ancestor of ours hold the flock on the lock file (dev, ino), or a gate read
/// lock (a nested call running under it)? Only the descriptors whose link names the
/// lock file are looked at, and only their fdinfo is read: nothing here touches another
/// file system (a stat of a descriptor on a hung NFS mount would never return), and a
/// parent with thousands of descriptors costs a readlink each.
pub fn ancestor_in_lock(path: &std::path::Path, identity: (u64, u64)) -> bool {
    let Ok(path) = std::fs::canonicalize(path) else {
        return false;
    };
    let id = lock_id(identity);
    ancestors()
        .into_iter()
        .any(|pid| has_lock_on(pid, &path, &id))
}

/// How /proc/locks and fdinfo name a file: `MAJ:MIN:INODE`, the device in hex.
fn lock_id((dev, ino): (u64, u64)) -> String {
    format!("{:02x}:{:02x}:{ino}", libc::major(dev), libc::minor(dev))
}

fn has_lock_on(pid: u32, path: &std::path::Path, id: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    entries.flatten().any(|entry| {
        std::fs::read_link(entry.path()).is_ok_and(|link| link == path) && {
            let fdinfo = format!("/proc/{pid}/fdinfo/{}", entry.file_name().to_string_lossy());
            std::fs::read_to_string(fdinfo).is_ok_and(|info| fdinfo_holds(&info, id))
        }
    })
}

/// fdinfo's `lock:` lines (Linux 4.1, commit 6c8c90319c0b) list the locks this open
/// file owns: `lock:\t1: FLOCK  ADVISORY  WRITE 812 00:1a:1234 0 EOF` for the lock,
/// `lock:\t2: OFDLCK ADVISORY  READ -1 00:1a:1234 0 0` for a gate read lock.
fn fdinfo_holds(info: &str, id: &str) -> bool {
    info.lines().any(|line| {
        let Some(rest) = line.strip_prefix("lock:") else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        matches!(fields.as_slice(),
            [_, "FLOCK", _, "WRITE", _, file, ..] | [_, "OFDLCK", _, "READ", _, file, ..]
                if *file == id)
    })
}

/// The systemd unit a process runs in (the last `.service`/`.scope` of its cgroup
/// path), to name who did something in the log.
pub fn unit_of(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    unit_in_cgroup(&text)
}

fn unit_in_cgroup(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|line| line.splitn(3, ':').nth(2))
        .flat_map(|path| path.rsplit('/'))
        .find(|part| part.ends_with(".service") || part.ends_with(".scope"))
        .map(str::to_string)
}

/// One line of /proc/locks about a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockLine {
    /// An exclusive flock held by this pid.
    Holder(u32),
    /// An flock this pid waits for (`->` lines).
    Waiter(u32),
    /// An open-file-description read lock (pid -1): a nested call running (a gate lock).
    Reader,
}

/// What /proc/locks says about the file (dev, ino): holders, waiters, gate readers.
/// Up to three reads, until one shows a holder: a line can shift out of view between two
/// pages of one read (see `read_proc_locks`), rarely in three reads running.
pub fn locks_on(dev: u64, ino: u64) -> Vec<LockLine> {
    let id = lock_id((dev, ino));
    let mut lines = Vec::new();
    for _ in 0..3 {
        lines = parse_lock_lines(&read_proc_locks().unwrap_or_default(), &id);
        if lines.iter().any(|l| matches!(l, LockLine::Holder(_))) {
            break;
        }
    }
    lines
}

/// A holder or waiter is listed once even when the list shifted back between two pages of
/// the read and showed its line twice (seen in CI with tests locking files beside it).
/// Gate readers carry no pid (-1) and are counted as read, a rare one too many.
fn parse_lock_lines(locks: &str, want: &str) -> Vec<LockLine> {
    let mut seen = Vec::new();
    locks
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [_, "FLOCK", _, "WRITE", pid, id, ..] if id == &want => {
                    pid.parse().ok().map(LockLine::Holder)
                }
                [_, "->", "FLOCK", _, _, pid, id, ..] if id == &want => {
                    pid.parse().ok().map(LockLine::Waiter)
                }
                [_, "OFDLCK", _, "READ", _, id, ..] if id == &want => Some(LockLine::Reader),
                _ => None,
            }
        })
        .filter(|line| {
            let first = *line == LockLine::Reader || !seen.contains(line);
            seen.push(*line);
            first
        })
        .collect()
}

/// Pids holding an exclusive flock on the file (dev, ino), from /proc/locks, to name
/// the holder in a message. Read to its end: past one page the kernel hands the list
/// out a page per read, and a holder further down must not be missed.
pub fn flock_holders(dev: u64, ino: u64) -> Vec<u32> {
    locks_on(dev, ino)
        .into_iter()
        .filter_map(|line| match line {
            LockLine::Holder(pid) => Some(pid),
            _ => None,
        })
        .collect()
}

/// To its end. The kernel's seq_file hands out about a page per read(2) whatever the
/// buffer, so the list is not one snapshot: a line can shift out of view between two
/// reads. Good enough to name a holder in a message; nothing decides on it.
fn read_proc_locks() -> Option<String> {
    use std::io::Read;
    let mut file = std::fs::File::open("/proc/locks").ok()?;
    let mut text = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    String::from_utf8(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_from_cgroup() {
        assert_eq!(
            unit_in_cgroup("0::/system.slice/fail2ban.service\n").as_deref(),
            Some("fail2ban.service")
        );
        assert_eq!(
            unit_in_cgroup("0::/user.slice/user-0.slice/session-3.scope\n").as_deref(),
            Some("session-3.scope")
        );
        assert_eq!(unit_in_cgroup("0::/\n"), None);
    }

    #[test]
    fn stat_with_odd_comm() {
        assert_eq!(parse_stat_ppid("42 (a) b) c) S 7 42 42 0"), Some(7));
        assert_eq!(parse_stat_ppid("42 (iptables) R 812 1 1"), Some(812));
        assert_eq!(parse_stat_ppid("garbage"), None);
    }

    #[test]
    fn locks_table() {
        let text = "\
1: FLOCK  ADVISORY  WRITE 812 fd:00:1234 0 EOF
1: -> FLOCK  ADVISORY  WRITE 900 fd:00:1234 0 EOF
2: FLOCK  ADVISORY  READ 77 fd:00:1234 0 EOF
3: POSIX  ADVISORY  WRITE 55 fd:00:1234 0 EOF
4: FLOCK  ADVISORY  WRITE 66 fd:00:12345 0 EOF
5: FLOCK  ADVISORY  WRITE 67 00:1a:1234 0 EOF
";
        let holders = |id| -> Vec<LockLine> {
            parse_lock_lines(text, id)
                .into_iter()
                .filter(|l| matches!(l, LockLine::Holder(_)))
                .collect()
        };
        assert_eq!(holders("fd:00:1234"), [LockLine::Holder(812)]);
        assert_eq!(holders("00:1a:1234"), [LockLine::Holder(67)]);
        assert!(holders("fd:00:999").is_empty());
    }

    #[test]
    fn lock_lines_table() {
        let text = "\
1: FLOCK  ADVISORY  WRITE 812 fd:00:1234 0 EOF
1: -> FLOCK  ADVISORY  WRITE 900 fd:00:1234 0 EOF
2: OFDLCK ADVISORY  READ  -1 fd:00:1234 0 0
3: OFDLCK ADVISORY  WRITE -1 fd:00:1234 0 0
4: FLOCK  ADVISORY  WRITE 66 fd:00:12345 0 EOF
5: POSIX  ADVISORY  WRITE 55 fd:00:1234 0 EOF
";
        assert_eq!(
            parse_lock_lines(text, "fd:00:1234"),
            [
                LockLine::Holder(812),
                LockLine::Waiter(900),
                LockLine::Reader
            ]
        );
        assert!(parse_lock_lines(text, "fd:00:99").is_empty());
        // The list shifted back between two pages: the same lines seen twice.
        let shifted = format!("{text}{text}");
        assert_eq!(
            parse_lock_lines(&shifted, "fd:00:1234"),
            [
                LockLine::Holder(812),
                LockLine::Waiter(900),
                LockLine::Reader,
                LockLine::Reader
            ]
        );
    }

    #[test]
    fn fdinfo_lines() {
        let id = "00:1a:1234";
        let cases = [
            (
                "pos:\t0\nflags:\t0100002\nlock:\t1: FLOCK  ADVISORY  WRITE 812 00:1a:1234 0 EOF\n",
                true,
            ),
            ("lock:\t2: OFDLCK ADVISORY  READ -1 00:1a:1234 0 0\n", true),
            ("pos:\t0\nflags:\t0100002\n", false),
            (
                "lock:\t1: FLOCK  ADVISORY  READ 812 00:1a:1234 0 EOF\n",
                false,
            ),
            (
                "lock:\t1: POSIX  ADVISORY  WRITE 812 00:1a:1234 0 EOF\n",
                false,
            ),
            (
                "lock:\t1: OFDLCK ADVISORY  WRITE -1 00:1a:1234 0 0\n",
                false,
            ),
            (
                "lock:\t1: FLOCK  ADVISORY  WRITE 812 00:1a:12345 0 EOF\n",
                false,
            ),
            (
                "xlock:\t1: FLOCK  ADVISORY  WRITE 812 00:1a:1234 0 EOF\n",
                false,
            ),
        ];
        for (info, want) in cases {
            assert_eq!(fdinfo_holds(info, id), want, "{info:?}");
        }
    }

    #[test]
    fn holding_is_seen_among_thousands_of_locks() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        let file = std::fs::File::create(&path).unwrap();
        let meta = file.metadata().unwrap();
        let id = lock_id((meta.dev(), meta.ino()));
        let me = std::process::id();
        assert!(!has_lock_on(me, &path, &id));
        // Thousands of other locks, taken before ours, fill many pages of /proc/locks.
        let others: Vec<_> = (0..2000)
            .map(|i| {
                let f = std::fs::File::create(dir.path().join(format!("o{i}"))).unwrap();
                f.lock().unwrap();
                f
            })
            .collect();
        file.lock().unwrap();
        assert!(has_lock_on(me, &path, &id));
        assert_eq!(flock_holders(meta.dev(), meta.ino()), vec![me]);
        drop(others);
    }

    #[test]
    fn own_process() {
        let me = std::process::id();
        assert!(cmdline(me).is_some());
        assert_eq!(parent_of(me), Some(std::os::unix::process::parent_id()));
        assert_eq!(
            ancestors().first(),
            Some(&std::os::unix::process::parent_id())
        );
        assert!(
            !ancestors().contains(&me),
            "a process is not its own ancestor"
        );
        let age = age_secs(me).unwrap();
        assert!((0.0..600.0).contains(&age), "{age}");
    }
}
#[cfg(test)]
mod churn_tests {
    #[test]
    fn a_holder_is_never_missed_while_other_locks_change() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mine");
        let mine = std::fs::File::create(&path).unwrap();
        mine.lock().unwrap();
        let meta = mine.metadata().unwrap();
        let id = super::lock_id((meta.dev(), meta.ino()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Other locks appear and disappear around ours, as other calls come and go.
        let churn: Vec<_> = (0..4)
            .map(|i| {
                let path = dir.path().join(format!("churn{i}"));
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let f = std::fs::File::create(path).unwrap();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        f.lock().unwrap();
                        f.unlock().unwrap();
                    }
                })
            })
            .collect();
        // Thousands of locks held meanwhile make /proc/locks many pages long, where a
        // reader of the list can miss a line; fdinfo is read per descriptor and cannot.
        let crowd: Vec<_> = (0..3000)
            .map(|i| {
                let f = std::fs::File::create(dir.path().join(format!("crowd{i}"))).unwrap();
                f.lock().unwrap();
                f
            })
            .collect();
        let misses = (0..200)
            .filter(|_| !super::has_lock_on(std::process::id(), &path, &id))
            .count();
        drop(crowd);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in churn {
            t.join().unwrap();
        }
        assert_eq!(
            misses, 0,
            "our own lock was missed {misses} times in 200 reads"
        );
    }
}
