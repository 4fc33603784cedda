//! Route handlers: extract, call the auth layer, respond. Authorization and every decision
//! about the outcome belong to auth; a handler only moves bytes in and out.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Deserialize;

use super::error::ApiError;
use super::extract;
use super::respond;
use super::routes::Answer;
use super::App;
use crate::auth::{Actor, Principal, RecoveryCode, SignIn};
use crate::metrics::metrics_allowed;
use crate::model::{FamilyId, UserId};
use crate::time::UnixTime;

/// A request on its way to a handler.
pub(super) struct Ctx {
    pub(super) req: Request<Incoming>,
    pub(super) app: Arc<App>,
    pub(super) peer: SocketAddr,
    /// The id of an `{id}` route: a user id, or a session id under `/v1/users/me/sessions`.
    pub(super) id: Option<UserId>,
}

impl Ctx {
    /// The client address, through trusted proxies only.
    pub(super) fn client(&self) -> Result<IpAddr, ApiError> {
        extract::client_ip(
            self.req.headers(),
            self.peer.ip(),
            &self.app.settings.trusted_proxies,
        )
    }

    /// The caller of a bearer route, with the address it called from (for the audit rows of
    /// an admin's actions; a route that needs the address for more asks [`Ctx::client`]).
    fn principal(&self) -> Result<Principal, ApiError> {
        let token = extract::bearer(self.req.headers())?;
        self.verified(token)
    }

    /// The caller, if the request carries a bearer token at all.
    fn optional_principal(&self) -> Result<Option<Principal>, ApiError> {
        match extract::bearer(self.req.headers()) {
            Ok(token) => self.verified(token).map(Some),
            Err(e) if e.is_no_credentials() => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn verified(&self, token: &str) -> Result<Principal, ApiError> {
        let mut principal = self
            .app
            .auth
            .verify_access(token.as_bytes(), UnixTime::now())?;
        principal.client = self.client().ok();
        Ok(principal)
    }

    /// The `{id}` of the route.
    fn id(&self) -> Result<UserId, ApiError> {
        self.id.ok_or_else(ApiError::not_found)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    email: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshBody {
    refresh_token: Option<String>,
}

/// A body that may only be `{}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoFields {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current_password: String,
    new_password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MfaCode {
    mfa_token: String,
    code: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CurrentPassword {
    current_password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Code {
    code: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordAndCode {
    current_password: String,
    code: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RolesBody {
    roles: Vec<String>,
}

#[allow(clippy::unnecessary_wraps)] // the signature of every route handler
pub(super) fn healthz(_: &Ctx) -> Answer {
    Ok(respond::empty(StatusCode::OK))
}

/// The OpenAPI 3.1 description committed at the repository root, served as it is.
pub(super) const OPENAPI_JSON: &str = include_str!("../../openapi.json");

/// `GET /openapi.json` (API.md v2): the committed description, byte for byte.
#[allow(clippy::unnecessary_wraps)] // the signature of every route handler
pub(super) fn openapi(_: &Ctx) -> Answer {
    Ok(respond::json_text(StatusCode::OK, OPENAPI_JSON))
}

pub(super) async fn register(cx: Ctx) -> Answer {
    let caller = cx.optional_principal()?;
    cx.app.auth.check_registration(caller.as_ref())?;
    let client = cx.client()?;
    let creds: Credentials = extract::json(cx.req).await?;
    let user = cx
        .app
        .auth
        .register(
            caller.as_ref(),
            &creds.email,
            &creds.password,
            client,
            UnixTime::now(),
        )
        .await?;
    Ok(respond::json(StatusCode::CREATED, &respond::user(&user)))
}

pub(super) async fn login(cx: Ctx) -> Answer {
    let client = cx.client()?;
    let user_agent = extract::user_agent(cx.req.headers()).map(str::to_owned);
    let creds: Credentials = extract::json(cx.req).await?;
    let signed = cx
        .app
        .auth
        .login(
            &creds.email,
            &creds.password,
            client,
            user_agent.as_deref(),
            UnixTime::now(),
        )
        .await?;
    match signed {
        SignIn::Done(pair) => Ok(respond::token_pair(&pair, &cx.app.settings)),
        SignIn::CodeNeeded(token) => Err(ApiError::mfa_required(token.as_str())),
    }
}

/// `POST /v1/auth/login/mfa`: the code step of a login whose account has TOTP on.
pub(super) async fn login_mfa(cx: Ctx) -> Answer {
    let client = cx.client()?;
    let user_agent = extract::user_agent(cx.req.headers()).map(str::to_owned);
    let body: MfaCode = extract::json(cx.req).await?;
    let pair = cx
        .app
        .auth
        .login_code(
            &body.mfa_token,
            &body.code,
            client,
            user_agent.as_deref(),
            UnixTime::now(),
        )
        .await?;
    Ok(respond::token_pair(&pair, &cx.app.settings))
}

/// `POST /v1/users/me/totp`: a pending enrolment.
pub(super) async fn totp_begin(cx: Ctx) -> Answer {
    let principal = cx.principal()?;
    let client = cx.client()?;
    let body: CurrentPassword = extract::json(cx.req).await?;
    let enrolment = cx
        .app
        .auth
        .begin_totp(
            principal.user,
            principal.family,
            &body.current_password,
            client,
            UnixTime::now(),
        )
        .await?;
    Ok(respond::json(
        StatusCode::OK,
        &serde_json::json!({
            "secret": enrolment.secret,
            "otpauth_uri": enrolment.otpauth_uri,
        }),
    ))
}

/// `POST /v1/users/me/totp/confirm`: TOTP on, and the recovery codes, once.
pub(super) async fn totp_confirm(cx: Ctx) -> Answer {
    let principal = cx.principal()?;
    let client = cx.client()?;
    let body: Code = extract::json(cx.req).await?;
    let codes = cx
        .app
        .auth
        .confirm_totp(
            principal.user,
            principal.family,
            &body.code,
            client,
            UnixTime::now(),
        )
        .await?;
    let codes: Vec<&str> = codes.iter().map(RecoveryCode::as_str).collect();
    Ok(respond::json(
        StatusCode::OK,
        &serde_json::json!({ "recovery_codes": codes }),
    ))
}

/// `DELETE /v1/users/me/totp`: TOTP off, with the password and a code.
pub(super) async fn totp_disable(cx: Ctx) -> Answer {
    let principal = cx.principal()?;
    let client = cx.client()?;
    let body: PasswordAndCode = extract::json(cx.req).await?;
    cx.app
        .auth
        .disable_totp(
            principal.user,
            &body.current_password,
            &body.code,
            client,
            UnixTime::now(),
        )
        .await?;
    Ok(respond::empty(StatusCode::NO_CONTENT))
}

pub(super) async fn refresh(cx: Ctx) -> Answer {
    let client = cx.client()?;
    let cookie = extract::refresh_cookie(cx.req.headers())?;
    let has_json = extract::is_json(cx.req.headers());
    let headers = cx.req.headers().clone();
    let bytes = extract::body(cx.req).await?;
    let from_body = match (has_json, bytes.is_empty()) {
        (_, true) => None,
        (true, false) => extract::parse_json::<RefreshBody>(&bytes)?.refresh_token,
        (false, false) => {
            return Err(ApiError::invalid_request(
                "content-type must be application/json",
            ))
        }
    };
    let token = match (from_body, cookie) {
        (Some(token), _) => token,
        (None, Some(token)) => {
            // Ambient authority: a browser attaches the cookie to whatever a page makes it send.
            extract::cookie_request_allowed(&headers, &cx.app.settings.cors_origins)?;
            token
        }
        (None, None) => {
            return Err(ApiError::invalid_request(
                "refresh_token is required, in the body or the cookie",
            ))
        }
    };
    let pair = cx.app.auth.refresh(&token, client, UnixTime::now()).await?;
    Ok(respond::token_pair(&pair, &cx.app.settings))
}

/// `POST /v1/auth/logout`: by the bearer token, or, without one, by the refresh cookie alone
/// under the rules of a cookie-authenticated request (API.md v2 "Hardening").
pub(super) async fn logout(cx: Ctx) -> Answer {
    match extract::bearer(cx.req.headers()) {
        Err(e) if e.is_no_credentials() => logout_by_cookie(cx).await,
        _ => {
            let principal = cx.principal()?;
            let client = cx.client()?;
            cx.app
                .auth
                .logout(&principal, client, UnixTime::now())
                .await?;
            Ok(respond::logged_out(&cx.app.settings))
        }
    }
}

async fn logout_by_cookie(cx: Ctx) -> Answer {
    let Some(token) = extract::refresh_cookie(cx.req.headers())? else {
        return Err(ApiError::no_credentials());
    };
    // Credentials first (a forged cookie is 401 whatever else is wrong), then the rules of
    // ambient authority, as for a refresh by the cookie: a page elsewhere must not end it.
    let family = cx.app.auth.refresh_session(&token)?;
    extract::cookie_request_allowed(cx.req.headers(), &cx.app.settings.cors_origins)?;
    let client = cx.client()?;
    let bytes = extract::body(cx.req).await?;
    if !bytes.is_empty() {
        extract::parse_json::<NoFields>(&bytes)?;
    }
    cx.app
        .auth
        .logout_session(family, client, UnixTime::now())
        .await?;
    Ok(respond::logged_out(&cx.app.settings))
}

pub(super) async fn logout_all(cx: Ctx) -> Answer {
    let principal = cx.principal()?;
    let client = cx.client()?;
    cx.app
        .auth
        .logout_all(&principal, client, UnixTime::now())
        .await?;
    Ok(respond::logged_out(&cx.app.settings))
}

pub(super) async fn me(cx: Ctx) -> Answer {
    let principal = cx.principal()?;
    let user = cx.app.auth.me(&principal).await?;
    Ok(respond::json(StatusCode::OK, &respond::user(&user)))
}

/// `GET /metrics`, for loopback clients and `LATCHD_METRICS_ALLOW` only. The peer is the TCP
/// peer: `X-Forwarded-For` is not consulted, as a forged one must not open the counters.
pub(super) fn metrics(cx: &Ctx) -> Answer {
    // A request that came through a reverse proxy is from whoever the proxy serves, not from
    // the loopback peer: judge the forwarded client (through trusted proxies only), and refuse
    // when it cannot be told.
    let headers = cx.req.headers();
    let forwarded = ["x-forwarded-for", "forwarded", "x-real-ip"]
        .iter()
        .any(|name| headers.contains_key(*name));
    let client = if forwarded {
        let client = cx.client().map_err(|_| ApiError::metrics_forbidden())?;
        if client == cx.peer.ip().to_canonical() {
            return Err(ApiError::metrics_forbidden());
        }
        client
    } else {
        cx.peer.ip()
    };
    if !metrics_allowed(client, &cx.app.settings.metrics_allow) {
        return Err(ApiError::metrics_forbidden());
    }
    let mut text = cx.app.auth.exposition();
    cx.app.times.render_into(&mut text);
    Ok(respond::metrics(text))
}

pub(super) async fn change_password(cx: Ctx) -> Answer {
    let principal = cx.principal()?;
    let client = cx.client()?;
    let change: PasswordChange = extract::json(cx.req).await?;
    cx.app
        .auth
        .change_password(
            &principal,
            &change.current_password,
            &change.new_password,
            client,
            UnixTime::now(),
        )
        .await?;
    Ok(respond::empty(StatusCode::NO_CONTENT))
}

pub(super) async fn admin_list_users(cx: Ctx) -> Answer {
    let principal = cx.principal()?;
    let (limit, after) = extract::paging(cx.req.uri().query())?;
    let users = cx
        .app
        .auth
        .list_users(Actor::Caller(&principal), limit, after)
        .await?;
    let list: Vec<_> = users.iter().map(respond::admin_user).collect();
    Ok(respond::json(
        StatusCode::OK,
        &serde_json::Value::Array(list),
    ))
}

/// `GET /v1/admin/audit`: one page of audit rows, oldest first.
pub(super) async fn admin_audit(cx: Ctx) -> Answer {
    let principal = cx.principal()?;
    let query = extract::audit_query(cx.req.uri().query())?;
    let rows = cx.app.auth.audit(Actor::Caller(&principal), query).await?;
    let rows = serde_json::to_value(rows).map_err(|e| {
        tracing::error!(error = %e, "audit rows did not serialize");
        ApiError::server_error()
    })?;
    Ok(respond::json(StatusCode::OK, &rows))
}

pub(super) async fn admin_revoke(cx: Ctx) -> Answer {
    let principal = cx.principal()?;
    let id = cx.id()?;
    cx.app
        .auth
        .revoke_user(Actor::Caller(&principal), id, UnixTime::now())
        .await?;
    Ok(respond::empty(StatusCode::NO_CONTENT))
}

/// `DELETE /v1/admin/users/{id}/totp`: TOTP off for a user who lost the device; its
/// sessions end.
pub(super) async fn admin_totp_reset(cx: Ctx) -> Answer {
    let principal = cx.principal()?;
    let id = cx.id()?;
    cx.app
        .auth
        .reset_totp(Actor::Caller(&principal), id, UnixTime::now())
        .await?;
    Ok(respond::empty(StatusCode::NO_CONTENT))
}

pub(super) async fn admin_delete(cx: Ctx) -> Answer {
    let principal = cx.principal()?;
    let id = cx.id()?;
    cx.app
        .auth
        .delete_user(Actor::Caller(&principal), id, UnixTime::now())
        .await?;
    Ok(respond::empty(StatusCode::NO_CONTENT))
}

/// `GET /v1/users/me/sessions`: the caller's live sessions, its own marked `current`.
pub(super) async fn my_sessions(cx: Ctx) -> Answer {
    let principal = cx.principal()?;
    let list = cx.app.auth.my_sessions(&principal, UnixTime::now()).await?;
    Ok(respond::sessions(&list, Some(principal.family)))
}

/// `DELETE /v1/users/me/sessions/{id}`: ends one of the caller's sessions.
pub(super) async fn end_my_session(cx: Ctx) -> Answer {
    let principal = cx.principal()?;
    let family = FamilyId(cx.id()?.0);
    let client = cx.client()?;
    cx.app
        .auth
        .end_my_session(&principal, family, client, UnixTime::now())
        .await?;
    Ok(respond::empty(StatusCode::NO_CONTENT))
}

/// `GET /v1/admin/users/{id}/sessions`: any user's live sessions, none marked current.
pub(super) async fn admin_user_sessions(cx: Ctx) -> Answer {
    let principal = cx.principal()?;
    let id = cx.id()?;
    let list = cx
        .app
        .auth
        .user_sessions(Actor::Caller(&principal), id, UnixTime::now())
        .await?;
    Ok(respond::sessions(&list, None))
}

/// The `token` of an RFC 7662 / RFC 7009 form. `token_type_hint` is a hint only: every kind is
/// tried whatever it says, so a value latchd does not know (`id_token`, a typo) is ignored like
/// any other parameter (RFC 7009 §2.1 lets a server ignore it; RFC 6749 §3.1 other parameters),
/// and a revocation stays "200 whatever the token was".
fn token_form(pairs: &[(String, String)]) -> Result<&str, ApiError> {
    extract::field(pairs, "token")
        .ok_or_else(|| ApiError::invalid_request("the token parameter is required"))
}

/// `POST /v1/oauth/introspect` (RFC 7662), for callers with the role `admin` or
/// `introspect`.
pub(super) async fn introspect(cx: Ctx) -> Answer {
    let principal = cx.principal()?;
    let pairs = extract::form(cx.req).await?;
    let token = token_form(&pairs)?;
    let found = cx
        .app
        .auth
        .introspect(&principal, token, UnixTime::now())
        .await?;
    Ok(respond::json(
        StatusCode::OK,
        &respond::introspection(&found),
    ))
}

/// `POST /v1/oauth/revoke` (RFC 7009): 200 whatever the token was.
pub(super) async fn revoke_token(cx: Ctx) -> Answer {
    let client = cx.client()?;
    let pairs = extract::form(cx.req).await?;
    let token = token_form(&pairs)?;
    cx.app
        .auth
        .revoke_token(token, client, UnixTime::now())
        .await?;
    Ok(respond::empty(StatusCode::OK))
}

/// `PUT /v1/admin/users/{id}/roles`: the user's roles replaced, its older tokens retired.
pub(super) async fn admin_set_roles(cx: Ctx) -> Answer {
    let principal = cx.principal()?;
    let id = cx.id()?;
    let body: RolesBody = extract::json(cx.req).await?;
    cx.app
        .auth
        .set_roles(Actor::Caller(&principal), id, &body.roles, UnixTime::now())
        .await?;
    Ok(respond::empty(StatusCode::NO_CONTENT))
}
