//! A legacy iptables table's shape as the kernel tells it (`IPT_SO_GET_INFO`: valid
//! hooks, hook entry points, underflows, number of entries, size), to learn whether a
//! batch whose COMMIT failed changed the table. libiptc's commit replaces the table
//! (SO_SET_REPLACE) and then adds the old counters (SO_SET_ADD_COUNTERS): a rule the
//! kernel refuses fails the first and changes nothing; a writer that bypasses every lock
//! and replaces the table in between makes the second fail after ours landed (measured
//! with containers that do not share the lock: in 8 of 11 runs). One getsockopt, no
//! module loaded, nothing created.

/// `IPT_SO_GET_INFO` and `IP6T_SO_GET_INFO` (linux/netfilter_ipv4/ip_tables.h,
/// ip6_tables.h: IPT_BASE_CTL + 0).
const SO_GET_INFO: libc::c_int = 64;
/// `struct ipt_getinfo` / `ip6t_getinfo`: name[32], valid_hooks, hook_entry[5],
/// underflow[5], num_entries, size (all u32).
const INFO_LEN: usize = 32 + 4 + 5 * 4 + 5 * 4 + 4 + 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableShape {
    /// The table does not exist (ENOENT: its module is loaded but it was never used).
    Absent,
    Shape(Vec<u8>),
    /// It could not be read (no privilege, no module): nothing can be told.
    Unknown,
}

/// The shape of legacy table `table` of IPv4 (or IPv6) in our network namespace.
pub fn table_shape(table: &str, ipv6: bool) -> TableShape {
    let (family, level) = match ipv6 {
        false => (libc::AF_INET, libc::IPPROTO_IP),
        true => (libc::AF_INET6, libc::IPPROTO_IPV6),
    };
    if table.len() >= 32 {
        return TableShape::Unknown;
    }
    let mut info = [0u8; INFO_LEN];
    info[..table.len()].copy_from_slice(table.as_bytes());
    // SAFETY: socket has no memory arguments; the descriptor is closed below.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_RAW,
        )
    };
    if fd < 0 {
        return TableShape::Unknown;
    }
    let mut len = INFO_LEN as libc::socklen_t;
    // SAFETY: `info` is INFO_LEN writable bytes and `len` says so; `fd` is ours.
    let rc =
        unsafe { libc::getsockopt(fd, level, SO_GET_INFO, info.as_mut_ptr().cast(), &mut len) };
    let errno = std::io::Error::last_os_error().raw_os_error();
    // SAFETY: `fd` was opened above and is closed once.
    unsafe { libc::close(fd) };
    match (rc, errno) {
        (0, _) if len as usize == INFO_LEN => TableShape::Shape(info.to_vec()),
        (_, Some(libc::ENOENT)) => TableShape::Absent,
        _ => TableShape::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_name_is_unknown() {
        assert_eq!(table_shape(&"x".repeat(40), false), TableShape::Unknown);
    }
}
