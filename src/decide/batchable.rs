//! Which single iptables/ip6tables commands may join a group commit: one line of a
//! `<prog>-restore --noflush` transaction per program and table. A command is admitted
//! only if (a) as a restore line it means exactly what it means as a command, and (b) it
//! prints nothing on stdout or stderr when it succeeds, on both backends (iptables-legacy
//! and iptables-nft 1.8.9). Anything this walk does not know is refused: the command then
//! runs alone, as it always did.
//!
//! Why a whitelist walk and not a model of getopt: the restore line is the command's own
//! words minus `-t`/`-w` and their values, parsed by the same `do_parse` (xshared.c,
//! 1.8.9) behind the same getopt. What can change the meaning is finding those words
//! wrongly (so every option's arity must be known exactly: no abbreviations, bundles,
//! attached values or unknown options) and the restore tokenizer (add_param_to_argv,
//! xshared.c) carrying a word differently. What can print is an extension's warning, so
//! only extensions and values known to be silent are admitted (tests/cli/batchable_shapes.rs
//! runs every admitted shape on both backends).

use std::ffi::OsString;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchLine {
    /// The `*table` the line belongs under (`-t`, default `filter`).
    pub table: String,
    /// The restore line, without its newline.
    pub line: String,
}

/// The restore line that means what this command means, or None when that is not known
/// for sure. `args`: the words after argv[0] (for a multi-call binary, after the applet
/// name).
pub fn batch_line(args: &[OsString]) -> Option<BatchLine> {
    let words: Vec<&str> = args.iter().map(|a| a.to_str()).collect::<Option<_>>()?;
    // MAX_ARGC in xshared.h is 255 words a line; a 1,024-byte buffer a word
    // (add_param); fgets reads 10,240 bytes a line (iptables-restore.c). Far below all.
    if words.len() > MAX_WORDS || words.iter().any(|w| w.is_empty() || w.len() > MAX_WORD) {
        return None;
    }
    let mut walk = Walk::default();
    let mut rest = words.as_slice();
    while let Some((&word, after)) = rest.split_first() {
        rest = walk.step(word, after)?;
    }
    let command = walk.command?;
    if walk.invert_pending || walk.out.is_empty() {
        return None;
    }
    let has_spec = walk.spec_options > 0;
    match command {
        // A rule with no target is legal but no caller we batch for writes one; a
        // `-D` of an empty spec would delete the first such rule.
        Command::Append | Command::Insert | Command::Delete if !walk.target => return None,
        Command::NewChain | Command::DeleteChain | Command::Flush if has_spec => return None,
        _ => {}
    }
    let line = walk
        .out
        .iter()
        .map(|w| quoted(w))
        .collect::<Vec<_>>()
        .join(" ");
    if line.len() > MAX_LINE {
        return None;
    }
    Some(BatchLine {
        table: walk.table.unwrap_or("filter").to_string(),
        line,
    })
}

const MAX_WORDS: usize = 64;
const MAX_WORD: usize = 255;
const MAX_LINE: usize = 4000;

/// A word as add_param_to_argv (xshared.c) reads it back: a word with a space goes in
/// double quotes (inside them every byte up to the closing quote is the word's); other
/// words as they are. Words that hold a quote, a backslash, a tab or any control byte
/// never get here (`text`).
fn quoted(word: &str) -> String {
    if word.contains(' ') {
        format!("\"{word}\"")
    } else {
        word.to_string()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Append,
    Insert,
    Delete,
    NewChain,
    DeleteChain,
    Flush,
}

#[derive(Default)]
struct Walk<'a> {
    table: Option<&'a str>,
    wait: bool,
    command: Option<Command>,
    /// The words of the line, in the caller's order, without `-t`/`-w` and their values.
    out: Vec<&'a str>,
    /// A `!` waits for the option it inverts.
    invert_pending: bool,
    spec_options: usize,
    /// `-p`'s value when not inverted: the match iptables loads for an option no loaded
    /// extension knows (command_default, load_proto, xshared.c).
    protocol: Option<&'a str>,
    protocol_given: bool,
    target: bool,
    /// Matches and the target, in load order: getopt gives an option to the first
    /// extension in that order that has it (xtables_merge_options appends).
    loaded: Vec<&'static Ext>,
}

impl<'a> Walk<'a> {
    /// Take `word` (and the values it consumes from `after`); what remains, or None.
    fn step(&mut self, word: &'a str, after: &'a [&'a str]) -> Option<&'a [&'a str]> {
        if word == "!" {
            // do_parse: "!" as a non-option inverts the next option; two in a row fail.
            if self.invert_pending {
                return None;
            }
            self.invert_pending = true;
            self.out.push(word);
            return Some(after);
        }
        let invert = std::mem::take(&mut self.invert_pending);
        match word {
            "-t" | "--table" => {
                // Moved to `*table`: a restore line may not carry -t (do_parse, "The -t
                // option cannot be used in ..."). Only the first given counts as
                // a command, so a second is refused.
                let (&table, after) = after.split_first()?;
                if invert || self.table.is_some() || !TABLES.contains(&table) {
                    return None;
                }
                self.table = Some(table);
                Some(after)
            }
            "-w" | "--wait" => {
                // Dropped: the batch holds the lock. parse_wait_time (xshared.c) takes
                // the next word as its value unless it starts with '-' or '!'
                // (xs_has_arg); a restore line refuses -w ("You cannot use `-w' from
                // iptables-restore").
                if invert || self.wait {
                    return None;
                }
                self.wait = true;
                match after.split_first() {
                    Some((&seconds, rest)) if has_arg(seconds) => {
                        if seconds.len() > 6 || !seconds.bytes().all(|b| b.is_ascii_digit()) {
                            return None;
                        }
                        Some(rest)
                    }
                    _ => Some(after),
                }
            }
            _ => {
                if let Some(command) = command_of(word) {
                    return self.command(command, word, invert, after);
                }
                if let Some(option) = base_option(word) {
                    return self.base(option, word, invert, after);
                }
                if let Some(name) = word.strip_prefix("--") {
                    return self.extension_option(name, word, invert, after);
                }
                None
            }
        }
    }

    fn command(
        &mut self,
        command: Command,
        word: &'a str,
        invert: bool,
        after: &'a [&'a str],
    ) -> Option<&'a [&'a str]> {
        if invert || self.command.is_some() {
            return None;
        }
        self.command = Some(command);
        // Every command here is given its chain as the next word; -X and -F take it only
        // if it does not start with '-' or '!' (xs_has_arg), which `chain` refuses too.
        let (&chain, mut after) = after.split_first()?;
        if !is_chain(chain) {
            return None;
        }
        self.out.extend([word, chain]);
        match (command, after.first()) {
            // -I takes a rule number if the next word does not start with '-' or '!';
            // only 1, the default, is admitted: where a number points is the table's
            // state, which the batch changes (earlier lines may insert or delete).
            (Command::Insert, Some(&number)) if has_arg(number) => {
                if number != "1" {
                    return None;
                }
                self.out.push(number);
                after = &after[1..];
            }
            // -D CHAIN N deletes by number: refused for the same reason.
            (Command::Delete, Some(&number)) if has_arg(number) => return None,
            _ => {}
        }
        Some(after)
    }

    fn base(
        &mut self,
        option: Base,
        word: &'a str,
        invert: bool,
        after: &'a [&'a str],
    ) -> Option<&'a [&'a str]> {
        let (&value, after) = after.split_first()?;
        let valid = match option {
            Base::Source | Base::Destination => is_address(value),
            Base::Protocol => is_protocol(value),
            Base::InInterface | Base::OutInterface => is_interface(value),
            Base::Match => {
                if invert {
                    return None;
                }
                let ext = MATCHES.iter().find(|m| m.name == value)?;
                self.load(ext)?;
                true
            }
            Base::Jump | Base::Goto => {
                if invert || self.target {
                    return None;
                }
                self.target = true;
                match (option, TARGETS.iter().find(|t| t.name == value)) {
                    (Base::Jump, Some(ext)) => self.load(ext).is_some(),
                    _ => is_chain(value),
                }
            }
        };
        if !valid {
            return None;
        }
        if option == Base::Protocol {
            if self.protocol_given {
                return None;
            }
            self.protocol_given = true;
            self.protocol = (!invert).then_some(value);
        }
        self.spec_options += 1;
        self.out.push(word);
        self.out.push(value);
        Some(after)
    }

    fn extension_option(
        &mut self,
        name: &str,
        word: &'a str,
        invert: bool,
        after: &'a [&'a str],
    ) -> Option<&'a [&'a str]> {
        let owners: Vec<&'static Ext> = self
            .loaded
            .iter()
            .copied()
            .filter(|e| e.option(name).is_some())
            .collect();
        let ext = match owners.as_slice() {
            [one] => *one,
            [] => self.implicit_protocol_match(name)?,
            // Two loaded extensions with this option: getopt's choice is the first.
            _ => return None,
        };
        let option = ext.option(name)?;
        if invert && !option.invertible {
            return None;
        }
        self.out.push(word);
        let mut after = after;
        for value in option.values {
            let (&word, rest) = after.split_first()?;
            if !value.admits(word) {
                return None;
            }
            self.out.push(word);
            after = rest;
        }
        self.spec_options += 1;
        Some(after)
    }

    /// `-p tcp --dport 22`: no loaded extension knows --dport, so getopt answers '?' and
    /// command_default (xshared.c) loads the protocol's match and reads the option again.
    /// Only when getopt cannot have matched the name as an abbreviation of an option
    /// already loaded (glibc accepts any unique prefix).
    fn implicit_protocol_match(&mut self, name: &str) -> Option<&'static Ext> {
        let protocol = self.protocol?;
        let ext = IMPLICIT.iter().find(|e| e.name == protocol)?;
        ext.option(name)?;
        let prefix_of_loaded = self
            .loaded
            .iter()
            .flat_map(|e| e.options)
            .any(|o| o.name.starts_with(name));
        let prefix_of_base = BASE_LONG_NAMES.iter().any(|n| n.starts_with(name));
        if prefix_of_loaded || prefix_of_base {
            return None;
        }
        self.load(ext)
    }

    /// Load an extension once; a second copy of one is refused (its options would go to
    /// the first, and iptables marks the first completed: xtables_find_match).
    fn load(&mut self, ext: &'static Ext) -> Option<&'static Ext> {
        if self.loaded.iter().any(|e| e.name == ext.name) {
            return None;
        }
        self.loaded.push(ext);
        Some(ext)
    }
}

/// xs_has_arg (xshared.c): the next word is an option's optional value unless it starts
/// with '-' or '!'.
fn has_arg(word: &str) -> bool {
    !word.starts_with('-') && !word.starts_with('!')
}

const TABLES: &[&str] = &["filter", "nat", "mangle", "raw"];

fn command_of(word: &str) -> Option<Command> {
    Some(match word {
        "-A" | "--append" => Command::Append,
        "-I" | "--insert" => Command::Insert,
        "-D" | "--delete" => Command::Delete,
        "-N" | "--new-chain" => Command::NewChain,
        "-X" | "--delete-chain" => Command::DeleteChain,
        "-F" | "--flush" => Command::Flush,
        _ => return None,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    Source,
    Destination,
    Protocol,
    InInterface,
    OutInterface,
    Match,
    Jump,
    Goto,
}

/// The rule options of iptables' own table (original_opts, iptables.c, ip6tables.c and
/// xtables.c, 1.8.9; `--src`/`--dst` are listed synonyms, not abbreviations).
fn base_option(word: &str) -> Option<Base> {
    Some(match word {
        "-s" | "--source" | "--src" => Base::Source,
        "-d" | "--destination" | "--dst" => Base::Destination,
        "-p" | "--protocol" => Base::Protocol,
        "-i" | "--in-interface" => Base::InInterface,
        "-o" | "--out-interface" => Base::OutInterface,
        "-m" | "--match" => Base::Match,
        "-j" | "--jump" => Base::Jump,
        "-g" | "--goto" => Base::Goto,
        _ => return None,
    })
}

/// Every long name of original_opts (1.8.9): getopt finds these before any extension's.
const BASE_LONG_NAMES: &[&str] = &[
    "append",
    "delete",
    "check",
    "insert",
    "replace",
    "list",
    "list-rules",
    "flush",
    "zero",
    "new-chain",
    "delete-chain",
    "rename-chain",
    "policy",
    "source",
    "destination",
    "src",
    "dst",
    "protocol",
    "in-interface",
    "jump",
    "table",
    "match",
    "numeric",
    "out-interface",
    "verbose",
    "wait",
    "wait-interval",
    "exact",
    "fragments",
    "version",
    "help",
    "line-numbers",
    "modprobe",
    "set-counters",
    "goto",
    "ipv4",
    "ipv6",
];

/// What a value word may be. Each kind is what its parser takes without a word on
/// stderr; numeric forms only where a name would be looked up (DNS for addresses).
#[derive(Debug, Clone, Copy)]
enum Value {
    /// ports: a port or `a:b`; a service name is read from /etc/services alike in both.
    Port,
    /// multiport: comma-separated ports and ranges.
    PortList,
    /// A comma-separated list of these words.
    ListOf(&'static [&'static str]),
    OneOf(&'static [&'static str]),
    /// Free text of at most this many bytes (spaces allowed: the line quotes it).
    Text(usize),
    SetName,
    /// `--to-destination`/`--to-source`: an address with an optional port or range.
    NatAddress,
}

impl Value {
    fn admits(self, word: &str) -> bool {
        match self {
            Value::Port => is_port_or_range(word),
            Value::PortList => {
                let items: Vec<&str> = word.split(',').collect();
                items.len() <= 15 && items.iter().all(|p| is_port_or_range(p))
            }
            Value::ListOf(names) => {
                word.split(',').count() <= names.len()
                    && word.split(',').all(|item| names.contains(&item))
            }
            Value::OneOf(names) => names.contains(&word),
            Value::Text(max) => is_text(word, max),
            Value::SetName => {
                // IPSET_MAXNAMELEN is 32 with its NUL.
                word.len() <= 31 && is_name(word)
            }
            Value::NatAddress => is_nat_address(word),
        }
    }
}

#[derive(Debug)]
struct Opt {
    name: &'static str,
    values: &'static [Value],
    invertible: bool,
}

const fn opt(name: &'static str, values: &'static [Value], invertible: bool) -> Opt {
    Opt {
        name,
        values,
        invertible,
    }
}

#[derive(Debug)]
struct Ext {
    name: &'static str,
    options: &'static [Opt],
}

impl Ext {
    fn option(&self, name: &str) -> Option<&'static Opt> {
        self.options.iter().find(|o| o.name == name)
    }
}

const PORT: &[Value] = &[Value::Port];
const PORTS: &[Value] = &[Value::PortList];
const CTSTATES: &[&str] = &[
    "INVALID",
    "NEW",
    "ESTABLISHED",
    "RELATED",
    "UNTRACKED",
    "SNAT",
    "DNAT",
];
const STATES: &[&str] = &["INVALID", "NEW", "ESTABLISHED", "RELATED", "UNTRACKED"];
const ADDRTYPES: &[&str] = &[
    "UNSPEC",
    "UNICAST",
    "LOCAL",
    "BROADCAST",
    "ANYCAST",
    "MULTICAST",
    "BLACKHOLE",
    "UNREACHABLE",
    "PROHIBIT",
    "THROW",
    "NAT",
    "XRESOLVE",
];
const ICMP_TYPES: &[&str] = &[
    "echo-request",
    "echo-reply",
    "destination-unreachable",
    "time-exceeded",
];
const ICMPV6_TYPES: &[&str] = &[
    "echo-request",
    "echo-reply",
    "destination-unreachable",
    "packet-too-big",
    "time-exceeded",
    "neighbour-solicitation",
    "neighbour-advertisement",
];
/// libipt_REJECT.c and libip6t_REJECT.c (1.8.9): the canonical names. Not
/// `echo-reply` ("--reject-with echo-reply no longer supported", on stderr).
const REJECT_WITH: &[&str] = &[
    "icmp-net-unreachable",
    "icmp-host-unreachable",
    "icmp-proto-unreachable",
    "icmp-port-unreachable",
    "icmp-net-prohibited",
    "icmp-host-prohibited",
    "icmp-admin-prohibited",
    "icmp6-no-route",
    "icmp6-adm-prohibited",
    "icmp6-addr-unreachable",
    "icmp6-port-unreachable",
    "tcp-reset",
];

const TCP_UDP_OPTIONS: &[Opt] = &[
    opt("sport", PORT, true),
    opt("source-port", PORT, true),
    opt("dport", PORT, true),
    opt("destination-port", PORT, true),
];

/// The matches admitted, with the options of each that are (libxt_*.c, 1.8.9). Not
/// `set`'s `--set` ("--set option deprecated, please use --match-set").
const MATCHES: &[Ext] = &[
    Ext {
        name: "tcp",
        options: TCP_UDP_OPTIONS,
    },
    Ext {
        name: "udp",
        options: TCP_UDP_OPTIONS,
    },
    Ext {
        name: "multiport",
        options: &[
            opt("sports", PORTS, true),
            opt("source-ports", PORTS, true),
            opt("dports", PORTS, true),
            opt("destination-ports", PORTS, true),
            opt("ports", PORTS, true),
        ],
    },
    Ext {
        name: "conntrack",
        options: &[opt("ctstate", &[Value::ListOf(CTSTATES)], true)],
    },
    Ext {
        name: "state",
        options: &[opt("state", &[Value::ListOf(STATES)], true)],
    },
    Ext {
        name: "comment",
        // XT_MAX_COMMENT_LEN is 256 with its NUL.
        options: &[opt("comment", &[Value::Text(255)], false)],
    },
    Ext {
        name: "set",
        // --match-set NAME FLAGS: the flags word is taken by the extension itself
        // (argv[optind++], libxt_set.c).
        options: &[opt(
            "match-set",
            &[Value::SetName, Value::OneOf(&["src", "dst"])],
            true,
        )],
    },
    Ext {
        name: "addrtype",
        options: &[
            opt("src-type", &[Value::ListOf(ADDRTYPES)], true),
            opt("dst-type", &[Value::ListOf(ADDRTYPES)], true),
        ],
    },
    Ext {
        name: "icmp",
        options: &[opt("icmp-type", &[Value::OneOf(ICMP_TYPES)], true)],
    },
    Ext {
        name: "icmp6",
        options: &[opt("icmpv6-type", &[Value::OneOf(ICMPV6_TYPES)], true)],
    },
];

/// The protocol matches `-p` loads on demand that are admitted here.
const IMPLICIT: &[Ext] = &[
    Ext {
        name: "tcp",
        options: TCP_UDP_OPTIONS,
    },
    Ext {
        name: "udp",
        options: TCP_UDP_OPTIONS,
    },
];

const TARGETS: &[Ext] = &[
    Ext {
        name: "ACCEPT",
        options: &[],
    },
    Ext {
        name: "DROP",
        options: &[],
    },
    Ext {
        name: "RETURN",
        options: &[],
    },
    Ext {
        name: "REJECT",
        options: &[opt("reject-with", &[Value::OneOf(REJECT_WITH)], false)],
    },
    Ext {
        name: "MASQUERADE",
        options: &[],
    },
    Ext {
        name: "DNAT",
        options: &[opt("to-destination", &[Value::NatAddress], false)],
    },
    Ext {
        name: "SNAT",
        options: &[opt("to-source", &[Value::NatAddress], false)],
    },
    Ext {
        name: "LOG",
        // LOG's prefix is at most 29 bytes (char prefix[30], xt_LOG.h).
        options: &[opt("log-prefix", &[Value::Text(29)], false)],
    },
];

/// Target names iptables 1.8.9 finds as extensions (the libxt_/libipt_/libip6t_ files
/// Debian 12 ships, the verdicts, and the names iptables keeps for itself): `-j NAME` or
/// `-N NAME` means a chain only when NAME is none of them (command_jump, xshared.c:
/// xtables_find_target tries the extension first).
const TARGET_NAMES: &[&str] = &[
    "ACCEPT",
    "DROP",
    "QUEUE",
    "RETURN",
    "CONTINUE",
    "ERROR",
    "standard",
    "AUDIT",
    "CHECKSUM",
    "CLASSIFY",
    "CLUSTERIP",
    "CONNMARK",
    "CONNSECMARK",
    "CT",
    "DNAT",
    "DNPT",
    "DSCP",
    "ECN",
    "HL",
    "HMARK",
    "IDLETIMER",
    "LED",
    "LOG",
    "MARK",
    "MASQUERADE",
    "MIRROR",
    "NAT",
    "NETMAP",
    "NFLOG",
    "NFQUEUE",
    "NOTRACK",
    "RATEEST",
    "REDIRECT",
    "REJECT",
    "SAME",
    "SECMARK",
    "SET",
    "SNAT",
    "SNPT",
    "SYNPROXY",
    "TCPMSS",
    "TCPOPTSTRIP",
    "TEE",
    "TOS",
    "TPROXY",
    "TRACE",
    "TTL",
    "ULOG",
];

/// Letters, digits, '_', '.', '-' and ':' (the last only where `name` allows it),
/// starting with a letter or digit: no word the tokenizer or getopt could read apart.
fn is_name(word: &str) -> bool {
    let mut bytes = word.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A chain: under XT_EXTENSION_MAXNAMELEN (29) bytes (assert_valid_chain_name,
/// xshared.c), a plain name, and not a target extension's name.
fn is_chain(word: &str) -> bool {
    word.len() < 29 && is_name(word) && !TARGET_NAMES.contains(&word)
}

/// An interface: under IFNAMSIZ (16) bytes, a plain name with an optional trailing '+'
/// (a wildcard). parse_interface (xshared.c) warns about '/' and ' '.
fn is_interface(word: &str) -> bool {
    let name = word.strip_suffix('+').unwrap_or(word);
    word.len() < 16 && is_name(name)
}

/// Numeric addresses only: a name would be resolved (DNS), and could give several.
/// IPv4 as std parses it (four decimal parts, no leading zeros: inet_aton would read
/// those as octal) with a prefix length or a dotted mask; IPv6 with a prefix length;
/// and docker's `0/0`.
fn is_address(word: &str) -> bool {
    use std::net::{Ipv4Addr, Ipv6Addr};
    if word == "0/0" {
        return true;
    }
    let (address, mask) = match word.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (word, None),
    };
    let prefix = |max: u32| mask.is_none_or(|m| is_number(m, max));
    if address.parse::<Ipv4Addr>().is_ok() {
        return prefix(32) || mask.is_some_and(|m| m.parse::<Ipv4Addr>().is_ok());
    }
    address.parse::<Ipv6Addr>().is_ok() && prefix(128)
}

fn is_protocol(word: &str) -> bool {
    const NAMES: &[&str] = &["tcp", "udp", "icmp", "icmpv6", "ipv6-icmp", "all"];
    NAMES.contains(&word) || is_number(word, 255)
}

/// A decimal number up to `max`, no sign, no leading zero (strtoul would read it as
/// the same number, but `0x` forms would not be).
fn is_number(word: &str, max: u32) -> bool {
    !word.is_empty()
        && word.len() <= 5
        && word.bytes().all(|b| b.is_ascii_digit())
        && (word == "0" || !word.starts_with('0'))
        && word.parse::<u32>().is_ok_and(|n| n <= max)
}

/// A port (number or service name) or a range `a:b` of them.
fn is_port_or_range(word: &str) -> bool {
    let port = |p: &str| {
        is_number(p, 65535)
            || (p.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
                && p.len() <= 32
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
    };
    match word.split_once(':') {
        Some((from, to)) => port(from) && port(to),
        None => port(word),
    }
}

/// `--to-destination`/`--to-source` (libxt_DNAT.c): `a.b.c.d[:port[-port]]`,
/// `[v6][:port[-port]]` or a bare v6 address; numeric only.
fn is_nat_address(word: &str) -> bool {
    use std::net::{Ipv4Addr, Ipv6Addr};
    let ports = |p: Option<&str>| {
        p.is_none_or(|p| match p.split_once('-') {
            Some((a, b)) => is_number(a, 65535) && is_number(b, 65535),
            None => is_number(p, 65535),
        })
    };
    if let Some(bracketed) = word.strip_prefix('[') {
        let Some((address, tail)) = bracketed.split_once(']') else {
            return false;
        };
        let port = match tail {
            "" => None,
            _ => match tail.strip_prefix(':') {
                Some(p) => Some(p),
                None => return false,
            },
        };
        return address.parse::<Ipv6Addr>().is_ok() && ports(port);
    }
    if word.parse::<Ipv6Addr>().is_ok() {
        return true;
    }
    let (address, port) = match word.split_once(':') {
        Some((a, p)) => (a, Some(p)),
        None => (word, None),
    };
    address.parse::<Ipv4Addr>().is_ok() && ports(port)
}

/// Free text the restore tokenizer carries unchanged: printable ASCII and spaces, no
/// double quote (it opens or closes a quoted word), no backslash (an escape inside
/// one), no single quote (kept out to be safe). Not starting with '-' or '!' either:
/// getopt takes such a word as the option's value all the same, but no caller needs
/// one, and refusing them keeps every word the walk takes for a value one that no
/// reader (xs_has_arg included) could take for an option or an inversion.
fn is_text(word: &str, max: usize) -> bool {
    word.len() <= max
        && has_arg(word)
        && word
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && !matches!(b, b'"' | b'\'' | b'\\'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(args: &str) -> Option<BatchLine> {
        let words: Vec<OsString> = shlex::split(args)
            .unwrap()
            .into_iter()
            .map(OsString::from)
            .collect();
        batch_line(&words)
    }

    fn admitted(table: &str, line: &str) -> Option<BatchLine> {
        Some(BatchLine {
            table: table.into(),
            line: line.into(),
        })
    }

    #[test]
    fn admitted_shapes() {
        let cases = [
            // fail2ban 1.0 (action.d/iptables*.conf), with <lockingopt> = -w.
            ("-w -N f2b-sshd", "filter", "-N f2b-sshd"),
            (
                "-w -A f2b-sshd -j RETURN",
                "filter",
                "-A f2b-sshd -j RETURN",
            ),
            (
                "-w -I INPUT -p tcp -m multiport --dports ssh -j f2b-sshd",
                "filter",
                "-I INPUT -p tcp -m multiport --dports ssh -j f2b-sshd",
            ),
            (
                "-w -I f2b-sshd 1 -s 192.0.2.7 -j REJECT --reject-with icmp-port-unreachable",
                "filter",
                "-I f2b-sshd 1 -s 192.0.2.7 -j REJECT --reject-with icmp-port-unreachable",
            ),
            (
                "-w -D f2b-sshd -s 192.0.2.7 -j REJECT --reject-with icmp-port-unreachable",
                "filter",
                "-D f2b-sshd -s 192.0.2.7 -j REJECT --reject-with icmp-port-unreachable",
            ),
            (
                "-w -D INPUT -p tcp -m multiport --dports 22,2222 -j f2b-sshd",
                "filter",
                "-D INPUT -p tcp -m multiport --dports 22,2222 -j f2b-sshd",
            ),
            ("-w -F f2b-sshd", "filter", "-F f2b-sshd"),
            ("-w -X f2b-sshd", "filter", "-X f2b-sshd"),
            (
                "-w 5 -I INPUT -p tcp -m multiport --dports 80,443 -m set --match-set f2b-web src -j DROP",
                "filter",
                "-I INPUT -p tcp -m multiport --dports 80,443 -m set --match-set f2b-web src -j DROP",
            ),
            (
                "-I f2b-sshd -s 2001:db8::7 -j REJECT --reject-with icmp6-port-unreachable",
                "filter",
                "-I f2b-sshd -s 2001:db8::7 -j REJECT --reject-with icmp6-port-unreachable",
            ),
            // docker 20.10.
            ("--wait -t nat -N DOCKER", "nat", "-N DOCKER"),
            (
                "--wait -t nat -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
                "nat",
                "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
            ),
            (
                "--wait -t nat -A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER ! --dst 127.0.0.0/8",
                "nat",
                "-A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER ! --dst 127.0.0.0/8",
            ),
            (
                "--wait -t nat -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
                "nat",
                "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
            ),
            (
                "--wait -t nat -A DOCKER -p tcp -d 0/0 --dport 8080 -j DNAT --to-destination 172.17.0.2:80 ! -i docker0",
                "nat",
                "-A DOCKER -p tcp -d 0/0 --dport 8080 -j DNAT --to-destination 172.17.0.2:80 ! -i docker0",
            ),
            (
                "--wait -I FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
                "filter",
                "-I FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            ),
            (
                "--wait -A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT",
                "filter",
                "-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT",
            ),
            (
                "--wait -t nat -A POSTROUTING -p tcp -s 172.17.0.2/32 -d 172.17.0.2/32 --dport 80 -j MASQUERADE",
                "nat",
                "-A POSTROUTING -p tcp -s 172.17.0.2/32 -d 172.17.0.2/32 --dport 80 -j MASQUERADE",
            ),
            // -t anywhere, long names, a quoted comment, -w's value after the command.
            (
                "--append INPUT --table filter --protocol udp --source 10.0.0.0/255.0.0.0 --jump ACCEPT",
                "filter",
                "--append INPUT --protocol udp --source 10.0.0.0/255.0.0.0 --jump ACCEPT",
            ),
            (
                "-A INPUT -m comment --comment 'web server' -j ACCEPT -w 3",
                "filter",
                "-A INPUT -m comment --comment \"web server\" -j ACCEPT",
            ),
            (
                "-t raw -A PREROUTING -p udp ! --sport 53 -j RETURN",
                "raw",
                "-A PREROUTING -p udp ! --sport 53 -j RETURN",
            ),
            (
                "-A INPUT -p udp -j LOG --log-prefix 'dns: '",
                "filter",
                "-A INPUT -p udp -j LOG --log-prefix \"dns: \"",
            ),
            (
                "-t nat -A POSTROUTING -o eth+ -j SNAT --to-source [2001:db8::1]:1000-2000",
                "nat",
                "-A POSTROUTING -o eth+ -j SNAT --to-source [2001:db8::1]:1000-2000",
            ),
            (
                "-A INPUT -p icmp -m icmp ! --icmp-type echo-request -g f2b-sshd",
                "filter",
                "-A INPUT -p icmp -m icmp ! --icmp-type echo-request -g f2b-sshd",
            ),
            // An extension option after another match still goes to its only owner.
            (
                "-A INPUT -p tcp -m tcp -m comment --comment x --dport 22 -j DROP",
                "filter",
                "-A INPUT -p tcp -m tcp -m comment --comment x --dport 22 -j DROP",
            ),
        ];
        for (args, table, want) in cases {
            assert_eq!(line(args), admitted(table, want), "{args}");
        }
    }

    #[test]
    fn refused_shapes() {
        let cases = [
            // No command, two commands, commands not admitted.
            "-w",
            "-s 192.0.2.1 -j DROP",
            "-A INPUT -j ACCEPT -A INPUT -j DROP",
            "-C INPUT -j ACCEPT",
            "-L",
            "-S",
            "-Z",
            "-P INPUT DROP",
            "-E a b",
            "-R INPUT 1 -j ACCEPT",
            "--check INPUT -j ACCEPT",
            // Abbreviations, bundles, attached values, '=' forms.
            "--app INPUT -j ACCEPT",
            "--append INPUT --jum ACCEPT",
            "-A INPUT -p tcp --dpor 22 -j ACCEPT",
            "-nA INPUT -j ACCEPT",
            "-wA INPUT -j ACCEPT",
            "-AINPUT -j ACCEPT",
            "--append=INPUT -j ACCEPT",
            "-w5 -A INPUT -j ACCEPT",
            "--wait=5 -A INPUT -j ACCEPT",
            "-tnat -A POSTROUTING -j MASQUERADE",
            // Options not admitted.
            "-W -w -A INPUT -j ACCEPT",
            "-w -W 100000 -A INPUT -j ACCEPT",
            "--wait-interval 1 -w -A INPUT -j ACCEPT",
            "-v -A INPUT -j ACCEPT",
            "-n -A INPUT -j ACCEPT",
            "-x -A INPUT -j ACCEPT",
            "--line-numbers -A INPUT -j ACCEPT",
            "-c 1 2 -A INPUT -j ACCEPT",
            "--set-counters 1 2 -A INPUT -j ACCEPT",
            "-4 -A INPUT -j ACCEPT",
            "-f -A INPUT -j ACCEPT",
            "-M /bin/true -A INPUT -j ACCEPT",
            "-A INPUT -j ACCEPT --",
            "-A INPUT -j ACCEPT -h",
            // Rule numbers, missing chains, missing rule specs.
            "-I INPUT 2 -j ACCEPT",
            "-I INPUT 01 -j ACCEPT",
            "-D INPUT 3",
            "-D INPUT 1 -j ACCEPT",
            "-D INPUT 1:2",
            "-X",
            "-F",
            "-X -w",
            "-F -t nat",
            "-A INPUT",
            "-D INPUT",
            "-D INPUT -s 192.0.2.1",
            "-N f2b-x -j ACCEPT",
            "-F INPUT -s 192.0.2.1",
            "-A",
            // Tables and waits.
            "-t security -A INPUT -j ACCEPT",
            "-t nat -t nat -A POSTROUTING -j MASQUERADE",
            "-t bogus -A INPUT -j ACCEPT",
            "-t",
            "-w -w -A INPUT -j ACCEPT",
            "-w abc -A INPUT -j ACCEPT",
            "-w INPUT -A INPUT -j ACCEPT",
            "! -t nat -A POSTROUTING -j MASQUERADE",
            // Matches, targets, values not known.
            "-A INPUT -m recent --set -j DROP",
            "-A INPUT -m limit --limit 1/s -j ACCEPT",
            "-A INPUT -m TCP --dport 22 -j ACCEPT",
            "-A INPUT -m set --set f2b-x src -j DROP",
            "-A INPUT -m set --match-set f2b-x -j DROP",
            "-A INPUT -m set --match-set f2b-x src,dst -j DROP",
            "-A INPUT -m comment --comment x -m comment --comment y -j DROP",
            "-A INPUT -p tcp -m tcp -m tcp --dport 22 -j ACCEPT",
            "-A INPUT -p tcp --dport 22 -m tcp -j ACCEPT",
            "-A INPUT -j MARK --set-mark 1",
            "-A INPUT -j CT --notrack",
            "-A INPUT -j NFLOG",
            "-A INPUT -j REJECT --reject-with echo-reply",
            "-A INPUT -j REJECT --reject-with icmp6-not-neighbor",
            "-A INPUT -j LOG --log-level 4",
            "-A INPUT -j LOG --log-prefix 012345678901234567890123456789",
            "-A INPUT -j ACCEPT -j DROP",
            "-A INPUT -j ACCEPT -g f2b-x",
            "-A INPUT -g ACCEPT",
            "-N LOG",
            "-N CT",
            "-N -x",
            "-N !x",
            "-N a23456789012345678901234567890",
            "-A INPUT -j DOCKER --dport 22",
            // --dport without a protocol match to load, or where getopt would read it
            // as an abbreviation of a loaded --dports, or behind an inverted -p.
            "-A INPUT --dport 22 -j ACCEPT",
            "-A INPUT -p icmp --dport 22 -j ACCEPT",
            "-A INPUT -p tcp -m multiport --sports 1 --dport 22 -j ACCEPT",
            "-A INPUT ! -p tcp --dport 22 -j ACCEPT",
            "-A INPUT -p tcp -p udp -j ACCEPT",
            // Inversions where iptables takes none, or twice, or dangling.
            "-A INPUT ! ! -s 192.0.2.1 -j DROP",
            "-A INPUT -s ! 192.0.2.1 -j DROP",
            "! -A INPUT -j DROP",
            "-A INPUT ! -m tcp -j DROP",
            "-A INPUT ! -j DROP",
            "-A INPUT -m comment ! --comment x -j DROP",
            "-A INPUT -j REJECT ! --reject-with tcp-reset",
            "-A INPUT -j DROP !",
            // Addresses that would be resolved, or read other than they look.
            "-A INPUT -s example.org -j DROP",
            "-A INPUT -s 010.0.0.1 -j DROP",
            "-A INPUT -s 10.1 -j DROP",
            "-A INPUT -s 0x0a000001 -j DROP",
            "-A INPUT -s 192.0.2.1/33 -j DROP",
            "-A INPUT -s 2001:db8::1/129 -j DROP",
            "-A INPUT -s 192.0.2.1,192.0.2.2 -j DROP",
            "-A INPUT -s fe80::1%eth0 -j DROP",
            "-t nat -A DOCKER -p tcp -j DNAT --to-destination host:80",
            "-t nat -A DOCKER -p tcp -j DNAT --to-destination 172.17.0.2:http",
            "-t nat -A DOCKER -p tcp -j DNAT --to-destination [2001:db8::1]80",
            // Interfaces iptables warns about, or that are not plain names.
            "-A INPUT -i eth0/1 -j DROP",
            "-A INPUT -i 'eth 0' -j DROP",
            "-A INPUT -i a234567890123456 -j DROP",
            "-A INPUT -i + -j DROP",
            "-A INPUT -i -eth0 -j DROP",
            // Words the restore tokenizer cannot carry.
            "-A INPUT -m comment --comment 'a\"b' -j DROP",
            "-A INPUT -m comment --comment \"a'b\" -j DROP",
            "-A INPUT -m comment --comment 'a\\b' -j DROP",
            "-A INPUT -m comment --comment 'a\nb' -j DROP",
            "-A INPUT -m comment --comment 'a\tb' -j DROP",
            "-A INPUT -m comment --comment 'é' -j DROP",
            "-A INPUT -m comment --comment '' -j DROP",
            "-A INPUT -m comment --comment '!x' -j DROP",
            "-A INPUT -m comment --comment -x -j DROP",
            "-A 'f2b\"x' -j DROP",
            "-A 'a b' -j DROP",
            // Ports and lists.
            "-A INPUT -p tcp --dport 65536 -j DROP",
            "-A INPUT -p tcp --dport 0x16 -j DROP",
            "-A INPUT -p tcp --dport 22,23 -j DROP",
            "-A INPUT -p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16 -j DROP",
            "-A INPUT -m conntrack --ctstate established -j ACCEPT",
            "-A INPUT -m conntrack --ctstate NEW,BOGUS -j ACCEPT",
            "-A INPUT -m icmp6 --icmpv6-type any -j ACCEPT",
            "-A INPUT -p TCP -j ACCEPT",
        ];
        for args in cases {
            assert_eq!(line(args), None, "{args}");
        }
    }

    #[test]
    fn odd_words_are_refused() {
        let os = |w: &[u8]| {
            use std::os::unix::ffi::OsStringExt;
            OsString::from_vec(w.to_vec())
        };
        let with = |word: OsString| {
            vec![
                os(b"-A"),
                os(b"INPUT"),
                os(b"-m"),
                os(b"comment"),
                os(b"--comment"),
                word,
                os(b"-j"),
                os(b"DROP"),
            ]
        };
        assert!(batch_line(&with(os(b"fine"))).is_some());
        for bad in [&b"a\0b"[..], b"\xff", b"a\x7fb", b"a\rb", b""] {
            assert_eq!(batch_line(&with(os(bad))), None, "{bad:?}");
        }
        assert_eq!(batch_line(&with(os(&[b'x'; 256]))), None);
        assert!(batch_line(&with(os(&[b'x'; 255]))).is_some());
        assert_eq!(batch_line(&[]), None);
        let many: Vec<OsString> = ["-A", "INPUT", "-j", "DROP"]
            .into_iter()
            .map(OsString::from)
            .chain(std::iter::repeat_n(OsString::from("!"), 70))
            .collect();
        assert_eq!(batch_line(&many), None);
    }

    /// The tables the walk resolves options with hold what it assumes.
    #[test]
    fn option_tables_are_unambiguous() {
        for ext in MATCHES.iter().chain(TARGETS).chain(IMPLICIT) {
            for o in ext.options {
                // An extension's option named like one of iptables' own would never
                // reach it.
                assert!(!BASE_LONG_NAMES.contains(&o.name), "{}", o.name);
                assert!(!o.values.is_empty(), "{}", o.name);
            }
        }
        for ext in IMPLICIT {
            let listed = MATCHES.iter().find(|m| m.name == ext.name).unwrap();
            assert_eq!(ext.options.len(), listed.options.len());
        }
        for target in TARGETS {
            assert!(TARGET_NAMES.contains(&target.name), "{}", target.name);
        }
    }

    #[test]
    fn quoting_matches_the_tokenizer() {
        assert_eq!(quoted("a"), "a");
        assert_eq!(quoted("a b"), "\"a b\"");
        assert_eq!(quoted("dns: "), "\"dns: \"");
    }

    #[test]
    fn value_kinds() {
        for a in [
            "0/0",
            "192.0.2.1",
            "192.0.2.0/24",
            "10.0.0.0/255.0.0.0",
            "::/0",
            "2001:db8::1/64",
            "::ffff:192.0.2.1",
        ] {
            assert!(is_address(a), "{a}");
        }
        for a in [
            "",
            "0",
            "1.2.3",
            "1.2.3.4/",
            "1.2.3.4/-1",
            "1.2.3.4/+8",
            "1.2.3.4/08x",
            "::/",
        ] {
            assert!(!is_address(a), "{a}");
        }
        for p in [
            "22",
            "0",
            "65535",
            "ssh",
            "http-alt",
            "1024:65535",
            "ssh:http",
        ] {
            assert!(is_port_or_range(p), "{p}");
        }
        for p in ["", "022", "-1", "SSH", "1024:", ":22", "a_b", "1:2:3"] {
            assert!(!is_port_or_range(p), "{p}");
        }
        for n in [
            "1.2.3.4",
            "1.2.3.4:80",
            "1.2.3.4:80-90",
            "2001:db8::1",
            "[2001:db8::1]",
            "[::1]:80",
        ] {
            assert!(is_nat_address(n), "{n}");
        }
        for n in [
            "1.2.3.4:",
            "1.2.3.4-1.2.3.5",
            "[::1",
            "[1.2.3.4]:80",
            "1.2.3.4:80-",
        ] {
            assert!(!is_nat_address(n), "{n}");
        }
        assert!(is_chain("DOCKER-ISOLATION-STAGE-1"));
        assert!(is_chain("f2b-sshd"));
        assert!(is_chain("a234567890123456789012345678"));
        assert!(!is_chain("a2345678901234567890123456789"));
        assert!(!is_chain("DNAT"));
        assert!(!is_chain("_x"));
        assert!(is_interface("docker0"));
        assert!(is_interface("br-1234567890ab"));
        assert!(is_interface("eth+"));
        assert!(!is_interface("eth0/1"));
        assert!(!is_interface("abcdefghijklmnop"));
    }
}
