//! The one door: every use case of latchd, the operator ones included, and the decision who
//! may perform it. HTTP handlers and CLI commands call [`Authority`] and nothing below it.
//!
//! What it owns: the token keyring and policy, the password hasher and its thread pool, the
//! login limiter, and the [`Storage`] port that backends implement. What it reports: an
//! [`Event`] per thing that happened, to its subscribers (metrics counts them). What it must
//! not know: HTTP, redb, configuration sources, or any subscriber's own API.
//!
//! Use cases that hash or write are `async`: hashing runs on the [`hashing`] pool and a write
//! resolves when the storage backend has committed it, so no async worker ever blocks on
//! either. [`Authority::verify_access`] is synchronous: pure CPU plus storage's in-memory view.

mod error;
pub mod event;
pub mod hashing;
pub mod limiter;
mod mfa;
mod oauth;
mod random;
pub mod storage;

/// What the use cases hand out: a session cookie or an `mfa_token` ([`Opaque`]), the recovery
/// codes of an enrolment ([`RecoveryCode`]).
pub use crate::token::opaque::Opaque;
pub use crate::token::recovery::RecoveryCode;
pub use error::AuthError;
pub use mfa::{Enrolment, SignIn, TotpStatus, MFA_TOKEN_SECS, MFA_WRONG_CODES_SURVIVED};
pub use oauth::{ActiveAccess, Introspection, INTROSPECT_ROLE};

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use ring::rand::{SecureRandom, SystemRandom};

use self::event::{Event, LoginOutcome, RefreshOutcome, Rejection, Subscriber};
use self::hashing::{HashPool, HashPriority, PoolError};
use self::limiter::{LimitPolicy, LoginLimiter};
use self::storage::Storage;
use crate::model::{
    AccessDenied, AuditActor, AuditEvent, AuditNote, AuditQuery, AuditRow, Counts, CreateUser,
    FamilyId, Jti, NewSession, NewUser, Origin, Presented, Rotation, SessionInfo, SessionKind,
    SessionPolicy, StoredKey, Successor, Sweep, User, UserId, UserUpdate, ADMIN_ROLE,
};
use crate::password::{Hasher, PasswordPolicy, Verified, WeakPassword, MAX_PASSWORD_BYTES};
use crate::time::UnixTime;
use crate::token::browser;
use crate::token::opaque::opaque_hash;
use crate::token::refresh::{self, RefreshToken};
use crate::token::{
    AccessClaims, AccessTokens, FormKey, KeySecret, Keyring, Policy, RefreshKey, Strings,
};

/// Longest email accepted, in bytes (RFC 5321 §4.5.3.1.3 path limit, less the brackets).
pub const MAX_EMAIL_BYTES: usize = 254;
/// Longest role name, in characters (all ASCII).
pub const MAX_ROLE_CHARS: usize = 64;
/// RFC 8176 `amr` value of a password sign-in.
pub const AMR_PASSWORD: &str = "pwd";
/// RFC 8176 `amr` value of a one-time password (a TOTP or recovery code) as second factor.
pub const AMR_OTP: &str = "otp";

/// What the use cases are configured with. `Default` holds the contract's defaults (the
/// configuration layer checks that its own defaults agree).
#[derive(Clone, Debug)]
pub struct Settings {
    /// `iss` to put and demand.
    pub issuer: String,
    /// `aud` to put and demand.
    pub audience: String,
    /// `client_id` claim of access tokens.
    pub client_id: String,
    /// Clock skew allowed on `exp`, `nbf`, `iat`.
    pub leeway_secs: u32,
    /// Access-token lifetime; also how long ended sessions and retired keys are kept.
    pub access_ttl_secs: i64,
    /// Session lifetimes and the per-user cap.
    pub session: SessionPolicy,
    /// Minimum password length in characters.
    pub password_min: usize,
    /// PBKDF2 work factor for new hashes.
    pub pbkdf2_iterations: NonZeroU32,
    /// The login and hashing rate limits.
    pub limits: LimitPolicy,
    /// Threads of the hashing pool (password hashes computed at once).
    pub hash_threads: usize,
    /// Scheduling of the hashing threads.
    pub hash_priority: HashPriority,
    /// Whether anyone may register (else only admins).
    pub open_registration: bool,
    /// A configured signing key, which signs instead of the stored ones.
    pub signing_key: Option<KeySecret>,
    /// How long audit rows are kept before the sweep deletes them.
    pub audit_retention_secs: i64,
}

/// Default time audit rows are kept (90 days).
pub const DEFAULT_AUDIT_RETENTION_SECS: i64 = 7_776_000;
/// Default access-token lifetime.
pub const DEFAULT_ACCESS_TTL_SECS: i64 = 900;
/// Default sliding lifetime of one refresh token (14 days).
pub const DEFAULT_REFRESH_TTL_SECS: i64 = 1_209_600;
/// Default absolute lifetime of a session (30 days).
pub const DEFAULT_SESSION_MAX_SECS: i64 = 2_592_000;
/// Default clock-skew allowance.
pub const DEFAULT_LEEWAY_SECS: u32 = 5;
/// Default retry grace for the just-rotated refresh token.
pub const DEFAULT_REFRESH_GRACE_SECS: i64 = 10;
/// Default cap on one user's live sessions; a new one past it revokes the oldest.
pub const DEFAULT_MAX_SESSIONS_PER_USER: usize = 100;
/// Default time a browser session stays valid without use (a day).
pub const DEFAULT_SESSION_IDLE_SECS: i64 = 86_400;

impl Default for Settings {
    fn default() -> Self {
        Self {
            issuer: "latchd".to_owned(),
            audience: "latchd".to_owned(),
            client_id: "latchd".to_owned(),
            leeway_secs: DEFAULT_LEEWAY_SECS,
            access_ttl_secs: DEFAULT_ACCESS_TTL_SECS,
            session: SessionPolicy {
                refresh_ttl_secs: DEFAULT_REFRESH_TTL_SECS,
                session_max_secs: DEFAULT_SESSION_MAX_SECS,
                grace_secs: DEFAULT_REFRESH_GRACE_SECS,
                max_per_user: DEFAULT_MAX_SESSIONS_PER_USER,
                idle_secs: DEFAULT_SESSION_IDLE_SECS,
            },
            password_min: crate::password::DEFAULT_MIN_CHARS,
            pbkdf2_iterations: crate::password::DEFAULT_ITERATIONS,
            limits: LimitPolicy::default(),
            hash_threads: hashing::default_threads(),
            hash_priority: hashing::DEFAULT_PRIORITY,
            open_registration: true,
            signing_key: None,
            audit_retention_secs: DEFAULT_AUDIT_RETENTION_SECS,
        }
    }
}

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
    pub roles: Strings,
    /// The token's expiry.
    pub exp: UnixTime,
    /// Whether the session passed a second factor (`amr` holds `otp`).
    pub mfa: bool,
    /// The address the request came from, as the HTTP layer tells it (`None` until it does):
    /// the client address of the audit rows an admin's actions write.
    pub client: Option<IpAddr>,
}

impl Principal {
    /// Whether the token carries `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.contains(role)
    }
}

/// Who a forward-auth request is: the user behind a bearer token or a browser session.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The user.
    pub user: UserId,
    /// The session the credential belongs to.
    pub session: FamilyId,
    /// The user's email.
    pub email: Arc<str>,
    /// The roles to judge by: a token's own, a browser session's user's current ones.
    pub roles: Arc<[String]>,
    /// Whether the sign-in passed a second factor.
    pub mfa: bool,
}

impl Identity {
    /// Whether the identity holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// On whose authority an operator use case runs.
#[derive(Clone, Copy, Debug)]
pub enum Actor<'a> {
    /// A caller of the HTTP API, with the access token it presented.
    Caller(&'a Principal),
    /// The operator at the machine: the CLI, with access to the database itself.
    Operator,
}

/// The configured `iss`, `aud` and `client_id`, as introspection shows them.
#[derive(Clone, Debug)]
struct Names {
    issuer: String,
    audience: String,
    client_id: String,
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
    /// The configured key signs.
    Configured,
    /// A stored key signs.
    Stored,
    /// No key existed: one was generated and stored.
    Generated,
}

/// The auth use cases over one storage backend.
pub struct Authority {
    storage: Arc<dyn Storage>,
    /// Swapped whole by [`Authority::rotate_signing_key`]; verify and sign hold the read lock
    /// only for their own call (no I/O under it).
    tokens: std::sync::RwLock<AccessTokens>,
    /// What the token policy is rebuilt from when the keyring changes.
    token_policy: TokenPolicy,
    /// Held across a rotation's write and swap, so that rotations apply in order.
    rotating: tokio::sync::Mutex<()>,
    refresh_key: RefreshKey,
    form_key: FormKey,
    hasher: Arc<Hasher>,
    pool: HashPool,
    password_policy: PasswordPolicy,
    session: SessionPolicy,
    access_ttl_secs: i64,
    audit_retention_secs: i64,
    limiter: LoginLimiter,
    open_registration: bool,
    key_configured: bool,
    /// For signing keys and other lasting secrets, which come straight from the kernel.
    rng: SystemRandom,
    /// For per-request tokens and ids (refresh tokens, jti, cookies, nonces).
    random: random::RandomPool,
    names: Names,
    subscribers: Vec<Arc<dyn Subscriber>>,
    /// Users whose TOTP enrolment is being confirmed here (see [`mfa`]).
    confirming: std::sync::Mutex<std::collections::HashSet<UserId>>,
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authority")
            .field("storage", &self.storage)
            .field("signer", &self.signer_kid())
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// Sets up the use cases over `storage`: the keyring (the configured key, else the newest
    /// stored one, else a freshly generated and stored key), the hasher and its pool.
    /// `subscribers` hear of every event.
    pub async fn open(
        settings: Settings,
        storage: Arc<dyn Storage>,
        subscribers: Vec<Arc<dyn Subscriber>>,
    ) -> Result<(Self, KeySource), AuthError> {
        let rng = SystemRandom::new();
        let now = UnixTime::now();
        let (keyring, source) = keyring(&settings, storage.as_ref(), &rng, now).await?;
        let token_policy = TokenPolicy {
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            client_id: settings.client_id.clone(),
            leeway_secs: settings.leeway_secs,
        };
        let authority = Self {
            tokens: std::sync::RwLock::new(token_policy.tokens(keyring)),
            token_policy,
            rotating: tokio::sync::Mutex::new(()),
            refresh_key: RefreshKey::new(&storage.refresh_mac_key()),
            form_key: FormKey::derive(&storage.refresh_mac_key()),
            hasher: Arc::new(Hasher::new(settings.pbkdf2_iterations)?),
            pool: HashPool::start(settings.hash_threads, settings.hash_priority)
                .map_err(|e| AuthError::Internal(format!("starting the hashing pool: {e}")))?,
            password_policy: PasswordPolicy::new(settings.password_min)?,
            session: settings.session,
            access_ttl_secs: settings.access_ttl_secs,
            audit_retention_secs: settings.audit_retention_secs,
            limiter: LoginLimiter::new(settings.limits),
            open_registration: settings.open_registration,
            key_configured: settings.signing_key.is_some(),
            names: Names {
                issuer: settings.issuer.clone(),
                audience: settings.audience.clone(),
                client_id: settings.client_id.clone(),
            },
            storage,
            rng,
            random: random::RandomPool::new(),
            subscribers,
            confirming: std::sync::Mutex::default(),
        };
        Ok((authority, source))
    }

    /// The kid new access tokens are signed with.
    pub fn signer_kid(&self) -> String {
        self.tokens().keyring().signer_kid().to_owned()
    }

    /// The access-token signer and verifier of this moment.
    fn tokens(&self) -> std::sync::RwLockReadGuard<'_, AccessTokens> {
        // Poisoning cannot leave it half-written: it is only ever replaced whole.
        self.tokens
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sizes of the stored state, from memory.
    pub fn counts(&self) -> Counts {
        self.storage.counts()
    }

    /// What the subscribers show at `GET /metrics`, in the Prometheus text format.
    pub fn exposition(&self) -> String {
        let counts = self.storage.counts();
        let mut out = String::with_capacity(4 * 1024);
        for subscriber in &self.subscribers {
            subscriber.expose(counts, &mut out);
        }
        out
    }

    /// Registers a user with no roles (`POST /v1/users`) for a request from `client`. When
    /// registration is closed, `caller` must be an admin.
    ///
    /// # Errors
    /// `Unauthenticated`/`Forbidden` when closed; `InvalidEmail`, `WeakPassword`,
    /// `RateLimited` (hashing budget), `EmailTaken`, `Busy`.
    pub async fn register(
        &self,
        caller: Option<&Principal>,
        email: &str,
        password: &str,
        client: IpAddr,
        now: UnixTime,
    ) -> Result<User, AuthError> {
        self.check_registration(caller)?;
        let actor = match caller {
            Some(admin) if admin.has_role(ADMIN_ROLE) => AuditActor::Admin(admin.user),
            Some(_) | None => AuditActor::Subject,
        };
        let user = self
            .new_user(email, password, Vec::new(), (actor, Some(client)), now)
            .await?;
        self.emit(&Event::Registered { user: user.id });
        Ok(user)
    }

    /// Whether `caller` may register users: anyone while registration is open, else admins.
    /// [`register`](Self::register) checks it too; the HTTP layer asks first, before it reads
    /// a body.
    ///
    /// # Errors
    /// `Unauthenticated` without a caller, `Forbidden` for a caller without the admin role.
    pub fn check_registration(&self, caller: Option<&Principal>) -> Result<(), AuthError> {
        if self.open_registration {
            return Ok(());
        }
        authorize(Actor::Caller(caller.ok_or(AuthError::Unauthenticated)?))
    }

    /// Creates a user with `roles` on the operator's authority (`latchd user add`).
    ///
    /// # Errors
    /// As [`register`](Self::register), plus `InvalidRole`.
    pub async fn create_user(
        &self,
        actor: Actor<'_>,
        email: &str,
        password: &str,
        roles: &[String],
        now: UnixTime,
    ) -> Result<User, AuthError> {
        authorize(actor)?;
        let roles = valid_roles(roles)?;
        self.new_user(
            email,
            password,
            roles,
            (audit_actor(actor), actor_client(actor)),
            now,
        )
        .await
    }

    /// Checks a password and opens a new session (`POST /v1/auth/login`) for a request from
    /// `client`; for an account with TOTP on, the session waits for a code instead
    /// ([`SignIn::CodeNeeded`], then [`login_code`](Self::login_code)).
    ///
    /// Before any hashing: the password's size, the login limiter (see [`limiter`]), and the
    /// address's hashing budget. The attempt then counts as a failure unless the password
    /// matches an enabled account. An unknown email still costs one full hash, so the answer's
    /// timing does not tell whether the account exists; a disabled account reads like a wrong
    /// password. Reported as [`Event::Login`]; storage and RNG failures are not.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        client: IpAddr,
        user_agent: Option<&str>,
        now: UnixTime,
    ) -> Result<SignIn<TokenPair>, AuthError> {
        let result = self
            .open_session(email, password, client, user_agent, now)
            .await;
        self.report_login(result.as_ref().map(|(_, user)| *user));
        result.map(|(pair, _)| pair)
    }

    async fn open_session(
        &self,
        email: &str,
        password: &str,
        client: IpAddr,
        user_agent: Option<&str>,
        now: UnixTime,
    ) -> Result<(SignIn<TokenPair>, Option<UserId>), AuthError> {
        let user = match self.check_credentials(email, password, client, now).await? {
            Checked::Password(user) => user,
            Checked::NeedsCode(user) => {
                let token = self.challenge(&user, SessionKind::Api, now).await?;
                return Ok((SignIn::CodeNeeded(token), None));
            }
        };
        let family = FamilyId::new();
        let first = refresh::mint(&self.refresh_key, family.0, 0, &self.random()?);
        let opened = self
            .storage
            .open_session(
                family,
                &user,
                first.hash,
                NewSession {
                    kind: SessionKind::Api,
                    mfa: false,
                    origin: Origin::new(user_agent, Some(client)),
                },
                now,
                self.session,
                AuditNote::new(AuditEvent::Login, now).client(Some(client)),
            )
            .await?;
        if !opened {
            // Disabled, deleted, revoked, given a new password or TOTP while the hash ran.
            return Err(self.login_failed(Some(user.id), client, now).await);
        }
        let pair = self.pair(&user, family, first.token, false, now)?;
        Ok((SignIn::Done(pair), Some(user.id)))
    }

    /// Signs a browser in (`POST /login`): the credentials as for [`login`](Self::login), then
    /// a browser session, whose cookie the answer sets, or the code step for an account with
    /// TOTP on ([`sign_in_code`](Self::sign_in_code)). Reported as [`Event::Login`].
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        client: IpAddr,
        user_agent: Option<&str>,
        now: UnixTime,
    ) -> Result<SignIn<(Opaque, User)>, AuthError> {
        let result = self
            .open_browser_session(email, password, client, user_agent, now)
            .await;
        self.report_login(result.as_ref().map(|(_, user)| *user));
        result.map(|(done, _)| done)
    }

    async fn open_browser_session(
        &self,
        email: &str,
        password: &str,
        client: IpAddr,
        user_agent: Option<&str>,
        now: UnixTime,
    ) -> Result<(SignIn<(Opaque, User)>, Option<UserId>), AuthError> {
        let user = match self.check_credentials(email, password, client, now).await? {
            Checked::Password(user) => user,
            Checked::NeedsCode(user) => {
                let token = self.challenge(&user, SessionKind::Browser, now).await?;
                return Ok((SignIn::CodeNeeded(token), None));
            }
        };
        let (cookie, hash) = Opaque::mint(&self.random()?);
        let session = NewSession {
            kind: SessionKind::Browser,
            mfa: false,
            origin: Origin::new(user_agent, Some(client)),
        };
        let opened = self
            .storage
            .open_session(
                FamilyId::new(),
                &user,
                hash,
                session,
                now,
                self.session,
                AuditNote::new(AuditEvent::Login, now).client(Some(client)),
            )
            .await?;
        if !opened {
            return Err(self.login_failed(Some(user.id), client, now).await);
        }
        let id = user.id;
        Ok((SignIn::Done((cookie, user)), Some(id)))
    }

    /// Who presents the browser session cookie `cookie`, from memory only. Reported as
    /// [`Event::Verified`] or [`Event::Rejected`].
    pub fn verify_browser(&self, cookie: &str, now: UnixTime) -> Result<Identity, AuthError> {
        let standing = opaque_hash(cookie)
            .ok_or(AccessDenied::UnknownSession)
            .and_then(|hash| self.storage.check_browser(&hash, now, &self.session));
        let standing = match standing {
            Ok(standing) => standing,
            Err(denied) => {
                self.emit(&Event::Rejected(Rejection::State(denied)));
                return Err(AuthError::Revoked(denied));
            }
        };
        if standing.touch_due {
            self.storage.touch_session(standing.family, now);
        }
        self.emit(&Event::Verified);
        Ok(Identity {
            user: standing.user,
            session: standing.family,
            email: standing.facts.email,
            roles: standing.facts.roles,
            mfa: standing.mfa,
        })
    }

    /// Who a forward-auth request is (`GET /v1/auth/verify`): the bearer token when there is
    /// one, else the browser session cookie. From memory only.
    ///
    /// # Errors
    /// `Unauthenticated` with neither; otherwise what verifying the one presented says.
    pub fn identify(
        &self,
        bearer: Option<&str>,
        cookie: Option<&str>,
        now: UnixTime,
    ) -> Result<Identity, AuthError> {
        match (bearer, cookie) {
            (Some(token), _) => {
                let principal = self.verify_access(token.as_bytes(), now)?;
                let facts = self
                    .storage
                    .user_facts(principal.user)
                    .ok_or(AuthError::Revoked(AccessDenied::UnknownUser))?;
                Ok(Identity {
                    user: principal.user,
                    session: principal.family,
                    email: facts.email,
                    // The token's roles: those it was issued with, which a role change
                    // retires with a version bump.
                    roles: principal.roles.iter().map(str::to_owned).collect(),
                    mfa: principal.mfa,
                })
            }
            (None, Some(cookie)) => self.verify_browser(cookie, now),
            (None, None) => Err(AuthError::Unauthenticated),
        }
    }

    /// Ends the browser session of `cookie` (`POST /logout`), on disk; a cookie that names no
    /// live session ends nothing.
    pub async fn sign_out(
        &self,
        cookie: &str,
        client: IpAddr,
        now: UnixTime,
    ) -> Result<(), AuthError> {
        let Some(hash) = opaque_hash(cookie) else {
            return Ok(());
        };
        match self.storage.check_browser(&hash, now, &self.session) {
            Ok(standing) => {
                let note = AuditNote::new(AuditEvent::Logout, now)
                    .user(standing.user)
                    .client(Some(client));
                self.storage
                    .revoke_session(standing.family, now, note)
                    .await?;
                Ok(())
            }
            // A node that cannot confirm its view cannot tell which session the cookie names:
            // 503, never a sign-out that clears the cookie and leaves the session live.
            Err(AccessDenied::Unconfirmed) => Err(AuthError::Unavailable),
            Err(_) => Ok(()),
        }
    }

    /// The browser's CSRF nonce: `presented` (from its cookie) when it is one latchd mints,
    /// else a fresh one; the flag says whether it is fresh (and so must be set).
    pub fn form_nonce(&self, presented: Option<&str>) -> Result<(String, bool), AuthError> {
        match presented.filter(|n| browser::is_form_nonce(n)) {
            Some(nonce) => Ok((nonce.to_owned(), false)),
            None => Ok((browser::form_nonce(&self.random()?), true)),
        }
    }

    /// The CSRF token the forms of the browser holding `nonce` carry.
    pub fn form_token(&self, nonce: &str) -> String {
        browser::form_token(&self.form_key, nonce)
    }

    /// Whether `token` is the CSRF token of the browser holding `nonce`.
    pub fn form_token_valid(&self, nonce: &str, token: &str) -> bool {
        browser::form_token_valid(&self.form_key, nonce, token)
    }

    /// The user, its password checked: the limits and the hashing budget first, then the hash
    /// (a dummy one for an unknown email), then a work-factor upgrade if one is due. For an
    /// account with TOTP on, the attempt keeps counting as a failure in the limiter until its
    /// code is right (see [`mfa`]).
    async fn check_credentials(
        &self,
        email: &str,
        password: &str,
        client: IpAddr,
        now: UnixTime,
    ) -> Result<Checked, AuthError> {
        if password.len() > MAX_PASSWORD_BYTES {
            // Refused before hashing: a megabyte password must not cost a megabyte of PBKDF2.
            return Err(AuthError::BadCredentials);
        }
        self.limiter.check(email, client, now)?;
        self.limiter.admit_hashing(client, now)?;
        self.limiter.admit(email, client, now)?;
        let found = self.storage.user_by_email(email).await?;
        let Some(mut user) = found else {
            let (hasher, password) = (Arc::clone(&self.hasher), password.to_owned());
            self.hashing(move || hasher.verify_dummy(&password)).await?;
            // No user id and, above all, not the email: it may be a password typed into the
            // wrong field.
            return Err(self.login_failed(None, client, now).await);
        };
        if self.verify_password(password, &user.password_hash).await? != Verified::Match
            || user.disabled
        {
            return Err(self.login_failed(Some(user.id), client, now).await);
        }
        if self.hasher.needs_rehash(&user.password_hash) {
            user = self.upgrade_hash(user, password).await?;
        }
        if self.storage.totp(user.id).await?.is_some_and(|t| t.is_on()) {
            return Ok(Checked::NeedsCode(user));
        }
        self.limiter.succeeded(email, client, now);
        Ok(Checked::Password(user))
    }

    /// The work factor was raised since `user`'s hash was made: upgrade it now that the
    /// plaintext is at hand. Failing to hash does not fail the login. Returns the user as the
    /// session must see it.
    async fn upgrade_hash(&self, user: User, password: &str) -> Result<User, AuthError> {
        let (hasher, plain) = (Arc::clone(&self.hasher), password.to_owned());
        let Ok(Ok(hash)) = self.hashing(move || hasher.hash(&plain)).await else {
            return Ok(user);
        };
        let upgraded = self
            .storage
            .upgrade_password_hash(user.id, &user.password_hash, hash.as_str())
            .await?;
        if upgraded {
            // Our own upgrade is not a credential change: the session checks against the
            // hash now stored.
            return Ok(User {
                password_hash: hash.into_string(),
                ..user
            });
        }
        // The hash changed meanwhile: another login's upgrade (the same password, so still
        // fine) or a password change (then this password is wrong now).
        let now_stored = self
            .storage
            .user(user.id)
            .await?
            .ok_or(AuthError::BadCredentials)?;
        if self
            .verify_password(password, &now_stored.password_hash)
            .await?
            != Verified::Match
        {
            return Err(AuthError::BadCredentials);
        }
        Ok(now_stored)
    }

    /// Rotates a refresh token (`POST /v1/auth/refresh`); see API.md "Refresh rotation".
    /// Reported as [`Event::Refresh`] by what storage did with the token (or `Invalid` when it
    /// is not a refresh token at all).
    pub async fn refresh(
        &self,
        presented: &str,
        client: IpAddr,
        now: UnixTime,
    ) -> Result<TokenPair, AuthError> {
        let Ok(presented) = refresh::parse(&self.refresh_key, presented.as_bytes()) else {
            self.emit(&Event::Refresh(RefreshOutcome::Invalid));
            return Err(AuthError::InvalidGrant);
        };
        let family = FamilyId(presented.family);
        let next_random = self.random()?;
        let next_generation = presented.generation.saturating_add(1);
        let next = refresh::mint(&self.refresh_key, family.0, next_generation, &next_random);
        let outcome = self
            .storage
            .rotate(
                Presented {
                    family,
                    generation: presented.generation,
                    hash: presented.hash,
                },
                Successor {
                    hash: next.hash,
                    sealed: presented.seal(&next_random),
                },
                now,
                self.session,
                AuditNote::new(AuditEvent::RefreshReuse, now).client(Some(client)),
            )
            .await?;
        self.emit(&Event::Refresh(refresh_outcome(&outcome)));
        let (user, token, mfa) = match outcome {
            Rotation::Rotated { user, mfa, .. } => (user, next.token, mfa),
            Rotation::Retried {
                user,
                generation,
                sealed,
                mfa,
                ..
            } => {
                // Same successor again: only the holder of the superseded token can unseal it.
                let again = refresh::mint(
                    &self.refresh_key,
                    family.0,
                    generation,
                    &presented.unseal(&sealed),
                );
                (user, again.token, mfa)
            }
            Rotation::Reused { user, family } => {
                tracing::warn!(%user, %family, "refresh token reuse: family revoked");
                return Err(AuthError::InvalidGrant);
            }
            Rotation::Expired | Rotation::Revoked | Rotation::Unknown => {
                return Err(AuthError::InvalidGrant)
            }
        };
        self.pair(&user, family, token, mfa, now)
    }

    /// Verifies an access token: the token rules, then its state in memory (blacklist, token
    /// version, user, family). No I/O, no write. Reported as [`Event::Verified`] or
    /// [`Event::Rejected`], whichever route asked.
    pub fn verify_access(&self, token: &[u8], now: UnixTime) -> Result<Principal, AuthError> {
        let verified = self.tokens().verify(token, now); // the read lock ends here
        let claims = verified.inspect_err(|e| {
            self.emit(&Event::Rejected(Rejection::Token(*e)));
        })?;
        let principal = Principal {
            user: UserId(claims.sub),
            family: FamilyId(claims.sid),
            jti: Jti(claims.jti),
            mfa: claims.amr.as_ref().is_some_and(|amr| amr.contains(AMR_OTP)),
            roles: claims.roles,
            exp: claims.exp,
            client: None,
        };
        if let Err(denied) =
            self.storage
                .check_access(principal.user, principal.family, principal.jti, claims.ver)
        {
            self.emit(&Event::Rejected(Rejection::State(denied)));
            return Err(AuthError::Revoked(denied));
        }
        self.emit(&Event::Verified);
        Ok(principal)
    }

    /// Ends the caller's session (`POST /v1/auth/logout`): its access token's jti is
    /// blacklisted until it expires and its refresh family revoked, in one transaction.
    pub async fn logout(
        &self,
        principal: &Principal,
        client: IpAddr,
        now: UnixTime,
    ) -> Result<(), AuthError> {
        let note = AuditNote::new(AuditEvent::Logout, now)
            .user(principal.user)
            .client(Some(client));
        self.storage
            .end_session(principal.family, principal.jti, principal.exp, now, note)
            .await?;
        Ok(())
    }

    /// The session a refresh token was minted for, by its MAC alone (no I/O): the first step
    /// of `POST /v1/auth/logout` by the refresh cookie, so that a forged cookie is 401 before
    /// any other rule is looked at.
    ///
    /// # Errors
    /// [`AuthError::InvalidGrant`] for a token latchd did not mint.
    pub fn refresh_session(&self, presented: &str) -> Result<FamilyId, AuthError> {
        refresh::parse(&self.refresh_key, presented.as_bytes())
            .map(|presented| FamilyId(presented.family))
            .map_err(|_| AuthError::InvalidGrant)
    }

    /// Ends `family`, the session of a refresh token (see [`Authority::refresh_session`]), for
    /// a browser whose access token expired. Any token latchd minted for the session will do,
    /// a superseded one too: presenting it to refresh would end the session anyway (reuse). A
    /// session that already ended is no error, so logging out is idempotent.
    pub async fn logout_session(
        &self,
        family: FamilyId,
        client: IpAddr,
        now: UnixTime,
    ) -> Result<(), AuthError> {
        let note = AuditNote::new(AuditEvent::Logout, now).client(Some(client));
        self.storage.revoke_session(family, now, note).await?;
        Ok(())
    }

    /// Ends every session of the caller (`POST /v1/auth/logout-all`).
    pub async fn logout_all(
        &self,
        principal: &Principal,
        client: IpAddr,
        now: UnixTime,
    ) -> Result<(), AuthError> {
        let note = AuditNote::new(AuditEvent::LogoutAll, now)
            .session(principal.family)
            .client(Some(client));
        self.revoke_sessions(principal.user, now, note).await
    }

    /// The caller's account (`GET /v1/auth/me`).
    pub async fn me(&self, principal: &Principal) -> Result<User, AuthError> {
        self.storage
            .user(principal.user)
            .await?
            .ok_or(AuthError::Revoked(AccessDenied::UnknownUser))
    }

    /// Changes the caller's password and revokes every other session in the same write
    /// (`PUT /v1/users/me/password`). The caller's own session keeps working.
    ///
    /// Guesses of `current` count against the same rate limits as logins (the account's
    /// email and `client`), so a stolen access token cannot be used to guess the password; the
    /// hashes count against the address's hashing budget.
    pub async fn change_password(
        &self,
        principal: &Principal,
        current: &str,
        new: &str,
        client: IpAddr,
        now: UnixTime,
    ) -> Result<(), AuthError> {
        if new.len() > MAX_PASSWORD_BYTES {
            return Err(AuthError::WeakPassword(WeakPassword::TooLong));
        }
        if current.len() > MAX_PASSWORD_BYTES {
            return Err(AuthError::WrongPassword);
        }
        let user = self.me(principal).await?;
        // With TOTP on, a right password from a session that never passed a code must not
        // clear the account's failed codes (so a stolen password-only session cannot reset
        // the limit on guessing them).
        let totp_on = self.storage.totp(user.id).await?.is_some_and(|t| t.is_on());
        let settle = if totp_on && !principal.mfa {
            mfa::Settle::Later
        } else {
            mfa::Settle::Now
        };
        self.confirm_password(&user, current, client, now, settle)
            .await?;
        self.password_policy
            .check(new, &user.email)
            .map_err(AuthError::WeakPassword)?;
        let hash = self.hash_password(new).await?;
        let changed = self
            .storage
            .change_password(
                user.id,
                &user.password_hash,
                hash.as_str(),
                Some(principal.family),
                now,
                AuditNote::new(AuditEvent::PasswordChanged, now).client(Some(client)),
            )
            .await?;
        if changed {
            Ok(())
        } else {
            // Changed, revoked or disabled since the check: the caller must sign in again.
            Err(AuthError::Revoked(AccessDenied::FamilyRevoked))
        }
    }

    /// The caller's live sessions, newest first (`GET /v1/users/me/sessions`).
    pub async fn my_sessions(
        &self,
        principal: &Principal,
        now: UnixTime,
    ) -> Result<Vec<SessionInfo>, AuthError> {
        Ok(self.storage.sessions(principal.user, now).await?)
    }

    /// `user`'s live sessions, newest first (`GET /v1/admin/users/{id}/sessions`).
    ///
    /// # Errors
    /// `Forbidden` for a caller without the admin role; `NotFound` if there is no such user.
    pub async fn user_sessions(
        &self,
        actor: Actor<'_>,
        user: UserId,
        now: UnixTime,
    ) -> Result<Vec<SessionInfo>, AuthError> {
        authorize(actor)?;
        if self.storage.user(user).await?.is_none() {
            return Err(AuthError::NotFound);
        }
        Ok(self.storage.sessions(user, now).await?)
    }

    /// Ends one of the caller's live sessions (`DELETE /v1/users/me/sessions/{id}`): revoked
    /// on disk, so its access tokens, refresh token or cookie stop working at once.
    ///
    /// # Errors
    /// `NotFound` if `family` is not one of the caller's live sessions (another user's looks
    /// the same as none).
    pub async fn end_my_session(
        &self,
        principal: &Principal,
        family: FamilyId,
        client: IpAddr,
        now: UnixTime,
    ) -> Result<(), AuthError> {
        let note = AuditNote::new(AuditEvent::SessionRevoked, now).client(Some(client));
        if self
            .storage
            .end_own_session(principal.user, family, now, note)
            .await?
        {
            Ok(())
        } else {
            Err(AuthError::NotFound)
        }
    }

    /// Up to `limit` users ordered by id, after `after` (`GET /v1/admin/users`,
    /// `latchd user list`).
    pub async fn list_users(
        &self,
        actor: Actor<'_>,
        limit: usize,
        after: Option<UserId>,
    ) -> Result<Vec<User>, AuthError> {
        authorize(actor)?;
        Ok(self.storage.list_users(limit, after).await?)
    }

    /// The user with this id or, failing that, this email (`latchd user ...`).
    pub async fn find_user(&self, actor: Actor<'_>, who: &str) -> Result<User, AuthError> {
        authorize(actor)?;
        if let Some(id) = uuid::Uuid::try_parse(who.trim()).ok().map(UserId) {
            if let Some(user) = self.storage.user(id).await? {
                return Ok(user);
            }
        }
        self.storage
            .user_by_email(who)
            .await?
            .ok_or(AuthError::NotFound)
    }

    /// Ends every session of `user` (`POST /v1/admin/users/{id}/revoke`): its token version is
    /// bumped, so all its access tokens stop verifying, and all its families are revoked.
    pub async fn revoke_user(
        &self,
        actor: Actor<'_>,
        user: UserId,
        now: UnixTime,
    ) -> Result<(), AuthError> {
        authorize(actor)?;
        let note = noted_by(AuditNote::new(AuditEvent::LogoutAll, now), actor);
        self.revoke_sessions(user, now, note).await
    }

    /// Disables `user` and revokes all its sessions, in one transaction (`latchd user
    /// disable`): its tokens stop verifying and login is refused.
    pub async fn disable_user(
        &self,
        actor: Actor<'_>,
        user: UserId,
        now: UnixTime,
    ) -> Result<(), AuthError> {
        authorize(actor)?;
        let note = noted_by(AuditNote::new(AuditEvent::UserDisabled, now), actor);
        update_result(self.storage.disable_user(user, now, note).await?)
    }

    /// Re-enables a disabled user (`latchd user enable`); revoked sessions stay revoked.
    pub async fn enable_user(
        &self,
        actor: Actor<'_>,
        user: UserId,
        now: UnixTime,
    ) -> Result<(), AuthError> {
        authorize(actor)?;
        let note = noted_by(AuditNote::new(AuditEvent::UserEnabled, now), actor);
        update_result(self.storage.enable_user(user, note).await?)
    }

    /// Deletes `user` and all its sessions (`DELETE /v1/admin/users/{id}`, `latchd user
    /// delete`).
    ///
    /// # Errors
    /// `NotFound`; `LastAdmin` for the last enabled admin.
    pub async fn delete_user(
        &self,
        actor: Actor<'_>,
        user: UserId,
        now: UnixTime,
    ) -> Result<(), AuthError> {
        authorize(actor)?;
        let note = noted_by(AuditNote::new(AuditEvent::UserDeleted, now), actor);
        update_result(self.storage.delete_user(user, note).await?)
    }

    /// Replaces `user`'s roles; its access tokens with the old roles stop working.
    pub async fn set_roles(
        &self,
        actor: Actor<'_>,
        user: UserId,
        roles: &[String],
        now: UnixTime,
    ) -> Result<(), AuthError> {
        authorize(actor)?;
        let roles = valid_roles(roles)?;
        let note = noted_by(AuditNote::new(AuditEvent::RolesChanged, now), actor);
        update_result(self.storage.set_roles(user, &roles, note).await?)
    }

    /// Generates a 256-bit signing key and stores it as the newest, retiring the others now
    /// (`latchd key rotate`): they keep verifying for one access TTL. Once it is stored, this
    /// authority signs with it: the keyring is rebuilt from the stored keys as at start and
    /// swapped in, so tokens issued from then on carry the new kid and older ones keep
    /// verifying until their key's window ends. Returns the new kid.
    ///
    /// # Errors
    /// `KeyConfigured` while a configured key signs: a stored key would never sign.
    pub async fn rotate_signing_key(
        &self,
        actor: Actor<'_>,
        now: UnixTime,
    ) -> Result<String, AuthError> {
        authorize(actor)?;
        if self.key_configured {
            return Err(AuthError::KeyConfigured);
        }
        // Without it, a rotation that read the keys before another's write could swap in a
        // ring without the other's new key after the other had swapped it in.
        let _in_order = self.rotating.lock().await;
        let note = noted_by(AuditNote::new(AuditEvent::KeyRotated, now), actor);
        let secret = add_new_signing_key(self.storage.as_ref(), &self.rng, now, note).await?;
        let stored = self.storage.signing_keys().await?;
        let ring = ring_of(&secret, &stored, self.access_ttl_secs, now);
        self.swap_keyring(ring);
        Ok(secret.kid())
    }

    /// The backend's signal that the stored signing keys changed behind this process.
    pub fn storage_keys_changed(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.storage.keys_changed()
    }

    /// Rebuilds the keyring from the stored keys, as at start (another node rotated or the
    /// sweeper deleted a key: the PostgreSQL backend says so). The newest stored key not
    /// retired signs; a configured key keeps signing and stored keys keep their windows.
    pub async fn reload_signing_keys(&self, now: UnixTime) -> Result<(), AuthError> {
        if self.key_configured {
            return Ok(());
        }
        let _in_order = self.rotating.lock().await;
        let stored = self.storage.signing_keys().await?;
        let Some(signer) = newest_live(&stored) else {
            // No live key (they were all retired by a node with a configured key): keep
            // signing with the one this node has rather than stop.
            return Ok(());
        };
        let ring = ring_of(&signer, &stored, self.access_ttl_secs, now);
        self.swap_keyring(ring);
        Ok(())
    }

    /// Puts the token policy around `ring` in place of the one in use; verifications and
    /// signatures under way finish with the old one.
    fn swap_keyring(&self, ring: Keyring) {
        let old = std::mem::replace(
            &mut *self
                .tokens
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            self.token_policy.tokens(ring),
        );
        drop(old);
    }

    /// Deletes expired blacklist rows, and sessions and keys that ended more than one access
    /// TTL ago, so that no access token outlives the rows it names (`latchd gc`, the sweeper).
    pub async fn sweep(&self, now: UnixTime) -> Result<Sweep, AuthError> {
        Ok(self
            .storage
            .sweep(now, self.access_ttl_secs, self.audit_retention_secs)
            .await?)
    }

    /// The audit rows `query` asks for, oldest first (`GET /v1/admin/audit`, `latchd audit`).
    ///
    /// # Errors
    /// `Forbidden` for a caller without the admin role.
    pub async fn audit(
        &self,
        actor: Actor<'_>,
        query: AuditQuery,
    ) -> Result<Vec<AuditRow>, AuthError> {
        authorize(actor)?;
        Ok(self.storage.audit(query).await?)
    }

    /// Writes a consistent snapshot of the whole database to a new file at `dest`, durable when
    /// this returns, while the server keeps serving (`latchd backup`): every write answered
    /// before the call is in it.
    pub async fn backup(
        &self,
        actor: Actor<'_>,
        dest: &std::path::Path,
    ) -> Result<crate::model::Backup, AuthError> {
        authorize(actor)?;
        Ok(self.storage.backup(dest).await?)
    }

    /// How long a retired signing key keeps verifying, and an ended session is kept.
    pub fn access_ttl_secs(&self) -> i64 {
        self.access_ttl_secs
    }

    async fn revoke_sessions(
        &self,
        user: UserId,
        now: UnixTime,
        note: AuditNote,
    ) -> Result<(), AuthError> {
        if self.storage.revoke_user(user, now, note).await? {
            Ok(())
        } else {
            Err(AuthError::NotFound)
        }
    }

    async fn new_user(
        &self,
        email: &str,
        password: &str,
        roles: Vec<String>,
        (actor, client): (AuditActor, Option<IpAddr>),
        now: UnixTime,
    ) -> Result<User, AuthError> {
        if password.len() > MAX_PASSWORD_BYTES {
            // Refused before the budget is charged: it can never be hashed.
            return Err(AuthError::WeakPassword(WeakPassword::TooLong));
        }
        if let Some(client) = client {
            self.limiter.admit_hashing(client, now)?;
        }
        let email = check_email(email)?;
        self.password_policy
            .check(password, email)
            .map_err(AuthError::WeakPassword)?;
        let hash = self.hash_password(password).await?;
        let created = self
            .storage
            .create_user(
                NewUser {
                    email: email.to_owned(),
                    password_hash: hash.into_string(),
                    roles,
                },
                now,
                AuditNote::new(AuditEvent::Registered, now)
                    .actor(actor)
                    .client(client),
            )
            .await?;
        match created {
            CreateUser::Created(user) => Ok(user),
            CreateUser::EmailTaken => Err(AuthError::EmailTaken),
        }
    }

    async fn verify_password(&self, password: &str, hash: &str) -> Result<Verified, AuthError> {
        let (hasher, password, hash) = (
            Arc::clone(&self.hasher),
            password.to_owned(),
            hash.to_owned(),
        );
        Ok(self
            .hashing(move || hasher.verify(&password, &hash))
            .await??)
    }

    async fn hash_password(
        &self,
        password: &str,
    ) -> Result<crate::password::PasswordHash, AuthError> {
        let (hasher, password) = (Arc::clone(&self.hasher), password.to_owned());
        Ok(self.hashing(move || hasher.hash(&password)).await??)
    }

    /// Runs `work` on the hashing pool.
    async fn hashing<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AuthError> {
        self.pool.run(work).await.map_err(|e| match e {
            PoolError::Busy => AuthError::Busy,
            PoolError::Failed => AuthError::Internal("a hashing job failed".to_owned()),
        })
    }

    /// Reports how a login ended. A storage, pool or RNG failure says nothing about the
    /// credentials and is not reported; a login that waits for its code (`Ok(None)`) was
    /// reported when its challenge was stored.
    fn report_login(&self, result: Result<Option<UserId>, &AuthError>) {
        let (outcome, user) = match result {
            Ok(Some(user)) => (LoginOutcome::Ok, Some(user)),
            Err(AuthError::BadCredentials) => (LoginOutcome::Failed, None),
            Err(AuthError::RateLimited { .. }) => (LoginOutcome::RateLimited, None),
            Ok(None) | Err(_) => return,
        };
        self.emit(&Event::Login { outcome, user });
    }

    /// Records a failed login in the audit log (about `user` when the email named one) and
    /// answers the attempt's error: `BadCredentials`, or the storage failure that kept the row
    /// from being written.
    async fn login_failed(&self, user: Option<UserId>, client: IpAddr, now: UnixTime) -> AuthError {
        let mut note = AuditNote::new(AuditEvent::LoginFailed, now).client(Some(client));
        note.user = user;
        match self.storage.record(note).await {
            Ok(()) => AuthError::BadCredentials,
            Err(e) => e.into(),
        }
    }

    fn emit(&self, event: &Event) {
        for subscriber in &self.subscribers {
            subscriber.on(event);
        }
    }

    /// A token pair for `user`'s session `family`; `mfa` says whether the session passed a
    /// second factor, which the access token's `amr` tells its verifiers.
    fn pair(
        &self,
        user: &User,
        family: FamilyId,
        refresh_token: RefreshToken,
        mfa: bool,
        now: UnixTime,
    ) -> Result<TokenPair, AuthError> {
        let amr: &[&str] = if mfa {
            &[AMR_PASSWORD, AMR_OTP]
        } else {
            &[AMR_PASSWORD]
        };
        let claims = AccessClaims {
            sub: user.id.0,
            sid: family.0,
            jti: uuid::Builder::from_random_bytes(self.random()?).into_uuid(),
            ver: user.token_version,
            roles: user.roles.iter().collect(),
            amr: Some(amr.iter().collect()),
            iat: now,
            nbf: now,
            exp: now.plus(self.access_ttl_secs),
        };
        Ok(TokenPair {
            access_token: self.tokens().sign(&claims),
            expires_in: self.access_ttl_secs,
            refresh_token,
        })
    }

    /// Random bytes for a per-request token or id, from the pool ([`random`]).
    fn random<const N: usize>(&self) -> Result<[u8; N], AuthError> {
        drawn(|out| self.random.fill(out))
    }

    /// Random bytes for a lasting secret (a TOTP secret, recovery codes, their salt), straight
    /// from the kernel: never held in memory before they are needed.
    fn secret_random<const N: usize>(&self) -> Result<[u8; N], AuthError> {
        drawn(|out| self.rng.fill(out))
    }
}

/// `N` bytes filled by `fill`, its failure as the error a failed random draw is.
fn drawn<const N: usize>(
    fill: impl FnOnce(&mut [u8]) -> Result<(), ring::error::Unspecified>,
) -> Result<[u8; N], AuthError> {
    let mut out = [0u8; N];
    fill(&mut out).map_err(|_| AuthError::Password(crate::password::PasswordError::Random))?;
    Ok(out)
}

/// A password step that passed.
enum Checked {
    /// The password is all the account needs.
    Password(User),
    /// The account has TOTP on: a code must follow.
    NeedsCode(User),
}

/// Whether `actor` may run an operator use case: the operator always, a caller with the admin
/// role.
fn authorize(actor: Actor<'_>) -> Result<(), AuthError> {
    match actor {
        Actor::Operator => Ok(()),
        Actor::Caller(principal) if principal.has_role(ADMIN_ROLE) => Ok(()),
        Actor::Caller(_) => Err(AuthError::Forbidden),
    }
}

/// Who the audit log names as the actor of an operator use case.
/// `note` written on `actor`'s authority: an admin's id and address, or the operator.
fn noted_by(note: AuditNote, actor: Actor<'_>) -> AuditNote {
    note.actor(audit_actor(actor)).client(actor_client(actor))
}

/// The address an admin's request came from; the operator has none.
fn actor_client(actor: Actor<'_>) -> Option<IpAddr> {
    match actor {
        Actor::Caller(principal) => principal.client,
        Actor::Operator => None,
    }
}

fn audit_actor(actor: Actor<'_>) -> AuditActor {
    match actor {
        Actor::Caller(principal) => AuditActor::Admin(principal.user),
        Actor::Operator => AuditActor::Operator,
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

/// What storage did with a presented refresh token, as an event outcome.
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

/// Whether `role` is 1-`MAX_ROLE_CHARS` characters of `[a-z0-9_.:-]`: safe in a token's roles
/// claim, in the comma-separated `X-Auth-Roles` header and in `user list` output.
pub fn is_valid_role(role: &str) -> bool {
    (1..=MAX_ROLE_CHARS).contains(&role.len())
        && role
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.:-".contains(&b))
}

/// `roles` checked, sorted and without repeats.
fn valid_roles(roles: &[String]) -> Result<Vec<String>, AuthError> {
    if let Some(bad) = roles.iter().find(|r| !is_valid_role(r)) {
        return Err(AuthError::InvalidRole(bad.clone()));
    }
    let mut roles = roles.to_vec();
    roles.sort_unstable();
    roles.dedup();
    Ok(roles)
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
async fn keyring(
    settings: &Settings,
    storage: &dyn Storage,
    rng: &SystemRandom,
    now: UnixTime,
) -> Result<(Keyring, KeySource), AuthError> {
    if settings.signing_key.is_some() {
        // The configured key takes over: stored keys keep verifying for one access TTL, then
        // stop (an operator switching away from a leaked key wants that).
        storage.retire_signing_keys(now).await?;
    }
    let stored = storage.signing_keys().await?;
    let (signer, source) = if let Some(configured) = &settings.signing_key {
        (configured.clone(), KeySource::Configured)
    } else if let Some(newest) = newest_live(&stored) {
        (newest, KeySource::Stored)
    } else {
        let note = AuditNote::new(AuditEvent::KeyRotated, now);
        (
            add_new_signing_key(storage, rng, now, note).await?,
            KeySource::Generated,
        )
    };
    Ok((
        ring_of(&signer, &stored, settings.access_ttl_secs, now),
        source,
    ))
}

/// The newest stored key not retired: the one that signs when none is configured.
fn newest_live(stored: &[StoredKey]) -> Option<KeySecret> {
    stored
        .iter()
        .rev()
        .filter(|k| k.retired_at.is_none())
        .find_map(|k| KeySecret::from_bytes(k.secret.clone()).ok())
}

/// The ring `signer` signs in: every `stored` key not retired verifies, and a retired one until
/// one access TTL after its retirement, in this process too (the sweeper deleting the row
/// would not take it out of a running keyring).
fn ring_of(
    signer: &KeySecret,
    stored: &[StoredKey],
    access_ttl_secs: i64,
    now: UnixTime,
) -> Keyring {
    let secret_of = |k: &StoredKey| KeySecret::from_bytes(k.secret.clone()).ok();
    let live: Vec<KeySecret> = stored
        .iter()
        .filter(|k| k.retired_at.is_none())
        .filter_map(secret_of)
        .collect();
    let mut keys = Keyring::new(signer, &live);
    for key in stored {
        let Some(retired_at) = key.retired_at else {
            continue;
        };
        let not_after = retired_at.plus(access_ttl_secs);
        if let (true, Some(secret)) = (now <= not_after, secret_of(key)) {
            keys = keys.with_retiring(&secret, not_after);
        }
    }
    keys
}

/// The configured values of every access token, kept to rebuild [`AccessTokens`] around a new
/// keyring.
struct TokenPolicy {
    issuer: String,
    audience: String,
    client_id: String,
    leeway_secs: u32,
}

impl TokenPolicy {
    fn tokens(&self, keys: Keyring) -> AccessTokens {
        AccessTokens::new(
            keys,
            Policy::new(
                &self.issuer,
                &self.audience,
                &self.client_id,
                self.leeway_secs,
            ),
        )
    }
}

/// Generates a 256-bit signing key and stores it as the newest, retiring every other stored
/// key at `now` (they keep verifying for one access TTL): first start and key rotation.
async fn add_new_signing_key(
    storage: &dyn Storage,
    rng: &SystemRandom,
    now: UnixTime,
    note: AuditNote,
) -> Result<KeySecret, AuthError> {
    let mut bytes = vec![0u8; 32];
    rng.fill(&mut bytes)
        .map_err(|_| AuthError::Password(crate::password::PasswordError::Random))?;
    let secret = KeySecret::from_bytes(bytes)
        .map_err(|_| AuthError::Password(crate::password::PasswordError::Random))?;
    storage
        .add_signing_key(
            StoredKey {
                kid: secret.kid(),
                secret: secret.as_bytes().to_vec(),
                created_at: now,
                retired_at: None,
            },
            Some(now),
            note,
        )
        .await?;
    Ok(secret)
}

#[cfg(test)]
mod tests;
