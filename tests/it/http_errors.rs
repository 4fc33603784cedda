//! Every error answer of the public routes, and the headers every answer carries.

use serde_json::json;

use crate::support::{raw, TestServer, PASSWORD};

const BEARER_ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/auth/me"),
    ("GET", "/v1/auth/verify"),
    ("POST", "/v1/auth/logout"),
    ("POST", "/v1/auth/logout-all"),
    ("PUT", "/v1/users/me/password"),
];

#[test]
fn register_refuses_a_taken_email_whatever_its_case_or_spacing() {
    let server = TestServer::start();
    server.register("grace@example.com");
    for email in [
        "grace@example.com",
        "Grace@Example.COM",
        "  grace@example.com  ",
    ] {
        server
            .post_json("/v1/users", &json!({"email": email, "password": PASSWORD}))
            .assert_error(409, "conflict");
    }
}

#[test]
fn register_refuses_bad_input_with_400() {
    let server = TestServer::start();
    let short = server.post_json(
        "/v1/users",
        &json!({"email": "h@example.com", "password": "fourteen chars"}),
    );
    short.assert_error(400, "invalid_request");
    let description = short.json()["error_description"].to_string();
    assert!(
        description.contains("15"),
        "names the minimum: {description}"
    );

    let long = "x".repeat(1025);
    let cases = [
        (
            "1025-byte password",
            json!({"email": "h@example.com", "password": long}),
        ),
        (
            "email without @",
            json!({"email": "not-an-email", "password": PASSWORD}),
        ),
        (
            "email not a string",
            json!({"email": 1, "password": PASSWORD}),
        ),
        (
            "password not a string",
            json!({"email": "h@example.com", "password": true}),
        ),
        ("missing password", json!({"email": "h@example.com"})),
        ("missing email", json!({"password": PASSWORD})),
    ];
    for (name, body) in cases {
        let reply = server.post_json("/v1/users", &body);
        assert_eq!(reply.status, 400, "{name}: {}", reply.body);
        reply.assert_error(400, "invalid_request");
    }
    let too_long = server.post_json(
        "/v1/users",
        &json!({"email": "h@example.com", "password": long}),
    );
    assert!(too_long.body.contains("1024"), "{}", too_long.body);

    let malformed = server.request(
        "POST",
        "/v1/users",
        &[("Content-Type", "application/json")],
        br#"{"email": "h@example.com", "password": "#,
    );
    malformed.assert_error(400, "invalid_request");

    let wrong_type = server.request(
        "POST",
        "/v1/users",
        &[("Content-Type", "text/plain")],
        json!({"email": "h@example.com", "password": PASSWORD})
            .to_string()
            .as_bytes(),
    );
    wrong_type.assert_error(400, "invalid_request");

    // None of it created the user.
    server.register("h@example.com");
}

#[test]
fn register_refuses_an_array_body() {
    // serde's derived structs also accept a positional array; the body must be an object.
    let server = TestServer::start();
    server
        .post_json("/v1/users", &json!(["array@example.com", PASSWORD]))
        .assert_error(400, "invalid_request");
    server
        .post_json(
            "/v1/auth/login",
            &json!({"email": "array@example.com", "password": PASSWORD}),
        )
        .assert_error(401, "invalid_grant");
}

#[test]
fn bodies_over_16_kib_get_413() {
    let server = TestServer::start();
    let padding = "a".repeat(17 * 1024);
    let body = json!({"email": "big@example.com", "password": padding}).to_string();
    for path in ["/v1/users", "/v1/auth/login", "/v1/auth/refresh"] {
        server
            .request(
                "POST",
                path,
                &[("Content-Type", "application/json")],
                body.as_bytes(),
            )
            .assert_error(413, "payload_too_large");
    }

    // The same body chunked, with no Content-Length to refuse it up front.
    let mut chunked = format!(
        "POST /v1/users HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        server.addr()
    )
    .into_bytes();
    for chunk in body.as_bytes().chunks(4096) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    raw(server.addr(), &chunked).assert_error(413, "payload_too_large");
}

#[test]
fn login_failures_read_the_same_for_unknown_email_and_wrong_password() {
    let server = TestServer::start();
    server.register("ivan@example.com");
    let unknown = server.post_json(
        "/v1/auth/login",
        &json!({"email": "nobody@example.com", "password": PASSWORD}),
    );
    let wrong = server.post_json(
        "/v1/auth/login",
        &json!({"email": "ivan@example.com", "password": "a wrong but long password"}),
    );
    unknown.assert_error(401, "invalid_grant");
    wrong.assert_error(401, "invalid_grant");
    assert_eq!(unknown.body, wrong.body);
    assert_eq!(unknown.header("set-cookie"), None);
    assert_eq!(wrong.header("set-cookie"), None);
}

#[test]
fn bearer_routes_without_credentials_get_a_bare_challenge() {
    let server = TestServer::start();
    for (method, path) in BEARER_ROUTES {
        let reply = server.request(method, path, &[], b"");
        assert_eq!(reply.status, 401, "{method} {path}: {}", reply.body);
        assert_eq!(
            reply.headers_named("www-authenticate"),
            ["Bearer"],
            "{method} {path}"
        );
        reply.assert_error(401, "invalid_token");
    }
}

#[test]
fn bearer_routes_refuse_empty_and_garbage_tokens() {
    let server = TestServer::start();
    let cases = [
        ("empty", "Bearer "),
        ("garbage", "Bearer not.a.token"),
        ("one segment", "Bearer abcdef"),
    ];
    for (method, path) in BEARER_ROUTES {
        for (name, value) in cases {
            let reply = server.request(method, path, &[("Authorization", value)], b"");
            reply.assert_error(401, "invalid_token");
            assert_eq!(
                reply.header("www-authenticate"),
                Some(r#"Bearer error="invalid_token""#),
                "{name}: {method} {path}"
            );
        }
    }
}

#[test]
fn the_bearer_scheme_is_case_insensitive_but_query_tokens_are_ignored() {
    let server = TestServer::start();
    let id = server.register("judy@example.com");
    let (access, _) = server.login("judy@example.com");
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let value = format!("{scheme} {access}");
        let reply = server.request("GET", "/v1/auth/verify", &[("Authorization", &value)], b"");
        assert_eq!(reply.status, 200, "{scheme}: {}", reply.body);
        assert_eq!(reply.header("x-auth-subject"), Some(id.as_str()));
    }
    let query = server.get(&format!("/v1/auth/verify?access_token={access}"), None);
    query.assert_error(401, "invalid_token");
    assert_eq!(query.header("www-authenticate"), Some("Bearer"));
    server
        .get(&format!("/v1/auth/me?access_token={access}"), None)
        .assert_error(401, "invalid_token");
}

#[test]
fn unknown_paths_get_404_and_wrong_methods_405() {
    let server = TestServer::start();
    for path in [
        "/nothing",
        "/v1/nothing",
        "/v1/auth/login/extra",
        "/healthz/",
    ] {
        let reply = server.get(path, None);
        reply.assert_error(404, "not_found");
        assert_eq!(reply.header("content-type"), Some("application/json"));
    }
    // RFC 9110 §15.5.6: a 405 names the methods the path serves.
    for (method, path, allow) in [
        ("GET", "/v1/auth/login", "POST"),
        ("GET", "/v1/users", "POST"),
        ("DELETE", "/v1/auth/refresh", "POST"),
        ("POST", "/v1/auth/me", "GET"),
        ("GET", "/v1/users/me/password", "PUT"),
        ("POST", "/healthz", "GET"),
        ("TRACE", "/login", "GET, POST"),
        ("HEAD", "/", "GET"),
    ] {
        let reply = server.request(method, path, &[], b"");
        assert_eq!(reply.status, 405, "{method} {path}: {}", reply.body);
        assert_eq!(reply.header("allow"), Some(allow), "{method} {path}");
        if method != "HEAD" {
            reply.assert_error(405, "invalid_request");
        }
    }
}

#[test]
fn refresh_errors_and_the_cookie_path() {
    let server = TestServer::start();
    server
        .request("POST", "/v1/auth/refresh", &[], b"")
        .assert_error(400, "invalid_request");
    server
        .post_json("/v1/auth/refresh", &json!({}))
        .assert_error(400, "invalid_request");
    server
        .post_json("/v1/auth/refresh", &json!({"refresh_token": 5}))
        .assert_error(400, "invalid_request");
    server.refresh("garbage").assert_error(401, "invalid_grant");
    server.refresh("").assert_error(401, "invalid_grant");

    server.register("kim@example.com");
    let (_, refresh) = server.login("kim@example.com");
    let cookie = format!("theme=dark; refresh_token={refresh}");
    let reply = server.request(
        "POST",
        "/v1/auth/refresh",
        &[("Cookie", &cookie), ("Content-Type", "application/json")],
        b"",
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let (access, next) = reply.pair();
    assert_ne!(next, refresh);
    assert_eq!(server.get("/v1/auth/verify", Some(&access)).status, 200);
    // The cookie carries the rotated token.
    let set = reply.header("set-cookie").expect("set-cookie");
    assert!(set.starts_with(&format!("refresh_token={next};")), "{set}");

    let garbage_cookie = server.request(
        "POST",
        "/v1/auth/refresh",
        &[
            ("Cookie", "refresh_token=garbage"),
            ("Content-Type", "application/json"),
        ],
        b"{}",
    );
    garbage_cookie.assert_error(401, "invalid_grant");
}

#[test]
fn token_answers_are_not_cached_and_set_a_strict_cookie() {
    let server = TestServer::start();
    server.register("leo@example.com");
    let login = server.post_json(
        "/v1/auth/login",
        &json!({"email": "leo@example.com", "password": PASSWORD}),
    );
    assert_eq!(login.status, 200, "{}", login.body);
    let (_, refresh) = login.pair();
    let rotated = server.refresh(&refresh);
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    for (name, reply) in [("login", &login), ("refresh", &rotated)] {
        assert_eq!(reply.header("cache-control"), Some("no-store"), "{name}");
        assert_eq!(reply.header("pragma"), Some("no-cache"), "{name}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/json"),
            "{name}"
        );
        let cookies = reply.headers_named("set-cookie");
        assert_eq!(cookies.len(), 1, "{name}: {cookies:?}");
        let attrs: Vec<&str> = cookies[0].split(';').map(str::trim).collect();
        let (_, token) = reply.pair();
        assert_eq!(attrs[0], format!("refresh_token={token}"), "{name}");
        for want in ["HttpOnly", "SameSite=Strict", "Path=/v1/auth"] {
            assert!(attrs.contains(&want), "{name}: {want} missing in {attrs:?}");
        }
        assert!(!attrs.contains(&"Secure"), "{name}: {attrs:?}");
    }
}

#[test]
fn the_cookie_is_secure_by_default() {
    // An empty value removes LATCHD_COOKIE_SECURE from the environment.
    let server = TestServer::start_with(&[("LATCHD_COOKIE_SECURE", "")]);
    server.register("mia@example.com");
    let login = server.post_json(
        "/v1/auth/login",
        &json!({"email": "mia@example.com", "password": PASSWORD}),
    );
    assert_eq!(login.status, 200, "{}", login.body);
    let cookie = login.header("set-cookie").expect("set-cookie");
    let attrs: Vec<&str> = cookie.split(';').map(str::trim).collect();
    assert!(attrs.contains(&"Secure"), "{attrs:?}");
    assert!(attrs.contains(&"HttpOnly"), "{attrs:?}");
    let (access, _) = login.pair();
    let logout = server.post_auth("/v1/auth/logout", &access);
    assert_eq!(logout.status, 204, "{}", logout.body);
    let cleared = logout.header("set-cookie").expect("set-cookie");
    assert!(
        cleared.split(';').any(|a| a.trim() == "Secure"),
        "{cleared}"
    );
}

#[test]
fn every_answer_has_nosniff_and_no_server_header() {
    let server = TestServer::start();
    server.register("ned@example.com");
    let (access, refresh) = server.login("ned@example.com");
    let replies = [
        server.get("/healthz", None),
        server.get("/nowhere", None),
        server.request("DELETE", "/v1/auth/me", &[], b""),
        server.get("/v1/auth/me", Some(&access)),
        server.get("/v1/auth/verify", Some(&access)),
        server.get("/v1/auth/verify", None),
        server.get("/v1/auth/verify", Some("garbage")),
        server.refresh(&refresh),
        server.post_json(
            "/v1/users",
            &json!({"email": "ned@example.com", "password": PASSWORD}),
        ),
        server.post_json(
            "/v1/auth/login",
            &json!({"email": "x@example.com", "password": PASSWORD}),
        ),
        server.post_auth("/v1/auth/logout", &access),
    ];
    for reply in &replies {
        assert_eq!(
            reply.headers_named("x-content-type-options"),
            ["nosniff"],
            "{} {:?}",
            reply.status,
            reply.headers
        );
        assert_eq!(reply.header("server"), None, "{:?}", reply.headers);
    }
    assert_eq!(replies[0].status, 200);
}

#[test]
fn register_and_password_change_refuse_the_passwords_nist_calls_out() {
    let server = TestServer::start_with(&[("LATCHD_PASSWORD_MIN", "8")]);
    let cases = [
        ("on the common-password list", "Password123", "too common"),
        ("listed, in other case", "POLNIYPIZDEC0211", "too common"),
        (
            "contains the email's local part",
            "margarethe-secret-2026",
            "email",
        ),
        (
            "contains the service name",
            "my latchd password!",
            "service name",
        ),
        ("one repeated character", "aaaaaaaaaaaaaaaa", "repeated"),
        ("a repeated sequence", "abcabcabcabcabcabc", "repeated"),
        ("digits in a row", "123456789012345", "consecutive"),
        ("letters in a row", "abcdefghijklmnop", "consecutive"),
    ];
    for (name, password, reason) in cases {
        let reply = server.post_json(
            "/v1/users",
            &json!({"email": "margarethe@example.com", "password": password}),
        );
        reply.assert_error(400, "invalid_request");
        let why = reply.json()["error_description"].to_string();
        assert!(why.contains(reason), "{name}: {why}");
    }
    // The same rules apply to a new password.
    server.register("margarethe@example.com");
    let (access, _) = server.login("margarethe@example.com");
    server
        .put_json_auth(
            "/v1/users/me/password",
            &access,
            &json!({"current_password": PASSWORD, "new_password": "Password123"}),
        )
        .assert_error(400, "invalid_request");
}
