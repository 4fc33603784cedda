//! The redb implementation of auth's [`Storage`] port: users, refresh-token families, the
//! access-token blacklist and signing keys in one redb file. Knows redb, not HTTP or tokens:
//! it is given ids, hashes and times, never a token.
//!
//! Every write is a job for the one writer thread ([`writer`]), which runs the jobs waiting at
//! once in one transaction (replaying around a job that fails, so it is undone alone) and
//! makes them durable together with one `Durability::Immediate` commit (group commit) before any of their callers is answered, so an
//! `Ok` means the change is on disk. An in-memory view (token versions, disabled flags, live
//! families, blacklist) answers the per-request checks without touching redb; the writer
//! applies each job's changes to it after the batch is durable, in commit order. Reads run on
//! the caller's thread in their own read transaction (and may see a write of the batch being
//! made durable, whose caller has not been answered yet).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableHandle, WriteTransaction};

use crate::auth::storage::{Pending, Storage, StoreError};
use crate::model::{
    AccessDenied, AuditEvent, AuditNote, AuditQuery, AuditRow, Backup, BrowserStanding, Counts,
    CreateUser, FamilyId, Jti, MfaChallenge, MfaCompletion, NewSession, NewUser, Origin, Presented,
    RefreshStanding, Rotation, SecondFactor, SessionInfo, SessionPolicy, StoredKey, Successor,
    Sweep, Totp, TotpUpdate, User, UserFacts, UserId, UserUpdate,
};
use crate::time::UnixTime;

mod audit;
mod backup;
mod error;
mod family_row;
mod keys;
mod migrate;
#[cfg(feature = "postgres")]
pub mod pg;
mod records;
mod revocation;
mod sessions;
mod tables;
mod totp;
mod users;
mod view;
mod view_rows;
mod writer;

#[cfg(test)]
mod tests;

use tables::{
    AUDIT, BLACKLIST, BROWSER_SESSIONS, FAMILIES, FAMILIES_BY_USER, META, MFA_CHALLENGES,
    ROLE_MEMBERS, SCHEMA_VERSION, SCHEMA_VERSION_KEY, SECRETS, SIGNING_KEYS, TOTP, USERS,
    USER_BY_EMAIL, VIEW_SESSIONS, VIEW_USERS,
};
use view::{Change, View};

/// How the redb file is opened (`LATCHD_CACHE_MB`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The most bytes redb's page cache may hold (reads and the write buffer together). redb's
    /// own default is 1 GiB, so memory would follow the file; the view, not this cache, is what
    /// the per-request checks read.
    pub cache_bytes: usize,
}

/// The page cache's default size, in MiB (`LATCHD_CACHE_MB`).
pub const DEFAULT_CACHE_MB: usize = 8;

impl Default for Settings {
    fn default() -> Self {
        Self {
            cache_bytes: DEFAULT_CACHE_MB << 20,
        }
    }
}

/// The storage layer: one redb file, its in-memory view, and the writer thread.
/// `Send + Sync`; share it in an `Arc`.
pub struct Store {
    shared: Arc<Shared>,
    writer: writer::Writer,
    refresh_mac_key: [u8; 32],
}

/// What the writer thread and the readers share.
struct Shared {
    db: Database,
    view: View,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("counts", &self.shared.view.counts())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path` with the default [`Settings`]; see
    /// [`open_with`](Self::open_with).
    ///
    /// # Errors
    /// As [`open_with`](Self::open_with).
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Self::open_with(path, Settings::default())
    }

    /// Opens (creating if needed) the database at `path`, checks its schema version (migrating
    /// an older one), loads the in-memory view, and starts the writer thread.
    ///
    /// # Errors
    /// `Locked` if another process has the file open; `SchemaTooNew` if a newer latchd wrote
    /// it; `Corrupt` if it holds tables but no schema version, or a row fails to decode.
    pub fn open_with(path: &Path, settings: Settings) -> Result<Store, StoreError> {
        // What the path holds is checked before anything touches it: a directory or another
        // program's file is refused as it is, its permissions unchanged.
        let created = create_or_check(path)?;
        let db = redb::Builder::new()
            .set_cache_size(settings.cache_bytes)
            .create(path)?;
        let refresh_mac_key = init_schema(&db)?;
        if !created {
            owner_only(path)?;
        }
        let view = view_rows::load(&db)?;
        let shared = Arc::new(Shared { db, view });
        let writer = writer::Writer::start(Arc::clone(&shared))?;
        Ok(Store {
            shared,
            writer,
            refresh_mac_key,
        })
    }

    /// Whether `jti` is blacklisted, from memory.
    pub fn is_blacklisted(&self, jti: Jti) -> bool {
        self.shared.view.is_blacklisted(jti)
    }

    /// The user's current token version, from memory; `None` if there is no such user.
    pub fn token_version(&self, user: UserId) -> Option<u64> {
        self.shared.view.token_version(user)
    }

    /// Runs `body` in a write transaction on the writer thread; see [`writer`]. `body` may run
    /// twice (when a later job of its batch fails), so it keeps its inputs rather than moving
    /// them out.
    fn write<T: Send + 'static>(
        &self,
        body: impl FnMut(&WriteTransaction) -> Result<Written<T>, StoreError> + Send + 'static,
    ) -> Pending<'static, T> {
        self.writer.submit(body)
    }

    /// Runs `body` in a read transaction, now, on the caller's thread.
    fn read<T: Send + 'static>(
        &self,
        body: impl FnOnce(&redb::ReadTransaction) -> Result<T, StoreError>,
    ) -> Pending<'static, T> {
        let result = self
            .shared
            .db
            .begin_read()
            .map_err(StoreError::from)
            .and_then(|txn| body(&txn));
        Box::pin(std::future::ready(result))
    }
}

impl Storage for Store {
    fn check_access(
        &self,
        user: UserId,
        family: FamilyId,
        jti: Jti,
        version: u64,
    ) -> Result<(), AccessDenied> {
        self.shared.view.check_access(user, family, jti, version)
    }

    fn check_browser(
        &self,
        cookie_hash: &[u8; 32],
        now: UnixTime,
        policy: &SessionPolicy,
    ) -> Result<BrowserStanding, AccessDenied> {
        self.shared.view.check_browser(cookie_hash, now, policy)
    }

    fn user_facts(&self, user: UserId) -> Option<UserFacts> {
        self.shared.view.user_facts(user)
    }

    fn touch_session(&self, family: FamilyId, at: UnixTime) {
        // Submitted now; nobody waits for the answer. A failure leaves the last use on disk
        // older, which the view notices and asks again.
        drop(self.write(move |txn| sessions::touch_in(txn, family, at)));
    }

    fn counts(&self) -> Counts {
        self.shared.view.counts()
    }

    fn refresh_mac_key(&self) -> [u8; 32] {
        self.refresh_mac_key
    }

    fn user(&self, id: UserId) -> Pending<'_, Option<User>> {
        self.read(move |txn| users::read_user(&txn.open_table(USERS)?, id))
    }

    fn user_by_email<'a>(&'a self, email: &'a str) -> Pending<'a, Option<User>> {
        let key = crate::model::normalize_email(email);
        self.read(move |txn| users::user_by_email_in(txn, &key))
    }

    fn list_users(&self, limit: usize, after: Option<UserId>) -> Pending<'_, Vec<User>> {
        self.read(move |txn| users::list_in(txn, limit, after))
    }

    fn create_user(
        &self,
        user: NewUser,
        now: UnixTime,
        note: AuditNote,
    ) -> Pending<'_, CreateUser> {
        self.write(move |txn| {
            let written = users::create_in(txn, user.clone(), now)?;
            audit::when(txn, written, |created| match created {
                CreateUser::Created(user) => Some(note.about(Some(user.id), None)),
                CreateUser::EmailTaken => None,
            })
        })
    }

    fn open_session<'a>(
        &'a self,
        family: FamilyId,
        seen: &'a User,
        first_hash: [u8; 32],
        session: NewSession,
        now: UnixTime,
        policy: SessionPolicy,
        note: AuditNote,
    ) -> Pending<'a, bool> {
        let seen = seen.clone();
        self.write(move |txn| {
            let written =
                sessions::open_in(txn, family, &seen, &first_hash, &session, now, &policy)?;
            audit::when(txn, written, |opened| {
                opened.then_some(note.about(Some(seen.id), Some(family)))
            })
        })
    }

    fn rotate(
        &self,
        presented: Presented,
        next: Successor,
        now: UnixTime,
        policy: SessionPolicy,
        note: AuditNote,
    ) -> Pending<'_, Rotation> {
        self.write(move |txn| {
            let written = sessions::rotate_in(txn, &presented, &next, now, &policy)?;
            audit::when(txn, written, |rotation| match rotation {
                Rotation::Reused { family, user } => Some(note.about(Some(*user), Some(*family))),
                Rotation::Rotated { .. }
                | Rotation::Retried { .. }
                | Rotation::Expired
                | Rotation::Revoked
                | Rotation::Unknown => None,
            })
        })
    }

    fn blacklist(&self, jti: Jti, exp: UnixTime) -> Pending<'_, ()> {
        self.write(move |txn| {
            let change = revocation::blacklist_in(txn, jti, exp)?;
            Ok(Written::commit_with((), vec![change]))
        })
    }

    fn end_session(
        &self,
        family: FamilyId,
        jti: Jti,
        exp: UnixTime,
        now: UnixTime,
        note: AuditNote,
    ) -> Pending<'_, ()> {
        self.write(move |txn| {
            let mut changes = vec![revocation::blacklist_in(txn, jti, exp)?];
            let revoked = sessions::revoke_in(&mut txn.open_table(FAMILIES)?, family, now)?;
            if revoked.is_some() {
                changes.push(Change::FamilyGone(family));
            }
            let written = Written::commit_with((), changes);
            audit::when(txn, written, |()| {
                revoked.map(|user| note.about(Some(user), Some(family)))
            })
        })
    }

    fn sessions(&self, user: UserId, now: UnixTime) -> Pending<'_, Vec<SessionInfo>> {
        self.read(move |txn| sessions::list_in(txn, user, now))
    }

    fn end_own_session(
        &self,
        user: UserId,
        family: FamilyId,
        now: UnixTime,
        note: AuditNote,
    ) -> Pending<'_, bool> {
        self.write(move |txn| {
            let written = sessions::end_own_in(txn, user, family, now)?;
            audit::when(txn, written, |ended| {
                ended.then_some(note.about(Some(user), Some(family)))
            })
        })
    }

    fn refresh_standing(
        &self,
        presented: Presented,
        now: UnixTime,
    ) -> Pending<'_, Option<RefreshStanding>> {
        self.read(move |txn| sessions::standing_in(txn, &presented, now))
    }

    fn revoke_refresh(
        &self,
        presented: Presented,
        now: UnixTime,
        note: AuditNote,
    ) -> Pending<'_, Option<UserId>> {
        self.write(move |txn| {
            let written = sessions::revoke_current_in(txn, &presented, now)?;
            audit::when(txn, written, |revoked| {
                revoked.map(|user| note.about(Some(user), Some(presented.family)))
            })
        })
    }

    fn revoke_session(
        &self,
        family: FamilyId,
        now: UnixTime,
        note: AuditNote,
    ) -> Pending<'_, bool> {
        self.write(move |txn| {
            // The row names the session's user, which a caller holding only a refresh token's
            // session id (a logout by the cookie) cannot give the audit row.
            let revoked = sessions::revoke_in(&mut txn.open_table(FAMILIES)?, family, now)?;
            if let Some(user) = revoked {
                let written = Written::commit_with(true, vec![Change::FamilyGone(family)]);
                audit::when(txn, written, |_| Some(note.about(Some(user), Some(family))))
            } else {
                Ok(Written::nothing(false))
            }
        })
    }

    fn revoke_user(&self, user: UserId, now: UnixTime, note: AuditNote) -> Pending<'_, bool> {
        self.write(move |txn| {
            let mut users_table = txn.open_table(USERS)?;
            let Some(mut row) = users::read_user(&users_table, user)? else {
                return Ok(Written::nothing(false));
            };
            let changes = sessions::revoke_all_in(txn, &mut users_table, &mut row, now)?;
            drop(users_table);
            let written = Written::commit_with(true, changes);
            audit::when(txn, written, |_| Some(note.about(Some(user), None)))
        })
    }

    fn change_password<'a>(
        &'a self,
        user: UserId,
        expected: &'a str,
        new_hash: &'a str,
        keep: Option<FamilyId>,
        now: UnixTime,
        note: AuditNote,
    ) -> Pending<'a, bool> {
        let (expected, new_hash) = (expected.to_owned(), new_hash.to_owned());
        self.write(move |txn| {
            let written = sessions::change_password_in(txn, user, &expected, &new_hash, keep, now)?;
            audit::when(txn, written, |changed| {
                changed.then_some(note.about(Some(user), keep))
            })
        })
    }

    fn upgrade_password_hash<'a>(
        &'a self,
        user: UserId,
        expected: &'a str,
        new_hash: &'a str,
    ) -> Pending<'a, bool> {
        let (expected, new_hash) = (expected.to_owned(), new_hash.to_owned());
        self.write(move |txn| {
            users::update_in(txn, user, false, |_, _, row| {
                if row.password_hash != expected {
                    return Ok(Err(false));
                }
                row.password_hash.clone_from(&new_hash);
                Ok(Ok(true))
            })
        })
    }

    fn set_roles<'a>(
        &'a self,
        user: UserId,
        roles: &'a [String],
        note: AuditNote,
    ) -> Pending<'a, UserUpdate> {
        let roles = roles.to_vec();
        self.write(move |txn| {
            let written = users::set_roles_in(txn, user, roles.clone())?;
            audit::when(txn, written, |update| done(*update, note, user))
        })
    }

    fn disable_user(
        &self,
        user: UserId,
        now: UnixTime,
        note: AuditNote,
    ) -> Pending<'_, UserUpdate> {
        self.write(move |txn| {
            let written = users::disable_in(txn, user, now)?;
            audit::when(txn, written, |update| done(*update, note, user))
        })
    }

    fn enable_user(&self, user: UserId, note: AuditNote) -> Pending<'_, UserUpdate> {
        self.write(move |txn| {
            let written = users::update_in(txn, user, UserUpdate::NoSuchUser, |_, _, row| {
                row.disabled = false;
                Ok(Ok(UserUpdate::Done))
            })?;
            audit::when(txn, written, |update| done(*update, note, user))
        })
    }

    fn delete_user(&self, user: UserId, note: AuditNote) -> Pending<'_, UserUpdate> {
        self.write(move |txn| {
            let written = users::delete_in(txn, user)?;
            audit::when(txn, written, |update| done(*update, note, user))
        })
    }

    fn totp(&self, user: UserId) -> Pending<'_, Option<Totp>> {
        self.read(move |txn| totp::read_totp(&txn.open_table(TOTP)?, user))
    }

    fn begin_totp(
        &self,
        user: UserId,
        secret: [u8; 20],
        session: FamilyId,
        now: UnixTime,
    ) -> Pending<'_, TotpUpdate> {
        self.write(move |txn| totp::begin_in(txn, user, secret, session, now))
    }

    fn confirm_totp(
        &self,
        user: UserId,
        secret: [u8; 20],
        step: u64,
        salt: [u8; 16],
        recovery: Vec<[u8; 32]>,
        now: UnixTime,
        note: AuditNote,
    ) -> Pending<'_, TotpUpdate> {
        self.write(move |txn| {
            let written = totp::confirm_in(txn, user, &secret, step, salt, recovery.clone(), now)?;
            audit::when(txn, written, |update| {
                (*update == TotpUpdate::Done).then_some(note.about(Some(user), None))
            })
        })
    }

    fn disable_totp(
        &self,
        user: UserId,
        factor: SecondFactor,
        note: AuditNote,
    ) -> Pending<'_, TotpUpdate> {
        self.write(move |txn| {
            let written = totp::disable_in(txn, user, factor)?;
            let spent_recovery = written.value == TotpUpdate::Done && is_recovery(factor);
            let mut written = audit::when(txn, written, |update| {
                (*update == TotpUpdate::Done).then_some(note.about(Some(user), None))
            })?;
            if written.commit && spent_recovery {
                let spent = AuditNote {
                    event: AuditEvent::RecoveryCodeUsed,
                    ..note.about(Some(user), None)
                };
                written.audited.push(audit::insert_in(txn, spent)?);
            }
            Ok(written)
        })
    }

    fn reset_totp(&self, user: UserId, now: UnixTime, note: AuditNote) -> Pending<'_, bool> {
        self.write(move |txn| {
            let written = totp::reset_in(txn, user, now)?;
            audit::when(txn, written, |reset| {
                reset.then_some(note.about(Some(user), None))
            })
        })
    }

    fn open_challenge(&self, hash: [u8; 32], challenge: MfaChallenge) -> Pending<'_, ()> {
        self.write(move |txn| totp::open_challenge_in(txn, &hash, &challenge))
    }

    fn challenge(&self, hash: [u8; 32], now: UnixTime) -> Pending<'_, Option<MfaChallenge>> {
        self.read(move |txn| {
            let found = totp::read_challenge(&txn.open_table(MFA_CHALLENGES)?, &hash)?;
            Ok(found.filter(|c| totp::is_live(c, now)))
        })
    }

    fn fail_challenge(
        &self,
        hash: [u8; 32],
        max_failures: u32,
        now: UnixTime,
        note: AuditNote,
    ) -> Pending<'_, bool> {
        self.write(move |txn| {
            let written = totp::fail_challenge_in(txn, &hash, max_failures, now)?;
            // It committed: the challenge was there, and took the wrong code.
            audit::when(txn, written, |_| Some(note))
        })
    }

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
    ) -> Pending<'_, MfaCompletion> {
        self.write(move |txn| {
            let written = totp::complete_in(
                txn,
                &hash,
                factor,
                family,
                &first_hash,
                origin.clone(),
                now,
                &policy,
            )?;
            let opened = match &written.value {
                MfaCompletion::Opened { user, .. } => Some(note.about(Some(user.id), Some(family))),
                MfaCompletion::UnknownChallenge | MfaCompletion::Stale | MfaCompletion::Spent => {
                    None
                }
            };
            let mut written = audit::when(txn, written, |_| opened)?;
            if let (true, Some(login)) = (written.commit, opened) {
                if is_recovery(factor) {
                    let used = AuditNote {
                        event: AuditEvent::RecoveryCodeUsed,
                        ..login
                    };
                    written.audited.push(audit::insert_in(txn, used)?);
                }
            }
            Ok(written)
        })
    }

    fn signing_keys(&self) -> Pending<'_, Vec<StoredKey>> {
        self.read(|txn| keys::all_in(&txn.open_table(SIGNING_KEYS)?))
    }

    fn add_signing_key(
        &self,
        key: StoredKey,
        retire_others_at: Option<UnixTime>,
        note: AuditNote,
    ) -> Pending<'_, ()> {
        self.write(move |txn| {
            let written = keys::add_in(txn, &key, retire_others_at)?;
            audit::when(txn, written, |()| Some(note))
        })
    }

    fn retire_signing_keys(&self, at: UnixTime) -> Pending<'_, u64> {
        self.write(move |txn| keys::retire_in(txn, at))
    }

    fn sweep(&self, now: UnixTime, retain_secs: i64, audit_retain_secs: i64) -> Pending<'_, Sweep> {
        self.write(move |txn| revocation::sweep_in(txn, now, retain_secs, audit_retain_secs))
    }

    fn record(&self, note: AuditNote) -> Pending<'_, ()> {
        self.write(move |txn| {
            let row = audit::insert_in(txn, note)?;
            let mut written = Written::commit(());
            written.audited.push(row);
            Ok(written)
        })
    }

    fn audit(&self, query: AuditQuery) -> Pending<'_, Vec<AuditRow>> {
        self.read(move |txn| audit::list_in(txn, &query))
    }

    fn backup(&self, dest: &Path) -> Pending<'_, Backup> {
        // Copying a large file takes a while: on a thread of its own, not the caller's task.
        let (shared, dest) = (Arc::clone(&self.shared), dest.to_owned());
        let (reply, answer) = tokio::sync::oneshot::channel();
        let started = std::thread::Builder::new()
            .name("latchd-backup".to_owned())
            .spawn(move || {
                let done = backup::backup_to(&shared.db, &dest);
                // Let go of the database before answering: a caller that then drops the store
                // must find the file closed.
                drop(shared);
                let _ = reply.send(done);
            });
        Box::pin(async move {
            started.map_err(|e| StoreError::backend("starting the backup thread", e))?;
            answer.await.map_err(|_| StoreError::Closed)?
        })
    }
}

/// The note of an operator change that was `Done`, about `user`.
fn done(update: UserUpdate, note: AuditNote, user: UserId) -> Option<AuditNote> {
    (update == UserUpdate::Done).then_some(note.about(Some(user), None))
}

/// Whether `factor` is a recovery code (whose spending is audited on its own row).
fn is_recovery(factor: SecondFactor) -> bool {
    matches!(factor, SecondFactor::Recovery(_))
}

/// The result of a write transaction's body.
struct Written<T> {
    value: T,
    commit: bool,
    changes: Vec<Change>,
    /// The audit rows the transaction holds, logged once it is durable.
    audited: Vec<crate::model::AuditRow>,
}

impl<T> Written<T> {
    /// Commit, changing nothing in memory.
    fn commit(value: T) -> Self {
        Self {
            value,
            commit: true,
            changes: Vec::new(),
            audited: Vec::new(),
        }
    }

    /// Commit, then apply `changes` to the view.
    fn commit_with(value: T, changes: Vec<Change>) -> Self {
        Self {
            value,
            commit: true,
            changes,
            audited: Vec::new(),
        }
    }

    /// Nothing was written: abort rather than pay for a commit. Only for a body that wrote
    /// nothing, since it shares its transaction with the rest of its batch.
    fn nothing(value: T) -> Self {
        Self {
            value,
            commit: false,
            changes: Vec::new(),
            audited: Vec::new(),
        }
    }
}

/// Checks or writes the schema version (migrating an older file), creates missing tables, and
/// returns the refresh MAC key (generating it on first open). Refuses, without writing, a file
/// it cannot read.
fn init_schema(db: &Database) -> Result<[u8; 32], StoreError> {
    let txn = db.begin_write()?;
    let mut upgraded = None;
    let has_meta = txn.list_tables()?.any(|t| t.name() == META.name());
    if has_meta {
        let found = txn
            .open_table(META)?
            .get(SCHEMA_VERSION_KEY)?
            .map(|v| v.value());
        match found {
            Some(SCHEMA_VERSION) => {
                if view_rows::repair(&txn)? {
                    tracing::warn!(
                        "the view's tables did not match the users table; rebuilt them from the \
                         users and sessions"
                    );
                }
            }
            Some(old @ 1..SCHEMA_VERSION) => {
                // Seconds on a large file (4.6 s at a million users and sessions): say why.
                tracing::info!(
                    from = old,
                    to = SCHEMA_VERSION,
                    "upgrading the database file"
                );
                migrate::forward(&txn, old)?;
                upgraded = Some(old);
                txn.open_table(META)?
                    .insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION)?;
            }
            Some(found) if found > SCHEMA_VERSION => {
                return Err(StoreError::SchemaTooNew {
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            Some(found) => {
                return Err(StoreError::Corrupt {
                    table: "schema",
                    detail: format!("unknown schema version {found}"),
                });
            }
            None => {
                return Err(StoreError::Corrupt {
                    table: "schema",
                    detail: "meta table without a schema version".to_owned(),
                });
            }
        }
    } else {
        let any_table =
            txn.list_tables()?.next().is_some() || txn.list_multimap_tables()?.next().is_some();
        if any_table {
            return Err(StoreError::Corrupt {
                table: "schema",
                detail: "tables without a schema version: not a latchd file".to_owned(),
            });
        }
        txn.open_table(META)?
            .insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION)?;
    }
    txn.open_table(USERS)?;
    txn.open_table(USER_BY_EMAIL)?;
    txn.open_table(ROLE_MEMBERS)?;
    txn.open_table(FAMILIES)?;
    txn.open_table(FAMILIES_BY_USER)?;
    txn.open_table(BROWSER_SESSIONS)?;
    txn.open_table(TOTP)?;
    txn.open_table(MFA_CHALLENGES)?;
    txn.open_table(BLACKLIST)?;
    txn.open_table(SIGNING_KEYS)?;
    txn.open_table(AUDIT)?;
    txn.open_table(VIEW_USERS)?;
    txn.open_table(VIEW_SESSIONS)?;
    let key = keys::ensure_refresh_mac_key(&mut txn.open_table(SECRETS)?)?;
    txn.commit()?;
    if let Some(old) = upgraded {
        tracing::info!(
            from = old,
            to = SCHEMA_VERSION,
            "upgraded the database file; a latchd of the old schema can no longer open it"
        );
    }
    Ok(key)
}

/// Creates the file owner-only (0600) if nothing is at `path` (`true`), or checks that what is
/// there may be a latchd database: a regular file, empty (redb initialises it) or starting with
/// redb's magic number (`false`). Whether a redb file is latchd's is the schema check's to say.
fn create_or_check(path: &Path) -> Result<bool, StoreError> {
    use std::io::Read as _;
    let not_latchd = |detail: String| StoreError::NotADatabase(detail);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => return Ok(true),
        // Any other error (a missing directory, an unwritable path) is left for redb to
        // report in its own words.
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(_) => {}
    }
    let meta = std::fs::metadata(path).map_err(|e| StoreError::Permissions(Arc::new(e)))?;
    if meta.is_dir() {
        return Err(not_latchd("it is a directory".to_owned()));
    }
    if !meta.is_file() {
        return Err(not_latchd("it is not a regular file".to_owned()));
    }
    let mut head = Vec::with_capacity(REDB_MAGIC.len());
    std::fs::File::open(path)
        .and_then(|f| f.take(REDB_MAGIC.len() as u64).read_to_end(&mut head))
        .map_err(|e| StoreError::backend("reading the file's header", e))?;
    if !head.is_empty() && head != REDB_MAGIC {
        return Err(not_latchd("it is not a redb file".to_owned()));
    }
    Ok(false)
}

/// The first bytes of every redb file (redb's `MAGICNUMBER`).
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// Takes group and other access away from a latchd database (checked by now): it holds the
/// signing keys and the refresh MAC key, so a reader of the file could mint access tokens for
/// anyone.
fn owner_only(path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let permissions = |e: std::io::Error| StoreError::Permissions(Arc::new(e));
        let mode = std::fs::metadata(path)
            .map_err(permissions)?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))
                .map_err(permissions)?;
            tracing::warn!(
                path = %path.display(),
                "database file was readable by others; restricted it to its owner"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
