//! The whole user journey over real HTTP: register, login, me, verify, refresh rotation and
//! reuse detection, logout, logout-all and password change.

use serde_json::json;

use crate::support::{TestServer, PASSWORD};

const NEW_PASSWORD: &str = "a different long passphrase 77";

#[test]
fn register_login_me_verify_refresh() {
    let server = TestServer::start();
    let id = server.register("alice@example.com");
    assert!(uuid_like(&id), "{id}");

    let login = server.post_json(
        "/v1/auth/login",
        &json!({"email": "alice@example.com", "password": PASSWORD}),
    );
    assert_eq!(login.status, 200, "{}", login.body);
    let body = login.json();
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_i64().is_some_and(|s| s > 0), "{body}");
    let (access, refresh) = login.pair();

    let me = server.get("/v1/auth/me", Some(&access));
    assert_eq!(me.status, 200, "{}", me.body);
    let me = me.json();
    assert_eq!(me["id"], id.as_str());
    assert_eq!(me["email"], "alice@example.com");
    assert!(me["roles"].is_array(), "{me}");
    assert!(me["created_at"].is_string(), "{me}");
    assert!(me.get("password_hash").is_none(), "{me}");

    let verify = server.get("/v1/auth/verify", Some(&access));
    assert_eq!(verify.status, 200, "{}", verify.body);
    assert_eq!(verify.header("x-auth-subject"), Some(id.as_str()));
    assert!(
        verify.header("x-auth-roles").is_some(),
        "{:?}",
        verify.headers
    );

    let rotated = server.refresh(&refresh);
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let (access2, refresh2) = rotated.pair();
    assert_ne!(refresh2, refresh, "rotation must issue a new refresh token");
    let verify2 = server.get("/v1/auth/verify", Some(&access2));
    assert_eq!(verify2.status, 200, "{}", verify2.body);
    assert_eq!(verify2.header("x-auth-subject"), Some(id.as_str()));

    // The rotated token keeps rotating.
    let again = server.refresh(&refresh2);
    assert_eq!(again.status, 200, "{}", again.body);
    assert_ne!(again.pair().1, refresh2);
}

#[test]
fn reuse_of_a_rotated_refresh_token_revokes_the_family() {
    let server = TestServer::start_with(&[("LATCHD_REFRESH_GRACE", "0")]);
    server.register("reuse@example.com");
    let (_, first) = server.login("reuse@example.com");
    let (_, second) = server.refresh(&first).pair();
    let (newest_access, newest) = server.refresh(&second).pair();
    assert_eq!(
        server.get("/v1/auth/verify", Some(&newest_access)).status,
        200
    );

    // The superseded token again: reuse.
    server.refresh(&second).assert_error(401, "invalid_grant");
    // The whole family is gone: its newest refresh token and its access token.
    server.refresh(&newest).assert_error(401, "invalid_grant");
    let verify = server.get("/v1/auth/verify", Some(&newest_access));
    verify.assert_error(401, "invalid_token");
    assert_eq!(
        verify.header("www-authenticate"),
        Some(r#"Bearer error="invalid_token""#)
    );
}

#[test]
fn reuse_does_not_touch_other_sessions_of_the_user() {
    let server = TestServer::start_with(&[("LATCHD_REFRESH_GRACE", "0")]);
    server.register("two@example.com");
    let (_, stolen) = server.login("two@example.com");
    let (other_access, other_refresh) = server.login("two@example.com");
    let _ = server.refresh(&stolen).pair();
    server.refresh(&stolen).assert_error(401, "invalid_grant");
    assert_eq!(
        server.get("/v1/auth/verify", Some(&other_access)).status,
        200
    );
    assert_eq!(server.refresh(&other_refresh).status, 200);
}

#[test]
fn a_retry_within_the_grace_gets_the_same_successor() {
    let server = TestServer::start(); // default grace: 10 s
    server.register("retry@example.com");
    let (_, first) = server.login("retry@example.com");
    let rotated = server.refresh(&first);
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let (_, successor) = rotated.pair();

    let retried = server.refresh(&first);
    assert_eq!(retried.status, 200, "{}", retried.body);
    let (retry_access, retry_refresh) = retried.pair();
    assert_eq!(
        retry_refresh, successor,
        "a retry must return the same successor"
    );
    assert_eq!(
        server.get("/v1/auth/verify", Some(&retry_access)).status,
        200
    );

    // Not forked and not revoked: the successor rotates normally.
    let next = server.refresh(&successor);
    assert_eq!(next.status, 200, "{}", next.body);
    let (next_access, next_refresh) = next.pair();
    assert_ne!(next_refresh, successor);
    assert_eq!(
        server.get("/v1/auth/verify", Some(&next_access)).status,
        200
    );
}

#[test]
fn logout_rejects_that_access_token_and_its_refresh_token() {
    let server = TestServer::start();
    server.register("bob@example.com");
    let (access, refresh) = server.login("bob@example.com");
    let (other_access, other_refresh) = server.login("bob@example.com");

    let logout = server.post_auth("/v1/auth/logout", &access);
    assert_eq!(logout.status, 204, "{}", logout.body);
    let cookie = logout
        .header("set-cookie")
        .expect("logout clears the cookie");
    assert!(cookie.starts_with("refresh_token=;"), "{cookie}");
    assert!(cookie.contains("Max-Age=0"), "{cookie}");
    assert!(cookie.contains("Path=/v1/auth"), "{cookie}");

    let verify = server.get("/v1/auth/verify", Some(&access));
    verify.assert_error(401, "invalid_token");
    assert_eq!(
        verify.header("www-authenticate"),
        Some(r#"Bearer error="invalid_token""#)
    );
    server
        .get("/v1/auth/me", Some(&access))
        .assert_error(401, "invalid_token");
    server.refresh(&refresh).assert_error(401, "invalid_grant");

    // Only that session.
    assert_eq!(
        server.get("/v1/auth/verify", Some(&other_access)).status,
        200
    );
    assert_eq!(server.refresh(&other_refresh).status, 200);
}

#[test]
fn logout_all_ends_every_session_of_the_user_and_no_other() {
    let server = TestServer::start();
    server.register("carol@example.com");
    server.register("dave@example.com");
    let (a1, r1) = server.login("carol@example.com");
    let (a2, r2) = server.login("carol@example.com");
    let (dave_access, dave_refresh) = server.login("dave@example.com");

    let reply = server.post_auth("/v1/auth/logout-all", &a1);
    assert_eq!(reply.status, 204, "{}", reply.body);

    for access in [&a1, &a2] {
        server
            .get("/v1/auth/verify", Some(access))
            .assert_error(401, "invalid_token");
    }
    for refresh in [&r1, &r2] {
        server.refresh(refresh).assert_error(401, "invalid_grant");
    }
    assert_eq!(
        server.get("/v1/auth/verify", Some(&dave_access)).status,
        200
    );
    assert_eq!(server.refresh(&dave_refresh).status, 200);

    // Carol can still log in again afterwards.
    let (fresh, _) = server.login("carol@example.com");
    assert_eq!(server.get("/v1/auth/verify", Some(&fresh)).status, 200);
}

#[test]
fn password_change_revokes_the_other_sessions() {
    let server = TestServer::start();
    server.register("erin@example.com");
    let (mine, my_refresh) = server.login("erin@example.com");
    let (other, other_refresh) = server.login("erin@example.com");

    let change = server.put_json_auth(
        "/v1/users/me/password",
        &mine,
        &json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
    );
    assert_eq!(change.status, 204, "{}", change.body);

    server
        .get("/v1/auth/verify", Some(&other))
        .assert_error(401, "invalid_token");
    server
        .refresh(&other_refresh)
        .assert_error(401, "invalid_grant");

    assert_eq!(server.get("/v1/auth/verify", Some(&mine)).status, 200);
    assert_eq!(server.get("/v1/auth/me", Some(&mine)).status, 200);
    assert_eq!(server.refresh(&my_refresh).status, 200);

    server
        .post_json(
            "/v1/auth/login",
            &json!({"email": "erin@example.com", "password": PASSWORD}),
        )
        .assert_error(401, "invalid_grant");
    let (fresh, _) = server.login_with("erin@example.com", NEW_PASSWORD);
    assert_eq!(server.get("/v1/auth/verify", Some(&fresh)).status, 200);
}

#[test]
fn password_change_refuses_a_wrong_current_or_a_weak_new_password() {
    let server = TestServer::start();
    server.register("frank@example.com");
    let (access, _) = server.login("frank@example.com");

    server
        .put_json_auth(
            "/v1/users/me/password",
            &access,
            &json!({"current_password": "not the password at all", "new_password": NEW_PASSWORD}),
        )
        .assert_error(400, "invalid_request");
    let weak = server.put_json_auth(
        "/v1/users/me/password",
        &access,
        &json!({"current_password": PASSWORD, "new_password": "short"}),
    );
    weak.assert_error(400, "invalid_request");
    assert!(
        weak.json()["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("15")),
        "{}",
        weak.body
    );

    // Neither attempt changed anything.
    assert_eq!(server.get("/v1/auth/verify", Some(&access)).status, 200);
    server.login("frank@example.com");
    server
        .post_json(
            "/v1/auth/login",
            &json!({"email": "frank@example.com", "password": NEW_PASSWORD}),
        )
        .assert_error(401, "invalid_grant");
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

#[test]
fn no_token_cookie_or_password_reaches_the_log_and_json_logs_are_json() {
    let server = TestServer::start_with(&[("LATCHD_LOG", "debug"), ("LATCHD_LOG_FORMAT", "json")]);
    server.register("logan@example.com");
    let (access, refresh) = server.login("logan@example.com");
    assert_eq!(server.get("/v1/auth/verify", Some(&access)).status, 200);
    let rotated = server.refresh(&refresh);
    assert_eq!(rotated.status, 200);
    server.get("/v1/auth/verify?access_token=in-the-query", Some("garbage"));
    let (new_access, _) = rotated.pair();
    server.post_auth("/v1/auth/logout", &new_access);
    let log = server.log();
    for secret in [
        access.as_str(),
        refresh.as_str(),
        new_access.as_str(),
        PASSWORD,
        "in-the-query",
    ] {
        assert!(!log.contains(secret), "the log holds a secret: {secret}");
    }
    for line in log.lines().filter(|l| !l.starts_with("listening on ")) {
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(line);
        assert!(
            parsed.is_ok_and(|v| v.is_object()),
            "not a JSON object: {line}"
        );
    }
    assert!(
        log.contains("/v1/auth/verify"),
        "the access log has the path"
    );
}
