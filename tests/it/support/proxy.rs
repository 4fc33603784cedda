//! Real reverse proxies in front of a test latchd: nginx (`auth_request`) and Caddy
//! (`forward_auth`), each run from its configuration in `examples/` with this machine's files,
//! ports and addresses put in; and [`Upstream`], a stand-in for the protected app (or for latchd)
//! that records every request reaching it.
//!
//! A proxy serves both names of the examples on one loopback port, as it would on 443:
//! [`APP_HOST`] (the app, behind forward-auth) and [`AUTH_HOST`] (latchd's own pages and API).
//! [`Proxy::request`] takes an absolute URL such as `http://app.example.com/x` and sends it to the
//! proxy's port with that `Host`, as if DNS pointed both names there; a `Location` latchd sends
//! can be followed the same way. A latchd behind a proxy runs with [`LATCHD_ENV`].
//!
//! TLS is left out (the proxies terminate it; the examples' TLS lines are checked by
//! `nginx -t` and `caddy validate` instead), so the original URLs latchd sees are `http://…`,
//! which it accepts as redirect targets only with `LATCHD_COOKIE_SECURE=false` (the harness's
//! default).

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufRead as _, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::json;
use tempfile::TempDir;

use super::{raw, tool_path, Reply};

/// The protected app's name in the examples.
pub const APP_HOST: &str = "app.example.com";
/// The name of latchd's own pages in the examples.
pub const AUTH_HOST: &str = "auth.example.com";
/// `LATCHD_PUBLIC_URL` of a latchd behind a test proxy (plain http: TLS is left out).
pub const PUBLIC_URL: &str = "http://auth.example.com";
/// `LATCHD_COOKIE_DOMAIN` of a latchd behind a test proxy.
pub const COOKIE_DOMAIN: &str = "example.com";
/// The environment of a latchd behind a test proxy, which connects from 127.0.0.1 (for
/// [`super::TestServer::start_with`]).
pub const LATCHD_ENV: [(&str, &str); 3] = [
    ("LATCHD_TRUSTED_PROXIES", "127.0.0.1"),
    ("LATCHD_PUBLIC_URL", PUBLIC_URL),
    ("LATCHD_COOKIE_DOMAIN", COOKIE_DOMAIN),
];

/// How long a proxy gets to accept connections on every port it was given.
const START_DEADLINE: Duration = Duration::from_secs(20);
/// Starts tried when another process took a chosen port before the proxy bound it.
const START_ATTEMPTS: usize = 3;
/// How long a config check (`nginx -t`, `caddy validate`) may take.
const CHECK_DEADLINE: Duration = Duration::from_secs(30);
/// How long the upstream waits on one connection for its request, and to write its answer.
const UPSTREAM_IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the upstream's accept loop looks at its stop flag.
const UPSTREAM_POLL: Duration = Duration::from_millis(5);
/// The largest request head the upstream reads.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The largest request body the upstream reads.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What a proxy should ask of latchd, beyond what the examples do.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// A query for the verify URI, such as `role=admin` or `mfa=1`: latchd's rule for the whole
    /// app. `None`: plain `/v1/auth/verify`, as in the examples.
    pub verify_query: Option<String>,
}

impl Options {
    /// Options asking latchd for `query` on every verify (`role=admin`).
    pub fn verify_query(query: &str) -> Self {
        Self {
            verify_query: Some(query.to_owned()),
        }
    }
}

/// A running reverse proxy in front of latchd and an app.
pub trait Proxy {
    /// The loopback address both [`APP_HOST`] and [`AUTH_HOST`] are served on.
    fn addr(&self) -> SocketAddr;

    /// The configuration the proxy runs.
    fn config(&self) -> &str;

    /// Everything the proxy logged so far.
    fn log(&self) -> String;

    /// `method url` through the proxy: `url` is absolute (`http://app.example.com/path?q`); its
    /// authority becomes the `Host` header, and the request goes to [`Proxy::addr`] whatever
    /// that authority names.
    fn request(&self, method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        request_via(self.addr(), method, url, headers, body)
    }

    /// `GET url` through the proxy (see [`Proxy::request`]).
    fn get(&self, url: &str, headers: &[(&str, &str)]) -> Reply {
        self.request("GET", url, headers, b"")
    }
}

/// `method url` sent to `addr` with the URL's authority as `Host` (`Connection: close`).
pub fn request_via(
    addr: SocketAddr,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("not an http:// URL: {url}"));
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(split);
    let target = match target {
        "" => "/".to_owned(),
        t if t.starts_with('?') => format!("/{t}"),
        t => t.to_owned(),
    };
    let mut head =
        format!("{method} {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    // Like a browser: a length only when there is a body or the method has one.
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        let _ = write!(head, "Content-Length: {}\r\n", body.len());
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    raw(addr, &request)
}

/// nginx running `examples/nginx.conf` on loopback ports, in the foreground, as one process.
pub struct Nginx {
    addr: SocketAddr,
    http_addr: SocketAddr,
    config: String,
    process: Process,
}

impl Nginx {
    /// Starts nginx protecting `upstream` with the latchd at `latchd`.
    ///
    /// Panics (printing nginx's logs) when it does not accept connections within the deadline.
    /// Callers check [`super::require`]`("nginx", "nginx")` first.
    pub fn start(latchd: SocketAddr, upstream: SocketAddr, opts: &Options) -> Self {
        let binary = tool_path("nginx").expect("nginx on PATH (check with support::require)");
        let example = example("nginx.conf");
        let (process, ports, config) = launch("nginx", 2, |dir, ports| {
            let config = nginx_config(
                &example,
                &Site {
                    dir,
                    port: ports[0],
                    http_port: ports[1],
                    latchd,
                    upstream,
                    verify_query: opts.verify_query.as_deref(),
                },
            );
            let conf = dir.join("nginx.conf");
            fs::write(&conf, &config).expect("write nginx.conf");
            let mut cmd = Command::new(&binary);
            cmd.env_clear()
                .args(nginx_args(dir, &conf))
                .current_dir(dir);
            (
                cmd,
                vec![dir.join("error.log"), dir.join("access.log")],
                config,
            )
        });
        Self {
            addr: loopback(ports[0]),
            http_addr: loopback(ports[1]),
            config,
            process,
        }
    }

    /// Where the example's plain-http server (port 80, a redirect to https) listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }
}

impl Proxy for Nginx {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn config(&self) -> &str {
        &self.config
    }

    fn log(&self) -> String {
        self.process.logs()
    }
}

/// Caddy running `examples/Caddyfile` on a loopback port, without TLS, admin API off.
pub struct Caddy {
    addr: SocketAddr,
    config: String,
    process: Process,
}

impl Caddy {
    /// Starts Caddy protecting `upstream` with the latchd at `latchd`.
    ///
    /// Panics (printing Caddy's log) when it does not accept connections within the deadline.
    /// Callers check [`super::require`]`("caddy", "caddy")` first.
    pub fn start(latchd: SocketAddr, upstream: SocketAddr, opts: &Options) -> Self {
        let binary = tool_path("caddy").expect("caddy on PATH (check with support::require)");
        let example = example("Caddyfile");
        let (process, ports, config) = launch("caddy", 1, |dir, ports| {
            let config = caddy_config(
                &example,
                &Site {
                    dir,
                    port: ports[0],
                    http_port: 0,
                    latchd,
                    upstream,
                    verify_query: opts.verify_query.as_deref(),
                },
            );
            let file = dir.join("Caddyfile");
            fs::write(&file, &config).expect("write Caddyfile");
            let mut cmd = Command::new(&binary);
            caddy_env(&mut cmd, dir);
            cmd.arg("run")
                .arg("--config")
                .arg(&file)
                .args(["--adapter", "caddyfile"]);
            (cmd, Vec::new(), config)
        });
        Self {
            addr: loopback(ports[0]),
            config,
            process,
        }
    }
}

impl Proxy for Caddy {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn config(&self) -> &str {
        &self.config
    }

    fn log(&self) -> String {
        self.process.logs()
    }
}

/// The text of `examples/<name>`.
pub fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Where and against what a proxy config is made to run.
pub struct Site<'a> {
    /// The proxy's own directory: logs, pid file, temp files, state.
    pub dir: &'a Path,
    /// The port both names are served on (the examples' 443).
    pub port: u16,
    /// nginx only: the port of the plain-http redirect server (the example's 80).
    pub http_port: u16,
    /// Where latchd listens (the examples' 127.0.0.1:8080).
    pub latchd: SocketAddr,
    /// Where the protected app listens (the examples' 127.0.0.1:3000).
    pub upstream: SocketAddr,
    /// See [`Options::verify_query`].
    pub verify_query: Option<&'a str>,
}

/// `examples/nginx.conf` as the tests run it: files in `site.dir`, one foreground process,
/// plain http on loopback ports, latchd and the app at the given addresses. Every edit must
/// find its line in the example, so one that stops matching fails the test.
pub fn nginx_config(example: &str, site: &Site<'_>) -> String {
    let query = site
        .verify_query
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let mut edits = nginx_files(site.dir, site.http_port, "info");
    edits.extend([
        Edit::Drop("user "),
        Edit::Line("worker_processes ", "worker_processes 1;".to_owned()),
        Edit::Prefix("listen 443 ssl", format!("listen 127.0.0.1:{}", site.port)),
        Edit::Drop("ssl_"),
        Edit::Line("server 127.0.0.1:8080;", format!("server {};", site.latchd)),
        Edit::Line(
            "server 127.0.0.1:3000;",
            format!("server {};", site.upstream),
        ),
        Edit::Line(
            "proxy_pass http://latchd/v1/auth/verify;",
            format!("proxy_pass http://latchd/v1/auth/verify{query};"),
        ),
    ]);
    // master_process off: one process, nothing forked that could outlive the test, and no
    // switch to `user` when run as root.
    format!(
        "daemon off;\nmaster_process off;\n{}",
        edit(example, &edits)
    )
}

/// `examples/nginx.conf` with only what `nginx -t` needs changed to run here: files in `dir`, the
/// listening ports moved to loopback (`nginx -t` binds them), IPv6 listens left out (CI may have
/// no IPv6), and the certificates replaced by `cert` and `key`. TLS and everything else stay.
pub fn nginx_example_for_check(
    example: &str,
    dir: &Path,
    ports: [u16; 2],
    cert: &Path,
    key: &Path,
) -> String {
    let mut edits = nginx_files(dir, ports[1], "notice");
    edits.extend([
        Edit::Prefix("listen 443", format!("listen 127.0.0.1:{}", ports[0])),
        Edit::Line(
            "ssl_certificate ",
            format!("ssl_certificate {};", cert.display()),
        ),
        Edit::Line(
            "ssl_certificate_key ",
            format!("ssl_certificate_key {};", key.display()),
        ),
    ]);
    edit(example, &edits)
}

/// `examples/Caddyfile` as the tests run it: admin API and automatic HTTPS off, both sites on
/// plain http on one loopback port, latchd and the app at the given addresses.
pub fn caddy_config(example: &str, site: &Site<'_>) -> String {
    let port = site.port;
    let edits = [
        Edit::Line("app.example.com {", format!("http://{APP_HOST}:{port} {{")),
        Edit::Line(
            "auth.example.com {",
            format!("http://{AUTH_HOST}:{port} {{"),
        ),
        Edit::Line(
            "forward_auth 127.0.0.1:8080 {",
            format!("forward_auth {} {{", site.latchd),
        ),
        Edit::Line(
            "uri /v1/auth/verify?",
            format!("uri /v1/auth/verify?{}", site.verify_query.unwrap_or("")),
        ),
        Edit::Line(
            "reverse_proxy 127.0.0.1:8080",
            format!("reverse_proxy {}", site.latchd),
        ),
        Edit::Line(
            "reverse_proxy 127.0.0.1:3000",
            format!("reverse_proxy {}", site.upstream),
        ),
    ];
    format!(
        "{{\n\tadmin off\n\tauto_https off\n}}\n\n{}",
        edit(example, &edits)
    )
}

/// Runs `nginx -t` on `config`, written into `dir` with that directory as nginx's prefix.
///
/// # Errors
/// nginx's output when it rejects the configuration.
pub fn nginx_check(config: &str, dir: &Path) -> Result<String, String> {
    let conf = dir.join("nginx-check.conf");
    fs::write(&conf, config).expect("write nginx config");
    let mut cmd = Command::new(tool_path("nginx").expect("nginx on PATH"));
    cmd.env_clear()
        .arg("-t")
        .args(nginx_args(dir, &conf))
        .current_dir(dir);
    run_check("nginx -t", cmd)
}

/// Runs `caddy validate` on `config` (a Caddyfile), with Caddy's home in a temp dir.
///
/// # Errors
/// Caddy's output when it rejects the configuration.
pub fn caddy_validate(config: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("Caddyfile");
    fs::write(&file, config).expect("write Caddyfile");
    let mut cmd = Command::new(tool_path("caddy").expect("caddy on PATH"));
    caddy_env(&mut cmd, dir.path());
    cmd.arg("validate")
        .arg("--config")
        .arg(&file)
        .args(["--adapter", "caddyfile"]);
    run_check("caddy validate", cmd)
}

/// A free loopback port: bound and released, so a process started next can take it.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// A stand-in HTTP/1.1 server on 127.0.0.1: answers every request with one status and set of
/// headers (200 and none unless told otherwise) and a JSON body echoing the request (`method`, `target`, `headers` as
/// `[name, value]` pairs, `body`), and records each request it read. One request per
/// connection, answered with `Connection: close`; stopped on drop.
pub struct Upstream {
    addr: SocketAddr,
    answer: Arc<Mutex<Answer>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// One request an [`Upstream`] received.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The request method.
    pub method: String,
    /// The request target as sent: path and query.
    pub target: String,
    /// Lowercased names, in order, repeats kept.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Upstream {
    /// An app: 200 to everything.
    pub fn start() -> Self {
        Self::answering(200, &[])
    }

    /// A server answering every request with `status` and `headers` (a stand-in latchd, to see
    /// what a proxy sends it and what it makes of an answer).
    pub fn answering(status: u16, headers: &[(&str, &str)]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("upstream address");
        let answer = Arc::new(Mutex::new(Answer::new(status, headers)));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (answer, seen, stop) = (Arc::clone(&answer), Arc::clone(&seen), Arc::clone(&stop));
            thread::spawn(move || accept_loop(&listener, &answer, &seen, &stop))
        };
        Self {
            addr,
            answer,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers every later request with `status` and `headers` instead.
    pub fn answer_with(&self, status: u16, headers: &[(&str, &str)]) {
        *self.answer.lock().expect("answer lock") = Answer::new(status, headers);
    }

    /// Every request received so far, oldest first. A request is recorded before it is
    /// answered, so one whose answer reached the client is here.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen lock").clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // Bounded: the loop polls the flag, and one connection takes at most the IO timeout.
            let _ = thread.join();
        }
    }
}

impl Seen {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers_named(name).first().copied()
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

#[derive(Clone)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Answer {
    fn new(status: u16, headers: &[(&str, &str)]) -> Self {
        Self {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    answer: &Mutex<Answer>,
    seen: &Mutex<Vec<Seen>>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => serve_one(&stream, answer, seen), // closed when dropped here
            Err(_) => thread::sleep(UPSTREAM_POLL),              // WouldBlock: nobody is connecting
        }
    }
}

/// Reads one request, records it and answers; any I/O or parse failure just closes.
fn serve_one(stream: &TcpStream, answer: &Mutex<Answer>, seen: &Mutex<Vec<Seen>>) {
    let ready = stream.set_nonblocking(false).is_ok()
        && stream.set_read_timeout(Some(UPSTREAM_IO_TIMEOUT)).is_ok()
        && stream.set_write_timeout(Some(UPSTREAM_IO_TIMEOUT)).is_ok();
    if !ready {
        return;
    }
    let mut reader = BufReader::new(stream);
    let Some(request) = read_request(&mut reader) else {
        return;
    };
    let body = json!({
        "method": request.method,
        "target": request.target,
        "headers": request.headers,
        "body": String::from_utf8_lossy(&request.body),
    })
    .to_string();
    let head_only = request.method == "HEAD";
    seen.lock().expect("seen lock").push(request);
    let answer = answer.lock().expect("answer lock").clone();

    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        answer.status,
        reason(answer.status),
        body.len()
    );
    for (name, value) in &answer.headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(&body);
    }
    let mut stream = stream;
    let _ = stream.write_all(out.as_bytes());
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
}

/// One request head and body, bounded by [`MAX_HEAD_BYTES`] and [`MAX_BODY_BYTES`].
fn read_request(reader: &mut BufReader<&TcpStream>) -> Option<Seen> {
    let mut head_bytes = 0;
    let mut line = String::new();
    let mut next_line = |reader: &mut BufReader<&TcpStream>| -> Option<String> {
        line.clear();
        let n = reader
            .take(u64::try_from(MAX_HEAD_BYTES - head_bytes).ok()?)
            .read_line(&mut line)
            .ok()?;
        head_bytes += n;
        (n > 0 && line.ends_with('\n')).then(|| line.trim_end_matches(['\r', '\n']).to_owned())
    };
    let request_line = next_line(reader)?;
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut headers = Vec::new();
    loop {
        let header = next_line(reader)?;
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut seen = Seen {
        method,
        target,
        headers,
        body: Vec::new(),
    };
    let chunked = seen
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if chunked {
        seen.body = read_chunked(reader)?;
    } else if let Some(length) = seen.header("content-length") {
        let length: usize = length.parse().ok()?;
        if length > MAX_BODY_BYTES {
            return None;
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        seen.body = body;
    }
    Some(seen)
}

fn read_chunked(reader: &mut BufReader<&TcpStream>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        reader.take(1024).read_line(&mut size_line).ok()?;
        let size = usize::from_str_radix(size_line.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                let mut trailer = String::new();
                reader.take(8192).read_line(&mut trailer).ok()?;
                if trailer.trim().is_empty() {
                    return Some(body);
                }
            }
        }
        if body.len() + size > MAX_BODY_BYTES {
            return None;
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).ok()?;
        let mut crlf = [0; 2];
        reader.read_exact(&mut crlf).ok()?;
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        302 => "Found",
        303 => "See Other",
        401 => "Unauthorized",
        403 => "Forbidden",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Other",
    }
}

/// One edit of a config file, matched against each line with its indentation trimmed.
enum Edit {
    /// A line starting with the text becomes the given line (indentation kept).
    Line(&'static str, String),
    /// A line starting with the text gets the given text instead of it; the rest stays.
    Prefix(&'static str, String),
    /// A line starting with the text goes.
    Drop(&'static str),
    /// A line equal to the text is followed by the given lines (indented one step further).
    After(&'static str, Vec<String>),
}

impl Edit {
    fn pattern(&self) -> &'static str {
        match self {
            Self::Line(p, _) | Self::Prefix(p, _) | Self::Drop(p) | Self::After(p, _) => p,
        }
    }

    fn matches(&self, trimmed: &str) -> bool {
        match self {
            Self::After(p, _) => trimmed == *p,
            _ => trimmed.starts_with(self.pattern()),
        }
    }
}

/// Applies `edits` line by line (the first edit that matches a line applies to it). Panics when
/// an edit matches no line: the example changed, and the derivation must change with it.
fn edit(text: &str, edits: &[Edit]) -> String {
    let mut used = vec![false; edits.len()];
    let mut out = String::with_capacity(text.len() + 1024);
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let Some(i) = edits.iter().position(|e| e.matches(trimmed)) else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        used[i] = true;
        match &edits[i] {
            Edit::Line(_, with) => {
                let _ = writeln!(out, "{indent}{with}");
            }
            Edit::Prefix(p, with) => {
                let _ = writeln!(out, "{indent}{with}{}", &trimmed[p.len()..]);
            }
            Edit::Drop(_) => {}
            Edit::After(_, lines) => {
                let _ = writeln!(out, "{line}");
                for added in lines {
                    let _ = writeln!(out, "{indent}    {added}");
                }
            }
        }
    }
    let unused: Vec<&str> = edits
        .iter()
        .zip(&used)
        .filter(|(_, used)| !**used)
        .map(|(e, _)| e.pattern())
        .collect();
    assert!(
        unused.is_empty(),
        "the example no longer has a line the tests rewrite: {unused:?}"
    );
    out
}

/// The edits that put nginx's files (pid, logs, temp files) into `dir` and move the plain-http
/// server to loopback `http_port`, shared by the running config and the example check.
fn nginx_files(dir: &Path, http_port: u16, level: &str) -> Vec<Edit> {
    let d = dir.display();
    let temp = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
        .iter()
        .map(|kind| format!("{kind}_temp_path {d}/{kind}_temp;"))
        .collect();
    vec![
        Edit::Line("pid ", format!("pid {d}/nginx.pid;")),
        Edit::Line("error_log ", format!("error_log {d}/error.log {level};")),
        Edit::Line("access_log ", format!("access_log {d}/access.log;")),
        Edit::After("http {", temp),
        Edit::Drop("listen [::]"),
        Edit::Prefix("listen 80", format!("listen 127.0.0.1:{http_port}")),
    ]
}

/// `-e` (nginx 1.19.5+) keeps even the log of reading the config out of /var/log/nginx.
fn nginx_args(dir: &Path, conf: &Path) -> Vec<String> {
    vec![
        "-e".to_owned(),
        dir.join("error.log").display().to_string(),
        "-p".to_owned(),
        format!("{}/", dir.display()),
        "-c".to_owned(),
        conf.display().to_string(),
    ]
}

/// Caddy with its home and state in `dir`, so nothing is written outside it.
fn caddy_env(cmd: &mut Command, dir: &Path) {
    cmd.env_clear()
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .current_dir(dir);
}

fn run_check(what: &str, mut cmd: Command) -> Result<String, String> {
    let out_path = tempfile::NamedTempFile::new().expect("temp file");
    let out = out_path.reopen().expect("reopen");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("clone file"))
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("run {what}: {e}"));
    let deadline = Instant::now() + CHECK_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} ran longer than {CHECK_DEADLINE:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let output = fs::read_to_string(out_path.path()).unwrap_or_default();
    if status.success() {
        Ok(output)
    } else {
        Err(format!("{what} failed ({status}):\n{output}"))
    }
}

/// A proxy process, killed by PID on drop; its logs are printed if the test is failing.
struct Process {
    name: &'static str,
    child: Child,
    logs: Vec<PathBuf>,
    // Declared last: removed after the process is gone.
    dir: TempDir,
}

impl Process {
    fn logs(&self) -> String {
        let mut text = String::new();
        for path in &self.logs {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let body = fs::read_to_string(path).unwrap_or_else(|e| format!("({e})"));
            let _ = writeln!(text, "--- {} ---\n{body}", name.unwrap_or_default());
        }
        text
    }

    /// Waits until every port accepts a connection; `Err` when the process exited first or the
    /// deadline passed.
    fn wait_listening(&mut self, ports: &[u16]) -> Result<(), String> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Err(format!("{} exited with {status}", self.name));
            }
            let all = ports.iter().all(|p| {
                TcpStream::connect_timeout(&loopback(*p), Duration::from_millis(200)).is_ok()
            });
            if all {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} did not accept connections on {ports:?} within {START_DEADLINE:?}",
                    self.name
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill(); // SIGKILL to this PID; nginx runs as one process
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "---- {} (dir {}) ----\n{}",
                self.name,
                self.dir.path().display(),
                self.logs()
            );
        }
    }
}

/// Starts a proxy on `port_count` fresh loopback ports: `prepare` writes its config into the
/// directory and returns the command, the proxy's log files and the config. The command's
/// stdout and stderr go to `<name>.out` there. Tried again when a chosen port was taken by
/// another process in the meantime.
fn launch(
    name: &'static str,
    port_count: usize,
    prepare: impl Fn(&Path, &[u16]) -> (Command, Vec<PathBuf>, String),
) -> (Process, Vec<u16>, String) {
    for attempt in 1..=START_ATTEMPTS {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = free_ports(port_count);
        let (mut cmd, mut logs, config) = prepare(dir.path(), &ports);
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        let out_path = dir.path().join(format!("{name}.out"));
        let out = File::create(&out_path).expect("create output file");
        logs.push(out_path);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone file"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let mut process = Process {
            name,
            child,
            logs,
            dir,
        };
        match process.wait_listening(&ports) {
            Ok(()) => return (process, ports, config),
            Err(_) if attempt < START_ATTEMPTS && process.logs().contains("in use") => {}
            Err(why) => panic!("{why}; config:\n{config}"), // Drop prints the logs
        }
    }
    unreachable!("the last attempt returns or panics")
}

fn free_ports(n: usize) -> Vec<u16> {
    // Held together so the n ports differ.
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}
