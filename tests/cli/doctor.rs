//! Issue 18: `doctor` finds what bypasses the lock, on real parts in private network
//! and mount namespaces (never the host's firewall or /run): a chroot with its own /run
//! and its own iptables build blocked in a real `iptables -w`, a program linked to
//! libip4tc, rules in both backends, a read-only /run.

use crate::common::*;
use crate::real_iptables::in_namespace_of;
use std::path::{Path, PathBuf};

/// The doctor lines of a report about processes and backends (the rest depends on the
/// host's PATH and log).
fn lines_about<'a>(report: &'a str, what: &[&str]) -> Vec<&'a str> {
    report
        .lines()
        .filter(|l| what.iter().any(|w| l.contains(w)))
        .collect()
}

/// A small C program linked to libip4tc (as miniupnpd is), that touches ready and sleeps.
fn libiptc_user(dir: &Path) -> Option<PathBuf> {
    let have_header = Path::new("/usr/include/libiptc/libiptc.h").exists();
    if !require("cc", have("cc")) || !require("libip4tc-dev", have_header) {
        return None;
    }
    let source = dir.join("iptc_user.c");
    std::fs::write(
        &source,
        r#"#include <libiptc/libiptc.h>
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
    /* A call into libip4tc keeps it linked (--as-needed drops unused libraries); it
       needs no kernel table. */
    if (iptc_strerror(0) == NULL || argc < 2) return 1;
    FILE *ready = fopen(argv[1], "w");
    if (ready == NULL) return 1;
    fclose(ready);
    sleep(120);
    return 0;
}
"#,
    )
    .unwrap();
    let program = dir.join("iptc_user");
    let out = run(std::process::Command::new("cc")
        .arg("-o")
        .arg(&program)
        .arg(&source)
        .arg("-lip4tc"));
    assert!(out.status.success(), "cc: {}", stderr(&out));
    Some(program)
}

/// The binary under test by the name `xtlock` (XTLOCK_TEST_BIN may name it otherwise,
/// and xtlock takes any other name for a tool's), a link in the sandbox.
fn named_xtlock(sb: &Sandbox) -> PathBuf {
    let link = sb.path("state/xtlock");
    if !link.exists() {
        std::os::unix::fs::symlink(xtlock_bin(), &link).unwrap();
    }
    link
}

fn doctor_in_namespace(sb: &Sandbox, setup: &str) -> (String, String) {
    let script = format!(
        "export XTLOCK_LOCK_FILE=/run/xtlock.lock\n{setup}\n\
         {xtlock} doctor --fail2ban-dir /nonexistent; echo \"doctor-exit=$?\"\n",
        xtlock = named_xtlock(sb).display()
    );
    let (status, out, err) = in_namespace_of(sb, &script);
    assert!(status != 99 && status != 98, "{err}");
    (out, err)
}

/// A writer in a chroot with its own /run and its own copy of iptables is named with its
/// pid and the lock file it sees; a writer that shares the lock (README's recipe: the
/// lock file bind-mounted, its iptables run through xtlock) is not; a program linked to
/// libip4tc is.
#[test]
fn doctor_names_writers_that_cannot_share_the_lock() {
    if !private_netns_with(&["iptables-legacy", "flock", "chroot"]) {
        return;
    }
    let sb = Sandbox::new();
    let w = tempfile::tempdir().unwrap();
    let Some(iptc_user) = libiptc_user(w.path()) else {
        return;
    };
    let multi = std::fs::canonicalize(which("iptables-legacy")).unwrap();
    let wd = w.path().display();
    // The "container": a tmpfs root with the host's /usr and /etc, an empty /run of its
    // own and its own copy of xtables-legacy-multi, in our network namespace. Its
    // iptables -w waits for its own /run/xtables.lock, which it holds itself on an
    // inherited descriptor (flock conflicts between open files: it waits for ever).
    std::fs::write(
        w.path().join("container.sh"),
        format!(
            "R={wd}/root; mkdir -p $R; mount -t tmpfs container $R\n\
             for d in usr etc; do mkdir $R/$d; mount --rbind /$d $R/$d; done\n\
             for l in bin sbin lib lib64; do ln -s usr/$l $R/$l; done\n\
             mkdir $R/run $R/tmp; cp {multi} $R/xtables-legacy-multi\n\
             exec chroot $R sh -c 'exec 9>/run/xtables.lock; flock 9; \
             exec /xtables-legacy-multi iptables -w -A INPUT -j ACCEPT'\n",
            multi = multi.display()
        ),
    )
    .unwrap();
    // README's recipe: another /run with the host's lock file bind-mounted into it, the
    // call made through xtlock there.
    std::fs::write(
        w.path().join("shared.sh"),
        format!(
            ": > {wd}/keep; mount --bind /run/xtlock.lock {wd}/keep\n\
             mount -t tmpfs shared /run; : > /run/xtlock.lock; mount --bind {wd}/keep /run/xtlock.lock\n\
             exec 9>/run/xtables.lock; flock 9\n\
             exec {xtlock} iptables-legacy -w -A INPUT -j ACCEPT\n",
            xtlock = named_xtlock(&sb).display()
        ),
    )
    .unwrap();
    let setup = format!(
        ": > /run/xtlock.lock\n\
         unshare -m sh {wd}/container.sh & C=$!\n\
         unshare -m sh {wd}/shared.sh & S=$!\n\
         {iptc} {wd}/iptc-ready & P=$!\n\
         trap 'kill $C $S $I $P 2>/dev/null' EXIT\n\
         n=0; until [ \"$(cat /proc/$C/comm)\" = xtables-legacy- ] && [ -e {wd}/iptc-ready ] \
           && I=$(cat /proc/$S/task/$S/children 2>/dev/null) && [ -n \"$I\" ] \
           && [ \"$(cat /proc/${{I% }}/comm)\" = iptables-legacy ]; do \
           n=$((n+1)); [ $n -lt 400 ] || {{ echo 'writers never started' >&2; exit 1; }}; sleep 0.05; done\n\
         I=${{I% }}\n\
         echo \"pids: C=$C S=$S I=$I P=$P\"",
        iptc = iptc_user.display()
    );
    let (out, err) = doctor_in_namespace(&sb, &setup);
    let pids = out
        .lines()
        .find_map(|l| l.strip_prefix("pids: "))
        .unwrap_or_else(|| panic!("{out}\n{err}"));
    let pid = |key: &str| -> u32 {
        pids.split(' ')
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .unwrap()
            .parse()
            .unwrap()
    };
    let (c, s, i, p) = (pid("C"), pid("S"), pid("I"), pid("P"));
    let found = lines_about(&out, &["problem: pid", "processes:"]);
    eprintln!("{}", found.join("\n"));
    let container = format!(
        "problem: pid {c} (/xtables-legacy-multi iptables -w -A INPUT -j ACCEPT) runs xtables-legacy-multi in this network namespace, with its own iptables build "
    );
    let line = found
        .iter()
        .find(|l| l.starts_with(&container))
        .unwrap_or_else(|| panic!("the container's iptables not named:\n{out}"));
    assert!(
        line.contains(&format!(
            "but cannot share xtlock's lock: it sees /proc/{c}/root/run/xtlock.lock (absent there); its root is another (a container or chroot); fix: bind-mount /run/xtlock.lock into its root"
        )),
        "{line}"
    );
    let iptc = format!(
        "problem: pid {p} ({} {wd}/iptc-ready) has libip4tc.so",
        iptc_user.display()
    );
    assert!(
        found.iter().any(|l| l.starts_with(&iptc)
            && l.contains("mapped: it writes the firewall through libiptc, which takes no lock")),
        "the libiptc user not named:\n{out}"
    );
    for shared in [s, i] {
        assert!(
            !found
                .iter()
                .any(|l| l.starts_with(&format!("problem: pid {shared} "))),
            "pid {shared} shares the lock, yet:\n{out}"
        );
    }
    assert_eq!(
        found
            .iter()
            .filter(|l| l.starts_with("problem: pid"))
            .count(),
        2,
        "{out}"
    );
    assert!(out.contains("doctor-exit=1"), "{out}");
}

/// Nothing to report in a fresh namespace; and looking created no table: neither a
/// legacy one (/proc/net/ip_tables_names) nor an nft one.
#[test]
fn doctor_finds_nothing_in_a_clean_namespace_and_creates_no_table() {
    if !private_netns_with(&["iptables-legacy", "iptables-nft", "nft"]) {
        return;
    }
    let sb = Sandbox::new();
    let (out, err) = doctor_in_namespace(
        &sb,
        "echo \"before: [$(cat /proc/net/ip_tables_names /proc/net/ip6_tables_names)] [$(nft list ruleset)]\"",
    );
    let after = in_namespace_of(
        &sb,
        &format!(
            "{} doctor --fail2ban-dir /nonexistent >/dev/null\n\
             echo \"after: [$(cat /proc/net/ip_tables_names /proc/net/ip6_tables_names)] [$(nft list ruleset)]\"",
            named_xtlock(&sb).display()
        ),
    );
    assert!(out.contains("before: [] []"), "{out}{err}");
    assert!(after.1.contains("after: [] []"), "{after:?}");
    let found = lines_about(&out, &["processes:", "backends:", "problem: pid"]);
    assert!(
        found
            .iter()
            .any(|l| l.starts_with("ok: processes: none of the ")
                && l.ends_with(
                    " in this network namespace writes its firewall past xtlock's lock"
                )),
        "{out}"
    );
    assert!(
        found.contains(&"ok: backends: no iptables rules in this network namespace"),
        "{out}"
    );
    assert!(!found.iter().any(|l| l.starts_with("problem:")), "{out}");
}

/// Rules in both backends: one line naming the tables of each, with the fix; one backend
/// alone is fine.
#[test]
fn doctor_reports_rules_in_both_backends() {
    if !private_netns_with(&["iptables-legacy", "iptables-nft"]) {
        return;
    }
    let sb = Sandbox::new();
    let doctor = format!(
        "{} doctor --fail2ban-dir /nonexistent | grep backends:",
        named_xtlock(&sb).display()
    );
    let script = format!(
        "export XTLOCK_LOCK_FILE=/run/xtlock.lock\n\
         iptables-legacy -N LEGACY-CHAIN; ip6tables-legacy -t raw -A PREROUTING -j ACCEPT\n\
         echo '== legacy'; {doctor}\n\
         iptables-nft -t nat -A POSTROUTING -j ACCEPT\n\
         echo '== both'; {doctor}\n"
    );
    let (_, out, err) = in_namespace_of(&sb, &script);
    let (legacy, both) = out
        .split_once("== both")
        .unwrap_or_else(|| panic!("{out}{err}"));
    assert!(
        legacy.contains("ok: backends: legacy only (ip filter, ip6 raw)"),
        "{out}{err}"
    );
    assert!(
        both.contains("problem: backends: legacy and nft tables both present: legacy ip filter, ip6 raw; nf_tables ip nat: a caller of one backend does not see the other's rules and chains; fix: use one backend: `update-alternatives --set iptables /usr/sbin/iptables-nft`"),
        "{out}{err}"
    );
}

/// A read-only /run (a sandboxed service): doctor says what xtlock then does, and a real
/// call does just that.
#[test]
fn doctor_says_what_a_read_only_run_does_and_calls_agree() {
    if !private_netns_with(&["iptables-legacy"]) {
        return;
    }
    let sb = Sandbox::new();
    let xtlock = named_xtlock(&sb);
    let x = xtlock.display();
    let script = format!(
        "mount -t tmpfs -o ro readonly /run\n\
         for lock in /run/xtlock.lock /run/sub/xtlock.lock; do\n\
           echo \"== $lock\"; XTLOCK_LOCK_FILE=$lock {x} doctor --fail2ban-dir /nonexistent | grep 'lock /run'\n\
           XTLOCK_LOCK_FILE=$lock {x} iptables-legacy -S INPUT; echo \"call-exit=$?\"\n\
         done\n\
         for lock in xtlock.lock xtables.lock; do\n\
           mount -o remount,rw /run; : > /run/$lock; mount -o remount,ro /run\n\
           echo \"== with $lock\"; XTLOCK_LOCK_FILE=/run/xtlock.lock {x} doctor --fail2ban-dir /nonexistent | grep 'lock /run'\n\
           XTLOCK_LOCK_FILE=/run/xtlock.lock {x} iptables-legacy -S INPUT; echo \"call-exit=$?\"\n\
         done\n"
    );
    let (_, out, err) = in_namespace_of(&sb, &script);
    eprintln!("{out}{err}");
    let parts: Vec<&str> = out.split("== ").collect();
    let [_, absent, missing, xtlock_only, both] = parts[..] else {
        panic!("{out}{err}");
    };
    assert!(
        absent.contains("problem: lock /run/xtlock.lock: absent, and /run is read-only (a sandboxed service): every call exits 4 (cannot open lock file /run/xtlock.lock: Read-only file system); fix: create it before such callers start")
            && absent.contains("call-exit=4"),
        "{out}"
    );
    assert!(
        err.contains("xtlock: cannot open lock file /run/xtlock.lock: Read-only file system"),
        "{err}"
    );
    assert!(
        missing.contains("problem: lock /run/sub/xtlock.lock: /run/sub is missing and cannot be made (read-only file system): every call exits 4")
            && missing.contains("call-exit=4"),
        "{out}"
    );
    assert!(
        err.contains(
            "xtlock: cannot create directory /run/sub for the lock file: Read-only file system"
        ),
        "{err}"
    );
    // xtlock's lock there, iptables' own not: xtlock locks, legacy iptables cannot.
    assert!(
        xtlock_only.contains("note: lock /run/xtlock.lock: read-only here: xtlock opens it read-only and still locks it")
            && xtlock_only.contains("problem: iptables' lock /run/xtables.lock: absent in a read-only directory: every legacy iptables call exits 4")
            && xtlock_only.contains("call-exit=4"),
        "{out}"
    );
    assert!(
        err.contains("Fatal: can't open lock file /run/xtables.lock: Read-only file system"),
        "{err}"
    );
    assert!(
        both.contains("note: lock /run/xtlock.lock: read-only here")
            && !both.contains("problem:")
            && both.contains("-P INPUT ACCEPT")
            && both.contains("call-exit=0"),
        "{out}"
    );
}
