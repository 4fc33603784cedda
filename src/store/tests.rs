//! Tests of what only the redb backend has: its file, schema, migrations, lock, permissions
//! and row decoding. Everything backend-neutral is in the storage conformance suite
//! (`src/conformance.rs`, run against this store by `tests/it/storage.rs`).

use redb::{Database, TableDefinition, WriteTransaction};
use tempfile::TempDir;
use uuid::Uuid;

use super::tables::{META, SCHEMA_VERSION, USERS};
use super::*;
use crate::model::SessionKind;

const NOW: UnixTime = UnixTime(1_800_000_000);

fn note(event: AuditEvent) -> AuditNote {
    AuditNote::new(event, NOW)
}
const POLICY: SessionPolicy = SessionPolicy {
    refresh_ttl_secs: 100,
    session_max_secs: 1_000,
    grace_secs: 10,
    max_per_user: 100,
    idle_secs: 3_600,
};

/// Waits for a storage operation on a throw-away current-thread runtime.
fn wait<T>(pending: Pending<'_, T>) -> Result<T, StoreError> {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(pending)
}

fn temp_store() -> (TempDir, Store) {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&dir.path().join("latchd.redb")).unwrap();
    (dir, store)
}

fn new_user(store: &Store, email: &str) -> User {
    let new = NewUser {
        email: email.to_owned(),
        password_hash: "$pbkdf2-sha256$i=1$x$y".to_owned(),
        roles: vec!["user".to_owned()],
    };
    match wait(store.create_user(new, NOW, note(AuditEvent::Registered))).unwrap() {
        CreateUser::Created(user) => user,
        CreateUser::EmailTaken => panic!("{email} taken"),
    }
}

/// A user with one family whose generation-0 token hashes to `[0; 32]`.
fn session(store: &Store) -> (UserId, FamilyId) {
    let user = new_user(store, &format!("{}@example.com", Uuid::new_v4()));
    (user.id, open_api_session(store, &user, POLICY))
}

/// A new API session of `user` under `policy`, its generation-0 token hashing to `[0; 32]`.
fn open_api_session(store: &Store, user: &User, policy: SessionPolicy) -> FamilyId {
    let family = FamilyId::new();
    let opened = store.open_session(
        family,
        user,
        [0; 32],
        NewSession::default(),
        NOW,
        policy,
        note(AuditEvent::Login),
    );
    assert!(wait(opened).unwrap());
    family
}

fn presented(family: FamilyId, generation: u64, hash: [u8; 32]) -> Presented {
    Presented {
        family,
        generation,
        hash,
    }
}

fn successor(n: u8) -> Successor {
    Successor {
        hash: [n; 32],
        sealed: [n ^ 0xff; 32],
    }
}

#[test]
fn store_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
}

#[test]
fn newer_schema_is_refused() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("latchd.redb");
    drop(Store::open(&path).unwrap());
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("schema_version", SCHEMA_VERSION + 1)
            .unwrap();
        txn.commit().unwrap();
    }
    let err = Store::open(&path).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SchemaTooNew { found, supported }
                if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!("version {}", SCHEMA_VERSION + 1)) && text.contains("newer"),
        "{text}"
    );
}

/// The tables of schemas 1-6, each with its own key and value types (`tables.rs` before schema
/// 7), and a way back to them: the file a latchd of schema 6 would have written.
mod legacy {
    use redb::{
        Database, MultimapTableDefinition, MultimapTableHandle, ReadableTable, TableDefinition,
        TableHandle, WriteTransaction,
    };

    use super::super::tables::{self, Bytes};

    /// A table's rows as owned key and value bytes, in key order.
    pub(super) type Rows = Vec<(Vec<u8>, Vec<u8>)>;

    fn uuid(bytes: &[u8]) -> u128 {
        u128::from_be_bytes(bytes.try_into().unwrap())
    }

    fn eight(bytes: &[u8]) -> [u8; 8] {
        bytes.try_into().unwrap()
    }

    fn hash(bytes: &[u8]) -> [u8; 32] {
        bytes.try_into().unwrap()
    }

    /// Rows of a table of today's schema, as owned pairs.
    pub(super) fn rows(txn: &WriteTransaction, table: TableDefinition<Bytes, Bytes>) -> Rows {
        let table = txn.open_table(table).unwrap();
        let rows = table
            .iter()
            .unwrap()
            .map(|r| {
                let (k, v) = r.unwrap();
                (k.value().to_vec(), v.value().to_vec())
            })
            .collect();
        rows
    }

    /// Replaces `table` by a table of the same name and the old types, holding its rows.
    fn back<K: redb::Key + 'static, V: redb::Value + 'static>(
        txn: &WriteTransaction,
        table: TableDefinition<Bytes, Bytes>,
        row: impl for<'a> Fn(&'a [u8], &'a [u8], &mut redb::Table<'_, K, V>),
    ) {
        let rows = rows(txn, table);
        assert!(txn.delete_table(table).unwrap());
        let old: TableDefinition<K, V> = TableDefinition::new(table.name());
        let mut old = txn.open_table(old).unwrap();
        for (k, v) in &rows {
            row(k, v, &mut old);
        }
    }

    /// Writes every family row of `txn` back in JSON, as schemas 1-8 did.
    fn families_to_json(txn: &WriteTransaction) {
        let rows = rows(txn, tables::FAMILIES);
        let mut families = txn.open_table(tables::FAMILIES).unwrap();
        for (k, v) in &rows {
            let rec = super::super::family_row::decode(v).unwrap();
            let json = super::super::records::encode(&rec);
            families.insert(k.as_slice(), json.as_slice()).unwrap();
        }
    }

    /// Turns a file of today's schema into the one schema 8 wrote (the version too).
    pub(super) fn to_schema_8(path: &std::path::Path) {
        let db = Database::create(path).unwrap();
        let txn = db.begin_write().unwrap();
        families_to_json(&txn);
        txn.open_table(tables::META)
            .unwrap()
            .insert(tables::SCHEMA_VERSION_KEY, 8)
            .unwrap();
        txn.commit().unwrap();
    }

    /// Turns a file of today's schema into the one schema 6 wrote (the version too).
    pub(super) fn to_schema_6(path: &std::path::Path) {
        let db = Database::create(path).unwrap();
        let txn = db.begin_write().unwrap();
        families_to_json(&txn);
        // Schema 8 added the view's tables.
        assert!(txn.delete_table(tables::VIEW_USERS).unwrap());
        assert!(txn.delete_table(tables::VIEW_SESSIONS).unwrap());
        back::<&str, &[u8]>(&txn, tables::SECRETS, |k, v, t| {
            t.insert(std::str::from_utf8(k).unwrap(), v).unwrap();
        });
        for table in [tables::USERS, tables::FAMILIES, tables::TOTP, tables::AUDIT] {
            back::<u128, &[u8]>(&txn, table, |k, v, t| {
                t.insert(uuid(k), v).unwrap();
            });
        }
        back::<&str, u128>(&txn, tables::USER_BY_EMAIL, |k, v, t| {
            t.insert(std::str::from_utf8(k).unwrap(), uuid(v)).unwrap();
        });
        back::<&[u8; 32], u128>(&txn, tables::BROWSER_SESSIONS, |k, v, t| {
            t.insert(&hash(k), uuid(v)).unwrap();
        });
        back::<&[u8; 32], &[u8]>(&txn, tables::MFA_CHALLENGES, |k, v, t| {
            t.insert(&hash(k), v).unwrap();
        });
        back::<u128, i64>(&txn, tables::BLACKLIST, |k, v, t| {
            t.insert(uuid(k), i64::from_be_bytes(eight(v))).unwrap();
        });
        back::<u64, &[u8]>(&txn, tables::SIGNING_KEYS, |k, v, t| {
            t.insert(u64::from_be_bytes(eight(k)), v).unwrap();
        });
        // The indexes were multimap tables: role -> user ids, user id -> family ids.
        let members = rows(&txn, tables::ROLE_MEMBERS);
        assert!(txn.delete_table(tables::ROLE_MEMBERS).unwrap());
        let old: MultimapTableDefinition<&str, u128> = MultimapTableDefinition::new("role_members");
        let mut old = txn.open_multimap_table(old).unwrap();
        for (k, _) in &members {
            let (role, user) = k.split_at(k.len() - 16);
            old.insert(std::str::from_utf8(role).unwrap(), uuid(user))
                .unwrap();
        }
        drop(old);
        let index = rows(&txn, tables::FAMILIES_BY_USER);
        assert!(txn.delete_table(tables::FAMILIES_BY_USER).unwrap());
        let old: MultimapTableDefinition<u128, u128> =
            MultimapTableDefinition::new("families_by_user");
        let mut old = txn.open_multimap_table(old).unwrap();
        for (k, _) in &index {
            let (user, family) = k.split_at(16);
            old.insert(uuid(user), uuid(family)).unwrap();
        }
        drop(old);
        txn.open_table(tables::META)
            .unwrap()
            .insert(tables::SCHEMA_VERSION_KEY, 6)
            .unwrap();
        txn.commit().unwrap();
    }

    /// Turns a schema-6 file into what latchd 0.1 wrote: schema 1, without the tables later
    /// schemas added.
    pub(super) fn to_schema_1(path: &std::path::Path) {
        let db = Database::create(path).unwrap();
        let txn = db.begin_write().unwrap();
        for name in ["browser_sessions", "totp", "mfa_challenges", "audit"] {
            assert!(
                txn.delete_table(TableDefinition::<u128, u128>::new(name))
                    .unwrap(),
                "{name}"
            );
        }
        assert!(txn
            .delete_multimap_table(MultimapTableDefinition::<u128, u128>::new("role_members"))
            .unwrap());
        txn.open_table(tables::META)
            .unwrap()
            .insert(tables::SCHEMA_VERSION_KEY, 1)
            .unwrap();
        txn.commit().unwrap();
    }

    /// Every row of every table of today's schema, by table, in key order.
    pub(super) fn dump(path: &std::path::Path) -> Vec<(String, Rows)> {
        let db = Database::create(path).unwrap();
        let txn = db.begin_write().unwrap();
        let mut out = Vec::new();
        for table in [
            tables::SECRETS,
            tables::USERS,
            tables::USER_BY_EMAIL,
            tables::FAMILIES,
            tables::BROWSER_SESSIONS,
            tables::TOTP,
            tables::MFA_CHALLENGES,
            tables::BLACKLIST,
            tables::SIGNING_KEYS,
            tables::AUDIT,
            tables::ROLE_MEMBERS,
            tables::FAMILIES_BY_USER,
            tables::VIEW_USERS,
            tables::VIEW_SESSIONS,
        ] {
            out.push((table.name().to_owned(), rows(&txn, table)));
        }
        let names: Vec<String> = txn
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_owned())
            .chain(
                txn.list_multimap_tables()
                    .unwrap()
                    .map(|t| t.name().to_owned()),
            )
            .collect();
        out.push((
            "(tables)".to_owned(),
            names
                .into_iter()
                .map(|n| (n.into_bytes(), Vec::new()))
                .collect(),
        ));
        drop(txn);
        out
    }
}

const ALL_AUDIT: AuditQuery = AuditQuery {
    user: None,
    event: None,
    after: None,
    since: None,
    limit: 1000,
};

/// A store holding a row in every table: an admin, a user with an API and a browser session,
/// a pending TOTP enrolment, a second-factor challenge, a blacklisted jti, two signing keys and
/// the audit rows of all that.
struct Filled {
    admin: UserId,
    user: UserId,
    api: FamilyId,
    browser: FamilyId,
    jti: Jti,
}

fn fill(store: &Store) -> Filled {
    let admin = new_user(store, "root@example.com").id;
    assert_eq!(
        wait(store.set_roles(admin, &["admin".to_owned()], note(AuditEvent::RolesChanged)))
            .unwrap(),
        UserUpdate::Done
    );
    let (user, api) = session(store);
    let user_row = wait(store.user(user)).unwrap().unwrap();
    let browser = FamilyId::new();
    let kind = NewSession {
        kind: SessionKind::Browser,
        ..NewSession::default()
    };
    assert!(wait(store.open_session(
        browser,
        &user_row,
        [7; 32],
        kind,
        NOW,
        POLICY,
        note(AuditEvent::Login)
    ))
    .unwrap());
    assert_eq!(
        wait(store.begin_totp(admin, [3; 20], api, NOW)).unwrap(),
        TotpUpdate::Done
    );
    let challenge = MfaChallenge {
        user,
        token_version: user_row.token_version,
        password_hash: user_row.password_hash.clone(),
        kind: SessionKind::Api,
        expires_at: UnixTime(NOW.secs() + 300),
        failures: 0,
    };
    wait(store.open_challenge([9; 32], challenge)).unwrap();
    let jti = Jti(Uuid::new_v4());
    wait(store.blacklist(jti, UnixTime(NOW.secs() + 600))).unwrap();
    for kid in ["k1", "k2"] {
        let key = StoredKey {
            kid: kid.to_owned(),
            secret: vec![1; 32],
            created_at: NOW,
            retired_at: None,
        };
        wait(store.add_signing_key(key, Some(NOW), note(AuditEvent::KeyRotated))).unwrap();
    }
    Filled {
        admin,
        user,
        api,
        browser,
        jti,
    }
}

/// What a migrated file must still answer for `fill`'s rows: its user by id and by email, a
/// live session's access, and (through the role index) the only admin as the last one.
fn users_kept(store: &Store, filled: &Filled) -> User {
    let row = wait(store.user(filled.user)).unwrap().unwrap();
    assert_eq!(
        wait(store.user_by_email(&row.email)).unwrap().unwrap().id,
        filled.user
    );
    assert_eq!(
        store.check_access(
            filled.user,
            filled.api,
            Jti(Uuid::new_v4()),
            row.token_version
        ),
        Ok(())
    );
    assert_eq!(
        wait(store.delete_user(filled.admin, note(AuditEvent::UserDeleted))).unwrap(),
        UserUpdate::LastAdmin
    );
    row
}

/// `fill`'s API session, never rotated, rotates to generation 1.
fn first_rotation_lands(store: &Store, filled: &Filled) {
    let rotated = wait(store.rotate(
        presented(filled.api, 0, [0; 32]),
        successor(1),
        NOW,
        POLICY,
        note(AuditEvent::RefreshReuse),
    ));
    assert!(
        matches!(rotated, Ok(Rotation::Rotated { generation: 1, .. })),
        "{rotated:?}"
    );
}

#[test]
fn a_schema_6_file_is_migrated_row_for_row_and_serves_as_before() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("latchd.redb");
    let (filled, mac_key, counts, audit) = {
        let store = Store::open(&path).unwrap();
        let filled = fill(&store);
        let audit = wait(store.audit(ALL_AUDIT)).unwrap();
        (filled, store.refresh_mac_key(), store.counts(), audit)
    };
    let before = legacy::dump(&path);
    legacy::to_schema_6(&path);
    // Today's tables are gone: read with today's types, the old ones are refused.
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_read().unwrap();
        assert!(
            txn.open_table(USERS).is_err(),
            "users should have its old types"
        );
    }

    upgrade_is_logged(&path, 6);
    assert_eq!(legacy::dump(&path), before, "every row, in the same order");

    let store = Store::open(&path).unwrap();
    assert_eq!(store.refresh_mac_key(), mac_key);
    assert_eq!(store.counts(), counts);
    let user = wait(store.user_by_email("b@example.com")).unwrap();
    assert!(user.is_none(), "fill's user has a random email");
    let row = users_kept(&store, &filled);
    let listed: Vec<UserId> = wait(store.list_users(10, None))
        .unwrap()
        .iter()
        .map(|u| u.id)
        .collect();
    let mut ids = vec![filled.admin, filled.user];
    ids.sort_by_key(|id| id.0);
    assert_eq!(listed, ids, "users in id order");
    assert_eq!(
        store.check_access(filled.user, filled.api, filled.jti, row.token_version),
        Err(AccessDenied::Blacklisted),
        "the blacklist came along"
    );
    let sessions: Vec<FamilyId> = wait(store.sessions(filled.user, NOW))
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(sessions.len(), 2);
    assert!(sessions.contains(&filled.api) && sessions.contains(&filled.browser));
    assert!(
        store.check_browser(&[7; 32], NOW, &POLICY).is_ok(),
        "the browser cookie's index"
    );
    assert!(wait(store.totp(filled.admin)).unwrap().is_some());
    assert!(wait(store.challenge([9; 32], NOW)).unwrap().is_some());
    let kids: Vec<String> = wait(store.signing_keys())
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, ["k1", "k2"], "keys in the order they were added");
    let ids = |rows: &[AuditRow]| rows.iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids(&wait(store.audit(ALL_AUDIT)).unwrap()), ids(&audit));
    // And it goes on: a rotation of the API session and a new audit row above the old ones.
    first_rotation_lands(&store, &filled);
    wait(store.record(note(AuditEvent::LoginFailed))).unwrap();
    let newest = wait(store.audit(ALL_AUDIT)).unwrap();
    assert!(newest.len() > audit.len() && newest.last().unwrap().id > audit.last().unwrap().id);
    drop(store);
    assert_eq!(schema_version(&path), Some(SCHEMA_VERSION));
}

/// Opens the file at `path`, of schema `from`, and checks that the upgrade was logged before it
/// began and once committed, and that a second open logs no upgrade. Every test that upgrades
/// a file opens it here: tracing caches whether anyone listens at a log line when a thread
/// first reaches it, so a test that reached these lines with no subscriber could race this one.
fn upgrade_is_logged(path: &std::path::Path, from: u64) {
    let logged = crate::telemetry::logs_of(|| drop(Store::open(path).unwrap()));
    let upgrading = format!("upgrading the database file from={from} to={SCHEMA_VERSION}");
    for said in [upgrading.as_str(), "upgraded the database file"] {
        assert!(logged.contains(said), "{logged}");
    }
    assert!(!crate::telemetry::logs_of(|| drop(Store::open(path).unwrap())).contains("upgrad"));
}

#[test]
fn a_schema_8_file_is_migrated_row_for_row_and_rotates() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("latchd.redb");
    let (filled, counts) = {
        let store = Store::open(&path).unwrap();
        let filled = fill(&store);
        (filled, store.counts())
    };
    let before = legacy::dump(&path);
    legacy::to_schema_8(&path);
    let json = legacy::dump(&path);
    let families = |dump: &[(String, legacy::Rows)]| {
        dump.iter()
            .find(|(name, _)| name == "families")
            .map(|(_, rows)| rows.clone())
            .unwrap()
    };
    assert!(!families(&json).is_empty());
    assert!(
        families(&json)
            .iter()
            .all(|(_, v)| v.first() == Some(&b'{')),
        "schema 8 wrote JSON"
    );
    assert_eq!(schema_version(&path), Some(8));

    upgrade_is_logged(&path, 8);
    assert_eq!(legacy::dump(&path), before, "every row, in the same order");
    assert_eq!(schema_version(&path), Some(SCHEMA_VERSION));
    let store = Store::open(&path).unwrap();
    assert_eq!(store.counts(), counts);
    first_rotation_lands(&store, &filled);
}

#[test]
fn a_schema_1_file_is_migrated_and_keeps_its_users() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("latchd.redb");
    let filled = {
        let store = Store::open(&path).unwrap();
        fill(&store)
    };
    legacy::to_schema_6(&path);
    legacy::to_schema_1(&path);
    upgrade_is_logged(&path, 1);
    let store = Store::open(&path).unwrap();
    users_kept(&store, &filled);
    drop(store);
    assert_eq!(schema_version(&path), Some(SCHEMA_VERSION));
}

fn schema_version(path: &std::path::Path) -> Option<u64> {
    let db = Database::create(path).unwrap();
    let version = db
        .begin_read()
        .unwrap()
        .open_table(META)
        .unwrap()
        .get("schema_version")
        .unwrap()
        .map(|v| v.value());
    version
}

#[test]
fn file_without_schema_version_is_refused() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("other.redb");
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        let stranger: TableDefinition<&str, &str> = TableDefinition::new("stranger");
        txn.open_table(stranger).unwrap().insert("a", "b").unwrap();
        txn.commit().unwrap();
    }
    let err = Store::open(&path).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Corrupt {
                table: "schema",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn second_open_of_the_same_file_is_locked() {
    let (dir, _store) = temp_store();
    let err = Store::open(&dir.path().join("latchd.redb")).unwrap_err();
    assert!(matches!(err, StoreError::Locked), "{err:?}");
}

#[test]
fn corrupt_user_row_is_an_error_not_a_panic() {
    let (dir, store) = temp_store();
    let user = new_user(&store, "a@example.com");
    {
        let txn = store.shared.db.begin_write().unwrap();
        txn.open_table(USERS)
            .unwrap()
            .insert(user.id.0.as_bytes().as_slice(), &b"\x00\xffnot json"[..])
            .unwrap();
        txn.commit().unwrap();
    }
    for got in [
        wait(store.user(user.id)).map(|_| ()),
        wait(store.user_by_email("a@example.com")).map(|_| ()),
        wait(store.list_users(10, None)).map(|_| ()),
        wait(store.set_roles(user.id, &[], note(AuditEvent::RolesChanged))).map(|_| ()),
        wait(store.revoke_user(user.id, NOW, note(AuditEvent::LogoutAll))).map(|_| ()),
    ] {
        assert!(
            matches!(got, Err(StoreError::Corrupt { table: "users", .. })),
            "{got:?}"
        );
    }
    // Opening reads the view's own row of the user, not this one: the store opens, and every
    // use case that reads the bad row still answers Corrupt rather than a guess.
    drop(store);
    let store = Store::open(&dir.path().join("latchd.redb")).unwrap();
    let got = wait(store.user(user.id)).map(|_| ());
    assert!(
        matches!(got, Err(StoreError::Corrupt { table: "users", .. })),
        "{got:?}"
    );
}

#[test]
fn a_corrupt_view_row_refuses_the_open() {
    let (dir, user, family) = {
        let (dir, store) = temp_store();
        let user = new_user(&store, "a@example.com");
        let (_, family) = session(&store);
        (dir, user.id, family)
    };
    let file = dir.path().join("latchd.redb");
    let mut bad_browser = [0; 73];
    bad_browser[48] = 2; // its second-factor flag
    let bad_users: [&[u8]; 5] = [
        b"\x00\x01",                              // shorter than its fixed part
        &[0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0],       // a disabled flag of 2
        &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, b'a'], // an email longer than the row
        &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff], // an email that is not UTF-8
        &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0],          // an email without its length
    ];
    let bad_sessions: [&[u8]; 3] = [&[7; 20], &[7; 15], &bad_browser];
    let bad_rows = bad_users
        .into_iter()
        .map(|row| (super::tables::VIEW_USERS, *user.0.as_bytes(), row, "users"))
        .chain(bad_sessions.into_iter().map(|row| {
            (
                super::tables::VIEW_SESSIONS,
                *family.0.as_bytes(),
                row,
                "sessions",
            )
        }));
    for (table, key, row, what) in bad_rows {
        let good = {
            let db = Database::create(&file).unwrap();
            let txn = db.begin_write().unwrap();
            let mut t = txn.open_table(table).unwrap();
            let good = t
                .insert(key.as_slice(), row)
                .unwrap()
                .unwrap()
                .value()
                .to_vec();
            drop(t);
            txn.commit().unwrap();
            good
        };
        let err = Store::open(&file).unwrap_err();
        assert!(
            matches!(err, StoreError::Corrupt { table, .. } if table == format!("view_{what}")),
            "{err:?}"
        );
        let db = Database::create(&file).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(table)
            .unwrap()
            .insert(key.as_slice(), good.as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    assert!(Store::open(&file).is_ok());
}

#[test]
fn corrupt_family_row_is_an_error_not_a_panic() {
    let (_dir, store) = temp_store();
    let (_, family) = session(&store);
    {
        let txn = store.shared.db.begin_write().unwrap();
        txn.open_table(super::tables::FAMILIES)
            .unwrap()
            .insert(family.0.as_bytes().as_slice(), &br#"{"user":"nope"}"#[..])
            .unwrap();
        txn.commit().unwrap();
    }
    let got = wait(store.rotate(
        presented(family, 0, [0; 32]),
        successor(1),
        NOW,
        POLICY,
        note(AuditEvent::RefreshReuse),
    ));
    assert!(
        matches!(
            got,
            Err(StoreError::Corrupt {
                table: "families",
                ..
            })
        ),
        "{got:?}"
    );
    let got = wait(store.sweep(NOW, 0, i64::MAX));
    assert!(
        matches!(
            got,
            Err(StoreError::Corrupt {
                table: "families",
                ..
            })
        ),
        "{got:?}"
    );
}

#[cfg(unix)]
#[test]
fn the_database_file_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh.redb");
    drop(Store::open(&path).unwrap());
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600, "a new file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    drop(Store::open(&path).unwrap());
    assert_eq!(
        mode(&path),
        0o600,
        "an existing file opened to others is tightened"
    );
}

#[test]
fn a_disabled_user_left_with_live_sessions_is_never_rotated() {
    // latchd 0.1 disabled a user and revoked its sessions in two transactions, so a crash
    // between them left this state on disk: the flag set, the sessions live.
    let (dir, store) = temp_store();
    let (user, family) = session(&store);
    drop(store);
    {
        let db = Database::create(dir.path().join("latchd.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut users = txn.open_table(USERS).unwrap();
            let mut row = users::read_user(&users, user).unwrap().unwrap();
            row.disabled = true;
            users::write_user(&mut users, &row).unwrap();
        }
        txn.commit().unwrap();
    }
    let store = Store::open(&dir.path().join("latchd.redb")).unwrap();
    let got = wait(store.rotate(
        presented(family, 0, [0; 32]),
        successor(1),
        NOW,
        POLICY,
        note(AuditEvent::RefreshReuse),
    ));
    assert_eq!(got.unwrap(), Rotation::Revoked);
    // Nothing was written: once re-enabled, generation 0 is still the current token.
    assert_eq!(
        wait(store.enable_user(user, note(AuditEvent::UserEnabled))).unwrap(),
        UserUpdate::Done
    );
    let got = wait(store.rotate(
        presented(family, 0, [0; 32]),
        successor(1),
        NOW,
        POLICY,
        note(AuditEvent::RefreshReuse),
    ));
    assert!(matches!(
        got.unwrap(),
        Rotation::Rotated { generation: 1, .. }
    ));
}

#[test]
fn a_role_whose_name_extends_admin_does_not_count_as_admin() {
    // `role_members` keys are the role's name then the user id, so "administrator" rows sort
    // among the "admin" ones; the last-admin rule must not count them.
    let (_dir, store) = temp_store();
    let admin = new_user(&store, "root@example.com").id;
    let other = new_user(&store, "other@example.com").id;
    let set = |user, role: &str| {
        wait(store.set_roles(user, &[role.to_owned()], note(AuditEvent::RolesChanged))).unwrap()
    };
    assert_eq!(set(admin, "admin"), UserUpdate::Done);
    assert_eq!(set(other, "administrator"), UserUpdate::Done);
    assert_eq!(
        wait(store.delete_user(admin, note(AuditEvent::UserDeleted))).unwrap(),
        UserUpdate::LastAdmin
    );
    // A second real admin makes the first deletable, and the index forgets the deleted one.
    assert_eq!(set(other, "admin"), UserUpdate::Done);
    assert_eq!(
        wait(store.delete_user(admin, note(AuditEvent::UserDeleted))).unwrap(),
        UserUpdate::Done
    );
    assert_eq!(
        wait(store.delete_user(other, note(AuditEvent::UserDeleted))).unwrap(),
        UserUpdate::LastAdmin
    );
}

#[test]
fn the_in_memory_lookups_answer_from_the_view() {
    let (_dir, store) = temp_store();
    let (user, _) = session(&store);
    let jti = Jti(Uuid::new_v4());
    assert!(!store.is_blacklisted(jti));
    wait(store.blacklist(jti, NOW.plus(60))).unwrap();
    assert!(store.is_blacklisted(jti));
    assert_eq!(store.token_version(user), Some(0));
    assert!(wait(store.revoke_user(user, NOW, note(AuditEvent::LogoutAll))).unwrap());
    assert_eq!(store.token_version(user), Some(1));
    assert_eq!(store.token_version(UserId(Uuid::new_v4())), None);
}

/// A table only these tests write, for jobs that do nothing else.
const SCRATCH: TableDefinition<&str, u64> = TableDefinition::new("test_scratch");

/// Occupies the writer until the returned sender is dropped or sent to, so that the jobs
/// submitted meanwhile queue up and form the next batch together.
fn hold_the_writer(store: &Store) -> (std::sync::mpsc::Sender<()>, Pending<'static, ()>) {
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (started, running) = std::sync::mpsc::channel::<()>();
    let blocker = store.write(move |_| {
        started.send(()).unwrap();
        let _ = held.recv();
        Ok(Written::nothing(()))
    });
    running.recv().unwrap();
    (release, blocker)
}

fn scratch(store: &Store, key: &'static str) -> Option<u64> {
    let txn = store.shared.db.begin_read().unwrap();
    match txn.open_table(SCRATCH) {
        Ok(table) => table.get(key).unwrap().map(|v| v.value()),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn jobs_of_one_batch_are_isolated_a_failed_or_panicking_one_is_undone_alone() {
    let (dir, store) = temp_store();
    let (release, blocker) = hold_the_writer(&store);
    let put = |key: &'static str, value: u64, then: fn() -> Result<(), StoreError>| {
        store.write(move |txn| {
            txn.open_table(SCRATCH)?.insert(key, value)?;
            then()?;
            Ok(Written::commit(()))
        })
    };
    let failed = put("a", 1, || {
        Err(StoreError::Corrupt {
            table: "test_scratch",
            detail: "a row that does not decode".to_owned(),
        })
    });
    let kept = put("b", 2, || Ok(()));
    let panicked = put("c", 3, || panic!("a job that panics after writing"));
    // A later job of the same batch sees the earlier jobs' writes, and only the kept ones.
    let seen = store.write(|txn| {
        let table = txn.open_table(SCRATCH)?;
        let get = |key| table.get(key).map(|v| v.map(|v| v.value()));
        Ok(Written::nothing((get("a")?, get("b")?, get("c")?)))
    });
    drop(release);
    wait(blocker).unwrap();
    assert!(matches!(
        wait(failed),
        Err(StoreError::Corrupt {
            table: "test_scratch",
            ..
        })
    ));
    assert!(wait(kept).is_ok());
    assert!(matches!(wait(panicked), Err(StoreError::Closed)));
    assert_eq!(wait(seen).unwrap(), (None, Some(2), None));
    assert_eq!(
        (
            scratch(&store, "a"),
            scratch(&store, "b"),
            scratch(&store, "c")
        ),
        (None, Some(2), None)
    );
    // What was answered Ok is on disk; the writer goes on after a panic.
    assert!(wait(put("d", 4, || Ok(()))).is_ok());
    drop(store);
    let store = Store::open(&dir.path().join("latchd.redb")).unwrap();
    assert_eq!(
        (
            scratch(&store, "a"),
            scratch(&store, "b"),
            scratch(&store, "d")
        ),
        (None, Some(2), Some(4))
    );
}

#[test]
fn two_rotations_of_one_token_in_one_batch_resolve_as_they_would_in_turn() {
    let no_grace = SessionPolicy {
        grace_secs: 0,
        ..POLICY
    };
    for (policy, second) in [(POLICY, "retried"), (no_grace, "reused")] {
        let (_dir, store) = temp_store();
        let (_, family) = session(&store);
        let (release, blocker) = hold_the_writer(&store);
        let first = store.rotate(
            presented(family, 0, [0; 32]),
            successor(1),
            NOW,
            policy,
            note(AuditEvent::RefreshReuse),
        );
        let again = store.rotate(
            presented(family, 0, [0; 32]),
            successor(2),
            NOW,
            policy,
            note(AuditEvent::RefreshReuse),
        );
        drop(release);
        wait(blocker).unwrap();
        assert!(matches!(
            wait(first).unwrap(),
            Rotation::Rotated { generation: 1, .. }
        ));
        let got = wait(again).unwrap();
        match second {
            "retried" => assert!(
                matches!(&got, Rotation::Retried { generation: 1, sealed, .. } if *sealed == successor(1).sealed),
                "{got:?}"
            ),
            _ => assert!(matches!(got, Rotation::Reused { .. }), "{got:?}"),
        }
    }
}

#[test]
fn a_full_write_queue_refuses_at_once_and_the_queued_writes_still_land() {
    let (_dir, store) = temp_store();
    let (release, blocker) = hold_the_writer(&store);
    let queued: Vec<_> = (0..writer::QUEUE)
        .map(|i| {
            let value = u64::try_from(i).unwrap();
            store.write(move |txn| {
                txn.open_table(SCRATCH)?.insert("n", value)?;
                Ok(Written::commit(()))
            })
        })
        .collect();
    // Refused before the writer is free again: nothing waits behind a full queue.
    let refused = store.write(|_| Ok(Written::nothing(())));
    assert!(matches!(wait(refused), Err(StoreError::Busy)));
    drop(release);
    wait(blocker).unwrap();
    for write in queued {
        wait(write).unwrap();
    }
    let last = u64::try_from(writer::QUEUE - 1).unwrap();
    assert_eq!(
        scratch(&store, "n"),
        Some(last),
        "in the order they were queued"
    );
}

#[test]
fn a_backup_copies_every_table_and_opens_as_the_same_store() {
    let (dir, store) = temp_store();
    let (user, family) = session(&store);
    let copy = dir.path().join("copy.redb");
    let done = wait(store.backup(&copy)).unwrap();
    assert_eq!((done.users, done.sessions), (1, 1));
    assert!(done.rows > done.users + done.sessions, "{done:?}");
    assert_eq!(done.bytes, std::fs::metadata(&copy).unwrap().len());
    assert!(!dir.path().join("copy.redb.tmp").exists());
    drop(store);
    let restored = Store::open(&copy).unwrap();
    assert_eq!(
        restored.counts(),
        Store::open(&dir.path().join("latchd.redb"))
            .unwrap()
            .counts()
    );
    let version = restored.token_version(user).unwrap();
    assert_eq!(
        restored.check_access(user, family, Jti(Uuid::nil()), version),
        Ok(())
    );
}

#[test]
fn a_backup_refuses_a_table_it_does_not_know_and_leaves_no_file() {
    let (dir, store) = temp_store();
    {
        let txn = store.shared.db.begin_write().unwrap();
        let added: TableDefinition<u64, u64> = TableDefinition::new("added_later");
        txn.open_table(added).unwrap().insert(1, 1).unwrap();
        txn.commit().unwrap();
    }
    let copy = dir.path().join("copy.redb");
    let err = wait(store.backup(&copy)).unwrap_err();
    assert!(err.to_string().contains("\"added_later\""), "{err}");
    assert!(!copy.exists());
    assert!(!dir.path().join("copy.redb.tmp").exists());
}

#[test]
fn failed_jobs_scattered_through_a_batch_leave_each_other_job_applied_exactly_once() {
    let (dir, store) = temp_store();
    let (release, blocker) = hold_the_writer(&store);
    // Each job adds one to a counter and answers what it counted; every third one then fails
    // (an error or a panic), and so does the last one, after its batch's other jobs.
    let jobs: Vec<_> = (0..20u64)
        .map(|i| {
            store.write(move |txn| {
                let mut table = txn.open_table(SCRATCH)?;
                let n = table.get("n")?.map_or(0, |v| v.value()) + 1;
                table.insert("n", n)?;
                match i {
                    _ if i % 6 == 2 => panic!("a job that panics after writing"),
                    _ if i % 3 == 2 || i == 19 => Err(StoreError::Corrupt {
                        table: "test_scratch",
                        detail: "a row that does not decode".to_owned(),
                    }),
                    _ => Ok(Written::commit(n)),
                }
            })
        })
        .collect();
    drop(release);
    wait(blocker).unwrap();
    let mut counted = Vec::new();
    for (i, job) in jobs.into_iter().enumerate() {
        let got = wait(job);
        if i % 6 == 2 {
            assert!(matches!(got, Err(StoreError::Closed)), "job {i}: {got:?}");
        } else if i % 3 == 2 || i == 19 {
            assert!(
                matches!(got, Err(StoreError::Corrupt { .. })),
                "job {i}: {got:?}"
            );
        } else {
            counted.push(got.unwrap());
        }
    }
    // 20 jobs, 6 failing on i % 3 == 2, and the last: 13 kept, each counted once, in order.
    assert_eq!(counted, (1..=13).collect::<Vec<u64>>());
    assert_eq!(scratch(&store, "n"), Some(13));
    drop(store);
    let store = Store::open(&dir.path().join("latchd.redb")).unwrap();
    assert_eq!(
        scratch(&store, "n"),
        Some(13),
        "durable, though the batch ended on a failure"
    );
}

/// The rows of the view's two tables in `txn`.
fn view_rows_in(txn: &WriteTransaction) -> (legacy::Rows, legacy::Rows) {
    (
        legacy::rows(txn, super::tables::VIEW_USERS),
        legacy::rows(txn, super::tables::VIEW_SESSIONS),
    )
}

/// Asserts that the view's tables hold what rebuilding them from the whole rows gives (the
/// rebuild in a transaction that is then dropped); returns the rows.
#[track_caller]
fn assert_view_rows_agree(store: &Store) -> (legacy::Rows, legacy::Rows) {
    let txn = store.shared.db.begin_write().unwrap();
    let persisted = view_rows_in(&txn);
    super::view_rows::rebuild(&txn).unwrap();
    assert_eq!(view_rows_in(&txn), persisted, "persisted vs rebuilt");
    txn.abort().unwrap();
    persisted
}

#[test]
#[allow(clippy::too_many_lines)] // one scenario: every kind of write, checked after each
fn the_view_tables_follow_every_write_as_the_whole_rows_would_give_them() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("latchd.redb");
    let store = Store::open(&path).unwrap();
    let agree = || assert_view_rows_agree(&store);
    // Roles, an API and a browser session, TOTP, a challenge, the blacklist, keys.
    let filled = fill(&store);
    agree();
    // A later use of the browser session, as the view asks for it; a touch of an API one.
    let later = UnixTime(NOW.secs() + 60);
    let browser = filled.browser;
    wait(store.write(move |txn| sessions::touch_in(txn, browser, later))).unwrap();
    let api = filled.api;
    wait(store.write(move |txn| sessions::touch_in(txn, api, later))).unwrap();
    agree();
    // Disabled (its sessions end) and enabled again; disabled and left so.
    let (back, _) = session(&store);
    assert_eq!(
        wait(store.disable_user(back, NOW, note(AuditEvent::UserDisabled))).unwrap(),
        UserUpdate::Done
    );
    agree();
    assert_eq!(
        wait(store.enable_user(back, note(AuditEvent::UserEnabled))).unwrap(),
        UserUpdate::Done
    );
    agree();
    let (off, off_session) = session(&store);
    assert_eq!(
        wait(store.disable_user(off, NOW, note(AuditEvent::UserDisabled))).unwrap(),
        UserUpdate::Done
    );
    agree();
    // Deleted with its session.
    let (gone, gone_session) = session(&store);
    assert_eq!(
        wait(store.delete_user(gone, note(AuditEvent::UserDeleted))).unwrap(),
        UserUpdate::Done
    );
    agree();
    // Each way one session ends: revoked, logged out, ended by its user, its refresh token
    // revoked.
    let (revoked_user, revoked) = session(&store);
    assert!(wait(store.revoke_session(revoked, NOW, note(AuditEvent::SessionRevoked))).unwrap());
    let (_, logged_out) = session(&store);
    let logout_jti = Jti(Uuid::new_v4());
    let exp = UnixTime(NOW.secs() + 600);
    wait(store.end_session(logged_out, logout_jti, exp, NOW, note(AuditEvent::Logout))).unwrap();
    let (own_user, own) = session(&store);
    assert!(
        wait(store.end_own_session(own_user, own, NOW, note(AuditEvent::SessionRevoked))).unwrap()
    );
    let (_, refresh_revoked) = session(&store);
    let presented_token = presented(refresh_revoked, 0, [0; 32]);
    let revoked_by = wait(store.revoke_refresh(presented_token, NOW, note(AuditEvent::Logout)));
    assert!(revoked_by.unwrap().is_some());
    agree();
    // Every session of a user: logout-all, a TOTP reset.
    let (all, all_session) = session(&store);
    assert!(wait(store.revoke_user(all, NOW, note(AuditEvent::LogoutAll))).unwrap());
    assert!(wait(store.reset_totp(filled.admin, NOW, note(AuditEvent::MfaDisabled))).unwrap());
    agree();
    // A password change that keeps one session and ends the other.
    let (changer, kept) = session(&store);
    let changer_row = wait(store.user(changer)).unwrap().unwrap();
    open_api_session(&store, &changer_row, POLICY);
    let password_changed = store.change_password(
        changer,
        &changer_row.password_hash,
        "$pbkdf2-sha256$i=1$new$hash",
        Some(kept),
        NOW,
        note(AuditEvent::PasswordChanged),
    );
    assert!(wait(password_changed).unwrap());
    agree();
    // A session past the per-user cap evicts the oldest.
    let one_each = SessionPolicy {
        max_per_user: 1,
        ..POLICY
    };
    let (capped, evicted) = session(&store);
    let capped_row = wait(store.user(capped)).unwrap().unwrap();
    let newest = open_api_session(&store, &capped_row, one_each);
    agree();
    // A reused refresh token ends its session: rotated once, then presented again outside
    // the grace.
    let (_, reused) = session(&store);
    let rotate = |n: u8, at: UnixTime| {
        let note = note(AuditEvent::RefreshReuse);
        let token = presented(reused, 0, [0; 32]);
        wait(store.rotate(token, successor(n), at, POLICY, note)).unwrap()
    };
    let rotation = rotate(1, NOW);
    assert!(matches!(rotation, Rotation::Rotated { .. }), "{rotation:?}");
    let rotation = rotate(2, UnixTime(NOW.secs() + POLICY.grace_secs + 1));
    assert!(matches!(rotation, Rotation::Reused { .. }), "{rotation:?}");
    let (users, sessions) = agree();
    // fill's two, and one for each `session` above (eleven) but the deleted one.
    assert_eq!(users.len(), 12);
    // Live: fill's API and browser sessions, the kept one, the newest of the capped user.
    let live: Vec<&[u8]> = sessions.iter().map(|(k, _)| k.as_slice()).collect();
    let expected = [filled.api, filled.browser, kept, newest];
    assert_eq!(live.len(), expected.len(), "{live:?}");
    for family in expected {
        assert!(live.contains(&family.0.as_bytes().as_slice()), "{family:?}");
    }
    let browser_row = &sessions
        .iter()
        .find(|(k, _)| k.as_slice() == filled.browser.0.as_bytes())
        .unwrap()
        .1;
    assert_eq!(
        browser_row[browser_row.len() - 8..],
        later.secs().to_be_bytes(),
        "the browser session's last use"
    );
    let counts = store.counts();
    let user_row = wait(store.user(filled.user)).unwrap().unwrap();
    let all_version = wait(store.user(all)).unwrap().unwrap().token_version;
    assert!(all_version > 0);
    drop(store);

    // Reopened, the store mirrors what the running one did: what it refused stays refused.
    let store = Store::open(&path).unwrap();
    assert_eq!(store.counts(), counts);
    assert!(store.check_browser(&[7; 32], later, &POLICY).is_ok());
    assert_eq!(
        store.user_facts(filled.admin).unwrap().roles.as_ref(),
        ["admin".to_owned()]
    );
    let jti = Jti(Uuid::new_v4());
    assert_eq!(
        store.check_access(filled.user, filled.api, jti, user_row.token_version),
        Ok(())
    );
    for (user, family, version, refused) in [
        (off, off_session, 9, AccessDenied::UserDisabled),
        (gone, gone_session, 9, AccessDenied::UnknownUser),
        (all, all_session, 0, AccessDenied::StaleVersion),
        (all, all_session, all_version, AccessDenied::FamilyRevoked),
        (capped, evicted, 0, AccessDenied::FamilyRevoked),
        (revoked_user, revoked, 0, AccessDenied::FamilyRevoked),
    ] {
        assert_eq!(store.check_access(user, family, jti, version), Err(refused));
    }
    assert!(store.is_blacklisted(logout_jti));
    // The sweep past every session's end empties the sessions, and the two ways still agree.
    let end = UnixTime(NOW.secs() + POLICY.session_max_secs + 1);
    wait(store.sweep(end, 0, i64::MAX)).unwrap();
    let (_, sessions) = assert_view_rows_agree(&store);
    assert!(sessions.is_empty(), "{sessions:?}");
}

#[test]
fn missing_or_short_view_tables_are_rebuilt_at_open() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("latchd.redb");
    let (user, family) = {
        let store = Store::open(&path).unwrap();
        session(&store)
    };
    let edits: [fn(&WriteTransaction, UserId); 3] = [
        |txn, _| assert!(txn.delete_table(super::tables::VIEW_SESSIONS).unwrap()),
        |txn, _| assert!(txn.delete_table(super::tables::VIEW_USERS).unwrap()),
        |txn, user| {
            let mut users = txn.open_table(super::tables::VIEW_USERS).unwrap();
            assert!(users
                .remove(user.0.as_bytes().as_slice())
                .unwrap()
                .is_some());
        },
    ];
    for edit in edits {
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            edit(&txn, user);
            txn.commit().unwrap();
        }
        let store = Store::open(&path).unwrap();
        let jti = Jti(Uuid::new_v4());
        assert!(store.check_access(user, family, jti, 0).is_ok());
        assert_eq!(store.counts().families, 1);
        assert_view_rows_agree(&store);
    }
}

#[test]
fn a_text_too_long_for_a_view_row_is_refused_not_cut() {
    let (_dir, store) = temp_store();
    let long = Change::User {
        id: UserId(Uuid::new_v4()),
        token_version: 0,
        disabled: false,
        facts: crate::model::UserFacts {
            email: Arc::from("a".repeat(usize::from(u16::MAX) + 1)),
            roles: Arc::from(Vec::new()),
        },
    };
    let txn = store.shared.db.begin_write().unwrap();
    let got = super::view_rows::persist(&txn, &[long]);
    assert!(matches!(got, Err(StoreError::Unsupported(_))), "{got:?}");
}
