//! The rules a new password must meet, after NIST SP 800-63B-4 §3.1.1.2: a minimum length in
//! characters, a maximum in bytes, and no common, context-specific, repetitive or sequential
//! passwords. No composition rules (NIST forbids them). Pure: no I/O.

use std::collections::HashSet;
use std::fmt;
use std::sync::OnceLock;

use super::PasswordError;

/// The default minimum length in characters: NIST SP 800-63B-4 §3.1.1.2 for single-factor passwords.
pub const DEFAULT_MIN_CHARS: usize = 15;

/// The lowest minimum a deployment may configure: NIST's floor when another factor is present.
pub const MIN_CHARS_FLOOR: usize = 8;

/// The longest password accepted, in UTF-8 bytes (API.md "Passwords").
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// The name of the service, which a password must not contain (a context-specific word).
const SERVICE_NAME: &str = "latchd";

/// The shortest email local part that counts as a context-specific word; shorter ones (`bob`) would
/// reject too many unrelated passwords.
const MIN_LOCAL_PART_CHARS: usize = 4;

/// The entries of Django's list of common passwords that are at least [`MIN_CHARS_FLOOR`]
/// characters long (8,354 of 19,640; a shorter password never gets past the length check),
/// lowercase, one per line (see data/common-passwords.NOTICE).
const COMMON_PASSWORDS: &str = include_str!("../../data/common-passwords.txt");

/// The rules new passwords are checked against; [`PasswordPolicy::default`] has a 15-character minimum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasswordPolicy {
    min_chars: usize,
}

impl PasswordPolicy {
    /// A policy demanding at least `min_chars` characters.
    ///
    /// # Errors
    /// [`PasswordError::MinCharsTooLow`] below [`MIN_CHARS_FLOOR`].
    pub fn new(min_chars: usize) -> Result<Self, PasswordError> {
        if min_chars < MIN_CHARS_FLOOR {
            return Err(PasswordError::MinCharsTooLow { min_chars });
        }
        Ok(Self { min_chars })
    }

    /// The minimum length in characters.
    pub fn min_chars(&self) -> usize {
        self.min_chars
    }

    /// Checks a new `password` for the account `email` against every rule, cheapest first.
    ///
    /// # Errors
    /// The first rule `password` breaks, as a [`WeakPassword`] to show the user.
    pub fn check(&self, password: &str, email: &str) -> Result<(), WeakPassword> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(WeakPassword::TooLong);
        }
        // Characters, not bytes: NIST counts each Unicode code point as one character.
        if password.chars().count() < self.min_chars {
            return Err(WeakPassword::TooShort {
                min_chars: self.min_chars,
            });
        }
        let lower = password.to_lowercase();
        if is_common(&lower) {
            return Err(WeakPassword::Common);
        }
        if lower.contains(SERVICE_NAME) {
            return Err(WeakPassword::ContainsServiceName);
        }
        if contains_local_part(&lower, email) {
            return Err(WeakPassword::ContainsEmail);
        }
        let chars: Vec<char> = lower.chars().collect();
        if is_repetitive(&chars) {
            return Err(WeakPassword::Repetitive);
        }
        if is_sequential(&chars) {
            return Err(WeakPassword::Sequential);
        }
        Ok(())
    }
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_chars: DEFAULT_MIN_CHARS,
        }
    }
}

/// Why a new password was refused; each variant is one rule of NIST SP 800-63B-4 §3.1.1.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeakPassword {
    /// Fewer characters than the policy's minimum.
    TooShort {
        /// The minimum in force.
        min_chars: usize,
    },
    /// More than [`MAX_PASSWORD_BYTES`] bytes.
    TooLong,
    /// On the common-password blocklist, ignoring case.
    Common,
    /// Contains the local part of the account's email, ignoring case.
    ContainsEmail,
    /// Contains the service name "latchd", ignoring case.
    ContainsServiceName,
    /// One short unit repeated throughout (`aaaa…`, `abcabc…`).
    Repetitive,
    /// One ascending or descending run of digits or letters (`12345…`, `zyxw…`).
    Sequential,
}

impl WeakPassword {
    /// The reason to show the user; [`Display`](fmt::Display) adds the minimum to `TooShort`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::TooShort { .. } => "password is shorter than the minimum length",
            Self::TooLong => "password must be at most 1024 bytes",
            Self::Common => "password is too common",
            Self::ContainsEmail => "password must not contain the email address",
            Self::ContainsServiceName => "password must not contain the service name",
            Self::Repetitive => "password must not be one repeated character or sequence",
            Self::Sequential => "password must not be a run of consecutive characters",
        }
    }
}

impl fmt::Display for WeakPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { min_chars } => {
                write!(f, "password must be at least {min_chars} characters")
            }
            other => f.write_str(other.as_str()),
        }
    }
}

impl std::error::Error for WeakPassword {}

/// Whether the lowercased password is on the blocklist: one hash lookup, the set built once.
fn is_common(lower: &str) -> bool {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    // The list is lowercase already (a test holds it to that), so entries need no folding.
    SET.get_or_init(|| COMMON_PASSWORDS.lines().collect())
        .contains(lower)
}

/// Whether the lowercased password contains the email's local part, or that part without a
/// `+tag`, when it is long enough to be a meaningful word.
fn contains_local_part(lower: &str, email: &str) -> bool {
    let local = email
        .rsplit_once('@')
        .map_or(email, |(local, _)| local)
        .trim()
        .to_lowercase();
    let untagged = local
        .split_once('+')
        .map_or(local.as_str(), |(base, _)| base);
    [local.as_str(), untagged]
        .iter()
        .any(|word| word.chars().count() >= MIN_LOCAL_PART_CHARS && lower.contains(word))
}

/// Whether the password is a unit of at most half its length repeated, the last copy possibly cut
/// short. The smallest period comes from the KMP prefix function in O(n).
fn is_repetitive(chars: &[char]) -> bool {
    let n = chars.len();
    if n < 2 {
        return false;
    }
    // border[i]: length of the longest proper prefix of chars[..=i] that is also its suffix.
    let mut border = vec![0usize; n];
    for i in 1..n {
        let mut k = border[i - 1];
        while k > 0 && chars[i] != chars[k] {
            k = border[k - 1];
        }
        if chars[i] == chars[k] {
            k += 1;
        }
        border[i] = k;
    }
    let period = n - border[n - 1];
    period <= n / 2
}

/// Whether the password is one run of digits or of letters, each one step above (or each one step
/// below) the last, wrapping `9`→`0` and `z`→`a` (`123456789012345`, `zyxwvu…`).
fn is_sequential(chars: &[char]) -> bool {
    let Some(positions) = chars
        .iter()
        .map(|&c| alphabet_position(c))
        .collect::<Option<Vec<_>>>()
    else {
        return false;
    };
    let [(size, first), rest @ ..] = positions.as_slice() else {
        return false;
    };
    if rest.is_empty() || rest.iter().any(|(s, _)| s != size) {
        return false;
    }
    let steps = |step: u32| {
        let mut prev = *first;
        rest.iter().all(|&(_, pos)| {
            let ok = pos == (prev + step) % size;
            prev = pos;
            ok
        })
    };
    steps(1) || steps(size - 1)
}

/// The size of the alphabet `c` belongs to (10 digits or 26 ASCII letters) and its place in it.
fn alphabet_position(c: char) -> Option<(u32, u32)> {
    match c {
        '0'..='9' => Some((10, u32::from(c) - u32::from('0'))),
        'a'..='z' => Some((26, u32::from(c) - u32::from('a'))),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
