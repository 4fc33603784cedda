//! The storage port: what the use cases need from a backend, in coarse operations.
//!
//! auth owns this trait; `store/` (redb) implements it, and any later backend implements the
//! same operations with the same contract, checked by one conformance suite
//! ([`crate::conformance`]). The contract of every operation:
//!
//! - **Atomic.** It happens entirely or not at all. Every compare-and-swap (rotate, open a
//!   session, change a password, disable and revoke) is decided inside the backend, in the
//!   same transaction as the write it guards, never by two calls from auth.
//! - **Durable when it resolves.** An `Ok` from a write means the change is committed to
//!   stable storage: a crash right after loses none of it.
//! - **Audited with the change.** A write given an [`AuditNote`] records it (filling in the
//!   user and session the outcome names) in the same transaction as the change, when the
//!   outcome is the change the note describes (each method says when), and never otherwise:
//!   an acknowledged change always has its row, a refused one never.
//! - **Memory follows disk.** [`Storage::check_access`] answers from an in-memory view that
//!   changes only after the commit that made the change, in commit order, so a revocation is
//!   never visible before it is durable and never forgotten after.
//!
//! Operations return [`Pending`]: a future that resolves when the backend is done. Writes may
//! wait for a commit shared with other writes (group commit); reads may run on the caller's
//! task.

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use crate::model::{
    AccessDenied, AuditNote, AuditQuery, AuditRow, Backup, BrowserStanding, Counts, CreateUser,
    FamilyId, Jti, MfaChallenge, MfaCompletion, NewSession, NewUser, Origin, Presented,
    RefreshStanding, Rotation, SecondFactor, SessionInfo, SessionPolicy, StoredKey, Successor,
    Sweep, Totp, TotpUpdate, User, UserFacts, UserId, UserUpdate,
};
use crate::time::UnixTime;

/// A storage operation under way.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A backend of latchd's state: users, sessions, the blacklist, signing keys.
pub trait Storage: Send + Sync + fmt::Debug {
    /// Which of an access token's stored conditions refuses it, if any, from memory only: the
    /// hot path of `GET /v1/auth/verify` does no I/O.
    ///
    /// # Errors
    /// The first of: unknown user, disabled user, stale version, family not live, blacklisted.
    fn check_access(
        &self,
        user: UserId,
        family: FamilyId,
        jti: Jti,
        version: u64,
    ) -> Result<(), AccessDenied>;

    /// The browser session whose cookie hashes to `cookie_hash`, from memory only: live, its
    /// user enabled, used within `min(its idle timeout, policy.idle_secs)` and before its
    /// absolute end. Records the use in memory.
    ///
    /// # Errors
    /// `UnknownSession`, `UnknownUser`, `UserDisabled`, `FamilyRevoked` or `SessionExpired`.
    fn check_browser(
        &self,
        cookie_hash: &[u8; 32],
        now: UnixTime,
        policy: &SessionPolicy,
    ) -> Result<BrowserStanding, AccessDenied>;

    /// The user's email and current roles, from memory.
    fn user_facts(&self, user: UserId) -> Option<UserFacts>;

    /// Records that browser session `family` was used at `at`, in the background: the caller
    /// does not wait and a crash may lose it. Called when [`check_browser`](Self::check_browser)
    /// says a refresh of the last use on disk is due, so that a session in use is not swept
    /// and a restart does not take more than a quarter of its idle window from it.
    fn touch_session(&self, family: FamilyId, at: UnixTime);

    /// Row counts from the view: users, live families, blacklist entries.
    fn counts(&self) -> Counts;

    /// A signal that changes whenever the stored signing keys change behind this process's
    /// back (another node rotated), so the keyring can be reloaded; `None` for a backend only
    /// this process writes.
    fn keys_changed(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// The 32-byte key refresh tokens are authenticated with: generated when the backend is first
    /// created, the same on every open.
    fn refresh_mac_key(&self) -> [u8; 32];

    /// The user with this id.
    fn user(&self, id: UserId) -> Pending<'_, Option<User>>;

    /// The user registered under this email, compared after
    /// [`normalize_email`](crate::model::normalize_email).
    fn user_by_email<'a>(&'a self, email: &'a str) -> Pending<'a, Option<User>>;

    /// Up to `limit` users ordered by id, starting after `after`.
    fn list_users(&self, limit: usize, after: Option<UserId>) -> Pending<'_, Vec<User>>;

    /// Registers `user` under a new random id, unless its normalized email is taken.
    fn create_user(&self, user: NewUser, now: UnixTime, note: AuditNote)
        -> Pending<'_, CreateUser>;

    /// Opens a session `family` of the kind `session` says for `seen`, whose first token (the
    /// generation-0 refresh token, or the browser cookie) hashes to `first_hash`, revoking the
    /// user's oldest live sessions past `policy.max_per_user`.
    ///
    /// `seen` is the user as read when the credentials were checked, which takes hundreds of
    /// milliseconds; if meanwhile the user was disabled, deleted, revoked (token version
    /// bumped) or given a new password, nothing is written and this resolves to `false`; so
    /// too if the user has TOTP on and `session.mfa` is false.
    #[allow(clippy::too_many_arguments)] // the session's facts, and its audit note
    fn open_session<'a>(
        &'a self,
        family: FamilyId,
        seen: &'a User,
        first_hash: [u8; 32],
        session: NewSession,
        now: UnixTime,
        policy: SessionPolicy,
        note: AuditNote,
    ) -> Pending<'a, bool>;

    /// Rotates a presented refresh token as one compare-and-swap: of several concurrent
    /// rotations of one token, exactly one installs its successor. The session's user is read
    /// in the same transaction: a disabled user's session is not rotated (`Revoked`).
    ///
    /// In order: no family (or user) -> `Unknown`; revoked, or user disabled -> `Revoked`;
    /// the current token -> `Expired` past its sliding or absolute expiry, else `next` becomes
    /// current (`Rotated`); the token the current one superseded, less than `grace_secs` ago
    /// -> `Retried` with the stored sealed successor (`Expired` if the family expired); any
    /// other older generation -> the family is revoked (`Reused`); anything else -> `Unknown`.
    fn rotate(
        &self,
        presented: Presented,
        next: Successor,
        now: UnixTime,
        policy: SessionPolicy,
        note: AuditNote,
    ) -> Pending<'_, Rotation>;

    /// Blacklists an access token's `jti` until `exp`. Blacklisting again keeps the later
    /// `exp`.
    fn blacklist(&self, jti: Jti, exp: UnixTime) -> Pending<'_, ()>;

    /// Logout, in one transaction: blacklists `jti` until `exp` and revokes `family`.
    fn end_session(
        &self,
        family: FamilyId,
        jti: Jti,
        exp: UnixTime,
        now: UnixTime,
        note: AuditNote,
    ) -> Pending<'_, ()>;

    /// The live sessions of `user` at `now`, newest first, read from storage (not the view).
    fn sessions(&self, user: UserId, now: UnixTime) -> Pending<'_, Vec<SessionInfo>>;

    /// Revokes session `family` if it is one of `user`'s live sessions; `false` (nothing
    /// written) if it is missing, ended, or another user's.
    fn end_own_session(
        &self,
        user: UserId,
        family: FamilyId,
        now: UnixTime,
        note: AuditNote,
    ) -> Pending<'_, bool>;

    /// How a presented refresh token stands, read only (introspection never rotates): `Some`
    /// when it is the current, unexpired token of a live API session of an enabled user.
    fn refresh_standing(
        &self,
        presented: Presented,
        now: UnixTime,
    ) -> Pending<'_, Option<RefreshStanding>>;

    /// Revokes the session of a presented refresh token if it is the session's current token
    /// (RFC 7009); a superseded, expired or unknown token revokes nothing. Resolves to the
    /// session's user when it revoked.
    fn revoke_refresh(
        &self,
        presented: Presented,
        now: UnixTime,
        note: AuditNote,
    ) -> Pending<'_, Option<UserId>>;

    /// Revokes one session; `false` if it was missing or already revoked.
    fn revoke_session(&self, family: FamilyId, now: UnixTime, note: AuditNote)
        -> Pending<'_, bool>;

    /// Bumps the user's token version and revokes every session of the user (logout-all,
    /// admin revoke); `false` if there is no such user.
    fn revoke_user(&self, user: UserId, now: UnixTime, note: AuditNote) -> Pending<'_, bool>;

    /// Replaces the user's password hash and revokes every session of the user except `keep`,
    /// in one transaction. A compare-and-swap: writes nothing and resolves to `false` unless
    /// the stored hash is still `expected`, the user is enabled, and `keep` is still live.
    fn change_password<'a>(
        &'a self,
        user: UserId,
        expected: &'a str,
        new_hash: &'a str,
        keep: Option<FamilyId>,
        now: UnixTime,
        note: AuditNote,
    ) -> Pending<'a, bool>;

    /// Replaces the user's password hash with `new_hash` only if it is still `expected` (the
    /// work-factor upgrade after a login); revokes nothing.
    fn upgrade_password_hash<'a>(
        &'a self,
        user: UserId,
        expected: &'a str,
        new_hash: &'a str,
    ) -> Pending<'a, bool>;

    /// Replaces the user's roles and bumps its token version, so tokens with the old roles stop
    /// working; refused if it would take `admin` from the last enabled admin.
    fn set_roles<'a>(
        &'a self,
        user: UserId,
        roles: &'a [String],
        note: AuditNote,
    ) -> Pending<'a, UserUpdate>;

    /// Disables the user and revokes all its sessions (token version bumped), in one
    /// transaction; refused for the last enabled admin.
    fn disable_user(&self, user: UserId, now: UnixTime, note: AuditNote)
        -> Pending<'_, UserUpdate>;

    /// Re-enables a disabled user; its revoked sessions stay revoked.
    fn enable_user(&self, user: UserId, note: AuditNote) -> Pending<'_, UserUpdate>;

    /// Deletes the user and all its sessions; refused for the last enabled admin.
    fn delete_user(&self, user: UserId, note: AuditNote) -> Pending<'_, UserUpdate>;

    /// The user's TOTP enrolment, pending or on.
    fn totp(&self, user: UserId) -> Pending<'_, Option<Totp>>;

    /// Stores a pending enrolment with `secret` for an enabled user, begun in `session`,
    /// replacing an earlier pending one.
    ///
    /// Resolves to `Done`, `NoSuchUser` (also for a disabled user) or `AlreadyOn`.
    fn begin_totp(
        &self,
        user: UserId,
        secret: [u8; 20],
        session: FamilyId,
        now: UnixTime,
    ) -> Pending<'_, TotpUpdate>;

    /// Turns on the pending enrolment whose secret is `secret`: `step` (of the code that
    /// confirmed it) becomes the last accepted step, and `recovery`, hashed under `salt`, the
    /// recovery codes.
    ///
    /// Resolves to `Done`, `NoSuchUser`, `AlreadyOn`, `NotEnrolled` (no pending enrolment, or
    /// another secret) or `Spent` (a step not after the last accepted one).
    #[allow(clippy::too_many_arguments)]
    fn confirm_totp(
        &self,
        user: UserId,
        secret: [u8; 20],
        step: u64,
        salt: [u8; 16],
        recovery: Vec<[u8; 32]>,
        now: UnixTime,
        note: AuditNote,
    ) -> Pending<'_, TotpUpdate>;

    /// Turns TOTP off, spending `factor` in the same transaction; the recovery codes go too.
    ///
    /// Resolves to `Done`, `NotEnrolled` (TOTP is not on) or `Spent`.
    fn disable_totp(
        &self,
        user: UserId,
        factor: SecondFactor,
        note: AuditNote,
    ) -> Pending<'_, TotpUpdate>;

    /// The operator's reset for a user who lost the device: deletes any enrolment and ends
    /// every session of the user (token version bumped), in one transaction; `false` if there
    /// is no such user.
    fn reset_totp(&self, user: UserId, now: UnixTime, note: AuditNote) -> Pending<'_, bool>;

    /// Stores `challenge` under `hash`, the SHA-256 of its token.
    ///
    /// # Errors
    /// [`StoreError::FamilyExists`] if the hash is taken (the random source repeated itself).
    fn open_challenge(&self, hash: [u8; 32], challenge: MfaChallenge) -> Pending<'_, ()>;

    /// The challenge stored under `hash`, if it is live at `now`.
    fn challenge(&self, hash: [u8; 32], now: UnixTime) -> Pending<'_, Option<MfaChallenge>>;

    /// Counts one wrong code against the challenge under `hash`; the `max_failures`th deletes
    /// it. Resolves to whether it is still live.
    fn fail_challenge(
        &self,
        hash: [u8; 32],
        max_failures: u32,
        now: UnixTime,
        note: AuditNote,
    ) -> Pending<'_, bool>;

    /// The second step of a sign-in, in one transaction: the live challenge under `hash` is
    /// deleted, `factor` spent, and session `family` opened for its user (of the challenge's
    /// kind, with `mfa`, from `origin`), whose first token hashes to `first_hash`.
    ///
    /// `UnknownChallenge` if there is no live challenge; `Stale` (the challenge deleted) if its
    /// user is gone, disabled, revoked or has a new password since, or has TOTP off; `Spent`
    /// (nothing written) if the factor was spent already.
    #[allow(clippy::too_many_arguments)]
    fn complete_challenge(
        &self,
        hash: [u8; 32],
        factor: SecondFactor,
        family: FamilyId,
        first_hash: [u8; 32],
        origin: Origin,
        now: UnixTime,
        policy: SessionPolicy,
        note: AuditNote,
    ) -> Pending<'_, MfaCompletion>;

    /// Every stored signing key, oldest first.
    fn signing_keys(&self) -> Pending<'_, Vec<StoredKey>>;

    /// Stores `key` as the newest signing key; with `retire_others_at`, every other key not
    /// yet retired gets that `retired_at`.
    ///
    /// # Errors
    /// [`StoreError::KidTaken`] if a key with the same `kid` is stored.
    fn add_signing_key(
        &self,
        key: StoredKey,
        retire_others_at: Option<UnixTime>,
        note: AuditNote,
    ) -> Pending<'_, ()>;

    /// Retires every stored signing key not yet retired, at `at`; resolves to how many.
    fn retire_signing_keys(&self, at: UnixTime) -> Pending<'_, u64>;

    /// Records `note` on its own (a failed login, which changes nothing else).
    fn record(&self, note: AuditNote) -> Pending<'_, ()>;

    /// The audit rows `query` asks for, in the order they were written.
    fn audit(&self, query: AuditQuery) -> Pending<'_, Vec<AuditRow>>;

    /// Deletes audit rows older than `audit_retain_secs` (at or before `now -
    /// audit_retain_secs`), blacklist rows whose `exp <= now`, sessions that ended (expired or revoked) at
    /// least `retain_secs` ago, signing keys retired at least `retain_secs` ago,
    /// second-factor challenges expired by `now`, and pending TOTP enrolments older than
    /// [`PENDING_TOTP_SECS`](crate::model::PENDING_TOTP_SECS).
    fn sweep(&self, now: UnixTime, retain_secs: i64, audit_retain_secs: i64) -> Pending<'_, Sweep>;

    /// Writes a consistent snapshot of the whole state to a new file at `dest` (never over an
    /// existing one), durable when this resolves, while every other operation goes on. The copy
    /// holds every write that resolved before this was called; a backend opened on it starts
    /// where the snapshot was taken.
    fn backup(&self, dest: &Path) -> Pending<'_, Backup>;
}

/// A failure of a storage backend. Domain outcomes (a taken email, a reused token) are values,
/// never this type. Cloneable, so that one failed commit can answer every operation it held.
#[derive(Clone, Debug)]
pub enum StoreError {
    /// Another process holds the database open for writing.
    Locked,
    /// The data was written by a newer latchd whose schema this build cannot read.
    SchemaTooNew {
        /// The schema version recorded.
        found: u64,
        /// The newest schema version this build understands.
        supported: u64,
    },
    /// A row, or the schema, could not be decoded; nothing was guessed.
    Corrupt {
        /// The table (or `"schema"`) that held the bad data.
        table: &'static str,
        /// What failed to decode.
        detail: String,
    },
    /// The path does not hold a latchd database (a directory, another program's file); it
    /// was left as it was.
    NotADatabase(String),
    /// A signing key with this `kid` is already stored.
    KidTaken(String),
    /// A session with this id already exists (the caller reused an id).
    FamilyExists,
    /// The operating system's random number generator failed.
    Random,
    /// The database file's permissions could not be set to owner-only.
    Permissions(Arc<std::io::Error>),
    /// The backend is shut down or its writer is gone.
    Closed,
    /// Too many writes are waiting for the backend; this one was refused at once.
    Busy,
    /// The backend cannot reach its database, or cannot confirm that its view is current (a
    /// PostgreSQL node cut off from the database): refused at once, retry shortly.
    Unavailable,
    /// This backend does not do this operation; the text says what to use instead.
    Unsupported(&'static str),
    /// The backend itself failed (I/O, a transaction, a commit); `what` says at which step.
    Backend {
        /// The step that failed, e.g. `"commit"`.
        what: &'static str,
        /// The backend's own error.
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    /// A backend failure at step `what`.
    pub fn backend(
        what: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Backend {
            what,
            source: Arc::new(source),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Locked => f.write_str("database file is locked by another process"),
            Self::SchemaTooNew { found, supported } => write!(
                f,
                "database schema version {found} is newer than this build supports \
                 ({supported}); upgrade latchd or use a different file"
            ),
            Self::Corrupt { table, detail } => write!(f, "corrupt data in {table}: {detail}"),
            Self::NotADatabase(why) => write!(f, "not a latchd database: {why}"),
            Self::KidTaken(kid) => write!(f, "signing key id {kid:?} is already stored"),
            Self::FamilyExists => f.write_str("refresh family id already exists"),
            Self::Random => f.write_str("system random number generator failed"),
            Self::Permissions(e) => write!(f, "restricting the file to its owner: {e}"),
            Self::Closed => f.write_str("the storage backend is shut down"),
            Self::Busy => f.write_str("too many writes are waiting; retry shortly"),
            Self::Unavailable => f.write_str("the database is unreachable; retry shortly"),
            Self::Unsupported(what) => f.write_str(what),
            Self::Backend { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Backend { source, .. } => Some(source.as_ref()),
            Self::Permissions(e) => Some(e.as_ref()),
            Self::Locked
            | Self::SchemaTooNew { .. }
            | Self::Corrupt { .. }
            | Self::NotADatabase(_)
            | Self::KidTaken(_)
            | Self::FamilyExists
            | Self::Random
            | Self::Closed
            | Self::Busy
            | Self::Unavailable
            | Self::Unsupported(_) => None,
        }
    }
}
