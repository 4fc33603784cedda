//! TOTP second factor (RFC 6238): HMAC-SHA1, 30-second steps, 6 digits, one step of skew either
//! way, and the `otpauth://` URI an authenticator app enrols from.
//!
//! Pure: no I/O, no clock (time comes in as `now`), no storage and no HTTP. The caller keeps
//! the secret and the last accepted step per user, and stores the step [`verify`] returns in
//! the same transaction that accepts the login, so a code is good once (RFC 6238 §5.2).
//! SHA-1, 6 digits and 30 s are fixed because they are the parameters every authenticator app
//! honours (API.md "Second factor"); the URI spells them out anyway.

use std::fmt;
use std::fmt::Write as _;

use super::base32;
use super::keyring::hmac_sha1;
use crate::time::UnixTime;

/// Length of a TOTP secret in bytes: 160 bits, the HMAC-SHA1 output size (RFC 4226 §4 R6).
pub const SECRET_BYTES: usize = 20;
/// Length of a secret's base32 text: 160 bits in 5-bit symbols, no padding needed.
pub const SECRET_CHARS: usize = 32;
/// Length of a time step in seconds (RFC 6238 §4.1 `X`, its recommended default).
pub const STEP_SECS: i64 = 30;
/// Digits of a code.
pub const DIGITS: u32 = 6;
/// Steps accepted either side of the current one (RFC 6238 §5.2 recommends at most one).
pub const SKEW_STEPS: u64 = 1;
/// The issuer named in the URI's label prefix and its `issuer` parameter.
pub const ISSUER: &str = "latchd";

/// A user's TOTP secret: 20 random bytes. Its `Debug` never shows it.
#[derive(Clone)]
pub struct TotpSecret([u8; SECRET_BYTES]);

impl TotpSecret {
    /// Wraps 20 bytes, which the caller draws from a secure random generator.
    pub fn from_bytes(bytes: [u8; SECRET_BYTES]) -> Self {
        Self(bytes)
    }

    /// The raw bytes, for storing the secret.
    pub fn as_bytes(&self) -> &[u8; SECRET_BYTES] {
        &self.0
    }

    /// The secret as RFC 4648 §6 base32, uppercase, without padding: 32 characters.
    pub fn to_base32(&self) -> String {
        base32::encode(&self.0, base32::RFC4648)
    }

    /// Parses exactly what [`TotpSecret::to_base32`] writes.
    ///
    /// # Errors
    /// [`TotpError::SecretLength`] unless `text` is 32 characters, [`TotpError::SecretNotBase32`]
    /// for anything outside `A-Z2-7` (lowercase, padding, spaces included).
    pub fn from_base32(text: &str) -> Result<Self, TotpError> {
        if text.len() != SECRET_CHARS {
            return Err(TotpError::SecretLength);
        }
        let bytes =
            base32::decode(text.as_bytes(), base32::RFC4648).ok_or(TotpError::SecretNotBase32)?;
        let bytes = <[u8; SECRET_BYTES]>::try_from(bytes.as_slice())
            .map_err(|_| TotpError::SecretLength)?;
        Ok(Self(bytes))
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(..)")
    }
}

/// Why a presented code or a secret's text was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TotpError {
    /// Not exactly six ASCII digits once surrounding ASCII whitespace is trimmed.
    Malformed,
    /// Six digits, but not the code of any step in the window.
    WrongCode,
    /// The code of a step at or before the last accepted one (RFC 6238 §5.2).
    Replayed,
    /// A secret's text is not exactly [`SECRET_CHARS`] long.
    SecretLength,
    /// A secret's text has a character outside the RFC 4648 base32 alphabet.
    SecretNotBase32,
}

impl fmt::Display for TotpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "totp code is not six digits",
            Self::WrongCode => "wrong totp code",
            Self::Replayed => "totp code already used",
            Self::SecretLength => "totp secret is not 32 base32 characters",
            Self::SecretNotBase32 => "totp secret is not uppercase unpadded base32",
        })
    }
}

impl std::error::Error for TotpError {}

/// The time step `now` falls in: whole [`STEP_SECS`] since the epoch (RFC 6238 §4.2 `T`, with
/// `T0 = 0`). Times before the epoch are step 0.
pub fn step_at(now: UnixTime) -> u64 {
    let step = now.secs().checked_div_euclid(STEP_SECS).unwrap_or(0);
    u64::try_from(step).unwrap_or(0)
}

/// The HOTP value of `step` (RFC 4226 §5.3: HMAC-SHA1, dynamic truncation) in `digits` digits.
///
/// Above 9 digits the whole 31-bit truncated value is returned, as RFC 4226 Appendix D lists it.
pub fn code_at(secret: &TotpSecret, step: u64, digits: u32) -> u32 {
    let mac = hmac_sha1(&secret.0, &step.to_be_bytes());
    let [.., last] = mac;
    let offset = usize::from(last & 0x0f);
    // Four bytes from `offset`, big-endian; an offset of at most 15 leaves four of the 20.
    let window = mac
        .iter()
        .skip(offset)
        .take(4)
        .fold(0u32, |acc, &b| acc.wrapping_shl(8) | u32::from(b));
    let binary = window & 0x7fff_ffff;
    10u32
        .checked_pow(digits)
        .and_then(|modulus| binary.checked_rem(modulus))
        .unwrap_or(binary)
}

/// Checks `presented` against the steps around `now`, refusing steps already used.
///
/// All three steps of the window are always computed and compared without an early exit, so
/// the work depends neither on how many digits match nor on which step (if any) does. Returns
/// the step accepted, which the caller must store as the new `last_accepted_step`.
///
/// # Errors
/// [`TotpError::Malformed`] before any HMAC is computed, [`TotpError::Replayed`] when the code
/// is right but only for steps at or before `last_accepted_step`, [`TotpError::WrongCode`]
/// otherwise.
pub fn verify(
    secret: &TotpSecret,
    presented: &str,
    now: UnixTime,
    last_accepted_step: Option<u64>,
) -> Result<u64, TotpError> {
    let presented = parse_code(presented)?; // cheapest first: no HMAC for a malformed code
    let current = step_at(now);
    let window = [
        current.checked_sub(SKEW_STEPS),
        Some(current),
        current.checked_add(SKEW_STEPS),
    ];
    let mut accepted = None;
    let mut replayed = false;
    for step in window.into_iter().flatten() {
        let matches = digits_equal(ascii_digits(code_at(secret, step, DIGITS)), presented);
        let fresh = last_accepted_step.is_none_or(|last| step > last);
        // The earliest fresh match: a collision with a later step must not use that step up.
        if matches && fresh && accepted.is_none() {
            accepted = Some(step);
        }
        replayed |= matches && !fresh;
    }
    match (accepted, replayed) {
        (Some(step), _) => Ok(step),
        (None, true) => Err(TotpError::Replayed),
        (None, false) => Err(TotpError::WrongCode),
    }
}

/// The `otpauth://` URI an authenticator app enrols from (Key URI Format, as published by
/// Google Authenticator and followed by the others).
///
/// The label is `latchd:<email>`, percent-encoded as an RFC 3986 path segment: unreserved
/// characters and `@` stay as they are, every other byte of the UTF-8 becomes `%XX`. `@` is a
/// `pchar` (RFC 3986 §3.3), and the Key URI Format's own example label is
/// `Example:alice@google.com`. The separating `:` is literal, as the format allows.
pub fn otpauth_uri(secret: &TotpSecret, email: &str) -> String {
    let mut uri = String::with_capacity(128);
    uri.push_str("otpauth://totp/");
    push_label_part(&mut uri, ISSUER);
    uri.push(':');
    push_label_part(&mut uri, email);
    uri.push_str("?secret=");
    uri.push_str(&secret.to_base32());
    uri.push_str("&issuer=");
    push_label_part(&mut uri, ISSUER);
    write!(uri, "&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}")
        .expect("writing to a String cannot fail");
    uri
}

/// Exactly six ASCII digits, once surrounding ASCII whitespace and the single spaces that
/// apps print between groups (`123 456`) are taken out.
fn parse_code(presented: &str) -> Result<[u8; 6], TotpError> {
    let mut code = [0u8; 6];
    let mut len = 0usize;
    let mut last_was_space = true; // no space before the first digit
    for &b in presented.trim_ascii().as_bytes() {
        match b {
            b' ' if !last_was_space => last_was_space = true,
            b'0'..=b'9' => {
                *code.get_mut(len).ok_or(TotpError::Malformed)? = b;
                len = len.saturating_add(1);
                last_was_space = false;
            }
            _ => return Err(TotpError::Malformed),
        }
    }
    if len != code.len() {
        return Err(TotpError::Malformed);
    }
    Ok(code)
}

/// `code` as six ASCII digits with leading zeros (RFC 4226 §5.3 keeps them).
fn ascii_digits(code: u32) -> [u8; 6] {
    let mut out = [b'0'; 6];
    let mut rest = code;
    for slot in out.iter_mut().rev() {
        let digit = rest.checked_rem(10).and_then(|d| u8::try_from(d).ok());
        *slot = b'0'.saturating_add(digit.unwrap_or(0));
        rest = rest.checked_div(10).unwrap_or(0);
    }
    out
}

/// Equality without an early exit, so timing does not reveal how many leading digits match.
fn digits_equal(a: [u8; 6], b: [u8; 6]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Appends `part` percent-encoded, keeping RFC 3986 unreserved characters and `@`.
fn push_label_part(out: &mut String, part: &str) {
    for b in part.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(char::from(b));
        } else {
            write!(out, "%{b:02X}").expect("writing to a String cannot fail");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RFC 6238 Appendix B (and RFC 4226 Appendix D) SHA-1 secret.
    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(*b"12345678901234567890")
    }

    /// A time in the middle of a step, and that step.
    const NOW: UnixTime = UnixTime(1_111_111_111);
    const STEP: u64 = 37_037_037;

    fn code(step: u64) -> String {
        format!("{:06}", code_at(&rfc_secret(), step, DIGITS))
    }

    #[test]
    fn rfc_6238_appendix_b_sha1_vectors() {
        let vectors = [
            (59, 0x0000_0000_0000_0001, "94287082"),
            (1_111_111_109, 0x0000_0000_0235_23EC, "07081804"),
            (1_111_111_111, 0x0000_0000_0235_23ED, "14050471"),
            (1_234_567_890, 0x0000_0000_0273_EF07, "89005924"),
            (2_000_000_000, 0x0000_0000_03F9_40AA, "69279037"),
            (20_000_000_000, 0x0000_0000_27BC_86AA, "65353130"),
        ];
        for (time, step, totp) in vectors {
            assert_eq!(step_at(UnixTime(time)), step, "T at {time}");
            let got = format!("{:08}", code_at(&rfc_secret(), step, 8));
            assert_eq!(got, totp, "TOTP at {time}");
        }
    }

    #[test]
    fn rfc_4226_appendix_d_truncation_and_six_digits() {
        // (truncated 31-bit value, its 6-digit HOTP) for counters 0..=9.
        let vectors = [
            (1_284_755_224, "755224"),
            (1_094_287_082, "287082"),
            (137_359_152, "359152"),
            (1_726_969_429, "969429"),
            (1_640_338_314, "338314"),
            (868_254_676, "254676"),
            (1_918_287_922, "287922"),
            (82_162_583, "162583"),
            (673_399_871, "399871"),
            (645_520_489, "520489"),
        ];
        for (counter, (truncated, hotp)) in (0u64..).zip(vectors) {
            assert_eq!(code_at(&rfc_secret(), counter, 10), truncated, "{counter}");
            assert_eq!(code(counter), hotp, "{counter}");
            assert_eq!(
                ascii_digits(code_at(&rfc_secret(), counter, 6)),
                hotp.as_bytes()
            );
        }
    }

    #[test]
    fn steps_are_30_seconds_from_the_epoch() {
        assert_eq!(step_at(UnixTime(0)), 0);
        assert_eq!(step_at(UnixTime(29)), 0);
        assert_eq!(step_at(UnixTime(30)), 1);
        assert_eq!(step_at(NOW), STEP);
        assert_eq!(step_at(UnixTime(-1)), 0, "before the epoch");
        assert_eq!(step_at(UnixTime(i64::MIN)), 0);
        assert_eq!(step_at(UnixTime(i64::MAX)), 307_445_734_561_825_860);
    }

    #[test]
    fn leading_zeros_are_kept() {
        assert_eq!(ascii_digits(0), *b"000000");
        assert_eq!(ascii_digits(7), *b"000007");
        assert_eq!(ascii_digits(81_804), *b"081804");
        assert_eq!(ascii_digits(999_999), *b"999999");
    }

    #[test]
    fn one_step_of_skew_either_way_is_accepted_two_are_not() {
        let secret = rfc_secret();
        for step in [STEP - 1, STEP, STEP + 1] {
            assert_eq!(verify(&secret, &code(step), NOW, None), Ok(step), "{step}");
        }
        for step in [STEP - 2, STEP + 2] {
            let presented = code(step);
            // The refusal below must come from the window, not from a collision.
            assert!([STEP - 1, STEP, STEP + 1]
                .iter()
                .all(|s| code(*s) != presented));
            assert_eq!(
                verify(&secret, &presented, NOW, None),
                Err(TotpError::WrongCode),
                "{step}"
            );
        }
        // The window edges are whole steps: the first and last second of the current one.
        let first = UnixTime(i64::try_from(STEP).unwrap() * STEP_SECS);
        let last = first.plus(STEP_SECS - 1);
        assert_eq!(verify(&secret, &code(STEP + 1), first, None), Ok(STEP + 1));
        assert_eq!(verify(&secret, &code(STEP - 1), last, None), Ok(STEP - 1));
        assert_eq!(
            verify(&secret, &code(STEP + 2), last, None),
            Err(TotpError::WrongCode)
        );
    }

    #[test]
    fn a_step_is_accepted_once() {
        let secret = rfc_secret();
        let accepted = verify(&secret, &code(STEP), NOW, None).unwrap();
        assert_eq!(
            verify(&secret, &code(STEP), NOW, Some(accepted)),
            Err(TotpError::Replayed)
        );
        // An earlier step than the last accepted one is a replay too, even inside the window.
        assert_eq!(
            verify(&secret, &code(STEP - 1), NOW, Some(STEP)),
            Err(TotpError::Replayed)
        );
        // A code accepted ahead of time uses up the steps before it.
        assert_eq!(
            verify(&secret, &code(STEP), NOW, Some(STEP + 1)),
            Err(TotpError::Replayed)
        );
        // The next step is still good.
        assert_eq!(
            verify(&secret, &code(STEP + 1), NOW, Some(STEP)),
            Ok(STEP + 1)
        );
        assert_eq!(verify(&secret, &code(STEP), NOW, Some(STEP - 1)), Ok(STEP));
        // A wrong code stays wrong, whatever was accepted before.
        assert_eq!(
            verify(&secret, &code(STEP + 5), NOW, Some(STEP)),
            Err(TotpError::WrongCode)
        );
    }

    #[test]
    fn the_first_step_has_no_step_before_it() {
        let secret = rfc_secret();
        assert_eq!(verify(&secret, &code(0), UnixTime(0), None), Ok(0));
        assert_eq!(verify(&secret, &code(1), UnixTime(0), None), Ok(1));
        let end = UnixTime(i64::MAX);
        let top = step_at(end);
        assert_eq!(verify(&secret, &code(top + 1), end, None), Ok(top + 1));
    }

    #[test]
    fn every_malformed_code_is_refused_even_around_the_right_digits() {
        let secret = rfc_secret();
        let right = code(STEP);
        let cases = [
            ("empty", String::new()),
            ("blank", "      ".to_owned()),
            ("five digits", right[..5].to_owned()),
            ("seven digits", format!("{right}0")),
            ("eight digits", format!("{right}00")),
            ("a letter", format!("{}a", &right[..5])),
            (
                "two inner spaces",
                format!("{}  {}", &right[..3], &right[3..]),
            ),
            ("inner tab", format!("{}\t{}", &right[..3], &right[3..])),
            ("inner hyphen", format!("{}-{}", &right[..3], &right[3..])),
            ("plus sign", format!("+{}", &right[..5])),
            ("minus sign", format!("-{}", &right[..5])),
            ("nul", format!("{right}\0")),
            ("fullwidth digits", "１２３４５６".to_owned()),
            ("arabic-indic digits", "٠١٢٣٤٥".to_owned()),
            ("no-break space", format!("\u{a0}{right}")),
            ("ideographic space", format!("{right}\u{3000}")),
        ];
        for (name, presented) in cases {
            assert_eq!(
                verify(&secret, &presented, NOW, None),
                Err(TotpError::Malformed),
                "{name}: {presented:?}"
            );
        }
    }

    #[test]
    fn surrounding_ascii_whitespace_is_trimmed_and_a_space_between_groups_is_read_past() {
        let secret = rfc_secret();
        let right = code(STEP);
        for presented in [
            format!(" {right}"),
            format!("{right}\n"),
            format!("\t {right} \r\n"),
            format!("{} {}", &right[..3], &right[3..]),
            format!("{} {} {}", &right[..2], &right[2..4], &right[4..]),
        ] {
            assert_eq!(
                verify(&secret, &presented, NOW, None),
                Ok(STEP),
                "{presented:?}"
            );
        }
    }

    #[test]
    fn base32_round_trips_and_is_exactly_what_to_base32_writes() {
        let secret = rfc_secret();
        let text = secret.to_base32();
        assert_eq!(text, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(
            TotpSecret::from_base32(&text).unwrap().as_bytes(),
            secret.as_bytes()
        );
        for bytes in [[0u8; SECRET_BYTES], [0xff; SECRET_BYTES]] {
            let s = TotpSecret::from_bytes(bytes);
            assert_eq!(s.to_base32().len(), SECRET_CHARS);
            assert_eq!(
                TotpSecret::from_base32(&s.to_base32()).unwrap().as_bytes(),
                &bytes
            );
        }
        assert_eq!(TotpSecret::from_bytes([0; 20]).to_base32(), "A".repeat(32));
        assert_eq!(
            TotpSecret::from_bytes([0xff; 20]).to_base32(),
            "7".repeat(32)
        );
    }

    #[test]
    fn other_secret_texts_are_refused() {
        let good = rfc_secret().to_base32();
        let cases = [
            ("empty", String::new(), TotpError::SecretLength),
            ("one short", good[..31].to_owned(), TotpError::SecretLength),
            ("one long", format!("{good}A"), TotpError::SecretLength),
            ("padded", format!("{good}===="), TotpError::SecretLength),
            ("lowercase", good.to_lowercase(), TotpError::SecretNotBase32),
            (
                "digit 1",
                format!("1{}", &good[1..]),
                TotpError::SecretNotBase32,
            ),
            (
                "digit 8",
                format!("{}8", &good[..31]),
                TotpError::SecretNotBase32,
            ),
            (
                "inner space",
                format!("{} {}", &good[..15], &good[16..]),
                TotpError::SecretNotBase32,
            ),
            (
                "padding inside",
                format!("{}=", &good[..31]),
                TotpError::SecretNotBase32,
            ),
            (
                "non-ASCII",
                format!("{}é", &good[..30]),
                TotpError::SecretNotBase32,
            ),
        ];
        for (name, text, want) in cases {
            assert_eq!(TotpSecret::from_base32(&text).err(), Some(want), "{name}");
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let secret = rfc_secret();
        let shown = format!("{secret:?}");
        assert_eq!(shown, "TotpSecret(..)");
        assert!(!shown.contains(&secret.to_base32()));
    }

    #[test]
    fn otpauth_uri_has_the_key_uri_format() {
        assert_eq!(
            otpauth_uri(&rfc_secret(), "alice@example.com"),
            "otpauth://totp/latchd:alice@example.com\
             ?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=latchd\
             &algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn otpauth_label_encodes_all_but_unreserved_and_at() {
        let uri = otpauth_uri(&rfc_secret(), "a b+c/d:e?f#g%h&i=j@k.l-m_n~o\"<>'\u{fc}");
        let label = uri
            .strip_prefix("otpauth://totp/latchd:")
            .and_then(|rest| rest.split_once("?secret=").map(|(label, _)| label))
            .unwrap();
        assert_eq!(
            label,
            "a%20b%2Bc%2Fd%3Ae%3Ff%23g%25h%26i%3Dj@k.l-m_n~o%22%3C%3E%27%C3%BC"
        );
        // Nothing the email holds can end the label or add a parameter.
        assert_eq!(uri.matches('?').count(), 1);
        assert_eq!(uri.matches('&').count(), 4);
    }
}
