//! Crash safety of the store: a child process (this test binary re-invoked) makes acknowledged
//! writes; the parent SIGKILLs it at a random point and checks that every acknowledged write is
//! on disk after reopening, with its audit row (written in the same transaction). And the same for the real server amid batches of concurrent
//! rotations (group commit): every rotation it answered 200 is there after a SIGKILL.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use latchd::auth::storage::Storage;
use latchd::model::{
    AuditEvent, AuditNote, AuditQuery, CreateUser, FamilyId, Jti, NewSession, NewUser, Presented,
    Rotation, SessionPolicy, Successor, UserId,
};
use latchd::store::Store;
use latchd::time::UnixTime;
use uuid::Uuid;

use crate::support::wait;

const CHILD_ENV: &str = "LATCHD_CRASH_CHILD";
const CHILD_TEST: &str = "store_crash::crash_child";
const NOW: UnixTime = UnixTime(1_800_000_000);
const POLICY: SessionPolicy = SessionPolicy {
    refresh_ttl_secs: 1_000,
    session_max_secs: 10_000,
    grace_secs: 0,
    max_per_user: 100_000,
    idle_secs: 3_600,
};
const ROUNDS: u32 = 3;
const CHILD_ITERATIONS: u32 = 2_000;
const ROUND_DEADLINE: Duration = Duration::from_secs(60);

/// The child's body; a no-op unless the parent selected it through `LATCHD_CRASH_CHILD`.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = Store::open(Path::new(&path)).expect("child opens the store");
    let mut out = std::io::stdout().lock();
    let mut ack = |line: String| {
        // Written straight to fd 1 (not `println!`, which the harness may capture), after the
        // call returned: the write it names has committed.
        writeln!(out, "ack {line}").expect("stdout");
        out.flush().expect("stdout");
    };
    for _ in 0..CHILD_ITERATIONS {
        let email = format!("{}@crash.test", Uuid::new_v4());
        let new = NewUser {
            email: email.clone(),
            password_hash: "$pbkdf2-sha256$i=1$x$y".to_owned(),
            roles: Vec::new(),
        };
        let CreateUser::Created(user) =
            wait(store.create_user(new, NOW, AuditNote::new(AuditEvent::Registered, NOW)))
                .expect("create_user")
        else {
            panic!("fresh email taken");
        };
        ack(format!("user {} {email}", user.id));

        let jti = Uuid::new_v4();
        wait(store.blacklist(Jti(jti), NOW.plus(60))).expect("blacklist");
        ack(format!("blacklist {jti}"));

        let family = FamilyId::new();
        assert!(wait(store.open_session(
            family,
            &user,
            [0; 32],
            NewSession::default(),
            NOW,
            POLICY,
            AuditNote::new(AuditEvent::Login, NOW)
        ))
        .expect("session"));
        ack(format!("family {family} {}", user.id));

        // A second session whose superseded token comes back: revoked, and recorded.
        let reused = FamilyId::new();
        let login = AuditNote::new(AuditEvent::Login, NOW);
        let seen = &user;
        assert!(wait(store.open_session(
            reused,
            seen,
            [5; 32],
            NewSession::default(),
            NOW,
            POLICY,
            login
        ))
        .expect("session"));
        let reuse = AuditNote::new(AuditEvent::RefreshReuse, NOW);
        let first = Presented {
            family: reused,
            generation: 0,
            hash: [5; 32],
        };
        let successor = Successor {
            hash: [6; 32],
            sealed: [7; 32],
        };
        wait(store.rotate(first, successor, NOW, POLICY, reuse)).expect("rotate");
        let got = wait(store.rotate(first, successor, NOW, POLICY, reuse)).expect("rotate");
        assert!(matches!(got, Rotation::Reused { .. }), "{got:?}");
        ack(format!("reused {reused} {}", user.id));

        let presented = Presented {
            family,
            generation: 0,
            hash: [0; 32],
        };
        let next = Successor {
            hash: [1; 32],
            sealed: [2; 32],
        };
        let got = wait(store.rotate(
            presented,
            next,
            NOW,
            POLICY,
            AuditNote::new(AuditEvent::RefreshReuse, UnixTime(0)),
        ))
        .expect("rotate");
        assert!(
            matches!(got, Rotation::Rotated { generation: 1, .. }),
            "{got:?}"
        );
        ack(format!("rotated {family} {}", user.id));
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let path = dir.path().join("crash.redb");
    let mut total = 0;
    for round in 0..ROUNDS {
        // Later rounds reopen a file earlier kills left behind.
        let kill_after = 1 + random_below(80);
        let acks = run_child_and_kill(&path, kill_after);
        assert!(
            !acks.is_empty(),
            "round {round}: the child acknowledged nothing"
        );
        let store = Store::open(&path).expect("reopen after SIGKILL");
        let trail = audit_trail(&store);
        for line in &acks {
            check_ack(&store, &trail, line);
        }
        total += acks.len();
    }
    assert!(total >= usize::try_from(ROUNDS).expect("small"));
}

/// Starts the child, waits (with a deadline) for `kill_after` acknowledgements, SIGKILLs it,
/// and returns every acknowledgement it managed to write.
fn run_child_and_kill(path: &Path, kill_after: u64) -> Vec<String> {
    let mut child = Command::new(std::env::current_exe().expect("current exe"))
        .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(ack) = line.strip_prefix("ack ") {
                if tx.send(ack.to_owned()).is_err() {
                    break;
                }
            }
        }
    });

    let deadline = Instant::now() + ROUND_DEADLINE;
    let mut acks = Vec::new();
    while (acks.len() as u64) < kill_after {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(ack) => acks.push(ack),
            // The child exited (it finished or failed) or the deadline passed.
            Err(_) => break,
        }
    }
    kill(
        &mut child,
        acks.len() < usize::try_from(kill_after).expect("small"),
    );
    reader.join().expect("reader thread");
    // Acknowledgements that arrived before the kill landed are also acknowledged writes.
    acks.extend(rx.try_iter());
    acks
}

/// SIGKILLs the child (`Child::kill` sends SIGKILL on Unix) and reaps it; if it stopped early,
/// shows its stderr.
fn kill(child: &mut Child, stopped_early: bool) {
    // An error here means it already exited, which the checks below still cover.
    let _ = child.kill();
    child.wait().expect("reap child");
    if stopped_early {
        let mut err = String::new();
        if let Some(mut stderr) = child.stderr.take() {
            let _ = stderr.read_to_string(&mut err);
        }
        eprintln!("child stopped before the kill; its stderr:\n{err}");
    }
}

/// Asserts that the write named by one acknowledgement line is in the reopened store.
/// Every audit row of the store as (event, user, session).
fn audit_trail(store: &Store) -> HashSet<(AuditEvent, Option<UserId>, Option<FamilyId>)> {
    let mut trail = HashSet::new();
    let mut after = None;
    loop {
        let query = AuditQuery {
            user: None,
            event: None,
            after,
            since: None,
            limit: 1000,
        };
        let page = wait(store.audit(query)).expect("read the audit log");
        let Some(last) = page.last() else {
            return trail;
        };
        after = Some(last.id);
        trail.extend(
            page.iter()
                .map(|r| (r.note.event, r.note.user, r.note.session)),
        );
    }
}

/// Checks that the change `line` acknowledges is on disk, and so is its audit row: the row is
/// written in the transaction of the change, so no acknowledged change lacks it.
fn check_ack(
    store: &Store,
    trail: &HashSet<(AuditEvent, Option<UserId>, Option<FamilyId>)>,
    line: &str,
) {
    let words: Vec<&str> = line.split(' ').collect();
    let uuid = |i: usize| Uuid::parse_str(words[i]).unwrap_or_else(|e| panic!("{line}: {e}"));
    let recorded = |event, user: usize, session: Option<usize>| {
        let row = (
            event,
            Some(UserId(uuid(user))),
            session.map(|s| FamilyId(uuid(s))),
        );
        assert!(trail.contains(&row), "{line}: no audit row {row:?}");
    };
    match words[0] {
        "reused" => {
            let got =
                store.check_access(UserId(uuid(2)), FamilyId(uuid(1)), Jti(Uuid::new_v4()), 0);
            assert_eq!(
                got,
                Err(latchd::model::AccessDenied::FamilyRevoked),
                "{line}"
            );
            recorded(AuditEvent::Login, 2, Some(1));
            recorded(AuditEvent::RefreshReuse, 2, Some(1));
        }
        "user" => {
            recorded(AuditEvent::Registered, 1, None);
            let user = wait(store.user(UserId(uuid(1)))).expect("read user");
            assert_eq!(user.map(|u| u.email), Some(words[2].to_owned()), "{line}");
            assert!(
                wait(store.user_by_email(words[2])).expect("read").is_some(),
                "{line}"
            );
        }
        "blacklist" => assert!(store.is_blacklisted(Jti(uuid(1))), "{line}"),
        "family" => {
            let got =
                store.check_access(UserId(uuid(2)), FamilyId(uuid(1)), Jti(Uuid::new_v4()), 0);
            assert_eq!(got, Ok(()), "{line}");
            recorded(AuditEvent::Login, 2, Some(1));
        }
        "rotated" => {
            // Generation 1 must be current: it rotates to 2 (had the rotation been lost,
            // generation 1 would be in the future and `Unknown`).
            let family = FamilyId(uuid(1));
            let presented = Presented {
                family,
                generation: 1,
                hash: [1; 32],
            };
            let next = Successor {
                hash: [3; 32],
                sealed: [4; 32],
            };
            let got = wait(store.rotate(
                presented,
                next,
                NOW,
                POLICY,
                AuditNote::new(AuditEvent::RefreshReuse, UnixTime(0)),
            ))
            .expect("rotate");
            assert!(
                matches!(
                    &got,
                    Rotation::Rotated { family: f, user, generation: 2, .. }
                        if *f == family && user.id == UserId(uuid(2))
                ),
                "{line}: {got:?}"
            );
        }
        other => panic!("unknown acknowledgement {other:?}"),
    }
}

/// A random number below `n` from the std hasher's per-process random keys: good enough to vary
/// the kill point, with no clock and no extra dependency.
fn random_below(n: u64) -> u64 {
    RandomState::new().build_hasher().finish() % n
}

/// Concurrent sessions rotating at once, so that the server's writer commits them in batches.
const CHAINS: usize = 24;
/// The retry grace of the server under kill: long enough that a rotation which reached disk
/// but whose answer was lost is a retry, not reuse, when its client comes back after the
/// restart.
const LONG_GRACE: &str = "600";

#[test]
fn a_server_killed_amid_batches_of_rotations_keeps_every_one_it_answered() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let env = [
        ("LATCHD_REFRESH_GRACE", LONG_GRACE),
        ("LATCHD_HASH_ADDRESS_PER_MIN", "1000"),
        ("LATCHD_LOGIN_ACCOUNT_FAILURES", "1000"),
    ];
    let server = crate::support::TestServer::start_with(&env);
    server.register("chains@example.test");
    let stop = Arc::new(AtomicBool::new(false));
    // Per chain: the last refresh token the server answered 200 for, and how many it answered.
    let answered: Vec<Arc<Mutex<(String, u64)>>> = (0..CHAINS)
        .map(|_| {
            let (_, refresh) = server.login("chains@example.test");
            Arc::new(Mutex::new((refresh, 0)))
        })
        .collect();
    let addr = server.addr();
    let workers: Vec<_> = answered
        .iter()
        .map(|chain| {
            let (chain, stop) = (Arc::clone(chain), Arc::clone(&stop));
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let token = chain.lock().expect("chain").0.clone();
                    let body = format!("{{\"refresh_token\":\"{token}\"}}");
                    let Some(reply) = crate::support::try_http(
                        addr,
                        "POST",
                        "/v1/auth/refresh",
                        &[("Content-Type", "application/json")],
                        body.as_bytes(),
                    ) else {
                        return; // the server is gone
                    };
                    if reply.status != 200 {
                        return;
                    }
                    let mut chain = chain.lock().expect("chain");
                    chain.0 = reply.pair().1;
                    chain.1 += 1;
                }
            })
        })
        .collect();
    // SIGKILL at a random point once every chain is rotating.
    thread::sleep(Duration::from_millis(300 + random_below(700)));
    let rotated: u64 = answered.iter().map(|c| c.lock().expect("chain").1).sum();
    let dir = server.stop();
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.join();
    }
    assert!(rotated > 0, "nothing was rotated before the kill");

    let server = crate::support::TestServer::start_in(dir, &env);
    for (i, chain) in answered.iter().enumerate() {
        let (token, count) = chain.lock().expect("chain").clone();
        // The current token rotates; had its rotation been lost, it would be unknown (401).
        // One whose successor reached disk unanswered is a retry inside the grace: also 200.
        let reply = server.refresh(&token);
        assert_eq!(
            reply.status, 200,
            "chain {i} after {count} answered rotations: {}",
            reply.body
        );
    }
    eprintln!("{rotated} rotations answered across {CHAINS} chains before SIGKILL");
}
