//! User rows and the unique email index.

use std::ops::Bound;

use redb::{ReadableDatabase, ReadableMultimapTable, ReadableTable, Table, WriteTransaction};
use uuid::Uuid;

use super::records::{decode, encode, UserRecord};
use super::tables::{FAMILIES, FAMILIES_BY_USER, ROLE_MEMBERS, USERS, USER_BY_EMAIL};
use super::{
    Change, CreateUser, FamilyId, Store, StoreError, User, UserId, UserUpdate, Written, ADMIN_ROLE,
};
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
            index_roles(txn, user.id, &[], &user.roles)?;
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
        self.update_user(id, false, |_, _, user| {
            if user.password_hash != expected {
                return Ok(Err(false));
            }
            new_hash.clone_into(&mut user.password_hash);
            Ok(Ok(true))
        })
    }

    /// Replaces the user's roles and bumps the token version, so access tokens carrying the old
    /// roles stop working at once (a refresh issues tokens with the new ones). Refused when it
    /// would take `admin` from the last enabled admin.
    pub fn set_roles(&self, id: UserId, roles: &[String]) -> Result<UserUpdate, StoreError> {
        self.update_user(id, UserUpdate::NoSuchUser, |txn, users, user| {
            let demoted = !roles.iter().any(|r| r == ADMIN_ROLE);
            if demoted && is_last_admin(txn, users, user)? {
                return Ok(Err(UserUpdate::LastAdmin));
            }
            index_roles(txn, id, &user.roles, roles)?;
            user.roles = roles.to_vec();
            user.token_version = user.token_version.saturating_add(1);
            Ok(Ok(UserUpdate::Done))
        })
    }

    /// Disables (or re-enables) the user; a disabled user's tokens are refused at once.
    /// Disabling the last enabled admin is refused.
    pub fn disable_user(&self, id: UserId, disabled: bool) -> Result<UserUpdate, StoreError> {
        self.update_user(id, UserUpdate::NoSuchUser, |txn, users, user| {
            if disabled && is_last_admin(txn, users, user)? {
                return Ok(Err(UserUpdate::LastAdmin));
            }
            user.disabled = disabled;
            Ok(Ok(UserUpdate::Done))
        })
    }

    /// Deletes the user, its email and role index rows, and all its families. Deleting the
    /// last enabled admin is refused.
    pub fn delete_user(&self, id: UserId) -> Result<UserUpdate, StoreError> {
        self.write(|txn| {
            let mut users = txn.open_table(USERS)?;
            let Some(user) = read_user(&users, id)? else {
                return Ok(Written::nothing(UserUpdate::NoSuchUser));
            };
            if is_last_admin(txn, &users, &user)? {
                return Ok(Written::nothing(UserUpdate::LastAdmin));
            }
            users.remove(id.0.as_u128())?;
            txn.open_table(USER_BY_EMAIL)?
                .remove(normalize_email(&user.email).as_str())?;
            index_roles(txn, id, &user.roles, &[])?;
            let mut changes = vec![Change::UserGone(id)];
            for family in families_of(txn, id)? {
                txn.open_table(FAMILIES)?.remove(family.0.as_u128())?;
                changes.push(Change::FamilyGone(family));
            }
            txn.open_multimap_table(FAMILIES_BY_USER)?
                .remove_all(id.0.as_u128())?;
            Ok(Written::commit_with(UserUpdate::Done, changes))
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

    /// Reads, changes and writes back one user row. `change` edits the user and answers
    /// `Ok(value)` to write it, or `Err(value)` to write nothing; `missing` is the answer when
    /// there is no such user.
    fn update_user<T>(
        &self,
        id: UserId,
        missing: T,
        change: impl FnOnce(
            &WriteTransaction,
            &Table<'_, u128, &'static [u8]>,
            &mut User,
        ) -> Result<Result<T, T>, StoreError>,
    ) -> Result<T, StoreError> {
        self.write(|txn| {
            let mut users = txn.open_table(USERS)?;
            let Some(mut user) = read_user(&users, id)? else {
                return Ok(Written::nothing(missing));
            };
            let value = match change(txn, &users, &mut user)? {
                Ok(value) => value,
                Err(refused) => return Ok(Written::nothing(refused)),
            };
            users.insert(
                id.0.as_u128(),
                encode(&UserRecord::from_user(&user)).as_slice(),
            )?;
            Ok(Written::commit_with(value, vec![user_change(&user)]))
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

/// Whether `user` is an enabled admin and no other enabled user holds the admin role.
pub(super) fn is_last_admin(
    txn: &WriteTransaction,
    users: &impl ReadableTable<u128, &'static [u8]>,
    user: &User,
) -> Result<bool, StoreError> {
    if user.disabled || !user.roles.iter().any(|r| r == ADMIN_ROLE) {
        return Ok(false);
    }
    let members = txn.open_multimap_table(ROLE_MEMBERS)?;
    for member in members.get(ADMIN_ROLE)? {
        let other = UserId(Uuid::from_u128(member?.value()));
        if other != user.id && read_user(users, other)?.is_some_and(|u| !u.disabled) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Moves `user` in the role index from the roles `old` to the roles `new`.
fn index_roles(
    txn: &WriteTransaction,
    user: UserId,
    old: &[String],
    new: &[String],
) -> Result<(), StoreError> {
    let mut members = txn.open_multimap_table(ROLE_MEMBERS)?;
    for role in old.iter().filter(|r| !new.contains(r)) {
        members.remove(role.as_str(), user.0.as_u128())?;
    }
    for role in new.iter().filter(|r| !old.contains(r)) {
        members.insert(role.as_str(), user.0.as_u128())?;
    }
    Ok(())
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
