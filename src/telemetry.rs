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

/// What `f` logs on this thread, for tests of what an operator is told.
#[cfg(test)]
pub(crate) fn logs_of(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        // A log line another thread reached first, with no subscriber then, is cached as
        // unheard; ask again now that this one listens.
        tracing::callsite::rebuild_interest_cache();
        f();
    });
    let bytes = sink.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}
