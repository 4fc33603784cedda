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
    /// A user confirmed a TOTP enrolment: sign-ins now need a second factor.
    MfaEnabled {
        /// The user.
        user: UserId,
    },
    /// A user turned TOTP off (with the password and a code).
    MfaDisabled {
        /// The user.
        user: UserId,
    },
    /// A wrong TOTP or recovery code at the second step of a sign-in.
    MfaFailed {
        /// The user whose password step passed.
        user: UserId,
    },
    /// A recovery code was spent for a sign-in.
    RecoveryCodeUsed {
        /// The user.
        user: UserId,
        /// How many codes the user has left.
        left: usize,
    },
    /// An operator turned a user's TOTP off and ended its sessions.
    TotpReset {
        /// The user.
        user: UserId,
        /// The admin who did it through the API; `None` for the CLI.
        actor: Option<UserId>,
    },
}

impl Event {
    /// Every label [`Event::second_factor`] answers, in order.
    pub const SECOND_FACTOR: [&'static str; 5] = [
        "enabled",
        "disabled",
        "failed",
        "recovery_code_used",
        "reset",
    ];

    /// The index into [`Event::SECOND_FACTOR`] of a second-factor event.
    pub fn second_factor(&self) -> Option<usize> {
        match self {
            Self::MfaEnabled { .. } => Some(0),
            Self::MfaDisabled { .. } => Some(1),
            Self::MfaFailed { .. } => Some(2),
            Self::RecoveryCodeUsed { .. } => Some(3),
            Self::TotpReset { .. } => Some(4),
            Self::Login { .. }
            | Self::Refresh(_)
            | Self::Verified
            | Self::Rejected(_)
            | Self::Registered { .. } => None,
        }
    }
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
    /// The password matched an account with TOTP on: the session waits for the code.
    MfaRequired,
}

impl LoginOutcome {
    /// Every outcome, in the order of their labels.
    pub const ALL: [LoginOutcome; 4] =
        [Self::Ok, Self::Failed, Self::RateLimited, Self::MfaRequired];

    /// The label of this outcome.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::RateLimited => "rate_limited",
            Self::MfaRequired => "mfa_required",
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
