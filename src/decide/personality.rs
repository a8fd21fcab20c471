//! Which program am I? One binary, many names (like rustup's proxies): called as
//! `xtlock` it is the prefix tool, called under any other name it *is* that program.

use std::ffi::{OsStr, OsString};
use std::path::Path;

pub use crate::text::OWN_NAME;

#[derive(Debug, PartialEq, Eq)]
pub enum Personality {
    /// `xtlock [OPTIONS] PROGRAM ARGS...` or an admin command.
    Own,
    /// A PATH shim: the file name we were called by, e.g. `iptables`.
    Shim(OsString),
}

/// Decide from argv[0] alone; its directory does not matter, only the file name.
pub fn personality(arg0: &OsStr) -> Personality {
    match Path::new(arg0).file_name() {
        None => Personality::Own,
        Some(name) if name == OWN_NAME => Personality::Own,
        Some(name) => Personality::Shim(name.to_os_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let shim = |s: &str| Personality::Shim(s.into());
        let cases = [
            ("xtlock", Personality::Own),
            ("/usr/bin/xtlock", Personality::Own),
            ("./target/release/xtlock", Personality::Own),
            ("", Personality::Own),
            ("/", Personality::Own),
            ("iptables", shim("iptables")),
            ("/usr/local/sbin/iptables", shim("iptables")),
            ("ip6tables-restore", shim("ip6tables-restore")),
            ("xtlock-old", shim("xtlock-old")),
            ("../sbin/iptables-legacy-save", shim("iptables-legacy-save")),
        ];
        for (arg0, want) in cases {
            assert_eq!(personality(OsStr::new(arg0)), want, "arg0 {arg0:?}");
        }
    }
}
