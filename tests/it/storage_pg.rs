//! The storage conformance suite (`latchd::conformance`) against PostgreSQL: one test per
//! case, each on a database of its own in the test binary's throw-away cluster.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use latchd::auth::storage::Storage;
use latchd::conformance::Harness;
use latchd::store::pg::{PgStore, Settings, DEFAULT_POOL_SIZE};

use crate::support::postgres;

/// How a node connects to the database at `url`.
fn settings(url: &str) -> Settings {
    Settings {
        url: url.to_owned(),
        pool_size: DEFAULT_POOL_SIZE,
    }
}

/// A runtime of two workers, as a server's: nodes' feeds run beside the test's own tasks (and
/// a check that blocks in place can).
fn two_workers() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A database of its own, created on first open.
struct Pg {
    url: Option<String>,
}

impl Pg {
    fn new() -> Self {
        Self {
            url: postgres::cluster().map(postgres::Cluster::fresh_database),
        }
    }
}

impl Harness for Pg {
    fn open(&mut self) -> Pin<Box<dyn Future<Output = Arc<dyn Storage>> + '_>> {
        let url = self.url.clone().expect("available() was checked");
        Box::pin(async move {
            let store: Arc<dyn Storage> = Arc::new(
                PgStore::connect(&settings(&url))
                    .await
                    .expect("connect to PostgreSQL"),
            );
            store
        })
    }

    fn another(&self) -> Box<dyn Harness> {
        Box::new(Pg::new())
    }

    fn available(&self) -> bool {
        self.url.is_some()
    }
}

latchd::storage_conformance!(Pg::new());

// What only a backend shared by several nodes can get wrong: two `PgStore`s on one database
// (two latchd processes) racing, truly concurrently, on one session or one user. (The
// conformance races submit on one handle, which PostgreSQL runs one after another.)

mod racing_nodes {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use latchd::auth::storage::Storage;
    use latchd::model::{
        AccessDenied, AuditEvent, AuditNote, CreateUser, FamilyId, Jti, NewSession, NewUser,
        Origin, Presented, Rotation, SessionKind, SessionPolicy, Successor, User,
    };
    use latchd::store::pg::PgStore;
    use latchd::time::UnixTime;

    use super::{settings, two_workers};
    use crate::support::postgres;

    const NOW: UnixTime = UnixTime(1_800_000_000);
    const POLICY: SessionPolicy = SessionPolicy {
        refresh_ttl_secs: 100,
        session_max_secs: 1_000,
        grace_secs: 10,
        max_per_user: 100,
        idle_secs: 100,
    };

    /// Two nodes on one fresh database, or `None` (skipped, said why) without a server.
    async fn two_nodes() -> Option<(Arc<PgStore>, Arc<PgStore>)> {
        let settings = settings(&postgres::cluster()?.fresh_database());
        let a = PgStore::connect(&settings).await.expect("connect node a");
        let b = PgStore::connect(&settings).await.expect("connect node b");
        Some((Arc::new(a), Arc::new(b)))
    }

    async fn user(store: &PgStore) -> User {
        let created = store
            .create_user(
                NewUser {
                    email: "racer@example.com".to_owned(),
                    password_hash: "$pbkdf2-sha256$i=1$x$y".to_owned(),
                    roles: vec!["user".to_owned()],
                },
                NOW,
                AuditNote::new(AuditEvent::Registered, NOW),
            )
            .await
            .unwrap();
        match created {
            CreateUser::Created(user) => user,
            CreateUser::EmailTaken => panic!("a fresh database has no users"),
        }
    }

    async fn open(store: &PgStore, user: &User, family: FamilyId, policy: SessionPolicy) -> bool {
        store
            .open_session(
                family,
                user,
                [family.0.as_bytes()[15]; 32],
                NewSession {
                    kind: SessionKind::Api,
                    mfa: false,
                    origin: Origin::default(),
                },
                NOW,
                policy,
                AuditNote::new(AuditEvent::Login, NOW),
            )
            .await
            .unwrap()
    }

    fn successor(n: u8) -> Successor {
        Successor {
            hash: [n; 32],
            sealed: [n.wrapping_add(100); 32],
        }
    }

    /// Eight rotations of generation 0 of `family`, four through each node, all in flight at
    /// once; the `i`th offers `successor(i + 1)`.
    async fn race(
        a: &Arc<PgStore>,
        b: &Arc<PgStore>,
        family: FamilyId,
        first: [u8; 32],
        policy: SessionPolicy,
    ) -> Vec<Rotation> {
        let start = Arc::new(tokio::sync::Barrier::new(8));
        let mut tasks = Vec::new();
        for n in 1..=8u8 {
            let store = Arc::clone(if n % 2 == 0 { a } else { b });
            let start = Arc::clone(&start);
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                store
                    .rotate(
                        Presented {
                            family,
                            generation: 0,
                            hash: first,
                        },
                        successor(n),
                        NOW,
                        policy,
                        AuditNote::new(AuditEvent::RefreshReuse, NOW),
                    )
                    .await
                    .unwrap()
            }));
        }
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        outcomes
    }

    #[test]
    fn two_nodes_racing_rotations_with_grace_share_one_successor() {
        two_workers().block_on(async {
            let Some((a, b)) = two_nodes().await else {
                return;
            };
            let user = user(&a).await;
            let family = FamilyId::new();
            assert!(open(&a, &user, family, POLICY).await);
            let first = [family.0.as_bytes()[15]; 32];
            let outcomes = race(&a, &b, family, first, POLICY).await;
            let winners: Vec<usize> = outcomes
                .iter()
                .enumerate()
                .filter(|(_, o)| matches!(o, Rotation::Rotated { generation: 1, .. }))
                .map(|(i, _)| i)
                .collect();
            assert_eq!(winners.len(), 1, "{outcomes:?}");
            let won = successor(u8::try_from(winners[0]).unwrap() + 1);
            for (i, o) in outcomes.iter().enumerate().filter(|(i, _)| *i != winners[0]) {
                assert!(
                    matches!(o, Rotation::Retried { generation: 1, sealed, .. } if *sealed == won.sealed),
                    "rotation {i}: {o:?}"
                );
            }
            // The winner's successor is what both nodes rotate next.
            let next = Presented {
                family,
                generation: 1,
                hash: won.hash,
            };
            let rotated = b
                .rotate(
                    next,
                    successor(50),
                    NOW,
                    POLICY,
                    AuditNote::new(AuditEvent::RefreshReuse, NOW),
                )
                .await
                .unwrap();
            assert!(
                matches!(rotated, Rotation::Rotated { generation: 2, .. }),
                "{rotated:?}"
            );
        });
    }

    #[test]
    fn two_nodes_racing_rotations_without_grace_have_one_winner_and_revoke_on_both() {
        let no_grace = SessionPolicy {
            grace_secs: 0,
            ..POLICY
        };
        two_workers().block_on(async {
            let Some((a, b)) = two_nodes().await else {
                return;
            };
            let user = user(&a).await;
            let family = FamilyId::new();
            assert!(open(&a, &user, family, no_grace).await);
            let first = [family.0.as_bytes()[15]; 32];
            let outcomes = race(&a, &b, family, first, no_grace).await;
            let rotated = outcomes
                .iter()
                .filter(|o| matches!(o, Rotation::Rotated { .. }))
                .count();
            assert_eq!(rotated, 1, "{outcomes:?}");
            // The first loser found a superseded token and revoked; the rest found it revoked.
            let reused = outcomes
                .iter()
                .filter(|o| matches!(o, Rotation::Reused { .. }))
                .count();
            assert_eq!(reused, 1, "{outcomes:?}");
            assert_eq!(
                outcomes
                    .iter()
                    .filter(|o| matches!(o, Rotation::Revoked))
                    .count(),
                6,
                "{outcomes:?}"
            );
            // Both nodes' views learn of the revocation through the feed (within a second).
            let deadline = Instant::now() + Duration::from_secs(3);
            for node in [&a, &b] {
                loop {
                    let standing = node.check_access(user.id, family, Jti(uuid::Uuid::new_v4()), 0);
                    if standing == Err(AccessDenied::FamilyRevoked) {
                        break;
                    }
                    assert!(Instant::now() < deadline, "still {standing:?}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
    }

    #[test]
    fn two_nodes_opening_sessions_for_one_user_keep_to_the_cap() {
        let cap = SessionPolicy {
            max_per_user: 2,
            ..POLICY
        };
        two_workers().block_on(async {
            let Some((a, b)) = two_nodes().await else {
                return;
            };
            let user = Arc::new(user(&a).await);
            let start = Arc::new(tokio::sync::Barrier::new(8));
            let mut tasks = Vec::new();
            for n in 0..8 {
                let store = Arc::clone(if n % 2 == 0 { &a } else { &b });
                let (user, start) = (Arc::clone(&user), Arc::clone(&start));
                tasks.push(tokio::spawn(async move {
                    start.wait().await;
                    open(&store, &user, FamilyId::new(), cap).await
                }));
            }
            for task in tasks {
                assert!(task.await.unwrap());
            }
            let live = b.sessions(user.id, NOW).await.unwrap();
            assert_eq!(live.len(), 2, "{live:?}");
        });
    }
}

// The change feed when the database's feed is not what a node last read: swept empty after a
// quiet hour, ids gone back (a failover to a replica that had not seen the newest rows), a
// backlog longer than one poll reads.
mod feed {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use latchd::auth::storage::Storage;
    use latchd::model::{
        AccessDenied, AuditEvent, AuditNote, CreateUser, FamilyId, Jti, NewSession, NewUser,
        Origin, SessionKind, SessionPolicy, User,
    };
    use latchd::store::pg::PgStore;
    use latchd::time::UnixTime;

    use super::{settings, two_workers};
    use crate::support::postgres;

    const POLICY: SessionPolicy = SessionPolicy {
        refresh_ttl_secs: 100,
        session_max_secs: 1_000,
        grace_secs: 10,
        max_per_user: 100,
        idle_secs: 100,
    };

    async fn node(url: &str) -> Arc<PgStore> {
        Arc::new(PgStore::connect(&settings(url)).await.expect("connect"))
    }

    async fn sql(url: &str, statements: &str) {
        let client = postgres::connect(url).await;
        client.batch_execute(statements).await.expect("SQL");
    }

    /// A user with a live session on `store`, now.
    async fn signed_in(store: &PgStore, email: &str) -> (User, FamilyId) {
        let now = UnixTime::now();
        let CreateUser::Created(user) = store
            .create_user(
                NewUser {
                    email: email.to_owned(),
                    password_hash: "$pbkdf2-sha256$i=1$x$y".to_owned(),
                    roles: vec![],
                },
                now,
                AuditNote::new(AuditEvent::Registered, now),
            )
            .await
            .unwrap()
        else {
            panic!("{email} taken");
        };
        let family = FamilyId::new();
        let opened = store
            .open_session(
                family,
                &user,
                [7; 32],
                NewSession {
                    kind: SessionKind::Api,
                    mfa: false,
                    origin: Origin::default(),
                },
                now,
                POLICY,
                AuditNote::new(AuditEvent::Login, now),
            )
            .await
            .unwrap();
        assert!(opened);
        (user, family)
    }

    /// Waits (at most 3 s) until `store` refuses the session; how long it took.
    async fn until_refused(store: &PgStore, user: &User, family: FamilyId) -> Duration {
        let since = Instant::now();
        loop {
            match store.check_access(user.id, family, Jti(uuid::Uuid::nil()), 0) {
                Err(AccessDenied::StaleVersion | AccessDenied::FamilyRevoked) => {
                    return since.elapsed()
                }
                other => assert!(
                    since.elapsed() < Duration::from_secs(3),
                    "still {other:?} after 3 s"
                ),
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Logs `user` out everywhere through `a`; `b` refuses `family` within a second.
    async fn logout_all_reaches(a: &PgStore, b: &PgStore, user: &User, family: FamilyId) {
        let now = UnixTime::now();
        a.revoke_user(user.id, now, AuditNote::new(AuditEvent::LogoutAll, now))
            .await
            .unwrap();
        let took = until_refused(b, user, family).await;
        assert!(took < Duration::from_secs(1), "refused after {took:?}");
    }

    #[test]
    fn a_node_started_on_a_feed_swept_empty_confirms_and_stays_put() {
        let Some(cluster) = postgres::cluster() else {
            return;
        };
        let url = cluster.fresh_database();
        two_workers().block_on(async {
            let a = node(&url).await;
            signed_in(&a, "quiet@example.com").await;
            // An hour later the sweeper empties the feed.
            let later = UnixTime::now().plus(2 * 3600);
            a.sweep(later, 0, i64::MAX).await.unwrap();
            let b = node(&url).await;
            let reloads = b.keys_changed().expect("a feed");
            // Over two seconds (ten polls), b stays confirmed and never reloads its view
            // (every reload also signals the keys).
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert!(b.is_confirmed(), "b never confirmed");
            assert!(!reloads.has_changed().unwrap(), "b reloaded its view");
            let (user, family) = signed_in(&a, "after@example.com").await;
            assert_eq!(
                b.check_access(user.id, family, Jti(uuid::Uuid::nil()), 0),
                Ok(())
            );
        });
    }

    #[test]
    fn a_node_whose_feed_went_back_reloads_and_honours_what_follows() {
        let Some(cluster) = postgres::cluster() else {
            return;
        };
        let url = cluster.fresh_database();
        two_workers().block_on(async {
            let a = node(&url).await;
            let b = node(&url).await;
            let (user, family) = signed_in(&a, "failover@example.com").await;
            assert_eq!(
                b.check_access(user.id, family, Jti(uuid::Uuid::nil()), 0),
                Ok(())
            );
            // What a failover to a replica that missed the newest feed rows looks like: the
            // rows are gone and the ids start again below b's position.
            sql(
                &url,
                "DELETE FROM latchd_changes;
                 ALTER SEQUENCE latchd_change_ids RESTART WITH 1;",
            )
            .await;
            logout_all_reaches(&a, &b, &user, family).await;
        });
    }

    #[test]
    fn a_backlog_longer_than_one_poll_is_read_whole_before_the_view_counts_as_current() {
        let Some(cluster) = postgres::cluster() else {
            return;
        };
        let url = cluster.fresh_database();
        two_workers().block_on(async {
            let a = node(&url).await;
            let b = node(&url).await;
            let (user, family) = signed_in(&a, "backlog@example.com").await;
            // 25,000 rows naming users nobody has, then the revocation: b must get through
            // all of them, in order, to the last.
            sql(
                &url,
                "SELECT pg_advisory_xact_lock(7809651199139134051);
                 INSERT INTO latchd_changes (id, at, kind, subject)
                 SELECT nextval('latchd_change_ids'), 0, 1, gen_random_uuid()
                 FROM generate_series(1, 25000);",
            )
            .await;
            logout_all_reaches(&a, &b, &user, family).await;
            assert!(b.is_confirmed());
        });
    }
}

// What a PostgreSQL database refuses at connect: a schema from a newer latchd, TLS it cannot
// verify.
mod connect {
    use latchd::auth::storage::StoreError;
    use latchd::store::pg::PgStore;

    use super::settings;
    use crate::support::postgres;

    fn current_thread() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    }

    #[test]
    fn a_schema_written_by_a_newer_latchd_is_refused_and_left_alone() {
        let Some(cluster) = postgres::cluster() else {
            return;
        };
        let url = cluster.fresh_database();
        current_thread().block_on(async {
            drop(
                PgStore::connect(&settings(&url))
                    .await
                    .expect("first connect migrates"),
            );
            let client = postgres::connect(&url).await;
            client
                .batch_execute("UPDATE latchd_schema SET version = 99")
                .await
                .expect("SQL");
            let refused = PgStore::connect(&settings(&url)).await.unwrap_err();
            assert!(
                matches!(refused, StoreError::SchemaTooNew { found: 99, .. }),
                "{refused:?}"
            );
            let version: i64 = client
                .query_one("SELECT version FROM latchd_schema", &[])
                .await
                .expect("SQL")
                .get(0);
            assert_eq!(version, 99, "the newer schema was touched");
        });
    }

    #[test]
    fn sslmode_require_refuses_a_server_without_tls() {
        let Some(cluster) = postgres::cluster() else {
            return;
        };
        // The test cluster has no TLS: `require` must fail, never fall back to plain text.
        let url = format!("{}?sslmode=require", cluster.fresh_database());
        let refused = current_thread()
            .block_on(PgStore::connect(&settings(&url)))
            .unwrap_err();
        assert!(
            matches!(
                refused,
                StoreError::Unavailable | StoreError::Backend { .. }
            ),
            "{refused:?}"
        );
        // And `disable` on the same database works.
        let plain = url.replace("sslmode=require", "sslmode=disable");
        current_thread()
            .block_on(PgStore::connect(&settings(&plain)))
            .expect("plain text when asked for");
    }

    #[test]
    fn a_server_certificate_latchd_cannot_verify_is_a_failed_connection_not_plain_text() {
        if !crate::support::require("openssl", "openssl") {
            return;
        }
        let Some(cluster) = postgres::Cluster::private() else {
            return;
        };
        // A self-signed certificate, which no system trust store holds.
        let data = cluster.dir().join("data");
        let made = std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=127.0.0.1", "-keyout"])
            .arg(data.join("server.key"))
            .arg("-out")
            .arg(data.join("server.crt"))
            .output()
            .expect("run openssl");
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        let owner = std::fs::metadata(&data).expect("data dir");
        for file in ["server.key", "server.crt"] {
            let path = data.join(file);
            std::os::unix::fs::chown(
                &path,
                Some(std::os::unix::fs::MetadataExt::uid(&owner)),
                Some(std::os::unix::fs::MetadataExt::gid(&owner)),
            )
            .expect("chown");
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .expect("chmod");
        }
        let url = cluster.fresh_database();
        let plain = format!("{url}?sslmode=disable");
        current_thread().block_on(async {
            let client = postgres::connect(&plain).await;
            // Two statements: ALTER SYSTEM may not share a batch (an implicit transaction).
            client
                .batch_execute("ALTER SYSTEM SET ssl = on")
                .await
                .expect("turn TLS on");
            client
                .batch_execute("SELECT pg_reload_conf()")
                .await
                .expect("reload");
        });
        std::thread::sleep(std::time::Duration::from_millis(500));
        for mode in ["require", "prefer"] {
            let refused = current_thread()
                .block_on(PgStore::connect(&settings(&format!(
                    "{url}?sslmode={mode}"
                ))))
                .map(drop);
            assert!(
                refused.is_err(),
                "sslmode={mode} connected to a server whose certificate nobody vouches for\n{}",
                cluster.log()
            );
        }
        current_thread()
            .block_on(PgStore::connect(&settings(&plain)))
            .expect("sslmode=disable still connects");
    }

    #[test]
    fn a_url_that_does_not_parse_is_refused_without_connecting() {
        let refused = current_thread()
            .block_on(PgStore::connect(&settings("postgres://[::1")))
            .unwrap_err();
        assert!(
            matches!(&refused, StoreError::NotADatabase(why) if why.contains("LATCHD_DATABASE_URL")),
            "{refused:?}"
        );
    }
}
