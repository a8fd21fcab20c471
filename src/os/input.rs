//! A restore's input, made ready before the lock is taken: a caller may be slow to write
//! it, and that time is not lock wait. Only a full restore may be replayed, so only its
//! input is held back.

use crate::restore::{Input, RestoreArgs, replayable_input};
use crate::status::Failure;
use std::io::{IsTerminal, Read};
use std::os::unix::fs::OpenOptionsExt;

/// A restore's input, made ready before the lock is taken (a caller may be slow to
/// write it, and that time is not lock wait).
#[derive(Debug)]
pub enum Prepared {
    /// stdin, read into memory: every attempt gets exactly these bytes.
    Buffered(Vec<u8>),
    /// A regular file that the program opens itself; what it held, for the classifier.
    RegularFile(Vec<u8>),
    /// The program reads its input itself, once; a failure is final, for this reason.
    Direct(&'static str),
}

impl Prepared {
    /// The bytes a replay would give again, or why there is no replay.
    pub fn replay(&self) -> Result<&[u8], &'static str> {
        match self {
            Prepared::Buffered(bytes) | Prepared::RegularFile(bytes) => Ok(bytes),
            Prepared::Direct(why) => Err(why),
        }
    }
}

/// Only a full restore may be replayed, so only a full restore's input is held back;
/// everything else reads its input as it would bare (a `--noflush` restore fed COMMIT
/// by COMMIT from a coprocess keeps working). A pipe, FIFO, terminal or socket given
/// as the file is never opened by xtlock: opening a FIFO would release its writer.
pub fn prepare(args: Option<&RestoreArgs>, max_stdin: u64) -> Result<Prepared, Failure> {
    let input = match replayable_input(args) {
        Ok(input) => input,
        Err(why) => return Ok(Prepared::Direct(why)),
    };
    match input {
        Input::Stdin if std::io::stdin().is_terminal() => Ok(Prepared::Direct(
            "the input is a terminal and cannot be replayed",
        )),
        Input::Stdin => read_stdin(max_stdin).map(Prepared::Buffered),
        Input::File(path) => Ok(read_regular_file(path.as_ref(), max_stdin).map_or(
            Prepared::Direct("the input is not a regular file and cannot be replayed"),
            Prepared::RegularFile,
        )),
    }
}

fn read_stdin(limit: u64) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| {
            Failure::Own(format!(
                "cannot read standard input: {}",
                crate::text::errno_text(&e)
            ))
        })?;
    if bytes.len() as u64 > limit {
        return Err(Failure::Own(format!(
            "standard input is larger than {limit} bytes (max_stdin); nothing was run"
        )));
    }
    Ok(bytes)
}

fn read_regular_file(path: &std::path::Path, limit: u64) -> Option<Vec<u8>> {
    if !std::fs::metadata(path).ok()?.is_file() {
        return None;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None; // replaced since the stat
    }
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .ok()?;
    (bytes.len() as u64 <= limit).then_some(bytes)
}
