//! Reading requests: the client address, the bearer token, the refresh cookie, and JSON bodies
//! under the 16 KiB limit. Tokens are only ever taken from headers, never from the query string.

use std::net::IpAddr;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE};
use hyper::{HeaderMap, Request};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::respond::REFRESH_COOKIE;

/// The de-facto proxy header (RFC 7239's `Forwarded` is not read).
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Largest request body accepted.
pub(crate) const BODY_LIMIT_BYTES: usize = 16 * 1024;

/// The address a request comes from: the TCP `peer`, unless `trusted` (canonical addresses)
/// lists it; then the right-most `X-Forwarded-For` entry that is not itself a trusted proxy.
///
/// Only entries appended by trusted proxies can be believed, and each proxy appends the
/// address it received from, so the walk goes right to left and stops at the first untrusted
/// one; everything left of it may be forged by the client. Several header lines read as one
/// list, in order. An entry that is not a bare IP address (a port, `unknown`, garbage) makes
/// the chain unreadable, and the peer is used: it fails towards one shared limit, never
/// towards an address the client chose. If every entry is trusted, the left-most is used.
pub(crate) fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted: &[IpAddr]) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(&peer) {
        return peer;
    }
    // Entries are split on raw bytes and only those walked are decoded: a client's garbage at
    // the left of a line must not spoil the entry its proxy appended at the right.
    let lines: Vec<&[u8]> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .map(hyper::header::HeaderValue::as_bytes)
        .collect();
    let mut client = peer;
    for entry in lines
        .iter()
        .rev()
        .flat_map(|line| line.rsplit(|&b| b == b','))
    {
        let Some(hop) = std::str::from_utf8(entry)
            .ok()
            .and_then(|e| e.trim().parse::<IpAddr>().ok())
        else {
            return peer;
        };
        client = hop.to_canonical();
        if !trusted.contains(&client) {
            return client;
        }
    }
    client
}

/// The bearer token of the `Authorization` header (RFC 6750 §2.1; the scheme name is
/// case-insensitive). No header, or another scheme, is "no credentials"; a malformed or
/// repeated header is an invalid token.
pub(crate) fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(ApiError::no_credentials());
    };
    if values.next().is_some() {
        return Err(ApiError::invalid_token());
    }
    let value = value.to_str().map_err(|_| ApiError::invalid_token())?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::no_credentials());
    }
    let token = token.trim_start_matches(' ');
    if token.is_empty() {
        return Err(ApiError::invalid_token());
    }
    Ok(token)
}

/// The refresh token from the `refresh_token` cookie, if any.
pub(crate) fn refresh_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == REFRESH_COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|v| !v.is_empty())
}

/// The raw body, refused with 413 past `BODY_LIMIT_BYTES` without reading the rest.
pub(crate) async fn body(req: Request<Incoming>) -> Result<hyper::body::Bytes, ApiError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > BODY_LIMIT_BYTES as u64) {
        return Err(ApiError::payload_too_large());
    }
    let limited = Limited::new(req.into_body(), BODY_LIMIT_BYTES);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::payload_too_large())
        }
        Err(_) => Err(ApiError::invalid_request("could not read the request body")),
    }
}

/// Whether the request says its body is JSON (`application/json`, parameters allowed).
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// A JSON body of type `T`: 415-free by design, a wrong content type is a 400 like any other
/// malformed request.
pub(crate) async fn json<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    if !is_json(req.headers()) {
        return Err(ApiError::invalid_request(
            "content-type must be application/json",
        ));
    }
    let bytes = body(req).await?;
    parse_json(&bytes)
}

/// Parses a JSON body, describing the problem without echoing the input. The body must be a
/// JSON object: serde's derived structs would also take a positional array.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|_| ApiError::invalid_request("request body is not valid JSON"))?;
    if !value.is_object() {
        return Err(ApiError::invalid_request(
            "request body must be a JSON object",
        ));
    }
    serde_json::from_value(value).map_err(|_| {
        ApiError::invalid_request("request body has a missing, unknown or mistyped field")
    })
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(X_FORWARDED_FOR, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let headers = xff(&["198.51.100.9"]);
        assert_eq!(
            client_ip(&headers, ip("203.0.113.5"), &[]),
            ip("203.0.113.5")
        );
        let trusted = [ip("10.0.0.1")];
        assert_eq!(
            client_ip(&headers, ip("203.0.113.5"), &trusted),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn a_trusted_peer_yields_the_right_most_untrusted_entry() {
        let trusted = [ip("10.0.0.1")];
        let headers = xff(&["1.1.1.1, 198.51.100.9"]); // the left one may be forged
        assert_eq!(
            client_ip(&headers, ip("10.0.0.1"), &trusted),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn a_chain_of_trusted_proxies_is_walked_from_the_right() {
        let trusted = [ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3")];
        let headers = xff(&["6.6.6.6, 198.51.100.9, 10.0.0.3", "10.0.0.2"]);
        assert_eq!(
            client_ip(&headers, ip("10.0.0.1"), &trusted),
            ip("198.51.100.9")
        );
        // Every hop trusted: the left-most one.
        let headers = xff(&["10.0.0.3,10.0.0.2"]);
        assert_eq!(
            client_ip(&headers, ip("10.0.0.1"), &trusted),
            ip("10.0.0.3")
        );
    }

    #[test]
    fn a_trusted_peer_without_the_header_is_the_client() {
        let trusted = [ip("10.0.0.1")];
        assert_eq!(
            client_ip(&HeaderMap::new(), ip("10.0.0.1"), &trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn garbage_entries_fall_back_to_the_peer() {
        let trusted = [ip("10.0.0.1")];
        for value in [
            "not-an-ip",
            "198.51.100.9:4711",
            "unknown",
            "198.51.100.9,",
            "",
            "198.51.100.9, 10.0.0.2 junk",
        ] {
            let headers = xff(&[value]);
            assert_eq!(
                client_ip(&headers, ip("10.0.0.1"), &trusted),
                ip("10.0.0.1"),
                "{value:?}"
            );
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            X_FORWARDED_FOR,
            HeaderValue::from_bytes(b"198.51.100.9\xff").unwrap(),
        );
        assert_eq!(
            client_ip(&headers, ip("10.0.0.1"), &trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn a_garbage_entry_left_of_the_client_does_not_matter() {
        let trusted = [ip("10.0.0.1")];
        let headers = xff(&["garbage, 198.51.100.9"]);
        assert_eq!(
            client_ip(&headers, ip("10.0.0.1"), &trusted),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn non_utf8_bytes_left_of_the_client_do_not_spoil_the_line() {
        // nginx appends the real address to the client's own (here non-UTF-8) header line.
        let mut headers = HeaderMap::new();
        headers.append(
            X_FORWARDED_FOR,
            HeaderValue::from_bytes(b"\xff\xfe, 198.51.100.9").unwrap(),
        );
        let trusted = [ip("10.0.0.1")];
        assert_eq!(
            client_ip(&headers, ip("10.0.0.1"), &trusted),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn ipv4_mapped_addresses_compare_as_ipv4() {
        let trusted = [ip("127.0.0.1")];
        let headers = xff(&["::ffff:198.51.100.9"]);
        assert_eq!(
            client_ip(&headers, ip("::ffff:127.0.0.1"), &trusted),
            ip("198.51.100.9")
        );
        assert_eq!(client_ip(&headers, ip("::1"), &trusted), ip("::1"));
    }
}
