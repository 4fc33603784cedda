//! Building responses: JSON bodies, the refresh-token cookie, and the headers every response
//! carries. Set here once, never per handler.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{
    HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION, PRAGMA, SET_COOKIE,
    X_CONTENT_TYPE_OPTIONS,
};
use hyper::{Response, StatusCode};
use serde::Serialize;
use serde_json::json;

use super::Settings;
use crate::auth::{Identity, Introspection, TokenPair};
use crate::model::{FamilyId, SessionInfo, User};

/// The response body type of every route.
pub(crate) type Body = Full<Bytes>;

/// The identity headers of a forward-auth 200 (API.md: `X-Auth-Subject`, `X-Auth-Roles`),
/// named once rather than parsed from text per answer.
const X_AUTH_SUBJECT: HeaderName = HeaderName::from_static("x-auth-subject");
const X_AUTH_ROLES: HeaderName = HeaderName::from_static("x-auth-roles");
const X_AUTH_EMAIL: HeaderName = HeaderName::from_static("x-auth-email");

/// The cookie that carries the refresh token in browsers.
pub(crate) const REFRESH_COOKIE: &str = "refresh_token";
/// The cookie of a browser session (API.md v2).
pub(crate) const SESSION_COOKIE: &str = "latchd_session";

/// A host-only cookie of the pages, other than the session: its name is `__Host-<base>` when
/// it is Secure, so that no sibling subdomain can set it (browsers refuse a `__Host-` cookie
/// with a Domain or without Secure).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PageCookie {
    /// The browser's CSRF nonce, for the browser's session.
    Csrf,
    /// The `mfa_token` between a sign-in's password and its code, for 300 s.
    Mfa,
}

impl PageCookie {
    /// The cookie's name under `LATCHD_COOKIE_SECURE=secure`.
    pub(crate) fn name(self, secure: bool) -> &'static str {
        match (self, secure) {
            (Self::Csrf, true) => "__Host-latchd_csrf",
            (Self::Csrf, false) => "latchd_csrf",
            (Self::Mfa, true) => "__Host-latchd_mfa",
            (Self::Mfa, false) => "latchd_mfa",
        }
    }

    /// `Set-Cookie` for `value`: host-only, `HttpOnly; SameSite=Strict; Path=/`, and
    /// `Max-Age` when given (0 clears it).
    pub(crate) fn set(
        self,
        value: &str,
        max_age_secs: Option<i64>,
        secure: bool,
    ) -> Option<HeaderValue> {
        let name = self.name(secure);
        let secure = if secure { "; Secure" } else { "" };
        let max_age = max_age_secs
            .map(|secs| format!("; Max-Age={secs}"))
            .unwrap_or_default();
        HeaderValue::from_str(&format!(
            "{name}={value}; HttpOnly{secure}; SameSite=Strict; Path=/{max_age}"
        ))
        .ok()
    }
}

/// `Set-Cookie` for a browser session: `HttpOnly; Secure; SameSite=Lax; Path=/`, the cookie
/// domain when configured, and the session's absolute lifetime; an empty `value` with
/// `max_age_secs` 0 clears it.
pub(crate) fn session_cookie(
    value: &str,
    max_age_secs: i64,
    settings: &Settings,
) -> Option<HeaderValue> {
    let secure = if settings.cookie_secure {
        "; Secure"
    } else {
        ""
    };
    let domain = settings
        .site
        .cookie_domain
        .as_deref()
        .map(|d| format!("; Domain={d}"))
        .unwrap_or_default();
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; HttpOnly{secure}; SameSite=Lax; Path=/{domain}; \
         Max-Age={max_age_secs}"
    ))
    .ok()
}

/// A 303 to `location`.
pub(crate) fn see_other(location: &str) -> Response<Body> {
    redirect(StatusCode::SEE_OTHER, location)
}

/// A redirect with `status` to `location` (which the caller made header-safe).
pub(crate) fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    let mut response = empty(status);
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// `text` percent-encoded for a query value: everything but RFC 3986's unreserved characters.
pub(crate) fn query_encode(text: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    let text = match serde_json::to_vec(value) {
        Ok(text) => text,
        // Only a map with a key that is not a string can fail; no answer here has one.
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize an answer");
            return json_text(
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"error":"server_error","error_description":"internal error"}"#,
            );
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A JSON response whose text is already written (a document compiled into the binary).
pub(crate) fn json_text(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// 200 with the Prometheus text exposition.
pub(crate) fn metrics(text: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    response
}

/// An empty response with `status`.
pub(crate) fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// Headers on every response: no MIME sniffing, and nothing an auth server says is cached.
pub(crate) fn secure(response: &mut Response<Body>) {
    let headers = response.headers_mut();
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers
        .entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

/// `text` as it may appear in a log line: printable ASCII passes, every other byte (control
/// characters, and all of non-ASCII, where U+0085, U+2028/2029 and bidi overrides could forge
/// or disguise a line in a Unicode-aware viewer) is written as `\xHH`, and a backslash as `\\`.
pub(crate) fn log_safe(text: &str) -> std::borrow::Cow<'_, str> {
    if text
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'\\')
    {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for b in text.bytes() {
        match b {
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                use std::fmt::Write as _;
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

/// 200 with a token pair (login, refresh): `no-store` and `Pragma: no-cache` (RFC 6749 §5.1),
/// and the refresh token also as an `HttpOnly` cookie scoped to `/v1/auth`.
pub(crate) fn token_pair(pair: &TokenPair, settings: &Settings) -> Response<Body> {
    // Serialized from borrowed fields: the answer to every rotation, so it skips building a
    // `serde_json::Value` (a map and a copy of each token) only to write it out.
    #[derive(Serialize)]
    struct Pair<'a> {
        access_token: &'a str,
        token_type: &'static str,
        expires_in: i64,
        refresh_token: &'a str,
    }
    let body = Pair {
        access_token: &pair.access_token,
        token_type: "Bearer",
        expires_in: pair.expires_in,
        refresh_token: pair.refresh_token.as_str(),
    };
    let mut response = json(StatusCode::OK, &body);
    if response.status() != StatusCode::OK {
        return response; // not serialized: no cookie either
    }
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    let value = set_cookie(
        pair.refresh_token.as_str(),
        settings.refresh_cookie_max_age_secs,
        settings.cookie_secure,
    );
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(SET_COOKIE, value);
    }
    response
}

/// 204 that also clears the refresh cookie (logout).
pub(crate) fn logged_out(settings: &Settings) -> Response<Body> {
    let mut response = empty(StatusCode::NO_CONTENT);
    if let Ok(value) = HeaderValue::from_str(&set_cookie("", 0, settings.cookie_secure)) {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    response
}

fn set_cookie(value: &str, max_age_secs: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{REFRESH_COOKIE}={value}; HttpOnly{secure}; SameSite=Strict; Path=/v1/auth; Max-Age={max_age_secs}"
    )
}

/// A user as `/v1/auth/me` and registration show it.
pub(crate) fn user(user: &User) -> serde_json::Value {
    json!({
        "id": user.id.to_string(),
        "email": user.email,
        "roles": user.roles,
        "created_at": user.created_at.to_rfc3339(),
    })
}

/// A session list (API.md v2 "Sessions"); the session `current` belongs to, if any, is
/// marked.
pub(crate) fn sessions(list: &[SessionInfo], current: Option<FamilyId>) -> Response<Body> {
    let rows: Vec<serde_json::Value> = list
        .iter()
        .map(|s| {
            json!({
                "id": s.id.0.to_string(),
                "kind": s.kind.label(),
                "created_at": s.created_at.to_rfc3339(),
                "last_used_at": s.last_used_at.to_rfc3339(),
                "expires_at": s.expires_at.to_rfc3339(),
                "user_agent": s.origin.user_agent,
                "client_ip": s.origin.client_ip.map(|ip| ip.to_string()),
                "mfa": s.mfa,
                "current": Some(s.id) == current,
            })
        })
        .collect();
    json(StatusCode::OK, &serde_json::Value::Array(rows))
}

/// An RFC 7662 §2.2 answer; an inactive token is exactly `{"active": false}`.
pub(crate) fn introspection(found: &Introspection) -> serde_json::Value {
    match found {
        Introspection::Access(a) => json!({
            "active": true,
            "token_type": "access_token",
            "sub": a.user.to_string(),
            "client_id": a.client_id,
            "iss": a.issuer,
            "aud": a.audience,
            "exp": a.exp.secs(),
            "iat": a.iat.secs(),
            "nbf": a.nbf.secs(),
            "jti": a.jti.0.to_string(),
            "sid": a.session.0.to_string(),
            "roles": a.roles,
            "amr": a.amr,
        }),
        Introspection::Refresh(r) => json!({
            "active": true,
            "token_type": "refresh_token",
            "sub": r.user.to_string(),
            "sid": r.family.0.to_string(),
            "exp": r.expires_at.secs(),
        }),
        Introspection::Inactive => json!({ "active": false }),
    }
}

/// A user as the admin listing shows it.
pub(crate) fn admin_user(user: &User) -> serde_json::Value {
    let mut value = self::user(user);
    value["disabled"] = json!(user.disabled);
    value
}

/// 200 for forward-auth (`/v1/auth/verify`): who the caller is, in headers a reverse proxy
/// can pass on. The email goes out as its UTF-8 bytes (roles are ASCII by their rule).
pub(crate) fn forward_auth(identity: &Identity) -> Response<Body> {
    let mut response = empty(StatusCode::OK);
    let headers = response.headers_mut();
    // Formatted on the stack: this answer is the hot path of every proxied request.
    let mut subject = [0u8; uuid::fmt::Hyphenated::LENGTH];
    identity.user.0.hyphenated().encode_lower(&mut subject);
    if let Ok(subject) = HeaderValue::from_bytes(&subject) {
        headers.insert(X_AUTH_SUBJECT, subject);
    }
    let roles = match &*identity.roles {
        [] => Ok(HeaderValue::from_static("")),
        [one] => HeaderValue::from_str(one),
        many => HeaderValue::from_str(&many.join(",")),
    };
    if let Ok(roles) = roles {
        headers.insert(X_AUTH_ROLES, roles);
    }
    if let Ok(email) = HeaderValue::from_bytes(identity.email.as_bytes()) {
        headers.insert(X_AUTH_EMAIL, email);
    }
    response
}
