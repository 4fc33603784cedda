//! Opaque bearer values latchd hands out and recognizes by hash: the `latchd_session` cookie
//! and the `mfa_token` between a sign-in's password and its code. Pure: randomness comes in.
//!
//! One is 32 random bytes as 43 characters of base64url; the store keeps only their SHA-256,
//! so (as with refresh tokens) the database alone never yields a usable one.

use std::fmt;

use ring::digest;

use super::b64;

/// Length of the text.
pub const OPAQUE_CHARS: usize = 43;

/// An opaque value to hand out. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Opaque(String);

impl Opaque {
    /// The value for `random`, and the SHA-256 the store keeps of it.
    pub fn mint(random: &[u8; 32]) -> (Self, [u8; 32]) {
        (Self(b64::encode(random)), hash(random))
    }

    /// The text to hand out.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Opaque {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Opaque(..)")
    }
}

/// The SHA-256 of a presented value, if it has the shape latchd mints (43 canonical base64url
/// characters for 32 bytes); anything else is not one.
pub fn opaque_hash(text: &str) -> Option<[u8; 32]> {
    if text.len() != OPAQUE_CHARS {
        return None;
    }
    let mut raw = [0u8; 32];
    let len = b64::decode_into(text.as_bytes(), &mut raw).ok()?;
    (len == raw.len()).then(|| hash(&raw))
}

fn hash(raw: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, raw).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_value_hashes_back_to_what_the_store_keeps() {
        let (value, stored) = Opaque::mint(&[9; 32]);
        assert_eq!(value.as_str().len(), OPAQUE_CHARS);
        assert_eq!(opaque_hash(value.as_str()), Some(stored));
        assert_ne!(Opaque::mint(&[8; 32]).1, stored);
        assert!(!format!("{value:?}").contains(value.as_str()));
    }

    #[test]
    fn anything_but_a_minted_shape_is_refused() {
        let (value, _) = Opaque::mint(&[9; 32]);
        let text = value.as_str();
        for bad in [
            String::new(),
            text[..42].to_owned(),
            format!("{text}A"),
            format!("{}=", &text[..42]),
            text.replace(&text[..1], "+"),
            "eyJhbGciOiJIUzI1NiJ9.e30.c2ln".to_owned(), // a JWT is never one
            "a".repeat(43),                             // non-zero trailing bits
        ] {
            assert_eq!(opaque_hash(&bad), None, "{bad:?}");
        }
    }
}
