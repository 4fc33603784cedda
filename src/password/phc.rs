//! The PHC string form of a PBKDF2-HMAC-SHA256 hash: `$pbkdf2-sha256$i=<n>$<salt>$<key>`.
//!
//! Salt and key are in the PHC format's "B64": the standard base64 alphabet of RFC 4648 §4
//! (`A-Z a-z 0-9 + /`) without `=` padding. passlib writes an adapted alphabet (`.` for `+`) and
//! is not read here. Parsing is strict and never panics: every defect has its own error.

use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;

use super::{PasswordError, KEY_BYTES, MAX_ITERATIONS, MAX_SALT_BYTES};

/// The PHC identifier of PBKDF2 with HMAC-SHA256.
const ALGORITHM_ID: &str = "pbkdf2-sha256";

/// A parsed PHC string. The key length is checked, so `key` is always [`KEY_BYTES`] long.
pub(super) struct Phc {
    pub(super) iterations: NonZeroU32,
    pub(super) salt: Vec<u8>,
    pub(super) key: Vec<u8>,
}

impl Phc {
    /// Reads `$pbkdf2-sha256$i=<n>$<salt>$<key>`, cheapest checks first.
    pub(super) fn parse(phc: &str) -> Result<Self, PasswordError> {
        let mut fields = phc.split('$');
        // A PHC string starts with '$', so the text before the first '$' is empty.
        if fields.next() != Some("") {
            return Err(PasswordError::NotPhc);
        }
        let (Some(id), Some(params), Some(salt), Some(key), None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err(PasswordError::NotPhc);
        };
        if id != ALGORITHM_ID {
            return Err(PasswordError::UnknownAlgorithm);
        }
        let iterations = parse_iterations(params)?;
        let salt = STANDARD_NO_PAD
            .decode(salt)
            .map_err(|_| PasswordError::BadSalt)?;
        if salt.is_empty() || salt.len() > MAX_SALT_BYTES {
            return Err(PasswordError::SaltLength);
        }
        let key = STANDARD_NO_PAD
            .decode(key)
            .map_err(|_| PasswordError::BadHash)?;
        if key.len() != KEY_BYTES {
            return Err(PasswordError::HashLength);
        }
        Ok(Self {
            iterations,
            salt,
            key,
        })
    }

    /// Writes the PHC string; [`Phc::parse`] reads it back unchanged.
    pub(super) fn format(iterations: NonZeroU32, salt: &[u8], key: &[u8]) -> String {
        format!(
            "${ALGORITHM_ID}$i={iterations}${}${}",
            STANDARD_NO_PAD.encode(salt),
            STANDARD_NO_PAD.encode(key)
        )
    }
}

/// Reads `i=<n>`: decimal digits only, no sign, no leading zeros (PHC decimal rules),
/// 1 ..= [`MAX_ITERATIONS`].
fn parse_iterations(params: &str) -> Result<NonZeroU32, PasswordError> {
    let digits = params
        .strip_prefix("i=")
        .ok_or(PasswordError::BadIterations)?;
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return Err(PasswordError::BadIterations);
    }
    // Only digits are left, so parsing can fail only by overflowing u64: absurdly many.
    let n: u64 = digits
        .parse()
        .map_err(|_| PasswordError::TooManyIterations)?;
    if n > u64::from(MAX_ITERATIONS) {
        return Err(PasswordError::TooManyIterations);
    }
    let n = u32::try_from(n).map_err(|_| PasswordError::TooManyIterations)?;
    NonZeroU32::new(n).ok_or(PasswordError::ZeroIterations)
}
