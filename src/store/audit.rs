//! The audit table: rows inserted inside the write transaction of the change they record (so a
//! change and its row are durable together or not at all), read in id order, swept after the
//! retention.
//!
//! Row ids are version 7 UUIDs built from the row's time and forced above the newest stored id
//! on the one writer thread, so they increase strictly in the order rows were written, and
//! "rows after this id" is a range scan.

use std::net::IpAddr;
use std::ops::Bound;

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::records::{decode, encode, id_from, RowKey};
use super::tables::AUDIT;
use super::{StoreError, Written};
use crate::model::{
    AuditActor, AuditEvent, AuditId, AuditNote, AuditQuery, AuditRow, FamilyId, UserId,
};
use crate::time::UnixTime;

/// Records `note` in `txn` if the job commits and `decide` (shown its outcome) says so, filling
/// in the user and session only the outcome knows.
pub(super) fn when<T>(
    txn: &WriteTransaction,
    mut written: Written<T>,
    decide: impl FnOnce(&T) -> Option<AuditNote>,
) -> Result<Written<T>, StoreError> {
    if !written.commit {
        return Ok(written);
    }
    if let Some(note) = decide(&written.value) {
        written.audited.push(insert_in(txn, note)?);
    }
    Ok(written)
}

/// Inserts one row for `note`, its id above every stored one.
pub(super) fn insert_in(txn: &WriteTransaction, note: AuditNote) -> Result<AuditRow, StoreError> {
    let mut table = txn.open_table(AUDIT)?;
    let floor = match table.last()? {
        Some((newest, _)) => id_from("audit", newest.value())?
            .as_u128()
            .saturating_add(1),
        None => 0,
    };
    let id = AuditId(Uuid::from_u128(stamp(note.at).max(floor)));
    table.insert(id.key(), encode(&AuditRecord::from_note(&note)).as_slice())?;
    Ok(AuditRow { id, note })
}

/// The rows `query` asks for, in id order.
pub(super) fn list_in(
    txn: &ReadTransaction,
    query: &AuditQuery,
) -> Result<Vec<AuditRow>, StoreError> {
    let table = txn.open_table(AUDIT)?;
    let start = query
        .after
        .as_ref()
        .map_or(Bound::Unbounded, |a| Bound::Excluded(a.key()));
    let mut rows = Vec::new();
    for entry in table.range::<&[u8]>((start, Bound::Unbounded))? {
        if rows.len() >= query.limit {
            break;
        }
        let (id, bytes) = entry?;
        let note = decode::<AuditRecord>("audit", bytes.value())?.into_note()?;
        let wanted = query.user.is_none_or(|u| note.user == Some(u))
            && query.event.is_none_or(|e| note.event == e)
            && query.since.is_none_or(|s| note.at >= s);
        if wanted {
            rows.push(AuditRow {
                id: AuditId(id_from("audit", id.value())?),
                note,
            });
        }
    }
    Ok(rows)
}

/// Deletes the rows at or before `cutoff`, oldest first; stops at the first newer row (ids
/// follow the order rows were written, which is their time's order unless the clock stepped
/// back, so a row written after such a step waits for the rows written before it).
pub(super) fn sweep_in(txn: &WriteTransaction, cutoff: UnixTime) -> Result<u64, StoreError> {
    let mut table = txn.open_table(AUDIT)?;
    let mut gone = Vec::new();
    for entry in table.iter()? {
        let (id, bytes) = entry?;
        let rec: AuditRecord = decode("audit", bytes.value())?;
        if rec.at > cutoff.secs() {
            break;
        }
        gone.push(id.value().to_vec());
    }
    for id in &gone {
        table.remove(id.as_slice())?;
    }
    Ok(gone.len() as u64)
}

/// The log line of a durable row (target `latchd::audit`), with the row's fields.
pub(super) fn log(row: &AuditRow) {
    let note = &row.note;
    let (actor_id, operator) = note.actor.fields();
    tracing::info!(
        target: "latchd::audit",
        id = %row.id,
        at = %note.at.to_rfc3339(),
        event = note.event.label(),
        user_id = note.user.map(|u| u.0.to_string()),
        actor_id = actor_id.map(|u| u.0.to_string()),
        operator,
        session_id = note.session.map(|s| s.0.to_string()),
        client_ip = note.client.map(|c| c.to_string()),
        "audit"
    );
}

/// A version 7 UUID of `at` (whole seconds, as milliseconds) with its random bits zero: the
/// smallest id a row of that time may get.
pub(super) fn stamp(at: UnixTime) -> u128 {
    let millis = u64::try_from(at.secs()).unwrap_or(0).saturating_mul(1000);
    uuid::Builder::from_unix_timestamp_millis(millis, &[0; 10])
        .into_uuid()
        .as_u128()
}

/// An audit row's value; the id is the key. Ids, a time, an event name and an address only.
#[derive(Serialize, Deserialize)]
pub(super) struct AuditRecord {
    at: i64,
    event: String,
    user: Option<Uuid>,
    actor: Option<Uuid>,
    #[serde(default)]
    operator: bool,
    session: Option<Uuid>,
    client: Option<IpAddr>,
}

impl AuditRecord {
    pub(super) fn from_note(note: &AuditNote) -> Self {
        let (actor, operator) = note.actor.fields();
        Self {
            at: note.at.secs(),
            event: note.event.label().to_owned(),
            user: note.user.map(|u| u.0),
            actor: actor.map(|a| a.0),
            operator,
            session: note.session.map(|s| s.0),
            client: note.client,
        }
    }

    pub(super) fn into_note(self) -> Result<AuditNote, StoreError> {
        let event = AuditEvent::from_label(&self.event).ok_or_else(|| StoreError::Corrupt {
            table: "audit",
            detail: format!("unknown event {:?}", self.event),
        })?;
        let actor = match (self.actor, self.operator) {
            (Some(admin), _) => AuditActor::Admin(UserId(admin)),
            (None, true) => AuditActor::Operator,
            (None, false) => AuditActor::Subject,
        };
        Ok(AuditNote {
            at: UnixTime(self.at),
            event,
            user: self.user.map(UserId),
            actor,
            session: self.session.map(FamilyId),
            client: self.client,
        })
    }
}
