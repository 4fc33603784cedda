//! The accept loop: hyper-util's auto (HTTP/1.1 + HTTP/2) connection builder on tokio, with
//! the connection cap, header-read timeout, access log and graceful shutdown set once here.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::respond;
use super::router;
use super::App;

/// A client must send a request's headers within this time (slowloris).
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// In-flight requests get this long to finish after SIGTERM/SIGINT.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` resolves, then drains.
pub(super) async fn run(
    listener: TcpListener,
    app: Arc<App>,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(max_connections));
    tokio::pin!(shutdown);
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
        let _ = stream.set_nodelay(true);
        let app = Arc::clone(&app);
        let service = service_fn(move |req| handle(req, Arc::clone(&app), peer));
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!("shutting down: draining in-flight requests");
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace elapsed with requests still in flight");
    }
}

async fn handle(
    req: Request<Incoming>,
    app: Arc<App>,
    peer: SocketAddr,
) -> Result<hyper::Response<respond::Body>, std::convert::Infallible> {
    let started = Instant::now();
    let method = req.method().clone();
    // The path only: a query string could carry a token a client put there by mistake.
    let path = req.uri().path().to_owned();
    let mut response = router::route(req, Arc::clone(&app), peer).await;
    respond::secure(&mut response);
    app.auth
        .metrics()
        .observe_request(router::route_of(&path), started.elapsed());
    tracing::info!(
        target: "latchd::access",
        %method,
        path = %path,
        status = response.status().as_u16(),
        micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        peer = %peer.ip(),
        "request"
    );
    Ok(response)
}
