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

/// An empty sigaction (plain data: all-zero is a valid value of it).
fn empty_action() -> libc::sigaction {
    // SAFETY: sigaction is a C struct of integers, pointers and a sigset_t; all zero is
    // SIG_DFL with no flags and an empty mask.
    unsafe { std::mem::zeroed() }
}

fn disposition(signal: i32) -> libc::sighandler_t {
    let mut old = empty_action();
    // SAFETY: a null new action only reads the current one into `old`, a valid struct.
    unsafe { libc::sigaction(signal, std::ptr::null(), &mut old) };
    old.sa_sigaction
}

fn set(signal: i32, handler: libc::sighandler_t) {
    let mut action = empty_action();
    action.sa_sigaction = handler;
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: `action` is a valid sigaction; `handler` is SIG_DFL, SIG_IGN or
    // `on_signal`, which is async-signal-safe.
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

/// Would a write to a reader that is gone kill the program, as the caller set it up?
/// Only if SIGPIPE is neither ignored nor blocked: blocked, it stays pending and the
/// write fails with EPIPE. (xtlock never changes its mask: it is the caller's.)
pub fn sigpipe_kills() -> bool {
    // SAFETY: sigset_t is plain data; a null new set only reads the mask into `mask`.
    let blocked = unsafe {
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask) == 0
            && libc::sigismember(&mask, libc::SIGPIPE) == 1
    };
    !was_ignored(libc::SIGPIPE) && !blocked
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
        // SAFETY: `fds` has room for the two descriptors pipe2 writes. They stay open
        // for the life of the process (the handler may write at any time), so they are
        // kept as raw numbers, not owned.
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
        // SAFETY: kill is async-signal-safe; `child` is our unreaped child (cleared
        // before it is reaped), so the pid cannot name another process.
        unsafe { libc::kill(child, signal) };
    }
    let wake = WAKE_WRITE.load(Ordering::SeqCst);
    if wake >= 0 {
        // SAFETY: write is async-signal-safe; `wake` is the open, non-blocking end of
        // the self-pipe, and the one-byte buffer is valid.
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
    // SAFETY: the kernel writes at most its struct sigaction (handler first; 32 bytes
    // on x86_64 and arm64 with an 8-byte sigset) into `old`, which has that room; a null
    // new action changes nothing.
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
    // SAFETY: sigset_t is plain data; sigemptyset makes it a valid empty set.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    for signal in 1..64 {
        if changed & bit(signal) != 0 {
            add_raw(&mut set, signal);
        }
    }
    set
}

/// Add `signal` to `set` as glibc's own __sigaddset does (sigsetops.h: bit
/// (signal - 1) % ULONG_WIDTH of unsigned long word (signal - 1) / ULONG_WIDTH), which
/// sigaddset refuses to do for glibc's internal signals.
fn add_raw(set: &mut libc::sigset_t, signal: i32) {
    const WORD_BITS: usize = libc::c_ulong::BITS as usize;
    const WORDS: usize =
        std::mem::size_of::<libc::sigset_t>() / std::mem::size_of::<libc::c_ulong>();
    let index = (signal - 1) as usize;
    // SAFETY: glibc's sigset_t is `unsigned long __val[1024 / ULONG_WIDTH]`
    // (bits/types/__sigset_t.h): viewing it as that array is its own layout, and the
    // index is bounds-checked by the array access.
    let words = unsafe { &mut *(set as *mut libc::sigset_t as *mut [libc::c_ulong; WORDS]) };
    words[index / WORD_BITS] |= 1 << (index % WORD_BITS);
}

/// Record the running program, then hand it any signal that came in just before.
pub fn child_started(pid: i32) {
    CHILD.store(pid, Ordering::SeqCst);
    if let Some(signal) = received() {
        // SAFETY: `pid` is our unreaped child.
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

/// Die by `signal` as the program did: default action, unblocked, raised. Without a
/// core dump of our own (as uutils' timeout): the program dumped its core, if any, and
/// a second one from xtlock would only hide it.
pub fn die_by(signal: i32) {
    set(signal, libc::SIG_DFL);
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `no_core` is a valid rlimit; lowering a limit needs no privilege.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };
    // SAFETY: sigset_t is plain data, made a valid set by sigemptyset; the mask change
    // and raise only affect this thread, which then dies.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_adds_match_sigaddset() {
        for signal in [1, 2, 13, 17, 31, 34, 63] {
            // SAFETY: plain data made valid by sigemptyset.
            let (mut ours, mut glibc): (libc::sigset_t, libc::sigset_t) =
                unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
            // SAFETY: valid sets.
            unsafe {
                libc::sigemptyset(&mut ours);
                libc::sigemptyset(&mut glibc);
                libc::sigaddset(&mut glibc, signal);
            }
            add_raw(&mut ours, signal);
            // SAFETY: valid sets.
            let same = (1..64)
                .all(|s| unsafe { libc::sigismember(&ours, s) == libc::sigismember(&glibc, s) });
            assert!(same, "signal {signal}");
        }
        // SAFETY: plain data made valid by sigemptyset.
        let mut internal: libc::sigset_t = unsafe { std::mem::zeroed() };
        add_raw(&mut internal, 33);
        // SAFETY: a valid set, viewed as bytes of its own size.
        let bytes: [u8; 16] =
            unsafe { std::ptr::read((&internal as *const libc::sigset_t).cast()) };
        assert_eq!(u64::from_ne_bytes(bytes[..8].try_into().unwrap()), 1 << 32);
    }
}
