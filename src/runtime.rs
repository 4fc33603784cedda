//! The process around the use cases: which storage backend to open, the shutdown signal, the
//! periodic sweep, and the start-up log lines. `main` and the CLI wire these together; nothing
//! here decides a use case.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::auth::storage::{Storage, StoreError};
use crate::auth::{Authority, KeySource};
use crate::model::Sweep;
use crate::store::Store;
use crate::time::UnixTime;

/// How often the background sweeper deletes expired rows.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Why the storage backend could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// Another process (a running server) holds the database file.
    Locked(PathBuf),
    /// The database file does not exist and was not to be created.
    Missing(PathBuf),
    /// Opening failed.
    Failed(PathBuf, StoreError),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Locked(path) => {
                write!(f, "cannot open {}: {}", path.display(), StoreError::Locked)
            }
            Self::Missing(path) => write!(f, "{} does not exist", path.display()),
            Self::Failed(path, e) => write!(f, "cannot open {}: {e}", path.display()),
        }
    }
}

impl std::error::Error for OpenError {}

/// Opens the storage backend at `db` (the redb file), creating it only if `create`.
///
/// # Errors
/// [`OpenError`]: locked by a running server, missing, or unreadable.
pub fn open_storage(db: &Path, create: bool) -> Result<Arc<dyn Storage>, OpenError> {
    if !create && !db.exists() {
        return Err(OpenError::Missing(db.to_owned()));
    }
    match Store::open(db) {
        Ok(store) => Ok(Arc::new(store)),
        Err(StoreError::Locked) => Err(OpenError::Locked(db.to_owned())),
        Err(e) => Err(OpenError::Failed(db.to_owned(), e)),
    }
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed by this call (make it within the
/// runtime, before the server announces itself), not when the future is first polled: a
/// SIGTERM arriving between `listening on` and the first poll would otherwise kill the process
/// with the default action, undrained.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        [
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        ]
    };
    async move {
        #[cfg(unix)]
        {
            let [term, int] = signals.map(|signal| async move {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            });
            tokio::select! {
                () = term => {}
                () = int => {}
            }
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Sweeps every [`SWEEP_INTERVAL`], forever: expired blacklist rows, ended sessions and
/// retired keys (see [`Authority::sweep`]). Spawn it; abort it at shutdown.
pub async fn sweep_forever(auth: Arc<Authority>) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        tick.tick().await;
        match auth.sweep(UnixTime::now()).await {
            Ok(sweep) if sweep != Sweep::default() => {
                tracing::info!(
                    blacklist = sweep.blacklist,
                    families = sweep.families,
                    keys = sweep.keys,
                    "swept expired rows"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "sweep failed"),
        }
    }
}

/// The log lines of a start: which key signs, and the settings that weaken something.
pub fn log_start(auth: &Authority, source: &KeySource, config: &crate::config::Config) {
    let kid = auth.signer_kid();
    match source {
        KeySource::Generated => {
            tracing::info!(kid, db = %config.db.display(), "generated a new signing key and stored it");
        }
        KeySource::Configured => tracing::info!(kid, "signing with LATCHD_SIGNING_KEY"),
        KeySource::Stored => tracing::info!(kid, "signing with the stored key"),
    }
    if config.auth.pbkdf2_iterations < crate::password::DEFAULT_ITERATIONS {
        tracing::warn!(
            iterations = config.auth.pbkdf2_iterations.get(),
            "LATCHD_PBKDF2_ITERATIONS is below 600000: for tests only"
        );
    }
    if !config.http.cookie_secure {
        tracing::warn!("LATCHD_COOKIE_SECURE=false: refresh cookies work over plain http");
    }
}
