//! What the outside security review found, each closed: hashing floods from one address,
//! unbounded sessions per user, cross-site and ambiguous cookie refreshes, forged log lines,
//! forward-auth methods, unreadable proxy headers, the last admin, and id spellings.

use std::time::Duration;

use serde_json::json;

use crate::support::{self, add_user, db_in, raw, run, Reply, TestServer, PASSWORD};

fn post_json_from(server: &TestServer, path: &str, body: &serde_json::Value, xff: &str) -> Reply {
    server.request(
        "POST",
        path,
        &[
            ("Content-Type", "application/json"),
            ("X-Forwarded-For", xff),
        ],
        body.to_string().as_bytes(),
    )
}

fn assert_429(reply: &Reply) {
    reply.assert_error(429, "rate_limited");
    let secs: u64 = reply
        .header("retry-after")
        .and_then(|s| s.parse().ok())
        .expect("Retry-After in whole seconds");
    assert!(secs > 0);
}

#[test]
fn registrations_from_one_address_are_limited_before_hashing() {
    // 3 a minute: a burst of 6, then one per 20 s.
    let server = TestServer::start_with(&[
        ("LATCHD_HASH_ADDRESS_PER_MIN", "3"),
        ("LATCHD_TRUSTED_PROXIES", "127.0.0.1"),
    ]);
    let flood = "198.51.100.7";
    for n in 0..6 {
        let body = json!({"email": format!("bot{n}@example.com"), "password": PASSWORD});
        let reply = post_json_from(&server, "/v1/users", &body, flood);
        assert_eq!(reply.status, 201, "registration {n}: {}", reply.body);
    }
    let body = json!({"email": "bot6@example.com", "password": PASSWORD});
    assert_429(&post_json_from(&server, "/v1/users", &body, flood));
    // Nothing was stored for the refused one, and another address registers as usual.
    let reply = post_json_from(&server, "/v1/users", &body, "198.51.100.8");
    assert_eq!(reply.status, 201, "{}", reply.body);
}

#[test]
fn successful_logins_and_password_changes_count_against_the_hashing_budget() {
    let server = TestServer::start_with(&[("LATCHD_HASH_ADDRESS_PER_MIN", "3")]);
    server.register("own@example.com"); // 1 of the burst of 6
    let (access, _) = server.login("own@example.com");
    for n in 0..4 {
        let reply = server.post_json(
            "/v1/auth/login",
            &json!({"email": "own@example.com", "password": PASSWORD}),
        );
        assert_eq!(reply.status, 200, "login {n}: {}", reply.body);
    }
    let creds = json!({"email": "own@example.com", "password": PASSWORD});
    assert_429(&server.post_json("/v1/auth/login", &creds));
    let change = server.put_json_auth(
        "/v1/users/me/password",
        &access,
        &json!({"current_password": PASSWORD, "new_password": "another long passphrase here"}),
    );
    assert_429(&change);
    // Refused before anything was written: the old password still is the password.
    let restarted = server.restart();
    restarted.login("own@example.com");
}

#[test]
fn a_new_session_past_the_cap_revokes_the_oldest() {
    let server = TestServer::start_with(&[("LATCHD_MAX_SESSIONS_PER_USER", "3")]);
    server.register("many@example.com");
    let sessions: Vec<(String, String)> =
        (0..4).map(|_| server.login("many@example.com")).collect();
    let (oldest_access, oldest_refresh) = &sessions[0];
    server
        .get("/v1/auth/verify", Some(oldest_access))
        .assert_error(401, "invalid_token");
    server
        .refresh(oldest_refresh)
        .assert_error(401, "invalid_grant");
    for (access, refresh) in &sessions[1..] {
        assert_eq!(server.get("/v1/auth/verify", Some(access)).status, 200);
        assert_eq!(server.refresh(refresh).status, 200);
    }
}

fn cookie_refresh(
    server: &TestServer,
    refresh: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let cookie = format!("refresh_token={refresh}");
    let mut headers = vec![("Cookie", cookie.as_str())];
    headers.extend_from_slice(extra);
    server.request("POST", "/v1/auth/refresh", &headers, body)
}

#[test]
fn a_cookie_refresh_must_be_json_same_origin_and_unambiguous() {
    let server = TestServer::start();
    server.register("kit@example.com");
    let (_, refresh) = server.login("kit@example.com");
    let host = format!("{}", server.addr());
    for (name, headers, body) in support::cross_site_cookie_requests() {
        let reply = cookie_refresh(&server, &refresh, &headers, body);
        assert_eq!(reply.status, 400, "{name}: {}", reply.body);
        reply.assert_error(400, "invalid_request");
    }
    // Two cookies, as a sibling subdomain can toss in: refused even as JSON.
    let tossed = format!("refresh_token=forged; refresh_token={refresh}");
    server
        .request(
            "POST",
            "/v1/auth/refresh",
            &[("Cookie", &tossed), ("Content-Type", "application/json")],
            b"",
        )
        .assert_error(400, "invalid_request");
    // None of that rotated the token: the same-origin JSON request does.
    let origin = format!("http://{host}");
    let ok = cookie_refresh(
        &server,
        &refresh,
        &[("Content-Type", "application/json"), ("Origin", &origin)],
        b"{}",
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    // A token in the body is not ambient authority: no Origin rule for it.
    let (_, next) = ok.pair();
    let body = json!({"refresh_token": next}).to_string();
    let reply = server.request(
        "POST",
        "/v1/auth/refresh",
        &[
            ("Content-Type", "application/json"),
            ("Origin", "https://app.example.test"),
        ],
        body.as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[test]
fn client_strings_are_escaped_in_the_access_log() {
    let server = TestServer::start();
    // A raw NEL, LINE SEPARATOR and RIGHT-TO-LEFT OVERRIDE in the request target.
    let request =
        "GET /a\u{85}b\u{2028}status=200\u{202e}x HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n";
    assert_eq!(raw(server.addr(), request.as_bytes()).status, 404);
    // The line is written after the answer; give the log a moment.
    let mut log = String::new();
    for _ in 0..50 {
        log = server.log();
        if log.contains("/a\\x") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        log.contains(r"/a\xc2\x85b\xe2\x80\xa8status=200\xe2\x80\xaex"),
        "{log}"
    );
    for raw in ['\u{85}', '\u{2028}', '\u{202e}'] {
        assert!(!log.contains(raw), "raw {raw:?} reached the log");
    }
}

#[test]
fn verify_answers_every_method_alike() {
    let server = TestServer::start();
    let id = server.register("fwd@example.com");
    let (access, _) = server.login("fwd@example.com");
    let auth = format!("Bearer {access}");
    for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        let ok = server.request(method, "/v1/auth/verify", &[("Authorization", &auth)], b"");
        assert_eq!(ok.status, 200, "{method}: {}", ok.body);
        assert_eq!(ok.header("x-auth-subject"), Some(id.as_str()), "{method}");
        let refused = server.request(method, "/v1/auth/verify", &[], b"");
        assert_eq!(refused.status, 401, "{method}");
        assert_eq!(
            refused.header("www-authenticate"),
            Some("Bearer"),
            "{method}"
        );
    }
}

#[test]
fn forwarded_addresses_with_ports_are_read_and_unreadable_ones_refused() {
    let server = TestServer::start_with(&[
        ("LATCHD_LOGIN_ADDRESS_PER_MIN", "2"),
        ("LATCHD_TRUSTED_PROXIES", "127.0.0.1"),
    ]);
    let wrong = |n: u32, xff: &str| {
        let body =
            json!({"email": format!("g{n}@example.com"), "password": "not the password, sorry"});
        post_json_from(&server, "/v1/auth/login", &body, xff)
    };
    // Both failures land on 2001:db8::/64, whatever the port.
    wrong(0, "[2001:db8::1]:4711").assert_error(401, "invalid_grant");
    wrong(1, "[2001:db8::2]:80").assert_error(401, "invalid_grant");
    assert_429(&wrong(2, "2001:db8::3"));
    // An IPv4 client with a port is a client of its own, not the proxy.
    wrong(3, "198.51.100.9:5000").assert_error(401, "invalid_grant");
    // An entry nobody can read is refused, and charged to no one: the proxy's own address
    // keeps its budget.
    for _ in 0..5 {
        wrong(4, "unknown").assert_error(400, "invalid_request");
    }
    let body = json!({"email": "g5@example.com", "password": "not the password, sorry"});
    server
        .post_json("/v1/auth/login", &body)
        .assert_error(401, "invalid_grant");
}

/// A server whose file holds one admin; returns the server, its token and its id.
fn with_admin() -> (TestServer, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let id = add_user(dir.path(), "root@example.com", &["--role", "admin"]);
    let server = TestServer::start_in(dir, &[]);
    let (access, _) = server.login("root@example.com");
    (server, access, id)
}

fn delete(server: &TestServer, path: &str, bearer: &str) -> Reply {
    let auth = format!("Bearer {bearer}");
    server.request("DELETE", path, &[("Authorization", &auth)], b"")
}

#[test]
fn the_last_admin_cannot_delete_itself() {
    let (server, access, id) = with_admin();
    let refused = delete(&server, &format!("/v1/admin/users/{id}"), &access);
    refused.assert_error(409, "conflict");
    assert!(refused.body.contains("last"), "{}", refused.body);
    assert_eq!(server.get("/v1/auth/verify", Some(&access)).status, 200);
    // The CLI keeps the same rule (on the stopped server's file).
    let dir = server.stop();
    for command in ["delete", "disable"] {
        let out = run(
            &db_in(dir.path()),
            &[],
            &["user", command, "root@example.com"],
            b"",
        );
        assert_eq!(out.status.code(), Some(1), "user {command}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("last enabled admin"),
            "user {command}: {stderr}"
        );
    }
    // With a second admin, the first may go.
    add_user(dir.path(), "second@example.com", &["--role", "admin"]);
    let server = TestServer::start_in(dir, &[]);
    let (second, _) = server.login("second@example.com");
    assert_eq!(
        delete(&server, &format!("/v1/admin/users/{id}"), &second).status,
        204
    );
}

#[test]
fn admin_paths_take_only_the_canonical_id_spelling() {
    let (server, access, _) = with_admin();
    let id = server.register("spelled@example.com");
    let spellings = [
        id.to_uppercase(),
        id.replace('-', ""),
        format!("urn:uuid:{id}"),
        format!("{{{id}}}"),
    ];
    for spelling in &spellings {
        delete(&server, &format!("/v1/admin/users/{spelling}"), &access)
            .assert_error(404, "not_found");
        server
            .post_auth(&format!("/v1/admin/users/{spelling}/revoke"), &access)
            .assert_error(404, "not_found");
    }
    // The user is still there, and the canonical spelling works.
    let (user_access, _) = server.login("spelled@example.com");
    assert_eq!(
        server.get("/v1/auth/verify", Some(&user_access)).status,
        200
    );
    assert_eq!(
        delete(&server, &format!("/v1/admin/users/{id}"), &access).status,
        204
    );
}
