//! Issue 16: what xtlock runs in its own place, without the lock, must be a read to the
//! real iptables. Thousands of argvs built from the pieces callers use (commands with
//! chains and rule numbers, matches, targets, tables, waits, bundles, abbreviations,
//! `!`, `--`, stray and hostile words) are classified by the library; each one it calls
//! a read (Effect::ReadOnly or HelpOrVersion) is run by the real iptables-legacy and
//! iptables-nft in a private network namespace, on a fixture ruleset, then by
//! iptables-nft on an empty ruleset (tests/reads/differential.sh), and every table,
//! counters included, must be byte for byte as it was. iptables may refuse such an argv (exit 2, a usage error: nothing ran)
//! or answer it (exit 0, or 1 or 3 with a read's own answer), nothing else.

use crate::common::*;
use std::ffi::{OsStr, OsString};
use xtlock::classify::runs_in_our_place;
use xtlock::classify::{Backend, Effect, Kind, Wait, classify};

/// The seed unless XTLOCK_READ_SEED gives another; printed, so a failure reproduces.
const DEFAULT_SEED: u64 = 0x1608;
const GENERATED: usize = 3000;

/// Writes the check must see as changes on the fixture, both backends: without them a
/// check that never sees anything would pass. `true`: iptables-nft on an empty ruleset
/// makes something of it too (the others find nothing to change there).
const CONTROLS: &[(&[&str], bool)] = &[
    (&["-Z"], false),
    (&["-L", "-Z"], false),
    (&["-t", "nat", "-Z", "POSTROUTING"], false),
    (&["-A", "INPUT", "-j", "ACCEPT"], true),
    (
        &["-I", "f2b-sshd", "1", "-s", "198.51.100.7", "-j", "DROP"],
        false,
    ),
    (&["-D", "f2b-sshd", "1"], false),
    (&["-D", "f2b-sshd", "-j", "RETURN"], false),
    (&["-R", "f2b-sshd", "2", "-j", "DROP"], false),
    (&["-F", "f2b-sshd"], false),
    (&["-t", "raw", "-F"], false),
    (&["-N", "fresh"], true),
    (&["-X", "empty"], false),
    (&["-E", "empty", "renamed"], false),
    (&["-P", "INPUT", "ACCEPT"], true),
    (&["-t", "security", "-P", "OUTPUT", "DROP"], true),
];

/// The runs of each argv (tests/reads/differential.sh): each backend on the fixture,
/// then iptables-nft on an empty ruleset.
const RUNS: [&str; 3] = ["legacy", "nft", "nft-empty"];

/// What iptables 1.8.9 says when it answers a read with exit 1: a `-C` whose rule is
/// absent; a chain, target or match that does not exist (iptables-nft calls a missing
/// chain "incompatible": nft.c, nft_assert_table_compatible). Each is (prefix, suffix)
/// of a whole line. A write's refusals are not here: `-N`'s "Chain already exists.",
/// `-D N`'s "Index of deletion too big.", `-Z CHAIN N`'s "Index of counter too big."
/// (a `-D` of an absent rule says what `-C` says: the fixture holds the rules the
/// generated `-D`s name, so a `-D` taken for a read shows as a change).
const READ_ANSWERS: &[(&str, &str)] = &[
    (
        "iptables: Bad rule (does a matching rule exist in that chain?).",
        "",
    ),
    ("iptables: No chain/target/match by that name.", ""),
    (
        "iptables v1.8.9 (nf_tables): chain `",
        "' is incompatible, use 'nft' tool.",
    ),
];

/// With exit 3: a table the kernel does not have (`-t bogus`); nothing was read.
const NO_TABLE: &[(&str, &str)] = &[
    (
        "iptables v1.8.9 (legacy): can't initialize iptables table `",
        "': Table does not exist (do you need to insmod?)",
    ),
    ("iptables v1.8.9 (nf_tables): table '", "' does not exist"),
    ("Perhaps iptables or your kernel needs to be upgraded.", ""),
];

/// Lines printed besides the answer: iptables-nft's once legacy tables exist
/// (IPTABLES-FACTS), and `-W N`'s (xshared.c parse_wait_interval, 1.8.9).
const WARNINGS: &[&str] = &[
    "# Warning: iptables-legacy tables present",
    "Ignoring deprecated --wait-interval option.",
];

fn all_lines_among(lines: &[&str], known: &[(&str, &str)]) -> bool {
    !lines.is_empty()
        && lines.iter().all(|line| {
            known.iter().any(|(prefix, suffix)| {
                line.len() >= prefix.len() + suffix.len()
                    && line.starts_with(prefix)
                    && line.ends_with(suffix)
            })
        })
}

fn available() -> bool {
    private_netns_with(&["iptables-legacy", "iptables-nft", "ipset"])
}

/// Argvs from the pieces real callers use, by a seeded generator.
struct Gen {
    rng: fastrand::Rng,
}

type Words = Vec<String>;

fn words(list: &[&str]) -> Words {
    list.iter().map(|w| w.to_string()).collect()
}

/// The fixture's rules (tests/reads/differential.sh) as a caller would spell them:
/// (table, chain, rule). `-C` and `-D` of these find them.
const FIXTURE_RULES: &[(&str, &str, &[&str])] = &[
    (
        "filter",
        "INPUT",
        &[
            "-p",
            "tcp",
            "-m",
            "multiport",
            "--dports",
            "22",
            "-j",
            "f2b-sshd",
        ],
    ),
    (
        "filter",
        "INPUT",
        &[
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED",
            "-j",
            "ACCEPT",
        ],
    ),
    (
        "filter",
        "INPUT",
        &[
            "-p",
            "tcp",
            "-m",
            "tcp",
            "--dport",
            "80",
            "-m",
            "comment",
            "--comment",
            "web",
            "-j",
            "ACCEPT",
        ],
    ),
    (
        "filter",
        "INPUT",
        &[
            "-p",
            "tcp",
            "--dport",
            "22",
            "-m",
            "recent",
            "--set",
            "--name",
            "ssh",
            "--rsource",
        ],
    ),
    (
        "filter",
        "INPUT",
        &[
            "-p",
            "udp",
            "--sport",
            "53",
            "-j",
            "LOG",
            "--log-prefix",
            "dns: ",
        ],
    ),
    (
        "filter",
        "INPUT",
        &["-m", "set", "--match-set", "f2b-sshd", "src", "-j", "DROP"],
    ),
    (
        "filter",
        "f2b-sshd",
        &[
            "-s",
            "192.0.2.1/32",
            "-j",
            "REJECT",
            "--reject-with",
            "icmp-port-unreachable",
        ],
    ),
    ("filter", "f2b-sshd", &["-j", "RETURN"]),
    (
        "nat",
        "POSTROUTING",
        &["-s", "172.17.0.0/16", "!", "-o", "lo", "-j", "MASQUERADE"],
    ),
    (
        "mangle",
        "PREROUTING",
        &[
            "-p",
            "tcp",
            "--dport",
            "22",
            "-j",
            "MARK",
            "--set-xmark",
            "0x1/0xffffffff",
        ],
    ),
];

/// Words that may mean anything: values that look like commands (`--comment -L`),
/// commands after an extension's option, abbreviations, inversions, ends of options.
const HOSTILE: &[&str] = &[
    "!",
    "--",
    "-",
    "stray",
    "INPUT",
    "1",
    "-Z",
    "-L",
    "--list",
    "-A",
    "-F",
    "--zero",
    "-h",
    "--help",
    "-V",
    "--comment",
    "-nvL",
    "-LZ",
    "-vZ",
    "--li",
    "--list-r",
    "--del",
    "--ze",
    "--z",
    "--fl",
    "-q",
    "--bogus",
    "--bogus=1",
    "-w",
    "5",
    "--=x",
    "-S",
    "-C",
    "-D",
    "-E",
    "-N",
    "-X",
    "-P",
    "-I",
    "-R",
    "ACCEPT",
    "-j",
    "-m",
    "comment",
    "--set",
    "--name",
    "-s",
    "-p",
    "-c",
    "-t",
    "-W",
    "--wait",
    "-x",
    "--line-numbers",
    "--check",
    "--list-rules",
    "--delete-chain",
    "--rename-chain",
    "--new-chain",
    "--policy",
    "--flush",
    "-Ln",
    "-ZL",
];

impl Gen {
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.rng.usize(..items.len())]
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.rng.u32(..100) < percent
    }

    fn chain(&mut self) -> String {
        self.pick(&[
            "INPUT",
            "INPUT",
            "FORWARD",
            "OUTPUT",
            "PREROUTING",
            "POSTROUTING",
            "f2b-sshd",
            "f2b-sshd",
            "empty",
            "DOCKER",
            "nosuch",
        ])
        .into()
    }

    fn rule_number(&mut self) -> String {
        self.pick(&["1", "2", "3", "9", "0", "x"]).into()
    }

    fn table(&mut self) -> Words {
        let table = self.pick(&[
            "filter", "filter", "nat", "mangle", "raw", "security", "bogus",
        ]);
        match self.rng.u32(..4) {
            0 => words(&["-t", table]),
            1 => words(&["--table", table]),
            2 => vec![format!("--table={table}")],
            _ => vec![format!("-t{table}")],
        }
    }

    /// A rule's matches and target, made of the pieces fail2ban, docker and ufw use.
    fn rule(&mut self) -> Words {
        let mut rule = Vec::new();
        if self.chance(50) {
            let proto = self.pick(&["tcp", "udp"]);
            if self.chance(20) {
                rule.extend(words(&["--protocol", proto]));
            } else {
                rule.extend(words(&["-p", proto]));
            }
            if self.chance(60) {
                let opt = self.pick(&["--dport", "--sport", "--destination-port"]);
                rule.extend(words(&[opt, self.pick(&["22", "53", "80", "1:1024"])]));
            }
        }
        if self.chance(25) {
            let addr = self.pick(&["192.0.2.1", "192.0.2.1/32", "10.0.0.0/8"]);
            match self.rng.u32(..4) {
                0 => rule.extend(words(&["!", "-s", addr])),
                1 => rule.extend(words(&["-s", "!", addr])),
                2 => rule.extend(words(&["-d", addr])),
                _ => rule.extend(words(&["-s", addr])),
            }
        }
        if self.chance(10) {
            rule.extend(words(&[self.pick(&["-i", "-o", "!"]), "lo"]));
        }
        for _ in 0..self.rng.usize(..3) {
            let comment = self.pick(&[
                "web", "-L", "-h", "--list", "-Z", "-A", "--zero", "-nvL", "--help", "a b", "!",
                "--",
            ]);
            let piece: &[&str] = match self.rng.u32(..7) {
                0 => &["-m", "comment", "--comment", comment],
                1 => &["-m", "multiport", "--dports", "22,80"],
                2 => &["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED"],
                3 => &["-m", "recent", "--set", "--name", "ssh"],
                4 => &[
                    "-m",
                    "recent",
                    "--rcheck",
                    "--seconds",
                    "60",
                    "--name",
                    "ssh",
                ],
                5 => &["-m", "set", "--match-set", "f2b-sshd", "src"],
                _ => &["-m", "limit", "--limit", "5/min"],
            };
            rule.extend(words(piece));
            if self.chance(10) {
                // The same value attached: `--comment=-L`.
                let last = rule.pop().unwrap();
                let option = rule.pop().unwrap();
                rule.push(format!("{option}={last}"));
            }
        }
        if self.chance(80) {
            let jump = if self.chance(15) { "--jump" } else { "-j" };
            let target: &[&str] = match self.rng.u32(..7) {
                0 => &["ACCEPT"],
                1 => &["DROP"],
                2 => &["REJECT", "--reject-with", "icmp-port-unreachable"],
                3 => &["RETURN"],
                4 => &[
                    "LOG",
                    "--log-prefix",
                    self.pick(&["ssh: ", "-Z", "-L", "--flush"]),
                ],
                5 => &["f2b-sshd"],
                _ => &["NOSUCH"],
            };
            rule.push(jump.into());
            rule.extend(words(target));
        }
        rule
    }

    /// A command option as callers spell it: short, long, an abbreviation, bundled
    /// with -n/-v/-x, or with its chain attached.
    fn command_option(&mut self, letter: char, long: &str, chain: Option<&str>) -> (Words, bool) {
        let attached = |w: String| (vec![w], true);
        match self.rng.u32(..20) {
            0..=10 => (vec![format!("-{letter}")], false),
            11..=13 => (vec![format!("--{long}")], false),
            14 | 15 => {
                let len = self.rng.usize(1..long.len());
                (vec![format!("--{}", &long[..len])], false)
            }
            16 | 17 => {
                let flags = self.pick(&["n", "v", "nv", "vn", "x", "vx", "nvx", "Z", "nvZ"]);
                if self.chance(50) {
                    (vec![format!("-{flags}{letter}")], false)
                } else {
                    (vec![format!("-{letter}{flags}")], false)
                }
            }
            18 if chain.is_some() => attached(format!("-{letter}{}", chain.unwrap())),
            19 if chain.is_some() => attached(format!("--{long}={}", chain.unwrap())),
            _ => (vec![format!("-{letter}")], false),
        }
    }

    /// One command with what it takes.
    fn command(&mut self, rule_ok: bool) -> (Words, Option<&'static str>) {
        const COMMANDS: &[(char, &str)] = &[
            ('L', "list"),
            ('L', "list"),
            ('L', "list"),
            ('S', "list-rules"),
            ('S', "list-rules"),
            ('C', "check"),
            ('C', "check"),
            ('C', "check"),
            ('A', "append"),
            ('I', "insert"),
            ('D', "delete"),
            ('R', "replace"),
            ('F', "flush"),
            ('X', "delete-chain"),
            ('N', "new-chain"),
            ('Z', "zero"),
            ('E', "rename-chain"),
            ('P', "policy"),
        ];
        let (letter, long) = COMMANDS[self.rng.usize(..COMMANDS.len())];
        // A fixture rule with its table and chain, so that -C and -D find it.
        let fixture = (rule_ok && matches!(letter, 'C' | 'D' | 'I' | 'A') && self.chance(40))
            .then(|| FIXTURE_RULES[self.rng.usize(..FIXTURE_RULES.len())]);
        let chain = match fixture {
            Some((_, chain, _)) => chain.to_string(),
            None => self.chain(),
        };
        let takes_chain = match letter {
            'L' | 'S' | 'Z' | 'F' | 'X' => self.chance(60),
            _ => true,
        };
        let (mut out, attached) =
            self.command_option(letter, long, takes_chain.then_some(chain.as_str()));
        if takes_chain && !attached {
            out.push(chain.clone());
        }
        match letter {
            'L' | 'S' | 'Z' if takes_chain && self.chance(25) => out.push(self.rule_number()),
            'D' | 'R' | 'I' if self.chance(50) || letter == 'R' => out.push(self.rule_number()),
            'E' => out.push(self.pick(&["renamed", "f2b-sshd", "-x"]).into()),
            'P' => out.push(self.pick(&["ACCEPT", "DROP", "RETURN"]).into()),
            _ => {}
        }
        if let Some((_, _, rule)) = fixture {
            out.extend(words(rule));
        } else if rule_ok && matches!(letter, 'C' | 'A' | 'I' | 'D' | 'R') {
            out.extend(self.rule());
        }
        (out, fixture.map(|(table, _, _)| table))
    }

    /// An option besides the command: mostly one that iptables allows with it
    /// (do_parse's commands_v_options), sometimes any.
    fn option(&mut self, command: &str) -> Words {
        if self.chance(3) {
            return words(&[self.pick(&["-h", "-V", "--help", "--version"])]);
        }
        let listing = command.starts_with("-L") || command.starts_with("--l");
        let range = match self.rng.u32(..4) {
            0 => 0..22,
            _ if listing => 0..17,
            _ => 7..18,
        };
        match self.rng.u32(range) {
            0 => words(&["-n"]),
            1 => words(&["-v"]),
            2 => words(&["-x"]),
            3 => words(&["--line-numbers"]),
            4 => words(&["--numeric"]),
            5 => words(&["--verbose"]),
            6 => words(&["--exact"]),
            7 | 8 => words(&["-w"]),
            9 => words(&["-w", self.pick(&["5", "0", "x", "-1"])]),
            10 => words(&["-w5"]),
            11 => words(&["--wait"]),
            12 => words(&["--wait=3"]),
            13 => words(&["--wait", "2"]),
            14 => words(&["-W", "100000"]),
            15 => words(&["--wait-interval", "1000"]),
            16 | 17 => words(&["-4"]),
            18 => words(&["-c", "1", "2"]),
            19 => words(&["--set-counters", "1,2"]),
            20 => words(&["-W"]),
            _ => words(&["-f"]),
        }
    }

    fn argv(&mut self) -> Words {
        let mut pieces: Vec<Words> = Vec::new();
        let (command, table) = self.command(true);
        let command_word = command[0].clone();
        pieces.push(command);
        match table {
            Some("filter") if self.chance(70) => {}
            Some(table) => pieces.push(words(&["-t", table])),
            None if self.chance(35) => pieces.push(self.table()),
            None => {}
        }
        for _ in 0..self.rng.usize(..4) {
            // Waits and -n/-v are rare after the options: mostly first.
            let option = self.option(&command_word);
            if self.chance(70) {
                pieces.insert(0, option);
            } else {
                pieces.push(option);
            }
        }
        if self.chance(12) {
            // A second command: iptables refuses most pairs, and -L -Z is a write.
            pieces.push(self.command(false).0);
        }
        if self.chance(15) {
            let other = self.rng.usize(..pieces.len());
            pieces.swap(0, other);
        }
        let mut argv: Words = pieces.into_iter().flatten().collect();
        for _ in 0..self.rng.usize(..3) {
            if self.chance(25) {
                let at = self.rng.usize(..=argv.len());
                argv.insert(at, self.pick(HOSTILE).into());
            }
        }
        if self.chance(5) && !argv.is_empty() {
            argv.remove(self.rng.usize(..argv.len()));
        }
        if self.chance(5) && argv.len() > 1 {
            let at = self.rng.usize(..argv.len() - 1);
            argv.swap(at, at + 1);
        }
        argv
    }
}

/// xtlock's verdict on an argv: does it run it in its own place, unlocked?
fn is_read(argv: &[String]) -> bool {
    let args: Vec<OsString> = argv.iter().map(OsString::from).collect();
    let mut verdicts = [
        ("iptables-legacy", Backend::Legacy),
        ("iptables-nft", Backend::Nft),
    ]
    .map(|(name, backend)| {
        let kind = classify(OsStr::new(name), &args, || Some(backend), false);
        let Kind::Command(command) = &kind else {
            panic!("{name} {argv:?} is not a command: {kind:?}");
        };
        let read = matches!(command.effect, Effect::ReadOnly | Effect::HelpOrVersion);
        // The read path is exactly what runs in place: help always, a read on nft,
        // and on legacy with -w (README, What every call does).
        let in_place = runs_in_our_place(&kind, || Some(backend), false);
        let expected = match command.effect {
            Effect::HelpOrVersion => true,
            Effect::ReadOnly => backend == Backend::Nft || command.wait != Wait::Absent,
            Effect::Write => false,
        };
        assert_eq!(in_place, expected, "{name} {argv:?}");
        read
    })
    .into_iter();
    let legacy = verdicts.next().unwrap();
    assert_eq!(
        Some(legacy),
        verdicts.next(),
        "the backends differ: {argv:?}"
    );
    legacy
}

fn encode(argvs: &[Words]) -> Vec<u8> {
    let mut out = Vec::new();
    for argv in argvs {
        out.extend_from_slice(argv.len().to_string().as_bytes());
        out.push(0);
        for word in argv {
            out.extend_from_slice(word.as_bytes());
            out.push(0);
        }
    }
    out
}

struct Outcome {
    index: usize,
    run: String,
    status: i32,
    changed: bool,
    stderr: String,
}

fn decode(raw: &[u8]) -> Vec<Outcome> {
    let fields: Vec<String> = raw
        .split(|&b| b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    // A trailing NUL leaves one empty field.
    fields
        .chunks_exact(5)
        .map(|f| Outcome {
            index: f[0].parse().unwrap(),
            run: f[1].clone(),
            status: f[2].parse().unwrap(),
            changed: match f[3].as_str() {
                "same" => false,
                "changed" => true,
                other => panic!("verdict {other:?}"),
            },
            stderr: f[4].clone(),
        })
        .collect()
}

/// Why this outcome of a read is not one a read may have, if it is not.
fn wrong(outcome: &Outcome) -> Option<String> {
    if outcome.changed {
        return Some("the tables changed".into());
    }
    let stderr: Vec<&str> = outcome
        .stderr
        .lines()
        .filter(|l| !WARNINGS.iter().any(|w| l.starts_with(w)))
        .collect();
    match outcome.status {
        // Answered, or refused as a usage error before anything ran.
        0 | 2 => None,
        1 if all_lines_among(&stderr, READ_ANSWERS) => None,
        3 if all_lines_among(&stderr, NO_TABLE) => None,
        status => Some(format!("exit {status}: {:?}", stderr.join("\n"))),
    }
}

fn quoted(argv: &[String]) -> String {
    shlex::try_join(argv.iter().map(String::as_str)).unwrap()
}

#[test]
fn what_xtlock_runs_unlocked_changes_nothing_in_the_real_iptables() {
    if !available() {
        return;
    }
    let seed = std::env::var("XTLOCK_READ_SEED").map_or(DEFAULT_SEED, |s| s.parse().unwrap());
    eprintln!("seed={seed} (XTLOCK_READ_SEED={seed} runs these argvs again)");
    let mut generator = Gen {
        rng: fastrand::Rng::with_seed(seed),
    };
    let generated: Vec<Words> = (0..GENERATED).map(|_| generator.argv()).collect();
    let (reads, writes): (Vec<Words>, Vec<Words>) =
        generated.into_iter().partition(|argv| is_read(argv));
    let controls: Vec<Words> = CONTROLS.iter().map(|(c, _)| words(c)).collect();
    for control in &controls {
        assert!(
            !is_read(control),
            "control {control:?} is classified as a read"
        );
    }
    let help = reads
        .iter()
        .filter(|argv| {
            let args: Vec<OsString> = argv.iter().map(OsString::from).collect();
            xtlock::classify::parse_command(&args).effect == Effect::HelpOrVersion
        })
        .count();
    eprintln!(
        "{} generated: {} reads ({help} of them help or version), {} writes",
        GENERATED,
        reads.len(),
        writes.len()
    );
    // Enough of both for the generator to mean something.
    assert!(reads.len() >= GENERATED / 4, "too few reads");
    assert!(writes.len() >= GENERATED / 4, "too few writes");

    let dir = tempfile::tempdir().unwrap();
    let argv_file = dir.path().join("argvs");
    let out_file = dir.path().join("outcomes");
    let all: Vec<Words> = controls.iter().chain(&reads).cloned().collect();
    std::fs::write(&argv_file, encode(&all)).unwrap();
    let out = run_in_private_namespace(
        "reads/differential.sh",
        &[argv_file.as_os_str(), out_file.as_os_str()],
    );
    assert!(
        out.status.success(),
        "differential.sh: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    let outcomes = decode(&std::fs::read(&out_file).unwrap());
    assert_eq!(
        outcomes.len(),
        RUNS.len() * all.len(),
        "an outcome per argv and run"
    );
    let label = |o: &Outcome| match o.run.strip_suffix("-empty") {
        Some(backend) => format!("iptables-{backend} (empty ruleset)"),
        None => format!("iptables-{}", o.run),
    };

    let (control_outcomes, read_outcomes): (Vec<&Outcome>, Vec<&Outcome>) =
        outcomes.iter().partition(|o| o.index < controls.len());
    let unseen: Vec<String> = control_outcomes
        .iter()
        .filter(|o| !o.changed && (o.run != "nft-empty" || CONTROLS[o.index].1))
        .map(|o| format!("{} {}", label(o), quoted(&all[o.index])))
        .collect();
    assert!(
        unseen.is_empty(),
        "writes the check did not see as changes:\n{}",
        unseen.join("\n")
    );

    let mut answered = [0usize; RUNS.len()];
    let mut failures = Vec::new();
    for outcome in &read_outcomes {
        let run = RUNS.iter().position(|r| *r == outcome.run).unwrap();
        if outcome.status == 0 {
            answered[run] += 1;
        }
        if let Some(why) = wrong(outcome) {
            failures.push(format!(
                "{} {}: {why}",
                label(outcome),
                quoted(&all[outcome.index])
            ));
        }
    }
    eprintln!("reads answered with exit 0 ({RUNS:?}): {answered:?}");
    assert!(
        failures.is_empty(),
        "{} of {} runs of reads were not reads (seed {seed}):\n{}",
        failures.len(),
        read_outcomes.len(),
        failures
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Most reads must really run, not just be refused (on the fixture).
    for count in &answered[..2] {
        assert!(
            *count >= reads.len() / 4,
            "too few reads answered: {answered:?}"
        );
    }
}
