//! The `xtlock` name: options, then the program to run. (Under any other name xtlock is
//! a PATH shim and parses nothing; see `lib.rs`.) clap's builder API, not its derive:
//! no proc macros, so the release binary can be linked statically (see README).

use crate::call::{Call, Failure, exit};
use crate::config::Layer;
use clap::{Arg, ArgAction, ArgMatches, Command, value_parser};
use std::ffi::OsString;
use std::path::PathBuf;

pub fn command() -> Command {
    let path = |name: &'static str, help: &'static str| {
        Arg::new(name)
            .long(name)
            .value_name("PATH")
            .value_parser(value_parser!(PathBuf))
            .help(help)
    };
    Command::new("xtlock")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Run iptables (and friends) under one system-wide lock, retrying only failures that committed nothing.")
        .override_usage("xtlock [OPTIONS] [--] PROGRAM [ARGS]...")
        .after_help(
            "Exit status: the program's own; 128+N if it died by signal N; 4 if the lock could not be had; \
             125 xtlock's own error; 126 not executable; 127 not found.\n\
             Installed as a symlink named after a program (iptables -> xtlock) earlier in PATH, xtlock runs \
             the real program of that name the same way, with no options of its own.",
        )
        .allow_external_subcommands(true)
        .external_subcommand_value_parser(value_parser!(OsString))
        .arg(path("lock-file", "The lock file shared by every caller [default: /run/xtlock.lock]"))
        .arg(
            Arg::new("timeout")
                .long("timeout")
                .value_name("SECS")
                .value_parser(value_parser!(f64))
                .help("How long to wait for the lock, and for all retries, in seconds (fractions allowed) [default: 30]"),
        )
        .arg(
            Arg::new("retries")
                .long("retries")
                .value_name("N")
                .value_parser(value_parser!(u32))
                .help("Retry a failure that committed nothing up to N times [default: 4]"),
        )
        .arg(path("log-file", "Also log to this file (syslog is always tried)"))
        .arg(path("syslog-socket", "The syslog socket (\"\" turns syslog off) [default: /dev/log]"))
        .arg(
            Arg::new("max-stdin")
                .long("max-stdin")
                .value_name("BYTES")
                .value_parser(value_parser!(u64))
                .help("The most a *-restore may read from standard input [default: 64 MiB]"),
        )
        .arg(
            Arg::new("verbose")
                .short('v')
                .long("verbose")
                .action(ArgAction::SetTrue)
                .help("Log every call, not only the failures"),
        )
}

pub struct Cli {
    pub options: Layer,
    /// PROGRAM and its ARGS, if given.
    pub program: Option<Vec<OsString>>,
}

fn layer(matches: &ArgMatches) -> Layer {
    Layer {
        lock_file: matches.get_one::<PathBuf>("lock-file").cloned(),
        timeout: matches.get_one::<f64>("timeout").copied(),
        retries: matches.get_one::<u32>("retries").copied(),
        log_file: matches.get_one::<PathBuf>("log-file").cloned(),
        verbose: matches.get_flag("verbose").then_some(true),
        syslog_socket: matches.get_one::<PathBuf>("syslog-socket").cloned(),
        max_stdin: matches.get_one::<u64>("max-stdin").copied(),
    }
}

pub enum Parsed {
    Done(u8),
    Run(Cli),
}

/// Parse our own options; help and version are answers, not errors.
pub fn parse(args: Vec<OsString>) -> Result<Parsed, Failure> {
    // The common case, `xtlock iptables ...`, has nothing for an option parser to do.
    if let Some(first) = args.get(1)
        && !first.as_encoded_bytes().starts_with(b"-")
    {
        return Ok(Parsed::Run(Cli {
            options: Layer::default(),
            program: Some(args[1..].to_vec()),
        }));
    }
    let matches = match command().try_get_matches_from(args) {
        Ok(matches) => matches,
        Err(e) => {
            let _ = e.print();
            return Ok(Parsed::Done(if e.use_stderr() { exit::OWN } else { 0 }));
        }
    };
    let program = match matches.subcommand() {
        Some((name, sub)) => {
            let mut argv = vec![OsString::from(name)];
            argv.extend(sub.get_many::<OsString>("").into_iter().flatten().cloned());
            Some(argv)
        }
        None => None,
    };
    Ok(Parsed::Run(Cli {
        options: layer(&matches),
        program,
    }))
}

pub fn to_call(program_and_args: Vec<OsString>) -> Call {
    let mut iter = program_and_args.into_iter();
    let program = iter.next().unwrap_or_default();
    Call::new(program, iter.collect())
}
