//! The second factor on the sign-in pages, over real HTTP with a cookie jar: turning TOTP on
//! from `/` (the QR code, the key, the confirming code, the recovery codes once), the code
//! step of a sign-in (`POST /login/totp`, its `mfa_token` in a cookie of its own), and
//! turning TOTP off (API.md v2 "Second factor", "Browser sign-in").

use serde_json::json;

use crate::support::jar::{form, hidden, Jar, SetCookie};
use crate::support::otp::{self, Secret};
use crate::support::{Reply, TestServer, PASSWORD};

const SITE: &[(&str, &str)] = &[
    ("LATCHD_PUBLIC_URL", "http://auth.example.test"),
    ("LATCHD_COOKIE_DOMAIN", "example.test"),
    ("LATCHD_TRUSTED_PROXIES", "127.0.0.1"),
    ("LATCHD_LOGIN_ACCOUNT_FAILURES", "100"),
];
const RD: &str = "http://app.example.test/wiki?page=1";

fn post(server: &TestServer, jar: &mut Jar, path: &str, fields: &[(&str, &str)]) -> Reply {
    jar.request(
        server,
        "POST",
        path,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form(fields).as_bytes(),
    )
}

/// The browser's CSRF token, from a page that carries the forms.
fn csrf(page: &Reply) -> String {
    hidden(&page.body, "csrf").unwrap_or_else(|| panic!("no csrf field in\n{}", page.body))
}

/// The password step of the sign-in form, with `rd`.
fn password_step(server: &TestServer, jar: &mut Jar, email: &str) -> Reply {
    let form_page = jar.request(server, "GET", &format!("/login?rd={}", query(RD)), &[], b"");
    let token = csrf(&form_page);
    post(
        server,
        jar,
        "/login",
        &[
            ("email", email),
            ("password", PASSWORD),
            ("csrf", &token),
            ("rd", RD),
        ],
    )
}

/// A jar signed in with the password alone (an account without TOTP).
fn signed_in(server: &TestServer, email: &str) -> Jar {
    let mut jar = Jar::default();
    let reply = password_step(server, &mut jar, email);
    assert_eq!(reply.status, 303, "{}", reply.body);
    jar
}

/// The text of the first element with `class="name"` in `page`.
fn by_class(page: &str, name: &str) -> Option<String> {
    let marker = format!("class=\"{name}\">");
    let start = page.find(&marker)? + marker.len();
    let end = page[start..].find('<')? + start;
    Some(page[start..end].to_owned())
}

/// Turns TOTP on through `/`; the secret and the recovery codes the pages showed.
fn enrol_on_the_pages(server: &TestServer, jar: &mut Jar) -> (Secret, Vec<String>) {
    let home = jar.request(server, "GET", "/", &[], b"");
    let begun = post(
        server,
        jar,
        "/totp",
        &[("current_password", PASSWORD), ("csrf", &csrf(&home))],
    );
    assert_eq!(begun.status, 303, "{}", begun.body);
    let pending = jar.request(server, "GET", "/", &[], b"");
    let secret = Secret::from_base32(&by_class(&pending.body, "secret").expect("the key"));
    let code = secret.code_at(otp::steady(0, 3));
    let shown = post(
        server,
        jar,
        "/totp/confirm",
        &[("code", &code), ("csrf", &csrf(&pending))],
    );
    assert_eq!(shown.status, 200, "{}", shown.body);
    let codes = shown
        .body
        .split("<li>")
        .skip(1)
        .map(|item| item.split('<').next().unwrap_or_default().to_owned())
        .collect();
    (secret, codes)
}

fn query(text: &str) -> String {
    form(&[("x", text)])[2..].to_owned()
}

#[test]
fn totp_is_turned_on_from_the_home_page_with_a_qr_code_and_recovery_codes_shown_once() {
    let server = TestServer::start_with(SITE);
    server.register("ada@example.test");
    let mut jar = signed_in(&server, "ada@example.test");
    let home = jar.request(&server, "GET", "/", &[], b"");
    assert!(home.body.contains("action=\"/totp\""), "{}", home.body);
    // The password is asked again, and a wrong one changes nothing.
    let wrong = post(
        &server,
        &mut jar,
        "/totp",
        &[("current_password", "not it"), ("csrf", &csrf(&home))],
    );
    assert_eq!(wrong.status, 200);
    assert!(wrong.body.contains("Wrong password."), "{}", wrong.body);
    assert!(wrong.body.contains("action=\"/totp\""));

    let begun = post(
        &server,
        &mut jar,
        "/totp",
        &[("current_password", PASSWORD), ("csrf", &csrf(&home))],
    );
    assert_eq!(
        (begun.status, begun.header("location")),
        (303, Some("/")),
        "{}",
        begun.body
    );
    let pending = jar.request(&server, "GET", "/", &[], b"");
    let svg = pending.body.find("<svg ").expect("an inline QR code");
    assert!(pending.body[svg..].contains("role=\"img\""));
    let key = by_class(&pending.body, "secret").expect("the key as text");
    assert_eq!(key.len(), 39, "32 characters in groups of four: {key}");
    assert!(pending.body.contains("autocomplete=\"one-time-code\""));
    assert!(!pending.body.contains("<script"));
    // The same pending key on a reload, until it is confirmed; another session of the same
    // user (a stolen cookie, say) sees none and cannot confirm it.
    let again = jar.request(&server, "GET", "/", &[], b"");
    assert_eq!(by_class(&again.body, "secret"), Some(key.clone()));
    let mut elsewhere = signed_in(&server, "ada@example.test");
    let theirs = elsewhere.request(&server, "GET", "/", &[], b"");
    assert!(!theirs.body.contains("<svg") && !theirs.body.contains(&key[..9]));
    assert!(theirs.body.contains("action=\"/totp\""), "{}", theirs.body);

    let secret = Secret::from_base32(&key);
    let now = otp::steady(0, 4);
    let bad = format!(
        "{:06}",
        (secret.code_at(now).parse::<u32>().unwrap() + 1) % 1_000_000
    );
    let refused = post(
        &server,
        &mut jar,
        "/totp/confirm",
        &[("code", &bad), ("csrf", &csrf(&pending))],
    );
    assert!(refused.body.contains("Wrong code"), "{}", refused.body);
    assert_eq!(by_class(&refused.body, "secret"), Some(key.clone()));
    let shown = post(
        &server,
        &mut jar,
        "/totp/confirm",
        &[("code", &secret.code_at(now)), ("csrf", &csrf(&pending))],
    );
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert_eq!(shown.header("cache-control"), Some("no-store"));
    let codes = shown.body.matches("<li>").count();
    assert_eq!(codes, 10, "{}", shown.body);
    // Shown once: `/` now says it is on and shows neither key nor codes.
    let on = jar.request(&server, "GET", "/", &[], b"");
    assert!(
        on.body.contains("On. 10 of 10 recovery codes left."),
        "{}",
        on.body
    );
    assert!(!on.body.contains("<li>") && !on.body.contains(&key[..9]));
    assert!(on.body.contains("action=\"/totp/disable\""));
}

#[test]
fn a_sign_in_with_totp_on_opens_the_session_only_after_the_code() {
    let server = TestServer::start_with(SITE);
    server.register("ada@example.test");
    let mut setup = signed_in(&server, "ada@example.test");
    let (secret, recovery) = enrol_on_the_pages(&server, &mut setup);

    let mut jar = Jar::default();
    let step = password_step(&server, &mut jar, "ada@example.test");
    assert_eq!(step.status, 200, "{}", step.body);
    assert!(
        step.body.contains("action=\"/login/totp\""),
        "{}",
        step.body
    );
    assert!(step.body.contains("autocomplete=\"one-time-code\""));
    assert_eq!(hidden(&step.body, "rd").as_deref(), Some(RD));
    assert!(
        jar.get("latchd_session").is_none(),
        "no session before the code"
    );
    let mfa = step
        .headers_named("set-cookie")
        .into_iter()
        .map(SetCookie::parse)
        .find(|c| c.name == "latchd_mfa")
        .expect("the mfa_token's cookie");
    assert!(mfa.attr("httponly").is_some());
    assert_eq!(mfa.attr("samesite"), Some("Strict"));
    assert_eq!(mfa.attr("max-age"), Some("300"));
    assert_eq!(mfa.attr("domain"), None, "host-only");
    assert!(
        !step.body.contains(&mfa.value),
        "the token never sits in the page"
    );

    let now = otp::steady(0, 4);
    let code = secret.code_at_step(otp::step_of(now) + 1);
    let wrong = post(
        &server,
        &mut jar,
        "/login/totp",
        &[("code", "000000"), ("csrf", &csrf(&step)), ("rd", RD)],
    );
    assert_eq!(wrong.status, 200);
    assert!(wrong.body.contains("Wrong code"), "{}", wrong.body);
    assert!(jar.get("latchd_session").is_none());
    let done = post(
        &server,
        &mut jar,
        "/login/totp",
        &[("code", &code), ("csrf", &csrf(&step)), ("rd", RD)],
    );
    assert_eq!(
        (done.status, done.header("location")),
        (303, Some(RD)),
        "{}",
        done.body
    );
    assert!(jar.get("latchd_session").is_some());
    assert!(jar.get("latchd_mfa").is_none(), "the mfa cookie is cleared");
    // The browser session passed a second factor: forward-auth's mfa=1 lets it through.
    let verified = jar.request(&server, "GET", "/v1/auth/verify?mfa=1", &[], b"");
    assert_eq!(verified.status, 200, "{}", verified.body);
    // And a password-only browser session does not pass mfa=1.
    server.register("pat@example.test");
    let mut pat = signed_in(&server, "pat@example.test");
    let refused = pat.request(&server, "GET", "/v1/auth/verify?mfa=1", &[], b"");
    assert_eq!(refused.status, 403);

    // A recovery code works on the page too, and `/` counts what is left.
    let mut other = Jar::default();
    let step = password_step(&server, &mut other, "ada@example.test");
    let done = post(
        &server,
        &mut other,
        "/login/totp",
        &[("code", &recovery[4]), ("csrf", &csrf(&step))],
    );
    assert_eq!(
        (done.status, done.header("location")),
        (303, Some("/")),
        "{}",
        done.body
    );
    let home = other.request(&server, "GET", "/", &[], b"");
    assert!(home.body.contains("9 of 10"), "{}", home.body);
}

#[test]
fn the_code_step_refuses_forged_forms_foreign_tokens_and_stale_sign_ins() {
    let server = TestServer::start_with(SITE);
    server.register("ada@example.test");
    let mut setup = signed_in(&server, "ada@example.test");
    let (_, recovery) = enrol_on_the_pages(&server, &mut setup);

    // A post from another site is refused and spends nothing.
    let mut jar = Jar::default();
    let step = password_step(&server, &mut jar, "ada@example.test");
    let forged = jar.request(
        &server,
        "POST",
        "/login/totp",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", "http://evil.test"),
            ("Sec-Fetch-Site", "cross-site"),
        ],
        form(&[("code", &recovery[0]), ("csrf", &csrf(&step))]).as_bytes(),
    );
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(jar.get("latchd_session").is_none());
    let done = post(
        &server,
        &mut jar,
        "/login/totp",
        &[("code", &recovery[0]), ("csrf", &csrf(&step))],
    );
    assert_eq!(
        done.status, 303,
        "the forged post spent nothing: {}",
        done.body
    );

    // Without the mfa cookie (expired in the browser), back to the password.
    let mut lost = Jar::default();
    let step = password_step(&server, &mut lost, "ada@example.test");
    let mut cookieless = Jar::default();
    cookieless.set(
        "latchd_csrf",
        lost.get("latchd_csrf").expect("the nonce cookie"),
    );
    let reply = post(
        &server,
        &mut cookieless,
        "/login/totp",
        &[("code", &recovery[1]), ("csrf", &csrf(&step))],
    );
    assert!(
        reply.body.contains("Your sign-in expired"),
        "{}",
        reply.body
    );
    assert!(reply.body.contains("action=\"/login\""));

    // An API login's mfa_token opens no browser session, and a browser's no API session.
    let api = server.post_json(
        "/v1/auth/login",
        &json!({"email": "ada@example.test", "password": PASSWORD}),
    );
    let api_token = api.json()["mfa_token"]
        .as_str()
        .expect("mfa_token")
        .to_owned();
    let mut swapped = Jar::default();
    let step = password_step(&server, &mut swapped, "ada@example.test");
    let browser_token = swapped.get("latchd_mfa").expect("mfa cookie").to_owned();
    swapped.set("latchd_mfa", &api_token);
    let reply = post(
        &server,
        &mut swapped,
        "/login/totp",
        &[("code", &recovery[1]), ("csrf", &csrf(&step))],
    );
    assert!(
        reply.body.contains("expired or had too many wrong codes"),
        "{}",
        reply.body
    );
    assert!(swapped.get("latchd_session").is_none());
    server
        .post_json(
            "/v1/auth/login/mfa",
            &json!({"mfa_token": browser_token, "code": recovery[1]}),
        )
        .assert_error(401, "invalid_grant");
    // Neither try spent the code or the API token.
    let reply = server.post_json(
        "/v1/auth/login/mfa",
        &json!({"mfa_token": api_token, "code": recovery[1]}),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[test]
fn totp_is_turned_off_from_the_home_page_with_the_password_and_a_code() {
    let server = TestServer::start_with(SITE);
    server.register("ada@example.test");
    let mut jar = signed_in(&server, "ada@example.test");
    let (secret, _) = enrol_on_the_pages(&server, &mut jar);
    let home = jar.request(&server, "GET", "/", &[], b"");
    let now = otp::steady(0, 4);
    let code = secret.code_at_step(otp::step_of(now) + 1);
    let turn_off = |jar: &mut Jar, password: &str, code: &str| {
        post(
            &server,
            jar,
            "/totp/disable",
            &[
                ("current_password", password),
                ("code", code),
                ("csrf", &csrf(&home)),
            ],
        )
    };
    let reply = turn_off(&mut jar, "not it", &code);
    assert!(reply.body.contains("Wrong password."), "{}", reply.body);
    let reply = turn_off(&mut jar, PASSWORD, "000000");
    assert!(reply.body.contains("Wrong code"), "{}", reply.body);
    let reply = turn_off(&mut jar, PASSWORD, &code);
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, Some("/")),
        "{}",
        reply.body
    );
    let off = jar.request(&server, "GET", "/", &[], b"");
    assert!(off.body.contains("action=\"/totp\""), "{}", off.body);
    // The password alone signs in again.
    signed_in(&server, "ada@example.test");
    // Without a session the forms go to the sign-in page.
    let mut stranger = Jar::default();
    let page = stranger.request(&server, "GET", "/login", &[], b"");
    let reply = post(
        &server,
        &mut stranger,
        "/totp",
        &[("current_password", PASSWORD), ("csrf", &csrf(&page))],
    );
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, Some("/login"))
    );
}
