//! The access-token blacklist, and the sweep that keeps the file from growing without bound.

use redb::{ReadableTable, WriteTransaction};

use super::records::{be_bytes, decode, id_from, user_family_key, KeyRecord, RowKey};
use super::tables::{BLACKLIST, BROWSER_SESSIONS, FAMILIES, FAMILIES_BY_USER, SIGNING_KEYS};
use super::{family_row, Change, StoreError, Written};
use crate::model::{FamilyId, Jti, Sweep, UserId};
use crate::time::UnixTime;

/// Blacklists `jti` until `exp`; blacklisting again keeps the later `exp`. Returns the view
/// change.
pub(super) fn blacklist_in(
    txn: &WriteTransaction,
    jti: Jti,
    exp: UnixTime,
) -> Result<Change, StoreError> {
    let mut table = txn.open_table(BLACKLIST)?;
    let old = match table.get(jti.key())? {
        Some(old) => Some(i64::from_be_bytes(be_bytes("blacklist", old.value())?)),
        None => None,
    };
    let exp = old.map_or(exp.secs(), |old| old.max(exp.secs()));
    table.insert(jti.key(), exp.to_be_bytes().as_slice())?;
    Ok(Change::Blacklisted { jti, exp })
}

/// Deletes blacklist rows whose `exp <= now`, families that expired or were revoked at least
/// `retain_secs` ago, signing keys retired at least `retain_secs` ago, and second-factor
/// challenges that expired.
///
/// `retain_secs` should be the access-token lifetime: an access token names its family
/// (`sid`) and its key (`kid`), so neither row may go while such a token can still verify.
pub(super) fn sweep_in(
    txn: &WriteTransaction,
    now: UnixTime,
    retain_secs: i64,
    audit_retain_secs: i64,
) -> Result<Written<Sweep>, StoreError> {
    let cutoff = now.minus(retain_secs).secs();
    let mut changes = Vec::new();
    let sweep = Sweep {
        blacklist: sweep_blacklist(txn, now, &mut changes)?,
        families: sweep_families(txn, cutoff, &mut changes)?,
        keys: sweep_keys(txn, cutoff)?,
        challenges: super::totp::sweep_challenges_in(txn, now)?,
        audit: super::audit::sweep_in(txn, now.minus(audit_retain_secs))?,
    };
    if sweep == Sweep::default() {
        Ok(Written::nothing(sweep))
    } else {
        Ok(Written::commit_with(sweep, changes))
    }
}

fn sweep_blacklist(
    txn: &WriteTransaction,
    now: UnixTime,
    changes: &mut Vec<Change>,
) -> Result<u64, StoreError> {
    let mut table = txn.open_table(BLACKLIST)?;
    let mut gone = Vec::new();
    for row in table.iter()? {
        let (jti, exp) = row?;
        if i64::from_be_bytes(be_bytes("blacklist", exp.value())?) <= now.secs() {
            gone.push(Jti(id_from("blacklist", jti.value())?));
        }
    }
    for jti in &gone {
        table.remove(jti.key())?;
        changes.push(Change::Unblacklisted(*jti));
    }
    Ok(gone.len() as u64)
}

fn sweep_families(
    txn: &WriteTransaction,
    cutoff: i64,
    changes: &mut Vec<Change>,
) -> Result<u64, StoreError> {
    let mut families = txn.open_table(FAMILIES)?;
    let mut gone = Vec::new();
    for row in families.iter()? {
        let (id, bytes) = row?;
        let rec = family_row::decode(bytes.value())?;
        if rec.ended_at() <= cutoff {
            let cookie = rec.browser.map(|_| rec.current.hash);
            let id = FamilyId(id_from("families", id.value())?);
            gone.push((id, rec.user, cookie));
        }
    }
    let mut index = txn.open_table(FAMILIES_BY_USER)?;
    let mut cookies = txn.open_table(BROWSER_SESSIONS)?;
    for (family, user, cookie) in &gone {
        families.remove(family.key())?;
        index.remove(user_family_key(UserId(*user), *family).as_slice())?;
        if let Some(hash) = cookie {
            cookies.remove(hash.as_slice())?;
        }
        changes.push(Change::FamilyGone(*family));
    }
    Ok(gone.len() as u64)
}

fn sweep_keys(txn: &WriteTransaction, cutoff: i64) -> Result<u64, StoreError> {
    let mut keys = txn.open_table(SIGNING_KEYS)?;
    let mut gone = Vec::new();
    for row in keys.iter()? {
        let (seq, bytes) = row?;
        let rec: KeyRecord = decode("signing_keys", bytes.value())?;
        if rec.retired_at.is_some_and(|at| at <= cutoff) {
            gone.push(seq.value().to_vec());
        }
    }
    for seq in &gone {
        keys.remove(seq.as_slice())?;
    }
    Ok(gone.len() as u64)
}
