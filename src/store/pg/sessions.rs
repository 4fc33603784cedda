//! Sessions on PostgreSQL: opening under the cap, rotation as a compare-and-swap on the
//! locked session row, browser touches, the blacklist, and revocation. Every decision is the
//! redb store's own (`store::sessions`), taken on the record read in the same `SERIALIZABLE`
//! transaction as the write it guards; the `ended_at` column is kept equal to the record's
//! `ended_at()`, which the cap, the list and the sweep filter on.

use super::errors::{is_unique_violation, pg_err};
use super::feed::Subject;
use super::rows::{self, json, session_record, USER_COLUMNS};
use super::{write_txn, Shared, Txn};
use crate::auth::storage::StoreError;
use crate::model::{
    AuditNote, FamilyId, Jti, NewSession, Presented, RefreshStanding, Rotation, SessionInfo,
    SessionPolicy, Successor, User, UserId,
};
use crate::store::records::FamilyRecord;
use crate::store::sessions::{
    decide_rotation, is_current, new_record, newest_first, past_the_cap, standing_of, touch_record,
};
use crate::time::UnixTime;

/// Revokes session `family` in `tx` if it is live; the user it belonged to when it was.
pub(super) async fn revoke_one(
    tx: &Txn<'_>,
    family: FamilyId,
    now: UnixTime,
) -> Result<Option<UserId>, StoreError> {
    let row = tx
        .query_opt(
            "UPDATE latchd_sessions
             SET revoked_at = $2, ended_at = $2,
                 record = jsonb_set(record, '{revoked_at}', to_jsonb($2::bigint))
             WHERE id = $1 AND revoked_at IS NULL
             RETURNING user_id",
            &[&family.0, &now.secs()],
        )
        .await
        .map_err(pg_err("revoking a session"))?;
    let user = row.map(|r| UserId(r.get(0)));
    if user.is_some() {
        tx.changed(Subject::Session(family));
    }
    Ok(user)
}

/// Revokes every live session of `user` but `keep`, in `tx`; the sessions it revoked.
pub(super) async fn revoke_all_of(
    tx: &Txn<'_>,
    user: UserId,
    keep: Option<FamilyId>,
    now: UnixTime,
) -> Result<Vec<FamilyId>, StoreError> {
    let keep = keep.map_or(uuid::Uuid::nil(), |k| k.0);
    let rows = tx
        .query(
            "UPDATE latchd_sessions
             SET revoked_at = $3, ended_at = $3,
                 record = jsonb_set(record, '{revoked_at}', to_jsonb($3::bigint))
             WHERE user_id = $1 AND revoked_at IS NULL AND id <> $2
             RETURNING id",
            &[&user.0, &keep, &now.secs()],
        )
        .await
        .map_err(pg_err("revoking a user's sessions"))?;
    let revoked: Vec<FamilyId> = rows.iter().map(|r| FamilyId(r.get(0))).collect();
    for family in &revoked {
        tx.changed(Subject::Session(*family));
    }
    Ok(revoked)
}

/// Writes session `family` of `user`, whose standing the caller has checked in `tx`, revoking
/// the user's oldest live sessions past `policy.max_per_user` (what the redb store's
/// `open_checked_in` does). Two of these racing for one user cannot both fit under the cap:
/// each reads the user's live sessions and inserts one, which `SERIALIZABLE` refuses to
/// interleave.
///
/// # Errors
/// `FamilyExists` if `family`, or a browser session's cookie, is already stored.
pub(super) async fn open_checked(
    tx: &Txn<'_>,
    family: FamilyId,
    user: UserId,
    first_hash: &[u8; 32],
    session: &NewSession,
    now: UnixTime,
    policy: &SessionPolicy,
) -> Result<(), StoreError> {
    let live = tx
        .query(
            "SELECT created_at, id FROM latchd_sessions WHERE user_id = $1 AND ended_at > $2",
            &[&user.0, &now.secs()],
        )
        .await
        .map_err(pg_err("reading a user's live sessions"))?
        .iter()
        .map(|r| (r.get::<_, i64>(0), FamilyId(r.get(1))))
        .collect();
    for oldest in past_the_cap(live, policy.max_per_user) {
        revoke_one(tx, oldest, now).await?;
    }
    let rec = new_record(user, first_hash, session, now, policy);
    let cookie = rec.browser.is_some().then_some(first_hash.as_slice());
    let inserted = tx
        .execute(
            "INSERT INTO latchd_sessions
                 (id, user_id, cookie_hash, created_at, revoked_at, ended_at, record)
             VALUES ($1, $2, $3, $4, NULL, $5, $6::text::jsonb)",
            &[
                &family.0,
                &user.0,
                &cookie,
                &rec.created_at,
                &rec.ended_at(),
                &json(&rec),
            ],
        )
        .await;
    match inserted {
        Ok(_) => {}
        // The same id or cookie twice: the caller reused an id, or the RNG failed.
        Err(e) if is_unique_violation(&e) => return Err(StoreError::FamilyExists),
        Err(e) => return Err(pg_err("opening a session")(e)),
    }
    tx.changed(Subject::Session(family));
    Ok(())
}

/// A session row, locked for the rest of the transaction, with its user (`None` if gone),
/// columns in [`rows::user`]'s order and the record last.
const SESSION_AND_USER: &str = "SELECT u.id, u.email, u.password_hash, u.roles, u.created_at,
        u.disabled, u.token_version, s.record::text
    FROM latchd_sessions s LEFT JOIN latchd_users u ON u.id = s.user_id
    WHERE s.id = $1 FOR UPDATE OF s";

/// Session `family`'s record (locked) and its user, in `tx`.
async fn locked_with_user(
    tx: &Txn<'_>,
    family: FamilyId,
) -> Result<Option<(FamilyRecord, Option<User>)>, StoreError> {
    let Some(row) = tx
        .query_opt(SESSION_AND_USER, &[&family.0])
        .await
        .map_err(pg_err("reading a session"))?
    else {
        return Ok(None);
    };
    let rec = session_record(row.get(7))?;
    let user = row
        .get::<_, Option<uuid::Uuid>>(0)
        .is_some()
        .then(|| rows::user(&row));
    Ok(Some((rec, user)))
}

/// Session `family`'s record, locked for the rest of `tx`.
async fn locked(tx: &Txn<'_>, family: FamilyId) -> Result<Option<FamilyRecord>, StoreError> {
    let row = tx
        .query_opt(
            "SELECT record::text FROM latchd_sessions WHERE id = $1 FOR UPDATE",
            &[&family.0],
        )
        .await
        .map_err(pg_err("reading a session"))?;
    row.map(|r| session_record(r.get(0))).transpose()
}

/// Writes `rec` back as session `family`'s row, with the columns derived from it.
async fn write(tx: &Txn<'_>, family: FamilyId, rec: &FamilyRecord) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE latchd_sessions SET revoked_at = $2, ended_at = $3, record = $4::text::jsonb
         WHERE id = $1",
        &[&family.0, &rec.revoked_at, &rec.ended_at(), &json(rec)],
    )
    .await
    .map_err(pg_err("writing a session"))?;
    Ok(())
}

/// The advisory lock (class, id) one user's sign-ins take in turn: the class is "latc", the
/// id 32 bits of the user's random id (two users sharing them only take turns too).
fn sign_ins_of(user: UserId) -> (i32, i32) {
    let [a, b, c, d, ..] = *user.0.as_bytes();
    (0x6c61_7463, i32::from_be_bytes([a, b, c, d]))
}

/// Opens session `family` for `seen` unless the user changed since `seen` was read or has
/// TOTP on and the sign-in passed no second factor (`false`, nothing written).
#[allow(clippy::too_many_arguments)] // the port's arguments, and the store
pub(super) async fn open(
    db: &Shared,
    family: FamilyId,
    seen: &User,
    first_hash: [u8; 32],
    session: NewSession,
    now: UnixTime,
    policy: SessionPolicy,
    note: AuditNote,
) -> Result<bool, StoreError> {
    write_txn!(serialized sign_ins_of(seen.id), db, now, |tx| {
        // Shared: a concurrent disable, revocation or password change waits for this
        // transaction, or this one is run again after it and sees it.
        let row = tx
            .query_opt(
                &format!("SELECT {USER_COLUMNS} FROM latchd_users WHERE id = $1 FOR SHARE"),
                &[&seen.id.0],
            )
            .await
            .map_err(pg_err("reading a user"))?;
        let unchanged = row.as_ref().map(rows::user).is_some_and(|now_user| {
            !now_user.disabled
                && now_user.token_version == seen.token_version
                && now_user.password_hash == seen.password_hash
        });
        if !unchanged {
            return Ok(false);
        }
        if !session.mfa {
            let totp_on: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM latchd_totp WHERE user_id = $1 AND confirmed)",
                    &[&seen.id.0],
                )
                .await
                .map_err(pg_err("reading a user's TOTP"))?
                .get(0);
            if totp_on {
                return Ok(false);
            }
        }
        open_checked(&tx, family, seen.id, &first_hash, &session, now, &policy).await?;
        tx.audit(db, note.about(Some(seen.id), Some(family)))
            .await?;
        Ok(true)
    })
}

/// Rotates a presented refresh token as one compare-and-swap: the session row is locked, so
/// of two nodes rotating one token the second waits, is aborted by `SERIALIZABLE` and runs
/// again against the rotated row.
pub(super) async fn rotate(
    db: &Shared,
    presented: Presented,
    next: Successor,
    now: UnixTime,
    policy: SessionPolicy,
    note: AuditNote,
) -> Result<Rotation, StoreError> {
    write_txn!(db, now, |tx| {
        let Some((mut rec, user)) = locked_with_user(&tx, presented.family).await? else {
            return Ok(Rotation::Unknown);
        };
        let (rotation, changed) =
            decide_rotation(&mut rec, |_| Ok(user), &presented, &next, now, &policy)?;
        if changed {
            write(&tx, presented.family, &rec).await?;
        }
        // A plain rotation changes nothing the view holds: only a revocation is fed.
        if let Rotation::Reused { family, user } = rotation {
            tx.changed(Subject::Session(family));
            tx.audit(db, note.about(Some(user), Some(family))).await?;
        }
        Ok(rotation)
    })
}

/// Records that browser session `family` was used at `at`, if that is later than stored.
pub(super) async fn touch(db: &Shared, family: FamilyId, at: UnixTime) -> Result<(), StoreError> {
    // Not behind the earlier touches: it is one of them.
    write_txn!(unordered db, at, |tx| {
        let Some(mut rec) = locked(&tx, family).await? else {
            return Ok(());
        };
        if touch_record(&mut rec, at) {
            write(&tx, family, &rec).await?;
            // Every node learns the last use, and the later end it gives the session.
            tx.changed(Subject::Session(family));
        }
        Ok(())
    })
}

/// Blacklists `jti` until `exp` in `tx`, keeping a later `exp` already stored.
async fn blacklist_in(tx: &Txn<'_>, jti: Jti, exp: UnixTime) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO latchd_blacklist (jti, exp) VALUES ($1, $2)
         ON CONFLICT (jti) DO UPDATE SET exp = greatest(latchd_blacklist.exp, EXCLUDED.exp)",
        &[&jti.0, &exp.secs()],
    )
    .await
    .map_err(pg_err("blacklisting an access token"))?;
    tx.changed(Subject::Blacklist(jti));
    Ok(())
}

/// Blacklists `jti` until `exp`.
pub(super) async fn blacklist(db: &Shared, jti: Jti, exp: UnixTime) -> Result<(), StoreError> {
    write_txn!(db, UnixTime::now(), |tx| {
        blacklist_in(&tx, jti, exp).await
    })
}

/// Logout: blacklists `jti` and revokes `family` in one transaction, audited if it revoked.
pub(super) async fn end_session(
    db: &Shared,
    family: FamilyId,
    jti: Jti,
    exp: UnixTime,
    now: UnixTime,
    note: AuditNote,
) -> Result<(), StoreError> {
    write_txn!(db, now, |tx| {
        blacklist_in(&tx, jti, exp).await?;
        if let Some(user) = revoke_one(&tx, family, now).await? {
            tx.audit(db, note.about(Some(user), Some(family))).await?;
        }
        Ok(())
    })
}

/// The live sessions of `user` at `now`, newest first.
pub(super) async fn list(
    db: &Shared,
    user: UserId,
    now: UnixTime,
) -> Result<Vec<SessionInfo>, StoreError> {
    let client = db.client().await?;
    let rows = client
        .query(
            "SELECT id, record::text FROM latchd_sessions WHERE user_id = $1 AND ended_at > $2",
            &[&user.0, &now.secs()],
        )
        .await
        .map_err(pg_err("listing a user's sessions"))?;
    let mut out = rows
        .iter()
        .map(|r| session_record(r.get(1)).map(|rec| rec.info(FamilyId(r.get(0)))))
        .collect::<Result<Vec<_>, _>>()?;
    newest_first(&mut out);
    Ok(out)
}

/// Revokes `family` if it is a live session of `user`; false (nothing written) otherwise.
pub(super) async fn end_own(
    db: &Shared,
    user: UserId,
    family: FamilyId,
    now: UnixTime,
    note: AuditNote,
) -> Result<bool, StoreError> {
    write_txn!(db, now, |tx| {
        let live = tx
            .query_opt(
                "SELECT 1 FROM latchd_sessions
                 WHERE id = $1 AND user_id = $2 AND ended_at > $3 FOR UPDATE",
                &[&family.0, &user.0, &now.secs()],
            )
            .await
            .map_err(pg_err("reading a session"))?
            .is_some();
        if !live || revoke_one(&tx, family, now).await?.is_none() {
            return Ok(false);
        }
        tx.audit(db, note.about(Some(user), Some(family))).await?;
        Ok(true)
    })
}

/// How a presented refresh token stands, read in one snapshot without writing.
pub(super) async fn standing(
    db: &Shared,
    presented: Presented,
    now: UnixTime,
) -> Result<Option<RefreshStanding>, StoreError> {
    let client = db.client().await?;
    let Some(row) = client
        .query_opt(
            "SELECT s.record::text, u.disabled
             FROM latchd_sessions s LEFT JOIN latchd_users u ON u.id = s.user_id
             WHERE s.id = $1",
            &[&presented.family.0],
        )
        .await
        .map_err(pg_err("reading a session"))?
    else {
        return Ok(None);
    };
    let rec = session_record(row.get(0))?;
    let enabled = row.get::<_, Option<bool>>(1) == Some(false);
    Ok((enabled && is_current(&rec, &presented, now)).then(|| standing_of(&rec, presented.family)))
}

/// Revokes the session of the presented token if it is that session's current token
/// (RFC 7009); the session's user when it revoked.
pub(super) async fn revoke_refresh(
    db: &Shared,
    presented: Presented,
    now: UnixTime,
    note: AuditNote,
) -> Result<Option<UserId>, StoreError> {
    write_txn!(db, now, |tx| {
        let Some(rec) = locked(&tx, presented.family).await? else {
            return Ok(None);
        };
        if !is_current(&rec, &presented, now) {
            return Ok(None);
        }
        let revoked = revoke_one(&tx, presented.family, now).await?;
        if let Some(user) = revoked {
            tx.audit(db, note.about(Some(user), Some(presented.family)))
                .await?;
        }
        Ok(revoked)
    })
}

/// Revokes one session; false if it was missing or already revoked.
pub(super) async fn revoke_session(
    db: &Shared,
    family: FamilyId,
    now: UnixTime,
    note: AuditNote,
) -> Result<bool, StoreError> {
    write_txn!(db, now, |tx| {
        // The row names the session's user, which a caller holding only a session id (a
        // logout by the cookie) cannot give the audit row.
        let Some(user) = revoke_one(&tx, family, now).await? else {
            return Ok(false);
        };
        tx.audit(db, note.about(Some(user), Some(family))).await?;
        Ok(true)
    })
}
