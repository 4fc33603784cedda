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
use crate::store::{self, Store};
use crate::time::UnixTime;

/// How often the background sweeper deletes expired rows.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Why the storage backend could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// The PostgreSQL database could not be reached or used.
    Database(StoreError),
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
            Self::Database(e) => write!(f, "cannot use the PostgreSQL database: {e}"),
        }
    }
}

impl std::error::Error for OpenError {}

/// Opens the storage backend at `db` (the redb file) with `settings`, creating it only if
/// `create`.
///
/// # Errors
/// [`OpenError`]: locked by a running server, missing, or unreadable.
pub fn open_storage(
    db: &Path,
    settings: store::Settings,
    create: bool,
) -> Result<Arc<dyn Storage>, OpenError> {
    if !create && !db.exists() {
        return Err(OpenError::Missing(db.to_owned()));
    }
    match Store::open_with(db, settings) {
        Ok(store) => Ok(Arc::new(store)),
        Err(StoreError::Locked) => Err(OpenError::Locked(db.to_owned())),
        Err(e) => Err(OpenError::Failed(db.to_owned(), e)),
    }
}

/// Opens the backend `config` names: the PostgreSQL database of `LATCHD_DATABASE_URL` when it
/// is set (connecting, migrating, loading the view; `create` does not apply), else the redb
/// file. Call it inside the runtime that will run the server: the PostgreSQL backend's change
/// feed is a task of it.
///
/// # Errors
/// [`OpenError`].
pub async fn open_configured(
    config: &crate::config::Config,
    create: bool,
) -> Result<Arc<dyn Storage>, OpenError> {
    match &config.database {
        #[cfg(feature = "postgres")]
        Some(database) => {
            let settings = store::pg::Settings {
                url: database.url.clone(),
                pool_size: database.pool_size,
            };
            let store = store::pg::PgStore::connect(&settings)
                .await
                .map_err(OpenError::Database)?;
            Ok(Arc::new(store))
        }
        // Refused by the configuration already; kept so this build still answers.
        #[cfg(not(feature = "postgres"))]
        Some(_) => Err(OpenError::Database(StoreError::Unsupported(
            "this latchd was built without PostgreSQL",
        ))),
        None => open_storage(&config.db, config.store, create),
    }
}

/// Reloads `auth`'s keyring whenever the backend says the stored signing keys changed behind
/// this process (another node rotated); returns at once for a backend that never does. Spawn
/// it; abort it at shutdown.
///
/// It reloads once at once, too: a change applied between the keyring's start (read in
/// [`Authority::open`]) and this task subscribing raised no signal it could see. Two nodes
/// started together on an empty database each store a first key in that window; without this
/// each went on signing with its own key and neither accepted the other's tokens.
pub async fn follow_signing_keys(auth: Arc<Authority>) {
    let Some(mut changed) = auth.storage_keys_changed() else {
        return;
    };
    changed.mark_changed();
    while changed.changed().await.is_ok() {
        // A reload that fails (the database unreachable that moment) is tried again until it
        // works: a retired key must not stay live here until the next rotation.
        let mut pause = Duration::from_millis(200);
        loop {
            match auth.reload_signing_keys(UnixTime::now()).await {
                Ok(()) => {
                    tracing::info!(kid = auth.signer_kid(), "signing keys reloaded");
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "reloading the signing keys failed; retrying");
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }
}

/// A future that resolves on SIGTERM or SIGINT. The handlers are installed by this call (made
/// inside the runtime, before the server says it listens), not when the future is first
/// polled: a signal sent as soon as the address is printed must not meet the default action,
/// which would kill the process without draining.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate()).ok();
        let interrupt = signal(SignalKind::interrupt()).ok();
        async move {
            let recv = |sig: Option<tokio::signal::unix::Signal>| async move {
                match sig {
                    Some(mut sig) => drop(sig.recv().await),
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = recv(term) => {}
                () = recv(interrupt) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
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
