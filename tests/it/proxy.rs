//! latchd as the forward-auth server of real nginx (`auth_request`) and real Caddy
//! (`forward_auth`), each running its configuration from `examples/`: who reaches the app and
//! with which identity headers, what latchd is told about the request, what the client gets for
//! each of latchd's answers, and the proxies' own checks of the example files.
//!
//! Without nginx or Caddy installed these tests skip, with a note; with `CI` set they fail
//! instead (`.ci/run` installs them).

use std::net::SocketAddr;
use std::process::Command;

use serde_json::json;

use crate::support::proxy::{
    caddy_config, caddy_validate, example, free_port, nginx_check, nginx_config,
    nginx_example_for_check, request_via, Caddy, Nginx, Options, Proxy, Seen, Site, Upstream,
    APP_HOST, AUTH_HOST, LATCHD_ENV,
};
use crate::support::{add_user, require, TestServer, PASSWORD};

/// How a test starts one kind of proxy: `(latchd, app, options)`.
type Start<P> = fn(SocketAddr, SocketAddr, &Options) -> P;

const APP: &str = "http://app.example.com";
const AUTH: &str = "http://auth.example.com";
/// A sign-in redirect as latchd would build it for a request to `APP/private`.
const SIGN_IN: &str = "http://auth.example.com/login?rd=http%3A%2F%2Fapp.example.com%2Fprivate";

// ---- against the real latchd ----

#[test]
fn nginx_passes_a_bearer_request_on_with_who_it_is() {
    if require("nginx", "nginx") {
        passes_a_bearer_request_on_with_who_it_is(Nginx::start);
    }
}

#[test]
fn caddy_passes_a_bearer_request_on_with_who_it_is() {
    if require("caddy", "caddy") {
        passes_a_bearer_request_on_with_who_it_is(Caddy::start);
    }
}

#[test]
fn nginx_answers_401_to_an_api_client_without_a_valid_token() {
    if require("nginx", "nginx") {
        answers_401_without_a_valid_token(Nginx::start);
    }
}

#[test]
fn caddy_answers_401_to_an_api_client_without_a_valid_token() {
    if require("caddy", "caddy") {
        answers_401_without_a_valid_token(Caddy::start);
    }
}

#[test]
fn nginx_never_passes_on_identity_headers_the_client_wrote() {
    if require("nginx", "nginx") {
        never_passes_on_forged_identity_headers(Nginx::start);
    }
}

#[test]
fn caddy_never_passes_on_identity_headers_the_client_wrote() {
    if require("caddy", "caddy") {
        never_passes_on_forged_identity_headers(Caddy::start);
    }
}

/// Signs in through the proxy's latchd host, then uses the token on the app.
fn passes_a_bearer_request_on_with_who_it_is<P: Proxy>(start: Start<P>) {
    let (server, id) = latchd_with_user(&["--role", "editor", "--role", "ops"]);
    let app = Upstream::start();
    let proxy = start(server.addr(), app.addr(), &Options::default());

    let login = proxy.request(
        "POST",
        &format!("{AUTH}/v1/auth/login"),
        &[("Content-Type", "application/json")],
        json!({"email": "ada@example.com", "password": PASSWORD})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(login.status, 200, "{}\n{}", login.body, proxy.log());
    let (token, _) = login.pair();
    let bearer = format!("Bearer {token}");
    let roles = latchd_roles(&server, &token);
    assert!(roles.contains("editor") && roles.contains("ops"), "{roles}");
    assert!(app.requests().is_empty(), "the login went to the app");

    let reply = proxy.get(
        &format!("{APP}/reports/2026?page=2"),
        &[("Authorization", &bearer)],
    );
    assert_eq!(reply.status, 200, "{}\n{}", reply.body, proxy.log());
    assert_eq!(
        reply.json()["target"],
        "/reports/2026?page=2",
        "{}",
        reply.body
    );

    let post = proxy.request(
        "POST",
        &format!("{APP}/reports"),
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        b"title=q3&draft=1",
    );
    assert_eq!(post.status, 200, "{}\n{}", post.body, proxy.log());

    let seen = app.requests();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    for (request, method, target) in [
        (&seen[0], "GET", "/reports/2026?page=2"),
        (&seen[1], "POST", "/reports"),
    ] {
        assert_eq!(request.method, method);
        assert_eq!(request.target, target);
        assert_eq!(request.header("host"), Some(APP_HOST), "{request:#?}");
        assert_eq!(
            request.headers_named("x-auth-subject"),
            [id.as_str()],
            "{request:#?}"
        );
        assert_eq!(
            request.headers_named("x-auth-roles"),
            [roles.as_str()],
            "{request:#?}"
        );
        assert_eq!(
            request.headers_named("x-auth-email"),
            ["ada@example.com"],
            "{request:#?}"
        );
    }
    // The app gets the body whole (only the forward-auth request goes without it).
    assert_eq!(seen[1].body, b"title=q3&draft=1");
}

fn answers_401_without_a_valid_token<P: Proxy>(start: Start<P>) {
    let (server, _) = latchd_with_user(&[]);
    let (token, _) = server.login("ada@example.com");
    assert_eq!(server.post_auth("/v1/auth/logout", &token).status, 204);
    let app = Upstream::start();
    let proxy = start(server.addr(), app.addr(), &Options::default());

    let url = format!("{APP}/private");
    let accept = ("Accept", "application/json");
    let dead = format!("Bearer {token}");
    for (what, headers, challenge) in [
        ("no token", vec![accept], "Bearer"),
        (
            "a malformed token",
            vec![accept, ("Authorization", "Bearer not-a-token")],
            r#"Bearer error="invalid_token""#,
        ),
        (
            "a revoked token",
            vec![accept, ("Authorization", dead.as_str())],
            r#"Bearer error="invalid_token""#,
        ),
    ] {
        for method in ["GET", "POST"] {
            let reply = proxy.request(method, &url, &headers, b"");
            assert_eq!(
                reply.status,
                401,
                "{what} {method}: {reply:#?}\n{}",
                proxy.log()
            );
            assert_eq!(
                reply.headers_named("www-authenticate"),
                [challenge],
                "{what} {method}: {reply:#?}"
            );
            assert_eq!(
                reply.header("location"),
                None,
                "{what} {method}: {reply:#?}"
            );
            assert_eq!(
                reply.json()["error"],
                "invalid_token",
                "{what}: {}",
                reply.body
            );
        }
    }
    // A name the proxy does not serve does not reach the app, even with a valid token.
    let token = server.login("ada@example.com").0;
    let bearer = format!("Bearer {token}");
    proxy.get("http://other.example.net/", &[("Authorization", &bearer)]);
    assert!(app.requests().is_empty(), "{:#?}", app.requests());
}

fn never_passes_on_forged_identity_headers<P: Proxy>(start: Start<P>) {
    let (server, id) = latchd_with_user(&["--role", "viewer"]);
    let (token, _) = server.login("ada@example.com");
    let roles = latchd_roles(&server, &token);
    let app = Upstream::start();
    let proxy = start(server.addr(), app.addr(), &Options::default());

    // Every spelling an app might read as one of the identity headers.
    let forged = [
        ("X-Auth-Subject", "forged-subject"),
        ("x-auth-subject", "forged-lowercase"),
        ("X_Auth_Subject", "forged-underscore"),
        ("X-Auth-Roles", "admin,forged"),
        ("X_Auth_Roles", "admin,forged-underscore"),
        ("X-Auth-Email", "forged@example.com"),
        ("X_Auth_Email", "forged-underscore@example.com"),
    ];
    let bearer = format!("Bearer {token}");
    let mut with_token = forged.to_vec();
    with_token.push(("Authorization", &bearer));
    let reply = proxy.get(&format!("{APP}/account"), &with_token);
    assert_eq!(reply.status, 200, "{}\n{}", reply.body, proxy.log());
    let seen = app.requests();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(
        seen[0].headers_named("x-auth-subject"),
        [id.as_str()],
        "{seen:#?}"
    );
    assert_eq!(
        seen[0].headers_named("x-auth-roles"),
        [roles.as_str()],
        "{seen:#?}"
    );
    assert_eq!(
        seen[0].headers_named("x-auth-email"),
        ["ada@example.com"],
        "{seen:#?}"
    );
    let leaked: Vec<_> = seen[0]
        .headers
        .iter()
        .filter(|(_, value)| value.contains("forged"))
        .collect();
    assert!(
        leaked.is_empty(),
        "forged headers reached the app: {leaked:?}"
    );

    let reply = proxy.get(&format!("{APP}/account"), &forged);
    assert_eq!(reply.status, 401, "{reply:#?}");
    assert_eq!(
        app.requests().len(),
        1,
        "a request without a token reached the app"
    );
}

// ---- against a stand-in latchd: what the proxy sends it, and what it makes of each answer ----

#[test]
fn nginx_tells_latchd_the_original_request_and_the_client_address() {
    if !require("nginx", "nginx") {
        return;
    }
    let asked = original_request_as_latchd_sees_it(Nginx::start);
    assert_eq!(
        asked.headers_named("x-original-url"),
        ["http://app.example.com/a/b?c=d"],
        "{asked:#?}"
    );
    assert_eq!(
        asked.headers_named("x-original-method"),
        ["POST"],
        "{asked:#?}"
    );
    for made_up in [
        "x-forwarded-method",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-uri",
    ] {
        assert_eq!(asked.header(made_up), None, "{made_up}: {asked:#?}");
    }
}

#[test]
fn caddy_tells_latchd_the_original_request_and_the_client_address() {
    if !require("caddy", "caddy") {
        return;
    }
    let asked = original_request_as_latchd_sees_it(Caddy::start);
    for (name, want) in [
        ("x-forwarded-method", "POST"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", APP_HOST),
        ("x-forwarded-uri", "/a/b?c=d"),
    ] {
        assert_eq!(asked.headers_named(name), [want], "{name}: {asked:#?}");
    }
    for made_up in ["x-original-url", "x-original-method"] {
        assert_eq!(asked.header(made_up), None, "{made_up}: {asked:#?}");
    }
}

/// A POST to the app with credentials and made-up forwarding headers; returns the verify request
/// latchd got, after checking what every proxy must send.
fn original_request_as_latchd_sees_it<P: Proxy>(start: Start<P>) -> Seen {
    let latchd = Upstream::answering(200, &[("X-Auth-Subject", "u-1"), ("X-Auth-Roles", "")]);
    let app = Upstream::start();
    let proxy = start(latchd.addr(), app.addr(), &Options::default());
    let reply = proxy.request(
        "POST",
        &format!("{APP}/a/b?c=d"),
        &[
            ("Authorization", "Bearer the-token"),
            ("Cookie", "latchd_session=the-session"),
            ("Accept", "text/html"),
            ("X-Forwarded-For", "203.0.113.9"),
            ("X-Forwarded-Host", "evil.example"),
            ("X-Forwarded-Uri", "/elsewhere"),
            ("X-Forwarded-Method", "DELETE"),
            ("X-Original-URL", "http://evil.example/"),
            ("X-Original-Method", "DELETE"),
            ("Content-Type", "text/plain"),
        ],
        b"the body",
    );
    assert_eq!(reply.status, 200, "{reply:#?}\n{}", proxy.log());
    assert_eq!(app.requests().len(), 1);

    let asked = latchd.requests();
    assert_eq!(asked.len(), 1, "{asked:#?}");
    let asked = asked.into_iter().next().expect("one request");
    assert_eq!(asked.target, "/v1/auth/verify", "{asked:#?}");
    assert_eq!(asked.headers_named("authorization"), ["Bearer the-token"]);
    assert_eq!(
        asked.headers_named("cookie"),
        ["latchd_session=the-session"]
    );
    assert_eq!(asked.headers_named("accept"), ["text/html"]);
    // The address the proxy saw, never the one the client wrote.
    assert_eq!(
        asked.headers_named("x-forwarded-for"),
        ["127.0.0.1"],
        "{asked:#?}"
    );
    // Only the app gets the body: latchd judges headers, and must not wait for a body.
    assert!(asked.body.is_empty(), "{asked:#?}");
    asked
}

#[test]
fn nginx_asks_latchd_with_the_configured_query_only() {
    if require("nginx", "nginx") {
        asks_with_the_configured_query_only(Nginx::start);
    }
}

#[test]
fn caddy_asks_latchd_with_the_configured_query_only() {
    if require("caddy", "caddy") {
        asks_with_the_configured_query_only(Caddy::start);
    }
}

/// latchd reads `role=` from the verify URI: a client's own query must never get there, or
/// `?role=user` on an app URL could widen `role=admin` to "admin or user".
fn asks_with_the_configured_query_only<P: Proxy>(start: Start<P>) {
    for (opts, want) in [
        (Options::default(), "/v1/auth/verify"),
        (
            Options::verify_query("role=admin"),
            "/v1/auth/verify?role=admin",
        ),
    ] {
        let latchd = Upstream::answering(200, &[("X-Auth-Subject", "u-1")]);
        let app = Upstream::start();
        let proxy = start(latchd.addr(), app.addr(), &opts);
        let reply = proxy.get(&format!("{APP}/x?role=user&mfa=0"), &[]);
        assert_eq!(reply.status, 200, "{reply:#?}\n{}", proxy.log());
        let asked = latchd.requests();
        assert_eq!(asked.len(), 1);
        assert_eq!(
            asked[0].target,
            want,
            "{opts:?}; config:\n{}",
            proxy.config()
        );
        assert_eq!(app.requests()[0].target, "/x?role=user&mfa=0");
    }
}

#[test]
fn nginx_turns_latchds_answers_into_redirects_and_errors() {
    if !require("nginx", "nginx") {
        return;
    }
    // latchd gives nginx a 401 with Location for a browser; nginx makes it the redirect.
    let location = [("Location", SIGN_IN), ("WWW-Authenticate", "Bearer")];
    answers_as(
        Nginx::start,
        &[
            (401, &location, "GET", 302, Some(SIGN_IN)),
            (401, &location, "HEAD", 302, Some(SIGN_IN)),
            (401, &location, "POST", 303, Some(SIGN_IN)),
            (401, &[("WWW-Authenticate", "Bearer")], "GET", 401, None),
            (403, &[], "GET", 403, None),
            (503, &[("Retry-After", "1")], "GET", 500, None),
        ],
    );
}

#[test]
fn caddy_passes_latchds_answers_on_as_they_are() {
    if !require("caddy", "caddy") {
        return;
    }
    answers_as(
        Caddy::start,
        &[
            (302, &[("Location", SIGN_IN)], "GET", 302, Some(SIGN_IN)),
            (303, &[("Location", SIGN_IN)], "POST", 303, Some(SIGN_IN)),
            (401, &[("WWW-Authenticate", "Bearer")], "GET", 401, None),
            (403, &[], "GET", 403, None),
            (503, &[("Retry-After", "1")], "GET", 503, None),
        ],
    );
}

/// One row: latchd's status and headers, the client's method, the status and `Location` the
/// client must get. The app is reached by none of them.
type AnswerRow<'a> = (u16, &'a [(&'a str, &'a str)], &'a str, u16, Option<&'a str>);

fn answers_as<P: Proxy>(start: Start<P>, rows: &[AnswerRow<'_>]) {
    let latchd = Upstream::start();
    let app = Upstream::start();
    let proxy = start(latchd.addr(), app.addr(), &Options::default());
    for (status, headers, method, want_status, want_location) in rows {
        latchd.answer_with(*status, headers);
        let reply = proxy.request(
            method,
            &format!("{APP}/private"),
            &[("Accept", "text/html")],
            b"",
        );
        let row = format!("latchd {status} {headers:?}, client {method}");
        assert_eq!(
            reply.status,
            *want_status,
            "{row}: {reply:#?}\n{}",
            proxy.log()
        );
        assert_eq!(
            reply.header("location"),
            *want_location,
            "{row}: {reply:#?}"
        );
    }
    assert_eq!(latchd.requests().len(), rows.len());
    assert!(app.requests().is_empty(), "{:#?}", app.requests());
}

#[test]
fn nginx_fails_closed_when_latchd_is_down() {
    if require("nginx", "nginx") {
        fails_closed_when_latchd_is_down(Nginx::start, 500);
    }
}

#[test]
fn caddy_fails_closed_when_latchd_is_down() {
    if require("caddy", "caddy") {
        fails_closed_when_latchd_is_down(Caddy::start, 502);
    }
}

fn fails_closed_when_latchd_is_down<P: Proxy>(start: Start<P>, want: u16) {
    let nobody = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let app = Upstream::start();
    let proxy = start(nobody, app.addr(), &Options::default());
    let reply = proxy.get(&format!("{APP}/"), &[("Authorization", "Bearer anything")]);
    assert_eq!(reply.status, want, "{reply:#?}\n{}", proxy.log());
    assert!(app.requests().is_empty(), "{:#?}", app.requests());
}

#[test]
fn nginx_serves_latchds_pages_on_the_auth_host() {
    if require("nginx", "nginx") {
        serves_latchds_pages(Nginx::start);
    }
}

#[test]
fn caddy_serves_latchds_pages_on_the_auth_host() {
    if require("caddy", "caddy") {
        serves_latchds_pages(Caddy::start);
    }
}

/// The sign-in form and its POST reach latchd with the client's address, and no forward-auth.
fn serves_latchds_pages<P: Proxy>(start: Start<P>) {
    let latchd = Upstream::start();
    let app = Upstream::start();
    let proxy = start(latchd.addr(), app.addr(), &Options::default());
    let login = format!("/login?rd=http%3A%2F%2F{APP_HOST}%2Fprivate");
    let forged = ("X-Forwarded-For", "203.0.113.9");
    let form = proxy.get(&format!("{AUTH}{login}"), &[forged]);
    assert_eq!(form.status, 200, "{form:#?}\n{}", proxy.log());
    let post = proxy.request(
        "POST",
        &format!("{AUTH}/login"),
        &[
            forged,
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        b"email=ada%40example.com&password=x",
    );
    assert_eq!(post.status, 200, "{post:#?}");

    let seen = latchd.requests();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].target.as_str()),
        ("GET", login.as_str())
    );
    assert_eq!(
        (seen[1].method.as_str(), seen[1].target.as_str()),
        ("POST", "/login")
    );
    assert_eq!(seen[1].body, b"email=ada%40example.com&password=x");
    for request in &seen {
        assert_eq!(request.header("host"), Some(AUTH_HOST), "{request:#?}");
        assert_eq!(
            request.headers_named("x-forwarded-for"),
            ["127.0.0.1"],
            "{request:#?}"
        );
        assert_eq!(
            request.headers_named("x-forwarded-proto"),
            ["http"],
            "{request:#?}"
        );
    }
    assert!(app.requests().is_empty());
}

#[test]
fn nginx_sends_plain_http_to_https() {
    if !require("nginx", "nginx") {
        return;
    }
    let unused = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let nginx = Nginx::start(unused, unused, &Options::default());
    let reply = request_via(nginx.http_addr(), "GET", &format!("{APP}/a?b=c"), &[], b"");
    assert_eq!(reply.status, 301, "{reply:#?}");
    assert_eq!(
        reply.header("location"),
        Some("https://app.example.com/a?b=c")
    );
}

// ---- the proxies' own checks of the examples and of what the tests run ----

#[test]
fn nginx_accepts_the_example_and_the_config_the_tests_run() {
    if !require("nginx", "nginx") || !require("openssl", "openssl") {
        return;
    }
    let example = example("nginx.conf");
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=app.example.com"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let ports = [free_port(), free_port()];
    let checked = nginx_example_for_check(&example, dir.path(), ports, &cert, &key);
    if let Err(e) = nginx_check(&checked, dir.path()) {
        panic!("{e}\n--- config ---\n{checked}");
    }
    // Only files, ports and certificates changed: TLS and every directive stay.
    let kept = directives(&checked);
    assert!(
        kept.contains(&format!("listen 127.0.0.1:{} ssl;", ports[0])),
        "{checked}"
    );
    for outside in ["/etc/", "/var/", "/run/"] {
        assert!(!kept.contains(outside), "{outside}:\n{checked}");
    }

    let latchd = SocketAddr::from(([127, 0, 0, 1], 48080));
    let app = SocketAddr::from(([127, 0, 0, 1], 43000));
    let run = nginx_config(
        &example,
        &Site {
            dir: dir.path(),
            port: free_port(),
            http_port: free_port(),
            latchd,
            upstream: app,
            verify_query: Some("role=admin"),
        },
    );
    if let Err(e) = nginx_check(&run, dir.path()) {
        panic!("{e}\n--- config ---\n{run}");
    }
    let directives = directives(&run);
    for want in [
        "server 127.0.0.1:48080;",
        "server 127.0.0.1:43000;",
        "proxy_pass http://latchd/v1/auth/verify?role=admin;",
        "master_process off;",
    ] {
        assert!(directives.contains(want), "{want}:\n{run}");
    }
    for gone in [
        "127.0.0.1:8080",
        "127.0.0.1:3000",
        "ssl",
        "[::]",
        "/var/",
        "/run/",
        "\nuser ",
    ] {
        assert!(!directives.contains(gone), "{gone}:\n{run}");
    }
    assert_keeps_forward_auth_lines(
        &example,
        &run,
        &[
            "auth_request",
            "proxy_set_header",
            "error_page",
            "return",
            "location",
            "server_name",
        ],
    );
}

#[test]
fn caddy_validates_the_example_and_the_config_the_tests_run() {
    if !require("caddy", "caddy") {
        return;
    }
    let example = example("Caddyfile");
    if let Err(e) = caddy_validate(&example) {
        panic!("{e}");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let run = caddy_config(
        &example,
        &Site {
            dir: dir.path(),
            port: 48443,
            http_port: 0,
            latchd: SocketAddr::from(([127, 0, 0, 1], 48080)),
            upstream: SocketAddr::from(([127, 0, 0, 1], 43000)),
            verify_query: Some("role=admin"),
        },
    );
    if let Err(e) = caddy_validate(&run) {
        panic!("{e}\n--- config ---\n{run}");
    }
    for want in [
        "http://app.example.com:48443 {",
        "http://auth.example.com:48443 {",
        "forward_auth 127.0.0.1:48080 {",
        "uri /v1/auth/verify?role=admin",
        "reverse_proxy 127.0.0.1:43000",
        "reverse_proxy 127.0.0.1:48080",
        "admin off",
        "auto_https off",
    ] {
        assert!(run.contains(want), "{want}:\n{run}");
    }
    let directives = directives(&run);
    for gone in ["127.0.0.1:8080", "127.0.0.1:3000"] {
        assert!(!directives.contains(gone), "{gone}:\n{run}");
    }
    assert_keeps_forward_auth_lines(
        &example,
        &run,
        &["request_header", "copy_headers", "header_up", "route"],
    );
}

/// The lines of a config that are not comments, trimmed, each after a newline.
fn directives(config: &str) -> String {
    config
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .fold(String::new(), |mut out, l| {
            out.push('\n');
            out.push_str(l);
            out
        })
}

/// Every line of `example` starting with one of `directives` is in `run` unchanged: the tests
/// run the example's forward-auth setup, not a look-alike.
fn assert_keeps_forward_auth_lines(example: &str, run: &str, directives: &[&str]) {
    let run_lines: Vec<&str> = run.lines().map(str::trim).collect();
    let mut kept = 0;
    for line in example.lines().map(str::trim) {
        if directives.iter().any(|d| line.starts_with(d)) {
            assert!(run_lines.contains(&line), "the tests do not run {line:?}");
            kept += 1;
        }
    }
    assert!(
        kept >= directives.len(),
        "only {kept} lines matched {directives:?}"
    );
}

#[test]
fn every_example_names_the_same_headers_and_settings() {
    for name in ["nginx.conf", "Caddyfile", "traefik.yml"] {
        let text = example(name);
        for want in [
            "X-Auth-Subject",
            "X-Auth-Roles",
            "X-Auth-Email",
            "/v1/auth/verify",
            "LATCHD_LISTEN=127.0.0.1:8080",
            "LATCHD_PUBLIC_URL=https://auth.example.com",
            "LATCHD_COOKIE_DOMAIN=example.com",
            "LATCHD_TRUSTED_PROXIES=127.0.0.1",
            "app.example.com",
            "auth.example.com",
            "127.0.0.1:3000",
        ] {
            assert!(text.contains(want), "examples/{name} lacks {want:?}");
        }
    }
    let traefik = example("traefik.yml");
    for want in [
        r#"address: "http://127.0.0.1:8080/v1/auth/verify""#,
        "trustForwardHeader: true",
        "authResponseHeaders:\n          - X-Auth-Subject\n          - X-Auth-Roles\n          - X-Auth-Email\n",
    ] {
        assert!(traefik.contains(want), "examples/traefik.yml lacks {want:?}");
    }
}

// ---- helpers ----

/// latchd behind a proxy (see [`LATCHD_ENV`]) with the user ada@example.com, added with
/// `roles` (`["--role", "r"]...`) before the server starts; returns the server and the user id.
fn latchd_with_user(roles: &[&str]) -> (TestServer, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let id = add_user(dir.path(), "ada@example.com", roles);
    (TestServer::start_in(dir, &LATCHD_ENV), id)
}

/// `X-Auth-Roles` as latchd itself answers it for `token`.
fn latchd_roles(server: &TestServer, token: &str) -> String {
    let direct = server.get("/v1/auth/verify", Some(token));
    assert_eq!(direct.status, 200, "{}", direct.body);
    direct
        .header("x-auth-roles")
        .expect("X-Auth-Roles")
        .to_owned()
}
