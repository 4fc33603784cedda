//! The view's own tables (schema 8): all that opening needs to rebuild the in-memory view,
//! written in the transaction of every change it mirrors. Opening reads these small rows (about
//! 60 bytes a user, 32 an API session) instead of every whole row (a user's password hash, a
//! session's tokens and client): at a million users and a million sessions about 0.1 GB of
//! the 1.2 GB file (README "Cold start and memory at scale").
//!
//! - `view_users`: user id -> token version (8 bytes, big-endian), disabled (1 byte, 0 or 1),
//!   the email's length (2 bytes, big-endian) and bytes, then each role as its length (2 bytes)
//!   and bytes.
//! - `view_sessions`: family id of a live (unrevoked) session -> its user's id (16 bytes); a
//!   browser session's row goes on with its cookie hash (32), whether it passed a second
//!   factor (1), its `expires_at_max`, idle timeout and last use on disk (8 bytes each,
//!   big-endian, signed).
//!
//! One source of truth for both: the writer persists a job's [`Change`]s here ([`persist`]),
//! in the job's transaction, from the same list it applies to memory once that transaction is
//! durable. What a restart reads is what the running view held. [`rebuild`] derives the rows
//! from the whole rows instead (the migration to schema 8), and the tests hold the two ways to
//! each other after every kind of write.

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableHandle, WriteTransaction,
};

use super::records::{self, be_bytes, id_from, RowKey};
use super::tables::{Table, BLACKLIST, FAMILIES, USERS, VIEW_SESSIONS, VIEW_USERS};
use super::view::{self, Change, View};
use super::StoreError;
use super::{family_row, sessions};
use crate::model::{FamilyId, Jti, UserId};

/// A view user row's fixed start: token version and disabled flag.
const USER_HEAD: usize = 9;
/// An API session's row: the user id.
const API_SESSION: usize = 16;
/// A browser session's row.
const BROWSER_SESSION: usize = API_SESSION + 32 + 1 + 3 * 8;
/// Where a browser session row's last use starts.
const LAST_USED_AT: usize = BROWSER_SESSION - 8;

/// Writes `changes` (one job's, in order) into the view's tables of `txn`.
pub(super) fn persist(txn: &WriteTransaction, changes: &[Change]) -> Result<(), StoreError> {
    let persisted =
        |c: &Change| !matches!(c, Change::Blacklisted { .. } | Change::Unblacklisted(_));
    if !changes.iter().any(persisted) {
        return Ok(());
    }
    let mut users = txn.open_table(VIEW_USERS)?;
    let mut sessions = txn.open_table(VIEW_SESSIONS)?;
    for change in changes {
        match change {
            Change::User {
                id,
                token_version,
                disabled,
                facts,
            } => {
                let row = user_row(*token_version, *disabled, &facts.email, &facts.roles)?;
                users.insert(id.key(), row.as_slice())?;
            }
            Change::UserGone(id) => {
                users.remove(id.key())?;
            }
            Change::Family { id, user } => {
                // Already there with its browser part (the `Browser` change came first): kept.
                let kept = sessions
                    .get(id.key())?
                    .is_some_and(|row| row.value().get(..API_SESSION) == Some(user.0.as_bytes()));
                if !kept {
                    sessions.insert(id.key(), user.0.as_bytes().as_slice())?;
                }
            }
            Change::Browser {
                cookie_hash,
                family,
                user,
                mfa,
                expires_at_max,
                idle_secs,
                last_used_at,
            } => {
                // As in memory: the last use on disk only moves on.
                let last_used_at = match browser_row(&sessions, *family)? {
                    Some(row) => last_used(&row)?.max(*last_used_at),
                    None => *last_used_at,
                };
                let mut row = Vec::with_capacity(BROWSER_SESSION);
                row.extend_from_slice(user.0.as_bytes());
                row.extend_from_slice(cookie_hash);
                row.push(u8::from(*mfa));
                row.extend_from_slice(&expires_at_max.to_be_bytes());
                row.extend_from_slice(&idle_secs.to_be_bytes());
                row.extend_from_slice(&last_used_at.to_be_bytes());
                sessions.insert(family.key(), row.as_slice())?;
            }
            Change::FamilyGone(id) => {
                sessions.remove(id.key())?;
            }
            Change::Touched { family, at } => {
                let Some(mut row) = browser_row(&sessions, *family)? else {
                    continue;
                };
                let at = last_used(&row)?.max(*at);
                row[LAST_USED_AT..].copy_from_slice(&at.to_be_bytes());
                sessions.insert(family.key(), row.as_slice())?;
            }
            Change::Blacklisted { .. } | Change::Unblacklisted(_) => {}
        }
    }
    Ok(())
}

/// Session `family`'s row, if it is a browser session's.
fn browser_row(sessions: &Table<'_>, family: FamilyId) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(sessions
        .get(family.key())?
        .map(|row| row.value().to_vec())
        .filter(|row| row.len() == BROWSER_SESSION))
}

/// The signed big-endian number at `at` of a `view_sessions` row.
fn session_int(row: &[u8], at: usize) -> Result<i64, StoreError> {
    let bytes = row.get(at..at + 8).unwrap_or_default();
    Ok(i64::from_be_bytes(be_bytes("view_sessions", bytes)?))
}

/// The last use on disk a browser session's row holds.
fn last_used(row: &[u8]) -> Result<i64, StoreError> {
    session_int(row, LAST_USED_AT)
}

/// A row of `table` that does not decode.
fn corrupt(table: &'static str, detail: &str) -> StoreError {
    StoreError::Corrupt {
        table,
        detail: detail.to_owned(),
    }
}

/// A `view_users` row.
fn user_row(
    token_version: u64,
    disabled: bool,
    email: &str,
    roles: &[String],
) -> Result<Vec<u8>, StoreError> {
    let mut row = Vec::with_capacity(USER_HEAD + 2 + email.len() + roles.len() * 16);
    row.extend_from_slice(&token_version.to_be_bytes());
    row.push(u8::from(disabled));
    for text in std::iter::once(email).chain(roles.iter().map(String::as_str)) {
        let len = u16::try_from(text.len()).map_err(|_| {
            StoreError::Unsupported("an email or role name longer than 65,535 bytes")
        })?;
        row.extend_from_slice(&len.to_be_bytes());
        row.extend_from_slice(text.as_bytes());
    }
    Ok(row)
}

/// A `view_users` row read back: token version, disabled, email, and the roles into `roles`.
fn read_user_row<'a>(
    row: &'a [u8],
    roles: &mut Vec<String>,
) -> Result<(u64, bool, &'a str), StoreError> {
    let head = row
        .get(..USER_HEAD)
        .ok_or_else(|| corrupt("view_users", "a row shorter than its fixed part"))?;
    let token_version = u64::from_be_bytes(be_bytes("view_users", &head[..8])?);
    let disabled = match head[8] {
        0 => false,
        1 => true,
        _ => return Err(corrupt("view_users", "a disabled flag neither 0 nor 1")),
    };
    let mut rest = &row[USER_HEAD..];
    let email = next_text(&mut rest)?;
    roles.clear();
    while !rest.is_empty() {
        roles.push(next_text(&mut rest)?.to_owned());
    }
    Ok((token_version, disabled, email))
}

/// The length-prefixed text at the start of `rest`, which moves past it.
fn next_text<'a>(rest: &mut &'a [u8]) -> Result<&'a str, StoreError> {
    let corrupt = |detail| corrupt("view_users", detail);
    let (len, after) = rest
        .split_first_chunk::<2>()
        .ok_or_else(|| corrupt("a text without its length"))?;
    let (bytes, after) = after
        .split_at_checked(usize::from(u16::from_be_bytes(*len)))
        .ok_or_else(|| corrupt("a text longer than its row"))?;
    *rest = after;
    std::str::from_utf8(bytes).map_err(|_| corrupt("a text that is not UTF-8"))
}

/// A `view_sessions` row read back: the user, and the browser session's change if it is one.
fn read_session_row(family: FamilyId, row: &[u8]) -> Result<(UserId, Option<Change>), StoreError> {
    let user = UserId(id_from(
        "view_sessions",
        row.get(..API_SESSION).unwrap_or(row),
    )?);
    match row.len() {
        API_SESSION => Ok((user, None)),
        BROWSER_SESSION => {
            let mut cookie_hash = [0; 32];
            cookie_hash.copy_from_slice(&row[API_SESSION..API_SESSION + 32]);
            let mfa = match row[API_SESSION + 32] {
                0 => false,
                1 => true,
                _ => {
                    return Err(corrupt(
                        "view_sessions",
                        "a second-factor flag neither 0 nor 1",
                    ))
                }
            };
            let ints = API_SESSION + 33;
            Ok((
                user,
                Some(Change::Browser {
                    cookie_hash,
                    family,
                    user,
                    mfa,
                    expires_at_max: session_int(row, ints)?,
                    idle_secs: session_int(row, ints + 8)?,
                    last_used_at: last_used(row)?,
                }),
            ))
        }
        len => Err(corrupt("view_sessions", &format!("a row of {len} bytes"))),
    }
}

/// Builds the view from the view's tables and the blacklist. The users and the blacklist are
/// read on this thread while a second one reads the sessions, each in a read transaction of its
/// own: nothing writes yet, so both see the same state.
pub(super) fn load(db: &Database) -> Result<View, StoreError> {
    std::thread::scope(|scope| {
        let sessions = std::thread::Builder::new()
            .name("latchd-load".to_owned())
            .spawn_scoped(scope, || live_sessions(db))
            .map_err(|e| StoreError::backend("starting the loading thread", e))?;
        let txn = db.begin_read()?;
        let users = txn.open_table(VIEW_USERS)?;
        let mut view = view::Builder::new(table_len(users.len()?), 0);
        let mut roles = Vec::new();
        for row in users.iter()? {
            let (id, row) = row?;
            let (token_version, disabled, email) = read_user_row(row.value(), &mut roles)?;
            view.user(
                UserId(id_from("view_users", id.value())?),
                token_version,
                disabled,
                email,
                &roles,
            );
        }
        for row in txn.open_table(BLACKLIST)?.iter()? {
            let (jti, exp) = row?;
            view.change(Change::Blacklisted {
                jti: Jti(id_from("blacklist", jti.value())?),
                exp: i64::from_be_bytes(be_bytes("blacklist", exp.value())?),
            });
        }
        let (sessions, browser) = sessions.join().map_err(|_| StoreError::Corrupt {
            table: "view_sessions",
            detail: "loading the sessions panicked".to_owned(),
        })??;
        view.sessions(sessions);
        for change in browser {
            view.change(change);
        }
        Ok(view.finish())
    })
}

/// The live sessions by their users, and the browser sessions among them.
type LiveSessions = (view::LiveSessions, Vec<Change>);

fn live_sessions(db: &Database) -> Result<LiveSessions, StoreError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(VIEW_SESSIONS)?;
    let mut live = view::LiveSessions::with_capacity(table_len(table.len()?));
    let mut browser = Vec::new();
    for row in table.iter()? {
        let (id, row) = row?;
        let id = FamilyId(id_from("view_sessions", id.value())?);
        let (user, change) = read_session_row(id, row.value())?;
        live.push(id, user);
        browser.extend(change);
    }
    live.sort();
    Ok((live, browser))
}

/// Rebuilds the view's tables of a schema-8 file when they cannot be what the writer left: one
/// of them missing (the file was edited, or copied table by table), or `view_users` not holding
/// one row per user. Cheap: the list of tables and two row counts redb keeps. Returns whether
/// it rebuilt. A stale `view_sessions` beside a right `view_users` is not caught here: only the
/// writer writes either, in the transaction of the change.
pub(super) fn repair(txn: &WriteTransaction) -> Result<bool, StoreError> {
    let names: Vec<String> = txn.list_tables()?.map(|t| t.name().to_owned()).collect();
    let has = |table: &str| names.iter().any(|name| name == table);
    let sound = has(VIEW_USERS.name())
        && has(VIEW_SESSIONS.name())
        && txn.open_table(VIEW_USERS)?.len()? == txn.open_table(USERS)?.len()?;
    if sound {
        return Ok(false);
    }
    rebuild(txn)?;
    Ok(true)
}

/// Rewrites the view's tables from the whole rows of `users` and `families`: every user, and
/// every family not revoked. Reads every row, so a row that does not decode fails it.
pub(super) fn rebuild(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.delete_table(VIEW_USERS)?;
    txn.delete_table(VIEW_SESSIONS)?;
    let mut changes = Vec::new();
    for row in txn.open_table(USERS)?.iter()? {
        let (id, bytes) = row?;
        let rec = records::user_view(bytes.value())?;
        changes.push(Change::User {
            id: UserId(id_from("users", id.value())?),
            token_version: rec.token_version,
            disabled: rec.disabled,
            facts: crate::model::UserFacts {
                email: std::sync::Arc::from(rec.email.as_ref()),
                roles: std::sync::Arc::from(rec.roles.as_slice()),
            },
        });
        flush_if_full(txn, &mut changes)?;
    }
    for row in txn.open_table(FAMILIES)?.iter()? {
        let (id, bytes) = row?;
        let rec = family_row::decode(bytes.value())?;
        if rec.revoked_at.is_some() {
            continue;
        }
        let id = FamilyId(id_from("families", id.value())?);
        changes.push(Change::Family {
            id,
            user: UserId(rec.user),
        });
        changes.extend(sessions::browser_change(id, &rec));
        flush_if_full(txn, &mut changes)?;
    }
    persist(txn, &changes)
}

/// Persists and forgets `changes` once there are 4096 or more: bounded memory for a rebuild of
/// tables of any size.
fn flush_if_full(txn: &WriteTransaction, changes: &mut Vec<Change>) -> Result<(), StoreError> {
    if changes.len() >= 4096 {
        persist(txn, changes)?;
        changes.clear();
    }
    Ok(())
}

/// A table's row count as a capacity (a hint: a count past `usize` asks for none).
fn table_len(rows: u64) -> usize {
    usize::try_from(rows).unwrap_or(0)
}
