//! A cookie jar for talking to latchd's pages the way a browser does, without a browser: it
//! keeps what `Set-Cookie` sets (and forgets what `Max-Age=0` clears) and sends it back.

use std::collections::BTreeMap;

use super::{Reply, TestServer};

/// One `Set-Cookie` header, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetCookie {
    pub name: String,
    pub value: String,
    /// Attribute names lowercased, with their values (`("samesite", "Lax")`).
    pub attrs: Vec<(String, String)>,
}

impl SetCookie {
    pub fn parse(header: &str) -> Self {
        let mut parts = header.split(';').map(str::trim);
        let (name, value) = parts
            .next()
            .and_then(|p| p.split_once('='))
            .expect("name=value");
        let attrs = parts
            .map(|a| {
                let (k, v) = a.split_once('=').unwrap_or((a, ""));
                (k.to_ascii_lowercase(), v.to_owned())
            })
            .collect();
        Self {
            name: name.to_owned(),
            value: value.to_owned(),
            attrs,
        }
    }

    /// The value of attribute `name` (lowercase), if present.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Cookies by name.
#[derive(Clone, Debug, Default)]
pub struct Jar {
    cookies: BTreeMap<String, String>,
}

impl Jar {
    /// Takes in every `Set-Cookie` of `reply`; returns them parsed.
    pub fn absorb(&mut self, reply: &Reply) -> Vec<SetCookie> {
        let set: Vec<SetCookie> = reply
            .headers_named("set-cookie")
            .into_iter()
            .map(SetCookie::parse)
            .collect();
        for cookie in &set {
            if cookie.attr("max-age") == Some("0") || cookie.value.is_empty() {
                self.cookies.remove(&cookie.name);
            } else {
                self.cookies
                    .insert(cookie.name.clone(), cookie.value.clone());
            }
        }
        set
    }

    /// The value of cookie `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }

    /// Sets a cookie by hand (what another site or a forger would do).
    pub fn set(&mut self, name: &str, value: &str) {
        self.cookies.insert(name.to_owned(), value.to_owned());
    }

    /// The `Cookie` header to send.
    pub fn header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Sends through `send` with the jar's cookies added to `headers`; takes in what the answer
    /// sets (for requests through a proxy).
    pub fn send(
        &mut self,
        headers: &[(&str, &str)],
        send: impl FnOnce(&[(&str, &str)]) -> Reply,
    ) -> Reply {
        let cookie = self.header();
        let mut all = headers.to_vec();
        if !cookie.is_empty() {
            all.push(("Cookie", &cookie));
        }
        let reply = send(&all);
        self.absorb(&reply);
        reply
    }

    /// `method path` with the jar's cookies and `headers`; takes in what the answer sets.
    pub fn request(
        &mut self,
        server: &TestServer,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        let cookie = self.header();
        let mut all = headers.to_vec();
        if !cookie.is_empty() {
            all.push(("Cookie", &cookie));
        }
        let reply = server.request(method, path, &all, body);
        self.absorb(&reply);
        reply
    }
}

/// `application/x-www-form-urlencoded` of `pairs`.
pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The value of the hidden input `name` in a page.
pub fn hidden(page: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker)? + marker.len();
    let end = page[start..].find('"')? + start;
    Some(
        page[start..end]
            .replace("&amp;", "&")
            .replace("&quot;", "\""),
    )
}
