//! Logging: tracing-subscriber to stderr, filtered by `LATCHD_LOG`, one JSON object per line
//! with `LATCHD_LOG_FORMAT=json`.

use std::io::IsTerminal as _;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The target of the one log line per audit row.
pub const AUDIT_TARGET: &str = "latchd::audit";

/// Whether this process logs a line per audit row it writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trail {
    /// The server: every audit row it writes is also a log line, for operators who ship logs.
    Log,
    /// A CLI command: its stderr is the operator's terminal, so its rows are in the table only
    /// (a command a running server carries out is logged by the server).
    Quiet,
}

/// Installs the global subscriber. `filter` is a level (`info`) and/or `target=level` pairs
/// (`warn,latchd::access=off`): `Targets`, which needs no regex engine, where `EnvFilter`
/// would add ~350 KiB of one to the binary for span and field matching latchd never logs by.
/// `config` has already refused a filter that names no known level or target; one that still
/// does not parse falls back to `info`, with a warning, rather than silencing the server.
/// [`Trail::Quiet`] turns the audit log lines (target `latchd::audit`) off.
pub fn init(filter: &str, json: bool, trail: Trail) {
    let (mut filter, bad) = match filter.parse::<Targets>() {
        Ok(f) => (f, false),
        Err(_) => (Targets::new().with_default(LevelFilter::INFO), true),
    };
    if trail == Trail::Quiet {
        filter = filter.with_target(AUDIT_TARGET, LevelFilter::OFF);
    }
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        registry.with(layer.json()).init();
    } else {
        registry.with(layer).init();
    }
    if bad {
        tracing::warn!("LATCHD_LOG did not parse; logging at info");
    }
}
