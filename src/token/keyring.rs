//! HS256 keys and the only use of `ring::hmac` in latchd: signing, verifying, refresh-token MACs,
//! the successor seal, and the HMAC-SHA1 that TOTP (RFC 6238) is defined over.

use std::fmt;

use ring::{digest, hmac};

use super::{b64, KeyError, TokenError, MIN_KEY_BYTES};
use crate::time::UnixTime;

/// A secret HMAC key of at least `MIN_KEY_BYTES` bytes. Its `Debug` shows only its key id.
#[derive(Clone)]
pub struct KeySecret(Vec<u8>);

impl KeySecret {
    /// Wraps raw key bytes, refusing keys shorter than 256 bits (RFC 7518 §3.2).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, KeyError> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort { len: bytes.len() });
        }
        Ok(Self(bytes))
    }

    /// Parses the unpadded base64url text of `LATCHD_SIGNING_KEY`.
    pub fn from_base64url(text: &str) -> Result<Self, KeyError> {
        let bytes = b64::decode(text.as_bytes()).map_err(|_| KeyError::NotBase64Url)?;
        Self::from_bytes(bytes)
    }

    /// The raw key bytes, for persisting the key.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The key id of this key; see [`kid_for`].
    pub fn kid(&self) -> String {
        kid_for(&self.0)
    }
}

impl fmt::Debug for KeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeySecret(kid={})", self.kid())
    }
}

/// The key id of a secret: the first 9 bytes of SHA-256("latchd-kid-v1" || 0x00 || secret),
/// base64url, 12 characters.
///
/// Derived rather than random so that the same configured key always has the same kid on every
/// node and restart, and one-way so that publishing it in every token header says nothing
/// about the key. 72 bits make an accidental collision between a handful of keys negligible.
pub fn kid_for(secret: &[u8]) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"latchd-kid-v1\0");
    ctx.update(secret);
    let hash = ctx.finish();
    b64::encode(hash.as_ref().get(..9).unwrap_or_default())
}

/// One key of the ring, with its kid and the header it signs with.
pub(crate) struct RingKey {
    kid: String,
    key: hmac::Key,
    /// base64url of `{"alg":"HS256","typ":"at+jwt","kid":"<kid>"}`: the exact header segment
    /// this key signs with, so a token carrying it needs no header parsing at all.
    header_b64: String,
    /// For a retired key: the last second its signatures are accepted.
    not_after: Option<UnixTime>,
}

impl RingKey {
    fn new(secret: &KeySecret) -> Self {
        let kid = secret.kid();
        let header = format!(r#"{{"alg":"HS256","typ":"at+jwt","kid":"{kid}"}}"#);
        Self {
            header_b64: b64::encode(header.as_bytes()),
            key: hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()),
            kid,
            not_after: None,
        }
    }

    /// Whether this key still verifies at `now`: always, unless it was retired and its window
    /// has passed.
    pub(crate) fn verifies_at(&self, now: UnixTime) -> bool {
        self.not_after.is_none_or(|last| now <= last)
    }

    /// The canonical header segment of this key.
    pub(crate) fn header_b64(&self) -> &str {
        &self.header_b64
    }

    /// The HS256 signature of `signing_input`.
    pub(crate) fn sign(&self, signing_input: &[u8]) -> hmac::Tag {
        hmac::sign(&self.key, signing_input)
    }

    /// Checks `signature` over `signing_input` in constant time.
    pub(crate) fn verify(&self, signing_input: &[u8], signature: &[u8]) -> Result<(), TokenError> {
        hmac::verify(&self.key, signing_input, signature).map_err(|_| TokenError::BadSignature)
    }
}

/// The HS256 keys latchd knows: one signs, all verify (key rotation keeps old ones verifying).
pub struct Keyring {
    /// The signer is `keys[0]`; the rest verify only.
    keys: Vec<RingKey>,
}

impl Keyring {
    /// A ring whose first key signs and whose others only verify. Repeated keys are kept once.
    pub fn new(signer: &KeySecret, verify_only: &[KeySecret]) -> Self {
        let mut keys = vec![RingKey::new(signer)];
        for secret in verify_only {
            let key = RingKey::new(secret);
            if !keys.iter().any(|k| k.kid == key.kid) {
                keys.push(key);
            }
        }
        Self { keys }
    }

    /// Adds a retired key that verifies only until `not_after` (its retirement plus the longest
    /// access-token lifetime), so a rotated-out or leaked key stops being trusted in a running
    /// server, not only at the next start. A key already in the ring is left as it is.
    #[must_use]
    pub fn with_retiring(mut self, secret: &KeySecret, not_after: UnixTime) -> Self {
        let mut key = RingKey::new(secret);
        if !self.keys.iter().any(|k| k.kid == key.kid) {
            key.not_after = Some(not_after);
            self.keys.push(key);
        }
        self
    }

    /// The kid new tokens are signed with.
    pub fn signer_kid(&self) -> &str {
        &self.signer().kid
    }

    /// Every kid that verifies, the signer first.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.kid.as_str())
    }

    pub(crate) fn signer(&self) -> &RingKey {
        self.keys
            .first()
            .expect("Keyring::new always puts the signer first")
    }

    /// The key whose canonical header segment is exactly `header_b64`.
    pub(crate) fn by_header(&self, header_b64: &[u8]) -> Option<&RingKey> {
        self.keys
            .iter()
            .find(|k| k.header_b64.as_bytes() == header_b64)
    }

    /// The key named `kid`.
    pub(crate) fn by_kid(&self, kid: &str) -> Option<&RingKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.kids()).finish()
    }
}

/// The server-held key that authenticates refresh tokens (see `token::refresh`).
pub struct RefreshKey(hmac::Key);

impl RefreshKey {
    /// A refresh MAC key from 32 secret bytes.
    pub fn new(secret: &[u8; 32]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// The HMAC-SHA256 of `body` under this key.
    pub(crate) fn tag(&self, body: &[u8]) -> hmac::Tag {
        hmac::sign(&self.0, body)
    }

    /// Checks `tag` over `body` in constant time.
    pub(crate) fn verify(&self, body: &[u8], tag: &[u8]) -> Result<(), ring::error::Unspecified> {
        hmac::verify(&self.0, body, tag)
    }
}

impl fmt::Debug for RefreshKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshKey(..)")
    }
}

/// The key of the sign-in pages' CSRF tokens: HMAC-SHA256 under a key derived from the
/// server's refresh MAC key, so every node of one database agrees on it and nothing else is
/// stored.
pub struct FormKey(hmac::Key);

impl FormKey {
    /// The form key derived from the 32-byte server secret `secret` (the refresh MAC key).
    pub fn derive(secret: &[u8; 32]) -> Self {
        let own = derive_from_token(secret, b"latchd-form-key-v1");
        Self(hmac::Key::new(hmac::HMAC_SHA256, &own))
    }

    /// The MAC of `message` under this key.
    pub(crate) fn tag(&self, message: &[u8]) -> hmac::Tag {
        hmac::sign(&self.0, message)
    }

    /// Checks `tag` over `message` in constant time.
    pub(crate) fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        hmac::verify(&self.0, message, tag).is_ok()
    }
}

impl fmt::Debug for FormKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FormKey(..)")
    }
}

/// HMAC-SHA256 keyed by `token` over `label`: a key only the holder of `token` can compute.
pub(crate) fn derive_from_token(token: &[u8], label: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, token), label);
    let mut out = [0; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// HMAC-SHA1 of `msg` under `key`, for TOTP only: RFC 6238 with SHA-1 is what every
/// authenticator app computes. HMAC-SHA1 stays sound as a PRF (RFC 6194) although SHA-1 is
/// broken for collisions, which is why ring still offers it, under a name that says so.
pub(crate) fn hmac_sha1(key: &[u8], msg: &[u8]) -> [u8; 20] {
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key),
        msg,
    );
    let mut out = [0; 20];
    out.copy_from_slice(tag.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_are_refused_with_their_length() {
        assert_eq!(
            KeySecret::from_bytes(vec![7; 31]).err(),
            Some(KeyError::TooShort { len: 31 })
        );
        assert!(KeySecret::from_bytes(vec![7; 32]).is_ok());
        // 31 bytes as base64url: refused for length, not for encoding.
        assert_eq!(
            KeySecret::from_base64url(&b64::encode(&[1; 31])).err(),
            Some(KeyError::TooShort { len: 31 })
        );
        assert_eq!(
            KeySecret::from_base64url("not base64 at all!").err(),
            Some(KeyError::NotBase64Url)
        );
        assert_eq!(
            KeySecret::from_base64url(&format!("{}=", b64::encode(&[1; 32]))).err(),
            Some(KeyError::NotBase64Url),
            "padding"
        );
    }

    #[test]
    fn kid_is_stable_distinct_and_does_not_echo_the_key() {
        let a = KeySecret::from_bytes(vec![1; 32]).unwrap();
        let b = KeySecret::from_bytes(vec![2; 32]).unwrap();
        assert_eq!(a.kid(), a.clone().kid());
        assert_ne!(a.kid(), b.kid());
        assert_eq!(a.kid().len(), 12);
        assert!(!format!("{a:?}").contains(&b64::encode(a.as_bytes())));
    }

    #[test]
    fn hmac_sha1_matches_rfc_2202() {
        // RFC 2202 §3, test cases 1 and 2.
        let hex = |tag: [u8; 20]| {
            use std::fmt::Write as _;
            tag.iter().fold(String::new(), |mut out, b| {
                write!(out, "{b:02x}").unwrap();
                out
            })
        };
        assert_eq!(
            hex(hmac_sha1(&[0x0b; 20], b"Hi There")),
            "b617318655057264e28bc0b6fb378c8ef146be00"
        );
        assert_eq!(
            hex(hmac_sha1(b"Jefe", b"what do ya want for nothing?")),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
    }

    #[test]
    fn signer_is_first_and_duplicates_collapse() {
        let a = KeySecret::from_bytes(vec![1; 32]).unwrap();
        let b = KeySecret::from_bytes(vec![2; 32]).unwrap();
        let ring = Keyring::new(&b, &[a.clone(), b.clone(), a.clone()]);
        assert_eq!(ring.signer_kid(), b.kid());
        assert_eq!(ring.kids().collect::<Vec<_>>(), [b.kid(), a.kid()]);
        assert!(ring.by_kid(&a.kid()).is_some());
        assert!(ring.by_kid("nope").is_none());
    }
}
