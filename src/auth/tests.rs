//! Use-case tests on a real store in a temp dir: the paths where token, store and password
//! meet, that HTTP tests cannot reach deterministically.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use tempfile::TempDir;

use super::*;
use crate::store::AccessDenied;

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const PASSWORD: &str = "correct horse battery staple";

fn config(dir: &TempDir, vars: &[(&str, &str)]) -> Config {
    let mut map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    map.insert("LATCHD_PBKDF2_ITERATIONS".into(), "1000".into());
    map.insert(
        "LATCHD_DB".into(),
        dir.path().join("a.redb").display().to_string(),
    );
    Config::from_lookup(|name| map.get(name).cloned()).unwrap()
}

fn authority(config: &Config) -> (Authority, KeySource) {
    Authority::new(config, Store::open(&config.db).unwrap()).unwrap()
}

#[test]
fn a_password_change_from_a_session_revoked_meanwhile_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (auth, _) = authority(&config(&dir, &[]));
    auth.register("pat@example.com", PASSWORD, UnixTime::now())
        .unwrap();
    let pair = auth
        .login("pat@example.com", PASSWORD, CLIENT, UnixTime::now())
        .unwrap();
    let principal = auth
        .verify_access(pair.access_token.as_bytes(), UnixTime::now())
        .unwrap();
    // Logout-all commits after the request was authenticated, before it writes.
    auth.logout_all(&principal, UnixTime::now()).unwrap();
    let got = auth.change_password(
        &principal,
        PASSWORD,
        "another long passphrase here",
        CLIENT,
        UnixTime::now(),
    );
    assert!(
        matches!(got, Err(AuthError::Revoked(AccessDenied::FamilyRevoked))),
        "{got:?}"
    );
    // The old password still works: nothing was written.
    assert!(auth
        .login("pat@example.com", PASSWORD, CLIENT, UnixTime::now())
        .is_ok());
}

#[test]
fn a_configured_key_retires_stored_keys_for_one_access_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let (first, source) = authority(&config(&dir, &[]));
    assert_eq!(source, KeySource::Generated);
    first
        .register("quentin@example.com", PASSWORD, UnixTime::now())
        .unwrap();
    let old = first
        .login("quentin@example.com", PASSWORD, CLIENT, UnixTime::now())
        .unwrap()
        .access_token;
    drop(first);

    let configured = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI";
    let cfg = config(
        &dir,
        &[
            ("LATCHD_SIGNING_KEY", configured),
            ("LATCHD_ACCESS_TTL", "60"),
        ],
    );
    let (second, source) = authority(&cfg);
    assert_eq!(source, KeySource::Configured);
    let now = UnixTime::now();
    assert!(second.verify_access(old.as_bytes(), now).is_ok());
    // Past the window the stored key no longer verifies, although the token (900 s) is alive.
    assert!(matches!(
        second.verify_access(old.as_bytes(), now.plus(120)),
        Err(AuthError::Token(crate::token::TokenError::UnknownKid))
    ));
    let fresh = second
        .login("quentin@example.com", PASSWORD, CLIENT, now)
        .unwrap()
        .access_token;
    assert!(second.verify_access(fresh.as_bytes(), now).is_ok());
}

#[test]
fn a_login_after_the_work_factor_rose_upgrades_the_hash_and_signs_in() {
    let dir = tempfile::tempdir().unwrap();
    let (weak, _) = authority(&config(&dir, &[]));
    weak.register("rosa@example.com", PASSWORD, UnixTime::now())
        .unwrap();
    drop(weak);
    let mut cfg = config(&dir, &[]);
    cfg.pbkdf2_iterations = std::num::NonZeroU32::new(2000).unwrap();
    let (strong, _) = authority(&cfg);
    assert!(strong
        .login("rosa@example.com", PASSWORD, CLIENT, UnixTime::now())
        .is_ok());
    let stored = strong
        .store()
        .user_by_email("rosa@example.com")
        .unwrap()
        .unwrap()
        .password_hash;
    assert!(stored.starts_with("$pbkdf2-sha256$i=2000$"), "{stored}");
    // And the upgraded hash still signs in.
    assert!(strong
        .login("rosa@example.com", PASSWORD, CLIENT, UnixTime::now())
        .is_ok());
}

#[test]
fn a_disabled_user_can_neither_refresh_nor_use_its_access_token() {
    let dir = tempfile::tempdir().unwrap();
    let (auth, _) = authority(&config(&dir, &[]));
    let user = auth
        .register("sam@example.com", PASSWORD, UnixTime::now())
        .unwrap();
    let pair = auth
        .login("sam@example.com", PASSWORD, CLIENT, UnixTime::now())
        .unwrap();
    assert_eq!(
        auth.store().disable_user(user.id, true).unwrap(),
        UserUpdate::Done
    );
    assert!(matches!(
        auth.refresh(pair.refresh_token.as_str(), UnixTime::now()),
        Err(AuthError::InvalidGrant)
    ));
    assert!(matches!(
        auth.verify_access(pair.access_token.as_bytes(), UnixTime::now()),
        Err(AuthError::Revoked(AccessDenied::UserDisabled))
    ));
    assert!(matches!(
        auth.login("sam@example.com", PASSWORD, CLIENT, UnixTime::now()),
        Err(AuthError::BadCredentials)
    ));
}
