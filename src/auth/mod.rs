//! Use cases: where tokens, storage and passwords meet. No HTTP, no async.
//!
//! Every method is synchronous. Those that hash a password or commit to disk block for
//! milliseconds to hundreds of milliseconds; the HTTP layer runs them off its async workers.
//! [`Authority::verify_access`] does neither: it is pure CPU plus the store's in-memory view.

mod error;
pub mod limiter;

pub use error::AuthError;

use std::net::IpAddr;

use ring::rand::{SecureRandom, SystemRandom};

use self::limiter::{LimitPolicy, LoginLimiter};
use crate::config::Config;
use crate::metrics::{LoginOutcome, Metrics, RefreshOutcome};
use crate::password::{Hasher, PasswordPolicy, Verified};
use crate::store::{
    CreateUser, FamilyId, Jti, Presented, Rotation, SessionPolicy, Store, StoredKey, Successor,
    User, UserId, UserUpdate,
};
use crate::time::UnixTime;
use crate::token::refresh::{self, RefreshToken};
use crate::token::{AccessClaims, AccessTokens, KeySecret, Keyring, Policy, RefreshKey};

/// Longest email accepted, in bytes (RFC 5321 §4.5.3.1.3 path limit, less the brackets).
pub const MAX_EMAIL_BYTES: usize = 254;

/// Who presented a valid access token.
#[derive(Clone, Debug)]
pub struct Principal {
    /// The user.
    pub user: UserId,
    /// The session (refresh family) the token belongs to.
    pub family: FamilyId,
    /// The token's id.
    pub jti: Jti,
    /// Roles at issue time.
    pub roles: Vec<String>,
    /// The token's expiry.
    pub exp: UnixTime,
}

impl Principal {
    /// Whether the token carries `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// A new access token and refresh token, as login and refresh hand them out.
#[derive(Debug)]
pub struct TokenPair {
    /// The signed access token.
    pub access_token: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// The refresh token.
    pub refresh_token: RefreshToken,
}

/// What the signing-key setup did at start, for one log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// `LATCHD_SIGNING_KEY` signs.
    Configured,
    /// A key stored in the database signs.
    Stored,
    /// No key existed: one was generated and stored.
    Generated,
}

/// The auth use cases over one store.
#[derive(Debug)]
pub struct Authority {
    store: Store,
    tokens: AccessTokens,
    refresh_key: RefreshKey,
    hasher: Hasher,
    password_policy: PasswordPolicy,
    session: SessionPolicy,
    access_ttl_secs: i64,
    limiter: LoginLimiter,
    rng: SystemRandom,
    metrics: Metrics,
}

impl Authority {
    /// Builds the authority: sets up the keyring (configured key, else the stored ones, else a
    /// freshly generated and persisted key) and the password hasher.
    pub fn new(config: &Config, store: Store) -> Result<(Self, KeySource), AuthError> {
        let rng = SystemRandom::new();
        let (keyring, source) = keyring(config, &store, &rng)?;
        let refresh_key = RefreshKey::new(&store.refresh_mac_key()?);
        let authority = Self {
            tokens: AccessTokens::new(
                keyring,
                Policy::new(
                    &config.issuer,
                    &config.audience,
                    &config.client_id,
                    config.leeway_secs,
                ),
            ),
            refresh_key,
            hasher: Hasher::new(config.pbkdf2_iterations)?,
            password_policy: PasswordPolicy::new(config.password_min)?,
            session: SessionPolicy {
                refresh_ttl_secs: config.refresh_ttl_secs,
                session_max_secs: config.session_max_secs,
                grace_secs: config.refresh_grace_secs,
                max_per_user: config.max_sessions_per_user,
            },
            access_ttl_secs: config.access_ttl_secs,
            limiter: LoginLimiter::new(LimitPolicy {
                account_failures: config.login_account_failures,
                address_failures_per_min: config.login_address_per_min,
                address_hashes_per_min: config.hash_address_per_min,
                ..LimitPolicy::default()
            }),
            store,
            rng,
            metrics: Metrics::new(),
        };
        Ok((authority, source))
    }

    /// The store, for counts and the sweeper.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The counters the use cases feed, for `GET /metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The kid new access tokens are signed with.
    pub fn signer_kid(&self) -> &str {
        self.tokens.keyring().signer_kid()
    }

    /// Registers a user with no roles (`POST /v1/users`).
    pub fn register(&self, email: &str, password: &str, now: UnixTime) -> Result<User, AuthError> {
        let user = self.create_user(email, password, &[], now)?;
        self.metrics.record_registration();
        Ok(user)
    }

    /// Creates a user with `roles` (`latchd user add`).
    pub fn create_user(
        &self,
        email: &str,
        password: &str,
        roles: &[String],
        now: UnixTime,
    ) -> Result<User, AuthError> {
        let email = check_email(email)?;
        self.password_policy
            .check(password, email)
            .map_err(AuthError::WeakPassword)?;
        let hash = self.hasher.hash(password)?;
        match self.store.create_user(email, hash.as_str(), roles, now)? {
            CreateUser::Created(user) => Ok(user),
            CreateUser::EmailTaken => Err(AuthError::EmailTaken),
        }
    }

    /// Whether a login for `email` from `client` would pass the rate limiter at `now`, changing
    /// nothing. Cheap (no hashing, no disk): lets the HTTP layer refuse a flood before it queues
    /// for the hashing pool. [`login`](Self::login) checks again, and counts the attempt.
    ///
    /// # Errors
    /// [`AuthError::RateLimited`], alike for registered and unknown emails.
    pub fn check_login_allowed(
        &self,
        email: &str,
        client: IpAddr,
        now: UnixTime,
    ) -> Result<(), AuthError> {
        let allowed = self.limiter.check(email, client, now);
        if allowed.is_err() {
            self.metrics.record_login(LoginOutcome::RateLimited);
        }
        Ok(allowed?)
    }

    /// Charges one password hash to `client` (registration, login, password change), before
    /// the work is queued for the hashing pool; successes count like failures.
    ///
    /// # Errors
    /// [`AuthError::RateLimited`] when the address has used its hashing budget.
    pub fn admit_hashing(&self, client: IpAddr, now: UnixTime) -> Result<(), AuthError> {
        Ok(self.limiter.admit_hashing(client, now)?)
    }

    /// Checks a password and opens a new session (`POST /v1/auth/login`) for a request from
    /// `client`.
    ///
    /// The rate limiter (see [`limiter`]) is asked first, before any hashing; the attempt then
    /// counts as a failure unless the password matches an enabled account. An unknown email
    /// still costs one full hash, so the answer's timing does not tell whether the account
    /// exists; a disabled account reads like a wrong password. Counted in
    /// `latchd_logins_total` as `ok`, `failed` or `rate_limited`; storage and RNG failures are
    /// not counted.
    pub fn login(
        &self,
        email: &str,
        password: &str,
        client: IpAddr,
        now: UnixTime,
    ) -> Result<TokenPair, AuthError> {
        let result = self.open_session(email, password, client, now);
        match &result {
            Ok(_) => self.metrics.record_login(LoginOutcome::Ok),
            Err(AuthError::BadCredentials) => self.metrics.record_login(LoginOutcome::Failed),
            Err(AuthError::RateLimited { .. }) => {
                self.metrics.record_login(LoginOutcome::RateLimited);
            }
            // A storage or RNG failure says nothing about the credentials.
            Err(_) => {}
        }
        result
    }

    fn open_session(
        &self,
        email: &str,
        password: &str,
        client: IpAddr,
        now: UnixTime,
    ) -> Result<TokenPair, AuthError> {
        self.limiter.admit(email, client, now)?;
        let Some(mut user) = self.store.user_by_email(email)? else {
            self.hasher.verify_dummy(password);
            return Err(AuthError::BadCredentials);
        };
        if self.hasher.verify(password, &user.password_hash)? != Verified::Match || user.disabled {
            return Err(AuthError::BadCredentials);
        }
        self.limiter.succeeded(email, client, now);
        if self.hasher.needs_rehash(&user.password_hash) {
            // The work factor was raised since this hash was made: upgrade it now that the
            // plaintext is at hand. Failing to does not fail the login.
            if let Ok(hash) = self.hasher.hash(password) {
                if self
                    .store
                    .upgrade_password_hash(user.id, &user.password_hash, hash.as_str())?
                {
                    // Our own upgrade is not a credential change: the session below checks
                    // against the hash now stored.
                    user.password_hash = hash.into_string();
                } else {
                    // The hash changed meanwhile: another login's upgrade (the same password,
                    // so still fine) or a password change (then this password is wrong now).
                    user = self.store.user(user.id)?.ok_or(AuthError::BadCredentials)?;
                    if self.hasher.verify(password, &user.password_hash)? != Verified::Match {
                        return Err(AuthError::BadCredentials);
                    }
                }
            }
        }
        let family = Store::new_family_id();
        let first = refresh::mint(&self.refresh_key, family.0, 0, &self.random()?);
        if !self
            .store
            .create_family(family, &user, &first.hash, now, &self.session)?
        {
            // Disabled, deleted, revoked or given a new password while the hash ran.
            return Err(AuthError::BadCredentials);
        }
        self.pair(&user, family, first.token, now)
    }

    /// Rotates a refresh token (`POST /v1/auth/refresh`); see API.md "Refresh rotation".
    /// Counted in `latchd_refreshes_total` by what the store did with the token (or `invalid`
    /// when it is not a refresh token at all).
    pub fn refresh(&self, presented: &str, now: UnixTime) -> Result<TokenPair, AuthError> {
        let Ok(presented) = refresh::parse(&self.refresh_key, presented.as_bytes()) else {
            self.metrics.record_refresh(RefreshOutcome::Invalid);
            return Err(AuthError::InvalidGrant);
        };
        let family = FamilyId(presented.family);
        let next_random = self.random()?;
        let next_generation = presented.generation.saturating_add(1);
        let next = refresh::mint(&self.refresh_key, family.0, next_generation, &next_random);
        let outcome = self.store.rotate(
            &Presented {
                family,
                generation: presented.generation,
                hash: presented.hash,
            },
            &Successor {
                hash: next.hash,
                sealed: presented.seal(&next_random),
            },
            now,
            &self.session,
        )?;
        self.metrics.record_refresh(refresh_outcome(&outcome));
        let (user, token) = match outcome {
            Rotation::Rotated { user, .. } => (user, next.token),
            Rotation::Retried {
                user,
                generation,
                sealed,
                ..
            } => {
                // Same successor again: only the holder of the superseded token can unseal it.
                let again = refresh::mint(
                    &self.refresh_key,
                    family.0,
                    generation,
                    &presented.unseal(&sealed),
                );
                (user, again.token)
            }
            Rotation::Reused { user, family } => {
                tracing::warn!(%user, %family, "refresh token reuse: family revoked");
                return Err(AuthError::InvalidGrant);
            }
            Rotation::Expired | Rotation::Revoked | Rotation::Unknown => {
                return Err(AuthError::InvalidGrant)
            }
        };
        let user = self.store.user(user)?.ok_or(AuthError::InvalidGrant)?;
        if user.disabled {
            return Err(AuthError::InvalidGrant);
        }
        self.pair(&user, family, token, now)
    }

    /// Verifies an access token: the token rules, then its state in memory (blacklist, token
    /// version, user, family). No disk access, no write.
    ///
    /// Every call is counted in `latchd_verifications_total`, whichever route made it.
    pub fn verify_access(&self, token: &[u8], now: UnixTime) -> Result<Principal, AuthError> {
        let claims = self.tokens.verify(token, now).inspect_err(|e| {
            self.metrics.record_token_rejected(*e);
        })?;
        let principal = Principal {
            user: UserId(claims.sub),
            family: FamilyId(claims.sid),
            jti: Jti(claims.jti),
            roles: claims.roles,
            exp: claims.exp,
        };
        if let Err(denied) =
            self.store
                .check_access(principal.user, principal.family, principal.jti, claims.ver)
        {
            self.metrics.record_access_denied(denied);
            return Err(AuthError::Revoked(denied));
        }
        self.metrics.record_verified();
        Ok(principal)
    }

    /// Ends the caller's session: its access token's jti is blacklisted until it expires, and
    /// its refresh family is revoked (`POST /v1/auth/logout`).
    pub fn logout(&self, principal: &Principal, now: UnixTime) -> Result<(), AuthError> {
        self.store.blacklist(principal.jti, principal.exp)?;
        self.store.revoke_family(principal.family, now)?;
        Ok(())
    }

    /// Ends every session of the caller (`POST /v1/auth/logout-all`).
    pub fn logout_all(&self, principal: &Principal, now: UnixTime) -> Result<(), AuthError> {
        self.revoke_user(principal.user, now)
    }

    /// Ends every session of `user`: its token version is bumped, so all its access tokens
    /// stop verifying, and all its families are revoked.
    pub fn revoke_user(&self, user: UserId, now: UnixTime) -> Result<(), AuthError> {
        if self.store.revoke_all_for_user(user, now)? {
            Ok(())
        } else {
            Err(AuthError::NotFound)
        }
    }

    /// Deletes `user` and all its sessions (`DELETE /v1/admin/users/{id}`, `latchd user delete`).
    ///
    /// # Errors
    /// [`AuthError::NotFound`]; [`AuthError::LastAdmin`] for the last enabled admin.
    pub fn delete_user(&self, user: UserId) -> Result<(), AuthError> {
        update_result(self.store.delete_user(user)?)
    }

    /// The caller's account (`GET /v1/auth/me`).
    pub fn me(&self, principal: &Principal) -> Result<User, AuthError> {
        self.store
            .user(principal.user)?
            .ok_or(AuthError::Revoked(crate::store::AccessDenied::UnknownUser))
    }

    /// Changes the caller's password and revokes every other session in the same write
    /// (`PUT /v1/users/me/password`). The caller's own session keeps working.
    ///
    /// Guesses of `current` count against the same rate limits as logins (the account's
    /// email and `client`), so a stolen access token cannot be used to guess the password.
    pub fn change_password(
        &self,
        principal: &Principal,
        current: &str,
        new: &str,
        client: IpAddr,
        now: UnixTime,
    ) -> Result<(), AuthError> {
        let user = self.me(principal)?;
        self.limiter.admit(&user.email, client, now)?;
        if self.hasher.verify(current, &user.password_hash)? != Verified::Match {
            return Err(AuthError::WrongPassword);
        }
        self.limiter.succeeded(&user.email, client, now);
        self.password_policy
            .check(new, &user.email)
            .map_err(AuthError::WeakPassword)?;
        let hash = self.hasher.hash(new)?;
        if self.store.change_password(
            user.id,
            &user.password_hash,
            hash.as_str(),
            Some(principal.family),
            now,
        )? {
            Ok(())
        } else {
            // Changed, revoked or disabled since the check: the caller must sign in again.
            Err(AuthError::Revoked(
                crate::store::AccessDenied::FamilyRevoked,
            ))
        }
    }

    fn pair(
        &self,
        user: &User,
        family: FamilyId,
        refresh_token: RefreshToken,
        now: UnixTime,
    ) -> Result<TokenPair, AuthError> {
        let mut jti = [0u8; 16];
        self.rng
            .fill(&mut jti)
            .map_err(|_| AuthError::Password(crate::password::PasswordError::Random))?;
        let claims = AccessClaims {
            sub: user.id.0,
            sid: family.0,
            jti: uuid::Builder::from_random_bytes(jti).into_uuid(),
            ver: user.token_version,
            roles: user.roles.clone(),
            iat: now,
            nbf: now,
            exp: now.plus(self.access_ttl_secs),
        };
        Ok(TokenPair {
            access_token: self.tokens.sign(&claims),
            expires_in: self.access_ttl_secs,
            refresh_token,
        })
    }

    fn random(&self) -> Result<[u8; 32], AuthError> {
        let mut out = [0u8; 32];
        self.rng
            .fill(&mut out)
            .map_err(|_| AuthError::Password(crate::password::PasswordError::Random))?;
        Ok(out)
    }
}

/// An operator change's outcome as a use-case result.
fn update_result(update: UserUpdate) -> Result<(), AuthError> {
    match update {
        UserUpdate::Done => Ok(()),
        UserUpdate::NoSuchUser => Err(AuthError::NotFound),
        UserUpdate::LastAdmin => Err(AuthError::LastAdmin),
    }
}

/// The label of what the store did with a presented refresh token.
fn refresh_outcome(rotation: &Rotation) -> RefreshOutcome {
    match rotation {
        Rotation::Rotated { .. } => RefreshOutcome::Rotated,
        Rotation::Retried { .. } => RefreshOutcome::Retried,
        Rotation::Reused { .. } => RefreshOutcome::Reused,
        Rotation::Expired => RefreshOutcome::Expired,
        Rotation::Revoked => RefreshOutcome::Revoked,
        Rotation::Unknown => RefreshOutcome::Unknown,
    }
}

/// A trimmed email that is plausibly an address: `local@domain`, both parts non-empty, no
/// whitespace or control characters, at most `MAX_EMAIL_BYTES`. Deliverability is not checked.
fn check_email(email: &str) -> Result<&str, AuthError> {
    let email = email.trim();
    if email.len() > MAX_EMAIL_BYTES {
        return Err(AuthError::InvalidEmail("email is too long"));
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err(AuthError::InvalidEmail("email must contain @"));
    };
    if local.is_empty() || domain.is_empty() || domain.starts_with('.') || domain.ends_with('.') {
        return Err(AuthError::InvalidEmail("email must be local@domain"));
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(AuthError::InvalidEmail("email must not contain spaces"));
    }
    Ok(email)
}

/// The keyring at start: the configured key signs if there is one; otherwise the newest
/// stored key that is not retired; otherwise a new 256-bit key is generated and stored.
/// Every stored key verifies, so tokens signed before a rotation keep working.
fn keyring(
    config: &Config,
    store: &Store,
    rng: &SystemRandom,
) -> Result<(Keyring, KeySource), AuthError> {
    let now = UnixTime::now();
    if config.signing_key.is_some() {
        // The configured key takes over: stored keys keep verifying for one access TTL, then
        // stop (an operator switching away from a leaked key wants that).
        store.retire_signing_keys(now)?;
    }
    let stored = store.signing_keys()?;
    let secret_of = |k: &StoredKey| KeySecret::from_bytes(k.secret.clone()).ok();
    let live: Vec<KeySecret> = stored
        .iter()
        .filter(|k| k.retired_at.is_none())
        .filter_map(secret_of)
        .collect();
    let (signer, source) = if let Some(configured) = &config.signing_key {
        (configured.clone(), KeySource::Configured)
    } else if let Some(newest) = live.last() {
        (newest.clone(), KeySource::Stored)
    } else {
        (add_new_signing_key(store, rng, now)?, KeySource::Generated)
    };
    // Retired keys verify until one access TTL after their retirement, in this process too:
    // the sweeper deleting the row would not take them out of a running keyring.
    let mut keys = Keyring::new(&signer, &live);
    for key in &stored {
        let Some(retired_at) = key.retired_at else {
            continue;
        };
        let not_after = retired_at.plus(config.access_ttl_secs);
        if let (true, Some(secret)) = (now <= not_after, secret_of(key)) {
            keys = keys.with_retiring(&secret, not_after);
        }
    }
    Ok((keys, source))
}

/// Generates a 256-bit signing key and stores it as the newest, retiring every other stored
/// key at `now` (they keep verifying for one access TTL): first start and `latchd key rotate`.
pub fn add_new_signing_key(
    store: &Store,
    rng: &SystemRandom,
    now: UnixTime,
) -> Result<KeySecret, AuthError> {
    let secret = generate_key(rng)?;
    store.add_signing_key(
        &StoredKey {
            kid: secret.kid(),
            secret: secret.as_bytes().to_vec(),
            created_at: now,
            retired_at: None,
        },
        Some(now),
    )?;
    Ok(secret)
}

/// A fresh 256-bit signing key from the system RNG.
pub fn generate_key(rng: &SystemRandom) -> Result<KeySecret, AuthError> {
    let mut bytes = vec![0u8; 32];
    rng.fill(&mut bytes)
        .map_err(|_| AuthError::Password(crate::password::PasswordError::Random))?;
    KeySecret::from_bytes(bytes)
        .map_err(|_| AuthError::Password(crate::password::PasswordError::Random))
}

#[cfg(test)]
mod tests;
