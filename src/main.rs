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
use latchd::control;
use latchd::metrics::Metrics;
use latchd::runtime;
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
        Command::Audit(args) => cli::audit(&config, args),
        Command::Backup { path } => cli::backup(&config, &path),
    }
}

fn serve(config: Config) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let storage = runtime
        .block_on(runtime::open_configured(&config, true))
        .map_err(|e| e.to_string())?;
    let metrics: Arc<dyn Subscriber> = Arc::new(Metrics::new());
    let (auth, source) = runtime
        .block_on(Authority::open(config.auth.clone(), storage, vec![metrics]))
        .map_err(|e| e.to_string())?;
    let auth = Arc::new(auth);
    runtime::log_start(&auth, &source, &config);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(config.listen))
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    // Bound only now that this process holds the file: a socket left there is a dead server's.
    // On PostgreSQL the CLI uses the database itself, like any other node.
    let operator = if config.database.is_none() {
        let socket = control::Socket::bind(&config.db).map_err(|e| {
            format!(
                "cannot listen for operator commands on {}: {e}",
                control::socket_path(&config.db).display()
            )
        })?;
        Some(runtime.spawn(control::serve(socket, Arc::clone(&auth))))
    } else {
        None
    };
    let keys = runtime.spawn(runtime::follow_signing_keys(Arc::clone(&auth)));
    let sweeper = runtime.spawn(runtime::sweep_forever(Arc::clone(&auth)));
    let shutdown = {
        let _inside = runtime.enter();
        runtime::shutdown_signal()
    };
    let served = runtime.block_on(latchd::http::serve(
        listener,
        Arc::clone(&auth),
        config.http,
        shutdown,
    ));
    sweeper.abort();
    keys.abort();
    if let Some(operator) = operator {
        operator.abort();
    }
    // Dropping the runtime ends every task still holding the authority; dropping the last
    // handle then closes the database before the process exits.
    drop(runtime);
    drop(auth);
    served.map_err(|e| e.to_string())?;
    tracing::info!("stopped");
    Ok(())
}
