//! The claim set of an access token (RFC 9068 §2.2) and the time and audience rules.

use std::borrow::Cow;
use std::fmt::Write as _;

use uuid::Uuid;

use super::header::json_error;
use super::json::{Object, Value};
use super::{Policy, TokenError};
use crate::model::parse_uuid;
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
    /// How the session's user authenticated (RFC 8176 `amr`): `["pwd"]`, or `["pwd","otp"]`
    /// after a second factor. `None` for a token without the claim (issued before latchd
    /// wrote it).
    pub amr: Option<Vec<String>>,
    /// Issued-at.
    pub iat: UnixTime,
    /// Not-before.
    pub nbf: UnixTime,
    /// Expiry.
    pub exp: UnixTime,
}

/// The claims as read, before the rules that need the policy and the clock.
#[derive(Debug, Default)]
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
    amr: Option<Value<'a>>,
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
                "amr" => &mut raw.amr,
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

    /// Gives the claims their types, in this order: `exp`, `iat`, `nbf` present integers;
    /// `sub`, `jti`, `sid` present lowercase hyphenated UUIDs; `ver` a non-negative integer;
    /// `roles` an array of strings; `amr`, when present, an array of strings. Whether `iss` and `aud` match the policy is recorded for
    /// [`Typed::check`].
    pub(crate) fn typed(self, policy: &Policy) -> Result<Typed, TokenError> {
        Ok(Typed {
            exp: numeric_date(self.exp.as_ref(), "exp")?,
            iat: numeric_date(self.iat.as_ref(), "iat")?,
            nbf: numeric_date(self.nbf.as_ref(), "nbf")?,
            iss_matches: matches!(&self.iss, Some(Value::Str(iss)) if *iss == policy.issuer),
            aud_matches: matches!(&self.aud, Some(Value::Str(aud)) if *aud == policy.audience),
            sub: uuid_claim(self.sub, "sub")?,
            jti: uuid_claim(self.jti, "jti")?,
            sid: uuid_claim(self.sid, "sid")?,
            ver: match self.ver {
                None => return Err(TokenError::MissingClaim("ver")),
                Some(Value::Int(v)) => {
                    u64::try_from(v).map_err(|_| TokenError::NotInteger("ver"))?
                }
                Some(_) => return Err(TokenError::NotInteger("ver")),
            },
            roles: match self.roles {
                None => return Err(TokenError::MissingClaim("roles")),
                Some(Value::StrArray(list)) => list.into_iter().map(Cow::into_owned).collect(),
                Some(_) => return Err(TokenError::BadClaim("roles")),
            },
            amr: match self.amr {
                None => None,
                Some(Value::StrArray(list)) => {
                    Some(list.into_iter().map(Cow::into_owned).collect())
                }
                Some(_) => return Err(TokenError::BadClaim("amr")),
            },
        })
    }
}

/// Claims with their types checked, before the rules that need the policy and the clock.
#[derive(Debug, PartialEq)]
pub(crate) struct Typed {
    exp: UnixTime,
    iat: UnixTime,
    nbf: UnixTime,
    iss_matches: bool,
    aud_matches: bool,
    sub: Uuid,
    jti: Uuid,
    sid: Uuid,
    ver: u64,
    roles: Vec<String>,
    amr: Option<Vec<String>>,
}

impl Typed {
    /// Reads a payload laid out exactly as [`AccessClaims::write_json`] writes it under
    /// `policy` (same member order, no whitespace, no escapes, our own `iss`, `aud` and
    /// `client_id`), or `None` for anything else, which then goes through [`RawClaims::parse`]
    /// and [`RawClaims::typed`]. When it answers, it answers what that path would (the
    /// `signed_token` fuzz target checks it on every input), so [`Typed::check`] sees no
    /// difference; it only skips the general reader's work for latchd's own tokens.
    pub(crate) fn parse_canonical(bytes: &[u8], policy: &Policy) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut c = Canonical { text, pos: 0 };
        c.literal("{\"iss\":")?;
        c.literal(&policy.issuer_json)?;
        c.literal(",\"aud\":")?;
        c.literal(&policy.audience_json)?;
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
        let ver = u64::try_from(c.int()?).ok()?;
        c.literal(",\"roles\":")?;
        let roles = c.strings()?;
        let amr = match c.literal(",\"amr\":") {
            Some(()) => Some(c.strings()?),
            None => None,
        };
        c.literal(",\"client_id\":")?;
        c.literal(&policy.client_id_json)?;
        c.literal("}")?;
        if c.pos != text.len() {
            return None;
        }
        Some(Self {
            exp: UnixTime(exp),
            iat: UnixTime(iat),
            nbf: UnixTime(nbf),
            iss_matches: true,
            aud_matches: true,
            sub,
            jti,
            sid,
            ver,
            roles,
            amr,
        })
    }

    /// Applies the rules that need the policy and the clock, in this order: `exp`, `nbf`,
    /// `iat` against the leeway, then `iss`, `aud`.
    pub(crate) fn check(self, policy: &Policy, now: UnixTime) -> Result<AccessClaims, TokenError> {
        // Saturating: `now` is ours, but the leeway is configuration and exp may be i64::MAX.
        if self.exp <= now.minus(policy.leeway_secs) {
            return Err(TokenError::Expired);
        }
        if self.nbf > now.plus(policy.leeway_secs) {
            return Err(TokenError::NotYetValid);
        }
        if self.iat > now.plus(policy.leeway_secs) {
            return Err(TokenError::IssuedInFuture);
        }
        if !self.iss_matches {
            return Err(TokenError::WrongIssuer);
        }
        if !self.aud_matches {
            return Err(TokenError::WrongAudience);
        }
        Ok(AccessClaims {
            sub: self.sub,
            sid: self.sid,
            jti: self.jti,
            ver: self.ver,
            roles: self.roles,
            amr: self.amr,
            iat: self.iat,
            nbf: self.nbf,
            exp: self.exp,
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
        let _ = write!(out, "\",\"ver\":{},\"roles\":", self.ver);
        push_json_strings(out, &self.roles);
        if let Some(amr) = &self.amr {
            out.push_str(",\"amr\":");
            push_json_strings(out, amr);
        }
        out.push_str(",\"client_id\":");
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

    /// A quoted UUID in the one form `uuid_claim` accepts, parsed.
    fn uuid(&mut self) -> Option<Uuid> {
        let rest = self.rest().as_bytes();
        if rest.first() != Some(&b'"') || rest.get(37) != Some(&b'"') {
            return None;
        }
        let inner = self
            .text
            .get(self.pos.checked_add(1)?..self.pos.checked_add(37)?)?;
        let id = parse_uuid(inner)?;
        self.advance(38);
        Some(id)
    }

    /// `-?(0|[1-9][0-9]*)` that fits `i64`.
    fn int(&mut self) -> Option<i64> {
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
        Some(value)
    }

    /// `[` strings without escapes, separated by `,` `]`.
    fn strings(&mut self) -> Option<Vec<String>> {
        self.literal("[")?;
        let mut roles = Vec::new();
        if self.literal("]").is_some() {
            return Some(roles);
        }
        loop {
            self.literal("\"")?;
            let rest = self.rest();
            let end = memchr::memchr2(b'"', b'\\', rest.as_bytes())?;
            let role = rest.get(..end)?;
            if rest.as_bytes().get(end) != Some(&b'"') || role.bytes().any(|b| b < 0x20) {
                return None;
            }
            roles.push(role.to_owned());
            self.advance(end.checked_add(1)?);
            if self.literal("]").is_some() {
                return Some(roles);
            }
            self.literal(",")?;
        }
    }
}

/// Appends `list` as a JSON array of string literals.
fn push_json_strings(out: &mut String, list: &[String]) {
    out.push('[');
    for (i, item) in list.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_string(out, item);
    }
    out.push(']');
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
        Some(Value::Str(text)) => parse_uuid(&text).ok_or(TokenError::BadClaim(name)),
        Some(_) => Err(TokenError::BadClaim(name)),
    }
}
