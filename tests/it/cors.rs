//! CORS for a single-page app on another origin: `LATCHD_CORS_ORIGINS` answers preflights and
//! adds the CORS headers to API answers for the listed origins only, credentials included;
//! any other origin gets none, and without the setting nothing changes.

use serde_json::json;

use crate::support::{Reply, TestServer, PASSWORD};

const APP: &str = "https://app.example.com";
const EVIL: &str = "https://evil.example.net";

fn server() -> TestServer {
    TestServer::start_with(&[(
        "LATCHD_CORS_ORIGINS",
        "https://app.example.com, http://localhost:5173",
    )])
}

fn preflight(server: &TestServer, path: &str, origin: &str, method: &str) -> Reply {
    server.request(
        "OPTIONS",
        path,
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", method),
            (
                "Access-Control-Request-Headers",
                "authorization, content-type",
            ),
        ],
        b"",
    )
}

fn login_from(server: &TestServer, origin: &str) -> Reply {
    let body = json!({"email": "spa@example.com", "password": PASSWORD}).to_string();
    server.request(
        "POST",
        "/v1/auth/login",
        &[("Origin", origin), ("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

/// Every `Access-Control-*` header of an answer.
fn cors_headers(reply: &Reply) -> Vec<&(String, String)> {
    reply
        .headers
        .iter()
        .filter(|(name, _)| name.starts_with("access-control-"))
        .collect()
}

fn assert_allows(reply: &Reply, origin: &str) {
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some(origin),
        "{reply:?}"
    );
    assert_eq!(
        reply.header("access-control-allow-credentials"),
        Some("true")
    );
    assert!(reply.headers_named("vary").contains(&"Origin"), "{reply:?}");
}

#[test]
fn a_preflight_from_an_allowed_origin_is_answered() {
    let server = server();
    let reply = preflight(&server, "/v1/auth/login", APP, "POST");
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_allows(&reply, APP);
    assert_eq!(reply.header("access-control-allow-methods"), Some("POST"));
    let allowed = reply
        .header("access-control-allow-headers")
        .expect("headers");
    for header in ["Authorization", "Content-Type"] {
        assert!(allowed.contains(header), "{allowed}");
    }
    assert_eq!(reply.header("access-control-max-age"), Some("600"));
    // Each route lists its own methods; the second origin is allowed too.
    let me = preflight(
        &server,
        "/v1/users/me/totp",
        "http://localhost:5173",
        "DELETE",
    );
    assert_eq!(me.status, 204, "{}", me.body);
    assert_allows(&me, "http://localhost:5173");
    assert_eq!(
        me.header("access-control-allow-methods"),
        Some("POST, DELETE")
    );
    // An unknown API path is still 404.
    assert_eq!(preflight(&server, "/v1/nothing", APP, "GET").status, 404);
}

#[test]
fn a_preflight_from_a_refused_origin_gets_no_cors_headers() {
    let server = server();
    for origin in [
        EVIL,
        "https://app.example.com.evil.example.net",
        "http://app.example.com",
        "null",
    ] {
        let reply = preflight(&server, "/v1/auth/login", origin, "POST");
        assert_eq!(reply.status, 405, "{origin}: {}", reply.body);
        assert_eq!(reply.header("allow"), Some("POST"));
        assert!(cors_headers(&reply).is_empty(), "{origin}: {reply:?}");
    }
}

#[test]
fn api_answers_to_an_allowed_origin_carry_cors_headers_with_and_without_credentials() {
    let server = server();
    server.register("spa@example.com");
    // Without credentials: the page can read the 401 and its challenge.
    let anonymous = server.request("GET", "/v1/auth/me", &[("Origin", APP)], b"");
    assert_eq!(anonymous.status, 401);
    assert_allows(&anonymous, APP);
    let exposed = anonymous
        .header("access-control-expose-headers")
        .expect("exposed headers");
    assert!(exposed.contains("WWW-Authenticate"), "{exposed}");
    // With credentials: a login sets the cookie, a bearer call reads the account.
    let login = login_from(&server, APP);
    assert_eq!(login.status, 200, "{}", login.body);
    assert_allows(&login, APP);
    let (access, refresh) = login.pair();
    let bearer = format!("Bearer {access}");
    let me = server.request(
        "GET",
        "/v1/auth/me",
        &[("Origin", APP), ("Authorization", &bearer)],
        b"",
    );
    assert_eq!(me.status, 200, "{}", me.body);
    assert_allows(&me, APP);
    // The cookie flow: an allowed origin passes the Origin rule of a cookie refresh and logout.
    let cookie_call = |path: &str, origin: &str, token: &str| {
        let cookie = format!("refresh_token={token}");
        server.request(
            "POST",
            path,
            &[
                ("Origin", origin),
                ("Content-Type", "application/json"),
                ("Cookie", &cookie),
            ],
            b"",
        )
    };
    cookie_call("/v1/auth/refresh", EVIL, &refresh).assert_error(400, "invalid_request");
    cookie_call("/v1/auth/logout", EVIL, &refresh).assert_error(400, "invalid_request");
    let rotated = cookie_call("/v1/auth/refresh", APP, &refresh);
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    assert_allows(&rotated, APP);
    let (_, next) = rotated.pair();
    let logout = cookie_call("/v1/auth/logout", APP, &next);
    assert_eq!(logout.status, 204, "{}", logout.body);
    assert_allows(&logout, APP);
    server.refresh(&next).assert_error(401, "invalid_grant");
}

#[test]
fn answers_to_a_refused_origin_and_pages_carry_no_cors_headers() {
    let server = server();
    server.register("spa@example.com");
    // The server still answers (CORS is the browser's to enforce), without letting the page read it.
    let login = login_from(&server, EVIL);
    assert_eq!(login.status, 200, "{}", login.body);
    assert!(cors_headers(&login).is_empty(), "{login:?}");
    // The answer depends on Origin, so caches must not hand it to another origin.
    assert!(login.headers_named("vary").contains(&"Origin"), "{login:?}");
    let (access, _) = login.pair();
    let bearer = format!("Bearer {access}");
    let me = server.request(
        "GET",
        "/v1/auth/me",
        &[("Origin", EVIL), ("Authorization", &bearer)],
        b"",
    );
    assert_eq!(me.status, 200);
    assert!(cors_headers(&me).is_empty(), "{me:?}");
    // Outside the API (pages, health, metrics) even an allowed origin gets none.
    for path in ["/login", "/healthz", "/openapi.json"] {
        let reply = server.request("GET", path, &[("Origin", APP)], b"");
        assert_eq!(reply.status, 200, "{path}");
        assert!(cors_headers(&reply).is_empty(), "{path}: {reply:?}");
    }
}

#[test]
fn without_the_setting_nothing_changes() {
    let server = TestServer::start();
    let reply = preflight(&server, "/v1/auth/login", APP, "POST");
    assert_eq!(reply.status, 405, "{}", reply.body);
    assert_eq!(reply.header("allow"), Some("POST"));
    assert!(cors_headers(&reply).is_empty(), "{reply:?}");
    let me = server.request("GET", "/v1/auth/me", &[("Origin", APP)], b"");
    assert_eq!(me.status, 401);
    assert!(cors_headers(&me).is_empty(), "{me:?}");
    assert!(!me.headers_named("vary").contains(&"Origin"), "{me:?}");
}

#[test]
fn forward_auth_answers_carry_no_cors_headers() {
    // A proxy forwards the protected app's request, Origin included, and Traefik or Caddy hand
    // a 401 or redirect from here to the browser as that app's answer.
    let server = server();
    server.register("spa@example.com");
    let (access, _) = server.login("spa@example.com");
    let bearer = format!("Bearer {access}");
    let denied = server.request("GET", "/v1/auth/verify", &[("Origin", APP)], b"");
    let allowed = server.request(
        "GET",
        "/v1/auth/verify",
        &[("Origin", APP), ("Authorization", &bearer)],
        b"",
    );
    let preflight = preflight(&server, "/v1/auth/verify", APP, "GET");
    assert_eq!(denied.status, 401, "{}", denied.body);
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    assert_ne!(preflight.status, 204, "{preflight:?}");
    for reply in [&denied, &allowed, &preflight] {
        assert!(cors_headers(reply).is_empty(), "{reply:?}");
        assert!(
            !reply.headers_named("vary").contains(&"Origin"),
            "{reply:?}"
        );
    }
}

#[test]
fn a_preflight_for_a_method_the_route_does_not_serve_is_405() {
    let server = server();
    for (path, method) in [
        ("/v1/auth/login", "DELETE"),
        ("/v1/auth/login", "post"),
        ("/v1/users/me/sessions", "DELETE"),
    ] {
        let reply = preflight(&server, path, APP, method);
        assert_eq!(reply.status, 405, "{path} {method}: {reply:?}");
        assert!(reply.header("access-control-allow-methods").is_none());
        // Still the allowed origin's answer: readable, and keyed on Origin.
        assert_allows(&reply, APP);
    }
}
