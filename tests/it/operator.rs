//! The operator CLI beside a running server: every command reaches the server over the
//! owner-only socket next to the database, and the server's answers change at once.

use std::io::{BufRead as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use latchd::control::socket_path;
use serde_json::{json, Value};

use crate::cli::assert_failed_with;
use crate::support::clock::FakeClock;
use crate::support::{add_user, db_in, require, run, TestServer, PASSWORD};

#[test]
fn user_list_and_add_beside_a_running_server() {
    let server = TestServer::start();
    let db = server.db_path();
    let id = server.register("web@example.com");

    let list = ok(&run(&db, &[], &["user", "list"], b""));
    assert!(
        list.starts_with(&format!("{id}\tweb@example.com\t\t")),
        "{list}"
    );

    let out = run(
        &db,
        &[],
        &[
            "user",
            "add",
            "--email",
            "cli@example.com",
            "--role",
            "admin",
        ],
        format!("{PASSWORD}\n").as_bytes(),
    );
    let new_id = ok(&out).trim().to_owned();
    assert!(uuid::Uuid::try_parse(&new_id).is_ok(), "{new_id}");
    assert!(
        !text(&out.stderr).contains("created a new database"),
        "{}",
        text(&out.stderr)
    );
    // The running server knows the new user at once: it logs in and is an admin.
    let (access, _) = server.login("cli@example.com");
    let users = server.get("/v1/admin/users", Some(&access));
    assert_eq!(users.status, 200, "{}", users.body);
    assert_eq!(users.json().as_array().expect("array").len(), 2);

    // The API's refusals come back as the CLI's one line.
    let taken = run(
        &db,
        &[],
        &["user", "add", "--email", "web@example.com"],
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert_eq!(taken.status.code(), Some(1));
    assert_eq!(
        text(&taken.stderr).lines().count(),
        1,
        "{}",
        text(&taken.stderr)
    );
    let weak = run(
        &db,
        &[],
        &["user", "add", "--email", "w@example.com"],
        b"short\n",
    );
    assert!(
        text(&weak.stderr).starts_with("latchd: password refused:"),
        "{}",
        text(&weak.stderr)
    );
}

#[test]
fn disable_enable_and_delete_take_effect_in_the_running_server_at_once() {
    let server = TestServer::start();
    let db = server.db_path();
    server.register("bob@example.com");
    let (access, refresh) = server.login("bob@example.com");
    assert_eq!(server.get("/v1/auth/verify", Some(&access)).status, 200);

    let out = ok(&run(&db, &[], &["user", "disable", "bob@example.com"], b""));
    assert!(out.starts_with("disabled "), "{out}");
    // No restart: the server's memory followed the write.
    assert_eq!(server.get("/v1/auth/verify", Some(&access)).status, 401);
    server.refresh(&refresh).assert_error(401, "invalid_grant");
    let login = server.post_json(
        "/v1/auth/login",
        &json!({"email": "bob@example.com", "password": PASSWORD}),
    );
    login.assert_error(401, "invalid_grant");
    let list = ok(&run(&db, &[], &["user", "list"], b""));
    assert!(list.trim_end().ends_with("\tdisabled"), "{list}");

    ok(&run(&db, &[], &["user", "enable", "bob@example.com"], b""));
    let (access, _) = server.login("bob@example.com");
    assert_eq!(server.get("/v1/auth/verify", Some(&access)).status, 200);

    ok(&run(&db, &[], &["user", "delete", "bob@example.com"], b""));
    assert_eq!(server.get("/v1/auth/verify", Some(&access)).status, 401);
    assert_eq!(ok(&run(&db, &[], &["user", "list"], b"")), "");
    let gone = run(&db, &[], &["user", "delete", "bob@example.com"], b"");
    assert_eq!(gone.status.code(), Some(1));
    assert_eq!(
        text(&gone.stderr).trim_end(),
        "latchd: no user with id or email \"bob@example.com\""
    );
}

#[test]
fn set_roles_beside_a_running_server_ends_the_old_tokens_and_keeps_the_session() {
    let server = TestServer::start();
    let db = server.db_path();
    server.register("roy@example.com");
    let (access, refresh) = server.login("roy@example.com");
    let out = ok(&run(
        &db,
        &[],
        &["user", "set-roles", "roy@example.com", "--role", "ops"],
        b"",
    ));
    assert!(out.trim_end().ends_with("are now: ops"), "{out}");
    // The running server bumped the token version: the old access token is dead at once...
    assert_eq!(server.get("/v1/auth/verify", Some(&access)).status, 401);
    // ...and the session lives on, its next token carrying the new roles.
    let rotated = server.refresh(&refresh);
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let fresh = rotated.json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    let me = server.get("/v1/auth/me", Some(&fresh));
    assert_eq!(me.json()["roles"], json!(["ops"]), "{}", me.body);
}

#[test]
fn totp_reset_and_gc_run_in_the_running_server() {
    let server = TestServer::start();
    let db = server.db_path();
    server.register("ann@example.com");
    let (access, _) = server.login("ann@example.com");
    let out = ok(&run(
        &db,
        &[],
        &["user", "totp-reset", "ann@example.com"],
        b"",
    ));
    assert!(out.contains("its sessions are revoked"), "{out}");
    // The reset ends every session of the user in the running server.
    assert_eq!(server.get("/v1/auth/verify", Some(&access)).status, 401);

    let swept = ok(&run(&db, &[], &["gc"], b""));
    assert!(swept.starts_with("swept blacklist="), "{swept}");
    assert!(
        server.log().contains("operator command"),
        "{}",
        server.log()
    );
}

#[test]
fn key_rotate_beside_a_running_server_signs_with_the_new_key_at_once_and_old_tokens_verify() {
    let server = TestServer::start();
    let db = server.db_path();
    server.register("kim@example.com");
    let (before, refresh) = server.login("kim@example.com");
    let old_kid = kid(&before);

    let out = run(&db, &[], &["key", "rotate"], b"");
    let new_kid = ok(&out).trim().to_owned();
    assert_eq!(new_kid.len(), 12, "{new_kid}");
    assert_ne!(new_kid, old_kid);
    assert!(
        text(&out.stderr).starts_with("latchd: retired the older key(s); they verify until "),
        "{}",
        text(&out.stderr)
    );
    // No restart: tokens issued from now on carry the new kid, from login and refresh alike.
    let (after, _) = server.login("kim@example.com");
    assert_eq!(kid(&after), new_kid);
    let refreshed = server.refresh(&refresh);
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    assert_eq!(kid(&refreshed.pair().0), new_kid);
    for (name, token) in [("before", &before), ("after", &after)] {
        let verify = server.get("/v1/auth/verify", Some(token));
        assert_eq!(
            verify.status, 200,
            "token {name} the rotation: {}",
            verify.body
        );
    }

    // A second rotation: the first key is still in its window, the second joins it.
    let third = ok(&run(&db, &[], &["key", "rotate"], b""))
        .trim()
        .to_owned();
    assert!(third != new_kid && third != old_kid, "{third}");
    let (latest, _) = server.login("kim@example.com");
    assert_eq!(kid(&latest), third);

    // The restarted server reads the same keys: every token still verifies, the newest signs.
    let server = server.restart();
    for token in [&before, &after, &latest] {
        let verify = server.get("/v1/auth/verify", Some(token));
        assert_eq!(verify.status, 200, "after the restart: {}", verify.body);
    }
    assert_eq!(kid(&server.login("kim@example.com").0), third);
}

#[test]
fn a_key_retired_in_the_running_server_stops_verifying_when_its_window_ends() {
    let Some(clock) = FakeClock::new() else {
        return;
    };
    // A wide leeway keeps the token signed after the rotation valid past the old key's window.
    let server = TestServer::start_on(&clock, &[("LATCHD_LEEWAY", "300")]);
    let db = server.db_path();
    server.register("win@example.com");
    let (old, _) = server.login("win@example.com");
    ok(&run(&db, &[], &["key", "rotate"], b""));
    let (new, _) = server.login("win@example.com");
    assert_eq!(server.get("/v1/auth/verify", Some(&old)).status, 200);

    // One access TTL (900 s) after the rotation, and a second, the retired key is done.
    clock.advance(901);
    let unknown_kid = r#"latchd_verifications_total{result="rejected",reason="kid"}"#;
    let refused = server.metric(unknown_kid);
    let verify = server.get("/v1/auth/verify", Some(&old));
    assert_eq!(verify.status, 401, "{}", verify.body);
    assert_eq!(
        server.metric(unknown_kid),
        refused + 1,
        "refused for its key"
    );
    let verify = server.get("/v1/auth/verify", Some(&new));
    assert_eq!(verify.status, 200, "{}", verify.body);
}

#[test]
fn key_rotate_is_refused_beside_a_server_with_a_configured_key() {
    use base64::Engine as _;
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([9u8; 32]);
    let server = TestServer::start_with(&[("LATCHD_SIGNING_KEY", &key)]);
    let db = server.db_path();
    server.register("cfg@example.com");
    let (before, _) = server.login("cfg@example.com");
    // The server's configuration decides, not the CLI's environment (which lacks the key).
    let out = run(&db, &[], &["key", "rotate"], b"");
    assert_failed_with(
        &out,
        "latchd: LATCHD_SIGNING_KEY is set: the configured key signs",
    );
    assert_eq!(text(&out.stdout), "");
    let (after, _) = server.login("cfg@example.com");
    assert_eq!(kid(&before), kid(&after));
}

#[test]
fn the_socket_is_owner_only_and_goes_away_with_the_server() {
    use std::os::unix::fs::FileTypeExt as _;
    let mut server = TestServer::start();
    let socket = latchd::control::socket_path(&server.db_path());
    let meta = std::fs::symlink_metadata(&socket).expect("socket next to the database");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let status = server.stop_with_sigterm();
    assert!(status.success(), "{status}: {}", server.log());
    assert!(!socket.exists(), "a stopped server removes its socket");
}

#[test]
fn a_holder_that_does_not_answer_on_the_socket_is_named() {
    let server = TestServer::start();
    let db = server.db_path();
    // A server whose socket is gone (or a latchd older than the CLI) still holds the file.
    std::fs::remove_file(latchd::control::socket_path(&db)).expect("remove socket");
    let out = run(&db, &[], &["user", "list"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim_end(),
        format!(
            "latchd: {} is locked by a process that does not answer on {}.sock (a latchd older \
             than this CLI, or another program); stop it first",
            db.display(),
            db.display()
        )
    );
    assert_eq!(server.get("/healthz", None).status, 200);
}

#[test]
fn a_stale_socket_of_a_killed_server_is_replaced_and_bypassed() {
    let server = TestServer::start();
    server.register("old@example.com");
    let db = server.db_path();
    // kill -9: the socket file stays behind, nobody listens on it.
    let dir = server.stop();
    assert!(latchd::control::socket_path(&db).exists());
    let list = ok(&run(&db, &[], &["user", "list"], b""));
    assert!(list.contains("old@example.com"), "{list}");
    // A new server takes the socket over.
    let server = TestServer::start_in(dir, &[]);
    let out = run(
        &db,
        &[],
        &["user", "add", "--email", "new@example.com"],
        format!("{PASSWORD}\n").as_bytes(),
    );
    ok(&out);
    server.login("new@example.com");
}

#[test]
fn the_server_answers_no_other_user_even_on_a_loosened_socket() {
    let Some(nobody) = Nobody::get() else { return };
    let server = TestServer::start();
    server.register("web@example.com");
    let db = server.db_path();
    // An operator loosening the modes by hand: any local user could connect now.
    chmod(db.parent().expect("dir"), 0o755);
    chmod(&socket_path(&db), 0o666);

    let refused = format!(
        "latchd: refused: this process runs as uid {}; the server answers only its own user \
         (uid 0) and root",
        Nobody::UID
    );
    let list = nobody.run(&db, &["user", "list"]);
    assert_failed_with(&list, &refused);
    assert_eq!(text(&list.stdout), "", "no user is shown");
    let delete = nobody.run(&db, &["user", "delete", "web@example.com"]);
    assert_failed_with(&delete, &refused);
    // Nothing was carried out: the user still logs in.
    server.login("web@example.com");
    assert!(
        server.log().contains("refused a process of another user"),
        "{}",
        server.log()
    );
    // The server's own user is still answered.
    assert!(ok(&run(&db, &[], &["user", "list"], b"")).contains("web@example.com"));
}

#[test]
fn the_cli_sends_nothing_to_a_socket_another_user_listens_on() {
    let Some(nobody) = Nobody::get() else { return };
    // A directory every user may create files in, like /tmp, holding root's stopped database.
    let shared = tempfile::tempdir().expect("temp dir");
    chmod(shared.path(), 0o1777);
    add_user(shared.path(), "root@example.com", &["--role", "admin"]);
    let db = db_in(shared.path());
    // nobody runs a latchd of its own and plants a symlink to its socket at root's socket path.
    let theirs = shared.path().join("theirs");
    std::fs::create_dir(&theirs).expect("mkdir");
    std::os::unix::fs::chown(&theirs, Some(Nobody::UID), Some(Nobody::UID)).expect("chown");
    let mut impostor = nobody.serve(&db_in(&theirs), &shared.path().join("impostor.log"));
    std::os::unix::fs::symlink(socket_path(&db_in(&theirs)), socket_path(&db)).expect("symlink");

    let out = run(
        &db,
        &[],
        &[
            "user",
            "add",
            "--email",
            "new@example.com",
            "--role",
            "admin",
        ],
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert_failed_with(
        &out,
        &format!(
            "latchd: refusing to talk to {}: the process listening runs as uid {}, not as the \
             database's owner (uid 0) or root; nothing was sent",
            socket_path(&db).display(),
            Nobody::UID
        ),
    );
    let log = impostor.stop();
    assert!(
        !log.contains("command=\"user add\""),
        "the impostor was asked: {log}"
    );
}

#[test]
fn a_backup_path_that_is_not_absolute_is_refused_by_the_server() {
    let server = TestServer::start();
    // The server's working directory is this test's; a relative path would land there.
    let name = format!("relative-backup-{}.redb", std::process::id());
    let reply = ask(
        &server.db_path(),
        format!("{}\n", json!({"command": "backup", "path": name})).as_bytes(),
    );
    let written = Path::new(&name).exists();
    let _ = std::fs::remove_file(&name);
    assert!(
        !written,
        "the server wrote {name} in its own working directory"
    );
    assert_eq!(
        reply["error"],
        format!("cannot back up to {name}: the path must be absolute")
    );
}

#[test]
fn malformed_oversized_and_silent_requests_get_an_error_and_the_server_keeps_answering() {
    let server = TestServer::start();
    server.register("ok@example.com");
    let db = server.db_path();
    for bad in [
        &b"not json\n"[..],
        b"{\"command\":\"user-add\",\"email\":\"a@example.com\"}\n",
        b"{\"command\":\"shell\"}\n",
        b"\n",
        b"",
    ] {
        let reply = ask(&db, bad);
        let error = reply["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with("the server does not understand this command"),
            "{}: {reply}",
            String::from_utf8_lossy(bad)
        );
    }
    // A request past the 64 KiB bound, without a line end, is cut there and refused.
    let huge = vec![b'x'; 1 << 20];
    let reply = ask(&db, &huge);
    assert!(reply["error"].is_string(), "{reply}");
    // A client that connects and sends nothing holds no one else up.
    let silent = UnixStream::connect(socket_path(&db)).expect("connect");
    assert!(ok(&run(&db, &[], &["user", "list"], b"")).contains("ok@example.com"));
    drop(silent);
    assert_eq!(server.get("/healthz", None).status, 200);
}

/// Sends `request` (raw bytes) on the socket of the server on `db`; its reply as JSON.
fn ask(db: &Path, request: &[u8]) -> Value {
    let mut stream = UnixStream::connect(socket_path(db)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    // The server may stop reading at its bound: what it did not read is not an error here.
    let _ = stream.write_all(request);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    // One line, as the CLI reads it: a server that stopped reading at its bound resets the
    // connection after its reply.
    let mut answer = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut answer)
        .expect("read the reply");
    serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer:?}"))
}

/// Runs `latchd` as the unprivileged user nobody through setpriv(1): possible only for root.
struct Nobody {
    setpriv: PathBuf,
}

impl Nobody {
    const UID: u32 = 65534;

    /// `None` (after one line) when this process is not root, or setpriv is missing.
    fn get() -> Option<Self> {
        let probe = tempfile::tempfile().expect("temp file");
        if probe.metadata().expect("stat").uid() != 0 {
            eprintln!("skipping: switching to another user needs root");
            return None;
        }
        if !require("setpriv", "util-linux") {
            return None;
        }
        Some(Self {
            setpriv: crate::support::tool_path("setpriv")?,
        })
    }

    fn command(&self, db: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.setpriv);
        let uid = Self::UID.to_string();
        cmd.args(["--reuid", &uid, "--regid", &uid, "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_latchd"))
            .args(args)
            .env_clear()
            .env("LATCHD_DB", db)
            .env("LATCHD_LISTEN", "127.0.0.1:0")
            .env("LATCHD_PBKDF2_ITERATIONS", "1000")
            .env("LATCHD_LOG", "info");
        cmd
    }

    /// Runs a CLI command as nobody to its end.
    fn run(&self, db: &Path, args: &[&str]) -> Output {
        self.command(db, args)
            .stdin(Stdio::null())
            .output()
            .expect("run latchd as nobody")
    }

    /// Starts `latchd serve` as nobody on `db`, logging to `log`; returns once its socket is
    /// there.
    fn serve(&self, db: &Path, log: &Path) -> Impostor {
        let file = std::fs::File::create(log).expect("log file");
        let child = self
            .command(db, &["serve"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn latchd as nobody");
        let impostor = Impostor {
            child,
            log: log.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket_path(db).exists() {
            assert!(
                Instant::now() < deadline,
                "no socket: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(20));
        }
        impostor
    }
}

/// A server of another user; killed on drop.
struct Impostor {
    child: std::process::Child,
    log: PathBuf,
}

impl Impostor {
    /// Kills it; returns its log.
    fn stop(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        self.stop();
    }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Asserts the command succeeded; returns its stdout.
fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

fn kid(token: &str) -> String {
    use base64::Engine as _;
    let header = token.split('.').next().expect("header");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .expect("base64url");
    let value: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
    value["kid"].as_str().expect("kid").to_owned()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
