//! The operator CLI beside a running server: every command reaches the server over the
//! owner-only socket next to the database, and the server's answers change at once.

use std::process::Output;

use serde_json::json;

use crate::support::{run, TestServer, PASSWORD};

#[test]
fn user_list_and_add_beside_a_running_server() {
    let server = TestServer::start();
    let db = server.db_path();
    let id = server.register("web@example.com");

    let list = ok(&run(&db, &[], &["user", "list"], b""));
    assert!(
        list.starts_with(&format!("{id}\tweb@example.com\t\t")),
        "{list}"
    );

    let out = run(
        &db,
        &[],
        &[
            "user",
            "add",
            "--email",
            "cli@example.com",
            "--role",
            "admin",
        ],
        format!("{PASSWORD}\n").as_bytes(),
    );
    let new_id = ok(&out).trim().to_owned();
    assert!(uuid::Uuid::try_parse(&new_id).is_ok(), "{new_id}");
    assert!(
        !text(&out.stderr).contains("created a new database"),
        "{}",
        text(&out.stderr)
    );
    // The running server knows the new user at once: it logs in and is an admin.
    let (access, _) = server.login("cli@example.com");
    let users = server.get("/v1/admin/users", Some(&access));
    assert_eq!(users.status, 200, "{}", users.body);
    assert_eq!(users.json().as_array().expect("array").len(), 2);

    // The API's refusals come back as the CLI's one line.
    let taken = run(
        &db,
        &[],
        &["user", "add", "--email", "web@example.com"],
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert_eq!(taken.status.code(), Some(1));
    assert_eq!(
        text(&taken.stderr).lines().count(),
        1,
        "{}",
        text(&taken.stderr)
    );
    let weak = run(
        &db,
        &[],
        &["user", "add", "--email", "w@example.com"],
        b"short\n",
    );
    assert!(
        text(&weak.stderr).starts_with("latchd: password refused:"),
        "{}",
        text(&weak.stderr)
    );
}

#[test]
fn disable_enable_and_delete_take_effect_in_the_running_server_at_once() {
    let server = TestServer::start();
    let db = server.db_path();
    server.register("bob@example.com");
    let (access, refresh) = server.login("bob@example.com");
    assert_eq!(server.get("/v1/auth/verify", Some(&access)).status, 200);

    let out = ok(&run(&db, &[], &["user", "disable", "bob@example.com"], b""));
    assert!(out.starts_with("disabled "), "{out}");
    // No restart: the server's memory followed the write.
    assert_eq!(server.get("/v1/auth/verify", Some(&access)).status, 401);
    server.refresh(&refresh).assert_error(401, "invalid_grant");
    let login = server.post_json(
        "/v1/auth/login",
        &json!({"email": "bob@example.com", "password": PASSWORD}),
    );
    login.assert_error(401, "invalid_grant");
    let list = ok(&run(&db, &[], &["user", "list"], b""));
    assert!(list.trim_end().ends_with("\tdisabled"), "{list}");

    ok(&run(&db, &[], &["user", "enable", "bob@example.com"], b""));
    let (access, _) = server.login("bob@example.com");
    assert_eq!(server.get("/v1/auth/verify", Some(&access)).status, 200);

    ok(&run(&db, &[], &["user", "delete", "bob@example.com"], b""));
    assert_eq!(server.get("/v1/auth/verify", Some(&access)).status, 401);
    assert_eq!(ok(&run(&db, &[], &["user", "list"], b"")), "");
    let gone = run(&db, &[], &["user", "delete", "bob@example.com"], b"");
    assert_eq!(gone.status.code(), Some(1));
    assert_eq!(
        text(&gone.stderr).trim_end(),
        "latchd: no user with id or email \"bob@example.com\""
    );
}

#[test]
fn set_roles_beside_a_running_server_ends_the_old_tokens_and_keeps_the_session() {
    let server = TestServer::start();
    let db = server.db_path();
    server.register("roy@example.com");
    let (access, refresh) = server.login("roy@example.com");
    let out = ok(&run(
        &db,
        &[],
        &["user", "set-roles", "roy@example.com", "--role", "ops"],
        b"",
    ));
    assert!(out.trim_end().ends_with("are now: ops"), "{out}");
    // The running server bumped the token version: the old access token is dead at once...
    assert_eq!(server.get("/v1/auth/verify", Some(&access)).status, 401);
    // ...and the session lives on, its next token carrying the new roles.
    let rotated = server.refresh(&refresh);
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let fresh = rotated.json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    let me = server.get("/v1/auth/me", Some(&fresh));
    assert_eq!(me.json()["roles"], json!(["ops"]), "{}", me.body);
}

#[test]
fn totp_reset_and_gc_run_in_the_running_server() {
    let server = TestServer::start();
    let db = server.db_path();
    server.register("ann@example.com");
    let (access, _) = server.login("ann@example.com");
    let out = ok(&run(
        &db,
        &[],
        &["user", "totp-reset", "ann@example.com"],
        b"",
    ));
    assert!(out.contains("its sessions are revoked"), "{out}");
    // The reset ends every session of the user in the running server.
    assert_eq!(server.get("/v1/auth/verify", Some(&access)).status, 401);

    let swept = ok(&run(&db, &[], &["gc"], b""));
    assert!(swept.starts_with("swept blacklist="), "{swept}");
    assert!(
        server.log().contains("operator command"),
        "{}",
        server.log()
    );
}

#[test]
fn key_rotate_is_refused_beside_a_running_server_and_changes_nothing() {
    let server = TestServer::start();
    let db = server.db_path();
    server.register("kim@example.com");
    let (before, _) = server.login("kim@example.com");
    let out = run(&db, &[], &["key", "rotate"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("latchd: key rotate needs the server stopped"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "");
    let (after, _) = server.login("kim@example.com");
    assert_eq!(kid(&before), kid(&after));
}

#[test]
fn the_socket_is_owner_only_and_goes_away_with_the_server() {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    let mut server = TestServer::start();
    let socket = latchd::control::socket_path(&server.db_path());
    let meta = std::fs::symlink_metadata(&socket).expect("socket next to the database");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(server.stop_with_sigterm().success());
    assert!(!socket.exists(), "a stopped server removes its socket");
}

#[test]
fn a_holder_that_does_not_answer_on_the_socket_is_named() {
    let server = TestServer::start();
    let db = server.db_path();
    // A server whose socket is gone (or a latchd older than the CLI) still holds the file.
    std::fs::remove_file(latchd::control::socket_path(&db)).expect("remove socket");
    let out = run(&db, &[], &["user", "list"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim_end(),
        format!(
            "latchd: {} is locked by a process that does not answer on {}.sock (a latchd older \
             than this CLI, or another program); stop it first",
            db.display(),
            db.display()
        )
    );
    assert_eq!(server.get("/healthz", None).status, 200);
}

#[test]
fn a_stale_socket_of_a_killed_server_is_replaced_and_bypassed() {
    let server = TestServer::start();
    server.register("old@example.com");
    let db = server.db_path();
    // kill -9: the socket file stays behind, nobody listens on it.
    let dir = server.stop();
    assert!(latchd::control::socket_path(&db).exists());
    let list = ok(&run(&db, &[], &["user", "list"], b""));
    assert!(list.contains("old@example.com"), "{list}");
    // A new server takes the socket over.
    let server = TestServer::start_in(dir, &[]);
    let out = run(
        &db,
        &[],
        &["user", "add", "--email", "new@example.com"],
        format!("{PASSWORD}\n").as_bytes(),
    );
    ok(&out);
    server.login("new@example.com");
}

/// Asserts the command succeeded; returns its stdout.
fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

fn kid(token: &str) -> String {
    use base64::Engine as _;
    let header = token.split('.').next().expect("header");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .expect("base64url");
    let value: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
    value["kid"].as_str().expect("kid").to_owned()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
