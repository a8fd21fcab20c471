//! xtlock: serialise firewall commands behind one system-wide lock.
//! All logic lives in the library; this only turns its answer into an exit.
//!
//! `no_main`: std's start-up reads /proc/self/maps to place a stack guard and sets up a
//! signal stack, about 0.14 ms of every firewall call on the benchmark machine (README,
//! Performance). xtlock does the parts of it that it relies on itself
//! (`xtlock::process_setup`). std still collects argv through its glibc init hook.

// The unit-test harness of this file brings its own main.
#![cfg_attr(not(test), no_main)]

#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    xtlock::process_setup();
    let exit = xtlock::main_with_args(std::env::args_os().collect());
    // std flushes stdout at exit only when it ran main itself.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    match exit {
        xtlock::status::Exit::Status(code) => libc::c_int::from(code),
        xtlock::status::Exit::Signal(signal) => {
            xtlock::signals::die_by(signal);
            128 + signal // only if the signal is blocked by means we cannot undo
        }
    }
}
