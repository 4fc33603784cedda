//! Forward-auth (`/v1/auth/verify`, any method): who the original request is, from its bearer
//! token or its `latchd_session` cookie; the `role=` and `mfa=1` rules; and, for a browser
//! without a live session, the way to the sign-in page (API.md v2 "Browser sign-in and
//! forward-auth for browsers").
//!
//! The original request is read only from peers in `LATCHD_TRUSTED_PROXIES`: nginx sends
//! `X-Original-URL` and `X-Original-Method`; Traefik and Caddy send `X-Forwarded-Method`,
//! `-Proto`, `-Host` and `-Uri`. Anything else that claims to describe it is ignored.

use hyper::header::{HeaderValue, ACCEPT, LOCATION};
use hyper::{HeaderMap, Response, StatusCode};

use super::error::ApiError;
use super::extract;
use super::handlers::Ctx;
use super::pages;
use super::respond::{self, Body, SESSION_COOKIE};
use super::routes::Answer;
use crate::auth::{AuthError, Identity};
use crate::time::UnixTime;

/// The longest original URL the sign-in redirect carries as `rd`.
const MAX_RD_BYTES: usize = 1024;

/// `/v1/auth/verify`.
pub(super) fn verify(cx: &Ctx) -> Answer {
    let headers = cx.req.headers();
    // A bearer token, when present, is the one judged; a malformed one is a v1 401.
    let bearer = match extract::bearer(headers) {
        Ok(token) => Some(token),
        Err(e) if e.is_no_credentials() => None,
        Err(e) => return Err(e),
    };
    let cookie = extract::cookie(headers, SESSION_COOKIE)?;
    match cx.app.auth.identify(bearer, cookie, UnixTime::now()) {
        // The rules are read only for a caller they could admit: a request without a live
        // identity is refused whatever its query says (tokens in it are never read).
        Ok(identity) => Rules::parse(cx.req.uri().query())?.judge(cx, &identity),
        Err(err) => Ok(unauthenticated(cx, err)),
    }
}

/// The query of a verify request: `role=R` (repeatable: one of them is needed) and `mfa=1`.
struct Rules {
    roles: Vec<String>,
    mfa: bool,
}

impl Rules {
    fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut rules = Rules {
            roles: Vec::new(),
            mfa: false,
        };
        // Repeated `role=` is the point, so the pairs are split here rather than by the form
        // decoder (which refuses repeats); an unknown parameter fails closed.
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let decoded = extract::form_pairs(pair)?;
            match decoded.first().map(|(n, v)| (n.as_str(), v.as_str())) {
                Some(("role", role)) if crate::auth::is_valid_role(role) => {
                    rules.roles.push(role.to_owned());
                }
                Some(("mfa", "1")) => rules.mfa = true,
                _ => {
                    return Err(ApiError::invalid_request(
                        "verify takes only role=<role> (repeatable) and mfa=1",
                    ))
                }
            }
        }
        Ok(rules)
    }

    /// 200 with the identity's headers, or 403 when a rule refuses it.
    fn judge(&self, cx: &Ctx, identity: &Identity) -> Answer {
        let role_ok = self.roles.is_empty() || self.roles.iter().any(|r| identity.has_role(r));
        let mfa_ok = !self.mfa || identity.mfa;
        if role_ok && mfa_ok {
            return Ok(respond::forward_auth(identity));
        }
        let why = if role_ok {
            "this app needs a sign-in with a second factor"
        } else {
            "your account does not have a role this app needs"
        };
        if navigation(cx.req.headers()) {
            let html = pages::message("Not allowed", why, Some(("/", "Your account")));
            return Ok(pages::page(
                StatusCode::FORBIDDEN,
                html,
                &cx.app.settings.site,
            ));
        }
        Err(ApiError::forbidden(why))
    }
}

/// The answer without a live identity: a way to the sign-in page for a browser's top-level
/// navigation when the pages have a public URL, else the v1 401.
fn unauthenticated(cx: &Ctx, err: AuthError) -> Response<Body> {
    let headers = cx.req.headers();
    let public = cx.app.settings.site.public_url.as_ref();
    // A node that cannot confirm its view answers 503 to browsers too: a sign-in page now
    // would only fail again.
    let (Some(public), true, false) = (public, navigation(headers), err.is_unavailable()) else {
        return ApiError::from(err).into_response();
    };
    let original = cx
        .app
        .settings
        .trusted_proxies
        .trusts(cx.peer.ip())
        .then(|| Original::read(headers))
        .flatten();
    let mut location = format!("{}/login", public.origin());
    // Encoding can triple a URL; past this, the Location header would outgrow a proxy's
    // buffer for answer headers (nginx's proxy_buffer_size is 4 KiB) and the browser would
    // get a 502 instead of the sign-in page. Such a browser signs in and lands on `/`.
    let rd = original
        .as_ref()
        .map(|o| o.url.as_str())
        .filter(|url| url.len() <= MAX_RD_BYTES);
    if let Some(url) = rd {
        location.push_str("?rd=");
        location.push_str(&respond::query_encode(url));
    }
    let Ok(value) = HeaderValue::from_str(&location) else {
        return ApiError::from(err).into_response();
    };
    let (status, nginx) = match &original {
        // nginx's auth_request only passes 2xx, 401 and 403 on: it gets 401 + Location and
        // its `error_page 401` turns that into the redirect.
        Some(o) if o.from_nginx => (StatusCode::UNAUTHORIZED, true),
        Some(o) if o.method != "GET" && o.method != "HEAD" => (StatusCode::SEE_OTHER, false),
        _ => (StatusCode::FOUND, false),
    };
    let mut response = if nginx {
        ApiError::from(err).into_response()
    } else {
        respond::empty(status)
    };
    *response.status_mut() = status;
    response.headers_mut().insert(LOCATION, value);
    response
}

/// Whether the original request is a browser's top-level navigation: it accepts HTML and is
/// not an `XMLHttpRequest`.
fn navigation(headers: &HeaderMap) -> bool {
    let accepts_html = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|media| {
            media
                .split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/html"))
        });
    let xhr = headers
        .get("x-requested-with")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("xmlhttprequest"));
    accepts_html && !xhr
}

/// The request a proxy is asking about.
struct Original {
    url: String,
    method: String,
    from_nginx: bool,
}

impl Original {
    /// From nginx's `X-Original-URL` / `X-Original-Method`, else from `X-Forwarded-Proto`,
    /// `-Host`, `-Uri` and `-Method`; `None` when neither describes an http(s) URL.
    fn read(headers: &HeaderMap) -> Option<Self> {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        if let Some(url) = text("x-original-url") {
            let plain = url.bytes().all(|b| b.is_ascii_graphic());
            let http = url.starts_with("https://") || url.starts_with("http://");
            return (plain && http).then(|| Self {
                url: url.to_owned(),
                method: text("x-original-method")
                    .unwrap_or("GET")
                    .to_ascii_uppercase(),
                from_nginx: true,
            });
        }
        let proto = text("x-forwarded-proto")?.split(',').next()?.trim();
        let host = text("x-forwarded-host")?.split(',').next()?.trim();
        let uri = text("x-forwarded-uri").unwrap_or("/");
        let well_formed = matches!(proto, "http" | "https")
            && !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
            && uri.starts_with('/')
            && uri.bytes().all(|b| b.is_ascii_graphic());
        well_formed.then(|| Self {
            url: format!("{proto}://{host}{uri}"),
            method: text("x-forwarded-method")
                .unwrap_or("GET")
                .to_ascii_uppercase(),
            from_nginx: false,
        })
    }
}

/// For the fuzz target: `Original::read` on headers built from `data` (`name: value` lines);
/// what it accepts is an http(s) URL of plain ASCII.
pub(super) fn fuzz_original(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = line.split_at(colon);
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name),
            HeaderValue::from_bytes(value.get(1..).unwrap_or_default()),
        ) {
            headers.append(name, value);
        }
    }
    if let Some(original) = Original::read(&headers) {
        assert!(original.url.starts_with("https://") || original.url.starts_with("http://"));
        assert!(original.url.bytes().all(|b| b.is_ascii_graphic()));
        assert!(respond::query_encode(&original.url)
            .bytes()
            .all(|b| b.is_ascii_graphic()));
    }
    let _ = navigation(&headers);
}

/// For the fuzz target: the verify rules from a query; accepted roles obey the role rule.
pub(super) fn fuzz_rules(query: &str) {
    if let Ok(rules) = Rules::parse(Some(query)) {
        assert!(rules.roles.iter().all(|r| crate::auth::is_valid_role(r)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn a_navigation_accepts_html_and_is_not_xhr() {
        let html = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert!(navigation(&headers(&[("accept", html)])));
        assert!(navigation(&headers(&[("accept", "TEXT/HTML")])));
        assert!(!navigation(&headers(&[("accept", "application/json")])));
        assert!(!navigation(&headers(&[])));
        assert!(!navigation(&headers(&[("accept", "*/*")])));
        assert!(!navigation(&headers(&[
            ("accept", html),
            ("x-requested-with", "XMLHttpRequest")
        ])));
    }

    #[test]
    fn the_original_request_comes_from_nginx_or_forwarded_headers() {
        let nginx = Original::read(&headers(&[
            ("x-original-url", "https://app.example.test/a?b=c"),
            ("x-original-method", "post"),
        ]))
        .unwrap();
        assert_eq!(
            (nginx.url.as_str(), nginx.method.as_str(), nginx.from_nginx),
            ("https://app.example.test/a?b=c", "POST", true)
        );
        let traefik = Original::read(&headers(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "app.example.test"),
            ("x-forwarded-uri", "/x?y=1"),
            ("x-forwarded-method", "DELETE"),
        ]))
        .unwrap();
        assert_eq!(traefik.url, "https://app.example.test/x?y=1");
        assert_eq!(
            (traefik.method.as_str(), traefik.from_nginx),
            ("DELETE", false)
        );
        for bad in [
            vec![("x-original-url", "javascript:alert(1)")],
            vec![("x-original-url", "/relative")],
            vec![("x-forwarded-proto", "ftp"), ("x-forwarded-host", "a.test")],
            vec![
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "a.test/evil"),
            ],
            vec![
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "a.test"),
                ("x-forwarded-uri", "evil"),
            ],
            vec![("x-forwarded-host", "a.test")],
        ] {
            assert!(Original::read(&headers(&bad)).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn rules_take_roles_and_mfa_and_nothing_else() {
        let rules = Rules::parse(Some("role=admin&role=ops&mfa=1")).unwrap();
        assert_eq!(rules.roles, ["admin", "ops"]);
        assert!(rules.mfa);
        assert!(Rules::parse(None).unwrap().roles.is_empty());
        for bad in [
            "roles=admin",
            "role=Admin",
            "mfa=0",
            "mfa=true",
            "role=",
            "x=1",
            "role=a%2Cb",
        ] {
            assert!(Rules::parse(Some(bad)).is_err(), "{bad}");
        }
    }
}
