//! Properties over random input: the retry classifier never calls a failure that may
//! have committed retryable, and the config parser never panics.

use proptest::prelude::*;
use xtlock::restore::{Input, RestoreArgs, replayable_input};
use xtlock::retry::{RestoreCall, Verdict, classify};

/// Stderr lines: the real messages, near misses, and noise, in any order.
fn stderr_strategy() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        Just(b"iptables: Resource temporarily unavailable.".to_vec()),
        Just(b"ip6tables: Resource temporarily unavailable.".to_vec()),
        Just(
            b"Another app is currently holding the xtables lock. Stopped waiting after 1s."
                .to_vec()
        ),
        Just(b"Can't lock /run/xtables.lock: Resource temporarily unavailable".to_vec()),
        Just(b"iptables: Invalid argument. Run `dmesg' for more information.".to_vec()),
        Just(b"Fatal: can't open lock file /run/xtables.lock: Permission denied".to_vec()),
        Just(b"iptables-restore: line 4 failed".to_vec()),
        Just(b"iptables-restore: line 2 failed".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..80),
    ];
    proptest::collection::vec(line, 0..5).prop_map(|lines| lines.join(&b"\n"[..]))
}

fn is_retry(v: Verdict) -> bool {
    matches!(v, Verdict::Retry(_))
}

proptest! {
    #[test]
    fn only_exit_4_of_a_plain_call_is_ever_retried(code in 0i32..=255, stderr in stderr_strategy()) {
        let verdict = classify(Some(code), &stderr, None);
        if code != 4 {
            prop_assert!(!is_retry(verdict), "exit {code} retried");
        }
        let text = String::from_utf8_lossy(&stderr);
        let eagain_or_busy = text.lines().any(|l| {
            l == "iptables: Resource temporarily unavailable." || l == "ip6tables: Resource temporarily unavailable."
                || l.starts_with("Another app is currently holding the xtables lock")
        });
        if is_retry(verdict) {
            prop_assert!(eagain_or_busy, "retried without a transient line: {text:?}");
        }
    }

    #[test]
    fn death_by_signal_is_never_retried(stderr in stderr_strategy()) {
        prop_assert_eq!(classify(None, &stderr, None), Verdict::Final);
    }

    #[test]
    fn restores_retry_only_when_replay_is_idempotent(
        code in 0i32..=255, stderr in stderr_strategy(), noflush: bool, test_only: bool,
        input in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        // The decision as the program makes it: the options first, then the outcome.
        let args = RestoreArgs::Apply { noflush, test_only, table: None, input: Input::Stdin };
        let replay = replayable_input(Some(&args)).map(|_| &input[..]);
        let verdict = classify(Some(code), &stderr, Some(RestoreCall { input: replay }));
        if is_retry(verdict) {
            prop_assert!(!noflush, "a --noflush restore was replayed");
            prop_assert!(!test_only, "a --test restore was replayed");
            prop_assert!(code == 1 || code == 4, "exit {code} retried");
        }
        if code == 1 && is_retry(verdict) {
            let n = xtlock::restore::failed_line(&stderr).unwrap();
            prop_assert!(xtlock::restore::line_is_commit(&input, n), "line {n} is not a COMMIT");
        }
    }

    #[test]
    fn config_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = xtlock::config::parse_layer(&bytes);
    }

    #[test]
    fn config_parser_never_panics_on_near_toml(
        key in prop_oneof![Just("timeout"), Just("retries"), Just("lock_file"), Just("max_stdin"), Just("verbose"), Just("x")],
        value in "[-0-9a-z.\"\\[\\]{}=e+ ]{0,20}",
    ) {
        let text = format!("{key} = {value}\n");
        if let Ok(layer) = xtlock::config::parse_layer(text.as_bytes()) {
            if let Some(t) = layer.timeout { prop_assert!((0.0..=86400.0).contains(&t)); }
            if let Some(r) = layer.retries { prop_assert!(r <= 100); }
        }
    }
}
