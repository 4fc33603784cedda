//! The `latchd` binary: wiring only. Cli -> Config -> telemetry -> storage -> Authority ->
//! `http::serve` (or a CLI command).
#![warn(clippy::unwrap_used)]

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use latchd::auth::event::Subscriber;
use latchd::auth::Authority;
use latchd::cli;
use latchd::config::Config;
use latchd::metrics::Metrics;
use latchd::runtime;

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

Configuration comes from LATCHD_* environment variables, for every command; each but
LATCHD_SIGNING_KEY also has a flag of the same meaning (listed below with its variable and
default) that overrides it. LATCHD_DB names the redb file (default ./latchd.redb).

`user`, `key` and `gc` open the database file directly, so run them while the server is
stopped; against a running server they say so and change nothing. Passwords for `user add`
are read as one line from stdin, never from the command line or the environment:

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
    latchd::telemetry::init(&config.log, config.log_json);
    match cli.command {
        Command::Serve => match serve(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("latchd: {e}");
                ExitCode::FAILURE
            }
        },
        Command::User(command) => cli::user(&config, command),
        Command::Key(command) => cli::key(&config, command),
        Command::Gc => cli::gc(&config),
    }
}

fn serve(config: Config) -> Result<(), String> {
    let storage =
        runtime::open_storage(&config.db, config.store, true).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let metrics: Arc<dyn Subscriber> = Arc::new(Metrics::new());
    let (auth, source) = runtime
        .block_on(Authority::open(config.auth.clone(), storage, vec![metrics]))
        .map_err(|e| e.to_string())?;
    let auth = Arc::new(auth);
    runtime::log_start(&auth, &source, &config);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(config.listen))
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let sweeper = runtime.spawn(runtime::sweep_forever(Arc::clone(&auth)));
    let served = runtime.block_on(latchd::http::serve(
        listener,
        Arc::clone(&auth),
        config.http,
        runtime::shutdown_signal(),
    ));
    sweeper.abort();
    // Dropping the runtime ends every task still holding the authority; dropping the last
    // handle then closes the database before the process exits.
    drop(runtime);
    drop(auth);
    served.map_err(|e| e.to_string())?;
    tracing::info!("stopped");
    Ok(())
}
