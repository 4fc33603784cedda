//! The HTTP server: hyper 1 + hyper-util, a hand-written router, no framework. The only
//! module that names hyper or `http` types; [`serve`] is its one public item.

mod conn;
mod error;
mod extract;
mod handlers;
mod hashing;
mod respond;
mod router;
mod server;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::auth::Authority;
use crate::config::Config;
use crate::time::UnixTime;

/// How often the background sweeper deletes expired rows.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// What every handler shares.
pub(crate) struct App {
    auth: Authority,
    hash_pool: hashing::HashPool,
    cookie: respond::CookiePolicy,
    open_registration: bool,
    /// Addresses besides loopback that may read `/metrics`.
    metrics_allow: Vec<IpAddr>,
    /// `LATCHD_TRUSTED_PROXIES`, canonical (IPv4-mapped IPv6 as IPv4).
    trusted_proxies: Vec<IpAddr>,
}

/// Binds `config.listen`, prints `listening on <ip>:<port>` to stderr, and serves until
/// SIGTERM or SIGINT; then stops accepting, drains in-flight requests (bounded) and returns,
/// dropping the authority and with it the database.
///
/// # Errors
/// The listen address cannot be bound.
pub async fn serve(config: &Config, auth: Authority) -> std::io::Result<()> {
    let listener = TcpListener::bind(config.listen).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot listen on {}: {e}", config.listen))
    })?;
    let local = listener.local_addr()?;
    let app = Arc::new(App {
        auth,
        hash_pool: hashing::HashPool::start(config.hash_concurrency, config.hash_priority)?,
        cookie: respond::CookiePolicy {
            secure: config.cookie_secure,
            max_age_secs: config.refresh_ttl_secs,
        },
        open_registration: config.open_registration,
        metrics_allow: config.metrics_allow.clone(),
        trusted_proxies: config
            .trusted_proxies
            .iter()
            .map(IpAddr::to_canonical)
            .collect(),
    });
    let sweeper = tokio::spawn(sweep_forever(Arc::clone(&app), config.access_ttl_secs));
    // The contract's start line: tests and scripts read the port from it.
    eprintln!("listening on {local}");
    tracing::info!(%local, "listening");
    let limits = server::Limits {
        max_connections: config.max_connections,
        max_per_address: config.max_connections_per_address,
        header_timeout: Duration::from_secs(config.header_timeout_secs),
        body_timeout: Duration::from_secs(config.body_timeout_secs),
    };
    server::run(listener, Arc::clone(&app), limits, shutdown_signal()).await;
    sweeper.abort();
    // Hashing jobs still queued hold the app (and with it the database). They finish or skip
    // quickly once their connections are gone; wait for them, bounded, so the database is
    // dropped and closed before the process exits.
    let deadline = tokio::time::Instant::now() + server::SHUTDOWN_GRACE;
    while Arc::strong_count(&app) > 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(app);
    Ok(())
}

/// Deletes expired blacklist rows, ended families and retired keys once a minute, keeping
/// families for one access TTL after they end so their access tokens never outlive them.
async fn sweep_forever(app: Arc<App>, retain_secs: i64) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        tick.tick().await;
        let app = Arc::clone(&app);
        let swept = tokio::task::spawn_blocking(move || {
            app.auth.store().sweep_expired(UnixTime::now(), retain_secs)
        })
        .await;
        match swept {
            Ok(Ok(sweep)) if sweep != crate::store::Sweep::default() => {
                tracing::info!(
                    blacklist = sweep.blacklist,
                    families = sweep.families,
                    keys = sweep.keys,
                    "swept expired rows"
                );
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "sweep failed"),
            Err(e) => tracing::error!(error = %e, "sweep task failed"),
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
