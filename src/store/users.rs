//! User rows and the unique email index.

use std::ops::Bound;

use redb::{ReadableDatabase, ReadableMultimapTable, ReadableTable, WriteTransaction};
use uuid::Uuid;

use super::records::{decode, encode, UserRecord};
use super::tables::{FAMILIES, FAMILIES_BY_USER, USERS, USER_BY_EMAIL};
use super::{Change, CreateUser, FamilyId, Store, StoreError, User, UserId, Written};
use crate::time::UnixTime;

/// The key under which an email is unique: surrounding whitespace trimmed, then lowercased with
/// Unicode's full case mapping (`str::to_lowercase`), so `" ÉMILE@Example.COM "` and
/// `"émile@example.com"` are the same account. No other folding (dots, `+tags`, NFC) is done.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

impl Store {
    /// Registers a user under a new random id, unless the normalized email is taken.
    pub fn create_user(
        &self,
        email: &str,
        password_hash: &str,
        roles: &[String],
        now: UnixTime,
    ) -> Result<CreateUser, StoreError> {
        self.write(|txn| {
            let mut by_email = txn.open_table(USER_BY_EMAIL)?;
            let key = normalize_email(email);
            if by_email.get(key.as_str())?.is_some() {
                return Ok(Written::nothing(CreateUser::EmailTaken));
            }
            let user = User {
                id: UserId(Uuid::new_v4()),
                email: email.trim().to_owned(),
                password_hash: password_hash.to_owned(),
                roles: roles.to_vec(),
                created_at: now,
                disabled: false,
                token_version: 0,
            };
            by_email.insert(key.as_str(), user.id.0.as_u128())?;
            txn.open_table(USERS)?.insert(
                user.id.0.as_u128(),
                encode(&UserRecord::from_user(&user)).as_slice(),
            )?;
            let change = user_change(&user);
            Ok(Written::commit_with(
                CreateUser::Created(user),
                vec![change],
            ))
        })
    }

    /// The user with this id.
    pub fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let txn = self.db.begin_read()?;
        let users = txn.open_table(USERS)?;
        let row = users.get(id.0.as_u128())?;
        row.map(|bytes| decode::<UserRecord>("users", bytes.value()).map(|r| r.into_user(id)))
            .transpose()
    }

    /// The user registered under this email, compared after [`normalize_email`].
    pub fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let id = {
            let txn = self.db.begin_read()?;
            let by_email = txn.open_table(USER_BY_EMAIL)?;
            let found = by_email.get(normalize_email(email).as_str())?;
            match found {
                Some(id) => UserId(Uuid::from_u128(id.value())),
                None => return Ok(None),
            }
        };
        self.user(id)
    }

    /// Replaces the user's password hash with `new_hash` only if it is still `expected` (the
    /// hash a login just verified): the rehash that upgrades a work factor must not undo a
    /// password change that committed while it ran. Does not revoke anything. Returns false if
    /// there is no such user or the hash has changed.
    pub fn upgrade_password_hash(
        &self,
        id: UserId,
        expected: &str,
        new_hash: &str,
    ) -> Result<bool, StoreError> {
        self.update_user(id, |user| {
            if user.password_hash != expected {
                return false;
            }
            new_hash.clone_into(&mut user.password_hash);
            true
        })
    }

    /// Replaces the user's roles and bumps the token version, so access tokens carrying the old
    /// roles stop working at once (a refresh issues tokens with the new ones). Returns false
    /// if there is no such user.
    pub fn set_roles(&self, id: UserId, roles: &[String]) -> Result<bool, StoreError> {
        self.update_user(id, |user| {
            user.roles = roles.to_vec();
            user.token_version = user.token_version.saturating_add(1);
            true
        })
    }

    /// Disables (or re-enables) the user; a disabled user's tokens are refused at once.
    /// Returns false if there is no such user.
    pub fn disable_user(&self, id: UserId, disabled: bool) -> Result<bool, StoreError> {
        self.update_user(id, |user| {
            user.disabled = disabled;
            true
        })
    }

    /// Deletes the user, its email index row, and all its families. Returns false if there was
    /// no such user.
    pub fn delete_user(&self, id: UserId) -> Result<bool, StoreError> {
        self.write(|txn| {
            let mut users = txn.open_table(USERS)?;
            let Some(user) = read_user(&users, id)? else {
                return Ok(Written::nothing(false));
            };
            users.remove(id.0.as_u128())?;
            txn.open_table(USER_BY_EMAIL)?
                .remove(normalize_email(&user.email).as_str())?;
            let mut changes = vec![Change::UserGone(id)];
            for family in families_of(txn, id)? {
                txn.open_table(FAMILIES)?.remove(family.0.as_u128())?;
                changes.push(Change::FamilyGone(family));
            }
            txn.open_multimap_table(FAMILIES_BY_USER)?
                .remove_all(id.0.as_u128())?;
            Ok(Written::commit_with(true, changes))
        })
    }

    /// Up to `limit` users ordered by id, starting after `after`.
    pub fn list_users(&self, limit: usize, after: Option<UserId>) -> Result<Vec<User>, StoreError> {
        let txn = self.db.begin_read()?;
        let users = txn.open_table(USERS)?;
        let start = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.0.as_u128()));
        let mut out = Vec::new();
        for row in users.range::<u128>((start, Bound::Unbounded))?.take(limit) {
            let (id, bytes) = row?;
            let id = UserId(Uuid::from_u128(id.value()));
            out.push(decode::<UserRecord>("users", bytes.value())?.into_user(id));
        }
        Ok(out)
    }

    /// How many users exist, from memory.
    pub fn user_count(&self) -> usize {
        self.view.counts().users
    }

    /// Reads, changes and writes back one user row; `change` returns false to write nothing.
    fn update_user(
        &self,
        id: UserId,
        change: impl FnOnce(&mut User) -> bool,
    ) -> Result<bool, StoreError> {
        self.write(|txn| {
            let mut users = txn.open_table(USERS)?;
            let Some(mut user) = read_user(&users, id)? else {
                return Ok(Written::nothing(false));
            };
            if !change(&mut user) {
                return Ok(Written::nothing(false));
            }
            users.insert(
                id.0.as_u128(),
                encode(&UserRecord::from_user(&user)).as_slice(),
            )?;
            Ok(Written::commit_with(true, vec![user_change(&user)]))
        })
    }
}

/// Reads one user row inside a transaction.
pub(super) fn read_user(
    users: &impl ReadableTable<u128, &'static [u8]>,
    id: UserId,
) -> Result<Option<User>, StoreError> {
    let row = users.get(id.0.as_u128())?;
    row.map(|bytes| decode::<UserRecord>("users", bytes.value()).map(|r| r.into_user(id)))
        .transpose()
}

/// The ids of every family of `user`, from the index.
pub(super) fn families_of(
    txn: &WriteTransaction,
    user: UserId,
) -> Result<Vec<FamilyId>, StoreError> {
    let index = txn.open_multimap_table(FAMILIES_BY_USER)?;
    let mut out = Vec::new();
    for family in index.get(user.0.as_u128())? {
        out.push(FamilyId(Uuid::from_u128(family?.value())));
    }
    Ok(out)
}

/// The view change that mirrors `user`'s current row.
pub(super) fn user_change(user: &User) -> Change {
    Change::User {
        id: user.id,
        token_version: user.token_version,
        disabled: user.disabled,
    }
}
