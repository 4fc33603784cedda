//! The sign-in pages and forward-auth for browsers, over real HTTP with a cookie jar: the
//! form, the browser session cookie, every way it ends, the redirect check, CSRF, and the
//! redirects forward-auth answers a browser (API.md v2).

use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::jar::{form, hidden, Jar, SetCookie};
use crate::support::{add_user, db_in, run, run_to_exit, Reply, TestServer, PASSWORD};

const PUBLIC: &str = "http://auth.example.test";
/// Pages on a public URL with a cookie domain, and loopback as the trusted proxy.
const SITE: &[(&str, &str)] = &[
    ("LATCHD_PUBLIC_URL", PUBLIC),
    ("LATCHD_COOKIE_DOMAIN", "example.test"),
    ("LATCHD_TRUSTED_PROXIES", "127.0.0.1"),
    ("LATCHD_HASH_ADDRESS_PER_MIN", "1000"),
];

/// `GET /login[?query]`: the CSRF token of the form.
fn open_form(server: &TestServer, jar: &mut Jar, query: &str) -> (Reply, String) {
    let reply = jar.request(server, "GET", &format!("/login{query}"), &[], b"");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let csrf = hidden(&reply.body, "csrf").expect("a csrf field");
    (reply, csrf)
}

fn post_form(
    server: &TestServer,
    jar: &mut Jar,
    path: &str,
    fields: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> Reply {
    let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
    headers.extend_from_slice(extra);
    jar.request(server, "POST", path, &headers, form(fields).as_bytes())
}

/// Signs `email` in through the form; returns the jar holding the session cookie.
fn sign_in(server: &TestServer, email: &str) -> Jar {
    let mut jar = Jar::default();
    let (_, csrf) = open_form(server, &mut jar, "");
    let reply = post_form(
        server,
        &mut jar,
        "/login",
        &[("email", email), ("password", PASSWORD), ("csrf", &csrf)],
        &[],
    );
    assert_eq!(reply.status, 303, "{}", reply.body);
    assert!(jar.get("latchd_session").is_some(), "no session cookie");
    jar
}

fn verify(server: &TestServer, jar: &mut Jar, headers: &[(&str, &str)]) -> Reply {
    jar.request(server, "GET", "/v1/auth/verify", headers, b"")
}

#[test]
fn the_login_page_is_a_plain_form_with_strict_headers() {
    let server = TestServer::start_with(SITE);
    let mut jar = Jar::default();
    let (reply, csrf) = open_form(&server, &mut jar, "");
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = reply.header("content-security-policy").expect("a CSP");
    for directive in [
        "default-src 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert_eq!(reply.header("x-frame-options"), Some("DENY"));
    // Not `no-referrer`: a browser would then post the forms with `Origin: null`.
    assert_eq!(reply.header("referrer-policy"), Some("same-origin"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert!(!reply.body.contains("<script"), "usable without JavaScript");
    for part in [
        "autocomplete=\"username\"",
        "autocomplete=\"current-password\"",
        "<label for=\"email\">",
        "<label for=\"password\">",
    ] {
        assert!(reply.body.contains(part), "{part}");
    }
    // The CSRF nonce cookie: host-only, HttpOnly, Strict.
    let nonce = reply
        .headers_named("set-cookie")
        .into_iter()
        .map(SetCookie::parse)
        .find(|c| c.name == "latchd_csrf")
        .expect("a CSRF nonce cookie");
    assert!(nonce.attr("httponly").is_some());
    assert_eq!(nonce.attr("samesite"), Some("Strict"));
    assert_eq!(nonce.attr("path"), Some("/"));
    assert_eq!(nonce.attr("domain"), None);
    // The same browser keeps its nonce, and so its token.
    let (again, csrf_again) = open_form(&server, &mut jar, "");
    assert!(again.headers_named("set-cookie").is_empty());
    assert_eq!(csrf, csrf_again);
}

#[test]
fn signing_in_sets_the_session_cookie_and_forward_auth_answers_for_it() {
    let server = TestServer::start_with(SITE);
    let id = server.register("ada@example.test");
    let mut jar = Jar::default();
    let rd = "http://app.example.test/dashboard?tab=1";
    let (page, csrf) = open_form(&server, &mut jar, &format!("?rd={}", form_value(rd)));
    assert_eq!(hidden(&page.body, "rd").as_deref(), Some(rd));
    let reply = post_form(
        &server,
        &mut jar,
        "/login",
        &[
            ("email", "ada@example.test"),
            ("password", PASSWORD),
            ("csrf", &csrf),
            ("rd", rd),
        ],
        &[("Origin", PUBLIC), ("Sec-Fetch-Site", "same-origin")],
    );
    assert_eq!(reply.status, 303, "{}", reply.body);
    assert_eq!(reply.header("location"), Some(rd));
    let session = reply
        .headers_named("set-cookie")
        .into_iter()
        .map(SetCookie::parse)
        .find(|c| c.name == "latchd_session")
        .expect("the session cookie");
    assert_eq!(session.value.len(), 43);
    assert!(session.attr("httponly").is_some());
    assert_eq!(session.attr("samesite"), Some("Lax"));
    assert_eq!(session.attr("path"), Some("/"));
    assert_eq!(session.attr("domain"), Some("example.test"));
    assert_eq!(session.attr("max-age"), Some("2592000"));
    assert_eq!(session.attr("secure"), None, "LATCHD_COOKIE_SECURE=false");

    let ok = verify(&server, &mut jar, &[]);
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.header("x-auth-subject"), Some(id.as_str()));
    assert_eq!(ok.header("x-auth-email"), Some("ada@example.test"));
    assert_eq!(ok.header("x-auth-roles"), Some(""));
    // Every method alike, as for tokens.
    assert_eq!(
        jar.request(&server, "HEAD", "/v1/auth/verify", &[], b"")
            .status,
        200
    );
    // The home page says who it is.
    let home = jar.request(&server, "GET", "/", &[], b"");
    assert!(home.body.contains("ada@example.test"), "{}", home.body);
    assert!(home.body.contains("action=\"/logout\""));
    // Already signed in: the form goes straight on.
    let again = jar.request(
        &server,
        "GET",
        &format!("/login?rd={}", form_value(rd)),
        &[],
        b"",
    );
    assert_eq!((again.status, again.header("location")), (303, Some(rd)));
    // Signing in again from this browser (a stale tab) ends the session it held.
    let first = jar.get("latchd_session").expect("cookie").to_owned();
    let reply = post_form(
        &server,
        &mut jar,
        "/login",
        &[
            ("email", "ada@example.test"),
            ("password", PASSWORD),
            ("csrf", &csrf),
        ],
        &[],
    );
    assert_eq!(reply.status, 303, "{}", reply.body);
    assert_ne!(jar.get("latchd_session"), Some(first.as_str()));
    assert_eq!(verify(&server, &mut jar, &[]).status, 200);
    let old = server.request(
        "GET",
        "/v1/auth/verify",
        &[("Cookie", &format!("latchd_session={first}"))],
        b"",
    );
    assert_eq!(old.status, 401, "the first session still verifies");
}

#[test]
fn the_session_cookie_is_secure_by_default() {
    let mut env = SITE.to_vec();
    env.push(("LATCHD_COOKIE_SECURE", ""));
    env.push(("LATCHD_PUBLIC_URL", "https://auth.example.test"));
    let server = TestServer::start_with(&env);
    server.register("sec@example.test");
    let mut jar = Jar::default();
    let page = jar.request(&server, "GET", "/login", &[], b"");
    let nonce = page
        .headers_named("set-cookie")
        .into_iter()
        .map(SetCookie::parse)
        .next()
        .expect("nonce cookie");
    assert_eq!(nonce.name, "__Host-latchd_csrf");
    assert!(nonce.attr("secure").is_some());
    let csrf = hidden(&page.body, "csrf").unwrap();
    let reply = post_form(
        &server,
        &mut jar,
        "/login",
        &[
            ("email", "sec@example.test"),
            ("password", PASSWORD),
            ("csrf", &csrf),
        ],
        &[],
    );
    let session = reply
        .headers_named("set-cookie")
        .into_iter()
        .map(SetCookie::parse)
        .find(|c| c.name == "latchd_session")
        .expect("session cookie");
    assert!(session.attr("secure").is_some());
}

#[test]
fn every_failure_shows_the_form_again_with_one_message() {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "root@example.test", &["--role", "admin"]);
    add_user(dir.path(), "off@example.test", &[]);
    let out = run(
        &db_in(dir.path()),
        &[],
        &["user", "disable", "off@example.test"],
        b"",
    );
    assert!(out.status.success());
    let server = TestServer::start_in(dir, SITE);
    let mut answers = Vec::new();
    for (email, password) in [
        ("nobody@example.test", PASSWORD),
        ("root@example.test", "wrong wrong wrong wrong"),
        ("off@example.test", PASSWORD),
    ] {
        let mut jar = Jar::default();
        let (_, csrf) = open_form(&server, &mut jar, "");
        let reply = post_form(
            &server,
            &mut jar,
            "/login",
            &[("email", email), ("password", password), ("csrf", &csrf)],
            &[],
        );
        assert_eq!(reply.status, 200, "{email}");
        assert!(jar.get("latchd_session").is_none(), "{email}");
        assert!(reply.body.contains("Wrong email or password."), "{email}");
        answers.push(reply.body.replace(email, "EMAIL").replace(&csrf, "CSRF"));
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "the pages differ");
}

#[test]
fn too_many_failures_get_429_with_retry_after() {
    let mut env = SITE.to_vec();
    env.push(("LATCHD_LOGIN_ACCOUNT_FAILURES", "2"));
    let server = TestServer::start_with(&env);
    server.register("max@example.test");
    let mut jar = Jar::default();
    let mut last = None;
    for _ in 0..3 {
        let (_, csrf) = open_form(&server, &mut jar, "");
        last = Some(post_form(
            &server,
            &mut jar,
            "/login",
            &[
                ("email", "max@example.test"),
                ("password", "nope nope nope nope"),
                ("csrf", &csrf),
            ],
            &[],
        ));
    }
    let limited = last.unwrap();
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert!(limited
        .header("retry-after")
        .is_some_and(|s| s.parse::<u64>().is_ok()));
    assert!(limited.body.contains("Too many attempts"));
}

#[test]
fn a_hostile_redirect_target_is_dropped_when_shown_and_when_used() {
    let server = TestServer::start_with(SITE);
    server.register("rd@example.test");
    let hostile = [
        "//evil.test",
        "/\\evil.test",
        "https://evil.test",
        "http://evil.test/",
        "https://example.test.evil.test",
        "http://app.example.test.evil.test/",
        "https://evil.test@example.test",
        "http://evil.test@app.example.test/",
        "https://example.test%2f@evil.test",
        "http://app.example.test%2F@evil.test",
        "javascript:alert(1)",
        "JAVASCRIPT:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "http://app.example.test/\tx",
        "http://app.example.test/\nx",
        "http://app.example.test/\rx",
        "http://app.example.test/%09x",
        "http://app.example.test/%0a",
        "http://app.example.test/%0d%0aSet-Cookie:%20x",
        "http://app.example.test/%250a",
        "http://app.example.test\\@evil.test",
        "ftp://app.example.test/",
        "http:/app.example.test",
        "http:app.example.test",
        "/relative",
        "http://app.example.test:99999/",
        "http://evilexample.test/",
        "\u{0}http://app.example.test/",
    ];
    assert!(hostile.len() >= 25);
    for rd in hostile {
        let mut jar = Jar::default();
        let (page, csrf) = open_form(&server, &mut jar, &format!("?rd={}", form_value(rd)));
        assert_eq!(hidden(&page.body, "rd"), None, "{rd:?} kept in the form");
        // Posted anyway (a forged form): still never followed.
        let reply = post_form(
            &server,
            &mut jar,
            "/login",
            &[
                ("email", "rd@example.test"),
                ("password", PASSWORD),
                ("csrf", &csrf),
                ("rd", rd),
            ],
            &[],
        );
        assert_eq!(reply.status, 303, "{rd:?}: {}", reply.body);
        assert_eq!(reply.header("location"), Some("/"), "{rd:?}");
    }
}

#[test]
fn a_cross_site_form_changes_nothing() {
    let server = TestServer::start_with(SITE);
    server.register("csrf@example.test");
    let logins_ok = |server: &TestServer| {
        let text = server.get("/metrics", None).body;
        text.lines()
            .find(|l| l.starts_with("latchd_logins_total{outcome=\"ok\"}"))
            .map(str::to_owned)
    };
    let before = logins_ok(&server);
    let creds = [("email", "csrf@example.test"), ("password", PASSWORD)];
    // A page elsewhere cannot read the nonce cookie or the form's token; it can only post.
    let mut victim = Jar::default();
    let (_, good_token) = open_form(&server, &mut victim, "");
    let mut other = Jar::default();
    let (_, other_token) = open_form(&server, &mut other, "");
    let cases: Vec<FormCase> = vec![
        ("no token", creds.to_vec(), vec![]),
        (
            "another browser's token",
            [&creds[..], &[("csrf", other_token.as_str())]].concat(),
            vec![],
        ),
        (
            "garbage token",
            [&creds[..], &[("csrf", "AAAA")]].concat(),
            vec![],
        ),
        (
            "another origin",
            [&creds[..], &[("csrf", good_token.as_str())]].concat(),
            vec![("Origin", "http://evil.test")],
        ),
        (
            "a sibling origin",
            [&creds[..], &[("csrf", good_token.as_str())]].concat(),
            vec![("Origin", "http://app.example.test")],
        ),
        (
            "cross-site fetch",
            [&creds[..], &[("csrf", good_token.as_str())]].concat(),
            vec![("Sec-Fetch-Site", "cross-site")],
        ),
        (
            "same-site fetch",
            [&creds[..], &[("csrf", good_token.as_str())]].concat(),
            vec![("Sec-Fetch-Site", "same-site")],
        ),
        (
            "null origin",
            [&creds[..], &[("csrf", good_token.as_str())]].concat(),
            vec![("Origin", "null")],
        ),
    ];
    for (name, fields, headers) in cases {
        let mut jar = victim.clone();
        let reply = post_form(&server, &mut jar, "/login", &fields, &headers);
        assert_eq!(reply.status, 403, "{name}: {}", reply.body);
        assert!(jar.get("latchd_session").is_none(), "{name}: signed in");
    }
    // Without the nonce cookie at all.
    let reply = post_form(
        &server,
        &mut Jar::default(),
        "/login",
        &[
            ("email", "csrf@example.test"),
            ("password", PASSWORD),
            ("csrf", &good_token),
        ],
        &[],
    );
    assert_eq!(reply.status, 403);
    assert_eq!(logins_ok(&server), before, "no login happened");

    // Logout: a cross-site post leaves the session alive.
    let mut jar = sign_in(&server, "csrf@example.test");
    let token = hidden(&jar.request(&server, "GET", "/", &[], b"").body, "csrf").unwrap();
    for (name, fields, headers) in [
        ("no token", vec![], vec![]),
        (
            "another origin",
            vec![("csrf", token.as_str())],
            vec![("Origin", "http://evil.test")],
        ),
        (
            "cross-site",
            vec![("csrf", token.as_str())],
            vec![("Sec-Fetch-Site", "cross-site")],
        ),
    ] {
        let mut copy = jar.clone();
        let reply = post_form(&server, &mut copy, "/logout", &fields, &headers);
        assert_eq!(reply.status, 403, "{name}");
        assert_eq!(
            verify(&server, &mut jar, &[]).status,
            200,
            "{name}: signed out"
        );
    }
}

#[test]
fn logout_ends_the_browser_session_on_disk() {
    let server = TestServer::start_with(SITE);
    server.register("out@example.test");
    let mut jar = sign_in(&server, "out@example.test");
    let kept = jar.clone();
    let token = hidden(&jar.request(&server, "GET", "/", &[], b"").body, "csrf").unwrap();
    let reply = post_form(
        &server,
        &mut jar,
        "/logout",
        &[("csrf", &token)],
        &[("Origin", PUBLIC)],
    );
    assert_eq!(
        (reply.status, reply.header("location")),
        (303, Some("/login"))
    );
    let cleared = reply
        .headers_named("set-cookie")
        .into_iter()
        .map(SetCookie::parse)
        .find(|c| c.name == "latchd_session")
        .expect("the cookie is cleared");
    assert_eq!(cleared.attr("max-age"), Some("0"));
    // The old cookie is dead, also after a restart.
    let mut old = kept.clone();
    verify(&server, &mut old, &[]).assert_error(401, "invalid_token");
    let server = server.restart();
    let mut old = kept;
    verify(&server, &mut old, &[]).assert_error(401, "invalid_token");
}

#[test]
fn every_revocation_ends_a_browser_session_at_once() {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "root@example.test", &["--role", "admin"]);
    let server = TestServer::start_in(dir, SITE);
    let (admin, _) = server.login("root@example.test");
    let id = server.register("many@example.test");
    let ends: [(&str, Ending); 3] = [
        (
            "logout-all",
            Box::new(|| {
                let (token, _) = server.login("many@example.test");
                assert_eq!(server.post_auth("/v1/auth/logout-all", &token).status, 204);
            }),
        ),
        (
            "password change",
            Box::new(|| {
                let (token, _) = server.login("many@example.test");
                let change = json!({"current_password": PASSWORD, "new_password": "a brand new long passphrase"});
                assert_eq!(
                    server
                        .put_json_auth("/v1/users/me/password", &token, &change)
                        .status,
                    204
                );
                let back = json!({"current_password": "a brand new long passphrase", "new_password": PASSWORD});
                assert_eq!(
                    server
                        .put_json_auth("/v1/users/me/password", &token, &back)
                        .status,
                    204
                );
            }),
        ),
        (
            "admin revoke",
            Box::new(|| {
                assert_eq!(
                    server
                        .post_auth(&format!("/v1/admin/users/{id}/revoke"), &admin)
                        .status,
                    204
                );
            }),
        ),
    ];
    for (name, end) in ends {
        let mut jar = sign_in(&server, "many@example.test");
        assert_eq!(verify(&server, &mut jar, &[]).status, 200, "{name}");
        end();
        verify(&server, &mut jar, &[]).assert_error(401, "invalid_token");
    }
    // Disabling the user (the CLI, on the stopped server's file) ends it.
    let mut jar = sign_in(&server, "many@example.test");
    let dir = server.stop();
    let out = run(
        &db_in(dir.path()),
        &[],
        &["user", "disable", "many@example.test"],
        b"",
    );
    assert!(out.status.success());
    let server = TestServer::start_in(dir, SITE);
    verify(&server, &mut jar, &[]).assert_error(401, "invalid_token");
    let out_dir = server.stop();
    let out = run(
        &db_in(out_dir.path()),
        &[],
        &["user", "enable", "many@example.test"],
        b"",
    );
    assert!(out.status.success());
    let server = TestServer::start_in(out_dir, SITE);
    let (admin, _) = server.login("root@example.test");
    // Deleting the user ends it too.
    let mut jar = sign_in(&server, "many@example.test");
    let auth = format!("Bearer {admin}");
    let deleted = server.request(
        "DELETE",
        &format!("/v1/admin/users/{id}"),
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(deleted.status, 204);
    verify(&server, &mut jar, &[]).assert_error(401, "invalid_token");
}

#[test]
fn an_unused_session_ends_after_the_idle_timeout() {
    let mut env = SITE.to_vec();
    env.push(("LATCHD_SESSION_IDLE", "3"));
    let server = TestServer::start_with(&env);
    server.register("idle@example.test");
    let mut used = sign_in(&server, "idle@example.test");
    let mut unused = sign_in(&server, "idle@example.test");
    // Used every second for five seconds: alive throughout (times are whole seconds, so a
    // use a little over a second after the last one may be two seconds later).
    for _ in 0..5 {
        thread::sleep(Duration::from_secs(1));
        assert_eq!(verify(&server, &mut used, &[]).status, 200);
    }
    // Unused for more than three seconds: gone.
    verify(&server, &mut unused, &[]).assert_error(401, "invalid_token");
}

#[test]
fn a_session_in_use_keeps_its_idle_window_across_a_restart() {
    // A use records itself on disk once it lags by a quarter of the window (2 s here), in the
    // background; a restart then resumes from that last use, not from the sign-in.
    let mut env = SITE.to_vec();
    env.push(("LATCHD_SESSION_IDLE", "8"));
    let server = TestServer::start_with(&env);
    server.register("kept@example.test");
    let mut jar = sign_in(&server, "kept@example.test");
    let signed_in = Instant::now();
    thread::sleep(Duration::from_secs(3));
    assert_eq!(verify(&server, &mut jar, &[]).status, 200);
    thread::sleep(Duration::from_millis(300)); // the background write
    let server = server.restart();
    // 9 s after the sign-in (past its idle end at 8 s): alive only because the use at 3 s
    // reached disk (its end is at 11 s).
    thread::sleep(Duration::from_secs(9).saturating_sub(signed_in.elapsed()));
    let reply = verify(&server, &mut jar, &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[test]
fn forward_auth_sends_a_navigation_to_the_sign_in_page() {
    let server = TestServer::start_with(SITE);
    let html = ("Accept", "text/html,application/xhtml+xml,*/*;q=0.8");
    let original = "https://app.example.test/wiki/Page?x=1";
    let want = format!("{PUBLIC}/login?rd={}", form_value(original));
    // nginx: 401 with Location, which its error_page turns into the redirect.
    let nginx = server.request(
        "GET",
        "/v1/auth/verify",
        &[
            html,
            ("X-Original-URL", original),
            ("X-Original-Method", "GET"),
        ],
        b"",
    );
    assert_eq!(nginx.status, 401);
    assert_eq!(nginx.header("location"), Some(want.as_str()));
    // Traefik and Caddy: 302 for GET and HEAD, 303 for the others.
    let forwarded = |method: &str| {
        server.request(
            "GET",
            "/v1/auth/verify",
            &[
                html,
                ("X-Forwarded-Method", method),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "app.example.test"),
                ("X-Forwarded-Uri", "/wiki/Page?x=1"),
            ],
            b"",
        )
    };
    for (method, status) in [("GET", 302), ("HEAD", 302), ("POST", 303), ("DELETE", 303)] {
        let reply = forwarded(method);
        assert_eq!(reply.status, status, "{method}");
        assert_eq!(reply.header("location"), Some(want.as_str()), "{method}");
    }
    // Not a navigation: the v1 401, no Location.
    for headers in [
        vec![("Accept", "application/json"), ("X-Original-URL", original)],
        vec![
            html,
            ("X-Requested-With", "XMLHttpRequest"),
            ("X-Original-URL", original),
        ],
        vec![("X-Original-URL", original)],
    ] {
        let reply = server.request("GET", "/v1/auth/verify", &headers, b"");
        reply.assert_error(401, "invalid_token");
        assert_eq!(reply.header("location"), None, "{headers:?}");
    }
    // A URL too long to carry (past 1 KiB, as its encoding could outgrow a proxy's header
    // buffer) is dropped: the sign-in page, then `/`.
    let long = format!("https://app.example.test/{}", "a".repeat(1024));
    let reply = server.request(
        "GET",
        "/v1/auth/verify",
        &[html, ("X-Original-URL", &long)],
        b"",
    );
    assert_eq!(
        (reply.status, reply.header("location")),
        (401, Some(format!("{PUBLIC}/login").as_str()))
    );
    // A dead cookie is no better than none.
    let dead = server.request(
        "GET",
        "/v1/auth/verify",
        &[
            html,
            ("X-Original-URL", original),
            (
                "Cookie",
                "latchd_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            ),
        ],
        b"",
    );
    assert_eq!(
        (dead.status, dead.header("location")),
        (401, Some(want.as_str()))
    );
}

#[test]
fn the_original_request_is_believed_only_from_trusted_proxies() {
    let env: Vec<(&str, &str)> = SITE
        .iter()
        .copied()
        .filter(|(k, _)| *k != "LATCHD_TRUSTED_PROXIES")
        .collect();
    let server = TestServer::start_with(&env);
    let reply = server.request(
        "GET",
        "/v1/auth/verify",
        &[
            ("Accept", "text/html"),
            ("X-Original-URL", "https://app.example.test/x"),
        ],
        b"",
    );
    // Still sent to sign in, but with no target taken from an untrusted header.
    assert_eq!(reply.status, 302);
    assert_eq!(
        reply.header("location"),
        Some(format!("{PUBLIC}/login").as_str())
    );
}

#[test]
fn without_a_public_url_forward_auth_never_redirects() {
    let server = TestServer::start_with(&[("LATCHD_TRUSTED_PROXIES", "127.0.0.1")]);
    let reply = server.request(
        "GET",
        "/v1/auth/verify",
        &[
            ("Accept", "text/html"),
            ("X-Original-URL", "https://app.example.test/x"),
        ],
        b"",
    );
    reply.assert_error(401, "invalid_token");
    assert_eq!(reply.header("location"), None);
    // The pages are still served.
    assert_eq!(server.get("/login", None).status, 200);
}

#[test]
fn role_and_mfa_rules_refuse_with_403() {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), "ops@example.test", &["--role", "ops"]);
    let server = TestServer::start_in(dir, SITE);
    let jar = sign_in(&server, "ops@example.test");
    let (access, _) = server.login("ops@example.test");
    let auth = format!("Bearer {access}");
    for credential in [vec![], vec![("Authorization", auth.as_str())]] {
        let with = |query: &str, extra: &[(&str, &str)]| {
            let mut headers = credential.clone();
            headers.extend_from_slice(extra);
            jar.clone().request(
                &server,
                "GET",
                &format!("/v1/auth/verify{query}"),
                &headers,
                b"",
            )
        };
        assert_eq!(with("?role=ops", &[]).status, 200);
        assert_eq!(with("?role=admin&role=ops", &[]).status, 200);
        with("?role=admin", &[]).assert_error(403, "insufficient_scope");
        // No second factor exists yet, so no session has passed one.
        with("?mfa=1", &[]).assert_error(403, "insufficient_scope");
        // A browser gets a page rather than JSON.
        let page = with("?role=admin", &[("Accept", "text/html")]);
        assert_eq!(page.status, 403);
        assert!(page.body.contains("does not have a role"), "{}", page.body);
        // An unknown rule fails closed.
        with("?roles=admin", &[]).assert_error(400, "invalid_request");
    }
}

#[test]
fn a_bearer_token_is_judged_before_the_cookie_and_neither_passes_for_the_other() {
    let server = TestServer::start_with(SITE);
    let alice = server.register("alice@example.test");
    let bob = server.register("bob@example.test");
    let mut bobs = sign_in(&server, "bob@example.test");
    let (alices_token, _) = server.login("alice@example.test");
    let auth = format!("Bearer {alices_token}");
    let reply = verify(&server, &mut bobs, &[("Authorization", &auth)]);
    assert_eq!(reply.header("x-auth-subject"), Some(alice.as_str()));
    assert_eq!(
        verify(&server, &mut bobs, &[]).header("x-auth-subject"),
        Some(bob.as_str())
    );
    // A dead token is not rescued by a live cookie.
    verify(&server, &mut bobs, &[("Authorization", "Bearer x.y.z")])
        .assert_error(401, "invalid_token");
    // The cookie as a bearer token, and a token as the cookie: refused.
    let cookie = bobs.get("latchd_session").unwrap().to_owned();
    server
        .get("/v1/auth/verify", Some(&cookie))
        .assert_error(401, "invalid_token");
    let mut forged = Jar::default();
    forged.set("latchd_session", &alices_token);
    verify(&server, &mut forged, &[]).assert_error(401, "invalid_token");
}

#[test]
fn public_url_and_cookie_domain_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(dir.path());
    for (vars, var, words) in [
        (
            vec![("LATCHD_PUBLIC_URL", "auth.example.test")],
            "LATCHD_PUBLIC_URL",
            "absolute",
        ),
        (
            vec![("LATCHD_PUBLIC_URL", "https://auth.example.test/login")],
            "LATCHD_PUBLIC_URL",
            "no path",
        ),
        (
            vec![
                ("LATCHD_PUBLIC_URL", PUBLIC),
                ("LATCHD_COOKIE_DOMAIN", "10.0.0.1"),
            ],
            "LATCHD_COOKIE_DOMAIN",
            "IP address",
        ),
        (
            vec![
                ("LATCHD_PUBLIC_URL", PUBLIC),
                ("LATCHD_COOKIE_DOMAIN", "test"),
            ],
            "LATCHD_COOKIE_DOMAIN",
            "no dot",
        ),
        (
            vec![
                ("LATCHD_PUBLIC_URL", PUBLIC),
                ("LATCHD_COOKIE_DOMAIN", "other.test"),
            ],
            "LATCHD_COOKIE_DOMAIN",
            "parent",
        ),
        (
            vec![("LATCHD_COOKIE_DOMAIN", "example.test")],
            "LATCHD_COOKIE_DOMAIN",
            "LATCHD_PUBLIC_URL",
        ),
    ] {
        let out = run_to_exit(&db, &vars);
        assert_eq!(out.status.code(), Some(2), "{vars:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(var) && stderr.contains(words),
            "{vars:?}: {stderr}"
        );
    }
}

/// A named forged form: its fields and the headers it comes with.
type FormCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<(&'a str, &'a str)>);
/// A named way a session can end, run against the server.
type Ending<'a> = Box<dyn Fn() + 'a>;

/// `text` encoded for a query or form value.
fn form_value(text: &str) -> String {
    form(&[("v", text)])["v=".len()..].to_owned()
}
