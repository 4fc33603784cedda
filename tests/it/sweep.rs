//! The sweeper's baseline (issue 5 §4), through the store API: churning sessions and blacklist
//! rows past expiry and sweeping brings the row counts back to their baseline, and a second
//! churn reuses the pages the first one freed, so the file stops growing.

use latchd::store::{Counts, Jti, SessionPolicy, Store, Sweep, UserId};
use latchd::time::UnixTime;

use crate::support::db_in;

/// The server's default access TTL, as `latchd serve` and `latchd gc` pass it for retention.
const RETAIN_SECS: i64 = 900;
/// Short lifetimes, so that one sweep a little later finds everything ended.
const POLICY: SessionPolicy = SessionPolicy {
    refresh_ttl_secs: 60,
    session_max_secs: 120,
    grace_secs: 10,
};
/// Sessions (and as many blacklist rows) per churn.
const CHURN: u64 = 200;

#[test]
fn churn_then_sweep_returns_to_the_baseline_and_the_file_stops_growing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = db_in(dir.path());
    let store = Store::open(&db).expect("open");
    let t0 = UnixTime(1_000_000);
    store
        .create_user("churn@example.com", "$not-a-real-hash", &[], t0)
        .expect("user");
    let baseline = store.counts();
    assert_eq!((baseline.families, baseline.blacklist), (0, 0));

    let mut sizes = Vec::new();
    for round in 0..2 {
        let t = t0.plus(round * 10_000);
        churn(&store, t, CHURN);
        let busy = store.counts();
        assert_eq!(
            (busy.families, busy.blacklist),
            (
                usize::try_from(CHURN).expect("small"),
                usize::try_from(CHURN).expect("small")
            )
        );
        // Nothing has ended yet: a sweep now deletes nothing.
        assert_eq!(
            store.sweep_expired(t, RETAIN_SECS).expect("sweep"),
            Sweep::default()
        );
        let later = t.plus(POLICY.refresh_ttl_secs + RETAIN_SECS);
        let swept = store.sweep_expired(later, RETAIN_SECS).expect("sweep");
        assert_eq!(
            swept,
            Sweep {
                blacklist: CHURN,
                families: CHURN,
                keys: 0
            },
            "round {round}"
        );
        assert_eq!(store.counts(), baseline, "round {round}");
        sizes.push(std::fs::metadata(&db).expect("metadata").len());
    }
    // redb puts freed pages back on its allocator's free list, and the second churn fits in
    // them: the file does not grow. (It never shrinks either; redb only compacts on request.)
    assert!(
        sizes[1] <= sizes[0],
        "the file grew from {} to {} bytes over the second churn",
        sizes[0],
        sizes[1]
    );
    drop(store);

    // The view is rebuilt from the tables on open: the rows themselves are gone, not just
    // hidden from memory.
    let reopened = Store::open(&db).expect("reopen");
    assert_eq!(
        reopened.counts(),
        Counts {
            users: 1,
            ..Counts::default()
        }
    );
}

/// Starts `n` sessions of the store's first user at `t` and blacklists `n` access-token ids
/// expiring a minute later, one write each (as logins and logouts would).
pub(crate) fn churn(store: &Store, t: UnixTime, n: u64) {
    let user = first_user(store);
    for i in 0..n {
        let mut hash = [0u8; 32];
        hash[..8].copy_from_slice(&i.to_le_bytes());
        hash[8..16].copy_from_slice(&t.secs().to_le_bytes());
        let created = store
            .create_family(Store::new_family_id(), user, &hash, t, &POLICY)
            .expect("create family");
        assert!(created);
        store
            .blacklist(Jti(uuid::Uuid::new_v4()), t.plus(60))
            .expect("blacklist");
    }
}

/// The store's first user, creating one if there is none.
fn first_user(store: &Store) -> UserId {
    if let Some(user) = store.list_users(1, None).expect("list").first() {
        return user.id;
    }
    store
        .create_user("churn@example.com", "$not-a-real-hash", &[], UnixTime(0))
        .map(|created| match created {
            latchd::store::CreateUser::Created(user) => user.id,
            latchd::store::CreateUser::EmailTaken => unreachable!("no user existed"),
        })
        .expect("user")
}
