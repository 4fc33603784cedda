//! A person with a browser behind real nginx and real Caddy (the configurations of
//! `examples/`): sent to the sign-in page, signed in, back at the page they asked for with the
//! app seeing who they are; sent to sign in again after every way their session ends; refused
//! by `role=`; and an API client still gets a plain 401.

use std::net::SocketAddr;

use serde_json::json;

use crate::support::jar::{form, hidden, Jar};
use crate::support::proxy::{Caddy, Nginx, Options, Proxy, Upstream, LATCHD_ENV};
use crate::support::{add_user, require, Reply, TestServer, PASSWORD};

type Start<P> = fn(SocketAddr, SocketAddr, &Options) -> P;
/// One way a session ends, applied to the browser that holds it.
type Ending<'a> = Box<dyn Fn(&mut Jar) + 'a>;

const APP: &str = "http://app.example.com";
const AUTH: &str = "http://auth.example.com";
const PAGE: &str = "http://app.example.com/wiki/Start?lang=en";
const NAVIGATE: (&str, &str) = ("Accept", "text/html,application/xhtml+xml,*/*;q=0.8");

#[test]
fn nginx_signs_a_browser_in_and_back_to_the_page_it_asked_for() {
    if require("nginx", "nginx") {
        signs_in_and_back(Nginx::start);
    }
}

#[test]
fn caddy_signs_a_browser_in_and_back_to_the_page_it_asked_for() {
    if require("caddy", "caddy") {
        signs_in_and_back(Caddy::start);
    }
}

#[test]
fn nginx_sends_a_browser_to_sign_in_again_after_every_revocation() {
    if require("nginx", "nginx") {
        every_revocation_sends_it_back(Nginx::start);
    }
}

#[test]
fn caddy_sends_a_browser_to_sign_in_again_after_every_revocation() {
    if require("caddy", "caddy") {
        every_revocation_sends_it_back(Caddy::start);
    }
}

#[test]
fn nginx_refuses_a_signed_in_browser_without_the_role() {
    if require("nginx", "nginx") {
        refuses_without_the_role(Nginx::start);
    }
}

#[test]
fn caddy_refuses_a_signed_in_browser_without_the_role() {
    if require("caddy", "caddy") {
        refuses_without_the_role(Caddy::start);
    }
}

/// latchd with `ada@example.com` (roles `staff`) and `root@example.com` (admin); ada's id.
fn latchd() -> (TestServer, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let id = add_user(dir.path(), "ada@example.com", &["--role", "staff"]);
    add_user(dir.path(), "root@example.com", &["--role", "admin"]);
    (TestServer::start_in(dir, &LATCHD_ENV), id)
}

fn navigate<P: Proxy>(proxy: &P, jar: &mut Jar, url: &str) -> Reply {
    jar.send(&[NAVIGATE], |headers| proxy.get(url, headers))
}

/// From a protected page to the sign-in form and through it; returns where it sends the
/// browser after signing in.
fn sign_in<P: Proxy>(proxy: &P, jar: &mut Jar, page: &str) -> String {
    let sent = navigate(proxy, jar, page);
    assert!(
        matches!(sent.status, 302 | 303),
        "{}: {}\n{}",
        sent.status,
        sent.body,
        proxy.log()
    );
    let login = sent.header("location").expect("a Location").to_owned();
    assert!(login.starts_with(&format!("{AUTH}/login?rd=")), "{login}");
    let form_page = navigate(proxy, jar, &login);
    assert_eq!(form_page.status, 200, "{}", form_page.body);
    assert!(form_page.body.contains("autocomplete=\"current-password\""));
    let csrf = hidden(&form_page.body, "csrf").expect("csrf");
    let rd = hidden(&form_page.body, "rd").expect("the form carries the page");
    assert_eq!(rd, page);
    let body = form(&[
        ("email", "ada@example.com"),
        ("password", PASSWORD),
        ("csrf", &csrf),
        ("rd", &rd),
    ]);
    let signed_in = jar.send(
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", AUTH),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        |headers| proxy.request("POST", &format!("{AUTH}/login"), headers, body.as_bytes()),
    );
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert!(jar.get("latchd_session").is_some());
    signed_in.header("location").expect("Location").to_owned()
}

fn signs_in_and_back<P: Proxy>(start: Start<P>) {
    let (server, id) = latchd();
    let app = Upstream::start();
    let proxy = start(server.addr(), app.addr(), &Options::default());
    let mut jar = Jar::default();
    let back = sign_in(&proxy, &mut jar, PAGE);
    assert_eq!(back, PAGE, "back at the page it asked for");
    assert!(
        app.requests().is_empty(),
        "nothing reached the app before the sign-in"
    );
    let page = navigate(&proxy, &mut jar, &back);
    assert_eq!(page.status, 200, "{}\n{}", page.body, proxy.log());
    let seen = app.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/wiki/Start?lang=en");
    assert_eq!(seen[0].headers_named("x-auth-subject"), [id.as_str()]);
    assert_eq!(seen[0].headers_named("x-auth-roles"), ["staff"]);
    assert_eq!(seen[0].headers_named("x-auth-email"), ["ada@example.com"]);
    // A reload stays signed in; a forged identity header is replaced, not added.
    let forged = jar.send(&[NAVIGATE, ("X-Auth-Subject", "forged")], |h| {
        proxy.get(PAGE, h)
    });
    assert_eq!(forged.status, 200);
    assert_eq!(
        app.requests()[1].headers_named("x-auth-subject"),
        [id.as_str()]
    );
    // An XHR or API call without credentials gets a plain 401, not a redirect.
    for headers in [
        vec![("Accept", "application/json")],
        vec![NAVIGATE, ("X-Requested-With", "XMLHttpRequest")],
    ] {
        let reply = proxy.get(&format!("{APP}/api/items"), &headers);
        assert_eq!(reply.status, 401, "{headers:?}: {}", reply.body);
        assert_eq!(reply.header("location"), None, "{headers:?}");
    }
    assert_eq!(app.requests().len(), 2, "the 401s reached nothing");
}

fn every_revocation_sends_it_back<P: Proxy>(start: Start<P>) {
    let (server, id) = latchd();
    let app = Upstream::start();
    let proxy = start(server.addr(), app.addr(), &Options::default());
    let api = |path: &str, token: &str| {
        let auth = format!("Bearer {token}");
        proxy.request(
            "POST",
            &format!("{AUTH}{path}"),
            &[("Authorization", &auth)],
            b"",
        )
    };
    let token_of = |email: &str| {
        let body = json!({"email": email, "password": PASSWORD}).to_string();
        let reply = proxy.request(
            "POST",
            &format!("{AUTH}/v1/auth/login"),
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.pair().0
    };
    let endings: [(&str, Ending<'_>); 3] = [
        (
            "sign out",
            Box::new(|jar: &mut Jar| {
                let home = navigate(&proxy, jar, &format!("{AUTH}/"));
                let csrf = hidden(&home.body, "csrf").expect("csrf on /");
                let body = form(&[("csrf", &csrf)]);
                let out = jar.send(
                    &[
                        ("Content-Type", "application/x-www-form-urlencoded"),
                        ("Origin", AUTH),
                    ],
                    |h| proxy.request("POST", &format!("{AUTH}/logout"), h, body.as_bytes()),
                );
                assert_eq!(out.status, 303, "{}", out.body);
                assert_eq!(out.header("location"), Some("/login"));
            }),
        ),
        (
            "logout-all",
            Box::new(|_: &mut Jar| {
                assert_eq!(
                    api("/v1/auth/logout-all", &token_of("ada@example.com")).status,
                    204
                );
            }),
        ),
        (
            "admin revoke",
            Box::new(|_: &mut Jar| {
                let path = format!("/v1/admin/users/{id}/revoke");
                assert_eq!(api(&path, &token_of("root@example.com")).status, 204);
            }),
        ),
    ];
    for (name, end) in endings {
        let mut jar = Jar::default();
        let back = sign_in(&proxy, &mut jar, PAGE);
        assert_eq!(navigate(&proxy, &mut jar, &back).status, 200, "{name}");
        let kept = jar.clone();
        end(&mut jar);
        // The next navigation, with the cookie it had before, goes to the sign-in page.
        let mut old = kept;
        let again = navigate(&proxy, &mut old, PAGE);
        assert!(
            matches!(again.status, 302 | 303),
            "{name}: {}",
            again.status
        );
        assert!(
            again
                .header("location")
                .is_some_and(|l| l.starts_with(&format!("{AUTH}/login"))),
            "{name}"
        );
    }
}

fn refuses_without_the_role<P: Proxy>(start: Start<P>) {
    let (server, _) = latchd();
    let app = Upstream::start();
    let proxy = start(
        server.addr(),
        app.addr(),
        &Options::verify_query("role=admin"),
    );
    let mut jar = Jar::default();
    let back = sign_in(&proxy, &mut jar, PAGE);
    let refused = navigate(&proxy, &mut jar, &back);
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        app.requests().is_empty(),
        "a staff user reached an admin-only app"
    );
}
