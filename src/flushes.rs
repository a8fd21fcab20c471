//! Who flushed what: a call that flushes (`ruleset::flush_of`) has its tables saved
//! under the lock before and after it runs, and what disappeared goes to the log in one
//! entry naming the flusher (its pid, command line and systemd unit). Only flushes pay
//! for the look: two `*-save` runs of iptables' own multi-call binary.

use crate::classify::{self, Backend, Kind};
use crate::invocation::{Call, with_caller};
use crate::log::{Event, EventKind};
use crate::ruleset::{self, Flush, Ruleset};
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

pub struct Watch<'a> {
    program: &'a Path,
    save_arg0: OsString,
    flush: Flush,
    before: Ruleset,
}

impl<'a> Watch<'a> {
    /// Save the tables a flushing call will touch; None for any other call.
    pub fn start(
        call: &Call,
        kind: &Kind,
        program: &'a Path,
        backend: Option<Backend>,
    ) -> Option<Watch<'a>> {
        backend?;
        let name = classify::dispatch_name(&call.arg0);
        let (applet, args) = classify::applet(name, &call.args);
        let flush = ruleset::flush_of(kind, args)?;
        let applet = applet.to_str()?;
        let family = applet.strip_suffix("-restore").unwrap_or(applet);
        if !family.starts_with("iptables") && !family.starts_with("ip6tables") {
            return None;
        }
        let save_arg0 = OsString::from(format!("{family}-save"));
        let mut watch = Watch {
            program,
            save_arg0,
            flush,
            before: Ruleset::new(),
        };
        watch.before = watch.save()?;
        Some(watch)
    }

    fn save(&self) -> Option<Ruleset> {
        let mut command = Command::new(self.program);
        command
            .arg0(&self.save_arg0)
            .stdin(Stdio::null())
            .stderr(Stdio::null());
        if let Some(table) = &self.flush.table {
            command.args(["-t", table]);
        }
        let out = command.output().ok()?;
        out.status
            .success()
            .then(|| ruleset::parse_save(&String::from_utf8_lossy(&out.stdout)))
    }

    /// Save again (still under the lock) and name what is gone, if anything.
    pub fn finish(self, call: &Call) -> Option<Event> {
        let after = self.save()?;
        let gone = ruleset::gone(&self.before, &after);
        if gone.is_empty() {
            return None;
        }
        let caller = std::os::unix::process::parent_id();
        let mut event = call
            .event(EventKind::Flushed)
            .field("gone", gone.join(" | "));
        if let Some(unit) = crate::procinfo::unit_of(caller) {
            event = event.field("unit", unit);
        }
        Some(with_caller(event))
    }
}
