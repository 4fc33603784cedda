//! RFC 7662 introspection and RFC 7009 revocation over real HTTP (API.md v2): every kind of
//! token in every state, who may ask, and what a revocation does and does not end.

use serde_json::{json, Value};

use crate::support::clock::FakeClock;
use crate::support::jar::form;
use crate::support::{add_user, Reply, TestServer};

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

/// A server holding `admin@example.com` (admin), `rs@example.com` (introspect) and
/// `user@example.com` (no role); returns it and the admin's access token.
fn server_with(env: &[(&str, &str)], clock: Option<&FakeClock>) -> (TestServer, String) {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "admin@example.com", &["--role", "admin"]);
    add_user(dir.path(), "rs@example.com", &["--role", "introspect"]);
    add_user(dir.path(), "user@example.com", &[]);
    let server = match clock {
        Some(clock) => {
            let mut all: Vec<(&str, String)> = clock.env();
            all.extend(env.iter().map(|(k, v)| (*k, (*v).to_owned())));
            let borrowed: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
            TestServer::start_in(dir, &borrowed)
        }
        None => TestServer::start_in(dir, env),
    };
    let (admin, _) = server.login("admin@example.com");
    (server, admin)
}

fn introspect_raw(server: &TestServer, bearer: Option<&str>, body: &str) -> Reply {
    let auth = bearer.map(|b| format!("Bearer {b}"));
    let mut headers = vec![FORM];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth));
    }
    server.request("POST", "/v1/oauth/introspect", &headers, body.as_bytes())
}

fn introspect(server: &TestServer, caller: &str, token: &str) -> Value {
    let reply = introspect_raw(server, Some(caller), &form(&[("token", token)]));
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

fn revoke(server: &TestServer, token: &str) -> Reply {
    server.request(
        "POST",
        "/v1/oauth/revoke",
        &[FORM],
        form(&[("token", token)]).as_bytes(),
    )
}

fn inactive() -> Value {
    json!({"active": false})
}

fn claims(access: &str) -> Value {
    use base64::Engine as _;
    let payload = access.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn an_active_access_token_is_described_with_its_claims() {
    let (server, admin) = server_with(&[], None);
    let (access, _) = server.login("user@example.com");
    let got = introspect(&server, &admin, &access);
    let c = claims(&access);
    let want = json!({
        "active": true,
        "token_type": "access_token",
        "sub": c["sub"],
        "client_id": "latchd",
        "iss": "latchd",
        "aud": "latchd",
        "exp": c["exp"],
        "iat": c["iat"],
        "nbf": c["nbf"],
        "jti": c["jti"],
        "sid": c["sid"],
        "roles": [],
        "amr": ["pwd"],
    });
    assert_eq!(got, want);
    // The introspect role may ask too, about any token, its own included.
    let (rs, _) = server.login("rs@example.com");
    assert_eq!(introspect(&server, &rs, &access), want);
    assert_eq!(
        introspect(&server, &rs, &rs)["roles"],
        json!(["introspect"])
    );
}

#[test]
fn only_admins_and_the_introspect_role_may_ask() {
    let (server, _) = server_with(&[], None);
    let (user, _) = server.login("user@example.com");
    let body = form(&[("token", &user)]);
    introspect_raw(&server, Some(&user), &body).assert_error(403, "insufficient_scope");
    introspect_raw(&server, None, &body).assert_error(401, "invalid_token");
    introspect_raw(&server, Some("garbage"), &body).assert_error(401, "invalid_token");
}

#[test]
fn a_caller_whose_role_was_taken_is_refused_at_once() {
    let (server, admin) = server_with(&[], None);
    let (rs, _) = server.login("rs@example.com");
    let (user, _) = server.login("user@example.com");
    let body = form(&[("token", &user)]);
    assert_eq!(introspect(&server, &rs, &user)["active"], true);
    let id = introspect(&server, &admin, &rs)["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    let auth = format!("Bearer {admin}");
    let put = server.request(
        "PUT",
        &format!("/v1/admin/users/{id}/roles"),
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
        ],
        br#"{"roles":[]}"#,
    );
    assert_eq!(put.status, 204, "{}", put.body);
    // The token that still names the role is of an older version: dead, not trusted for it.
    introspect_raw(&server, Some(&rs), &body).assert_error(401, "invalid_token");
    // A token minted since names no role.
    let (rs_now, _) = server.login("rs@example.com");
    introspect_raw(&server, Some(&rs_now), &body).assert_error(403, "insufficient_scope");
}

#[test]
fn a_malformed_introspection_request_is_400() {
    let (server, admin) = server_with(&[], None);
    introspect_raw(&server, Some(&admin), "").assert_error(400, "invalid_request");
    introspect_raw(&server, Some(&admin), "token_type_hint=access_token")
        .assert_error(400, "invalid_request");
    introspect_raw(&server, Some(&admin), "token=a&token=b").assert_error(400, "invalid_request");
    introspect_raw(&server, Some(&admin), "token=%zz").assert_error(400, "invalid_request");
    let auth = format!("Bearer {admin}");
    let json_body = server.request(
        "POST",
        "/v1/oauth/introspect",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
        ],
        br#"{"token":"x"}"#,
    );
    json_body.assert_error(400, "invalid_request");
    // A hint is only a hint, and unknown parameters are ignored.
    let (access, refresh) = server.login("user@example.com");
    let hinted = introspect_raw(
        &server,
        Some(&admin),
        &form(&[
            ("token", &access),
            ("token_type_hint", "refresh_token"),
            ("x", "y"),
        ]),
    );
    assert_eq!(
        hinted.json()["token_type"],
        "access_token",
        "{}",
        hinted.body
    );
    let hinted = introspect_raw(
        &server,
        Some(&admin),
        &form(&[("token", &refresh), ("token_type_hint", "access_token")]),
    );
    assert_eq!(
        hinted.json()["token_type"],
        "refresh_token",
        "{}",
        hinted.body
    );
    // A hint latchd does not know is ignored like any other parameter, not refused.
    let unknown = introspect_raw(
        &server,
        Some(&admin),
        &form(&[("token", &access), ("token_type_hint", "id_token")]),
    );
    assert_eq!(unknown.status, 200, "{}", unknown.body);
    assert_eq!(unknown.json()["active"], true, "{}", unknown.body);
    let revoked = server.request(
        "POST",
        "/v1/oauth/revoke",
        &[FORM],
        form(&[("token", &access), ("token_type_hint", "id_token")]).as_bytes(),
    );
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    server
        .get("/v1/auth/verify", Some(&access))
        .assert_error(401, "invalid_token");
}

#[test]
fn a_refresh_token_is_described_and_never_rotated_by_introspection() {
    // Without a grace, a rotation by introspection would make the next refresh a reuse.
    let (server, admin) = server_with(&[("LATCHD_REFRESH_GRACE", "0")], None);
    let (access, refresh) = server.login("user@example.com");
    let c = claims(&access);
    for _ in 0..3 {
        let got = introspect(&server, &admin, &refresh);
        assert_eq!(got.as_object().unwrap().len(), 5, "{got}");
        assert_eq!(got["active"], true);
        assert_eq!(got["token_type"], "refresh_token");
        assert_eq!(got["sub"], c["sub"]);
        assert_eq!(got["sid"], c["sid"]);
        let exp = got["exp"].as_i64().unwrap();
        let iat = c["iat"].as_i64().unwrap();
        assert!(
            (iat + 1_209_600..=iat + 1_209_602).contains(&exp),
            "{exp} vs {iat}"
        );
    }
    let rotated = server.refresh(&refresh);
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let (_, next) = rotated.pair();
    // The superseded token is inactive; its successor is the active one.
    assert_eq!(introspect(&server, &admin, &refresh), inactive());
    assert_eq!(introspect(&server, &admin, &next)["active"], true);
}

#[test]
fn every_dead_or_foreign_token_is_exactly_inactive() {
    let (server, admin) = server_with(&[], None);
    // Superseded within the grace: still inactive (a retry is the refresh endpoint's business).
    let (_, refresh) = server.login("user@example.com");
    assert_eq!(server.refresh(&refresh).status, 200);
    assert_eq!(introspect(&server, &admin, &refresh), inactive());

    // Blacklisted (RFC 7009 on the access token alone): its refresh token stays active.
    let (access, refresh) = server.login("user@example.com");
    assert_eq!(revoke(&server, &access).status, 200);
    assert_eq!(introspect(&server, &admin, &access), inactive());
    assert_eq!(introspect(&server, &admin, &refresh)["active"], true);

    // Revoked session (logout): both its tokens.
    let (access, refresh) = server.login("user@example.com");
    assert_eq!(server.post_auth("/v1/auth/logout", &access).status, 204);
    assert_eq!(introspect(&server, &admin, &access), inactive());
    assert_eq!(introspect(&server, &admin, &refresh), inactive());

    // Stale version (logout-all bumps it).
    let (access, refresh) = server.login("user@example.com");
    let (other, _) = server.login("user@example.com");
    assert_eq!(server.post_auth("/v1/auth/logout-all", &other).status, 204);
    assert_eq!(introspect(&server, &admin, &access), inactive());
    assert_eq!(introspect(&server, &admin, &refresh), inactive());

    // Reuse revoked the family: the newest token too.
    let (_, old) = server.login("user@example.com");
    let (_, newest) = server.refresh(&old).pair();
    let (_, newer) = server.refresh(&newest).pair();
    server.refresh(&old).assert_error(401, "invalid_grant");
    assert_eq!(introspect(&server, &admin, &newer), inactive());

    // Malformed and unknown.
    let (access, refresh) = server.login("user@example.com");
    let mut flipped = refresh.clone().into_bytes();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let mut forged = access.clone();
    forged.push('x');
    for junk in [
        "",
        "garbage",
        "a.b.c",
        &"A".repeat(9000),
        &flipped,
        &forged,
        &access.replace('.', ""),
    ] {
        assert_eq!(introspect(&server, &admin, junk), inactive(), "{junk:.40}");
    }

    // Another server's tokens (another signing key, another refresh MAC key).
    let (elsewhere, _) = server_with(&[], None);
    let (foreign_access, foreign_refresh) = elsewhere.login("user@example.com");
    assert_eq!(introspect(&server, &admin, &foreign_access), inactive());
    assert_eq!(introspect(&server, &admin, &foreign_refresh), inactive());
}

#[test]
fn expired_tokens_are_inactive() {
    let Some(clock) = FakeClock::new() else {
        return;
    };
    let (server, admin) = server_with(
        &[("LATCHD_ACCESS_TTL", "60"), ("LATCHD_REFRESH_TTL", "600")],
        Some(&clock),
    );
    let (access, refresh) = server.login("user@example.com");
    clock.advance(120);
    let (admin_now, _) = server.login("admin@example.com");
    assert_eq!(introspect(&server, &admin_now, &access), inactive());
    assert_eq!(introspect(&server, &admin_now, &refresh)["active"], true);
    clock.advance(600);
    let (admin_now, _) = server.login("admin@example.com");
    assert_eq!(introspect(&server, &admin_now, &refresh), inactive());
    drop(admin);
}

#[test]
fn revoking_an_access_token_blacklists_only_it() {
    let (server, _) = server_with(&[], None);
    let (access, refresh) = server.login("user@example.com");
    let reply = revoke(&server, &access);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body.is_empty(), "{}", reply.body);
    server
        .get("/v1/auth/verify", Some(&access))
        .assert_error(401, "invalid_token");
    // The session lives on: its refresh token still rotates, to a working access token.
    let (fresh, _) = server.refresh(&refresh).pair();
    assert_eq!(server.get("/v1/auth/verify", Some(&fresh)).status, 200);
    // It stays revoked across a restart.
    let server = server.restart();
    server
        .get("/v1/auth/verify", Some(&access))
        .assert_error(401, "invalid_token");
}

#[test]
fn revoking_a_refresh_token_ends_its_session() {
    let (server, _) = server_with(&[], None);
    let (access, refresh) = server.login("user@example.com");
    let (other, _) = server.login("user@example.com");
    assert_eq!(revoke(&server, &refresh).status, 200);
    server.refresh(&refresh).assert_error(401, "invalid_grant");
    server
        .get("/v1/auth/verify", Some(&access))
        .assert_error(401, "invalid_token");
    // Only that session.
    assert_eq!(server.get("/v1/auth/verify", Some(&other)).status, 200);
    // Again: still 200, nothing left to revoke.
    assert_eq!(revoke(&server, &refresh).status, 200);
}

#[test]
fn a_superseded_refresh_token_revokes_nothing() {
    let (server, _) = server_with(&[], None);
    let (_, old) = server.login("user@example.com");
    let (access, current) = server.refresh(&old).pair();
    assert_eq!(revoke(&server, &old).status, 200);
    assert_eq!(server.get("/v1/auth/verify", Some(&access)).status, 200);
    let rotated = server.refresh(&current);
    assert_eq!(rotated.status, 200, "{}", rotated.body);
}

#[test]
fn revocation_answers_200_to_anything_and_400_without_a_token() {
    let (server, _) = server_with(&[], None);
    for junk in ["", "garbage", "a.b.c", &"A".repeat(9000)] {
        let reply = revoke(&server, junk);
        assert_eq!(reply.status, 200, "{junk:.20}: {}", reply.body);
    }
    // Another server's tokens: 200, and they keep working there.
    let (elsewhere, _) = server_with(&[], None);
    let (foreign_access, foreign_refresh) = elsewhere.login("user@example.com");
    assert_eq!(revoke(&server, &foreign_access).status, 200);
    assert_eq!(revoke(&server, &foreign_refresh).status, 200);
    assert_eq!(
        elsewhere
            .get("/v1/auth/verify", Some(&foreign_access))
            .status,
        200
    );
    let missing = server.request("POST", "/v1/oauth/revoke", &[FORM], b"");
    missing.assert_error(400, "invalid_request");
    let json_body = server.request(
        "POST",
        "/v1/oauth/revoke",
        &[("Content-Type", "application/json")],
        br#"{"token":"x"}"#,
    );
    json_body.assert_error(400, "invalid_request");
    let get = server.get("/v1/oauth/revoke", None);
    assert_eq!(get.status, 405);
}
