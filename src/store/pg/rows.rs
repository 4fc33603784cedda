//! Rows of the PostgreSQL tables as latchd's values, and the view built from them: at start,
//! after the feed was swept past a node, and subject by subject as the feed names them.

use std::collections::{HashMap, HashSet};

use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use super::errors::pg_err;
use crate::auth::storage::StoreError;
use crate::model::{FamilyId, Jti, User, UserId};
use crate::store::records::{decode, encode, FamilyRecord};
use crate::store::sessions::browser_change;
use crate::store::view::{self, Change, View};
use crate::time::UnixTime;

/// The columns [`user`] reads, in its order.
pub(super) const USER_COLUMNS: &str =
    "id, email, password_hash, roles, created_at, disabled, token_version";

/// A user from a row of [`USER_COLUMNS`].
pub(super) fn user(row: &Row) -> User {
    User {
        id: UserId(row.get(0)),
        email: row.get(1),
        password_hash: row.get(2),
        roles: row.get(3),
        created_at: UnixTime(row.get(4)),
        disabled: row.get(5),
        token_version: row.get::<_, i64>(6).unsigned_abs(),
    }
}

/// A token version as PostgreSQL's `bigint` stores it (versions never come near 2^63).
pub(super) fn version(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A record as its `record` column stores it (`jsonb`, written as text): the redb store's
/// encoding of it.
pub(super) fn json<T: serde::Serialize>(record: &T) -> String {
    String::from_utf8(encode(record)).unwrap_or_default()
}

/// A session record from its `record` column (selected as `record::text`).
pub(super) fn session_record(text: &str) -> Result<FamilyRecord, StoreError> {
    decode("latchd_sessions", text.as_bytes())
}

/// The whole view, the feed position it reflects and the nonce of the feed row there (none
/// when the sweep took it), read in one snapshot.
pub(super) async fn load_view(
    client: &tokio_postgres::Client,
) -> Result<(View, i64, Option<i64>), StoreError> {
    // One REPEATABLE READ snapshot: the rows and the feed position agree.
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(pg_err("beginning the view load"))?;
    let loaded = load_in(client).await;
    let ended = client
        .batch_execute(if loaded.is_ok() { "COMMIT" } else { "ROLLBACK" })
        .await
        .map_err(pg_err("ending the view load"));
    let loaded = loaded?;
    ended?;
    Ok(loaded)
}

async fn load_in(client: &tokio_postgres::Client) -> Result<(View, i64, Option<i64>), StoreError> {
    // The highest id the feed has held, in this snapshot: its rows, or what a sweep removed
    // (after a quiet hour the table is empty, and 0 would look swept past at once).
    let position: i64 = client
        .query_one(
            "SELECT greatest(
                 (SELECT coalesce(max(id), 0) FROM latchd_changes),
                 (SELECT value FROM latchd_state WHERE name = 'changes_swept_through'))",
            &[],
        )
        .await
        .map_err(pg_err("reading the feed position"))?
        .get(0);
    let nonce: Option<i64> = client
        .query_opt(
            "SELECT nonce FROM latchd_changes WHERE id = $1",
            &[&position],
        )
        .await
        .map_err(pg_err("reading the feed position"))?
        .map(|r| r.get(0));
    let users = client
        .query(
            "SELECT id, token_version, disabled, email, roles FROM latchd_users",
            &[],
        )
        .await
        .map_err(pg_err("loading users"))?;
    let sessions = client
        .query(
            "SELECT id, user_id, cookie_hash IS NOT NULL, record::text FROM latchd_sessions
             WHERE revoked_at IS NULL",
            &[],
        )
        .await
        .map_err(pg_err("loading sessions"))?;
    let mut builder = view::Builder::new(users.len(), sessions.len());
    for row in &users {
        let roles: Vec<String> = row.get(4);
        builder.user(
            UserId(row.get(0)),
            row.get::<_, i64>(1).unsigned_abs(),
            row.get(2),
            row.get(3),
            &roles,
        );
    }
    for row in &sessions {
        let family = FamilyId(row.get(0));
        builder.family(family, UserId(row.get(1)));
        if row.get::<_, bool>(2) {
            let rec = session_record(row.get(3))?;
            if let Some(change) = browser_change(family, &rec) {
                builder.change(change);
            }
        }
    }
    for row in client
        .query("SELECT jti, exp FROM latchd_blacklist", &[])
        .await
        .map_err(pg_err("loading the blacklist"))?
    {
        builder.change(Change::Blacklisted {
            jti: Jti(row.get(0)),
            exp: row.get(1),
        });
    }
    Ok((builder.finish(), position, nonce))
}

/// The current rows of `users`: a change for each one found, and the ids of those gone.
pub(super) async fn users_now(
    client: &impl GenericClient,
    users: &[UserId],
) -> Result<(Vec<Change>, Vec<UserId>), StoreError> {
    if users.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let ids: Vec<Uuid> = users.iter().map(|u| u.0).collect();
    let rows = client
        .query(
            &format!("SELECT {USER_COLUMNS} FROM latchd_users WHERE id = ANY($1)"),
            &[&ids],
        )
        .await
        .map_err(pg_err("reading changed users"))?;
    let found: HashSet<UserId> = rows.iter().map(|r| UserId(r.get(0))).collect();
    let gone = users
        .iter()
        .filter(|u| !found.contains(u))
        .copied()
        .collect();
    Ok((rows.iter().map(|r| Change::user(&user(r))).collect(), gone))
}

/// The current standing of `sessions`: live ones (with their browser cookies), and gone for
/// those revoked or deleted.
pub(super) async fn sessions_now(
    client: &impl GenericClient,
    sessions: &[FamilyId],
) -> Result<Vec<Change>, StoreError> {
    if sessions.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = sessions.iter().map(|f| f.0).collect();
    let rows = client
        .query(
            "SELECT id, user_id, revoked_at IS NULL, record::text FROM latchd_sessions
             WHERE id = ANY($1)",
            &[&ids],
        )
        .await
        .map_err(pg_err("reading changed sessions"))?;
    let by_id: HashMap<Uuid, &Row> = rows.iter().map(|r| (r.get(0), r)).collect();
    let mut changes = Vec::with_capacity(sessions.len());
    for family in sessions {
        match by_id.get(&family.0) {
            Some(row) if row.get::<_, bool>(2) => {
                changes.push(Change::Family {
                    id: *family,
                    user: UserId(row.get(1)),
                });
                let rec = session_record(row.get(3))?;
                changes.extend(browser_change(*family, &rec));
            }
            _ => changes.push(Change::FamilyGone(*family)),
        }
    }
    Ok(changes)
}

/// The current blacklist rows of `jtis`.
pub(super) async fn blacklist_now(
    client: &impl GenericClient,
    jtis: &[Jti],
) -> Result<Vec<Change>, StoreError> {
    if jtis.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = jtis.iter().map(|j| j.0).collect();
    let rows = client
        .query(
            "SELECT jti, exp FROM latchd_blacklist WHERE jti = ANY($1)",
            &[&ids],
        )
        .await
        .map_err(pg_err("reading changed blacklist rows"))?;
    let exp: HashMap<Uuid, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    Ok(jtis
        .iter()
        .map(|jti| {
            exp.get(&jti.0)
                .map_or(Change::Unblacklisted(*jti), |&exp| Change::Blacklisted {
                    jti: *jti,
                    exp,
                })
        })
        .collect())
}
