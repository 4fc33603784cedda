//! Signing keys for access tokens, and the server-held refresh-token MAC key.

use redb::{ReadableTable, WriteTransaction};
use ring::rand::{SecureRandom, SystemRandom};

use super::records::{be_bytes, decode, encode, KeyRecord};
use super::tables::{Bytes, Table, REFRESH_MAC_KEY, SIGNING_KEYS};
use super::{StoreError, Written};
use crate::model::StoredKey;
use crate::time::UnixTime;

/// Every stored signing key, oldest first; the signer is the last one not retired.
pub(super) fn all_in(
    keys: &impl ReadableTable<Bytes, Bytes>,
) -> Result<Vec<StoredKey>, StoreError> {
    let mut out = Vec::new();
    for row in keys.iter()? {
        let (_, bytes) = row?;
        out.push(decode::<KeyRecord>("signing_keys", bytes.value())?.into_key());
    }
    Ok(out)
}

/// Stores `key` as the newest signing key; with `retire_others_at`, every other key not yet
/// retired gets that `retired_at` (key rotation: old keys keep verifying until swept).
///
/// # Errors
/// `KidTaken` if a key with the same `kid` is stored.
pub(super) fn add_in(
    txn: &WriteTransaction,
    key: &StoredKey,
    retire_others_at: Option<UnixTime>,
) -> Result<Written<()>, StoreError> {
    let mut keys = txn.open_table(SIGNING_KEYS)?;
    let mut rows = Vec::new();
    for row in keys.iter()? {
        let (seq, bytes) = row?;
        rows.push((
            u64::from_be_bytes(be_bytes("signing_keys", seq.value())?),
            decode::<KeyRecord>("signing_keys", bytes.value())?,
        ));
    }
    if rows.iter().any(|(_, r)| r.kid == key.kid) {
        return Err(StoreError::KidTaken(key.kid.clone()));
    }
    let next = rows.last().map_or(0, |(seq, _)| seq.saturating_add(1));
    if let Some(at) = retire_others_at {
        for (seq, mut rec) in rows {
            if rec.retired_at.is_none() {
                rec.retired_at = Some(at.secs());
                keys.insert(seq.to_be_bytes().as_slice(), encode(&rec).as_slice())?;
            }
        }
    }
    keys.insert(
        next.to_be_bytes().as_slice(),
        encode(&KeyRecord::from_key(key)).as_slice(),
    )?;
    Ok(Written::commit(()))
}

/// Retires every stored signing key not yet retired, at `at`; they keep verifying until the
/// sweeper deletes them. Used when a configured key takes over signing, so that keys the file
/// generated earlier stop being trusted after one access TTL. Returns how many.
pub(super) fn retire_in(txn: &WriteTransaction, at: UnixTime) -> Result<Written<u64>, StoreError> {
    let mut keys = txn.open_table(SIGNING_KEYS)?;
    let mut live = Vec::new();
    for row in keys.iter()? {
        let (seq, bytes) = row?;
        let rec = decode::<KeyRecord>("signing_keys", bytes.value())?;
        if rec.retired_at.is_none() {
            live.push((seq.value().to_vec(), rec));
        }
    }
    if live.is_empty() {
        return Ok(Written::nothing(0));
    }
    let count = u64::try_from(live.len()).unwrap_or(u64::MAX);
    for (seq, mut rec) in live {
        rec.retired_at = Some(at.secs());
        keys.insert(seq.as_slice(), encode(&rec).as_slice())?;
    }
    Ok(Written::commit(count))
}

/// Returns the stored refresh MAC key, generating and inserting one if absent.
pub(super) fn ensure_refresh_mac_key(secrets: &mut Table<'_>) -> Result<[u8; 32], StoreError> {
    if let Some(stored) = secrets.get(REFRESH_MAC_KEY)? {
        return <[u8; 32]>::try_from(stored.value()).map_err(|_| StoreError::Corrupt {
            table: "secrets",
            detail: format!("refresh MAC key is {} bytes, not 32", stored.value().len()),
        });
    }
    let mut key = [0u8; 32];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| StoreError::Random)?;
    secrets.insert(REFRESH_MAC_KEY, key.as_slice())?;
    Ok(key)
}
