//! The one place that touches signal dispositions. xtlock keeps what its caller set up:
//! a signal the caller ignores stays ignored (for xtlock and for the program), the
//! signal mask passes to the program unchanged, and only handled signals are caught,
//! once the lock is held, to be forwarded to the program. Before that their default
//! action ends xtlock at once, which is right for a waiter: nothing has run.
//!
//! sigaction by hand, not a registry crate: xtlock must see SIG_IGN, and must give the
//! program the caller's dispositions back (posix_spawn's SETSIGDEF set, `child_defaults`).

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

/// Caught while the program runs and passed on to it.
pub const FORWARDED: [i32; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];

/// Bit n: signal n was ignored when xtlock started.
static IGNORED_AT_START: AtomicU64 = AtomicU64::new(0);
/// Bit n: xtlock changed signal n from its default (so the program gets the default).
static CHANGED_FROM_DEFAULT: AtomicU64 = AtomicU64::new(0);
/// The program's pid while it runs, else 0.
static CHILD: AtomicI32 = AtomicI32::new(0);
/// The last forwarded signal received, else 0.
static RECEIVED: AtomicI32 = AtomicI32::new(0);
/// Write end of the self-pipe that wakes a backoff sleep, or -1.
static WAKE_WRITE: AtomicI32 = AtomicI32::new(-1);
static WAKE_READ: AtomicI32 = AtomicI32::new(-1);

fn bit(signal: i32) -> u64 {
    1u64 << signal
}

fn disposition(signal: i32) -> libc::sighandler_t {
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    unsafe { libc::sigaction(signal, std::ptr::null(), &mut old) };
    old.sa_sigaction
}

fn set(signal: i32, handler: libc::sighandler_t) {
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = handler;
    action.sa_flags = libc::SA_RESTART;
    unsafe {
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signal, &action, std::ptr::null_mut());
    }
}

/// At start: remember what the caller ignored; ignore SIGPIPE (a closed pipe is an
/// error xtlock handles, not its death) and take SIGCHLD back to its default (a caller
/// that ignores it would make the kernel reap the program before xtlock can wait).
pub fn process_setup() {
    let mut ignored = 0;
    for signal in FORWARDED.into_iter().chain([libc::SIGPIPE, libc::SIGCHLD]) {
        if disposition(signal) == libc::SIG_IGN {
            ignored |= bit(signal);
        }
    }
    IGNORED_AT_START.store(ignored, Ordering::SeqCst);
    let mut internal = 0;
    for signal in GLIBC_INTERNAL {
        if kernel_disposition(signal) == Some(libc::SIG_DFL) {
            internal |= bit(signal);
        }
    }
    INTERNAL_AT_DEFAULT.store(internal, Ordering::SeqCst);
    let mut changed = 0;
    if ignored & bit(libc::SIGPIPE) == 0 {
        set(libc::SIGPIPE, libc::SIG_IGN);
        changed |= bit(libc::SIGPIPE);
    }
    if ignored & bit(libc::SIGCHLD) != 0 {
        set(libc::SIGCHLD, libc::SIG_DFL);
    }
    CHANGED_FROM_DEFAULT.fetch_or(changed, Ordering::SeqCst);
}

pub fn was_ignored(signal: i32) -> bool {
    IGNORED_AT_START.load(Ordering::SeqCst) & bit(signal) != 0
}

/// Before exec: the dispositions the caller gave us, so the program gets them as bare.
pub fn restore_for_exec() {
    if !was_ignored(libc::SIGPIPE) {
        set(libc::SIGPIPE, libc::SIG_DFL);
    }
    if was_ignored(libc::SIGCHLD) {
        set(libc::SIGCHLD, libc::SIG_IGN);
    }
}

/// Catch the forwarded signals the caller did not ignore.
pub fn install() {
    if WAKE_WRITE.load(Ordering::SeqCst) < 0 {
        let mut fds = [0; 2];
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } == 0 {
            WAKE_READ.store(fds[0], Ordering::SeqCst);
            WAKE_WRITE.store(fds[1], Ordering::SeqCst);
        }
    }
    let mut changed = 0;
    for signal in FORWARDED {
        if !was_ignored(signal) {
            set(signal, on_signal as *const () as libc::sighandler_t);
            changed |= bit(signal);
        }
    }
    CHANGED_FROM_DEFAULT.fetch_or(changed, Ordering::SeqCst);
}

/// Async-signal-safe: atomics, kill(2) and write(2) only.
extern "C" fn on_signal(signal: libc::c_int) {
    RECEIVED.store(signal, Ordering::SeqCst);
    let child = CHILD.load(Ordering::SeqCst);
    if child > 0 {
        unsafe { libc::kill(child, signal) };
    }
    let wake = WAKE_WRITE.load(Ordering::SeqCst);
    if wake >= 0 {
        unsafe { libc::write(wake, [0u8].as_ptr().cast(), 1) };
    }
}

/// A forwarded signal that arrived since `install`, if any.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

/// glibc's internal signals (SIGCANCEL, SIGSETXID). posix_spawn gives the program them
/// ignored unless they are in the SETSIGDEF set (sysdeps/unix/sysv/linux/spawni.c), and
/// glibc's sigaction and sigaddset refuse them: they are read with the raw system call
/// and set in the mask's bits directly.
const GLIBC_INTERNAL: [i32; 2] = [32, 33];
static INTERNAL_AT_DEFAULT: AtomicU64 = AtomicU64::new(0);

fn kernel_disposition(signal: i32) -> Option<usize> {
    let mut old = [0usize; 4]; // struct kernel_sigaction: handler, flags, restorer, mask
    let rc = unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            signal,
            std::ptr::null::<usize>(),
            old.as_mut_ptr(),
            8,
        )
    };
    (rc == 0).then_some(old[0])
}

/// The signals the program must get at their default: those xtlock caught or ignored
/// itself while the caller had left them at the default, and glibc's internal ones.
pub fn child_defaults() -> libc::sigset_t {
    let changed =
        CHANGED_FROM_DEFAULT.load(Ordering::SeqCst) | INTERNAL_AT_DEFAULT.load(Ordering::SeqCst);
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe { libc::sigemptyset(&mut set) };
    // Bit n-1 of the first word is signal n, as the kernel lays the set out.
    let first_word = &mut set as *mut libc::sigset_t as *mut u64;
    unsafe { *first_word |= changed >> 1 };
    set
}

/// Record the running program, then hand it any signal that came in just before.
pub fn child_started(pid: i32) {
    CHILD.store(pid, Ordering::SeqCst);
    if let Some(signal) = received() {
        unsafe { libc::kill(pid, signal) };
    }
}

/// Call after the program has exited but before it is reaped: until it is reaped its
/// pid cannot be reused, so a late forward can never hit another process.
pub fn child_exited() {
    CHILD.store(0, Ordering::SeqCst);
}

/// Sleep for `delay` unless a forwarded signal comes first; that signal if one did.
pub fn sleep_unless_signalled(delay: Duration) -> Option<i32> {
    if let Some(signal) = received() {
        return Some(signal);
    }
    let wake = WAKE_READ.load(Ordering::SeqCst);
    if wake < 0 {
        std::thread::sleep(delay);
        return received();
    }
    let deadline = std::time::Instant::now() + delay;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || received().is_some() {
            return received();
        }
        let mut fd = libc::pollfd {
            fd: wake,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut fd, 1, ms) };
    }
}

/// Die by `signal` as the program did: default action, unblocked, raised.
pub fn die_by(signal: i32) {
    set(signal, libc::SIG_DFL);
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(signal);
    }
}
