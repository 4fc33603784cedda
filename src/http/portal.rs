//! The sign-in pages' handlers: `GET/POST /login`, `POST /login/totp`, `GET /`, the second
//! factor's forms on `/` (`POST /totp`, `/totp/confirm`, `/totp/disable`) and `POST /logout`.
//! A browser session is a session like any other (auth opens and ends it); this module only
//! turns forms into use cases and answers into pages and cookies.
//!
//! Every form POST passes [`form_allowed`] first: the browser's CSRF token, bound to its nonce
//! cookie, and the `Origin` / `Sec-Fetch-Site` check. A redirect target (`rd`) is checked by
//! [`Site::safe_redirect`](super::site::Site::safe_redirect) when the form is shown, and again
//! when the sign-in succeeds. Between a sign-in's password and its code, the `mfa_token` rides
//! in a host-only `HttpOnly; SameSite=Strict` cookie of its own, never in the page.

use std::sync::Arc;

use hyper::header::SET_COOKIE;
use hyper::{HeaderMap, Response, StatusCode};

use super::error::ApiError;
use super::extract;
use super::handlers::Ctx;
use super::pages::{self, Home, LoginForm, TotpView};
use super::qr;
use super::respond::{self, Body, PageCookie, SESSION_COOKIE};
use super::routes::Answer;
use super::App;
use crate::auth::{AuthError, Identity, Opaque, RecoveryCode, SignIn, TotpStatus, MFA_TOKEN_SECS};
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

/// `POST /login`: signs in and goes on to `rd` (when safe) or `/`, or on to the code step for
/// an account with TOTP on; on failure, the form again with one message for every cause.
pub(super) async fn sign_in(cx: Ctx) -> Answer {
    let form = match Form::read(cx).await? {
        Ok(form) => form,
        Err(refused) => return Ok(refused),
    };
    let app = &form.app;
    let (email, password) = (form.field("email"), form.field("password"));
    let rd = form.rd();
    let csrf = app.auth.form_token(&form.nonce);
    let again = |message: &str| {
        pages::login(&LoginForm {
            email,
            rd,
            csrf: &csrf,
            message: Some(message),
        })
    };
    let signed = app.auth.sign_in(
        email,
        password,
        form.client,
        extract::user_agent(&form.headers),
        UnixTime::now(),
    );
    match signed.await {
        Ok(SignIn::Done((cookie, _))) => form.signed_in(&cookie, rd).await,
        Ok(SignIn::CodeNeeded(token)) => {
            let html = pages::code_form(rd, &csrf, None);
            let mut response = pages::page(StatusCode::OK, html, &app.settings.site);
            set_cookie(
                &mut response,
                PageCookie::Mfa.set(token.as_str(), Some(MFA_TOKEN_SECS), secure(app)),
            );
            Ok(response)
        }
        // The same words for an unknown email, a wrong password and a disabled account.
        Err(AuthError::BadCredentials) => Ok(page(app, again("Wrong email or password."))),
        Err(e) => busy_or(app, e, again),
    }
}

/// `POST /login/totp`: the code step; on success as `POST /login`.
pub(super) async fn sign_in_code(cx: Ctx) -> Answer {
    let form = match Form::read(cx).await? {
        Ok(form) => form,
        Err(refused) => return Ok(refused),
    };
    let app = &form.app;
    let rd = form.rd();
    let csrf = app.auth.form_token(&form.nonce);
    let start_over = |message: &str| {
        let html = pages::login(&LoginForm {
            email: "",
            rd,
            csrf: &csrf,
            message: Some(message),
        });
        let mut response = page(app, html);
        set_cookie(&mut response, PageCookie::Mfa.set("", Some(0), secure(app)));
        response
    };
    let token = extract::cookie(&form.headers, PageCookie::Mfa.name(secure(app)))?;
    let Some(token) = token.map(str::to_owned) else {
        return Ok(start_over("Your sign-in expired. Sign in again."));
    };
    let again = |message: &str| pages::code_form(rd, &csrf, Some(message));
    let code = form.field("code");
    match app
        .auth
        .sign_in_code(
            &token,
            code,
            form.client,
            extract::user_agent(&form.headers),
            UnixTime::now(),
        )
        .await
    {
        Ok((cookie, _)) => {
            let mut response = form.signed_in(&cookie, rd).await?;
            set_cookie(&mut response, PageCookie::Mfa.set("", Some(0), secure(app)));
            Ok(response)
        }
        Err(AuthError::InvalidCode) => Ok(page(app, again("Wrong code. Try again."))),
        Err(AuthError::InvalidMfaToken) => Ok(start_over(
            "That sign-in expired or had too many wrong codes. Sign in again.",
        )),
        Err(e) => busy_or(app, e, again),
    }
}

/// `GET /`: who is signed in and their second factor, or the way to the form.
pub(super) async fn home(cx: Ctx) -> Answer {
    let site = &cx.app.settings.site;
    let Some(identity) = signed_in(&cx) else {
        return Ok(pages::page(StatusCode::OK, pages::signed_out(), site));
    };
    let nonce = Nonce::of(&cx)?;
    let mut response = home_page(&cx.app, &identity, &nonce.value, None).await?;
    nonce.set_if_new(&mut response, &cx.app);
    Ok(response)
}

/// `POST /totp`: starts an enrolment (the password again), then back to `/`, which shows the
/// QR code.
pub(super) async fn totp_begin(cx: Ctx) -> Answer {
    let (form, identity) = match Form::read_signed_in(cx).await? {
        Ok(both) => both,
        Err(answer) => return Ok(answer),
    };
    let begun = form.app.auth.begin_totp(
        identity.user,
        identity.session,
        form.field("current_password"),
        form.client,
        UnixTime::now(),
    );
    match begun.await {
        Ok(_) => Ok(respond::see_other("/")),
        Err(e) => form.home_again(&identity, e).await,
    }
}

/// `POST /totp/confirm`: TOTP on with a first code; the recovery codes, this once.
pub(super) async fn totp_confirm(cx: Ctx) -> Answer {
    let (form, identity) = match Form::read_signed_in(cx).await? {
        Ok(both) => both,
        Err(answer) => return Ok(answer),
    };
    let confirmed = form.app.auth.confirm_totp(
        identity.user,
        identity.session,
        form.field("code"),
        form.client,
        UnixTime::now(),
    );
    match confirmed.await {
        Ok(codes) => {
            let codes: Vec<&str> = codes.iter().map(RecoveryCode::as_str).collect();
            Ok(page(&form.app, pages::recovery_codes(&codes)))
        }
        Err(e) => form.home_again(&identity, e).await,
    }
}

/// `POST /totp/disable`: TOTP off with the password and a code, then back to `/`.
pub(super) async fn totp_disable(cx: Ctx) -> Answer {
    let (form, identity) = match Form::read_signed_in(cx).await? {
        Ok(both) => both,
        Err(answer) => return Ok(answer),
    };
    let disabled = form.app.auth.disable_totp(
        identity.user,
        form.field("current_password"),
        form.field("code"),
        form.client,
        UnixTime::now(),
    );
    match disabled.await {
        Ok(()) => Ok(respond::see_other("/")),
        Err(e) => form.home_again(&identity, e).await,
    }
}

/// `POST /logout`: ends the browser session on disk, clears the cookie, back to the form.
pub(super) async fn sign_out(cx: Ctx) -> Answer {
    let form = match Form::read(cx).await? {
        Ok(form) => form,
        Err(refused) => return Ok(refused),
    };
    if let Some(cookie) = extract::cookie(&form.headers, SESSION_COOKIE)? {
        form.app
            .auth
            .sign_out(cookie, form.client, UnixTime::now())
            .await?;
    }
    let mut response = respond::see_other("/login");
    set_cookie(
        &mut response,
        respond::session_cookie("", 0, &form.app.settings),
    );
    Ok(response)
}

/// A form POST that passed the CSRF check.
struct Form {
    app: Arc<App>,
    headers: HeaderMap,
    client: std::net::IpAddr,
    nonce: String,
    fields: Vec<(String, String)>,
}

impl Form {
    /// The form of `cx`, or the 403 page when it is not the browser's own.
    async fn read(cx: Ctx) -> Result<Result<Self, Response<Body>>, ApiError> {
        let app = Arc::clone(&cx.app);
        let client = cx.client()?;
        let headers = cx.req.headers().clone();
        let Some(nonce) =
            extract::cookie(&headers, PageCookie::Csrf.name(secure(&app)))?.map(str::to_owned)
        else {
            return Ok(Err(refused(&app)));
        };
        let fields = extract::form(cx.req).await?;
        if !form_allowed(&headers, &app, &nonce, extract::field(&fields, "csrf")) {
            return Ok(Err(refused(&app)));
        }
        Ok(Ok(Self {
            app,
            headers,
            client,
            nonce,
            fields,
        }))
    }

    /// As [`Form::read`], from a browser with a live session; without one, a 303 to the form.
    async fn read_signed_in(cx: Ctx) -> Result<Result<(Self, Identity), Response<Body>>, ApiError> {
        let identity = signed_in(&cx);
        let form = match Self::read(cx).await? {
            Ok(form) => form,
            Err(refused) => return Ok(Err(refused)),
        };
        Ok(match identity {
            Some(identity) => Ok((form, identity)),
            None => Err(respond::see_other("/login")),
        })
    }

    /// The value of field `name`, or "".
    fn field(&self, name: &str) -> &str {
        extract::field(&self.fields, name).unwrap_or_default()
    }

    /// The form's `rd`, if it is safe.
    fn rd(&self) -> Option<&str> {
        extract::field(&self.fields, "rd").and_then(|rd| self.app.settings.site.safe_redirect(rd))
    }

    /// The answer to a sign-in that opened the session of `cookie`: the cookie set, on to
    /// `rd` or `/`. A session this browser held before (another account, or the same one)
    /// ends: one browser, one session.
    async fn signed_in(&self, cookie: &Opaque, rd: Option<&str>) -> Answer {
        if let Some(old) = extract::cookie(&self.headers, SESSION_COOKIE)? {
            self.app
                .auth
                .sign_out(old, self.client, UnixTime::now())
                .await?;
        }
        let mut response = respond::see_other(rd.unwrap_or("/"));
        let max_age = self.app.settings.session_max_secs;
        set_cookie(
            &mut response,
            respond::session_cookie(cookie.as_str(), max_age, &self.app.settings),
        );
        Ok(response)
    }

    /// `/` again, saying why a second-factor form did nothing.
    async fn home_again(&self, identity: &Identity, err: AuthError) -> Answer {
        let message = match err {
            AuthError::WrongPassword => "Wrong password.",
            AuthError::InvalidCode => "Wrong code. Try again with the current one.",
            AuthError::TotpOn => "Two-step verification is already on.",
            AuthError::TotpOff => "Two-step verification is already off.",
            AuthError::NoPendingTotp => "Start again: turn two-step verification on first.",
            AuthError::RateLimited { retry_after_secs } => {
                let html = pages::message(
                    "Too many attempts",
                    &format!("Try again in {retry_after_secs} seconds."),
                    Some(("/", "Back")),
                );
                return Ok(pages::page_retry_after(
                    StatusCode::TOO_MANY_REQUESTS,
                    html,
                    &self.app.settings.site,
                    retry_after_secs,
                ));
            }
            other => return Err(other.into()),
        };
        home_page(&self.app, identity, &self.nonce, Some(message)).await
    }
}

/// `/` for `identity`, with the forms of where its second factor stands.
async fn home_page(app: &App, identity: &Identity, nonce: &str, message: Option<&str>) -> Answer {
    let status = app
        .auth
        .totp_status(identity.user, identity.session, UnixTime::now())
        .await?;
    let qr = match &status {
        TotpStatus::Pending(e) => qr::svg(&e.otpauth_uri, "QR code for your authenticator app"),
        TotpStatus::Off | TotpStatus::On { .. } => None,
    };
    let totp = match &status {
        TotpStatus::Off => TotpView::Off,
        TotpStatus::Pending(e) => TotpView::Pending {
            secret: &e.secret,
            qr: qr.as_ref(),
        },
        TotpStatus::On { recovery_left } => TotpView::On {
            recovery_left: *recovery_left,
        },
    };
    let html = pages::home(&Home {
        email: &identity.email,
        roles: &identity.roles,
        csrf: &app.auth.form_token(nonce),
        totp,
        message,
    });
    Ok(page(app, html))
}

/// The page for a refusal every form shares (the limiter, a saturated hashing pool), with
/// `again` for its message; any other error is the caller's.
fn busy_or(app: &App, err: AuthError, again: impl Fn(&str) -> String) -> Answer {
    let site = &app.settings.site;
    match err {
        AuthError::RateLimited { retry_after_secs } => Ok(pages::page_retry_after(
            StatusCode::TOO_MANY_REQUESTS,
            again(&format!(
                "Too many attempts. Try again in {retry_after_secs} seconds."
            )),
            site,
            retry_after_secs,
        )),
        AuthError::Busy => Ok(pages::page_retry_after(
            StatusCode::SERVICE_UNAVAILABLE,
            again("The server is busy. Try again in a moment."),
            site,
            1,
        )),
        e => Err(e.into()),
    }
}

/// A 200 page.
fn page(app: &App, html: String) -> Response<Body> {
    pages::page(StatusCode::OK, html, &app.settings.site)
}

fn secure(app: &App) -> bool {
    app.settings.cookie_secure
}

fn set_cookie(response: &mut Response<Body>, value: Option<hyper::header::HeaderValue>) {
    if let Some(value) = value {
        response.headers_mut().append(SET_COOKIE, value);
    }
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
fn signed_in(cx: &Ctx) -> Option<Identity> {
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
        let name = PageCookie::Csrf.name(secure(&cx.app));
        let presented = extract::cookie(cx.req.headers(), name)?;
        let (value, new) = cx.app.auth.form_nonce(presented)?;
        Ok(Self { value, new })
    }

    fn set_if_new(&self, response: &mut Response<Body>, app: &App) {
        if self.new {
            set_cookie(
                response,
                PageCookie::Csrf.set(&self.value, None, secure(app)),
            );
        }
    }
}
