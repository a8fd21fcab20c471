//! Integration tests: the built binary, run the way callers run it. One test binary with
//! modules keeps compile time down (as rustup's tests do).

mod admin;
mod batch;
mod batchable_shapes;
mod broken_pipe;
mod call_kinds;
mod common;
mod containers;
mod divert;
mod doctor;
mod fail2ban;
mod faults;
mod flushes;
mod getopt_differential;
mod hostile;
mod journal;
mod lifetime;
mod lock;
mod logging;
mod nesting;
mod package;
mod passthrough;
mod properties;
mod protocol;
mod read_differential;
mod reads;
mod real_inputs;
mod real_ipset;
mod real_iptables;
mod restore;
mod retry;
mod shim;
mod source;
mod status;
mod ufw;
