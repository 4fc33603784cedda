//! The domain types both sides of the storage port share: ids, users, sessions and what
//! became of an operation. Plain data: no I/O, no storage engine, no HTTP, no tokens.

use std::fmt;

use uuid::Uuid;

use crate::time::UnixTime;

/// A user's id (a random v4 UUID).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(pub Uuid);

/// A session's id: the refresh family, which is also the access token's `sid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FamilyId(pub Uuid);

/// An access token's `jti`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Jti(pub Uuid);

impl UserId {
    /// The id in its one accepted spelling; see [`parse_uuid`].
    pub fn parse(text: &str) -> Option<Self> {
        parse_uuid(text).map(Self)
    }
}

impl FamilyId {
    /// A fresh session id: a version 7 UUID, so ids sort in the order sessions were opened
    /// (in one process), which is what "revoke the oldest" and "newest first" go by within one
    /// second. It says when the session began, which the access token's `iat` says anyway;
    /// nothing relies on it being unguessable.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for FamilyId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Display for FamilyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Display for Jti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A UUID in the only form latchd writes: lowercase, hyphenated, 36 characters.
/// `Uuid::try_parse` alone would also take braces, URNs, upper case and the simple form,
/// i.e. several spellings of one id.
pub fn parse_uuid(text: &str) -> Option<Uuid> {
    if text.len() != 36 || text.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    Uuid::try_parse(text).ok()
}

/// The key under which an email is unique: surrounding whitespace trimmed, then lowercased with
/// Unicode's full case mapping (`str::to_lowercase`), so `" ÉMILE@Example.COM "` and
/// `"émile@example.com"` are the same account. No other folding (dots, `+tags`, NFC) is done.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The role whose last enabled holder cannot be deleted, disabled or demoted.
pub const ADMIN_ROLE: &str = "admin";

/// A registered user as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The user's id.
    pub id: UserId,
    /// The email as registered, with surrounding whitespace trimmed (not case-folded).
    pub email: String,
    /// The password hash as a PHC string; opaque to storage.
    pub password_hash: String,
    /// Role names, e.g. `admin`.
    pub roles: Vec<String>,
    /// When the user registered.
    pub created_at: UnixTime,
    /// A disabled user's tokens are refused and no new session is created for it.
    pub disabled: bool,
    /// Access tokens carrying a lower `ver` than this are refused; bumped by revoke-all.
    pub token_version: u64,
}

impl User {
    /// Whether the user holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// A user about to be stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewUser {
    /// The email as given, trimmed.
    pub email: String,
    /// The PHC hash of the password.
    pub password_hash: String,
    /// Roles to grant.
    pub roles: Vec<String>,
}

/// What became of a registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateUser {
    /// The user was stored.
    Created(User),
    /// Another user already has this email (after normalization).
    EmailTaken,
}

/// What became of an operator's change to one user (disable, enable, delete, new roles).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserUpdate {
    /// The change is on disk.
    Done,
    /// There is no such user.
    NoSuchUser,
    /// The change would leave no enabled user with the `admin` role; nothing was written.
    LastAdmin,
}

/// What a presented refresh token is, as the auth layer parsed it (its MAC was already checked
/// there, so its family and generation are genuine).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Presented {
    /// The family the token belongs to.
    pub family: FamilyId,
    /// The token's generation within its family (0 for the first).
    pub generation: u64,
    /// SHA-256 of the token text.
    pub hash: [u8; 32],
}

/// The successor the auth layer minted in advance for one rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Successor {
    /// SHA-256 of the successor's token text.
    pub hash: [u8; 32],
    /// The successor's random part, sealed under a key only the presented token's holder can
    /// derive; handed back on a retry within the grace.
    pub sealed: [u8; 32],
}

/// How a session authenticates its requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionKind {
    /// Access and refresh tokens (`POST /v1/auth/login`).
    #[default]
    Api,
    /// The `latchd_session` cookie of the sign-in pages.
    Browser,
}

impl SessionKind {
    /// The kind as the session list shows it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Browser => "browser",
        }
    }
}

/// What a new session is, beside its user and first token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewSession {
    /// API tokens or a browser cookie.
    pub kind: SessionKind,
    /// Whether the sign-in passed a second factor.
    pub mfa: bool,
    /// Where the sign-in came from, as the session list shows it.
    pub origin: Origin,
}

/// Where a sign-in came from: its `User-Agent` (bounded) and client address. Kept with the
/// session for its owner's list, never used to decide anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    /// The `User-Agent`, at most [`MAX_USER_AGENT_BYTES`], control characters dropped.
    pub user_agent: Option<String>,
    /// The client address (through trusted proxies only).
    pub client_ip: Option<std::net::IpAddr>,
}

/// Most bytes of a `User-Agent` kept with a session; a longer one is cut at a character
/// boundary, so a session row has a bounded size.
pub const MAX_USER_AGENT_BYTES: usize = 256;

impl Origin {
    /// An origin of `client_ip` with `user_agent` bounded to [`MAX_USER_AGENT_BYTES`].
    pub fn new(user_agent: Option<&str>, client_ip: Option<std::net::IpAddr>) -> Self {
        let user_agent = user_agent.map(|ua| {
            let mut kept = String::with_capacity(ua.len().min(MAX_USER_AGENT_BYTES));
            for c in ua.chars().filter(|c| !c.is_control()) {
                if kept.len() + c.len_utf8() > MAX_USER_AGENT_BYTES {
                    break;
                }
                kept.push(c);
            }
            kept
        });
        Self {
            user_agent: user_agent.filter(|ua| !ua.is_empty()),
            client_ip,
        }
    }
}

/// One live session as its owner's list shows it (`GET /v1/users/me/sessions`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session (refresh family) id.
    pub id: FamilyId,
    /// API tokens or a browser cookie.
    pub kind: SessionKind,
    /// When it began.
    pub created_at: UnixTime,
    /// Its last rotation (API) or last recorded use (browser; written at most every quarter of
    /// the idle window); its start if neither happened yet.
    pub last_used_at: UnixTime,
    /// When it ends if not used again (the sliding or idle expiry, capped by the absolute one).
    pub expires_at: UnixTime,
    /// Where it began.
    pub origin: Origin,
    /// Whether its sign-in passed a second factor.
    pub mfa: bool,
}

/// A refresh token that would rotate now, as introspection describes it (RFC 7662 §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefreshStanding {
    /// The session's user.
    pub user: UserId,
    /// The session.
    pub family: FamilyId,
    /// When the token stops rotating: its sliding expiry, capped by the session's absolute one.
    pub expires_at: UnixTime,
}

/// What the in-memory view knows of a user, for forward-auth's headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserFacts {
    /// The email as registered.
    pub email: std::sync::Arc<str>,
    /// The user's current roles.
    pub roles: std::sync::Arc<[String]>,
}

/// A live browser session, as the in-memory view answers for its cookie.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrowserStanding {
    /// The session.
    pub family: FamilyId,
    /// Its user.
    pub user: UserId,
    /// The user's email and current roles.
    pub facts: UserFacts,
    /// Whether the sign-in passed a second factor.
    pub mfa: bool,
    /// Whether the last use on disk is old enough to be refreshed (see
    /// [`Storage::touch_session`](crate::auth::storage::Storage::touch_session)).
    pub touch_due: bool,
}

/// Lifetimes and bounds that govern sessions (`LATCHD_REFRESH_TTL`, `LATCHD_SESSION_MAX`,
/// `LATCHD_SESSION_IDLE`, `LATCHD_REFRESH_GRACE`, `LATCHD_MAX_SESSIONS_PER_USER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Sliding lifetime of one refresh token, in seconds.
    pub refresh_ttl_secs: i64,
    /// Absolute lifetime of a family however often it rotates, in seconds.
    pub session_max_secs: i64,
    /// How long the token just superseded counts as a retry rather than reuse (0 = never).
    pub grace_secs: i64,
    /// Live sessions one user may have; opening one more revokes the oldest.
    pub max_per_user: usize,
    /// How long a browser session stays valid without use, in seconds.
    pub idle_secs: i64,
}

/// What became of a presented refresh token. Decided in one transaction, together with the
/// state of the session's user: a rotation never lands for a user that is disabled or gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The successor is now the family's current token (`generation` = presented + 1).
    Rotated {
        /// The family.
        family: FamilyId,
        /// Its user, as read in the transaction that rotated.
        user: User,
        /// The successor's generation.
        generation: u64,
        /// Whether the session's sign-in passed a second factor.
        mfa: bool,
    },
    /// The presented token is the one the current token superseded, less than the grace ago:
    /// here is that successor again, still sealed. Nothing was written.
    Retried {
        /// The family.
        family: FamilyId,
        /// Its user, as read in the same transaction.
        user: User,
        /// The current (already issued) successor's generation.
        generation: u64,
        /// The stored sealed successor.
        sealed: [u8; 32],
        /// Whether the session's sign-in passed a second factor.
        mfa: bool,
    },
    /// A superseded token was presented: the whole family was revoked in the same transaction
    /// (RFC 9700 §4.14.2).
    Reused {
        /// The family, now revoked.
        family: FamilyId,
        /// Its user's id.
        user: UserId,
    },
    /// The token (or its family's absolute lifetime) has expired.
    Expired,
    /// The family was revoked earlier, or its user is disabled.
    Revoked,
    /// No such family (or user), or a token that is not one of its generations.
    Unknown,
}

/// How long a pending TOTP enrolment can be confirmed (and shown again) after it began; the
/// sweep deletes it after that.
pub const PENDING_TOTP_SECS: i64 = 600;

/// A user's TOTP enrolment as stored: pending until a first code confirms it, then on.
#[derive(Clone, PartialEq, Eq)]
pub struct Totp {
    /// The shared secret (RFC 6238 `K`), 20 random bytes.
    pub secret: [u8; 20],
    /// When the enrolment began.
    pub created_at: UnixTime,
    /// While pending: the session that began it, the only one that may see and confirm it.
    pub began_in: Option<FamilyId>,
    /// When a code confirmed it; `None` while pending.
    pub confirmed_at: Option<UnixTime>,
    /// The last time step accepted; a code of this step or an earlier one is refused.
    pub last_step: Option<u64>,
    /// The salt the recovery codes are hashed under (one per user).
    pub recovery_salt: [u8; 16],
    /// The hashes of the recovery codes not yet used.
    pub recovery: Vec<[u8; 32]>,
}

impl Totp {
    /// Whether the enrolment was confirmed: the account signs in with a second factor.
    pub fn is_on(&self) -> bool {
        self.confirmed_at.is_some()
    }

    /// Whether this is a pending enrolment that `session` began and may still confirm at `now`.
    pub fn is_pending_for(&self, session: FamilyId, now: UnixTime) -> bool {
        !self.is_on()
            && self.began_in == Some(session)
            && now < self.created_at.plus(PENDING_TOTP_SECS)
    }
}

impl fmt::Debug for Totp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Totp")
            .field("secret", &"<hidden>")
            .field("created_at", &self.created_at)
            .field("began_in", &self.began_in)
            .field("confirmed_at", &self.confirmed_at)
            .field("last_step", &self.last_step)
            .field("recovery_left", &self.recovery.len())
            .finish_non_exhaustive()
    }
}

/// A second factor as the auth layer checked it, for storage to spend in the transaction that
/// relies on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecondFactor {
    /// A TOTP code that matched this time step; accepted only if the step is later than the
    /// last one accepted.
    Step(u64),
    /// A recovery code with this hash; accepted only if the hash is still stored, and then
    /// removed.
    Recovery([u8; 32]),
}

/// What became of a change to a user's TOTP enrolment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TotpUpdate {
    /// The change is on disk.
    Done,
    /// There is no such user (or it is disabled).
    NoSuchUser,
    /// TOTP is already on: a new enrolment needs it turned off first.
    AlreadyOn,
    /// There is no enrolment in the state the change needs (no pending one to confirm, or
    /// none on to turn off), or the pending one is not the one the code was checked against.
    NotEnrolled,
    /// The second factor was spent meanwhile: its time step was already accepted, or the
    /// recovery code already used.
    Spent,
}

/// A password step that passed, waiting for its second factor (the `mfa_token` of API.md).
/// Stored under the SHA-256 of the token; the token itself is never stored. Its `Debug` leaves
/// the password hash out.
#[derive(Clone, PartialEq, Eq)]
pub struct MfaChallenge {
    /// The user whose password was checked.
    pub user: UserId,
    /// The user's token version when it was: a logout-all or revocation since kills it.
    pub token_version: u64,
    /// The user's password hash when it was: a password change since kills it.
    pub password_hash: String,
    /// The session the second factor will open.
    pub kind: SessionKind,
    /// No code is accepted at or after this time.
    pub expires_at: UnixTime,
    /// Wrong codes so far.
    pub failures: u32,
}

impl fmt::Debug for MfaChallenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MfaChallenge")
            .field("user", &self.user)
            .field("token_version", &self.token_version)
            .field("kind", &self.kind)
            .field("expires_at", &self.expires_at)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

/// What became of a second factor presented for a challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MfaCompletion {
    /// The challenge is spent and the session is open.
    Opened {
        /// The user, as read in the transaction that opened the session.
        user: User,
        /// Recovery codes left, when a recovery code was used.
        recovery_left: Option<usize>,
    },
    /// No live challenge has this token (never issued, used, expired, or killed by wrong
    /// codes).
    UnknownChallenge,
    /// The user changed since the password step (disabled, deleted, revoked, new password,
    /// TOTP turned off): the challenge was deleted.
    Stale,
    /// The factor was spent meanwhile (a replayed step, a used recovery code); the challenge
    /// lives on and the attempt counts as a wrong code.
    Spent,
}

/// What an audit row records (API.md v2 "Sessions, introspection, revocation, audit").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuditEvent {
    /// A user was registered (the API, an admin, or `latchd user add`).
    Registered,
    /// A session was opened after a password (and, with TOTP on, a second factor).
    Login,
    /// Wrong credentials (an unknown email, a wrong password, a disabled account).
    LoginFailed,
    /// TOTP was turned on.
    MfaEnabled,
    /// TOTP was turned off by the user.
    MfaDisabled,
    /// A wrong code at the second step of a sign-in.
    MfaFailed,
    /// A recovery code was spent.
    RecoveryCodeUsed,
    /// A superseded refresh token came back: its session was revoked.
    RefreshReuse,
    /// One session ended by its holder (API or browser logout).
    Logout,
    /// Every session of a user ended (logout-all, or an admin's revoke).
    LogoutAll,
    /// One session ended from outside it (the session list, RFC 7009).
    SessionRevoked,
    /// The password was changed.
    PasswordChanged,
    /// The user was disabled.
    UserDisabled,
    /// The user was enabled again.
    UserEnabled,
    /// The user was deleted.
    UserDeleted,
    /// The user's roles were replaced.
    RolesChanged,
    /// An operator turned the user's TOTP off.
    TotpReset,
    /// A new signing key was made the newest.
    KeyRotated,
}

impl AuditEvent {
    /// Every event, in the order of API.md's list.
    pub const ALL: [AuditEvent; 18] = [
        Self::Registered,
        Self::Login,
        Self::LoginFailed,
        Self::MfaEnabled,
        Self::MfaDisabled,
        Self::MfaFailed,
        Self::RecoveryCodeUsed,
        Self::RefreshReuse,
        Self::Logout,
        Self::LogoutAll,
        Self::SessionRevoked,
        Self::PasswordChanged,
        Self::UserDisabled,
        Self::UserEnabled,
        Self::UserDeleted,
        Self::RolesChanged,
        Self::TotpReset,
        Self::KeyRotated,
    ];

    /// The event's name, as the API, the CLI and the log line show it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Login => "login",
            Self::LoginFailed => "login_failed",
            Self::MfaEnabled => "mfa_enabled",
            Self::MfaDisabled => "mfa_disabled",
            Self::MfaFailed => "mfa_failed",
            Self::RecoveryCodeUsed => "recovery_code_used",
            Self::RefreshReuse => "refresh_reuse",
            Self::Logout => "logout",
            Self::LogoutAll => "logout_all",
            Self::SessionRevoked => "session_revoked",
            Self::PasswordChanged => "password_changed",
            Self::UserDisabled => "user_disabled",
            Self::UserEnabled => "user_enabled",
            Self::UserDeleted => "user_deleted",
            Self::RolesChanged => "roles_changed",
            Self::TotpReset => "totp_reset",
            Self::KeyRotated => "key_rotated",
        }
    }

    /// The event named `label`, exactly as [`label`](Self::label) spells it.
    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.label() == label)
    }
}

/// On whose authority an audited change was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuditActor {
    /// The user the row is about, or nobody known (a failed login): no actor.
    #[default]
    Subject,
    /// An admin, through the HTTP API.
    Admin(UserId),
    /// The operator at the machine (the CLI), who has no user id.
    Operator,
}

impl AuditActor {
    /// The actor as a row shows it: the admin's id (`actor_id`), and whether the operator
    /// acted (`operator`).
    pub fn fields(self) -> (Option<UserId>, bool) {
        match self {
            Self::Subject => (None, false),
            Self::Admin(admin) => (Some(admin), false),
            Self::Operator => (None, true),
        }
    }
}

/// One row of the audit log, as the use case describes it to the write that records it.
///
/// Holds ids, a time and an address only: never a secret, a password, a token or an email.
/// A backend fills in `user` and `session` when only the outcome names them (the id of a new
/// user, the session a reused refresh token belonged to).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditNote {
    /// When it happened.
    pub at: UnixTime,
    /// What happened.
    pub event: AuditEvent,
    /// The user it is about, when known.
    pub user: Option<UserId>,
    /// Who acted.
    pub actor: AuditActor,
    /// The session it concerns.
    pub session: Option<FamilyId>,
    /// The address of the client that asked, when it came over HTTP.
    pub client: Option<std::net::IpAddr>,
}

impl AuditNote {
    /// A row of `event` at `at` about nobody yet, with no actor, session or client.
    pub fn new(event: AuditEvent, at: UnixTime) -> Self {
        Self {
            at,
            event,
            user: None,
            actor: AuditActor::Subject,
            session: None,
            client: None,
        }
    }

    /// The same row about `user`.
    #[must_use]
    pub fn user(self, user: UserId) -> Self {
        Self {
            user: Some(user),
            ..self
        }
    }

    /// The same row, done by `actor`.
    #[must_use]
    pub fn actor(self, actor: AuditActor) -> Self {
        Self { actor, ..self }
    }

    /// The same row about `session`.
    #[must_use]
    pub fn session(self, session: FamilyId) -> Self {
        Self {
            session: Some(session),
            ..self
        }
    }

    /// The same row, asked for from `client` (when known).
    #[must_use]
    pub fn client(self, client: Option<std::net::IpAddr>) -> Self {
        Self { client, ..self }
    }

    /// The same row with `user` and `session` filled in where they were not known yet.
    #[must_use]
    pub fn about(self, user: Option<UserId>, session: Option<FamilyId>) -> Self {
        Self {
            user: self.user.or(user),
            session: self.session.or(session),
            ..self
        }
    }
}

/// An audit row's id: a version 7 UUID, strictly increasing in the order rows were written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AuditId(pub Uuid);

impl fmt::Display for AuditId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A stored audit row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditRow {
    /// Its id; rows sort by it in the order they were written.
    pub id: AuditId,
    /// What it records.
    pub note: AuditNote,
}

/// The row as `GET /v1/admin/audit`, `latchd audit` and the log line show it: `id`, `at`
/// (RFC 3339), `event`, `user_id`, `actor_id` (the admin), `operator` (the CLI acted),
/// `session_id`, `client_ip`; absent values are `null`.
impl serde::Serialize for AuditRow {
    fn serialize<S: serde::Serializer>(&self, out: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let note = &self.note;
        let (actor_id, operator) = note.actor.fields();
        let mut row = out.serialize_struct("AuditRow", 8)?;
        row.serialize_field("id", &self.id.0)?;
        row.serialize_field("at", &note.at.to_rfc3339())?;
        row.serialize_field("event", note.event.label())?;
        row.serialize_field("user_id", &note.user.map(|u| u.0))?;
        row.serialize_field("actor_id", &actor_id.map(|u| u.0))?;
        row.serialize_field("operator", &operator)?;
        row.serialize_field("session_id", &note.session.map(|s| s.0))?;
        row.serialize_field("client_ip", &note.client)?;
        row.end()
    }
}

/// Which audit rows to read: those after `after` (in id order) that match every filter given,
/// at most `limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only rows about this user.
    pub user: Option<UserId>,
    /// Only rows of this event.
    pub event: Option<AuditEvent>,
    /// Only rows after this one.
    pub after: Option<AuditId>,
    /// Only rows at or after this time.
    pub since: Option<UnixTime>,
    /// At most this many rows.
    pub limit: usize,
}

/// How many rows a sweep deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Blacklist rows whose `exp` had passed.
    pub blacklist: u64,
    /// Families expired or revoked longer ago than the retention.
    pub families: u64,
    /// Signing keys retired longer ago than the retention.
    pub keys: u64,
    /// Second-factor challenges that expired, and pending TOTP enrolments past
    /// [`PENDING_TOTP_SECS`].
    pub challenges: u64,
    /// Audit rows older than the audit retention.
    pub audit: u64,
}

/// What an online backup wrote (`latchd backup`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backup {
    /// Users in the copy.
    pub users: u64,
    /// Sessions (refresh-token families, live or ended but not yet swept) in the copy.
    pub sessions: u64,
    /// Rows in the copy, every table counted.
    pub rows: u64,
    /// The size of the copy's file in bytes.
    pub bytes: u64,
}

/// Sizes of the in-memory view, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Users.
    pub users: usize,
    /// Families that are stored and not revoked.
    pub families: usize,
    /// Blacklist rows.
    pub blacklist: usize,
}

/// An HS256 signing key as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// The key id (`kid` header).
    pub kid: String,
    /// The secret bytes.
    pub secret: Vec<u8>,
    /// When the key was added.
    pub created_at: UnixTime,
    /// When the key stopped signing; it keeps verifying until swept.
    pub retired_at: Option<UnixTime>,
}

impl fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("secret", &"<hidden>")
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish()
    }
}

/// Why an access token's stored state refuses it (all answered from memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessDenied {
    /// The token's jti was blacklisted (logout).
    Blacklisted,
    /// The token's `ver` is below the user's token version (logout-all, password change).
    StaleVersion,
    /// The user was deleted.
    UnknownUser,
    /// The user is disabled.
    UserDisabled,
    /// The token's family was revoked, swept, or belongs to another user.
    FamilyRevoked,
    /// No live browser session has this cookie.
    UnknownSession,
    /// The browser session went unused for longer than its idle timeout, or reached its
    /// absolute end.
    SessionExpired,
    /// The backend could not confirm, within the last second, that the view holds every
    /// revocation (a PostgreSQL node cut off from its database): nothing is admitted until it
    /// has caught up. A 503, not a 401: the token may well be good.
    Unconfirmed,
}

impl AccessDenied {
    /// Every state refusal, in the order of their labels.
    pub const ALL: [AccessDenied; 8] = [
        AccessDenied::Blacklisted,
        AccessDenied::StaleVersion,
        AccessDenied::UnknownUser,
        AccessDenied::UserDisabled,
        AccessDenied::FamilyRevoked,
        AccessDenied::UnknownSession,
        AccessDenied::SessionExpired,
        AccessDenied::Unconfirmed,
    ];

    /// A short lowercase label, as metrics and logs show it.
    pub fn label(self) -> &'static str {
        match self {
            AccessDenied::Blacklisted => "blacklisted",
            AccessDenied::StaleVersion => "stale_version",
            AccessDenied::UnknownUser => "unknown_user",
            AccessDenied::UserDisabled => "user_disabled",
            AccessDenied::FamilyRevoked => "family_revoked",
            AccessDenied::UnknownSession => "unknown_session",
            AccessDenied::SessionExpired => "session_expired",
            AccessDenied::Unconfirmed => "unconfirmed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_keeps_a_bounded_user_agent_cut_at_a_character() {
        let ip = Some("192.0.2.1".parse().unwrap());
        // 255 ASCII bytes then a 2-byte character: it would end past the bound, so it goes.
        let ua = format!("{}é", "a".repeat(MAX_USER_AGENT_BYTES - 1));
        let kept = Origin::new(Some(&ua), ip).user_agent.unwrap();
        assert_eq!(kept, "a".repeat(MAX_USER_AGENT_BYTES - 1));
        let ua = format!("{}é", "a".repeat(MAX_USER_AGENT_BYTES - 2));
        assert_eq!(Origin::new(Some(&ua), ip).user_agent.unwrap(), ua);
        assert_eq!(
            Origin::new(Some("a\tb\u{7}c\r\n"), ip)
                .user_agent
                .as_deref(),
            Some("abc")
        );
        assert_eq!(Origin::new(Some("\u{1}\u{2}"), ip).user_agent, None);
        assert_eq!(Origin::new(None, ip).client_ip, ip);
    }

    #[test]
    fn ids_take_only_the_canonical_spelling() {
        let id = "00000000-0000-4000-8000-00000000000a";
        assert!(UserId::parse(id).is_some());
        for other in [
            "00000000-0000-4000-8000-00000000000A",
            "00000000000040008000000000000000",
            "urn:uuid:00000000-0000-4000-8000-00000000000a",
            "{00000000-0000-4000-8000-00000000000a}",
            "",
        ] {
            assert_eq!(UserId::parse(other), None, "{other}");
        }
    }

    #[test]
    fn access_denied_labels_are_distinct() {
        let mut labels: Vec<&str> = AccessDenied::ALL.iter().map(|d| d.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), AccessDenied::ALL.len());
    }
}
