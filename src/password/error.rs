//! The password layer's one error enum. Weak passwords are not errors here but
//! [`WeakPassword`](super::WeakPassword) values, because they are an answer to the user.

use std::fmt;

/// Why a stored password hash could not be read, a hash could not be made, or a policy was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordError {
    /// The string does not start with `$` or does not have exactly four `$`-separated fields.
    NotPhc,
    /// The PHC identifier is not `pbkdf2-sha256`.
    UnknownAlgorithm,
    /// The parameters field is not exactly `i=<decimal without leading zeros>`.
    BadIterations,
    /// The iteration count is zero, which PBKDF2 does not define (RFC 8018 §5.2).
    ZeroIterations,
    /// The iteration count is above [`MAX_ITERATIONS`](super::MAX_ITERATIONS).
    TooManyIterations,
    /// The salt is not unpadded standard base64.
    BadSalt,
    /// The salt decodes to no bytes or to more than [`MAX_SALT_BYTES`](super::MAX_SALT_BYTES).
    SaltLength,
    /// The derived key is not unpadded standard base64.
    BadHash,
    /// The derived key does not decode to exactly [`KEY_BYTES`](super::KEY_BYTES).
    HashLength,
    /// The operating system's random generator failed to produce a salt.
    Random,
    /// A minimum password length below [`MIN_CHARS_FLOOR`](super::MIN_CHARS_FLOOR) was configured.
    MinCharsTooLow {
        /// The refused minimum.
        min_chars: usize,
    },
}

impl fmt::Display for PasswordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotPhc => f.write_str("password hash is not a PHC string with four fields"),
            Self::UnknownAlgorithm => f.write_str("password hash algorithm is not pbkdf2-sha256"),
            Self::BadIterations => f.write_str("password hash parameters are not i=<iterations>"),
            Self::ZeroIterations => f.write_str("password hash iteration count is zero"),
            Self::TooManyIterations => write!(
                f,
                "password hash iteration count is above {}",
                super::MAX_ITERATIONS
            ),
            Self::BadSalt => f.write_str("password hash salt is not unpadded base64"),
            Self::SaltLength => f.write_str("password hash salt has the wrong length"),
            Self::BadHash => f.write_str("password hash key is not unpadded base64"),
            Self::HashLength => f.write_str("password hash key has the wrong length"),
            Self::Random => f.write_str("system random generator failed"),
            Self::MinCharsTooLow { min_chars } => write!(
                f,
                "minimum password length {min_chars} is below {}",
                super::MIN_CHARS_FLOOR
            ),
        }
    }
}

impl std::error::Error for PasswordError {}
