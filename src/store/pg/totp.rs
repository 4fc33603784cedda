//! TOTP and second-factor challenges on PostgreSQL (placeholder bodies: being written).
#![allow(unused_variables, clippy::too_many_arguments)]
use super::Shared;
use crate::auth::storage::StoreError;
#[allow(unused_imports)]
use crate::model::*;
use crate::time::UnixTime;

pub(super) async fn get(db: &Shared, user: UserId) -> Result<Option<Totp>, StoreError> {
    todo!()
}
pub(super) async fn begin(
    db: &Shared,
    user: UserId,
    secret: [u8; 20],
    session: FamilyId,
    now: UnixTime,
) -> Result<TotpUpdate, StoreError> {
    todo!()
}
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
    todo!()
}
pub(super) async fn disable(
    db: &Shared,
    user: UserId,
    factor: SecondFactor,
    note: AuditNote,
) -> Result<TotpUpdate, StoreError> {
    todo!()
}
pub(super) async fn reset(
    db: &Shared,
    user: UserId,
    now: UnixTime,
    note: AuditNote,
) -> Result<bool, StoreError> {
    todo!()
}
pub(super) async fn open_challenge(
    db: &Shared,
    hash: [u8; 32],
    challenge: MfaChallenge,
) -> Result<(), StoreError> {
    todo!()
}
pub(super) async fn challenge(
    db: &Shared,
    hash: [u8; 32],
    now: UnixTime,
) -> Result<Option<MfaChallenge>, StoreError> {
    todo!()
}
pub(super) async fn fail_challenge(
    db: &Shared,
    hash: [u8; 32],
    max_failures: u32,
    now: UnixTime,
    note: AuditNote,
) -> Result<bool, StoreError> {
    todo!()
}
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
    todo!()
}
