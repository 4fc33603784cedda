//! The audit log and the sweep on PostgreSQL. Audit rows are inserted in the transaction of
//! the change they record; ids are version 7 UUIDs of the row's time, increasing on each node
//! (the low 32 bits are the node's own, so two nodes never collide), and rows are read in id
//! order, which across nodes is the order of their times.

use std::sync::PoisonError;

use uuid::Uuid;

use super::errors::pg_err;
use super::feed::{Subject, RETENTION_SECS};
use super::rows::json;
use super::{write_txn, Shared, Txn};
use crate::auth::storage::StoreError;
use crate::model::{
    AuditId, AuditNote, AuditQuery, AuditRow, FamilyId, Jti, Sweep, PENDING_TOTP_SECS,
};
use crate::store::audit::{stamp, AuditRecord};
use crate::store::records::decode;
use crate::time::UnixTime;

/// Inserts the row of `note` in `tx`.
pub(super) async fn insert(
    tx: &Txn<'_>,
    db: &Shared,
    note: AuditNote,
) -> Result<AuditRow, StoreError> {
    let id = {
        let mut floor = db
            .audit_floor
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let tag = u128::from(db.node_tag);
        let base = (stamp(note.at) & !u128::from(u32::MAX)) | tag;
        let next = (floor.saturating_add(1 << 32) & !u128::from(u32::MAX)) | tag;
        *floor = base.max(next);
        *floor
    };
    let record = json(&AuditRecord::from_note(&note));
    tx.execute(
        "INSERT INTO latchd_audit (id, at, event, user_id, record)
         VALUES ($1, $2, $3, $4, $5::text::jsonb)",
        &[
            &Uuid::from_u128(id),
            &note.at.secs(),
            &note.event.label(),
            &note.user.map(|u| u.0),
            &record,
        ],
    )
    .await
    .map_err(pg_err("writing an audit row"))?;
    Ok(AuditRow {
        id: AuditId(Uuid::from_u128(id)),
        note,
    })
}

/// Records `note` on its own.
pub(super) async fn record(db: &Shared, note: AuditNote) -> Result<(), StoreError> {
    write_txn!(db, note.at, |tx| {
        tx.audit(db, note).await?;
        Ok(())
    })
}

/// The rows `query` asks for, in id order.
pub(super) async fn list(db: &Shared, query: AuditQuery) -> Result<Vec<AuditRow>, StoreError> {
    let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
    let client = db.client().await?;
    let rows = client
        .query(
            "SELECT id, record::text FROM latchd_audit
             WHERE ($1::uuid IS NULL OR id > $1)
               AND ($2::uuid IS NULL OR user_id = $2)
               AND ($3::text IS NULL OR event = $3)
               AND ($4::bigint IS NULL OR at >= $4)
             ORDER BY id LIMIT $5",
            &[
                &query.after.map(|a| a.0),
                &query.user.map(|u| u.0),
                &query.event.map(crate::model::AuditEvent::label),
                &query.since.map(UnixTime::secs),
                &limit,
            ],
        )
        .await
        .map_err(pg_err("reading the audit log"))?;
    rows.iter()
        .map(|r| {
            let note = decode::<AuditRecord>("latchd_audit", r.get::<_, &str>(1).as_bytes())?
                .into_note()?;
            Ok(AuditRow {
                id: AuditId(r.get(0)),
                note,
            })
        })
        .collect()
}

/// Deletes what has expired: blacklist rows, ended sessions and retired keys past
/// `retain_secs`, expired challenges, stale pending enrolments, audit rows past
/// `audit_retain_secs`, and change-feed rows past the feed's retention.
pub(super) async fn sweep(
    db: &Shared,
    now: UnixTime,
    retain_secs: i64,
    audit_retain_secs: i64,
) -> Result<Sweep, StoreError> {
    let cutoff = now.minus(retain_secs).secs();
    write_txn!(db, now, |tx| {
        let blacklisted = tx
            .query(
                "DELETE FROM latchd_blacklist WHERE exp <= $1 RETURNING jti",
                &[&now.secs()],
            )
            .await
            .map_err(pg_err("sweeping the blacklist"))?;
        for row in &blacklisted {
            tx.changed(Subject::Blacklist(Jti(row.get(0))));
        }
        let sessions = tx
            .query(
                "DELETE FROM latchd_sessions WHERE ended_at <= $1 RETURNING id",
                &[&cutoff],
            )
            .await
            .map_err(pg_err("sweeping sessions"))?;
        for row in &sessions {
            tx.changed(Subject::Session(FamilyId(row.get(0))));
        }
        let keys = tx
            .execute(
                "DELETE FROM latchd_signing_keys WHERE retired_at <= $1",
                &[&cutoff],
            )
            .await
            .map_err(pg_err("sweeping signing keys"))?;
        if keys > 0 {
            tx.changed(Subject::Keys);
        }
        let challenges = tx
            .execute(
                "DELETE FROM latchd_challenges WHERE expires_at <= $1",
                &[&now.secs()],
            )
            .await
            .map_err(pg_err("sweeping challenges"))?;
        let enrolments = tx
            .execute(
                "DELETE FROM latchd_totp WHERE NOT confirmed AND created_at + $2 <= $1",
                &[&now.secs(), &PENDING_TOTP_SECS],
            )
            .await
            .map_err(pg_err("sweeping pending enrolments"))?;
        let audit = tx
            .execute(
                "DELETE FROM latchd_audit WHERE at <= $1",
                &[&now.minus(audit_retain_secs).secs()],
            )
            .await
            .map_err(pg_err("sweeping the audit log"))?;
        sweep_feed(&tx, now).await?;
        Ok(Sweep {
            blacklist: blacklisted.len() as u64,
            families: sessions.len() as u64,
            keys,
            challenges: challenges + enrolments,
            audit,
        })
    })
}

/// Deletes feed rows older than the feed's retention, recording how far it swept.
async fn sweep_feed(tx: &Txn<'_>, now: UnixTime) -> Result<(), StoreError> {
    tx.execute(
        "WITH gone AS (
             DELETE FROM latchd_changes WHERE at <= $1 RETURNING id
         )
         UPDATE latchd_state
         SET value = greatest(value, (SELECT coalesce(max(id), 0) FROM gone))
         WHERE name = 'changes_swept_through'",
        &[&now.minus(RETENTION_SECS).secs()],
    )
    .await
    .map_err(pg_err("sweeping the change feed"))?;
    Ok(())
}
