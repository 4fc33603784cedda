//! Passwords: PBKDF2-HMAC-SHA256 hashes in PHC string form, and the policy new passwords must meet.
//!
//! Pure CPU: no I/O, no clock, no async. Hashing costs hundreds of milliseconds at the default
//! work factor, so callers run it off the async workers.
//!
//! - Hashes follow RFC 8018 §5.2 (PBKDF2) with HMAC-SHA256, a 16-byte random salt and a 32-byte
//!   derived key, stored as the PHC string `$pbkdf2-sha256$i=<n>$<salt>$<key>` with salt and key
//!   in unpadded standard base64 (RFC 4648 §4 alphabet, the PHC format's "B64"). The iteration
//!   count travels with the hash, so it can be raised later and old hashes replaced on the next
//!   successful login ([`needs_rehash`]).
//! - Verification compares in constant time (`ring::pbkdf2::verify`), and [`Hasher::verify_dummy`]
//!   spends the same work when the account does not exist, so timing does not reveal it.
//! - [`PasswordPolicy`] holds the rules of NIST SP 800-63B-4 §3.1.1.2 for new passwords.
//! - Recovery codes are look-up secrets of 60 bits, under the 112 below which NIST SP 800-63B
//!   §5.1.2.2 demands a salted one-way key derivation function: [`hash_code`] is the same
//!   PBKDF2 with one salt per user, and [`code_matches`] checks a presented code against all
//!   of that user's hashes with one derivation. What a code looks like and how it is
//!   normalized is `token::recovery`'s.

mod error;
mod phc;
mod policy;

use std::fmt;
use std::num::NonZeroU32;

use ring::pbkdf2;
use ring::rand::{SecureRandom, SystemRandom};

pub use error::PasswordError;
pub use policy::{
    PasswordPolicy, WeakPassword, DEFAULT_MIN_CHARS, MAX_PASSWORD_BYTES, MIN_CHARS_FLOOR,
};

use phc::Phc;

/// The default PBKDF2 work factor for new hashes (OWASP's figure for PBKDF2-HMAC-SHA256).
pub const DEFAULT_ITERATIONS: NonZeroU32 = match NonZeroU32::new(600_000) {
    Some(n) => n,
    None => panic!("600000 is not zero"),
};

/// The highest iteration count accepted, so a corrupt or hostile hash cannot pin a CPU for minutes.
pub const MAX_ITERATIONS: u32 = 10_000_000;

/// The length of the random salt of every new hash (RFC 8018 §4.1 asks for at least 8 bytes).
pub const SALT_BYTES: usize = 16;

/// The longest salt [`verify`] accepts; hashes written here always use [`SALT_BYTES`].
pub const MAX_SALT_BYTES: usize = 64;

/// The length of the derived key: one HMAC-SHA256 output, so PBKDF2 runs a single block.
pub const KEY_BYTES: usize = 32;

/// The PBKDF2 pseudo-random function of every hash here.
static ALGORITHM: pbkdf2::Algorithm = pbkdf2::PBKDF2_HMAC_SHA256;

/// A password hash in PHC string form, ready to store.
#[derive(Clone)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// The PHC string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The PHC string, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for PasswordHash {
    /// Shows the parameters only: salt and key would let a reader start cracking offline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let params = self.0.splitn(4, '$').take(3).collect::<Vec<_>>().join("$");
        write!(f, "PasswordHash(\"{params}$…\")")
    }
}

/// Whether a password matched a stored hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verified {
    /// The password is the one the hash was made from.
    Match,
    /// The password is not the one the hash was made from.
    Mismatch,
}

/// Hashes `password` with a fresh 16-byte salt from `rng` and `iterations` rounds of PBKDF2-HMAC-SHA256.
///
/// # Errors
/// [`PasswordError::TooManyIterations`] above [`MAX_ITERATIONS`] (the hash could not be verified
/// later), [`PasswordError::Random`] if `rng` fails.
pub fn hash(
    password: &str,
    iterations: NonZeroU32,
    rng: &dyn SecureRandom,
) -> Result<PasswordHash, PasswordError> {
    if iterations.get() > MAX_ITERATIONS {
        return Err(PasswordError::TooManyIterations);
    }
    let mut salt = [0u8; SALT_BYTES];
    rng.fill(&mut salt).map_err(|_| PasswordError::Random)?;
    let mut key = [0u8; KEY_BYTES];
    pbkdf2::derive(ALGORITHM, iterations, &salt, password.as_bytes(), &mut key);
    Ok(PasswordHash(Phc::format(iterations, &salt, &key)))
}

/// Checks `password` against the PHC string `phc` in constant time.
///
/// # Errors
/// The first defect of `phc`, one [`PasswordError`] variant each; a wrong password is
/// [`Verified::Mismatch`], not an error.
pub fn verify(password: &str, phc: &str) -> Result<Verified, PasswordError> {
    let stored = Phc::parse(phc)?;
    // ring derives a key as long as `stored.key` and compares the two in constant time.
    let outcome = pbkdf2::verify(
        ALGORITHM,
        stored.iterations,
        &stored.salt,
        password.as_bytes(),
        &stored.key,
    );
    Ok(match outcome {
        Ok(()) => Verified::Match,
        Err(_) => Verified::Mismatch,
    })
}

/// Whether the hash `phc` should be replaced: it uses fewer than `iterations` rounds, or cannot be read.
///
/// A hash with more rounds than configured is kept, so lowering the setting never weakens stored hashes.
pub fn needs_rehash(phc: &str, iterations: NonZeroU32) -> bool {
    Phc::parse(phc).map_or(true, |stored| stored.iterations < iterations)
}

/// PBKDF2-HMAC-SHA256 of a normalized recovery code under the user's code salt.
///
/// One salt serves all of a user's codes, so checking a presented code costs one derivation,
/// not one per stored code. `iterations` is the configured work factor, which the caller has
/// held to [`MAX_ITERATIONS`] (as [`Hasher::new`] does).
pub fn hash_code(
    normalized: &str,
    salt: &[u8; SALT_BYTES],
    iterations: NonZeroU32,
) -> [u8; KEY_BYTES] {
    let mut key = [0u8; KEY_BYTES];
    pbkdf2::derive(ALGORITHM, iterations, salt, normalized.as_bytes(), &mut key);
    key
}

/// The index of the stored hash that `normalized` matches, if any.
///
/// Derives once, then compares against every entry in constant time with no early exit, so the
/// work done does not depend on where (or whether) the code matched. With duplicate entries
/// the first index wins.
pub fn code_matches(
    normalized: &str,
    salt: &[u8; SALT_BYTES],
    iterations: NonZeroU32,
    stored: &[[u8; KEY_BYTES]],
) -> Option<usize> {
    let derived = hash_code(normalized, salt, iterations);
    let mut found = None;
    for (index, candidate) in stored.iter().enumerate() {
        let equal = keys_equal(&derived, candidate);
        if equal && found.is_none() {
            found = Some(index);
        }
    }
    found
}

/// Hashes and verifies passwords with the configured work factor, including for unknown accounts.
///
/// Login for an unknown email calls [`Hasher::verify_dummy`], which runs the same parse and the
/// same PBKDF2 work as [`Hasher::verify`] against a hash nobody's password matches, so the
/// response time does not tell whether the email exists.
pub struct Hasher {
    iterations: NonZeroU32,
    /// A well-formed hash with the configured iterations; its key is all zeros, which no password
    /// is known to derive, and a match would be ignored anyway.
    dummy: String,
    rng: SystemRandom,
}

impl Hasher {
    /// A hasher that makes new hashes with `iterations` rounds.
    ///
    /// # Errors
    /// [`PasswordError::TooManyIterations`] above [`MAX_ITERATIONS`].
    pub fn new(iterations: NonZeroU32) -> Result<Self, PasswordError> {
        if iterations.get() > MAX_ITERATIONS {
            return Err(PasswordError::TooManyIterations);
        }
        // The dummy's salt need not be secret or random: it only has to cost the same to check.
        let dummy = Phc::format(iterations, &[0u8; SALT_BYTES], &[0u8; KEY_BYTES]);
        Ok(Self {
            iterations,
            dummy,
            rng: SystemRandom::new(),
        })
    }

    /// The work factor of new hashes.
    pub fn iterations(&self) -> NonZeroU32 {
        self.iterations
    }

    /// Hashes `password` with a fresh random salt and the configured iterations.
    ///
    /// # Errors
    /// [`PasswordError::Random`] if the system random generator fails.
    pub fn hash(&self, password: &str) -> Result<PasswordHash, PasswordError> {
        hash(password, self.iterations, &self.rng)
    }

    /// Checks `password` against the stored hash `phc` in constant time.
    ///
    /// # Errors
    /// The first defect of `phc`, as [`verify`].
    pub fn verify(&self, password: &str, phc: &str) -> Result<Verified, PasswordError> {
        verify(password, phc)
    }

    /// Spends one full verification of `password` against the dummy hash, for a login whose account does not exist.
    pub fn verify_dummy(&self, password: &str) {
        // black_box keeps the optimizer from dropping work whose result is unused.
        std::hint::black_box(verify(std::hint::black_box(password), &self.dummy)).ok();
    }

    /// Whether `phc` should be replaced by a new hash after a successful login.
    pub fn needs_rehash(&self, phc: &str) -> bool {
        needs_rehash(phc, self.iterations)
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hasher")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// Compares two derived keys without an early exit, so timing does not reveal a matching prefix.
fn keys_equal(a: &[u8; KEY_BYTES], b: &[u8; KEY_BYTES]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests;
