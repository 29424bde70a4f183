//! keyward: thin entry point. Parse arguments, run, map to an exit code.

use clap::Parser;

fn main() {
    let started = std::time::Instant::now();
    let cli = pam_keyward::cli::Cli::parse();
    std::process::exit(pam_keyward::cli::run(cli, started));
}
