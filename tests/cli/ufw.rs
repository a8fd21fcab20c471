//! The real ufw, which runs /usr/sbin/iptables by its full path: the same commands give
//! the same output, status and rules bare and with `xtlock install --divert`, and the
//! diverted run really went through xtlock. tests/ufw/compare.sh does each run in a
//! private network and mount namespace with private copies of /usr/sbin, /etc/ufw and
//! the dpkg diversions file, so neither the host's firewall nor its files change.

use crate::common::*;
use std::path::Path;

fn compare(mode: &str, out_dir: &Path) -> String {
    let xtlock = xtlock_bin();
    let xtlock = xtlock.as_os_str();
    let out = run_in_private_namespace(
        "ufw/compare.sh",
        &[mode.as_ref(), xtlock, out_dir.as_os_str()],
    );
    result_line("compare.sh", &out);
    std::fs::read_to_string(out_dir.join(format!("{mode}.out"))).unwrap()
}

#[test]
fn ufw_gives_the_same_rules_and_output_bare_and_diverted() {
    let ok = require("root", is_root())
        && require("ufw", have("ufw"))
        && require("dpkg-divert", have("dpkg-divert"));
    if !ok {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bare = compare("bare", dir.path());
    let diverted = compare("divert", dir.path());
    assert!(
        bare.contains(":ufw-user-input - [0:0]") && bare.contains("--dport 443 -j ACCEPT"),
        "ufw made no rules:\n{bare}"
    );
    assert_eq!(bare, diverted, "ufw behaved differently through xtlock");
    let log = std::fs::read_to_string(dir.path().join("xtlock.log")).unwrap();
    let calls = events(&log, "call");
    let by = |prog: &str| calls.iter().filter(|c| field(c, "prog") == prog).count();
    assert!(
        by("iptables") > 0 && by("ip6tables") > 0 && by("iptables-restore") > 0,
        "ufw's calls did not go through xtlock:\n{log}"
    );
}
