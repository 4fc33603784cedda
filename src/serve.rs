//! `latchd serve`: the server's run, wired from the layers below (storage, the authority,
//! HTTP, the operator socket, the background tasks). In the library rather than in `main` so
//! that the binary only calls it: rustc compiles a private copy of every async function and
//! closure that a crate reaches through a generic one (`block_on`, a generic shutdown future)
//! into that crate, and with the run in `main` every handler and use case was in the binary
//! twice (0.20 MB; README "Binary size").

use std::sync::Arc;

use crate::auth::event::Subscriber;
use crate::auth::Authority;
use crate::config::Config;
use crate::control;
use crate::http;
use crate::metrics::Metrics;
use crate::runtime;

/// Runs the server `config` describes until SIGTERM or SIGINT: opens the backend, the
/// authority, the listener and (on the redb file) the operator socket, serves, then drains and
/// closes the database.
///
/// # Errors
/// Why the server could not start or stopped with an error, as one line.
pub fn serve(config: Config) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let storage = rt
        .block_on(runtime::open_configured(&config, true))
        .map_err(|e| e.to_string())?;
    let metrics: Arc<dyn Subscriber> = Arc::new(Metrics::new());
    let (auth, source) = rt
        .block_on(Authority::open(config.auth.clone(), storage, vec![metrics]))
        .map_err(|e| e.to_string())?;
    let auth = Arc::new(auth);
    runtime::log_start(&auth, &source, &config);
    let listener = rt
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
        Some(rt.spawn(control::serve(socket, Arc::clone(&auth))))
    } else {
        None
    };
    let keys = rt.spawn(runtime::follow_signing_keys(Arc::clone(&auth)));
    let sweeper = rt.spawn(runtime::sweep_forever(Arc::clone(&auth)));
    let shutdown = {
        let _inside = rt.enter();
        runtime::shutdown_signal()
    };
    let served = rt.block_on(http::serve(
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
    drop(rt);
    drop(auth);
    served.map_err(|e| e.to_string())?;
    tracing::info!("stopped");
    Ok(())
}
