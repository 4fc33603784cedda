//! Route handlers: extract, call `auth`, respond. Durable commits run on tokio's blocking pool;
//! password hashing runs on the low-priority hashing pool, so a login flood cannot take the
//! cores from verification.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;

use super::error::ApiError;
use super::extract;
use super::respond::{self, Body};
use super::{hashing, App};
use crate::auth::{Authority, Principal};
use crate::metrics::{metrics_allowed, LoginOutcome};
use crate::store::UserId;
use crate::time::UnixTime;

type Answer = Result<Response<Body>, ApiError>;

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current_password: String,
    new_password: String,
}

pub(super) async fn register(req: Request<Incoming>, app: Arc<App>, peer: SocketAddr) -> Answer {
    if !app.open_registration {
        let principal = authenticate(&req, &app)?;
        require_admin(&principal)?;
    }
    let client = extract::client_ip(req.headers(), peer.ip(), &app.trusted_proxies)?;
    let creds: Credentials = extract::json(req).await?;
    check_password_size(&creds.password)?;
    app.auth.admit_hashing(client, UnixTime::now())?;
    let user = app
        .hashing(move |auth| auth.register(&creds.email, &creds.password, UnixTime::now()))
        .await?;
    Ok(respond::json(StatusCode::CREATED, &respond::user(&user)))
}

pub(super) async fn login(req: Request<Incoming>, app: Arc<App>, peer: SocketAddr) -> Answer {
    let client = extract::client_ip(req.headers(), peer.ip(), &app.trusted_proxies)?;
    let creds: Credentials = extract::json(req).await?;
    if creds.password.len() > crate::password::MAX_PASSWORD_BYTES {
        // Refused before hashing: a megabyte password must not cost a megabyte of PBKDF2.
        app.auth.metrics().record_login(LoginOutcome::Failed);
        return Err(ApiError::invalid_grant("invalid email or password"));
    }
    // A flood over the limit is refused here, without a blocking-pool task or a hashing slot.
    // `login` asks again once it has its slot, and counts the attempt.
    app.auth
        .check_login_allowed(&creds.email, client, UnixTime::now())?;
    if let Err(e) = app.auth.admit_hashing(client, UnixTime::now()) {
        app.auth.metrics().record_login(LoginOutcome::RateLimited);
        return Err(e.into());
    }
    let pair = app
        .hashing(move |auth| auth.login(&creds.email, &creds.password, client, UnixTime::now()))
        .await?;
    Ok(respond::token_pair(&pair, app.cookie))
}

pub(super) async fn refresh(req: Request<Incoming>, app: Arc<App>) -> Answer {
    let cookie = extract::refresh_cookie(req.headers())?;
    let has_json = extract::is_json(req.headers());
    let headers = req.headers().clone();
    let bytes = extract::body(req).await?;
    let from_body = if bytes.is_empty() && !has_json {
        None
    } else if has_json {
        if bytes.is_empty() {
            None
        } else {
            extract::parse_json::<RefreshBody>(&bytes)?.refresh_token
        }
    } else {
        return Err(ApiError::invalid_request(
            "content-type must be application/json",
        ));
    };
    let token = match (from_body, cookie) {
        (Some(token), _) => token,
        (None, Some(token)) => {
            // Ambient authority: a browser attaches the cookie to whatever a page makes it send.
            extract::cookie_request_allowed(&headers)?;
            token
        }
        (None, None) => {
            return Err(ApiError::invalid_request(
                "refresh_token is required, in the body or the cookie",
            ))
        }
    };
    let pair = app
        .blocking(move |auth| auth.refresh(&token, UnixTime::now()))
        .await?;
    Ok(respond::token_pair(&pair, app.cookie))
}

pub(super) async fn logout(req: Request<Incoming>, app: Arc<App>) -> Answer {
    let principal = authenticate(&req, &app)?;
    app.blocking(move |auth| auth.logout(&principal, UnixTime::now()))
        .await?;
    Ok(respond::logged_out(app.cookie))
}

pub(super) async fn logout_all(req: Request<Incoming>, app: Arc<App>) -> Answer {
    let principal = authenticate(&req, &app)?;
    app.blocking(move |auth| auth.logout_all(&principal, UnixTime::now()))
        .await?;
    Ok(respond::logged_out(app.cookie))
}

pub(super) async fn me(req: Request<Incoming>, app: Arc<App>) -> Answer {
    let principal = authenticate(&req, &app)?;
    let user = app.blocking(move |auth| auth.me(&principal)).await?;
    Ok(respond::json(StatusCode::OK, &respond::user(&user)))
}

pub(super) fn verify(req: &Request<Incoming>, app: &App) -> Answer {
    let principal = authenticate(req, app)?;
    Ok(respond::forward_auth(&principal))
}

/// `GET /metrics`, for loopback clients and `LATCHD_METRICS_ALLOW` only. The peer is the TCP
/// peer: `X-Forwarded-For` is not consulted, as a forged one must not open the counters.
pub(super) fn metrics(req: &Request<Incoming>, app: &App, peer: SocketAddr) -> Answer {
    // A request that came through a reverse proxy is from whoever the proxy serves, not from
    // the loopback peer: judge the forwarded client (through trusted proxies only), and refuse
    // when it cannot be told.
    let forwarded = ["x-forwarded-for", "forwarded", "x-real-ip"]
        .iter()
        .any(|name| req.headers().contains_key(*name));
    let client = if forwarded {
        let client = extract::client_ip(req.headers(), peer.ip(), &app.trusted_proxies)
            .map_err(|_| ApiError::metrics_forbidden())?;
        if client == peer.ip().to_canonical() {
            return Err(ApiError::metrics_forbidden());
        }
        client
    } else {
        peer.ip()
    };
    if !metrics_allowed(client, &app.metrics_allow) {
        return Err(ApiError::metrics_forbidden());
    }
    let text = app.auth.metrics().render(app.auth.store().counts());
    Ok(respond::metrics(text))
}

pub(super) async fn change_password(
    req: Request<Incoming>,
    app: Arc<App>,
    peer: SocketAddr,
) -> Answer {
    let principal = authenticate(&req, &app)?;
    let client = extract::client_ip(req.headers(), peer.ip(), &app.trusted_proxies)?;
    let change: PasswordChange = extract::json(req).await?;
    check_password_size(&change.new_password)?;
    if change.current_password.len() > crate::password::MAX_PASSWORD_BYTES {
        return Err(ApiError::invalid_request("current_password is wrong"));
    }
    app.auth.admit_hashing(client, UnixTime::now())?;
    app.hashing(move |auth| {
        auth.change_password(
            &principal,
            &change.current_password,
            &change.new_password,
            client,
            UnixTime::now(),
        )
    })
    .await?;
    Ok(respond::empty(StatusCode::NO_CONTENT))
}

pub(super) async fn admin_list_users(req: Request<Incoming>, app: Arc<App>) -> Answer {
    let principal = authenticate(&req, &app)?;
    require_admin(&principal)?;
    let (limit, after) = paging(req.uri().query())?;
    let users = app
        .blocking(move |auth| Ok(auth.store().list_users(limit, after)?))
        .await?;
    let list: Vec<_> = users.iter().map(respond::admin_user).collect();
    Ok(respond::json(
        StatusCode::OK,
        &serde_json::Value::Array(list),
    ))
}

pub(super) async fn admin_revoke(req: Request<Incoming>, app: Arc<App>, id: UserId) -> Answer {
    let principal = authenticate(&req, &app)?;
    require_admin(&principal)?;
    app.blocking(move |auth| auth.revoke_user(id, UnixTime::now()))
        .await?;
    Ok(respond::empty(StatusCode::NO_CONTENT))
}

pub(super) async fn admin_delete(req: Request<Incoming>, app: Arc<App>, id: UserId) -> Answer {
    let principal = authenticate(&req, &app)?;
    require_admin(&principal)?;
    app.blocking(move |auth| auth.delete_user(id)).await?;
    Ok(respond::empty(StatusCode::NO_CONTENT))
}

fn authenticate(req: &Request<Incoming>, app: &App) -> Result<Principal, ApiError> {
    let token = extract::bearer(req.headers())?;
    Ok(app.auth.verify_access(token.as_bytes(), UnixTime::now())?)
}

fn require_admin(principal: &Principal) -> Result<(), ApiError> {
    if principal.has_role("admin") {
        Ok(())
    } else {
        Err(ApiError::insufficient_scope())
    }
}

/// The policy's byte cap, checked before the body reaches the hashing pool.
fn check_password_size(password: &str) -> Result<(), ApiError> {
    if password.len() > crate::password::MAX_PASSWORD_BYTES {
        return Err(ApiError::invalid_request(
            "password must be at most 1024 bytes",
        ));
    }
    Ok(())
}

/// Default and largest page of `GET /v1/admin/users`.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

fn paging(query: Option<&str>) -> Result<(usize, Option<UserId>), ApiError> {
    let mut limit = DEFAULT_PAGE;
    let mut after = None;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("limit", v)) => {
                limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| ApiError::invalid_request("limit must be 1 to 1000"))?;
            }
            Some(("after", v)) => {
                after =
                    Some(UserId(uuid::Uuid::try_parse(v).map_err(|_| {
                        ApiError::invalid_request("after must be a user id")
                    })?));
            }
            _ => return Err(ApiError::invalid_request("unknown query parameter")),
        }
    }
    Ok((limit, after))
}

impl App {
    /// Runs blocking auth work (durable commits) on the blocking pool.
    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Authority) -> Result<T, crate::auth::AuthError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let app = Arc::clone(self);
        tokio::task::spawn_blocking(move || work(&app.auth))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "blocking task failed");
                ApiError::server_error()
            })?
            .map_err(ApiError::from)
    }

    /// Runs password-hashing work on the low-priority hashing pool (`hashing.rs`).
    async fn hashing<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Authority) -> Result<T, crate::auth::AuthError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let app = Arc::clone(self);
        match self.hash_pool.run(move || work(&app.auth)).await {
            Ok(answer) => answer.map_err(ApiError::from),
            Err(hashing::PoolError::Busy) => Err(ApiError::temporarily_unavailable()),
            Err(hashing::PoolError::Failed) => {
                tracing::error!("hashing job failed");
                Err(ApiError::server_error())
            }
        }
    }
}
