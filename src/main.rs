//! The `latchd` binary: wiring only. Cli -> Config -> telemetry -> `serve::serve` (storage,
//! Authority, `http::serve`) or a CLI command.
#![warn(clippy::unwrap_used)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use latchd::cli;
use latchd::config::Config;
use latchd::telemetry::Trail;

/// A single-binary auth server: HS256 access tokens, rotating refresh tokens, one redb file.
#[derive(Parser)]
#[command(name = "latchd", version, about, long_about = LONG_ABOUT)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    flags: cli::Flags,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server until SIGTERM or SIGINT.
    Serve,
    /// Add, list, disable, enable or delete users.
    #[command(subcommand)]
    User(cli::UserCommand),
    /// Rotate the access-token signing key.
    #[command(subcommand)]
    Key(cli::KeyCommand),
    /// Delete expired blacklist rows, ended sessions and retired keys now, and print the counts.
    Gc,
    /// Print the audit log (every row matching the filters, oldest first), one JSON object a
    /// line with the fields of `GET /v1/admin/audit`.
    Audit(cli::AuditArgs),
    /// Write a consistent copy of the whole database to PATH (a new file, mode 0600), while the
    /// server keeps serving; durable when it exits 0.
    Backup {
        /// Where the copy goes; it must not exist yet.
        #[arg(value_name = "PATH")]
        path: std::path::PathBuf,
    },
}

const LONG_ABOUT: &str = "\
A single-binary auth server: HS256 access tokens, rotating refresh tokens, one redb file.

Configuration comes from LATCHD_* environment variables, for every command; each but
LATCHD_SIGNING_KEY also has a flag of the same meaning (listed below with its variable and
default) that overrides it. LATCHD_DB names the redb file (default ./latchd.redb).

`user`, `key`, `gc`, `audit` and `backup` work beside a running server: it carries them out, asked
over the owner-only socket next to the database file (LATCHD_DB plus `.sock`), so run them as
the server's user. With no server running they open the file themselves. Passwords for
`user add` are read as one line from stdin, never from the command line or the environment:

  latchd user add --email you@example.com --role admin < password.txt";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env_and_flags(cli.flags.pairs()) {
        Ok(config) => config,
        Err(errors) => {
            for error in errors {
                eprintln!("latchd: {error}");
            }
            return ExitCode::from(2);
        }
    };
    let trail = match cli.command {
        Command::Serve => Trail::Log,
        _ => Trail::Quiet,
    };
    latchd::telemetry::init(&config.log, config.log_json, trail);
    match cli.command {
        Command::Serve => match latchd::serve::serve(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("latchd: {e}");
                ExitCode::FAILURE
            }
        },
        Command::User(command) => cli::user(&config, command),
        Command::Key(command) => cli::key(&config, command),
        Command::Gc => cli::gc(&config),
        Command::Audit(args) => cli::audit(&config, args),
        Command::Backup { path } => cli::backup(&config, &path),
    }
}
