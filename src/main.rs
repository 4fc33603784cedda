//! The `latchd` binary: wiring only. CLI -> Config -> telemetry -> Store -> Authority -> serve.
#![warn(clippy::unwrap_used)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use latchd::auth::{Authority, KeySource};
use latchd::cli;
use latchd::config::Config;
use latchd::store::Store;

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
    /// Add, list, disable, enable or delete users (with the server stopped).
    #[command(subcommand)]
    User(cli::UserCommand),
    /// Rotate the access-token signing key (with the server stopped).
    #[command(subcommand)]
    Key(cli::KeyCommand),
    /// Delete expired blacklist rows, ended sessions and retired keys now, and print the counts.
    Gc,
}

const LONG_ABOUT: &str = "\
A single-binary auth server: HS256 access tokens, rotating refresh tokens, one redb file.

Configuration comes from LATCHD_* environment variables (see README.md), for every command;
each but LATCHD_SIGNING_KEY also has a flag of the same meaning (--db, --listen, ...) that
overrides it:
  LATCHD_DB                 the redb file (default ./latchd.redb)
  LATCHD_LISTEN             address `serve` listens on (default 127.0.0.1:8080)
  LATCHD_SIGNING_KEY        base64url HS256 key that signs instead of the stored keys
  LATCHD_ACCESS_TTL         access-token lifetime in seconds (default 900); also how long
                            `gc` keeps ended sessions and retired keys
  LATCHD_PASSWORD_MIN       minimum password length (default 15)
  LATCHD_PBKDF2_ITERATIONS  password hashing work factor (default 600000)
  LATCHD_LOG                log filter (default info)

`user`, `key` and `gc` open the database file directly, so run them while the server is
stopped; against a running server they say so and change nothing. Passwords for `user add`
are read as one line from stdin, never from the command line or the environment:

  latchd user add --email you@example.com --role admin < password.txt";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env_and_flags(&cli.flags.pairs()) {
        Ok(config) => config,
        Err(errors) => {
            for error in errors {
                eprintln!("latchd: {error}");
            }
            return ExitCode::from(2);
        }
    };
    latchd::telemetry::init(&config.log, config.log_json);
    match cli.command {
        Command::Serve => serve(&config),
        Command::User(command) => cli::user(&config, command),
        Command::Key(command) => cli::key(&config, command),
        Command::Gc => cli::gc(&config),
    }
}

fn serve(config: &Config) -> ExitCode {
    let store = match Store::open(&config.db) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("latchd: cannot open {}: {e}", config.db.display());
            return ExitCode::FAILURE;
        }
    };
    let (authority, source) = match Authority::new(config, store) {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("latchd: {e}");
            return ExitCode::FAILURE;
        }
    };
    log_start(config, &authority, &source);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("latchd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(latchd::serve(config, authority)) {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("latchd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn log_start(config: &Config, authority: &Authority, source: &KeySource) {
    let kid = authority.signer_kid();
    match source {
        KeySource::Generated => {
            tracing::info!(kid, db = %config.db.display(), "generated a new signing key and stored it");
        }
        KeySource::Configured => tracing::info!(kid, "signing with LATCHD_SIGNING_KEY"),
        KeySource::Stored => tracing::info!(kid, "signing with the stored key"),
    }
    if config.pbkdf2_iterations < latchd::password::DEFAULT_ITERATIONS {
        tracing::warn!(
            iterations = config.pbkdf2_iterations.get(),
            "LATCHD_PBKDF2_ITERATIONS is below 600000: for tests only"
        );
    }
    if !config.cookie_secure {
        tracing::warn!("LATCHD_COOKIE_SECURE=false: refresh cookies work over plain http");
    }
}
