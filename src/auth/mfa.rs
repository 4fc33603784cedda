//! The second factor (API.md v2 "Second factor"): enrolling TOTP, the code step of a sign-in,
//! turning TOTP off, and the operator's reset for a lost device.
//!
//! Codes are checked here, against the secret read from storage; what storage is handed is
//! the factor to spend ([`SecondFactor`]), which it accepts only if it is still unspent, in the
//! same transaction as the change that relies on it. So a replayed code loses even when two
//! requests race, and stays refused after a restart.
//!
//! Every code attempt counts against the account in the login limiter, like a password guess,
//! until it succeeds. For an account with TOTP on, a correct password alone does not clear
//! the account's failures either: otherwise each password login would buy five fresh guesses
//! at the code, and the limiter would never slow a guesser who has the password down.

use std::net::IpAddr;

use super::event::{Event, LoginOutcome};
use super::{Actor, AuthError, Authority, TokenPair};
use crate::model::{
    AuditEvent, AuditNote, FamilyId, MfaChallenge, MfaCompletion, Origin, SecondFactor,
    SessionKind, Totp, TotpUpdate, User, UserId,
};
use crate::password;
use crate::time::UnixTime;
use crate::token::opaque::{opaque_hash, Opaque};
use crate::token::recovery::{self, RecoveryCode};
use crate::token::refresh;
use crate::token::totp::{self, TotpSecret};

/// How long an `mfa_token` lives.
pub const MFA_TOKEN_SECS: i64 = 300;
/// Wrong codes an `mfa_token` survives; the next one ends it.
pub const MFA_WRONG_CODES_SURVIVED: u32 = 5;

/// When a right password clears the account's failures in the login limiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Settle {
    /// At once: the password is all the step needs.
    Now,
    /// Only when a second factor is right too (the caller calls `succeeded` then).
    Later,
}

/// A user whose enrolment is being confirmed by this process, until dropped.
pub(super) struct Confirming<'a> {
    set: &'a std::sync::Mutex<std::collections::HashSet<UserId>>,
    user: UserId,
}

impl<'a> Confirming<'a> {
    /// Claims `user`, unless a confirmation of it is already under way.
    fn claim(
        set: &'a std::sync::Mutex<std::collections::HashSet<UserId>>,
        user: UserId,
    ) -> Option<Self> {
        let claimed = set
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(user);
        claimed.then_some(Self { set, user })
    }
}

impl Drop for Confirming<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.user);
    }
}

/// How a sign-in's password step ended.
#[derive(Debug)]
pub enum SignIn<T> {
    /// The session is open.
    Done(T),
    /// The account has TOTP on: the session opens when a code arrives with this token.
    CodeNeeded(Opaque),
}

/// A pending enrolment, as its user is shown it. Its `Debug` never shows the secret.
pub struct Enrolment {
    /// The secret, base32 without padding.
    pub secret: String,
    /// The `otpauth://` URI an authenticator app enrols from.
    pub otpauth_uri: String,
}

impl std::fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Enrolment(..)")
    }
}

/// Where a user's TOTP stands, for the pages.
#[derive(Debug)]
pub enum TotpStatus {
    /// Not enrolled.
    Off,
    /// Enrolled, not yet confirmed: the secret is shown again until it is.
    Pending(Enrolment),
    /// On, with this many recovery codes left.
    On {
        /// Unused recovery codes.
        recovery_left: usize,
    },
}

impl Authority {
    /// Where `user`'s TOTP stands, as `session` may see it: a pending enrolment shows its key
    /// only to the session that began it, for [`PENDING_TOTP_SECS`](crate::model::PENDING_TOTP_SECS); to any other it is off.
    ///
    /// # Errors
    /// `Revoked(UnknownUser)` for a user that is gone; storage failures.
    pub async fn totp_status(
        &self,
        user: UserId,
        session: FamilyId,
        now: UnixTime,
    ) -> Result<TotpStatus, AuthError> {
        let user = self.existing(user).await?;
        Ok(match self.storage.totp(user.id).await? {
            Some(t) if t.is_on() => TotpStatus::On {
                recovery_left: t.recovery.len(),
            },
            Some(t) if t.is_pending_for(session, now) => {
                TotpStatus::Pending(enrolment(&t.secret, &user.email))
            }
            Some(_) | None => TotpStatus::Off,
        })
    }

    /// Starts a TOTP enrolment for `user` from `session` (`POST /v1/users/me/totp`), its
    /// password checked like a login's: a fresh secret, pending until a code from the same
    /// session confirms it within [`PENDING_TOTP_SECS`](crate::model::PENDING_TOTP_SECS). A pending enrolment is replaced.
    ///
    /// With TOTP already on, the answer is `TotpOn` before the password is looked at: a right
    /// password here must not clear the account's failed codes in the limiter.
    ///
    /// # Errors
    /// `TotpOn`, `WrongPassword`, `RateLimited`, `Busy`.
    pub async fn begin_totp(
        &self,
        user: UserId,
        session: FamilyId,
        current_password: &str,
        client: IpAddr,
        now: UnixTime,
    ) -> Result<Enrolment, AuthError> {
        let user = self.existing(user).await?;
        if self.storage.totp(user.id).await?.is_some_and(|t| t.is_on()) {
            return Err(AuthError::TotpOn);
        }
        self.confirm_password(&user, current_password, client, now, Settle::Now)
            .await?;
        let secret: [u8; totp::SECRET_BYTES] = self.secret_random()?;
        match self
            .storage
            .begin_totp(user.id, secret, session, now)
            .await?
        {
            TotpUpdate::Done => Ok(enrolment(&secret, &user.email)),
            TotpUpdate::AlreadyOn => Err(AuthError::TotpOn),
            TotpUpdate::NoSuchUser | TotpUpdate::NotEnrolled | TotpUpdate::Spent => {
                Err(AuthError::Revoked(crate::model::AccessDenied::UnknownUser))
            }
        }
    }

    /// Confirms the enrolment `session` began with a current code
    /// (`POST /v1/users/me/totp/confirm`): TOTP is on, and here are the recovery codes, shown
    /// this once and stored only as hashes.
    ///
    /// Hashing the ten codes is the costly part: it is charged to the address's hashing budget,
    /// and one user's confirmations run one at a time (another one meanwhile is `Busy`).
    ///
    /// # Errors
    /// `NoPendingTotp` (none, another session's, or older than [`PENDING_TOTP_SECS`](crate::model::PENDING_TOTP_SECS)),
    /// `TotpOn`, `InvalidCode` (wrong or replayed), `RateLimited`, `Busy`.
    pub async fn confirm_totp(
        &self,
        user: UserId,
        session: FamilyId,
        code: &str,
        client: IpAddr,
        now: UnixTime,
    ) -> Result<Vec<RecoveryCode>, AuthError> {
        let user = self.existing(user).await?;
        let pending = match self.storage.totp(user.id).await? {
            Some(t) if t.is_on() => return Err(AuthError::TotpOn),
            Some(t) if t.is_pending_for(session, now) => t,
            Some(_) | None => return Err(AuthError::NoPendingTotp),
        };
        self.limiter.admit(&user.email, client, now)?;
        let secret = TotpSecret::from_bytes(pending.secret);
        let Ok(step) = totp::verify(&secret, code, now, pending.last_step) else {
            return Err(AuthError::InvalidCode);
        };
        let _only_one = Confirming::claim(&self.confirming, user.id).ok_or(AuthError::Busy)?;
        self.limiter.admit_hashing(client, now)?;
        let codes = recovery::generate(&self.secret_random()?);
        let salt: [u8; password::SALT_BYTES] = self.secret_random()?;
        let hashes = self.hash_codes(&codes, salt).await?;
        let confirmed = self
            .storage
            .confirm_totp(
                user.id,
                pending.secret,
                step,
                salt,
                hashes,
                now,
                AuditNote::new(AuditEvent::MfaEnabled, now)
                    .session(session)
                    .client(Some(client)),
            )
            .await?;
        match confirmed {
            TotpUpdate::Done => {
                self.limiter.succeeded(&user.email, client, now);
                self.emit(&Event::MfaEnabled { user: user.id });
                Ok(codes.into())
            }
            TotpUpdate::Spent => Err(AuthError::InvalidCode),
            TotpUpdate::AlreadyOn => Err(AuthError::TotpOn),
            // Enrolment began again (another secret) while this code was checked.
            TotpUpdate::NotEnrolled | TotpUpdate::NoSuchUser => Err(AuthError::NoPendingTotp),
        }
    }

    /// Turns `user`'s TOTP off (`DELETE /v1/users/me/totp`): the password and a current TOTP
    /// or recovery code, both checked like a sign-in's. The recovery codes go with it; the
    /// user's sessions stay.
    ///
    /// # Errors
    /// `WrongPassword`, `TotpOff`, `InvalidCode`, `RateLimited`, `Busy`.
    pub async fn disable_totp(
        &self,
        user: UserId,
        current_password: &str,
        code: &str,
        client: IpAddr,
        now: UnixTime,
    ) -> Result<(), AuthError> {
        let user = self.existing(user).await?;
        // The account's failures are forgiven only when the code is right too.
        self.confirm_password(&user, current_password, client, now, Settle::Later)
            .await?;
        let on = self
            .storage
            .totp(user.id)
            .await?
            .filter(Totp::is_on)
            .ok_or(AuthError::TotpOff)?;
        self.limiter.admit(&user.email, client, now)?;
        let factor = self
            .second_factor(&on, code, client, now)
            .await?
            .ok_or(AuthError::InvalidCode)?;
        let note = AuditNote::new(AuditEvent::MfaDisabled, now).client(Some(client));
        match self.storage.disable_totp(user.id, factor, note).await? {
            TotpUpdate::Done => {
                self.limiter.succeeded(&user.email, client, now);
                self.emit(&Event::MfaDisabled { user: user.id });
                Ok(())
            }
            TotpUpdate::Spent => Err(AuthError::InvalidCode),
            TotpUpdate::NotEnrolled | TotpUpdate::AlreadyOn | TotpUpdate::NoSuchUser => {
                Err(AuthError::TotpOff)
            }
        }
    }

    /// Turns a user's TOTP off and ends all its sessions, on the operator's authority, for a
    /// user who lost the device (`DELETE /v1/admin/users/{id}/totp`, `latchd user
    /// totp-reset`). A user without TOTP gets its sessions ended all the same.
    ///
    /// # Errors
    /// `Forbidden` for a caller without the admin role, `NotFound`.
    pub async fn reset_totp(
        &self,
        actor: Actor<'_>,
        user: UserId,
        now: UnixTime,
    ) -> Result<(), AuthError> {
        super::authorize(actor)?;
        let note = super::noted_by(AuditNote::new(AuditEvent::TotpReset, now), actor);
        if !self.storage.reset_totp(user, now, note).await? {
            return Err(AuthError::NotFound);
        }
        let actor = match actor {
            Actor::Caller(principal) => Some(principal.user),
            Actor::Operator => None,
        };
        self.emit(&Event::TotpReset { user, actor });
        Ok(())
    }

    /// The second step of `POST /v1/auth/login` (`POST /v1/auth/login/mfa`): a TOTP or
    /// recovery code for the `mfa_token` the password step gave. Reported as
    /// [`Event::Login`] when it opens the session, [`Event::MfaFailed`] for a wrong code.
    ///
    /// # Errors
    /// `InvalidMfaToken` (unknown, used, expired, dead, or the user changed meanwhile),
    /// `InvalidCode`, `RateLimited`, `Busy`.
    pub async fn login_code(
        &self,
        mfa_token: &str,
        code: &str,
        client: IpAddr,
        user_agent: Option<&str>,
        now: UnixTime,
    ) -> Result<TokenPair, AuthError> {
        let family = FamilyId::new();
        let first = refresh::mint(&self.refresh_key, family.0, 0, &self.random()?);
        let user = self
            .complete(
                mfa_token,
                code,
                SessionKind::Api,
                family,
                first.hash,
                client,
                user_agent,
                now,
            )
            .await?;
        self.pair(&user, family, first.token, true, now)
    }

    /// The second step of a browser sign-in (`POST /login/totp`); as
    /// [`login_code`](Self::login_code), but the session is a browser session whose cookie
    /// the answer sets.
    ///
    /// # Errors
    /// As [`login_code`](Self::login_code).
    pub async fn sign_in_code(
        &self,
        mfa_token: &str,
        code: &str,
        client: IpAddr,
        user_agent: Option<&str>,
        now: UnixTime,
    ) -> Result<(Opaque, User), AuthError> {
        let (cookie, hash) = Opaque::mint(&self.random()?);
        let user = self
            .complete(
                mfa_token,
                code,
                SessionKind::Browser,
                FamilyId::new(),
                hash,
                client,
                user_agent,
                now,
            )
            .await?;
        Ok((cookie, user))
    }

    /// Stores a challenge for `user`, whose password was just checked, and answers its token.
    pub(super) async fn challenge(
        &self,
        user: &User,
        kind: SessionKind,
        now: UnixTime,
    ) -> Result<Opaque, AuthError> {
        let (token, hash) = Opaque::mint(&self.random()?);
        let challenge = MfaChallenge {
            user: user.id,
            token_version: user.token_version,
            password_hash: user.password_hash.clone(),
            kind,
            expires_at: now.plus(MFA_TOKEN_SECS),
            failures: 0,
        };
        self.storage.open_challenge(hash, challenge).await?;
        self.emit(&Event::Login {
            outcome: LoginOutcome::MfaRequired,
            user: Some(user.id),
        });
        Ok(token)
    }

    /// Checks `code` for the challenge of `mfa_token` and, if it is right, opens session
    /// `family` of `kind` whose first token hashes to `first_hash`; answers its user.
    #[allow(clippy::too_many_arguments)]
    async fn complete(
        &self,
        mfa_token: &str,
        code: &str,
        kind: SessionKind,
        family: FamilyId,
        first_hash: [u8; 32],
        client: IpAddr,
        user_agent: Option<&str>,
        now: UnixTime,
    ) -> Result<User, AuthError> {
        let hash = opaque_hash(mfa_token).ok_or(AuthError::InvalidMfaToken)?;
        let challenge = self
            .storage
            .challenge(hash, now)
            .await?
            // A browser's challenge opens a browser session only, and an API one API tokens.
            .filter(|c| c.kind == kind)
            .ok_or(AuthError::InvalidMfaToken)?;
        let user = self
            .storage
            .user(challenge.user)
            .await?
            .ok_or(AuthError::InvalidMfaToken)?;
        self.limiter.admit(&user.email, client, now)?;
        let on = self
            .storage
            .totp(user.id)
            .await?
            .filter(Totp::is_on)
            .ok_or(AuthError::InvalidMfaToken)?;
        let Some(factor) = self.second_factor(&on, code, client, now).await? else {
            return Err(self.wrong_code(hash, user.id, client, now).await);
        };
        let done = self
            .storage
            .complete_challenge(
                hash,
                factor,
                family,
                first_hash,
                Origin::new(user_agent, Some(client)),
                now,
                self.session,
                AuditNote::new(AuditEvent::Login, now).client(Some(client)),
            )
            .await?;
        match done {
            MfaCompletion::Opened {
                user,
                recovery_left,
            } => {
                self.limiter.succeeded(&user.email, client, now);
                if let Some(left) = recovery_left {
                    self.emit(&Event::RecoveryCodeUsed {
                        user: user.id,
                        left,
                    });
                }
                self.emit(&Event::Login {
                    outcome: LoginOutcome::Ok,
                    user: Some(user.id),
                });
                Ok(user)
            }
            MfaCompletion::Spent => Err(self.wrong_code(hash, user.id, client, now).await),
            MfaCompletion::UnknownChallenge | MfaCompletion::Stale => {
                Err(AuthError::InvalidMfaToken)
            }
        }
    }

    /// Counts a wrong code against its challenge (the sixth ends it) and reports it.
    async fn wrong_code(
        &self,
        hash: [u8; 32],
        user: UserId,
        client: IpAddr,
        now: UnixTime,
    ) -> AuthError {
        let ends_at = MFA_WRONG_CODES_SURVIVED.saturating_add(1);
        let note = AuditNote::new(AuditEvent::MfaFailed, now)
            .user(user)
            .client(Some(client));
        if let Err(e) = self.storage.fail_challenge(hash, ends_at, now, note).await {
            return e.into();
        }
        self.emit(&Event::MfaFailed { user });
        AuthError::InvalidCode
    }

    /// What `code` proves against `on`: a TOTP code of a fresh step in the window, or one of
    /// the stored recovery codes; `None` if it is neither. A recovery code costs one
    /// derivation, charged to `client`'s hashing budget.
    async fn second_factor(
        &self,
        on: &Totp,
        code: &str,
        client: IpAddr,
        now: UnixTime,
    ) -> Result<Option<SecondFactor>, AuthError> {
        let secret = TotpSecret::from_bytes(on.secret);
        match totp::verify(&secret, code, now, on.last_step) {
            Ok(step) => return Ok(Some(SecondFactor::Step(step))),
            Err(totp::TotpError::Malformed) => {}
            Err(_) => return Ok(None), // wrong, or a step already used
        }
        let Some(normalized) = recovery::normalize(code) else {
            return Ok(None);
        };
        self.limiter.admit_hashing(client, now)?;
        let (salt, stored, iterations) = (
            on.recovery_salt,
            on.recovery.clone(),
            self.hasher.iterations(),
        );
        let found = self
            .hashing(move || {
                password::code_matches(&normalized, &salt, iterations, &stored)
                    .and_then(|i| stored.get(i).copied())
            })
            .await?;
        Ok(found.map(SecondFactor::Recovery))
    }

    /// The hashes of `codes` under `salt`, computed on the hashing pool.
    async fn hash_codes(
        &self,
        codes: &[RecoveryCode; recovery::CODES],
        salt: [u8; password::SALT_BYTES],
    ) -> Result<Vec<[u8; 32]>, AuthError> {
        let plain: Vec<String> = codes.iter().map(|c| c.as_str().to_owned()).collect();
        let iterations = self.hasher.iterations();
        self.hashing(move || {
            plain
                .iter()
                .map(|code| password::hash_code(code, &salt, iterations))
                .collect()
        })
        .await
    }

    /// Checks `password` as the user's current one, counted like a login attempt; with
    /// [`Settle::Later`] a right one still counts as a failure until the caller's next step
    /// succeeds.
    pub(super) async fn confirm_password(
        &self,
        user: &User,
        password: &str,
        client: IpAddr,
        now: UnixTime,
        settle: Settle,
    ) -> Result<(), AuthError> {
        if password.len() > password::MAX_PASSWORD_BYTES {
            return Err(AuthError::WrongPassword);
        }
        self.limiter.admit_hashing(client, now)?;
        self.limiter.admit(&user.email, client, now)?;
        if self.verify_password(password, &user.password_hash).await? != password::Verified::Match {
            return Err(AuthError::WrongPassword);
        }
        if settle == Settle::Now {
            self.limiter.succeeded(&user.email, client, now);
        }
        Ok(())
    }

    /// The user with this id, who must still exist.
    async fn existing(&self, user: UserId) -> Result<User, AuthError> {
        self.storage
            .user(user)
            .await?
            .ok_or(AuthError::Revoked(crate::model::AccessDenied::UnknownUser))
    }
}

/// The enrolment of `secret` for the account `email`.
fn enrolment(secret: &[u8; totp::SECRET_BYTES], email: &str) -> Enrolment {
    let secret = TotpSecret::from_bytes(*secret);
    Enrolment {
        secret: secret.to_base32(),
        otpauth_uri: totp::otpauth_uri(&secret, email),
    }
}
