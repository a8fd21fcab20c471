//! Issue 8: xtlock reads a restore's options exactly as glibc's getopt_long and the
//! restore programs' own option loops do. A C program with iptables 1.8.9's option
//! tables and loops (tests/cli/getopt/restore_options.c) is the reference; both parse
//! a table of hand-written argv shapes and thousands of generated ones, and must agree
//! on noflush, test-only, table and input file (or on the argv being refused).

use crate::common::*;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use xtlock::restore::{Flavor, Input, RestoreArgs, parse_args};

fn reference_bin() -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/getopt/restore_options.c");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("restore_options.{}", std::process::id()));
    let status = Command::new("cc")
        .arg("-O1")
        .arg("-o")
        .arg(&out)
        .arg(&source)
        .status()
        .expect("run cc");
    assert!(status.success(), "building the reference parser failed");
    out
}

fn render(parsed: &RestoreArgs) -> String {
    match parsed {
        RestoreArgs::HelpOrVersion => "help".into(),
        RestoreArgs::Rejected => "rejected".into(),
        RestoreArgs::Apply {
            noflush,
            test_only,
            table,
            input,
        } => format!(
            "noflush={} test={} table=[{}] input=[{}]",
            u8::from(*noflush),
            u8::from(*test_only),
            table
                .as_ref()
                .map_or("<none>".into(), |t| t.to_string_lossy().into_owned()),
            match input {
                Input::Stdin => "<stdin>".into(),
                Input::File(f) => f.to_string_lossy().into_owned(),
            }
        ),
    }
}

/// Both parsers on every case; the first disagreement, if any.
fn compare(cases: &[Vec<String>], posixly_correct: bool) -> Result<usize, String> {
    let bin = reference_bin();
    let mut cmd = Command::new(&bin);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .env_remove("POSIXLY_CORRECT");
    if posixly_correct {
        cmd.env("POSIXLY_CORRECT", "1");
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = Vec::new();
    let mut expected = Vec::new();
    for args in cases {
        for (flavor, letter) in [(Flavor::Legacy, "L"), (Flavor::Nft, "N")] {
            input.extend_from_slice(letter.as_bytes());
            for arg in args {
                input.push(0x1f);
                input.extend_from_slice(arg.as_bytes());
            }
            input.push(b'\n');
            let argv: Vec<OsString> = args.iter().map(OsString::from).collect();
            expected.push((
                letter,
                args.clone(),
                render(&parse_args(flavor, &argv, posixly_correct)),
            ));
        }
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let _ = std::fs::remove_file(bin);
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(
        lines.len(),
        expected.len(),
        "the reference answered every case"
    );
    for ((flavor, args, ours), glibc) in expected.iter().zip(lines) {
        if ours != glibc {
            return Err(format!(
                "{flavor} {args:?} (POSIXLY_CORRECT={posixly_correct}): glibc {glibc:?}, xtlock {ours:?}"
            ));
        }
    }
    Ok(expected.len())
}

fn available() -> bool {
    require("cc", have("cc"))
}

#[test]
fn hand_written_shapes_agree_with_glibc() {
    if !available() {
        return;
    }
    let shapes: &[&[&str]] = &[
        &[],
        &["-n"],
        &["--noflush"],
        &["--nof"],
        &["--noflu"],
        &["--n"],
        &["-wn"],
        &["-cwn"],
        &["-nw"],
        &["-w", "5"],
        &["-w", "rules"],
        &["-w", "0x5"],
        &["-w", "-n"],
        &["-w5"],
        &["-w", "!x"],
        &["--wait", "5", "f"],
        &["--wait=5"],
        &["--wait=x"],
        &["--wa"],
        &["--wait-"],
        &["--wait-i=3"],
        &["-W"],
        &["-W", "100"],
        &["-W", "1000000"],
        &["-W", "-1"],
        &["-W", "4294967296"],
        &["--tab", "nat"],
        &["--table=nat"],
        &["-Tnat"],
        &["-T", "-n"],
        &["-T"],
        &["rules", "-n"],
        &["a", "b"],
        &["--", "-n"],
        &["-", "-n"],
        &["--test"],
        &["-t"],
        &["--t"],
        &["--te"],
        &["-tv"],
        &["-h"],
        &["--help"],
        &["--he"],
        &["-V"],
        &["--vers"],
        &["--ver"],
        &["--ipv4"],
        &["--ipv6", "f"],
        &["-4"],
        &["-x"],
        &["-M", "/sbin/modprobe"],
        &["--modprobe=x", "f"],
        &["--noflush=1"],
        &["--=x"],
        &["--"],
        &["-b"],
        &["-c", "f", "-n"],
        &["f", "--", "g"],
        &["-w", " 7"],
        &["-w", "+3"],
        &["-w", "08"],
        &["-w", "0x"],
        &["-W", " 5"],
        &["-W", "+5"],
        &["-W", "5x"],
    ];
    let cases: Vec<Vec<String>> = shapes
        .iter()
        .map(|s| s.iter().map(|a| a.to_string()).collect())
        .collect();
    for posixly in [false, true] {
        compare(&cases, posixly).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn thousands_of_generated_argvs_agree_with_glibc() {
    if !available() {
        return;
    }
    let word = proptest::prop_oneof![
        proptest::sample::select(vec![
            "-n",
            "-t",
            "-c",
            "-v",
            "-w",
            "-W",
            "-T",
            "-M",
            "-b",
            "-wn",
            "-nw",
            "-cwn",
            "-tn",
            "-Tnat",
            "-w5",
            "--noflush",
            "--nof",
            "--no",
            "--n",
            "--test",
            "--te",
            "--table",
            "--tab",
            "--table=nat",
            "--wait",
            "--wait=3",
            "--wait-interval",
            "--wait-i",
            "--wa",
            "--modprobe",
            "--counters",
            "--verbose",
            "--ver",
            "--ipv4",
            "--",
            "-",
            "5",
            "0x5",
            "010",
            "-1",
            "1000000",
            "nat",
            "rules",
            "/dev/stdin",
            "!",
            "!x",
        ])
        .prop_map(str::to_string),
        "[-a-zA-Z0-9=!]{0,6}",
    ];
    let argv = proptest::collection::vec(word, 0..7);
    let mut runner = TestRunner::default();
    let cases: Vec<Vec<String>> = (0..4000)
        .map(|_| argv.new_tree(&mut runner).unwrap().current())
        .collect();
    for posixly in [false, true] {
        let n = compare(&cases, posixly).unwrap_or_else(|e| panic!("{e}"));
        eprintln!("{n} parses agreed (POSIXLY_CORRECT={posixly})");
    }
}
