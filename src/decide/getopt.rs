//! glibc's `getopt_long`, as the iptables programs see it: xtlock must read an argv the
//! way the program it stands in front of will (`--nof` is `--noflush`, `-wn` is `-w -n`,
//! options after the file name still count). A differential test holds this module and
//! glibc together (tests/cli/getopt_differential.rs).
//!
//! What is modelled (glibc posix/getopt.c, 2.36): the three orderings (permute, `+` or
//! POSIXLY_CORRECT: stop at the first non-option, `-`: non-options returned in order),
//! `--` ends the options, bundled short options, required and optional arguments, and
//! long options by exact name or by a unique prefix (several prefix matches are an
//! error unless they are the same option). Errors are `Err`: every caller treats them as
//! "the program will refuse this argv".

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HasArg {
    No,
    Required,
    Optional,
}

/// One entry of a program's `struct option` table.
#[derive(Debug, Clone, Copy)]
pub struct LongOpt {
    pub name: &'static str,
    pub has_arg: HasArg,
    pub val: u8,
}

pub const fn long(name: &'static str, has_arg: HasArg, val: u8) -> LongOpt {
    LongOpt { name, has_arg, val }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// An option: its `val` and the argument getopt gave it (`optarg`).
    Opt(u8, Option<OsString>),
    /// A non-option word returned in place (optstring starting with `-`; val 1 in C).
    Word(OsString),
}

/// getopt's own complaint: the program prints its usage and exits without acting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// A long option that no entry of the table matches (or that several match). A
    /// program that adds options at run time (iptables' extensions) may still know it.
    UnknownLong { name: OsString, attached: bool },
    /// An unknown short option, a missing argument, or an argument given to a long
    /// option that takes none.
    Usage,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ordering {
    Permute,
    RequireOrder,
    ReturnInOrder,
}

/// A parse in progress. Besides `next`, a program may take the following word itself
/// (iptables' `xs_has_arg`: `argv[optind]` when it does not start with `-` or `!`).
pub struct Parser<'a> {
    args: &'a [OsString],
    shorts: &'a [u8],
    longs: &'a [LongOpt],
    ordering: Ordering,
    /// Next element to look at.
    index: usize,
    /// Within a bundle of short options: the element and the offset of the next letter.
    bundle: Option<(usize, usize)>,
    /// Non-options skipped while permuting, in order.
    skipped: Vec<OsString>,
    done: bool,
    /// Long options by their whole name only (see `exact_long_names`).
    exact_only: bool,
}

impl<'a> Parser<'a> {
    /// `args` without argv[0]. `posixly_correct`: the POSIXLY_CORRECT variable is set.
    pub fn new(
        args: &'a [OsString],
        optstring: &'a str,
        longs: &'a [LongOpt],
        posixly_correct: bool,
    ) -> Parser<'a> {
        let bytes = optstring.as_bytes();
        let (ordering, rest) = match bytes.first() {
            Some(b'-') => (Ordering::ReturnInOrder, &bytes[1..]),
            Some(b'+') => (Ordering::RequireOrder, &bytes[1..]),
            _ if posixly_correct => (Ordering::RequireOrder, bytes),
            _ => (Ordering::Permute, bytes),
        };
        // A leading ':' only silences messages.
        let shorts = rest.strip_prefix(b":").unwrap_or(rest);
        Parser {
            args,
            shorts,
            longs,
            ordering,
            index: 0,
            bundle: None,
            skipped: Vec::new(),
            done: false,
            exact_only: false,
        }
    }

    /// Report an abbreviated long option as unknown: for a program that adds options at
    /// run time, an abbreviation of ours may be the whole name of one of its own.
    pub fn exact_long_names(mut self) -> Parser<'a> {
        self.exact_only = true;
        self
    }

    /// The next option (or in-order word); None when options are over.
    pub fn next_item(&mut self) -> Option<Result<Item, Rejected>> {
        if let Some((element, offset)) = self.bundle {
            return Some(self.short(element, offset));
        }
        if self.done {
            return None;
        }
        loop {
            let Some(arg) = self.args.get(self.index) else {
                self.done = true;
                return None;
            };
            let bytes = arg.as_bytes();
            if bytes == b"--" {
                self.index += 1;
                self.done = true;
                return None;
            }
            let is_option = bytes.len() > 1 && bytes[0] == b'-';
            if is_option {
                break;
            }
            match self.ordering {
                Ordering::Permute => {
                    self.skipped.push(arg.clone());
                    self.index += 1;
                }
                Ordering::RequireOrder => {
                    self.done = true;
                    return None;
                }
                Ordering::ReturnInOrder => {
                    self.index += 1;
                    return Some(Ok(Item::Word(arg.clone())));
                }
            }
        }
        let element = self.index;
        self.index += 1;
        let bytes = self.args[element].as_bytes();
        if let Some(long) = bytes.strip_prefix(b"--") {
            return Some(self.long(long));
        }
        Some(self.short(element, 1))
    }

    /// iptables' `xs_has_arg` + `optind++`: the next element, if it does not start with
    /// `-` or `!`, belongs to the option just returned.
    pub fn take_word_argument(&mut self) -> Option<OsString> {
        if self.bundle.is_some() {
            return None; // optind still points at the bundle: it starts with '-'
        }
        let next = self.args.get(self.index)?;
        match next.as_bytes().first() {
            Some(b'-' | b'!') => None,
            _ => {
                self.index += 1;
                Some(next.clone())
            }
        }
    }

    /// `optind++`: the next element, whatever it is (iptables' check_inverse after `!`).
    pub fn take_any_word(&mut self) -> Option<OsString> {
        let next = self.args.get(self.index)?.clone();
        self.index += 1;
        Some(next)
    }

    /// The non-option words, in getopt's final order, once `next_item` returned None.
    pub fn operands(mut self) -> Vec<OsString> {
        let rest = self.args.get(self.index..).unwrap_or_default();
        self.skipped.extend(rest.iter().cloned());
        self.skipped
    }

    fn short(&mut self, element: usize, offset: usize) -> Result<Item, Rejected> {
        let bytes = self.args[element].as_bytes();
        let letter = bytes[offset];
        let rest = &bytes[offset + 1..];
        self.bundle = (!rest.is_empty()).then_some((element, offset + 1));
        let spec = self.short_spec(letter).ok_or(Rejected::Usage)?;
        let value = |rest: &[u8]| OsStr::from_bytes(rest).to_os_string();
        match spec {
            HasArg::No => Ok(Item::Opt(letter, None)),
            HasArg::Optional => {
                self.bundle = None;
                Ok(Item::Opt(letter, (!rest.is_empty()).then(|| value(rest))))
            }
            HasArg::Required => {
                self.bundle = None;
                if !rest.is_empty() {
                    return Ok(Item::Opt(letter, Some(value(rest))));
                }
                let next = self.args.get(self.index).ok_or(Rejected::Usage)?.clone();
                self.index += 1;
                Ok(Item::Opt(letter, Some(next)))
            }
        }
    }

    fn short_spec(&self, letter: u8) -> Option<HasArg> {
        if letter == b':' {
            return None;
        }
        let at = self.shorts.iter().position(|&b| b == letter)?;
        Some(match (self.shorts.get(at + 1), self.shorts.get(at + 2)) {
            (Some(b':'), Some(b':')) => HasArg::Optional,
            (Some(b':'), _) => HasArg::Required,
            _ => HasArg::No,
        })
    }

    fn long(&mut self, text: &[u8]) -> Result<Item, Rejected> {
        let (name, attached) = match text.iter().position(|&b| b == b'=') {
            Some(eq) => (&text[..eq], Some(&text[eq + 1..])),
            None => (text, None),
        };
        let found = match self.exact_only {
            true => self.longs.iter().find(|o| o.name.as_bytes() == name),
            false => match_long(self.longs, name),
        };
        let option = found.ok_or_else(|| Rejected::UnknownLong {
            name: OsStr::from_bytes(name).to_os_string(),
            attached: attached.is_some(),
        })?;
        let attached = attached.map(|v| OsStr::from_bytes(v).to_os_string());
        match (option.has_arg, attached) {
            (HasArg::No, Some(_)) => Err(Rejected::Usage),
            (HasArg::No, None) => Ok(Item::Opt(option.val, None)),
            (_, Some(value)) => Ok(Item::Opt(option.val, Some(value))),
            (HasArg::Optional, None) => Ok(Item::Opt(option.val, None)),
            (HasArg::Required, None) => {
                let next = self.args.get(self.index).ok_or(Rejected::Usage)?.clone();
                self.index += 1;
                Ok(Item::Opt(option.val, Some(next)))
            }
        }
    }
}

/// An exact name wins; else a unique prefix; several prefixes are ambiguous unless they
/// are the same option (same has_arg and val), as glibc decides.
pub fn match_long<'a>(longs: &'a [LongOpt], name: &[u8]) -> Option<&'a LongOpt> {
    if let Some(exact) = longs.iter().find(|o| o.name.as_bytes() == name) {
        return Some(exact);
    }
    let mut found: Option<&LongOpt> = None;
    for option in longs.iter().filter(|o| o.name.as_bytes().starts_with(name)) {
        match found {
            None => found = Some(option),
            Some(first) if first.has_arg == option.has_arg && first.val == option.val => {}
            Some(_) => return None,
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONGS: &[LongOpt] = &[
        long("noflush", HasArg::No, b'n'),
        long("table", HasArg::Required, b'T'),
        long("wait", HasArg::Optional, b'w'),
        long("wait-interval", HasArg::Optional, b'W'),
    ];

    fn parse(args: &[&str], optstring: &str) -> Result<(Vec<Item>, Vec<OsString>), ()> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let mut parser = Parser::new(&args, optstring, LONGS, false);
        let mut items = Vec::new();
        while let Some(item) = parser.next_item() {
            items.push(item.map_err(|_| ())?);
        }
        Ok((items, parser.operands()))
    }

    fn opt(val: u8, arg: Option<&str>) -> Item {
        Item::Opt(val, arg.map(OsString::from))
    }

    #[test]
    fn table() {
        let ok = |items: Vec<Item>, operands: &[&str]| {
            Ok((items, operands.iter().map(OsString::from).collect()))
        };
        let cases = [
            (
                vec!["-nw", "file"],
                ok(vec![opt(b'n', None), opt(b'w', None)], &["file"]),
            ),
            (vec!["file", "-n"], ok(vec![opt(b'n', None)], &["file"])),
            (vec!["--nof"], ok(vec![opt(b'n', None)], &[])),
            (vec!["--tab", "nat"], ok(vec![opt(b'T', Some("nat"))], &[])),
            (vec!["--table=nat"], ok(vec![opt(b'T', Some("nat"))], &[])),
            (vec!["-Tnat"], ok(vec![opt(b'T', Some("nat"))], &[])),
            (vec!["-T", "-n"], ok(vec![opt(b'T', Some("-n"))], &[])),
            (vec!["--wait", "5"], ok(vec![opt(b'w', None)], &["5"])),
            (vec!["--wait=5"], ok(vec![opt(b'w', Some("5"))], &[])),
            (vec!["--wait-"], ok(vec![opt(b'W', None)], &[])),
            (vec!["a", "--", "-n", "b"], ok(vec![], &["a", "-n", "b"])),
            (vec!["-"], ok(vec![], &["-"])),
            // Errors: unknown, ambiguous, missing or unwanted argument.
            (vec!["-x"], Err(())),
            (vec!["--wa"], Err(())),
            (vec!["--bogus"], Err(())),
            (vec!["-T"], Err(())),
            (vec!["--noflush=1"], Err(())),
            (vec!["-:"], Err(())),
        ];
        for (args, want) in cases {
            assert_eq!(parse(&args, "nwWT:"), want, "{args:?}");
        }
    }

    #[test]
    fn orderings() {
        let args: Vec<OsString> = ["a", "-n"].iter().map(OsString::from).collect();
        let mut strict = Parser::new(&args, "n", LONGS, true);
        assert_eq!(strict.next_item(), None);
        assert_eq!(strict.operands(), args);
        let mut in_order = Parser::new(&args, "-n", LONGS, false);
        assert_eq!(in_order.next_item(), Some(Ok(Item::Word("a".into()))));
        assert_eq!(in_order.next_item(), Some(Ok(opt(b'n', None))));
    }

    #[test]
    fn a_program_takes_the_next_word() {
        let args: Vec<OsString> = ["-w", "5", "-w", "-n", "-wn", "x"]
            .iter()
            .map(OsString::from)
            .collect();
        let mut parser = Parser::new(&args, "nw", LONGS, false);
        assert_eq!(parser.next_item(), Some(Ok(opt(b'w', None))));
        assert_eq!(parser.take_word_argument(), Some("5".into()));
        assert_eq!(parser.next_item(), Some(Ok(opt(b'w', None))));
        assert_eq!(parser.take_word_argument(), None, "-n starts with '-'");
        assert_eq!(parser.next_item(), Some(Ok(opt(b'n', None))));
        assert_eq!(parser.next_item(), Some(Ok(opt(b'w', None))));
        assert_eq!(parser.take_word_argument(), None, "inside a bundle");
        assert_eq!(parser.next_item(), Some(Ok(opt(b'n', None))));
        assert_eq!(parser.take_word_argument(), Some("x".into()));
    }
}
