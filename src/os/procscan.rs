//! Reading other processes from /proc for `doctor`: which network namespace and root
//! each one has, which files it runs and maps, and which lock file it would see. Only
//! reads; what the facts mean is decided in `admin::bypass`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// (device, inode): how a namespace, a root or a lock file is told apart from another
/// of the same name.
pub type FileId = (u64, u64);

/// What doctor needs to know of one process. `None`: unreadable (gone, or not ours to
/// read as a user without CAP_SYS_PTRACE).
#[derive(Debug, Clone, Default)]
pub struct Process {
    pub pid: u32,
    /// The kernel's name for it: the executed file's name, at most 15 bytes.
    pub comm: String,
    /// /proc/PID/exe as its link reads (the path in its own root, where that is not
    /// under ours), and the (dev, ino) of the file it names.
    pub exe: Option<PathBuf>,
    pub exe_id: Option<FileId>,
    pub netns: Option<FileId>,
    pub root: Option<FileId>,
    /// Its namespaces were not ours to read (another user's process, read as a user).
    pub denied: bool,
}

/// The (dev, ino) of a file, following links: for /proc/PID/ns/net the namespace (an
/// nsfs inode, Linux 3.8), for /proc/PID/root the root directory in that process's
/// mount namespace.
pub fn id_of(path: &Path) -> Option<FileId> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The (dev, ino) of a file without following a last-component link (a lock file that
/// is a symlink is no lock file).
pub fn own_id_of(path: &Path) -> Option<FileId> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Every process /proc lists (not threads), without ourselves.
pub fn pids() -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&pid| pid != me)
        .collect();
    pids.sort_unstable();
    pids
}

pub fn read(pid: u32) -> Process {
    let dir = PathBuf::from(format!("/proc/{pid}"));
    let netns = std::fs::metadata(dir.join("ns/net"));
    Process {
        denied: netns
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied),
        netns: netns.ok().map(|m| (m.dev(), m.ino())),
        pid,
        comm: std::fs::read_to_string(dir.join("comm"))
            .map(|c| c.trim_end_matches('\n').to_string())
            .unwrap_or_default(),
        exe: std::fs::read_link(dir.join("exe")).ok(),
        exe_id: id_of(&dir.join("exe")),
        root: id_of(&dir.join("root")),
    }
}

/// Our own network namespace and root, as `read` gives them for another process.
pub fn ours() -> (Option<FileId>, Option<FileId>) {
    (
        id_of(Path::new("/proc/self/ns/net")),
        id_of(Path::new("/proc/self/root")),
    )
}

/// The file names (not paths) of what the process has mapped: its program, the shared
/// libraries it loaded (by link or by dlopen), once each. /proc/PID/maps lines end in
/// the mapped file's path (`7f..-7f.. r-xp 00002000 fe:01 1234  /usr/lib/x86_64-linux-gnu/libip4tc.so.2.0.0`);
/// a file deleted since shows ` (deleted)` after it.
pub fn mapped_files(pid: u32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map(|maps| parse_mapped_files(&maps))
        .unwrap_or_default()
}

fn parse_mapped_files(maps: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for line in maps.lines() {
        // Six fields, the path last (it may hold spaces): split off the first five.
        let Some(path) = line.splitn(6, ' ').nth(5).map(str::trim_start) else {
            continue;
        };
        let path = path.strip_suffix(" (deleted)").unwrap_or(path);
        if !path.starts_with('/') {
            continue; // [heap], [stack], [vdso], anonymous
        }
        let name = path.rsplit('/').next().unwrap_or(path);
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    names
}

/// `path` (absolute) as the process sees it: under /proc/PID/root, which the kernel
/// resolves in that process's mount namespace and root (a container's own /run, a
/// chroot). An absolute symlink on the way resolves against our root, not its: a lock
/// file path should hold none.
pub fn in_root_of(pid: u32, path: &Path) -> PathBuf {
    let relative = path.strip_prefix("/").unwrap_or(path);
    PathBuf::from(format!("/proc/{pid}/root")).join(relative)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_names() {
        let maps = "\
55d0c0a00000-55d0c0a02000 r--p 00000000 fe:01 131  /usr/sbin/miniupnpd
7f1c2e000000-7f1c2e002000 r-xp 00002000 fe:01 4242                       /usr/lib/x86_64-linux-gnu/libip4tc.so.2.0.0
7f1c2e100000-7f1c2e102000 r--p 00000000 fe:01 4242                       /usr/lib/x86_64-linux-gnu/libip4tc.so.2.0.0
7f1c2e200000-7f1c2e202000 rw-p 00000000 00:00 0
7f1c2e300000-7f1c2e302000 rw-p 00000000 00:00 0                          [heap]
7f1c2e400000-7f1c2e402000 r-xp 00000000 fe:01 77                         /opt/my dir/libxtables.so.12 (deleted)
";
        assert_eq!(
            parse_mapped_files(maps),
            ["miniupnpd", "libip4tc.so.2.0.0", "libxtables.so.12"]
        );
        assert!(parse_mapped_files("").is_empty());
        assert!(parse_mapped_files("garbage\n").is_empty());
    }

    #[test]
    fn own_process_is_readable() {
        let me = read(std::process::id());
        let (netns, root) = ours();
        assert_eq!((me.netns, me.root), (netns, root));
        assert!(me.exe_id.is_some() && !me.comm.is_empty());
        assert!(!pids().contains(&std::process::id()));
        assert_eq!(
            in_root_of(7, Path::new("/run/xtlock.lock")),
            Path::new("/proc/7/root/run/xtlock.lock")
        );
    }
}
