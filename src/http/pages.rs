//! latchd's own pages: the sign-in form, who is signed in, and the few messages a browser may
//! need. Server-rendered, usable without JavaScript, no third-party resources, readable at
//! 320 px and in dark mode. Every page is written with [`Html`] (escaped by construction) and
//! answered with [`page`], which sets the one Content-Security-Policy ([`csp`]) and the framing
//! and referrer headers.

use std::fmt::Write as _;
use std::sync::OnceLock;

use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};

use super::html::Html;
use super::respond::{self, Body};
use super::site::Site;

/// The stylesheet of every page, inline; the CSP allows exactly this text by its hash.
const STYLE: &str = "\
:root{color-scheme:light dark;--bg:#f5f6f8;--card:#fff;--fg:#1b1e23;--muted:#5b6270;\
--line:#d5d9e0;--accent:#1f5fbf;--accent-fg:#fff;--bad:#a8201a;--focus:#f0a000}\
@media (prefers-color-scheme:dark){:root{--bg:#111317;--card:#1b1e24;--fg:#e9ebef;\
--muted:#a3a9b5;--line:#3a404b;--accent:#6ea1ff;--accent-fg:#0b0d10;--bad:#ff8a80}}\
*{box-sizing:border-box}\
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;\
background:var(--bg);color:var(--fg);font:16px/1.5 system-ui,-apple-system,\"Segoe UI\",\
Roboto,sans-serif;padding:16px}\
main{width:100%;max-width:380px;background:var(--card);border:1px solid var(--line);\
border-radius:12px;padding:28px 24px}\
h1{font-size:1.35rem;margin:0 0 4px}\
.sub{color:var(--muted);margin:0 0 20px;font-size:.95rem}\
label{display:block;font-weight:600;margin:14px 0 6px}\
input{width:100%;font:inherit;padding:10px 12px;border:1px solid var(--line);\
border-radius:8px;background:var(--bg);color:var(--fg)}\
button{width:100%;margin-top:20px;font:inherit;font-weight:600;padding:11px 12px;\
border:0;border-radius:8px;background:var(--accent);color:var(--accent-fg);cursor:pointer}\
button.plain{background:transparent;color:var(--accent);border:1px solid var(--line)}\
a{color:var(--accent)}\
:focus-visible{outline:3px solid var(--focus);outline-offset:2px}\
.error{color:var(--bad);background:transparent;border:1px solid var(--bad);\
border-radius:8px;padding:10px 12px;margin:0 0 8px}\
dl{margin:0 0 8px}dt{color:var(--muted);font-size:.85rem;margin-top:10px}\
dd{margin:0;word-break:break-all}\
.brand{font-size:.8rem;letter-spacing:.08em;text-transform:uppercase;color:var(--muted);\
margin:0 0 14px}";

/// The sign-in form.
pub(super) struct LoginForm<'a> {
    /// The email to prefill (after a failed attempt).
    pub(super) email: &'a str,
    /// A safe redirect target to carry through the sign-in.
    pub(super) rd: Option<&'a str>,
    /// The browser's CSRF token.
    pub(super) csrf: &'a str,
    /// One message above the form.
    pub(super) message: Option<&'a str>,
}

/// `GET /login`, and the form again after a failure.
pub(super) fn login(form: &LoginForm<'_>) -> String {
    let mut html = head("Sign in");
    if let Some(message) = form.message {
        html.element("p", &[("class", "error"), ("role", "alert")], message);
    }
    html.open(
        "form",
        &[("method", "post"), ("action", "/login"), ("novalidate", "")],
    );
    hidden(&mut html, "csrf", form.csrf);
    if let Some(rd) = form.rd {
        hidden(&mut html, "rd", rd);
    }
    html.element("label", &[("for", "email")], "Email")
        .open(
            "input",
            &[
                ("id", "email"),
                ("name", "email"),
                ("type", "email"),
                ("autocomplete", "username"),
                ("required", ""),
                ("autofocus", ""),
                ("value", form.email),
            ],
        )
        .element("label", &[("for", "password")], "Password")
        .open(
            "input",
            &[
                ("id", "password"),
                ("name", "password"),
                ("type", "password"),
                ("autocomplete", "current-password"),
                ("required", ""),
            ],
        )
        .element("button", &[("type", "submit")], "Sign in")
        .close("form");
    foot(html)
}

/// `GET /`: who is signed in, and a sign-out button.
pub(super) fn home(email: &str, roles: &[String], csrf: &str) -> String {
    let mut html = head("Signed in");
    html.open("dl", &[])
        .element("dt", &[], "Email")
        .element("dd", &[], email)
        .element("dt", &[], "Roles")
        .element(
            "dd",
            &[],
            &if roles.is_empty() {
                "none".to_owned()
            } else {
                roles.join(", ")
            },
        )
        .close("dl");
    html.open("form", &[("method", "post"), ("action", "/logout")]);
    hidden(&mut html, "csrf", csrf);
    html.element("button", &[("type", "submit")], "Sign out")
        .close("form");
    foot(html)
}

/// `GET /` with no session: a link to the form.
pub(super) fn signed_out() -> String {
    let mut html = head("Not signed in");
    html.open("p", &[])
        .element("a", &[("href", "/login")], "Sign in")
        .close("p");
    foot(html)
}

/// A short message with an optional link, for errors and refusals.
pub(super) fn message(title: &str, text: &str, link: Option<(&str, &str)>) -> String {
    let mut html = head(title);
    html.element("p", &[], text);
    if let Some((href, label)) = link {
        html.open("p", &[])
            .element("a", &[("href", href)], label)
            .close("p");
    }
    foot(html)
}

/// The answer for a page: `status`, the HTML, the CSP, no framing, and no referrer to other
/// origins.
///
/// `same-origin`, not `no-referrer`: under `no-referrer` a browser sends `Origin: null` with
/// a form post (Fetch, "serializing a request origin"), and the forms' CSRF check then
/// cannot tell latchd's own form from a forged one. The sign-in page's URL (with its `rd`)
/// still never reaches another site.
pub(super) fn page(status: StatusCode, html: String, site: &Site) -> Response<Body> {
    let mut response = respond::empty(status);
    *response.body_mut() = Body::new(hyper::body::Bytes::from(html));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(policy) = HeaderValue::from_str(&csp(site)) {
        headers.insert("content-security-policy", policy);
    }
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    response
}

/// A page answered with `Retry-After`.
pub(super) fn page_retry_after(
    status: StatusCode,
    html: String,
    site: &Site,
    secs: u64,
) -> Response<Body> {
    let mut response = page(status, html, site);
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(secs));
    response
}

/// The Content-Security-Policy of every page: nothing but the page's own stylesheet (by its
/// hash) and forms posted to latchd itself. A form's answer may redirect to a signed-in app,
/// which CSP 3 checks against `form-action` too, so the cookie domain is allowed there as well
/// (a sign-in only ever redirects inside it, see [`Site::safe_redirect`]).
pub(super) fn csp(site: &Site) -> String {
    let mut form_action = "'self'".to_owned();
    if let Some(domain) = site.redirect_domain() {
        let schemes: &[&str] = if site.secure {
            &["https"]
        } else {
            &["https", "http"]
        };
        // `:*`: a source without a port matches only the scheme's default one, and an app
        // may well listen on another.
        for scheme in schemes {
            let _ = write!(
                form_action,
                " {scheme}://{domain}:* {scheme}://*.{domain}:*"
            );
        }
    }
    format!(
        "default-src 'none'; style-src '{}'; img-src 'self' data:; form-action {form_action}; \
         frame-ancestors 'none'; base-uri 'none'",
        style_hash()
    )
}

/// `sha256-<base64>` of [`STYLE`], as CSP source expressions write it.
fn style_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        use base64::Engine as _;
        let digest = ring::digest::digest(&ring::digest::SHA256, STYLE.as_bytes());
        format!(
            "sha256-{}",
            base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
        )
    })
}

fn head(title: &str) -> Html {
    let mut html = Html::new();
    html.open("html", &[("lang", "en")])
        .open("head", &[])
        .open("meta", &[("charset", "utf-8")])
        .open(
            "meta",
            &[
                ("name", "viewport"),
                ("content", "width=device-width, initial-scale=1"),
            ],
        )
        .open("meta", &[("name", "robots"), ("content", "noindex")])
        .element("title", &[], &format!("{title} · latchd"))
        .open("style", &[])
        .markup(STYLE)
        .close("style")
        .close("head")
        .open("body", &[])
        .open("main", &[])
        .element("p", &[("class", "brand")], "latchd")
        .element("h1", &[], title);
    html
}

fn foot(mut html: Html) -> String {
    html.close("main").close("body").close("html");
    html.finish()
}

fn hidden(html: &mut Html, name: &'static str, value: &str) {
    html.open(
        "input",
        &[("type", "hidden"), ("name", name), ("value", value)],
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::site::PublicUrl;

    fn site() -> Site {
        Site::new(
            Some(PublicUrl::parse("https://auth.example.test").unwrap()),
            Some("example.test"),
            true,
        )
        .unwrap()
    }

    #[test]
    fn the_policy_allows_only_the_stylesheet_and_own_forms() {
        let policy = csp(&site());
        for part in [
            "default-src 'none'",
            "frame-ancestors 'none'",
            "form-action 'self' https://example.test:* https://*.example.test:*;",
            "base-uri 'none'",
        ] {
            assert!(policy.contains(part), "{policy}");
        }
        assert!(!policy.contains("unsafe"), "{policy}");
        assert!(!policy.contains("http://"), "{policy}");
        // The hash is of the stylesheet the pages carry.
        let page = login(&LoginForm {
            email: "",
            rd: None,
            csrf: "t",
            message: None,
        });
        assert!(page.contains(&format!("<style>{STYLE}</style>")));
        assert!(policy.contains(style_hash()));
        assert!(style_hash().starts_with("sha256-") && style_hash().len() == 51);
        // Without a cookie domain or public URL, forms go to latchd alone.
        assert!(csp(&Site::default()).contains("form-action 'self';"));
    }

    #[test]
    fn the_login_form_is_labelled_and_carries_its_tokens() {
        let page = login(&LoginForm {
            email: "a\"<b>@example.test",
            rd: Some("https://app.example.test/?a=1&b=\"2\""),
            csrf: "TOKEN",
            message: Some("Wrong email or password."),
        });
        for part in [
            "<label for=\"email\">Email</label>",
            "autocomplete=\"username\"",
            "<label for=\"password\">Password</label>",
            "autocomplete=\"current-password\"",
            "name=\"csrf\" value=\"TOKEN\"",
            "name=\"rd\" value=\"https://app.example.test/?a=1&amp;b=&quot;2&quot;\"",
            "value=\"a&quot;&lt;b&gt;@example.test\"",
            "role=\"alert\">Wrong email or password.</p>",
            "action=\"/login\"",
            "<meta name=\"viewport\"",
        ] {
            assert!(page.contains(part), "{part} missing from\n{page}");
        }
        assert!(!page.contains("<script"), "no JavaScript");
        assert!(!page.contains("http://"), "no third-party resources");
    }

    #[test]
    fn home_escapes_the_email_and_lists_roles() {
        let page = home(
            "<x>@example.test",
            &["admin".to_owned(), "ops".to_owned()],
            "T",
        );
        assert!(page.contains("&lt;x&gt;@example.test"));
        assert!(page.contains("admin, ops"));
        assert!(page.contains("action=\"/logout\""));
        assert!(home("a@example.test", &[], "T").contains(">none<"));
    }
}
