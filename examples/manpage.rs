//! Writes xtlock's man pages, generated from the same clap definition the binary uses:
//! xtlock(1) and one page for each command it names (xtlock-install(1), ...):
//!
//!     cargo run --example manpage -- target/man
//!
//! (`cargo deb` packages target/man/*.1; see README, Packaging.)

fn main() {
    let dir = std::env::args_os()
        .nth(1)
        .unwrap_or_else(|| "target/man".into());
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("create the man pages' directory");
    clap_mangen::generate_to(xtlock::cli::command(), &dir).expect("write the man pages");
    println!("wrote the man pages to {}", dir.display());
}
