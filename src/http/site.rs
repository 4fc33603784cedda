//! Where latchd's pages live and which addresses a browser may be sent back to: the public
//! origin (`LATCHD_PUBLIC_URL`), the cookie domain (`LATCHD_COOKIE_DOMAIN`), and the one
//! redirect check every page and form uses ([`Site::safe_redirect`]).
//!
//! Open redirects are the classic bug of sign-in pages (oauth2-proxy CVE-2020-11053 and
//! CVE-2020-5233, Vouch taking `blah.com.evil.com` for `blah.com`), so the check is a short
//! allow-list over the target's bytes rather than a URL parser's opinion: an absolute
//! `https://` (or, with insecure cookies, `http://`) URL whose authority is a plain host name
//! equal to the cookie domain or ending in `.` + it, with nothing in it that different
//! parsers read differently (userinfo, backslashes, percent-escapes, control characters,
//! whitespace, non-ASCII).

use std::fmt;
use std::net::IpAddr;

/// latchd's public origin: `scheme://host[:port]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicUrl {
    /// `https` or `http`.
    scheme: &'static str,
    /// The host, lowercase ASCII (a name or an IP address literal).
    host: String,
    /// An explicit port other than the scheme's default, if any.
    port: Option<u16>,
}

impl PublicUrl {
    /// Parses `LATCHD_PUBLIC_URL`.
    ///
    /// # Errors
    /// A sentence saying what is wrong, for the start-up error line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim().trim_end_matches('/');
        let (scheme, rest) = if let Some(rest) = text.strip_prefix("https://") {
            ("https", rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            ("http", rest)
        } else {
            return Err("expected an absolute http:// or https:// URL".to_owned());
        };
        if rest.contains(['/', '?', '#', '@', '\\']) {
            return Err(
                "expected scheme://host[:port] only: no path, query, fragment or userinfo"
                    .to_owned(),
            );
        }
        let (host, port) = split_port(rest).ok_or("the port is not a number from 1 to 65535")?;
        let host = host.to_ascii_lowercase();
        let is_ip = host.parse::<IpAddr>().is_ok()
            || host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .is_some_and(|h| h.parse::<IpAddr>().is_ok());
        if !is_ip && !is_host_name(&host) {
            return Err(format!("{host:?} is not a host name"));
        }
        // Browsers leave the scheme's own port out of `Origin`; so does the origin compared.
        let default_port = if scheme == "https" { 443 } else { 80 };
        let port = port.filter(|p| *p != default_port);
        Ok(Self { scheme, host, port })
    }

    /// Whether the host is an IP address literal.
    pub fn is_ip(&self) -> bool {
        let bare = self.host.trim_start_matches('[').trim_end_matches(']');
        bare.parse::<IpAddr>().is_ok()
    }

    /// The host, lowercase.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `scheme://host[:port]`, as an `Origin` header would carry it.
    pub fn origin(&self) -> String {
        match self.port {
            Some(port) => format!("{}://{}:{port}", self.scheme, self.host),
            None => format!("{}://{}", self.scheme, self.host),
        }
    }
}

impl fmt::Display for PublicUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin())
    }
}

/// The pages' place and the cookie domain, validated together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Site {
    /// `LATCHD_PUBLIC_URL`, if set.
    pub public_url: Option<PublicUrl>,
    /// `LATCHD_COOKIE_DOMAIN`, lowercase, if set.
    pub cookie_domain: Option<String>,
    /// Whether cookies carry `Secure` (then redirects must be https).
    pub secure: bool,
}

impl Site {
    /// Checks `LATCHD_COOKIE_DOMAIN` against `LATCHD_PUBLIC_URL`.
    ///
    /// # Errors
    /// The cookie domain is an IP address, has no dot, is not the public host or a parent of
    /// it, or is set without a public URL; the text says which.
    pub fn new(
        public_url: Option<PublicUrl>,
        cookie_domain: Option<&str>,
        secure: bool,
    ) -> Result<Self, String> {
        let cookie_domain = match cookie_domain.map(str::trim).filter(|d| !d.is_empty()) {
            None => None,
            Some(domain) => {
                let domain = domain.trim_start_matches('.').to_ascii_lowercase();
                if domain.is_empty() {
                    return Err(
                        "is only dots; expected a domain name such as example.com".to_owned()
                    );
                }
                // No top-level domain is all digits: `0.0.1` is an address in disguise.
                let numeric = domain
                    .rsplit('.')
                    .next()
                    .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()));
                if domain.parse::<IpAddr>().is_ok() || numeric {
                    return Err(format!(
                        "{domain:?} is an IP address; cookies need a domain name"
                    ));
                }
                if !domain.contains('.') {
                    return Err(format!(
                        "{domain:?} has no dot; browsers refuse cookies for a top-level name"
                    ));
                }
                if !is_host_name(&domain) {
                    return Err(format!("{domain:?} is not a domain name"));
                }
                let Some(public) = &public_url else {
                    return Err("needs LATCHD_PUBLIC_URL, whose host it must contain".to_owned());
                };
                if public.is_ip() {
                    return Err(format!(
                        "LATCHD_PUBLIC_URL's host {:?} is an IP address; a cookie domain needs \
                         a public URL with a host name",
                        public.host()
                    ));
                }
                if !within(public.host(), &domain) {
                    return Err(format!(
                        "{domain:?} is not {:?} or a parent of it, so the browser would not \
                         send the cookie to latchd's own pages",
                        public.host()
                    ));
                }
                Some(domain)
            }
        };
        Ok(Self {
            public_url,
            cookie_domain,
            secure,
        })
    }

    /// The domain redirect targets must be in: the cookie domain, else the public host.
    pub(super) fn redirect_domain(&self) -> Option<&str> {
        self.cookie_domain
            .as_deref()
            .or_else(|| self.public_url.as_ref().map(PublicUrl::host))
    }

    /// `target` if a browser may be sent there after signing in (API.md v2 "A redirect target
    /// (`rd`) is safe only when …"), else `None`. `target` is the decoded `rd` parameter.
    pub fn safe_redirect<'a>(&self, target: &'a str) -> Option<&'a str> {
        let domain = self.redirect_domain()?;
        // Nothing a browser, a proxy and this function might read differently.
        let plain = |b: u8| b.is_ascii_graphic() && b != b'\\';
        if !target.bytes().all(plain) || encodes_a_forbidden_char(target) {
            return None;
        }
        let rest = if let Some(rest) = target.strip_prefix("https://") {
            rest
        } else if !self.secure {
            target.strip_prefix("http://")?
        } else {
            return None;
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.contains(['@', '%', '[', ']']) || tail.starts_with(['?', '#']) {
            return None; // userinfo, escapes or literals in the host; a path must come first
        }
        let (host, _port) = split_port(authority)?;
        let host_ok = is_host_name(host) && within(&host.to_ascii_lowercase(), domain);
        host_ok.then_some(target)
    }
}

/// How many layers of percent-encoding [`encodes_a_forbidden_char`] peels before it gives up
/// (and refuses): `%250a` is two.
const MAX_DECODES: usize = 4;

/// Whether `text`, percent-decoded as often as it decodes (doubly-encoded `%250a` included),
/// holds a control character, whitespace (Unicode's, so `%C2%A0` and `%E2%80%A8` too), a
/// backslash, or bytes that are not UTF-8: what a browser, a proxy, a log or the app behind
/// might each read differently. A target still decoding after [`MAX_DECODES`] layers counts.
fn encodes_a_forbidden_char(text: &str) -> bool {
    let mut current = text.as_bytes().to_vec();
    for _ in 0..=MAX_DECODES {
        let decoded = percent_decode(&current);
        if decoded == current {
            return match std::str::from_utf8(&current) {
                Ok(text) => text
                    .chars()
                    .any(|c| c.is_control() || c.is_whitespace() || c == '\\'),
                Err(_) => true,
            };
        }
        current = decoded;
    }
    true
}

/// One layer of percent-decoding: `%` and two hex digits become that byte; a `%` without them
/// stays as it is.
fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = match bytes.get(i + 1..i + 3) {
            Some(&[hi, lo]) if b == b'%' => hex_value(hi).zip(hex_value(lo)),
            _ => None,
        };
        if let Some((hi, lo)) = escaped {
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    out
}

/// The value of one hex digit.
pub(super) fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|v| u8::try_from(v).ok())
}

/// `host[:port]` -> (host, port); `None` for a port that is not 1-65535.
fn split_port(authority: &str) -> Option<(&str, Option<u16>)> {
    // An IPv6 literal's colons are inside its brackets.
    let colon = match authority.rfind(']') {
        Some(close) => authority[close..].find(':').map(|at| close + at),
        None => authority.rfind(':'),
    };
    match colon {
        None => Some((authority, None)),
        Some(at) => {
            let port = &authority[at + 1..];
            let valid =
                !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
            let port = port.parse::<u16>().ok().filter(|p| valid && *p > 0)?;
            Some((&authority[..at], Some(port)))
        }
    }
}

/// Whether `host` is a DNS name of letters, digits and hyphens in dot-separated labels.
fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Whether `host` is `domain` or a name under it (compared label-wise, lowercase).
fn within(host: &str, domain: &str) -> bool {
    let host = host.to_ascii_lowercase();
    host == domain
        || host
            .strip_suffix(domain)
            .is_some_and(|head| head.ends_with('.'))
}

#[cfg(test)]
mod tests;
