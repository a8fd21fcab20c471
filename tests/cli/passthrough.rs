//! What the caller sees is what the real program did: argv byte for byte, stdout,
//! stderr, and the exit status, and nothing of xtlock's when the call succeeds.

use crate::common::*;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

#[test]
fn odd_arguments_arrive_unchanged() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let args: Vec<OsString> = vec![
        "-m".into(),
        "comment".into(),
        "--comment".into(),
        "two words".into(),
        "".into(),
        "quote ' and \" and $HOME and *".into(),
        "new\nline".into(),
        OsString::from_vec(b"\xff\xfe not utf-8".to_vec()),
        "-".into(),
        "--".into(),
    ];
    let out = run(sb.shim("iptables").args(&args));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let got = &sb.calls()[0];
    let want: Vec<Vec<u8>> = std::iter::once(b"iptables".to_vec())
        .chain(args.iter().map(|a| a.as_encoded_bytes().to_vec()))
        .collect();
    assert_eq!(got, &want);
}

#[test]
fn every_exit_code_passes_through() {
    let sb = Sandbox::with_fake(&["iptables"]);
    for status in 0..=255 {
        let out = run(sb.shim("iptables").env("FAKE_EXIT", status.to_string()));
        assert_eq!(code(&out), status, "{}", stderr(&out));
        assert!(
            out.stderr.is_empty(),
            "status {status}: xtlock added {:?}",
            stderr(&out)
        );
    }
}

#[test]
fn death_by_signal_is_128_plus_n() {
    let sb = Sandbox::with_fake(&["iptables"]);
    for signal in [9, 15, 6] {
        let out = run(sb.shim("iptables").env("FAKE_SIGNAL", signal.to_string()));
        assert_eq!(code(&out), 128 + signal);
        assert!(out.status.code().is_some(), "xtlock itself exits normally");
    }
}

#[test]
fn stdout_and_stderr_are_the_programs() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let out = run(sb
        .shim("iptables")
        .env("FAKE_STDOUT", "Chain INPUT (policy ACCEPT)\n")
        .env("FAKE_STDERR", "warning: x\n"));
    assert_eq!(code(&out), 0);
    assert_eq!(out.stdout, b"Chain INPUT (policy ACCEPT)\n");
    assert_eq!(out.stderr, b"warning: x\n");
    // A failure: its stderr exactly, and no line of ours.
    let out = run(sb
        .shim("iptables")
        .env(
            "FAKE_STDERR",
            "iptables: Bad rule (does a matching rule/chain exist in that chain?).\n",
        )
        .env("FAKE_EXIT", "1"));
    assert_eq!(
        (code(&out), stderr(&out)),
        (
            1,
            "iptables: Bad rule (does a matching rule/chain exist in that chain?).\n".into()
        )
    );
}

#[test]
fn raw_stderr_bytes_reach_the_caller_and_the_log_escapes_them() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let raw = b"bad \xff byte \x1b[31m and\ttab\n".to_vec();
    let out = run(sb
        .shim("iptables")
        .env("FAKE_STDERR", OsString::from_vec(raw.clone()))
        .env("FAKE_EXIT", "2"));
    assert_eq!(code(&out), 2);
    assert_eq!(out.stderr, raw);
    let log = sb.log();
    assert!(
        log.contains(r#"stderr="bad \xff byte \x1b[31m and\ttab\n""#),
        "{log}"
    );
    assert_eq!(log.lines().count(), 1);
}

#[test]
fn large_stdout_streams_through() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let bytes = 50 << 20;
    let out = run(sb
        .shim("iptables")
        .env("FAKE_STDOUT_BYTES", bytes.to_string()));
    assert_eq!(code(&out), 0);
    assert_eq!(out.stdout.len(), bytes);
}

#[test]
fn ten_thousand_args_and_the_largest_single_arg() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let many: Vec<String> = (0..10_000).map(|i| format!("arg{i}")).collect();
    let out = run(sb.shim("iptables").args(&many));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(sb.calls()[0].len(), 10_001);
    // Linux caps one argument at 128 KiB (MAX_ARG_STRLEN), so a "1 MiB argument" can
    // only be 8 of the largest: 1 MiB in all, each passed through byte for byte.
    let big: Vec<String> = (0..8)
        .map(|i| format!("{i}").repeat((128 << 10) - 1))
        .collect();
    let out = run(sb.shim("iptables").args(&big));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let got = &sb.calls()[1];
    assert_eq!(got.len(), 9);
    for (arg, want) in got[1..].iter().zip(&big) {
        assert_eq!(arg, want.as_bytes());
    }
}
