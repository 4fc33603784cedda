//! Load-test baseline: a bare hyper 1 server that answers `GET /v1/auth/verify` with an empty
//! 200 and anything else with 404. It runs latchd's HTTP stack (hyper-util's auto builder with
//! `TokioExecutor`, a tokio multi-thread runtime, the same HTTP/1.1 and HTTP/2 settings) and
//! nothing else, so `benches/load/verify.sh` can state latchd's verify throughput as a fraction
//! of what that stack alone delivers. Knows no latchd code: no tokens, no store, no router.
//!
//! Listens on `LOAD_LISTEN` (default `127.0.0.1:0`) and prints `listening on <addr>` to stderr.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

fn main() -> std::io::Result<()> {
    let listen = std::env::var("LOAD_LISTEN").unwrap_or_else(|_| DEFAULT_LISTEN.to_owned());
    let listen: SocketAddr = listen.parse().map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("LOAD_LISTEN {listen:?}: {e}"),
        )
    })?;
    // Built like latchd's main.rs, so both servers get one worker per available core.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(listen))
}

/// Accepts until the process is killed; the load script stops it with SIGTERM.
async fn serve(listen: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    eprintln!("listening on {}", listener.local_addr()?);
    // The settings of latchd's src/http/server.rs, minus the connection cap and access log.
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
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = builder
            .serve_connection(TokioIo::new(stream), service_fn(answer))
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

/// The whole "application": no work beyond matching the route.
#[allow(clippy::needless_pass_by_value)] // service_fn hands each request over by value
fn answer(req: Request<Incoming>) -> Ready<Result<Response<Empty<Bytes>>, Infallible>> {
    let status = if req.method() == Method::GET && req.uri().path() == "/v1/auth/verify" {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    let mut response = Response::new(Empty::new());
    *response.status_mut() = status;
    ready(Ok(response))
}

const DEFAULT_LISTEN: &str = "127.0.0.1:0";
/// latchd's `HEADER_READ_TIMEOUT`, so both servers run the same hyper configuration.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
