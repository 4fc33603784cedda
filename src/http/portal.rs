//! The sign-in pages' handlers: `GET/POST /login`, `GET /`, `POST /logout`. A browser
//! session is a session like any other (auth opens and ends it); this module only turns forms
//! into use cases and answers into pages and cookies.
//!
//! Every form POST passes [`form_allowed`] first: the browser's CSRF token, bound to its nonce
//! cookie, and the `Origin` / `Sec-Fetch-Site` check. A redirect target (`rd`) is checked by
//! [`Site::safe_redirect`](super::site::Site::safe_redirect) when the form is shown and again
//! when the sign-in succeeds.

use hyper::header::SET_COOKIE;
use hyper::{HeaderMap, Response, StatusCode};

use super::error::ApiError;
use super::extract;
use super::handlers::Ctx;
use super::pages::{self, LoginForm};
use super::respond::{self, Body, SESSION_COOKIE};
use super::routes::Answer;
use super::App;
use crate::auth::AuthError;
use crate::time::UnixTime;

/// `GET /login?rd=<url>`: the form; a browser already signed in goes on at once.
pub(super) async fn login_form(cx: Ctx) -> Answer {
    let query = extract::form_pairs(cx.req.uri().query().unwrap_or_default())
        .map_err(|_| ApiError::invalid_request("malformed query"))?;
    let site = &cx.app.settings.site;
    let rd = extract::field(&query, "rd").and_then(|rd| site.safe_redirect(rd));
    if signed_in(&cx).is_some() {
        return Ok(respond::see_other(rd.unwrap_or("/")));
    }
    let nonce = Nonce::of(&cx)?;
    let html = pages::login(&LoginForm {
        email: "",
        rd,
        csrf: &cx.app.auth.form_token(&nonce.value),
        message: None,
    });
    let mut response = pages::page(StatusCode::OK, html, site);
    nonce.set_if_new(&mut response, &cx.app);
    Ok(response)
}

/// `POST /login`: signs in and goes on to `rd` (when safe) or `/`; on failure, the form again
/// with one message for every cause.
pub(super) async fn sign_in(cx: Ctx) -> Answer {
    let app = std::sync::Arc::clone(&cx.app);
    let site = &app.settings.site;
    let client = cx.client()?;
    let headers = cx.req.headers().clone();
    let Some(nonce) = extract::cookie(
        &headers,
        respond::csrf_cookie_name(app.settings.cookie_secure),
    )?
    .map(str::to_owned) else {
        return Ok(refused(&app));
    };
    let fields = extract::form(cx.req).await?;
    if !form_allowed(&headers, &app, &nonce, extract::field(&fields, "csrf")) {
        return Ok(refused(&app));
    }
    let field = |name| extract::field(&fields, name).unwrap_or_default();
    let (email, password) = (field("email"), field("password"));
    let rd = extract::field(&fields, "rd").and_then(|rd| site.safe_redirect(rd));
    let form = |message| {
        pages::login(&LoginForm {
            email,
            rd,
            csrf: &app.auth.form_token(&nonce),
            message: Some(message),
        })
    };
    match app
        .auth
        .sign_in(email, password, client, UnixTime::now())
        .await
    {
        Ok((cookie, _)) => {
            // A session this browser held before (another account, or the same one) ends:
            // one browser, one session.
            if let Some(old) = extract::cookie(&headers, SESSION_COOKIE)? {
                app.auth.sign_out(old, UnixTime::now()).await?;
            }
            let mut response = respond::see_other(rd.unwrap_or("/"));
            let max_age = app.settings.session_max_secs;
            if let Some(value) = respond::session_cookie(cookie.as_str(), max_age, &app.settings) {
                response.headers_mut().append(SET_COOKIE, value);
            }
            Ok(response)
        }
        // The same words for an unknown email, a wrong password and a disabled account.
        Err(AuthError::BadCredentials) => Ok(pages::page(
            StatusCode::OK,
            form("Wrong email or password."),
            site,
        )),
        Err(AuthError::RateLimited { retry_after_secs }) => Ok(pages::page_retry_after(
            StatusCode::TOO_MANY_REQUESTS,
            form(&format!(
                "Too many attempts. Try again in {retry_after_secs} seconds."
            )),
            site,
            retry_after_secs,
        )),
        Err(AuthError::Busy) => Ok(pages::page_retry_after(
            StatusCode::SERVICE_UNAVAILABLE,
            form("The server is busy. Try again in a moment."),
            site,
            1,
        )),
        Err(e) => Err(e.into()),
    }
}

/// `GET /`: who is signed in, or the way to the form.
pub(super) async fn home(cx: Ctx) -> Answer {
    let site = &cx.app.settings.site;
    let Some(identity) = signed_in(&cx) else {
        return Ok(pages::page(StatusCode::OK, pages::signed_out(), site));
    };
    let nonce = Nonce::of(&cx)?;
    let html = pages::home(
        &identity.email,
        &identity.roles,
        &cx.app.auth.form_token(&nonce.value),
    );
    let mut response = pages::page(StatusCode::OK, html, site);
    nonce.set_if_new(&mut response, &cx.app);
    Ok(response)
}

/// `POST /logout`: ends the browser session on disk, clears the cookie, back to the form.
pub(super) async fn sign_out(cx: Ctx) -> Answer {
    let app = std::sync::Arc::clone(&cx.app);
    let headers = cx.req.headers().clone();
    let nonce = extract::cookie(
        &headers,
        respond::csrf_cookie_name(app.settings.cookie_secure),
    )?
    .map(str::to_owned);
    let fields = extract::form(cx.req).await?;
    let allowed = nonce
        .as_deref()
        .is_some_and(|n| form_allowed(&headers, &app, n, extract::field(&fields, "csrf")));
    if !allowed {
        return Ok(refused(&app));
    }
    if let Some(cookie) = extract::cookie(&headers, SESSION_COOKIE)? {
        app.auth.sign_out(cookie, UnixTime::now()).await?;
    }
    let mut response = respond::see_other("/login");
    if let Some(value) = respond::session_cookie("", 0, &app.settings) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    Ok(response)
}

/// Whether a form POST is the browser's own: from latchd's origin, carrying the CSRF token of
/// the nonce in its cookie.
fn form_allowed(headers: &HeaderMap, app: &App, nonce: &str, token: Option<&str>) -> bool {
    let own = app
        .settings
        .site
        .public_url
        .as_ref()
        .map(super::site::PublicUrl::origin);
    extract::form_origin_ok(headers, own.as_deref())
        && token.is_some_and(|token| app.auth.form_token_valid(nonce, token))
}

/// 403: a form from elsewhere, or one whose token does not match this browser.
fn refused(app: &App) -> Response<Body> {
    let html = pages::message(
        "Form refused",
        "This form did not come from this site, or it has expired. Go back, reload the page \
         and try again.",
        Some(("/login", "Sign in")),
    );
    pages::page(StatusCode::FORBIDDEN, html, &app.settings.site)
}

/// The browser's live session, if its cookie names one.
fn signed_in(cx: &Ctx) -> Option<crate::auth::Identity> {
    let cookie = extract::cookie(cx.req.headers(), SESSION_COOKIE).ok()??;
    cx.app.auth.verify_browser(cookie, UnixTime::now()).ok()
}

/// The browser's CSRF nonce: the one its cookie holds, or a new one to set.
struct Nonce {
    value: String,
    new: bool,
}

impl Nonce {
    fn of(cx: &Ctx) -> Result<Self, ApiError> {
        let name = respond::csrf_cookie_name(cx.app.settings.cookie_secure);
        let presented = extract::cookie(cx.req.headers(), name)?;
        let (value, new) = cx.app.auth.form_nonce(presented)?;
        Ok(Self { value, new })
    }

    fn set_if_new(&self, response: &mut Response<Body>, app: &App) {
        if self.new {
            if let Some(value) = respond::csrf_cookie(&self.value, app.settings.cookie_secure) {
                response.headers_mut().append(SET_COOKIE, value);
            }
        }
    }
}
