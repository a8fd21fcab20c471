//! What the caller asked for: which program, by which name, with which arguments, and
//! how an event about it names the call and its caller.

use crate::log::{Event, EventKind};
use crate::resolve::Target;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

pub struct Call {
    /// The program's file name, for the PATH lookup and logs (classification goes by
    /// `classify::dispatch_name(arg0)`, what the real program dispatches on).
    pub name: OsString,
    /// argv[0] for the real program: what our caller used.
    pub arg0: OsString,
    pub target: Target,
    pub args: Vec<OsString>,
}

impl Call {
    /// A shim called as `arg0`: always looked up by its file name in PATH (skipping
    /// xtlock), even when called by a path, which would otherwise name xtlock itself.
    pub fn shim(arg0: OsString, args: Vec<OsString>) -> Call {
        let name = file_name(&arg0);
        let target = match arg0.as_encoded_bytes().contains(&b'/') {
            true => Target::CalledAs(PathBuf::from(&arg0), name.clone()),
            false => Target::Name(name.clone()),
        };
        Call {
            target,
            name,
            arg0,
            args,
        }
    }

    /// `xtlock PROGRAM ARGS...`.
    pub fn new(program: OsString, args: Vec<OsString>) -> Call {
        let target = match program.as_encoded_bytes().contains(&b'/') {
            true => Target::Path(PathBuf::from(&program)),
            false => Target::Name(program.clone()),
        };
        Call {
            name: file_name(&program),
            arg0: program,
            target,
            args,
        }
    }

    pub fn display_name(&self) -> String {
        self.name.to_string_lossy().into_owned()
    }

    /// An event about this call, with its program and arguments.
    pub fn event(&self, kind: EventKind) -> Event {
        Event::new(kind)
            .field("prog", self.name.as_encoded_bytes())
            .field("args", crate::text::shell_join_bytes(&self.args))
    }
}

fn file_name(program: &OsStr) -> OsString {
    Path::new(program)
        .file_name()
        .map_or_else(|| program.to_os_string(), OsStr::to_os_string)
}

/// Who called us: the parent's pid and command line.
pub fn with_caller(event: Event) -> Event {
    let ppid = std::os::unix::process::parent_id();
    event
        .field("caller_pid", ppid.to_string())
        .field("caller", crate::procinfo::describe(ppid))
}
