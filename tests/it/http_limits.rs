//! Connection limits: a client that sends its headers too slowly, or keeps an idle connection
//! open, is disconnected by the server (slowloris); the deadlines here only bound the test.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::TestServer;

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
