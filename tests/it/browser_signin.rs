//! A person in a real browser (headless Chromium) in front of an app that nginx protects with
//! latchd, configured from `examples/nginx.conf`: sent to the sign-in page, typing their
//! credentials, landing on the page they asked for, staying signed in over a reload, and sent
//! back to the sign-in page after signing out.
//!
//! The browser reaches `app.example.com` and `auth.example.com` through nginx as its HTTP
//! proxy, so every URL is the one a user sees, without a port; nginx picks the site by host.
//!
//! `docs/login.png` and `docs/totp.png`, the screenshots the README shows, are what these
//! tests see: they check the committed files are screenshots of this size, and write fresh
//! ones there when `LATCHD_UPDATE_SCREENSHOTS=1`.

use std::path::Path;

use crate::support::browser::{png_size, Browser, ColorScheme, Element, Viewport, KEY_TAB};
use crate::support::otp::{self, Secret};
use crate::support::proxy::{Nginx, Options, Proxy, Upstream, LATCHD_ENV};
use crate::support::{add_user, require, TestServer, PASSWORD};

const PAGE: &str = "http://app.example.com/wiki/Start?lang=en";
const TARGET: &str = "/wiki/Start?lang=en";
const LOGIN: &str = "http://auth.example.com/login";

#[test]
fn a_person_signs_in_through_nginx_stays_signed_in_and_signs_out() {
    if !require("nginx", "nginx") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let id = add_user(dir.path(), "ada@example.com", &["--role", "staff"]);
    let server = TestServer::start_in(dir, &LATCHD_ENV);
    let app = Upstream::start();
    let nginx = Nginx::start(server.addr(), app.addr(), &Options::default());
    let Some(browser) = Browser::start_behind(nginx.addr()) else {
        return;
    };

    // The protected page sends the browser to the sign-in page, which remembers the page.
    browser.goto(PAGE);
    let at = browser.wait_for_url(LOGIN);
    assert!(
        at.starts_with(&format!("{LOGIN}?rd=")),
        "{at}\n{}",
        nginx.log()
    );
    assert_eq!(page_hits(&app), 0, "the app saw a signed-out browser");
    assert_eq!(browser.title(), "Sign in · latchd");
    keep_screenshot("login.png", &browser.screenshot_png());

    // Signing in: a wrong password first gives the form back with one message.
    browser.find("#email").type_text("ada@example.com");
    browser.find("#password").type_text("not the password");
    browser.find("button[type=submit]").click();
    browser.wait_for_text("Wrong email or password");
    assert!(browser.url().starts_with(LOGIN), "{}", browser.url());
    browser.find("#password").type_text(PASSWORD);
    browser.find("button[type=submit]").click();
    assert_eq!(browser.wait_for_url(PAGE), PAGE);
    let seen = app.requests();
    let last = seen
        .iter()
        .rfind(|r| r.target == TARGET)
        .expect("the app saw the page");
    assert_eq!(last.headers_named("x-auth-subject"), [id.as_str()]);
    assert_eq!(last.headers_named("x-auth-email"), ["ada@example.com"]);
    assert_eq!(last.headers_named("x-auth-roles"), ["staff"]);

    // The session cookie, as the browser keeps it: for the whole domain, out of scripts' reach.
    let cookie = browser
        .cookie("latchd_session")
        .expect("latchd_session set");
    assert_eq!(cookie.domain, ".example.com");
    assert_eq!(cookie.path, "/");
    assert!(cookie.http_only);
    assert_eq!(cookie.same_site.as_deref(), Some("Lax"));

    // A reload stays signed in.
    let before = page_hits(&app);
    browser.refresh();
    assert_eq!(browser.url(), PAGE);
    assert_eq!(page_hits(&app), before + 1, "the reload reached the app");

    // Signing out on latchd's page ends the session: back to the sign-in page, and the app
    // is out of reach again.
    browser.goto("http://auth.example.com/");
    browser.wait_for_text("ada@example.com");
    browser.find("form[action='/logout'] button").click();
    browser.wait_for_url(LOGIN);
    assert!(browser.cookie("latchd_session").is_none(), "cookie cleared");
    let before = page_hits(&app);
    browser.goto(PAGE);
    browser.wait_for_url(LOGIN);
    assert_eq!(page_hits(&app), before, "the app saw a signed-out browser");
}

#[test]
fn a_sign_in_returns_to_an_app_on_a_port_of_its_own() {
    if !require("nginx", "nginx") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    add_user(dir.path(), "ada@example.com", &[]);
    let server = TestServer::start_in(dir, &LATCHD_ENV);
    let app = Upstream::start();
    let nginx = Nginx::start(server.addr(), app.addr(), &Options::default());
    let Some(browser) = Browser::start_behind(nginx.addr()) else {
        return;
    };
    // The pages' form-action must allow the redirect after the post to any port of an app in
    // the cookie domain: a source without a port would allow only port 80.
    let page = "http://app.example.com:8080/dash";
    browser.goto(page);
    browser.wait_for_url(LOGIN);
    browser.find("#email").type_text("ada@example.com");
    browser.find("#password").type_text(PASSWORD);
    browser.find("button[type=submit]").click();
    assert_eq!(browser.wait_for_url(page), page, "{}", nginx.log());
    assert!(app.requests().iter().any(|r| r.target == "/dash"));
}

#[test]
fn a_person_turns_totp_on_and_signs_in_with_a_code_in_a_real_browser() {
    let dir = tempfile::tempdir().expect("temp dir");
    add_user(dir.path(), "ada@example.com", &[]);
    let server = TestServer::start_in(dir, &[]);
    let Some(browser) = Browser::start() else {
        return;
    };
    let base = format!("http://{}", server.addr());
    browser.goto(&format!("{base}/login"));
    browser.find("#email").type_text("ada@example.com");
    browser.find("#password").type_text(PASSWORD);
    browser.find("button[type=submit]").click();
    browser.wait_for_text("Two-step verification");

    // Turn it on: the password again, then the QR code and the key.
    browser.find("#current_password").type_text(PASSWORD);
    browser.find("form[action='/totp'] button").click();
    let qr = browser.wait_for_element(".qr svg");
    assert!(
        qr.property("clientWidth")
            .as_u64()
            .is_some_and(|w| w >= 100),
        "the QR code shows"
    );
    keep_screenshot("totp.png", &browser.screenshot_png());
    let secret = Secret::from_base32(&browser.find(".secret").text());
    let now = otp::steady(0, 4);
    browser.find("#code").type_text(&secret.code_at(now));
    browser.find("form[action='/totp/confirm'] button").click();
    browser.wait_for_text("Keep these recovery codes");
    let codes: Vec<String> = browser
        .find_all(".codes li")
        .iter()
        .map(Element::text)
        .collect();
    assert_eq!(codes.len(), 10, "{codes:?}");
    browser.find("a[href='/']").click();
    browser.wait_for_text("10 of 10 recovery codes left");

    // Signed out and in again: the password, then the code the app shows now.
    browser.find("form[action='/logout'] button").click();
    browser.wait_for_url(&format!("{base}/login"));
    browser.find("#email").type_text("ada@example.com");
    browser.find("#password").type_text(PASSWORD);
    browser.find("button[type=submit]").click();
    let field = browser.wait_for_element("#code");
    assert_eq!(
        field.attribute("autocomplete").as_deref(),
        Some("one-time-code")
    );
    assert!(
        browser.cookie("latchd_session").is_none(),
        "no session before the code"
    );
    let now = otp::steady(0, 4);
    field.type_text(&secret.code_at_step(otp::step_of(now) + 1));
    browser.find("button[type=submit]").click();
    browser.wait_for_text("10 of 10 recovery codes left");
    assert!(browser.cookie("latchd_session").is_some());
    assert!(
        browser.cookie("latchd_mfa").is_none(),
        "the code step's cookie is gone"
    );
}

/// How often the app was asked for the page (the browser also asks it for a favicon).
fn page_hits(app: &Upstream) -> usize {
    app.requests().iter().filter(|r| r.target == TARGET).count()
}

/// Checks the committed screenshot `name` (under `docs/`) is one of these pages at the desktop
/// size, or replaces it with `png` when `LATCHD_UPDATE_SCREENSHOTS=1`.
fn keep_screenshot(name: &str, png: &[u8]) {
    let want = (Viewport::DESKTOP.width, Viewport::DESKTOP.height);
    assert_eq!(png_size(png), Some(want), "the screenshot taken");
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(name);
    if std::env::var_os("LATCHD_UPDATE_SCREENSHOTS").is_some_and(|v| v == "1") {
        std::fs::write(&path, png).expect("write the screenshot");
    }
    let committed = std::fs::read(&path).expect("the screenshot is committed in docs/");
    assert_eq!(png_size(&committed), Some(want), "docs/{name}");
}

#[test]
fn the_sign_in_page_fits_a_320_pixel_phone_follows_dark_mode_and_shows_keyboard_focus() {
    let server = TestServer::start();
    let Some(phone) = Browser::start_with(Viewport::NARROW) else {
        return;
    };
    let login = format!("http://{}/login", server.addr());
    phone.goto(&login);
    // Laid out at the phone's width, nothing wider than the screen (WCAG 2.2 SC 1.4.10).
    assert_eq!(phone.find("html").css("width"), "320px");
    let scroll_width = phone.find("html").property("scrollWidth");
    assert_eq!(scroll_width.as_u64(), Some(320), "no horizontal scrolling");
    for field in ["#email", "#password", "button[type=submit]"] {
        let width = phone.find(field).property("offsetWidth").as_u64();
        assert!(
            width.is_some_and(|w| w > 200 && w <= 320),
            "{field}: {width:?}"
        );
    }
    // Labelled fields with the autocomplete hints password managers go by.
    for (field, hint) in [("email", "username"), ("password", "current-password")] {
        let input = phone.find(&format!("#{field}"));
        assert_eq!(input.attribute("autocomplete").as_deref(), Some(hint));
        assert!(
            phone.try_find(&format!("label[for={field}]")).is_some(),
            "{field}"
        );
    }
    drop(phone);

    let Some(desktop) = Browser::start() else {
        return;
    };
    desktop.set_color_scheme(ColorScheme::Dark);
    desktop.goto(&login);
    let body = desktop.find("body");
    assert_eq!(body.css("background-color"), "rgba(17, 19, 23, 1)");
    assert_eq!(body.css("color"), "rgba(233, 235, 239, 1)");
    desktop.set_color_scheme(ColorScheme::Light);
    assert_eq!(body.css("background-color"), "rgba(245, 246, 248, 1)");
    // The keyboard moves through the form, and the focused field shows a ring.
    let email = desktop.find("#email");
    email.type_text(KEY_TAB);
    let focused = desktop.active_element();
    assert_eq!(focused.attribute("id").as_deref(), Some("password"));
    assert_eq!(focused.css("outline-style"), "solid");
    assert_eq!(focused.css("outline-width"), "3px");
}
