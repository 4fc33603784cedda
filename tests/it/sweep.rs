//! The sweeper's baseline (issue 5 §4), through the store API: churning sessions and blacklist
//! rows past expiry and sweeping brings the row counts back to their baseline, and later churns
//! reuse the pages earlier ones freed, so the file stops growing.

use latchd::auth::storage::Storage;
use latchd::model::{
    AuditEvent, AuditNote, Counts, CreateUser, FamilyId, Jti, NewSession, NewUser, SessionPolicy,
    Sweep, UserId,
};
use latchd::store::Store;
use latchd::time::UnixTime;

use crate::support::{db_in, wait};

/// The server's default access TTL, as `latchd serve` and `latchd gc` pass it for retention.
const RETAIN_SECS: i64 = 900;
/// Short lifetimes, so that one sweep a little later finds everything ended.
const POLICY: SessionPolicy = SessionPolicy {
    refresh_ttl_secs: 60,
    session_max_secs: 120,
    grace_secs: 10,
    max_per_user: 100,
    idle_secs: 3_600,
};
/// Sessions (and as many blacklist rows) per churn.
const CHURN: u64 = 100;
/// Churn-and-sweep rounds.
const ROUNDS: i64 = 8;

#[test]
fn churn_then_sweep_returns_to_the_baseline_and_the_file_stops_growing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = db_in(dir.path());
    let store = Store::open(&db).expect("open");
    let t0 = UnixTime(1_000_000);
    let registered = AuditNote::new(AuditEvent::Registered, t0);
    wait(store.create_user(churn_user(), t0, registered)).expect("user");
    let baseline = store.counts();
    let empty = file_len(&db);
    assert_eq!((baseline.families, baseline.blacklist), (0, 0));

    let mut sizes = Vec::new();
    for round in 0..ROUNDS {
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
            wait(store.sweep(t, RETAIN_SECS, RETAIN_SECS)).expect("sweep"),
            Sweep::default()
        );
        let later = t.plus(POLICY.refresh_ttl_secs + RETAIN_SECS);
        let swept = wait(store.sweep(later, RETAIN_SECS, RETAIN_SECS)).expect("sweep");
        assert_eq!(
            swept,
            Sweep {
                blacklist: CHURN,
                families: CHURN,
                keys: 0,
                challenges: 0,
                // Each session's login row, and in the first round the registration's.
                audit: CHURN + u64::from(round == 0),
            },
            "round {round}"
        );
        assert_eq!(store.counts(), baseline, "round {round}");
        sizes.push(file_len(&db));
    }
    // The file is redb's high-water mark: freed pages go back on its free list and the next
    // churn allocates from there. Measured (redb 4.6, 4 KiB pages): 72 KiB with only the user,
    // 140 KiB after every one of eight rounds; with the sweeps skipped, 140, 208, 312 KiB, ...
    // up to 468-620 KiB after eight. A strict "round 2 not larger than round 1" is not what we
    // assert: at 200 sessions a round, which pages a round gets depends on the random ids
    // (B-tree splits) and on when redb releases the previous commit's pages, and the size
    // wandered between 180 and 320 KiB with no trend (round 2 up to 100 KiB above or below
    // round 1).
    // The property is that rounds do not accumulate: every size stays under three rounds'
    // growth, which eight unswept rounds exceed from the third on.
    let first_growth = sizes[0] - empty;
    let bound = empty + 3 * first_growth;
    assert!(
        sizes.iter().all(|&size| size <= bound),
        "the file grew with the rounds: {empty} bytes empty, then {sizes:?} (bound {bound})"
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
    let user = wait(store.user(first_user(store)))
        .expect("read")
        .expect("user");
    for i in 0..n {
        let mut hash = [0u8; 32];
        hash[..8].copy_from_slice(&i.to_le_bytes());
        hash[8..16].copy_from_slice(&t.secs().to_le_bytes());
        let created = wait(store.open_session(
            FamilyId::new(),
            &user,
            hash,
            NewSession::default(),
            t,
            POLICY,
            AuditNote::new(AuditEvent::Login, t),
        ))
        .expect("open session");
        assert!(created);
        wait(store.blacklist(Jti(uuid::Uuid::new_v4()), t.plus(60))).expect("blacklist");
    }
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).expect("metadata").len()
}

/// The store's first user, creating one if there is none.
fn first_user(store: &Store) -> UserId {
    if let Some(user) = wait(store.list_users(1, None)).expect("list").first() {
        return user.id;
    }
    match wait(store.create_user(
        churn_user(),
        UnixTime(0),
        AuditNote::new(AuditEvent::Registered, UnixTime(0)),
    ))
    .expect("user")
    {
        CreateUser::Created(user) => user.id,
        CreateUser::EmailTaken => unreachable!("no user existed"),
    }
}

fn churn_user() -> NewUser {
    NewUser {
        email: "churn@example.com".to_owned(),
        password_hash: "$not-a-real-hash".to_owned(),
        roles: Vec::new(),
    }
}
