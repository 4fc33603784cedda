//! Storage: users, refresh-token families, the access-token blacklist and signing keys in one
//! redb file. Knows redb, not HTTP or tokens: it is given ids, hashes and times, never a token.
//!
//! Every public write is one redb write transaction committed with the default
//! `Durability::Immediate` before it returns, so an `Ok` means the change is on disk. An
//! in-memory view (token versions, disabled flags, live families, blacklist) answers the
//! per-request checks without touching redb; it is updated only after the commit returned.

use std::fmt;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use redb::{Database, ReadableDatabase, ReadableTable, TableHandle, WriteTransaction};
use uuid::Uuid;

use crate::time::UnixTime;

mod error;
mod keys;
mod migrate;
mod records;
mod revocation;
mod sessions;
mod tables;
mod users;
mod view;

#[cfg(test)]
mod tests;

pub use error::StoreError;
pub use users::normalize_email;

use records::{decode, FamilyRecord, UserRecord};
use tables::{
    BLACKLIST, FAMILIES, FAMILIES_BY_USER, META, ROLE_MEMBERS, SCHEMA_VERSION, SCHEMA_VERSION_KEY,
    SECRETS, SIGNING_KEYS, USERS, USER_BY_EMAIL,
};
use view::{Change, View};

/// A user's id (a random v4 UUID).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(pub Uuid);

/// A refresh-token family's id, which is also the access token's `sid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FamilyId(pub Uuid);

/// An access token's `jti`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Jti(pub Uuid);

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

/// A registered user as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The user's id.
    pub id: UserId,
    /// The email as registered, with surrounding whitespace trimmed (not case-folded).
    pub email: String,
    /// The password hash as a PHC string; opaque to the store.
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

/// What became of an operator's change to one user (disable, delete, new roles).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserUpdate {
    /// The change is on disk.
    Done,
    /// There is no such user.
    NoSuchUser,
    /// The change would leave no enabled user with the `admin` role; nothing was written.
    LastAdmin,
}

/// The role whose last enabled holder cannot be deleted, disabled or demoted.
pub const ADMIN_ROLE: &str = "admin";

/// What became of a registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateUser {
    /// The user was stored.
    Created(User),
    /// Another user already has this email (after normalization).
    EmailTaken,
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

/// Lifetimes that govern refresh families (API.md `LATCHD_REFRESH_TTL`, `LATCHD_SESSION_MAX`,
/// `LATCHD_REFRESH_GRACE`).
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
}

/// What became of a presented refresh token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The successor is now the family's current token (`generation` = presented + 1).
    Rotated {
        /// The family.
        family: FamilyId,
        /// Its user.
        user: UserId,
        /// The successor's generation.
        generation: u64,
    },
    /// The presented token is the one the current token superseded, less than the grace ago:
    /// here is that successor again, still sealed. Nothing was written.
    Retried {
        /// The family.
        family: FamilyId,
        /// Its user.
        user: UserId,
        /// The current (already issued) successor's generation.
        generation: u64,
        /// The stored sealed successor.
        sealed: [u8; 32],
    },
    /// A superseded token was presented: the whole family was revoked in the same transaction
    /// (RFC 9700 §4.14.2).
    Reused {
        /// The family, now revoked.
        family: FamilyId,
        /// Its user.
        user: UserId,
    },
    /// The token (or its family's absolute lifetime) has expired.
    Expired,
    /// The family was revoked earlier.
    Revoked,
    /// No such family, or a token that is not one of its generations.
    Unknown,
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
}

/// The storage layer: one redb file plus its in-memory view. `Send + Sync`; share it in an `Arc`.
pub struct Store {
    db: Database,
    view: View,
    /// Serializes commit + view update, so views apply in commit order.
    writer: Mutex<()>,
    refresh_mac_key: [u8; 32],
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path`, checks its schema version, and loads
    /// the in-memory view.
    ///
    /// # Errors
    /// `Locked` if another process has the file open; `SchemaTooNew` if a newer latchd wrote
    /// it; `Corrupt` if it holds tables but no schema version, or a row fails to decode.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        owner_only(path)?;
        let db = Database::create(path)?;
        let refresh_mac_key = init_schema(&db)?;
        let store = Store {
            db,
            view: View::default(),
            writer: Mutex::new(()),
            refresh_mac_key,
        };
        store.view.apply(load_view(&store.db)?);
        Ok(store)
    }

    /// Which of the access token's stored conditions refuses it, if any, from memory only: the
    /// hot path of `GET /v1/auth/verify` does no redb read.
    ///
    /// # Errors
    /// The first of: unknown user, disabled user, stale version, family not live, blacklisted.
    pub fn check_access(
        &self,
        user: UserId,
        family: FamilyId,
        jti: Jti,
        version: u64,
    ) -> Result<(), AccessDenied> {
        self.view.check_access(user, family, jti, version)
    }

    /// Row counts from the view: users, live families, blacklist entries.
    pub fn counts(&self) -> Counts {
        self.view.counts()
    }

    /// Runs `body` in one write transaction, commits it (or aborts it when it wrote nothing),
    /// and only then mirrors its changes in the view.
    fn write<T>(
        &self,
        body: impl FnOnce(&WriteTransaction) -> Result<Written<T>, StoreError>,
    ) -> Result<T, StoreError> {
        // redb already serializes write transactions; this lock extends that over the view
        // update, so two commits cannot reach memory in the opposite order.
        let _serial = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let txn = self.db.begin_write()?;
        let written = body(&txn)?;
        if written.commit {
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        self.view.apply(written.changes);
        Ok(written.value)
    }
}

/// The result of a write transaction's body.
struct Written<T> {
    value: T,
    commit: bool,
    changes: Vec<Change>,
}

impl<T> Written<T> {
    /// Commit, changing nothing in memory.
    fn commit(value: T) -> Self {
        Self {
            value,
            commit: true,
            changes: Vec::new(),
        }
    }

    /// Commit, then apply `changes` to the view.
    fn commit_with(value: T, changes: Vec<Change>) -> Self {
        Self {
            value,
            commit: true,
            changes,
        }
    }

    /// Nothing was written: abort rather than pay for a commit.
    fn nothing(value: T) -> Self {
        Self {
            value,
            commit: false,
            changes: Vec::new(),
        }
    }
}

/// Checks or writes the schema version, creates missing tables, and returns the refresh MAC key
/// (generating it on first open). Refuses, without writing, a file it cannot read.
fn init_schema(db: &Database) -> Result<[u8; 32], StoreError> {
    let txn = db.begin_write()?;
    let has_meta = txn.list_tables()?.any(|t| t.name() == META.name());
    if has_meta {
        let found = txn
            .open_table(META)?
            .get(SCHEMA_VERSION_KEY)?
            .map(|v| v.value());
        match found {
            Some(SCHEMA_VERSION) => {}
            Some(1) => {
                migrate::from_1(&txn)?;
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
    txn.open_multimap_table(ROLE_MEMBERS)?;
    txn.open_table(FAMILIES)?;
    txn.open_multimap_table(FAMILIES_BY_USER)?;
    txn.open_table(BLACKLIST)?;
    txn.open_table(SIGNING_KEYS)?;
    let key = keys::ensure_refresh_mac_key(&mut txn.open_table(SECRETS)?)?;
    txn.commit()?;
    Ok(key)
}

/// Rebuilds the view's contents from the tables.
fn load_view(db: &Database) -> Result<Vec<Change>, StoreError> {
    let txn = db.begin_read()?;
    let mut changes = Vec::new();
    for row in txn.open_table(USERS)?.iter()? {
        let (id, bytes) = row?;
        let rec: UserRecord = decode("users", bytes.value())?;
        changes.push(Change::User {
            id: UserId(Uuid::from_u128(id.value())),
            token_version: rec.token_version,
            disabled: rec.disabled,
        });
    }
    for row in txn.open_table(FAMILIES)?.iter()? {
        let (id, bytes) = row?;
        let rec: FamilyRecord = decode("families", bytes.value())?;
        if rec.revoked_at.is_none() {
            changes.push(Change::Family {
                id: FamilyId(Uuid::from_u128(id.value())),
                user: UserId(rec.user),
            });
        }
    }
    for row in txn.open_table(BLACKLIST)?.iter()? {
        let (jti, exp) = row?;
        changes.push(Change::Blacklisted {
            jti: Jti(Uuid::from_u128(jti.value())),
            exp: exp.value(),
        });
    }
    Ok(changes)
}

/// Creates the file owner-only (0600) if it does not exist, and takes group and other access
/// away from one that does: it holds the signing keys and the refresh MAC key, so a reader of
/// the file could mint access tokens for anyone. redb initialises an empty file.
fn owner_only(path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::fs;
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let created = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        // Any other error (a missing directory, an unwritable path) is left for redb to
        // report in its own words.
        if let Err(e) = created {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                let mode = fs::metadata(path)
                    .map_err(StoreError::Permissions)?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o700))
                        .map_err(StoreError::Permissions)?;
                    tracing::warn!(
                        path = %path.display(),
                        "database file was readable by others; restricted it to its owner"
                    );
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
