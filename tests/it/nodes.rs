//! Several nodes on one PostgreSQL database (API.md "Several nodes: PostgreSQL"): two real
//! `latchd serve` processes, A and B, on one fresh database. A revocation made through A is
//! honoured by B within a second; racing rotations through both never fork a session; a retry
//! inside the grace gets the same successor whichever node answers; a node that loses the
//! database answers 503 and never 200 from its stale view, then recovers by itself; and a node
//! killed with SIGKILL loses no write it acknowledged.
//!
//! Each test skips with a note when PostgreSQL is not installed, and fails under `CI=true`
//! (`support::postgres`). The delays of the revocation test are printed (`--nocapture`).

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::jar::{form, hidden, Jar};
use crate::support::postgres::{self, Cluster};
use crate::support::{self, Reply, TestServer, PASSWORD};

const VERIFY: &str = "/v1/auth/verify";

/// The bound API.md sets: a revocation through any node is honoured by every node within it.
const WITHIN: Duration = Duration::from_secs(1);
/// How long a bounded poll of a node may take before the test fails.
const POLL_DEADLINE: Duration = Duration::from_secs(3);
/// The pause between two polls of a node.
const POLL_EVERY: Duration = Duration::from_millis(2);
/// How long a node that lost the database gets to answer 503: the second of API.md and the
/// moment its last confirmation began, with room for a loaded machine.
const FAIL_CLOSED_WITHIN: Duration = Duration::from_millis(1200);
/// How long a node gets to recover once the database is back.
const RECOVER_WITHIN: Duration = Duration::from_secs(10);

/// The environment of every node: the database, and limits meant for one client each raised so
/// that the tests (all from 127.0.0.1) are not throttled.
const NODE_ENV: &[(&str, &str)] = &[
    ("LATCHD_HASH_ADDRESS_PER_MIN", "1000000"),
    ("LATCHD_LOGIN_ADDRESS_PER_MIN", "1000000"),
    ("LATCHD_LOGIN_ACCOUNT_FAILURES", "1000"),
    ("LATCHD_MAX_SESSIONS_PER_USER", "100000"),
    // The hashing threads at normal priority: the tests wait for them, on a busy machine too.
    ("LATCHD_HASH_PRIORITY", "normal"),
];

/// A node on `url` with [`NODE_ENV`] and `extra`.
fn node(url: &str, extra: &[(&str, &str)]) -> TestServer {
    let mut env = vec![("LATCHD_DATABASE_URL", url)];
    env.extend_from_slice(NODE_ENV);
    env.extend_from_slice(extra);
    TestServer::start_with(&env)
}

/// Nodes A (on `url_a`) and B (on `url_b`), started at the same time, as a deployment starts
/// them: on a fresh database they migrate and create the first signing key together.
fn nodes_on(url_a: &str, url_b: &str, extra: &[(&str, &str)]) -> (TestServer, TestServer) {
    thread::scope(|s| {
        let a = s.spawn(|| node(url_a, extra));
        let b = s.spawn(|| node(url_b, extra));
        (
            a.join().expect("node A starts"),
            b.join().expect("node B starts"),
        )
    })
}

fn nodes(url: &str, extra: &[(&str, &str)]) -> (TestServer, TestServer) {
    nodes_on(url, url, extra)
}

/// Adds `email` with the admin role through `latchd user add` on the database (no server is
/// involved on PostgreSQL).
fn add_admin(url: &str, email: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = support::run(
        &support::db_in(dir.path()),
        &[("LATCHD_DATABASE_URL", url)],
        &["user", "add", "--email", email, "--role", "admin"],
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert!(
        out.status.success(),
        "latchd user add on PostgreSQL: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn verify(server: &TestServer, access: &str) -> Reply {
    server.get(VERIFY, Some(access))
}

/// Polls `server`'s verify with `access` until it answers 200; returns how long after `since`
/// that answer arrived. Another answer meanwhile (B may not have seen the session A just
/// opened yet) is polled past; none within the deadline fails the test.
fn until_accepted(server: &TestServer, access: &str, since: Instant) -> Duration {
    let deadline = since + POLL_DEADLINE;
    loop {
        let reply = verify(server, access);
        if reply.status == 200 {
            return since.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "{} never accepted a live access token within {POLL_DEADLINE:?}: {} {}",
            server.addr(),
            reply.status,
            reply.body
        );
        thread::sleep(POLL_EVERY);
    }
}

/// What [`until_refused`] saw.
struct Refusal {
    /// From the revoking answer to the first 401.
    delay: Duration,
    /// 503 answers seen on the way (the node could not confirm its view: fail-closed, but not
    /// expected without a fault).
    unavailable: u32,
    /// How long the verify that checked it stays refused took: the floor of `delay`.
    round_trip: Duration,
}

/// Polls `server`'s verify with the revoked `access` until it answers 401 `invalid_token`,
/// then checks it stays refused.
fn until_refused(server: &TestServer, access: &str, since: Instant) -> Refusal {
    let deadline = since + POLL_DEADLINE;
    let mut unavailable = 0;
    loop {
        let reply = verify(server, access);
        let delay = since.elapsed();
        match reply.status {
            401 => {
                reply.assert_error(401, "invalid_token");
                // Once refused, refused for good.
                let again = Instant::now();
                assert_eq!(verify(server, access).status, 401);
                return Refusal {
                    delay,
                    unavailable,
                    round_trip: again.elapsed(),
                };
            }
            200 => {}
            503 => {
                reply.assert_error(503, "temporarily_unavailable");
                unavailable += 1;
            }
            other => panic!("verify answered {other}: {}", reply.body),
        }
        assert!(
            Instant::now() < deadline,
            "{} still accepted a revoked access token {POLL_DEADLINE:?} after the revocation",
            server.addr(),
        );
        thread::sleep(POLL_EVERY);
    }
}

/// The `q`-th quantile (nearest rank) of sorted `values`.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    assert!(!sorted.is_empty());
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// `p50 … ms, p99 … ms, max … ms` of `values`.
fn figures(values: &mut [Duration]) -> String {
    values.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(quantile(values, 0.50)),
        ms(quantile(values, 0.99)),
        ms(values[values.len() - 1]),
    )
}

/// The revocations of the first test, each made through A.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `POST /v1/auth/logout` with the access token B is polled with.
    Logout,
    /// `POST /v1/auth/logout-all` from another session of the user.
    LogoutAll,
    /// A superseded refresh token presented again (grace 0): reuse, the session revoked.
    Reuse,
    /// `POST /v1/admin/users/{id}/revoke` by an admin.
    AdminRevoke,
}

const KINDS: [Kind; 4] = [
    Kind::Logout,
    Kind::LogoutAll,
    Kind::Reuse,
    Kind::AdminRevoke,
];
const TRIALS: usize = 100;
const ADMIN: &str = "admin@nodes.test";

#[test]
fn a_revocation_through_one_node_is_honoured_by_the_other_within_a_second() {
    let Some(cluster) = postgres::cluster() else {
        return;
    };
    let url = cluster.fresh_database();
    add_admin(&url, ADMIN);
    let (a, b) = nodes(&url, &[("LATCHD_REFRESH_GRACE", "0")]);
    let (admin, _) = a.login(ADMIN);

    let mut delays: Vec<(Kind, Duration)> = Vec::new();
    let mut round_trips = Vec::new();
    let mut seen = Vec::new();
    let mut unavailable = 0;
    let mut not_yet = 0;
    for trial in 0..TRIALS {
        let kind = KINDS[trial % KINDS.len()];
        let email = format!("trial{trial}@nodes.test");
        let id = a.register(&email);
        // The access token B is polled with, and (once B accepted it) the revocation.
        let (watched, revoke): (String, Box<dyn Fn() -> Reply>) = match kind {
            Kind::Logout => {
                let (access, _) = a.login(&email);
                let token = access.clone();
                let a = &a;
                (
                    access,
                    Box::new(move || a.post_auth("/v1/auth/logout", &token)),
                )
            }
            Kind::LogoutAll => {
                let (caller, _) = a.login(&email);
                let (other, _) = a.login(&email);
                let a = &a;
                (
                    other,
                    Box::new(move || a.post_auth("/v1/auth/logout-all", &caller)),
                )
            }
            Kind::Reuse => {
                let (_, first) = a.login(&email);
                let rotated = a.refresh(&first);
                assert_eq!(rotated.status, 200, "{}", rotated.body);
                let (access, _) = rotated.pair();
                let a = &a;
                (access, Box::new(move || a.refresh(&first)))
            }
            Kind::AdminRevoke => {
                let (access, _) = a.login(&email);
                let path = format!("/v1/admin/users/{id}/revoke");
                let (a, admin) = (&a, &admin);
                (access, Box::new(move || a.post_auth(&path, admin)))
            }
        };
        // B accepts the token first, or the test could not fail. It may not have seen the
        // session A just opened yet: that lag is measured too.
        let opened = Instant::now();
        if verify(&b, &watched).status != 200 {
            not_yet += 1;
        }
        seen.push(until_accepted(&b, &watched, opened));
        let answer = revoke();
        let revoked = Instant::now();
        match kind {
            Kind::Reuse => answer.assert_error(401, "invalid_grant"),
            _ => assert_eq!(answer.status, 204, "{kind:?}: {}", answer.body),
        }
        // The node that revoked refuses at once: it answered only once its view applied it.
        assert_eq!(verify(&a, &watched).status, 401, "{kind:?} on A");
        let refusal = until_refused(&b, &watched, revoked);
        assert!(
            refusal.delay <= WITHIN,
            "trial {trial} ({kind:?}): B accepted the revoked token for {:?}",
            refusal.delay
        );
        unavailable += refusal.unavailable;
        round_trips.push(refusal.round_trip);
        delays.push((kind, refusal.delay));
    }

    for kind in KINDS {
        let mut of_kind: Vec<Duration> = delays
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, d)| *d)
            .collect();
        println!(
            "nodes: {kind:?} through A refused by B after {} ({} trials)",
            figures(&mut of_kind),
            of_kind.len()
        );
    }
    let mut all: Vec<Duration> = delays.iter().map(|(_, d)| *d).collect();
    println!(
        "nodes: a revocation through A refused by B after {} over {TRIALS} trials \
         ({unavailable} answers 503 meanwhile; one verify round trip: {})",
        figures(&mut all),
        figures(&mut round_trips)
    );
    println!(
        "nodes: a session opened through A accepted by B after {} ({not_yet} of {TRIALS} \
         refused 401 by B when asked at once)",
        figures(&mut seen)
    );
}

/// POSTs `body` (JSON) to `path` `racers` times at once, alternately to A and B, released
/// together by a barrier.
fn race_posts(a: &TestServer, b: &TestServer, path: &str, body: &str, racers: usize) -> Vec<Reply> {
    let barrier = Barrier::new(racers);
    thread::scope(|s| {
        let racers: Vec<_> = (0..racers)
            .map(|i| {
                let addr = if i % 2 == 0 { a.addr() } else { b.addr() };
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    support::http(
                        addr,
                        "POST",
                        path,
                        &[("Content-Type", "application/json")],
                        body.as_bytes(),
                    )
                })
            })
            .collect();
        racers
            .into_iter()
            .map(|r| r.join().expect("racer"))
            .collect()
    })
}

/// Presents `refresh` eight times at once, four times to each node.
fn race(a: &TestServer, b: &TestServer, refresh: &str) -> Vec<Reply> {
    let body = json!({ "refresh_token": refresh }).to_string();
    race_posts(a, b, "/v1/auth/refresh", &body, 8)
}

const RACES: usize = 10;

#[test]
fn racing_rotations_through_both_nodes_without_grace_have_one_winner_and_revoke_the_session() {
    let Some(cluster) = postgres::cluster() else {
        return;
    };
    let (a, b) = nodes(&cluster.fresh_database(), &[("LATCHD_REFRESH_GRACE", "0")]);
    a.register("racer@nodes.test");
    for round in 0..RACES {
        let opener = if round % 2 == 0 { &a } else { &b };
        let (_, refresh) = opener.login("racer@nodes.test");
        let replies = race(&a, &b, &refresh);
        let won: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
        assert_eq!(won.len(), 1, "round {round}: {replies:#?}");
        for lost in replies.iter().filter(|r| r.status != 200) {
            lost.assert_error(401, "invalid_grant");
        }
        // Seven presentations of a superseded token are reuse: the winner's session is
        // revoked too, on both nodes.
        let (access, successor) = won[0].pair();
        for node in [&a, &b] {
            until_refused(node, &access, Instant::now());
            node.refresh(&successor).assert_error(401, "invalid_grant");
        }
    }
}

#[test]
fn racing_rotations_through_both_nodes_within_the_grace_share_one_successor() {
    let Some(cluster) = postgres::cluster() else {
        return;
    };
    // The default grace (10 s).
    let (a, b) = nodes(&cluster.fresh_database(), &[]);
    a.register("racer@nodes.test");
    for round in 0..RACES {
        let opener = if round % 2 == 0 { &a } else { &b };
        let (_, refresh) = opener.login("racer@nodes.test");
        let replies = race(&a, &b, &refresh);
        for reply in &replies {
            assert_eq!(reply.status, 200, "round {round}: {}", reply.body);
        }
        let successors: HashSet<String> = replies.iter().map(|r| r.pair().1).collect();
        assert_eq!(successors.len(), 1, "round {round}: the session forked");
        let successor = successors.into_iter().next().expect("one");
        // Every access token of the retries is live, and the shared successor rotates on.
        for reply in &replies {
            let (access, _) = reply.pair();
            until_accepted(&a, &access, Instant::now());
            until_accepted(&b, &access, Instant::now());
        }
        let next = b.refresh(&successor);
        assert_eq!(next.status, 200, "round {round}: {}", next.body);
        assert_ne!(next.pair().1, successor);
    }
}

/// Logins of one user at once, half through each node.
const LOGIN_RACERS: usize = 24;
/// The session cap of the racing logins: fewer than the racers.
const CAP: usize = 8;

#[test]
fn logins_of_one_user_racing_over_both_nodes_all_succeed_and_keep_to_the_session_cap() {
    let Some(cluster) = postgres::cluster() else {
        return;
    };
    let cap = CAP.to_string();
    let (a, b) = nodes(
        &cluster.fresh_database(),
        &[("LATCHD_MAX_SESSIONS_PER_USER", &cap)],
    );
    a.register("crowd@nodes.test");
    let body = json!({"email": "crowd@nodes.test", "password": PASSWORD}).to_string();
    for round in 0..5 {
        let replies = race_posts(&a, &b, "/v1/auth/login", &body, LOGIN_RACERS);
        // Every one is a session (PostgreSQL aborting the conflicting transactions is no
        // reason to answer 500)...
        for reply in &replies {
            assert_eq!(reply.status, 200, "round {round}: {}", reply.body);
        }
        // ... and as many of them live as the cap allows, as either node sees it once the
        // revocations of the other reached it (within the second).
        let ended = Instant::now();
        for node in [&a, &b] {
            loop {
                let live = replies
                    .iter()
                    .filter(|r| verify(node, &r.pair().0).status == 200)
                    .count();
                if live == CAP {
                    break;
                }
                assert!(
                    live > CAP && ended.elapsed() < WITHIN,
                    "round {round}: {live} sessions live on {}",
                    node.addr()
                );
                thread::sleep(POLL_EVERY);
            }
        }
        let (access, _) = a.login("crowd@nodes.test");
        let listed = a.get("/v1/users/me/sessions", Some(&access));
        assert_eq!(listed.status, 200, "{}", listed.body);
        assert_eq!(
            listed.json().as_array().map(Vec::len),
            Some(CAP),
            "round {round}"
        );
    }
}

#[test]
fn a_retry_inside_the_grace_gets_the_same_successor_from_the_other_node_then_is_reuse() {
    const GRACE_SECS: u64 = 2;
    let Some(cluster) = postgres::cluster() else {
        return;
    };
    let (a, b) = nodes(
        &cluster.fresh_database(),
        &[("LATCHD_REFRESH_GRACE", &GRACE_SECS.to_string())],
    );
    a.register("retry@nodes.test");

    // A session whose superseded token comes back after the grace has passed.
    let (_, first) = a.login("retry@nodes.test");
    let rotated = a.refresh(&first);
    let rotated_at = Instant::now();
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let (access, successor) = rotated.pair();
    for (name, node) in [("B", &b), ("A", &a), ("B again", &b)] {
        let retried = node.refresh(&first);
        assert_eq!(retried.status, 200, "retry on {name}: {}", retried.body);
        let (retry_access, retry_successor) = retried.pair();
        assert_eq!(
            retry_successor, successor,
            "retry on {name}: another successor"
        );
        assert_ne!(
            retry_access, access,
            "retry on {name}: a fresh access token"
        );
        until_accepted(&a, &retry_access, Instant::now());
        until_accepted(&b, &retry_access, Instant::now());
    }

    // Another session: once its successor rotated (through B), the first token is no longer
    // the one the current token superseded, so presenting it through A is reuse.
    let (_, other_first) = b.login("retry@nodes.test");
    let other = a.refresh(&other_first);
    assert_eq!(other.status, 200, "{}", other.body);
    let (_, other_second) = other.pair();
    let third = b.refresh(&other_second);
    assert_eq!(third.status, 200, "{}", third.body);
    let (other_access, other_third) = third.pair();
    until_accepted(&a, &other_access, Instant::now());
    a.refresh(&other_first).assert_error(401, "invalid_grant");
    let revoked = Instant::now();
    for node in [&a, &b] {
        let refusal = until_refused(node, &other_access, revoked);
        assert!(refusal.delay <= WITHIN, "{:?}", refusal.delay);
        node.refresh(&other_third)
            .assert_error(401, "invalid_grant");
    }

    // Past the grace (timestamps are whole seconds: a second more), the retry is reuse: the
    // session is revoked on both nodes.
    let past = Duration::from_secs(GRACE_SECS + 1) + Duration::from_millis(100);
    thread::sleep(past.saturating_sub(rotated_at.elapsed()));
    b.refresh(&first).assert_error(401, "invalid_grant");
    let revoked = Instant::now();
    for node in [&a, &b] {
        let refusal = until_refused(node, &access, revoked);
        assert!(refusal.delay <= WITHIN, "{:?}", refusal.delay);
        node.refresh(&successor).assert_error(401, "invalid_grant");
    }
}

/// Asserts a 503 `temporarily_unavailable` with `Retry-After`.
fn assert_unavailable(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 503, "{what}: {}", reply.body);
    reply.assert_error(503, "temporarily_unavailable");
    assert!(
        reply
            .header("retry-after")
            .is_some_and(|v| v.parse::<u32>().is_ok_and(|s| s >= 1)),
        "{what}: no Retry-After in {:?}",
        reply.headers
    );
}

/// Polls verify of `access` (a live token) on every node for `span` after `since`: each must
/// answer 503 within [`FAIL_CLOSED_WITHIN`] and never 200 (nor 401: the token is fine) from
/// then on. Returns when each first answered 503.
fn fail_closed(
    nodes: &[&TestServer],
    access: &str,
    since: Instant,
    span: Duration,
) -> Vec<Duration> {
    let mut first = vec![None; nodes.len()];
    while since.elapsed() < span {
        for (i, node) in nodes.iter().enumerate() {
            let reply = verify(node, access);
            let at = since.elapsed();
            match reply.status {
                503 => {
                    assert_unavailable(&reply, "verify");
                    first[i].get_or_insert(at);
                }
                200 => assert!(
                    at < FAIL_CLOSED_WITHIN,
                    "node {} answered 200 {at:?} after it lost the database",
                    node.addr()
                ),
                other => panic!(
                    "verify answered {other} without the database: {}",
                    reply.body
                ),
            }
        }
        thread::sleep(Duration::from_millis(10));
    }
    first
        .into_iter()
        .map(|at| at.expect("a 503 while the database was gone"))
        .collect()
}

/// Polls verify of `access` on `node` until it answers something but 503; returns that answer
/// and when it came.
fn until_available(node: &TestServer, access: &str, since: Instant) -> (Reply, Duration) {
    loop {
        let reply = verify(node, access);
        if reply.status != 503 {
            return (reply, since.elapsed());
        }
        assert!(
            since.elapsed() < RECOVER_WITHIN,
            "{} still answers 503 {RECOVER_WITHIN:?} after the database came back",
            node.addr()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn both_nodes_fail_closed_while_postgresql_is_down_and_recover_without_a_restart() {
    let Some(cluster) = Cluster::private() else {
        return;
    };
    let (a, b) = nodes(&cluster.fresh_database(), SITE);
    a.register(OUTAGE);
    outage(&cluster, &a, &b, "stopped", Cluster::stop);
    // Immediate shutdown, no checkpoint: crash recovery at the next start.
    outage(&cluster, &a, &b, "crashed", Cluster::crash);
}

const OUTAGE: &str = "outage@nodes.test";

/// The sign-in pages on, for the browser's sign-out.
const SITE: &[(&str, &str)] = &[("LATCHD_PUBLIC_URL", PUBLIC)];
const PUBLIC: &str = "http://auth.nodes.test";

/// Signs `email` in through `node`'s form: the jar with the session cookie.
fn browser_sign_in(node: &TestServer, email: &str) -> Jar {
    let mut jar = Jar::default();
    let page = jar.request(node, "GET", "/login", &[], b"");
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = hidden(&page.body, "csrf").expect("a csrf field");
    let reply = jar.request(
        node,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form(&[("email", email), ("password", PASSWORD), ("csrf", &csrf)]).as_bytes(),
    );
    assert_eq!(reply.status, 303, "{}", reply.body);
    jar
}

/// `POST /logout` with the jar's cookie and CSRF nonce (read from the home page while the node
/// could still answer it: `csrf`).
fn browser_sign_out(node: &TestServer, jar: &mut Jar, csrf: &str) -> Reply {
    jar.request(
        node,
        "POST",
        "/logout",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", PUBLIC),
        ],
        form(&[("csrf", csrf)]).as_bytes(),
    )
}

/// Takes PostgreSQL down with `halt` under both nodes, checks that they fail closed and that
/// what was acknowledged before is still there when it is back.
fn outage(cluster: &Cluster, a: &TestServer, b: &TestServer, how: &str, halt: fn(&Cluster)) {
    let (access, refresh) = a.login(OUTAGE);
    let (doomed, _) = b.login(OUTAGE);
    let (revoked, _) = a.login(OUTAGE);
    until_accepted(b, &access, Instant::now());
    until_accepted(a, &doomed, Instant::now());
    until_accepted(b, &revoked, Instant::now());
    // Acknowledged just before the outage.
    assert_eq!(a.post_auth("/v1/auth/logout", &revoked).status, 204);
    until_refused(b, &revoked, Instant::now());
    // A browser signed in through A, once B knows it (a new cookie reaches B's view within
    // milliseconds; until then B's home page is the sign-in form, without the sign-out nonce).
    let mut browser = browser_sign_in(a, OUTAGE);
    let since = Instant::now();
    let csrf = loop {
        let home = browser.request(b, "GET", "/", &[], b"");
        if home.status == 200 && home.body.contains("action=\"/logout\"") {
            break hidden(&home.body, "csrf").expect("the sign-out form's csrf");
        }
        assert!(
            since.elapsed() <= WITHIN,
            "B never showed the signed-in home page"
        );
        thread::sleep(POLL_EVERY);
    };

    let halting = Instant::now();
    halt(cluster);
    let halted = Instant::now();
    let first = fail_closed(&[a, b], &access, halted, Duration::from_secs(2));
    println!(
        "nodes: PostgreSQL {how} (in {:?}); first 503 on A after {:?}, on B after {:?}",
        halted - halting,
        first[0],
        first[1]
    );
    let late = format!("late-{how}@nodes.test");
    for node in [a, b] {
        assert_unavailable(&node.refresh(&refresh), "refresh");
        assert_unavailable(
            &node.post_json(
                "/v1/auth/login",
                &json!({"email": OUTAGE, "password": PASSWORD}),
            ),
            "login",
        );
        assert_unavailable(
            &node.post_json("/v1/users", &json!({"email": late, "password": PASSWORD})),
            "register",
        );
        assert_unavailable(&node.post_auth("/v1/auth/logout", &doomed), "logout");
        assert_unavailable(&verify(node, &revoked), "verify of a revoked token");
    }
    // A sign-out the node cannot carry out is a 503 that keeps the cookie, never a 303 that
    // clears it and leaves the session live on the server.
    let signed_out = browser_sign_out(b, &mut browser, &csrf);
    assert_eq!(
        signed_out.status, 503,
        "sign-out while down: {}",
        signed_out.body
    );
    assert!(
        browser.get("latchd_session").is_some(),
        "the cookie was cleared"
    );

    cluster.start();
    let started = Instant::now();
    for (name, node) in [("A", a), ("B", b)] {
        let (reply, after) = until_available(node, &access, started);
        assert_eq!(reply.status, 200, "{name} after recovery: {}", reply.body);
        println!("nodes: PostgreSQL back after it {how}; {name} verifies again after {after:?}");
        verify(node, &revoked).assert_error(401, "invalid_token");
    }
    // Writes work again on both, and the feed follows again: a logout through B is honoured
    // by A.
    let rotated = b.refresh(&refresh);
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    b.register(&late);
    a.login(&late);
    assert_eq!(b.post_auth("/v1/auth/logout", &doomed).status, 204);
    let refusal = until_refused(a, &doomed, Instant::now());
    assert!(refusal.delay <= WITHIN, "{:?}", refusal.delay);
    // The browser's session lived through the outage; signing out now ends it on both.
    let mut kept = browser.clone();
    let signed_out = browser_sign_out(b, &mut browser, &csrf);
    assert_eq!(
        signed_out.status, 303,
        "sign-out after recovery: {}",
        signed_out.body
    );
    let reply = kept.request(b, "GET", VERIFY, &[], b"");
    assert_eq!(
        reply.status, 401,
        "B still takes the cookie it signed out: {}",
        reply.body
    );
    let since = Instant::now();
    loop {
        let reply = kept.request(a, "GET", VERIFY, &[], b"");
        if reply.status == 401 {
            break;
        }
        assert!(
            since.elapsed() <= WITHIN,
            "A still takes the signed-out cookie after {WITHIN:?}: {} {}",
            reply.status,
            reply.body
        );
        thread::sleep(POLL_EVERY);
    }
}

/// A TCP forwarder between one node and PostgreSQL, which the test can cut.
struct Forwarder {
    addr: SocketAddr,
    link: Arc<Link>,
    acceptor: Option<thread::JoinHandle<()>>,
}

/// What the forwarder does with the bytes of its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Forwards them.
    Open,
    /// Every connection is closed and new ones are closed at once: PostgreSQL gone for this
    /// node only.
    Severed,
    /// Nothing is forwarded, nothing is closed, new connections are accepted and left hanging:
    /// a network that drops packets.
    Paused,
    /// The forwarder is being dropped.
    Closed,
}

struct Link {
    upstream: SocketAddr,
    mode: Mutex<Mode>,
    changed: Condvar,
    /// Both ends of every connection forwarded, to close them when severed.
    sockets: Mutex<Vec<TcpStream>>,
}

impl Link {
    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap_or_else(PoisonError::into_inner) = mode;
        self.changed.notify_all();
        if matches!(mode, Mode::Severed | Mode::Closed) {
            let sockets =
                std::mem::take(&mut *self.sockets.lock().unwrap_or_else(PoisonError::into_inner));
            for socket in sockets {
                let _ = socket.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    /// Waits while paused; whether to go on forwarding.
    fn pass(&self) -> bool {
        let mut mode = self.mode.lock().unwrap_or_else(PoisonError::into_inner);
        while *mode == Mode::Paused {
            mode = self
                .changed
                .wait(mode)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *mode == Mode::Open
    }
}

impl Forwarder {
    fn to(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the forwarder");
        let addr = listener.local_addr().expect("its address");
        let link = Arc::new(Link {
            upstream,
            mode: Mutex::new(Mode::Open),
            changed: Condvar::new(),
            sockets: Mutex::new(Vec::new()),
        });
        let shared = Arc::clone(&link);
        let acceptor = thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                match shared.mode() {
                    Mode::Closed => return,
                    Mode::Severed => drop(client),
                    Mode::Open | Mode::Paused => connect(&shared, client),
                }
            }
        });
        Self {
            addr,
            link,
            acceptor: Some(acceptor),
        }
    }

    fn sever(&self) {
        self.link.set(Mode::Severed);
    }

    fn pause(&self) {
        self.link.set(Mode::Paused);
    }

    fn restore(&self) {
        self.link.set(Mode::Open);
    }
}

/// Connects `client` to the upstream and pumps both ways, each on a thread of its own.
fn connect(link: &Arc<Link>, client: TcpStream) {
    let Ok(server) = TcpStream::connect_timeout(&link.upstream, Duration::from_secs(2)) else {
        return;
    };
    let (Ok(client2), Ok(server2), Ok(client3), Ok(server3)) = (
        client.try_clone(),
        server.try_clone(),
        client.try_clone(),
        server.try_clone(),
    ) else {
        return;
    };
    link.sockets
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .extend([client3, server3]);
    for (from, to) in [(client, server), (server2, client2)] {
        let link = Arc::clone(link);
        thread::spawn(move || pump(&link, from, to));
    }
}

/// Copies `from` to `to` while the link passes; then closes both.
fn pump(link: &Link, mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if !link.pass() || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.link.set(Mode::Closed);
        // Wakes the acceptor, which sees Closed and returns.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Cuts node B off PostgreSQL (`cut`) while A keeps it; revokes through A meanwhile.
fn b_cut_off(cut: fn(&Forwarder), how: &str) {
    let Some(cluster) = postgres::cluster() else {
        return;
    };
    let url = cluster.fresh_database();
    let forwarder = Forwarder::to(SocketAddr::from((Ipv4Addr::LOCALHOST, cluster.port())));
    let name = url.rsplit('/').next().expect("a database name");
    let url_b = format!(
        "postgres://{}@{}/{name}",
        postgres::SUPERUSER,
        forwarder.addr
    );
    let (a, b) = nodes_on(&url, &url_b, &[]);
    a.register("cut@nodes.test");
    a.register("other@nodes.test");
    let (doomed, _) = a.login("cut@nodes.test");
    let (live, refresh) = a.login("cut@nodes.test");
    let (caller, _) = a.login("other@nodes.test");
    let (other, _) = b.login("other@nodes.test");
    for token in [&doomed, &live, &other] {
        until_accepted(&b, token, Instant::now());
    }

    cut(&forwarder);
    let cut_at = Instant::now();
    let first = fail_closed(
        &[&b],
        &live,
        cut_at,
        FAIL_CLOSED_WITHIN + Duration::from_millis(100),
    );
    println!("nodes: B {how}: first 503 after {:?}", first[0]);
    assert_eq!(verify(&a, &live).status, 200, "A keeps the database");

    // Revoked through A while B cannot know (a session ended and its jti blacklisted; every
    // session of another user revoked and its token version raised): B answers 503 for
    // them, never 200 (nor 401).
    assert_eq!(a.post_auth("/v1/auth/logout", &doomed).status, 204);
    assert_eq!(a.post_auth("/v1/auth/logout-all", &caller).status, 204);
    assert_eq!(verify(&a, &doomed).status, 401);
    assert_eq!(verify(&a, &other).status, 401);
    let meanwhile = Instant::now();
    while meanwhile.elapsed() < WITHIN {
        for token in [&doomed, &other] {
            assert_unavailable(&verify(&b, token), "verify of a revoked token on B");
        }
        thread::sleep(Duration::from_millis(10));
    }
    assert_unavailable(&b.refresh(&refresh), "refresh on B");

    forwarder.restore();
    let restored = Instant::now();
    let (reply, after) = until_available(&b, &doomed, restored);
    reply.assert_error(401, "invalid_token");
    verify(&b, &other).assert_error(401, "invalid_token");
    println!("nodes: B reconnected ({how}); refuses the tokens revoked meanwhile after {after:?}");
    assert_eq!(verify(&b, &live).status, 200, "{}", b.log());
    let rotated = b.refresh(&refresh);
    assert_eq!(rotated.status, 200, "{}", rotated.body);
}

#[test]
fn a_node_severed_from_postgresql_fails_closed_and_catches_up_on_what_it_missed() {
    b_cut_off(Forwarder::sever, "severed");
}

#[test]
fn a_node_whose_packets_to_postgresql_are_dropped_fails_closed_and_catches_up() {
    b_cut_off(Forwarder::pause, "partitioned");
}

/// A write node A answered, to be found through B after A was killed.
#[derive(Debug)]
enum Ack {
    /// A registration (201): the user logs in.
    Registered(String),
    /// A refresh token A answered for session `.0` (a name of the test's): the newest of a
    /// session rotates.
    Rotated(String, String),
    /// A logout (204) of this access token: refused.
    LoggedOut(String),
}

/// One client's writes through `addr` until `stop` or the node goes away.
fn load(addr: SocketAddr, worker: usize, stop: &AtomicBool, acks: &Mutex<Vec<Ack>>) {
    let send = |path: &str, bearer: Option<&str>, body: Option<serde_json::Value>| {
        let auth = bearer.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(auth) = &auth {
            headers.push(("Authorization", auth));
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        support::try_http(addr, "POST", path, &headers, body.as_bytes())
    };
    let ack = |a: Ack| acks.lock().unwrap_or_else(PoisonError::into_inner).push(a);
    let credentials = |email: &str| json!({"email": email, "password": PASSWORD});
    for i in 0.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let email = format!("load{worker}-{i}@nodes.test");
        match send("/v1/users", None, Some(credentials(&email))) {
            Some(r) if r.status == 201 => ack(Ack::Registered(email.clone())),
            Some(r) => panic!("registration answered {}: {}", r.status, r.body),
            None => return,
        }
        // A session rotated twice.
        let Some(login) = send("/v1/auth/login", None, Some(credentials(&email))) else {
            return;
        };
        assert_eq!(login.status, 200, "{}", login.body);
        let mut refresh = login.pair().1;
        for _ in 0..2 {
            let Some(rotated) = send(
                "/v1/auth/refresh",
                None,
                Some(json!({ "refresh_token": refresh })),
            ) else {
                return;
            };
            assert_eq!(rotated.status, 200, "{}", rotated.body);
            refresh = rotated.pair().1;
            ack(Ack::Rotated(email.clone(), refresh.clone()));
        }
        // A session logged out.
        let Some(login) = send("/v1/auth/login", None, Some(credentials(&email))) else {
            return;
        };
        assert_eq!(login.status, 200, "{}", login.body);
        let access = login.pair().0;
        match send("/v1/auth/logout", Some(&access), None) {
            Some(r) if r.status == 204 => ack(Ack::LoggedOut(access)),
            Some(r) => panic!("logout answered {}: {}", r.status, r.body),
            None => return,
        }
    }
}

/// A random number below `n` from the std hasher's per-process random keys.
fn jitter(n: usize) -> usize {
    use std::hash::{BuildHasher as _, Hasher as _};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    usize::try_from(random % u64::try_from(n).expect("small")).expect("small")
}

#[test]
fn a_node_killed_mid_load_loses_no_write_it_acknowledged() {
    const WORKERS: usize = 4;
    let Some(cluster) = postgres::cluster() else {
        return;
    };
    // A rotation that committed but whose answer the kill lost leaves the acknowledged token
    // superseded: inside this grace, presenting it is a retry (200), not reuse.
    let (a, b) = nodes(
        &cluster.fresh_database(),
        &[("LATCHD_REFRESH_GRACE", "600")],
    );
    let stop = AtomicBool::new(false);
    let acks = Mutex::new(Vec::new());
    let addr = a.addr();
    thread::scope(|s| {
        for worker in 0..WORKERS {
            let (stop, acks) = (&stop, &acks);
            s.spawn(move || load(addr, worker, stop, acks));
        }
        // SIGKILL at a random point of the load, mid-request for some of the workers.
        let target = 40 + jitter(120);
        let deadline = Instant::now() + Duration::from_secs(20);
        while acks.lock().unwrap_or_else(PoisonError::into_inner).len() < target
            && Instant::now() < deadline
        {
            thread::sleep(Duration::from_millis(1));
        }
        drop(a.stop());
        stop.store(true, Ordering::Relaxed);
    });
    let acks = acks.into_inner().unwrap_or_else(PoisonError::into_inner);
    let count = |f: fn(&Ack) -> bool| acks.iter().filter(|a| f(a)).count();
    let registered = count(|a| matches!(a, Ack::Registered(_)));
    let rotated = count(|a| matches!(a, Ack::Rotated(..)));
    let logged_out = count(|a| matches!(a, Ack::LoggedOut(_)));
    assert!(
        registered > 0 && rotated > 0 && logged_out > 0,
        "too little was acknowledged before the kill: {acks:?}"
    );

    // Only the newest token of each session is checked (a worker acknowledges a session's
    // rotations in order): rotating an older one is reuse.
    let newest: HashSet<&str> = {
        let mut by_session = std::collections::HashMap::new();
        for ack in &acks {
            if let Ack::Rotated(session, token) = ack {
                by_session.insert(session.as_str(), token.as_str());
            }
        }
        by_session.into_values().collect()
    };
    for ack in &acks {
        match ack {
            Ack::Registered(email) => {
                b.login(email);
            }
            Ack::Rotated(_, token) if newest.contains(token.as_str()) => {
                let reply = b.refresh(token);
                assert_eq!(
                    reply.status, 200,
                    "an acknowledged rotation: {}",
                    reply.body
                );
            }
            Ack::Rotated(..) => {}
            Ack::LoggedOut(access) => {
                verify(&b, access).assert_error(401, "invalid_token");
            }
        }
    }
    println!(
        "nodes: A killed after {registered} registrations, {rotated} rotations and \
         {logged_out} logouts acknowledged; B has every one"
    );
}

/// Sign-ins through one node whose tokens are used at once through the other.
const FRESH_TRIALS: usize = 40;

#[test]
fn a_token_fresh_from_one_node_is_accepted_by_the_other_at_once() {
    let Some(cluster) = postgres::cluster() else {
        return;
    };
    let url = cluster.fresh_database();
    let (a, b) = nodes(&url, &[]);
    for (i, (from, to)) in [(&a, &b), (&b, &a)]
        .into_iter()
        .cycle()
        .take(FRESH_TRIALS)
        .enumerate()
    {
        // A new user and a new session each time: neither is in the other view yet.
        let email = format!("fresh{i}@nodes.test");
        from.register(&email);
        let (access, _) = from.login(&email);
        let reply = verify(to, &access);
        assert_eq!(
            reply.status,
            200,
            "trial {i}: a token from {} refused by {} right after the login: {}",
            from.addr(),
            to.addr(),
            reply.body
        );
    }
}
