//! How a call comes to run under the lock: holding it, nested under the caller that
//! holds it for us (the protocol is in `nesting`), or, for a caller that is not root and
//! may not open the lock file, unlocked as bare. Every wait ends at one deadline.

use crate::classify::Backend;
use crate::lock::{Held, LockError, LockFile};
use crate::nesting;
use crate::wait::StdinPump;
use std::path::Path;
use std::time::{Duration, Instant};

pub enum Guard {
    /// We hold the lock; our nested calls join by `token` (None: the lock file is
    /// read-only, so there is no record and they find us in /proc).
    Held { held: Held, token: Option<u64> },
    /// Nested under an ancestor's lock: our gate read lock on `lock` keeps the next
    /// holder from starting while we run.
    Nested { lock: LockFile, token: Option<u64> },
    /// A caller that is not root may not open the lock file: run as bare would.
    Unlocked { error: String },
    /// Our command waited in the queue, and the holder ran it for us (group commit).
    Served,
}

impl Guard {
    /// The descriptor that holds our lock (or gate read lock), for the program to keep
    /// when it is one of iptables' multi-call binaries (`backend` known): if xtlock is
    /// SIGKILLed, the next caller still waits for the program. Never for anything else,
    /// a script named iptables included, whose background children (a daemon, a
    /// `sleep &`) would hold the lock for ever.
    pub fn fd_for(&self, backend: Option<Backend>) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        backend?;
        match self {
            Guard::Held { held, .. } => Some(held.file().as_raw_fd()),
            Guard::Nested { lock, .. } => Some(lock.file().as_raw_fd()),
            Guard::Unlocked { .. } | Guard::Served => None,
        }
    }

    pub fn token(&self) -> Option<u64> {
        match self {
            Guard::Held { token, .. } | Guard::Nested { token, .. } => *token,
            Guard::Unlocked { .. } | Guard::Served => None,
        }
    }

    /// Never waits: a nested call still running keeps the next holder waiting, not us.
    pub fn release(self) {
        match self {
            Guard::Held { held, token } => {
                nesting::checkpoint("holder-done");
                if token.is_some() {
                    nesting::close_domain(held.file());
                }
            }
            Guard::Nested { lock, token } => {
                nesting::checkpoint("nested-done");
                if let Some(token) = token {
                    nesting::leave(lock.file(), token);
                }
            }
            Guard::Unlocked { .. } | Guard::Served => {}
        }
    }
}

/// Take the lock for a call, or join the caller that holds it for us, within `timeout`,
/// with the caller's stdin pumped meanwhile. If it must wait, `queue` may put the call
/// in the queue of group commit and give the descriptor that wakes it when the holder
/// has run it for us. Err: why the lock could not be had.
pub fn take(
    path: &Path,
    timeout: Duration,
    mut pump: Option<&mut StdinPump>,
    queue: &mut dyn FnMut() -> Option<std::os::fd::RawFd>,
) -> Result<Guard, String> {
    let deadline = Instant::now() + timeout;
    let io_failed = |e| LockError::Lock(path.to_path_buf(), e).to_string();
    let lock = match LockFile::open(path) {
        Ok(lock) => lock,
        // A caller that may change the firewall (root, CAP_NET_ADMIN) never runs
        // unlocked: only one that may not runs as bare (and gets iptables' own error).
        Err(e) if e.is_permission() && !crate::procinfo::may_change_firewall() => {
            return Ok(Guard::Unlocked {
                error: e.to_string(),
            });
        }
        Err(e) => return Err(e.to_string()),
    };
    let our_token = nesting::token_from_env(std::env::var_os(nesting::TOKEN_VAR).as_deref());
    if let Some(token) = our_token
        && nesting::join(lock.file(), token, deadline, pump.as_deref_mut()).map_err(io_failed)?
    {
        nesting::checkpoint("nested-joined");
        return Ok(Guard::Nested {
            lock,
            token: Some(token),
        });
    }
    let held = match lock.try_acquire().map_err(|e| e.to_string())? {
        Ok(held) => held,
        Err(busy) => {
            // Without a token that joins (env -i, sudo, a record someone overwrote), an
            // ancestor in /proc may hold it for us.
            if let Some(token) = nesting::join_by_ancestry(&busy, deadline, pump.as_deref_mut())
                .map_err(io_failed)?
            {
                return Ok(Guard::Nested { lock: busy, token });
            }
            match busy.acquire(deadline, timeout, pump.as_deref_mut(), queue()) {
                Ok(held) => held,
                Err(LockError::Served) => return Ok(Guard::Served),
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    nesting::checkpoint("holder-locked");
    match nesting::open_domain(held.file(), deadline, pump) {
        Ok(token) => Ok(Guard::Held { held, token }),
        Err(nesting::OpenError::NestedStillRunning) => Err(format!(
            "timed out after {}s waiting for {}: nested calls of its previous holder still run",
            timeout.as_secs_f64(),
            path.display()
        )),
        Err(nesting::OpenError::Io(e)) => Err(io_failed(e)),
    }
}
