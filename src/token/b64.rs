//! Canonical unpadded base64url (RFC 7515 §2, RFC 4648 §5) for token segments.
//!
//! Decoding is strict: the `base64` engine below refuses padding, the standard alphabet's
//! `+` and `/`, whitespace, impossible lengths and non-zero trailing bits, so every byte string
//! has exactly one accepted encoding and a token cannot be re-encoded into a second valid form.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::TokenError;

/// Decodes one segment, refusing anything but its canonical encoding.
pub(crate) fn decode(segment: &[u8]) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Base64)
}

/// Decodes one segment into `out`, returning the decoded length.
pub(crate) fn decode_into(segment: &[u8], out: &mut [u8]) -> Result<usize, TokenError> {
    URL_SAFE_NO_PAD
        .decode_slice(segment, out)
        .map_err(|_| TokenError::Base64)
}

/// Appends the unpadded base64url form of `bytes` to `out`.
pub(crate) fn encode_into(bytes: &[u8], out: &mut String) {
    URL_SAFE_NO_PAD.encode_string(bytes, out);
}

/// The unpadded base64url form of `bytes`.
pub(crate) fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_length() {
        for len in 0u8..70 {
            let bytes: Vec<u8> = (0..len)
                .map(|i| i.wrapping_mul(37).wrapping_add(11))
                .collect();
            assert_eq!(decode(encode(&bytes).as_bytes()).unwrap(), bytes);
        }
    }

    #[test]
    fn refuses_every_non_canonical_form() {
        // "AQI" is [1, 2]; each case is a second spelling of some byte string, or no spelling.
        let cases: [(&str, &[u8]); 9] = [
            ("padding", b"AQI="),
            ("standard alphabet plus", b"+/8"),
            ("standard alphabet slash", b"/w"),
            ("inner whitespace", b"AQ I"),
            ("trailing newline", b"AQI\n"),
            ("leading space", b" AQI"),
            ("non-zero trailing bits", b"AQJ"),
            ("impossible length", b"AQIDB"),
            ("non-ascii", "AQ\u{e9}".as_bytes()),
        ];
        for (name, input) in cases {
            assert_eq!(decode(input), Err(TokenError::Base64), "{name}");
        }
        assert_eq!(decode(b"AQI").unwrap(), [1, 2]);
        assert_eq!(decode(b"-_8").unwrap(), [0xfb, 0xff]);
    }
}
