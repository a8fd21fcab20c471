//! xtlock: serialise firewall commands behind one system-wide lock.
//! All logic lives in the library; this only turns its answer into an exit.
//!
//! `no_main`: std's start-up reads /proc/self/maps to place a stack guard and sets up a
//! signal stack, about 0.14 ms of every firewall call on the benchmark machine (README,
//! Performance). xtlock does the parts of it that it relies on itself
//! (`xtlock::process_setup`).

// The unit-test harness of this file brings its own main.
#![cfg_attr(not(test), no_main)]

#[cfg(not(test))]
use std::os::unix::ffi::OsStrExt;

#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(argc: libc::c_int, argv: *const *const libc::c_char) -> libc::c_int {
    xtlock::process_setup();
    // From argv itself: std's copy comes from a glibc init hook that other C
    // libraries (musl) do not call.
    let args = (0..usize::try_from(argc).unwrap_or(0))
        .map(|i| {
            // SAFETY: the C runtime passes argc valid, NUL-terminated strings in argv.
            let arg = unsafe { std::ffi::CStr::from_ptr(*argv.add(i)) };
            std::ffi::OsStr::from_bytes(arg.to_bytes()).to_os_string()
        })
        .collect();
    let exit = xtlock::main_with_args(args);
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
