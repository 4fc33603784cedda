//! Access tokens: compact JWS, HS256 only. Pure: no I/O, no clock, no HTTP, no storage.
//!
//! [`AccessTokens::verify`] is the list of rules of API.md "Verification rejects" that a token
//! alone can decide; the rules that need state (blacklist, token version, user and family
//! state) belong to the auth layer, which gets `jti`, `sid`, `sub` and `ver` from here.
//! Refresh tokens, opaque to clients, are in [`refresh`]; the second factor's TOTP codes in
//! [`totp`] and its recovery codes in [`recovery`].
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

mod b64;
mod base32;
pub mod browser;
mod claims;
mod error;
mod header;
mod json;
mod keyring;
pub mod opaque;
pub mod recovery;
pub mod refresh;
pub mod totp;

pub use claims::{AccessClaims, Strings};
#[cfg(test)]
pub(crate) use error::every_token_error;
pub use error::{KeyError, TokenError};
pub use keyring::{kid_for, FormKey, KeySecret, Keyring, RefreshKey};

use crate::time::UnixTime;
use claims::{push_json_string, RawClaims, Typed};
use header::Header;

/// Longest access token accepted, in bytes; checked before any decoding.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Shortest HS256 key accepted, in bytes (RFC 7518 §3.2: at least the hash output size).
pub const MIN_KEY_BYTES: usize = 32;
/// Length of an HS256 signature, in bytes.
const SIGNATURE_BYTES: usize = 32;
/// Payloads whose decoded length is surely at most this (latchd's own are ~330 bytes) are
/// decoded into a stack buffer.
const PAYLOAD_ON_STACK: usize = 512;

/// The configured values every access token carries and every presented one must match.
#[derive(Debug)]
pub struct Policy {
    issuer: String,
    audience: String,
    leeway_secs: i64,
    /// The same three values as JSON string literals, escaped once here instead of per token.
    issuer_json: String,
    audience_json: String,
    client_id_json: String,
    /// What every payload in latchd's own layout starts with, up to the opening quote of
    /// `sub`, and ends with, from `,"client_id":`: the canonical reader compares each at once.
    canonical_head: String,
    canonical_tail: String,
}

impl Policy {
    /// A policy demanding `issuer` and `audience`, writing `client_id` (RFC 9068 §2.2), and
    /// allowing `leeway_secs` of clock skew on `exp`, `nbf` and `iat`.
    pub fn new(issuer: &str, audience: &str, client_id: &str, leeway_secs: u32) -> Self {
        let json = |s: &str| {
            let mut out = String::new();
            push_json_string(&mut out, s);
            out
        };
        let (issuer_json, audience_json, client_id_json) =
            (json(issuer), json(audience), json(client_id));
        Self {
            canonical_head: format!("{{\"iss\":{issuer_json},\"aud\":{audience_json},\"sub\":\""),
            canonical_tail: format!(",\"client_id\":{client_id_json}}}"),
            issuer_json,
            audience_json,
            client_id_json,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            leeway_secs: i64::from(leeway_secs),
        }
    }
}

/// Signs and verifies access tokens with one keyring under one policy.
#[derive(Debug)]
pub struct AccessTokens {
    keys: Keyring,
    policy: Policy,
}

impl AccessTokens {
    /// Tokens signed by `keys`' signer and checked against `policy`.
    pub fn new(keys: Keyring, policy: Policy) -> Self {
        Self { keys, policy }
    }

    /// The keyring.
    pub fn keyring(&self) -> &Keyring {
        &self.keys
    }

    /// The compact serialization of `claims`, signed with the signer key.
    ///
    /// The header is exactly `{"alg":"HS256","typ":"at+jwt","kid":<signer kid>}`.
    pub fn sign(&self, claims: &AccessClaims) -> String {
        let key = self.keys.signer();
        let mut payload = String::with_capacity(320);
        claims.write_json(&self.policy, &mut payload);
        let mut token = String::with_capacity(600);
        token.push_str(key.header_b64());
        token.push('.');
        b64::encode_into(payload.as_bytes(), &mut token);
        let tag = key.sign(token.as_bytes());
        token.push('.');
        b64::encode_into(tag.as_ref(), &mut token);
        token
    }

    /// Verifies a compact HS256 access token at `now`.
    ///
    /// The cheapest checks run first and the payload is parsed only after the MAC verified.
    ///
    /// # Errors
    /// The first rule of API.md "Verification rejects" that `token` breaks.
    pub fn verify(&self, token: &[u8], now: UnixTime) -> Result<AccessClaims, TokenError> {
        self.verify_tracked(token, now, &mut false)
    }

    /// As [`verify`](Self::verify), but every presentation costs exactly one HMAC-SHA256:
    /// one that fails before its signature is checked (a refresh token, garbage, an unknown
    /// kid) pays for a MAC over its first `MAX_TOKEN_BYTES` with the signer key, so that an
    /// introspection answer's timing does not tell how far a token got.
    ///
    /// # Errors
    /// As [`verify`](Self::verify).
    pub fn verify_with_constant_mac(
        &self,
        token: &[u8],
        now: UnixTime,
    ) -> Result<AccessClaims, TokenError> {
        let mut maced = false;
        let result = self.verify_tracked(token, now, &mut maced);
        if !maced {
            let input = token.get(..MAX_TOKEN_BYTES).unwrap_or(token);
            std::hint::black_box(self.keys.signer().sign(input));
        }
        result
    }

    /// [`verify`](Self::verify), setting `maced` once the signature's MAC has been computed.
    fn verify_tracked(
        &self,
        token: &[u8],
        now: UnixTime,
        maced: &mut bool,
    ) -> Result<AccessClaims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLong); // before any decoding
        }
        let parts = Parts::split(token)?;
        // Byte-for-byte the header this ring signs with: every header rule holds, no parsing.
        let key = if let Some(key) = self.keys.by_header(parts.header) {
            key
        } else {
            let header = b64::decode(parts.header)?;
            let header = Header::parse(&header)?;
            self.keys
                .by_kid(&header.kid)
                .ok_or(TokenError::UnknownKid)?
        };
        if !key.verifies_at(now) {
            return Err(TokenError::UnknownKid); // retired, and its window has passed
        }
        let mut signature = [0u8; SIGNATURE_BYTES];
        let len = decode_signature(parts.signature, &mut signature)?;
        // ring compares in constant time; a wrong length fails there too.
        *maced = true;
        key.verify(
            parts.signing_input,
            signature.get(..len).unwrap_or_default(),
        )?;
        // latchd's own payloads (~330 bytes) decode on the stack; longer ones into the heap.
        let mut stack = [0u8; PAYLOAD_ON_STACK];
        let heap;
        let payload: &[u8] =
            if parts.payload.len().saturating_mul(3).div_ceil(4) <= PAYLOAD_ON_STACK {
                let len = b64::decode_into(parts.payload, &mut stack)?;
                stack.get(..len).unwrap_or_default()
            } else {
                heap = b64::decode(parts.payload)?;
                &heap
            };
        let typed = match Typed::parse_canonical(payload, &self.policy) {
            Some(typed) => typed,
            None => RawClaims::parse(payload)?.typed(&self.policy)?,
        };
        typed.check(&self.policy, now)
    }
}

/// Whether the canonical fast path agrees with the general reader on `payload`: it either
/// declines, or reads exactly what the general reader reads. For the fuzz targets.
pub(crate) fn canonical_agrees(tokens: &AccessTokens, payload: &[u8]) -> bool {
    match Typed::parse_canonical(payload, &tokens.policy) {
        None => true,
        Some(fast) => {
            RawClaims::parse(payload).and_then(|raw| raw.typed(&tokens.policy)) == Ok(fast)
        }
    }
}

/// The three segments of a compact JWS (RFC 7515 §7.1).
struct Parts<'a> {
    header: &'a [u8],
    payload: &'a [u8],
    signature: &'a [u8],
    /// `header.payload`: what the signature covers.
    signing_input: &'a [u8],
}

impl<'a> Parts<'a> {
    fn split(token: &'a [u8]) -> Result<Self, TokenError> {
        let segment = |from: usize, to: usize| token.get(from..to).ok_or(TokenError::Segments);
        let after = |dot: usize| dot.checked_add(1).ok_or(TokenError::Segments);
        let next_dot = |from: usize| {
            let rest = token.get(from..).ok_or(TokenError::Segments)?;
            let at = memchr::memchr(b'.', rest).ok_or(TokenError::Segments)?;
            from.checked_add(at).ok_or(TokenError::Segments)
        };
        let first = next_dot(0)?;
        let second = next_dot(after(first)?)?;
        if next_dot(after(second)?).is_ok() {
            return Err(TokenError::Segments);
        }
        Ok(Self {
            header: segment(0, first)?,
            payload: segment(after(first)?, second)?,
            signature: segment(after(second)?, token.len())?,
            signing_input: segment(0, second)?,
        })
    }
}

/// Decodes a signature segment: non-canonical base64url is `Base64`, any canonical text that
/// is not 32 bytes long is a `BadSignature`.
fn decode_signature(segment: &[u8], out: &mut [u8; SIGNATURE_BYTES]) -> Result<usize, TokenError> {
    // 43 characters encode 32 bytes; anything longer cannot be an HS256 signature, so it is
    // decoded (for the Base64 verdict) into a scratch buffer instead.
    if segment.len() == 43 {
        return b64::decode_into(segment, out);
    }
    b64::decode(segment)?;
    Err(TokenError::BadSignature)
}

#[cfg(test)]
mod tests;
