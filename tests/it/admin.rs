//! The admin API: listing, revoking and deleting users, refused to everyone without the admin
//! role, and admin-only registration.

use serde_json::json;

use crate::support::{add_user, TestServer, PASSWORD};

/// A server whose file already holds `admin@example.com` with the admin role; returns the
/// server and that admin's access token.
fn with_admin(env: &[(&str, &str)]) -> (TestServer, String) {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "admin@example.com", &["--role", "admin"]);
    let server = TestServer::start_in(dir, env);
    let (access, _) = server.login("admin@example.com");
    (server, access)
}

fn delete(server: &TestServer, path: &str, bearer: &str) -> crate::support::Reply {
    let auth = format!("Bearer {bearer}");
    server.request("DELETE", path, &[("Authorization", &auth)], b"")
}

#[test]
fn admin_routes_are_refused_to_users_without_the_admin_role() {
    let (server, _) = with_admin(&[]);
    let id = server.register("ursula@example.com");
    let (access, _) = server.login("ursula@example.com");
    let list = server.get("/v1/admin/users", Some(&access));
    list.assert_error(403, "insufficient_scope");
    assert!(!list.body.contains("admin@example.com"), "{}", list.body);
    server
        .post_auth(&format!("/v1/admin/users/{id}/revoke"), &access)
        .assert_error(403, "insufficient_scope");
    delete(&server, &format!("/v1/admin/users/{id}"), &access)
        .assert_error(403, "insufficient_scope");
    // Without any token: 401, not 403.
    server
        .get("/v1/admin/users", None)
        .assert_error(401, "invalid_token");
    // Nothing happened to the user.
    assert_eq!(server.get("/v1/auth/verify", Some(&access)).status, 200);
}

#[test]
fn the_admin_lists_users_page_by_page() {
    let (server, admin) = with_admin(&[]);
    for name in ["a", "b", "c", "d"] {
        server.register(&format!("{name}@example.com"));
    }
    let page = |query: &str| {
        let reply = server.get(&format!("/v1/admin/users{query}"), Some(&admin));
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json().as_array().unwrap().clone()
    };
    let all = page("");
    assert_eq!(all.len(), 5);
    for user in &all {
        let keys: Vec<&str> = user
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["created_at", "disabled", "email", "id", "roles"]);
        assert_eq!(user["disabled"], false);
    }
    let first = page("?limit=2");
    let last_id = first[1]["id"].as_str().unwrap();
    let second = page(&format!("?limit=2&after={last_id}"));
    let third = page(&format!(
        "?limit=2&after={}",
        second[1]["id"].as_str().unwrap()
    ));
    let paged: Vec<_> = first.iter().chain(&second).chain(&third).cloned().collect();
    assert_eq!(paged, all, "pages join up to the full list, in order");
    for bad in ["?limit=0", "?limit=1001", "?after=nope", "?colour=blue"] {
        server
            .get(&format!("/v1/admin/users{bad}"), Some(&admin))
            .assert_error(400, "invalid_request");
    }
}

#[test]
fn the_admin_revokes_every_session_of_a_user() {
    let (server, admin) = with_admin(&[]);
    let id = server.register("vera@example.com");
    let (access, refresh) = server.login("vera@example.com");
    let revoked = server.post_auth(&format!("/v1/admin/users/{id}/revoke"), &admin);
    assert_eq!(revoked.status, 204, "{}", revoked.body);
    server
        .get("/v1/auth/verify", Some(&access))
        .assert_error(401, "invalid_token");
    server.refresh(&refresh).assert_error(401, "invalid_grant");
    // The user can log in again; the admin's own session is untouched.
    server.login("vera@example.com");
    assert_eq!(server.get("/v1/auth/verify", Some(&admin)).status, 200);
    server
        .post_auth(
            "/v1/admin/users/00000000-0000-4000-8000-000000000000/revoke",
            &admin,
        )
        .assert_error(404, "not_found");
}

#[test]
fn the_admin_deletes_a_user_and_its_tokens_stop_working() {
    let (server, admin) = with_admin(&[]);
    let id = server.register("walt@example.com");
    let (access, refresh) = server.login("walt@example.com");
    let path = format!("/v1/admin/users/{id}");
    assert_eq!(delete(&server, &path, &admin).status, 204);
    server
        .get("/v1/auth/verify", Some(&access))
        .assert_error(401, "invalid_token");
    server.refresh(&refresh).assert_error(401, "invalid_grant");
    server
        .post_json(
            "/v1/auth/login",
            &json!({"email": "walt@example.com", "password": PASSWORD}),
        )
        .assert_error(401, "invalid_grant");
    delete(&server, &path, &admin).assert_error(404, "not_found");
    delete(&server, "/v1/admin/users/not-a-uuid", &admin).assert_error(404, "not_found");
    // The email is free again.
    server.register("walt@example.com");
}

#[test]
fn closed_registration_is_for_admins_only() {
    let (server, admin) = with_admin(&[("LATCHD_OPEN_REGISTRATION", "false")]);
    let body = json!({"email": "xena@example.com", "password": PASSWORD});
    server
        .post_json("/v1/users", &body)
        .assert_error(401, "invalid_token");
    let auth = format!("Bearer {admin}");
    let created = server.request(
        "POST",
        "/v1/users",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let (user_token, _) = server.login("xena@example.com");
    let auth = format!("Bearer {user_token}");
    server
        .request(
            "POST",
            "/v1/users",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            json!({"email": "yan@example.com", "password": PASSWORD})
                .to_string()
                .as_bytes(),
        )
        .assert_error(403, "insufficient_scope");
}
