//! Connection limits: a client that sends its headers too slowly, or keeps an idle connection
//! open, is disconnected by the server (slowloris); the deadlines here only bound the test.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::{raw, TestServer};

/// The server's header-read timeout is 10 s; the test gives it this long to hang up. hyper's
/// own default is 30 s, so without latchd's setting these tests fail.
const HANG_UP_DEADLINE: Duration = Duration::from_secs(25);

/// Reads until the server closes the connection; returns how long that took, or `None` if
/// the deadline passed with the connection still open.
fn wait_for_close(stream: &mut TcpStream) -> Option<Duration> {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while started.elapsed() < HANG_UP_DEADLINE {
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

#[test]
fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let server = TestServer::start();
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: latchd\r\nX-Slow: ")
        .unwrap();
    let closed = wait_for_close(&mut stream);
    assert!(
        closed.is_some(),
        "connection still open after {HANG_UP_DEADLINE:?}"
    );
    // And the server still serves everyone else.
    assert_eq!(server.get("/healthz", None).status, 200);
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let server = TestServer::start();
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: latchd\r\n\r\n")
        .unwrap();
    // Read the first answer, then stay idle on the kept-alive connection.
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let closed = wait_for_close(&mut stream);
    assert!(
        closed.is_some(),
        "idle connection still open after {HANG_UP_DEADLINE:?}"
    );
}

#[test]
fn connections_past_the_cap_wait_until_a_slot_frees() {
    let server = TestServer::start_with(&[("LATCHD_MAX_CONNECTIONS", "2")]);
    // Two connections hold both slots (their headers never finish).
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr()).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: latchd\r\n")
                .unwrap();
            s
        })
        .collect();
    // Let the accept loop take both before the third arrives.
    std::thread::sleep(Duration::from_millis(300));
    let mut third = TcpStream::connect(server.addr()).unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: latchd\r\nConnection: close\r\n\r\n")
        .unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut buf = [0u8; 256];
    let early = third.read(&mut buf);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "served past the cap: {early:?}"
    );
    // Closing one held connection frees a slot, and the third is answered.
    held.pop();
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let n = third.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

/// Timeouts the denial-of-service tests run with, so they take seconds, not minutes.
const FAST: &[(&str, &str)] = &[("LATCHD_HEADER_TIMEOUT", "1"), ("LATCHD_BODY_TIMEOUT", "1")];
/// How long a new client may wait to be served while the bad sockets are held: the 1 s
/// timeout, the 1 s close grace, and slack for a loaded machine. Without the fix, it waits as
/// long as the bad sockets stay (forever).
const SERVED_WITHIN: Duration = Duration::from_secs(15);

/// A current-thread tokio runtime for the async clients below.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Kinds of socket that used to hold a connection slot forever.
#[derive(Clone, Copy, Debug)]
enum Bad {
    /// Connects and sends nothing.
    Silent,
    /// Sends the first half of the HTTP/2 preface.
    HalfPreface,
    /// HTTP/1.1 request head complete, body promised and stalled after a few bytes.
    StalledBody,
    /// A complete HTTP/2 handshake, then nothing; the client answers the server's PINGs.
    IdleH2,
    /// HTTP/2, a request whose body stalls after a few bytes.
    StalledH2Body,
}

const ALL_BAD: [Bad; 5] = [
    Bad::Silent,
    Bad::HalfPreface,
    Bad::StalledBody,
    Bad::IdleH2,
    Bad::StalledH2Body,
];

/// Opens one bad socket of `kind`; the returned task ends when the server closes it.
async fn open_bad(addr: std::net::SocketAddr, kind: Bad) -> tokio::task::JoinHandle<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    match kind {
        Bad::Silent | Bad::HalfPreface | Bad::StalledBody => {
            let sent: &[u8] = match kind {
                Bad::Silent => b"",
                Bad::HalfPreface => b"PRI * HTTP/2.0\r\n",
                _ => b"POST /v1/users HTTP/1.1\r\nHost: latchd\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\"",
            };
            tcp.write_all(sent).await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                // Until EOF or a reset: an answer (408) may come first.
                while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
            })
        }
        Bad::IdleH2 | Bad::StalledH2Body => {
            let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
            let driver = tokio::spawn(async move {
                let _ = conn.await; // answers PINGs until the server closes
            });
            if matches!(kind, Bad::StalledH2Body) {
                let request = http::Request::post("http://latchd/v1/users")
                    .header("content-type", "application/json")
                    .header("content-length", "100")
                    .body(())
                    .unwrap();
                let (_response, mut body) = client.send_request(request, false).unwrap();
                body.send_data(bytes::Bytes::from_static(b"{\"email\""), false)
                    .unwrap();
                tokio::spawn(async move {
                    let _keep = (client, body);
                    std::future::pending::<()>().await;
                });
            } else {
                tokio::spawn(async move {
                    let _keep = client;
                    std::future::pending::<()>().await;
                });
            }
            driver
        }
    }
}

/// Whether a new client gets `GET /healthz` answered within [`SERVED_WITHIN`]; each attempt
/// has a short timeout, so a slot that frees up is noticed.
async fn served_within(addr: std::net::SocketAddr) -> Option<Duration> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = Instant::now();
    while started.elapsed() < SERVED_WITHIN {
        let attempt = async {
            let mut tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
            tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: latchd\r\nConnection: close\r\n\r\n")
                .await
                .ok()?;
            let mut buf = vec![0u8; 256];
            let n = tcp.read(&mut buf).await.ok()?;
            buf.starts_with(b"HTTP/1.1 200").then_some(n)
        };
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(1500), attempt).await {
            return Some(started.elapsed());
        }
    }
    None
}

fn bad_sockets_do_not_deny_service(kinds: &[Bad], max_connections: usize) {
    let cap = max_connections.to_string();
    let mut env = FAST.to_vec();
    env.push(("LATCHD_MAX_CONNECTIONS", &cap));
    let server = TestServer::start_with(&env);
    let addr = server.addr();
    runtime().block_on(async {
        let mut held = Vec::new();
        for n in 0..max_connections {
            held.push(open_bad(addr, kinds[n % kinds.len()]).await);
        }
        assert!(
            served_within(addr).await.is_some(),
            "{kinds:?} x {max_connections} still deny service after {SERVED_WITHIN:?}"
        );
        // And every bad socket was closed by the server, not by the test.
        for (n, task) in held.into_iter().enumerate() {
            let closed = tokio::time::timeout(SERVED_WITHIN, task).await;
            assert!(
                closed.is_ok(),
                "socket {n} ({:?}) still open",
                kinds[n % kinds.len()]
            );
        }
    });
    assert_eq!(server.get("/healthz", None).status, 200);
}

#[test]
fn silent_sockets_do_not_hold_the_slots() {
    bad_sockets_do_not_deny_service(&[Bad::Silent], 4);
}

#[test]
fn half_an_http2_preface_does_not_hold_a_slot() {
    bad_sockets_do_not_deny_service(&[Bad::HalfPreface], 4);
}

#[test]
fn stalled_http1_bodies_do_not_hold_the_slots() {
    bad_sockets_do_not_deny_service(&[Bad::StalledBody], 4);
}

#[test]
fn idle_http2_connections_that_answer_pings_are_closed() {
    bad_sockets_do_not_deny_service(&[Bad::IdleH2], 4);
}

#[test]
fn stalled_http2_bodies_do_not_hold_the_slots() {
    bad_sockets_do_not_deny_service(&[Bad::StalledH2Body], 4);
}

#[test]
fn many_bad_sockets_of_every_kind_at_once_do_not_deny_service() {
    bad_sockets_do_not_deny_service(&ALL_BAD, 40);
}

#[test]
fn a_stalled_body_is_answered_408_and_the_connection_closed() {
    let server = TestServer::start_with(FAST);
    let answer = raw(
        server.addr(),
        b"POST /v1/users HTTP/1.1\r\nHost: latchd\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\"",
    );
    answer.assert_error(408, "invalid_request");
    assert_eq!(answer.header("connection"), Some("close"));

    // Over HTTP/2 the stream gets the same answer.
    let status = runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(conn);
        let request = http::Request::post("http://latchd/v1/users")
            .header("content-type", "application/json")
            .header("content-length", "100")
            .body(())
            .unwrap();
        let (response, mut body) = client.send_request(request, false).unwrap();
        body.send_data(bytes::Bytes::from_static(b"{\"email\""), false)
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(10), response).await;
        response.unwrap().unwrap().status()
    });
    assert_eq!(status.as_u16(), 408);
}

#[test]
fn one_address_gets_at_most_its_connections_and_others_are_served() {
    let server = TestServer::start_with(&[("LATCHD_MAX_CONNECTIONS_PER_ADDRESS", "2")]);
    let addr = server.addr();
    runtime().block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let held_a = tokio::net::TcpStream::connect(addr).await.unwrap();
        let held_b = tokio::net::TcpStream::connect(addr).await.unwrap();
        // Let the accept loop take both before the third arrives.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = third
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: latchd\r\n\r\n")
            .await;
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0) | Err(_))),
            "a third connection from one address was not closed at once: {read:?}"
        );
        // Another address (127.0.0.2 is loopback too) is served.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut other = socket.connect(addr).await.unwrap();
        other
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: latchd\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        other.read_to_end(&mut answer).await.unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 200"));
        drop((held_a, held_b));
    });
}

#[test]
fn a_trusted_proxy_is_not_held_to_the_per_address_cap() {
    let server = TestServer::start_with(&[
        ("LATCHD_MAX_CONNECTIONS_PER_ADDRESS", "1"),
        ("LATCHD_TRUSTED_PROXIES", "127.0.0.1"),
    ]);
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(server.addr()).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.get("/healthz", None).status, 200);
    drop(held);
}

/// The bound the next test holds the server to: what 50 HTTP/2 connections, each trying to
/// keep 200 streams with nearly complete 16 KiB bodies, may add to its resident memory. Body
/// bytes held at once are capped at 8 MiB per client address (these all come from one);
/// each connection holds at most 16 streams and a 64 KiB flow-control window.
const H2_FLOOD_RSS_BOUND_KIB: u64 = 40 * 1024;

#[test]
fn http2_streams_with_stalled_bodies_stay_within_a_memory_bound() {
    let server = TestServer::start_with(&[("LATCHD_BODY_TIMEOUT", "60")]);
    let addr = server.addr();
    let before = server.rss_kib();
    let peak = runtime().block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (client, conn) = h2::client::handshake(tcp).await.unwrap();
            tokio::spawn(conn);
            for _ in 0..200 {
                let client = client.clone();
                tasks.push(tokio::spawn(async move {
                    // The server allows 16 streams at a time: the rest wait here.
                    let Ok(mut ready) = client.ready().await else {
                        return;
                    };
                    let request = http::Request::post("http://latchd/v1/users")
                        .header("content-type", "application/json")
                        .header("content-length", "16384")
                        .body(())
                        .unwrap();
                    let Ok((response, mut body)) = ready.send_request(request, false) else {
                        return;
                    };
                    let _ = body.send_data(bytes::Bytes::from(vec![b' '; 16383]), false);
                    let _ = response.await; // 503 once the memory share is spent
                    std::future::pending::<()>().await;
                }));
            }
        }
        let mut peak = 0;
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            peak = peak.max(server.rss_kib());
        }
        for task in tasks {
            task.abort();
        }
        peak
    });
    let grown = peak.saturating_sub(before);
    eprintln!("h2 flood: RSS {before} KiB -> peak {peak} KiB (+{grown} KiB)");
    assert!(
        grown <= H2_FLOOD_RSS_BOUND_KIB,
        "RSS grew by {grown} KiB, bound {H2_FLOOD_RSS_BOUND_KIB} KiB"
    );
    assert_eq!(server.get("/healthz", None).status, 200);
}
