//! Logging: tracing-subscriber to stderr, filtered by `LATCHD_LOG`, one JSON object per line
//! with `LATCHD_LOG_FORMAT=json`.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. A filter that does not parse falls back to `info`, with a
/// warning, rather than silencing the server.
pub fn init(filter: &str, json: bool) {
    let (filter, bad) = match EnvFilter::try_new(filter) {
        Ok(f) => (f, false),
        Err(_) => (EnvFilter::new("info"), true),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
    if bad {
        tracing::warn!("LATCHD_LOG did not parse; logging at info");
    }
}
