//! The accept loop: hyper-util's auto (HTTP/1.1 + HTTP/2) connection builder on tokio, with
//! the connection caps, timeouts, protocol limits, access log and graceful shutdown set once
//! here.
//!
//! Every connection is watched: one that has had no request in flight for the header timeout
//! (it sent nothing, part of a request head or of the HTTP/2 preface, or it is an idle
//! keep-alive or HTTP/2 connection) is shut down gracefully and, a moment later, dropped.
//! A request in flight is bounded by the body deadline in `extract.rs` instead.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};

use super::conn::{Activity, PeerSlot, Peers};
use super::cors;
use super::respond;
use super::routes;
use super::App;

/// In-flight requests get this long to finish after SIGTERM/SIGINT.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long a connection told to shut down gracefully may take before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Concurrent HTTP/2 streams per connection: enough for a browser or an API client, few
/// enough that one connection cannot hold many stalled requests.
const H2_MAX_STREAMS: u32 = 16;
/// HTTP/2 flow-control windows: a stream may send one full body (16 KiB) without waiting, and
/// a connection at most 64 KiB that the server has not read yet.
const H2_STREAM_WINDOW_BYTES: u32 = 16 * 1024;
const H2_CONNECTION_WINDOW_BYTES: u32 = 64 * 1024;
/// HTTP/1 read buffer: bounds a request head (and what a client can make one connection hold)
/// to 64 KiB; hyper's default is about 400 KiB.
const H1_MAX_BUF_BYTES: usize = 64 * 1024;

/// Serves `app` on `listener` until `shutdown` resolves, then drains.
pub(super) async fn run(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let limits = &app.settings;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(H1_MAX_BUF_BYTES)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .initial_stream_window_size(H2_STREAM_WINDOW_BYTES)
        .initial_connection_window_size(H2_CONNECTION_WINDOW_BYTES)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    let builder = Arc::new(builder);
    let peers = Peers::new(limits.max_per_address, limits.trusted_proxies.clone());
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Every connection task holds a sender; the drain waits until all are dropped.
    let (alive, mut drained) = mpsc::channel::<()>(1);
    let (stop, stopping) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        // Wait for a free slot first: past the cap, connections queue in the kernel backlog.
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => permit,
            () = &mut shutdown => break,
        };
        let Ok(permit) = permit else { break };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = peers.admit(peer.ip()) else {
            // Closed at once: this address already holds all the connections it may.
            tracing::debug!(peer = %peer.ip(), "connection refused: per-address cap");
            continue;
        };
        let connection = Connection {
            app: Arc::clone(&app),
            builder: Arc::clone(&builder),
            peer,
            slot: Arc::new(slot),
            header_timeout: limits.header_timeout,
            body_timeout: limits.body_timeout,
            stopping: stopping.clone(),
        };
        let alive = alive.clone();
        tokio::spawn(async move {
            connection.serve(stream).await;
            drop(permit);
            drop(alive);
        });
    }
    drop(listener);
    tracing::info!("shutting down: draining in-flight requests");
    let _ = stop.send(true);
    drop(alive);
    if tokio::time::timeout(SHUTDOWN_GRACE, drained.recv())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace elapsed with requests still in flight");
    }
}

/// One accepted connection and what it needs.
struct Connection {
    app: Arc<App>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    peer: SocketAddr,
    slot: Arc<PeerSlot>,
    header_timeout: Duration,
    body_timeout: Duration,
    stopping: watch::Receiver<bool>,
}

impl Connection {
    async fn serve(mut self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let activity = Activity::new();
        let service = {
            let (app, activity) = (Arc::clone(&self.app), Arc::clone(&activity));
            let info = ConnInfo {
                peer: self.peer,
                slot: Arc::clone(&self.slot),
                body_timeout: self.body_timeout,
            };
            service_fn(move |mut req: Request<Incoming>| {
                let in_flight = activity.begin();
                let peer = info.peer;
                req.extensions_mut().insert(info.clone());
                let app = Arc::clone(&app);
                async move {
                    let response = handle(req, app, peer).await;
                    drop(in_flight);
                    response
                }
            })
        };
        let mut conn = pin!(self.builder.serve_connection(TokioIo::new(stream), service));
        // When the connection was told to shut down (idle, or the server stopping), and so by
        // when it is dropped if it has not closed by itself.
        let mut closing: Option<Instant> = None;
        loop {
            let wake = match (closing, activity.idle_deadline(self.header_timeout)) {
                (Some(at), _) => Some(at + CLOSE_GRACE),
                (None, idle) => idle,
            };
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    // A request is in flight: look again when it ends, bounded by its body
                    // deadline; re-check every header timeout meanwhile.
                    None => tokio::time::sleep(self.header_timeout).await,
                }
            };
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                changed = self.stopping.changed(), if closing.is_none() => {
                    if changed.is_err() || *self.stopping.borrow() {
                        conn.as_mut().graceful_shutdown();
                        // Server shutdown: in-flight requests get the whole shutdown grace.
                        closing = Some(Instant::now() + SHUTDOWN_GRACE);
                    }
                }
                () = sleep => match closing {
                    Some(at) if Instant::now() >= at + CLOSE_GRACE => return, // dropped: closed
                    Some(_) => {}
                    None => {
                        let idle = activity.idle_deadline(self.header_timeout);
                        if idle.is_some_and(|at| Instant::now() >= at) {
                            tracing::debug!(peer = %self.peer.ip(), "closing an idle connection");
                            conn.as_mut().graceful_shutdown();
                            closing = Some(Instant::now());
                        }
                    }
                },
            }
        }
    }
}

/// What a handler may need to know of the connection its request came on.
#[derive(Clone)]
pub(crate) struct ConnInfo {
    /// The TCP peer.
    pub(crate) peer: SocketAddr,
    /// The connection's per-address slot, which holds its share of body memory.
    pub(crate) slot: Arc<PeerSlot>,
    /// How long its request bodies may take to arrive.
    pub(crate) body_timeout: Duration,
}

async fn handle(
    mut req: Request<Incoming>,
    app: Arc<App>,
    peer: SocketAddr,
) -> Result<hyper::Response<respond::Body>, std::convert::Infallible> {
    let started = Instant::now();
    host_from_authority(&mut req);
    let method = req.method().clone();
    // The path only: a query string could carry a token a client put there by mistake.
    let path = req.uri().path().to_owned();
    let route = routes::find(&path);
    let cors = &app.settings.cors_origins;
    let origin = cors.origin_of(&path, req.headers()).cloned();
    let preflight = origin
        .as_ref()
        .filter(|_| cors::is_preflight(req.method(), req.headers()))
        .and_then(|origin| routes::methods_of(route).map(|methods| (origin, methods)))
        .filter(|(_, methods)| cors::asks_for_one_of(req.headers(), methods));
    let mut response = match preflight {
        Some((origin, methods)) => cors::preflight(origin, &methods),
        None => routes::dispatch(route, req, Arc::clone(&app), peer).await,
    };
    if let Some(origin) = &origin {
        cors::allow(&mut response, origin);
    }
    if cors.varies(&path) {
        cors::vary(&mut response);
    }
    respond::secure(&mut response);
    let elapsed = started.elapsed();
    app.times.observe(route, elapsed);
    tracing::info!(
        target: "latchd::access",
        %method,
        path = %respond::log_safe(&path),
        status = response.status().as_u16(),
        micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        peer = %peer.ip(),
        "request"
    );
    Ok(response)
}

/// HTTP/2 names the host in `:authority`, which hyper keeps in the URI, not in a `Host`
/// header (RFC 9113 §8.3.1); it becomes the `Host` header here when there is none, so that the
/// same-origin checks of cookie and form requests see the host over either protocol.
fn host_from_authority(req: &mut Request<Incoming>) {
    if req.version() != hyper::Version::HTTP_2 || req.headers().contains_key(hyper::header::HOST) {
        return;
    }
    let host = req
        .uri()
        .authority()
        .and_then(|a| hyper::header::HeaderValue::from_str(a.as_str()).ok());
    if let Some(host) = host {
        req.headers_mut().insert(hyper::header::HOST, host);
    }
}
