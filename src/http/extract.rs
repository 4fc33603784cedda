//! Reading requests: the client address, the bearer token, the refresh cookie, and JSON bodies
//! under the 16 KiB limit. Tokens are only ever taken from headers, never from the query string.

use std::net::IpAddr;

use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use hyper::header::{
    HeaderName, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HOST, ORIGIN,
};
use hyper::{HeaderMap, Request};
use serde::de::DeserializeOwned;

use super::cors::CorsOrigins;
use super::error::ApiError;
use super::proxies::TrustedProxies;
use super::respond::REFRESH_COOKIE;
use super::server::ConnInfo;
use super::site::hex_value;
use crate::model::{AuditEvent, AuditId, AuditQuery, UserId};

/// The de-facto proxy header (RFC 7239's `Forwarded` is not read).
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Largest request body accepted.
pub(crate) const BODY_LIMIT_BYTES: usize = 16 * 1024;

/// The address a request comes from: the TCP `peer`, unless it is in a `trusted` range; then the right-most `X-Forwarded-For` entry that is not itself a trusted proxy.
///
/// Only entries appended by trusted proxies can be believed, and each proxy appends the
/// address it received from, so the walk goes right to left and stops at the first untrusted
/// one; everything left of it may be forged by the client. Several header lines read as one
/// list, in order. An entry may carry a port (`192.0.2.1:4711`, `[2001:db8::1]:4711`, as some
/// load balancers write it) or brackets. If every entry is trusted, the left-most is used.
///
/// # Errors
/// 400 when the walk reaches an entry that is no address at all (`unknown`, garbage): a trusted
/// proxy wrote it, and charging it to the proxy's own address would let one client make every
/// login behind that proxy 429.
pub(crate) fn client_ip(
    headers: &HeaderMap,
    peer: IpAddr,
    trusted: &TrustedProxies,
) -> Result<IpAddr, ApiError> {
    let peer = peer.to_canonical();
    if !trusted.trusts(peer) {
        return Ok(peer);
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
        let hop = std::str::from_utf8(entry)
            .ok()
            .and_then(forwarded_address)
            .ok_or_else(|| {
                ApiError::invalid_request(
                    "a trusted proxy forwarded a client address latchd cannot read",
                )
            })?;
        client = hop.to_canonical();
        if !trusted.trusts(client) {
            return Ok(client);
        }
    }
    Ok(client)
}

/// One `X-Forwarded-For` entry: an IP address, optionally with a port, IPv6 optionally in
/// brackets (`[2001:db8::1]`, `[2001:db8::1]:4711`, `192.0.2.1:4711`).
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = entry.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let ip = inside.parse::<std::net::Ipv6Addr>().ok()?;
        return (after.is_empty() || is_port(after.strip_prefix(':')?)).then_some(IpAddr::V6(ip));
    }
    let (host, port) = entry.rsplit_once(':')?;
    let ip = host.parse::<std::net::Ipv4Addr>().ok()?;
    is_port(port).then_some(IpAddr::V4(ip))
}

fn is_port(text: &str) -> bool {
    (1..=5).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_digit())
        && text.parse::<u16>().is_ok()
}

/// The request's `User-Agent`, when it is valid UTF-8; auth bounds its length before it is
/// stored.
pub(crate) fn user_agent(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(hyper::header::USER_AGENT)?;
    std::str::from_utf8(value.as_bytes()).ok()
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
///
/// # Errors
/// 400 when the request carries the cookie twice: a sibling subdomain can set a second one
/// ("cookie tossing"), and which of the two a browser sends first is not the server's choice.
pub(crate) fn refresh_cookie(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    Ok(cookie(headers, REFRESH_COOKIE)?.map(str::to_owned))
}

/// Refuses a request authenticated by the refresh cookie alone that a browser could have been
/// made to send cross-site: it must say it is JSON (a form, `text/plain` or multipart cannot,
/// without a CORS preflight), and an `Origin`, when present, must be this server's own or one
/// of `cors` (`LATCHD_CORS_ORIGINS`).
///
/// # Errors
/// 400 `invalid_request` naming the rule.
pub(crate) fn cookie_request_allowed(
    headers: &HeaderMap,
    cors: &CorsOrigins,
) -> Result<(), ApiError> {
    if !is_json(headers) {
        return Err(ApiError::invalid_request(
            "a request authenticated by the refresh cookie must be application/json",
        ));
    }
    let allowed = headers
        .get(ORIGIN)
        .is_some_and(|origin| cors.allows(origin.as_bytes()));
    if !allowed && !same_origin(headers) {
        return Err(ApiError::invalid_request(
            "cross-origin request refused: Origin is not this server or an allowed one",
        ));
    }
    Ok(())
}

/// Whether the `Origin` header is absent or names the host the request was sent to (the
/// `Host` header, or the `:authority` of HTTP/2). Scheme is not compared: behind a proxy that
/// ends TLS, the page is https while latchd is reached over http.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false; // "null" (a sandboxed or file page), or garbage
    };
    let default_port = match scheme {
        "https" => ":443",
        "http" => ":80",
        _ => return false,
    };
    let strip = |a: &str| {
        a.strip_suffix(default_port)
            .unwrap_or(a)
            .to_ascii_lowercase()
    };
    strip(authority) == strip(host)
}

/// The raw body, refused with 413 past `BODY_LIMIT_BYTES` without reading the rest, and with
/// 408 when it does not arrive whole within the connection's body deadline. What it buffers
/// counts against the connection's share of body memory (503 when that is spent).
pub(crate) async fn body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > BODY_LIMIT_BYTES as u64) {
        return Err(ApiError::payload_too_large());
    }
    let info = req.extensions().get::<ConnInfo>().cloned();
    let deadline = info
        .as_ref()
        .map_or(DEFAULT_BODY_TIMEOUT, |i| i.body_timeout);
    let mut reserved = Reservation {
        info: info.as_ref(),
        bytes: 0,
    };
    let mut body = req.into_body();
    let mut buf = Vec::new();
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|_| ApiError::invalid_request("could not read the request body"))?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            if buf.len() + data.len() > BODY_LIMIT_BYTES {
                return Err(ApiError::payload_too_large());
            }
            if !reserved.grow(data.len()) {
                return Err(ApiError::temporarily_unavailable());
            }
            buf.extend_from_slice(&data);
        }
        Ok(())
    };
    match tokio::time::timeout(deadline, read).await {
        Ok(Ok(())) => Ok(Bytes::from(buf)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ApiError::body_timeout()),
    }
}

/// Used when a request carries no [`ConnInfo`] (unit tests).
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Body memory held while a body is read; given back when the read ends, since the bytes are
/// parsed and dropped right after.
struct Reservation<'a> {
    info: Option<&'a ConnInfo>,
    bytes: usize,
}

impl Reservation<'_> {
    fn grow(&mut self, more: usize) -> bool {
        let Some(info) = self.info else {
            return true;
        };
        if !info.slot.reserve_body(more) {
            return false;
        }
        self.bytes += more;
        true
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if let Some(info) = self.info {
            info.slot.release_body(self.bytes);
        }
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

/// The pairs of an `application/x-www-form-urlencoded` text (a form body or a query string),
/// decoded: `+` is a space, `%XX` a byte, the result UTF-8.
///
/// # Errors
/// 400 for a malformed escape, text that is not UTF-8, or a name given twice (which of two
/// values a proxy and latchd would each take is not worth guessing).
pub(crate) fn form_pairs(text: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(name), Some(value)) = (form_decode(name), form_decode(value)) else {
            return Err(ApiError::invalid_request("malformed form encoding"));
        };
        if pairs.iter().any(|(n, _)| *n == name) {
            return Err(ApiError::invalid_request("a form field is given twice"));
        }
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// A form body (`application/x-www-form-urlencoded`), under the body limits, as pairs.
pub(crate) async fn form(req: Request<Incoming>) -> Result<Vec<(String, String)>, ApiError> {
    let is_form = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(ApiError::invalid_request(
            "content-type must be application/x-www-form-urlencoded",
        ));
    }
    let bytes = body(req).await?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::invalid_request("malformed form encoding"))?;
    form_pairs(text)
}

/// The value of `name` in `pairs`.
pub(crate) fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn form_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                // Two hex digits, nothing else: `from_str_radix` would also take `%+a`.
                let (hi, lo) = match bytes.get(i + 1..i + 3)? {
                    &[hi, lo] => (hex_value(hi)?, hex_value(lo)?),
                    _ => return None,
                };
                out.push(hi << 4 | lo);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The value of the cookie `name`, if the request carries it exactly once.
///
/// # Errors
/// 400 when it comes twice (a sibling subdomain can toss in a second).
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    let mut found = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(n, _)| *n == name)
        .map(|(_, value)| value);
    let first = found.next();
    if found.next().is_some() {
        return Err(ApiError::invalid_request(format!(
            "the request carries two {name} cookies"
        )));
    }
    Ok(first.filter(|v| !v.is_empty()))
}

/// Whether a form POST may come from where it says it comes from: `Sec-Fetch-Site`, when the
/// browser sends it, must be `same-origin` (or `none`, a user's own navigation), and `Origin`,
/// when present, must be latchd's public origin (or, without one, the host the request was
/// sent to). A page on a sibling subdomain is `same-site`, not `same-origin`, and is refused.
pub(crate) fn form_origin_ok(headers: &HeaderMap, own_origin: Option<&str>) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        if !matches!(site.to_str(), Ok("same-origin" | "none")) {
            return false;
        }
    }
    match (headers.get(ORIGIN), own_origin) {
        (None, _) => true,
        (Some(origin), Some(own)) => origin
            .to_str()
            .is_ok_and(|o| o.trim_end_matches('/').eq_ignore_ascii_case(own)),
        (Some(_), None) => same_origin(headers),
    }
}

/// Default and largest page of a listing.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// `?limit=&after=` of a listing: `limit` 1-1000 (default 100), `after` the last id of the
/// previous page.
pub(crate) fn paging(query: Option<&str>) -> Result<(usize, Option<UserId>), ApiError> {
    let mut limit = DEFAULT_PAGE;
    let mut after = None;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("limit", v)) => {
                limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| ApiError::invalid_request("limit must be 1 to 1000"))?;
            }
            Some(("after", v)) => {
                after =
                    Some(UserId(uuid::Uuid::try_parse(v).map_err(|_| {
                        ApiError::invalid_request("after must be a user id")
                    })?));
            }
            _ => return Err(ApiError::invalid_request("unknown query parameter")),
        }
    }
    Ok((limit, after))
}

/// `?user=&event=&after=&limit=` of `GET /v1/admin/audit`: `user` and `after` canonical ids,
/// `event` one of API.md's names, `limit` 1-1000 (default 100). An unknown or repeated
/// parameter, or a bad value, is refused.
pub(crate) fn audit_query(query: Option<&str>) -> Result<AuditQuery, ApiError> {
    let mut found = AuditQuery {
        user: None,
        event: None,
        after: None,
        since: None,
        limit: DEFAULT_PAGE,
    };
    let mut seen = Vec::new();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if seen.contains(&name) {
            return Err(ApiError::invalid_request("a query parameter is repeated"));
        }
        seen.push(name);
        match name {
            "user" => {
                let user = UserId::parse(value)
                    .ok_or_else(|| ApiError::invalid_request("user must be a user id"))?;
                found.user = Some(user);
            }
            "event" => {
                let event = AuditEvent::from_label(value)
                    .ok_or_else(|| ApiError::invalid_request("event is not an audit event"))?;
                found.event = Some(event);
            }
            "after" => {
                let after = crate::model::parse_uuid(value)
                    .ok_or_else(|| ApiError::invalid_request("after must be an audit row id"))?;
                found.after = Some(AuditId(after));
            }
            "limit" => {
                found.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| ApiError::invalid_request("limit must be 1 to 1000"))?;
            }
            _ => return Err(ApiError::invalid_request("unknown query parameter")),
        }
    }
    Ok(found)
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
    use crate::http::proxies::AddressRange;

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

    /// `client_ip`, with a refusal as `None`.
    fn client(headers: &HeaderMap, peer: &str, trusted: &[IpAddr]) -> Option<IpAddr> {
        let trusted = trusted
            .iter()
            .map(|a| AddressRange::parse(&a.to_string()).unwrap())
            .collect();
        client_ip(headers, ip(peer), &TrustedProxies::new(trusted)).ok()
    }

    #[test]
    fn a_peer_inside_a_trusted_range_is_a_proxy() {
        let ranges = ["10.0.0.0/8", "fd00::/8"].map(|r| AddressRange::parse(r).unwrap());
        let trusted = TrustedProxies::new(ranges.to_vec());
        let headers = xff(&["198.51.100.9, 10.200.0.7"]);
        // Both hops are in 10/8: the client is the first address outside it.
        let got = client_ip(&headers, ip("10.1.2.3"), &trusted).ok();
        assert_eq!(got, Some(ip("198.51.100.9")));
        let got = client_ip(&headers, ip("fd12::1"), &trusted).ok();
        assert_eq!(got, Some(ip("198.51.100.9")));
        // A peer outside every range is the client, whatever it forwards.
        let got = client_ip(&headers, ip("11.0.0.1"), &trusted).ok();
        assert_eq!(got, Some(ip("11.0.0.1")));
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let headers = xff(&["198.51.100.9"]);
        assert_eq!(
            client(&headers, "203.0.113.5", &[]),
            Some(ip("203.0.113.5"))
        );
        let trusted = [ip("10.0.0.1")];
        assert_eq!(
            client(&headers, "203.0.113.5", &trusted),
            Some(ip("203.0.113.5"))
        );
        // Even garbage from an untrusted peer is simply not read.
        assert_eq!(
            client(&xff(&["garbage"]), "203.0.113.5", &trusted),
            Some(ip("203.0.113.5"))
        );
    }

    #[test]
    fn a_trusted_peer_yields_the_right_most_untrusted_entry() {
        let trusted = [ip("10.0.0.1")];
        let headers = xff(&["1.1.1.1, 198.51.100.9"]); // the left one may be forged
        assert_eq!(
            client(&headers, "10.0.0.1", &trusted),
            Some(ip("198.51.100.9"))
        );
    }

    #[test]
    fn a_chain_of_trusted_proxies_is_walked_from_the_right() {
        let trusted = [ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3")];
        let headers = xff(&["6.6.6.6, 198.51.100.9, 10.0.0.3", "10.0.0.2"]);
        assert_eq!(
            client(&headers, "10.0.0.1", &trusted),
            Some(ip("198.51.100.9"))
        );
        // Every hop trusted: the left-most one.
        let headers = xff(&["10.0.0.3,10.0.0.2"]);
        assert_eq!(client(&headers, "10.0.0.1", &trusted), Some(ip("10.0.0.3")));
    }

    #[test]
    fn a_trusted_peer_without_the_header_is_the_client() {
        let trusted = [ip("10.0.0.1")];
        assert_eq!(
            client(&HeaderMap::new(), "10.0.0.1", &trusted),
            Some(ip("10.0.0.1"))
        );
    }

    #[test]
    fn entries_with_ports_and_brackets_are_read() {
        let trusted = [ip("10.0.0.1")];
        for (entry, want) in [
            ("198.51.100.9:4711", "198.51.100.9"),
            ("[2001:db8::1]:4711", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            (" 2001:db8::1 ", "2001:db8::1"),
            ("[::ffff:198.51.100.9]:80", "198.51.100.9"),
        ] {
            assert_eq!(
                client(&xff(&[entry]), "10.0.0.1", &trusted),
                Some(ip(want)),
                "{entry:?}"
            );
        }
    }

    #[test]
    fn an_unreadable_entry_is_refused_and_never_charged_to_the_proxy() {
        let trusted = [ip("10.0.0.1")];
        for value in [
            "not-an-ip",
            "unknown",
            "198.51.100.9,",
            "",
            "198.51.100.9, 10.0.0.2 junk",
            "198.51.100.9:+80",
            "198.51.100.9:99999",
            "[2001:db8::1]4711",
            "[198.51.100.9]",
            "2001:db8::1:4711:",
        ] {
            let headers = xff(&[value]);
            assert!(
                client(&headers, "10.0.0.1", &trusted).is_none(),
                "{value:?}"
            );
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            X_FORWARDED_FOR,
            HeaderValue::from_bytes(b"198.51.100.9\xff").unwrap(),
        );
        assert!(client(&headers, "10.0.0.1", &trusted).is_none());
    }

    #[test]
    fn a_garbage_entry_left_of_the_client_does_not_matter() {
        let trusted = [ip("10.0.0.1")];
        let headers = xff(&["garbage, 198.51.100.9"]);
        assert_eq!(
            client(&headers, "10.0.0.1", &trusted),
            Some(ip("198.51.100.9"))
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
            client(&headers, "10.0.0.1", &trusted),
            Some(ip("198.51.100.9"))
        );
    }

    #[test]
    fn ipv4_mapped_addresses_compare_as_ipv4() {
        let trusted = [ip("127.0.0.1")];
        let headers = xff(&["::ffff:198.51.100.9"]);
        assert_eq!(
            client(&headers, "::ffff:127.0.0.1", &trusted),
            Some(ip("198.51.100.9"))
        );
        assert_eq!(client(&headers, "::1", &trusted), Some(ip("::1")));
    }

    fn cookies(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(COOKIE, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn one_refresh_cookie_is_read_and_two_are_refused() {
        let one = cookies(&["theme=dark; refresh_token=abc"]);
        assert_eq!(refresh_cookie(&one).unwrap().as_deref(), Some("abc"));
        assert_eq!(refresh_cookie(&cookies(&["theme=dark"])).unwrap(), None);
        assert_eq!(refresh_cookie(&cookies(&["refresh_token="])).unwrap(), None);
        for two in [
            cookies(&["refresh_token=abc; refresh_token=def"]),
            cookies(&["refresh_token=abc", "refresh_token=abc"]),
            cookies(&["refresh_token=; refresh_token=def"]),
        ] {
            assert!(refresh_cookie(&two).is_err(), "{two:?}");
        }
    }

    fn request_headers(pairs: &[(HeaderName, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn a_cookie_request_must_be_json_and_same_origin() {
        let none = CorsOrigins::default();
        let json = (CONTENT_TYPE, "application/json");
        let host = (HOST, "auth.example.test");
        let ok = [
            vec![json.clone(), host.clone()],
            vec![
                (CONTENT_TYPE, "application/json; charset=utf-8"),
                host.clone(),
            ],
            vec![
                json.clone(),
                host.clone(),
                (ORIGIN, "https://auth.example.test"),
            ],
            vec![
                json.clone(),
                host.clone(),
                (ORIGIN, "http://AUTH.example.test:80"),
            ],
            vec![
                json.clone(),
                (HOST, "auth.example.test:8443"),
                (ORIGIN, "https://auth.example.test:8443"),
            ],
        ];
        for headers in ok {
            assert!(
                cookie_request_allowed(&request_headers(&headers), &none).is_ok(),
                "{headers:?}"
            );
        }
        let refused = [
            vec![host.clone()],
            vec![
                (CONTENT_TYPE, "application/x-www-form-urlencoded"),
                host.clone(),
            ],
            vec![(CONTENT_TYPE, "text/plain"), host.clone()],
            vec![
                (CONTENT_TYPE, "multipart/form-data; boundary=x"),
                host.clone(),
            ],
            vec![json.clone(), host.clone(), (ORIGIN, "https://evil.test")],
            vec![
                json.clone(),
                host.clone(),
                (ORIGIN, "https://auth.example.test.evil.test"),
            ],
            vec![
                json.clone(),
                host.clone(),
                (ORIGIN, "https://auth.example.test:444"),
            ],
            vec![json.clone(), host.clone(), (ORIGIN, "null")],
            vec![
                json.clone(),
                host.clone(),
                (ORIGIN, "ftp://auth.example.test"),
            ],
            vec![json.clone(), (ORIGIN, "https://auth.example.test")],
        ];
        for headers in refused {
            assert!(
                cookie_request_allowed(&request_headers(&headers), &none).is_err(),
                "{headers:?}"
            );
        }
    }

    #[test]
    fn a_cors_origin_passes_the_origin_rule_and_only_that_rule() {
        let cors = CorsOrigins::parse("https://app.example.test").unwrap();
        let with = |content_type: &'static str, origin: &'static str| {
            request_headers(&[
                (CONTENT_TYPE, content_type),
                (HOST, "auth.example.test"),
                (ORIGIN, origin),
            ])
        };
        let ok = with("application/json", "https://app.example.test");
        assert!(cookie_request_allowed(&ok, &cors).is_ok());
        assert!(cookie_request_allowed(&ok, &CorsOrigins::default()).is_err());
        for (content_type, origin) in [
            ("text/plain", "https://app.example.test"),
            ("application/json", "https://evil.test"),
            ("application/json", "https://app.example.test:8443"),
        ] {
            let headers = with(content_type, origin);
            assert!(
                cookie_request_allowed(&headers, &cors).is_err(),
                "{content_type} {origin}"
            );
        }
    }

    #[test]
    fn form_fields_decode_plus_and_escapes_and_refuse_malformed_ones() {
        let pairs = form_pairs("email=ada%40example.com&password=a+b%2Bc&rd=").unwrap();
        assert_eq!(
            pairs,
            [
                ("email".to_owned(), "ada@example.com".to_owned()),
                ("password".to_owned(), "a b+c".to_owned()),
                ("rd".to_owned(), String::new()),
            ]
        );
        // Two hex digits or a 400: `%+a` and `%-1` are what `from_str_radix` would take.
        for bad in ["x=%+a", "x=%-1", "x=%a", "x=%", "x=%zz", "x=%e9", "%0=x"] {
            assert!(form_pairs(bad).is_err(), "{bad}");
        }
    }
}
