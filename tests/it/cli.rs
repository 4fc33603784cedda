//! The operator CLI, run as the built binary against a temp redb file with no server on it (a
//! real server on the same file before and after), and the checks of what `--db` names.
//! Beside a running server: `operator.rs`.

use std::process::Output;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

use latchd::auth::storage::Storage;
use latchd::model::{AuditEvent, AuditNote, StoredKey};
use latchd::store::Store;
use latchd::time::UnixTime;

use crate::support::{add_user, db_in, run, wait, TestServer, PASSWORD};
use crate::sweep::churn;

#[test]
fn user_add_reads_the_password_from_stdin_and_the_admin_can_log_in() {
    let dir = tempfile::tempdir().expect("temp dir");
    let id = add_user(dir.path(), "root@example.com", &["--role", "admin"]);
    assert!(uuid::Uuid::try_parse(&id).is_ok(), "{id}");

    let server = TestServer::start_in(dir, &[]);
    let (access, _) = server.login("root@example.com");
    let claims = segment(&access, 1);
    assert_eq!(claims["sub"], id.as_str());
    assert_eq!(claims["roles"], serde_json::json!(["admin"]));

    server.register("plain@example.com");
    let users = server.get("/v1/admin/users", Some(&access));
    assert_eq!(users.status, 200, "{}", users.body);
    let emails: Vec<String> = users
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|u| u["email"].as_str().expect("email").to_owned())
        .collect();
    assert_eq!(emails.len(), 2, "{emails:?}");
    assert!(
        emails.contains(&"root@example.com".to_owned()),
        "{emails:?}"
    );
    assert!(
        emails.contains(&"plain@example.com".to_owned()),
        "{emails:?}"
    );
}

#[test]
fn weak_password_or_bad_role_is_refused_in_one_line_with_exit_1() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = db_in(dir.path());
    let add = |stdin: &[u8], extra: &[&str]| {
        let mut args = vec!["user", "add", "--email", "a@example.com"];
        args.extend_from_slice(extra);
        run(&db, &[], &args, stdin)
    };

    let short = add(b"tooshort\n", &[]);
    assert_failed_with(
        &short,
        "latchd: password refused: password must be at least 15 characters",
    );
    let common = add(b"aaaaaaaaaaaaaaaaaaaa\n", &[]);
    assert_failed_with(&common, "latchd: password refused:");
    let empty = add(b"", &[]);
    assert_failed_with(&empty, "latchd: no password on stdin");
    let role = add(format!("{PASSWORD}\n").as_bytes(), &["--role", "Admin"]);
    assert_failed_with(&role, "latchd: invalid role \"Admin\"");

    // No user, and not even the new empty file, was left behind.
    assert!(!db.exists());
}

#[test]
fn user_list_prints_one_line_per_user() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = add_user(
        dir.path(),
        "one@example.com",
        &["--role", "ops", "--role", "admin"],
    );
    let second = add_user(dir.path(), "two@example.com", &[]);

    let out = run(&db_in(dir.path()), &[], &["user", "list"], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let mut lines: Vec<Vec<&str>> = stdout.lines().map(|l| l.split('\t').collect()).collect();
    lines.sort_by_key(|fields| fields[1]);
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(
        lines[0][..3],
        [first.as_str(), "one@example.com", "admin,ops"]
    );
    assert_eq!(lines[1][..3], [second.as_str(), "two@example.com", ""]);
    for fields in &lines {
        assert_eq!(fields.len(), 5, "{fields:?}");
        let created = fields[3];
        assert!(
            created.len() == 20 && created.ends_with('Z') && created.as_bytes()[10] == b'T',
            "created_at is not RFC 3339: {created}"
        );
        assert_eq!(fields[4], "enabled");
    }
}

#[test]
fn disable_refuses_login_after_a_restart_and_delete_removes_the_user() {
    let dir = tempfile::tempdir().expect("temp dir");
    let id = add_user(dir.path(), "bob@example.com", &[]);
    let server = TestServer::start_in(dir, &[]);
    let (access, _) = server.login("bob@example.com");
    let dir = server.stop();
    let db = db_in(dir.path());

    let out = run(&db, &[], &["user", "disable", "bob@example.com"], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list = text(&run(&db, &[], &["user", "list"], b"").stdout);
    assert!(list.trim_end().ends_with("\tdisabled"), "{list}");

    let server = TestServer::start_in(dir, &[]);
    let login = server.post_json(
        "/v1/auth/login",
        &serde_json::json!({"email": "bob@example.com", "password": PASSWORD}),
    );
    login.assert_error(401, "invalid_grant");
    assert_eq!(server.get("/v1/auth/verify", Some(&access)).status, 401);
    let dir = server.stop();

    // Enabling lets the user log in again, but the revoked session stays revoked.
    let out = run(&db, &[], &["user", "enable", &id], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let server = TestServer::start_in(dir, &[]);
    server.login("bob@example.com");
    assert_eq!(server.get("/v1/auth/verify", Some(&access)).status, 401);
    let dir = server.stop();

    let out = run(&db, &[], &["user", "delete", &id], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list = run(&db, &[], &["user", "list"], b"");
    assert_eq!(text(&list.stdout), "");
    let again = run(&db, &[], &["user", "delete", &id], b"");
    assert_failed_with(&again, "latchd: no user with id or email");
    drop(dir);
}

#[test]
fn key_rotate_keeps_old_tokens_verifying_and_new_tokens_carry_the_new_kid() {
    let dir = tempfile::tempdir().expect("temp dir");
    add_user(dir.path(), "kim@example.com", &[]);
    let server = TestServer::start_in(dir, &[]);
    let (before, _) = server.login("kim@example.com");
    let old_kid = kid(&before);
    let dir = server.stop();

    let out = run(&db_in(dir.path()), &[], &["key", "rotate"], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let new_kid = text(&out.stdout).trim().to_owned();
    assert_eq!(new_kid.len(), 12, "{new_kid}");
    assert_ne!(new_kid, old_kid);

    let server = TestServer::start_in(dir, &[]);
    let verify = server.get("/v1/auth/verify", Some(&before));
    assert_eq!(
        verify.status, 200,
        "token signed before the rotation: {}",
        verify.body
    );
    let (after, _) = server.login("kim@example.com");
    assert_eq!(kid(&after), new_kid);
    assert_eq!(server.get("/v1/auth/verify", Some(&after)).status, 200);
}

#[test]
fn key_rotate_refuses_while_a_configured_key_signs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = URL_SAFE_NO_PAD.encode([7u8; 32]);
    add_user(dir.path(), "cfg@example.com", &[]);
    let out = run(
        &db_in(dir.path()),
        &[("LATCHD_SIGNING_KEY", &key)],
        &["key", "rotate"],
        b"",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("LATCHD_SIGNING_KEY is set: the configured key signs"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stderr).lines().count(), 1, "one line");
}

#[test]
fn commands_other_than_user_add_refuse_a_missing_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = db_in(dir.path());
    let want = format!(
        "latchd: {} does not exist (set LATCHD_DB to the server's database file)",
        db.display()
    );
    for args in [
        &["user", "list"][..],
        &["user", "disable", "a@example.com"],
        &["user", "enable", "a@example.com"],
        &["user", "delete", "a@example.com"],
        &["user", "totp-reset", "a@example.com"],
        &["key", "rotate"],
        &["gc"],
        &["backup", "/nonexistent-dir/copy.redb"],
    ] {
        let out = run(&db, &[], args, b"");
        assert_failed_with(&out, &want);
    }
    assert!(!db.exists());
}

#[test]
fn user_add_on_a_new_file_says_it_created_the_database_and_a_failed_one_leaves_none() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = db_in(dir.path());
    let weak = run(
        &db,
        &[],
        &["user", "add", "--email", "a@example.com"],
        b"short\n",
    );
    assert_failed_with(&weak, "latchd: password refused:");
    assert!(
        !db.exists(),
        "a failed bootstrap must not leave an empty database"
    );

    let out = run(
        &db,
        &[],
        &["user", "add", "--email", "a@example.com"],
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        format!("latchd: created a new database at {}\n", db.display())
    );
    // The second add finds the file: no note.
    let out = run(
        &db,
        &[],
        &["user", "add", "--email", "b@example.com"],
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn a_directory_or_a_foreign_file_is_refused_with_its_permissions_untouched() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let directory = dir.path().join("var-lib-latchd");
    std::fs::create_dir(&directory).expect("mkdir");
    std::fs::set_permissions(&directory, std::fs::Permissions::from_mode(0o755)).unwrap();
    let text_file = dir.path().join("notes.txt");
    std::fs::write(&text_file, "not a database\n").expect("write");
    let other_redb = dir.path().join("other.redb");
    {
        // Another program's redb file: tables, but no latchd schema.
        let db = redb::Database::create(&other_redb).expect("redb");
        let txn = db.begin_write().expect("txn");
        let table: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("theirs");
        txn.open_table(table)
            .expect("table")
            .insert(1, 2)
            .expect("insert");
        txn.commit().expect("commit");
    }
    let password = format!("{PASSWORD}\n");
    for (path, why) in [
        (&directory, "not a latchd database: it is a directory"),
        (&text_file, "not a latchd database: it is not a redb file"),
        (
            &other_redb,
            "tables without a schema version: not a latchd file",
        ),
    ] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let before = std::fs::read(path).ok();
        for args in [
            &["serve"][..],
            &["user", "list"],
            &["user", "add", "--email", "a@example.com"],
            &["gc"],
        ] {
            let out = run(
                path,
                &[("LATCHD_LISTEN", "127.0.0.1:0")],
                args,
                password.as_bytes(),
            );
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
            let line = stderr.lines().last().unwrap_or_default();
            assert!(
                line.starts_with(&format!("latchd: cannot open {}: ", path.display()))
                    && line.contains(why),
                "{args:?}: {stderr}"
            );
            let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(
                mode,
                0o755,
                "{args:?} changed the permissions of {}",
                path.display()
            );
            // redb itself marks a redb file it opened (another program's too); others are
            // not written at all.
            if path != &other_redb {
                assert!(
                    std::fs::read(path).ok() == before,
                    "{args:?} changed the file"
                );
            }
        }
    }
}

#[test]
fn a_latchd_database_readable_by_others_is_restricted_to_its_owner() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("temp dir");
    add_user(dir.path(), "a@example.com", &[]);
    let db = db_in(dir.path());
    assert_eq!(
        std::fs::metadata(&db).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(&db, &[], &["user", "list"], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::metadata(&db).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn help_exits_0_and_names_every_subcommand() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = db_in(dir.path());
    let out = run(&db, &[], &["--help"], b"");
    assert!(out.status.success());
    let help = text(&out.stdout);
    for word in [
        "serve",
        "user",
        "key",
        "gc",
        "backup",
        ".sock",
        "LATCHD_DB",
        "stdin",
    ] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
    let out = run(&db, &[], &["user", "--help"], b"");
    assert!(out.status.success());
    let help = text(&out.stdout);
    for word in ["add", "list", "disable", "enable", "delete"] {
        assert!(help.contains(word), "user --help lacks {word}:\n{help}");
    }
    let out = run(&db, &[], &["key", "--help"], b"");
    assert!(text(&out.stdout).contains("rotate"));
}

#[test]
fn gc_deletes_expired_rows_and_prints_the_counts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = db_in(dir.path());
    {
        let store = Store::open(&db).expect("open");
        // Sessions and blacklist rows from long ago, and a key retired long ago.
        churn(&store, UnixTime(1_000_000), 5);
        for (seed, retire_others_at) in [(1u8, None), (2, Some(UnixTime(1_000_000)))] {
            let secret = vec![seed; 32];
            let key = StoredKey {
                kid: latchd::token::kid_for(&secret),
                secret,
                created_at: UnixTime(1_000_000),
                retired_at: None,
            };
            wait(store.add_signing_key(
                key,
                retire_others_at,
                AuditNote::new(AuditEvent::KeyRotated, UnixTime(0)),
            ))
            .expect("key");
        }
    }
    let out = run(&db, &[], &["gc"], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        // Audit rows from long ago: the user's registration, five logins, two keys.
        "swept blacklist=5 families=5 keys=1 challenges=0 audit=8\n"
    );
    let out = run(&db, &[], &["gc"], b"");
    assert_eq!(
        text(&out.stdout),
        "swept blacklist=0 families=0 keys=0 challenges=0 audit=0\n"
    );
}

/// Asserts the command failed with exit code 1 and one line on stderr that starts with `prefix`.
pub fn assert_failed_with(out: &Output, prefix: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with(prefix),
        "want {prefix:?}, got {stderr:?}"
    );
}

/// Segment `index` of a compact JWS, decoded as JSON.
fn segment(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).expect("segment");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
}

fn kid(token: &str) -> String {
    segment(token, 0)["kid"].as_str().expect("kid").to_owned()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
