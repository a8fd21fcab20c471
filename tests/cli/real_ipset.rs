//! The real ipset in a private network namespace (sets are per namespace): what
//! changes nothing runs in xtlock's place without the lock, what changes a set waits.

use crate::common::*;
use crate::lock::hold_lock;
use crate::real_iptables::in_namespace_of;

fn available() -> bool {
    private_netns_with(&["ipset"])
}

/// `ipset save X | sed ... | ipset restore` needs the save to run while the restore
/// holds the lock: reads never queue. Before, every ipset call was locked.
#[test]
fn ipset_reads_run_while_the_lock_is_held_and_writes_wait() {
    if !available() {
        return;
    }
    let sb = Sandbox::new();
    sb.link_shim("ipset");
    let bare = which("ipset");
    let script = format!(
        "{bare} create f2b-t hash:ip && {bare} add f2b-t 192.0.2.1 || exit 97\n\
         export XTLOCK_TIMEOUT=2\n\
         ipset save f2b-t; echo save=$?\n\
         ipset -exist --name list; echo list=$?\n\
         ipset -o save l f2b-t > /dev/null; echo l=$?\n\
         ipset version > /dev/null; echo version=$?\n\
         ipset add f2b-t 192.0.2.2; echo add=$?\n\
         echo 'add f2b-t 192.0.2.3' | ipset restore; echo restore=$?\n\
         echo bare:; {bare} save f2b-t",
        bare = bare.display()
    );
    let mut holder = hold_lock(&sb, 60);
    let (status, stdout, stderr) = in_namespace_of(&sb, &script);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(status, 0, "{stdout}\n{stderr}");
    let (through, bare_save) = stdout.split_once("bare:\n").unwrap();
    for read in ["save=0", "list=0", "l=0", "version=0"] {
        assert!(through.contains(read), "waited: {stdout}\n{stderr}");
    }
    assert!(through.starts_with("create f2b-t hash:ip"), "{stdout}");
    assert!(
        through.contains("add f2b-t 192.0.2.1\nsave=0\nf2b-t\nlist=0\n"),
        "{stdout}"
    );
    assert!(
        through.contains("add=4\nrestore=4\n"),
        "writes ran: {stdout}"
    );
    assert_eq!(
        stderr.matches("xtlock: timed out after 2s").count(),
        2,
        "{stderr}"
    );
    assert!(bare_save.contains("add f2b-t 192.0.2.1\n"), "{stdout}");
    assert!(
        !bare_save.contains("192.0.2.2") && !bare_save.contains("192.0.2.3"),
        "{stdout}"
    );
}

/// Issue 15, item 1, as reported: `ipset save S | sed | ipset restore` through the shims
/// copies every entry, as bare (before: statuses `4 0 0` and nothing copied after the
/// timeout, the restore holding the lock while it waited for the save's output).
#[test]
fn an_ipset_pipeline_through_the_shims_copies_every_entry() {
    if !available() {
        return;
    }
    let sb = Sandbox::new();
    sb.link_shim("ipset");
    let bare = which("ipset");
    let script = format!(
        "{bare} create blocklist hash:ip maxelem 65536 || exit 97\n\
         for i in $(seq 0 2999); do echo \"add blocklist 10.9.$((i / 250)).$((i % 250))\"; done | {bare} restore || exit 98\n\
         export XTLOCK_TIMEOUT=5\n\
         ipset save blocklist | sed s/blocklist/copy/g | ipset restore; echo \"statuses=${{PIPESTATUS[*]}}\"\n\
         echo entries=$({bare} list copy | grep -c '^10\\.9\\.')",
        bare = bare.display()
    );
    let (status, stdout, stderr) =
        in_namespace_of(&sb, &format!("bash -c {}", shell_quote(&script)));
    assert_eq!(status, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("statuses=0 0 0\n"), "{stdout}\n{stderr}");
    assert!(stdout.contains("entries=3000\n"), "{stdout}\n{stderr}");
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}
