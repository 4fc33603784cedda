//! The process around the API: restarts on the same file, graceful SIGTERM, and refusing to
//! start on bad configuration.

use std::process::Output;
use std::thread;
use std::time::Duration;

use serde_json::json;

use crate::support::{add_user, http, run_to_exit, TestServer, PASSWORD};

#[test]
fn users_sessions_and_revocations_survive_a_restart() {
    let server = TestServer::start();
    let id = server.register("olga@example.com");
    let (kept_access, kept_refresh) = server.login("olga@example.com");
    let (gone_access, gone_refresh) = server.login("olga@example.com");
    assert_eq!(
        server.post_auth("/v1/auth/logout", &gone_access).status,
        204
    );

    let server = server.restart();

    // The stored signing key still verifies the old access token.
    let verify = server.get("/v1/auth/verify", Some(&kept_access));
    assert_eq!(verify.status, 200, "{}", verify.body);
    assert_eq!(verify.header("x-auth-subject"), Some(id.as_str()));
    let me = server.get("/v1/auth/me", Some(&kept_access));
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.json()["email"], "olga@example.com");

    let rotated = server.refresh(&kept_refresh);
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let (new_access, _) = rotated.pair();
    assert_eq!(server.get("/v1/auth/verify", Some(&new_access)).status, 200);

    // What was logged out stays logged out.
    server
        .get("/v1/auth/verify", Some(&gone_access))
        .assert_error(401, "invalid_token");
    server
        .refresh(&gone_refresh)
        .assert_error(401, "invalid_grant");

    // The account itself: its password and its email's uniqueness.
    server.login("olga@example.com");
    server
        .post_json(
            "/v1/users",
            &json!({"email": "olga@example.com", "password": PASSWORD}),
        )
        .assert_error(409, "conflict");
}

#[test]
fn logout_all_and_rotation_survive_a_restart() {
    let server = TestServer::start_with(&[("LATCHD_REFRESH_GRACE", "0")]);
    server.register("pat@example.com");
    let (a1, r1) = server.login("pat@example.com");
    let (_, r2) = server.login("pat@example.com");
    let (_, r2_next) = server.refresh(&r2).pair();
    assert_eq!(server.post_auth("/v1/auth/logout-all", &a1).status, 204);
    let (a3, r3) = server.login("pat@example.com");

    let server = server.restart();

    server
        .get("/v1/auth/verify", Some(&a1))
        .assert_error(401, "invalid_token");
    server.refresh(&r1).assert_error(401, "invalid_grant");
    server.refresh(&r2_next).assert_error(401, "invalid_grant");
    assert_eq!(server.get("/v1/auth/verify", Some(&a3)).status, 200);
    let (_, r3_next) = server.refresh(&r3).pair();
    // A token superseded before the restart is still reuse after it.
    server.refresh(&r3).assert_error(401, "invalid_grant");
    server.refresh(&r3_next).assert_error(401, "invalid_grant");
}

#[test]
fn sigterm_lets_an_in_flight_login_finish_and_exits_0() {
    // The user is added by the CLI with the harness's cheap work factor; the server's is about
    // a second per hash, so its login upgrades the hash and is still hashing when SIGTERM
    // arrives. The binary is built with the test's profile, and unoptimised ring is far
    // slower. Normal priority: this test is about draining, not about sharing the CPU.
    let iterations = if cfg!(debug_assertions) {
        "200000"
    } else {
        "1500000"
    };
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "quinn@example.com", &[]);
    let mut server = TestServer::start_in(
        dir,
        &[
            ("LATCHD_PBKDF2_ITERATIONS", iterations),
            ("LATCHD_HASH_PRIORITY", "normal"),
        ],
    );
    let addr = server.addr();
    let body = json!({"email": "quinn@example.com", "password": PASSWORD}).to_string();
    let login = thread::spawn(move || {
        http(
            addr,
            "POST",
            "/v1/auth/login",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    });
    // The one sleep used as synchronisation: let the request reach the hashing pool.
    thread::sleep(Duration::from_millis(300));
    let status = server.stop_with_sigterm();
    let reply = login.join().expect("login thread");
    assert_eq!(reply.status, 200, "{}\n{}", reply.body, server.log());
    let (access, refresh) = reply.pair();
    assert!(!access.is_empty() && !refresh.is_empty());
    assert_eq!(status.code(), Some(0), "{status}\n{}", server.log());
    let log = server.log();
    assert!(
        !log.contains("grace elapsed"),
        "finished within the grace:\n{log}"
    );
    // The signal really came while the login was in flight.
    let draining = log.find("shutting down").expect("shutdown logged");
    let answered = log
        .find("path=/v1/auth/login status=200")
        .expect("login logged");
    assert!(draining < answered, "SIGTERM came after the answer:\n{log}");
    // The login also upgraded the CLI's cheap hash to the server's work factor, durably.
    let store = latchd::store::Store::open(&server.db_path()).unwrap();
    let user = crate::support::wait(latchd::auth::storage::Storage::user_by_email(
        &store,
        "quinn@example.com",
    ))
    .unwrap()
    .unwrap();
    assert!(
        user.password_hash
            .starts_with(&format!("$pbkdf2-sha256$i={iterations}$")),
        "{}",
        user.password_hash
    );
}

#[test]
fn sigterm_on_an_idle_server_exits_0_and_keeps_the_data() {
    let mut server = TestServer::start();
    server.register("rita@example.com");
    let (access, _) = server.login("rita@example.com");
    let status = server.stop_with_sigterm();
    assert_eq!(status.code(), Some(0), "{status}\n{}", server.log());
    let server = server.restart();
    assert_eq!(server.get("/v1/auth/verify", Some(&access)).status, 200);
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The lines of stderr that report a problem (`latchd: …`).
fn problems(out: &Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter(|l| l.starts_with("latchd: "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn each_bad_setting_is_named_and_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("latchd.redb");
    let cases = [
        ("LATCHD_SIGNING_KEY", "c2hvcnQ"), // "short": 5 bytes
        ("LATCHD_ACCESS_TTL", "0"),
        ("LATCHD_LISTEN", "nonsense"),
        ("LATCHD_REFRESH_TTL", "0"),
        ("LATCHD_PASSWORD_MIN", "7"),
        // A word the log filter would take as a target: every line off, silently.
        ("LATCHD_LOG", "verbose"),
        ("LATCHD_LOG", "latchd=loud"),
        // With credentials allowed, every origin must be named, and an origin has no path.
        ("LATCHD_CORS_ORIGINS", "*"),
        ("LATCHD_CORS_ORIGINS", "https://app.example.com/"),
        ("LATCHD_TRUSTED_PROXIES", "172.16.0.1/12"),
    ];
    for (var, value) in cases {
        let out = run_to_exit(&db, &[(var, value)]);
        assert!(
            !out.status.success(),
            "{var}={value} started: {}",
            stderr(&out)
        );
        let lines = problems(&out);
        assert_eq!(lines.len(), 1, "{var}={value}: {lines:?}");
        assert!(lines[0].contains(var), "{var}={value}: {lines:?}");
        assert!(
            !stderr(&out).contains("listening on"),
            "{var}={value}: {}",
            stderr(&out)
        );
    }
    assert!(!db.exists(), "a refused start must not create the database");
}

#[test]
fn a_log_filter_by_target_keeps_that_target_only() {
    let server = TestServer::start_with(&[("LATCHD_LOG", "off, latchd::access = info")]);
    assert_eq!(server.get("/healthz", None).status, 200);
    // The access line is written after the answer: wait for it, boundedly.
    let mut log = server.log();
    for _ in 0..200 {
        if log.contains("/healthz") {
            break;
        }
        thread::sleep(Duration::from_millis(25));
        log = server.log();
    }
    assert!(
        log.contains("latchd::access") && log.contains("/healthz"),
        "{log}"
    );
    // latchd::runtime's start lines (the key, the plain-http cookie warning) are off.
    assert!(!log.contains("signing"), "{log}");
    assert!(!log.contains("LATCHD_COOKIE_SECURE"), "{log}");
}

#[test]
fn two_problems_print_two_lines() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = run_to_exit(
        &dir.path().join("latchd.redb"),
        &[
            ("LATCHD_SIGNING_KEY", "c2hvcnQ"),
            ("LATCHD_ACCESS_TTL", "0"),
        ],
    );
    assert!(!out.status.success());
    let lines = problems(&out);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("LATCHD_SIGNING_KEY")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("LATCHD_ACCESS_TTL")),
        "{lines:?}"
    );
}

#[test]
fn a_database_in_a_missing_directory_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("no/such/dir/latchd.redb");
    let out = run_to_exit(&db, &[]);
    assert!(!out.status.success(), "{}", stderr(&out));
    let lines = problems(&out);
    assert!(
        lines.iter().any(|l| l.contains(&db.display().to_string())),
        "names the path: {}",
        stderr(&out)
    );
}

#[test]
fn a_second_server_on_the_same_file_is_refused() {
    let first = TestServer::start();
    first.register("sam@example.com");
    let out = run_to_exit(&first.db_path(), &[]);
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("locked"), "{}", stderr(&out));
    // The first one is unharmed.
    first.login("sam@example.com");
}

#[test]
fn a_flag_overrides_its_variable_and_is_checked_like_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::support::db_in(dir.path());
    // A bad value by flag is refused like the variable, naming the variable.
    let out = crate::support::run(&db, &[], &["serve", "--access-ttl", "0"], b"");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("LATCHD_ACCESS_TTL"),
        "{}",
        stderr(&out)
    );
    // A good flag wins over a bad variable: `user list` (which needs a valid config) runs.
    let out = crate::support::run(
        &db,
        &[("LATCHD_PASSWORD_MIN", "3")],
        &[
            "--password-min",
            "12",
            "user",
            "add",
            "--email",
            "f@example.com",
        ],
        b"correct horse battery staple\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = crate::support::run(
        &db,
        &[],
        &["user", "list", "--db", db.to_str().unwrap()],
        b"",
    );
    assert!(String::from_utf8_lossy(&listed.stdout).contains("f@example.com"));
}
