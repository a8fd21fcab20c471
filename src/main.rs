//! xtlock: serialise firewall commands behind one system-wide lock.
//! All logic lives in the library; this only turns its answer into an exit status.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(xtlock::main_with_args(std::env::args_os().collect()))
}
