//! Who flushed what (issue 18): a flush through xtlock that takes chains or rules away
//! leaves one `flushed` entry naming the flusher and what is gone; a call that names its
//! chain, or a flush that takes nothing, leaves none. Real iptables, both backends.

use crate::common::*;
use crate::real_iptables::in_namespace_of;

#[test]
fn a_flush_names_the_flusher_and_what_is_gone() {
    if !private_netns_with(&["iptables-legacy", "iptables-nft"]) {
        return;
    }
    for backend in ["legacy", "nft"] {
        let sb = Sandbox::new();
        for name in [
            format!("iptables-{backend}"),
            format!("iptables-{backend}-restore"),
        ] {
            sb.link_shim(&name);
        }
        let ipt = format!("iptables-{backend}");
        // Set-up bare (the real program, not the shim), then each call through xtlock.
        let real = which(&ipt);
        let script = format!(
            "R={real}; $R -N DOCKER-USER; $R -N f2b-sshd; $R -A INPUT -j f2b-sshd\n\
             $R -A DOCKER-USER -j RETURN; $R -t nat -A POSTROUTING -j MASQUERADE\n\
             {ipt} -F INPUT; echo named=$?\n\
             {ipt} -F; echo flush=$?\n\
             {ipt} -X; echo delete=$?\n\
             {ipt} -X; echo again=$?\n\
             printf '*nat\\n:POSTROUTING ACCEPT [0:0]\\nCOMMIT\\n' | {ipt}-restore; echo restore=$?\n\
             $R -t nat -A POSTROUTING -j MASQUERADE\n\
             printf '*nat\\n:POSTROUTING ACCEPT [0:0]\\nCOMMIT\\n' | {ipt}-restore --test; echo test=$?",
            real = real.display(),
        );
        let (status, stdout, stderr) = in_namespace_of(&sb, &script);
        assert_eq!(status, 0, "{backend}: {stderr}");
        assert_eq!(
            stdout, "named=0\nflush=0\ndelete=0\nagain=0\nrestore=0\ntest=0\n",
            "{backend}: {stderr}"
        );
        assert!(
            stderr.is_empty(),
            "{backend}: a flush prints nothing: {stderr}"
        );
        let log = sb.log();
        let flushed = events(&log, "flushed");
        let gone: Vec<&str> = flushed.iter().map(|e| field(e, "gone")).collect();
        // `-F INPUT` named its chain: no entry, though a rule went. `-F` took the rule
        // of DOCKER-USER (INPUT's went before), `-X` both chains, the second `-X` and
        // the restore rewrote nat whole (MASQUERADE gone), `--test` commits nothing.
        assert_eq!(
            gone,
            [
                "filter: 1 rule of DOCKER-USER gone",
                "filter: chains DOCKER-USER, f2b-sshd gone",
                "nat: 1 rule of POSTROUTING gone",
            ],
            "{backend}: {log}"
        );
        for event in &flushed {
            assert!(
                field(event, "caller_pid").parse::<u32>().is_ok(),
                "{event:?}"
            );
            assert!(field(event, "caller").contains("sh -c"), "{event:?}");
        }
    }
}

/// The multi-call form (`xtables-legacy-multi iptables -X`, as the binary's own
/// dispatcher reads it) is looked at through the same binary's `iptables-save`.
#[test]
fn a_flush_through_the_multi_call_form_is_seen_too() {
    if !private_netns_with(&["xtables-legacy-multi", "xtables-nft-multi"]) {
        return;
    }
    for backend in ["legacy", "nft"] {
        let sb = Sandbox::new();
        let multi = format!("xtables-{backend}-multi");
        sb.link_shim(&multi);
        let real = which(&multi);
        let script = format!(
            "{real} iptables -N f2b-x; {real} iptables -A f2b-x -j RETURN\n\
             {multi} iptables -w -F; echo flush=$?\n\
             {multi} iptables -w -X; echo delete=$?",
            real = real.display()
        );
        let (status, stdout, stderr) = in_namespace_of(&sb, &script);
        assert_eq!(
            (status, stdout.as_str()),
            (0, "flush=0\ndelete=0\n"),
            "{stderr}"
        );
        assert!(stderr.is_empty(), "{backend}: {stderr}");
        let log = sb.log();
        let gone: Vec<String> = events(&log, "flushed")
            .iter()
            .map(|e| field(e, "gone").to_string())
            .collect();
        assert_eq!(
            gone,
            ["filter: 1 rule of f2b-x gone", "filter: chains f2b-x gone"],
            "{backend}: {log}"
        );
    }
}
