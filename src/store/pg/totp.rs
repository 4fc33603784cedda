//! TOTP enrolments and second-factor challenges on PostgreSQL.
//!
//! What to do is decided by the redb store's own functions (`store::totp`: [`begun`],
//! [`confirmed`], [`disabling`], [`count_failure`], [`completing`]) on the rows as this
//! transaction read them; this module only reads and writes. The enrolment and the challenge a
//! factor is spent against are read `FOR UPDATE` in the `SERIALIZABLE` transaction that spends
//! it, so of two nodes spending one time step or one recovery code at once, the second waits,
//! is aborted for the conflict, runs again and finds it spent.
//!
//! Neither table is in the view: only what a write does to users and sessions is fed.

use super::errors::{is_unique_violation, pg_err};
use super::rows::json;
use super::sessions::open_checked;
use super::users::{locked, revoke_all};
use super::{write_txn, Shared, Txn};
use crate::auth::storage::StoreError;
use crate::model::{
    AuditEvent, AuditNote, FamilyId, MfaChallenge, MfaCompletion, NewSession, Origin, SecondFactor,
    SessionPolicy, Totp, TotpUpdate, User, UserId,
};
use crate::store::is_recovery;
use crate::store::records::{decode, ChallengeRecord, TotpRecord};
use crate::store::totp::{
    begun, completing, confirmed, count_failure, disabling, is_live, Completing,
};
use crate::time::UnixTime;

/// The user's enrolment, pending or on.
pub(super) async fn get(db: &Shared, user: UserId) -> Result<Option<Totp>, StoreError> {
    let client = db.client().await?;
    let row = client
        .query_opt(
            "SELECT record::text FROM latchd_totp WHERE user_id = $1",
            &[&user.0],
        )
        .await
        .map_err(pg_err("reading an enrolment"))?;
    row.map(|r| totp_record(r.get(0))).transpose()
}

/// Stores a pending enrolment for an enabled user, replacing an earlier pending one.
pub(super) async fn begin(
    db: &Shared,
    user: UserId,
    secret: [u8; 20],
    session: FamilyId,
    now: UnixTime,
) -> Result<TotpUpdate, StoreError> {
    write_txn!(db, now, |tx| {
        if enabled(&tx, user).await?.is_none() {
            return Ok(TotpUpdate::NoSuchUser);
        }
        let stored = locked_totp(&tx, user).await?;
        match begun(stored.as_ref(), secret, session, now) {
            Ok(pending) => {
                store_totp(&tx, user, &pending).await?;
                Ok(TotpUpdate::Done)
            }
            Err(refused) => Ok(refused),
        }
    })
}

/// Turns on the pending enrolment whose secret is `secret`; audited when `Done`.
#[allow(clippy::too_many_arguments)] // the port's arguments
pub(super) async fn confirm(
    db: &Shared,
    user: UserId,
    secret: [u8; 20],
    step: u64,
    salt: [u8; 16],
    recovery: Vec<[u8; 32]>,
    now: UnixTime,
    note: AuditNote,
) -> Result<TotpUpdate, StoreError> {
    write_txn!(db, now, |tx| {
        if enabled(&tx, user).await?.is_none() {
            return Ok(TotpUpdate::NoSuchUser);
        }
        let stored = locked_totp(&tx, user).await?;
        match confirmed(stored, &secret, step, salt, recovery.clone(), now) {
            Ok(on) => {
                store_totp(&tx, user, &on).await?;
                tx.audit(db, note.about(Some(user), None)).await?;
                Ok(TotpUpdate::Done)
            }
            Err(refused) => Ok(refused),
        }
    })
}

/// Turns TOTP off, spending `factor`; audited when `Done`, with a second row when the factor
/// was a recovery code.
pub(super) async fn disable(
    db: &Shared,
    user: UserId,
    factor: SecondFactor,
    note: AuditNote,
) -> Result<TotpUpdate, StoreError> {
    write_txn!(db, note.at, |tx| {
        let stored = locked_totp(&tx, user).await?;
        if let Err(refused) = disabling(stored, factor) {
            return Ok(refused);
        }
        tx.execute("DELETE FROM latchd_totp WHERE user_id = $1", &[&user.0])
            .await
            .map_err(pg_err("deleting an enrolment"))?;
        let disabled = note.about(Some(user), None);
        tx.audit(db, disabled).await?;
        if is_recovery(factor) {
            tx.audit(db, recovery_used(disabled)).await?;
        }
        Ok(TotpUpdate::Done)
    })
}

/// The operator's reset: deletes any enrolment and ends every session of the user (token
/// version bumped); `false` if there is no such user.
pub(super) async fn reset(
    db: &Shared,
    user: UserId,
    now: UnixTime,
    note: AuditNote,
) -> Result<bool, StoreError> {
    write_txn!(db, now, |tx| {
        let Some(mut row) = locked(&tx, user).await? else {
            return Ok(false);
        };
        tx.execute("DELETE FROM latchd_totp WHERE user_id = $1", &[&user.0])
            .await
            .map_err(pg_err("deleting an enrolment"))?;
        revoke_all(&tx, &mut row, now).await?;
        tx.audit(db, note.about(Some(user), None)).await?;
        Ok(true)
    })
}

/// Stores `challenge` under `hash`; `FamilyExists` if the hash is taken.
pub(super) async fn open_challenge(
    db: &Shared,
    hash: [u8; 32],
    challenge: MfaChallenge,
) -> Result<(), StoreError> {
    write_txn!(db, UnixTime::now(), |tx| {
        let record = json(&ChallengeRecord::from_challenge(&challenge));
        let inserted = tx
            .execute(
                "INSERT INTO latchd_challenges (hash, user_id, expires_at, record)
                 VALUES ($1, $2, $3, $4::text::jsonb)",
                &[
                    &hash.as_slice(),
                    &challenge.user.0,
                    &challenge.expires_at.secs(),
                    &record,
                ],
            )
            .await;
        match inserted {
            Ok(_) => Ok(()),
            // The same token twice: the RNG failed.
            Err(e) if is_unique_violation(&e) => Err(StoreError::FamilyExists),
            Err(e) => Err(pg_err("storing a challenge")(e)),
        }
    })
}

/// The challenge under `hash`, if it is live at `now`.
pub(super) async fn challenge(
    db: &Shared,
    hash: [u8; 32],
    now: UnixTime,
) -> Result<Option<MfaChallenge>, StoreError> {
    let client = db.client().await?;
    let row = client
        .query_opt(
            "SELECT record::text FROM latchd_challenges WHERE hash = $1",
            &[&hash.as_slice()],
        )
        .await
        .map_err(pg_err("reading a challenge"))?;
    let found = row.map(|r| challenge_record(r.get(0))).transpose()?;
    Ok(found.filter(|c| is_live(c, now)))
}

/// Counts a wrong code against the challenge, deleting it at `max_failures` (or once
/// expired); whether it is still live. Audited whenever there was a challenge to count
/// against.
pub(super) async fn fail_challenge(
    db: &Shared,
    hash: [u8; 32],
    max_failures: u32,
    now: UnixTime,
    note: AuditNote,
) -> Result<bool, StoreError> {
    write_txn!(db, now, |tx| {
        let Some(mut challenge) = locked_challenge(&tx, &hash).await? else {
            return Ok(false);
        };
        let live = count_failure(&mut challenge, max_failures, now);
        if live {
            tx.execute(
                "UPDATE latchd_challenges SET record = $2::text::jsonb WHERE hash = $1",
                &[
                    &hash.as_slice(),
                    &json(&ChallengeRecord::from_challenge(&challenge)),
                ],
            )
            .await
            .map_err(pg_err("counting a wrong code"))?;
        } else {
            delete_challenge(&tx, &hash).await?;
        }
        tx.audit(db, note).await?;
        Ok(live)
    })
}

/// The second step of a sign-in: deletes the live challenge, spends `factor` and opens
/// session `family`, in one transaction. Audited when it opened, with a second row when the
/// factor was a recovery code.
#[allow(clippy::too_many_arguments)] // the port's arguments
pub(super) async fn complete_challenge(
    db: &Shared,
    hash: [u8; 32],
    factor: SecondFactor,
    family: FamilyId,
    first_hash: [u8; 32],
    origin: Origin,
    now: UnixTime,
    policy: SessionPolicy,
    note: AuditNote,
) -> Result<MfaCompletion, StoreError> {
    write_txn!(db, now, |tx| {
        let Some(challenge) = locked_challenge(&tx, &hash).await? else {
            return Ok(MfaCompletion::UnknownChallenge);
        };
        if !is_live(&challenge, now) {
            return Ok(MfaCompletion::UnknownChallenge);
        }
        // The user's row is locked too: a revocation, a new password or a disable cannot
        // commit between this check and the session it lets open.
        let user = locked(&tx, challenge.user).await?;
        let totp = locked_totp(&tx, challenge.user).await?;
        let (user, totp, recovery_left) = match completing(&challenge, user, totp, factor) {
            Completing::Stale => {
                delete_challenge(&tx, &hash).await?;
                return Ok(MfaCompletion::Stale);
            }
            Completing::Spent => return Ok(MfaCompletion::Spent),
            Completing::Open {
                user,
                totp,
                recovery_left,
            } => (user, totp, recovery_left),
        };
        delete_challenge(&tx, &hash).await?;
        store_totp(&tx, user.id, &totp).await?;
        let session = NewSession {
            kind: challenge.kind,
            mfa: true,
            origin: origin.clone(),
        };
        // Notes the session opened (and any it revoked past the cap) for the feed.
        open_checked(&tx, family, user.id, &first_hash, &session, now, &policy).await?;
        let login = note.about(Some(user.id), Some(family));
        tx.audit(db, login).await?;
        if is_recovery(factor) {
            tx.audit(db, recovery_used(login)).await?;
        }
        Ok(MfaCompletion::Opened {
            user,
            recovery_left,
        })
    })
}

/// The row of `note`'s recovery code being spent, beside the row of what it was spent for.
fn recovery_used(note: AuditNote) -> AuditNote {
    AuditNote {
        event: AuditEvent::RecoveryCodeUsed,
        ..note
    }
}

/// The user `id` if it exists and is enabled, its row locked.
async fn enabled(tx: &Txn<'_>, id: UserId) -> Result<Option<User>, StoreError> {
    Ok(locked(tx, id).await?.filter(|u| !u.disabled))
}

/// The enrolment of `user`, its row locked for the rest of the transaction.
async fn locked_totp(tx: &Txn<'_>, user: UserId) -> Result<Option<Totp>, StoreError> {
    let row = tx
        .query_opt(
            "SELECT record::text FROM latchd_totp WHERE user_id = $1 FOR UPDATE",
            &[&user.0],
        )
        .await
        .map_err(pg_err("reading an enrolment"))?;
    row.map(|r| totp_record(r.get(0))).transpose()
}

/// Writes `totp` as the enrolment of `user`, replacing any.
async fn store_totp(tx: &Txn<'_>, user: UserId, totp: &Totp) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO latchd_totp (user_id, created_at, confirmed, record)
         VALUES ($1, $2, $3, $4::text::jsonb)
         ON CONFLICT (user_id) DO UPDATE
         SET created_at = EXCLUDED.created_at, confirmed = EXCLUDED.confirmed,
             record = EXCLUDED.record",
        &[
            &user.0,
            &totp.created_at.secs(),
            &totp.is_on(),
            &json(&TotpRecord::from_totp(totp)),
        ],
    )
    .await
    .map_err(pg_err("writing an enrolment"))?;
    Ok(())
}

/// The challenge under `hash`, live or not, its row locked for the rest of the transaction.
async fn locked_challenge(
    tx: &Txn<'_>,
    hash: &[u8; 32],
) -> Result<Option<MfaChallenge>, StoreError> {
    let row = tx
        .query_opt(
            "SELECT record::text FROM latchd_challenges WHERE hash = $1 FOR UPDATE",
            &[&hash.as_slice()],
        )
        .await
        .map_err(pg_err("reading a challenge"))?;
    row.map(|r| challenge_record(r.get(0))).transpose()
}

async fn delete_challenge(tx: &Txn<'_>, hash: &[u8; 32]) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM latchd_challenges WHERE hash = $1",
        &[&hash.as_slice()],
    )
    .await
    .map_err(pg_err("deleting a challenge"))?;
    Ok(())
}

fn totp_record(text: &str) -> Result<Totp, StoreError> {
    decode::<TotpRecord>("latchd_totp", text.as_bytes()).map(TotpRecord::into_totp)
}

fn challenge_record(text: &str) -> Result<MfaChallenge, StoreError> {
    decode::<ChallengeRecord>("latchd_challenges", text.as_bytes())
        .map(ChallengeRecord::into_challenge)
}
