//! `AuthError`: why a use case refused, in terms the HTTP layer maps to one status each.

use std::fmt;

use super::limiter::RateLimited;
use super::storage::StoreError;
use crate::model::AccessDenied;
use crate::password::{PasswordError, WeakPassword};
use crate::token::TokenError;

/// Why an auth use case did not succeed.
#[derive(Debug)]
pub enum AuthError {
    /// The access token broke a rule of the token itself.
    Token(TokenError),
    /// The access token is genuine but its state refuses it (logout, revocation, user gone).
    Revoked(AccessDenied),
    /// Login failed: unknown email, wrong password or disabled user (never said which).
    BadCredentials,
    /// A refresh token was unknown, expired, revoked or reused.
    InvalidGrant,
    /// An `mfa_token` was unknown, used, expired or killed by wrong codes: log in again.
    InvalidMfaToken,
    /// A TOTP or recovery code was wrong, replayed or already used.
    InvalidCode,
    /// TOTP is already on: turn it off before enrolling again.
    TotpOn,
    /// TOTP is not on, so it cannot be turned off.
    TotpOff,
    /// No TOTP enrolment is pending, so there is nothing to confirm.
    NoPendingTotp,
    /// Registration with an email that is already registered (case-insensitively).
    EmailTaken,
    /// The email is not a plausible address.
    InvalidEmail(&'static str),
    /// The new password breaks the password policy.
    WeakPassword(WeakPassword),
    /// The current password given for a password change is wrong.
    WrongPassword,
    /// The use case needs an authenticated caller and there is none.
    Unauthenticated,
    /// The caller lacks a role the use case requires.
    Forbidden,
    /// A role name breaks the role rule.
    InvalidRole(String),
    /// `key rotate` while a configured key signs: a stored key would never sign.
    KeyConfigured,
    /// No such user (admin routes).
    NotFound,
    /// The change would leave no enabled user with the admin role.
    LastAdmin,
    /// Too many failed logins for the account or from the client address; refused before any
    /// hashing, alike for registered and unknown emails.
    RateLimited {
        /// Whole seconds until an attempt can be admitted again.
        retry_after_secs: u64,
    },
    /// Password hashing, or the storage backend's write queue, is saturated: the request was
    /// refused at once rather than queued.
    Busy,
    /// The storage backend cannot reach its database, or cannot confirm that it has seen
    /// every revocation (a PostgreSQL node cut off): refused at once, never answered from a
    /// view that may be stale.
    Unavailable,
    /// The storage layer failed.
    Store(StoreError),
    /// Something inside latchd failed that no caller can fix (a hashing job panicked, a
    /// thread could not start); the text is for the log.
    Internal(String),
    /// A stored password hash could not be read, or the system RNG failed.
    Password(PasswordError),
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Token(e) => write!(f, "access token refused: {e}"),
            Self::Revoked(why) => write!(f, "access token revoked: {why:?}"),
            Self::BadCredentials => f.write_str("bad credentials"),
            Self::InvalidGrant => f.write_str("invalid refresh token"),
            Self::InvalidMfaToken => f.write_str("invalid mfa_token"),
            Self::InvalidCode => f.write_str("wrong code"),
            Self::TotpOn => f.write_str("TOTP is already on"),
            Self::TotpOff => f.write_str("TOTP is not on"),
            Self::NoPendingTotp => f.write_str("no TOTP enrolment is pending"),
            Self::EmailTaken => f.write_str("email is already registered"),
            Self::InvalidEmail(why) => f.write_str(why),
            Self::WeakPassword(why) => write!(f, "{why}"),
            Self::WrongPassword => f.write_str("current password is wrong"),
            Self::Unauthenticated => f.write_str("authentication required"),
            Self::Forbidden => f.write_str("insufficient role"),
            Self::InvalidRole(role) => write!(
                f,
                "invalid role {role:?}: use 1-{} characters of [a-z0-9_.:-]",
                super::MAX_ROLE_CHARS
            ),
            Self::KeyConfigured => f.write_str(
                "LATCHD_SIGNING_KEY is set: the configured key signs, and stored keys are \
                 retired at every start, so a rotated key would never sign; rotate by changing \
                 LATCHD_SIGNING_KEY, or unset it first",
            ),
            Self::NotFound => f.write_str("no such user"),
            Self::LastAdmin => f.write_str(
                "this is the last enabled admin: it cannot be deleted, disabled or demoted",
            ),
            Self::RateLimited { retry_after_secs } => {
                write!(f, "too many login attempts; retry in {retry_after_secs} s")
            }
            Self::Busy => f.write_str("password hashing or writes are saturated; retry shortly"),
            Self::Unavailable => f.write_str("the database is unreachable; retry shortly"),
            Self::Store(e) => write!(f, "storage: {e}"),
            Self::Internal(what) => write!(f, "internal error: {what}"),
            Self::Password(e) => write!(f, "password: {e}"),
        }
    }
}

impl AuthError {
    /// Whether the storage backend could not answer (503), as opposed to a refusal.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable | Self::Revoked(AccessDenied::Unconfirmed)
        )
    }
}

impl std::error::Error for AuthError {}

impl From<StoreError> for AuthError {
    fn from(err: StoreError) -> Self {
        match err {
            // A full write queue is load, not a fault: 503 with Retry-After, like the pool.
            StoreError::Busy => Self::Busy,
            // A backend cut off from its database: 503 with Retry-After, never a stale answer.
            StoreError::Unavailable => Self::Unavailable,
            err => Self::Store(err),
        }
    }
}

impl From<TokenError> for AuthError {
    fn from(err: TokenError) -> Self {
        Self::Token(err)
    }
}

impl From<PasswordError> for AuthError {
    fn from(err: PasswordError) -> Self {
        Self::Password(err)
    }
}

impl From<RateLimited> for AuthError {
    fn from(err: RateLimited) -> Self {
        Self::RateLimited {
            retry_after_secs: err.retry_after_secs,
        }
    }
}
