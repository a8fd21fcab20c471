//! Writes xtlock's man page, generated from the same clap definition the binary uses:
//!
//!     cargo run --example manpage -- target/man/xtlock.1
//!
//! (`cargo deb` packages target/man/xtlock.1; see README, Packaging.)

fn main() {
    let out = std::env::args_os()
        .nth(1)
        .unwrap_or_else(|| "target/man/xtlock.1".into());
    let out = std::path::PathBuf::from(out);
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).expect("create the man page's directory");
    }
    let mut page = Vec::new();
    clap_mangen::Man::new(xtlock::cli::command())
        .render(&mut page)
        .expect("render the man page");
    std::fs::write(&out, page).expect("write the man page");
    println!("wrote {}", out.display());
}
