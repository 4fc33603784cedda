//! The claim set of an access token (RFC 9068 §2.2) and the time and audience rules.

use std::borrow::Cow;
use std::fmt::Write as _;

use uuid::Uuid;

use super::header::json_error;
use super::json::{Object, Value};
use super::{Policy, TokenError};
use crate::time::UnixTime;

/// The claims of a verified access token, or of one about to be signed.
///
/// `iss`, `aud` and `client_id` are not here: they are the configured [`Policy`] values,
/// demanded on the way in and written on the way out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessClaims {
    /// The user id.
    pub sub: Uuid,
    /// The refresh family (session) this token was issued from.
    pub sid: Uuid,
    /// This token's id, for the blacklist.
    pub jti: Uuid,
    /// The user's token version when the token was issued.
    pub ver: u64,
    /// The user's roles when the token was issued.
    pub roles: Vec<String>,
    /// Issued-at.
    pub iat: UnixTime,
    /// Not-before.
    pub nbf: UnixTime,
    /// Expiry.
    pub exp: UnixTime,
}

/// The claims as read, before the rules that need the policy and the clock.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct RawClaims<'a> {
    iss: Option<Value<'a>>,
    aud: Option<Value<'a>>,
    sub: Option<Value<'a>>,
    exp: Option<Value<'a>>,
    iat: Option<Value<'a>>,
    nbf: Option<Value<'a>>,
    jti: Option<Value<'a>>,
    sid: Option<Value<'a>>,
    ver: Option<Value<'a>>,
    roles: Option<Value<'a>>,
    client_id: Option<Value<'a>>,
}

impl<'a> RawClaims<'a> {
    /// Reads a decoded payload: a JSON object without duplicate members. Unknown claims are
    /// checked for well-formedness and otherwise ignored (RFC 7519 §4).
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self, TokenError> {
        let mut obj = Object::new(bytes).map_err(json_error)?;
        let mut raw = Self::default();
        while let Some(key) = obj.next_key().map_err(json_error)? {
            let slot = match &*key {
                "iss" => &mut raw.iss,
                "aud" => &mut raw.aud,
                "sub" => &mut raw.sub,
                "exp" => &mut raw.exp,
                "iat" => &mut raw.iat,
                "nbf" => &mut raw.nbf,
                "jti" => &mut raw.jti,
                "sid" => &mut raw.sid,
                "ver" => &mut raw.ver,
                "roles" => &mut raw.roles,
                // Written by latchd but not demanded: RFC 9068 lets resource servers use it,
                // and latchd's own checks do not. Known, so it costs no duplicate bookkeeping.
                "client_id" => &mut raw.client_id,
                _ => {
                    obj.unknown_key(key).map_err(json_error)?;
                    continue;
                }
            };
            if slot.is_some() {
                return Err(TokenError::DuplicateMember);
            }
            *slot = Some(obj.value().map_err(json_error)?);
        }
        Ok(raw)
    }

    /// Reads a payload laid out exactly as [`AccessClaims::write_json`] writes it (same member
    /// order, no whitespace, no escapes), or `None` for anything else, which then goes through
    /// [`RawClaims::parse`]. The result is what `parse` would return for the same bytes (the
    /// `signed_token` fuzz target checks that), so the rules in [`RawClaims::check`] see no
    /// difference; this path only skips the general reader's work for latchd's own tokens.
    pub(crate) fn parse_canonical(bytes: &'a [u8], policy: &Policy) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut c = Canonical { text, pos: 0 };
        c.literal("{\"iss\":")?;
        let iss = c.config_string(&policy.issuer_json)?;
        c.literal(",\"aud\":")?;
        let aud = c.config_string(&policy.audience_json)?;
        c.literal(",\"sub\":")?;
        let sub = c.uuid()?;
        c.literal(",\"exp\":")?;
        let exp = c.int()?;
        c.literal(",\"iat\":")?;
        let iat = c.int()?;
        c.literal(",\"nbf\":")?;
        let nbf = c.int()?;
        c.literal(",\"jti\":")?;
        let jti = c.uuid()?;
        c.literal(",\"sid\":")?;
        let sid = c.uuid()?;
        c.literal(",\"ver\":")?;
        let ver = c.int()?;
        c.literal(",\"roles\":")?;
        let roles = c.roles()?;
        c.literal(",\"client_id\":")?;
        let client_id = c.config_string(&policy.client_id_json)?;
        c.literal("}")?;
        if c.pos != text.len() {
            return None;
        }
        Some(Self {
            iss: Some(iss),
            aud: Some(aud),
            sub: Some(sub),
            exp: Some(exp),
            iat: Some(iat),
            nbf: Some(nbf),
            jti: Some(jti),
            sid: Some(sid),
            ver: Some(ver),
            roles: Some(roles),
            client_id: Some(client_id),
        })
    }

    /// Applies the claim rules of API.md at `now`, in this order: `NumericDate`s present and
    /// integral, `exp`, `nbf`, `iat` against the leeway, `iss`, `aud`, `sub`/`jti`/`sid`
    /// present UUIDs, `ver`, `roles`.
    pub(crate) fn check(self, policy: &Policy, now: UnixTime) -> Result<AccessClaims, TokenError> {
        let exp = numeric_date(self.exp.as_ref(), "exp")?;
        let iat = numeric_date(self.iat.as_ref(), "iat")?;
        let nbf = numeric_date(self.nbf.as_ref(), "nbf")?;
        // Saturating: `now` is ours, but the leeway is configuration and exp may be i64::MAX.
        if exp <= now.minus(policy.leeway_secs) {
            return Err(TokenError::Expired);
        }
        if nbf > now.plus(policy.leeway_secs) {
            return Err(TokenError::NotYetValid);
        }
        if iat > now.plus(policy.leeway_secs) {
            return Err(TokenError::IssuedInFuture);
        }
        if !matches!(&self.iss, Some(Value::Str(iss)) if *iss == policy.issuer) {
            return Err(TokenError::WrongIssuer);
        }
        if !matches!(&self.aud, Some(Value::Str(aud)) if *aud == policy.audience) {
            return Err(TokenError::WrongAudience);
        }
        let sub = uuid_claim(self.sub, "sub")?;
        let jti = uuid_claim(self.jti, "jti")?;
        let sid = uuid_claim(self.sid, "sid")?;
        let ver = match self.ver {
            None => return Err(TokenError::MissingClaim("ver")),
            Some(Value::Int(v)) => u64::try_from(v).map_err(|_| TokenError::NotInteger("ver"))?,
            Some(_) => return Err(TokenError::NotInteger("ver")),
        };
        let roles = match self.roles {
            None => return Err(TokenError::MissingClaim("roles")),
            Some(Value::StrArray(list)) => list.into_iter().map(Cow::into_owned).collect(),
            Some(_) => return Err(TokenError::BadClaim("roles")),
        };
        Ok(AccessClaims {
            sub,
            sid,
            jti,
            ver,
            roles,
            iat,
            nbf,
            exp,
        })
    }
}

impl AccessClaims {
    /// Writes the claim set as compact JSON, in a fixed member order.
    pub(crate) fn write_json(&self, policy: &Policy, out: &mut String) {
        let mut uuid = Uuid::encode_buffer();
        out.push_str("{\"iss\":");
        out.push_str(&policy.issuer_json);
        out.push_str(",\"aud\":");
        out.push_str(&policy.audience_json);
        out.push_str(",\"sub\":\"");
        out.push_str(self.sub.hyphenated().encode_lower(&mut uuid));
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "\",\"exp\":{},\"iat\":{},\"nbf\":{},\"jti\":\"",
            self.exp, self.iat, self.nbf
        );
        out.push_str(self.jti.hyphenated().encode_lower(&mut uuid));
        out.push_str("\",\"sid\":\"");
        out.push_str(self.sid.hyphenated().encode_lower(&mut uuid));
        let _ = write!(out, "\",\"ver\":{},\"roles\":[", self.ver);
        for (i, role) in self.roles.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_string(out, role);
        }
        out.push_str("],\"client_id\":");
        out.push_str(&policy.client_id_json);
        out.push('}');
    }
}

/// A cursor for [`RawClaims::parse_canonical`]: every step either matches latchd's own layout
/// or gives up.
struct Canonical<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Canonical<'a> {
    fn rest(&self) -> &'a str {
        self.text.get(self.pos..).unwrap_or_default()
    }

    fn advance(&mut self, len: usize) {
        self.pos = self.pos.saturating_add(len);
    }

    fn literal(&mut self, expected: &str) -> Option<()> {
        self.rest()
            .starts_with(expected)
            .then(|| self.advance(expected.len()))
    }

    /// A configured string (issuer, audience, client id), written pre-escaped; its unescaped
    /// text is borrowed from the payload only when the literal holds no escapes.
    fn config_string(&mut self, json: &str) -> Option<Value<'a>> {
        if json.contains('\\') {
            return None;
        }
        let start = self.pos.checked_add(1)?;
        self.literal(json)?;
        let inner = self.text.get(start..self.pos.checked_sub(1)?)?;
        Some(Value::Str(Cow::Borrowed(inner)))
    }

    /// A quoted 36-character string (checked as a UUID later, by `check`).
    fn uuid(&mut self) -> Option<Value<'a>> {
        let rest = self.rest().as_bytes();
        if rest.first() != Some(&b'"') || rest.get(37) != Some(&b'"') {
            return None;
        }
        let inner = self
            .text
            .get(self.pos.checked_add(1)?..self.pos.checked_add(37)?)?;
        if inner.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
            return None;
        }
        self.advance(38);
        Some(Value::Str(Cow::Borrowed(inner)))
    }

    /// `-?(0|[1-9][0-9]*)` that fits `i64`.
    fn int(&mut self) -> Option<Value<'a>> {
        let rest = self.rest().as_bytes();
        let sign = usize::from(rest.first() == Some(&b'-'));
        let digits = rest
            .get(sign..)?
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let first = rest.get(sign)?;
        if digits == 0 || (*first == b'0' && digits > 1) {
            return None;
        }
        let len = sign.checked_add(digits)?;
        if matches!(rest.get(len), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let value = self.rest().get(..len)?.parse::<i64>().ok()?;
        self.advance(len);
        Some(Value::Int(value))
    }

    /// `[` strings without escapes, separated by `,` `]`.
    fn roles(&mut self) -> Option<Value<'a>> {
        self.literal("[")?;
        let mut roles = Vec::new();
        if self.literal("]").is_some() {
            return Some(Value::StrArray(roles));
        }
        loop {
            self.literal("\"")?;
            let rest = self.rest();
            let end = memchr::memchr2(b'"', b'\\', rest.as_bytes())?;
            let role = rest.get(..end)?;
            if rest.as_bytes().get(end) != Some(&b'"') || role.bytes().any(|b| b < 0x20) {
                return None;
            }
            roles.push(Cow::Borrowed(role));
            self.advance(end.checked_add(1)?);
            if self.literal("]").is_some() {
                return Some(Value::StrArray(roles));
            }
            self.literal(",")?;
        }
    }
}

/// Appends `s` as a JSON string literal (RFC 8259 §7).
pub(crate) fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn numeric_date(value: Option<&Value<'_>>, name: &'static str) -> Result<UnixTime, TokenError> {
    match value {
        None => Err(TokenError::MissingClaim(name)),
        Some(Value::Int(secs)) => Ok(UnixTime(*secs)),
        Some(_) => Err(TokenError::NotInteger(name)),
    }
}

fn uuid_claim(value: Option<Value<'_>>, name: &'static str) -> Result<Uuid, TokenError> {
    match value {
        None => Err(TokenError::MissingClaim(name)),
        // Only the lowercase hyphenated form latchd writes; `Uuid::try_parse` alone would also
        // take braces, URNs, upper case and the simple form, i.e. several spellings of one id.
        Some(Value::Str(text))
            if text.len() == 36 && !text.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            Uuid::try_parse(&text).map_err(|_| TokenError::BadClaim(name))
        }
        Some(_) => Err(TokenError::BadClaim(name)),
    }
}
