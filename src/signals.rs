//! Passing SIGTERM, SIGINT and SIGHUP on to the running child. They are caught only once
//! the lock is held: before that the default action ends xtlock at once, which is what a
//! waiter should do (nothing has run). No thread: the handler itself forwards with
//! kill(2), which is async-signal-safe.

use std::sync::atomic::{AtomicI32, Ordering};

pub const FORWARDED: [i32; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// The child's pid while it runs, else 0.
static CHILD: AtomicI32 = AtomicI32::new(0);
/// The last signal received, else 0.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

pub fn install() {
    for signal in FORWARDED {
        // SAFETY: the handler only touches atomics and calls kill(2), both
        // async-signal-safe.
        let _ = unsafe { signal_hook::low_level::register(signal, move || forward(signal)) };
    }
}

fn forward(signal: i32) {
    RECEIVED.store(signal, Ordering::SeqCst);
    let child = CHILD.load(Ordering::SeqCst);
    if child > 0 {
        unsafe { libc::kill(child, signal) };
    }
}

/// A signal that arrived since `install`, if any.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

/// Record the running child, then hand it any signal that came in just before.
pub fn child_started(pid: u32) {
    CHILD.store(pid as i32, Ordering::SeqCst);
    if let Some(signal) = received() {
        unsafe { libc::kill(pid as i32, signal) };
    }
}

/// Call after the child has exited but before it is reaped: until it is reaped its pid
/// cannot be reused, so a late forward can never hit another process.
pub fn child_exited() {
    CHILD.store(0, Ordering::SeqCst);
}
