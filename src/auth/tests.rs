//! Use-case tests on a real store in a temp dir: the paths where token, storage and password
//! meet, that HTTP tests cannot reach deterministically.

use std::net::{IpAddr, Ipv4Addr};

use tempfile::TempDir;

use super::*;
use crate::store::Store;

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const PASSWORD: &str = "correct horse battery staple";

/// Test settings: the defaults with a cheap work factor.
fn settings() -> Settings {
    Settings {
        pbkdf2_iterations: NonZeroU32::new(1000).unwrap(),
        hash_threads: 1,
        hash_priority: HashPriority::Normal,
        ..Settings::default()
    }
}

/// The use cases over the store in `dir`, on a runtime the test drives with `block_on`.
fn authority(dir: &TempDir, settings: Settings) -> (Authority, KeySource) {
    let store: Arc<dyn Storage> = Arc::new(Store::open(&dir.path().join("a.redb")).unwrap());
    block_on(Authority::open(settings, store, Vec::new())).unwrap()
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

fn register(auth: &Authority, email: &str) -> User {
    block_on(auth.register(None, email, PASSWORD, CLIENT, UnixTime::now())).unwrap()
}

fn login(auth: &Authority, email: &str) -> Result<TokenPair, AuthError> {
    match block_on(auth.login(email, PASSWORD, CLIENT, None, UnixTime::now()))? {
        SignIn::Done(pair) => Ok(pair),
        SignIn::CodeNeeded(_) => panic!("{email} has no second factor"),
    }
}

#[test]
fn a_password_change_from_a_session_revoked_meanwhile_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (auth, _) = authority(&dir, settings());
    register(&auth, "pat@example.com");
    let pair = login(&auth, "pat@example.com").unwrap();
    let principal = auth
        .verify_access(pair.access_token.as_bytes(), UnixTime::now())
        .unwrap();
    // Logout-all commits after the request was authenticated, before it writes.
    block_on(auth.logout_all(&principal, CLIENT, UnixTime::now())).unwrap();
    let got = block_on(auth.change_password(
        &principal,
        PASSWORD,
        "another long passphrase here",
        CLIENT,
        UnixTime::now(),
    ));
    assert!(
        matches!(got, Err(AuthError::Revoked(AccessDenied::FamilyRevoked))),
        "{got:?}"
    );
    // The old password still works: nothing was written.
    assert!(login(&auth, "pat@example.com").is_ok());
}

#[test]
fn a_configured_key_retires_stored_keys_for_one_access_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let (first, source) = authority(&dir, settings());
    assert_eq!(source, KeySource::Generated);
    register(&first, "quentin@example.com");
    let old = login(&first, "quentin@example.com").unwrap().access_token;
    drop(first);

    let configured = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI";
    let with_key = Settings {
        signing_key: Some(KeySecret::from_base64url(configured).unwrap()),
        access_ttl_secs: 60,
        ..settings()
    };
    let (second, source) = authority(&dir, with_key);
    assert_eq!(source, KeySource::Configured);
    let now = UnixTime::now();
    assert!(second.verify_access(old.as_bytes(), now).is_ok());
    // Past the window the stored key no longer verifies, although the token (900 s) is alive.
    assert!(matches!(
        second.verify_access(old.as_bytes(), now.plus(120)),
        Err(AuthError::Token(crate::token::TokenError::UnknownKid))
    ));
    let fresh = login(&second, "quentin@example.com").unwrap().access_token;
    assert!(second.verify_access(fresh.as_bytes(), now).is_ok());
}

#[test]
fn a_login_after_the_work_factor_rose_upgrades_the_hash_and_signs_in() {
    let dir = tempfile::tempdir().unwrap();
    let (weak, _) = authority(&dir, settings());
    register(&weak, "rosa@example.com");
    drop(weak);
    let stronger = Settings {
        pbkdf2_iterations: NonZeroU32::new(2000).unwrap(),
        ..settings()
    };
    let (strong, _) = authority(&dir, stronger);
    assert!(login(&strong, "rosa@example.com").is_ok());
    let stored = block_on(strong.find_user(Actor::Operator, "rosa@example.com"))
        .unwrap()
        .password_hash;
    assert!(stored.starts_with("$pbkdf2-sha256$i=2000$"), "{stored}");
    // And the upgraded hash still signs in.
    assert!(login(&strong, "rosa@example.com").is_ok());
}

#[test]
fn a_disabled_user_can_neither_refresh_nor_use_its_access_token() {
    let dir = tempfile::tempdir().unwrap();
    let (auth, _) = authority(&dir, settings());
    let user = register(&auth, "sam@example.com");
    let pair = login(&auth, "sam@example.com").unwrap();
    block_on(auth.disable_user(Actor::Operator, user.id, UnixTime::now())).unwrap();
    assert!(matches!(
        block_on(auth.refresh(pair.refresh_token.as_str(), CLIENT, UnixTime::now())),
        Err(AuthError::InvalidGrant)
    ));
    assert!(matches!(
        auth.verify_access(pair.access_token.as_bytes(), UnixTime::now()),
        Err(AuthError::Revoked(AccessDenied::UserDisabled))
    ));
    assert!(matches!(
        login(&auth, "sam@example.com"),
        Err(AuthError::BadCredentials)
    ));
}

#[test]
fn operator_use_cases_need_the_admin_role_from_a_caller() {
    let dir = tempfile::tempdir().unwrap();
    let (auth, _) = authority(&dir, settings());
    let user = register(&auth, "una@example.com");
    let pair = login(&auth, "una@example.com").unwrap();
    let plain = auth
        .verify_access(pair.access_token.as_bytes(), UnixTime::now())
        .unwrap();
    let caller = Actor::Caller(&plain);
    let now = UnixTime::now();
    let refused = [
        block_on(auth.list_users(caller, 10, None)).map(|_| ()),
        block_on(auth.revoke_user(caller, user.id, now)),
        block_on(auth.delete_user(caller, user.id, now)),
        block_on(auth.disable_user(caller, user.id, now)),
        block_on(auth.enable_user(caller, user.id, now)),
        block_on(auth.set_roles(caller, user.id, &["admin".to_owned()], now)),
        block_on(auth.rotate_signing_key(caller, now)).map(|_| ()),
        block_on(auth.find_user(caller, "una@example.com")).map(|_| ()),
    ];
    for (i, got) in refused.into_iter().enumerate() {
        assert!(matches!(got, Err(AuthError::Forbidden)), "{i}: {got:?}");
    }
    // Nothing happened to the user; the operator may.
    assert!(auth
        .verify_access(pair.access_token.as_bytes(), now)
        .is_ok());
    block_on(auth.set_roles(Actor::Operator, user.id, &["admin".to_owned()], now)).unwrap();
    assert!(matches!(
        auth.verify_access(pair.access_token.as_bytes(), now),
        Err(AuthError::Revoked(AccessDenied::StaleVersion))
    ));
}

#[test]
fn closed_registration_needs_an_admin_caller() {
    let dir = tempfile::tempdir().unwrap();
    let (auth, _) = authority(
        &dir,
        Settings {
            open_registration: false,
            ..settings()
        },
    );
    let now = UnixTime::now();
    let got = block_on(auth.register(None, "x@example.com", PASSWORD, CLIENT, now));
    assert!(matches!(got, Err(AuthError::Unauthenticated)), "{got:?}");
    let admin = block_on(auth.create_user(
        Actor::Operator,
        "root@example.com",
        PASSWORD,
        &["admin".to_owned()],
        now,
    ))
    .unwrap();
    assert_eq!(admin.roles, ["admin"]);
    let pair = login(&auth, "root@example.com").unwrap();
    let root = auth
        .verify_access(pair.access_token.as_bytes(), now)
        .unwrap();
    assert!(block_on(auth.register(Some(&root), "x@example.com", PASSWORD, CLIENT, now)).is_ok());
    let pair = login(&auth, "x@example.com").unwrap();
    let plain = auth
        .verify_access(pair.access_token.as_bytes(), now)
        .unwrap();
    let got = block_on(auth.register(Some(&plain), "y@example.com", PASSWORD, CLIENT, now));
    assert!(matches!(got, Err(AuthError::Forbidden)), "{got:?}");
}

#[test]
fn rotations_at_once_leave_the_newest_stored_key_signing_and_every_new_key_verifying() {
    let dir = tempfile::tempdir().unwrap();
    let (auth, _) = authority(&dir, settings());
    register(&auth, "rot@example.com");
    let before = login(&auth, "rot@example.com").unwrap().access_token;
    let first = auth.signer_kid();
    let auth = Arc::new(auth);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let kids: Vec<String> = runtime.block_on(async {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let auth = Arc::clone(&auth);
                tokio::spawn(async move {
                    auth.rotate_signing_key(Actor::Operator, UnixTime::now())
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut kids = Vec::new();
        for task in tasks {
            kids.push(task.await.unwrap());
        }
        kids
    });
    let stored = runtime.block_on(auth.storage.signing_keys()).unwrap();
    assert_eq!(
        auth.signer_kid(),
        stored.last().unwrap().kid,
        "the newest signs"
    );
    let ring: Vec<String> = auth.tokens().keyring().kids().map(str::to_owned).collect();
    for kid in kids.iter().chain([&first]) {
        assert!(ring.contains(kid), "{kid} missing from {ring:?}");
    }
    assert!(auth
        .verify_access(before.as_bytes(), UnixTime::now())
        .is_ok());
    let after = login(&auth, "rot@example.com").unwrap().access_token;
    assert!(auth
        .verify_access(after.as_bytes(), UnixTime::now())
        .is_ok());
}

#[test]
fn a_configured_key_refuses_rotation_and_keeps_signing() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeySecret::from_bytes(vec![5; 32]).unwrap();
    let (auth, _) = authority(
        &dir,
        Settings {
            signing_key: Some(key.clone()),
            ..settings()
        },
    );
    let refused = block_on(auth.rotate_signing_key(Actor::Operator, UnixTime::now()));
    assert!(
        matches!(refused, Err(AuthError::KeyConfigured)),
        "{refused:?}"
    );
    assert_eq!(auth.signer_kid(), key.kid());
}
