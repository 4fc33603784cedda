//! Sessions on PostgreSQL (placeholder bodies: being written).
#![allow(unused_variables, clippy::too_many_arguments)]
use super::Shared;
use crate::auth::storage::StoreError;
#[allow(unused_imports)]
use crate::model::*;
use crate::time::UnixTime;

use super::errors::{is_unique_violation, pg_err};
use super::feed::Subject;
use super::rows::session_json;
use super::Txn;
use crate::store::sessions::{new_record, past_the_cap};

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
                &session_json(&rec),
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
    todo!()
}
pub(super) async fn rotate(
    db: &Shared,
    presented: Presented,
    next: Successor,
    now: UnixTime,
    policy: SessionPolicy,
    note: AuditNote,
) -> Result<Rotation, StoreError> {
    todo!()
}
pub(super) async fn touch(db: &Shared, family: FamilyId, at: UnixTime) -> Result<(), StoreError> {
    todo!()
}
pub(super) async fn blacklist(db: &Shared, jti: Jti, exp: UnixTime) -> Result<(), StoreError> {
    todo!()
}
pub(super) async fn end_session(
    db: &Shared,
    family: FamilyId,
    jti: Jti,
    exp: UnixTime,
    now: UnixTime,
    note: AuditNote,
) -> Result<(), StoreError> {
    todo!()
}
pub(super) async fn list(
    db: &Shared,
    user: UserId,
    now: UnixTime,
) -> Result<Vec<SessionInfo>, StoreError> {
    todo!()
}
pub(super) async fn end_own(
    db: &Shared,
    user: UserId,
    family: FamilyId,
    now: UnixTime,
    note: AuditNote,
) -> Result<bool, StoreError> {
    todo!()
}
pub(super) async fn standing(
    db: &Shared,
    presented: Presented,
    now: UnixTime,
) -> Result<Option<RefreshStanding>, StoreError> {
    todo!()
}
pub(super) async fn revoke_refresh(
    db: &Shared,
    presented: Presented,
    now: UnixTime,
    note: AuditNote,
) -> Result<Option<UserId>, StoreError> {
    todo!()
}
pub(super) async fn revoke_session(
    db: &Shared,
    family: FamilyId,
    now: UnixTime,
    note: AuditNote,
) -> Result<bool, StoreError> {
    todo!()
}
