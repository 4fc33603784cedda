//! Every redb table latchd keeps, and the schema version they form. Nothing else names a table.
//!
//! Since schema 7 every table but `META` maps bytes to bytes ([`Bytes`]), and none is a multimap
//! table (an index is a table of composite keys): redb compiles its B-tree code once per key and
//! value type, and one pair instead of ten made the binary smaller (README "Binary size"). Keys
//! are encoded so that their byte order is the order the rows need: ids as the UUID's 16 bytes
//! (big-endian, the order of `Uuid::as_u128`), sequence numbers big-endian, names as UTF-8
//! (`records.rs` has the encodings). Values are decoded in `records.rs` (the view's tables in
//! `view_rows.rs`), so a bad row is an error rather than a panic inside redb's infallible
//! `Value::from_bytes`.

use redb::TableDefinition;

/// The one key and value type of every table but `META`.
pub(super) type Bytes = &'static [u8];

/// A table of this schema, open for writing.
pub(super) type Table<'t> = redb::Table<'t, Bytes, Bytes>;

/// The schema this build writes and reads. Bump it (and add a migration) when a table or record
/// changes shape.
pub(super) const SCHEMA_VERSION: u64 = 9;

/// The `META` key holding [`SCHEMA_VERSION`].
pub(super) const SCHEMA_VERSION_KEY: &str = "schema_version";

/// The `SECRETS` key holding the 32-byte refresh-token MAC key.
pub(super) const REFRESH_MAC_KEY: &[u8] = b"refresh_mac_key";

/// `"schema_version"` -> version. It keeps the types schema 1 gave it, so that any latchd, older
/// or newer, reads the version of any file and refuses one it does not know.
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Server-held secrets by name (the refresh-token MAC key).
pub(super) const SECRETS: TableDefinition<Bytes, Bytes> = TableDefinition::new("secrets");

/// User id -> JSON `UserRecord`.
pub(super) const USERS: TableDefinition<Bytes, Bytes> = TableDefinition::new("users");

/// Normalized email -> user id; the uniqueness of emails.
pub(super) const USER_BY_EMAIL: TableDefinition<Bytes, Bytes> =
    TableDefinition::new("user_by_email");

/// Family id -> `FamilyRecord` in the binary layout of `family_row.rs` (schema 9; JSON before),
/// of constant size however often the family rotates.
pub(super) const FAMILIES: TableDefinition<Bytes, Bytes> = TableDefinition::new("families");

/// Role name followed by a user id -> nothing: the users holding each role, for the last-admin
/// rule (schema 2; a multimap table before schema 7).
pub(super) const ROLE_MEMBERS: TableDefinition<Bytes, Bytes> = TableDefinition::new("role_members");

/// User id followed by a family id -> nothing: each user's families, for revoke-all and delete
/// (a multimap table before schema 7).
pub(super) const FAMILIES_BY_USER: TableDefinition<Bytes, Bytes> =
    TableDefinition::new("families_by_user");

/// SHA-256 of a browser session's cookie -> its family id (schema 3); swept with the family.
pub(super) const BROWSER_SESSIONS: TableDefinition<Bytes, Bytes> =
    TableDefinition::new("browser_sessions");

/// User id -> JSON `TotpRecord`: the user's TOTP enrolment, pending or on (schema 4).
pub(super) const TOTP: TableDefinition<Bytes, Bytes> = TableDefinition::new("totp");

/// SHA-256 of an `mfa_token` -> JSON `ChallengeRecord` (schema 4); swept once expired.
pub(super) const MFA_CHALLENGES: TableDefinition<Bytes, Bytes> =
    TableDefinition::new("mfa_challenges");

/// Access-token jti -> exp (Unix seconds, 8 bytes big-endian); the row may go once exp has
/// passed.
pub(super) const BLACKLIST: TableDefinition<Bytes, Bytes> = TableDefinition::new("blacklist");

/// Insertion sequence (8 bytes big-endian) -> JSON `KeyRecord`; the highest sequence is the
/// newest key.
pub(super) const SIGNING_KEYS: TableDefinition<Bytes, Bytes> = TableDefinition::new("signing_keys");

/// Audit row id (a version 7 UUID, strictly increasing) -> JSON `AuditRecord` (schema 6); each
/// row is written in the transaction of the change it records, and swept after the audit
/// retention.
pub(super) const AUDIT: TableDefinition<Bytes, Bytes> = TableDefinition::new("audit");

/// User id -> what the in-memory view holds of the user (schema 8; `view_rows.rs` has the
/// encoding): written with every change the view mirrors, read at open instead of `USERS`.
pub(super) const VIEW_USERS: TableDefinition<Bytes, Bytes> = TableDefinition::new("view_users");

/// Family id of a live session -> its user, and a browser session's cookie and timeouts
/// (schema 8; `view_rows.rs`): read at open instead of `FAMILIES`.
pub(super) const VIEW_SESSIONS: TableDefinition<Bytes, Bytes> =
    TableDefinition::new("view_sessions");
