//! A browser for the integration tests: chromedriver on a loopback port driving headless
//! Chromium in a throwaway profile, through a minimal blocking client of W3C WebDriver
//! (<https://www.w3.org/TR/webdriver2/>): JSON over HTTP/1.1, one connection per command.
//!
//! Nothing here downloads a browser. Without `chromium` and `chromedriver`, [`Browser::start`]
//! returns `None` after one line on stderr, and fails the test when `CI` is set (`.ci/run`
//! installs them): the rule of [`super::require`]. Every wait has a deadline. Dropping a [`Browser`] ends the session,
//! kills chromedriver's process group and then any process still naming the throwaway
//! directory, so no Chromium outlives its test; a watchdog does the same if the test process
//! dies without dropping it.

use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};
use tempfile::TempDir;

/// How long the convenience waits (`wait_for_url`, `wait_for_element`, `wait_for_text`) wait.
pub const WAIT: Duration = Duration::from_secs(10);
/// The WebDriver key code of Tab, for [`Element::type_text`] (WebDriver, "Keyboard actions").
pub const KEY_TAB: &str = "\u{e004}";
/// The WebDriver key code of Enter.
pub const KEY_ENTER: &str = "\u{e007}";

/// The page area (CSS pixels) the browser lays out and screenshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Viewport {
    pub width: u32,
    pub height: u32,
    /// Emulate a phone: `<meta name=viewport>` is honoured (a page without it lays out 980 px
    /// wide and is scaled down), and touch is on.
    pub mobile: bool,
}

impl Viewport {
    /// A desktop window, the size of the screenshots in docs/.
    pub const DESKTOP: Self = Self {
        width: 1000,
        height: 800,
        mobile: false,
    };
    /// The narrowest screen the pages must work on (WCAG 2.2 SC 1.4.10 Reflow: 320 CSS px).
    pub const NARROW: Self = Self {
        width: 320,
        height: 640,
        mobile: true,
    };
}

/// The `prefers-color-scheme` the pages see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorScheme {
    Light,
    Dark,
}

/// One cookie as the browser stores it (WebDriver, "Cookies": a serialized cookie).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cookie {
    pub name: String,
    pub value: String,
    pub domain: String,
    pub path: String,
    pub http_only: bool,
    pub secure: bool,
    /// `Strict`, `Lax` or `None`, as Chromium reports it.
    pub same_site: Option<String>,
    /// Seconds since the epoch; `None` for a session cookie.
    pub expiry: Option<u64>,
}

/// What went wrong with one WebDriver command.
#[derive(Debug)]
enum WebDriverError {
    /// Connecting, writing or reading failed (chromedriver gone, or a timeout).
    Transport(std::io::Error),
    /// The answer was not HTTP with a JSON `{"value": …}` body.
    Reply(String),
    /// chromedriver answered with a WebDriver error ("Errors"), e.g. `no such element`.
    Command {
        status: u16,
        error: String,
        message: String,
    },
}

impl fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transport(e) => write!(f, "transport: {e}"),
            Self::Reply(why) => write!(f, "bad reply: {why}"),
            Self::Command {
                status,
                error,
                message,
            } => write!(f, "{status} {error}: {message}"),
        }
    }
}

impl From<std::io::Error> for WebDriverError {
    fn from(e: std::io::Error) -> Self {
        Self::Transport(e)
    }
}

/// A headless Chromium session; dropping it ends the session and every process it started.
pub struct Browser {
    addr: SocketAddr,
    session: String,
    viewport: Viewport,
    // Declared last: dropped (chromedriver killed, leftovers swept) after the session ended.
    driver: Driver,
}

impl Browser {
    /// A browser with the [`Viewport::DESKTOP`] viewport, or `None` when Chromium or
    /// chromedriver is not installed (a panic instead when `CI` is set).
    pub fn start() -> Option<Self> {
        Self::start_with(Viewport::DESKTOP)
    }

    /// A browser with `viewport`, e.g. [`Viewport::NARROW`]; `None` as for [`Browser::start`].
    pub fn start_with(viewport: Viewport) -> Option<Self> {
        let (chromedriver, chromium) = tools()?;
        Some(Self::launch(&chromedriver, &chromium, viewport, None))
    }

    /// A desktop browser that sends every `http://` request to the reverse proxy at `proxy`,
    /// the way a browser resolving `app.example.com` to it would: the proxy picks its site by
    /// the URL's host, and the URLs keep the hosts and ports (none) the pages link to. `None`
    /// as for [`Browser::start`].
    pub fn start_behind(proxy: SocketAddr) -> Option<Self> {
        let (chromedriver, chromium) = tools()?;
        Some(Self::launch(
            &chromedriver,
            &chromium,
            Viewport::DESKTOP,
            Some(proxy),
        ))
    }

    fn launch(
        chromedriver: &Path,
        chromium: &Path,
        viewport: Viewport,
        proxy: Option<SocketAddr>,
    ) -> Self {
        let driver = Driver::spawn(chromedriver);
        let addr = driver.addr;
        let deadline = Instant::now() + START_DEADLINE;
        // The port is open before the driver is ready for sessions (WebDriver, "Status").
        loop {
            let status = exchange(addr, "GET", "/status", None, COMMAND_TIMEOUT);
            if status.is_ok_and(|v| v["ready"] == true) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver on {addr} not ready within {START_DEADLINE:?}; log:\n{}",
                driver.log()
            );
            thread::sleep(POLL);
        }
        let caps = capabilities(chromium, &driver.profile(), viewport, proxy);
        let created = exchange(addr, "POST", "/session", Some(&caps), SESSION_DEADLINE)
            .unwrap_or_else(|e| panic!("new session: {e}; chromedriver log:\n{}", driver.log()));
        let session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in {created}"))
            .to_owned();
        Self {
            addr,
            session,
            viewport,
            driver,
        }
    }

    /// The viewport this browser was started with.
    pub fn viewport(&self) -> Viewport {
        self.viewport
    }

    /// Pids of the live Chromium processes (browser, helpers, crash handlers) of this browser:
    /// those naming its throwaway directory.
    pub fn processes(&self) -> Vec<u32> {
        processes_naming(&self.driver.needle())
    }

    /// Navigates to `url` and waits for the load event (page load strategy `normal`).
    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", &json!({ "url": url }));
    }

    /// Reloads the current page.
    pub fn refresh(&self) {
        self.call("POST", "/refresh", &json!({}));
    }

    /// Goes back one entry in the history.
    pub fn back(&self) {
        self.call("POST", "/back", &json!({}));
    }

    /// The URL of the current page.
    pub fn url(&self) -> String {
        string(self.get("/url"))
    }

    /// The document title.
    pub fn title(&self) -> String {
        string(self.get("/title"))
    }

    /// The rendered text of `<body>` (what a reader sees, like `innerText`).
    pub fn text(&self) -> String {
        self.find("body").text()
    }

    /// The serialized DOM of the current page.
    pub fn source(&self) -> String {
        string(self.get("/source"))
    }

    /// The first element matching the CSS selector `css`; panics if there is none.
    pub fn find(&self, css: &str) -> Element<'_> {
        self.try_find(css)
            .unwrap_or_else(|| panic!("no element matches {css:?} on {}", self.url()))
    }

    /// The first element matching `css`, if any.
    pub fn try_find(&self, css: &str) -> Option<Element<'_>> {
        let query = json!({ "using": "css selector", "value": css });
        match self.try_call("POST", "/element", Some(&query)) {
            Ok(found) => Some(self.element(&found)),
            Err(WebDriverError::Command { error, .. }) if error == "no such element" => None,
            Err(e) => panic!("find {css:?}: {e}"),
        }
    }

    /// Every element matching `css`, in document order.
    pub fn find_all(&self, css: &str) -> Vec<Element<'_>> {
        let query = json!({ "using": "css selector", "value": css });
        let found = self.call("POST", "/elements", &query);
        let list = found.as_array().expect("Find Elements answers a list");
        list.iter().map(|e| self.element(e)).collect()
    }

    /// The element that has keyboard focus (`<body>` when none has).
    pub fn active_element(&self) -> Element<'_> {
        let found = self.get("/element/active");
        self.element(&found)
    }

    /// Every cookie visible to the current page, HttpOnly ones included.
    pub fn cookies(&self) -> Vec<Cookie> {
        let list = self.get("/cookie");
        let list = list.as_array().expect("Get All Cookies answers a list");
        list.iter().map(cookie).collect()
    }

    /// The cookie called `name` visible to the current page, if any.
    pub fn cookie(&self, name: &str) -> Option<Cookie> {
        self.cookies().into_iter().find(|c| c.name == name)
    }

    /// A PNG of the viewport.
    pub fn screenshot_png(&self) -> Vec<u8> {
        let encoded = string(self.get("/screenshot"));
        STANDARD
            .decode(encoded)
            .expect("Take Screenshot answers base64")
    }

    /// Makes `@media (prefers-color-scheme: …)` match `scheme` on this page and the next ones.
    pub fn set_color_scheme(&self, scheme: ColorScheme) {
        let value = match scheme {
            ColorScheme::Light => "light",
            ColorScheme::Dark => "dark",
        };
        // Not in W3C WebDriver: chromedriver forwards this DevTools command to the tab.
        let media = json!({
            "cmd": "Emulation.setEmulatedMedia",
            "params": { "features": [{ "name": "prefers-color-scheme", "value": value }] },
        });
        self.call("POST", "/goog/cdp/execute", &media);
    }

    /// Polls `ready` every 50 ms until it holds; panics naming `what` after `deadline`.
    pub fn wait_for(&self, what: &str, deadline: Duration, mut ready: impl FnMut(&Self) -> bool) {
        let until = Instant::now() + deadline;
        loop {
            if ready(self) {
                return;
            }
            if Instant::now() >= until {
                let url = self.try_string("/url").unwrap_or_default();
                panic!("waited {deadline:?} for {what}; now at {url:?}");
            }
            thread::sleep(POLL);
        }
    }

    /// Waits (up to [`WAIT`]) until the URL starts with `prefix`; returns the URL.
    pub fn wait_for_url(&self, prefix: &str) -> String {
        let mut url = String::new();
        // Mid-navigation a command may fail: that is "not yet", not an error.
        self.wait_for(&format!("a URL starting with {prefix:?}"), WAIT, |b| {
            url = b.try_string("/url").unwrap_or_default();
            url.starts_with(prefix)
        });
        url
    }

    /// Waits (up to [`WAIT`]) until an element matches `css`; returns it.
    pub fn wait_for_element(&self, css: &str) -> Element<'_> {
        self.wait_for(&format!("an element matching {css:?}"), WAIT, |b| {
            b.try_find(css).is_some()
        });
        self.find(css)
    }

    /// Waits (up to [`WAIT`]) until the page text contains `needle`; returns the text.
    pub fn wait_for_text(&self, needle: &str) -> String {
        let mut text = String::new();
        self.wait_for(&format!("page text containing {needle:?}"), WAIT, |b| {
            text = b.try_text().unwrap_or_default();
            text.contains(needle)
        });
        text
    }

    /// The body's text, or `None` while there is no body (mid-navigation).
    fn try_text(&self) -> Option<String> {
        let query = json!({ "using": "css selector", "value": "body" });
        let body = self.try_call("POST", "/element", Some(&query)).ok()?;
        self.element(&body).try_text()
    }

    fn element(&self, reference: &Value) -> Element<'_> {
        let id = reference[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("not an element reference: {reference}"));
        Element {
            browser: self,
            id: id.to_owned(),
        }
    }

    fn get(&self, command: &str) -> Value {
        self.try_call("GET", command, None)
            .unwrap_or_else(|e| panic!("WebDriver GET {command}: {e}"))
    }

    fn call(&self, method: &str, command: &str, body: &Value) -> Value {
        self.try_call(method, command, Some(body))
            .unwrap_or_else(|e| panic!("WebDriver {method} {command} {body}: {e}"))
    }

    fn try_string(&self, command: &str) -> Option<String> {
        self.try_call("GET", command, None)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
    }

    fn try_call(
        &self,
        method: &str,
        command: &str,
        body: Option<&Value>,
    ) -> Result<Value, WebDriverError> {
        let path = format!("/session/{}{command}", self.session);
        exchange(self.addr, method, &path, body, COMMAND_TIMEOUT)
    }

    /// Keeps what a failed test saw: a screenshot in target/tmp/browser/ and the URL.
    fn keep_evidence(&self) {
        let Some(url) = self.try_string("/url") else {
            return;
        };
        let name = thread::current()
            .name()
            .unwrap_or("browser")
            .replace("::", "-");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
        let shot = self
            .try_string("/screenshot")
            .and_then(|b64| STANDARD.decode(b64).ok());
        let path = dir.join(format!("{name}.png"));
        match shot.map(|png| fs::create_dir_all(&dir).and_then(|()| fs::write(&path, png))) {
            Some(Ok(())) => eprintln!("---- browser at {url}; screenshot {}", path.display()),
            _ => eprintln!("---- browser at {url}; no screenshot"),
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if thread::panicking() {
            self.keep_evidence();
        }
        // Delete Session makes chromedriver close Chromium; Driver's drop then kills the rest.
        let path = format!("/session/{}", self.session);
        let _ = exchange(self.addr, "DELETE", &path, None, QUIT_TIMEOUT);
    }
}

/// An element of the current page (WebDriver, "Elements": a web element reference).
pub struct Element<'b> {
    browser: &'b Browser,
    id: String,
}

impl Element<'_> {
    /// Clicks the element's centre, as a mouse would (a submit button submits its form).
    pub fn click(&self) {
        self.call("/click", &json!({}));
    }

    /// Types `text` into the element, key by key; [`KEY_TAB`] and [`KEY_ENTER`] work too.
    pub fn type_text(&self, text: &str) {
        self.call("/value", &json!({ "text": text }));
    }

    /// Empties an input or textarea.
    pub fn clear(&self) {
        self.call("/clear", &json!({}));
    }

    /// The element's rendered text.
    pub fn text(&self) -> String {
        string(self.get("/text"))
    }

    /// The content attribute `name` as written in the HTML, if present.
    pub fn attribute(&self, name: &str) -> Option<String> {
        self.get(&format!("/attribute/{name}"))
            .as_str()
            .map(str::to_owned)
    }

    /// The DOM property `name` (e.g. `value`, `checked`, `validationMessage`).
    pub fn property(&self, name: &str) -> Value {
        self.get(&format!("/property/{name}"))
    }

    /// The computed value of CSS `property` (e.g. `outline-style`); colours come as
    /// `rgba(r, g, b, a)`.
    pub fn css(&self, property: &str) -> String {
        string(self.get(&format!("/css/{property}")))
    }

    fn try_text(&self) -> Option<String> {
        self.browser
            .try_string(&format!("/element/{}/text", self.id))
    }

    fn get(&self, command: &str) -> Value {
        self.browser.get(&format!("/element/{}{command}", self.id))
    }

    fn call(&self, command: &str, body: &Value) -> Value {
        let command = format!("/element/{}{command}", self.id);
        self.browser.call("POST", &command, body)
    }
}

/// The width and height in an image's PNG header (RFC 2083 §4.1.1 IHDR), or `None` if `png` is
/// not a PNG.
pub fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if png.len() < 24 || !png.starts_with(SIGNATURE) || &png[12..16] != b"IHDR" {
        return None;
    }
    let width = u32::from_be_bytes(png[16..20].try_into().ok()?);
    let height = u32::from_be_bytes(png[20..24].try_into().ok()?);
    Some((width, height))
}

/// A running chromedriver in its own process group, with HOME and the profile in `dir`.
struct Driver {
    /// The watchdog shell (see WATCHDOG), leader of the process group.
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    // Declared last: removed after every process using it is gone.
    dir: TempDir,
}

impl Driver {
    fn spawn(chromedriver: &Path) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let home = dir.path().join("home");
        fs::create_dir_all(dir.path().join("profile")).expect("profile dir");
        fs::create_dir_all(&home).expect("home dir");
        let mut cmd = Command::new("/bin/sh");
        // Port 0 (in WATCHDOG): chromedriver picks a free port and prints it, so two tests
        // cannot race for one. No --allowed-ips: with it chromedriver listens on every
        // interface; without it, on loopback only.
        cmd.args(["-c", WATCHDOG, "sh"])
            .arg(chromedriver)
            .env_clear()
            // A HOME inside `dir` keeps Chromium's files (crash reports, NSS db, caches) out of
            // the user's home, and puts `dir` in the command line of every process it starts,
            // crash handlers included, which is how `sweep` finds them.
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            // Its own process group, so one signal reaches the watchdog, chromedriver and
            // Chromium.
            .process_group(0)
            // Held open by `child` until this process ends, however it ends: see WATCHDOG.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        let mut child = cmd.spawn().expect("spawn chromedriver");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, port) = mpsc::channel();
        drain(child.stdout.take().expect("piped stdout"), &log, tx.clone());
        drain(child.stderr.take().expect("piped stderr"), &log, tx);
        let Ok(port) = port.recv_timeout(START_DEADLINE) else {
            signal("-KILL", &format!("-{}", child.id()));
            let _ = child.wait();
            thread::sleep(Duration::from_millis(100)); // the drain threads' last lines
            panic!(
                "chromedriver did not print its port within {START_DEADLINE:?}; log:\n{}",
                log.lock().expect("log lock").join("\n")
            );
        };
        Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
            dir,
        }
    }

    fn profile(&self) -> PathBuf {
        self.dir.path().join("profile")
    }

    fn log(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    /// What every process of this browser has in its command line: the throwaway directory.
    fn needle(&self) -> String {
        self.dir.path().to_string_lossy().into_owned()
    }

    /// Kills what is left of the processes naming `dir`, until none is (bounded).
    fn sweep(&self) -> Vec<u32> {
        let needle = self.needle();
        let until = Instant::now() + EXIT_DEADLINE;
        loop {
            let left = processes_naming(&needle);
            if left.is_empty() || Instant::now() >= until {
                return left;
            }
            for pid in &left {
                signal("-KILL", &pid.to_string());
            }
            thread::sleep(POLL);
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // After Delete Session Chromium quits by itself; wait for that (bounded), so that on the
        // normal path nothing but chromedriver is killed. A browser that hangs is, below.
        let until = Instant::now() + QUIT_TIMEOUT;
        while !processes_naming(&self.needle()).is_empty() && Instant::now() < until {
            thread::sleep(POLL);
        }
        // The watchdog's pid is the process group's id (process_group(0)).
        signal("-KILL", &format!("-{}", self.child.id()));
        let _ = self.child.kill();
        let _ = self.child.wait();
        let left = self.sweep();
        if thread::panicking() {
            eprintln!("---- chromedriver log ----\n{}", self.log());
        }
        if !left.is_empty() {
            let message = format!("browser processes outlived {EXIT_DEADLINE:?}: {left:?}");
            if thread::panicking() {
                eprintln!("{message}");
            } else {
                panic!("{message}");
            }
        }
    }
}

/// `kill <signal> -- <target>`; the crate forbids `unsafe`, so no libc. A target that is already
/// gone is not an error.
fn signal(signal: &str, target: &str) {
    let _ = Command::new("kill")
        .args([signal, "--", target])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Pids of the live processes whose command line contains `needle` (a zombie's is empty).
fn processes_naming(needle: &str) -> Vec<u32> {
    let own = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != own)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(needle))
        })
        .collect()
}

/// Copies lines of `out` into `log`; sends the port of chromedriver's "started" line.
fn drain(out: impl Read + Send + 'static, log: &Arc<Mutex<Vec<String>>>, port: Sender<u16>) {
    let log = Arc::clone(log);
    thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            // "ChromeDriver was started successfully on port 41665."
            if let Some((_, rest)) = line.split_once("started successfully on port ") {
                if let Ok(n) = rest.trim_end_matches('.').trim().parse() {
                    let _ = port.send(n);
                }
            }
            log.lock().expect("log lock").push(line);
        }
    });
}

/// chromedriver's and Chromium's paths, or `None` when one is missing (a panic instead when
/// `CI` is set).
fn tools() -> Option<(PathBuf, PathBuf)> {
    if !(super::require("chromium", "chromium")
        && super::require("chromedriver", "chromium-driver"))
    {
        return None;
    }
    let chromium = super::tool_path("chromium").expect("require found chromium");
    let chromedriver = super::tool_path("chromedriver").expect("require found chromedriver");
    Some((chromedriver, chromium))
}

/// The new-session request (WebDriver, "New Session") for headless Chromium in `profile`,
/// sending `http://` requests to `proxy` when given.
fn capabilities(
    chromium: &Path,
    profile: &Path,
    viewport: Viewport,
    proxy: Option<SocketAddr>,
) -> Value {
    let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| (*f).to_owned()).collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    if let Some(proxy) = proxy {
        args.push(format!("--proxy-server=http://{proxy}"));
    }
    args.push(format!(
        "--window-size={},{}",
        viewport.width, viewport.height
    ));
    json!({
        "capabilities": {
            "alwaysMatch": {
                "browserName": "chrome",
                "pageLoadStrategy": "normal",
                "timeouts": { "implicit": 0, "pageLoad": PAGE_LOAD_MS, "script": SCRIPT_MS },
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": args,
                    // The window's own size includes browser chrome even when headless; device
                    // metrics make the viewport, and so every screenshot, exactly this size.
                    "mobileEmulation": {
                        "deviceMetrics": {
                            "width": viewport.width,
                            "height": viewport.height,
                            "pixelRatio": 1.0,
                            "mobile": viewport.mobile,
                            "touch": viewport.mobile,
                        },
                    },
                    // No password manager: no save prompt, and no leak check calling out.
                    "prefs": {
                        "credentials_enable_service": false,
                        "profile.password_manager_enabled": false,
                        "profile.password_manager_leak_detection": false,
                    },
                },
            },
        },
    })
}

/// One WebDriver command over a fresh loopback connection; the `value` of a success.
fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<Value, WebDriverError> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    // chromedriver refuses a Host that is not a loopback name or address.
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let (status, body) = read_reply(&mut stream)?;
    let json = String::from_utf8_lossy(&body);
    let mut reply: Value = serde_json::from_str(&json)
        .map_err(|e| WebDriverError::Reply(format!("{e} in {status} {json:?}")))?;
    let value = reply
        .get_mut("value")
        .map(Value::take)
        .ok_or_else(|| WebDriverError::Reply(format!("no value in {json:?}")))?;
    if status == 200 {
        return Ok(value);
    }
    let field = |name: &str| value[name].as_str().unwrap_or_default().to_owned();
    Err(WebDriverError::Command {
        status,
        error: field("error"),
        // chromedriver appends "(Session info: …)" on a new line; the first line says it.
        message: field("message")
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
    })
}

/// Reads one HTTP answer: (status, body). chromedriver says `Connection: close` but leaves the
/// socket open, so the body ends at its `Content-Length`, not at EOF.
fn read_reply(stream: &mut TcpStream) -> Result<(u16, Vec<u8>), WebDriverError> {
    let mut bytes = Vec::new();
    let mut chunk = [0_u8; 16 * 1024];
    let head_end = loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if bytes.len() > MAX_HEAD_BYTES {
            return Err(WebDriverError::Reply("no header end".to_owned()));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            let got = String::from_utf8_lossy(&bytes);
            return Err(WebDriverError::Reply(format!("closed after {got:?}")));
        }
        bytes.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| WebDriverError::Reply(format!("bad status line in {head:?}")))?;
    let length = head
        .split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok());
    let mut body = bytes.split_off(head_end + 4);
    let Some(length) = length else {
        stream.read_to_end(&mut body)?;
        return Ok((status, body));
    };
    while body.len() < length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            let why = format!("body cut at {} of {length} bytes", body.len());
            return Err(WebDriverError::Reply(why));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok((status, body))
}

fn cookie(raw: &Value) -> Cookie {
    let text = |name: &str| {
        raw[name]
            .as_str()
            .unwrap_or_else(|| panic!("cookie without {name}: {raw}"))
            .to_owned()
    };
    Cookie {
        name: text("name"),
        value: text("value"),
        domain: text("domain"),
        path: text("path"),
        http_only: raw["httpOnly"].as_bool().unwrap_or(false),
        secure: raw["secure"].as_bool().unwrap_or(false),
        same_site: raw["sameSite"].as_str().map(str::to_owned),
        expiry: raw["expiry"].as_u64(),
    }
}

fn string(value: Value) -> String {
    match value {
        Value::String(s) => s,
        other => panic!("expected a string, got {other}"),
    }
}

/// Runs chromedriver (`$1`) in the background, then waits for EOF on stdin and kills its own
/// process group. The test process holds the pipe's other end, so if it dies without running
/// `Drop` (SIGKILL, an abort, a CI timeout), chromedriver and Chromium still go with it; the
/// crate forbids `unsafe`, so there is no `PR_SET_PDEATHSIG`.
const WATCHDOG: &str = r#""$1" --port=0 </dev/null & cat >/dev/null; kill -KILL 0"#;
/// Switches for a headless Chromium as root on a closed network.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    // Root (CI containers) cannot use Chromium's sandbox.
    "--no-sandbox",
    "--disable-gpu",
    // Without these Chromium calls Google's services; this network refuses them, and a test
    // must not depend on them anyway.
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    // Containers often give /dev/shm 64 MiB, too little for Chromium's shared memory.
    "--disable-dev-shm-usage",
    "--lang=en-US",
    // No silent retry of an http:// navigation as https:// first: the test sites are http.
    "--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable,AutofillServerCommunication,OptimizationHints",
];
/// The web element identifier (WebDriver, "Elements").
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long chromedriver gets to print its port and answer `ready`.
const START_DEADLINE: Duration = Duration::from_secs(20);
/// How long a new session (Chromium's first start, on a cold disk in CI) may take.
const SESSION_DEADLINE: Duration = Duration::from_secs(60);
/// Read and write timeout of one command; longer than the page-load timeout, so a slow page
/// gets chromedriver's `timeout` error rather than a cut connection.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
const PAGE_LOAD_MS: u64 = 20_000;
const SCRIPT_MS: u64 = 5_000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long Delete Session may take at drop before the processes are killed anyway.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long killed processes get to disappear.
const EXIT_DEADLINE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);
const MAX_HEAD_BYTES: usize = 64 * 1024;
