//! User rows, the unique email index and the role index.

use std::ops::Bound;

use redb::{ReadTransaction, ReadableMultimapTable, ReadableTable, Table, WriteTransaction};
use uuid::Uuid;

use super::records::{decode, encode, UserRecord};
use super::sessions::{read_family, revoke_all_in};
use super::tables::{
    BROWSER_SESSIONS, FAMILIES, FAMILIES_BY_USER, ROLE_MEMBERS, TOTP, USERS, USER_BY_EMAIL,
};
use super::{Change, StoreError, Written};
use crate::model::{
    normalize_email, CreateUser, FamilyId, NewUser, User, UserId, UserUpdate, ADMIN_ROLE,
};
use crate::time::UnixTime;

/// Registers `new` under a new random id, unless its normalized email is taken.
pub(super) fn create_in(
    txn: &WriteTransaction,
    new: NewUser,
    now: UnixTime,
) -> Result<Written<CreateUser>, StoreError> {
    let mut by_email = txn.open_table(USER_BY_EMAIL)?;
    let key = normalize_email(&new.email);
    if by_email.get(key.as_str())?.is_some() {
        return Ok(Written::nothing(CreateUser::EmailTaken));
    }
    let user = User {
        id: UserId(Uuid::new_v4()),
        email: new.email.trim().to_owned(),
        password_hash: new.password_hash,
        roles: new.roles,
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
}

/// The user registered under the normalized email `key`.
pub(super) fn user_by_email_in(
    txn: &ReadTransaction,
    key: &str,
) -> Result<Option<User>, StoreError> {
    let Some(id) = txn
        .open_table(USER_BY_EMAIL)?
        .get(key)?
        .map(|id| id.value())
    else {
        return Ok(None);
    };
    read_user(&txn.open_table(USERS)?, UserId(Uuid::from_u128(id)))
}

/// Up to `limit` users ordered by id, starting after `after`.
pub(super) fn list_in(
    txn: &ReadTransaction,
    limit: usize,
    after: Option<UserId>,
) -> Result<Vec<User>, StoreError> {
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

/// Replaces the user's roles and bumps the token version, so access tokens carrying the old
/// roles stop working at once. Refused when it would take `admin` from the last enabled admin.
pub(super) fn set_roles_in(
    txn: &WriteTransaction,
    id: UserId,
    roles: Vec<String>,
) -> Result<Written<UserUpdate>, StoreError> {
    update_in(txn, id, UserUpdate::NoSuchUser, |txn, users, user| {
        let demoted = !roles.iter().any(|r| r == ADMIN_ROLE);
        if demoted && is_last_admin(txn, users, user)? {
            return Ok(Err(UserUpdate::LastAdmin));
        }
        index_roles(txn, id, &user.roles, &roles)?;
        user.roles = roles;
        user.token_version = user.token_version.saturating_add(1);
        Ok(Ok(UserUpdate::Done))
    })
}

/// Disables the user and revokes every session of it (token version bumped) in the same
/// transaction, so no crash can leave a disabled user with live sessions. Refused for the last
/// enabled admin.
pub(super) fn disable_in(
    txn: &WriteTransaction,
    id: UserId,
    now: UnixTime,
) -> Result<Written<UserUpdate>, StoreError> {
    let mut users = txn.open_table(USERS)?;
    let Some(mut user) = read_user(&users, id)? else {
        return Ok(Written::nothing(UserUpdate::NoSuchUser));
    };
    if is_last_admin(txn, &users, &user)? {
        return Ok(Written::nothing(UserUpdate::LastAdmin));
    }
    user.disabled = true;
    let changes = revoke_all_in(txn, &mut users, &mut user, now)?;
    Ok(Written::commit_with(UserUpdate::Done, changes))
}

/// Deletes the user, its email and role index rows, all its families and its TOTP enrolment. Deleting the last
/// enabled admin is refused.
pub(super) fn delete_in(
    txn: &WriteTransaction,
    id: UserId,
) -> Result<Written<UserUpdate>, StoreError> {
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
    let mut families = txn.open_table(FAMILIES)?;
    let mut cookies = txn.open_table(BROWSER_SESSIONS)?;
    for family in families_of(txn, id)? {
        if let Some(rec) = read_family(&families, family)? {
            if rec.browser.is_some() {
                cookies.remove(&rec.current.hash)?;
            }
        }
        families.remove(family.0.as_u128())?;
        changes.push(Change::FamilyGone(family));
    }
    txn.open_multimap_table(FAMILIES_BY_USER)?
        .remove_all(id.0.as_u128())?;
    txn.open_table(TOTP)?.remove(id.0.as_u128())?;
    Ok(Written::commit_with(UserUpdate::Done, changes))
}

/// Reads, changes and writes back one user row. `change` edits the user and answers
/// `Ok(value)` to write it, or `Err(value)` to write nothing; `missing` is the answer when
/// there is no such user.
pub(super) fn update_in<T>(
    txn: &WriteTransaction,
    id: UserId,
    missing: T,
    change: impl FnOnce(
        &WriteTransaction,
        &Table<'_, u128, &'static [u8]>,
        &mut User,
    ) -> Result<Result<T, T>, StoreError>,
) -> Result<Written<T>, StoreError> {
    let mut users = txn.open_table(USERS)?;
    let Some(mut user) = read_user(&users, id)? else {
        return Ok(Written::nothing(missing));
    };
    let value = match change(txn, &users, &mut user)? {
        Ok(value) => value,
        Err(refused) => return Ok(Written::nothing(refused)),
    };
    write_user(&mut users, &user)?;
    Ok(Written::commit_with(value, vec![user_change(&user)]))
}

/// Reads one user row.
pub(super) fn read_user(
    users: &impl ReadableTable<u128, &'static [u8]>,
    id: UserId,
) -> Result<Option<User>, StoreError> {
    let row = users.get(id.0.as_u128())?;
    row.map(|bytes| decode::<UserRecord>("users", bytes.value()).map(|r| r.into_user(id)))
        .transpose()
}

/// Writes one user row.
pub(super) fn write_user(
    users: &mut Table<'_, u128, &'static [u8]>,
    user: &User,
) -> Result<(), StoreError> {
    users.insert(
        user.id.0.as_u128(),
        encode(&UserRecord::from_user(user)).as_slice(),
    )?;
    Ok(())
}

/// Whether `user` is an enabled admin and no other enabled user holds the admin role.
fn is_last_admin(
    txn: &WriteTransaction,
    users: &impl ReadableTable<u128, &'static [u8]>,
    user: &User,
) -> Result<bool, StoreError> {
    if user.disabled || !user.has_role(ADMIN_ROLE) {
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
    Change::user(user)
}
