//! Setting a user's roles (API.md v2 "Operations"): `PUT /v1/admin/users/{id}/roles` and
//! `latchd user set-roles`. Old tokens die, sessions live on with the new roles.

use serde_json::json;

use crate::support::{add_user, db_in, run, TestServer};

const ID: &str = "00000000-0000-4000-8000-000000000000";

fn roles_header(server: &TestServer, access: &str) -> String {
    let reply = server.get("/v1/auth/verify", Some(access));
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.header("x-auth-roles").unwrap_or_default().to_owned()
}

#[test]
fn new_roles_retire_old_tokens_and_the_session_refreshes_into_them() {
    let dir = tempfile::tempdir().unwrap();
    let admin_id = add_user(dir.path(), "admin@example.com", &["--role", "admin"]);
    let server = TestServer::start_in(dir, &[]);
    let (admin, _) = server.login("admin@example.com");
    let id = server.register("user@example.com");
    let (access, refresh) = server.login("user@example.com");
    let path = format!("/v1/admin/users/{id}/roles");

    let reply = server.put_json_auth(
        &path,
        &admin,
        &json!({"roles": ["billing", "ops", "billing"]}),
    );
    assert_eq!(reply.status, 204, "{}", reply.body);
    server
        .get("/v1/auth/verify", Some(&access))
        .assert_error(401, "invalid_token");
    let (fresh, _) = server.refresh(&refresh).pair();
    assert_eq!(roles_header(&server, &fresh), "billing,ops");
    let me = server.get("/v1/auth/me", Some(&fresh)).json();
    assert_eq!(me["roles"], json!(["billing", "ops"]));

    // Bad input, each with its own answer; none changes anything.
    for bad in [
        json!({"roles": ["Admin"]}),
        json!({"roles": [""]}),
        json!({"roles": ["a".repeat(65)]}),
        json!({"roles": "admin"}),
        json!({}),
        json!({"roles": [], "extra": 1}),
    ] {
        server
            .put_json_auth(&path, &admin, &bad)
            .assert_error(400, "invalid_request");
    }
    assert_eq!(roles_header(&server, &fresh), "billing,ops");
    server
        .put_json_auth(&path, &fresh, &json!({"roles": ["admin"]}))
        .assert_error(403, "insufficient_scope");
    let auth_free = server.request(
        "PUT",
        &path,
        &[("Content-Type", "application/json")],
        br#"{"roles":[]}"#,
    );
    auth_free.assert_error(401, "invalid_token");
    server
        .put_json_auth(
            &format!("/v1/admin/users/{ID}/roles"),
            &admin,
            &json!({"roles": []}),
        )
        .assert_error(404, "not_found");
    // The last admin cannot take the role from itself.
    server
        .put_json_auth(
            &format!("/v1/admin/users/{admin_id}/roles"),
            &admin,
            &json!({"roles": []}),
        )
        .assert_error(409, "conflict");
    assert_eq!(roles_header(&server, &admin), "admin");
    // Empty roles are allowed for anyone else.
    assert_eq!(
        server
            .put_json_auth(&path, &admin, &json!({"roles": []}))
            .status,
        204
    );
    // The change is on disk.
    let server = server.restart();
    let (again, _) = server.login("user@example.com");
    assert_eq!(roles_header(&server, &again), "");
}

#[test]
fn user_set_roles_replaces_the_roles_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "admin@example.com", &["--role", "admin"]);
    let id = add_user(dir.path(), "cli@example.com", &["--role", "old"]);
    let db = db_in(dir.path());
    let out = run(
        &db,
        &[],
        &[
            "user",
            "set-roles",
            "cli@example.com",
            "--role",
            "ops",
            "--role",
            "audit:read",
        ],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&id) && stdout.contains("audit:read,ops"),
        "{stdout}"
    );

    for (args, needle) in [
        (
            vec!["user", "set-roles", "cli@example.com", "--role", "Bad Role"],
            "Bad Role",
        ),
        (
            vec!["user", "set-roles", "nobody@example.com", "--role", "x"],
            "nobody@example.com",
        ),
        (vec!["user", "set-roles", "admin@example.com"], "admin"),
    ] {
        let out = run(&db, &[], &args, b"");
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(needle) && stderr.lines().count() == 1,
            "{args:?}: {stderr}"
        );
    }

    let server = TestServer::start_in(dir, &[]);
    let (access, _) = server.login("cli@example.com");
    assert_eq!(roles_header(&server, &access), "audit:read,ops");
    let (admin, _) = server.login("admin@example.com");
    assert_eq!(roles_header(&server, &admin), "admin");
}
