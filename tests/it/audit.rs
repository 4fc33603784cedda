//! The audit log (API.md v2 "Sessions, introspection, revocation, audit"), over real HTTP and
//! the real CLI: every event written once by its action with its actor, never a secret,
//! failed logins recorded and rate-limited ones not, paging and filters, the errors of
//! `GET /v1/admin/audit`, `latchd audit` beside a running server and on a stopped one, the
//! retention sweep, and the log line.

use serde_json::{json, Value};

use crate::sessions::sid;
use crate::support::clock::FakeClock;
use crate::support::{self, add_user, db_in, otp, run, Reply, TestServer, PASSWORD};
use crate::totp::{enrolled, mfa_token, send_code, turn_off, LENIENT};

/// One row as a case compares it: event, user, actor, operator, session, client.
type Row = (
    String,
    Option<String>,
    Option<String>,
    bool,
    Option<String>,
    Option<String>,
);

const LOCAL: Option<&str> = Some("127.0.0.1");

/// `GET /v1/admin/audit?query` as `admin`: the page, after checking every row's shape.
fn audit(server: &TestServer, admin: &str, query: &str) -> Vec<Value> {
    let reply = server.get(&format!("/v1/admin/audit?{query}"), Some(admin));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let rows = reply.json().as_array().expect("an array").clone();
    for row in &rows {
        assert_eq!(
            support::member_names(row),
            [
                "actor_id",
                "at",
                "client_ip",
                "event",
                "id",
                "operator",
                "session_id",
                "user_id"
            ]
        );
    }
    rows
}

/// Every row, all pages.
fn all_rows(server: &TestServer, admin: &str) -> Vec<Value> {
    audit(server, admin, "limit=1000")
}

fn row(value: &Value) -> Row {
    let text = |k: &str| value[k].as_str().map(str::to_owned);
    (
        text("event").expect("event"),
        text("user_id"),
        text("actor_id"),
        value["operator"].as_bool().expect("operator"),
        text("session_id"),
        text("client_ip"),
    )
}

/// The rows written after the row with id `mark`.
fn since_mark(server: &TestServer, admin: &str, mark: &str) -> Vec<Row> {
    audit(server, admin, &format!("after={mark}&limit=1000"))
        .iter()
        .map(row)
        .collect()
}

fn last_id(server: &TestServer, admin: &str) -> String {
    let rows = all_rows(server, admin);
    rows.last().expect("a row")["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A row as the user acted on its own account over HTTP from loopback.
fn by_user(event: &str, user: &str, session: Option<&str>) -> Row {
    (
        event.to_owned(),
        Some(user.to_owned()),
        None,
        false,
        session.map(str::to_owned),
        LOCAL.map(str::to_owned),
    )
}

/// A row an admin's API call from loopback wrote about `user`.
fn by_admin(event: &str, user: &str, admin: &str) -> Row {
    (
        event.to_owned(),
        Some(user.to_owned()),
        Some(admin.to_owned()),
        false,
        None,
        LOCAL.map(str::to_owned),
    )
}

/// A row the operator CLI wrote about `user`.
fn by_operator(event: &str, user: Option<&str>) -> Row {
    (
        event.to_owned(),
        user.map(str::to_owned),
        None,
        true,
        None,
        None,
    )
}

fn send(server: &TestServer, method: &str, path: &str, bearer: &str, body: &Value) -> Reply {
    let auth = format!("Bearer {bearer}");
    server.request(
        method,
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
}

/// A server whose database has an admin added by the CLI; its access token and id.
fn with_admin(env: &[(&str, &str)]) -> (TestServer, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let id = add_user(dir.path(), "root@example.com", &["--role", "admin"]);
    let server = TestServer::start_in(dir, env);
    let (access, _) = server.login("root@example.com");
    (server, access, id)
}

#[test]
#[allow(clippy::too_many_lines)] // one scenario: every action in order, then the whole trail
fn every_action_writes_its_row_once_with_its_actor_and_never_a_secret() {
    let (server, admin, root) = with_admin(LENIENT);
    // The CLI on the stopped file: the first signing key, then the admin it added.
    let first = all_rows(&server, &admin);
    assert_eq!(
        first.iter().map(row).collect::<Vec<_>>(),
        vec![
            ("key_rotated".to_owned(), None, None, false, None, None),
            by_operator("registered", Some(&root)),
            by_user("login", &root, Some(&sid(&admin))),
        ]
    );
    let mark = last_id(&server, &admin);

    let ada = server.register("ada@example.com");
    let (s1_access, s1_refresh) = server.login("ada@example.com");
    let s1 = sid(&s1_access);
    let wrong = server.post_json(
        "/v1/auth/login",
        &json!({"email": "ada@example.com", "password": "not the right password at all"}),
    );
    wrong.assert_error(401, "invalid_grant");
    let unknown = server.post_json(
        "/v1/auth/login",
        &json!({"email": "ghost@example.com", "password": "the ghost's own password"}),
    );
    unknown.assert_error(401, "invalid_grant");
    // A rotation, and a retry inside the grace, are no events (reuse has its own case).
    let rotated = server.refresh(&s1_refresh);
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let (rotated_access, rotated_refresh) = rotated.pair();
    assert_eq!(server.refresh(&s1_refresh).status, 200);

    let (s2_access, _) = server.login("ada@example.com");
    let s2 = sid(&s2_access);
    let new_password = "an entirely new password 43";
    let changed = send(
        &server,
        "PUT",
        "/v1/users/me/password",
        &s2_access,
        &json!({"current_password": PASSWORD, "new_password": new_password}),
    );
    assert_eq!(changed.status, 204, "{}", changed.body);
    let (s3_access, _) = server.login_with("ada@example.com", new_password);
    let s3 = sid(&s3_access);
    let ended = send(
        &server,
        "DELETE",
        &format!("/v1/users/me/sessions/{s3}"),
        &s2_access,
        &json!({}),
    );
    assert_eq!(ended.status, 204, "{}", ended.body);
    assert_eq!(server.post_auth("/v1/auth/logout", &s2_access).status, 204);
    let (s4_access, _) = server.login_with("ada@example.com", new_password);
    let s4 = sid(&s4_access);
    assert_eq!(
        server.post_auth("/v1/auth/logout-all", &s4_access).status,
        204
    );

    // Admin actions through the API, and the operator's through the running server.
    let roles = send(
        &server,
        "PUT",
        &format!("/v1/admin/users/{ada}/roles"),
        &admin,
        &json!({"roles": ["ops"]}),
    );
    assert_eq!(roles.status, 204, "{}", roles.body);
    let revoke = server.post_auth(&format!("/v1/admin/users/{ada}/revoke"), &admin);
    assert_eq!(revoke.status, 204, "{}", revoke.body);
    let db = server.db_path();
    for command in ["disable", "enable"] {
        let out = run(&db, &[], &["user", command, "ada@example.com"], b"");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let reset = send(
        &server,
        "DELETE",
        &format!("/v1/admin/users/{ada}/totp"),
        &admin,
        &json!({}),
    );
    assert_eq!(reset.status, 204, "{}", reset.body);
    let deleted = send(
        &server,
        "DELETE",
        &format!("/v1/admin/users/{ada}"),
        &admin,
        &json!({}),
    );
    assert_eq!(deleted.status, 204, "{}", deleted.body);

    let want = vec![
        by_user("registered", &ada, None),
        by_user("login", &ada, Some(&s1)),
        by_user("login_failed", &ada, None),
        // No user id, and above all no email, for an account that does not exist.
        (
            "login_failed".to_owned(),
            None,
            None,
            false,
            None,
            LOCAL.map(str::to_owned),
        ),
        by_user("login", &ada, Some(&s2)),
        by_user("password_changed", &ada, Some(&s2)),
        by_user("login", &ada, Some(&s3)),
        by_user("session_revoked", &ada, Some(&s3)),
        by_user("logout", &ada, Some(&s2)),
        by_user("login", &ada, Some(&s4)),
        by_user("logout_all", &ada, Some(&s4)),
        by_admin("roles_changed", &ada, &root),
        by_admin("logout_all", &ada, &root),
        by_operator("user_disabled", Some(&ada)),
        by_operator("user_enabled", Some(&ada)),
        by_admin("totp_reset", &ada, &root),
        by_admin("user_deleted", &ada, &root),
    ];
    assert_eq!(since_mark(&server, &admin, &mark), want);

    // Nothing a caller sent as a secret, nor an email, is in the trail.
    let body = server.get("/v1/admin/audit?limit=1000", Some(&admin)).body;
    for secret in [
        "ghost@example.com",
        "ada@example.com",
        "root@example.com",
        PASSWORD,
        new_password,
        "the ghost's own password",
        "not the right password at all",
        s1_refresh.as_str(),
        s1_access.as_str(),
        rotated_access.as_str(),
        rotated_refresh.as_str(),
        admin.as_str(),
    ] {
        assert!(!body.contains(secret), "the audit log holds {secret:?}");
    }
    // One structured log line per row, with the same fields.
    let log = server.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("latchd::audit"))
        .collect();
    // The server wrote all but the CLI's first two rows.
    assert_eq!(lines.len(), all_rows(&server, &admin).len() - 2, "{log}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("event=\"user_deleted\"")
                && l.contains(&format!("actor_id=\"{root}\""))),
        "{log}"
    );
    assert!(!log.contains("ghost@example.com"), "{log}");
}

#[test]
fn a_reused_refresh_token_is_recorded_with_its_session() {
    let (server, admin, _) = with_admin(&[("LATCHD_REFRESH_GRACE", "0")]);
    let ada = server.register("ada@example.com");
    let (access, refresh) = server.login("ada@example.com");
    assert_eq!(server.refresh(&refresh).status, 200);
    let mark = last_id(&server, &admin);
    server.refresh(&refresh).assert_error(401, "invalid_grant");
    // A second reuse finds the session revoked already: nothing more happened.
    server.refresh(&refresh).assert_error(401, "invalid_grant");
    assert_eq!(
        since_mark(&server, &admin, &mark),
        vec![by_user("refresh_reuse", &ada, Some(&sid(&access)))]
    );
}

#[test]
fn a_logout_by_the_refresh_cookie_alone_is_recorded_with_its_user_and_session() {
    let (server, admin, _) = with_admin(&[]);
    let lou = server.register("lou@example.com");
    let (access, refresh) = server.login("lou@example.com");
    let mark = last_id(&server, &admin);
    let cookie = format!("refresh_token={refresh}");
    let reply = server.request(
        "POST",
        "/v1/auth/logout",
        &[("Cookie", &cookie), ("Content-Type", "application/json")],
        b"",
    );
    assert_eq!(reply.status, 204, "{}", reply.body);
    // Once more ends nothing, so it writes nothing.
    let again = server.request(
        "POST",
        "/v1/auth/logout",
        &[("Cookie", &cookie), ("Content-Type", "application/json")],
        b"",
    );
    assert_eq!(again.status, 204, "{}", again.body);
    assert_eq!(
        since_mark(&server, &admin, &mark),
        vec![by_user("logout", &lou, Some(&sid(&access)))]
    );
}

#[test]
fn second_factor_events_are_recorded_once_each() {
    let (server, admin, root) = with_admin(LENIENT);
    let mark = last_id(&server, &admin);
    let user = enrolled(&server, "mia@example.com", 0);
    let enrol_session = sid(&user.bearer);
    // A wrong code, then a recovery code: one failure, one recovery, one login.
    let token = mfa_token(&server, &user.email);
    send_code(&server, &token, "000000").assert_error(401, "invalid_code");
    let signed_in = send_code(&server, &token, &user.recovery[0]);
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    let (mfa_access, _) = signed_in.pair();
    // A code of the step after the enrolment's (that one is spent).
    let code = user
        .secret
        .code_at_step(otp::step_of(otp::steady(0, 6)) + 1);
    let off = turn_off(&server, &user.bearer, PASSWORD, &code);
    assert_eq!(off.status, 204, "{}", off.body);
    let reset = send(
        &server,
        "DELETE",
        &format!("/v1/admin/users/{}/totp", user.id),
        &admin,
        &json!({}),
    );
    assert_eq!(reset.status, 204, "{}", reset.body);
    let id = user.id.as_str();
    assert_eq!(
        since_mark(&server, &admin, &mark),
        vec![
            by_user("registered", id, None),
            by_user("login", id, Some(&enrol_session)),
            by_user("mfa_enabled", id, Some(&enrol_session)),
            by_user("mfa_failed", id, None),
            by_user("login", id, Some(&sid(&mfa_access))),
            by_user("recovery_code_used", id, Some(&sid(&mfa_access))),
            by_user("mfa_disabled", id, None),
            by_admin("totp_reset", id, &root),
        ]
    );
    // Turning TOTP off with a recovery code instead of a code: the code is spent in the same
    // write, so both rows are there, once each (the code's row after the change it served, as
    // at sign-in).
    let other = enrolled(&server, "max@example.com", 0);
    let mark = last_id(&server, &admin);
    let off = turn_off(&server, &other.bearer, PASSWORD, &other.recovery[3]);
    assert_eq!(off.status, 204, "{}", off.body);
    let off_again = turn_off(&server, &other.bearer, PASSWORD, &other.recovery[3]);
    assert_ne!(off_again.status, 204, "{}", off_again.body);
    assert_eq!(
        since_mark(&server, &admin, &mark),
        vec![
            by_user("mfa_disabled", &other.id, None),
            by_user("recovery_code_used", &other.id, None),
        ]
    );
    let body = server.get("/v1/admin/audit?limit=1000", Some(&admin)).body;
    for secret in &user.recovery {
        assert!(
            !body.contains(secret.as_str()),
            "a recovery code in the log"
        );
    }
}

#[test]
fn failed_logins_are_recorded_and_rate_limited_ones_are_not() {
    let (server, admin, _) = with_admin(&[("LATCHD_LOGIN_ADDRESS_PER_MIN", "3")]);
    let mark = last_id(&server, &admin);
    let mut failed = 0;
    let mut limited = 0;
    for i in 0..8 {
        let reply = server.post_json(
            "/v1/auth/login",
            &json!({"email": format!("nobody{i}@example.com"), "password": "guess guess guess"}),
        );
        match reply.status {
            401 => failed += 1,
            429 => limited += 1,
            other => panic!("{other}: {}", reply.body),
        }
    }
    assert!(
        failed >= 1 && limited >= 1,
        "{failed} failed, {limited} limited"
    );
    let rows = since_mark(&server, &admin, &mark);
    assert_eq!(rows.len(), failed, "{rows:?}");
    assert!(rows.iter().all(|r| r.0 == "login_failed" && r.1.is_none()));
}

#[test]
fn the_route_pages_and_filters_and_refuses_bad_parameters() {
    let (server, admin, root) = with_admin(&[]);
    let ada = server.register("ada@example.com");
    server.login("ada@example.com");
    server.login("ada@example.com");
    let all = all_rows(&server, &admin);
    assert_eq!(all.len(), 6, "{all:?}");
    // Pages of two, oldest first, from after the last id of the page before.
    let mut paged = Vec::new();
    let mut query = "limit=2".to_owned();
    loop {
        let page = audit(&server, &admin, &query);
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        query = format!("limit=2&after={}", last["id"].as_str().unwrap());
        paged.extend(page);
    }
    assert_eq!(paged, all);
    let logins = audit(&server, &admin, &format!("user={ada}&event=login"));
    assert_eq!(logins.len(), 2);
    assert!(logins
        .iter()
        .all(|r| r["user_id"] == ada.as_str() && r["event"] == "login"));
    let roots = audit(&server, &admin, &format!("user={root}"));
    assert_eq!(roots.len(), 2, "{roots:?}");
    // The default page is 100 rows: all six here.
    assert_eq!(audit(&server, &admin, "").len(), 6);

    for query in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "limit=",
        "user=nobody",
        &format!("user={}", ada.to_uppercase()),
        "event=logged_in",
        "event=LOGIN",
        "after=123",
        "verbose=1",
        "limit=1&limit=2",
    ] {
        server
            .get(&format!("/v1/admin/audit?{query}"), Some(&admin))
            .assert_error(400, "invalid_request");
    }
    server
        .get("/v1/admin/audit", None)
        .assert_error(401, "invalid_token");
    let (plain, _) = server.login("ada@example.com");
    server
        .get("/v1/admin/audit", Some(&plain))
        .assert_error(403, "insufficient_scope");
}

#[test]
fn latchd_audit_prints_the_rows_beside_a_running_server_and_on_a_stopped_one() {
    let (server, admin, root) = with_admin(&[]);
    let ada = server.register("ada@example.com");
    server.login("ada@example.com");
    let api: Vec<Value> = all_rows(&server, &admin);
    let db = server.db_path();
    let lines = |args: &[&str]| -> Vec<Value> {
        let mut full = vec!["audit"];
        full.extend_from_slice(args);
        let out = run(&db, &[], &full, b"");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
            .collect()
    };
    assert_eq!(lines(&[]), api, "beside the running server");
    let by_email = lines(&["--user", "ada@example.com"]);
    assert_eq!(by_email, lines(&["--user", &ada]));
    assert_eq!(by_email.len(), 2);
    assert_eq!(lines(&["--event", "registered"]).len(), 2);
    assert_eq!(lines(&["--since", "2000-01-01T00:00:00Z"]), api);
    assert!(lines(&["--since", "4102444800"]).is_empty());
    let dir = server.stop();
    let db = db_in(dir.path());
    let lines_stopped = {
        let out = run(&db, &[], &["audit", "--user", &root], b"");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let want: Vec<Value> = api
        .iter()
        .filter(|r| r["user_id"] == root.as_str())
        .cloned()
        .collect();
    let got: Vec<Value> = lines_stopped
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got, want, "on the stopped file");
    // The operator's own key rotation on the stopped file is recorded as the operator's.
    let out = run(&db, &[], &["key", "rotate"], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&db, &[], &["audit", "--event", "key_rotated"], b"");
    let rotated: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rotated.len(), 2);
    assert_eq!(rotated[1]["operator"], true);
    assert_eq!(rotated[1]["actor_id"], Value::Null);
    // Bad arguments: a time clap refuses (exit 2), an event or user the command refuses.
    assert_eq!(
        run(&db, &[], &["audit", "--since", "yesterday"], b"")
            .status
            .code(),
        Some(2)
    );
    let out = run(&db, &[], &["audit", "--event", "nope"], b"");
    crate::cli::assert_failed_with(&out, "latchd: no audit event is called \"nope\"");
    let out = run(&db, &[], &["audit", "--user", "nobody@example.com"], b"");
    crate::cli::assert_failed_with(&out, "latchd: no user with id or email");
}

#[test]
fn rows_older_than_the_retention_are_swept() {
    let Some(clock) = FakeClock::new() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "root@example.com", &["--role", "admin"]);
    let mut env: Vec<(&str, String)> = clock.env();
    env.push(("LATCHD_AUDIT_RETENTION", "3600".to_owned()));
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = TestServer::start_in(dir, &pairs);
    let (admin, _) = server.login("root@example.com");
    let before = all_rows(&server, &admin).len();
    clock.advance(3700);
    let (admin, _) = server.login("root@example.com");
    // The CLI's rows (at the real time) and the first login are past the retention now.
    let out = run(&server.db_path(), &[], &["gc"], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("audit={before}")), "{stdout}");
    let left = all_rows(&server, &admin);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["event"], "login");
}
