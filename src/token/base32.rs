//! Unpadded base32 (RFC 4648 §6) over a caller's alphabet: the standard one for TOTP secrets,
//! Crockford's lowercase one for recovery codes. Pure; knows nothing of what the bytes mean.
//!
//! Decoding is strict, like `b64`: impossible lengths, characters outside the alphabet and
//! non-zero trailing bits are refused, so every byte string has exactly one accepted encoding.

/// RFC 4648 §6, as TOTP secrets are written in `otpauth://` URIs.
pub(super) const RFC4648: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Crockford's base32 in lowercase: no `i`, `l`, `o` or `u`, so no two symbols look alike.
pub(super) const CROCKFORD_LOWER: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Bytes in one full block, and the characters that encode it.
const BLOCK_BYTES: usize = 5;
const BLOCK_CHARS: usize = 8;
/// For a block of `n` bytes, the characters of its unpadded encoding (RFC 4648 §6: 1 byte gives
/// 2 characters, 2 give 4, 3 give 5, 4 give 7, 5 give 8).
const CHARS_FOR_BYTES: [usize; BLOCK_BYTES + 1] = [0, 2, 4, 5, 7, 8];
/// Bit offsets of the eight 5-bit groups of a 40-bit block, most significant first.
const SHIFTS: [u32; BLOCK_CHARS] = [35, 30, 25, 20, 15, 10, 5, 0];

/// The unpadded encoding of `bytes` in `alphabet`.
pub(super) fn encode(bytes: &[u8], alphabet: &[u8; 32]) -> String {
    let mut out = String::with_capacity(bytes.len().saturating_mul(8).div_ceil(5));
    for chunk in bytes.chunks(BLOCK_BYTES) {
        let block = block_of(chunk);
        let chars = CHARS_FOR_BYTES.get(chunk.len()).copied().unwrap_or(0);
        for shift in SHIFTS.iter().take(chars) {
            let symbol = usize::from(low5(block.wrapping_shr(*shift)));
            if let Some(&c) = alphabet.get(symbol) {
                out.push(char::from(c));
            }
        }
    }
    out
}

/// The bytes whose unpadded encoding in `alphabet` is exactly `text`, or `None`.
pub(super) fn decode(text: &[u8], alphabet: &[u8; 32]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len().saturating_mul(5).div_euclid(8));
    for chunk in text.chunks(BLOCK_CHARS) {
        // An unpadded tail of 1, 3 or 6 characters encodes no whole number of bytes.
        let bytes = CHARS_FOR_BYTES.iter().position(|&n| n == chunk.len())?;
        let mut block = 0u64;
        for (&c, shift) in chunk.iter().zip(SHIFTS) {
            let symbol = alphabet.iter().position(|&a| a == c)?;
            block |= u64::try_from(symbol).ok()?.wrapping_shl(shift);
        }
        let be = block.to_be_bytes();
        // The 40-bit block sits in the low five bytes of the u64.
        let (kept, dropped) = be.get(3..)?.split_at_checked(bytes)?;
        if dropped.iter().any(|&b| b != 0) {
            return None; // non-zero trailing bits: a second spelling of the same bytes
        }
        out.extend_from_slice(kept);
    }
    Some(out)
}

/// Up to five bytes as the high end of a 40-bit block, zero-filled.
fn block_of(chunk: &[u8]) -> u64 {
    let mut be = [0u8; 8];
    for (slot, &b) in be.iter_mut().skip(3).zip(chunk) {
        *slot = b;
    }
    u64::from_be_bytes(be)
}

/// The low five bits.
fn low5(x: u64) -> u8 {
    // Masked to five bits, so it fits a u8.
    u8::try_from(x & 0x1f).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4648 §10, with the padding removed (this module writes none).
    const RFC_VECTORS: [(&str, &str); 7] = [
        ("", ""),
        ("f", "MY"),
        ("fo", "MZXQ"),
        ("foo", "MZXW6"),
        ("foob", "MZXW6YQ"),
        ("fooba", "MZXW6YTB"),
        ("foobar", "MZXW6YTBOI"),
    ];

    #[test]
    fn rfc_4648_section_10_vectors_encode_and_decode() {
        for (plain, encoded) in RFC_VECTORS {
            assert_eq!(encode(plain.as_bytes(), RFC4648), encoded, "{plain:?}");
            assert_eq!(
                decode(encoded.as_bytes(), RFC4648).as_deref(),
                Some(plain.as_bytes()),
                "{encoded:?}"
            );
        }
    }

    #[test]
    fn every_length_round_trips_in_both_alphabets() {
        let bytes: Vec<u8> = (0..=255).collect();
        for len in 0..40 {
            for alphabet in [RFC4648, CROCKFORD_LOWER] {
                let text = encode(&bytes[..len], alphabet);
                assert_eq!(text.len(), (len * 8).div_ceil(5));
                assert_eq!(
                    decode(text.as_bytes(), alphabet).as_deref(),
                    Some(&bytes[..len])
                );
            }
        }
    }

    #[test]
    fn non_canonical_text_is_refused() {
        let cases = [
            ("padding", "MY======"),
            ("lowercase", "my"),
            ("outside the alphabet", "M1"),
            ("one-character tail", "MZXW6YTBO"),
            ("three-character tail", "MZX"),
            ("six-character tail", "MZXW6Y"),
            ("non-zero trailing bits", "MZ"),
            ("whitespace", "MZXQ "),
        ];
        for (name, text) in cases {
            assert_eq!(decode(text.as_bytes(), RFC4648), None, "{name}");
        }
    }

    #[test]
    fn alphabets_have_32_distinct_symbols() {
        for alphabet in [RFC4648, CROCKFORD_LOWER] {
            let mut sorted = alphabet.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), 32);
        }
        assert!(!CROCKFORD_LOWER.iter().any(|c| b"ilou".contains(c)));
    }
}
