//! xtlock: run a firewall program under one system-wide lock, retrying only failures
//! that committed nothing, and passing its output and exit status through unchanged.

// Three layers; arrows only go down: the call's flow (`call`, `attempts`, `guard`'s
// user) and the admin commands use decisions and mechanisms, which use reporting.

/// Decisions: pure functions of names, argv and text, each with table tests.
pub mod decide {
    pub mod batchable;
    pub mod classify;
    pub mod commit;
    pub mod getopt;
    pub mod personality;
    pub mod restore;
    pub mod retry;
    pub mod ruleset;
    pub mod scan;
}

/// Mechanisms: what touches the OS (processes, locks, signals, /proc, the caller's stdin).
pub mod os {
    pub mod guard;
    pub mod input;
    pub mod lock;
    pub mod nesting;
    pub mod procinfo;
    pub mod procscan;
    pub mod queue;
    pub mod resolve;
    pub mod run;
    pub mod signals;
    pub mod wait;
    pub mod xtinfo;
}

/// Reporting: exit statuses, text, the log and xtlock's own output.
pub mod report {
    pub mod log;
    pub mod output;
    pub mod status;
    pub mod text;
}

/// The flow of one call, and what it is made of.
pub mod attempts;
pub mod batch;
pub mod call;
pub mod flushes;
pub mod invocation;
pub mod turn;

/// Input: options and the config file; admin commands.
pub mod admin;
pub mod cli;
pub mod config;

pub use decide::{batchable, classify, commit, getopt, personality, restore, retry, ruleset, scan};
pub use os::{
    guard, input, lock, nesting, procinfo, procscan, queue, resolve, run, signals, wait, xtinfo,
};
pub use report::{log, output, status, text};

use config::Layer;
use invocation::Call;
use personality::Personality;
use status::{Exit, Failure};
use std::ffi::OsString;

/// What std's start-up would have done that xtlock relies on (main.rs skips it), and
/// the signal dispositions it needs (`signals::process_setup`):
/// - fds 0, 1 and 2 open: if the caller closed one, /dev/null takes its place, so the
///   lock file never becomes "stderr".
pub fn process_setup() {
    signals::process_setup();
    // SAFETY: fcntl, open, dup2 and close on descriptor numbers only; nothing in this
    // process owns fds 0-2 as Rust objects yet, and `null` is ours until closed.
    unsafe {
        for fd in 0..=2 {
            if libc::fcntl(fd, libc::F_GETFD) == -1 {
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                if null != fd && null >= 0 {
                    libc::dup2(null, fd);
                    libc::close(null);
                }
            }
        }
    }
}

/// The whole program; the one place where a result becomes an exit.
pub fn main_with_args(args: Vec<OsString>) -> Exit {
    let arg0 = args.first().cloned().unwrap_or_default();
    let result = match personality::personality(&arg0) {
        Personality::Shim(_) => run_call(Call::shim(arg0, args[1..].to_vec()), Layer::default()),
        Personality::Own => run_own(args),
    };
    // Only xtlock's own commands write to stdout; a write that failed there for another
    // reason than a gone reader is a failure of the command (output::finish).
    let result = result.and_then(|exit| output::finish().map(|()| exit).map_err(Failure::Own));
    match result {
        Ok(exit) => exit,
        Err(failure) => {
            // One line, whatever a program name or a holder's command line holds.
            output::errln!("xtlock: {}", text::printable(failure.message()));
            Exit::Status(failure.exit_code())
        }
    }
}

fn run_own(args: Vec<OsString>) -> Result<Exit, Failure> {
    let cli = match cli::parse(args)? {
        cli::Parsed::Done(code) => return Ok(Exit::Status(code)),
        cli::Parsed::Run(cli) => cli,
    };
    let status = match cli.action {
        cli::Action::Run(program_and_args) => {
            return run_call(cli::to_call(program_and_args), cli.options);
        }
        cli::Action::Install(shims, divert) => {
            let diverted = divert.map_or(Ok(0), |d| admin::divert::install(&d))?;
            admin::install::install(&shims).map(|status| status.max(diverted))
        }
        cli::Action::Uninstall(shims, divert) => {
            let undiverted = divert.map_or(Ok(0), |d| admin::divert::uninstall(&d))?;
            admin::install::uninstall(&shims).map(|status| status.max(undiverted))
        }
        cli::Action::Doctor(options) => admin::doctor::doctor(&options),
        cli::Action::Stats(mut options) => {
            if options.log_file.is_none() {
                // The configured log file, if any; else journald.
                let (config, _) =
                    config::load(&config::Sources::process(), cli.options).map_err(Failure::Own)?;
                options.log_file = config.log_file;
            }
            admin::stats::stats(&options)
        }
        cli::Action::Status { json } => {
            let (config, _) =
                config::load(&config::Sources::process(), cli.options).map_err(Failure::Own)?;
            admin::status::status(&admin::status::Options {
                lock_file: config.lock_file,
                timeout: config.timeout,
                json,
            })
        }
        cli::Action::Nothing => Err(Failure::Own(
            "no program given; usage: xtlock [OPTIONS] [--] PROGRAM [ARGS]...".into(),
        )),
    };
    status.map(Exit::Status)
}

fn run_call(call: Call, options: Layer) -> Result<Exit, Failure> {
    let (config, warnings) =
        config::load(&config::Sources::process(), options).map_err(Failure::Own)?;
    let logger = log::Logger::new(
        config.journal_socket.clone(),
        config.syslog_socket.clone(),
        config.log_file.clone(),
    );
    for warning in warnings {
        logger.log(&log::Event::new(log::EventKind::Config).field("problem", warning));
    }
    call::run(&call, &config, &logger)
}
