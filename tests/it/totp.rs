//! The second factor over the API (API.md v2 "Second factor"): enrolment, the login flow with
//! `mfa_required` / `mfa_token` / `POST /v1/auth/login/mfa`, replay, skew, recovery codes,
//! `amr`, `mfa=1` on verify, turning TOTP off, and the operator's reset. Codes come from the
//! tests' own RFC 6238 implementation (`support::otp`); the clock tests move the server's
//! wall clock with libfaketime (`support::clock`).

use serde_json::{json, Value};

use crate::support::clock::FakeClock;
use crate::support::otp::{self, Secret};
use crate::support::{add_user, db_in, run, Reply, TestServer, PASSWORD};

/// Enough account failures that the tests of the token's own limits are not slowed by the
/// login limiter (its own test uses the default).
pub(crate) const LENIENT: &[(&str, &str)] = &[("LATCHD_LOGIN_ACCOUNT_FAILURES", "100")];

/// A user with TOTP on, its secret and recovery codes, and the access token it enrolled with.
pub(crate) struct Enrolled {
    pub(crate) id: String,
    pub(crate) email: String,
    pub(crate) secret: Secret,
    pub(crate) recovery: Vec<String>,
    pub(crate) bearer: String,
}

/// Registers `email` and turns TOTP on for it, with a code of the server's current step
/// (`offset`: how far the server's clock is ahead of this one).
pub(crate) fn enrolled(server: &TestServer, email: &str, offset: i64) -> Enrolled {
    let id = server.register(email);
    let (bearer, _) = server.login(email);
    let started = begin(server, &bearer, PASSWORD);
    assert_eq!(started.status, 200, "{}", started.body);
    let secret = Secret::from_base32(started.json()["secret"].as_str().expect("secret"));
    let now = otp::steady(offset, 3);
    let confirmed = confirm(server, &bearer, &secret.code_at(now));
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    let recovery = confirmed.json()["recovery_codes"]
        .as_array()
        .expect("recovery_codes")
        .iter()
        .map(|c| c.as_str().expect("a string").to_owned())
        .collect();
    Enrolled {
        id,
        email: email.to_owned(),
        secret,
        recovery,
        bearer,
    }
}

fn begin(server: &TestServer, bearer: &str, password: &str) -> Reply {
    post_bearer(
        server,
        "/v1/users/me/totp",
        bearer,
        &json!({ "current_password": password }),
    )
}

fn confirm(server: &TestServer, bearer: &str, code: &str) -> Reply {
    post_bearer(
        server,
        "/v1/users/me/totp/confirm",
        bearer,
        &json!({ "code": code }),
    )
}

fn post_bearer(server: &TestServer, path: &str, bearer: &str, body: &Value) -> Reply {
    server.request(
        "POST",
        path,
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &format!("Bearer {bearer}")),
        ],
        body.to_string().as_bytes(),
    )
}

pub(crate) fn turn_off(server: &TestServer, bearer: &str, password: &str, code: &str) -> Reply {
    server.request(
        "DELETE",
        "/v1/users/me/totp",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &format!("Bearer {bearer}")),
        ],
        json!({ "current_password": password, "code": code })
            .to_string()
            .as_bytes(),
    )
}

/// The password step of a login for an account with TOTP on: its `mfa_token`.
pub(crate) fn mfa_token(server: &TestServer, email: &str) -> String {
    let reply = server.post_json(
        "/v1/auth/login",
        &json!({ "email": email, "password": PASSWORD }),
    );
    assert_eq!(reply.status, 401, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["error"], "mfa_required", "{}", reply.body);
    assert!(body["error_description"]
        .as_str()
        .is_some_and(|d| !d.is_empty()));
    assert!(body.get("access_token").is_none() && body.get("refresh_token").is_none());
    assert!(
        reply.header("set-cookie").is_none(),
        "no cookie before the code"
    );
    body["mfa_token"].as_str().expect("mfa_token").to_owned()
}

pub(crate) fn send_code(server: &TestServer, token: &str, code: &str) -> Reply {
    server.post_json(
        "/v1/auth/login/mfa",
        &json!({ "mfa_token": token, "code": code }),
    )
}

/// The `amr` claim of an access token.
fn amr(access_token: &str) -> Value {
    use base64::Engine as _;
    let payload = access_token.split('.').nth(1).expect("a JWS");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice::<Value>(&bytes).expect("JSON")["amr"].clone()
}

fn verify_mfa(server: &TestServer, bearer: &str) -> u16 {
    server.get("/v1/auth/verify?mfa=1", Some(bearer)).status
}

#[test]
fn enrolment_is_pending_until_a_code_confirms_it_and_then_sign_in_needs_a_code() {
    let server = TestServer::start_with(LENIENT);
    server.register("ada@example.test");
    let (bearer, _) = server.login("ada@example.test");
    begin(&server, &bearer, "not the password").assert_error(400, "invalid_request");
    confirm(&server, &bearer, "123456").assert_error(409, "conflict");

    let started = begin(&server, &bearer, PASSWORD);
    assert_eq!(started.status, 200, "{}", started.body);
    let body = started.json();
    let text = body["secret"].as_str().expect("secret");
    assert_eq!(text.len(), 32, "20 bytes of unpadded base32");
    assert!(text
        .bytes()
        .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)));
    assert_eq!(
        body["otpauth_uri"],
        format!("otpauth://totp/latchd:ada@example.test?secret={text}&issuer=latchd&algorithm=SHA1&digits=6&period=30")
    );
    let secret = Secret::from_base32(text);

    // Pending: sign-in still needs the password only.
    server.login("ada@example.test");
    // A wrong code, a malformed one and another account's are refused; the right one turns
    // TOTP on and answers ten distinct recovery codes.
    let now = otp::steady(0, 4);
    let wrong = format!(
        "{:06}",
        (secret.code_at(now).parse::<u32>().unwrap() + 1) % 1_000_000
    );
    for bad in [wrong.as_str(), "12345", "1234567", "abcdef", ""] {
        confirm(&server, &bearer, bad).assert_error(401, "invalid_code");
    }
    let on = confirm(&server, &bearer, &secret.code_at(now));
    assert_eq!(on.status, 200, "{}", on.body);
    let codes: Vec<String> = on.json()["recovery_codes"]
        .as_array()
        .expect("recovery_codes")
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    for code in &codes {
        let groups: Vec<&str> = code.split('-').collect();
        assert!(
            groups.len() == 3 && groups.iter().all(|g| g.len() == 4),
            "{code}"
        );
    }
    let mut distinct = codes.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 10);

    // On: a second enrolment or confirmation is a conflict, and sign-in needs the code.
    begin(&server, &bearer, PASSWORD).assert_error(409, "conflict");
    confirm(&server, &bearer, &secret.code_at(now)).assert_error(409, "conflict");
    let token = mfa_token(&server, "ada@example.test");
    // The confirming code's step is spent: it cannot sign in too.
    send_code(&server, &token, &secret.code_at(now)).assert_error(401, "invalid_code");
    assert_eq!(
        server.metric("latchd_second_factor_total{event=\"enabled\"}"),
        1
    );
}

#[test]
fn no_session_exists_before_the_code_and_the_token_is_single_use_and_bound_to_its_user() {
    let server = TestServer::start_with(LENIENT);
    let ada = enrolled(&server, "ada@example.test", 0);
    let bob = enrolled(&server, "bob@example.test", 0);
    let sessions = server.metric("latchd_families_live");
    let token = mfa_token(&server, &ada.email);
    assert_eq!(
        server.metric("latchd_families_live"),
        sessions,
        "no session yet"
    );
    assert_eq!(
        server.metric("latchd_logins_total{outcome=\"mfa_required\"}"),
        1
    );

    // The next step's code is in the window and not yet spent by the enrolment.
    let now = otp::steady(0, 4);
    let next = otp::step_of(now) + 1;
    // Bob's code is a wrong code for Ada's token.
    send_code(&server, &token, &bob.secret.code_at_step(next)).assert_error(401, "invalid_code");
    assert_eq!(
        server.metric("latchd_second_factor_total{event=\"failed\"}"),
        1
    );
    let opened = send_code(&server, &token, &ada.secret.code_at_step(next));
    assert_eq!(opened.status, 200, "{}", opened.body);
    let (access, refresh) = opened.pair();
    assert_eq!(amr(&access), json!(["pwd", "otp"]));
    assert_eq!(server.metric("latchd_families_live"), sessions + 1);
    let me = server.get("/v1/auth/me", Some(&access));
    assert_eq!(me.json()["id"], ada.id.as_str());
    // Used once; a second use (even with a fresh recovery code) finds no token.
    send_code(&server, &token, &ada.recovery[0]).assert_error(401, "invalid_grant");
    // Bob's own code still works for Bob: the wrong try on Ada's token spent nothing of his.
    let bobs = mfa_token(&server, &bob.email);
    let reply = send_code(&server, &bobs, &bob.secret.code_at_step(next));
    assert_eq!(reply.status, 200, "{}", reply.body);
    // Not a token at all.
    for bad in [
        "",
        "x",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &access,
    ] {
        send_code(&server, bad, "123456").assert_error(401, "invalid_grant");
    }
    // The refreshed pair keeps the session's second factor.
    let refreshed = server.refresh(&refresh);
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    assert_eq!(amr(&refreshed.pair().0), json!(["pwd", "otp"]));
}

#[test]
fn the_token_survives_five_wrong_codes_and_the_sixth_ends_it() {
    let server = TestServer::start_with(LENIENT);
    let ada = enrolled(&server, "ada@example.test", 0);
    let now = otp::steady(0, 6);
    let next = otp::step_of(now) + 1;
    let right = ada.secret.code_at_step(next);
    let wrong = format!("{:06}", (right.parse::<u32>().unwrap() + 1) % 1_000_000);

    let survivor = mfa_token(&server, &ada.email);
    for _ in 0..5 {
        send_code(&server, &survivor, &wrong).assert_error(401, "invalid_code");
    }
    let reply = send_code(&server, &survivor, &right);
    assert_eq!(reply.status, 200, "after five wrong codes: {}", reply.body);

    let doomed = mfa_token(&server, &ada.email);
    for _ in 0..6 {
        send_code(&server, &doomed, &wrong).assert_error(401, "invalid_code");
    }
    send_code(&server, &doomed, &ada.recovery[0]).assert_error(401, "invalid_grant");
}

#[test]
fn wrong_codes_count_in_the_login_limiter() {
    // The default: five consecutive failures, then a delay. A right password does not clear
    // them for an account with TOTP on; the code must be right too.
    let server = TestServer::start();
    let ada = enrolled(&server, "ada@example.test", 0);
    let now = otp::steady(0, 6);
    let right = ada.secret.code_at_step(otp::step_of(now) + 1);
    let wrong = format!("{:06}", (right.parse::<u32>().unwrap() + 1) % 1_000_000);
    let token = mfa_token(&server, &ada.email); // failure 1 until the code is right
    for _ in 0..4 {
        send_code(&server, &token, &wrong).assert_error(401, "invalid_code");
    }
    let limited = send_code(&server, &token, &right);
    limited.assert_error(429, "rate_limited");
    assert!(limited.header("retry-after").is_some());
    // The password step of the account is held back as well.
    let login = server.post_json(
        "/v1/auth/login",
        &json!({ "email": ada.email, "password": PASSWORD }),
    );
    login.assert_error(429, "rate_limited");
}

#[test]
fn a_spent_time_step_stays_spent_across_a_restart() {
    let server = TestServer::start_with(LENIENT);
    let ada = enrolled(&server, "ada@example.test", 0);
    let now = otp::steady(0, 8);
    let code = ada.secret.code_at_step(otp::step_of(now) + 1);
    let first = mfa_token(&server, &ada.email);
    assert_eq!(send_code(&server, &first, &code).status, 200);
    let again = mfa_token(&server, &ada.email);
    send_code(&server, &again, &code).assert_error(401, "invalid_code");
    let server = server.restart();
    let after = mfa_token(&server, &ada.email);
    send_code(&server, &after, &code).assert_error(401, "invalid_code");
    // And an earlier step of the window is spent by the later one.
    let earlier = ada.secret.code_at_step(otp::step_of(now));
    send_code(&server, &after, &earlier).assert_error(401, "invalid_code");
}

#[test]
fn a_code_one_step_early_or_late_is_accepted_and_two_steps_are_not() {
    let Some(clock) = FakeClock::new() else {
        return;
    };
    let server = TestServer::start_on(&clock, LENIENT);
    let ada = enrolled(&server, "ada@example.test", clock.offset());
    // The enrolment spent the current step; three steps on, -1..+1 are all unspent.
    clock.advance(90);
    let now = otp::steady(clock.offset(), 6);
    let step = otp::step_of(now);
    let login = |delta: i64| {
        let token = mfa_token(&server, &ada.email);
        let at = step.checked_add_signed(delta).expect("after 1970");
        send_code(&server, &token, &ada.secret.code_at_step(at))
    };
    // In increasing order: each accepted step spends the ones before it.
    login(-2).assert_error(401, "invalid_code");
    for delta in [-1, 0, 1] {
        let reply = login(delta);
        assert_eq!(reply.status, 200, "step {delta:+}: {}", reply.body);
    }
    login(2).assert_error(401, "invalid_code");
}

#[test]
fn the_token_dies_after_300_seconds() {
    let Some(clock) = FakeClock::new() else {
        return;
    };
    let server = TestServer::start_on(&clock, LENIENT);
    let ada = enrolled(&server, "ada@example.test", clock.offset());
    let near = mfa_token(&server, &ada.email);
    let late = mfa_token(&server, &ada.email);
    // 298 s on (a second of slack for the whole-second clock), still alive: a wrong code is
    // a wrong code, and the right one opens a session. The enrolment's step is long past, and
    // a code near a step's end is still inside the window of the next.
    clock.advance(298);
    send_code(&server, &near, "000000").assert_error(401, "invalid_code");
    let reply = send_code(&server, &near, &ada.secret.code_at(clock.now()));
    assert_eq!(reply.status, 200, "{}", reply.body);
    // 300 s on, dead, whatever code comes.
    clock.advance(2);
    let code = ada.secret.code_at_step(otp::step_of(clock.now()) + 1);
    send_code(&server, &late, &code).assert_error(401, "invalid_grant");
}

#[test]
fn recovery_codes_work_once_each_in_any_case_and_spacing_and_are_counted() {
    let server = TestServer::start_with(LENIENT);
    let ada = enrolled(&server, "ada@example.test", 0);
    let token = mfa_token(&server, &ada.email);
    let opened = send_code(&server, &token, &ada.recovery[0]);
    assert_eq!(opened.status, 200, "{}", opened.body);
    assert_eq!(amr(&opened.pair().0), json!(["pwd", "otp"]));
    let token = mfa_token(&server, &ada.email);
    send_code(&server, &token, &ada.recovery[0]).assert_error(401, "invalid_code");
    // Typed back in upper case, without hyphens, with spaces: the same code.
    let typed = ada.recovery[1].to_uppercase().replace('-', " ");
    let reply = send_code(&server, &token, &format!(" {typed} "));
    assert_eq!(reply.status, 200, "{typed}: {}", reply.body);
    assert_eq!(
        server.metric("latchd_second_factor_total{event=\"recovery_code_used\"}"),
        2
    );
    // Spent codes stay spent across a restart; the other eight still work.
    let server = server.restart();
    let token = mfa_token(&server, &ada.email);
    send_code(&server, &token, &ada.recovery[1]).assert_error(401, "invalid_code");
    assert_eq!(send_code(&server, &token, &ada.recovery[9]).status, 200);
}

#[test]
fn amr_and_verify_mfa_tell_a_password_session_from_a_second_factor_one() {
    let server = TestServer::start_with(LENIENT);
    server.register("pat@example.test");
    let (password_only, refresh) = server.login("pat@example.test");
    assert_eq!(amr(&password_only), json!(["pwd"]));
    assert_eq!(verify_mfa(&server, &password_only), 403);
    assert_eq!(
        server.get("/v1/auth/verify", Some(&password_only)).status,
        200
    );
    assert_eq!(amr(&server.refresh(&refresh).pair().0), json!(["pwd"]));

    let ada = enrolled(&server, "ada@example.test", 0);
    // The token Ada enrolled with came from a password login: enrolling does not upgrade it.
    assert_eq!(verify_mfa(&server, &ada.bearer), 403);
    let token = mfa_token(&server, &ada.email);
    let (with_otp, _) = send_code(&server, &token, &ada.recovery[0]).pair();
    assert_eq!(verify_mfa(&server, &with_otp), 200);
}

#[test]
fn turning_totp_off_takes_the_password_and_a_code() {
    let server = TestServer::start_with(LENIENT);
    let ada = enrolled(&server, "ada@example.test", 0);
    let now = otp::steady(0, 6);
    let code = ada.secret.code_at_step(otp::step_of(now) + 1);
    turn_off(&server, &ada.bearer, "not the password", &code).assert_error(400, "invalid_request");
    turn_off(&server, &ada.bearer, PASSWORD, "000000").assert_error(401, "invalid_code");
    let done = turn_off(&server, &ada.bearer, PASSWORD, &code);
    assert_eq!(done.status, 204, "{}", done.body);
    turn_off(&server, &ada.bearer, PASSWORD, &ada.recovery[0]).assert_error(409, "conflict");
    assert_eq!(
        server.metric("latchd_second_factor_total{event=\"disabled\"}"),
        1
    );
    // One factor again; the recovery codes went with it.
    server.login(&ada.email);
    // A recovery code can turn it off too.
    let bob = enrolled(&server, "bob@example.test", 0);
    let done = turn_off(&server, &bob.bearer, PASSWORD, &bob.recovery[3]);
    assert_eq!(done.status, 204, "{}", done.body);
}

#[test]
fn an_admin_reset_turns_totp_off_and_ends_every_session() {
    let dir = tempfile::tempdir().expect("temp dir");
    add_user(dir.path(), "root@example.test", &["--role", "admin"]);
    let server = TestServer::start_in(dir, LENIENT);
    let (admin, _) = server.login("root@example.test");
    let ada = enrolled(&server, "ada@example.test", 0);
    let token = mfa_token(&server, &ada.email);
    let (session, _) = send_code(&server, &token, &ada.recovery[0]).pair();
    let reset = |bearer: &str, id: &str| {
        server.request(
            "DELETE",
            &format!("/v1/admin/users/{id}/totp"),
            &[("Authorization", &format!("Bearer {bearer}"))],
            b"",
        )
    };
    reset(&session, &ada.id).assert_error(403, "insufficient_scope");
    reset(&admin, "00000000-0000-4000-8000-000000000000").assert_error(404, "not_found");
    let done = reset(&admin, &ada.id);
    assert_eq!(done.status, 204, "{}", done.body);
    for bearer in [&session, &ada.bearer] {
        server
            .get("/v1/auth/me", Some(bearer))
            .assert_error(401, "invalid_token");
    }
    assert_eq!(
        server.metric("latchd_second_factor_total{event=\"reset\"}"),
        1
    );
    // The password alone signs in again, and the user may enrol anew.
    let (fresh, _) = server.login(&ada.email);
    assert_eq!(begin(&server, &fresh, PASSWORD).status, 200);
}

#[test]
fn the_cli_reset_works_on_the_file_for_a_user_who_lost_the_device() {
    let server = TestServer::start_with(LENIENT);
    let ada = enrolled(&server, "ada@example.test", 0);
    let dir = server.stop();
    let out = run(
        &db_in(dir.path()),
        &[],
        &["user", "totp-reset", &ada.email],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&ada.id) && said.contains("sessions are revoked"),
        "{said}"
    );
    let missing = run(
        &db_in(dir.path()),
        &[],
        &["user", "totp-reset", "nobody@example.test"],
        b"",
    );
    assert_eq!(missing.status.code(), Some(1));
    let server = TestServer::start_in(dir, LENIENT);
    server
        .get("/v1/auth/me", Some(&ada.bearer))
        .assert_error(401, "invalid_token");
    server.login(&ada.email);
}

#[test]
fn with_totp_on_a_right_password_elsewhere_never_clears_the_failed_codes() {
    // The default limiter: five failures in a row, then a delay. Neither a new enrolment
    // (409 at once, before the password is looked at) nor a password change from a session
    // that never passed a code may reset the count the code guesses build.
    let server = TestServer::start();
    let ada = enrolled(&server, "ada@example.test", 0);
    begin(&server, &ada.bearer, "not even the password").assert_error(409, "conflict");
    let token = mfa_token(&server, &ada.email); // 1
    for _ in 0..3 {
        send_code(&server, &token, "000000").assert_error(401, "invalid_code"); // 2, 3, 4
    }
    begin(&server, &ada.bearer, PASSWORD).assert_error(409, "conflict");
    let changed = server.put_json_auth(
        "/v1/users/me/password",
        &ada.bearer,
        &json!({"current_password": PASSWORD, "new_password": PASSWORD}),
    );
    assert_eq!(changed.status, 204, "{}", changed.body); // 5, not cleared
    let login = server.post_json(
        "/v1/auth/login",
        &json!({ "email": ada.email, "password": PASSWORD }),
    );
    login.assert_error(429, "rate_limited");
}

#[test]
fn a_pending_enrolment_is_seen_and_confirmed_only_from_the_session_that_began_it() {
    let server = TestServer::start_with(LENIENT);
    server.register("ada@example.test");
    let (first, _) = server.login("ada@example.test");
    let (other, _) = server.login("ada@example.test");
    let started = begin(&server, &first, PASSWORD);
    let secret = Secret::from_base32(started.json()["secret"].as_str().expect("secret"));
    let now = otp::steady(0, 4);
    // Another session of the same user (a stolen token, say) cannot confirm it.
    confirm(&server, &other, &secret.code_at(now)).assert_error(409, "conflict");
    let on = confirm(&server, &first, &secret.code_at(now));
    assert_eq!(on.status, 200, "{}", on.body);
}

#[test]
fn a_pending_enrolment_expires_after_ten_minutes() {
    let Some(clock) = FakeClock::new() else {
        return;
    };
    let server = TestServer::start_on(&clock, LENIENT);
    server.register("ada@example.test");
    let (bearer, _) = server.login("ada@example.test");
    let started = begin(&server, &bearer, PASSWORD);
    let secret = Secret::from_base32(started.json()["secret"].as_str().expect("secret"));
    clock.advance(600);
    confirm(&server, &bearer, &secret.code_at(clock.now())).assert_error(409, "conflict");
    // A fresh one works.
    let started = begin(&server, &bearer, PASSWORD);
    let secret = Secret::from_base32(started.json()["secret"].as_str().expect("secret"));
    let on = confirm(&server, &bearer, &secret.code_at(clock.now()));
    assert_eq!(on.status, 200, "{}", on.body);
}

#[test]
fn concurrent_confirmations_turn_totp_on_once_and_hash_within_the_budget() {
    let server = TestServer::start_with(&[
        ("LATCHD_LOGIN_ACCOUNT_FAILURES", "100"),
        ("LATCHD_HASH_ADDRESS_PER_MIN", "4"),
    ]);
    server.register("ada@example.test"); // hash 1
    let (bearer, _) = server.login("ada@example.test"); // 2
    let started = begin(&server, &bearer, PASSWORD); // 3
    let secret = Secret::from_base32(started.json()["secret"].as_str().expect("secret"));
    let code = secret.code_at(otp::steady(0, 6));
    let answers: Vec<u16> = std::thread::scope(|s| {
        let confirms: Vec<_> = (0..8)
            .map(|_| s.spawn(|| confirm(&server, &bearer, &code).status))
            .collect();
        confirms.into_iter().map(|c| c.join().unwrap()).collect()
    });
    assert_eq!(
        answers.iter().filter(|s| **s == 200).count(),
        1,
        "{answers:?}"
    );
    // The others lost the race: already on (409), a step spent (401), another confirmation
    // under way (503), or the address's hashing budget spent (429). None hashed for nothing
    // past that budget.
    for status in &answers {
        assert!([200, 401, 409, 429, 503].contains(status), "{answers:?}");
    }
    // The budget (4 a minute, a burst of 8) is what is left for logins now.
    let mut refused = false;
    for _ in 0..8 {
        let reply = server.post_json(
            "/v1/auth/login",
            &json!({ "email": "ada@example.test", "password": PASSWORD }),
        );
        if reply.status == 429 {
            refused = true;
            break;
        }
    }
    assert!(
        refused,
        "the confirmations' hashing was not charged to the address"
    );
}
