//! Who flushed what: which calls drop chains or rules they do not name, and what a
//! `*-save` before and after such a call says is gone. Pure; `flushes` runs the saves.

use crate::classify::Kind;
use crate::restore::RestoreArgs;
use std::collections::BTreeMap;
use std::ffi::OsString;

/// A call that can drop what it does not name: `-F`/`-X` without a chain (every chain
/// of the table), or a restore without `--noflush` (it rewrites each table it names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flush {
    /// The table to look at (`-t`, a restore's `-T`); None: all of them.
    pub table: Option<String>,
}

/// Does this call flush? `args` are the applet's own arguments. A doubt is "no": the
/// cost of a miss is a journal entry, the cost of a look is two saves.
pub fn flush_of(kind: &Kind, args: &[OsString]) -> Option<Flush> {
    match kind {
        Kind::Restore(Some(RestoreArgs::Apply {
            noflush: false,
            test_only: false,
            table,
            ..
        })) => Some(Flush {
            table: table.as_ref().and_then(|t| t.to_str()).map(str::to_string),
        }),
        Kind::Command(_) => command_flush(args),
        _ => None,
    }
}

fn command_flush(args: &[OsString]) -> Option<Flush> {
    let words: Vec<&str> = args.iter().map(|a| a.to_str()).collect::<Option<_>>()?;
    let mut table = None;
    let mut flush = false;
    let mut i = 0;
    while i < words.len() {
        match words[i] {
            "-t" | "--table" => {
                table = Some(words.get(i + 1)?.to_string());
                i += 1;
            }
            w if w.starts_with("-t") && w.len() > 2 && !w.starts_with("--") => {
                table = Some(w[2..].to_string())
            }
            "-F" | "--flush" | "-X" | "--delete-chain" => {
                // A chain named after it: only that one goes, which the caller asked for.
                let next = words.get(i + 1);
                if next.is_some_and(|n| !n.starts_with('-')) {
                    return None;
                }
                flush = true;
            }
            _ => {}
        }
        i += 1;
    }
    flush.then_some(Flush { table })
}

/// A `*-save`'s rules: table -> chain -> its rules, in order.
pub type Ruleset = BTreeMap<String, BTreeMap<String, Vec<String>>>;

pub fn parse_save(text: &str) -> Ruleset {
    let mut tables = Ruleset::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(table) = line.strip_prefix('*') {
            current = Some(table.trim().to_string());
            tables.entry(table.trim().to_string()).or_default();
            continue;
        }
        let Some(table) = current.as_ref().and_then(|t| tables.get_mut(t)) else {
            continue;
        };
        if let Some(chain) = line.strip_prefix(':') {
            let name = chain.split_whitespace().next().unwrap_or_default();
            table.entry(name.to_string()).or_default();
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let chain = rule.split_whitespace().next().unwrap_or_default();
            table
                .entry(chain.to_string())
                .or_default()
                .push(rule.to_string());
        } else if line == "COMMIT" {
            current = None;
        }
    }
    tables
}

/// What was there before and is not after, table by table: "filter: chains DOCKER-USER,
/// f2b-sshd gone; 3 rules of INPUT gone". Empty: nothing disappeared.
pub fn gone(before: &Ruleset, after: &Ruleset) -> Vec<String> {
    let mut report = Vec::new();
    for (table, chains) in before {
        let after_chains = after.get(table);
        let mut chains_gone = Vec::new();
        let mut rules_gone = Vec::new();
        for (chain, rules) in chains {
            match after_chains.and_then(|c| c.get(chain)) {
                None => chains_gone.push(chain.as_str()),
                Some(now) => {
                    let mut left = now.clone();
                    let lost = rules
                        .iter()
                        .filter(|rule| match left.iter().position(|r| r == *rule) {
                            Some(at) => {
                                left.remove(at);
                                false
                            }
                            None => true,
                        })
                        .count();
                    if lost > 0 {
                        rules_gone.push(format!(
                            "{lost} rule{} of {chain}",
                            if lost == 1 { "" } else { "s" }
                        ));
                    }
                }
            }
        }
        let mut parts = Vec::new();
        if !chains_gone.is_empty() {
            parts.push(format!("chains {} gone", chains_gone.join(", ")));
        }
        if !rules_gone.is_empty() {
            parts.push(format!("{} gone", rules_gone.join(", ")));
        }
        if !parts.is_empty() {
            report.push(format!("{table}: {}", parts.join("; ")));
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<OsString> {
        text.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn which_commands_flush() {
        let command = Kind::Command(crate::classify::Command {
            effect: crate::classify::Effect::Write,
            wait: crate::classify::Wait::Absent,
            check: false,
        });
        let cases = [
            ("-F", Some(None)),
            ("-w -F", Some(None)),
            ("-t nat -F", Some(Some("nat"))),
            ("-tnat -X", Some(Some("nat"))),
            ("--flush -t mangle", Some(Some("mangle"))),
            ("-X", Some(None)),
            ("-F INPUT", None),
            ("-X f2b-sshd", None),
            ("-t nat -F DOCKER", None),
            ("-A INPUT -j DROP", None),
            ("-N x", None),
        ];
        for (argv, want) in cases {
            let want = want.map(|t: Option<&str>| Flush {
                table: t.map(str::to_string),
            });
            assert_eq!(flush_of(&command, &args(argv)), want, "{argv}");
        }
        let restore = |noflush, test_only| {
            Kind::Restore(Some(RestoreArgs::Apply {
                noflush,
                test_only,
                table: None,
                input: crate::restore::Input::Stdin,
            }))
        };
        assert_eq!(
            flush_of(&restore(false, false), &[]),
            Some(Flush { table: None })
        );
        assert_eq!(flush_of(&restore(true, false), &[]), None);
        assert_eq!(flush_of(&restore(false, true), &[]), None);
        assert_eq!(flush_of(&Kind::Other, &args("-F")), None);
    }

    #[test]
    fn what_is_gone() {
        let before = parse_save(
            "# Generated\n*filter\n:INPUT ACCEPT [0:0]\n:DOCKER-USER - [0:0]\n:f2b-sshd - [0:0]\n\
             -A INPUT -j f2b-sshd\n-A INPUT -j DROP\n-A INPUT -j DROP\n-A DOCKER-USER -j RETURN\nCOMMIT\n\
             *nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j MASQUERADE\nCOMMIT\n",
        );
        let after = parse_save(
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j DROP\nCOMMIT\n\
             *nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j MASQUERADE\nCOMMIT\n",
        );
        assert_eq!(
            gone(&before, &after),
            ["filter: chains DOCKER-USER, f2b-sshd gone; 2 rules of INPUT gone"]
        );
        assert!(gone(&before, &before).is_empty());
        assert!(gone(&after, &before).is_empty(), "only what disappeared");
    }
}
