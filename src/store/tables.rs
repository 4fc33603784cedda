//! Every redb table latchd keeps, and the schema version they form. Nothing else names a table.
//!
//! Ids are stored as `u128` (the UUID's big-endian value) because redb's `Uuid` impl sits behind
//! a feature latchd does not enable. Values stay bytes and are decoded in `records.rs`, so a bad
//! row is an error rather than a panic inside redb's infallible `Value::from_bytes`.

use redb::{MultimapTableDefinition, TableDefinition};

/// The schema this build writes and reads. Bump it (and add a migration) when a table or record
/// changes shape.
pub(super) const SCHEMA_VERSION: u64 = 6;

/// The `META` key holding [`SCHEMA_VERSION`].
pub(super) const SCHEMA_VERSION_KEY: &str = "schema_version";

/// The `SECRETS` key holding the 32-byte refresh-token MAC key.
pub(super) const REFRESH_MAC_KEY: &str = "refresh_mac_key";

/// `"schema_version"` -> version.
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Server-held secrets by name (the refresh-token MAC key).
pub(super) const SECRETS: TableDefinition<&str, &[u8]> = TableDefinition::new("secrets");

/// User id -> JSON `UserRecord`.
pub(super) const USERS: TableDefinition<u128, &[u8]> = TableDefinition::new("users");

/// Normalized email -> user id; the uniqueness of emails.
pub(super) const USER_BY_EMAIL: TableDefinition<&str, u128> = TableDefinition::new("user_by_email");

/// Family id -> JSON `FamilyRecord` (constant size however often the family rotates).
pub(super) const FAMILIES: TableDefinition<u128, &[u8]> = TableDefinition::new("families");

/// Role name -> the ids of the users holding it; for the last-admin rule (schema 2).
pub(super) const ROLE_MEMBERS: MultimapTableDefinition<&str, u128> =
    MultimapTableDefinition::new("role_members");

/// User id -> its family ids, for revoke-all and delete.
pub(super) const FAMILIES_BY_USER: MultimapTableDefinition<u128, u128> =
    MultimapTableDefinition::new("families_by_user");

/// SHA-256 of a browser session's cookie -> its family id (schema 3); swept with the family.
pub(super) const BROWSER_SESSIONS: TableDefinition<&[u8; 32], u128> =
    TableDefinition::new("browser_sessions");

/// User id -> JSON `TotpRecord`: the user's TOTP enrolment, pending or on (schema 4).
pub(super) const TOTP: TableDefinition<u128, &[u8]> = TableDefinition::new("totp");

/// SHA-256 of an `mfa_token` -> JSON `ChallengeRecord` (schema 4); swept once expired.
pub(super) const MFA_CHALLENGES: TableDefinition<&[u8; 32], &[u8]> =
    TableDefinition::new("mfa_challenges");

/// Access-token jti -> exp (Unix seconds); the row may go once exp has passed.
pub(super) const BLACKLIST: TableDefinition<u128, i64> = TableDefinition::new("blacklist");

/// Insertion sequence -> JSON `KeyRecord`; the highest sequence is the newest key.
pub(super) const SIGNING_KEYS: TableDefinition<u64, &[u8]> = TableDefinition::new("signing_keys");

/// Audit row id (a version 7 UUID, strictly increasing) -> JSON `AuditRecord` (schema 6); each
/// row is written in the transaction of the change it records, and swept after the audit
/// retention.
pub(super) const AUDIT: TableDefinition<u128, &[u8]> = TableDefinition::new("audit");
