//! Recovery codes: the ten single-use look-up secrets (NIST SP 800-63B §5.1.2) a user gets when
//! TOTP is turned on, to sign in without the device.
//!
//! Pure: the randomness comes in as bytes, so nothing here draws it, stores it or hashes it.
//! Codes are stored only as salted PBKDF2 hashes (`password::hash_code`) of their
//! [`normalize`]d form, which is also the form [`generate`] writes, so hashing what was shown
//! and hashing what is typed back agree.
//!
//! A code is 12 symbols of Crockford's base32 in lowercase, `xxxx-xxxx-xxxx`: 60 bits, above
//! the 50 latchd asks for (NIST SP 800-63B §5.1.2.1 demands 20). Under 64 bits §5.1.2.2 also
//! demands a rate limit (the login limiter and the `mfa_token`'s five tries), and under 112 a
//! salted key-derivation function (hence PBKDF2). Crockford's alphabet has no `i`, `l`, `o` or
//! `u`, and [`normalize`] reads the usual misreadings back (`o` as `0`, `i` and `l` as `1`).

use std::fmt;

use super::base32;

/// How many codes a user gets.
pub const CODES: usize = 10;
/// Symbols of one code, hyphens not counted.
pub const CODE_SYMBOLS: usize = 12;
/// Entropy of one code in bits: 12 symbols of 5 bits.
pub const CODE_BITS: usize = CODE_SYMBOLS * 5;
/// Random bytes [`generate`] needs: 10 codes of 60 bits is 600 bits, every one of them used.
pub const RANDOM_BYTES: usize = CODES * CODE_BITS / 8;
/// Length of a code's text, `xxxx-xxxx-xxxx`.
pub const CODE_CHARS: usize = 14;

/// Symbols between two hyphens.
const GROUP_SYMBOLS: usize = 4;

/// One recovery code's text, in its normalized form. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCode(String);

impl RecoveryCode {
    /// The text to show the user once, `xxxx-xxxx-xxxx`; also what to hash.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode(..)")
    }
}

/// Ten codes made from `random`, which the caller draws from a secure random generator.
///
/// The 75 bytes are written out as 120 base32 symbols, cut into ten codes of twelve: every bit
/// of `random` lands in exactly one code, so each code has its own 60 random bits.
pub fn generate(random: &[u8; RANDOM_BYTES]) -> [RecoveryCode; CODES] {
    let symbols = base32::encode(random, base32::CROCKFORD_LOWER);
    let mut codes = std::array::from_fn(|_| RecoveryCode(String::new()));
    for (code, chunk) in codes
        .iter_mut()
        .zip(symbols.as_bytes().chunks_exact(CODE_SYMBOLS))
    {
        *code = RecoveryCode(format_code(chunk));
    }
    codes
}

/// The canonical form of a presented code, `xxxx-xxxx-xxxx`, or `None` if it cannot be one.
///
/// Case is ignored, and so are ASCII whitespace and hyphens anywhere; `o` reads as `0`, `i`
/// and `l` as `1` (Crockford's decoding). Anything else outside the alphabet (`u` included),
/// and any count of symbols but twelve, is refused.
pub fn normalize(presented: &str) -> Option<String> {
    let mut symbols = Vec::with_capacity(CODE_SYMBOLS);
    for b in presented.bytes() {
        let symbol = match b.to_ascii_lowercase() {
            b'-' => continue,
            c if c.is_ascii_whitespace() => continue,
            b'o' => b'0',
            b'i' | b'l' => b'1',
            c if base32::CROCKFORD_LOWER.contains(&c) => c,
            _ => return None,
        };
        if symbols.len() == CODE_SYMBOLS {
            return None; // too long; stop before reading the rest
        }
        symbols.push(symbol);
    }
    (symbols.len() == CODE_SYMBOLS).then(|| format_code(&symbols))
}

/// Twelve symbols as `xxxx-xxxx-xxxx`.
fn format_code(symbols: &[u8]) -> String {
    let mut out = String::with_capacity(CODE_CHARS);
    for group in symbols.chunks(GROUP_SYMBOLS) {
        if !out.is_empty() {
            out.push('-');
        }
        out.extend(group.iter().map(|&b| char::from(b)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counting() -> [u8; RANDOM_BYTES] {
        std::array::from_fn(|i| u8::try_from(i).unwrap().wrapping_mul(37))
    }

    fn texts(codes: &[RecoveryCode]) -> Vec<&str> {
        codes.iter().map(RecoveryCode::as_str).collect()
    }

    #[test]
    fn the_sizes_add_up() {
        assert_eq!(RANDOM_BYTES, 75);
        assert_eq!(CODE_BITS, 60);
        const { assert!(CODE_BITS >= 50, "NIST SP 800-63B-4 look-up secrets") };
    }

    #[test]
    fn codes_have_the_format_and_alphabet() {
        for code in generate(&counting()) {
            let text = code.as_str();
            assert_eq!(text.len(), CODE_CHARS, "{text}");
            for (i, c) in text.bytes().enumerate() {
                if i == 4 || i == 9 {
                    assert_eq!(c, b'-', "{text}");
                } else {
                    assert!(base32::CROCKFORD_LOWER.contains(&c), "{text}");
                }
            }
        }
    }

    #[test]
    fn known_randomness_gives_known_codes() {
        assert_eq!(
            texts(&generate(&[0; RANDOM_BYTES])),
            ["0000-0000-0000"; CODES]
        );
        assert_eq!(
            texts(&generate(&[0xff; RANDOM_BYTES])),
            ["zzzz-zzzz-zzzz"; CODES]
        );
        // 0x00 0x44 0x32 0x14 0xc7 encodes to the first eight symbols, in order.
        let mut random = [0; RANDOM_BYTES];
        random[..5].copy_from_slice(&[0x00, 0x44, 0x32, 0x14, 0xc7]);
        assert_eq!(generate(&random)[0].as_str(), "0123-4567-0000");
    }

    #[test]
    fn every_random_bit_lands_in_exactly_one_code() {
        let base = counting();
        let before = generate(&base);
        for bit in 0..RANDOM_BYTES * 8 {
            let mut flipped = base;
            flipped[bit / 8] ^= 0x80 >> (bit % 8);
            let after = generate(&flipped);
            let changed: Vec<usize> = (0..CODES).filter(|&i| before[i] != after[i]).collect();
            assert_eq!(changed, [bit / CODE_BITS], "bit {bit}");
        }
    }

    #[test]
    fn generated_codes_are_already_normalized() {
        for code in generate(&counting()) {
            assert_eq!(normalize(code.as_str()).as_deref(), Some(code.as_str()));
        }
    }

    #[test]
    fn normalize_ignores_case_spaces_and_hyphens() {
        let want = Some("0123-4567-89ab".to_owned());
        for presented in [
            "0123-4567-89ab",
            "0123-4567-89AB",
            "012345678 9ab",
            "0123 4567 89ab",
            "  0123-4567-89ab\n",
            "\t0-1-2-3-4-5-6-7-8-9-a-b",
            "--0123--4567--89ab--",
        ] {
            assert_eq!(normalize(presented), want, "{presented:?}");
        }
    }

    #[test]
    fn normalize_reads_crockfords_confusables() {
        assert_eq!(
            normalize("oOiI-lL00-1111").as_deref(),
            Some("0011-1100-1111")
        );
        assert_eq!(
            normalize("zzzz-zzzz-zzzo").as_deref(),
            Some("zzzz-zzzz-zzz0")
        );
    }

    #[test]
    fn normalize_refuses_everything_else() {
        let cases = [
            ("empty", ""),
            ("only separators", " - - "),
            ("eleven symbols", "0123-4567-89a"),
            ("thirteen symbols", "0123-4567-89abc"),
            ("twice a code", "0123-4567-89ab0123-4567-89ab"),
            ("u is not decoded", "0123-4567-89au"),
            ("U is not decoded", "0123-4567-89aU"),
            ("punctuation", "0123-4567-89a!"),
            ("underscore", "0123_4567_89ab"),
            ("nul", "0123-4567-89a\0"),
            ("non-ASCII letter", "0123-4567-89aé"),
            ("fullwidth digit", "0123-4567-89a１"),
            ("no-break space", "0123\u{a0}4567-89ab"),
            ("dotless i", "0123-4567-89aı"),
            ("Kelvin sign", "0123-4567-89a\u{212a}"),
        ];
        for (name, presented) in cases {
            assert_eq!(normalize(presented), None, "{name}");
        }
    }

    #[test]
    fn normalize_is_canonical() {
        for presented in ["OIL0 ABCD efgh", "0123-4567-89ab", "zzzz zzzz zzzz"] {
            let once = normalize(presented).unwrap();
            assert_eq!(normalize(&once).as_deref(), Some(once.as_str()));
        }
    }

    #[test]
    fn debug_hides_the_code() {
        let codes = generate(&counting());
        let shown = format!("{codes:?}");
        assert!(!shown.contains(codes[0].as_str()), "{shown}");
        assert!(shown.contains("RecoveryCode(..)"));
    }
}
