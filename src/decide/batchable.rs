//! STUB (replaced by the helper's module): single commands a batch may carry.
use std::ffi::OsString;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchLine {
    pub table: String,
    pub line: String,
}

pub fn batch_line(args: &[OsString]) -> Option<BatchLine> {
    let words: Vec<&str> = args.iter().map(|a| a.to_str()).collect::<Option<_>>()?;
    let mut table = "filter".to_string();
    let mut line = Vec::new();
    let mut i = 0;
    while i < words.len() {
        match words[i] {
            "-w" => {}
            "-t" => {
                table = words.get(i + 1)?.to_string();
                i += 1;
            }
            w if w
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:,!".contains(c)) =>
            {
                line.push(w)
            }
            _ => return None,
        }
        i += 1;
    }
    matches!(line.first(), Some(&("-A" | "-I" | "-D" | "-N"))).then_some(())?;
    Some(BatchLine {
        table,
        line: line.join(" "),
    })
}
