//! The audit log and the sweep on PostgreSQL (placeholder bodies: being written).
#![allow(unused_variables, clippy::too_many_arguments)]
use super::Shared;
use crate::auth::storage::StoreError;
#[allow(unused_imports)]
use crate::model::*;
use crate::time::UnixTime;

use super::Txn;
pub(super) async fn insert(
    tx: &Txn<'_>,
    db: &Shared,
    note: AuditNote,
) -> Result<AuditRow, StoreError> {
    todo!()
}
pub(super) async fn record(db: &Shared, note: AuditNote) -> Result<(), StoreError> {
    todo!()
}
pub(super) async fn list(db: &Shared, query: AuditQuery) -> Result<Vec<AuditRow>, StoreError> {
    todo!()
}
pub(super) async fn sweep(
    db: &Shared,
    now: UnixTime,
    retain_secs: i64,
    audit_retain_secs: i64,
) -> Result<Sweep, StoreError> {
    todo!()
}
