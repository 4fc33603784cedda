//! `ApiError`: the one place an error becomes a status code and an OAuth-style JSON body.

use hyper::header::{HeaderValue, ALLOW, CONNECTION, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};

use super::respond::{self, Body};
use crate::auth::AuthError;
use crate::model::AccessDenied;

/// An HTTP error answer: `{"error": code, "error_description": text}` plus its headers.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    description: String,
    challenge: Option<&'static str>,
    retry_after: Option<u64>,
    /// Close the connection after this answer.
    close: bool,
    /// One more member of the body (`mfa_token` beside `mfa_required`).
    extra: Option<(&'static str, String)>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            code,
            description: description.into(),
            challenge: None,
            retry_after: None,
            close: false,
            extra: None,
        }
    }

    /// 401 `mfa_required` after a correct password for an account with TOTP on: the body
    /// carries the `mfa_token` for `POST /v1/auth/login/mfa`.
    pub(crate) fn mfa_required(mfa_token: &str) -> Self {
        Self {
            extra: Some(("mfa_token", mfa_token.to_owned())),
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "mfa_required",
                "this account has a second factor: send a code with the mfa_token to \
                 POST /v1/auth/login/mfa within 300 seconds",
            )
        }
    }

    pub(crate) fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// 401 for a presented bearer token that is not valid (RFC 6750 §3.1).
    pub(crate) fn invalid_token() -> Self {
        Self {
            challenge: Some(r#"Bearer error="invalid_token""#),
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the access token is invalid, expired or revoked",
            )
        }
    }

    /// 401 for a request with no bearer credentials at all: a challenge without an error code
    /// (RFC 6750 §3.1).
    pub(crate) fn no_credentials() -> Self {
        Self {
            challenge: Some("Bearer"),
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "a bearer access token is required",
            )
        }
    }

    /// Whether this is the answer to a request without any bearer credentials.
    pub(crate) fn is_no_credentials(&self) -> bool {
        self.challenge == Some("Bearer")
    }

    pub(crate) fn invalid_grant(description: &'static str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_grant", description)
    }

    pub(crate) fn insufficient_scope() -> Self {
        Self {
            challenge: Some(r#"Bearer error="insufficient_scope""#),
            ..Self::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "this route requires the admin role",
            )
        }
    }

    /// 403 for a caller who is who it says but may not do this (forward-auth's `role=` and
    /// `mfa=1` rules).
    pub(crate) fn forbidden(description: &'static str) -> Self {
        Self {
            challenge: Some(r#"Bearer error="insufficient_scope""#),
            ..Self::new(StatusCode::FORBIDDEN, "insufficient_scope", description)
        }
    }

    /// 403 for `/metrics` from an address that may not read it. No bearer challenge: no token
    /// would help.
    pub(crate) fn metrics_forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "metrics are served to loopback and LATCHD_METRICS_ALLOW clients only",
        )
    }

    pub(crate) fn conflict(description: &'static str) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", description)
    }

    pub(crate) fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "request bodies are limited to 16 KiB",
        )
    }

    pub(crate) fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    /// The 405 answer for a path that serves other methods, which `Allow` lists (`allow`, e.g.
    /// `"GET, POST"`): RFC 9110 §15.5.6 says an origin server MUST send it. A response rather
    /// than an `ApiError`, which would grow every `Result` for a header only the router sets.
    pub(crate) fn method_not_allowed(allow: &str) -> Response<Body> {
        let mut response = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            "method not allowed on this path",
        )
        .into_response();
        if let Ok(value) = HeaderValue::from_str(allow) {
            response.headers_mut().insert(ALLOW, value);
        }
        response
    }

    /// 429 with `Retry-After` (RFC 6585 §4, RFC 9110 §10.2.3): too many failed logins.
    pub(crate) fn rate_limited(retry_after_secs: u64) -> Self {
        Self {
            retry_after: Some(retry_after_secs),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many login attempts; retry later",
            )
        }
    }

    /// 408 for a request body that did not arrive whole within the body deadline; the
    /// connection is closed after the answer, since the rest of the body may still come.
    pub(crate) fn body_timeout() -> Self {
        Self {
            close: true,
            ..Self::new(
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request",
                "the request body did not arrive in time",
            )
        }
    }

    pub(crate) fn server_error() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal error",
        )
    }

    /// 503 when password hashing is saturated: retry shortly (RFC 6749 §4.1.2.1 names the
    /// code `temporarily_unavailable`).
    pub(crate) fn temporarily_unavailable() -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the server is busy; retry shortly",
            )
        }
    }

    /// 503 when the storage backend cannot reach its database or confirm its view is
    /// current: retry shortly.
    pub(crate) fn unavailable() -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the database is unreachable; retry shortly",
            )
        }
    }

    /// The response for this error.
    pub(crate) fn into_response(self) -> Response<Body> {
        let mut body =
            serde_json::json!({"error": self.code, "error_description": self.description});
        if let Some((name, value)) = self.extra {
            body[name] = serde_json::Value::String(value);
        }
        let mut response = respond::json(self.status, &body);
        let headers = response.headers_mut();
        if let Some(challenge) = self.challenge {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        if let Some(secs) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.close {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Token(e) => {
                tracing::debug!(reason = e.reason(), "access token refused");
                Self::invalid_token()
            }
            AuthError::Unavailable | AuthError::Revoked(AccessDenied::Unconfirmed) => {
                tracing::warn!("storage unavailable: answered 503");
                Self::unavailable()
            }
            AuthError::Revoked(why) => {
                tracing::debug!(?why, "access token revoked");
                Self::invalid_token()
            }
            AuthError::BadCredentials => Self::invalid_grant("invalid email or password"),
            AuthError::InvalidGrant => {
                Self::invalid_grant("the refresh token is invalid, expired or revoked")
            }
            AuthError::InvalidMfaToken => Self::invalid_grant(
                "the mfa_token is invalid, used, expired or ended by wrong codes; log in again",
            ),
            AuthError::InvalidCode => Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_code",
                "the code is wrong, was already used, or is not the current one",
            ),
            AuthError::TotpOn => {
                Self::conflict("TOTP is already on; turn it off before enrolling again")
            }
            AuthError::TotpOff => Self::conflict("TOTP is not on"),
            AuthError::NoPendingTotp => Self::conflict(
                "no TOTP enrolment is pending; start one with POST /v1/users/me/totp",
            ),
            AuthError::EmailTaken => Self::conflict("email is already registered"),
            AuthError::InvalidEmail(why) => Self::invalid_request(why),
            AuthError::WeakPassword(why) => Self::invalid_request(why.to_string()),
            AuthError::WrongPassword => Self::invalid_request("current_password is wrong"),
            AuthError::Unauthenticated => Self::no_credentials(),
            AuthError::Forbidden => Self::insufficient_scope(),
            AuthError::InvalidRole(_) => Self::invalid_request(err.to_string()),
            AuthError::KeyConfigured => {
                Self::conflict("a configured signing key signs; rotate by changing it")
            }
            AuthError::Busy => Self::temporarily_unavailable(),
            AuthError::NotFound => Self::not_found(),
            AuthError::LastAdmin => Self::conflict(
                "the last enabled admin cannot be deleted, disabled or lose the admin role",
            ),
            AuthError::RateLimited { retry_after_secs } => {
                tracing::debug!(retry_after_secs, "login rate limited");
                Self::rate_limited(retry_after_secs)
            }
            AuthError::Store(e) => {
                tracing::error!(error = %e, "storage failure");
                Self::server_error()
            }
            AuthError::Password(e) => {
                tracing::error!(error = %e, "password hashing failure");
                Self::server_error()
            }
            AuthError::Internal(what) => {
                tracing::error!(error = %what, "internal failure");
                Self::server_error()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::storage::StoreError;

    #[test]
    fn a_full_write_queue_is_a_503_with_retry_after_not_a_failure() {
        let answer = ApiError::from(AuthError::from(StoreError::Busy)).into_response();
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            answer.headers().get(RETRY_AFTER).map(HeaderValue::as_bytes),
            Some(&b"1"[..])
        );
        let failed = ApiError::from(AuthError::from(StoreError::Closed)).into_response();
        assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
