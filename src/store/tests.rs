//! Tests of the storage layer against real redb files in temporary directories.

use std::sync::{Arc, Barrier};
use std::thread;

use redb::{Database, TableDefinition};
use tempfile::TempDir;
use uuid::Uuid;

use super::tables::{self, META, SCHEMA_VERSION, USERS};
use super::*;

const NOW: UnixTime = UnixTime(1_800_000_000);
const POLICY: SessionPolicy = SessionPolicy {
    refresh_ttl_secs: 100,
    session_max_secs: 1_000,
    grace_secs: 10,
    max_per_user: 100,
};
const NO_GRACE: SessionPolicy = SessionPolicy {
    grace_secs: 0,
    ..POLICY
};

fn temp_store() -> (TempDir, Store) {
    let dir = TempDir::new().unwrap();
    let store = Store::open(&dir.path().join("latchd.redb")).unwrap();
    (dir, store)
}

fn reopen(dir: &TempDir, store: Store) -> Store {
    drop(store);
    Store::open(&dir.path().join("latchd.redb")).unwrap()
}

fn new_user(store: &Store, email: &str) -> User {
    match store
        .create_user(email, "$pbkdf2-sha256$i=1$x$y", &["user".to_owned()], NOW)
        .unwrap()
    {
        CreateUser::Created(user) => user,
        CreateUser::EmailTaken => panic!("{email} taken"),
    }
}

/// A distinct successor per `n`: hash and sealed bytes both derived from it.
fn successor(n: u8) -> Successor {
    Successor {
        hash: [n; 32],
        sealed: [n ^ 0xff; 32],
    }
}

fn presented(family: FamilyId, generation: u64, hash: [u8; 32]) -> Presented {
    Presented {
        family,
        generation,
        hash,
    }
}

/// A user with one family whose generation-0 token hashes to `[0; 32]`.
fn session(store: &Store) -> (UserId, FamilyId) {
    let user = new_user(store, &format!("{}@example.com", Uuid::new_v4())).id;
    let family = Store::new_family_id();
    assert!(add_family(store, user, family, 0).unwrap());
    (user, family)
}

/// Starts a family for `user` as a login would, with the user as stored now.
fn add_family(store: &Store, user: UserId, family: FamilyId, hash: u8) -> Result<bool, StoreError> {
    let seen = store.user(user).unwrap().unwrap();
    store.create_family(family, &seen, &[hash; 32], NOW, &POLICY)
}

fn jti() -> Jti {
    Jti(Uuid::new_v4())
}

#[test]
fn store_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
}

#[test]
fn create_and_read_users() {
    let (_dir, store) = temp_store();
    let user = new_user(&store, "  Alice@Example.com ");
    assert_eq!(user.email, "Alice@Example.com");
    assert_eq!(user.token_version, 0);
    assert!(!user.disabled);
    assert_eq!(store.user(user.id).unwrap(), Some(user.clone()));
    assert_eq!(
        store.user_by_email("alice@example.COM").unwrap(),
        Some(user.clone())
    );
    assert_eq!(store.user(UserId(Uuid::new_v4())).unwrap(), None);
    assert_eq!(store.user_by_email("bob@example.com").unwrap(), None);
    assert_eq!(store.user_count(), 1);
    assert_eq!(store.token_version(user.id), Some(0));
}

#[test]
fn email_normalization_trims_and_folds_unicode_case() {
    assert_eq!(normalize_email(" ÉMILE@Example.COM "), "émile@example.com");
    let (_dir, store) = temp_store();
    let emile = new_user(&store, "ÉMILE@Example.COM ");
    for other in [
        "émile@example.com",
        "  Émile@EXAMPLE.com",
        "\témile@example.com\n",
    ] {
        assert_eq!(
            store.create_user(other, "h", &[], NOW).unwrap(),
            CreateUser::EmailTaken,
            "{other:?}"
        );
        assert_eq!(
            store.user_by_email(other).unwrap().map(|u| u.id),
            Some(emile.id)
        );
    }
    // Different letters are different accounts.
    new_user(&store, "emile@example.com");
    assert_eq!(store.user_count(), 2);
}

#[test]
fn set_password_roles_and_disable() {
    let (_dir, store) = temp_store();
    let user = new_user(&store, "a@example.com");
    let missing = UserId(Uuid::new_v4());

    let old = store.user(user.id).unwrap().unwrap().password_hash;
    assert!(store
        .upgrade_password_hash(user.id, &old, "new-hash")
        .unwrap());
    assert!(
        !store
            .upgrade_password_hash(user.id, &old, "stale-upgrade")
            .unwrap(),
        "an upgrade of a hash that changed meanwhile writes nothing"
    );
    assert!(!store.upgrade_password_hash(missing, "x", "y").unwrap());
    let roles = vec!["ops".to_owned(), "user".to_owned()];
    assert_eq!(store.set_roles(user.id, &roles).unwrap(), UserUpdate::Done);
    assert_eq!(
        store.set_roles(missing, &roles).unwrap(),
        UserUpdate::NoSuchUser
    );
    let got = store.user(user.id).unwrap().unwrap();
    assert_eq!(got.password_hash, "new-hash");
    assert_eq!(got.roles, roles);
    // The hash upgrade revokes nothing; the role change retires tokens with the old roles.
    assert_eq!(got.token_version, 1);

    let family = Store::new_family_id();
    assert!(store
        .create_family(family, &got, &[0; 32], NOW, &POLICY)
        .unwrap());
    assert_eq!(store.disable_user(user.id, true).unwrap(), UserUpdate::Done);
    assert_eq!(
        store.disable_user(missing, true).unwrap(),
        UserUpdate::NoSuchUser
    );
    assert!(store.user(user.id).unwrap().unwrap().disabled);
    assert_eq!(
        store.check_access(user.id, family, jti(), 0),
        Err(AccessDenied::UserDisabled)
    );
    // No new session for a disabled user.
    let disabled = store.user(user.id).unwrap().unwrap();
    assert!(!store
        .create_family(Store::new_family_id(), &disabled, &[1; 32], NOW, &POLICY)
        .unwrap());
    assert_eq!(
        store.disable_user(user.id, false).unwrap(),
        UserUpdate::Done
    );
    assert_eq!(
        store.check_access(user.id, family, jti(), got.token_version),
        Ok(())
    );
}

#[test]
fn delete_user_removes_email_index_and_families() {
    let (dir, store) = temp_store();
    let (user, family) = session(&store);
    let email = store.user(user).unwrap().unwrap().email;
    assert_eq!(store.delete_user(user).unwrap(), UserUpdate::Done);
    assert_eq!(store.delete_user(user).unwrap(), UserUpdate::NoSuchUser);
    assert_eq!(store.user(user).unwrap(), None);
    assert_eq!(store.user_by_email(&email).unwrap(), None);
    assert_eq!(store.counts(), Counts::default());
    assert_eq!(
        store.check_access(user, family, jti(), 0),
        Err(AccessDenied::UnknownUser)
    );
    assert_eq!(
        store
            .rotate(&presented(family, 0, [0; 32]), &successor(1), NOW, &POLICY)
            .unwrap(),
        Rotation::Unknown
    );
    // The email is free again, and nothing comes back on reopen.
    let store = reopen(&dir, store);
    assert_eq!(store.counts(), Counts::default());
    new_user(&store, &email);
}

#[test]
fn list_users_pages_in_id_order() {
    let (_dir, store) = temp_store();
    let mut ids: Vec<UserId> = (0..7)
        .map(|i| new_user(&store, &format!("u{i}@example.com")).id)
        .collect();
    ids.sort();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_users(3, after).unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        after = page.last().map(|u| u.id);
        seen.extend(page.into_iter().map(|u| u.id));
    }
    assert_eq!(seen, ids);
    assert!(store.list_users(0, None).unwrap().is_empty());
}

#[test]
fn rotate_installs_successor_and_old_token_is_reuse() {
    let (_dir, store) = temp_store();
    let (user, family) = session(&store);
    let first = presented(family, 0, [0; 32]);
    assert_eq!(
        store.rotate(&first, &successor(1), NOW, &NO_GRACE).unwrap(),
        Rotation::Rotated {
            family,
            user,
            generation: 1
        }
    );
    let second = presented(family, 1, [1; 32]);
    assert_eq!(
        store
            .rotate(&second, &successor(2), NOW.plus(1), &NO_GRACE)
            .unwrap(),
        Rotation::Rotated {
            family,
            user,
            generation: 2
        }
    );
    // Replaying the superseded token revokes the family...
    assert_eq!(
        store
            .rotate(&second, &successor(3), NOW.plus(2), &NO_GRACE)
            .unwrap(),
        Rotation::Reused { family, user }
    );
    // ...so the newest token stops working too, and so do the family's access tokens.
    let newest = presented(family, 2, [2; 32]);
    assert_eq!(
        store
            .rotate(&newest, &successor(4), NOW.plus(3), &NO_GRACE)
            .unwrap(),
        Rotation::Revoked
    );
    assert_eq!(
        store.check_access(user, family, jti(), 0),
        Err(AccessDenied::FamilyRevoked)
    );
}

#[test]
fn rotate_rejects_unknown_and_forged_presentations() {
    let (_dir, store) = temp_store();
    let (_, family) = session(&store);
    let cases = [
        (
            "no such family",
            presented(Store::new_family_id(), 0, [0; 32]),
        ),
        (
            "current generation, wrong hash",
            presented(family, 0, [9; 32]),
        ),
        ("future generation", presented(family, 1, [0; 32])),
    ];
    for (name, p) in cases {
        assert_eq!(
            store.rotate(&p, &successor(1), NOW, &POLICY).unwrap(),
            Rotation::Unknown,
            "{name}"
        );
    }
    // None of them disturbed the family.
    assert!(matches!(
        store
            .rotate(&presented(family, 0, [0; 32]), &successor(1), NOW, &POLICY)
            .unwrap(),
        Rotation::Rotated { generation: 1, .. }
    ));
}

#[test]
fn grace_returns_the_same_successor_then_becomes_reuse() {
    let (_dir, store) = temp_store();
    let (user, family) = session(&store);
    let first = presented(family, 0, [0; 32]);
    store.rotate(&first, &successor(1), NOW, &POLICY).unwrap();
    let retried = Rotation::Retried {
        family,
        user,
        generation: 1,
        sealed: successor(1).sealed,
    };
    // Inside the grace, the retry gets the stored successor, whatever it offers itself.
    assert_eq!(
        store
            .rotate(&first, &successor(7), NOW.plus(9), &POLICY)
            .unwrap(),
        retried
    );
    assert_eq!(
        store.rotate(&first, &successor(8), NOW, &POLICY).unwrap(),
        retried
    );
    // The current token still rotates normally.
    let current = presented(family, 1, [1; 32]);
    assert_eq!(
        store
            .rotate(&current, &successor(1), NOW.plus(9), &POLICY)
            .unwrap(),
        Rotation::Rotated {
            family,
            user,
            generation: 2
        }
    );
    // The grandparent is reuse even inside the grace.
    assert_eq!(
        store
            .rotate(&first, &successor(9), NOW.plus(9), &POLICY)
            .unwrap(),
        Rotation::Reused { family, user }
    );
}

#[test]
fn after_the_grace_the_superseded_token_is_reuse() {
    let (_dir, store) = temp_store();
    let (user, family) = session(&store);
    let first = presented(family, 0, [0; 32]);
    store.rotate(&first, &successor(1), NOW, &POLICY).unwrap();
    assert_eq!(
        store
            .rotate(&first, &successor(2), NOW.plus(10), &POLICY)
            .unwrap(),
        Rotation::Reused { family, user }
    );
    assert_eq!(
        store
            .rotate(
                &presented(family, 1, [1; 32]),
                &successor(2),
                NOW.plus(11),
                &POLICY
            )
            .unwrap(),
        Rotation::Revoked
    );
}

#[test]
fn grace_zero_means_every_superseded_token_is_reuse() {
    let (_dir, store) = temp_store();
    let (user, family) = session(&store);
    let first = presented(family, 0, [0; 32]);
    store.rotate(&first, &successor(1), NOW, &NO_GRACE).unwrap();
    assert_eq!(
        store.rotate(&first, &successor(2), NOW, &NO_GRACE).unwrap(),
        Rotation::Reused { family, user }
    );
}

#[test]
fn expiry_slides_per_token_up_to_the_absolute_maximum() {
    let (_dir, store) = temp_store();
    let (user, family) = session(&store);
    // Token 0 expires at NOW+100 (refresh TTL).
    assert_eq!(
        store
            .rotate(
                &presented(family, 0, [0; 32]),
                &successor(1),
                NOW.plus(100),
                &POLICY
            )
            .unwrap(),
        Rotation::Expired
    );
    // Rotating just before keeps sliding the expiry forward.
    let mut at = NOW;
    let mut generation = 0u8;
    loop {
        at = at.plus(99);
        let p = presented(family, u64::from(generation), [generation; 32]);
        let got = store
            .rotate(&p, &successor(generation + 1), at, &POLICY)
            .unwrap();
        if at.secs() >= NOW.plus(POLICY.session_max_secs).secs() {
            // The family's absolute lifetime ends however often it rotated.
            assert_eq!(got, Rotation::Expired, "at {at}");
            break;
        }
        assert!(matches!(got, Rotation::Rotated { .. }), "at {at}: {got:?}");
        generation += 1;
    }
    assert_eq!(generation, 10);
    // The last token's sliding expiry was capped by the maximum (NOW + 1000), not NOW+990+100.
    let p = presented(family, u64::from(generation), [generation; 32]);
    assert_eq!(
        store
            .rotate(&p, &successor(99), NOW.plus(999), &POLICY)
            .unwrap(),
        Rotation::Rotated {
            family,
            user,
            generation: 11
        }
    );
}

#[test]
fn retry_of_an_expired_family_is_expired() {
    let (_dir, store) = temp_store();
    let (_, family) = session(&store);
    let first = presented(family, 0, [0; 32]);
    let long_grace = SessionPolicy {
        grace_secs: 10_000,
        ..POLICY
    };
    store
        .rotate(&first, &successor(1), NOW, &long_grace)
        .unwrap();
    assert_eq!(
        store
            .rotate(&first, &successor(2), NOW.plus(100), &long_grace)
            .unwrap(),
        Rotation::Expired
    );
}

#[test]
fn revoke_family_and_revoke_all() {
    let (_dir, store) = temp_store();
    let (user, family) = session(&store);
    let other = Store::new_family_id();
    assert!(add_family(&store, user, other, 5).unwrap());
    assert!(add_family(&store, user, other, 5).is_err());
    assert_eq!(store.counts().families, 2);

    assert!(store.revoke_family(family, NOW).unwrap());
    assert!(!store.revoke_family(family, NOW).unwrap());
    assert!(!store.revoke_family(Store::new_family_id(), NOW).unwrap());
    assert_eq!(
        store.check_access(user, family, jti(), 0),
        Err(AccessDenied::FamilyRevoked)
    );
    assert_eq!(store.check_access(user, other, jti(), 0), Ok(()));

    assert!(store.revoke_all_for_user(user, NOW).unwrap());
    assert!(!store
        .revoke_all_for_user(UserId(Uuid::new_v4()), NOW)
        .unwrap());
    assert_eq!(store.token_version(user), Some(1));
    assert_eq!(store.user(user).unwrap().unwrap().token_version, 1);
    assert_eq!(
        store.check_access(user, other, jti(), 0),
        Err(AccessDenied::StaleVersion)
    );
    assert_eq!(
        store.check_access(user, other, jti(), 1),
        Err(AccessDenied::FamilyRevoked)
    );
    assert_eq!(
        store
            .rotate(&presented(other, 0, [5; 32]), &successor(1), NOW, &POLICY)
            .unwrap(),
        Rotation::Revoked
    );
    assert_eq!(store.counts().families, 0);
}

#[test]
fn check_access_reports_each_rule() {
    let (_dir, store) = temp_store();
    let (user, family) = session(&store);
    let (other_user, other_family) = session(&store);
    let bad = jti();
    store.blacklist(bad, NOW.plus(60)).unwrap();
    store.revoke_all_for_user(other_user, NOW).unwrap();
    let cases = [
        ("valid", user, family, jti(), 0, Ok(())),
        (
            "unknown user",
            UserId(Uuid::new_v4()),
            family,
            jti(),
            0,
            Err(AccessDenied::UnknownUser),
        ),
        (
            "stale",
            other_user,
            other_family,
            jti(),
            0,
            Err(AccessDenied::StaleVersion),
        ),
        (
            "unknown family",
            user,
            Store::new_family_id(),
            jti(),
            0,
            Err(AccessDenied::FamilyRevoked),
        ),
        (
            "someone else's family",
            user,
            other_family,
            jti(),
            0,
            Err(AccessDenied::FamilyRevoked),
        ),
        (
            "blacklisted",
            user,
            family,
            bad,
            0,
            Err(AccessDenied::Blacklisted),
        ),
    ];
    for (name, u, f, j, v, want) in cases {
        assert_eq!(store.check_access(u, f, j, v), want, "{name}");
    }
}

#[test]
fn blacklist_is_remembered_and_swept() {
    let (dir, store) = temp_store();
    let a = jti();
    let b = jti();
    store.blacklist(a, NOW.plus(10)).unwrap();
    store.blacklist(b, NOW.plus(20)).unwrap();
    store.blacklist(b, NOW.plus(5)).unwrap(); // keeps the later exp
    assert!(store.is_blacklisted(a));
    assert!(!store.is_blacklisted(jti()));

    let store = reopen(&dir, store);
    assert!(store.is_blacklisted(a) && store.is_blacklisted(b));
    assert_eq!(store.counts().blacklist, 2);
    assert_eq!(store.sweep_expired(NOW.plus(9), 0).unwrap().blacklist, 0);
    assert_eq!(store.sweep_expired(NOW.plus(10), 0).unwrap().blacklist, 1);
    assert!(!store.is_blacklisted(a));
    assert!(store.is_blacklisted(b));
    assert_eq!(store.sweep_expired(NOW.plus(20), 0).unwrap().blacklist, 1);
    assert_eq!(store.counts().blacklist, 0);
}

#[test]
fn sweep_deletes_ended_families_after_retention_and_counts_return_to_zero() {
    let (dir, store) = temp_store();
    let (user, revoked) = session(&store);
    let live = Store::new_family_id();
    add_family(&store, user, live, 3).unwrap();
    store.revoke_family(revoked, NOW.plus(50)).unwrap();
    store.blacklist(jti(), NOW.plus(30)).unwrap();
    store.add_signing_key(&key("k1", NOW), None).unwrap();
    store
        .add_signing_key(&key("k2", NOW.plus(40)), Some(NOW.plus(40)))
        .unwrap();

    // The revoked family is kept for the retention (access tokens may still name it).
    let retain = 15;
    assert_eq!(
        store.sweep_expired(NOW.plus(60), retain).unwrap(),
        Sweep {
            blacklist: 1,
            families: 0,
            keys: 1
        }
    );
    assert_eq!(
        store.sweep_expired(NOW.plus(65), retain).unwrap(),
        Sweep {
            blacklist: 0,
            families: 1,
            keys: 0
        }
    );
    // The live family expires at NOW+100 and goes `retain` later.
    assert_eq!(
        store.sweep_expired(NOW.plus(114), retain).unwrap(),
        Sweep::default()
    );
    assert_eq!(store.counts().families, 1);
    assert_eq!(
        store.sweep_expired(NOW.plus(115), retain).unwrap(),
        Sweep {
            blacklist: 0,
            families: 1,
            keys: 0
        }
    );
    assert_eq!(
        store.counts(),
        Counts {
            users: 1,
            families: 0,
            blacklist: 0
        }
    );
    let store = reopen(&dir, store);
    assert_eq!(
        store.counts(),
        Counts {
            users: 1,
            families: 0,
            blacklist: 0
        }
    );
    assert_eq!(store.signing_keys().unwrap().len(), 1);
    // The swept families are gone from the user index too: revoke-all finds nothing to revoke.
    assert!(store.revoke_all_for_user(user, NOW.plus(200)).unwrap());
    assert_eq!(store.delete_user(user).unwrap(), UserUpdate::Done);
    assert_eq!(store.counts(), Counts::default());
}

fn key(kid: &str, at: UnixTime) -> StoredKey {
    StoredKey {
        kid: kid.to_owned(),
        secret: kid.as_bytes().repeat(8),
        created_at: at,
        retired_at: None,
    }
}

#[test]
fn signing_keys_rotate_and_persist() {
    let (dir, store) = temp_store();
    assert!(store.signing_keys().unwrap().is_empty());
    store.add_signing_key(&key("k1", NOW), None).unwrap();
    store
        .add_signing_key(&key("k2", NOW.plus(1)), Some(NOW.plus(1)))
        .unwrap();
    assert!(matches!(
        store.add_signing_key(&key("k1", NOW), None),
        Err(StoreError::KidTaken(kid)) if kid == "k1"
    ));
    let store = reopen(&dir, store);
    let keys = store.signing_keys().unwrap();
    assert_eq!(
        keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
        ["k1", "k2"]
    );
    assert_eq!(keys[0].retired_at, Some(NOW.plus(1)));
    assert_eq!(keys[1].retired_at, None);
    assert_eq!(keys[1].secret, b"k2".repeat(8));
    assert!(!format!("{:?}", keys[1]).contains("k2k2"));
}

#[test]
fn refresh_mac_key_is_random_and_stable() {
    let (dir, store) = temp_store();
    let key = store.refresh_mac_key().unwrap();
    assert_ne!(key, [0; 32]);
    let store = reopen(&dir, store);
    assert_eq!(store.refresh_mac_key().unwrap(), key);
    let (_dir2, other) = temp_store();
    assert_ne!(other.refresh_mac_key().unwrap(), key);
}

#[test]
fn view_survives_reopen() {
    let (dir, store) = temp_store();
    let (user, revoked) = session(&store);
    let live = Store::new_family_id();
    add_family(&store, user, live, 4).unwrap();
    store.revoke_family(revoked, NOW).unwrap();
    let (bumped, _) = session(&store);
    store.revoke_all_for_user(bumped, NOW).unwrap();
    let (disabled, _) = session(&store);
    store.disable_user(disabled, true).unwrap();
    let gone = jti();
    store.blacklist(gone, NOW.plus(60)).unwrap();
    let before = store.counts();

    let store = reopen(&dir, store);
    assert_eq!(store.counts(), before);
    assert_eq!(
        store.check_access(user, revoked, jti(), 0),
        Err(AccessDenied::FamilyRevoked)
    );
    assert_eq!(store.check_access(user, live, jti(), 0), Ok(()));
    assert_eq!(
        store.check_access(user, live, gone, 0),
        Err(AccessDenied::Blacklisted)
    );
    assert_eq!(store.token_version(bumped), Some(1));
    assert_eq!(
        store.check_access(disabled, live, jti(), 0),
        Err(AccessDenied::UserDisabled)
    );
    assert_eq!(
        store
            .rotate(&presented(revoked, 0, [0; 32]), &successor(1), NOW, &POLICY)
            .unwrap(),
        Rotation::Revoked
    );
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

#[test]
fn a_schema_1_file_is_migrated_and_keeps_its_users() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("latchd.redb");
    let (admin, other) = {
        let store = Store::open(&path).unwrap();
        let admin = new_user(&store, "root@example.com");
        assert_eq!(
            store.set_roles(admin.id, &["admin".to_owned()]).unwrap(),
            UserUpdate::Done
        );
        (admin.id, new_user(&store, "b@example.com").id)
    };
    // Turn the file back into what latchd 0.1 wrote: schema 1, no role index.
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("schema_version", 1)
            .unwrap();
        assert!(txn.delete_multimap_table(tables::ROLE_MEMBERS).unwrap());
        txn.commit().unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.user(other).unwrap().unwrap().email, "b@example.com");
    // The index was rebuilt: the only admin is known to be the last one.
    assert_eq!(store.delete_user(admin).unwrap(), UserUpdate::LastAdmin);
    drop(store);
    let db = Database::create(&path).unwrap();
    let version = db
        .begin_read()
        .unwrap()
        .open_table(META)
        .unwrap()
        .get("schema_version")
        .unwrap()
        .map(|v| v.value());
    assert_eq!(version, Some(SCHEMA_VERSION));
}

#[test]
fn the_last_enabled_admin_cannot_be_deleted_disabled_or_demoted() {
    let (_dir, store) = temp_store();
    let admin = new_user(&store, "root@example.com").id;
    let admin_role = ["admin".to_owned()];
    assert_eq!(
        store.set_roles(admin, &admin_role).unwrap(),
        UserUpdate::Done
    );
    assert_eq!(store.delete_user(admin).unwrap(), UserUpdate::LastAdmin);
    assert_eq!(
        store.disable_user(admin, true).unwrap(),
        UserUpdate::LastAdmin
    );
    assert_eq!(store.set_roles(admin, &[]).unwrap(), UserUpdate::LastAdmin);
    assert!(store
        .user(admin)
        .unwrap()
        .is_some_and(|u| !u.disabled && u.roles == admin_role));
    // A disabled second admin does not count; an enabled one does.
    let second = new_user(&store, "second@example.com").id;
    assert_eq!(
        store.set_roles(second, &admin_role).unwrap(),
        UserUpdate::Done
    );
    assert_eq!(store.disable_user(second, true).unwrap(), UserUpdate::Done);
    assert_eq!(store.delete_user(admin).unwrap(), UserUpdate::LastAdmin);
    assert_eq!(store.disable_user(second, false).unwrap(), UserUpdate::Done);
    assert_eq!(store.delete_user(admin).unwrap(), UserUpdate::Done);
    // Now `second` is the last one; a non-admin is never refused.
    assert_eq!(store.delete_user(second).unwrap(), UserUpdate::LastAdmin);
    let plain = new_user(&store, "plain@example.com").id;
    assert_eq!(store.disable_user(plain, true).unwrap(), UserUpdate::Done);
    assert_eq!(store.delete_user(plain).unwrap(), UserUpdate::Done);
}

#[test]
fn a_new_session_past_the_cap_revokes_the_oldest() {
    let (_dir, store) = temp_store();
    let user = new_user(&store, "many@example.com");
    let policy = SessionPolicy {
        max_per_user: 3,
        ..POLICY
    };
    let families: Vec<FamilyId> = (0..5u8)
        .map(|n| {
            let family = Store::new_family_id();
            let at = NOW.plus(i64::from(n));
            assert!(store
                .create_family(family, &user, &[n; 32], at, &policy)
                .unwrap());
            family
        })
        .collect();
    let live: Vec<bool> = families
        .iter()
        .map(|f| store.check_access(user.id, *f, jti(), 0).is_ok())
        .collect();
    assert_eq!(live, [false, false, true, true, true]);
    assert_eq!(store.counts().families, 3);
    assert_eq!(
        store
            .rotate(
                &presented(families[0], 0, [0; 32]),
                &successor(9),
                NOW.plus(9),
                &policy
            )
            .unwrap(),
        Rotation::Revoked
    );
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
        let txn = store.db.begin_write().unwrap();
        txn.open_table(USERS)
            .unwrap()
            .insert(user.id.0.as_u128(), &b"\x00\xffnot json"[..])
            .unwrap();
        txn.commit().unwrap();
    }
    for got in [
        store.user(user.id).map(|_| ()),
        store.user_by_email("a@example.com").map(|_| ()),
        store.list_users(10, None).map(|_| ()),
        store.set_roles(user.id, &[]).map(|_| ()),
        store.revoke_all_for_user(user.id, NOW).map(|_| ()),
    ] {
        assert!(
            matches!(got, Err(StoreError::Corrupt { table: "users", .. })),
            "{got:?}"
        );
    }
    drop(store);
    let err = Store::open(&dir.path().join("latchd.redb")).unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt { table: "users", .. }),
        "{err:?}"
    );
}

#[test]
fn corrupt_family_row_is_an_error_not_a_panic() {
    let (_dir, store) = temp_store();
    let (_, family) = session(&store);
    {
        let txn = store.db.begin_write().unwrap();
        txn.open_table(super::tables::FAMILIES)
            .unwrap()
            .insert(family.0.as_u128(), &br#"{"user":"nope"}"#[..])
            .unwrap();
        txn.commit().unwrap();
    }
    let got = store.rotate(&presented(family, 0, [0; 32]), &successor(1), NOW, &POLICY);
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
    let got = store.sweep_expired(NOW, 0);
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

#[test]
fn eight_racing_rotations_without_grace_have_one_winner() {
    let outcomes = race(NO_GRACE);
    let rotated = outcomes
        .iter()
        .filter(|o| matches!(o, Rotation::Rotated { .. }))
        .count();
    assert_eq!(rotated, 1, "{outcomes:?}");
    assert!(
        outcomes.iter().all(|o| matches!(
            o,
            Rotation::Rotated { .. } | Rotation::Reused { .. } | Rotation::Revoked
        )),
        "{outcomes:?}"
    );
}

#[test]
fn eight_racing_rotations_with_grace_share_one_successor() {
    let outcomes = race(POLICY);
    let winners: Vec<usize> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| matches!(o, Rotation::Rotated { .. }))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    let winner = u8::try_from(winners[0]).unwrap() + 1;
    for (i, o) in outcomes.iter().enumerate() {
        if i != winners[0] {
            assert!(
                matches!(o, Rotation::Retried { generation: 1, sealed, .. } if *sealed == successor(winner).sealed),
                "thread {i}: {o:?}"
            );
        }
    }
}

/// Eight threads present generation 0 at once, thread `i` offering `successor(i + 1)`.
fn race(policy: SessionPolicy) -> Vec<Rotation> {
    let (_dir, store) = temp_store();
    let (_, family) = session(&store);
    let store = Arc::new(store);
    let barrier = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (1..=8u8)
        .map(|n| {
            let store = Arc::clone(&store);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                store
                    .rotate(&presented(family, 0, [0; 32]), &successor(n), NOW, &policy)
                    .unwrap()
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn change_password_keeps_only_the_named_session_and_survives_reopen() {
    let (dir, store) = temp_store();
    let (user, keep) = session(&store);
    let other = Store::new_family_id();
    assert!(add_family(&store, user, other, 6).unwrap());
    assert!(store
        .change_password(
            user,
            &store.user(user).unwrap().unwrap().password_hash,
            "$new-hash",
            Some(keep),
            NOW,
        )
        .unwrap());
    assert_eq!(
        store.user(user).unwrap().unwrap().password_hash,
        "$new-hash"
    );
    assert_eq!(store.check_access(user, keep, jti(), 0), Ok(()));
    assert_eq!(
        store.check_access(user, other, jti(), 0),
        Err(AccessDenied::FamilyRevoked)
    );
    assert_eq!(store.token_version(user), Some(0), "no version bump");
    let store = reopen(&dir, store);
    assert_eq!(store.check_access(user, keep, jti(), 0), Ok(()));
    assert_eq!(
        store.check_access(user, other, jti(), 0),
        Err(AccessDenied::FamilyRevoked)
    );
    assert!(!store
        .change_password(UserId(Uuid::new_v4()), "$x", "$y", None, NOW)
        .unwrap());
}

/// A named change to a user, committed by a test between a read and a write.
type ChangeCase<'a> = (&'a str, Box<dyn Fn(&Store) + 'a>);

#[test]
fn a_session_is_not_created_for_credentials_that_changed_while_they_were_checked() {
    let (_dir, store) = temp_store();
    let seen = new_user(&store, "race@example.com");
    // Each change below commits between the credential check and create_family.
    let changes: [ChangeCase; 4] = [
        (
            "password changed",
            Box::new(|s: &Store| {
                let hash = s.user(seen.id).unwrap().unwrap().password_hash;
                assert!(s
                    .change_password(seen.id, &hash, "$other", None, NOW)
                    .unwrap());
            }),
        ),
        (
            "logout-all",
            Box::new(|s: &Store| assert!(s.revoke_all_for_user(seen.id, NOW).unwrap())),
        ),
        (
            "roles changed",
            Box::new(|s: &Store| assert_eq!(s.set_roles(seen.id, &[]).unwrap(), UserUpdate::Done)),
        ),
        (
            "disabled",
            Box::new(|s: &Store| {
                assert_eq!(s.disable_user(seen.id, true).unwrap(), UserUpdate::Done);
            }),
        ),
    ];
    for (name, change) in changes {
        let seen = store.user(seen.id).unwrap().unwrap();
        change(&store);
        let family = Store::new_family_id();
        assert!(
            !store
                .create_family(family, &seen, &[9; 32], NOW, &POLICY)
                .unwrap(),
            "{name}"
        );
        store.disable_user(seen.id, false).unwrap();
        assert_eq!(
            store.check_access(
                seen.id,
                family,
                jti(),
                store.token_version(seen.id).unwrap()
            ),
            Err(AccessDenied::FamilyRevoked),
            "{name}: no family was stored"
        );
    }
    let fresh = store.user(seen.id).unwrap().unwrap();
    assert!(store
        .create_family(Store::new_family_id(), &fresh, &[9; 32], NOW, &POLICY)
        .unwrap());
}

#[test]
fn a_role_change_stops_tokens_that_carry_the_old_roles() {
    let (_dir, store) = temp_store();
    let (user, family) = session(&store);
    assert_eq!(store.check_access(user, family, jti(), 0), Ok(()));
    assert_eq!(
        store.set_roles(user, &["admin".to_owned()]).unwrap(),
        UserUpdate::Done
    );
    assert_eq!(
        store.check_access(user, family, jti(), 0),
        Err(AccessDenied::StaleVersion)
    );
    assert_eq!(store.check_access(user, family, jti(), 1), Ok(()));
}

#[test]
fn retiring_signing_keys_marks_only_the_live_ones() {
    let (_dir, store) = temp_store();
    let key = |kid: &str| StoredKey {
        kid: kid.to_owned(),
        secret: vec![1; 32],
        created_at: NOW,
        retired_at: None,
    };
    store.add_signing_key(&key("a"), None).unwrap();
    store.add_signing_key(&key("b"), Some(NOW)).unwrap();
    assert_eq!(
        store.retire_signing_keys(NOW.plus(5)).unwrap(),
        1,
        "only b was live"
    );
    let keys = store.signing_keys().unwrap();
    assert_eq!(
        keys[0].retired_at,
        Some(NOW),
        "a keeps its first retirement"
    );
    assert_eq!(keys[1].retired_at, Some(NOW.plus(5)));
    assert_eq!(store.retire_signing_keys(NOW.plus(9)).unwrap(), 0);
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
fn a_password_change_checked_before_a_concurrent_change_does_not_land() {
    let (_dir, store) = temp_store();
    let (user, keep) = session(&store);
    let checked = store.user(user).unwrap().unwrap().password_hash;
    // Another change commits first (the victim's, say) ...
    assert!(store
        .change_password(user, &checked, "$victims-new", Some(keep), NOW)
        .unwrap());
    // ... so the one checked against the old hash writes nothing.
    assert!(!store
        .change_password(user, &checked, "$attackers", Some(keep), NOW)
        .unwrap());
    assert_eq!(
        store.user(user).unwrap().unwrap().password_hash,
        "$victims-new"
    );
    // A session revoked meanwhile cannot change the password either.
    assert!(store.revoke_family(keep, NOW).unwrap());
    assert!(!store
        .change_password(user, "$victims-new", "$x", Some(keep), NOW)
        .unwrap());
    // Nor can a disabled user.
    assert_eq!(store.disable_user(user, true).unwrap(), UserUpdate::Done);
    assert!(!store
        .change_password(user, "$victims-new", "$x", None, NOW)
        .unwrap());
}
