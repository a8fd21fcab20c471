//! What a call is, decided once before the first attempt from the program's name and
//! arguments alone: which rules may retry it, whether its input can be replayed, and
//! whether it changes nothing at all (then it needs neither the lock nor a spawn).
//! Every doubt falls to the side that is safe: "write", "not replayable".

use crate::getopt::{HasArg, Item, LongOpt, Parser, Rejected, long};
use crate::restore::{self, Flavor, RestoreArgs};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

/// The real program's backend, known from the multi-call binary it resolves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Legacy,
    Nft,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// One iptables, ip6tables, arptables or ebtables command (any backend).
    Command(Command),
    /// A `*-restore`; `None` when the options cannot be known (the backend is unknown
    /// and the two parsers disagree): then nothing is buffered and nothing replayed.
    Restore(Option<RestoreArgs>),
    /// A `*-save` of the iptables family: reads only, and takes no lock of its own.
    Save,
    /// A call that changes nothing and takes no lock of its own: `ipset list`, `save`,
    /// `help`, `version` (any abbreviation or option).
    Read,
    /// A call whose input is its whole stdin, read to its end (or to its first error):
    /// `ipset restore` without `-file`. Locked, run once, never retried, as Other.
    StdinToEof,
    /// Anything else (a script, `sh`, `env`, `nft`, any other `ipset` call, an unknown
    /// program): locked, run once, passed through, never retried.
    Other,
}

/// Does the program take its whole stdin as its input? `ipset restore` (no `-file`) and
/// a `*-restore` with no file operand read stdin line by line until its end, or until
/// the first line they refuse. A `*-restore` whose options are not known: no.
pub fn reads_stdin_to_eof(kind: &Kind) -> bool {
    matches!(
        kind,
        Kind::StdinToEof
            | Kind::Restore(Some(RestoreArgs::Apply {
                input: restore::Input::Stdin,
                ..
            }))
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// What the command does, as iptables' own parser will see it.
    pub effect: Effect,
    /// The caller's `-w`/`--wait`.
    pub wait: Wait,
    /// `-C`: its exit status 1 is an answer ("absent"), not a failure.
    pub check: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Exactly one command, `-C`, `-L` or `-S`, without `-Z` (iptables/ip6tables only).
    ReadOnly,
    /// `-h`/`--help` or `-V`/`--version`: the program prints and exits.
    HelpOrVersion,
    /// Anything else, and every doubt.
    Write,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// No `-w`.
    Absent,
    /// `-w` with no value: wait as long as it takes.
    Unbounded,
    /// `-w N`.
    Seconds(i32),
}

/// The name a program called with `arg0` dispatches on: `basename(argv[0])` as the
/// multi-call binaries compute it. iptables 1.8.9's xshared.c subcmd_main calls
/// `basename(*argv)` with <libgen.h> included, so glibc's POSIX `__xpg_basename`:
/// trailing slashes are dropped (`x/` is `x`), but `.` and `..` are names like any other
/// (`iptables-save/.` is `.`, which is no applet, so the binary runs argv[1] instead);
/// "" is `.` and a path of only slashes is `/`. Rust's `Path::file_name` differs (it
/// reads `x/.` as `x`), so classification uses this, never that.
pub fn dispatch_name(arg0: &OsStr) -> &OsStr {
    let bytes = arg0.as_bytes();
    if bytes.is_empty() {
        return OsStr::new(".");
    }
    let end = bytes.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
    if end == 0 {
        return OsStr::new("/");
    }
    let start = bytes[..end]
        .iter()
        .rposition(|&b| b == b'/')
        .map_or(0, |i| i + 1);
    OsStr::from_bytes(&bytes[start..end])
}

/// The applet a call runs: for `xtables-nft-multi iptables -L` it is `iptables` with
/// `-L`, as the multi-call binary's subcmd_main dispatches (basename of argv[0] first,
/// then the first argument, compared whole).
pub fn applet<'a>(name: &'a OsStr, args: &'a [OsString]) -> (&'a OsStr, &'a [OsString]) {
    match args.split_first() {
        Some((first, rest)) if is_multi_binary(name) && role(first).is_some() => (first, rest),
        _ => (name, args),
    }
}

/// The multi-call binary's own names; under these names argv[1] picks the applet.
fn is_multi_binary(name: &OsStr) -> bool {
    let multi: [&[u8]; 5] = [
        b"xtables-legacy-multi",
        b"xtables-nft-multi",
        b"xtables-multi",
        b"iptables-multi",
        b"ip6tables-multi",
    ];
    multi.contains(&name.as_bytes())
}

pub fn backend_of_multi(name: &OsStr) -> Option<Backend> {
    match name.as_bytes() {
        b"xtables-legacy-multi" | b"xtables-multi" | b"iptables-multi" | b"ip6tables-multi" => {
            Some(Backend::Legacy)
        }
        b"xtables-nft-multi" => Some(Backend::Nft),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Main { iptables_family: bool },
    Save,
    Restore,
    Ipset,
}

/// The applet names of iptables 1.8.x's multi-call binaries and the programs installed
/// under them (xtables-legacy-multi.c, xtables-nft-multi.c), by what they do.
fn role(name: &OsStr) -> Option<Role> {
    let name = name.as_bytes();
    if name == b"ipset" {
        return Some(Role::Ipset);
    }
    let stem = |suffix: &[u8]| name.strip_suffix(suffix);
    let family = |base: &[u8]| {
        let base = base
            .strip_suffix(b"-legacy")
            .or_else(|| base.strip_suffix(b"-nft"))
            .unwrap_or(base);
        match base {
            b"iptables" | b"ip6tables" => Some(true),
            b"arptables" | b"ebtables" => Some(false),
            _ => None,
        }
    };
    match name {
        b"main4" | b"main6" => {
            return Some(Role::Main {
                iptables_family: true,
            });
        }
        b"save4" | b"save6" => return Some(Role::Save),
        b"restore4" | b"restore6" => return Some(Role::Restore),
        _ => {}
    }
    if let Some(base) = stem(b"-restore") {
        return family(base).map(|_| Role::Restore);
    }
    if let Some(base) = stem(b"-save") {
        return family(base).map(|_| Role::Save);
    }
    family(name).map(|iptables_family| Role::Main { iptables_family })
}

/// The restore flavour a name fixes by itself, if it does.
fn restore_flavor(name: &OsStr, backend: impl FnOnce() -> Option<Backend>) -> Option<Flavor> {
    let name = name.as_bytes();
    if name.starts_with(b"ebtables") {
        return Some(Flavor::Ebtables);
    }
    if name.starts_with(b"arptables") || name.ends_with(b"-nft-restore") {
        return Some(Flavor::Nft);
    }
    if name.ends_with(b"-legacy-restore") {
        return Some(Flavor::Legacy);
    }
    backend().map(|b| match b {
        Backend::Legacy => Flavor::Legacy,
        Backend::Nft => Flavor::Nft,
    })
}

/// Classify a call of `name` (the file name it runs under) with `args`. `backend` says
/// what the program resolves to, when known; asked only when the name does not say.
pub fn classify(
    name: &OsStr,
    args: &[OsString],
    backend: impl FnOnce() -> Option<Backend>,
    posixly_correct: bool,
) -> Kind {
    let (applet, args) = applet(name, args);
    match role(applet) {
        None => Kind::Other,
        Some(Role::Save) => Kind::Save,
        Some(Role::Ipset) => ipset_kind(args),
        Some(Role::Main { iptables_family }) => {
            let mut command = parse_command(args);
            if !iptables_family {
                // Their parsers differ; not modelled.
                if command.effect == Effect::ReadOnly {
                    command.effect = Effect::Write;
                }
                // Nor is `-w` a wait to them: ebtables (xtables-eb.c, EBT_OPTSTRING) and
                // arptables-nft (ARPT_OPTSTRING) of iptables 1.8.9 have no -w/--wait and
                // refuse it (exit 2); ebtables-legacy 2.0.11 refuses it too, and
                // arptables-legacy 0.0.5 takes `-w[N]` but waits for no lock (measured).
                command.wait = Wait::Absent;
            }
            Kind::Command(command)
        }
        Some(Role::Restore) => Kind::Restore(match restore_flavor(applet, backend) {
            Some(flavor) => Some(restore::parse_args(flavor, args, posixly_correct)),
            None => {
                let legacy = restore::parse_args(Flavor::Legacy, args, posixly_correct);
                let nft = restore::parse_args(Flavor::Nft, args, posixly_correct);
                (legacy == nft).then_some(legacy)
            }
        }),
    }
}

/// ipset 7.17's options (lib/ipset.c ipset_envopts): (short, long, takes a value), in
/// the order ipset_parser takes them off argv, each from the whole argv at once.
const IPSET_OPTIONS: &[(&[u8], &[u8], bool)] = &[
    (b"-o", b"-output", true),
    (b"-s", b"-sorted", false),
    (b"-q", b"-quiet", false),
    (b"-r", b"-resolve", false),
    (b"-!", b"-exist", false),
    (b"-n", b"-name", false),
    (b"-t", b"-terse", false),
    (b"-f", b"-file", true),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum IpsetEffect {
    Read,
    Restore,
    Write,
}

/// ipset 7.17's commands and their aliases (lib/ipset.c ipset_commands), in its order:
/// the first that the word is a prefix of wins (`s` is save, `re` restore, `d` del).
const IPSET_COMMANDS: &[(IpsetEffect, &[&[u8]])] = &[
    (IpsetEffect::Write, &[b"create", b"new", b"-N"]),
    (IpsetEffect::Write, &[b"add", b"-A"]),
    (IpsetEffect::Write, &[b"del", b"-D"]),
    (IpsetEffect::Write, &[b"test", b"-T"]), // changes nothing, but not modelled further
    (IpsetEffect::Write, &[b"destroy", b"x", b"-X"]),
    (IpsetEffect::Read, &[b"list", b"-L"]),
    (IpsetEffect::Read, &[b"save", b"-S"]),
    (IpsetEffect::Restore, &[b"restore", b"-R"]),
    (IpsetEffect::Write, &[b"flush", b"-F"]),
    (IpsetEffect::Write, &[b"rename", b"e", b"-E"]),
    (IpsetEffect::Write, &[b"swap", b"w", b"-W"]),
    (IpsetEffect::Read, &[b"help", b"-h", b"-H"]),
    (IpsetEffect::Read, &[b"version", b"-v", b"-V"]),
    (IpsetEffect::Write, &[b"quit"]),
];

/// Read an ipset command line as ipset 7.17's ipset_parser does: first every option is
/// taken off argv wherever it stands (ipset_match_envopt: the whole name, one of two
/// leading dashes ignored; `-o`/`-f` take the next word, whatever it is), then the first
/// word left is the command (ipset_match_cmd: two leading dashes ignored, any prefix of
/// a name). `-` (commands from stdin, one by one), an unknown command, any refusal:
/// Other. `add` in a `while read` loop reads no stdin: only `restore` does.
fn ipset_kind(args: &[OsString]) -> Kind {
    let mut argv: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    let mut file = false;
    for &(short, long, takes_value) in IPSET_OPTIONS {
        let mut i = 0;
        while i < argv.len() {
            let word = argv[i];
            let word = if word.starts_with(b"--") {
                &word[1..]
            } else {
                word
            };
            if word != short && word != long {
                i += 1;
                continue;
            }
            argv.remove(i);
            if !takes_value {
                continue;
            }
            if i == argv.len() {
                return Kind::Other; // "Missing mandatory argument": refused
            }
            let value = argv.remove(i);
            let refused = match short {
                b"-o" => !matches!(value, b"plain" | b"xml" | b"save"),
                _ => std::mem::replace(&mut file, true), // a second -file is refused
            };
            if refused {
                return Kind::Other;
            }
        }
    }
    let Some((&word, rest)) = argv.split_first() else {
        return Kind::Other;
    };
    let effect = IPSET_COMMANDS
        .iter()
        .find(|(_, names)| names.iter().any(|name| ipset_names(word, name)))
        .map(|&(effect, _)| effect);
    match effect {
        // Whatever follows (a set name, or words ipset refuses), nothing changes.
        Some(IpsetEffect::Read) => Kind::Read,
        // `restore` takes no argument: with one it is refused before reading anything.
        Some(IpsetEffect::Restore) if rest.is_empty() && !file => Kind::StdinToEof,
        _ => Kind::Other,
    }
}

/// ipset_match_cmd: is `word` (two leading dashes ignored) a prefix of `name`?
fn ipset_names(word: &[u8], name: &[u8]) -> bool {
    let word = word.strip_prefix(b"--").unwrap_or(word);
    !word.is_empty() && word != b"-" && name.starts_with(word)
}

/// iptables 1.8.9's optstring (xshared.h IPT_OPTSTRING): `-` first, so words come back
/// in order and nothing is permuted; POSIXLY_CORRECT does not matter.
const IPT_SHORTS: &str = "-:A:C:D:E:F::I:L::M:N:P:VX::Z::c:d:i:j:o:p:s:t:R:S::W::46bfg:h::m:nvw::x";

/// iptables.c `original_opts`. Extensions add more at run time (`--dport`, `--comment`).
const IPT_LONGS: &[LongOpt] = &[
    long("append", HasArg::Required, b'A'),
    long("delete", HasArg::Required, b'D'),
    long("check", HasArg::Required, b'C'),
    long("insert", HasArg::Required, b'I'),
    long("replace", HasArg::Required, b'R'),
    long("list", HasArg::Optional, b'L'),
    long("list-rules", HasArg::Optional, b'S'),
    long("flush", HasArg::Optional, b'F'),
    long("zero", HasArg::Optional, b'Z'),
    long("new-chain", HasArg::Required, b'N'),
    long("delete-chain", HasArg::Optional, b'X'),
    long("rename-chain", HasArg::Required, b'E'),
    long("policy", HasArg::Required, b'P'),
    long("source", HasArg::Required, b's'),
    long("destination", HasArg::Required, b'd'),
    long("src", HasArg::Required, b's'),
    long("dst", HasArg::Required, b'd'),
    long("protocol", HasArg::Required, b'p'),
    long("in-interface", HasArg::Required, b'i'),
    long("jump", HasArg::Required, b'j'),
    long("table", HasArg::Required, b't'),
    long("match", HasArg::Required, b'm'),
    long("numeric", HasArg::No, b'n'),
    long("out-interface", HasArg::Required, b'o'),
    long("verbose", HasArg::No, b'v'),
    long("wait", HasArg::Optional, b'w'),
    long("wait-interval", HasArg::Optional, b'W'),
    long("exact", HasArg::No, b'x'),
    long("fragments", HasArg::No, b'f'),
    long("version", HasArg::No, b'V'),
    long("help", HasArg::Optional, b'h'),
    long("line-numbers", HasArg::No, b'0'),
    long("modprobe", HasArg::Required, b'M'),
    long("set-counters", HasArg::Required, b'c'),
    long("goto", HasArg::Required, b'g'),
    long("ipv4", HasArg::No, b'4'),
    long("ipv6", HasArg::No, b'6'),
];

const COMMAND_LETTERS: &[u8] = b"ACDEFILNPRSXZ";
const READ_COMMANDS: &[u8] = b"CLS";

/// Read one iptables command line as xshared.c's do_parse does, far enough to know its
/// command and its `-w`. Options of extensions (`--dport`, `--comment`) are not known
/// here, and one may take the next word as its value or not; so the call is a read only
/// if exactly one word of the whole argv could be a command, and it is the read command
/// found. Long options count only by their whole name: an abbreviation of ours may be
/// an extension's whole name (`--set` of `-m recent` is not `--set-counters`).
pub fn parse_command(args: &[OsString]) -> Command {
    let mut parser = Parser::new(args, IPT_SHORTS, IPT_LONGS, false).exact_long_names();
    let mut commands = Vec::new();
    let mut wait = Wait::Absent;
    // An unknown option with no `=value`: the words after it may be its values.
    let mut unsure_of_words = false;
    let write = |wait| Command {
        effect: Effect::Write,
        wait,
        check: false,
    };
    while let Some(item) = parser.next_item() {
        let (val, optarg) = match item {
            Ok(Item::Opt(val, optarg)) => (val, optarg),
            // `!`, an extension's value, or a stray word iptables refuses: no command.
            Ok(Item::Word(_)) => continue,
            Err(Rejected::UnknownLong { attached, .. }) => {
                unsure_of_words |= !attached;
                continue;
            }
            Err(Rejected::Usage) => return write(wait),
        };
        match val {
            // `--comment -h` may be a comment: then the rule is added.
            b'h' | b'V' if unsure_of_words => return write(wait),
            b'h' | b'V' => {
                return Command {
                    effect: Effect::HelpOrVersion,
                    wait,
                    check: false,
                };
            }
            b'w' => {
                let value = optarg.clone().or_else(|| parser.take_word_argument());
                wait = match value {
                    None => Wait::Unbounded,
                    Some(v) => match crate::scan::scan_int(v.as_bytes()) {
                        Some(seconds) => Wait::Seconds(seconds),
                        None => return write(wait),
                    },
                };
            }
            b'W' if optarg.is_none() => {
                parser.take_word_argument();
            }
            b'c' if !optarg
                .as_ref()
                .is_some_and(|v| v.as_bytes().get(1..).unwrap_or_default().contains(&b',')) =>
            {
                parser.take_word_argument();
            }
            // check_inverse: `-s ! ADDR` takes the word after the `!` as well.
            b'p' | b's' | b'd' | b'i' | b'o' if optarg.as_deref() == Some(OsStr::new("!")) => {
                parser.take_any_word();
            }
            letter if COMMAND_LETTERS.contains(&letter) => {
                commands.push(letter);
                // The words a command takes after its option (chain, rule number, new
                // name, policy), as do_parse takes them with xs_has_arg.
                let extra_words = match (letter, &optarg) {
                    (b'L' | b'S' | b'Z', None) => 2,
                    (b'L' | b'S' | b'Z' | b'F' | b'X', _) => 1,
                    (b'D' | b'R' | b'I' | b'E' | b'P', _) => 1,
                    _ => 0,
                };
                for _ in 0..extra_words {
                    parser.take_word_argument();
                }
            }
            _ => {}
        }
    }
    let command_words: usize = args.iter().map(|a| command_count(a.as_bytes())).sum();
    let effect = match commands.as_slice() {
        [one] if READ_COMMANDS.contains(one) && command_words == 1 => Effect::ReadOnly,
        _ => Effect::Write,
    };
    Command {
        effect,
        wait,
        check: commands == [b'C'],
    }
}

/// How many commands iptables could find in this word: each command letter of a
/// bundle of short options (`-LZ` is `-L Z` to getopt, but counts 2 here), or 1 for a
/// long option that a command's name starts with.
fn command_count(word: &[u8]) -> usize {
    match word {
        [b'-', b'-', name @ ..] => {
            let name = name.split(|&b| b == b'=').next().unwrap_or_default();
            usize::from(could_be_command_long(name))
        }
        [b'-', letters @ ..] => letters
            .iter()
            .filter(|b| COMMAND_LETTERS.contains(b))
            .count(),
        _ => 0,
    }
}

fn could_be_command_long(name: &[u8]) -> bool {
    IPT_LONGS
        .iter()
        .filter(|o| COMMAND_LETTERS.contains(&o.val))
        .any(|o| o.name.as_bytes().starts_with(name))
}

/// Reads need neither the lock nor a spawn: exec the program in our place. A read of
/// the legacy backend without `-w` stays on the write path: iptables 1.6 to 1.8.7 then
/// fail at once if iptables' own lock is busy, and xtlock's queue spares them that.
/// Under --verbose a read is spawned, so that it is logged.
pub fn runs_in_our_place(
    kind: &Kind,
    backend: impl FnOnce() -> Option<Backend>,
    verbose: bool,
) -> bool {
    if verbose {
        return false;
    }
    match kind {
        Kind::Save | Kind::Read => true,
        Kind::Restore(Some(RestoreArgs::HelpOrVersion)) => true,
        Kind::Command(command) => match command.effect {
            Effect::HelpOrVersion => true,
            Effect::ReadOnly => command.wait != Wait::Absent || backend() == Some(Backend::Nft),
            Effect::Write => false,
        },
        Kind::Restore(_) | Kind::StdinToEof | Kind::Other => false,
    }
}

/// The caller's `iptables -w N` bounds xtlock's wait too; `-w` alone or none: the
/// configured timeout.
/// The lock file legacy iptables takes before anything else (xshared.c 1.8.9,
/// `xtables_lock`): `XTABLES_LOCKFILE` unless it is unset or empty, else the build's
/// (Debian's iptables is built with `--with-xt-lock-name=/run/xtables.lock`). A
/// relative path is relative to the caller's cwd, as iptables opens it.
pub fn iptables_lock_path(var: Option<&OsStr>) -> std::path::PathBuf {
    var.filter(|p| !p.is_empty())
        .unwrap_or(OsStr::new(XT_LOCK_NAME))
        .into()
}

const XT_LOCK_NAME: &str = "/run/xtables.lock";
pub const IPTABLES_LOCK_VAR: &str = "XTABLES_LOCKFILE";

/// Does the program take iptables' own lock while it runs under ours? Legacy commands,
/// reads and restores do (a save does not); nft takes none.
pub fn takes_iptables_lock(kind: &Kind, backend: Option<Backend>) -> bool {
    backend == Some(Backend::Legacy)
        && matches!(kind, Kind::Command(_) | Kind::Read | Kind::Restore(_))
}

pub fn lock_timeout(kind: &Kind, configured: Duration) -> Duration {
    match kind {
        Kind::Command(c) => match c.wait {
            Wait::Seconds(n) if n > 0 => Duration::from_secs(n as u64),
            _ => configured,
        },
        _ => configured,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn iptables_lock_path_as_xtables_lock_reads_it() {
        use std::ffi::OsStr;
        let cases: [(Option<&str>, &str); 4] = [
            (None, "/run/xtables.lock"),
            (Some(""), "/run/xtables.lock"),
            (Some("/run/x.lock"), "/run/x.lock"),
            (Some("rel.lock"), "rel.lock"),
        ];
        for (var, want) in cases {
            let got = super::iptables_lock_path(var.map(OsStr::new));
            assert_eq!(got, std::path::Path::new(want), "{var:?}");
        }
    }

    use super::*;

    fn args(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    fn effect(line: &str) -> Effect {
        parse_command(&args(line)).effect
    }

    #[test]
    fn commands_table() {
        use Effect::*;
        let cases = [
            ("-C INPUT -p tcp --dport 22 -j ACCEPT", ReadOnly),
            ("-w -C INPUT -p tcp --dport 22 -j ACCEPT", ReadOnly),
            ("--check INPUT -s 1.2.3.4 -j DROP", ReadOnly),
            ("--ch INPUT -j DROP", Write),
            ("-L", ReadOnly),
            ("-nvL", ReadOnly),
            ("-L INPUT 1 -n --line-numbers", ReadOnly),
            ("-t nat -L POSTROUTING", ReadOnly),
            ("-S", ReadOnly),
            ("--list-rules DOCKER", ReadOnly),
            ("-L -Z", Write),
            ("-LZ", Write),
            ("-nvLZ INPUT", Write),
            ("-L --zero", Write),
            ("-Z", Write),
            ("-A INPUT -j DROP", Write),
            ("-C INPUT -A INPUT", Write),
            ("-I INPUT 1 -j ACCEPT", Write),
            ("-N f2b-sshd", Write),
            ("-F", Write),
            ("-X", Write),
            ("-P INPUT DROP", Write),
            ("-E a b", Write),
            // Abbreviations are not trusted.
            ("--list-r", Write),
            ("--li INPUT", Write),
            ("--de INPUT 1", Write),
            // A word after an extension's option may be its value or a command.
            ("-C INPUT -m comment --comment -A -j ACCEPT", Write),
            // Either -C is the comment (then iptables finds no command and refuses) or
            // the only command: no change either way.
            ("-m comment --comment -C INPUT -j ACCEPT", ReadOnly),
            ("-C INPUT -m comment --comment=-A -j ACCEPT", ReadOnly),
            ("-C INPUT -m recent --set -j ACCEPT", ReadOnly),
            ("-C INPUT -p tcp --dport 22 --flush", Write),
            // Values of known options are values, whatever they look like.
            ("-C INPUT -j -A", Write),
            ("-C INPUT --tcp-flags SYN,ACK SYN -p tcp", ReadOnly),
            ("-C INPUT -s ! 1.2.3.4 -j DROP", ReadOnly),
            ("-C INPUT ! -s 1.2.3.4 -j DROP", ReadOnly),
            ("-C INPUT stray", ReadOnly), // iptables refuses it: no change either way
            ("", Write),
            ("-q -L", Write),
            ("-L -w 5", ReadOnly),
            ("-L -w rules", Write),
            ("-h", HelpOrVersion),
            ("-A INPUT -m limit --help", HelpOrVersion),
            ("-p tcp --help", HelpOrVersion),
            ("--version", HelpOrVersion),
            ("-V", HelpOrVersion),
            // --comment's value may be "-h": the rule may be added.
            ("-A INPUT -m comment --comment -h -j ACCEPT", Write),
        ];
        for (line, want) in cases {
            assert_eq!(effect(line), want, "{line:?}");
        }
    }

    #[test]
    fn waits() {
        let wait = |line: &str| parse_command(&args(line)).wait;
        assert_eq!(wait("-A INPUT -j DROP"), Wait::Absent);
        assert_eq!(wait("-w -A INPUT -j DROP"), Wait::Unbounded);
        assert_eq!(wait("-w 5 -A INPUT -j DROP"), Wait::Seconds(5));
        assert_eq!(wait("-w5 -A INPUT -j DROP"), Wait::Seconds(5));
        assert_eq!(wait("--wait=60 -A INPUT -j DROP"), Wait::Seconds(60));
        assert_eq!(wait("--wait 60 -A INPUT -j DROP"), Wait::Seconds(60));
        assert_eq!(wait("-A INPUT -j DROP -w -W 100"), Wait::Unbounded);
    }

    #[test]
    fn only_the_iptables_family_waits_for_w() {
        let wait = |name: &str, line: &str| match classify(
            OsStr::new(name),
            &args(line),
            || None,
            false,
        ) {
            Kind::Command(command) => command.wait,
            other => panic!("{name} {line}: {other:?}"),
        };
        let cases = [
            ("iptables", "-w 1 -A INPUT -j DROP", Wait::Seconds(1)),
            (
                "ip6tables-nft",
                "--wait=1 -A INPUT -j DROP",
                Wait::Seconds(1),
            ),
            ("iptables-legacy", "-w -A INPUT -j DROP", Wait::Unbounded),
            ("xtables-legacy-multi", "iptables -w 1 -L", Wait::Seconds(1)),
            ("ebtables", "-w 1 -A INPUT -j DROP", Wait::Absent),
            ("ebtables-nft", "--wait 1 -L", Wait::Absent),
            ("ebtables-legacy", "-w1 -L", Wait::Absent),
            ("arptables", "-w 1 -A INPUT -j DROP", Wait::Absent),
            ("arptables-nft", "-w -L", Wait::Absent),
            ("arptables-legacy", "--wait=5 -L", Wait::Absent),
            ("xtables-nft-multi", "ebtables -w 1 -L", Wait::Absent),
            ("xtables-nft-multi", "arptables -w 1 -L", Wait::Absent),
        ];
        for (name, line, want) in cases {
            assert_eq!(wait(name, line), want, "{name} {line}");
        }
    }

    #[test]
    fn dispatch_names_are_glibcs_posix_basename() {
        // Each row checked against glibc 2.36's basename from <libgen.h>.
        let cases: &[(&[u8], &[u8])] = &[
            (b"iptables", b"iptables"),
            (b"/usr/sbin/iptables-legacy-save", b"iptables-legacy-save"),
            (b"./iptables-save", b"iptables-save"),
            (b"x/.", b"."),
            (b"x/./", b"."),
            (b"x/.//", b"."),
            (b"x/..", b".."),
            (b"x/", b"x"),
            (b"x//", b"x"),
            (b"//x//", b"x"),
            (b"a//b", b"b"),
            (b"..", b".."),
            (b".", b"."),
            (b"", b"."),
            (b"/", b"/"),
            (b"//", b"/"),
            (b"///", b"/"),
            (b"/x", b"x"),
        ];
        for (arg0, want) in cases {
            let got = dispatch_name(OsStr::from_bytes(arg0));
            assert_eq!(got.as_bytes(), *want, "{:?}", OsStr::from_bytes(arg0));
        }
    }

    #[test]
    fn odd_arg0s_are_classified_by_the_name_the_program_dispatches_on() {
        let kind = |arg0: &str, line: &str| {
            classify(dispatch_name(OsStr::new(arg0)), &args(line), || None, false)
        };
        // The multi-call binary finds no applet `.` and runs argv[1]: a write, locked.
        assert_eq!(
            kind("iptables-legacy-save/.", "iptables -A INPUT -j ACCEPT"),
            Kind::Other
        );
        assert_eq!(kind("x/..", "iptables-save"), Kind::Other);
        assert_eq!(kind("", "iptables-save"), Kind::Other);
        assert_eq!(kind("..", "iptables-save"), Kind::Other);
        assert_eq!(kind("iptables-legacy-save/", "-t nat"), Kind::Save);
        assert_eq!(kind("iptables-legacy-save//", ""), Kind::Save);
        assert_eq!(kind("./iptables-save", ""), Kind::Save);
        assert_eq!(kind("/usr/sbin/iptables-save", ""), Kind::Save);
        assert!(matches!(
            kind("iptables/", "-A INPUT -j DROP"),
            Kind::Command(_)
        ));
    }

    #[test]
    fn ipset_calls() {
        use Kind::{Other, Read, StdinToEof};
        let cases = [
            ("list", Read),
            ("list -n", Read),
            ("-n list", Read),
            ("--name list", Read),
            ("-terse -sorted list f2b-sshd", Read),
            ("l", Read),
            ("li f2b-sshd", Read),
            ("--list", Read),
            ("-L", Read),
            ("-L -o save", Read),
            ("-o xml -L", Read),
            ("save", Read),
            ("s f2b-sshd", Read),
            ("sa", Read),
            ("-S", Read),
            ("--save -file out", Read),
            ("save f2b-sshd -f out", Read),
            ("list a b", Read), // refused: nothing changes either way
            ("help", Read),
            ("h hash:ip", Read),
            ("-h", Read),
            ("version", Read),
            ("-v", Read),
            ("-V", Read),
            ("restore", StdinToEof),
            ("re", StdinToEof),
            ("-R", StdinToEof),
            ("--restore", StdinToEof),
            ("-exist restore", StdinToEof),
            ("restore -! -q", StdinToEof),
            ("--exist restore", StdinToEof),
            ("restore -file rules", Other),
            ("-f rules restore", Other),
            ("restore extra", Other),
            ("-", Other),
            ("", Other),
            ("add f2b-sshd 192.0.2.1", Other),
            ("-A f2b-sshd 192.0.2.1", Other),
            ("a f2b-sshd 192.0.2.1", Other),
            ("-exist add f2b-sshd 192.0.2.1", Other),
            ("create f2b-sshd hash:ip", Other),
            ("d f2b-sshd 192.0.2.1", Other),
            ("destroy", Other),
            ("x", Other),
            ("flush", Other),
            ("swap a b", Other),
            ("w a b", Other),
            ("ren a b", Other),
            ("e a b", Other),
            ("test f2b-sshd 192.0.2.1", Other),
            ("t f2b-sshd 192.0.2.1", Other), // `t` is test: `-t` is terse
            ("quit", Other),
            // What is taken off argv first decides which word is the command.
            ("-o save add f2b-sshd 192.0.2.1", Other),
            ("-o list add f2b-sshd 192.0.2.1", Other), // refused: no mode "list"
            ("-f list add f2b-sshd 192.0.2.1", Other),
            ("-n add list 192.0.2.1", Other),
            ("add -n list", Other),
            // Not options, not commands: refused, or a set name after the command.
            ("---name list", Other),
            ("-list", Other),
            ("lists", Other),
            ("--l", Read),
            ("-o", Other),
            ("list -o", Other),
            ("-f a -f b save", Other),
        ];
        for (line, want) in cases {
            let got = classify(OsStr::new("ipset"), &args(line), || None, false);
            assert_eq!(got, want, "ipset {line}");
        }
    }

    #[test]
    fn stdin_to_eof() {
        let reads = |name: &str, line: &str| {
            reads_stdin_to_eof(&classify(OsStr::new(name), &args(line), || None, false))
        };
        assert!(reads("ipset", "restore"));
        assert!(reads("ipset", "-exist -R"));
        assert!(!reads("ipset", "restore -file rules"));
        assert!(!reads("ipset", "add f2b 192.0.2.1"));
        assert!(!reads("ipset", "-"));
        assert!(!reads("ipset", "save"));
        assert!(reads("iptables-legacy-restore", ""));
        assert!(reads("iptables-legacy-restore", "--noflush"));
        assert!(reads("ip6tables-nft-restore", "-w rules"));
        assert!(reads("ebtables-restore", "-n file"));
        assert!(reads("xtables-legacy-multi", "iptables-restore -T nat"));
        assert!(!reads("iptables-legacy-restore", "rules.v4"));
        assert!(!reads("iptables-legacy-restore", "-h"));
        assert!(!reads("iptables-legacy-restore", "a b"));
        assert!(!reads("iptables-restore", "-w rules")); // unknown backend: not known
        assert!(!reads("iptables", "-A INPUT -j DROP"));
        assert!(!reads("iptables-save", ""));
        assert!(!reads("sh", "-c cat"));
    }

    #[test]
    fn kinds() {
        let kind = |name: &str, line: &str| classify(OsStr::new(name), &args(line), || None, false);
        assert!(matches!(
            kind("iptables", "-A INPUT -j DROP"),
            Kind::Command(_)
        ));
        assert!(matches!(
            kind("ip6tables-nft", "-A INPUT -j DROP"),
            Kind::Command(_)
        ));
        assert!(matches!(
            kind("ebtables", "-L"),
            Kind::Command(Command {
                effect: Effect::Write,
                ..
            })
        ));
        assert!(matches!(
            kind("iptables-legacy-restore", "-n"),
            Kind::Restore(Some(_))
        ));
        assert!(matches!(kind("restore4", ""), Kind::Restore(_)));
        assert_eq!(kind("iptables-save", ""), Kind::Save);
        assert_eq!(kind("ip6tables-legacy-save", "-t nat"), Kind::Save);
        assert_eq!(kind("xtables-legacy-multi", "iptables-save"), Kind::Save);
        assert!(matches!(
            kind("xtables-nft-multi", "iptables-restore --noflush"),
            Kind::Restore(Some(RestoreArgs::Apply { noflush: true, .. }))
        ));
        assert!(matches!(
            kind("xtables-legacy-multi", "iptables -L"),
            Kind::Command(Command {
                effect: Effect::ReadOnly,
                ..
            })
        ));
        for other in [
            "sh",
            "env",
            "nft",
            "ipset-translate",
            "iptables-restore-translate",
            "iptables-xml",
            "xtables-monitor",
            "xtables-legacy-multi",
        ] {
            assert_eq!(kind(other, "-c iptables-restore"), Kind::Other, "{other}");
        }
        assert_eq!(
            kind("xtables-legacy-multi", "/usr/sbin/iptables -A INPUT"),
            Kind::Other
        );
        // Unknown backend: legacy reads `-w rules` as an error, nft as stdin: no replay.
        assert_eq!(kind("iptables-restore", "-w rules"), Kind::Restore(None));
        assert!(matches!(
            kind("iptables-restore", "--nof"),
            Kind::Restore(Some(_))
        ));
    }
}

#[cfg(test)]
mod policy_tests {
    use super::*;
    use std::time::Duration;

    fn command(effect: Effect, wait: Wait) -> Kind {
        Kind::Command(Command {
            effect,
            wait,
            check: false,
        })
    }

    #[test]
    fn which_calls_run_in_our_place() {
        use Effect::*;
        let nft = Some(Backend::Nft);
        let legacy = Some(Backend::Legacy);
        let cases = [
            (Kind::Save, legacy, true),
            (Kind::Read, None, true),
            (Kind::StdinToEof, None, false),
            (command(HelpOrVersion, Wait::Absent), legacy, true),
            (command(ReadOnly, Wait::Unbounded), legacy, true),
            (command(ReadOnly, Wait::Seconds(5)), None, true),
            (command(ReadOnly, Wait::Absent), nft, true),
            (command(ReadOnly, Wait::Absent), legacy, false),
            (command(ReadOnly, Wait::Absent), None, false),
            (command(Write, Wait::Unbounded), nft, false),
            (Kind::Other, nft, false),
            (Kind::Restore(None), nft, false),
        ];
        for (kind, backend, want) in cases {
            assert_eq!(
                runs_in_our_place(&kind, || backend, false),
                want,
                "{kind:?} {backend:?}"
            );
            assert!(
                !runs_in_our_place(&kind, || backend, true),
                "verbose spawns {kind:?}"
            );
        }
    }

    #[test]
    fn the_callers_wait_bounds_ours() {
        let configured = Duration::from_secs(30);
        let t = |wait| lock_timeout(&command(Effect::Write, wait), configured);
        assert_eq!(t(Wait::Absent), configured);
        assert_eq!(t(Wait::Unbounded), configured);
        assert_eq!(t(Wait::Seconds(5)), Duration::from_secs(5));
        assert_eq!(t(Wait::Seconds(60)), Duration::from_secs(60));
        assert_eq!(t(Wait::Seconds(0)), configured);
        assert_eq!(lock_timeout(&Kind::Other, configured), configured);
    }
}
