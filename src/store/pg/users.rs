//! Users on PostgreSQL: reads, registration, and the changes that bump a token version or
//! revoke sessions with them. The last-admin rule is a read of the enabled admins inside the
//! same `SERIALIZABLE` transaction as the change it guards, so two nodes demoting the last
//! two admins at once cannot both succeed.

use super::errors::{is_unique_violation, pg_err};
use super::feed::Subject;
use super::rows::{self, USER_COLUMNS};
use super::sessions::revoke_all_of;
use super::{write_txn, Shared, Txn};
use crate::auth::storage::StoreError;
use crate::model::{
    normalize_email, AuditNote, CreateUser, FamilyId, NewUser, User, UserId, UserUpdate, ADMIN_ROLE,
};
use crate::time::UnixTime;

/// The user `id`.
pub(super) async fn user(db: &Shared, id: UserId) -> Result<Option<User>, StoreError> {
    let client = db.client().await?;
    let row = client
        .query_opt(
            &format!("SELECT {USER_COLUMNS} FROM latchd_users WHERE id = $1"),
            &[&id.0],
        )
        .await
        .map_err(pg_err("reading a user"))?;
    Ok(row.as_ref().map(rows::user))
}

/// The user registered under `email` (normalized).
pub(super) async fn user_by_email(db: &Shared, email: &str) -> Result<Option<User>, StoreError> {
    let key = normalize_email(email);
    if key.contains('\0') {
        // PostgreSQL's text cannot hold it, so no stored email has it.
        return Ok(None);
    }
    let client = db.client().await?;
    let row = client
        .query_opt(
            &format!("SELECT {USER_COLUMNS} FROM latchd_users WHERE email_key = $1"),
            &[&key],
        )
        .await
        .map_err(pg_err("reading a user by email"))?;
    Ok(row.as_ref().map(rows::user))
}

/// Up to `limit` users in id order after `after`.
pub(super) async fn list(
    db: &Shared,
    limit: usize,
    after: Option<UserId>,
) -> Result<Vec<User>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let client = db.client().await?;
    let found = match after {
        Some(after) => {
            client
                .query(
                    &format!(
                        "SELECT {USER_COLUMNS} FROM latchd_users WHERE id > $1 ORDER BY id LIMIT $2"
                    ),
                    &[&after.0, &limit],
                )
                .await
        }
        None => {
            client
                .query(
                    &format!("SELECT {USER_COLUMNS} FROM latchd_users ORDER BY id LIMIT $1"),
                    &[&limit],
                )
                .await
        }
    }
    .map_err(pg_err("listing users"))?;
    Ok(found.iter().map(rows::user).collect())
}

/// Registers `new` under a random id unless its normalized email is taken.
pub(super) async fn create(
    db: &Shared,
    new: NewUser,
    now: UnixTime,
    note: AuditNote,
) -> Result<CreateUser, StoreError> {
    write_txn!(db, now, |tx| {
        let user = User {
            id: UserId(uuid::Uuid::new_v4()),
            email: new.email.trim().to_owned(),
            password_hash: new.password_hash.clone(),
            roles: new.roles.clone(),
            created_at: now,
            disabled: false,
            token_version: 0,
        };
        let inserted = tx
            .execute(
                "INSERT INTO latchd_users
                     (id, email_key, email, password_hash, roles, created_at, disabled,
                      token_version)
                 VALUES ($1, $2, $3, $4, $5, $6, false, 0)
                 ON CONFLICT (email_key) DO NOTHING",
                &[
                    &user.id.0,
                    &normalize_email(&user.email),
                    &user.email,
                    &user.password_hash,
                    &user.roles,
                    &now.secs(),
                ],
            )
            .await;
        match inserted {
            Ok(0) => Ok(CreateUser::EmailTaken),
            Ok(_) => {
                tx.changed(Subject::User(user.id));
                tx.audit(db, note.about(Some(user.id), None)).await?;
                Ok(CreateUser::Created(user))
            }
            // A random v4 id that repeated: the RNG failed.
            Err(e) if is_unique_violation(&e) => Err(StoreError::Random),
            Err(e) => Err(pg_err("registering a user")(e)),
        }
    })
}

/// The user `id` inside `tx`, its row locked for the rest of the transaction.
pub(super) async fn locked(tx: &Txn<'_>, id: UserId) -> Result<Option<User>, StoreError> {
    let row = tx
        .query_opt(
            &format!("SELECT {USER_COLUMNS} FROM latchd_users WHERE id = $1 FOR UPDATE"),
            &[&id.0],
        )
        .await
        .map_err(pg_err("reading a user"))?;
    Ok(row.as_ref().map(rows::user))
}

/// Writes the mutable columns of `user` (email and id stay), noting the user for the feed.
async fn write(tx: &Txn<'_>, user: &User) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE latchd_users SET password_hash = $2, roles = $3, disabled = $4,
             token_version = $5
         WHERE id = $1",
        &[
            &user.id.0,
            &user.password_hash,
            &user.roles,
            &user.disabled,
            &rows::version(user.token_version),
        ],
    )
    .await
    .map_err(pg_err("writing a user"))?;
    tx.changed(Subject::User(user.id));
    Ok(())
}

/// Bumps `user`'s token version, writes its row and revokes every session of the user, in
/// `tx`: all its access and refresh tokens stop working (logout-all, disable, TOTP reset; the
/// redb store's `revoke_all_in`).
pub(super) async fn revoke_all(
    tx: &Txn<'_>,
    user: &mut User,
    now: UnixTime,
) -> Result<(), StoreError> {
    user.token_version = user.token_version.saturating_add(1);
    write(tx, user).await?;
    revoke_all_of(tx, user.id, None, now).await?;
    Ok(())
}

/// Whether `user` is an enabled admin and no other enabled user holds the admin role.
async fn is_last_admin(tx: &Txn<'_>, user: &User) -> Result<bool, StoreError> {
    if user.disabled || !user.has_role(ADMIN_ROLE) {
        return Ok(false);
    }
    let others: i64 = tx
        .query_one(
            "SELECT count(*) FROM latchd_users
             WHERE NOT disabled AND $1 = ANY (roles) AND id <> $2",
            &[&ADMIN_ROLE, &user.id.0],
        )
        .await
        .map_err(pg_err("counting admins"))?
        .get(0);
    Ok(others == 0)
}

/// Bumps the token version and revokes every session (logout-all, admin revoke).
pub(super) async fn revoke_user(
    db: &Shared,
    user: UserId,
    now: UnixTime,
    note: AuditNote,
) -> Result<bool, StoreError> {
    write_txn!(db, now, |tx| {
        let Some(mut row) = locked(&tx, user).await? else {
            return Ok(false);
        };
        revoke_all(&tx, &mut row, now).await?;
        tx.audit(db, note.about(Some(user), None)).await?;
        Ok(true)
    })
}

/// A password change as a compare-and-swap, revoking every session but `keep`.
pub(super) async fn change_password(
    db: &Shared,
    user: UserId,
    expected: &str,
    new_hash: &str,
    keep: Option<FamilyId>,
    now: UnixTime,
    note: AuditNote,
) -> Result<bool, StoreError> {
    write_txn!(db, now, |tx| {
        let Some(mut row) = locked(&tx, user).await? else {
            return Ok(false);
        };
        if row.disabled || row.password_hash != expected {
            return Ok(false);
        }
        if let Some(keep) = keep {
            let kept: Option<bool> = tx
                .query_opt(
                    "SELECT revoked_at IS NULL FROM latchd_sessions WHERE id = $1 AND user_id = $2",
                    &[&keep.0, &user.0],
                )
                .await
                .map_err(pg_err("reading the session kept"))?
                .map(|r| r.get(0));
            if kept != Some(true) {
                return Ok(false);
            }
        }
        new_hash.clone_into(&mut row.password_hash);
        write(&tx, &row).await?;
        revoke_all_of(&tx, user, keep, now).await?;
        tx.audit(db, note.about(Some(user), keep)).await?;
        Ok(true)
    })
}

/// Replaces the hash if it is still `expected`; revokes nothing.
pub(super) async fn upgrade_password_hash(
    db: &Shared,
    user: UserId,
    expected: &str,
    new_hash: &str,
) -> Result<bool, StoreError> {
    write_txn!(db, UnixTime::now(), |tx| {
        let changed = tx
            .execute(
                "UPDATE latchd_users SET password_hash = $3 WHERE id = $1 AND password_hash = $2",
                &[&user.0, &expected, &new_hash],
            )
            .await
            .map_err(pg_err("upgrading a password hash"))?;
        // The view holds no password hash: nothing to feed.
        Ok(changed == 1)
    })
}

/// Replaces the roles and bumps the token version, unless that demotes the last admin.
pub(super) async fn set_roles(
    db: &Shared,
    user: UserId,
    roles: &[String],
    note: AuditNote,
) -> Result<UserUpdate, StoreError> {
    write_txn!(db, note.at, |tx| {
        let Some(mut row) = locked(&tx, user).await? else {
            return Ok(UserUpdate::NoSuchUser);
        };
        let demoted = !roles.iter().any(|r| r == ADMIN_ROLE);
        if demoted && is_last_admin(&tx, &row).await? {
            return Ok(UserUpdate::LastAdmin);
        }
        row.roles = roles.to_vec();
        row.token_version = row.token_version.saturating_add(1);
        write(&tx, &row).await?;
        tx.audit(db, note.about(Some(user), None)).await?;
        Ok(UserUpdate::Done)
    })
}

/// Disables the user and revokes all its sessions, unless it is the last admin.
pub(super) async fn disable(
    db: &Shared,
    user: UserId,
    now: UnixTime,
    note: AuditNote,
) -> Result<UserUpdate, StoreError> {
    write_txn!(db, now, |tx| {
        let Some(mut row) = locked(&tx, user).await? else {
            return Ok(UserUpdate::NoSuchUser);
        };
        if is_last_admin(&tx, &row).await? {
            return Ok(UserUpdate::LastAdmin);
        }
        row.disabled = true;
        revoke_all(&tx, &mut row, now).await?;
        tx.audit(db, note.about(Some(user), None)).await?;
        Ok(UserUpdate::Done)
    })
}

/// Re-enables the user; its revoked sessions stay revoked.
pub(super) async fn enable(
    db: &Shared,
    user: UserId,
    note: AuditNote,
) -> Result<UserUpdate, StoreError> {
    write_txn!(db, note.at, |tx| {
        let Some(mut row) = locked(&tx, user).await? else {
            return Ok(UserUpdate::NoSuchUser);
        };
        row.disabled = false;
        write(&tx, &row).await?;
        tx.audit(db, note.about(Some(user), None)).await?;
        Ok(UserUpdate::Done)
    })
}

/// Deletes the user with its sessions and TOTP, unless it is the last admin.
pub(super) async fn delete(
    db: &Shared,
    user: UserId,
    note: AuditNote,
) -> Result<UserUpdate, StoreError> {
    write_txn!(db, note.at, |tx| {
        let Some(row) = locked(&tx, user).await? else {
            return Ok(UserUpdate::NoSuchUser);
        };
        if is_last_admin(&tx, &row).await? {
            return Ok(UserUpdate::LastAdmin);
        }
        let sessions = tx
            .query(
                "SELECT id FROM latchd_sessions WHERE user_id = $1",
                &[&user.0],
            )
            .await
            .map_err(pg_err("reading a user's sessions"))?;
        for session in &sessions {
            tx.changed(Subject::Session(FamilyId(session.get(0))));
        }
        // Sessions and TOTP go with the row (ON DELETE CASCADE).
        tx.execute("DELETE FROM latchd_users WHERE id = $1", &[&user.0])
            .await
            .map_err(pg_err("deleting a user"))?;
        tx.changed(Subject::User(user));
        tx.audit(db, note.about(Some(user), None)).await?;
        Ok(UserUpdate::Done)
    })
}
