//! The PostgreSQL schema: versioned migrations applied at start under an advisory lock (so two
//! nodes starting together do not race), and a database written by a newer latchd refused,
//! as a newer redb file is.
//!
//! Tables are prefixed `latchd_` so they can share a database with other programs. Columns
//! hold what SQL filters, joins or indexes on; the rest of a row (a session's token chain, a
//! TOTP enrolment, a challenge, a key, an audit row) is the same JSON record the redb file
//! stores (`store::records`), as `jsonb`, so both backends decode one format.

use tokio_postgres::Client;

use super::errors::pg_err;
use crate::auth::storage::StoreError;

/// The schema this build writes and reads.
pub(super) const SCHEMA_VERSION: i64 = 1;

/// The advisory lock key held while migrating ("latchd:m").
const MIGRATE_LOCK: i64 = 0x6c61_7463_6864_3a6d;

/// Migration `n` (1-based) brings the schema from `n - 1` to `n`.
const MIGRATIONS: [&str; 1] = [r"
CREATE TABLE latchd_secrets (
    name text PRIMARY KEY,
    value bytea NOT NULL
);
CREATE TABLE latchd_state (
    name text PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO latchd_state (name, value) VALUES ('changes_swept_through', 0);
CREATE TABLE latchd_users (
    id uuid PRIMARY KEY,
    email_key text NOT NULL UNIQUE,
    email text NOT NULL,
    password_hash text NOT NULL,
    roles text[] NOT NULL,
    created_at bigint NOT NULL,
    disabled boolean NOT NULL,
    token_version bigint NOT NULL
);
CREATE INDEX latchd_users_enabled_admins ON latchd_users (id)
    WHERE NOT disabled AND 'admin' = ANY (roles);
CREATE TABLE latchd_sessions (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES latchd_users (id) ON DELETE CASCADE,
    cookie_hash bytea UNIQUE,
    created_at bigint NOT NULL,
    revoked_at bigint,
    ended_at bigint NOT NULL,
    record jsonb NOT NULL
) WITH (fillfactor = 80);
CREATE INDEX latchd_sessions_user ON latchd_sessions (user_id);
CREATE TABLE latchd_totp (
    user_id uuid PRIMARY KEY REFERENCES latchd_users (id) ON DELETE CASCADE,
    created_at bigint NOT NULL,
    confirmed boolean NOT NULL,
    record jsonb NOT NULL
);
CREATE TABLE latchd_challenges (
    hash bytea PRIMARY KEY,
    user_id uuid NOT NULL,
    expires_at bigint NOT NULL,
    record jsonb NOT NULL
);
CREATE INDEX latchd_challenges_expiry ON latchd_challenges (expires_at);
CREATE TABLE latchd_blacklist (
    jti uuid PRIMARY KEY,
    exp bigint NOT NULL
);
CREATE INDEX latchd_blacklist_exp ON latchd_blacklist (exp);
CREATE TABLE latchd_signing_keys (
    seq bigserial PRIMARY KEY,
    kid text NOT NULL UNIQUE,
    retired_at bigint,
    record jsonb NOT NULL
);
CREATE TABLE latchd_audit (
    id uuid PRIMARY KEY,
    at bigint NOT NULL,
    event text NOT NULL,
    user_id uuid,
    record jsonb NOT NULL
);
CREATE INDEX latchd_audit_at ON latchd_audit (at);
CREATE TABLE latchd_changes (
    id bigint PRIMARY KEY,
    at bigint NOT NULL,
    kind smallint NOT NULL,
    subject uuid NOT NULL,
    nonce bigint NOT NULL DEFAULT (random() * 9.2e18)::bigint
);
CREATE INDEX latchd_changes_at ON latchd_changes (at);
CREATE SEQUENCE latchd_change_ids;
"];

/// Brings the database to [`SCHEMA_VERSION`], or refuses a newer one.
///
/// # Errors
/// `SchemaTooNew` if a newer latchd wrote it; `Backend` if a statement fails.
pub(super) async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATE_LOCK])
        .await
        .map_err(pg_err("locking for migration"))?;
    let outcome = migrate_locked(client).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATE_LOCK])
        .await
        .map_err(pg_err("unlocking after migration"));
    outcome.and(unlocked.map(drop))
}

async fn migrate_locked(client: &mut Client) -> Result<(), StoreError> {
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS latchd_schema (version bigint NOT NULL)")
        .await
        .map_err(pg_err("creating the schema table"))?;
    let found: i64 = client
        .query_opt("SELECT version FROM latchd_schema", &[])
        .await
        .map_err(pg_err("reading the schema version"))?
        .map_or(0, |row| row.get(0));
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: found.unsigned_abs(),
            supported: SCHEMA_VERSION.unsigned_abs(),
        });
    }
    for version in found + 1..=SCHEMA_VERSION {
        let index = usize::try_from(version - 1).unwrap_or(usize::MAX);
        let Some(sql) = MIGRATIONS.get(index) else {
            break;
        };
        let tx = client
            .transaction()
            .await
            .map_err(pg_err("beginning a migration"))?;
        tx.batch_execute(sql)
            .await
            .map_err(pg_err("applying a migration"))?;
        tx.execute("DELETE FROM latchd_schema", &[])
            .await
            .map_err(pg_err("recording the schema version"))?;
        tx.execute(
            "INSERT INTO latchd_schema (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(pg_err("recording the schema version"))?;
        tx.commit()
            .await
            .map_err(pg_err("committing a migration"))?;
    }
    Ok(())
}
