//! Signing keys and server secrets on PostgreSQL (placeholder bodies: being written).
#![allow(unused_variables, clippy::too_many_arguments)]
use super::Shared;
use crate::auth::storage::StoreError;
#[allow(unused_imports)]
use crate::model::*;
use crate::time::UnixTime;

pub(super) async fn refresh_mac_key(
    client: &tokio_postgres::Client,
) -> Result<[u8; 32], StoreError> {
    todo!()
}
pub(super) async fn list(db: &Shared) -> Result<Vec<StoredKey>, StoreError> {
    todo!()
}
pub(super) async fn add(
    db: &Shared,
    key: StoredKey,
    retire_others_at: Option<UnixTime>,
    note: AuditNote,
) -> Result<(), StoreError> {
    todo!()
}
pub(super) async fn retire(db: &Shared, at: UnixTime) -> Result<u64, StoreError> {
    todo!()
}
