//! The storage conformance suite: every backend-neutral case of the storage contract, written
//! once against [`Storage`], so that each backend (the redb store; later PostgreSQL) passes
//! exactly the same cases. `tests/it/storage.rs` runs it against redb through
//! [`storage_conformance!`](crate::storage_conformance).
//!
//! A case gets a [`Harness`]: a place the backend keeps its data, which it can open, and open
//! again after dropping the previous handle (what a restart sees).

// A test suite: each case is named for what it checks and panics when it fails.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::missing_panics_doc,
    clippy::too_many_lines
)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use uuid::Uuid;

use crate::auth::storage::{Storage, StoreError};
use crate::model::{
    normalize_email, AccessDenied, AuditActor, AuditEvent, AuditNote, AuditQuery, AuditRow, Counts,
    CreateUser, FamilyId, Jti, MfaChallenge, MfaCompletion, NewSession, NewUser, Origin, Presented,
    Rotation, SecondFactor, SessionKind, SessionPolicy, StoredKey, Successor, Sweep, TotpUpdate,
    User, UserId, UserUpdate, PENDING_TOTP_SECS,
};
use crate::time::UnixTime;

/// Audit retention that keeps every row: sweeps of other rows leave the audit table alone.
const KEEP_AUDIT: i64 = i64::MAX;

/// An audit note of `event` at [`NOW`], about nobody yet.
fn note(event: AuditEvent) -> AuditNote {
    AuditNote::new(event, NOW)
}

/// A backend under test, at one place.
pub trait Harness {
    /// Opens the backend's data at this harness's place (creating it the first time).
    fn open(&mut self) -> Pin<Box<dyn Future<Output = Arc<dyn Storage>> + '_>>;

    /// A second, independent place for the same backend (another file, another database).
    fn another(&self) -> Box<dyn Harness>;

    /// Whether the backend can run here; a harness that says no has printed why, and the
    /// case is skipped (a backend that needs a server the machine lacks).
    fn available(&self) -> bool {
        true
    }

    /// What a restart sees: drops `old` (which must be the only handle) and opens again.
    fn reopen(
        &mut self,
        old: Arc<dyn Storage>,
    ) -> Pin<Box<dyn Future<Output = Arc<dyn Storage>> + '_>> {
        assert_eq!(
            Arc::strong_count(&old),
            1,
            "reopen with other handles alive"
        );
        drop(old);
        self.open()
    }
}

/// Runs one case on a fresh harness, on a current-thread runtime.
pub fn run<H: Harness, F>(mut harness: H, case: F)
where
    F: for<'a> FnOnce(&'a mut dyn Harness) -> Pin<Box<dyn Future<Output = ()> + 'a>>,
{
    if !harness.available() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(case(&mut harness));
}

/// One `#[test]` per conformance case, each on a fresh harness from `$harness`.
#[macro_export]
#[doc(hidden)]
macro_rules! storage_conformance {
    ($harness:expr) => {
        $crate::storage_conformance!(@cases $harness;
            create_and_read_users,
            email_normalization_trims_and_folds_unicode_case,
            set_password_roles_and_disable,
            delete_user_removes_email_index_and_families,
            list_users_pages_in_id_order,
            rotate_installs_successor_and_old_token_is_reuse,
            rotate_rejects_unknown_and_forged_presentations,
            grace_returns_the_same_successor_then_becomes_reuse,
            after_the_grace_the_superseded_token_is_reuse,
            grace_zero_means_every_superseded_token_is_reuse,
            expiry_slides_per_token_up_to_the_absolute_maximum,
            retry_of_an_expired_family_is_expired,
            revoke_family_and_revoke_all,
            check_access_reports_each_rule,
            blacklist_is_remembered_and_swept,
            sweep_deletes_ended_families_after_retention_and_counts_return_to_zero,
            signing_keys_rotate_and_persist,
            refresh_mac_key_is_random_and_stable,
            view_survives_reopen,
            the_last_enabled_admin_cannot_be_deleted_disabled_or_demoted,
            a_new_session_past_the_cap_revokes_the_oldest,
            eight_racing_rotations_without_grace_have_one_winner,
            eight_racing_rotations_with_grace_share_one_successor,
            change_password_keeps_only_the_named_session_and_survives_reopen,
            a_session_is_not_created_for_credentials_that_changed_while_they_were_checked,
            a_role_change_stops_tokens_that_carry_the_old_roles,
            retiring_signing_keys_marks_only_the_live_ones,
            a_password_change_checked_before_a_concurrent_change_does_not_land,
            disable_revokes_every_session_in_the_same_write,
            rotate_answers_the_user_as_of_the_rotation,
            logout_blacklists_and_revokes_in_one_write,
            a_browser_session_is_found_by_its_cookie_and_ends_with_every_revocation,
            a_browser_session_expires_when_idle_and_its_touches_survive_a_reopen,
            a_browser_session_is_never_rotated_and_is_swept_with_its_cookie,
            totp_is_pending_until_confirmed_and_on_until_turned_off,
            a_second_factor_opens_one_session_and_is_spent_for_good,
            a_challenge_dies_of_wrong_codes_of_age_and_of_changes_to_its_user,
            a_totp_reset_ends_every_session_and_deleting_the_user_deletes_its_totp,
            eight_racing_completions_spend_a_step_or_a_recovery_code_once,
            a_pending_enrolment_is_swept_after_ten_minutes_and_one_that_is_on_never,
            the_session_list_shows_live_sessions_newest_first_with_their_origin,
            a_user_ends_only_its_own_live_sessions,
            an_audit_row_is_written_with_its_change_and_never_without_one,
            the_second_factor_is_audited_with_its_changes_and_never_without_one,
            audit_rows_page_in_write_order_and_filter_and_survive_reopen,
            audit_rows_are_swept_after_the_audit_retention
        );
    };
    (@cases $harness:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::conformance::run($harness, |h| Box::pin($crate::conformance::$case(h)));
            }
        )*
    };
}

const NOW: UnixTime = UnixTime(1_800_000_000);
const POLICY: SessionPolicy = SessionPolicy {
    refresh_ttl_secs: 100,
    session_max_secs: 1_000,
    grace_secs: 10,
    max_per_user: 100,
    idle_secs: 100,
};
const NO_GRACE: SessionPolicy = SessionPolicy {
    grace_secs: 0,
    ..POLICY
};

async fn new_user(store: &dyn Storage, email: &str) -> User {
    match store
        .create_user(
            NewUser {
                email: email.to_owned(),
                password_hash: "$pbkdf2-sha256$i=1$x$y".to_owned(),
                roles: vec!["user".to_owned()],
            },
            NOW,
            note(AuditEvent::Registered),
        )
        .await
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
async fn session(store: &dyn Storage) -> (UserId, FamilyId) {
    let user = new_user(store, &format!("{}@example.com", Uuid::new_v4()))
        .await
        .id;
    let family = FamilyId::new();
    assert!(add_family(store, user, family, 0).await.unwrap());
    (user, family)
}

/// Starts a family for `user` as a login would, with the user as stored now.
async fn add_family(
    store: &dyn Storage,
    user: UserId,
    family: FamilyId,
    hash: u8,
) -> Result<bool, StoreError> {
    let seen = store.user(user).await.unwrap().unwrap();
    store
        .open_session(
            family,
            &seen,
            [hash; 32],
            NewSession::default(),
            NOW,
            POLICY,
            note(AuditEvent::Login),
        )
        .await
}

fn jti() -> Jti {
    Jti(Uuid::new_v4())
}

/// The user as stored now, as a rotation answers it.
async fn stored(store: &dyn Storage, user: UserId) -> User {
    store.user(user).await.unwrap().expect("stored user")
}

/// The token version the in-memory view holds for `user`: the lowest `ver` it does not call
/// stale.
fn view_version(store: &dyn Storage, user: UserId) -> Option<u64> {
    (0..64).find_map(
        |v| match store.check_access(user, FamilyId::new(), jti(), v) {
            Err(AccessDenied::UnknownUser) => Some(None),
            Err(AccessDenied::StaleVersion) => None,
            _ => Some(Some(v)),
        },
    )?
}

/// Whether the view refuses `jti` as blacklisted for the live session `(user, family)`.
fn is_blacklisted(store: &dyn Storage, user: UserId, family: FamilyId, jti: Jti) -> bool {
    store.check_access(user, family, jti, 0) == Err(AccessDenied::Blacklisted)
}

/// A browser session of `user` whose cookie hashes to `[hash; 32]`, opened at `at`.
async fn browser(store: &dyn Storage, user: UserId, hash: u8, at: UnixTime) -> FamilyId {
    let seen = store.user(user).await.unwrap().unwrap();
    let family = FamilyId::new();
    let session = NewSession {
        kind: SessionKind::Browser,
        mfa: true,
        origin: Origin::default(),
    };
    assert!(store
        .open_session(
            family,
            &seen,
            [hash; 32],
            session,
            at,
            POLICY,
            note(AuditEvent::Login)
        )
        .await
        .unwrap());
    family
}

fn key(kid: &str, at: UnixTime) -> StoredKey {
    StoredKey {
        kid: kid.to_owned(),
        secret: kid.as_bytes().repeat(8),
        created_at: at,
        retired_at: None,
    }
}

pub async fn create_and_read_users(h: &mut dyn Harness) {
    let store = h.open().await;
    let user = new_user(&*store, "  Alice@Example.com ").await;
    assert_eq!(user.email, "Alice@Example.com");
    assert_eq!(user.token_version, 0);
    assert!(!user.disabled);
    assert_eq!(store.user(user.id).await.unwrap(), Some(user.clone()));
    assert_eq!(
        store.user_by_email("alice@example.COM").await.unwrap(),
        Some(user.clone())
    );
    assert_eq!(store.user(UserId(Uuid::new_v4())).await.unwrap(), None);
    assert_eq!(store.user_by_email("bob@example.com").await.unwrap(), None);
    assert_eq!(store.counts().users, 1);
    assert_eq!(view_version(&*store, user.id), Some(0));
}

pub async fn email_normalization_trims_and_folds_unicode_case(h: &mut dyn Harness) {
    assert_eq!(normalize_email(" ÉMILE@Example.COM "), "émile@example.com");
    let store = h.open().await;
    let emile = new_user(&*store, "ÉMILE@Example.COM ").await;
    for other in [
        "émile@example.com",
        "  Émile@EXAMPLE.com",
        "\témile@example.com\n",
    ] {
        let again = NewUser {
            email: other.to_owned(),
            password_hash: "h".to_owned(),
            roles: Vec::new(),
        };
        assert_eq!(
            store
                .create_user(again, NOW, note(AuditEvent::Registered))
                .await
                .unwrap(),
            CreateUser::EmailTaken,
            "{other:?}"
        );
        assert_eq!(
            store.user_by_email(other).await.unwrap().map(|u| u.id),
            Some(emile.id)
        );
    }
    // Different letters are different accounts.
    new_user(&*store, "emile@example.com").await;
    assert_eq!(store.counts().users, 2);
}

pub async fn set_password_roles_and_disable(h: &mut dyn Harness) {
    let store = h.open().await;
    let user = new_user(&*store, "a@example.com").await;
    let missing = UserId(Uuid::new_v4());

    let old = store.user(user.id).await.unwrap().unwrap().password_hash;
    assert!(store
        .upgrade_password_hash(user.id, &old, "new-hash")
        .await
        .unwrap());
    assert!(
        !store
            .upgrade_password_hash(user.id, &old, "stale-upgrade")
            .await
            .unwrap(),
        "an upgrade of a hash that changed meanwhile writes nothing"
    );
    assert!(!store
        .upgrade_password_hash(missing, "x", "y")
        .await
        .unwrap());
    let roles = vec!["ops".to_owned(), "user".to_owned()];
    assert_eq!(
        store
            .set_roles(user.id, &roles, note(AuditEvent::RolesChanged))
            .await
            .unwrap(),
        UserUpdate::Done
    );
    assert_eq!(
        store
            .set_roles(missing, &roles, note(AuditEvent::RolesChanged))
            .await
            .unwrap(),
        UserUpdate::NoSuchUser
    );
    let got = store.user(user.id).await.unwrap().unwrap();
    assert_eq!(got.password_hash, "new-hash");
    assert_eq!(got.roles, roles);
    // The hash upgrade revokes nothing; the role change retires tokens with the old roles.
    assert_eq!(got.token_version, 1);

    let family = FamilyId::new();
    assert!(store
        .open_session(
            family,
            &got,
            [0; 32],
            NewSession::default(),
            NOW,
            POLICY,
            note(AuditEvent::Login)
        )
        .await
        .unwrap());
    assert_eq!(
        store
            .disable_user(user.id, NOW, note(AuditEvent::UserDisabled))
            .await
            .unwrap(),
        UserUpdate::Done
    );
    assert_eq!(
        store
            .disable_user(missing, NOW, note(AuditEvent::UserDisabled))
            .await
            .unwrap(),
        UserUpdate::NoSuchUser
    );
    assert!(store.user(user.id).await.unwrap().unwrap().disabled);
    assert_eq!(
        store.check_access(user.id, family, jti(), 0),
        Err(AccessDenied::UserDisabled)
    );
    // No new session for a disabled user.
    let disabled = store.user(user.id).await.unwrap().unwrap();
    assert!(!store
        .open_session(
            FamilyId::new(),
            &disabled,
            [1; 32],
            NewSession::default(),
            NOW,
            POLICY,
            note(AuditEvent::Login)
        )
        .await
        .unwrap());
    assert_eq!(
        store
            .enable_user(user.id, note(AuditEvent::UserEnabled))
            .await
            .unwrap(),
        UserUpdate::Done
    );
    // Disabling revoked the user's sessions in the same write: re-enabling brings the user
    // back, not its sessions.
    let enabled = stored(&*store, user.id).await;
    assert!(!enabled.disabled);
    assert_eq!(enabled.token_version, got.token_version + 1);
    assert_eq!(
        store.check_access(user.id, family, jti(), enabled.token_version),
        Err(AccessDenied::FamilyRevoked)
    );
    assert!(store
        .open_session(
            FamilyId::new(),
            &enabled,
            [2; 32],
            NewSession::default(),
            NOW,
            POLICY,
            note(AuditEvent::Login)
        )
        .await
        .unwrap());
}

pub async fn delete_user_removes_email_index_and_families(h: &mut dyn Harness) {
    let store = h.open().await;
    let (user, family) = session(&*store).await;
    let email = store.user(user).await.unwrap().unwrap().email;
    assert_eq!(
        store
            .delete_user(user, note(AuditEvent::UserDeleted))
            .await
            .unwrap(),
        UserUpdate::Done
    );
    assert_eq!(
        store
            .delete_user(user, note(AuditEvent::UserDeleted))
            .await
            .unwrap(),
        UserUpdate::NoSuchUser
    );
    assert_eq!(store.user(user).await.unwrap(), None);
    assert_eq!(store.user_by_email(&email).await.unwrap(), None);
    assert_eq!(store.counts(), Counts::default());
    assert_eq!(
        store.check_access(user, family, jti(), 0),
        Err(AccessDenied::UnknownUser)
    );
    assert_eq!(
        store
            .rotate(
                presented(family, 0, [0; 32]),
                successor(1),
                NOW,
                POLICY,
                note(AuditEvent::RefreshReuse)
            )
            .await
            .unwrap(),
        Rotation::Unknown
    );
    // The email is free again, and nothing comes back on reopen.
    let store = h.reopen(store).await;
    assert_eq!(store.counts(), Counts::default());
    new_user(&*store, &email).await;
}

pub async fn list_users_pages_in_id_order(h: &mut dyn Harness) {
    let store = h.open().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(new_user(&*store, &format!("u{i}@example.com")).await.id);
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_users(3, after).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        after = page.last().map(|u| u.id);
        seen.extend(page.into_iter().map(|u| u.id));
    }
    assert_eq!(seen, ids);
    assert!(store.list_users(0, None).await.unwrap().is_empty());
}

pub async fn rotate_installs_successor_and_old_token_is_reuse(h: &mut dyn Harness) {
    let store = h.open().await;
    let (user, family) = session(&*store).await;
    let first = presented(family, 0, [0; 32]);
    assert_eq!(
        store
            .rotate(
                first,
                successor(1),
                NOW,
                NO_GRACE,
                note(AuditEvent::RefreshReuse)
            )
            .await
            .unwrap(),
        Rotation::Rotated {
            family,
            user: stored(&*store, user).await,
            generation: 1,
            mfa: false
        }
    );
    let second = presented(family, 1, [1; 32]);
    assert_eq!(
        store
            .rotate(
                second,
                successor(2),
                NOW.plus(1),
                NO_GRACE,
                note(AuditEvent::RefreshReuse)
            )
            .await
            .unwrap(),
        Rotation::Rotated {
            family,
            user: stored(&*store, user).await,
            generation: 2,
            mfa: false
        }
    );
    // Replaying the superseded token revokes the family...
    assert_eq!(
        store
            .rotate(
                second,
                successor(3),
                NOW.plus(2),
                NO_GRACE,
                note(AuditEvent::RefreshReuse)
            )
            .await
            .unwrap(),
        Rotation::Reused { family, user }
    );
    // ...so the newest token stops working too, and so do the family's access tokens.
    let newest = presented(family, 2, [2; 32]);
    assert_eq!(
        store
            .rotate(
                newest,
                successor(4),
                NOW.plus(3),
                NO_GRACE,
                note(AuditEvent::RefreshReuse)
            )
            .await
            .unwrap(),
        Rotation::Revoked
    );
    assert_eq!(
        store.check_access(user, family, jti(), 0),
        Err(AccessDenied::FamilyRevoked)
    );
}

pub async fn rotate_rejects_unknown_and_forged_presentations(h: &mut dyn Harness) {
    let store = h.open().await;
    let (_, family) = session(&*store).await;
    let cases = [
        ("no such family", presented(FamilyId::new(), 0, [0; 32])),
        (
            "current generation, wrong hash",
            presented(family, 0, [9; 32]),
        ),
        ("future generation", presented(family, 1, [0; 32])),
    ];
    for (name, p) in cases {
        assert_eq!(
            store
                .rotate(p, successor(1), NOW, POLICY, note(AuditEvent::RefreshReuse))
                .await
                .unwrap(),
            Rotation::Unknown,
            "{name}"
        );
    }
    // None of them disturbed the family.
    assert!(matches!(
        store
            .rotate(
                presented(family, 0, [0; 32]),
                successor(1),
                NOW,
                POLICY,
                note(AuditEvent::RefreshReuse)
            )
            .await
            .unwrap(),
        Rotation::Rotated { generation: 1, .. }
    ));
}

pub async fn grace_returns_the_same_successor_then_becomes_reuse(h: &mut dyn Harness) {
    let store = h.open().await;
    let (user, family) = session(&*store).await;
    let first = presented(family, 0, [0; 32]);
    store
        .rotate(
            first,
            successor(1),
            NOW,
            POLICY,
            note(AuditEvent::RefreshReuse),
        )
        .await
        .unwrap();
    let retried = Rotation::Retried {
        family,
        user: stored(&*store, user).await,
        generation: 1,
        sealed: successor(1).sealed,
        mfa: false,
    };
    // Inside the grace, the retry gets the stored successor, whatever it offers itself.
    assert_eq!(
        store
            .rotate(
                first,
                successor(7),
                NOW.plus(9),
                POLICY,
                note(AuditEvent::RefreshReuse)
            )
            .await
            .unwrap(),
        retried
    );
    assert_eq!(
        store
            .rotate(
                first,
                successor(8),
                NOW,
                POLICY,
                note(AuditEvent::RefreshReuse)
            )
            .await
            .unwrap(),
        retried
    );
    // The current token still rotates normally.
    let current = presented(family, 1, [1; 32]);
    assert_eq!(
        store
            .rotate(
                current,
                successor(1),
                NOW.plus(9),
                POLICY,
                note(AuditEvent::RefreshReuse)
            )
            .await
            .unwrap(),
        Rotation::Rotated {
            family,
            user: stored(&*store, user).await,
            generation: 2,
            mfa: false
        }
    );
    // The grandparent is reuse even inside the grace.
    assert_eq!(
        store
            .rotate(
                first,
                successor(9),
                NOW.plus(9),
                POLICY,
                note(AuditEvent::RefreshReuse)
            )
            .await
            .unwrap(),
        Rotation::Reused { family, user }
    );
}

pub async fn after_the_grace_the_superseded_token_is_reuse(h: &mut dyn Harness) {
    let store = h.open().await;
    let (user, family) = session(&*store).await;
    let first = presented(family, 0, [0; 32]);
    store
        .rotate(
            first,
            successor(1),
            NOW,
            POLICY,
            note(AuditEvent::RefreshReuse),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .rotate(
                first,
                successor(2),
                NOW.plus(10),
                POLICY,
                note(AuditEvent::RefreshReuse)
            )
            .await
            .unwrap(),
        Rotation::Reused { family, user }
    );
    assert_eq!(
        store
            .rotate(
                presented(family, 1, [1; 32]),
                successor(2),
                NOW.plus(11),
                POLICY,
                note(AuditEvent::RefreshReuse)
            )
            .await
            .unwrap(),
        Rotation::Revoked
    );
}

pub async fn grace_zero_means_every_superseded_token_is_reuse(h: &mut dyn Harness) {
    let store = h.open().await;
    let (user, family) = session(&*store).await;
    let first = presented(family, 0, [0; 32]);
    store
        .rotate(
            first,
            successor(1),
            NOW,
            NO_GRACE,
            note(AuditEvent::RefreshReuse),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .rotate(
                first,
                successor(2),
                NOW,
                NO_GRACE,
                note(AuditEvent::RefreshReuse)
            )
            .await
            .unwrap(),
        Rotation::Reused { family, user }
    );
}

pub async fn expiry_slides_per_token_up_to_the_absolute_maximum(h: &mut dyn Harness) {
    let store = h.open().await;
    let (user, family) = session(&*store).await;
    // Token 0 expires at NOW+100 (refresh TTL).
    assert_eq!(
        store
            .rotate(
                presented(family, 0, [0; 32]),
                successor(1),
                NOW.plus(100),
                POLICY,
                note(AuditEvent::RefreshReuse)
            )
            .await
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
            .rotate(
                p,
                successor(generation + 1),
                at,
                POLICY,
                note(AuditEvent::RefreshReuse),
            )
            .await
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
            .rotate(
                p,
                successor(99),
                NOW.plus(999),
                POLICY,
                note(AuditEvent::RefreshReuse)
            )
            .await
            .unwrap(),
        Rotation::Rotated {
            family,
            user: stored(&*store, user).await,
            generation: 11,
            mfa: false
        }
    );
}

pub async fn retry_of_an_expired_family_is_expired(h: &mut dyn Harness) {
    let store = h.open().await;
    let (_, family) = session(&*store).await;
    let first = presented(family, 0, [0; 32]);
    let long_grace = SessionPolicy {
        grace_secs: 10_000,
        ..POLICY
    };
    store
        .rotate(
            first,
            successor(1),
            NOW,
            long_grace,
            note(AuditEvent::RefreshReuse),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .rotate(
                first,
                successor(2),
                NOW.plus(100),
                long_grace,
                note(AuditEvent::RefreshReuse)
            )
            .await
            .unwrap(),
        Rotation::Expired
    );
}

pub async fn revoke_family_and_revoke_all(h: &mut dyn Harness) {
    let store = h.open().await;
    let (user, family) = session(&*store).await;
    let other = FamilyId::new();
    assert!(add_family(&*store, user, other, 5).await.unwrap());
    assert!(add_family(&*store, user, other, 5).await.is_err());
    assert_eq!(store.counts().families, 2);

    assert!(store
        .revoke_session(family, NOW, note(AuditEvent::SessionRevoked))
        .await
        .unwrap());
    assert!(!store
        .revoke_session(family, NOW, note(AuditEvent::SessionRevoked))
        .await
        .unwrap());
    assert!(!store
        .revoke_session(FamilyId::new(), NOW, note(AuditEvent::SessionRevoked))
        .await
        .unwrap());
    assert_eq!(
        store.check_access(user, family, jti(), 0),
        Err(AccessDenied::FamilyRevoked)
    );
    assert_eq!(store.check_access(user, other, jti(), 0), Ok(()));

    assert!(store
        .revoke_user(user, NOW, note(AuditEvent::LogoutAll))
        .await
        .unwrap());
    assert!(!store
        .revoke_user(UserId(Uuid::new_v4()), NOW, note(AuditEvent::LogoutAll))
        .await
        .unwrap());
    assert_eq!(view_version(&*store, user), Some(1));
    assert_eq!(store.user(user).await.unwrap().unwrap().token_version, 1);
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
            .rotate(
                presented(other, 0, [5; 32]),
                successor(1),
                NOW,
                POLICY,
                note(AuditEvent::RefreshReuse)
            )
            .await
            .unwrap(),
        Rotation::Revoked
    );
    assert_eq!(store.counts().families, 0);
}

pub async fn check_access_reports_each_rule(h: &mut dyn Harness) {
    let store = h.open().await;
    let (user, family) = session(&*store).await;
    let (other_user, other_family) = session(&*store).await;
    let bad = jti();
    store.blacklist(bad, NOW.plus(60)).await.unwrap();
    store
        .revoke_user(other_user, NOW, note(AuditEvent::LogoutAll))
        .await
        .unwrap();
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
            FamilyId::new(),
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

pub async fn blacklist_is_remembered_and_swept(h: &mut dyn Harness) {
    let store = h.open().await;
    // A live session to present the jtis with.
    let (user, family) = session(&*store).await;
    let listed = |store: &dyn Storage, jti| is_blacklisted(store, user, family, jti);
    let a = jti();
    let b = jti();
    store.blacklist(a, NOW.plus(10)).await.unwrap();
    store.blacklist(b, NOW.plus(20)).await.unwrap();
    store.blacklist(b, NOW.plus(5)).await.unwrap(); // keeps the later exp
    assert!(listed(&*store, a));
    assert!(!listed(&*store, jti()));

    let store = h.reopen(store).await;
    assert!(listed(&*store, a) && listed(&*store, b));
    assert_eq!(store.counts().blacklist, 2);
    assert_eq!(
        store
            .sweep(NOW.plus(9), 0, KEEP_AUDIT)
            .await
            .unwrap()
            .blacklist,
        0
    );
    assert_eq!(
        store
            .sweep(NOW.plus(10), 0, KEEP_AUDIT)
            .await
            .unwrap()
            .blacklist,
        1
    );
    assert!(!listed(&*store, a));
    assert!(listed(&*store, b));
    assert_eq!(
        store
            .sweep(NOW.plus(20), 0, KEEP_AUDIT)
            .await
            .unwrap()
            .blacklist,
        1
    );
    assert_eq!(store.counts().blacklist, 0);
}

pub async fn sweep_deletes_ended_families_after_retention_and_counts_return_to_zero(
    h: &mut dyn Harness,
) {
    let store = h.open().await;
    let (user, revoked) = session(&*store).await;
    let live = FamilyId::new();
    add_family(&*store, user, live, 3).await.unwrap();
    store
        .revoke_session(revoked, NOW.plus(50), note(AuditEvent::SessionRevoked))
        .await
        .unwrap();
    store.blacklist(jti(), NOW.plus(30)).await.unwrap();
    store
        .add_signing_key(key("k1", NOW), None, note(AuditEvent::KeyRotated))
        .await
        .unwrap();
    store
        .add_signing_key(
            key("k2", NOW.plus(40)),
            Some(NOW.plus(40)),
            note(AuditEvent::KeyRotated),
        )
        .await
        .unwrap();

    // The revoked family is kept for the retention (access tokens may still name it).
    let retain = 15;
    assert_eq!(
        store.sweep(NOW.plus(60), retain, KEEP_AUDIT).await.unwrap(),
        Sweep {
            blacklist: 1,
            families: 0,
            keys: 1,
            challenges: 0,
            audit: 0
        }
    );
    assert_eq!(
        store.sweep(NOW.plus(65), retain, KEEP_AUDIT).await.unwrap(),
        Sweep {
            blacklist: 0,
            families: 1,
            keys: 0,
            challenges: 0,
            audit: 0
        }
    );
    // The live family expires at NOW+100 and goes `retain` later.
    assert_eq!(
        store
            .sweep(NOW.plus(114), retain, KEEP_AUDIT)
            .await
            .unwrap(),
        Sweep::default()
    );
    assert_eq!(store.counts().families, 1);
    assert_eq!(
        store
            .sweep(NOW.plus(115), retain, KEEP_AUDIT)
            .await
            .unwrap(),
        Sweep {
            blacklist: 0,
            families: 1,
            keys: 0,
            challenges: 0,
            audit: 0
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
    let store = h.reopen(store).await;
    assert_eq!(
        store.counts(),
        Counts {
            users: 1,
            families: 0,
            blacklist: 0
        }
    );
    assert_eq!(store.signing_keys().await.unwrap().len(), 1);
    // The swept families are gone from the user index too: revoke-all finds nothing to revoke.
    assert!(store
        .revoke_user(user, NOW.plus(200), note(AuditEvent::LogoutAll))
        .await
        .unwrap());
    assert_eq!(
        store
            .delete_user(user, note(AuditEvent::UserDeleted))
            .await
            .unwrap(),
        UserUpdate::Done
    );
    assert_eq!(store.counts(), Counts::default());
}

pub async fn signing_keys_rotate_and_persist(h: &mut dyn Harness) {
    let store = h.open().await;
    assert!(store.signing_keys().await.unwrap().is_empty());
    store
        .add_signing_key(key("k1", NOW), None, note(AuditEvent::KeyRotated))
        .await
        .unwrap();
    store
        .add_signing_key(
            key("k2", NOW.plus(1)),
            Some(NOW.plus(1)),
            note(AuditEvent::KeyRotated),
        )
        .await
        .unwrap();
    assert!(matches!(
        store.add_signing_key(key("k1", NOW), None, note(AuditEvent::KeyRotated)).await,
        Err(StoreError::KidTaken(kid)) if kid == "k1"
    ));
    let store = h.reopen(store).await;
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(
        keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
        ["k1", "k2"]
    );
    assert_eq!(keys[0].retired_at, Some(NOW.plus(1)));
    assert_eq!(keys[1].retired_at, None);
    assert_eq!(keys[1].secret, b"k2".repeat(8));
    assert!(!format!("{:?}", keys[1]).contains("k2k2"));
}

pub async fn refresh_mac_key_is_random_and_stable(h: &mut dyn Harness) {
    let store = h.open().await;
    let key = store.refresh_mac_key();
    assert_ne!(key, [0; 32]);
    let store = h.reopen(store).await;
    assert_eq!(store.refresh_mac_key(), key);
    let mut elsewhere = h.another();
    let other = elsewhere.open().await;
    assert_ne!(other.refresh_mac_key(), key);
}

pub async fn view_survives_reopen(h: &mut dyn Harness) {
    let store = h.open().await;
    let (user, revoked) = session(&*store).await;
    let live = FamilyId::new();
    add_family(&*store, user, live, 4).await.unwrap();
    store
        .revoke_session(revoked, NOW, note(AuditEvent::SessionRevoked))
        .await
        .unwrap();
    let (bumped, _) = session(&*store).await;
    store
        .revoke_user(bumped, NOW, note(AuditEvent::LogoutAll))
        .await
        .unwrap();
    let (disabled, _) = session(&*store).await;
    store
        .disable_user(disabled, NOW, note(AuditEvent::UserDisabled))
        .await
        .unwrap();
    let gone = jti();
    store.blacklist(gone, NOW.plus(60)).await.unwrap();
    let before = store.counts();

    let store = h.reopen(store).await;
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
    assert_eq!(view_version(&*store, bumped), Some(1));
    assert_eq!(
        store.check_access(disabled, live, jti(), 0),
        Err(AccessDenied::UserDisabled)
    );
    assert_eq!(
        store
            .rotate(
                presented(revoked, 0, [0; 32]),
                successor(1),
                NOW,
                POLICY,
                note(AuditEvent::RefreshReuse)
            )
            .await
            .unwrap(),
        Rotation::Revoked
    );
}

pub async fn the_last_enabled_admin_cannot_be_deleted_disabled_or_demoted(h: &mut dyn Harness) {
    let store = h.open().await;
    let admin = new_user(&*store, "root@example.com").await.id;
    let admin_role = ["admin".to_owned()];
    assert_eq!(
        store
            .set_roles(admin, &admin_role, note(AuditEvent::RolesChanged))
            .await
            .unwrap(),
        UserUpdate::Done
    );
    assert_eq!(
        store
            .delete_user(admin, note(AuditEvent::UserDeleted))
            .await
            .unwrap(),
        UserUpdate::LastAdmin
    );
    assert_eq!(
        store
            .disable_user(admin, NOW, note(AuditEvent::UserDisabled))
            .await
            .unwrap(),
        UserUpdate::LastAdmin
    );
    assert_eq!(
        store
            .set_roles(admin, &[], note(AuditEvent::RolesChanged))
            .await
            .unwrap(),
        UserUpdate::LastAdmin
    );
    assert!(store
        .user(admin)
        .await
        .unwrap()
        .is_some_and(|u| !u.disabled && u.roles == admin_role));
    // A disabled second admin does not count; an enabled one does.
    let second = new_user(&*store, "second@example.com").await.id;
    assert_eq!(
        store
            .set_roles(second, &admin_role, note(AuditEvent::RolesChanged))
            .await
            .unwrap(),
        UserUpdate::Done
    );
    assert_eq!(
        store
            .disable_user(second, NOW, note(AuditEvent::UserDisabled))
            .await
            .unwrap(),
        UserUpdate::Done
    );
    assert_eq!(
        store
            .delete_user(admin, note(AuditEvent::UserDeleted))
            .await
            .unwrap(),
        UserUpdate::LastAdmin
    );
    assert_eq!(
        store
            .enable_user(second, note(AuditEvent::UserEnabled))
            .await
            .unwrap(),
        UserUpdate::Done
    );
    assert_eq!(
        store
            .delete_user(admin, note(AuditEvent::UserDeleted))
            .await
            .unwrap(),
        UserUpdate::Done
    );
    // Now `second` is the last one; a non-admin is never refused.
    assert_eq!(
        store
            .delete_user(second, note(AuditEvent::UserDeleted))
            .await
            .unwrap(),
        UserUpdate::LastAdmin
    );
    let plain = new_user(&*store, "plain@example.com").await.id;
    assert_eq!(
        store
            .disable_user(plain, NOW, note(AuditEvent::UserDisabled))
            .await
            .unwrap(),
        UserUpdate::Done
    );
    assert_eq!(
        store
            .delete_user(plain, note(AuditEvent::UserDeleted))
            .await
            .unwrap(),
        UserUpdate::Done
    );
}

pub async fn a_new_session_past_the_cap_revokes_the_oldest(h: &mut dyn Harness) {
    let store = h.open().await;
    let user = new_user(&*store, "many@example.com").await;
    let policy = SessionPolicy {
        max_per_user: 3,
        ..POLICY
    };
    let mut families = Vec::new();
    for n in 0..5u8 {
        let family = FamilyId::new();
        let at = NOW.plus(i64::from(n));
        assert!(store
            .open_session(
                family,
                &user,
                [n; 32],
                NewSession::default(),
                at,
                policy,
                note(AuditEvent::Login)
            )
            .await
            .unwrap());
        families.push(family);
    }
    let live: Vec<bool> = families
        .iter()
        .map(|f| store.check_access(user.id, *f, jti(), 0).is_ok())
        .collect();
    assert_eq!(live, [false, false, true, true, true]);
    assert_eq!(store.counts().families, 3);
    assert_eq!(
        store
            .rotate(
                presented(families[0], 0, [0; 32]),
                successor(9),
                NOW.plus(9),
                policy,
                note(AuditEvent::RefreshReuse)
            )
            .await
            .unwrap(),
        Rotation::Revoked
    );
}

pub async fn eight_racing_rotations_without_grace_have_one_winner(h: &mut dyn Harness) {
    let outcomes = race(h, NO_GRACE).await;
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

pub async fn eight_racing_rotations_with_grace_share_one_successor(h: &mut dyn Harness) {
    let outcomes = race(h, POLICY).await;
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

/// Eight concurrent presentations of generation 0, the `i`th offering `successor(i + 1)`:
/// all eight are submitted before the first is answered.
async fn race(h: &mut dyn Harness, policy: SessionPolicy) -> Vec<Rotation> {
    let store = h.open().await;
    let (_, family) = session(&*store).await;
    let pending: Vec<_> = (1..=8u8)
        .map(|n| {
            store.rotate(
                presented(family, 0, [0; 32]),
                successor(n),
                NOW,
                policy,
                note(AuditEvent::RefreshReuse),
            )
        })
        .collect();
    let mut outcomes = Vec::new();
    for p in pending {
        outcomes.push(p.await.unwrap());
    }
    outcomes
}

pub async fn change_password_keeps_only_the_named_session_and_survives_reopen(h: &mut dyn Harness) {
    let store = h.open().await;
    let (user, keep) = session(&*store).await;
    let other = FamilyId::new();
    assert!(add_family(&*store, user, other, 6).await.unwrap());
    assert!(store
        .change_password(
            user,
            &store.user(user).await.unwrap().unwrap().password_hash,
            "$new-hash",
            Some(keep),
            NOW,
            note(AuditEvent::PasswordChanged)
        )
        .await
        .unwrap());
    assert_eq!(
        store.user(user).await.unwrap().unwrap().password_hash,
        "$new-hash"
    );
    assert_eq!(store.check_access(user, keep, jti(), 0), Ok(()));
    assert_eq!(
        store.check_access(user, other, jti(), 0),
        Err(AccessDenied::FamilyRevoked)
    );
    assert_eq!(view_version(&*store, user), Some(0), "no version bump");
    let store = h.reopen(store).await;
    assert_eq!(store.check_access(user, keep, jti(), 0), Ok(()));
    assert_eq!(
        store.check_access(user, other, jti(), 0),
        Err(AccessDenied::FamilyRevoked)
    );
    assert!(!store
        .change_password(
            UserId(Uuid::new_v4()),
            "$x",
            "$y",
            None,
            NOW,
            note(AuditEvent::PasswordChanged)
        )
        .await
        .unwrap());
}

pub async fn a_session_is_not_created_for_credentials_that_changed_while_they_were_checked(
    h: &mut dyn Harness,
) {
    let store = h.open().await;
    let seen = new_user(&*store, "race@example.com").await;
    // Each change below commits between the credential check and open_session.
    for name in [
        "password changed",
        "logout-all",
        "roles changed",
        "disabled",
    ] {
        let seen = store.user(seen.id).await.unwrap().unwrap();
        match name {
            "password changed" => assert!(store
                .change_password(
                    seen.id,
                    &seen.password_hash,
                    "$other",
                    None,
                    NOW,
                    note(AuditEvent::PasswordChanged)
                )
                .await
                .unwrap()),
            "logout-all" => assert!(store
                .revoke_user(seen.id, NOW, note(AuditEvent::LogoutAll))
                .await
                .unwrap()),
            "roles changed" => assert_eq!(
                store
                    .set_roles(seen.id, &[], note(AuditEvent::RolesChanged))
                    .await
                    .unwrap(),
                UserUpdate::Done
            ),
            _ => assert_eq!(
                store
                    .disable_user(seen.id, NOW, note(AuditEvent::UserDisabled))
                    .await
                    .unwrap(),
                UserUpdate::Done
            ),
        }
        let family = FamilyId::new();
        assert!(
            !store
                .open_session(
                    family,
                    &seen,
                    [9; 32],
                    NewSession::default(),
                    NOW,
                    POLICY,
                    note(AuditEvent::Login)
                )
                .await
                .unwrap(),
            "{name}"
        );
        store
            .enable_user(seen.id, note(AuditEvent::UserEnabled))
            .await
            .unwrap();
        let version = view_version(&*store, seen.id).unwrap();
        assert_eq!(
            store.check_access(seen.id, family, jti(), version),
            Err(AccessDenied::FamilyRevoked),
            "{name}: no family was stored"
        );
    }
    let fresh = store.user(seen.id).await.unwrap().unwrap();
    assert!(store
        .open_session(
            FamilyId::new(),
            &fresh,
            [9; 32],
            NewSession::default(),
            NOW,
            POLICY,
            note(AuditEvent::Login)
        )
        .await
        .unwrap());
}

pub async fn a_role_change_stops_tokens_that_carry_the_old_roles(h: &mut dyn Harness) {
    let store = h.open().await;
    let (user, family) = session(&*store).await;
    assert_eq!(store.check_access(user, family, jti(), 0), Ok(()));
    assert_eq!(
        store
            .set_roles(user, &["admin".to_owned()], note(AuditEvent::RolesChanged))
            .await
            .unwrap(),
        UserUpdate::Done
    );
    assert_eq!(
        store.check_access(user, family, jti(), 0),
        Err(AccessDenied::StaleVersion)
    );
    assert_eq!(store.check_access(user, family, jti(), 1), Ok(()));
}

pub async fn retiring_signing_keys_marks_only_the_live_ones(h: &mut dyn Harness) {
    let store = h.open().await;
    let key = |kid: &str| StoredKey {
        kid: kid.to_owned(),
        secret: vec![1; 32],
        created_at: NOW,
        retired_at: None,
    };
    store
        .add_signing_key(key("a"), None, note(AuditEvent::KeyRotated))
        .await
        .unwrap();
    store
        .add_signing_key(key("b"), Some(NOW), note(AuditEvent::KeyRotated))
        .await
        .unwrap();
    assert_eq!(
        store.retire_signing_keys(NOW.plus(5)).await.unwrap(),
        1,
        "only b was live"
    );
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(
        keys[0].retired_at,
        Some(NOW),
        "a keeps its first retirement"
    );
    assert_eq!(keys[1].retired_at, Some(NOW.plus(5)));
    assert_eq!(store.retire_signing_keys(NOW.plus(9)).await.unwrap(), 0);
}

pub async fn a_password_change_checked_before_a_concurrent_change_does_not_land(
    h: &mut dyn Harness,
) {
    let store = h.open().await;
    let (user, keep) = session(&*store).await;
    let checked = store.user(user).await.unwrap().unwrap().password_hash;
    // Another change commits first (the victim's, say) ...
    assert!(store
        .change_password(
            user,
            &checked,
            "$victims-new",
            Some(keep),
            NOW,
            note(AuditEvent::PasswordChanged)
        )
        .await
        .unwrap());
    // ... so the one checked against the old hash writes nothing.
    assert!(!store
        .change_password(
            user,
            &checked,
            "$attackers",
            Some(keep),
            NOW,
            note(AuditEvent::PasswordChanged)
        )
        .await
        .unwrap());
    assert_eq!(
        store.user(user).await.unwrap().unwrap().password_hash,
        "$victims-new"
    );
    // A session revoked meanwhile cannot change the password either.
    assert!(store
        .revoke_session(keep, NOW, note(AuditEvent::SessionRevoked))
        .await
        .unwrap());
    assert!(!store
        .change_password(
            user,
            "$victims-new",
            "$x",
            Some(keep),
            NOW,
            note(AuditEvent::PasswordChanged)
        )
        .await
        .unwrap());
    // Nor can a disabled user.
    assert_eq!(
        store
            .disable_user(user, NOW, note(AuditEvent::UserDisabled))
            .await
            .unwrap(),
        UserUpdate::Done
    );
    assert!(!store
        .change_password(
            user,
            "$victims-new",
            "$x",
            None,
            NOW,
            note(AuditEvent::PasswordChanged)
        )
        .await
        .unwrap());
}

pub async fn disable_revokes_every_session_in_the_same_write(h: &mut dyn Harness) {
    let store = h.open().await;
    let (user, first) = session(&*store).await;
    let second = FamilyId::new();
    assert!(add_family(&*store, user, second, 7).await.unwrap());
    assert_eq!(
        store
            .disable_user(user, NOW, note(AuditEvent::UserDisabled))
            .await
            .unwrap(),
        UserUpdate::Done
    );
    assert_eq!(
        store.counts().families,
        0,
        "both sessions revoked with the flag"
    );
    let store = h.reopen(store).await;
    assert_eq!(store.counts().families, 0);
    assert_eq!(
        store
            .enable_user(user, note(AuditEvent::UserEnabled))
            .await
            .unwrap(),
        UserUpdate::Done
    );
    for (family, hash) in [(first, 0), (second, 7)] {
        assert_eq!(
            store
                .rotate(
                    presented(family, 0, [hash; 32]),
                    successor(1),
                    NOW,
                    POLICY,
                    note(AuditEvent::RefreshReuse)
                )
                .await
                .unwrap(),
            Rotation::Revoked
        );
    }
}

pub async fn rotate_answers_the_user_as_of_the_rotation(h: &mut dyn Harness) {
    let store = h.open().await;
    let (user, family) = session(&*store).await;
    let roles = vec!["editor".to_owned()];
    assert_eq!(
        store
            .set_roles(user, &roles, note(AuditEvent::RolesChanged))
            .await
            .unwrap(),
        UserUpdate::Done
    );
    let got = store
        .rotate(
            presented(family, 0, [0; 32]),
            successor(1),
            NOW,
            POLICY,
            note(AuditEvent::RefreshReuse),
        )
        .await
        .unwrap();
    // The roles and version the new access token must carry, read in the rotation's own
    // transaction: no second read after it.
    let Rotation::Rotated { user: seen, .. } = got else {
        panic!("{got:?}");
    };
    assert_eq!(seen.roles, roles);
    assert_eq!(seen.token_version, 1);
    assert_eq!(seen, stored(&*store, user).await);
}

pub async fn logout_blacklists_and_revokes_in_one_write(h: &mut dyn Harness) {
    let store = h.open().await;
    let (user, family) = session(&*store).await;
    let other = FamilyId::new();
    assert!(add_family(&*store, user, other, 3).await.unwrap());
    let token = jti();
    store
        .end_session(family, token, NOW.plus(60), NOW, note(AuditEvent::Logout))
        .await
        .unwrap();
    let check = |store: &dyn Storage| {
        assert_eq!(
            store.check_access(user, family, jti(), 0),
            Err(AccessDenied::FamilyRevoked)
        );
        assert!(is_blacklisted(store, user, other, token));
        assert_eq!(store.check_access(user, other, jti(), 0), Ok(()));
        assert_eq!(store.counts().blacklist, 1);
    };
    check(&*store);
    let store = h.reopen(store).await;
    check(&*store);
}

pub async fn a_browser_session_is_found_by_its_cookie_and_ends_with_every_revocation(
    h: &mut dyn Harness,
) {
    let store = h.open().await;
    let (user, _) = session(&*store).await;
    let roles = vec!["editor".to_owned()];
    assert_eq!(
        store
            .set_roles(user, &roles, note(AuditEvent::RolesChanged))
            .await
            .unwrap(),
        UserUpdate::Done
    );
    let family = browser(&*store, user, 0xb1, NOW).await;
    let standing = store.check_browser(&[0xb1; 32], NOW, &POLICY).unwrap();
    assert_eq!(
        (standing.family, standing.user, standing.mfa),
        (family, user, true)
    );
    assert_eq!(&*standing.facts.roles, roles.as_slice());
    assert_eq!(
        &*standing.facts.email,
        stored(&*store, user).await.email.as_str()
    );
    assert_eq!(
        store.check_browser(&[0xb2; 32], NOW, &POLICY),
        Err(AccessDenied::UnknownSession)
    );
    // It is a session like any other: counted, capped, revoked by every revocation.
    assert_eq!(store.counts().families, 2);
    assert!(store
        .revoke_session(family, NOW, note(AuditEvent::SessionRevoked))
        .await
        .unwrap());
    assert_eq!(
        store.check_browser(&[0xb1; 32], NOW, &POLICY),
        Err(AccessDenied::UnknownSession)
    );
    browser(&*store, user, 0xb3, NOW).await;
    assert!(store
        .revoke_user(user, NOW, note(AuditEvent::LogoutAll))
        .await
        .unwrap());
    assert!(store.check_browser(&[0xb3; 32], NOW, &POLICY).is_err());
    browser(&*store, user, 0xb4, NOW).await;
    let hash = stored(&*store, user).await.password_hash;
    assert!(store
        .change_password(
            user,
            &hash,
            "$new",
            None,
            NOW,
            note(AuditEvent::PasswordChanged)
        )
        .await
        .unwrap());
    assert!(store.check_browser(&[0xb4; 32], NOW, &POLICY).is_err());
    browser(&*store, user, 0xb5, NOW).await;
    assert_eq!(
        store
            .disable_user(user, NOW, note(AuditEvent::UserDisabled))
            .await
            .unwrap(),
        UserUpdate::Done
    );
    assert!(store.check_browser(&[0xb5; 32], NOW, &POLICY).is_err());
    assert_eq!(
        store
            .enable_user(user, note(AuditEvent::UserEnabled))
            .await
            .unwrap(),
        UserUpdate::Done
    );
    browser(&*store, user, 0xb6, NOW).await;
    assert_eq!(
        store
            .delete_user(user, note(AuditEvent::UserDeleted))
            .await
            .unwrap(),
        UserUpdate::Done
    );
    assert!(store.check_browser(&[0xb6; 32], NOW, &POLICY).is_err());
    // Nothing comes back after a reopen.
    let store = h.reopen(store).await;
    for hash in [0xb1, 0xb3, 0xb4, 0xb5, 0xb6] {
        assert!(
            store.check_browser(&[hash; 32], NOW, &POLICY).is_err(),
            "{hash:x}"
        );
    }
}

pub async fn a_browser_session_expires_when_idle_and_its_touches_survive_a_reopen(
    h: &mut dyn Harness,
) {
    let store = h.open().await;
    let (user, _) = session(&*store).await;
    let idle = POLICY.idle_secs;
    browser(&*store, user, 0xc1, NOW).await;
    // Used just inside the window, it slides; a touch is due once the use on disk lags by a
    // quarter of the window, and only once.
    let at = NOW.plus(idle - 1);
    let standing = store.check_browser(&[0xc1; 32], at, &POLICY).unwrap();
    assert!(standing.touch_due);
    assert!(
        !store
            .check_browser(&[0xc1; 32], at, &POLICY)
            .unwrap()
            .touch_due
    );
    let later = at.plus(idle - 1);
    assert!(store.check_browser(&[0xc1; 32], later, &POLICY).is_ok());
    assert_eq!(
        store.check_browser(&[0xc1; 32], later.plus(idle), &POLICY),
        Err(AccessDenied::SessionExpired)
    );
    // A shorter configured idle applies to a session already open.
    let short = SessionPolicy {
        idle_secs: 10,
        ..POLICY
    };
    assert_eq!(
        store.check_browser(&[0xc1; 32], later.plus(10), &short),
        Err(AccessDenied::SessionExpired)
    );
    // The use at `at` reaches disk through a touch; a reopen resumes from it.
    store.touch_session(standing.family, at);
    // The touch is in the background: a later write on the same backend is ordered after it.
    store.blacklist(jti(), NOW).await.unwrap();
    let store = h.reopen(store).await;
    // Alive a whole window after the sign-in: only because the use at `at` was on disk.
    let resumed = at.plus(idle - 1);
    assert!(store.check_browser(&[0xc1; 32], resumed, &POLICY).is_ok());
    assert_eq!(
        store.check_browser(&[0xc1; 32], resumed.plus(idle), &POLICY),
        Err(AccessDenied::SessionExpired)
    );
    // The absolute end holds however it is used.
    browser(&*store, user, 0xc2, NOW).await;
    let max = NOW.plus(POLICY.session_max_secs);
    assert_eq!(
        store.check_browser(&[0xc2; 32], max, &POLICY),
        Err(AccessDenied::SessionExpired)
    );
}

pub async fn a_browser_session_is_never_rotated_and_is_swept_with_its_cookie(h: &mut dyn Harness) {
    let store = h.open().await;
    let user = new_user(&*store, "swept@example.com").await.id;
    let family = browser(&*store, user, 0xd1, NOW).await;
    // Its cookie hash presented as a refresh token of generation 0: not a refresh family.
    assert_eq!(
        store
            .rotate(
                presented(family, 0, [0xd1; 32]),
                successor(1),
                NOW,
                POLICY,
                note(AuditEvent::RefreshReuse)
            )
            .await
            .unwrap(),
        Rotation::Unknown
    );
    // Unused, it ends at its idle timeout (plus the quarter its last use on disk may lag);
    // the sweep keeps it for the retention after that, then deletes it and its cookie.
    let idle = POLICY.idle_secs;
    let ended = NOW.plus(idle + idle / 4);
    assert_eq!(
        store
            .sweep(ended.minus(1), 0, KEEP_AUDIT)
            .await
            .unwrap()
            .families,
        0
    );
    assert_eq!(store.sweep(ended, 0, KEEP_AUDIT).await.unwrap().families, 1);
    let store = h.reopen(store).await;
    assert_eq!(
        store.check_browser(&[0xd1; 32], NOW, &POLICY),
        Err(AccessDenied::UnknownSession)
    );
    // The swept cookie can be issued again (its index row went with it).
    browser(&*store, user, 0xd1, NOW.plus(idle * 2)).await;
}

const SECRET: [u8; 20] = [0x5e; 20];

/// A change to one user, made by a case through the port.
type UserChange = for<'a> fn(&'a dyn Storage, UserId) -> Pin<Box<dyn Future<Output = ()> + 'a>>;

/// A user with TOTP on: secret [`SECRET`], last accepted step 100, recovery codes hashing to
/// `[0xc1; 32]` and `[0xc2; 32]`.
async fn with_totp(store: &dyn Storage, email: &str) -> UserId {
    let user = new_user(store, email).await.id;
    assert_eq!(
        store
            .begin_totp(user, SECRET, FamilyId::new(), NOW)
            .await
            .unwrap(),
        TotpUpdate::Done
    );
    let recovery = vec![[0xc1; 32], [0xc2; 32]];
    assert_eq!(
        store
            .confirm_totp(
                user,
                SECRET,
                100,
                [7; 16],
                recovery,
                NOW,
                note(AuditEvent::MfaEnabled)
            )
            .await
            .unwrap(),
        TotpUpdate::Done
    );
    user
}

/// A challenge for `user` as it is stored now, of `kind`, live for 300 s from [`NOW`].
async fn challenge_for(store: &dyn Storage, user: UserId, hash: u8, kind: SessionKind) {
    let seen = stored(store, user).await;
    let challenge = MfaChallenge {
        user,
        token_version: seen.token_version,
        password_hash: seen.password_hash,
        kind,
        expires_at: NOW.plus(300),
        failures: 0,
    };
    store.open_challenge([hash; 32], challenge).await.unwrap();
}

async fn complete(
    store: &dyn Storage,
    hash: u8,
    factor: SecondFactor,
    first: u8,
) -> (FamilyId, MfaCompletion) {
    let family = FamilyId::new();
    let done = store
        .complete_challenge(
            [hash; 32],
            factor,
            family,
            [first; 32],
            Origin::default(),
            NOW,
            POLICY,
            note(AuditEvent::Login),
        )
        .await
        .unwrap();
    (family, done)
}

pub async fn totp_is_pending_until_confirmed_and_on_until_turned_off(h: &mut dyn Harness) {
    let store = h.open().await;
    let user = new_user(&*store, "totp@example.com").await.id;
    assert_eq!(store.totp(user).await.unwrap(), None);
    assert_eq!(
        store
            .begin_totp(user, [1; 20], FamilyId::new(), NOW)
            .await
            .unwrap(),
        TotpUpdate::Done
    );
    let pending = store.totp(user).await.unwrap().unwrap();
    assert!(!pending.is_on());
    assert_eq!(pending.secret, [1; 20]);
    assert!(
        pending.began_in.is_some(),
        "the session that began it is kept"
    );
    // A second start replaces the pending secret; a confirmation of the first one then fails.
    assert_eq!(
        store
            .begin_totp(user, SECRET, FamilyId::new(), NOW)
            .await
            .unwrap(),
        TotpUpdate::Done
    );
    let confirm = |secret: [u8; 20], step: u64| {
        store.confirm_totp(
            user,
            secret,
            step,
            [7; 16],
            vec![[0xc1; 32]],
            NOW.plus(1),
            note(AuditEvent::MfaEnabled),
        )
    };
    assert_eq!(confirm([1; 20], 50).await.unwrap(), TotpUpdate::NotEnrolled);
    assert_eq!(confirm(SECRET, 50).await.unwrap(), TotpUpdate::Done);
    assert_eq!(confirm(SECRET, 51).await.unwrap(), TotpUpdate::AlreadyOn);
    assert_eq!(
        store
            .begin_totp(user, [2; 20], FamilyId::new(), NOW)
            .await
            .unwrap(),
        TotpUpdate::AlreadyOn
    );
    let store = h.reopen(store).await;
    let on = store.totp(user).await.unwrap().unwrap();
    assert_eq!(
        (on.secret, on.confirmed_at, on.last_step, on.began_in),
        (SECRET, Some(NOW.plus(1)), Some(50), None)
    );
    assert_eq!(
        (on.recovery_salt, &on.recovery),
        ([7; 16], &vec![[0xc1; 32]])
    );
    assert!(
        !format!("{on:?}").contains("94"),
        "Debug shows the secret: {on:?}"
    );
    // Turning it off spends a factor like a sign-in does: the confirming step is used up.
    assert_eq!(
        store
            .disable_totp(user, SecondFactor::Step(50), note(AuditEvent::MfaDisabled))
            .await
            .unwrap(),
        TotpUpdate::Spent
    );
    assert_eq!(
        store
            .disable_totp(
                user,
                SecondFactor::Recovery([0xc2; 32]),
                note(AuditEvent::MfaDisabled)
            )
            .await
            .unwrap(),
        TotpUpdate::Spent
    );
    assert_eq!(
        store
            .disable_totp(user, SecondFactor::Step(51), note(AuditEvent::MfaDisabled))
            .await
            .unwrap(),
        TotpUpdate::Done
    );
    assert_eq!(store.totp(user).await.unwrap(), None);
    assert_eq!(
        store
            .disable_totp(user, SecondFactor::Step(52), note(AuditEvent::MfaDisabled))
            .await
            .unwrap(),
        TotpUpdate::NotEnrolled
    );
    // Neither a missing nor a disabled user can enrol.
    let ghost = UserId(Uuid::new_v4());
    assert_eq!(
        store
            .begin_totp(ghost, SECRET, FamilyId::new(), NOW)
            .await
            .unwrap(),
        TotpUpdate::NoSuchUser
    );
    assert_eq!(
        store
            .disable_user(user, NOW, note(AuditEvent::UserDisabled))
            .await
            .unwrap(),
        UserUpdate::Done
    );
    assert_eq!(
        store
            .begin_totp(user, SECRET, FamilyId::new(), NOW)
            .await
            .unwrap(),
        TotpUpdate::NoSuchUser
    );
    assert_eq!(
        store
            .confirm_totp(
                ghost,
                SECRET,
                1,
                [0; 16],
                Vec::new(),
                NOW,
                note(AuditEvent::MfaEnabled)
            )
            .await
            .unwrap(),
        TotpUpdate::NoSuchUser
    );
}

pub async fn a_second_factor_opens_one_session_and_is_spent_for_good(h: &mut dyn Harness) {
    let store = h.open().await;
    let user = with_totp(&*store, "spent@example.com").await;
    // With TOTP on, no session opens without a second factor.
    assert!(!add_family(&*store, user, FamilyId::new(), 9).await.unwrap());
    challenge_for(&*store, user, 0xa1, SessionKind::Api).await;
    // The confirming step (100) and earlier ones are spent; the challenge survives that.
    let (_, got) = complete(&*store, 0xa1, SecondFactor::Step(100), 1).await;
    assert_eq!(got, MfaCompletion::Spent);
    let (family, got) = complete(&*store, 0xa1, SecondFactor::Step(101), 1).await;
    assert_eq!(
        got,
        MfaCompletion::Opened {
            user: stored(&*store, user).await,
            recovery_left: None
        }
    );
    assert_eq!(
        store.totp(user).await.unwrap().unwrap().last_step,
        Some(101)
    );
    // The API session it opened passed a second factor, and says so when it rotates.
    let got = store
        .rotate(
            presented(family, 0, [1; 32]),
            successor(2),
            NOW,
            POLICY,
            note(AuditEvent::RefreshReuse),
        )
        .await
        .unwrap();
    assert!(
        matches!(got, Rotation::Rotated { mfa: true, .. }),
        "{got:?}"
    );
    // The challenge is single-use.
    let (_, got) = complete(&*store, 0xa1, SecondFactor::Step(102), 3).await;
    assert_eq!(got, MfaCompletion::UnknownChallenge);
    assert_eq!(store.challenge([0xa1; 32], NOW).await.unwrap(), None);
    // A recovery code works once; a browser challenge opens a browser session with mfa.
    challenge_for(&*store, user, 0xa2, SessionKind::Browser).await;
    let (family, got) = complete(&*store, 0xa2, SecondFactor::Recovery([0xc1; 32]), 4).await;
    assert!(
        matches!(
            got,
            MfaCompletion::Opened {
                recovery_left: Some(1),
                ..
            }
        ),
        "{got:?}"
    );
    let standing = store.check_browser(&[4; 32], NOW, &POLICY).unwrap();
    assert_eq!((standing.family, standing.mfa), (family, true));
    challenge_for(&*store, user, 0xa3, SessionKind::Api).await;
    let (_, got) = complete(&*store, 0xa3, SecondFactor::Recovery([0xc1; 32]), 5).await;
    assert_eq!(got, MfaCompletion::Spent);
    // What was spent stays spent after a restart.
    let store = h.reopen(store).await;
    for factor in [
        SecondFactor::Recovery([0xc1; 32]),
        SecondFactor::Step(101),
        SecondFactor::Recovery([0xee; 32]),
    ] {
        let (_, got) = complete(&*store, 0xa3, factor, 6).await;
        assert_eq!(got, MfaCompletion::Spent, "{factor:?}");
    }
    let (_, got) = complete(&*store, 0xa3, SecondFactor::Recovery([0xc2; 32]), 6).await;
    assert!(
        matches!(
            got,
            MfaCompletion::Opened {
                recovery_left: Some(0),
                ..
            }
        ),
        "{got:?}"
    );
}

pub async fn a_challenge_dies_of_wrong_codes_of_age_and_of_changes_to_its_user(
    h: &mut dyn Harness,
) {
    let store = h.open().await;
    let user = with_totp(&*store, "dies@example.com").await;
    challenge_for(&*store, user, 0xb1, SessionKind::Api).await;
    for _ in 0..4 {
        assert!(store
            .fail_challenge([0xb1; 32], 5, NOW, note(AuditEvent::MfaFailed))
            .await
            .unwrap());
    }
    assert!(store.challenge([0xb1; 32], NOW).await.unwrap().is_some());
    assert!(!store
        .fail_challenge([0xb1; 32], 5, NOW, note(AuditEvent::MfaFailed))
        .await
        .unwrap());
    assert_eq!(store.challenge([0xb1; 32], NOW).await.unwrap(), None);
    let (_, got) = complete(&*store, 0xb1, SecondFactor::Step(101), 1).await;
    assert_eq!(got, MfaCompletion::UnknownChallenge);
    assert!(!store
        .fail_challenge([0xb1; 32], 5, NOW, note(AuditEvent::MfaFailed))
        .await
        .unwrap());

    // It lives 300 s: not at its end, and the sweep deletes it then.
    challenge_for(&*store, user, 0xb2, SessionKind::Api).await;
    let end = NOW.plus(300);
    assert!(store
        .challenge([0xb2; 32], end.minus(1))
        .await
        .unwrap()
        .is_some());
    assert_eq!(store.challenge([0xb2; 32], end).await.unwrap(), None);
    let got = store
        .complete_challenge(
            [0xb2; 32],
            SecondFactor::Step(101),
            FamilyId::new(),
            [2; 32],
            Origin::default(),
            end,
            POLICY,
            note(AuditEvent::Login),
        )
        .await
        .unwrap();
    assert_eq!(got, MfaCompletion::UnknownChallenge);
    assert_eq!(
        store
            .sweep(end.minus(1), 0, KEEP_AUDIT)
            .await
            .unwrap()
            .challenges,
        0
    );
    assert_eq!(store.sweep(end, 0, KEEP_AUDIT).await.unwrap().challenges, 1);

    // A logout-all, a new password, a disable or TOTP turned off since the password step
    // make it stale: deleted, and no session.
    let changes: [(&str, UserChange); 4] = [
        ("revoke", |s, u| {
            Box::pin(async move {
                assert!(s
                    .revoke_user(u, NOW, note(AuditEvent::LogoutAll))
                    .await
                    .unwrap());
            })
        }),
        ("password", |s, u| {
            Box::pin(async move {
                let hash = s.user(u).await.unwrap().unwrap().password_hash;
                assert!(s
                    .change_password(
                        u,
                        &hash,
                        "$new",
                        None,
                        NOW,
                        note(AuditEvent::PasswordChanged)
                    )
                    .await
                    .unwrap());
            })
        }),
        ("disable", |s, u| {
            Box::pin(async move {
                assert_eq!(
                    s.disable_user(u, NOW, note(AuditEvent::UserDisabled))
                        .await
                        .unwrap(),
                    UserUpdate::Done
                );
            })
        }),
        ("totp off", |s, u| {
            Box::pin(async move {
                let got = s
                    .disable_totp(
                        u,
                        SecondFactor::Recovery([0xc2; 32]),
                        note(AuditEvent::MfaDisabled),
                    )
                    .await;
                assert_eq!(got.unwrap(), TotpUpdate::Done);
            })
        }),
    ];
    for (i, (name, change)) in changes.into_iter().enumerate() {
        let hash = 0xc0 + u8::try_from(i).unwrap();
        let user = with_totp(&*store, &format!("stale{i}@example.com")).await;
        challenge_for(&*store, user, hash, SessionKind::Api).await;
        change(&*store, user).await;
        let families = store.counts().families;
        let (_, got) = complete(&*store, hash, SecondFactor::Step(101), hash).await;
        assert_eq!(got, MfaCompletion::Stale, "{name}");
        assert_eq!(
            store.counts().families,
            families,
            "{name}: a session opened"
        );
        assert_eq!(
            store.challenge([hash; 32], NOW).await.unwrap(),
            None,
            "{name}"
        );
    }
}

pub async fn a_totp_reset_ends_every_session_and_deleting_the_user_deletes_its_totp(
    h: &mut dyn Harness,
) {
    let store = h.open().await;
    let user = with_totp(&*store, "reset@example.com").await;
    challenge_for(&*store, user, 0xd1, SessionKind::Api).await;
    let (family, _) = complete(&*store, 0xd1, SecondFactor::Step(101), 1).await;
    let version = view_version(&*store, user).unwrap();
    assert_eq!(store.check_access(user, family, jti(), version), Ok(()));
    assert!(store
        .reset_totp(user, NOW, note(AuditEvent::TotpReset))
        .await
        .unwrap());
    assert_eq!(store.totp(user).await.unwrap(), None);
    assert_eq!(view_version(&*store, user), Some(version + 1));
    assert_eq!(
        store.check_access(user, family, jti(), version + 1),
        Err(AccessDenied::FamilyRevoked)
    );
    // A reset of a user without TOTP still ends its sessions; of no user, nothing.
    assert!(store
        .reset_totp(user, NOW, note(AuditEvent::TotpReset))
        .await
        .unwrap());
    assert!(!store
        .reset_totp(UserId(Uuid::new_v4()), NOW, note(AuditEvent::TotpReset))
        .await
        .unwrap());
    // Back to one factor: a session opens without one.
    assert!(add_family(&*store, user, FamilyId::new(), 2).await.unwrap());

    let gone = with_totp(&*store, "gone@example.com").await;
    assert_eq!(
        store
            .delete_user(gone, note(AuditEvent::UserDeleted))
            .await
            .unwrap(),
        UserUpdate::Done
    );
    let store = h.reopen(store).await;
    assert_eq!(store.totp(gone).await.unwrap(), None);
    assert_eq!(store.totp(user).await.unwrap(), None);
}

/// Eight sign-ins racing, each on a challenge of its own, with one time step, then with one
/// recovery code: one opens a session and the rest find the factor spent, however the
/// backend interleaves them.
pub async fn eight_racing_completions_spend_a_step_or_a_recovery_code_once(h: &mut dyn Harness) {
    let store = h.open().await;
    let user = with_totp(&*store, "race@example.com").await;
    for (base, factor) in [
        (0x10, SecondFactor::Step(101)),
        (0x20, SecondFactor::Recovery([0xc1; 32])),
    ] {
        for n in 0..8u8 {
            challenge_for(&*store, user, base + n, SessionKind::Api).await;
        }
        let families = store.counts().families;
        let racing: Vec<_> = (0..8u8)
            .map(|n| {
                let store = Arc::clone(&store);
                tokio::spawn(async move { complete(&*store, base + n, factor, base + n).await.1 })
            })
            .collect();
        let mut outcomes = Vec::new();
        for one in racing {
            outcomes.push(one.await.expect("a completion panicked"));
        }
        let opened = outcomes
            .iter()
            .filter(|o| matches!(o, MfaCompletion::Opened { .. }))
            .count();
        assert_eq!(opened, 1, "{factor:?}: {outcomes:?}");
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, MfaCompletion::Opened { .. } | MfaCompletion::Spent)),
            "{factor:?}: {outcomes:?}"
        );
        assert_eq!(store.counts().families, families + 1, "{factor:?}");
    }
    let spent = store
        .audit(AuditQuery {
            user: Some(user),
            event: Some(AuditEvent::RecoveryCodeUsed),
            after: None,
            since: None,
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(spent.len(), 1, "{spent:?}");
    let totp = store.totp(user).await.unwrap().unwrap();
    assert_eq!(
        (totp.last_step, totp.recovery),
        (Some(101), vec![[0xc2; 32]])
    );
}

pub async fn a_pending_enrolment_is_swept_after_ten_minutes_and_one_that_is_on_never(
    h: &mut dyn Harness,
) {
    let store = h.open().await;
    let on = with_totp(&*store, "on@example.com").await;
    let user = new_user(&*store, "pending@example.com").await.id;
    let session = FamilyId::new();
    assert_eq!(
        store.begin_totp(user, SECRET, session, NOW).await.unwrap(),
        TotpUpdate::Done
    );
    let pending = store.totp(user).await.unwrap().unwrap();
    assert!(pending.is_pending_for(session, NOW.plus(PENDING_TOTP_SECS - 1)));
    assert!(!pending.is_pending_for(session, NOW.plus(PENDING_TOTP_SECS)));
    assert!(
        !pending.is_pending_for(FamilyId::new(), NOW),
        "another session's"
    );
    let end = NOW.plus(PENDING_TOTP_SECS);
    assert_eq!(
        store
            .sweep(end.minus(1), 0, KEEP_AUDIT)
            .await
            .unwrap()
            .challenges,
        0
    );
    assert_eq!(store.sweep(end, 0, KEEP_AUDIT).await.unwrap().challenges, 1);
    assert_eq!(store.totp(user).await.unwrap(), None);
    assert!(store.totp(on).await.unwrap().is_some_and(|t| t.is_on()));
}

pub async fn the_session_list_shows_live_sessions_newest_first_with_their_origin(
    h: &mut dyn Harness,
) {
    let store = h.open().await;
    let user = new_user(&*store, "list@example.com").await;
    let api = FamilyId::new();
    let origin = Origin {
        user_agent: Some("curl/8".to_owned()),
        client_ip: Some("192.0.2.7".parse().unwrap()),
    };
    let session = NewSession {
        kind: SessionKind::Api,
        mfa: false,
        origin: origin.clone(),
    };
    assert!(store
        .open_session(
            api,
            &user,
            [1; 32],
            session,
            NOW,
            POLICY,
            note(AuditEvent::Login)
        )
        .await
        .unwrap());
    let web = browser(&*store, user.id, 2, NOW.plus(5)).await;
    let gone = FamilyId::new();
    assert!(add_family(&*store, user.id, gone, 3).await.unwrap());
    assert!(store
        .revoke_session(gone, NOW, note(AuditEvent::SessionRevoked))
        .await
        .unwrap());

    let list = store.sessions(user.id, NOW.plus(5)).await.unwrap();
    let ids: Vec<FamilyId> = list.iter().map(|s| s.id).collect();
    assert_eq!(ids, [web, api], "live only, newest first");
    let (web_row, api_row) = (&list[0], &list[1]);
    assert_eq!(api_row.kind, SessionKind::Api);
    assert_eq!(api_row.origin, origin);
    assert_eq!(api_row.created_at, NOW);
    assert_eq!(api_row.last_used_at, NOW);
    assert_eq!(api_row.expires_at, NOW.plus(POLICY.refresh_ttl_secs));
    assert!(!api_row.mfa);
    assert_eq!(web_row.kind, SessionKind::Browser);
    assert!(web_row.mfa);
    assert_eq!(web_row.origin, Origin::default());
    assert_eq!(web_row.expires_at, NOW.plus(5 + POLICY.idle_secs));

    // Last use moves with each rotation (API) and each recorded touch (browser).
    let rotated = store
        .rotate(
            presented(api, 0, [1; 32]),
            successor(9),
            NOW.plus(40),
            POLICY,
            note(AuditEvent::RefreshReuse),
        )
        .await
        .unwrap();
    assert!(matches!(rotated, Rotation::Rotated { .. }), "{rotated:?}");
    store.touch_session(web, NOW.plus(50));
    let list = wait_for_list(&*store, user.id, NOW.plus(60), |l| {
        l[0].last_used_at == NOW.plus(50)
    })
    .await;
    assert_eq!(list[1].last_used_at, NOW.plus(40));
    assert_eq!(list[1].expires_at, NOW.plus(40 + POLICY.refresh_ttl_secs));
    assert_eq!(list[1].origin, origin, "the origin of the sign-in stays");

    // An expired session is not listed; nor is anything after a reopen that was not live.
    let store = h.reopen(store).await;
    let later = NOW.plus(40 + POLICY.refresh_ttl_secs);
    let ids: Vec<FamilyId> = store
        .sessions(user.id, later)
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, [web]);
    assert!(store
        .sessions(UserId(Uuid::new_v4()), NOW)
        .await
        .unwrap()
        .is_empty());
}

/// The list, once `ready` holds (a touch is written in the background), within a bound.
async fn wait_for_list(
    store: &dyn Storage,
    user: UserId,
    now: UnixTime,
    ready: impl Fn(&[crate::model::SessionInfo]) -> bool,
) -> Vec<crate::model::SessionInfo> {
    for _ in 0..500 {
        let list = store.sessions(user, now).await.unwrap();
        if ready(&list) {
            return list;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the session list never showed the touch");
}

pub async fn a_user_ends_only_its_own_live_sessions(h: &mut dyn Harness) {
    let store = h.open().await;
    let (alice, mine) = session(&*store).await;
    let (bob, theirs) = session(&*store).await;
    assert!(!store
        .end_own_session(alice, theirs, NOW, note(AuditEvent::SessionRevoked))
        .await
        .unwrap());
    assert_eq!(store.check_access(bob, theirs, jti(), 0), Ok(()));
    assert!(!store
        .end_own_session(
            alice,
            FamilyId::new(),
            NOW,
            note(AuditEvent::SessionRevoked)
        )
        .await
        .unwrap());
    // An expired session is not live: nothing to end.
    let expired = NOW.plus(POLICY.refresh_ttl_secs);
    assert!(!store
        .end_own_session(alice, mine, expired, note(AuditEvent::SessionRevoked))
        .await
        .unwrap());
    assert!(store
        .end_own_session(alice, mine, NOW, note(AuditEvent::SessionRevoked))
        .await
        .unwrap());
    assert_eq!(
        store.check_access(alice, mine, jti(), 0),
        Err(AccessDenied::FamilyRevoked)
    );
    assert!(!store
        .end_own_session(alice, mine, NOW, note(AuditEvent::SessionRevoked))
        .await
        .unwrap());
    let store = h.reopen(store).await;
    assert_eq!(
        store.check_access(alice, mine, jti(), 0),
        Err(AccessDenied::FamilyRevoked)
    );
    assert!(store.sessions(alice, NOW).await.unwrap().is_empty());
}

/// Every audit row, oldest first.
async fn audit_all(store: &dyn Storage) -> Vec<AuditRow> {
    store
        .audit(AuditQuery {
            user: None,
            event: None,
            after: None,
            since: None,
            limit: 10_000,
        })
        .await
        .unwrap()
}

/// The rows as (event, user, session): what a case asserts on.
fn events(rows: &[AuditRow]) -> Vec<(AuditEvent, Option<UserId>, Option<FamilyId>)> {
    rows.iter()
        .map(|r| (r.note.event, r.note.user, r.note.session))
        .collect()
}

pub async fn an_audit_row_is_written_with_its_change_and_never_without_one(h: &mut dyn Harness) {
    let store = h.open().await;
    let admin = AuditActor::Admin(UserId(Uuid::new_v4()));
    let client = Some("203.0.113.7".parse().unwrap());
    // A registration: the row names the new user, which only the backend knew.
    let ada = new_user(&*store, "ada@example.com").await;
    let taken = store
        .create_user(
            NewUser {
                email: "ADA@example.com".to_owned(),
                password_hash: "$pbkdf2-sha256$i=1$x$y".to_owned(),
                roles: Vec::new(),
            },
            NOW,
            note(AuditEvent::Registered),
        )
        .await
        .unwrap();
    assert_eq!(taken, CreateUser::EmailTaken);
    // A login's row names its session; one refused (credentials changed) writes none.
    let family = FamilyId::new();
    assert!(add_family(&*store, ada.id, family, 0).await.unwrap());
    let stale = User {
        token_version: 99,
        ..ada.clone()
    };
    assert!(!store
        .open_session(
            FamilyId::new(),
            &stale,
            [9; 32],
            NewSession::default(),
            NOW,
            POLICY,
            note(AuditEvent::Login),
        )
        .await
        .unwrap());
    // A rotation records nothing; the reuse of a superseded token records the revocation,
    // with the session and user only the backend read.
    let rotated = store
        .rotate(
            presented(family, 0, [0; 32]),
            successor(1),
            NOW,
            NO_GRACE,
            note(AuditEvent::RefreshReuse).client(client),
        )
        .await
        .unwrap();
    assert!(matches!(rotated, Rotation::Rotated { .. }), "{rotated:?}");
    let reused = store
        .rotate(
            presented(family, 0, [0; 32]),
            successor(2),
            NOW,
            NO_GRACE,
            note(AuditEvent::RefreshReuse).client(client),
        )
        .await
        .unwrap();
    assert!(matches!(reused, Rotation::Reused { .. }), "{reused:?}");
    // Operator changes: refused ones write nothing.
    let missing = UserId(Uuid::new_v4());
    let by_admin = |event| note(event).actor(admin);
    assert_eq!(
        store
            .disable_user(missing, NOW, by_admin(AuditEvent::UserDisabled))
            .await
            .unwrap(),
        UserUpdate::NoSuchUser
    );
    assert_eq!(
        store
            .disable_user(ada.id, NOW, by_admin(AuditEvent::UserDisabled))
            .await
            .unwrap(),
        UserUpdate::Done
    );
    assert!(!store
        .revoke_user(missing, NOW, by_admin(AuditEvent::LogoutAll))
        .await
        .unwrap());
    // A failed login is recorded on its own.
    store
        .record(note(AuditEvent::LoginFailed).client(client))
        .await
        .unwrap();

    let rows = audit_all(&*store).await;
    assert_eq!(
        events(&rows),
        vec![
            (AuditEvent::Registered, Some(ada.id), None),
            (AuditEvent::Login, Some(ada.id), Some(family)),
            (AuditEvent::RefreshReuse, Some(ada.id), Some(family)),
            (AuditEvent::UserDisabled, Some(ada.id), None),
            (AuditEvent::LoginFailed, None, None),
        ]
    );
    assert_eq!(rows[2].note.client, client);
    assert_eq!(rows[3].note.actor, admin);
    assert_eq!(rows[4].note.client, client);
    assert!(rows.iter().all(|r| r.note.at == NOW));
}

pub async fn the_second_factor_is_audited_with_its_changes_and_never_without_one(
    h: &mut dyn Harness,
) {
    let store = h.open().await;
    let user = with_totp(&*store, "mfa-audit@example.com").await;
    // A refused confirmation writes nothing.
    let again = store
        .confirm_totp(
            user,
            SECRET,
            200,
            [7; 16],
            Vec::new(),
            NOW,
            note(AuditEvent::MfaEnabled),
        )
        .await
        .unwrap();
    assert_eq!(again, TotpUpdate::AlreadyOn);
    // A wrong code is recorded when there is a challenge to count it against.
    challenge_for(&*store, user, 0xe1, SessionKind::Api).await;
    let failed =
        |hash: u8| store.fail_challenge([hash; 32], 5, NOW, note(AuditEvent::MfaFailed).user(user));
    assert!(failed(0xe1).await.unwrap());
    assert!(!failed(0xe9).await.unwrap());
    // A spent step opens nothing and writes nothing; a fresh one writes the login, naming its
    // session; a recovery code the login and a row of its own.
    let (_, got) = complete(&*store, 0xe1, SecondFactor::Step(100), 1).await;
    assert_eq!(got, MfaCompletion::Spent);
    let (by_step, got) = complete(&*store, 0xe1, SecondFactor::Step(101), 1).await;
    assert!(matches!(got, MfaCompletion::Opened { .. }), "{got:?}");
    challenge_for(&*store, user, 0xe2, SessionKind::Api).await;
    let (by_code, got) = complete(&*store, 0xe2, SecondFactor::Recovery([0xc1; 32]), 2).await;
    assert!(matches!(got, MfaCompletion::Opened { .. }), "{got:?}");
    // Turning TOTP off: refused, nothing; with a recovery code, two rows.
    let disable = |factor| store.disable_totp(user, factor, note(AuditEvent::MfaDisabled));
    assert_eq!(
        disable(SecondFactor::Step(101)).await.unwrap(),
        TotpUpdate::Spent
    );
    assert_eq!(
        disable(SecondFactor::Recovery([0xc2; 32])).await.unwrap(),
        TotpUpdate::Done
    );
    assert_eq!(
        disable(SecondFactor::Step(102)).await.unwrap(),
        TotpUpdate::NotEnrolled
    );
    // The operator's reset: of no user, nothing.
    let reset = |u| store.reset_totp(u, NOW, note(AuditEvent::TotpReset));
    assert!(!reset(UserId(Uuid::new_v4())).await.unwrap());
    assert!(reset(user).await.unwrap());

    let rows = audit_all(&*store).await;
    assert_eq!(
        events(&rows),
        vec![
            (AuditEvent::Registered, Some(user), None),
            (AuditEvent::MfaEnabled, Some(user), None),
            (AuditEvent::MfaFailed, Some(user), None),
            (AuditEvent::Login, Some(user), Some(by_step)),
            (AuditEvent::Login, Some(user), Some(by_code)),
            (AuditEvent::RecoveryCodeUsed, Some(user), Some(by_code)),
            (AuditEvent::MfaDisabled, Some(user), None),
            (AuditEvent::RecoveryCodeUsed, Some(user), None),
            (AuditEvent::TotpReset, Some(user), None),
        ]
    );
}

pub async fn audit_rows_page_in_write_order_and_filter_and_survive_reopen(h: &mut dyn Harness) {
    let store = h.open().await;
    let (ada, bob) = (UserId(Uuid::new_v4()), UserId(Uuid::new_v4()));
    // Written out of time order on purpose: ids follow the order of writing.
    let written = [
        note(AuditEvent::LoginFailed).user(ada),
        note(AuditEvent::LoginFailed).user(bob),
        AuditNote::new(AuditEvent::Logout, NOW.minus(5)).user(ada),
        AuditNote::new(AuditEvent::LoginFailed, NOW.plus(5)).user(ada),
        note(AuditEvent::KeyRotated).actor(AuditActor::Operator),
    ];
    for n in written {
        store.record(n).await.unwrap();
    }
    let all = audit_all(&*store).await;
    assert_eq!(
        all.iter().map(|r| r.note).collect::<Vec<_>>(),
        written.to_vec()
    );
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "ids increase");
    let query = AuditQuery {
        user: None,
        event: None,
        after: None,
        since: None,
        limit: 2,
    };
    // Pages of two, each from after the last id of the one before.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = store.audit(AuditQuery { after, ..query }).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        paged.extend(page);
    }
    assert_eq!(paged, all);
    let only = |q: AuditQuery| {
        let store = Arc::clone(&store);
        async move {
            let rows = store.audit(AuditQuery { limit: 100, ..q }).await.unwrap();
            rows.iter().map(|r| r.note).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        only(AuditQuery {
            user: Some(ada),
            ..query
        })
        .await,
        vec![written[0], written[2], written[3]]
    );
    assert_eq!(
        only(AuditQuery {
            user: Some(ada),
            event: Some(AuditEvent::LoginFailed),
            ..query
        })
        .await,
        vec![written[0], written[3]]
    );
    assert_eq!(
        only(AuditQuery {
            since: Some(NOW.plus(1)),
            ..query
        })
        .await,
        vec![written[3]]
    );
    // A filter and a page together: after the first of ada's rows, the next one of hers.
    let page = store
        .audit(AuditQuery {
            user: Some(ada),
            after: Some(all[0].id),
            limit: 1,
            ..query
        })
        .await
        .unwrap();
    assert_eq!(page, vec![all[2]]);
    let store = h.reopen(store).await;
    assert_eq!(audit_all(&*store).await, all);
    // A row written after the reopen still sorts after every earlier one.
    store.record(note(AuditEvent::Logout)).await.unwrap();
    let again = audit_all(&*store).await;
    assert_eq!(again.len(), all.len() + 1);
    assert!(again.windows(2).all(|w| w[0].id < w[1].id));
}

pub async fn audit_rows_are_swept_after_the_audit_retention(h: &mut dyn Harness) {
    let store = h.open().await;
    store.record(note(AuditEvent::LoginFailed)).await.unwrap();
    store
        .record(AuditNote::new(AuditEvent::LoginFailed, NOW.plus(10)))
        .await
        .unwrap();
    let retention = 100;
    let swept = store.sweep(NOW.plus(99), 0, retention).await.unwrap();
    assert_eq!(swept.audit, 0);
    // A row goes once it is `retention` old, not before; the newer one stays.
    let swept = store.sweep(NOW.plus(100), 0, retention).await.unwrap();
    assert_eq!(swept.audit, 1);
    let left = audit_all(&*store).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].note.at, NOW.plus(10));
    assert_eq!(
        store
            .sweep(NOW.plus(110), 0, retention)
            .await
            .unwrap()
            .audit,
        1
    );
    assert!(audit_all(&*store).await.is_empty());
    let store = h.reopen(store).await;
    assert!(audit_all(&*store).await.is_empty());
}
