//! The CLI on PostgreSQL: one more node. `latchd user add`, `key rotate`, `user list` and
//! `backup` with `LATCHD_DATABASE_URL` set, beside two running servers on the same database.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::support::{postgres, run, TestServer, PASSWORD};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The `kid` in an access token's header.
fn kid(token: &str) -> String {
    let header = token.split('.').next().expect("a header");
    let json: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64url header"))
            .expect("JSON header");
    json["kid"].as_str().expect("kid").to_owned()
}

#[test]
fn the_cli_adds_users_and_rotates_keys_for_every_node_and_points_backups_at_pg_dump() {
    let Some(cluster) = postgres::cluster() else {
        return;
    };
    let url = cluster.fresh_database();
    let env = [("LATCHD_DATABASE_URL", url.as_str())];
    // No file anywhere: the CLI's LATCHD_DB points into an empty directory and stays unused.
    let scratch = tempfile::tempdir().expect("temp dir");
    let db = scratch.path().join("unused.redb");
    let cli = |args: &[&str], stdin: &[u8]| run(&db, &env, args, stdin);

    let added = cli(
        &[
            "user",
            "add",
            "--email",
            "ops@example.com",
            "--role",
            "admin",
        ],
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert!(added.status.success(), "user add: {}", text(&added.stderr));
    assert!(!db.exists(), "the CLI on PostgreSQL created a redb file");

    let a = TestServer::start_with(&env);
    let b = TestServer::start_with(&env);
    let (before, _) = a.login("ops@example.com");
    assert_eq!(b.get("/v1/auth/verify", Some(&before)).status, 200);
    let old_kid = kid(&before);

    let rotated = cli(&["key", "rotate"], b"");
    assert!(
        rotated.status.success(),
        "key rotate: {}",
        text(&rotated.stderr)
    );
    let new_kid = text(&rotated.stdout).trim().to_owned();
    assert_ne!(new_kid, old_kid);
    // Both running nodes follow the rotation made outside them, within the feed's bound.
    for node in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let (after, _) = node.login("ops@example.com");
            if kid(&after) == new_kid {
                for other in [&a, &b] {
                    assert_eq!(other.get("/v1/auth/verify", Some(&after)).status, 200);
                }
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a node still signs with {} 3 s after the rotation",
                kid(&after)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // The retired key keeps verifying for one access TTL, on both.
    assert_eq!(a.get("/v1/auth/verify", Some(&before)).status, 200);
    assert_eq!(b.get("/v1/auth/verify", Some(&before)).status, 200);

    // A user added through the CLI while the servers run can log in through either.
    let added = cli(
        &["user", "add", "--email", "late@example.com"],
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert!(added.status.success(), "{}", text(&added.stderr));
    let (late, _) = b.login("late@example.com");
    assert_eq!(a.get("/v1/auth/verify", Some(&late)).status, 200);
    let listed = cli(&["user", "list"], b"");
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    for email in ["ops@example.com", "late@example.com"] {
        assert!(
            text(&listed.stdout).contains(email),
            "{}",
            text(&listed.stdout)
        );
    }

    let gc = cli(&["gc"], b"");
    assert!(gc.status.success(), "gc: {}", text(&gc.stderr));

    let dest = scratch.path().join("backup.redb");
    let backup = cli(&["backup", dest.to_str().expect("utf-8 path")], b"");
    assert_eq!(backup.status.code(), Some(1));
    assert!(
        text(&backup.stderr).contains("pg_dump"),
        "{}",
        text(&backup.stderr)
    );
    assert!(!Path::new(&dest).exists());
}

#[test]
fn an_unreachable_database_is_one_clear_line_not_a_hang() {
    // Nothing listens on port 1 of the loopback address.
    let scratch = tempfile::tempdir().expect("temp dir");
    let out = run(
        &scratch.path().join("unused.redb"),
        &[(
            "LATCHD_DATABASE_URL",
            "postgres://latchd@127.0.0.1:1/latchd?sslmode=disable",
        )],
        &["user", "list"],
        b"",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("PostgreSQL") && stderr.contains("unreachable"),
        "{stderr}"
    );
}

#[test]
fn a_nul_in_a_login_email_is_a_wrong_login_and_sync_commit_off_is_warned_about() {
    let Some(cluster) = postgres::cluster() else {
        return;
    };
    let url = cluster.fresh_database();
    // A database that acknowledges commits before flushing them.
    let name = url.rsplit('/').next().expect("a database name").to_owned();
    postgres::block_on(async move {
        let client = postgres::connect(&cluster.url("postgres")).await;
        client
            .batch_execute(&format!(
                "ALTER DATABASE {name} SET synchronous_commit = off"
            ))
            .await
            .expect("ALTER DATABASE");
    });
    let server = TestServer::start_with(&[("LATCHD_DATABASE_URL", url.as_str())]);
    assert!(
        server
            .log()
            .contains("PostgreSQL acknowledges commits before they are flushed"),
        "{}",
        server.log()
    );
    // PostgreSQL's text cannot hold a NUL: an email with one is unknown, not a 500.
    let reply = server.post_json(
        "/v1/auth/login",
        &serde_json::json!({"email": "a\0@example.com", "password": PASSWORD}),
    );
    reply.assert_error(401, "invalid_grant");
}
