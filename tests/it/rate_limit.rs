//! The login rate limiter through HTTP: per account, per client address, and which address
//! counts (the TCP peer; `X-Forwarded-For` only from `LATCHD_TRUSTED_PROXIES`).

use serde_json::json;

use crate::support::{Reply, TestServer, PASSWORD};

const WRONG: &str = "not the password at all, sorry";

fn login(server: &TestServer, email: &str, password: &str, forwarded: Option<&str>) -> Reply {
    let body = json!({"email": email, "password": password}).to_string();
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(xff) = forwarded {
        headers.push(("X-Forwarded-For", xff));
    }
    server.request("POST", "/v1/auth/login", &headers, body.as_bytes())
}

/// Asserts a 429 `rate_limited` with a positive whole `Retry-After`; returns it.
fn assert_rate_limited(reply: &Reply) -> u64 {
    reply.assert_error(429, "rate_limited");
    let retry_after = reply.header("retry-after").expect("Retry-After header");
    let secs: u64 = retry_after
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After {retry_after:?} is not whole seconds"));
    assert!(secs > 0, "Retry-After {secs}");
    secs
}

#[test]
fn the_sixth_failed_login_of_an_account_gets_429_with_retry_after() {
    let server = TestServer::start();
    server.register("ada@example.com");
    for n in 1..=5 {
        let reply = login(&server, "ada@example.com", WRONG, None);
        assert_eq!(reply.status, 401, "attempt {n}: {}", reply.body);
        reply.assert_error(401, "invalid_grant");
    }
    let refused = login(&server, "ada@example.com", WRONG, None);
    let secs = assert_rate_limited(&refused);
    assert!(secs <= 2, "the first delay is 1 s: Retry-After {secs}");
    // Refused before the password is even looked at: the right one is refused too.
    assert_rate_limited(&login(&server, "Ada@Example.com", PASSWORD, None));
    // Another account from the same address is not affected.
    server.register("bob@example.com");
    assert_eq!(
        login(&server, "bob@example.com", PASSWORD, None).status,
        200
    );
}

#[test]
fn an_unknown_email_is_limited_exactly_like_a_registered_one() {
    let server = TestServer::start();
    server.register("ada@example.com");
    for email in ["ada@example.com", "nobody@example.com"] {
        for _ in 0..5 {
            login(&server, email, WRONG, None).assert_error(401, "invalid_grant");
        }
    }
    let known = login(&server, "ada@example.com", WRONG, None);
    let unknown = login(&server, "nobody@example.com", WRONG, None);
    assert_rate_limited(&known);
    assert_rate_limited(&unknown);
    assert_eq!(known.body, unknown.body, "the 429 must not tell them apart");
}

#[test]
fn the_per_address_limit_spans_emails() {
    let server = TestServer::start_with(&[("LATCHD_LOGIN_ADDRESS_PER_MIN", "3")]);
    server.register("ada@example.com");
    for n in 0..3 {
        let email = format!("guess{n}@example.com");
        login(&server, &email, WRONG, None).assert_error(401, "invalid_grant");
    }
    let secs = assert_rate_limited(&login(&server, "guess9@example.com", WRONG, None));
    assert!(
        secs <= 20,
        "3 a minute refill one per 20 s: Retry-After {secs}"
    );
    assert_rate_limited(&login(&server, "ada@example.com", PASSWORD, None));
}

#[test]
fn x_forwarded_for_is_ignored_without_trusted_proxies() {
    let server = TestServer::start_with(&[("LATCHD_LOGIN_ADDRESS_PER_MIN", "3")]);
    for n in 0..3 {
        let email = format!("guess{n}@example.com");
        let xff = format!("198.51.100.{n}");
        login(&server, &email, WRONG, Some(&xff)).assert_error(401, "invalid_grant");
    }
    for n in 3..10 {
        let email = format!("guess{n}@example.com");
        let xff = format!("198.51.100.{n}");
        assert_rate_limited(&login(&server, &email, WRONG, Some(&xff)));
    }
}

#[test]
fn x_forwarded_for_is_honoured_from_a_trusted_proxy() {
    let server = TestServer::start_with(&[
        ("LATCHD_LOGIN_ADDRESS_PER_MIN", "3"),
        ("LATCHD_TRUSTED_PROXIES", "127.0.0.1"),
    ]);
    let a = Some("198.51.100.1");
    for n in 0..3 {
        let email = format!("guess{n}@example.com");
        login(&server, &email, WRONG, a).assert_error(401, "invalid_grant");
    }
    assert_rate_limited(&login(&server, "guess9@example.com", WRONG, a));
    // Other clients behind the proxy have their own buckets ...
    for xff in ["198.51.100.2", "198.51.100.3", "2001:db8::1"] {
        login(&server, "other@example.com", WRONG, Some(xff)).assert_error(401, "invalid_grant");
    }
    // ... and only the right-most entry counts: a client cannot escape by prepending one.
    assert_rate_limited(&login(
        &server,
        "guess9@example.com",
        WRONG,
        Some("203.0.113.77, 198.51.100.1"),
    ));
    // The proxy's own requests (no header) are keyed by the proxy.
    login(&server, "guess9@example.com", WRONG, None).assert_error(401, "invalid_grant");
}

#[test]
fn a_proxy_inside_a_trusted_range_is_believed_and_one_outside_is_not() {
    let inside = TestServer::start_with(&[
        ("LATCHD_LOGIN_ADDRESS_PER_MIN", "3"),
        ("LATCHD_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.0/8"),
    ]);
    for n in 0..3 {
        let email = format!("guess{n}@example.com");
        login(&inside, &email, WRONG, Some("198.51.100.1")).assert_error(401, "invalid_grant");
    }
    assert_rate_limited(&login(
        &inside,
        "g@example.com",
        WRONG,
        Some("198.51.100.1"),
    ));
    // One attacker's failures do not lock out the others behind the same proxy.
    login(&inside, "g@example.com", WRONG, Some("198.51.100.2")).assert_error(401, "invalid_grant");

    // 127.0.0.1 is outside 10.0.0.0/8: its X-Forwarded-For is the client's forgery, and every
    // request counts against the peer.
    let outside = TestServer::start_with(&[
        ("LATCHD_LOGIN_ADDRESS_PER_MIN", "3"),
        ("LATCHD_TRUSTED_PROXIES", "10.0.0.0/8"),
    ]);
    for n in 0..3 {
        let xff = format!("198.51.100.{n}");
        let email = format!("guess{n}@example.com");
        login(&outside, &email, WRONG, Some(&xff)).assert_error(401, "invalid_grant");
    }
    assert_rate_limited(&login(
        &outside,
        "g@example.com",
        WRONG,
        Some("198.51.100.9"),
    ));
}

#[test]
fn guessing_the_current_password_with_a_stolen_token_is_limited_like_logins() {
    let server = TestServer::start();
    server.register("gina@example.com");
    let (access, _) = server.login("gina@example.com");
    let guess = |n: usize| {
        server.put_json_auth(
            "/v1/users/me/password",
            &access,
            &serde_json::json!({
                "current_password": format!("wrong guess number {n}"),
                "new_password": "a brand new long passphrase",
            }),
        )
    };
    for n in 0..5 {
        guess(n).assert_error(400, "invalid_request");
    }
    let limited = guess(5);
    limited.assert_error(429, "rate_limited");
    assert!(limited
        .header("retry-after")
        .and_then(|s| s.parse::<u64>().ok())
        .is_some_and(|secs| secs > 0));
}
