//! Reading /proc: who a process is, who its parent is, and who holds an flock.
//! Used to name the lock holder in errors and to recognise a nested call. Text
//! formatting lives in `text`; nothing here writes a log.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

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
    let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((uptime - start_ticks / ticks_per_sec).max(0.0))
}

/// Our parent, grandparent, ... up to (not including) init, nearest first. Without
/// /proc only our parent.
pub fn ancestors() -> Vec<u32> {
    let mut chain = Vec::new();
    let mut current = std::os::unix::process::parent_id();
    while current > 1 && chain.len() < 256 && !chain.contains(&current) {
        chain.push(current);
        match parent_of(current) {
            Some(parent) => current = parent,
            None => break,
        }
    }
    chain
}

/// Does `pid` hold an exclusive flock on the file (dev, ino) through one of its open
/// files? Read from /proc/PID/fdinfo, whose `lock:` lines list the locks owned by that
/// open file (Linux 4.14+): one small file per descriptor, whatever else is locked on
/// the host, and no list that shifts while it is read.
pub fn holds_flock(pid: u32, dev: u64, ino: u64) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    entries.flatten().take(1 << 16).any(|entry| {
        let same_file =
            std::fs::metadata(entry.path()).is_ok_and(|m| (m.dev(), m.ino()) == (dev, ino));
        let fdinfo = format!("/proc/{pid}/fdinfo/{}", entry.file_name().to_string_lossy());
        same_file && std::fs::read_to_string(fdinfo).is_ok_and(|info| fdinfo_has_write_flock(&info))
    })
}

/// `lock:\t1: FLOCK  ADVISORY  WRITE 812 00:1a:1234 0 EOF`; a waiter's line has `->`.
fn fdinfo_has_write_flock(info: &str) -> bool {
    info.lines().any(|line| {
        let Some(rest) = line.strip_prefix("lock:") else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        matches!(fields.as_slice(), [_, "FLOCK", _, "WRITE", ..])
    })
}

/// Pids holding an exclusive flock on the file (dev, ino), from /proc/locks, to name
/// the holder in a message. Read to its end: past one page the kernel hands the list
/// out a page per read, and a holder further down must not be missed.
pub fn flock_holders(dev: u64, ino: u64) -> Vec<u32> {
    let Some(locks) = read_proc_locks() else {
        return Vec::new();
    };
    parse_locks(
        &locks,
        libc::major(dev) as u64,
        libc::minor(dev) as u64,
        ino,
    )
}

/// In large reads: the kernel fills each one under its lock, so the common case is
/// one consistent snapshot.
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

/// Lines look like `1: FLOCK  ADVISORY  WRITE 812 fd:00:1234 0 EOF`;
/// waiters are listed as `1: -> FLOCK ...` and are not holders.
fn parse_locks(locks: &str, major: u64, minor: u64, ino: u64) -> Vec<u32> {
    let want = format!("{major:02x}:{minor:02x}:{ino}");
    locks
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [_, "FLOCK", _, "WRITE", pid, id, ..] if *id == want => pid.parse().ok(),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(parse_locks(text, 0xfd, 0, 1234), vec![812]);
        assert_eq!(parse_locks(text, 0, 0x1a, 1234), vec![67]);
        assert!(parse_locks(text, 0xfd, 0, 999).is_empty());
    }

    #[test]
    fn fdinfo_lines() {
        let holder = "pos:\t0\nflags:\t0100002\nino:\t1234\nlock:\t1: FLOCK  ADVISORY  WRITE 812 00:1a:1234 0 EOF\n";
        assert!(fdinfo_has_write_flock(holder));
        assert!(!fdinfo_has_write_flock("pos:\t0\nflags:\t0100002\n"));
        assert!(!fdinfo_has_write_flock(
            "lock:\t1: FLOCK  ADVISORY  READ 812 00:1a:1234 0 EOF\n"
        ));
        assert!(!fdinfo_has_write_flock(
            "lock:\t1: POSIX  ADVISORY  WRITE 812 00:1a:1234 0 EOF\n"
        ));
    }

    #[test]
    fn holding_is_seen_among_thousands_of_locks() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(dir.path().join("x")).unwrap();
        let meta = file.metadata().unwrap();
        let me = std::process::id();
        assert!(!holds_flock(me, meta.dev(), meta.ino()));
        // Thousands of other locks, taken before ours, fill many pages of /proc/locks.
        let others: Vec<_> = (0..2000)
            .map(|i| {
                let f = std::fs::File::create(dir.path().join(format!("o{i}"))).unwrap();
                f.lock().unwrap();
                f
            })
            .collect();
        file.lock().unwrap();
        assert!(holds_flock(me, meta.dev(), meta.ino()));
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
        let mine = std::fs::File::create(dir.path().join("mine")).unwrap();
        mine.lock().unwrap();
        let meta = mine.metadata().unwrap();
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
            .filter(|_| !super::holds_flock(std::process::id(), meta.dev(), meta.ino()))
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
