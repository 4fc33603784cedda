//! What happened, as the use cases report it to their subscribers (metrics; the audit log and
//! its log line later). A use case never calls a subscriber's own API: it emits an [`Event`],
//! and each subscriber takes what it needs. Every label a subscriber may show comes from the
//! fixed lists here, never from a request.

use crate::model::{AccessDenied, Counts, UserId};
use crate::token::TokenError;

/// One thing that happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A login attempt ended.
    Login {
        /// How it ended.
        outcome: LoginOutcome,
        /// The account, when the credentials matched one.
        user: Option<UserId>,
    },
    /// A presented refresh token was dealt with.
    Refresh(RefreshOutcome),
    /// An access token verified (signature, claims and state).
    Verified,
    /// An access token was refused.
    Rejected(Rejection),
    /// A user was registered through the API.
    Registered {
        /// The new user.
        user: UserId,
    },
}

/// How a login attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginOutcome {
    /// A session was opened.
    Ok,
    /// Unknown email, wrong password or disabled user.
    Failed,
    /// Refused by the rate limiter before the password was checked.
    RateLimited,
}

impl LoginOutcome {
    /// Every outcome, in the order of their labels.
    pub const ALL: [LoginOutcome; 3] = [Self::Ok, Self::Failed, Self::RateLimited];

    /// The label of this outcome.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::RateLimited => "rate_limited",
        }
    }
}

/// What became of a presented refresh token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// Rotated: the successor is now the family's current token.
    Rotated,
    /// The just-superseded token inside the grace: the same successor was handed out again.
    Retried,
    /// A superseded token outside the grace: the whole family was revoked (RFC 9700 §4.14.2).
    Reused,
    /// The token or its family's absolute lifetime had expired.
    Expired,
    /// The family had been revoked earlier (or its user disabled).
    Revoked,
    /// No such family, or not one of its generations.
    Unknown,
    /// Not a refresh token at all (bad format or MAC): never reached storage.
    Invalid,
}

impl RefreshOutcome {
    /// Every outcome, in the order of their labels.
    pub const ALL: [RefreshOutcome; 7] = [
        Self::Rotated,
        Self::Retried,
        Self::Reused,
        Self::Expired,
        Self::Revoked,
        Self::Unknown,
        Self::Invalid,
    ];

    /// The label of this outcome.
    pub fn label(self) -> &'static str {
        match self {
            Self::Rotated => "rotated",
            Self::Retried => "retried",
            Self::Reused => "reused",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Unknown => "unknown",
            Self::Invalid => "invalid",
        }
    }
}

/// Why an access token was refused: a rule of the token itself, or its stored state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// A token rule (API.md "Verification rejects").
    Token(TokenError),
    /// The token is genuine but its state refuses it.
    State(AccessDenied),
}

impl Rejection {
    /// Every label a rejection can have: the token rules', then the states'.
    pub fn labels() -> impl Iterator<Item = &'static str> {
        TokenError::REASONS
            .iter()
            .copied()
            .chain(AccessDenied::ALL.iter().map(|d| d.label()))
    }

    /// The label of this rejection.
    pub fn label(self) -> &'static str {
        match self {
            Self::Token(e) => e.reason(),
            Self::State(d) => d.label(),
        }
    }
}

/// Something that wants to know what happened. Called synchronously by the use case, once
/// per event, so it must be quick and must not block (counters, a channel send).
pub trait Subscriber: Send + Sync {
    /// Takes note of `event`.
    fn on(&self, event: &Event);

    /// Writes what the subscriber has gathered, in the Prometheus text format, for
    /// `GET /metrics`; `counts` are the current sizes of the stored state. Most subscribers
    /// show nothing.
    fn expose(&self, counts: Counts, out: &mut String) {
        let _ = (counts, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_lists_are_in_declaration_order() {
        // Subscribers index counters by the discriminant.
        for (i, o) in LoginOutcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i);
        }
        for (i, o) in RefreshOutcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i);
        }
    }

    #[test]
    fn every_label_list_is_distinct() {
        let mut labels: Vec<&str> = Rejection::labels().collect();
        let n = labels.len();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), n, "two rejections share a label");
        for list in [
            LoginOutcome::ALL
                .iter()
                .map(|o| o.label())
                .collect::<Vec<_>>(),
            RefreshOutcome::ALL.iter().map(|o| o.label()).collect(),
        ] {
            let mut sorted = list.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), list.len(), "{list:?}");
        }
    }
}
