//! The `xtlock` name: options, then the program to run. (Under any other name xtlock is
//! a PATH shim and parses nothing; see `lib.rs`.) clap's builder API, not its derive:
//! the derive would add a proc-macro crate to the build for nothing the builder cannot
//! say. (It would also not build: `.cargo/config.toml` gives the host's target
//! `+crt-static`, which cargo applies to proc macros too unless `--target` is given;
//! README, Design notes.)

use crate::config::Layer;
use crate::invocation::Call;
use crate::status::Failure;
use clap::{Arg, ArgAction, ArgMatches, Command, value_parser};
use std::ffi::OsString;
use std::path::PathBuf;

pub fn command() -> Command {
    let valued = |name: &'static str, value_name: &'static str, help: &'static str| {
        Arg::new(name).long(name).value_name(value_name).help(help)
    };
    let path = |name, help| valued(name, "PATH", help).value_parser(value_parser!(PathBuf));
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
            valued("timeout", "SECS", "How long to wait for the lock, and for all retries, in seconds (fractions allowed) [default: 30]")
                .value_parser(value_parser!(f64)),
        )
        .arg(
            valued("retries", "N", "Retry a failure that committed nothing up to N times [default: 4]")
                .value_parser(value_parser!(u32)),
        )
        .arg(path("log-file", "Also log to this file (syslog is always tried)"))
        .arg(path("syslog-socket", "The syslog socket (\"\" turns syslog off) [default: /dev/log]"))
        .arg(path("journal-socket", "journald's native socket, tried before syslog (\"\" turns it off) [default: /run/systemd/journal/socket]"))
        .arg(
            valued("max-stdin", "BYTES", "The most a *-restore may read from standard input [default: 64 MiB]")
                .value_parser(value_parser!(u64)),
        )
        .arg(
            Arg::new("verbose")
                .short('v')
                .long("verbose")
                .action(ArgAction::SetTrue)
                .help("Log every call, not only the failures"),
        )
        .subcommand(install_args(
            Command::new("install")
                .about("Link the firewall tools found on this host to xtlock in DIR (a PATH shim each)")
                .arg(flag("fail2ban", "Also write fail2ban's action.d/iptables.local to route its iptables actions")),
        ))
        .subcommand(install_args(
            Command::new("uninstall")
                .about("Remove what install made (only xtlock links, and only our fail2ban file)")
                .arg(flag("fail2ban", "Also remove the fail2ban file install wrote")),
        ))
        .subcommand(
            Command::new("doctor")
                .about("Check that firewall calls go through xtlock; one line per problem, with its fix")
                .arg(fail2ban_dir())
                .arg(root()),
        )
        .subcommand(
            Command::new("stats")
                .about("Summarise the log: events by kind, rescued retries, lock waits, slowest callers")
                .arg(
                    Arg::new("since")
                        .long("since")
                        .value_name("DURATION")
                        .value_parser(humantime::parse_duration)
                        .help("Only the last DURATION (e.g. 1h, 30min, 2days)"),
                )
                .arg(path("log-file", "Read this log file instead of the configured one or journald"))
                .arg(flag("json", "Print the summary as JSON, for scripts"))
                .arg(flag("prometheus", "Print node_exporter's textfile collector format (counters by event, lock wait and hold histograms, last error time)").conflicts_with("json")),
        )
        .subcommand(
            Command::new("status")
                .about("Who holds xtlock's lock and iptables' own, who waits, for how long; exit 1 if held past the timeout")
                .arg(flag("json", "Print it as JSON, for scripts")),
        )
}

/// Names that are xtlock's own commands; `xtlock -- NAME` runs a program of that name.
pub const ADMIN_COMMANDS: [&str; 5] = ["install", "uninstall", "doctor", "stats", "status"];
/// clap's own `help [COMMAND]`, which `--help` lists: no firewall program is named so.
const HELP_COMMAND: &str = "help";

fn flag(name: &'static str, help: &'static str) -> Arg {
    Arg::new(name)
        .long(name)
        .action(ArgAction::SetTrue)
        .help(help)
}

fn root() -> Arg {
    Arg::new("root")
        .long("root")
        .value_name("DIR")
        .value_parser(value_parser!(PathBuf))
        .default_value("/")
        .help("The file system root for --divert (dpkg-divert --root)")
}

fn fail2ban_dir() -> Arg {
    Arg::new("fail2ban-dir")
        .long("fail2ban-dir")
        .value_name("DIR")
        .value_parser(value_parser!(PathBuf))
        .default_value(crate::admin::FAIL2BAN_ACTION_DIR)
        .help("fail2ban's action.d directory")
}

fn install_args(command: Command) -> Command {
    command
        .arg(
            Arg::new("dir")
                .long("dir")
                .value_name("DIR")
                .value_parser(value_parser!(PathBuf))
                .default_value(crate::admin::DEFAULT_SHIM_DIR)
                .help("Where the links go; it must come before the real tools in PATH"),
        )
        .arg(fail2ban_dir())
        .arg(flag("dry-run", "Print what would change, change nothing"))
        .arg(flag(
            "divert",
            "Instead of PATH shims, put xtlock at /usr/sbin's package files (the -legacy/-nft tools, ipset) with dpkg-divert (for callers that use absolute paths)",
        ))
        .arg(root())
}

pub struct Cli {
    pub options: Layer,
    pub action: Action,
}

pub enum Action {
    /// PROGRAM and its ARGS.
    Run(Vec<OsString>),
    /// Shims and the fail2ban file (`install`), then the diversions (`divert`).
    Install(
        crate::admin::install::Options,
        Option<crate::admin::divert::Options>,
    ),
    Uninstall(
        crate::admin::install::Options,
        Option<crate::admin::divert::Options>,
    ),
    Doctor(crate::admin::doctor::Options),
    Stats(crate::admin::stats::Options),
    /// `xtlock status [--json]`: whether to print JSON.
    Status {
        json: bool,
    },
    Nothing,
}

fn divert_options(m: &ArgMatches) -> crate::admin::divert::Options {
    crate::admin::divert::Options {
        root: m
            .get_one::<PathBuf>("root")
            .cloned()
            .unwrap_or_else(|| "/".into()),
        dry_run: m.get_flag("dry-run"),
    }
}

/// `--divert` alone touches no shim directory; with `--dir` it does both. Every
/// option given is carried out: none is silently dropped.
fn install_options(m: &ArgMatches) -> crate::admin::install::Options {
    let dir_given = m.value_source("dir") == Some(clap::parser::ValueSource::CommandLine);
    crate::admin::install::Options {
        dir: (dir_given || !m.get_flag("divert"))
            .then(|| m.get_one::<PathBuf>("dir").cloned())
            .flatten(),
        fail2ban_dir: m.get_flag("fail2ban").then(|| {
            m.get_one::<PathBuf>("fail2ban-dir")
                .cloned()
                .unwrap_or_default()
        }),
        dry_run: m.get_flag("dry-run"),
    }
}

fn layer(matches: &ArgMatches) -> Layer {
    Layer {
        lock_file: matches.get_one::<PathBuf>("lock-file").cloned(),
        timeout: matches.get_one::<f64>("timeout").copied(),
        retries: matches.get_one::<u32>("retries").copied(),
        log_file: matches.get_one::<PathBuf>("log-file").cloned(),
        verbose: matches.get_flag("verbose").then_some(true),
        syslog_socket: matches.get_one::<PathBuf>("syslog-socket").cloned(),
        journal_socket: matches.get_one::<PathBuf>("journal-socket").cloned(),
        max_stdin: matches.get_one::<u64>("max-stdin").copied(),
        batch: None,
    }
}

pub enum Parsed {
    Done(u8),
    Run(Box<Cli>),
}

/// Parse our own options; help and version are answers, not errors.
pub fn parse(args: Vec<OsString>) -> Result<Parsed, Failure> {
    // The common case, `xtlock iptables ...`, has nothing for an option parser to do.
    if let Some(first) = args.get(1)
        && !first.as_encoded_bytes().starts_with(b"-")
        && !ADMIN_COMMANDS.iter().any(|c| first == c)
        && first != HELP_COMMAND
    {
        let action = Action::Run(args[1..].to_vec());
        return Ok(Parsed::Run(Box::new(Cli {
            options: Layer::default(),
            action,
        })));
    }
    let matches = match command().try_get_matches_from(args) {
        Ok(matches) => matches,
        Err(e) => {
            // Help and version on stdout, usage errors on stderr, as clap's print would.
            let stream = match e.use_stderr() {
                true => crate::output::Stream::Stderr,
                false => crate::output::Stream::Stdout,
            };
            crate::output::write(stream, e.render().to_string().as_bytes());
            let status = match e.use_stderr() {
                true => crate::status::OWN_FAILURE,
                false => 0,
            };
            return Ok(Parsed::Done(status));
        }
    };
    let action = match matches.subcommand() {
        Some(("install", m)) => Action::Install(
            install_options(m),
            m.get_flag("divert").then(|| divert_options(m)),
        ),
        Some(("uninstall", m)) => Action::Uninstall(
            install_options(m),
            m.get_flag("divert").then(|| divert_options(m)),
        ),
        Some(("doctor", m)) => Action::Doctor(crate::admin::doctor::Options {
            fail2ban_dir: m
                .get_one::<PathBuf>("fail2ban-dir")
                .cloned()
                .unwrap_or_default(),
            root: m
                .get_one::<PathBuf>("root")
                .cloned()
                .unwrap_or_else(|| "/".into()),
        }),
        Some(("stats", m)) => Action::Stats(crate::admin::stats::Options {
            since: m.get_one::<std::time::Duration>("since").copied(),
            log_file: m.get_one::<PathBuf>("log-file").cloned(),
            json: m.get_flag("json"),
            prometheus: m.get_flag("prometheus"),
        }),
        Some(("status", m)) => Action::Status {
            json: m.get_flag("json"),
        },
        Some((name, sub)) => {
            let mut argv = vec![OsString::from(name)];
            argv.extend(sub.get_many::<OsString>("").into_iter().flatten().cloned());
            Action::Run(argv)
        }
        None => Action::Nothing,
    };
    Ok(Parsed::Run(Box::new(Cli {
        options: layer(&matches),
        action,
    })))
}

pub fn to_call(program_and_args: Vec<OsString>) -> Call {
    let mut iter = program_and_args.into_iter();
    let program = iter.next().unwrap_or_default();
    Call::new(program, iter.collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn admin_command_names_match_the_subcommands() {
        // The fast path for `xtlock PROGRAM` checks ADMIN_COMMANDS without building clap.
        let names: Vec<String> = super::command()
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect();
        assert_eq!(names, super::ADMIN_COMMANDS);
    }

    #[test]
    fn help_is_answered_not_run() {
        // `xtlock --help` lists `help`; it must not look for a program named help.
        let help = |args: &[&str]| {
            let argv = args.iter().map(std::ffi::OsString::from).collect();
            matches!(super::parse(argv), Ok(super::Parsed::Done(0)))
        };
        assert!(help(&["xtlock", "help"]));
        assert!(help(&["xtlock", "help", "stats"]));
        assert!(help(&["xtlock", "stats", "--help"]));
        let run = super::parse(["xtlock", "iptables", "help"].map(Into::into).to_vec());
        assert!(matches!(run, Ok(super::Parsed::Run(_))));
    }
}
