//! Settings, in order of precedence: built-in defaults < the config file
//! (`/etc/xtlock.conf`, TOML, or the file `XTLOCK_CONFIG` names) < `XTLOCK_*` environment
//! variables < prefix options. A bad config file never stops a firewall command: it is
//! ignored with a warning and the command runs with the other settings.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_CONFIG_FILE: &str = "/etc/xtlock.conf";
pub const DEFAULT_TIMEOUT_SECS: f64 = 30.0;
pub const DEFAULT_RETRIES: u32 = 4;
pub const DEFAULT_MAX_STDIN: u64 = 64 << 20;
pub const DEFAULT_BATCH: bool = true;
/// A config file larger than this is not a config file.
const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Longer than any caller waits (fail2ban kills after 60 s); rejects typos like 3e9.
const MAX_TIMEOUT_SECS: f64 = 86400.0;
const MAX_RETRIES: u32 = 100;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub lock_file: PathBuf,
    pub timeout: Duration,
    pub retries: u32,
    pub log_file: Option<PathBuf>,
    pub verbose: bool,
    /// None: do not log to syslog.
    pub syslog_socket: Option<PathBuf>,
    /// journald's native socket, tried before syslog; None: do not.
    pub journal_socket: Option<PathBuf>,
    pub max_stdin: u64,
    /// Commit queued single commands together (group commit; see `batch`).
    pub batch: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            lock_file: crate::lock::DEFAULT_LOCK_FILE.into(),
            timeout: Duration::from_secs_f64(DEFAULT_TIMEOUT_SECS),
            retries: DEFAULT_RETRIES,
            log_file: None,
            verbose: false,
            syslog_socket: Some(crate::log::DEFAULT_SYSLOG_SOCKET.into()),
            journal_socket: Some(crate::log::DEFAULT_JOURNAL_SOCKET.into()),
            max_stdin: DEFAULT_MAX_STDIN,
            batch: DEFAULT_BATCH,
        }
    }
}

/// One layer of settings; every field optional. The file, the environment and the
/// options each produce one, and they are applied in order.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Layer {
    pub lock_file: Option<PathBuf>,
    pub timeout: Option<f64>,
    pub retries: Option<u32>,
    pub log_file: Option<PathBuf>,
    pub verbose: Option<bool>,
    /// An empty string turns syslog off.
    pub syslog_socket: Option<PathBuf>,
    /// An empty string turns the journal off.
    pub journal_socket: Option<PathBuf>,
    pub max_stdin: Option<u64>,
    pub batch: Option<bool>,
}

/// The one wording of each range rule, for the file, the environment and the options.
fn retries_out_of_range(value: impl std::fmt::Display) -> String {
    format!("retries must be from 0 to {MAX_RETRIES}, not {value}")
}

fn max_stdin_out_of_range(value: impl std::fmt::Display) -> String {
    format!("max_stdin must be a number of bytes above 0, not {value}")
}

impl Layer {
    /// Values out of range are reported, not applied: the one place every source's
    /// values are checked (a file's negative numbers fail their conversion first, with
    /// the same words).
    fn validate(&self) -> Result<(), String> {
        if let Some(t) = self.timeout
            && !(0.0..=MAX_TIMEOUT_SECS).contains(&t)
        {
            return Err(format!(
                "timeout must be between 0 and {MAX_TIMEOUT_SECS} seconds, not {t}"
            ));
        }
        if let Some(r) = self.retries
            && r > MAX_RETRIES
        {
            return Err(retries_out_of_range(r));
        }
        if self.max_stdin == Some(0) {
            return Err(max_stdin_out_of_range(0));
        }
        if self
            .lock_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err("lock_file must not be empty".into());
        }
        Ok(())
    }

    pub fn apply_to(self, config: &mut Config) {
        if let Some(v) = self.lock_file {
            config.lock_file = v;
        }
        if let Some(v) = self.timeout {
            config.timeout = Duration::from_secs_f64(v);
        }
        if let Some(v) = self.retries {
            config.retries = v;
        }
        if let Some(v) = self.log_file {
            config.log_file = (!v.as_os_str().is_empty()).then_some(v);
        }
        if let Some(v) = self.verbose {
            config.verbose = v;
        }
        if let Some(v) = self.syslog_socket {
            config.syslog_socket = (!v.as_os_str().is_empty()).then_some(v);
        }
        if let Some(v) = self.journal_socket {
            config.journal_socket = (!v.as_os_str().is_empty()).then_some(v);
        }
        if let Some(v) = self.batch {
            config.batch = v;
        }
        if let Some(v) = self.max_stdin {
            config.max_stdin = v;
        }
    }
}

/// Where settings come from, so tests can supply their own.
pub struct Sources<'a> {
    pub env: &'a dyn Fn(&str) -> Option<OsString>,
    /// Whether to insist on a root-owned, not group/world-writable file.
    pub running_as_root: bool,
}

impl Sources<'_> {
    pub fn process() -> Sources<'static> {
        Sources {
            env: &|name| std::env::var_os(name),
            running_as_root: crate::procinfo::running_as_root(),
        }
    }
}

/// The settings in force, and the warnings to log about those that were ignored.
pub fn load(sources: &Sources, options: Layer) -> Result<(Config, Vec<String>), String> {
    options.validate()?;
    let mut config = Config::default();
    let mut warnings = Vec::new();
    let (path, named) = match (sources.env)("XTLOCK_CONFIG") {
        Some(p) => (PathBuf::from(p), true),
        None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
    };
    match read_file_layer(&path, named, sources.running_as_root) {
        Ok(Some(layer)) => layer.apply_to(&mut config),
        Ok(None) => {}
        Err(problem) => warnings.push(format!("ignoring config file {problem}; using defaults")),
    }
    let (env_layer, env_warnings) = env_layer(sources.env);
    warnings.extend(env_warnings);
    env_layer.apply_to(&mut config);
    options.apply_to(&mut config);
    Ok((config, warnings))
}

/// Ok(None): no file, and none was asked for. Err: "PATH: problem" (with the line).
pub fn read_file_layer(
    path: &Path,
    named: bool,
    running_as_root: bool,
) -> Result<Option<Layer>, String> {
    let shown = path.display();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path);
    let file = match file {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !named => return Ok(None),
        Err(e) => return Err(format!("{shown}: {}", crate::text::errno_text(&e))),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("{shown}: {}", crate::text::errno_text(&e)))?;
    if !meta.is_file() {
        return Err(format!("{shown}: not a regular file"));
    }
    // Root runs the firewall: a file others can write would let them choose its lock.
    if running_as_root {
        if meta.uid() != 0 {
            return Err(format!(
                "{shown}: not owned by root (owner uid {})",
                meta.uid()
            ));
        }
        if meta.mode() & 0o002 != 0 || (meta.mode() & 0o020 != 0 && meta.gid() != 0) {
            return Err(format!(
                "{shown}: writable by others (mode {:o})",
                meta.mode() & 0o777
            ));
        }
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{shown}: {}", crate::text::errno_text(&e)))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(format!("{shown}: larger than {MAX_CONFIG_BYTES} bytes"));
    }
    parse_layer(&bytes)
        .map(Some)
        .map_err(|problem| format!("{shown}:{problem}"))
}

/// Parse TOML text; Err is "LINE: problem". The toml crate's own parser gives the spans;
/// the eight keys are read by hand, each with the line of its own error and words that
/// name the key and what it wants. serde's derive was measured against this (README,
/// Design notes): no faster, 24 KB larger, and its proc macro breaks the build.
pub fn parse_layer(bytes: &[u8]) -> Result<Layer, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        format!("{line}: not valid UTF-8")
    })?;
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let table = toml::de::DeTable::parse(text).map_err(|e| {
        let line = e.span().map_or(1, |span| line_of(span.start));
        format!("{line}: {}", e.message().trim().replace('\n', " "))
    })?;
    let mut layer = Layer::default();
    for (key, value) in table.get_ref() {
        // The line is counted only for an error: counted for every key, it was a quarter
        // of the parse (6,300 of 26,600 instructions with all eight keys set).
        let start = key.span().start;
        let at = |problem: String| format!("{}: {problem}", line_of(start));
        let value = value.get_ref();
        let name = key.get_ref().as_ref();
        match name {
            "lock_file" => layer.lock_file = Some(string(name, value).map_err(at)?.into()),
            "log_file" => layer.log_file = Some(string(name, value).map_err(at)?.into()),
            "syslog_socket" => layer.syslog_socket = Some(string(name, value).map_err(at)?.into()),
            "journal_socket" => {
                layer.journal_socket = Some(string(name, value).map_err(at)?.into())
            }
            "timeout" => layer.timeout = Some(seconds(name, value).map_err(at)?),
            "retries" => {
                let n = integer(name, value).map_err(at)?;
                layer.retries = Some(u32::try_from(n).map_err(|_| at(retries_out_of_range(n)))?);
            }
            "max_stdin" => {
                let n = integer(name, value).map_err(at)?;
                layer.max_stdin =
                    Some(u64::try_from(n).map_err(|_| at(max_stdin_out_of_range(n)))?);
            }
            "verbose" => {
                layer.verbose = Some(
                    value
                        .as_bool()
                        .ok_or_else(|| at(wrong_type(name, "true or false", value)))?,
                )
            }
            "batch" => {
                let on = value.as_bool().or_else(|| value.as_str().and_then(switch));
                layer.batch = Some(on.ok_or_else(|| at(wrong_type(name, "on or off", value)))?);
            }
            other => {
                return Err(at(format!(
                    "unknown key `{other}` (known: {})",
                    KNOWN_KEYS.join(", ")
                )));
            }
        }
        // Keys before this one passed, so a problem now is this key's.
        layer.validate().map_err(at)?;
    }
    Ok(layer)
}

const KNOWN_KEYS: [&str; 9] = [
    "lock_file",
    "timeout",
    "retries",
    "log_file",
    "verbose",
    "syslog_socket",
    "journal_socket",
    "max_stdin",
    "batch",
];

/// An on/off switch as admins write it (the file's strings and the environment).
fn switch(text: &str) -> Option<bool> {
    match text {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

fn wrong_type(name: &str, want: &str, value: &toml::de::DeValue) -> String {
    format!(
        "invalid type for `{name}`: {}, expected {want}",
        value.type_str()
    )
}

fn string(name: &str, value: &toml::de::DeValue) -> Result<String, String> {
    value
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| wrong_type(name, "a string", value))
}

fn integer(name: &str, value: &toml::de::DeValue) -> Result<i64, String> {
    let int = value
        .as_integer()
        .ok_or_else(|| wrong_type(name, "an integer", value))?;
    i64::from_str_radix(&int.as_str().replace('_', ""), int.radix())
        .map_err(|e| format!("`{name}`: {e}"))
}

/// Seconds: an integer or a float.
fn seconds(name: &str, value: &toml::de::DeValue) -> Result<f64, String> {
    if let Some(float) = value.as_float() {
        return float
            .as_str()
            .replace('_', "")
            .parse()
            .map_err(|e| format!("`{name}`: {e}"));
    }
    integer(name, value)
        .map(|n| n as f64)
        .map_err(|_| wrong_type(name, "a number of seconds", value))
}

fn env_layer(env: &dyn Fn(&str) -> Option<OsString>) -> (Layer, Vec<String>) {
    let mut layer = Layer::default();
    let mut warnings = Vec::new();
    let w = &mut warnings;
    set_number(
        &mut layer,
        w,
        env,
        "XTLOCK_TIMEOUT",
        "a number of seconds",
        |l, v| l.timeout = Some(v),
    );
    set_number(
        &mut layer,
        w,
        env,
        "XTLOCK_RETRIES",
        "a whole number",
        |l, v| l.retries = Some(v),
    );
    set_number(
        &mut layer,
        w,
        env,
        "XTLOCK_MAX_STDIN",
        "a number of bytes",
        |l, v| l.max_stdin = Some(v),
    );
    for (name, set) in [
        (
            "XTLOCK_VERBOSE",
            (|l, v| l.verbose = Some(v)) as fn(&mut Layer, bool),
        ),
        ("XTLOCK_BATCH", |l, v| l.batch = Some(v)),
    ] {
        if let Some(text) = env_text(env, name, w) {
            match switch(&text) {
                Some(v) => set(&mut layer, v),
                None => w.push(format!("ignoring {name}={text:?}: use on or off")),
            }
        }
    }
    layer.lock_file = env("XTLOCK_LOCK_FILE")
        .map(PathBuf::from)
        .filter(|p| !p.as_os_str().is_empty());
    layer.log_file = env("XTLOCK_LOG_FILE").map(PathBuf::from);
    layer.syslog_socket = env("XTLOCK_SYSLOG_SOCKET").map(PathBuf::from);
    layer.journal_socket = env("XTLOCK_JOURNAL_SOCKET").map(PathBuf::from);
    (layer, warnings)
}

/// The variable's value, trimmed; a value that is not UTF-8 is warned about and ignored.
fn env_text(
    env: &dyn Fn(&str) -> Option<OsString>,
    name: &str,
    warnings: &mut Vec<String>,
) -> Option<String> {
    let value = env(name)?;
    match value.to_str() {
        Some(v) => Some(v.trim().to_string()),
        None => {
            warnings.push(format!("ignoring {name}: not valid UTF-8"));
            None
        }
    }
}

/// Parse variable `name` and apply it through `set`, if it parses and validates;
/// otherwise warn (`what` says what it should have been) and leave the layer alone.
fn set_number<T: std::str::FromStr + Copy>(
    layer: &mut Layer,
    warnings: &mut Vec<String>,
    env: &dyn Fn(&str) -> Option<OsString>,
    name: &str,
    what: &str,
    set: impl Fn(&mut Layer, T),
) {
    let Some(raw) = env_text(env, name, warnings) else {
        return;
    };
    let Ok(value) = raw.parse::<T>() else {
        warnings.push(format!("ignoring {name}={raw:?}: not {what}"));
        return;
    };
    let mut candidate = Layer::default();
    set(&mut candidate, value);
    match candidate.validate() {
        Ok(()) => set(layer, value),
        Err(problem) => warnings.push(format!("ignoring {name}={raw:?}: {problem}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;

    fn with_env(
        vars: &[(&str, &str)],
        as_root: bool,
        options: Layer,
    ) -> Result<(Config, Vec<String>), String> {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        let env = move |name: &str| map.get(name).cloned();
        load(
            &Sources {
                env: &env,
                running_as_root: as_root,
            },
            options,
        )
    }

    fn write_config(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let path = dir.join("xtlock.conf");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn precedence_defaults_file_env_options() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(
            dir.path(),
            "timeout = 5\nretries = 2\nlock_file = \"/f.lock\"\n",
            0o644,
        );
        let conf = path.to_str().unwrap();
        let (c, w) = with_env(&[("XTLOCK_CONFIG", conf)], false, Layer::default()).unwrap();
        assert_eq!(
            (c.timeout, c.retries, c.lock_file.clone()),
            (Duration::from_secs(5), 2, "/f.lock".into())
        );
        assert!(w.is_empty(), "{w:?}");
        let env = [
            ("XTLOCK_CONFIG", conf),
            ("XTLOCK_TIMEOUT", "7.5"),
            ("XTLOCK_LOCK_FILE", "/e.lock"),
        ];
        let (c, _) = with_env(&env, false, Layer::default()).unwrap();
        assert_eq!(
            (c.timeout, c.retries, c.lock_file.clone()),
            (Duration::from_secs_f64(7.5), 2, "/e.lock".into())
        );
        let options = Layer {
            timeout: Some(0.25),
            lock_file: Some("/o.lock".into()),
            ..Layer::default()
        };
        let (c, _) = with_env(&env, false, options).unwrap();
        assert_eq!(
            (c.timeout, c.lock_file),
            (Duration::from_millis(250), "/o.lock".into())
        );
    }

    #[test]
    fn missing_default_file_is_silent_but_named_file_is_not() {
        let (c, w) = with_env(&[], false, Layer::default()).unwrap();
        if !Path::new(DEFAULT_CONFIG_FILE).exists() {
            assert_eq!((c, w.len()), (Config::default(), 0));
        }
        let (_, w) = with_env(
            &[("XTLOCK_CONFIG", "/nonexistent/x.conf")],
            false,
            Layer::default(),
        )
        .unwrap();
        assert_eq!(
            w,
            vec![
                "ignoring config file /nonexistent/x.conf: No such file or directory; using defaults"
            ]
        );
    }

    #[test]
    fn bad_files_are_ignored_with_line_and_problem() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "timeout = 5\nretries = \"many\"\n",
                "xtlock.conf:2: invalid type",
            ),
            (
                "timeout = 5\nbogus = 1\n",
                "xtlock.conf:2: unknown key `bogus`",
            ),
            (
                "timeout = 5\n\nretries = 1000\n",
                "xtlock.conf:3: retries must be from 0 to 100",
            ),
            (
                "retries = -3\n",
                "xtlock.conf:1: retries must be from 0 to 100, not -3",
            ),
            (
                "timeout = \"5\"\n",
                "xtlock.conf:1: invalid type for `timeout`: string",
            ),
            ("timeout = -1\n", "timeout must be between"),
            (
                "batch = \"sometimes\"\n",
                "xtlock.conf:1: invalid type for `batch`: string, expected on or off",
            ),
            ("[[[\n", "xtlock.conf:1:"),
        ];
        for (text, want) in cases {
            let path = write_config(dir.path(), text, 0o644);
            let (c, w) = with_env(
                &[("XTLOCK_CONFIG", path.to_str().unwrap())],
                false,
                Layer::default(),
            )
            .unwrap();
            assert_eq!(c, Config::default(), "{text:?}");
            assert_eq!(w.len(), 1, "{text:?}");
            assert!(
                w[0].contains(want) && w[0].ends_with("; using defaults"),
                "{text:?}: {}",
                w[0]
            );
        }
        std::fs::write(dir.path().join("xtlock.conf"), b"timeout = 5\n\xff\n").unwrap();
        let (_, w) = with_env(
            &[(
                "XTLOCK_CONFIG",
                dir.path().join("xtlock.conf").to_str().unwrap(),
            )],
            false,
            Layer::default(),
        )
        .unwrap();
        assert!(w[0].contains("xtlock.conf:2: not valid UTF-8"), "{}", w[0]);
    }

    #[test]
    fn root_refuses_files_others_can_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(dir.path(), "timeout = 5\n", 0o646);
        let env = [("XTLOCK_CONFIG", path.to_str().unwrap())];
        let (c, w) = with_env(&env, false, Layer::default()).unwrap();
        assert_eq!(
            (c.timeout, w.len()),
            (Duration::from_secs(5), 0),
            "not root: the mode is the owner's business"
        );
        // As root the file must be root's own: only root makes one that is (and can
        // give it away, to see it refused for its owner).
        if !crate::procinfo::running_as_root() {
            let ci = std::env::var_os("CI").is_some_and(|v| v == "true");
            assert!(
                !ci,
                "CI=true but root is not available: .ci/run must provide it"
            );
            eprintln!("SKIPPED: root is not available (config files as root reads them)");
            return;
        }
        let (c, w) = with_env(&env, true, Layer::default()).unwrap();
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert!(w[0].contains("writable by others (mode 646)"), "{}", w[0]);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::chown(&path, Some(1234), None).unwrap();
        let (_, w) = with_env(&env, true, Layer::default()).unwrap();
        assert!(
            w[0].contains("not owned by root (owner uid 1234)"),
            "{}",
            w[0]
        );
    }

    #[test]
    fn bad_environment_values_are_ignored_with_warning() {
        let env = [
            ("XTLOCK_TIMEOUT", "soon"),
            ("XTLOCK_RETRIES", "-1"),
            ("XTLOCK_VERBOSE", "maybe"),
            ("XTLOCK_MAX_STDIN", "0"),
            ("XTLOCK_BATCH", "sometimes"),
        ];
        let (c, w) = with_env(&env, false, Layer::default()).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(w.len(), 5, "{w:?}");
        assert!(
            w[4].contains("ignoring XTLOCK_BATCH=\"sometimes\": use on or off"),
            "{w:?}"
        );
        let (c, _) = with_env(&[("XTLOCK_BATCH", "off")], false, Layer::default()).unwrap();
        assert!(!c.batch);
        let (c, _) = with_env(
            &[("XTLOCK_SYSLOG_SOCKET", ""), ("XTLOCK_VERBOSE", "1")],
            false,
            Layer::default(),
        )
        .unwrap();
        assert_eq!((c.syslog_socket, c.verbose), (None, true));
    }

    #[test]
    fn batch_is_on_or_off() {
        let dir = tempfile::tempdir().unwrap();
        for (text, want) in [
            ("batch = \"off\"\n", false),
            ("batch = false\n", false),
            ("batch = \"on\"\n", true),
            ("timeout = 5\n", DEFAULT_BATCH),
        ] {
            let path = write_config(dir.path(), text, 0o644);
            let env = [("XTLOCK_CONFIG", path.to_str().unwrap())];
            let (c, w) = with_env(&env, false, Layer::default()).unwrap();
            assert_eq!((c.batch, w.len()), (want, 0), "{text:?}: {w:?}");
        }
    }

    #[test]
    fn bad_options_are_an_error() {
        let options = Layer {
            timeout: Some(f64::NAN),
            ..Layer::default()
        };
        assert!(with_env(&[], false, options).is_err());
    }
}
