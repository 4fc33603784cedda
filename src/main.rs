//! The `latchd` binary: wiring only.
#![warn(clippy::unwrap_used)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A single-binary auth server: HS256 access tokens, rotating refresh tokens, one redb file.
#[derive(Parser)]
#[command(name = "latchd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve => {
            eprintln!("latchd: the HTTP server is not built yet");
            ExitCode::SUCCESS
        }
    }
}
