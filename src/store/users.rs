//! User rows, the unique email index and the role index.

use std::ops::Bound;

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use uuid::Uuid;

use super::records::{
    decode, encode, id_from, last_id, role_member_key, user_family_key, RowKey, UserRecord,
};
use super::sessions::{read_family, revoke_all_in};
use super::tables::{
    Bytes, Table, BROWSER_SESSIONS, FAMILIES, FAMILIES_BY_USER, ROLE_MEMBERS, TOTP, USERS,
    USER_BY_EMAIL,
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
    if by_email.get(key.as_bytes())?.is_some() {
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
    by_email.insert(key.as_bytes(), user.id.key())?;
    index_roles(txn, user.id, &[], &user.roles)?;
    txn.open_table(USERS)?.insert(
        user.id.key(),
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
    let Some(id) = txn.open_table(USER_BY_EMAIL)?.get(key.as_bytes())? else {
        return Ok(None);
    };
    let id = UserId(id_from("user_by_email", id.value())?);
    read_user(&txn.open_table(USERS)?, id)
}

/// Up to `limit` users ordered by id, starting after `after`.
pub(super) fn list_in(
    txn: &ReadTransaction,
    limit: usize,
    after: Option<UserId>,
) -> Result<Vec<User>, StoreError> {
    let users = txn.open_table(USERS)?;
    let start = after
        .as_ref()
        .map_or(Bound::Unbounded, |a| Bound::Excluded(a.key()));
    let mut out = Vec::new();
    for row in users.range::<&[u8]>((start, Bound::Unbounded))?.take(limit) {
        let (id, bytes) = row?;
        let id = UserId(id_from("users", id.value())?);
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
    users.remove(id.key())?;
    txn.open_table(USER_BY_EMAIL)?
        .remove(normalize_email(&user.email).as_bytes())?;
    index_roles(txn, id, &user.roles, &[])?;
    let mut changes = vec![Change::UserGone(id)];
    let mut families = txn.open_table(FAMILIES)?;
    let mut cookies = txn.open_table(BROWSER_SESSIONS)?;
    let mut index = txn.open_table(FAMILIES_BY_USER)?;
    for family in families_in(&index, id)? {
        if let Some(rec) = read_family(&families, family)? {
            if rec.browser.is_some() {
                cookies.remove(rec.current.hash.as_slice())?;
            }
        }
        families.remove(family.key())?;
        index.remove(user_family_key(id, family).as_slice())?;
        changes.push(Change::FamilyGone(family));
    }
    txn.open_table(TOTP)?.remove(id.key())?;
    Ok(Written::commit_with(UserUpdate::Done, changes))
}

/// Reads, changes and writes back one user row. `change` edits the user and answers
/// `Ok(value)` to write it, or `Err(value)` to write nothing; `missing` is the answer when
/// there is no such user.
pub(super) fn update_in<T>(
    txn: &WriteTransaction,
    id: UserId,
    missing: T,
    change: impl FnOnce(&WriteTransaction, &Table<'_>, &mut User) -> Result<Result<T, T>, StoreError>,
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
    users: &impl ReadableTable<Bytes, Bytes>,
    id: UserId,
) -> Result<Option<User>, StoreError> {
    let row = users.get(id.key())?;
    row.map(|bytes| decode::<UserRecord>("users", bytes.value()).map(|r| r.into_user(id)))
        .transpose()
}

/// Writes one user row.
pub(super) fn write_user(users: &mut Table<'_>, user: &User) -> Result<(), StoreError> {
    users.insert(
        user.id.key(),
        encode(&UserRecord::from_user(user)).as_slice(),
    )?;
    Ok(())
}

/// Whether `user` is an enabled admin and no other enabled user holds the admin role.
fn is_last_admin(
    txn: &WriteTransaction,
    users: &impl ReadableTable<Bytes, Bytes>,
    user: &User,
) -> Result<bool, StoreError> {
    if user.disabled || !user.has_role(ADMIN_ROLE) {
        return Ok(false);
    }
    let members = txn.open_table(ROLE_MEMBERS)?;
    for other in members_of(&members, ADMIN_ROLE)? {
        if other != user.id && read_user(users, other)?.is_some_and(|u| !u.disabled) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The users holding `role`, from the index.
fn members_of(
    members: &impl ReadableTable<Bytes, Bytes>,
    role: &str,
) -> Result<Vec<UserId>, StoreError> {
    let mut out = Vec::new();
    for row in members.range::<&[u8]>(role.as_bytes()..)? {
        let (key, _) = row?;
        let key = key.value();
        if !key.starts_with(role.as_bytes()) {
            break;
        }
        // A longer role whose name starts with this one's sorts among them.
        if key.len() == role.len() + 16 {
            out.push(UserId(last_id("role_members", key)?));
        }
    }
    Ok(out)
}

/// Moves `user` in the role index from the roles `old` to the roles `new`.
fn index_roles(
    txn: &WriteTransaction,
    user: UserId,
    old: &[String],
    new: &[String],
) -> Result<(), StoreError> {
    let mut members = txn.open_table(ROLE_MEMBERS)?;
    for role in old.iter().filter(|r| !new.contains(r)) {
        members.remove(role_member_key(role, user).as_slice())?;
    }
    for role in new.iter().filter(|r| !old.contains(r)) {
        members.insert(role_member_key(role, user).as_slice(), [].as_slice())?;
    }
    Ok(())
}

/// The ids of every family of `user`, from the index.
pub(super) fn families_of(
    txn: &WriteTransaction,
    user: UserId,
) -> Result<Vec<FamilyId>, StoreError> {
    families_in(&txn.open_table(FAMILIES_BY_USER)?, user)
}

/// The ids of every family of `user` in the index `families_by_user`.
pub(super) fn families_in(
    index: &impl ReadableTable<Bytes, Bytes>,
    user: UserId,
) -> Result<Vec<FamilyId>, StoreError> {
    let first = user_family_key(user, FamilyId(Uuid::nil()));
    let last = user_family_key(user, FamilyId(Uuid::max()));
    let mut out = Vec::new();
    for row in index.range::<&[u8]>(first.as_slice()..=last.as_slice())? {
        let (key, _) = row?;
        out.push(FamilyId(last_id("families_by_user", key.value())?));
    }
    Ok(out)
}

/// The view change that mirrors `user`'s current row.
pub(super) fn user_change(user: &User) -> Change {
    Change::user(user)
}
