//! Schema migrations: each brings a file one version forward inside the transaction that
//! records the new version, so a crash leaves the file at the old version, untouched.

use redb::{ReadableTable, WriteTransaction};

use super::records::{decode, UserRecord};
use super::tables::{ROLE_MEMBERS, USERS};
use super::StoreError;

/// Brings a file of schema `from` to the current one, one step at a time. Tables a step only
/// adds are created empty by the open that follows.
pub(super) fn forward(txn: &WriteTransaction, from: u64) -> Result<(), StoreError> {
    if from < 2 {
        from_1(txn)?;
    }
    // 2 -> 3 added `browser_sessions` and optional fields of family rows (absent = API).
    // 3 -> 4 added `totp` and `mfa_challenges`.
    // 4 -> 5 added optional fields of family rows (user agent, client address; absent =
    // unknown).
    // 5 -> 6 added `audit` (empty: the trail starts with the upgrade).
    Ok(())
}

/// Schema 1 -> 2: index users by role (`role_members`), for the last-admin rule.
fn from_1(txn: &WriteTransaction) -> Result<(), StoreError> {
    let users = txn.open_table(USERS)?;
    let mut members = txn.open_multimap_table(ROLE_MEMBERS)?;
    for row in users.iter()? {
        let (id, bytes) = row?;
        let rec: UserRecord = decode("users", bytes.value())?;
        for role in &rec.roles {
            members.insert(role.as_str(), id.value())?;
        }
    }
    Ok(())
}
