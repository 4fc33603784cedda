//! The session list and ending one session (API.md v2 "Sessions"), over real HTTP: what each
//! row shows, that an ended session's tokens die at once, and that nobody sees or ends another
//! user's sessions.

use serde_json::{json, Value};

use crate::support::jar::{form, hidden, Jar};
use crate::support::{self, add_user, Reply, TestServer, PASSWORD};

const ID: &str = "00000000-0000-4000-8000-000000000000";

fn login_as(server: &TestServer, email: &str, user_agent: &str) -> (String, String) {
    let reply = server.request(
        "POST",
        "/v1/auth/login",
        &[
            ("Content-Type", "application/json"),
            ("User-Agent", user_agent),
        ],
        json!({"email": email, "password": PASSWORD})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.pair()
}

fn list(server: &TestServer, access: &str) -> Vec<Value> {
    let reply = server.get("/v1/users/me/sessions", Some(access));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    reply.json().as_array().unwrap().clone()
}

fn end(server: &TestServer, id: &str, access: &str) -> Reply {
    let auth = format!("Bearer {access}");
    server.request(
        "DELETE",
        &format!("/v1/users/me/sessions/{id}"),
        &[("Authorization", &auth)],
        b"",
    )
}

pub(crate) fn sid(access: &str) -> String {
    use base64::Engine as _;
    let payload = access.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims: Value = serde_json::from_slice(&bytes).unwrap();
    claims["sid"].as_str().unwrap().to_owned()
}

#[test]
fn a_session_is_listed_after_login_and_gone_after_delete_with_its_tokens_dead() {
    let server = TestServer::start();
    server.register("sam@example.com");
    let (first, first_refresh) = login_as(&server, "sam@example.com", "first-agent/1.0");
    let (second, _) = login_as(&server, "sam@example.com", "second-agent/2.0");

    let rows = list(&server, &second);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        support::member_names(&rows[0]),
        [
            "client_ip",
            "created_at",
            "current",
            "expires_at",
            "id",
            "kind",
            "last_used_at",
            "mfa",
            "user_agent"
        ]
    );
    // Newest first; the caller's own session is the current one.
    assert_eq!(rows[0]["id"], sid(&second));
    assert_eq!(rows[0]["user_agent"], "second-agent/2.0");
    assert_eq!(rows[0]["current"], true);
    assert_eq!(rows[1]["id"], sid(&first));
    assert_eq!(rows[1]["user_agent"], "first-agent/1.0");
    assert_eq!(rows[1]["current"], false);
    for row in &rows {
        assert_eq!(row["kind"], "api");
        assert_eq!(row["client_ip"], "127.0.0.1");
        assert_eq!(row["mfa"], false);
        let (created, expires) = (
            row["created_at"].as_str().unwrap(),
            row["expires_at"].as_str().unwrap(),
        );
        assert!(created.ends_with('Z') && created.len() == 20, "{created}");
        assert_eq!(row["last_used_at"], row["created_at"]);
        assert!(expires > created, "{expires} <= {created}");
    }

    // The second session ends the first: its access and refresh tokens die at once.
    let ended = end(&server, &sid(&first), &second);
    assert_eq!(ended.status, 204, "{}", ended.body);
    server
        .get("/v1/auth/verify", Some(&first))
        .assert_error(401, "invalid_token");
    server
        .refresh(&first_refresh)
        .assert_error(401, "invalid_grant");
    let rows = list(&server, &second);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], sid(&second));
    // Ending it again: it is no longer a live session.
    end(&server, &sid(&first), &second).assert_error(404, "not_found");
    // The caller may end its own current session too.
    assert_eq!(end(&server, &sid(&second), &second).status, 204);
    server
        .get("/v1/auth/verify", Some(&second))
        .assert_error(401, "invalid_token");
    // It survives a restart.
    let server = server.restart();
    let (third, _) = server.login("sam@example.com");
    assert_eq!(list(&server, &third).len(), 1);
}

#[test]
fn nobody_sees_or_ends_another_users_session() {
    let server = TestServer::start();
    server.register("alice@example.com");
    server.register("bob@example.com");
    let (alice, _) = server.login("alice@example.com");
    let (bob, bob_refresh) = server.login("bob@example.com");
    let alices = list(&server, &alice);
    assert_eq!(alices.len(), 1);
    assert_ne!(alices[0]["id"], sid(&bob));

    end(&server, &sid(&bob), &alice).assert_error(404, "not_found");
    assert_eq!(server.get("/v1/auth/verify", Some(&bob)).status, 200);
    assert_eq!(server.refresh(&bob_refresh).status, 200);
    // Unknown, and non-canonical spellings of a real id: 404 too.
    end(&server, ID, &alice).assert_error(404, "not_found");
    let own = sid(&alice);
    for spelling in [
        own.to_uppercase(),
        own.replace('-', ""),
        format!("{{{own}}}"),
    ] {
        end(&server, &spelling, &alice).assert_error(404, "not_found");
    }
    assert_eq!(server.get("/v1/auth/verify", Some(&alice)).status, 200);
    // Without a token, or with a dead one: 401.
    server
        .get("/v1/users/me/sessions", None)
        .assert_error(401, "invalid_token");
    let no_auth = server.request("DELETE", &format!("/v1/users/me/sessions/{own}"), &[], b"");
    no_auth.assert_error(401, "invalid_token");
    server
        .get("/v1/users/me/sessions", Some("not.a.token"))
        .assert_error(401, "invalid_token");
    // Other methods: 405.
    let post = server.post_auth("/v1/users/me/sessions", &alice);
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET"));
}

#[test]
fn a_browser_session_is_listed_and_ending_it_ends_the_cookie() {
    let server = TestServer::start_with(&[("LATCHD_HASH_ADDRESS_PER_MIN", "1000")]);
    server.register("web@example.com");
    let mut jar = Jar::default();
    let page = jar.request(&server, "GET", "/login", &[], b"");
    let csrf = hidden(&page.body, "csrf").unwrap();
    let body = form(&[
        ("email", "web@example.com"),
        ("password", PASSWORD),
        ("csrf", &csrf),
    ]);
    let signed = jar.request(
        &server,
        "POST",
        "/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("User-Agent", "Mozilla/5.0 (X11; Linux) Firefox/140.0"),
        ],
        body.as_bytes(),
    );
    assert_eq!(signed.status, 303, "{}", signed.body);
    let (api, _) = server.login("web@example.com");
    let rows = list(&server, &api);
    assert_eq!(rows.len(), 2);
    let web = rows.iter().find(|r| r["kind"] == "browser").unwrap();
    assert_eq!(web["user_agent"], "Mozilla/5.0 (X11; Linux) Firefox/140.0");
    assert_eq!(web["current"], false);
    let web_id = web["id"].as_str().unwrap().to_owned();
    assert_eq!(
        jar.request(&server, "GET", "/v1/auth/verify", &[], b"")
            .status,
        200
    );
    assert_eq!(end(&server, &web_id, &api).status, 204);
    assert_eq!(
        jar.request(&server, "GET", "/v1/auth/verify", &[], b"")
            .status,
        401
    );
    assert_eq!(list(&server, &api).len(), 1);
}

#[test]
fn a_long_or_absent_user_agent_is_kept_bounded_or_null() {
    let server = TestServer::start();
    server.register("ua@example.com");
    let long = "A".repeat(5000);
    let (access, _) = login_as(&server, "ua@example.com", &long);
    let rows = list(&server, &access);
    assert_eq!(rows[0]["user_agent"].as_str().unwrap(), "A".repeat(256));
    // The harness sends no User-Agent at all.
    let (bare, _) = server.login("ua@example.com");
    let rows = list(&server, &bare);
    assert_eq!(rows[0]["user_agent"], Value::Null);
}

#[test]
fn an_admin_lists_any_users_sessions_and_nobody_else_may() {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "admin@example.com", &["--role", "admin"]);
    let server = TestServer::start_in(dir, &[]);
    let (admin, _) = server.login("admin@example.com");
    let id = server.register("user@example.com");
    let (user, _) = server.login("user@example.com");

    let path = format!("/v1/admin/users/{id}/sessions");
    let reply = server.get(&path, Some(&admin));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let rows = reply.json();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], sid(&user));
    assert_eq!(rows[0]["current"], false);

    server
        .get(&path, Some(&user))
        .assert_error(403, "insufficient_scope");
    server.get(&path, None).assert_error(401, "invalid_token");
    server
        .get(&format!("/v1/admin/users/{ID}/sessions"), Some(&admin))
        .assert_error(404, "not_found");
    server
        .get(
            &format!("/v1/admin/users/{}/sessions", id.to_uppercase()),
            Some(&admin),
        )
        .assert_error(404, "not_found");
}
