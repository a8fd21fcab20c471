//! `*-restore`: stdin is buffered so a failed COMMIT can be replayed with the same bytes,
//! only when the replay is idempotent (no --noflush), and never past the size limit.

use crate::common::*;

const RULES: &[u8] = b"*filter\n:f2b-sshd - [0:0]\n-A f2b-sshd -j RETURN\nCOMMIT\n";
const COMMIT_FAILED: &str = "iptables-restore: line 4 failed\n";

fn restore(
    sb: &Sandbox,
    args: &[&str],
    input: &[u8],
    envs: &[(&str, &str)],
) -> std::process::Output {
    let mut cmd = sb.shim("iptables-restore");
    cmd.args(args)
        .envs(envs.iter().copied())
        .env("FAKE_STDIN_DIR", sb.path("state"));
    with_input(&mut cmd, input)
}

#[test]
fn failed_commit_of_a_full_restore_is_replayed_byte_identical() {
    let sb = Sandbox::with_fake(&["iptables-restore"]);
    let mut input = RULES.to_vec();
    input.extend_from_slice(b"# binary tail \xff\x00\x01\n");
    let input = [&input[..], RULES].concat(); // the failed line must still be a COMMIT
    let out = restore(
        &sb,
        &[],
        &input,
        &[
            ("FAKE_FAIL_TIMES", "2"),
            ("FAKE_FAIL_CODE", "1"),
            ("FAKE_FAIL_STDERR", COMMIT_FAILED),
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(sb.counter(), 3);
    for n in 1..=3 {
        assert_eq!(
            std::fs::read(sb.path(&format!("state/stdin.{n}"))).unwrap(),
            input,
            "attempt {n}"
        );
    }
}

#[test]
fn noflush_restore_is_never_replayed() {
    let sb = Sandbox::with_fake(&["iptables-restore"]);
    let out = restore(
        &sb,
        &["--noflush"],
        RULES,
        &[
            ("FAKE_FAIL_TIMES", "1"),
            ("FAKE_FAIL_CODE", "1"),
            ("FAKE_FAIL_STDERR", COMMIT_FAILED),
        ],
    );
    assert_eq!((code(&out), stderr(&out)), (1, COMMIT_FAILED.to_string()));
    assert_eq!(sb.counter(), 1);
    let logged = events(&sb.log(), "not-retried");
    assert_eq!(
        field(&logged[0], "reason"),
        "--noflush: the commit may have applied"
    );
}

#[test]
fn failed_rule_line_is_not_replayed() {
    let sb = Sandbox::with_fake(&["iptables-restore"]);
    let out = restore(
        &sb,
        &[],
        RULES,
        &[
            ("FAKE_FAIL_TIMES", "1"),
            ("FAKE_FAIL_CODE", "1"),
            ("FAKE_FAIL_STDERR", "iptables-restore: line 3 failed\n"),
        ],
    );
    assert_eq!((code(&out), sb.counter()), (1, 1));
}

#[test]
fn stdin_over_the_limit_is_refused_before_running() {
    let sb = Sandbox::with_fake(&["iptables-restore"]);
    let input = vec![b'#'; 4096];
    let out = restore(&sb, &[], &input, &[("XTLOCK_MAX_STDIN", "1000")]);
    assert_eq!(code(&out), 125);
    assert_eq!(
        stderr(&out),
        "xtlock: iptables-restore: standard input is larger than 1000 bytes (max_stdin); nothing was run\n"
    );
    assert_eq!(sb.counter(), 0, "nothing ran");
    let out = restore(&sb, &[], &input[..1000], &[("XTLOCK_MAX_STDIN", "1000")]);
    assert_eq!(code(&out), 0, "exactly the limit is fine");
}

#[test]
fn restore_from_a_file_argument_leaves_stdin_alone() {
    let sb = Sandbox::with_fake(&["iptables-restore"]);
    let rules = sb.path("rules.v4");
    std::fs::write(&rules, RULES).unwrap();
    let out = restore(
        &sb,
        &[rules.to_str().unwrap()],
        b"",
        &[
            ("FAKE_FAIL_TIMES", "1"),
            ("FAKE_FAIL_CODE", "1"),
            ("FAKE_FAIL_STDERR", COMMIT_FAILED),
        ],
    );
    assert_eq!((code(&out), sb.counter()), (0, 2), "{}", stderr(&out));
}

#[test]
fn restore_help_does_not_wait_for_stdin() {
    let sb = Sandbox::with_fake(&["iptables-restore"]);
    // stdin is a pipe nobody ever writes to or closes: reading it would hang.
    let (_keep_open, reader) = std::io::pipe().unwrap();
    let mut child = sb
        .shim("iptables-restore")
        .arg("--help")
        .stdin(reader)
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > std::time::Duration::from_secs(10) {
            child.kill().unwrap();
            panic!("iptables-restore --help waited for stdin");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
