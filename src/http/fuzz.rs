//! The request parsers that read what a client sends, under arbitrary bytes: the redirect
//! check, form and query decoding, cookies, `X-Forwarded-For`, the original request of a
//! forward-auth call, and the verify rules. Each must not panic, and what it accepts must obey
//! its rule. Reached through [`latchd::fuzzing::request_parts`](crate::fuzzing::request_parts).

use std::net::IpAddr;

use hyper::header::{HeaderName, HeaderValue, COOKIE};
use hyper::HeaderMap;

use super::proxies::{AddressRange, TrustedProxies};
use super::site::{PublicUrl, Site};
use super::{extract, forward};

/// The first byte picks the parser; the rest is its input.
pub(super) fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let text: &str = &text;
    match mode % 6 {
        0 => redirect(text),
        1 => {
            if let Ok(pairs) = extract::form_pairs(text) {
                let mut names: Vec<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
                names.sort_unstable();
                let n = names.len();
                names.dedup();
                assert_eq!(names.len(), n, "a form name accepted twice");
            }
        }
        2 => {
            let mut headers = HeaderMap::new();
            for line in rest.split(|&b| b == b'\n') {
                if let Ok(value) = HeaderValue::from_bytes(line) {
                    headers.append(HeaderName::from_static("x-forwarded-for"), value);
                }
            }
            let peer: IpAddr = "10.0.0.1".parse().unwrap_or(IpAddr::from([10, 0, 0, 1]));
            let trusted = TrustedProxies::new(
                ["10.0.0.1", "10.0.0.2/31"]
                    .iter()
                    .filter_map(|r| AddressRange::parse(r).ok())
                    .collect(),
            );
            match extract::client_ip(&headers, peer, &trusted) {
                // IPv4-mapped addresses are always read as IPv4, so one client has one key.
                Ok(client) => assert_eq!(client, client.to_canonical()),
                // Refusing is for a header latchd cannot read, never for its absence.
                Err(_) => assert!(!headers.is_empty()),
            }
        }
        3 => {
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_bytes(rest) {
                headers.insert(COOKIE, value);
            }
            if let Ok(Some(value)) = extract::cookie(&headers, "latchd_session") {
                assert!(!value.is_empty() && !value.contains(';'));
            }
            let _ = extract::refresh_cookie(&headers);
        }
        4 => forward::fuzz_original(rest),
        _ => forward::fuzz_rules(text),
    }
}

/// The redirect check on an example site: whatever it follows is the input itself, plain
/// ASCII, https, without userinfo or escapes in its authority, and inside the cookie domain.
fn redirect(target: &str) {
    let public = PublicUrl::parse("https://auth.example.test").ok();
    let Ok(site) = Site::new(public, Some("example.test"), true) else {
        return;
    };
    let Some(followed) = site.safe_redirect(target) else {
        return;
    };
    assert_eq!(followed, target);
    assert!(followed.bytes().all(|b| b.is_ascii_graphic() && b != b'\\'));
    let rest = followed.strip_prefix("https://").expect("https only");
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    assert!(!authority.contains(['@', '%', '[', ']']), "{followed}");
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
        .to_ascii_lowercase();
    assert!(
        host == "example.test" || host.ends_with(".example.test"),
        "{followed}"
    );
}
