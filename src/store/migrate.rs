//! Schema migrations: each brings a file one version forward inside the transaction that
//! records the new version, so a crash leaves the file at the old version, untouched.

use redb::{
    Key, MultimapTableDefinition, ReadableTable, TableDefinition, TableHandle, Value,
    WriteTransaction,
};

use super::family_row;
use super::records::{
    decode, family_view, id_from, role_member_key, user_family_key, FamilyRecord, UserRecord,
};
use super::tables::{self, Bytes};
use super::StoreError;
use crate::model::{FamilyId, UserId};

/// Brings a file of schema `from` to the current one, one step at a time. Tables a step only
/// adds are created empty by the open that follows.
pub(super) fn forward(txn: &WriteTransaction, from: u64) -> Result<(), StoreError> {
    // 1 -> 2 added `role_members`, which the step to 7 builds from the users.
    // 2 -> 3 added `browser_sessions` and optional fields of family rows (absent = API).
    // 3 -> 4 added `totp` and `mfa_challenges`.
    // 4 -> 5 added optional fields of family rows (user agent, client address; absent =
    // unknown).
    // 5 -> 6 added `audit` (empty: the trail starts with the upgrade).
    if from < 7 {
        to_bytes(txn)?;
    }
    // 8 -> 9 re-encoded the family rows, from JSON to the layout of `family_row.rs`. It runs
    // before the step to 8 of an older file, which reads the rows in this build's layout.
    if from < 9 {
        family_rows(txn)?;
    }
    // 7 -> 8 added `view_users` and `view_sessions`, derived from the users and families.
    if from < 8 {
        super::view_rows::rebuild(txn)?;
    }
    Ok(())
}

/// Schema 6 -> 7: every table that schemas 1-6 typed (all but `meta`) copied into a bytes to
/// bytes table of the same name, row by row, in the encodings `tables.rs` describes; a table
/// the file does not have (a later schema added it) is left for the open to create. The two
/// multimap indexes are rebuilt from the rows they index, as tables of composite keys.
fn to_bytes(txn: &WriteTransaction) -> Result<(), StoreError> {
    convert(
        txn,
        TableDefinition::<&str, &[u8]>::new("secrets"),
        tables::SECRETS,
    )?;
    for table in [tables::USERS, tables::FAMILIES, tables::TOTP, tables::AUDIT] {
        convert(
            txn,
            TableDefinition::<u128, &[u8]>::new(table.name()),
            table,
        )?;
    }
    convert(
        txn,
        TableDefinition::<&str, u128>::new("user_by_email"),
        tables::USER_BY_EMAIL,
    )?;
    convert(
        txn,
        TableDefinition::<&[u8; 32], u128>::new("browser_sessions"),
        tables::BROWSER_SESSIONS,
    )?;
    convert(
        txn,
        TableDefinition::<&[u8; 32], &[u8]>::new("mfa_challenges"),
        tables::MFA_CHALLENGES,
    )?;
    convert(
        txn,
        TableDefinition::<u128, i64>::new("blacklist"),
        tables::BLACKLIST,
    )?;
    convert(
        txn,
        TableDefinition::<u64, &[u8]>::new("signing_keys"),
        tables::SIGNING_KEYS,
    )?;
    // Only the name counts when deleting.
    txn.delete_multimap_table(MultimapTableDefinition::<&str, u128>::new("role_members"))?;
    txn.delete_multimap_table(MultimapTableDefinition::<u128, u128>::new(
        "families_by_user",
    ))?;
    let mut members = txn.open_table(tables::ROLE_MEMBERS)?;
    for row in txn.open_table(tables::USERS)?.iter()? {
        let (id, bytes) = row?;
        let user = UserId(id_from("users", id.value())?);
        let rec: UserRecord = decode("users", bytes.value())?;
        for role in &rec.roles {
            members.insert(role_member_key(role, user).as_slice(), [].as_slice())?;
        }
    }
    let mut index = txn.open_table(tables::FAMILIES_BY_USER)?;
    for row in txn.open_table(tables::FAMILIES)?.iter()? {
        let (id, bytes) = row?;
        let family = FamilyId(id_from("families", id.value())?);
        let rec = family_view(bytes.value())?;
        index.insert(
            user_family_key(UserId(rec.user), family).as_slice(),
            [].as_slice(),
        )?;
    }
    Ok(())
}

/// Schema 8 -> 9: every `families` row decoded from JSON and written in the layout of
/// `family_row.rs`.
fn family_rows(txn: &WriteTransaction) -> Result<(), StoreError> {
    rewrite(
        txn,
        tables::FAMILIES,
        tables::FAMILIES,
        9,
        |id, bytes, key, value| {
            let rec: FamilyRecord = decode("families", bytes)?;
            key.extend_from_slice(id);
            value.extend_from_slice(&family_row::encode(&rec)?);
            Ok(())
        },
    )
}

/// A key or value type of schemas 1-6, and its bytes in schema 7.
trait Legacy: Value + 'static {
    fn to_bytes(value: Self::SelfType<'_>, out: &mut Vec<u8>);
}

impl Legacy for u128 {
    fn to_bytes(value: u128, out: &mut Vec<u8>) {
        out.extend_from_slice(&value.to_be_bytes());
    }
}

impl Legacy for u64 {
    fn to_bytes(value: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(&value.to_be_bytes());
    }
}

impl Legacy for i64 {
    fn to_bytes(value: i64, out: &mut Vec<u8>) {
        out.extend_from_slice(&value.to_be_bytes());
    }
}

impl Legacy for &'static str {
    fn to_bytes(value: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(value.as_bytes());
    }
}

impl Legacy for &'static [u8] {
    fn to_bytes(value: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(value);
    }
}

impl Legacy for &'static [u8; 32] {
    fn to_bytes(value: &[u8; 32], out: &mut Vec<u8>) {
        out.extend_from_slice(value);
    }
}

/// The name a table is built under, for `schema`, before the old one is deleted and it takes
/// the name.
fn building(name: &str, schema: u64) -> String {
    format!("{name}.schema-{schema}")
}

fn has_table(txn: &WriteTransaction, name: &str) -> Result<bool, StoreError> {
    Ok(txn.list_tables()?.any(|t| t.name() == name))
}

fn convert<K: Key + Legacy, V: Legacy>(
    txn: &WriteTransaction,
    old: TableDefinition<K, V>,
    new: TableDefinition<Bytes, Bytes>,
) -> Result<(), StoreError> {
    if !has_table(txn, old.name())? {
        return Ok(());
    }
    rewrite(txn, old, new, 7, |k, v, key, value| {
        K::to_bytes(k, key);
        V::to_bytes(v, value);
        Ok(())
    })
}

/// Rewrites every row of `old` into a table built beside it for `schema` (`row` writes a row's
/// new key and value into the two empty buffers it is given), then deletes `old` and gives
/// the new table `new`'s name, which may be `old`'s.
fn rewrite<K: Key + 'static, V: Value + 'static>(
    txn: &WriteTransaction,
    old: TableDefinition<K, V>,
    new: TableDefinition<Bytes, Bytes>,
    schema: u64,
    mut row: impl FnMut(
        K::SelfType<'_>,
        V::SelfType<'_>,
        &mut Vec<u8>,
        &mut Vec<u8>,
    ) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let name = building(new.name(), schema);
    let building = TableDefinition::<Bytes, Bytes>::new(&name);
    {
        let source = txn.open_table(old)?;
        let mut target = txn.open_table(building)?;
        let (mut key, mut value) = (Vec::new(), Vec::new());
        for entry in source.iter()? {
            let (k, v) = entry?;
            key.clear();
            value.clear();
            row(k.value(), v.value(), &mut key, &mut value)?;
            target.insert(key.as_slice(), value.as_slice())?;
        }
    }
    txn.delete_table(old)?;
    txn.rename_table(building, new)?;
    Ok(())
}
