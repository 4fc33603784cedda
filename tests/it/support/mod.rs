//! The harness of the HTTP tests: the real `latchd serve` on 127.0.0.1 port 0 with a temp redb
//! file, and a tiny blocking HTTP/1.1 client over `TcpStream`; [`proxy`] puts real nginx and
//! Caddy in front of it, [`browser`] drives headless Chromium, and `postgres` (feature
//! `postgres`) runs throw-away PostgreSQL clusters.

pub mod browser;

pub mod clock;

pub mod jar;

pub mod otp;

#[cfg(feature = "postgres")]
pub mod postgres;

pub mod proxy;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

/// The password every test user gets: long enough and not on any common list.
pub const PASSWORD: &str = "correct horse battery staple 42";

/// How long the server gets to print `listening on …`.
const START_DEADLINE: Duration = Duration::from_secs(20);
/// How long a stopped server gets to exit.
const EXIT_DEADLINE: Duration = Duration::from_secs(15);
/// Read and write timeout of the client.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The environment every test server gets; `start_with` adds to or overrides it.
const BASE_ENV: &[(&str, &str)] = &[
    ("LATCHD_LISTEN", "127.0.0.1:0"),
    ("LATCHD_COOKIE_SECURE", "false"),
    ("LATCHD_PBKDF2_ITERATIONS", "1000"),
    ("LATCHD_LOG", "info"),
];

/// A running `latchd serve`, killed on drop.
pub struct TestServer {
    child: Option<Child>,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    env: Vec<(String, String)>,
    // Declared last: dropped after the child is gone.
    dir: TempDir,
}

impl TestServer {
    /// A server with the base environment.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A server with the base environment plus `extra` (a value given here wins; an empty
    /// value removes the variable).
    pub fn start_with(extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let env = extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Self::spawn(dir, env)
    }

    /// A server with the base environment plus `extra`, whose wall clock is `clock`.
    pub fn start_on(clock: &clock::FakeClock, extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut env: Vec<(String, String)> = clock
            .env()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        Self::spawn(dir, env)
    }

    /// A server on the redb file in `dir` (see [`db_in`]), which a CLI run may have written.
    pub fn start_in(dir: TempDir, extra: &[(&str, &str)]) -> Self {
        let env = extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Self::spawn(dir, env)
    }

    /// Kills this server and hands back its directory, so the CLI can use the file before
    /// [`TestServer::start_in`] starts the next one.
    pub fn stop(mut self) -> TempDir {
        self.kill();
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"))
    }

    /// Stops this server and starts a new one on the same redb file and environment.
    pub fn restart(mut self) -> Self {
        self.kill();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        let env = std::mem::take(&mut self.env);
        drop(self);
        Self::spawn(dir, env)
    }

    fn spawn(dir: TempDir, env: Vec<(String, String)>) -> Self {
        let mut cmd = server_command(&db_path(dir.path()), &env);
        cmd.arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn latchd");
        let log = Arc::new(Mutex::new(Vec::new()));
        let listening = drain(child.stderr.take().expect("piped stderr"), Arc::clone(&log));
        let Ok(addr) = listening.recv_timeout(START_DEADLINE) else {
            let _ = child.kill();
            let _ = child.wait();
            // The drain thread may still be copying the last lines.
            thread::sleep(Duration::from_millis(100));
            panic!(
                "latchd did not print `listening on` within {START_DEADLINE:?}; log:\n{}",
                log.lock().expect("log lock").join("\n")
            );
        };
        Self {
            child: Some(child),
            addr,
            log,
            env,
            dir,
        }
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// The server's resident set size in KiB (`VmRSS` of /proc/PID/status).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS line")
    }

    /// The redb file of this server.
    pub fn db_path(&self) -> PathBuf {
        db_path(self.dir.path())
    }

    /// Everything the server wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    /// Sends SIGTERM and waits (bounded) for the process to exit.
    pub fn stop_with_sigterm(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("server already stopped");
        let pid = child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + EXIT_DEADLINE;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "latchd did not exit within {EXIT_DEADLINE:?} of SIGTERM; log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Any request.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        http(self.addr, method, path, headers, body)
    }

    /// `POST path` with a JSON body.
    pub fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    }

    /// `POST path` with a bearer token and no body.
    pub fn post_auth(&self, path: &str, bearer: &str) -> Reply {
        let auth = format!("Bearer {bearer}");
        self.request("POST", path, &[("Authorization", &auth)], b"")
    }

    /// `PUT path` with a JSON body and a bearer token.
    pub fn put_json_auth(&self, path: &str, bearer: &str, body: &Value) -> Reply {
        let auth = format!("Bearer {bearer}");
        self.request(
            "PUT",
            path,
            &[
                ("Content-Type", "application/json"),
                ("Authorization", &auth),
            ],
            body.to_string().as_bytes(),
        )
    }

    /// `GET path`, with a bearer token if given.
    pub fn get(&self, path: &str, bearer: Option<&str>) -> Reply {
        match bearer {
            Some(token) => {
                let auth = format!("Bearer {token}");
                self.request("GET", path, &[("Authorization", &auth)], b"")
            }
            None => self.request("GET", path, &[], b""),
        }
    }

    /// Registers `email` with [`PASSWORD`]; returns the user id.
    pub fn register(&self, email: &str) -> String {
        let reply = self.post_json("/v1/users", &json!({"email": email, "password": PASSWORD}));
        assert_eq!(reply.status, 201, "register {email}: {}", reply.body);
        reply.json()["id"].as_str().expect("id").to_owned()
    }

    /// Logs `email` in with [`PASSWORD`]; returns (access token, refresh token).
    pub fn login(&self, email: &str) -> (String, String) {
        self.login_with(email, PASSWORD)
    }

    /// Logs `email` in with `password`; returns (access token, refresh token).
    pub fn login_with(&self, email: &str, password: &str) -> (String, String) {
        let reply = self.post_json(
            "/v1/auth/login",
            &json!({"email": email, "password": password}),
        );
        assert_eq!(reply.status, 200, "login {email}: {}", reply.body);
        reply.pair()
    }

    /// The value of one sample of `/metrics`, e.g. `latchd_families_live` or
    /// `latchd_logins_total{outcome="ok"}`.
    pub fn metric(&self, series: &str) -> u64 {
        let reply = self.get("/metrics", None);
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply
            .body
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no sample {series} in\n{}", reply.body))
            .parse()
            .expect("a whole number")
    }

    /// Presents a refresh token in the body.
    pub fn refresh(&self, refresh_token: &str) -> Reply {
        self.post_json(
            "/v1/auth/refresh",
            &json!({ "refresh_token": refresh_token }),
        )
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            eprintln!("---- latchd log ({}) ----\n{}", self.addr, self.log());
        }
    }
}

/// The redb file a server started in `dir` uses.
pub fn db_in(dir: &Path) -> PathBuf {
    db_path(dir)
}

fn db_path(dir: &Path) -> PathBuf {
    dir.join("latchd.redb")
}

/// `latchd` with a clean environment: PATH, the base variables, `LATCHD_DB`, then `extra`.
/// An empty value in `extra` removes the variable.
fn server_command(db: &Path, extra: &[(String, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_latchd"));
    cmd.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    for (k, v) in BASE_ENV {
        cmd.env(k, v);
    }
    cmd.env("LATCHD_DB", db);
    for (k, v) in extra {
        if v.is_empty() {
            cmd.env_remove(k);
        } else {
            cmd.env(k, v);
        }
    }
    cmd
}

/// Reads stderr line by line into `log`; sends the address of the `listening on` line.
fn drain(stderr: ChildStderr, log: Arc<Mutex<Vec<String>>>) -> Receiver<SocketAddr> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.strip_prefix("listening on ") {
                if let Ok(addr) = addr.trim().parse() {
                    let _ = tx.send(addr);
                }
            }
            log.lock().expect("log lock").push(line);
        }
    });
    rx
}

/// Runs `latchd serve` with the base environment on `db` plus `extra`, expecting it to exit by
/// itself within the deadline; returns its output.
pub fn run_to_exit(db: &Path, extra: &[(&str, &str)]) -> Output {
    run(db, extra, &["serve"], b"")
}

/// Runs `latchd <args>` with the base environment on `db` plus `extra`, `stdin` on its standard
/// input, expecting it to exit within the deadline; returns its output.
pub fn run(db: &Path, extra: &[(&str, &str)], args: &[&str], stdin: &[u8]) -> Output {
    let extra: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut cmd = server_command(db, &extra);
    let mut child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn latchd");
    {
        let mut pipe = child.stdin.take().expect("piped stdin");
        // A command that exits without reading closes the pipe: not an error here.
        let _ = pipe.write_all(stdin);
    }
    let deadline = Instant::now() + EXIT_DEADLINE;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "latchd {args:?} kept running for {EXIT_DEADLINE:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A request authenticated by the refresh cookie alone: its name, the headers beside the
/// cookie, the body.
pub type CookieCase = (
    &'static str,
    Vec<(&'static str, &'static str)>,
    &'static [u8],
);

/// Requests a page elsewhere could make a browser send with its refresh cookie, which every
/// cookie-authenticated route refuses with 400 (API.md v2 "Hardening").
pub fn cross_site_cookie_requests() -> Vec<CookieCase> {
    vec![
        ("no content type", vec![], b""),
        (
            "a form",
            vec![("Content-Type", "application/x-www-form-urlencoded")],
            b"a=b",
        ),
        ("text/plain", vec![("Content-Type", "text/plain")], b"{}"),
        (
            "multipart",
            vec![("Content-Type", "multipart/form-data; boundary=x")],
            b"--x--",
        ),
        (
            "another origin",
            vec![
                ("Content-Type", "application/json"),
                ("Origin", "https://evil.test"),
            ],
            b"{}",
        ),
        (
            "a null origin",
            vec![("Content-Type", "application/json"), ("Origin", "null")],
            b"",
        ),
    ]
}

/// Whether the external `tool` (Debian package `package`) can be run. When it cannot, and `CI`
/// is set (to anything but empty, `0` or `false`), this fails the test: CI must not skip, and
/// `.ci/run` installs the package. Otherwise it prints one line and the caller returns early.
pub fn require(tool: &str, package: &str) -> bool {
    require_found(
        tool,
        tool_path(tool),
        &format!("Debian: apt-get install {package}"),
    )
    .is_some()
}

/// [`require`] for a tool found another way: `found` is where it is, if anywhere, and `how`
/// says how to get it. `None` (after one line, or a failure under `CI`) means skip.
pub fn require_found(tool: &str, found: Option<PathBuf>, how: &str) -> Option<PathBuf> {
    if found.is_some() {
        return found;
    }
    assert!(
        !ci(),
        "{tool} is not installed and CI is set: install it ({how})"
    );
    eprintln!("skipping: {tool} not installed; CI installs it ({how})");
    None
}

/// Whether `CI` is set (to anything but empty, `0` or `false`): then a missing tool fails the
/// test instead of skipping it.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"))
}

/// Where the executable `tool` is: on PATH, or in /usr/sbin or /sbin, which a non-root PATH may
/// leave out (Debian's nginx is /usr/sbin/nginx).
pub fn tool_path(tool: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;

    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(tool))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Waits for a storage operation, on this thread's current-thread runtime.
pub fn wait<T>(
    pending: latchd::auth::storage::Pending<'_, T>,
) -> Result<T, latchd::auth::storage::StoreError> {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime");
    }
    RUNTIME.with(|rt| rt.block_on(pending))
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Lowercased names, in order, repeats kept.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// (access token, refresh token) of a token-pair answer.
    pub fn pair(&self) -> (String, String) {
        let body = self.json();
        (
            body["access_token"]
                .as_str()
                .expect("access_token")
                .to_owned(),
            body["refresh_token"]
                .as_str()
                .expect("refresh_token")
                .to_owned(),
        )
    }

    /// Asserts an error answer: `status`, and a body of exactly `error` and `error_description`.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        let body = self.json();
        assert_eq!(
            member_names(&body),
            ["error", "error_description"],
            "{}",
            self.body
        );
        assert_eq!(body["error"], code, "{}", self.body);
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{}",
            self.body
        );
    }
}

/// One request over a fresh connection (`Connection: close`), read to EOF.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    raw(addr, &request_bytes(addr, method, path, headers, body))
}

/// As [`http`], but `None` instead of a panic when the server is not there or hangs up before
/// a whole answer (for tests that kill it under load). A whole answer has its Content-Length,
/// or is a 204.
pub fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<Reply> {
    let request = request_bytes(addr, method, path, headers, body);
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).ok()?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
    stream.write_all(&request).ok()?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).ok()?;
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        // A 204 has no body and no Content-Length (RFC 9110 §8.6).
        .or_else(|| head.starts_with("HTTP/1.1 204 ").then_some(0))?;
    (bytes.len() == end + 4 + length).then(|| parse(&bytes))
}

fn request_bytes(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
    {
        let _ = write!(head, "Content-Length: {}\r\n", body.len());
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    request
}

/// Writes `request` as is and parses the answer.
pub fn raw(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    // The server may answer (413) and close before reading all of a large body.
    let _ = stream.write_all(request);
    let mut bytes = Vec::new();
    match stream.read_to_end(&mut bytes) {
        Ok(_) => {}
        // A reset after a complete answer (the server closed with unread input) is fine.
        Err(e) if !bytes.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("reading the answer: {e}"),
    }
    parse(&bytes)
}

fn parse(bytes: &[u8]) -> Reply {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(bytes)));
    let head = std::str::from_utf8(&bytes[..end]).expect("UTF-8 head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').expect("header line");
            (name.trim().to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    let rest = &bytes[end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Reply {
        status,
        headers,
        body: String::from_utf8(body).expect("UTF-8 body"),
    }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = std::str::from_utf8(&rest[..eol]).expect("chunk size");
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .expect("hex chunk size");
        if size == 0 {
            return out;
        }
        let start = eol + 2;
        out.extend_from_slice(&rest[start..start + size]);
        rest = &rest[start + size + 2..];
    }
}

/// Adds a user with [`PASSWORD`] through `latchd user add` on the file in `dir` (no server may
/// hold it); `extra` are further arguments such as `["--role", "admin"]`. Returns the new id.
pub fn add_user(dir: &Path, email: &str, extra: &[&str]) -> String {
    let mut args = vec!["user", "add", "--email", email];
    args.extend_from_slice(extra);
    let out = run(&db_in(dir), &[], &args, format!("{PASSWORD}\n").as_bytes());
    assert!(
        out.status.success(),
        "user add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The member names of the JSON object `value`, sorted: what a test compares against the
/// exact set an answer must have.
pub fn member_names(value: &serde_json::Value) -> Vec<&str> {
    let mut names: Vec<&str> = value
        .as_object()
        .expect("a JSON object")
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    names
}
