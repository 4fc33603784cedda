//! The bounded page cache (`LATCHD_CACHE_MB`) and the compact view: a bad size is refused at
//! start, and what the view no longer holds (password hashes, ended sessions) is read from disk
//! after a restart, when the view was rebuilt from the file alone.

use serde_json::json;

use crate::support::{self, TestServer, PASSWORD};

#[test]
fn a_bad_cache_size_is_refused_at_start_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let db = support::db_in(dir.path());
    for bad in ["0", "-1", "big", "65537", "1.5"] {
        let out = support::run_to_exit(&db, &[("LATCHD_CACHE_MB", bad)]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.contains("LATCHD_CACHE_MB"), "{bad}: {stderr}");
        assert!(!db.exists(), "{bad}: nothing is created on a refused start");
    }
    // The flag is checked the same way.
    let out = support::run(&db, &[], &["serve", "--cache-mb", "0"], b"");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn with_the_smallest_cache_users_sign_in_and_forward_auth_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    support::add_user(
        dir.path(),
        "ops@example.com",
        &["--role", "admin", "--role", "ops"],
    );
    let server = TestServer::start_in(dir, &[("LATCHD_CACHE_MB", "1")]);
    for i in 0..20 {
        server.register(&format!("user{i}@example.com"));
    }
    let (_, kept_refresh) = server.login("user7@example.com");
    let (ended_access, _) = server.login("user8@example.com");
    assert_eq!(
        server.post_auth("/v1/auth/logout", &ended_access).status,
        204
    );

    let server = server.restart();
    // The password hash was read from disk: only the row holds it.
    let (access, _) = server.login("user3@example.com");
    let bad = server.post_json(
        "/v1/auth/login",
        &json!({"email": "user3@example.com", "password": format!("{PASSWORD}!")}),
    );
    assert_eq!(bad.status, 401, "{}", bad.body);
    // Forward-auth answers from the rebuilt view, email and all.
    let ok = server.get("/v1/auth/verify", Some(&access));
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.header("x-auth-email"), Some("user3@example.com"));
    let (ops, _) = server.login("ops@example.com");
    let ok = server.get("/v1/auth/verify", Some(&ops));
    assert_eq!(ok.header("x-auth-roles"), Some("admin,ops"));
    // A session that was live before the restart still rotates; the ended one stays ended.
    let rotated = server.refresh(&kept_refresh);
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let ended = server.get("/v1/auth/verify", Some(&ended_access));
    assert_eq!(ended.status, 401, "{}", ended.body);
    assert_eq!(server.metric("latchd_users"), 21);
}
