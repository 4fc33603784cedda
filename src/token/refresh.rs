//! Refresh tokens: opaque to clients, self-identifying to latchd. Pure: no I/O, no clock.
//!
//! A refresh token is 89 bytes, sent as 119 characters of unpadded base64url:
//!
//! ```text
//! version (1) = 0x01 | family id (16) | generation (8, big-endian) | random (32) | tag (32)
//! tag = HMAC-SHA256(refresh key, version | family | generation | random)
//! ```
//!
//! The tag lets latchd recognise a genuine token of family F, generation g, without storing
//! anything per superseded token: the store keeps only the SHA-256 of the family's *current*
//! token, so a session costs the same on disk however often it rotates. A genuine token whose
//! generation is behind the current one is a superseded token, and presenting it is reuse
//! (RFC 9700 §4.14.2).
//!
//! Why a leaked database still mints nothing: the file holds the refresh key, so a thief can
//! forge tags, but a token only passes as current when its SHA-256 equals the stored hash, and
//! that needs the 256 random bits the file never held. The worst a forged tag does is present
//! a "superseded" token and so revoke a family: a denial of service the thief could also cause
//! by deleting rows.
//!
//! The retry grace (API.md "Refresh rotation") keeps the successor's random bits sealed under
//! a key only the holder of the superseded token can compute: `seal = HMAC-SHA256(superseded
//! token bytes, "latchd-successor-v1")`, `XOR`ed over the 32 random bytes.

use std::fmt;

use ring::digest;
use uuid::Uuid;

use super::b64;
use super::keyring::{derive_from_token, RefreshKey};

const VERSION: u8 = 1;
const BODY_BYTES: usize = 1 + 16 + 8 + 32;
const TAG_BYTES: usize = 32;
/// Raw length of a refresh token.
pub const REFRESH_TOKEN_BYTES: usize = BODY_BYTES + TAG_BYTES;
/// Length of a refresh token's text form.
pub const REFRESH_TOKEN_CHARS: usize = 119;
const SEAL_LABEL: &[u8] = b"latchd-successor-v1";

/// A refresh token's text. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken(String);

impl RefreshToken {
    /// The text to hand to the client.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken(..)")
    }
}

/// A freshly minted token and the hash the store keeps of it.
#[derive(Debug)]
pub struct Minted {
    /// The token for the client.
    pub token: RefreshToken,
    /// SHA-256 of its raw bytes: all the store ever sees.
    pub hash: [u8; 32],
}

/// A presented token whose tag verified.
pub struct Presented {
    /// The family it belongs to.
    pub family: Uuid,
    /// Its position in the family's chain of rotations (0 for the one issued at login).
    pub generation: u64,
    /// SHA-256 of its raw bytes.
    pub hash: [u8; 32],
    seal_key: [u8; 32],
}

impl Presented {
    /// Seals the random bits of this token's successor so only this token's holder can open
    /// them. XOR, so sealing and opening are the same operation.
    pub fn seal(&self, random: &[u8; 32]) -> [u8; 32] {
        let mut out = *random;
        for (o, k) in out.iter_mut().zip(self.seal_key) {
            *o ^= k;
        }
        out
    }

    /// Opens a successor sealed by [`Presented::seal`].
    pub fn unseal(&self, sealed: &[u8; 32]) -> [u8; 32] {
        self.seal(sealed)
    }
}

impl fmt::Debug for Presented {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Presented")
            .field("family", &self.family)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// Why a presented refresh token is not one latchd issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshError {
    /// Wrong length, not canonical base64url, or an unknown version byte.
    Malformed,
    /// The tag does not verify: not minted under this server's refresh key.
    BadTag,
}

impl fmt::Display for RefreshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed => f.write_str("malformed refresh token"),
            Self::BadTag => f.write_str("refresh token tag does not verify"),
        }
    }
}

impl std::error::Error for RefreshError {}

/// Mints the token of `family` at `generation` from 32 bytes of fresh randomness.
pub fn mint(key: &RefreshKey, family: Uuid, generation: u64, random: &[u8; 32]) -> Minted {
    let mut raw = [0u8; REFRESH_TOKEN_BYTES];
    let (body, tag) = raw.split_at_mut(BODY_BYTES);
    let (version, rest) = body.split_at_mut(1);
    let (fam, rest) = rest.split_at_mut(16);
    let (gen, rnd) = rest.split_at_mut(8);
    version.copy_from_slice(&[VERSION]);
    fam.copy_from_slice(family.as_bytes());
    gen.copy_from_slice(&generation.to_be_bytes());
    rnd.copy_from_slice(random);
    tag.copy_from_slice(key.tag(body).as_ref());
    Minted {
        token: RefreshToken(b64::encode(&raw)),
        hash: sha256(&raw),
    }
}

/// Parses a presented token and checks its tag in constant time.
pub fn parse(key: &RefreshKey, text: &[u8]) -> Result<Presented, RefreshError> {
    if text.len() != REFRESH_TOKEN_CHARS {
        return Err(RefreshError::Malformed);
    }
    let mut raw = [0u8; REFRESH_TOKEN_BYTES + 2];
    let len = b64::decode_into(text, &mut raw).map_err(|_| RefreshError::Malformed)?;
    let raw = raw.get(..len).ok_or(RefreshError::Malformed)?;
    if len != REFRESH_TOKEN_BYTES || raw.first() != Some(&VERSION) {
        return Err(RefreshError::Malformed);
    }
    let (body, tag) = raw.split_at(BODY_BYTES);
    key.verify(body, tag).map_err(|_| RefreshError::BadTag)?;
    let mut family = [0u8; 16];
    let mut generation = [0u8; 8];
    family.copy_from_slice(body.get(1..17).ok_or(RefreshError::Malformed)?);
    generation.copy_from_slice(body.get(17..25).ok_or(RefreshError::Malformed)?);
    Ok(Presented {
        family: Uuid::from_bytes(family),
        generation: u64::from_be_bytes(generation),
        hash: sha256(raw),
        seal_key: derive_from_token(raw, SEAL_LABEL),
    })
}

/// As [`parse`], but every presentation costs one refresh-token MAC: a malformed one pays for
/// a MAC over a body of zeros, so that its answer's timing does not tell it apart from a
/// well-formed token whose tag is wrong.
///
/// # Errors
/// As [`parse`].
pub fn parse_with_constant_mac(key: &RefreshKey, text: &[u8]) -> Result<Presented, RefreshError> {
    let parsed = parse(key, text);
    if parsed.as_ref().err() == Some(&RefreshError::Malformed) {
        std::hint::black_box(key.tag(&[0u8; BODY_BYTES]));
    }
    parsed
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RefreshKey {
        RefreshKey::new(&[9; 32])
    }

    #[test]
    fn minted_tokens_parse_back_to_their_family_and_generation() {
        let family = Uuid::from_u128(0x1234);
        let minted = mint(&key(), family, 7, &[5; 32]);
        assert_eq!(minted.token.as_str().len(), REFRESH_TOKEN_CHARS);
        let presented = parse(&key(), minted.token.as_str().as_bytes()).unwrap();
        assert_eq!(presented.family, family);
        assert_eq!(presented.generation, 7);
        assert_eq!(presented.hash, minted.hash);
    }

    #[test]
    fn the_hash_differs_with_the_random_bits() {
        let family = Uuid::from_u128(1);
        assert_ne!(
            mint(&key(), family, 0, &[1; 32]).hash,
            mint(&key(), family, 0, &[2; 32]).hash
        );
    }

    #[test]
    fn a_token_from_another_key_or_altered_is_refused() {
        let minted = mint(&key(), Uuid::from_u128(1), 0, &[1; 32]);
        let text = minted.token.as_str();
        assert_eq!(
            parse(&RefreshKey::new(&[8; 32]), text.as_bytes()).err(),
            Some(RefreshError::BadTag)
        );
        // Flip one bit of the generation field (bytes 17..25).
        let mut raw = b64::decode(text.as_bytes()).unwrap();
        raw[20] ^= 1;
        assert_eq!(
            parse(&key(), b64::encode(&raw).as_bytes()).err(),
            Some(RefreshError::BadTag)
        );
        raw[20] ^= 1;
        raw[0] = 2;
        assert_eq!(
            parse(&key(), b64::encode(&raw).as_bytes()).err(),
            Some(RefreshError::Malformed),
            "unknown version"
        );
    }

    #[test]
    fn malformed_text_is_refused() {
        let minted = mint(&key(), Uuid::from_u128(1), 0, &[1; 32]);
        let text = minted.token.as_str();
        for bad in [
            String::new(),
            text[1..].to_owned(),
            format!("{text}A"),
            format!("{}=", &text[..118]),
            format!("{}+", &text[..118]),
            " ".repeat(119),
        ] {
            assert_eq!(
                parse(&key(), bad.as_bytes()).err(),
                Some(RefreshError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn only_the_superseded_token_opens_the_sealed_successor() {
        let parent = mint(&key(), Uuid::from_u128(1), 3, &[1; 32]);
        let parent = parse(&key(), parent.token.as_str().as_bytes()).unwrap();
        let successor_random = [42u8; 32];
        let sealed = parent.seal(&successor_random);
        assert_ne!(sealed, successor_random);
        assert_eq!(parent.unseal(&sealed), successor_random);
        let other = mint(&key(), Uuid::from_u128(1), 3, &[2; 32]);
        let other = parse(&key(), other.token.as_str().as_bytes()).unwrap();
        assert_ne!(other.unseal(&sealed), successor_random);
    }
}
