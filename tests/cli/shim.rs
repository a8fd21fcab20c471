//! Finding the real program: through a symlink, an absolute path, a hard link and a
//! copy; never itself; with clear errors when there is nothing to run.

use crate::common::*;

#[test]
fn symlink_in_path_runs_the_real_program_with_same_argv0() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let out = run(sb.shim("iptables").args(["-A", "INPUT", "-j", "ACCEPT"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let calls = sb.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0],
        vec![
            b"iptables".to_vec(),
            b"-A".to_vec(),
            b"INPUT".to_vec(),
            b"-j".to_vec(),
            b"ACCEPT".to_vec()
        ]
    );
}

#[test]
fn called_by_absolute_path_keeps_that_argv0() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let shim_path = sb.path("shim/iptables");
    let out = run(sb.command(&shim_path).arg("-L"));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(sb.calls()[0][0], shim_path.as_os_str().as_encoded_bytes());
}

#[test]
fn prefix_mode_resolves_by_name_and_skips_itself() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let out = run(sb.xtlock().args(["iptables", "-N", "f2b-sshd"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        sb.calls(),
        vec![vec![
            b"iptables".to_vec(),
            b"-N".to_vec(),
            b"f2b-sshd".to_vec()
        ]]
    );
}

#[test]
fn hard_link_is_recognised_as_itself() {
    let sb = Sandbox::with_fake(&[]);
    sb.install_fake("iptables");
    // A hard link cannot cross file systems, and the sandbox (in TMPDIR, often a tmpfs)
    // may not be on the binary's: the link goes in a directory beside the binary.
    let bin = xtlock_bin();
    let dir = tempfile::tempdir_in(bin.parent().unwrap());
    let linked = dir.as_ref().map_err(|e| e.to_string()).and_then(|dir| {
        std::fs::hard_link(&bin, dir.path().join("iptables")).map_err(|e| e.to_string())
    });
    if !require(
        &format!("a hard link to {} beside it ({linked:?})", bin.display()),
        linked.is_ok(),
    ) {
        return;
    }
    let dir = dir.unwrap();
    let path = format!("{}:{}", dir.path().display(), sb.path("real").display());
    let mut shim = sb.command(dir.path().join("iptables"));
    std::os::unix::process::CommandExt::arg0(&mut shim, "iptables");
    let out = run(shim.env("PATH", path).arg("-L"));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(sb.calls().len(), 1, "the real program ran once");
}

#[test]
fn only_xtlock_in_path_is_not_found_and_names_what_it_skipped() {
    let sb = Sandbox::new();
    sb.link_shim("iptables-none");
    let out = run(sb.shim("iptables-none").arg("-L"));
    assert_eq!(code(&out), 127);
    let want = format!(
        "xtlock: iptables-none: not found in PATH (skipped {}: that is xtlock)\n",
        sb.path("shim/iptables-none").display()
    );
    assert_eq!(stderr(&out), want);
}

#[test]
fn unknown_program_is_127() {
    let sb = Sandbox::new();
    let out = run(sb.xtlock().args(["no-such-program-xyz", "-L"]));
    assert_eq!(code(&out), 127);
    assert_eq!(
        stderr(&out),
        "xtlock: no-such-program-xyz: not found in PATH\n"
    );
    let out = run(sb.xtlock().args(["/nonexistent/iptables"]));
    assert_eq!(
        (code(&out), stderr(&out)),
        (
            127,
            "xtlock: /nonexistent/iptables: no such file\n".to_string()
        )
    );
}

#[test]
fn not_executable_is_126() {
    let sb = Sandbox::new();
    std::fs::write(sb.path("real/iptables-x"), "not a program").unwrap();
    sb.link_shim("iptables-x");
    let out = run(sb.shim("iptables-x").arg("-L"));
    assert_eq!(code(&out), 126);
    let want = format!(
        "xtlock: iptables-x: {}: permission denied (not executable)\n",
        sb.path("real/iptables-x").display()
    );
    assert_eq!(stderr(&out), want);
}

#[test]
fn a_copy_of_xtlock_ahead_in_path_ends_in_a_clear_error_not_a_loop() {
    let sb = Sandbox::new();
    sb.link_shim("iptables");
    // A copy is another inode, so each xtlock takes the other for the real program.
    std::fs::copy(xtlock_bin(), sb.path("real/iptables")).unwrap();
    let out = run(sb.shim("iptables").arg("-L"));
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.ends_with("iptables: xtlock calls nested 16 deep; is a copy of xtlock ahead of the real iptables in PATH?\n"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}

#[test]
fn help_and_version_of_xtlock_itself() {
    let sb = Sandbox::new();
    let out = run(sb.xtlock().arg("--help"));
    assert_eq!(code(&out), 0);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("Usage: xtlock [OPTIONS] [--] PROGRAM [ARGS]...")
    );
    let out = run(sb.xtlock().arg("--version"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("xtlock {}\n", env!("CARGO_PKG_VERSION"))
    );
    let out = run(sb.xtlock().arg("--bogus"));
    assert_eq!(code(&out), 125);
    let out = run(&mut sb.xtlock());
    assert_eq!(
        (code(&out), stderr(&out)),
        (
            125,
            "xtlock: no program given; usage: xtlock [OPTIONS] [--] PROGRAM [ARGS]...\n".into()
        )
    );
}

#[test]
fn options_after_program_belong_to_the_program() {
    let sb = Sandbox::with_fake(&["iptables"]);
    let out = run(sb.xtlock().args([
        "--timeout",
        "5",
        "--",
        "iptables",
        "--timeout",
        "-v",
        "--",
        "--help",
    ]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let calls = sb.calls();
    let args: Vec<&[u8]> = calls[0].iter().map(Vec::as_slice).collect();
    assert_eq!(
        args,
        vec![&b"iptables"[..], b"--timeout", b"-v", b"--", b"--help"]
    );
}
