//! Every wait of xtlock before the program runs: bounded by a deadline, and while it
//! lasts the caller's stdin is drained into memory when the program will read it to its
//! end anyway (a restore fed by a pipe). Without that, `ipset save | ipset restore`
//! through xtlock deadlocks: restore holds the lock waiting for input while save waits
//! for the lock, or save holds it blocked on a full pipe that restore does not read.
//!
//! A blocking flock(2) or F_OFD_SETLKW has no timeout of its own, so a helper thread
//! blocks in it and writes a byte to a pipe when it returns; this thread polls that pipe
//! (and stdin). A signal's default action ends xtlock meanwhile: nothing has run yet.
//! If the deadline passes first, the helper may still land its lock a moment later;
//! the process then exits holding it, and the kernel releases it with the process.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Instant;

/// The caller's stdin, read while we wait (only for a program that reads it to EOF).
pub struct StdinPump {
    pub bytes: Vec<u8>,
    pub eof: bool,
    max: usize,
}

impl StdinPump {
    /// A pump for our stdin, if it is a pipe or socket whose writer could block on us;
    /// a terminal, a file or /dev/null never does.
    pub fn for_stdin(max: usize) -> Option<StdinPump> {
        let stdin = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
        let meta = std::fs::File::from(stdin).metadata().ok()?;
        use std::os::unix::fs::FileTypeExt;
        let kind = meta.file_type();
        (kind.is_fifo() || kind.is_socket()).then(|| StdinPump {
            bytes: Vec::new(),
            eof: false,
            max,
        })
    }

    /// Block until stdin has input or its end, as the program would block in its first
    /// read. Not a lock wait: the caller may be slow to write (a pipeline's first stage
    /// running), and iptables-legacy-restore too takes iptables' lock only once its first
    /// table arrives.
    pub fn wait_for_input(&self) {
        let mut fd = libc::pollfd {
            fd: 0,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        while unsafe { libc::poll(&mut fd, 1, -1) } < 0 {}
    }

    /// It stopped reading at `max`: a writer feeding it may be blocked on us.
    pub fn is_full(&self) -> bool {
        self.bytes.len() >= self.max
    }

    fn wants_more(&self) -> bool {
        !self.eof && self.bytes.len() < self.max
    }

    /// Read what is there (poll said readable); never blocks for more.
    fn take(&mut self) {
        let room = (self.max - self.bytes.len()).min(64 << 10);
        let at = self.bytes.len();
        self.bytes.resize(at + room, 0);
        // SAFETY: the buffer has `room` writable bytes from `at`; fd 0 is open
        // (process_setup reopens a closed one on /dev/null).
        let n = unsafe { libc::read(0, self.bytes[at..].as_mut_ptr().cast(), room) };
        self.bytes.truncate(at + n.max(0) as usize);
        match n {
            0 => self.eof = true,
            n if n < 0 => {
                let e = io::Error::last_os_error();
                if !matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) {
                    self.eof = true; // as the program would see it: no more input
                }
            }
            _ => {}
        }
    }
}

/// How a bounded wait ended.
pub enum Waited<T> {
    Done(T),
    TimedOut,
    /// `wake` became readable first (a queued call's result is ready); `op` may still
    /// land later: the process exits soon, and the kernel drops its place or its lock.
    Woken,
}

/// Run `op` (a blocking lock call) until it returns, `deadline` passes or `wake` is
/// readable, pumping stdin meanwhile. `op` runs on a helper thread.
pub fn until<T: Send + 'static>(
    deadline: Instant,
    mut pump: Option<&mut StdinPump>,
    wake: Option<std::os::fd::RawFd>,
    op: impl FnOnce() -> T + Send + 'static,
) -> io::Result<Waited<T>> {
    let (done_read, done_write) = std::io::pipe()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(op());
        drop(done_write); // EOF on the pipe: the result is in the channel
    });
    let done_fd: OwnedFd = done_read.into();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(match rx.try_recv() {
                Ok(value) => Waited::Done(value),
                Err(_) => Waited::TimedOut,
            });
        }
        let pumping = pump.as_ref().is_some_and(|p| p.wants_more());
        let mut fds = [
            libc::pollfd {
                fd: done_fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if pumping { 0 } else { -1 }, // poll ignores a negative fd
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: wake.unwrap_or(-1),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: `fds` is a valid array of three pollfd for the duration of the call.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 3, ms) };
        if rc < 0 {
            continue; // EINTR
        }
        if fds[1].revents != 0
            && let Some(pump) = pump.as_deref_mut()
        {
            pump.take();
        }
        if fds[2].revents != 0 && fds[0].revents == 0 {
            return Ok(Waited::Woken);
        }
        if fds[0].revents != 0 {
            if let Ok(value) = rx.recv() {
                return Ok(Waited::Done(value));
            }
            return Err(io::Error::other("the waiting thread died"));
        }
    }
}
