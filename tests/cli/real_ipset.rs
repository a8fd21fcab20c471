//! The real ipset in a private network namespace (sets are per namespace): what
//! changes nothing runs in xtlock's place without the lock, what changes a set waits.

use crate::common::*;
use crate::lock::hold_lock;
use crate::real_iptables::in_namespace_of;

/// A sandbox with an ipset shim, and the real ipset's path; None (said) without them.
fn ipset_sandbox() -> Option<(Sandbox, std::path::PathBuf)> {
    if !private_netns_with(&["ipset"]) {
        return None;
    }
    let sb = Sandbox::new();
    sb.link_shim("ipset");
    Some((sb, which("ipset")))
}

/// `ipset save X | sed ... | ipset restore` needs the save to run while the restore
/// holds the lock: reads never queue. Before, every ipset call was locked.
#[test]
fn ipset_reads_run_while_the_lock_is_held_and_writes_wait() {
    let Some((sb, bare)) = ipset_sandbox() else {
        return;
    };
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
/// timeout, the restore holding the lock while it waited for the save's output). Run
/// as typed, then with the save waiting until the restore holds the lock (the order that
/// deadlocked; bounded at 3 s, since now the restore takes it only once input comes).
#[test]
fn an_ipset_pipeline_through_the_shims_copies_every_entry() {
    let Some((sb, bare)) = ipset_sandbox() else {
        return;
    };
    let script = format!(
        "{bare} create blocklist hash:ip maxelem 65536 || exit 97\n\
         for i in $(seq 0 2999); do echo \"add blocklist 10.9.$((i / 250)).$((i % 250))\"; done | {bare} restore || exit 98\n\
         export XTLOCK_TIMEOUT=5\n\
         ipset save blocklist | sed s/blocklist/copy/g | ipset restore; echo \"statuses=${{PIPESTATUS[*]}}\"\n\
         echo entries=$({bare} list copy | grep -c '^10\\.9\\.')\n\
         {{ for i in $(seq 60); do flock -n \"$XTLOCK_LOCK_FILE\" true || break; sleep 0.05; done; ipset save blocklist; }} \
           | sed s/blocklist/later/g | ipset restore; echo \"restore first: statuses=${{PIPESTATUS[*]}}\"\n\
         echo later=$({bare} list later | grep -c '^10\\.9\\.')",
        bare = bare.display()
    );
    let (status, stdout, stderr) =
        in_namespace_of(&sb, &format!("bash -c {}", shell_quote(&script)));
    assert_eq!(status, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("statuses=0 0 0\n"), "{stdout}\n{stderr}");
    assert!(stdout.contains("entries=3000\n"), "{stdout}\n{stderr}");
    // The restore started first (it held the lock before, or 3 s passed): the same.
    assert!(
        stdout.contains("restore first: statuses=0 0 0\n"),
        "{stdout}\n{stderr}"
    );
    assert!(stdout.contains("later=3000\n"), "{stdout}\n{stderr}");
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// The ipset reads that now run in xtlock's place (exec), against bare: status, stdout
/// and stderr byte for byte, answers and errors alike.
#[test]
fn ipset_reads_through_the_shim_are_byte_identical_to_bare() {
    let Some((sb, bare)) = ipset_sandbox() else {
        return;
    };
    let reads = [
        "list",
        "save",
        "list f2b-t",
        "-o save list f2b-t",
        "-name list",
        "-t list",
        "save missing",
        "list -sorted f2b-t",
        "l",
        "version",
        "help",
    ];
    let mut script = format!(
        "{bare} create f2b-t hash:ip && {bare} add f2b-t 192.0.2.1 && {bare} add f2b-t 192.0.2.9 || exit 97\n",
        bare = bare.display()
    );
    for (n, args) in reads.iter().enumerate() {
        script += &format!(
            "{bare} {args} > /tmp/b{n}.out 2> /tmp/b{n}.err; echo $? > /tmp/b{n}.status\n\
             ipset {args} > /tmp/x{n}.out 2> /tmp/x{n}.err; echo $? > /tmp/x{n}.status\n\
             for f in out err status; do cmp -s /tmp/b{n}.$f /tmp/x{n}.$f || echo \"differs: {args} ($f)\"; done\n",
            bare = bare.display()
        );
    }
    // /tmp is the namespace's own tmpfs here.
    let (status, stdout, stderr) =
        in_namespace_of(&sb, &format!("mount -t tmpfs xt /tmp || exit 96\n{script}"));
    assert_eq!(status, 0, "{stdout}\n{stderr}");
    assert!(!stdout.contains("differs"), "{stdout}");
}
