//! `latchd backup PATH`: a consistent copy of the whole database, taken by the running server
//! while it serves a write load (or from the file when no server runs), that a server started
//! on it accepts with every write acknowledged before the backup began.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::cli::assert_failed_with;
use crate::support::{add_user, db_in, run, TestServer, PASSWORD};
use serde_json::json;

/// Rate limits out of the way of a load from one address.
const LOAD_ENV: &[(&str, &str)] = &[
    ("LATCHD_HASH_ADDRESS_PER_MIN", "1000000"),
    ("LATCHD_LOGIN_ADDRESS_PER_MIN", "1000000"),
    ("LATCHD_MAX_SESSIONS_PER_USER", "100000"),
];
/// Most writes of each kind the load makes: only a backstop, since it runs until the backup has
/// answered.
const LOAD_OPS: usize = 50_000;
/// Sessions made before the load, each rotated once during it.
const SESSIONS: usize = 120;

/// One acknowledged write of the load, and when its 2xx arrived.
struct Acked {
    at: Instant,
    what: String,
}

type AckedList = Arc<Mutex<Vec<Acked>>>;

/// Runs `write` on a thread of its own until `stop` is set or it returns `None`, recording each
/// write it saw acknowledged (what it returned) with the moment of the acknowledgement.
fn keep_writing(
    stop: &Arc<AtomicBool>,
    mut write: impl FnMut() -> Option<String> + Send + 'static,
) -> (thread::JoinHandle<()>, AckedList) {
    let acked = AckedList::default();
    let (stop, list) = (Arc::clone(stop), Arc::clone(&acked));
    let thread = thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Some(what) = write() else { break };
            list.lock().unwrap().push(Acked {
                at: Instant::now(),
                what,
            });
        }
    });
    (thread, acked)
}

/// One session rotating again and again, its successor each time: cheap writes that keep
/// arriving while a backup runs (registrations and logins each wait for a password hash, which
/// on a busy machine can take longer than the whole backup).
fn keep_rotating_one_session(
    stop: &Arc<AtomicBool>,
    server: &Arc<TestServer>,
) -> (thread::JoinHandle<()>, AckedList) {
    let server = Arc::clone(server);
    let mut chain = server.login("seed@example.com").1;
    let mut left = LOAD_OPS;
    keep_writing(stop, move || {
        left = left.checked_sub(1)?;
        let reply = server.refresh(&chain);
        assert_eq!(reply.status, 200, "{}", reply.body);
        chain = reply.pair().1;
        Some(chain.clone())
    })
}

#[test]
fn a_backup_under_write_load_holds_every_write_acknowledged_before_it_began() {
    let server = Arc::new(TestServer::start_with(LOAD_ENV));
    server.register("seed@example.com");
    let sessions: Vec<String> = (0..SESSIONS)
        .map(|_| server.login("seed@example.com").1)
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let mut next = 0..LOAD_OPS;
    let (register, registered) = keep_writing(&stop, {
        let server = server.clone();
        move || {
            let email = format!("load{}@example.com", next.next()?);
            let reply =
                server.post_json("/v1/users", &json!({"email": email, "password": PASSWORD}));
            assert_eq!(reply.status, 201, "{}", reply.body);
            Some(email)
        }
    });
    let mut left = LOAD_OPS;
    let (login, logins) = keep_writing(&stop, {
        let server = server.clone();
        move || {
            left = left.checked_sub(1)?;
            Some(server.login("seed@example.com").0)
        }
    });
    // Each session rotates once, so its successor is current in any copy that holds the
    // rotation, and unknown in one that does not.
    let mut sessions = sessions.into_iter();
    let (rotate, rotated) = keep_writing(&stop, {
        let server = server.clone();
        move || {
            let reply = server.refresh(&sessions.next()?);
            assert_eq!(reply.status, 200, "{}", reply.body);
            Some(reply.pair().1)
        }
    });
    let (rechain, rechained) = keep_rotating_one_session(&stop, &server);
    let load = [register, login, rotate, rechain];
    // Back up in the middle of the load: once each kind has some writes acknowledged.
    let deadline = Instant::now() + Duration::from_secs(60);
    while [&registered, &logins, &rotated]
        .iter()
        .any(|acked| acked.lock().unwrap().len() < 5)
    {
        assert!(Instant::now() < deadline, "the load did not start");
        thread::sleep(Duration::from_millis(10));
    }
    let copy_dir = tempfile::tempdir().expect("temp dir");
    let copy = db_in(copy_dir.path());
    let began = Instant::now();
    let out = run(
        &server.db_path(),
        &[],
        &["backup", copy.to_str().unwrap()],
        b"",
    );
    let ended = Instant::now();
    stop.store(true, Ordering::Relaxed);
    for thread in load {
        thread.join().expect("load thread");
    }
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.starts_with("backed up ") && said.trim_end().ends_with(&copy.display().to_string()),
        "{said}"
    );
    assert_eq!(mode(&copy), 0o600);

    let before = |acked: &Mutex<Vec<Acked>>| -> Vec<String> {
        let acked = acked.lock().unwrap();
        acked
            .iter()
            .filter(|a| a.at < began)
            .map(|a| a.what.clone())
            .collect()
    };
    let (registered_before, logins_before, rotated_before) =
        (before(&registered), before(&logins), before(&rotated));
    // The load went on while the backup ran: it was online.
    let during = registered
        .lock()
        .unwrap()
        .iter()
        .chain(logins.lock().unwrap().iter())
        .chain(rechained.lock().unwrap().iter())
        .filter(|a| a.at > began && a.at < ended)
        .count();
    assert!(during > 0, "no write was answered while the backup ran");

    // A server on the copy: it passes the schema check, and has every acknowledged write.
    let restored = TestServer::start_in(copy_dir, LOAD_ENV);
    let list = text(&run(&restored.db_path(), &[], &["user", "list"], b"").stdout);
    for email in &registered_before {
        assert!(list.contains(&format!("\t{email}\t")), "{email} is missing");
    }
    for access in &logins_before {
        let verify = restored.get("/v1/auth/verify", Some(access));
        assert_eq!(verify.status, 200, "a login's session is missing");
    }
    for refresh in &rotated_before {
        let reply = restored.refresh(refresh);
        assert_eq!(reply.status, 200, "a rotation is missing: {}", reply.body);
    }
    // The original goes on serving, unchanged by the backup.
    server.login("seed@example.com");
}

#[test]
fn a_backup_of_a_stopped_server_s_file_starts_a_server_with_its_users() {
    let dir = tempfile::tempdir().expect("temp dir");
    add_user(dir.path(), "root@example.com", &["--role", "admin"]);
    let server = TestServer::start_in(dir, &[]);
    let (_, refresh) = server.login("root@example.com");
    let dir = server.stop();

    let copy_dir = tempfile::tempdir().expect("temp dir");
    let copy = db_in(copy_dir.path());
    let out = run(
        &db_in(dir.path()),
        &[],
        &["backup", copy.to_str().unwrap()],
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("backed up 1 users, 1 sessions"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(mode(&copy), 0o600);
    let restored = TestServer::start_in(copy_dir, &[]);
    // The same signing and refresh keys: the session goes on on the copy.
    assert_eq!(restored.refresh(&refresh).status, 200);
    restored.login("root@example.com");
}

#[test]
fn a_backup_never_overwrites_and_fails_in_one_clear_line() {
    let server = TestServer::start();
    server.register("x@example.com");
    let db = server.db_path();
    let dir = tempfile::tempdir().expect("temp dir");

    let existing = dir.path().join("taken.redb");
    std::fs::write(&existing, b"keep me").expect("write");
    let out = run(&db, &[], &["backup", existing.to_str().unwrap()], b"");
    assert_failed_with(
        &out,
        &format!(
            "latchd: {} already exists; latchd backup never overwrites a file",
            existing.display()
        ),
    );
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");

    let nowhere = dir.path().join("no/such/dir/copy.redb");
    let out = run(&db, &[], &["backup", nowhere.to_str().unwrap()], b"");
    assert_failed_with(
        &out,
        &format!("latchd: cannot back up to {}: ", nowhere.display()),
    );

    // A symlink is a file too, even one that points nowhere: not replaced, nor written through.
    let link = dir.path().join("link.redb");
    let target = dir.path().join("target.redb");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let out = run(&db, &[], &["backup", link.to_str().unwrap()], b"");
    assert_failed_with(
        &out,
        &format!(
            "latchd: {} already exists; latchd backup never overwrites a file",
            link.display()
        ),
    );
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    assert!(!target.exists());

    // A temporary file an interrupted backup left is named, and left alone.
    let copy = dir.path().join("copy.redb");
    let stale = dir.path().join("copy.redb.tmp");
    std::fs::write(&stale, b"half").expect("write");
    let out = run(&db, &[], &["backup", copy.to_str().unwrap()], b"");
    assert_failed_with(&out, "latchd: cannot back up to ");
    assert!(
        text(&out.stderr).contains("interrupted backup"),
        "{}",
        text(&out.stderr)
    );
    assert!(!copy.exists());
    assert_eq!(std::fs::read(&stale).unwrap(), b"half");

    // A relative PATH is the CLI's working directory's, not the server's.
    std::fs::remove_file(&stale).expect("remove");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_latchd"))
        .args(["backup", "copy.redb"])
        .env("LATCHD_DB", &db)
        .current_dir(dir.path())
        .output()
        .expect("run latchd");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(copy.exists());

    // Without a database there is nothing to back up.
    let missing = dir.path().join("missing.redb");
    let out = run(
        &missing,
        &[],
        &["backup", dir.path().join("c2").to_str().unwrap()],
        b"",
    );
    assert_failed_with(
        &out,
        &format!("latchd: {} does not exist", missing.display()),
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
