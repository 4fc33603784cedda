//! The browser harness itself, against a std-only sign-in site served from the test and against
//! the real latchd: typing, submitting through a 303, cookies and their attributes, reload,
//! screenshots, the narrow viewport, computed styles, and that no browser process outlives it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::support::browser::{
    png_size, Browser, ColorScheme, Element, Viewport, KEY_ENTER, KEY_TAB,
};
use crate::support::TestServer;

const EMAIL: &str = "alice@example.com";
const PASSWORD: &str = "correct horse & battery";

#[test]
fn a_form_posts_through_a_303_to_a_page_that_sets_cookies() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let site = FormSite::start();
    sign_in(&browser, &site, Submit::Click);

    let sid = browser.cookie("sid").expect("sid cookie");
    assert_eq!(sid.value, "8c1f0e");
    assert_eq!(sid.domain, "127.0.0.1");
    assert_eq!(sid.path, "/");
    assert!(sid.http_only, "{sid:?}");
    assert!(!sid.secure, "{sid:?}");
    assert_eq!(sid.same_site.as_deref(), Some("Strict"));
    assert_eq!(sid.expiry, None, "a session cookie");
    let theme = browser.cookie("theme").expect("theme cookie");
    assert_eq!(theme.path, "/welcome");
    assert!(!theme.http_only, "{theme:?}");
    assert_eq!(theme.same_site.as_deref(), Some("Lax"));
    assert!(theme.expiry.is_some(), "Max-Age gives an expiry: {theme:?}");

    browser.refresh();
    assert!(
        browser.wait_for_text("Welcome back").contains(EMAIL),
        "{}",
        browser.source()
    );
    let again = site.last("GET", "/welcome");
    assert!(
        again.cookie.contains("sid=8c1f0e") && again.cookie.contains("theme=plain"),
        "the reload sends both cookies: {again:?}"
    );

    let png = browser.screenshot_png();
    assert_eq!(png_size(&png), Some((1000, 800)));
    assert_eq!(browser.viewport(), Viewport::DESKTOP);

    // The POST left no history entry of its own: back is the form.
    browser.back();
    assert_eq!(browser.wait_for_url(&site.url("/")), site.url("/"));
    assert_eq!(browser.title(), "Sign in");
}

#[test]
fn the_narrow_viewport_is_a_320_pixel_phone_and_the_form_still_works() {
    let Some(browser) = Browser::start_with(Viewport::NARROW) else {
        return;
    };
    let site = FormSite::start();
    // A page without <meta name=viewport> lays out at 980 px on a phone; ours does not.
    browser.goto(&site.url("/no-viewport"));
    assert_eq!(browser.find("html").css("width"), "980px");
    browser.goto(&site.url("/"));
    assert_eq!(browser.find("html").css("width"), "320px");
    assert_eq!(png_size(&browser.screenshot_png()), Some((320, 640)));

    sign_in(&browser, &site, Submit::Enter); // a phone keyboard's "Go"
}

#[test]
fn computed_styles_show_the_colour_scheme_and_the_keyboard_focus_ring() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let site = FormSite::start();
    // Set before the page loads: the emulation holds across navigations.
    browser.set_color_scheme(ColorScheme::Dark);
    browser.goto(&site.url("/"));
    let body = browser.find("body");
    assert_eq!(body.css("background-color"), "rgba(17, 17, 17, 1)");
    assert_eq!(body.css("color"), "rgba(238, 238, 238, 1)");
    browser.set_color_scheme(ColorScheme::Light);
    assert_eq!(body.css("background-color"), "rgba(255, 255, 255, 1)");

    let email = browser.find("#email");
    email.type_text(KEY_TAB); // focus moves on to the password field
    let focused = browser.active_element();
    assert_eq!(focused.attribute("id").as_deref(), Some("password"));
    assert_eq!(focused.css("outline-style"), "solid");
    assert_eq!(focused.css("outline-color"), "rgba(0, 95, 204, 1)");
    assert_eq!(
        email.css("outline-style"),
        "none",
        "the ring left with focus"
    );
}

#[test]
fn dropping_the_browser_leaves_no_process_behind() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let site = FormSite::start();
    browser.goto(&site.url("/"));
    let pids = browser.processes();
    // The browser, its zygotes, GPU, network and renderer processes at the least.
    assert!(pids.len() >= 3, "{pids:?}");
    drop(browser);
    let alive: Vec<u32> = pids
        .into_iter()
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty()))
        .collect();
    assert!(alive.is_empty(), "still running: {alive:?}");
}

#[test]
fn chromium_reaches_latchd_on_loopback() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let server = TestServer::start();
    let healthz = format!("http://{}/healthz", server.addr());
    browser.goto(&healthz);
    assert_eq!(browser.url(), healthz);
    // Had Chromium not reached latchd, the navigation would fail or show an error page's text.
    assert_eq!(browser.text(), "");
    wait_for_log(&server, "path=/healthz status=200");

    browser.goto(&format!("http://{}/v1/auth/me", server.addr()));
    let text = browser.text();
    assert!(text.contains(r#""error":"invalid_token""#), "{text}");
}

/// How [`sign_in`] submits the form.
#[derive(Clone, Copy)]
enum Submit {
    Click,
    Enter,
}

/// Fills the form at `/` with [`EMAIL`] and [`PASSWORD`], submits it and checks where it lands.
fn sign_in(browser: &Browser, site: &FormSite, submit: Submit) {
    browser.goto(&site.url("/"));
    assert_eq!(browser.title(), "Sign in");
    let labels: Vec<String> = browser
        .find_all("label")
        .iter()
        .map(Element::text)
        .collect();
    assert_eq!(labels, ["Email", "Password"]);
    let email = browser.find("#email");
    email.type_text("a typo");
    email.clear();
    email.type_text(EMAIL);
    assert_eq!(email.property("value"), EMAIL);
    let password = browser.find("#password");
    password.type_text(PASSWORD);
    match submit {
        Submit::Click => browser.find("button[type=submit]").click(),
        Submit::Enter => password.type_text(KEY_ENTER),
    }

    let landed = browser.wait_for_url(&site.url("/welcome"));
    assert_eq!(landed, site.url("/welcome"));
    let heading = browser.wait_for_element("h1").text();
    assert_eq!(heading, format!("Welcome, {EMAIL}"));
    assert_eq!(browser.text(), heading, "the heading is all the page says");
    assert_eq!(browser.title(), "Signed in");
    let post = site.last("POST", "/login");
    assert_eq!(
        post.body, "email=alice%40example.com&password=correct+horse+%26+battery",
        "the form as typed"
    );
}

/// Waits (bounded) until the server's log has a line containing `needle`.
fn wait_for_log(server: &TestServer, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log:\n{}",
            server.log()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// A sign-in site on 127.0.0.1: `/` has the form, `POST /login` answers 303 to `/welcome`,
/// which sets two cookies. Every request is recorded; one thread per connection.
struct FormSite {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

/// One request the site answered.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    cookie: String,
    body: String,
}

impl FormSite {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        // Non-blocking, so the loop sees `stop` without a wake-up connection.
        listener.set_nonblocking(true).expect("non-blocking");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let seen = Arc::clone(&seen);
                            thread::spawn(move || serve(stream, &seen));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(10));
                        }
                        Err(e) => panic!("accept: {e}"),
                    }
                }
            })
        };
        Self {
            addr,
            seen,
            stop,
            accept: Some(accept),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The last `method path` request; panics if there was none.
    fn last(&self, method: &str, path: &str) -> Seen {
        let seen = self.seen.lock().expect("seen lock");
        seen.iter()
            .rev()
            .find(|s| s.method == method && s.path == path)
            .cloned()
            .unwrap_or_else(|| panic!("no {method} {path} among {seen:?}"))
    }
}

impl Drop for FormSite {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Answers one request on `stream` and closes it. A connection Chromium opened ahead of need
/// and never used ends at the read timeout.
fn serve(mut stream: TcpStream, seen: &Mutex<Vec<Seen>>) {
    let timeout = Some(Duration::from_secs(5));
    if stream.set_nonblocking(false).is_err()
        || stream.set_read_timeout(timeout).is_err()
        || stream.set_write_timeout(timeout).is_err()
    {
        return;
    }
    let Some(request) = read_request(&mut stream) else {
        return;
    };
    let (status, headers, body) = answer(&request, seen);
    seen.lock().expect("seen lock").push(request);
    let mut reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for header in headers {
        reply.push_str(&header);
        reply.push_str("\r\n");
    }
    reply.push_str("\r\n");
    reply.push_str(&body);
    let _ = stream.write_all(reply.as_bytes());
}

/// (status line, extra header lines, body) for `request`.
fn answer(request: &Seen, seen: &Mutex<Vec<Seen>>) -> (&'static str, Vec<String>, String) {
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/") => ("200 OK", vec![], FORM_PAGE.to_owned()),
        ("GET", "/no-viewport") => ("200 OK", vec![], NO_VIEWPORT_PAGE.to_owned()),
        ("POST", "/login") => (
            "303 See Other",
            vec!["Location: /welcome".to_owned()],
            String::new(),
        ),
        ("GET", "/welcome") => {
            let email = seen
                .lock()
                .expect("seen lock")
                .iter()
                .rev()
                .find(|s| s.method == "POST" && s.path == "/login")
                .and_then(|s| form_value(&s.body, "email"))
                .unwrap_or_default();
            let email = escape(&email);
            if request.cookie.contains("sid=") {
                let body = format!("{HEAD}<title>Signed in</title><h1>Welcome back, {email}</h1>");
                ("200 OK", vec![], body)
            } else {
                let cookies = vec![
                    "Set-Cookie: sid=8c1f0e; Path=/; HttpOnly; SameSite=Strict".to_owned(),
                    "Set-Cookie: theme=plain; Path=/welcome; Max-Age=600; SameSite=Lax".to_owned(),
                ];
                let body = format!("{HEAD}<title>Signed in</title><h1>Welcome, {email}</h1>");
                ("200 OK", cookies, body)
            }
        }
        _ => ("404 Not Found", vec![], "not found".to_owned()),
    }
}

/// Reads one request (head, then a `Content-Length` body); `None` on a closed or idle socket.
fn read_request(stream: &mut TcpStream) -> Option<Seen> {
    let mut bytes = Vec::new();
    let mut chunk = [0_u8; 4096];
    let head_end = loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if bytes.len() > 64 * 1024 {
            return None;
        }
        let n = stream.read(&mut chunk).ok().filter(|n| *n > 0)?;
        bytes.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut start = lines.next()?.split(' ');
    let (method, path) = (start.next()?.to_owned(), start.next()?.to_owned());
    let header = |name: &str| {
        head.split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = bytes[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).ok().filter(|n| *n > 0)?;
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Seen {
        method,
        path,
        cookie: header("cookie").unwrap_or_default(),
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// The decoded value of `name` in an `application/x-www-form-urlencoded` body.
fn form_value(body: &str, name: &str) -> Option<String> {
    let raw = body
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(n, _)| *n == name)?
        .1;
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const HEAD: &str = "<!doctype html><html lang=en><meta charset=utf-8>\
    <meta name=viewport content=\"width=device-width, initial-scale=1\">";

const FORM_PAGE: &str = "<!doctype html><html lang=en><head><meta charset=utf-8>\
<meta name=viewport content=\"width=device-width, initial-scale=1\"><title>Sign in</title>\
<style>\
body{margin:2rem;font:16px sans-serif;background:rgb(255,255,255);color:rgb(0,0,0)}\
label,input,button{display:block;margin:.5rem 0}\
input{outline:none}\
input:focus-visible{outline:3px solid rgb(0,95,204)}\
@media (prefers-color-scheme: dark){body{background:rgb(17,17,17);color:rgb(238,238,238)}}\
</style></head><body><h1>Sign in</h1><form method=post action=/login>\
<label for=email>Email</label><input id=email name=email type=email autocomplete=username>\
<label for=password>Password</label>\
<input id=password name=password type=password autocomplete=current-password>\
<button type=submit>Sign in</button></form></body></html>";

const NO_VIEWPORT_PAGE: &str =
    "<!doctype html><html lang=en><meta charset=utf-8><title>Wide</title><p>No viewport tag.";
