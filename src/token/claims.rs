//! The claim set of an access token (RFC 9068 §2.2) and the time and audience rules.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

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
    pub roles: Strings,
    /// How the session's user authenticated (RFC 8176 `amr`): `["pwd"]`, or `["pwd","otp"]`
    /// after a second factor. `None` for a token without the claim (issued before latchd
    /// wrote it).
    pub amr: Option<Strings>,
    /// Issued-at.
    pub iat: UnixTime,
    /// Not-before.
    pub nbf: UnixTime,
    /// Expiry.
    pub exp: UnixTime,
}

/// The strings of an array claim (`roles`, `amr`), kept in one allocation (none for the
/// usual short lists): each string followed by a NUL. A string that itself holds a NUL is
/// refused when read from a token ([`TokenError::BadClaim`]) and has its NULs replaced by
/// U+FFFD when built from other strings, so the list always reads back as it was given.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Strings(Cow<'static, str>);

/// The lists latchd writes most, which then cost no allocation to read.
const COMMON_LISTS: [&str; 4] = ["", "pwd\0", "pwd\0otp\0", "admin\0"];

impl Strings {
    /// The strings, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.0.split_terminator('\0')
    }

    /// How many strings there are.
    pub fn len(&self) -> usize {
        self.0.bytes().filter(|b| *b == 0).count()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether one of the strings is `wanted`.
    pub fn contains(&self, wanted: &str) -> bool {
        self.iter().any(|s| s == wanted)
    }

    /// The list in the NUL-terminated form `joined`, shared with a common list when it is one.
    fn from_joined(joined: String) -> Self {
        match COMMON_LISTS.iter().find(|common| **common == joined) {
            Some(common) => Self(Cow::Borrowed(common)),
            None => Self(Cow::Owned(joined)),
        }
    }

    /// The items of `inner`, the inside of a JSON array of strings without escapes
    /// (`"a","b"`, or nothing), as latchd writes them; a common list costs no allocation.
    pub(super) fn from_json_items(inner: &str) -> Self {
        let common = match inner {
            "" => Some(COMMON_LISTS[0]),
            "\"pwd\"" => Some(COMMON_LISTS[1]),
            "\"pwd\",\"otp\"" => Some(COMMON_LISTS[2]),
            "\"admin\"" => Some(COMMON_LISTS[3]),
            _ => None,
        };
        if let Some(common) = common {
            return Self(Cow::Borrowed(common));
        }
        let mut joined = String::with_capacity(inner.len());
        let items = inner.strip_prefix('"').and_then(|i| i.strip_suffix('"'));
        for item in items.unwrap_or_default().split("\",\"") {
            joined.push_str(item);
            joined.push('\0');
        }
        Self(Cow::Owned(joined))
    }

    /// The strings of a token's array, or `None` if one holds a NUL.
    fn from_claim<'a>(items: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        let mut joined = String::new();
        for item in items {
            if item.contains('\0') {
                return None;
            }
            joined.push_str(item);
            joined.push('\0');
        }
        Some(Self::from_joined(joined))
    }
}

impl<S: AsRef<str>> FromIterator<S> for Strings {
    fn from_iter<I: IntoIterator<Item = S>>(items: I) -> Self {
        let mut joined = String::new();
        for item in items {
            joined.push_str(&item.as_ref().replace('\0', "\u{fffd}"));
            joined.push('\0');
        }
        Self::from_joined(joined)
    }
}

impl fmt::Debug for Strings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<const N: usize> PartialEq<[&str; N]> for Strings {
    fn eq(&self, other: &[&str; N]) -> bool {
        self.iter().eq(other.iter().copied())
    }
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
    /// `roles` an array of strings; `amr`, when present, an array of strings; neither with a
    /// NUL in a string. Whether `iss` and `aud` match the policy is recorded for
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
                Some(Value::StrArray(list)) => Strings::from_claim(list.iter().map(|s| &**s))
                    .ok_or(TokenError::BadClaim("roles"))?,
                Some(_) => return Err(TokenError::BadClaim("roles")),
            },
            amr: match self.amr {
                None => None,
                Some(Value::StrArray(list)) => Some(
                    Strings::from_claim(list.iter().map(|s| &**s))
                        .ok_or(TokenError::BadClaim("amr"))?,
                ),
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
    roles: Strings,
    amr: Option<Strings>,
}

impl Typed {
    /// Reads a payload laid out exactly as [`AccessClaims::write_json`] writes it under
    /// `policy` (same member order, no whitespace, no escapes, our own `iss`, `aud` and
    /// `client_id`), or `None` for anything else, which then goes through [`RawClaims::parse`]
    /// and [`RawClaims::typed`]. When it answers, it answers what that path would (the
    /// `signed_token` fuzz target checks it on every input), so [`Typed::check`] sees no
    /// difference; it only skips the general reader's work for latchd's own tokens.
    pub(crate) fn parse_canonical(bytes: &[u8], policy: &Policy) -> Option<Self> {
        // `{"iss":..,"aud":..,"sub":"` and `,"client_id":..}`, each one comparison; what lies
        // between must then be read to its last byte.
        let body = bytes
            .strip_prefix(policy.canonical_head.as_bytes())?
            .strip_suffix(policy.canonical_tail.as_bytes())?;
        let mut c = Canonical {
            bytes: body,
            pos: 0,
        };
        let sub = c.uuid()?;
        c.literal(b"\",\"exp\":")?;
        let exp = c.int()?;
        c.literal(b",\"iat\":")?;
        let iat = c.int()?;
        c.literal(b",\"nbf\":")?;
        let nbf = c.int()?;
        c.literal(b",\"jti\":\"")?;
        let jti = c.uuid()?;
        c.literal(b"\",\"sid\":\"")?;
        let sid = c.uuid()?;
        c.literal(b"\",\"ver\":")?;
        let ver = u64::try_from(c.int()?).ok()?;
        c.literal(b",\"roles\":")?;
        let roles = c.strings()?;
        let amr = match c.literal(b",\"amr\":") {
            Some(()) => Some(c.strings()?),
            None => None,
        };
        if c.pos != body.len() {
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
        push_json_strings(out, self.roles.iter());
        if let Some(amr) = &self.amr {
            out.push_str(",\"amr\":");
            push_json_strings(out, amr.iter());
        }
        out.push_str(",\"client_id\":");
        out.push_str(&policy.client_id_json);
        out.push('}');
    }
}

/// A cursor for [`Typed::parse_canonical`]: every step either matches latchd's own layout
/// or gives up. It reads bytes: the literals are ASCII, the numbers and UUIDs are checked
/// digit by digit, and only the strings of the arrays are checked to be UTF-8.
struct Canonical<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Canonical<'a> {
    fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }

    fn advance(&mut self, len: usize) {
        self.pos = self.pos.saturating_add(len);
    }

    /// A fixed literal; its length is a constant, so the comparison is a few loads.
    fn literal<const N: usize>(&mut self, expected: &[u8; N]) -> Option<()> {
        (self.rest().first_chunk::<N>() == Some(expected)).then(|| self.advance(N))
    }

    /// A UUID in the one form `uuid_claim` accepts (lowercase, hyphenated), parsed; the
    /// quotes around it belong to the literals before and after.
    #[inline]
    fn uuid(&mut self) -> Option<Uuid> {
        let id = canonical_uuid(self.rest().first_chunk::<36>()?)?;
        self.advance(36);
        Some(id)
    }

    /// `-?(0|[1-9][0-9]*)` that fits `i64`.
    #[inline]
    fn int(&mut self) -> Option<i64> {
        let rest = self.rest();
        let negative = rest.first() == Some(&b'-');
        let digits = rest.get(usize::from(negative)..)?;
        // One pass: at most 18 digits are below 10^18 < 2^63, so no step can overflow.
        let mut magnitude = 0i64;
        let mut count = 0usize;
        for byte in digits.iter().take(19) {
            let digit = byte.wrapping_sub(b'0');
            if digit > 9 {
                break;
            }
            magnitude = magnitude.wrapping_mul(10).wrapping_add(i64::from(digit));
            count = count.wrapping_add(1);
        }
        if count == 0 || (digits.first() == Some(&b'0') && count > 1) {
            return None;
        }
        let value = if count <= 18 {
            if matches!(digits.get(count), Some(b'.' | b'e' | b'E')) {
                return None;
            }
            if negative {
                magnitude.wrapping_neg()
            } else {
                magnitude
            }
        } else {
            // Rare (no timestamp or version this large): the standard parser, sign included.
            count = digits.iter().take_while(|b| b.is_ascii_digit()).count();
            if matches!(digits.get(count), Some(b'.' | b'e' | b'E')) {
                return None;
            }
            let signed = rest.get(..usize::from(negative).checked_add(count)?)?;
            std::str::from_utf8(signed).ok()?.parse::<i64>().ok()?
        };
        self.advance(usize::from(negative).checked_add(count)?);
        Some(value)
    }

    /// `[` strings without escapes or control characters, separated by `,` `]`.
    fn strings(&mut self) -> Option<Strings> {
        // The lists latchd writes most, whole: no scan, no UTF-8 check, no allocation.
        for (json, common) in COMMON_JSON.iter().zip(COMMON_LISTS) {
            if self.rest().starts_with(json) {
                self.advance(json.len());
                return Some(Strings(Cow::Borrowed(common)));
            }
        }
        self.literal(b"[")?;
        let start = self.pos;
        if self.literal(b"]").is_none() {
            loop {
                self.literal(b"\"")?;
                let rest = self.rest();
                let end = memchr::memchr2(b'"', b'\\', rest)?;
                let item = rest.get(..end)?;
                if rest.get(end) != Some(&b'"') || item.iter().any(|b| *b < 0x20) {
                    return None;
                }
                self.advance(end.checked_add(1)?);
                if self.literal(b"]").is_some() {
                    break;
                }
                self.literal(b",")?;
            }
        }
        // `"a","b"`: the items hold no quote, so splitting at `","` is exact.
        let inner = self.bytes.get(start..self.pos.checked_sub(1)?)?;
        let inner = std::str::from_utf8(inner).ok()?;
        Some(Strings::from_json_items(inner))
    }
}

/// [`COMMON_LISTS`] as latchd writes them in a token, in the same order.
const COMMON_JSON: [&[u8]; 4] = [b"[]", b"[\"pwd\"]", b"[\"pwd\",\"otp\"]", b"[\"admin\"]"];

/// The UUID of `text` in its lowercase hyphenated form (8-4-4-4-12), as
/// [`parse_uuid`](crate::model::parse_uuid) would read it, without its general parser.
pub(super) fn canonical_uuid(text: &[u8; 36]) -> Option<Uuid> {
    // The 32 digits as four words of eight, skipping the hyphens; every step below is done on
    // all of them, and one test at the end decides.
    let four = |at: usize| {
        text.get(at..at.wrapping_add(4))
            .and_then(|digits| <[u8; 4]>::try_from(digits).ok())
            .map_or(u64::MAX, |digits| u64::from(u32::from_le_bytes(digits)))
    };
    let words = [
        four(0) | four(4) << 32,
        four(9) | four(14) << 32,
        four(19) | four(24) << 32,
        four(28) | four(32) << 32,
    ];
    let hyphens = [text[8], text[13], text[18], text[23]] == [b'-'; 4];
    let mut invalid = 0;
    let mut bytes = [0u8; 16];
    for (out, word) in bytes.chunks_exact_mut(4).zip(words) {
        let (pairs, bad) = hex8(word);
        out.copy_from_slice(&pairs);
        invalid |= bad;
    }
    (hyphens && invalid == 0).then(|| Uuid::from_bytes(bytes))
}

/// The four bytes that eight lowercase hex digits spell (`"0a1b2c3d"` is `[0x0a, 0x1b, 0x2c,
/// 0x3d]`), and a mask that is non-zero if any of them is anything else (the bytes are then
/// meaningless). `word` holds the digits as loaded little-endian, the first in the lowest
/// byte; every byte is worked on at once (SWAR).
fn hex8(word: u64) -> ([u8; 4], u64) {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Added to a byte's low seven bits, each sets its high bit exactly when the byte is at
    // least '0', above '9', at least 'a', above 'f'; no sum carries into the next byte. A
    // byte with its own high bit set is no digit.
    const AT_LEAST_0: u64 = 0x5050_5050_5050_5050; // 0x80 - 0x30
    const ABOVE_9: u64 = 0x4646_4646_4646_4646; // 0x80 - 0x3a
    const AT_LEAST_A: u64 = 0x1f1f_1f1f_1f1f_1f1f; // 0x80 - 0x61
    const ABOVE_F: u64 = 0x1919_1919_1919_1919; // 0x80 - 0x67
    let low = word & 0x7f7f_7f7f_7f7f_7f7f;
    let digit = low.wrapping_add(AT_LEAST_0) & !low.wrapping_add(ABOVE_9);
    let letter = low.wrapping_add(AT_LEAST_A) & !low.wrapping_add(ABOVE_F);
    let invalid = (word | !(digit | letter)) & HIGH;
    // '0'..'9' keep their low nibble; 'a'..'f' (low nibble 1..6) gain 9.
    let letters = (letter & HIGH) >> 7;
    let nibbles = (word & 0x0f0f_0f0f_0f0f_0f0f).wrapping_add(letters | (letters << 3));
    // Byte 2k of `pairs` is digit 2k's nibble above digit 2k+1's; then gather bytes 0, 2, 4, 6.
    let pairs = ((nibbles << 4) | (nibbles >> 8)) & 0x00ff_00ff_00ff_00ff;
    let pairs = (pairs | (pairs >> 8)) & 0x0000_ffff_0000_ffff;
    let [b0, b1, b2, b3, ..] = (pairs | (pairs >> 16)).to_le_bytes();
    ([b0, b1, b2, b3], invalid)
}

/// Appends `list` as a JSON array of string literals.
fn push_json_strings<'a>(out: &mut String, list: impl Iterator<Item = &'a str>) {
    out.push('[');
    for (i, item) in list.enumerate() {
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
