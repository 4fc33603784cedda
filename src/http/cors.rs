//! CORS (the Fetch standard's CORS protocol) for the JSON API under `/v1/`, for the exact
//! origins of `LATCHD_CORS_ORIGINS` only. Credentials are allowed (a single-page app on one of
//! them refreshes by the cookie), which is why there is no wildcard: every allowed origin is
//! named, and the answer echoes the one that asked. A request from any other origin gets no
//! CORS header at all, so the browser keeps its answer from the page.

use std::fmt;

use hyper::header::{
    HeaderValue, ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS,
    ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS,
    ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use hyper::{HeaderMap, Method, Response, StatusCode};

use super::respond::{self, Body};

/// The request headers a page may send: the bearer token and the JSON content type.
const ALLOW_HEADERS: &str = "Authorization, Content-Type";
/// The answer headers a page may read besides the CORS-safelisted ones.
const EXPOSE_HEADERS: &str = "WWW-Authenticate, Retry-After";
/// How long a browser may cache a preflight's answer.
const MAX_AGE_SECS: &str = "600";
/// Forward-auth: asked by reverse proxies, never by a page. Traefik and Caddy hand its 401
/// (and redirect) to the browser as the protected app's answer, with the app's request's
/// `Origin` forwarded, so CORS headers here would speak for another site's answers.
const FORWARD_AUTH_PATH: &str = "/v1/auth/verify";

/// The origins of `LATCHD_CORS_ORIGINS`, each as a browser spells it in `Origin`: lowercase
/// scheme and host, no default port, no path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CorsOrigins(Vec<String>);

/// Why a text is no origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OriginError {
    /// `*`: with credentials allowed, every origin must be named.
    Wildcard,
    /// Not `http://` or `https://`.
    Scheme,
    /// No host, or a character no host name or IP literal has.
    Host,
    /// A port that is not 1-65535.
    Port,
    /// A path (even `/`), query, fragment or user info: an origin is scheme, host and port.
    NotAnOrigin,
}

impl fmt::Display for OriginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Wildcard => "no wildcard: name each origin (credentials are allowed)",
            Self::Scheme => "the scheme must be http or https",
            Self::Host => "the host is missing or malformed",
            Self::Port => "the port must be 1-65535",
            Self::NotAnOrigin => "an origin is scheme://host[:port], without a path",
        })
    }
}

impl std::error::Error for OriginError {}

impl CorsOrigins {
    /// A comma-separated list of origins (`https://app.example.com, http://localhost:5173`).
    ///
    /// # Errors
    /// The first entry that is no origin, with why.
    pub fn parse(text: &str) -> Result<Self, (String, OriginError)> {
        text.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| origin(entry).map_err(|e| (entry.to_owned(), e)))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Whether the `Origin` header `value` names an allowed origin, exactly.
    pub(crate) fn allows(&self, value: &[u8]) -> bool {
        self.0.iter().any(|allowed| allowed.as_bytes() == value)
    }

    /// The request's `Origin` when the answer to it gets CORS headers: an API path, and an
    /// allowed origin.
    pub(super) fn origin_of<'a>(
        &self,
        path: &str,
        headers: &'a HeaderMap,
    ) -> Option<&'a HeaderValue> {
        if !self.varies(path) {
            return None;
        }
        headers
            .get(ORIGIN)
            .filter(|origin| self.allows(origin.as_bytes()))
    }

    /// Whether answers on `path` depend on `Origin` (so caches must key on it).
    pub(super) fn varies(&self, path: &str) -> bool {
        !self.0.is_empty() && path.starts_with("/v1/") && path != FORWARD_AUTH_PATH
    }
}

/// Whether a request is a CORS preflight (Fetch standard §3.2.2).
pub(super) fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

/// Whether the preflight asks for one of `methods` (as [`preflight`] lists them): a method
/// the route does not serve gets no 204, only the route's 405.
pub(super) fn asks_for_one_of(headers: &HeaderMap, methods: &str) -> bool {
    headers
        .get(ACCESS_CONTROL_REQUEST_METHOD)
        .is_some_and(|asked| {
            methods
                .split(", ")
                .any(|m| m.as_bytes() == asked.as_bytes())
        })
}

/// The 204 answer to a preflight from `origin` for a route serving `methods`.
pub(super) fn preflight(origin: &HeaderValue, methods: &str) -> Response<Body> {
    let mut response = respond::empty(StatusCode::NO_CONTENT);
    allow(&mut response, origin);
    let headers = response.headers_mut();
    if let Ok(methods) = HeaderValue::from_str(methods) {
        headers.insert(ACCESS_CONTROL_ALLOW_METHODS, methods);
    }
    headers.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOW_HEADERS),
    );
    headers.insert(
        ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(MAX_AGE_SECS),
    );
    response
}

/// Adds the headers that let the page at `origin` read `response`.
pub(super) fn allow(response: &mut Response<Body>, origin: &HeaderValue) {
    let headers = response.headers_mut();
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    headers.insert(
        ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    headers.insert(
        ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE_HEADERS),
    );
}

/// Marks an answer that depends on `Origin`.
pub(super) fn vary(response: &mut Response<Body>) {
    response
        .headers_mut()
        .append(VARY, HeaderValue::from_static("Origin"));
}

/// One origin, as a browser serializes it (RFC 6454 §6.1).
fn origin(text: &str) -> Result<String, OriginError> {
    if text == "*" {
        return Err(OriginError::Wildcard);
    }
    let (scheme, rest) = text.split_once("://").ok_or(OriginError::Scheme)?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return Err(OriginError::Scheme),
    };
    if rest.contains(['/', '?', '#', '@']) {
        return Err(OriginError::NotAnOrigin);
    }
    let (host, port) = match rest.rfind(':') {
        // An IPv6 literal's colons are inside its brackets.
        Some(i) if !rest[i..].contains(']') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    let host = host.to_ascii_lowercase();
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        }
    };
    if !host_ok {
        return Err(OriginError::Host);
    }
    let port = match port {
        None => None,
        Some(digits) => {
            let ok = (1..=5).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
            let port = digits
                .parse::<u16>()
                .ok()
                .filter(|&p| ok && p != 0)
                .ok_or(OriginError::Port)?;
            (port != default_port).then_some(port)
        }
    };
    Ok(match port {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_kept_as_browsers_spell_them() {
        let origins = CorsOrigins::parse(
            " https://App.Example.com , http://localhost:5173,https://x.test:443,http://[::1]:8080",
        )
        .unwrap();
        assert_eq!(
            origins.0,
            [
                "https://app.example.com",
                "http://localhost:5173",
                "https://x.test",
                "http://[::1]:8080"
            ]
        );
        assert!(origins.allows(b"https://app.example.com"));
        assert!(origins.allows(b"https://x.test"));
        assert!(origins.allows(b"http://[::1]:8080"));
        for refused in [
            "https://app.example.com.evil.test",
            "https://evil.test",
            "http://app.example.com",
            "https://app.example.com:8443",
            "http://localhost:5174",
            "null",
            "",
            "https://app.example.com/",
        ] {
            assert!(!origins.allows(refused.as_bytes()), "{refused}");
        }
        assert_eq!(CorsOrigins::parse("").unwrap(), CorsOrigins::default());
    }

    #[test]
    fn every_malformed_origin_has_its_error() {
        let cases = [
            ("*", OriginError::Wildcard),
            ("app.example.com", OriginError::Scheme),
            ("ftp://app.example.com", OriginError::Scheme),
            ("https://", OriginError::Host),
            ("https://exa mple.com", OriginError::Host),
            ("https://-x.example.com", OriginError::Host),
            ("https://a..b", OriginError::Host),
            ("https://*.example.com", OriginError::Host),
            ("http://[::g]:80", OriginError::Host),
            ("https://app.example.com:0", OriginError::Port),
            ("https://app.example.com:65536", OriginError::Port),
            ("https://app.example.com:", OriginError::Port),
            ("https://app.example.com:+80", OriginError::Port),
            ("https://app.example.com/", OriginError::NotAnOrigin),
            ("https://app.example.com/path", OriginError::NotAnOrigin),
            ("https://user@app.example.com", OriginError::NotAnOrigin),
            ("https://app.example.com?x", OriginError::NotAnOrigin),
        ];
        for (text, want) in cases {
            assert_eq!(
                CorsOrigins::parse(text),
                Err((text.to_owned(), want)),
                "{text:?}"
            );
        }
    }

    #[test]
    fn only_api_paths_from_allowed_origins_get_cors_headers() {
        let origins = CorsOrigins::parse("https://app.example.com").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(ORIGIN, HeaderValue::from_static("https://app.example.com"));
        assert!(origins.origin_of("/v1/auth/me", &headers).is_some());
        assert!(origins.origin_of("/login", &headers).is_none());
        assert!(origins.origin_of("/metrics", &headers).is_none());
        assert!(origins.origin_of("/v1/auth/verify", &headers).is_none());
        assert!(!origins.varies("/v1/auth/verify"));
        assert!(CorsOrigins::default()
            .origin_of("/v1/auth/me", &headers)
            .is_none());
        headers.insert(ORIGIN, HeaderValue::from_static("https://evil.test"));
        assert!(origins.origin_of("/v1/auth/me", &headers).is_none());
    }
}
