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
use super::qr::QrSvg;
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
margin:0 0 14px}\
h2{font-size:1.05rem;margin:24px 0 4px}\
.qr svg{display:block;width:100%;max-width:232px;height:auto;margin:0 auto}\
.secret{font-family:ui-monospace,monospace;letter-spacing:.05em;margin:0 0 8px}\
.codes{font-family:ui-monospace,monospace;columns:2;padding-left:20px}";

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

/// The code step of a sign-in (`POST /login` for an account with TOTP on, and
/// `POST /login/totp` after a wrong code).
pub(super) fn code_form(rd: Option<&str>, csrf: &str, message: Option<&str>) -> String {
    let mut html = head("Enter your code");
    if let Some(message) = message {
        html.element("p", &[("class", "error"), ("role", "alert")], message);
    }
    html.element(
        "p",
        &[("class", "sub")],
        "Open your authenticator app and enter the 6-digit code for latchd, or one of your \
         recovery codes.",
    );
    html.open(
        "form",
        &[
            ("method", "post"),
            ("action", "/login/totp"),
            ("novalidate", ""),
        ],
    );
    hidden(&mut html, "csrf", csrf);
    if let Some(rd) = rd {
        hidden(&mut html, "rd", rd);
    }
    code_field(&mut html, Focus::Here);
    html.element("button", &[("type", "submit")], "Continue")
        .close("form");
    html.open("p", &[])
        .element("a", &[("href", "/login")], "Start over")
        .close("p");
    foot(html)
}

/// What `/` shows of the signed-in user's second factor.
pub(super) enum TotpView<'a> {
    /// Off: a form to turn it on.
    Off,
    /// Enrolled, waiting for a first code: the QR code, the secret, and the code form.
    Pending {
        /// The secret as base32, for typing in.
        secret: &'a str,
        /// The `otpauth://` URI as a QR code, when it fits one.
        qr: Option<&'a QrSvg>,
    },
    /// On: how many recovery codes are left, and a form to turn it off.
    On {
        /// Unused recovery codes.
        recovery_left: usize,
    },
}

/// `GET /`: who is signed in, their second factor, and a sign-out button.
pub(super) struct Home<'a> {
    /// The user's email.
    pub(super) email: &'a str,
    /// The user's roles.
    pub(super) roles: &'a [String],
    /// The browser's CSRF token.
    pub(super) csrf: &'a str,
    /// The second factor.
    pub(super) totp: TotpView<'a>,
    /// One message about the last form, above the second factor.
    pub(super) message: Option<&'a str>,
}

/// `GET /`, and `/` again after a second-factor form.
pub(super) fn home(page: &Home<'_>) -> String {
    let mut html = head("Signed in");
    html.open("dl", &[])
        .element("dt", &[], "Email")
        .element("dd", &[], page.email)
        .element("dt", &[], "Roles")
        .element(
            "dd",
            &[],
            &if page.roles.is_empty() {
                "none".to_owned()
            } else {
                page.roles.join(", ")
            },
        )
        .close("dl");
    html.element("h2", &[], "Two-step verification");
    if let Some(message) = page.message {
        html.element("p", &[("class", "error"), ("role", "alert")], message);
    }
    match &page.totp {
        TotpView::Off => {
            html.element(
                "p",
                &[("class", "sub")],
                "Off. Turn it on to ask for a code from an authenticator app at every \
                 sign-in.",
            );
            html.open("form", &[("method", "post"), ("action", "/totp")]);
            hidden(&mut html, "csrf", page.csrf);
            password_field(&mut html);
            html.element("button", &[("type", "submit")], "Turn on")
                .close("form");
        }
        TotpView::Pending { secret, qr } => {
            html.element(
                "p",
                &[("class", "sub")],
                "Scan this code with your authenticator app, or type the key in, then enter \
                 the 6-digit code it shows.",
            );
            if let Some(qr) = qr {
                html.open("p", &[("class", "qr")]).qr(qr).close("p");
            }
            // In groups of four, as authenticator apps take it typed (spaces are ignored).
            let grouped: Vec<String> = secret
                .as_bytes()
                .chunks(4)
                .map(|group| String::from_utf8_lossy(group).into_owned())
                .collect();
            html.element("p", &[("class", "sub")], "Or type this key:")
                .element("p", &[("class", "secret")], &grouped.join(" "));
            html.open("form", &[("method", "post"), ("action", "/totp/confirm")]);
            hidden(&mut html, "csrf", page.csrf);
            code_field(&mut html, Focus::Elsewhere);
            html.element("button", &[("type", "submit")], "Confirm")
                .close("form");
        }
        TotpView::On { recovery_left } => {
            html.element(
                "p",
                &[("class", "sub")],
                &format!("On. {recovery_left} of 10 recovery codes left."),
            );
            html.open("form", &[("method", "post"), ("action", "/totp/disable")]);
            hidden(&mut html, "csrf", page.csrf);
            password_field(&mut html);
            code_field(&mut html, Focus::Elsewhere);
            html.element(
                "button",
                &[("type", "submit"), ("class", "plain")],
                "Turn off",
            )
            .close("form");
        }
    }
    html.open("form", &[("method", "post"), ("action", "/logout")]);
    hidden(&mut html, "csrf", page.csrf);
    html.element("button", &[("type", "submit")], "Sign out")
        .close("form");
    foot(html)
}

/// The recovery codes, right after TOTP was turned on: shown this once.
pub(super) fn recovery_codes(codes: &[&str]) -> String {
    let mut html = head("Two-step verification is on");
    html.element(
        "p",
        &[("class", "sub")],
        "Keep these recovery codes somewhere safe. Each signs you in once without your \
         phone. They are shown only now.",
    );
    html.open("ul", &[("class", "codes")]);
    for code in codes {
        html.element("li", &[], code);
    }
    html.close("ul");
    html.open("p", &[])
        .element("a", &[("href", "/")], "Done")
        .close("p");
    foot(html)
}

fn password_field(html: &mut Html) {
    html.element("label", &[("for", "current_password")], "Password")
        .open(
            "input",
            &[
                ("id", "current_password"),
                ("name", "current_password"),
                ("type", "password"),
                ("autocomplete", "current-password"),
                ("required", ""),
            ],
        );
}

/// Whether a field takes the focus when the page loads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Focus {
    Here,
    Elsewhere,
}

/// The field for a TOTP or recovery code: text (recovery codes have letters), with the
/// `one-time-code` hint that lets phones offer a code they were sent.
fn code_field(html: &mut Html, focus: Focus) {
    let mut attrs = vec![
        ("id", "code"),
        ("name", "code"),
        ("type", "text"),
        ("autocomplete", "one-time-code"),
        ("autocapitalize", "none"),
        ("spellcheck", "false"),
        ("required", ""),
    ];
    if focus == Focus::Here {
        attrs.push(("autofocus", ""));
    }
    html.element("label", &[("for", "code")], "Code")
        .open("input", &attrs);
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

    fn home_of<'a>(email: &'a str, roles: &'a [String], totp: TotpView<'a>) -> String {
        home(&Home {
            email,
            roles,
            csrf: "T",
            totp,
            message: None,
        })
    }

    #[test]
    fn home_escapes_the_email_and_lists_roles() {
        let roles = ["admin".to_owned(), "ops".to_owned()];
        let page = home_of("<x>@example.test", &roles, TotpView::Off);
        assert!(page.contains("&lt;x&gt;@example.test"));
        assert!(page.contains("admin, ops"));
        assert!(page.contains("action=\"/logout\""));
        assert!(home_of("a@example.test", &[], TotpView::Off).contains(">none<"));
    }

    #[test]
    fn home_offers_what_the_second_factor_allows() {
        let off = home_of("a@example.test", &[], TotpView::Off);
        assert!(off.contains("action=\"/totp\""), "{off}");
        assert!(off.contains("autocomplete=\"current-password\""));
        let qr = crate::http::qr::svg("otpauth://totp/x", "QR").unwrap();
        let pending = home_of(
            "a@example.test",
            &[],
            TotpView::Pending {
                secret: "ABC<DEF",
                qr: Some(&qr),
            },
        );
        assert!(pending.contains("action=\"/totp/confirm\""));
        assert!(pending.contains("<svg "), "the QR code is inline");
        assert!(
            pending.contains("ABC&lt; DEF"),
            "the key is escaped, in groups of four"
        );
        assert!(pending.contains("autocomplete=\"one-time-code\""));
        let on = home_of("a@example.test", &[], TotpView::On { recovery_left: 7 });
        assert!(on.contains("action=\"/totp/disable\""));
        assert!(on.contains("7 of 10 recovery codes left"));
        for page in [off, pending, on] {
            assert!(page.contains("action=\"/logout\""));
            assert!(!page.contains("<script"));
        }
    }
}
