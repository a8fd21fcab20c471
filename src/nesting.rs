//! Calls within calls. A script run under the lock may call iptables again through the
//! shim; that nested call must not wait for a lock its own ancestor holds. And a copy of
//! xtlock placed ahead of the real program must end in an error, not a fork loop.

use std::ffi::OsStr;

/// Set for the child: "PID:DEV:INO" of the xtlock process holding the lock.
pub const HOLDER_VAR: &str = "XTLOCK_HOLDER";
/// Set for the child: how many xtlock calls enclose it (as rustup's RUST_RECURSION_COUNT).
pub const DEPTH_VAR: &str = "XTLOCK_DEPTH";
pub const MAX_DEPTH: u32 = 16;

pub fn depth(value: Option<&OsStr>) -> u32 {
    value
        .and_then(|v| v.to_str())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[derive(Debug, PartialEq, Eq)]
pub struct Marker {
    pub pid: u32,
    pub dev: u64,
    pub ino: u64,
}

impl Marker {
    pub fn parse(value: &OsStr) -> Option<Marker> {
        let mut parts = value.to_str()?.split(':');
        let marker = Marker {
            pid: parts.next()?.parse().ok()?,
            dev: parts.next()?.parse().ok()?,
            ino: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(marker)
    }

    pub fn render(&self) -> String {
        format!("{}:{}:{}", self.pid, self.dev, self.ino)
    }

    /// The marker is only believed if it names our lock file, its pid is one of our
    /// ancestors, and the kernel says that pid holds the lock right now. A marker left in
    /// an environment (exported, inherited by a daemon, copied by hand) fails one of these.
    pub fn is_live_for(&self, lock_identity: (u64, u64)) -> bool {
        (self.dev, self.ino) == lock_identity
            && crate::procinfo::is_ancestor(self.pid)
            && crate::procinfo::flock_holders(self.dev, self.ino).contains(&self.pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_round_trip_and_garbage() {
        let m = Marker {
            pid: 812,
            dev: 64768,
            ino: 1234,
        };
        assert_eq!(Marker::parse(OsStr::new(&m.render())), Some(m));
        for bad in ["", "1:2", "1:2:3:4", "a:2:3", "-1:2:3", "1:2:x"] {
            assert_eq!(Marker::parse(OsStr::new(bad)), None, "{bad:?}");
        }
    }

    #[test]
    fn depth_parse() {
        assert_eq!(depth(None), 0);
        assert_eq!(depth(Some(OsStr::new("3"))), 3);
        assert_eq!(depth(Some(OsStr::new("junk"))), 0);
    }

    #[test]
    fn stale_markers_are_not_live() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let lock = crate::lock::LockFile::open(&path).unwrap();
        let id = lock.identity();
        let parent = std::os::unix::process::parent_id();
        // Our parent is an ancestor but holds nothing.
        assert!(
            !Marker {
                pid: parent,
                dev: id.0,
                ino: id.1
            }
            .is_live_for(id)
        );
        // We hold it, but we are not our own ancestor.
        let _held = lock.acquire(std::time::Duration::ZERO).unwrap();
        assert!(
            !Marker {
                pid: std::process::id(),
                dev: id.0,
                ino: id.1
            }
            .is_live_for(id)
        );
        // Another file.
        assert!(
            !Marker {
                pid: parent,
                dev: id.0,
                ino: id.1 + 1
            }
            .is_live_for(id)
        );
    }
}
