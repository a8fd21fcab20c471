//! The `xtlock` name: options, then the program to run. (Under any other name xtlock is
//! a PATH shim and parses nothing; see `lib.rs`.)

use crate::call::{Call, Failure, exit};
use crate::config::Layer;
use clap::Parser;
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "xtlock",
    version,
    about = "Run iptables (and friends) under one system-wide lock, retrying only failures that committed nothing.",
    after_help = "Exit status: the program's own; 128+N if it died by signal N; \
4 if the lock could not be had; 125 xtlock's own error; 126 not executable; 127 not found.\n\
Installed as a symlink named after a program (iptables -> xtlock) earlier in PATH, \
xtlock runs the real program of that name the same way, with no options of its own.",
    override_usage = "xtlock [OPTIONS] [--] PROGRAM [ARGS]..."
)]
pub struct Cli {
    /// The lock file shared by every caller [default: /run/xtlock.lock].
    #[arg(long, value_name = "PATH")]
    pub lock_file: Option<PathBuf>,
    /// How long to wait for the lock, and for all retries, in seconds (fractions allowed) [default: 30].
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Retry a failure that committed nothing up to N times [default: 4].
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// Also log to this file (syslog is always tried).
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// The syslog socket ("" turns syslog off) [default: /dev/log].
    #[arg(long, value_name = "PATH")]
    pub syslog_socket: Option<PathBuf>,
    /// The most a *-restore may read from standard input, in bytes [default: 64 MiB].
    #[arg(long, value_name = "BYTES")]
    pub max_stdin: Option<u64>,
    /// Log every call, not only the failures.
    #[arg(short, long)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// PROGRAM [ARGS]...: run it under the lock.
    #[command(external_subcommand)]
    Run(Vec<OsString>),
}

impl Cli {
    pub fn layer(&self) -> Layer {
        Layer {
            lock_file: self.lock_file.clone(),
            timeout: self.timeout,
            retries: self.retries,
            log_file: self.log_file.clone(),
            verbose: self.verbose.then_some(true),
            syslog_socket: self.syslog_socket.clone(),
            max_stdin: self.max_stdin,
        }
    }
}

pub enum Parsed {
    Done(u8),
    Run(Cli),
}

/// Parse our own options; help and version are answers, not errors.
pub fn parse(args: Vec<OsString>) -> Result<Parsed, Failure> {
    match Cli::try_parse_from(args) {
        Ok(cli) => Ok(Parsed::Run(cli)),
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            Ok(Parsed::Done(0))
        }
        Err(e) => {
            let _ = e.print();
            Ok(Parsed::Done(exit::OWN))
        }
    }
}

pub fn to_call(program_and_args: Vec<OsString>) -> Call {
    let mut iter = program_and_args.into_iter();
    let program = iter.next().unwrap_or_default();
    Call::new(program, iter.collect())
}
