//! The HTTP server: hyper 1 + hyper-util, one route table, no framework. The only module that
//! names hyper or `http` types. [`serve`] and its [`Settings`] are its public items.
//!
//! Handlers are short: extract, call the auth layer, respond. Every error becomes a status
//! code in `error.rs` alone; body limits, timeouts, connection caps, security headers and the
//! access log are each set once (`server.rs`, `conn.rs`, `extract.rs`, `respond.rs`).

mod conn;
mod cors;
mod error;
mod extract;
mod forward;
mod fuzz;
mod handlers;
mod html;
mod pages;
mod portal;
mod proxies;
mod qr;
mod respond;
mod routes;
mod server;
mod site;

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::auth::Authority;

pub use cors::{CorsOrigins, OriginError};
pub use proxies::{AddressRange, RangeError, TrustedProxies};
pub use site::{PublicUrl, Site};

/// What the HTTP layer is configured with. `Default` holds the contract's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Connections one client address (IPv6: one /64) may hold; trusted proxies are exempt.
    pub max_per_address: usize,
    /// A connection with no request in flight for this long is closed.
    pub header_timeout: Duration,
    /// A request body must arrive whole within this long.
    pub body_timeout: Duration,
    /// Whether cookies carry `Secure` (`false` for plain-http development only).
    pub cookie_secure: bool,
    /// Where the pages live and where a browser may be sent back to.
    pub site: Site,
    /// `Max-Age` of the refresh-token cookie (the refresh TTL).
    pub refresh_cookie_max_age_secs: i64,
    /// `Max-Age` of the browser session cookie (the session's absolute lifetime).
    pub session_max_secs: i64,
    /// Origins whose pages may call the JSON API from a browser (CORS), credentials included.
    pub cors_origins: CorsOrigins,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: TrustedProxies,
    /// Clients besides loopback that may read `/metrics`.
    pub metrics_allow: Vec<IpAddr>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_per_address: 128,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            cookie_secure: true,
            site: Site {
                secure: true,
                ..Site::default()
            },
            refresh_cookie_max_age_secs: crate::auth::DEFAULT_REFRESH_TTL_SECS,
            session_max_secs: crate::auth::DEFAULT_SESSION_MAX_SECS,
            cors_origins: CorsOrigins::default(),
            trusted_proxies: TrustedProxies::default(),
            metrics_allow: Vec::new(),
        }
    }
}

/// The request parsers under arbitrary bytes (see `fuzz.rs`); for `latchd::fuzzing`.
#[doc(hidden)]
pub fn fuzz_request_parts(data: &[u8]) {
    fuzz::run(data);
}

/// What every handler shares.
pub(crate) struct App {
    auth: Arc<Authority>,
    settings: Settings,
    /// Per-route request latencies, labelled from the route table.
    times: routes::RequestTimes,
}

/// Serves `auth` on `listener` until `shutdown` resolves; then stops accepting and drains
/// in-flight requests (bounded). Prints `listening on <ip>:<port>` to stderr once it accepts.
///
/// # Errors
/// The listener's local address cannot be read.
pub async fn serve(
    listener: TcpListener,
    auth: Arc<Authority>,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let app = Arc::new(App {
        auth,
        settings,
        times: routes::RequestTimes::new(),
    });
    // The contract's start line: tests and scripts read the port from it.
    eprintln!("listening on {local}");
    tracing::info!(%local, "listening");
    server::run(listener, Arc::clone(&app), shutdown).await;
    Ok(())
}
