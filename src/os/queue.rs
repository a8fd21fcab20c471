//! The queue of group commit: single commands waiting for the lock, so that the caller
//! who gets it can commit them together (`batch`). One directory beside the lock file,
//! root's alone (0700); each waiting call is a key (time, pid, random) that sorts in
//! queue order, and files named by it:
//!
//! | file    | made by         | means                                                    |
//! |---------|-----------------|----------------------------------------------------------|
//! | `e-KEY` | the waiting call | pending: its request; it holds an flock on it while alive |
//! | `w-KEY` | the waiting call | a FIFO it polls: a byte there says `r-KEY` is ready       |
//! | `c-KEY` | a holder        | claimed: renamed from `e-KEY`, under the lock              |
//! | `r-KEY` | a holder        | the result: status, stdout, stderr                         |
//! | `b-ID`  | a holder        | a run in flight: its keys in order; `o-ID` its output      |
//!
//! Claims and runs happen only under the lock, so a holder sees the queue still. A
//! waiting call withdraws by unlinking `e-KEY`: that and the claim's rename cannot
//! both succeed, so a command is either its owner's to report as not run, or a holder's
//! to run, never both. A holder that dies leaves `b-ID`; the next holder (once the
//! program it ran has exited: it kept the lock's descriptor) settles it first.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A queued command: what a holder needs to run it, and with whom it may be batched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Equal for calls that one restore may carry: same user, network namespace,
    /// program file, restore name, table and iptables environment (`batch::compat`).
    pub compat: String,
    pub program: PathBuf,
    pub arg0: OsString,
    pub args: Vec<OsString>,
    /// The command as a restore line (`batchable`), its table in `compat`.
    pub line: String,
}

const REQUEST_TAG: &[u8] = b"xtlock-request-1";

impl Request {
    fn encode(&self) -> Vec<u8> {
        let mut fields: Vec<&[u8]> = vec![
            REQUEST_TAG,
            self.compat.as_bytes(),
            self.program.as_os_str().as_bytes(),
            self.arg0.as_bytes(),
            self.line.as_bytes(),
        ];
        fields.extend(self.args.iter().map(|a| a.as_bytes()));
        let mut bytes = fields.join(&0u8);
        bytes.push(0);
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Request> {
        let mut fields = bytes.strip_suffix(&[0])?.split(|&b| b == 0);
        (fields.next()? == REQUEST_TAG).then_some(())?;
        let text = |f: &[u8]| String::from_utf8(f.to_vec()).ok();
        Some(Request {
            compat: text(fields.next()?)?,
            program: PathBuf::from(OsStr::from_bytes(fields.next()?)),
            arg0: OsString::from_vec(fields.next()?.to_vec()),
            line: text(fields.next()?)?,
            args: fields.map(|f| OsString::from_vec(f.to_vec())).collect(),
        })
    }
}

/// What a waiting call gets back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// The command ran (alone or in a batch): its wait status and output.
    Ran {
        status: i32,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    },
    /// Nobody can say whether it was applied; why, for the caller's message.
    Unknown(String),
}

impl Served {
    pub fn success() -> Served {
        Served::Ran {
            status: 0,
            stdout: Vec::new(),
            stderr: Vec::new(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        match self {
            Served::Ran {
                status,
                stdout,
                stderr,
            } => {
                let mut bytes =
                    format!("ran {status} {} {}\n", stdout.len(), stderr.len()).into_bytes();
                bytes.extend_from_slice(stdout);
                bytes.extend_from_slice(stderr);
                bytes
            }
            Served::Unknown(why) => format!("unknown {why}\n").into_bytes(),
        }
    }

    fn decode(bytes: &[u8]) -> Option<Served> {
        let end = bytes.iter().position(|&b| b == b'\n')?;
        let head = std::str::from_utf8(&bytes[..end]).ok()?;
        let body = &bytes[end + 1..];
        if let Some(why) = head.strip_prefix("unknown ") {
            return Some(Served::Unknown(why.to_string()));
        }
        let mut words = head.strip_prefix("ran ")?.split(' ');
        let status = words.next()?.parse().ok()?;
        let out_len: usize = words.next()?.parse().ok()?;
        let err_len: usize = words.next()?.parse().ok()?;
        (body.len() == out_len + err_len).then(|| Served::Ran {
            status,
            stdout: body[..out_len].to_vec(),
            stderr: body[out_len..].to_vec(),
        })
    }
}

/// The queue directory of a lock file.
#[derive(Debug, Clone)]
pub struct Queue {
    dir: PathBuf,
}

/// A key that sorts in queue order: nanoseconds, pid, and randomness for ties.
fn new_key() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{nanos:020}-{:010}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    )
}

/// Room reserved for a run's output: the marks of a batch (about 60 bytes a command,
/// at most `batch::MAX_BATCH` commands) and what its lines print.
const OUTPUT_ROOM: libc::off_t = 256 << 10;

/// The size of the last batch (`note_batch`); its time is the file's.
const LAST_BATCH: &str = "last-batch";

/// A temporary file older than this was left by a writer that died (one in another
/// PID namespace, whose pid says nothing here).
const STALE_TEMP: std::time::Duration = std::time::Duration::from_secs(10);

fn pid_alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// The pid of the call that queued `key`.
pub fn pid_of_key(key: &str) -> Option<u32> {
    key.split('-').nth(1)?.parse().ok()
}

/// O_NONBLOCK: a FIFO planted in the queue never blocks a holder (it is then refused
/// as not a regular file).
fn open_nofollow(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// A regular file's bytes; None for anything else (a FIFO, a directory, a link).
fn read_regular(path: &Path) -> Option<Vec<u8>> {
    let mut file = open_nofollow(path).ok()?;
    file.metadata().ok()?.is_file().then_some(())?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// Write `bytes` to `path` whole or not at all (a temporary name, then rename).
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_file_name(format!("t-{}", new_key()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Is the owner of this entry file still alive (it holds an flock on it)?
fn owner_alive(path: &Path) -> bool {
    match open_nofollow(path) {
        Ok(file) => matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
        Err(_) => false,
    }
}

impl Queue {
    pub fn of(lock_file: &Path) -> Queue {
        let mut dir = lock_file.as_os_str().to_owned();
        dir.push(".queue");
        Queue {
            dir: PathBuf::from(dir),
        }
    }

    /// The directory, made if missing; None unless it is ours alone (a directory, not
    /// a link, owned by our user, open to no one else): others' requests run as us.
    fn ready(&self, create: bool) -> Option<&Path> {
        if create {
            let _ = std::fs::DirBuilder::new().mode(0o700).create(&self.dir);
        }
        let meta = std::fs::symlink_metadata(&self.dir).ok()?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        (meta.is_dir() && meta.uid() == euid && meta.mode() & 0o077 == 0).then_some(&self.dir)
    }

    fn path(&self, prefix: &str, key: &str) -> PathBuf {
        self.dir.join(format!("{prefix}-{key}"))
    }

    /// Queue a request; None if the queue cannot be used (then the call waits alone).
    pub fn enqueue(&self, request: &Request) -> Option<Ticket> {
        let dir = self.ready(true)?;
        let key = new_key();
        let fifo = self.path("w", &key);
        let c_fifo = std::ffi::CString::new(fifo.as_os_str().as_bytes()).ok()?;
        // SAFETY: a valid NUL-terminated path.
        if unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o600) } != 0 {
            return None;
        }
        // Read and write: our own writer end keeps it from ever reading EOF, and a
        // holder's open for writing never blocks.
        let wake = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
            .open(&fifo);
        let entry = self.path("e", &key);
        let tmp = dir.join(format!("t-{key}"));
        let made = (|| {
            let wake = wake?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&request.encode())?;
            file.lock()?; // alive while we are
            std::fs::rename(&tmp, &entry)?;
            Ok::<_, io::Error>(Ticket {
                queue: self.clone(),
                key: key.clone(),
                _entry: file,
                wake,
            })
        })();
        if made.is_err() {
            let _ = std::fs::remove_file(&tmp);
            let _ = std::fs::remove_file(&fifo);
        }
        made.ok()
    }

    /// Requests waiting now, in queue order, with their keys. Entries whose owner died
    /// are removed on the way (it can report nothing, so its command is not run).
    pub fn pending(&self) -> Vec<(String, Request)> {
        let mut found = Vec::new();
        for key in self.keys("e") {
            let path = self.path("e", &key);
            if !owner_alive(&path) {
                self.remove(&key);
                continue;
            }
            let request = read_regular(&path).and_then(|b| Request::decode(&b));
            if let Some(request) = request {
                found.push((key, request));
            }
        }
        found
    }

    /// Keys of files `prefix-KEY`, sorted.
    fn keys(&self, prefix: &str) -> Vec<String> {
        let Some(dir) = self.ready(false) else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut keys: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|name| Some(name.strip_prefix(&format!("{prefix}-"))?.to_string()))
            .collect();
        keys.sort();
        keys
    }

    /// How many requests wait (one readdir; their owners are not checked).
    pub fn waiting(&self) -> usize {
        self.keys("e").len()
    }

    /// Note the size of the batch just committed, for the next holder's `recent_batch`.
    pub fn note_batch(&self, size: usize) {
        let _ = write_atomically(&self.dir.join(LAST_BATCH), size.to_string().as_bytes());
    }

    /// The size of the last batch, if it was committed within `recent`.
    pub fn recent_batch(&self, recent: std::time::Duration) -> Option<usize> {
        let path = self.dir.join(LAST_BATCH);
        let age = std::fs::symlink_metadata(&path)
            .ok()?
            .modified()
            .ok()?
            .elapsed()
            .ok()?;
        if age > recent {
            return None;
        }
        String::from_utf8(read_regular(&path)?)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Nothing waits and nothing is in flight: the common case, one readdir.
    /// (A batch committed within `recent` counts as activity: its callers come back.)
    pub fn is_idle(&self, recent: std::time::Duration) -> bool {
        let Some(dir) = self.ready(false) else {
            return true;
        };
        let Ok(mut entries) = std::fs::read_dir(dir) else {
            return true;
        };
        !entries.any(|e| e.is_ok_and(|e| e.file_name() != LAST_BATCH))
            && self.recent_batch(recent).is_none()
    }

    /// Take a pending request for a run (under the lock). False: its owner withdrew it.
    pub fn claim(&self, key: &str) -> bool {
        std::fs::rename(self.path("e", key), self.path("c", key)).is_ok()
    }

    /// Give a claimed request back to the queue: nothing of it was applied.
    pub fn unclaim(&self, key: &str) {
        let _ = std::fs::rename(self.path("c", key), self.path("e", key));
    }

    /// Hand a result to the waiting call of `key` and wake it. False: it could not be
    /// written; the waiting call then takes the lock itself and learns it from the run's
    /// record, which must stay.
    pub fn deliver(&self, key: &str, served: &Served) -> bool {
        if write_atomically(&self.path("r", key), &served.encode()).is_err() {
            return false;
        }
        let fifo = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
            .open(self.path("w", key));
        if let Ok(mut fifo) = fifo {
            let _ = fifo.write(b"!");
        }
        true
    }

    fn remove(&self, key: &str) {
        for prefix in ["e", "c", "r", "w"] {
            let _ = std::fs::remove_file(self.path(prefix, key));
        }
    }

    /// Record a run before it starts: `keys` in order (None: the holder's own command).
    /// Its program's output goes to the returned file, which a holder taking over reads.
    ///
    /// The output file has its room reserved first: the restore's echoed marks are the
    /// proof of its commit, and a full /run must not swallow them (the restore ignores
    /// a failed write and commits all the same). No room: no run.
    pub fn start_run(&self, what: &RunRecord) -> io::Result<(String, File)> {
        let id = new_key();
        let output = std::fs::OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(self.path("o", &id))?;
        // SAFETY: fallocate on a descriptor we own; KEEP_SIZE leaves the file empty.
        let reserved = unsafe {
            libc::fallocate(
                output.as_raw_fd(),
                libc::FALLOC_FL_KEEP_SIZE,
                0,
                OUTPUT_ROOM,
            )
        };
        let recorded = match reserved {
            0 => write_atomically(&self.path("b", &id), what.encode().as_bytes()),
            _ => Err(io::Error::last_os_error()),
        };
        if let Err(e) = recorded {
            let _ = std::fs::remove_file(self.path("o", &id));
            return Err(e);
        }
        Ok((id, output))
    }

    /// What the run's program wrote.
    pub fn run_output(&self, id: &str) -> Vec<u8> {
        read_regular(&self.path("o", id)).unwrap_or_default()
    }

    /// The run is settled (its results delivered, or its requests given back).
    pub fn end_run(&self, id: &str) {
        let _ = std::fs::remove_file(self.path("b", id));
        let _ = std::fs::remove_file(self.path("o", id));
    }

    /// Settle what a holder that died left behind: each run it recorded, judged by
    /// `judge` from its record and output; then claimed requests in no run go back to
    /// the queue, and files of calls that died are removed.
    ///
    /// Returns `ours`'s result if a run it was in is settled here: the holder taking
    /// over may be that very caller, and its result file may not be writable (a full
    /// /run), so it learns it here, never by running its command again.
    pub fn recover(
        &self,
        judge: impl Fn(&RunRecord, &str, &[u8]) -> Settled,
        ours: Option<&str>,
    ) -> Option<Served> {
        let mut our_result = None;
        // Keys of runs whose results could not all be written: still in flight.
        let mut kept: Vec<String> = Vec::new();
        for id in self.keys("b") {
            let record = read_regular(&self.path("b", &id))
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|t| RunRecord::decode(&t));
            let output = read_regular(&self.path("o", &id)).unwrap_or_default();
            let mut delivered = true;
            if let Some(record) = &record {
                let settled = judge(record, &id, &output);
                for (at, key) in record.keys.iter().enumerate() {
                    let Some(key) = key else { continue };
                    if let (Settled::Deliver(results), Some(ours)) = (&settled, ours)
                        && ours == key
                    {
                        our_result = results.get(at).cloned();
                    }
                    match &settled {
                        Settled::Requeue => self.unclaim(key),
                        Settled::Deliver(results) => match results.get(at) {
                            Some(served) => delivered &= self.deliver(key, served),
                            None => {
                                let why = "its run's record and result disagree".into();
                                delivered &= self.deliver(key, &Served::Unknown(why));
                            }
                        },
                    }
                }
            }
            match (delivered, record) {
                (false, Some(record)) => kept.extend(record.keys.into_iter().flatten()),
                _ => self.end_run(&id),
            }
        }
        for key in self.keys("c") {
            if !self.path("r", &key).exists() && !kept.contains(&key) {
                self.unclaim(&key);
            }
        }
        // A run's output with no record: its holder died between making the one and
        // writing the other, or between removing them (runs start only under the lock,
        // which we hold, so none is starting now).
        for id in self.keys("o") {
            if !self.path("b", &id).exists() {
                let _ = std::fs::remove_file(self.path("o", &id));
            }
        }
        // A temporary file whose writer died (between its create and its rename).
        for key in self.keys("t") {
            let path = self.path("t", &key);
            let old = std::fs::symlink_metadata(&path)
                .ok()
                .and_then(|m| m.modified().ok()?.elapsed().ok())
                .is_some_and(|age| age > STALE_TEMP);
            if old || pid_of_key(&key).is_some_and(|pid| !pid_alive(pid)) {
                let _ = std::fs::remove_file(path);
            }
        }
        // A call that died leaves its files; one that lives collects them itself.
        for prefix in ["c", "r", "w"] {
            for key in self.keys(prefix) {
                if !["e", "c"].iter().any(|p| owner_alive(&self.path(p, &key))) {
                    self.remove(&key);
                }
            }
        }
        our_result
    }
}

/// What a recovered run comes to, for its requests.
pub enum Settled {
    /// Nothing of it was applied: back to the queue.
    Requeue,
    /// One result per key of the record, in its order.
    Deliver(Vec<Served>),
}

/// The record of a run in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    /// `restore legacy|nft` for a batch, `single` for one command run alone.
    pub kind: String,
    /// The requests it carries in order; None for the holder's own command.
    pub keys: Vec<Option<String>>,
}

impl RunRecord {
    fn encode(&self) -> String {
        let keys: Vec<&str> = self
            .keys
            .iter()
            .map(|k| k.as_deref().unwrap_or("-"))
            .collect();
        format!("{}\n{}\n", self.kind, keys.join(" "))
    }

    fn decode(text: &str) -> Option<RunRecord> {
        let (kind, keys) = text.strip_suffix('\n')?.split_once('\n')?;
        Some(RunRecord {
            kind: kind.to_string(),
            keys: keys
                .split(' ')
                .filter(|k| !k.is_empty())
                .map(|k| (k != "-").then(|| k.to_string()))
                .collect(),
        })
    }
}

/// A waiting call's place in the queue; dropping it does not remove the files
/// (`finish` does), so a call that dies leaves them for the next holder to clear.
pub struct Ticket {
    queue: Queue,
    pub key: String,
    _entry: File,
    wake: File,
}

impl Ticket {
    /// Readable when a holder has delivered our result.
    pub fn wake_fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    pub fn result(&self) -> Option<Served> {
        Served::decode(&read_regular(&self.queue.path("r", &self.key))?)
    }

    /// Still ours to run or to report as not run (no holder took it)?
    pub fn is_pending(&self) -> bool {
        self.queue.path("e", &self.key).exists()
    }

    /// Take our request out of the queue. False: a holder has claimed it, and its
    /// result is the command's (it may be applied).
    pub fn withdraw(&self) -> bool {
        std::fs::remove_file(self.queue.path("e", &self.key)).is_ok()
    }

    /// Remove our files.
    pub fn finish(self) {
        self.queue.remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_result_round_trip() {
        let request = Request {
            compat: "uid=0 net=4:1 filter".into(),
            program: "/usr/sbin/iptables".into(),
            arg0: "iptables".into(),
            args: vec!["-A".into(), "".into(), "a b\nc".into()],
            line: "-A INPUT -j DROP".into(),
        };
        assert_eq!(Request::decode(&request.encode()), Some(request));
        for served in [
            Served::success(),
            Served::Ran {
                status: 256,
                stdout: b"x\n".to_vec(),
                stderr: b"iptables: Bad rule\n\0".to_vec(),
            },
            Served::Unknown("the restore died".into()),
        ] {
            assert_eq!(Served::decode(&served.encode()), Some(served));
        }
        let record = RunRecord {
            kind: "restore".into(),
            keys: vec![Some("1-2-3".into()), None],
        };
        assert_eq!(RunRecord::decode(&record.encode()), Some(record));
        assert_eq!(Served::decode(b"ran 0 5 0\nab"), None, "short body");
    }

    fn request() -> Request {
        Request {
            compat: "c".into(),
            program: "/bin/true".into(),
            arg0: "true".into(),
            args: vec![],
            line: "-N x".into(),
        }
    }

    #[test]
    fn withdraw_and_claim_exclude_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::of(&dir.path().join("lock"));
        let request = request();
        let first = queue.enqueue(&request).unwrap();
        let second = queue.enqueue(&request).unwrap();
        let keys: Vec<String> = queue.pending().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, [first.key.clone(), second.key.clone()], "queue order");
        assert_eq!(pid_of_key(&first.key), Some(std::process::id()));
        assert!(queue.claim(&first.key));
        assert!(!first.withdraw(), "claimed: not ours to withdraw");
        assert!(second.withdraw());
        assert!(!queue.claim(&second.key), "withdrawn: not a holder's");
        queue.deliver(&first.key, &Served::success());
        assert_eq!(first.result(), Some(Served::success()));
        let mut fds = [libc::pollfd {
            fd: first.wake_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd.
        assert_eq!(unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) }, 1, "woken");
        first.finish();
        second.finish();
        assert!(queue.is_idle(std::time::Duration::ZERO));
    }

    #[test]
    fn a_dead_owner_is_dropped_and_a_dead_holder_settled() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::of(&dir.path().join("lock"));
        let request = request();
        // A full /run: the result of a committed run could not be written; the holder
        // that takes over learns it from the record, if it is the very caller.
        let lost = queue.enqueue(&request).unwrap();
        assert!(queue.claim(&lost.key));
        let lost_record = RunRecord {
            kind: "restore".into(),
            keys: vec![Some(lost.key.clone())],
        };
        queue.start_run(&lost_record).unwrap();
        let settled = queue.recover(
            |_, _, _| Settled::Deliver(vec![Served::success()]),
            Some(&lost.key),
        );
        assert_eq!(settled, Some(Served::success()));
        lost.finish();
        let gone = queue.enqueue(&request).unwrap();
        let gone_key = gone.key.clone();
        drop(gone); // its flock goes with it, as with a process that died
        let live = queue.enqueue(&request).unwrap();
        let pending = queue.pending();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].0, live.key);
        assert!(
            !queue.path("w", &gone_key).exists(),
            "a dead call's files go"
        );
        // A holder claimed it, recorded a run, and died.
        assert!(queue.claim(&live.key));
        let record = RunRecord {
            kind: "restore".into(),
            keys: vec![None, Some(live.key.clone())],
        };
        let (id, mut output) = queue.start_run(&record).unwrap();
        output.write_all(b"some output").unwrap();
        let judge = |seen: &RunRecord, seen_id: &str, out: &[u8]| {
            assert_eq!(
                (seen, seen_id, out),
                (&record, id.as_str(), &b"some output"[..])
            );
            Settled::Requeue
        };
        assert_eq!(queue.recover(judge, Some(&live.key)), None, "requeued");
        assert!(live.is_pending(), "given back to the queue");
        assert!(!queue.path("b", &id).exists());
        // An output with no record (its holder died before writing one) goes.
        std::fs::write(queue.path("o", "1-2-3"), "").unwrap();
        queue.recover(|_, _, _| unreachable!(), None);
        assert!(!queue.path("o", "1-2-3").exists());
        // A claim with no record (the holder died before it wrote one) goes back too.
        assert!(queue.claim(&live.key));
        queue.recover(|_, _, _| unreachable!(), None);
        assert!(live.is_pending());
        live.finish();
    }
}
