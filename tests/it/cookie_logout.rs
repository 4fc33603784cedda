//! `POST /v1/auth/logout` by the refresh cookie alone (a browser whose access token expired):
//! it ends that cookie's session under the rules of a cookie-authenticated request, and each
//! rule refuses on its own.

use crate::support::{self, Reply, TestServer};

fn cookie_logout(server: &TestServer, cookie: &str, extra: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut headers = vec![("Cookie", cookie)];
    headers.extend_from_slice(extra);
    server.request("POST", "/v1/auth/logout", &headers, body)
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

#[test]
fn the_refresh_cookie_alone_ends_its_session() {
    let server = TestServer::start();
    server.register("lou@example.com");
    let (access, refresh) = server.login("lou@example.com");
    let (other_access, other_refresh) = server.login("lou@example.com");
    let origin = format!("http://{}", server.addr());
    let cookie = format!("theme=dark; refresh_token={refresh}");
    let reply = cookie_logout(&server, &cookie, &[JSON, ("Origin", &origin)], b"");
    assert_eq!(reply.status, 204, "{}", reply.body);
    let cleared = reply.header("set-cookie").expect("the cookie is cleared");
    assert!(cleared.starts_with("refresh_token=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    // The session is over: its refresh token and its access tokens.
    server.refresh(&refresh).assert_error(401, "invalid_grant");
    assert_eq!(server.get("/v1/auth/verify", Some(&access)).status, 401);
    // The user's other session lives on.
    assert_eq!(
        server.get("/v1/auth/verify", Some(&other_access)).status,
        200
    );
    assert_eq!(server.refresh(&other_refresh).status, 200);
    // Once more is no error: the cookie is still cleared.
    let again = cookie_logout(&server, &cookie, &[JSON], b"{}");
    assert_eq!(again.status, 204, "{}", again.body);
    // And it holds after a restart (the revocation is on disk before the 204).
    let server = server.restart();
    server.refresh(&refresh).assert_error(401, "invalid_grant");
}

#[test]
fn a_cookie_logout_must_be_json_same_origin_empty_and_unambiguous() {
    let server = TestServer::start();
    server.register("max@example.com");
    let (access, refresh) = server.login("max@example.com");
    let cookie = format!("refresh_token={refresh}");
    let mut cases = support::cross_site_cookie_requests();
    cases.extend::<[support::CookieCase; 3]>([
        ("a body with a member", vec![JSON], br#"{"all":true}"#),
        ("a body that is no object", vec![JSON], b"[]"),
        ("a body that is no JSON", vec![JSON], b"{"),
    ]);
    for (name, headers, body) in cases {
        let reply = cookie_logout(&server, &cookie, &headers, body);
        assert_eq!(reply.status, 400, "{name}: {}", reply.body);
        reply.assert_error(400, "invalid_request");
        assert!(reply.header("set-cookie").is_none(), "{name}");
    }
    // Two refresh cookies (a sibling subdomain tossed one in): which one is meant is unknown.
    let tossed = format!("refresh_token=forged; refresh_token={refresh}");
    cookie_logout(&server, &tossed, &[JSON], b"").assert_error(400, "invalid_request");
    // A cookie latchd never minted ends nothing, and is told so before any other rule.
    cookie_logout(&server, "refresh_token=garbage", &[JSON], b"")
        .assert_error(401, "invalid_grant");
    cookie_logout(&server, "refresh_token=garbage", &[], b"a=b").assert_error(401, "invalid_grant");
    // No cookie and no token: the plain bearer challenge, as before.
    let bare = server.request("POST", "/v1/auth/logout", &[JSON], b"");
    assert_eq!(bare.status, 401, "{}", bare.body);
    assert_eq!(bare.header("www-authenticate"), Some("Bearer"));
    // None of that ended the session.
    assert_eq!(server.get("/v1/auth/verify", Some(&access)).status, 200);
    assert_eq!(server.refresh(&refresh).status, 200);
}

#[test]
fn a_bearer_token_still_decides_when_both_are_sent() {
    let server = TestServer::start();
    server.register("ned@example.com");
    let (_, refresh) = server.login("ned@example.com");
    let (other_access, _) = server.login("ned@example.com");
    // A dead bearer token is refused even beside a good cookie: no falling back to it.
    let cookie = format!("refresh_token={refresh}");
    let reply = cookie_logout(
        &server,
        &cookie,
        &[JSON, ("Authorization", "Bearer not.a.token")],
        b"",
    );
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(
        server.refresh(&refresh).status,
        200,
        "the cookie's session lives"
    );
    // A good bearer token ends its own session, not the cookie's.
    let bearer = format!("Bearer {other_access}");
    let reply = cookie_logout(&server, &cookie, &[("Authorization", &bearer)], b"");
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_eq!(
        server.get("/v1/auth/verify", Some(&other_access)).status,
        401
    );
}

/// Status of a cookie logout sent over HTTP/2 (prior knowledge), where the host is the
/// `:authority` and no `Host` header is sent.
fn h2_cookie_logout(server: &TestServer, refresh: &str, origin: &str) -> u16 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = server.addr();
    runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(conn);
        let request = http::Request::post(format!("http://{addr}/v1/auth/logout"))
            .header("content-type", "application/json")
            .header("origin", origin)
            .header("cookie", format!("refresh_token={refresh}"))
            .body(())
            .unwrap();
        let (response, _) = client.send_request(request, true).unwrap();
        let response = tokio::time::timeout(std::time::Duration::from_secs(10), response).await;
        response.unwrap().unwrap().status().as_u16()
    })
}

#[test]
fn a_same_origin_cookie_logout_over_http2_is_accepted() {
    let server = TestServer::start();
    server.register("hal@example.com");
    let (_, refresh) = server.login("hal@example.com");
    // Another origin is still refused over HTTP/2, and ends nothing.
    assert_eq!(
        h2_cookie_logout(&server, &refresh, "https://evil.test"),
        400
    );
    assert_eq!(server.refresh(&refresh).status, 200);
    let (_, refresh) = server.login("hal@example.com");
    // latchd's own origin, named by `:authority`, passes the Origin rule as over HTTP/1.1.
    let own = format!("http://{}", server.addr());
    assert_eq!(h2_cookie_logout(&server, &refresh, &own), 204);
    server.refresh(&refresh).assert_error(401, "invalid_grant");
}
