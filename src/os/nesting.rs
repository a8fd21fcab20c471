//! Calls within calls. A script run under the lock may call iptables again through a
//! shim; that nested call must not wait for the lock its own ancestor holds, and it
//! must never run beside another writer, even when it outlives the call that held the
//! lock for it (a script put it in the background).
//!
//! The protocol, on the lock file (flock: "the lock"; an open-file-description lock on
//! byte 0, independent of flock on Linux: "the gate"; bytes 0..64: "the record"):
//!
//! | who | steps |
//! |---|---|
//! | holder | 1 flock; 2 gate write lock (waits for nested calls of an earlier holder); 3 write the record: a fresh token; 4 gate unlock; 5 run the program with `XTLOCK_TOKEN`; 6 gate write lock if free at once (no nested call running): clear the record; 7 close (releases all) |
//! | nested | 1 gate read lock (waits only while a holder is in 2-4 or 6); 2 the record names our token: run under it (keep the read lock), else unlock and queue as a holder; 3 gate write lock and flock, both if free at once: the last of a finished holder's calls clears the record if still ours; 4 close |
//!
//! So a holder never runs until every nested call of the holder before it has finished,
//! whether that holder released, died by SIGKILL at any step (the kernel drops its locks
//! and leaves the record), or is still inside step 6; and a nested call joins only while
//! the record, written only under the gate's write lock, still names its holder. A
//! token is a random number carried in the environment: it survives PID namespaces and
//! a missing /proc, where process ancestry cannot be seen.
//!
//! Callers whose environment was cleared (`env -i`, sudo) have no token: they look for an
//! ancestor that holds the flock or a gate read lock on this file, in /proc.
//!
//! And a copy of xtlock placed ahead of the real program must end in an error, not a
//! fork loop: the depth counter (as rustup's RUST_RECURSION_COUNT).

use crate::lock::LockFile;
use crate::wait::{self, StdinPump, Waited};
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::time::Instant;

/// Set for the program: how many xtlock calls enclose it.
pub const DEPTH_VAR: &str = "XTLOCK_DEPTH";
/// Set for the program: the token of the holder it runs under.
pub const TOKEN_VAR: &str = "XTLOCK_TOKEN";
pub const MAX_DEPTH: u32 = 16;

const RECORD_LEN: usize = 96;
const RECORD_TAG: &[u8] = b"xtlock-token ";

/// Test hook for the kill tests (tests/cli/protocol.rs): with
/// `XTLOCK_TEST_CHECKPOINT=STEP:FILE`, a call reaching STEP writes its pid to FILE and
/// stops there until it is killed. One environment lookup a call otherwise.
pub fn checkpoint(step: &str) {
    static HOOK: std::sync::OnceLock<Option<(String, String)>> = std::sync::OnceLock::new();
    let hook = HOOK.get_or_init(|| {
        let value = std::env::var_os("XTLOCK_TEST_CHECKPOINT")?;
        let (wanted, file) = value.to_str()?.split_once(':')?;
        Some((wanted.to_string(), file.to_string()))
    });
    if let Some((wanted, file)) = hook
        && wanted == step
    {
        let _ = std::fs::write(file, std::process::id().to_string());
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

pub fn depth(value: Option<&OsStr>) -> u32 {
    value
        .and_then(|v| v.to_str())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A copy of xtlock ahead of the real program would run itself forever.
pub fn check_depth(name: &str) -> Result<u32, crate::status::Failure> {
    let depth = depth(std::env::var_os(DEPTH_VAR).as_deref());
    if depth < MAX_DEPTH {
        return Ok(depth);
    }
    Err(crate::status::Failure::Own(format!(
        "{name}: xtlock calls nested {depth} deep; is a copy of xtlock ahead of the real {name} in PATH?"
    )))
}

/// A token from the environment, if it is one.
pub fn token_from_env(value: Option<&OsStr>) -> Option<u64> {
    parse_token(value?.as_encoded_bytes())
}

/// Exactly 16 hex digits (from_str_radix alone would take a sign).
fn parse_token(text: &[u8]) -> Option<u64> {
    if text.len() != 16 || !text.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(text).ok()?, 16).ok()
}

pub fn token_text(token: u64) -> String {
    format!("{token:016x}")
}

/// The record: `xtlock-token <16 hex digits> pid <pid> since <unix ms>\n`, padded to
/// RECORD_LEN (the pid and time for `xtlock status`).
fn format_record(token: u64) -> [u8; RECORD_LEN] {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let text = format!(
        "xtlock-token {} pid {} since {since}\n",
        token_text(token),
        std::process::id()
    );
    let mut record = [b' '; RECORD_LEN];
    record[..text.len()].copy_from_slice(text.as_bytes());
    record[RECORD_LEN - 1] = b'\n';
    record
}

fn parse_record(bytes: &[u8]) -> Option<u64> {
    parse_token(bytes.strip_prefix(RECORD_TAG)?.get(..16)?)
}

/// The holder a record names: (pid, since, in ms after the epoch), for `xtlock status`.
pub fn record_holder(file: &File) -> Option<(u32, u128)> {
    let mut buf = [0u8; RECORD_LEN];
    let n = file.read_at(&mut buf, 0).ok()?;
    parse_record(&buf[..n])?;
    let text = std::str::from_utf8(&buf[RECORD_TAG.len() + 16..n]).ok()?;
    let mut words = text.split_whitespace();
    match (words.next(), words.next(), words.next(), words.next()) {
        (Some("pid"), Some(pid), Some("since"), Some(ms)) => {
            Some((pid.parse().ok()?, ms.parse().ok()?))
        }
        _ => None,
    }
}

fn read_record(file: &File) -> Option<u64> {
    let mut buf = [0u8; RECORD_LEN];
    let n = file.read_at(&mut buf, 0).ok()?;
    parse_record(&buf[..n])
}

#[derive(Clone, Copy)]
enum Gate {
    Read,
    Write,
    Open,
}

/// A lock of `kind` on byte 0: the gate.
fn byte_zero(kind: Gate) -> libc::flock {
    // SAFETY: flock is plain data; all-zero is a valid value (and OFD locks require
    // l_pid 0, fcntl(2)); the fields that matter are set below.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = match kind {
        Gate::Read => libc::F_RDLCK,
        Gate::Write => libc::F_WRLCK,
        Gate::Open => libc::F_UNLCK,
    } as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = 0;
    lock.l_len = 1;
    lock
}

/// Set the gate lock of this open file description; `wait`: F_OFD_SETLKW.
fn gate(file: &File, kind: Gate, wait: bool) -> io::Result<()> {
    let lock = byte_zero(kind);
    let command = if wait {
        libc::F_OFD_SETLKW
    } else {
        libc::F_OFD_SETLK
    };
    loop {
        // SAFETY: the fd is open for the life of `file`; `lock` is a valid flock.
        if unsafe { libc::fcntl(file.as_raw_fd(), command, &lock) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Take the gate lock, waiting until `deadline` if it is busy. Ok(false): timed out.
fn gate_until(
    file: &File,
    kind: Gate,
    deadline: Instant,
    pump: Option<&mut StdinPump>,
) -> io::Result<bool> {
    match gate(file, kind, false) {
        Ok(()) => return Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => {}
        Err(e) => return Err(e),
    }
    // A dup shares the open file description, and so the lock it takes.
    let waiter = file.try_clone()?;
    match wait::until(deadline, pump, None, move || gate(&waiter, kind, true))? {
        Waited::Done(result) => result.map(|()| true),
        Waited::TimedOut | Waited::Woken => Ok(false),
    }
}

/// How a holder's domain could not be opened.
pub enum OpenError {
    /// Nested calls of an earlier holder still ran at the deadline.
    NestedStillRunning,
    Io(io::Error),
}

/// Holder, steps 2-4: wait for the nested calls of an earlier holder, then write our
/// token. None: the lock file is read-only (immutable, a read-only /run), so there is
/// no record; nested calls then find us through /proc alone.
pub fn open_domain(
    file: &File,
    deadline: Instant,
    pump: Option<&mut StdinPump>,
) -> Result<Option<u64>, OpenError> {
    match gate_until(file, Gate::Write, deadline, pump) {
        Ok(true) => {}
        Ok(false) => return Err(OpenError::NestedStillRunning),
        // A write lock needs a descriptor open for writing (a read-only or immutable
        // lock file): there is no record then, but the nested calls of the holder
        // before us still hold read locks, and we still wait for them, by asking.
        Err(e) if e.raw_os_error() == Some(libc::EBADF) => {
            return match wait_for_no_readers(file, deadline) {
                Ok(true) => Ok(None),
                Ok(false) => Err(OpenError::NestedStillRunning),
                Err(e) => Err(OpenError::Io(e)),
            };
        }
        Err(e) => return Err(OpenError::Io(e)),
    }
    let token = fastrand::u64(1..);
    let written = file.write_all_at(&format_record(token), 0);
    checkpoint("holder-recorded");
    let _ = gate(file, Gate::Open, false);
    Ok(written.ok().map(|()| token))
}

/// Poll F_OFD_GETLK (which, unlike F_OFD_SETLK, works on a read-only descriptor) until
/// no gate read lock is left, or `deadline`. Polling: only a read-only lock file with
/// nested calls still running comes here.
fn wait_for_no_readers(file: &File, deadline: Instant) -> io::Result<bool> {
    loop {
        let mut probe = byte_zero(Gate::Write);
        // SAFETY: the fd is open for the life of `file`; `probe` is a valid flock that
        // the kernel overwrites with the first conflicting lock, if any.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut probe) } != 0 {
            return Err(io::Error::last_os_error());
        }
        if probe.l_type == libc::F_UNLCK as libc::c_short {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Holder, step 6: clear our record unless nested calls still run under it. Holding the
/// flock, no other holder can have written one since ours: the record is ours or blank.
pub fn close_domain(file: &File) {
    if gate(file, Gate::Write, false).is_ok() {
        let _ = file.write_all_at(&[b' '; RECORD_LEN], 0);
    }
}

fn clear_record_if(file: &File, token: u64) {
    if read_record(file) == Some(token) {
        let _ = file.write_all_at(&[b' '; RECORD_LEN], 0);
    }
}

/// Nested, steps 1-2: join the domain of `token` if the record still names it. On
/// true the gate read lock is held on `file` until it is closed.
pub fn join(
    file: &File,
    token: u64,
    deadline: Instant,
    pump: Option<&mut StdinPump>,
) -> io::Result<bool> {
    if !gate_until(file, Gate::Read, deadline, pump)? {
        return Ok(false); // a holder kept the gate: queue (and wait) as anyone else
    }
    if read_record(file) == Some(token) {
        return Ok(true);
    }
    let _ = gate(file, Gate::Open, false);
    Ok(false)
}

/// Nested, without a token: an ancestor (in /proc) holds the lock or runs nested under
/// it. On Some, the gate read lock is held and the domain's token (if it has a record)
/// is returned for our program's nested calls.
pub fn join_by_ancestry(
    lock: &LockFile,
    deadline: Instant,
    pump: Option<&mut StdinPump>,
) -> io::Result<Option<Option<u64>>> {
    if !crate::procinfo::ancestor_in_lock(lock.path(), lock.identity()) {
        return Ok(None);
    }
    let file = lock.file();
    if !gate_until(file, Gate::Read, deadline, pump)? {
        return Ok(None);
    }
    // Checked again under the read lock: a holder cannot leave its domain meanwhile.
    if crate::procinfo::ancestor_in_lock(lock.path(), lock.identity()) {
        return Ok(Some(read_record(file)));
    }
    let _ = gate(file, Gate::Open, false);
    Ok(None)
}

/// Nested, step 3: the last nested call of a holder that is gone clears its record, so
/// that a long-lived descendant (a daemon a script started) queues from then on.
pub fn leave(file: &File, token: u64) {
    if gate(file, Gate::Write, false).is_ok() && file.try_lock().is_ok() {
        clear_record_if(file, token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn open_rw(path: &std::path::Path) -> File {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .unwrap()
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(200)
    }

    /// A lock file in a fresh directory, and a holder that has opened its domain.
    fn holder_with_domain() -> (tempfile::TempDir, std::path::PathBuf, File, u64) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let holder = open_rw(&path);
        holder.lock().unwrap();
        let token = open_domain(&holder, soon(), None).ok().flatten().unwrap();
        (dir, path, holder, token)
    }

    #[test]
    fn depth_and_token_parse() {
        assert_eq!(depth(None), 0);
        assert_eq!(depth(Some(OsStr::new("3"))), 3);
        assert_eq!(depth(Some(OsStr::new("junk"))), 0);
        let cases: [(&str, Option<u64>); 5] = [
            ("00000000000000ff", Some(255)),
            ("ff", None),
            ("000000000000000g", None),
            ("", None),
            ("+000000000000001", None),
        ];
        for (text, want) in cases {
            assert_eq!(token_from_env(Some(OsStr::new(text))), want, "{text:?}");
        }
        assert_eq!(
            token_from_env(Some(OsStr::new(&token_text(u64::MAX)))),
            Some(u64::MAX)
        );
    }

    #[test]
    fn records() {
        let record = format_record(0xabc);
        assert_eq!(record.len(), RECORD_LEN);
        assert_eq!(parse_record(&record), Some(0xabc));
        let dir = tempfile::tempdir().unwrap();
        let file = open_rw(&dir.path().join("x"));
        file.write_all_at(&record, 0).unwrap();
        let (pid, since) = record_holder(&file).unwrap();
        assert_eq!(pid, std::process::id());
        assert!(since > 1_700_000_000_000, "{since}");
        file.write_all_at(&[b' '; RECORD_LEN], 0).unwrap();
        assert_eq!(record_holder(&file), None);
        assert_eq!(parse_record(&[b' '; RECORD_LEN]), None);
        assert_eq!(parse_record(b"xtlock-token 12"), None);
        assert_eq!(parse_record(b""), None);
    }

    #[test]
    fn a_nested_call_joins_only_its_own_holder() {
        let (_dir, path, holder, token) = holder_with_domain();
        let nested = open_rw(&path);
        assert!(join(&nested, token, soon(), None).unwrap());
        let stranger = open_rw(&path);
        assert!(!join(&stranger, token ^ 1, soon(), None).unwrap());
        // While a nested call runs, the holder leaves its record for the others.
        close_domain(&holder);
        assert_eq!(read_record(&nested), Some(token));
        drop(holder);
        // The next holder waits for the nested call of the one before it.
        let next = open_rw(&path);
        next.lock().unwrap();
        assert!(matches!(
            open_domain(&next, soon(), None),
            Err(OpenError::NestedStillRunning)
        ));
        drop(nested);
        let token2 = open_domain(&next, soon(), None).ok().flatten().unwrap();
        assert_ne!(token, token2);
        let late = open_rw(&path);
        assert!(
            !join(&late, token, soon(), None).unwrap(),
            "a nested call of a gone holder queues once a new holder writes"
        );
    }

    #[test]
    fn the_last_nested_call_of_a_gone_holder_clears_its_record() {
        let (_dir, path, holder, token) = holder_with_domain();
        let nested = open_rw(&path);
        assert!(join(&nested, token, soon(), None).unwrap());
        leave(&open_rw(&path), token); // the holder still holds: nothing cleared
        assert_eq!(read_record(&holder), Some(token));
        drop(holder); // killed: record left behind
        leave(&nested, token);
        drop(nested);
        assert_eq!(read_record(&open_rw(&path)), None);
    }

    #[test]
    fn a_holder_alone_clears_its_record() {
        let (_dir, path, holder, token) = holder_with_domain();
        close_domain(&holder);
        drop(holder);
        assert!(!join(&open_rw(&path), token, soon(), None).unwrap());
    }

    #[test]
    fn a_read_only_lock_file_has_no_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        drop(open_rw(&path));
        let read_only = File::open(&path).unwrap();
        read_only.lock().unwrap();
        assert!(matches!(open_domain(&read_only, soon(), None), Ok(None)));
    }
}
