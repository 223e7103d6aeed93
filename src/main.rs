//! The `pgshift` binary: parses the command line and reports errors.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = pgshift::cli::Cli::parse();
    match pgshift::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgshift: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
