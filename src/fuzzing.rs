//! Fuzz entry points, shared by the cargo-fuzz targets in `fuzz/` and by the integration test
//! that replays their committed corpora on stable. Each takes raw bytes, must never panic on
//! them, and asserts properties of whatever it accepts.

use crate::time::UnixTime;
use crate::token::totp::{self, TotpError, TotpSecret};
use crate::token::{recovery, refresh};
use crate::token::{AccessClaims, AccessTokens, KeySecret, Keyring, Policy, RefreshKey};

/// A fuzz entry point.
pub type FuzzTarget = fn(&[u8]);

/// Every fuzz target by name, with its entry point.
pub const TARGETS: &[(&str, FuzzTarget)] = &[
    ("verify_token", verify_token),
    ("signed_token", signed_token),
    ("refresh_token", refresh_token),
    ("request_parts", request_parts),
    ("totp_input", totp_input),
];

/// The parsers of what a client sends besides tokens: the redirect check, form and query
/// decoding, cookies, `X-Forwarded-For`, forward-auth's original request and rules. The first
/// byte picks the parser.
///
/// # Panics
/// When a parser panics, or accepts what its rule refuses.
pub fn request_parts(data: &[u8]) {
    crate::http::fuzz_request_parts(data);
}

/// The fixed signing key of the fuzz keyring (also in `fuzz/README.md`, to build seeds).
pub const KEY: [u8; 32] = [0x42; 32];
/// The fixed TOTP secret of `totp_input`: the RFC 6238 Appendix B SHA-1 one. At [`NOW`] (step
/// 60000000) its codes are 385088, 768147 and 050219 for the steps before, at and after.
pub const TOTP_SECRET: [u8; 20] = *b"12345678901234567890";
/// The fixed "now" of the fuzz targets.
pub const NOW: UnixTime = UnixTime(1_800_000_000);
const LEEWAY_SECS: u32 = 5;

/// Arbitrary bytes into the access-token verifier with a fixed keyring.
///
/// # Panics
/// When the verifier accepts a token that breaks a rule (see `check_accepted`).
pub fn verify_token(data: &[u8]) {
    let tokens = tokens();
    if let Ok(claims) = tokens.verify(data, NOW) {
        check_accepted(&tokens, data, &claims);
    }
}

/// Arbitrary header and payload JSON, correctly signed, so the fuzzer reaches the rules that
/// sit behind the MAC. Input: `header` 0x00 `payload`; without a 0x00 the whole input is the
/// payload under the canonical header.
///
/// # Panics
/// When the verifier accepts a token that breaks a rule, or JSON `serde_json` refuses.
pub fn signed_token(data: &[u8]) {
    let tokens = tokens();
    let canonical = format!(
        r#"{{"alg":"HS256","typ":"at+jwt","kid":"{}"}}"#,
        tokens.keyring().signer_kid()
    );
    let (header, payload) = match data.iter().position(|&b| b == 0) {
        Some(at) => (
            data.get(..at).unwrap_or_default(),
            data.get(at + 1..).unwrap_or_default(),
        ),
        None => (canonical.as_bytes(), data),
    };
    assert!(
        crate::token::canonical_agrees(&tokens, payload),
        "the canonical fast path read the payload differently from the general reader"
    );
    let token = sign_segments(header, payload);
    if let Ok(claims) = tokens.verify(token.as_bytes(), NOW) {
        // Differential check: what the strict reader accepts, serde_json must read the same
        // way, except numbers serde_json cannot hold (RFC 8259 §6 lets parsers limit range;
        // latchd only ever reads integers of known claims, and those must fit i64).
        if let Some(parsed) = reference_json(payload) {
            assert_eq!(
                parsed["sub"].as_str(),
                Some(claims.sub.to_string().as_str())
            );
            assert_eq!(parsed["exp"].as_i64(), Some(claims.exp.secs()));
            assert_eq!(parsed["iss"].as_str(), Some("latchd"));
            assert_eq!(parsed["aud"].as_str(), Some("latchd"));
        }
        if let Some(header) = reference_json(header) {
            assert_eq!(header["alg"].as_str(), Some("HS256"));
            assert_eq!(header["typ"].as_str(), Some("at+jwt"));
        }
        check_accepted(&tokens, token.as_bytes(), &claims);
    }
}

/// Arbitrary bytes into the refresh-token parser with a fixed key.
///
/// # Panics
/// When it accepts text that is not a token minted under the key.
pub fn refresh_token(data: &[u8]) {
    let key = RefreshKey::new(&KEY);
    if let Ok(presented) = refresh::parse(&key, data) {
        // Only a minted token verifies, and minting is deterministic given the random bits.
        assert_eq!(data.len(), refresh::REFRESH_TOKEN_CHARS);
        assert_eq!(presented.unseal(&presented.seal(&[7; 32])), [7; 32]);
    }
}

/// Arbitrary bytes, as lossy UTF-8, into the second factor's parsers: [`totp::verify`] with a
/// fixed secret and `now`, [`recovery::normalize`] and [`TotpSecret::from_base32`].
///
/// # Panics
/// When a code is accepted that is not six digits of a step in the window, or accepted twice;
/// when a normalized recovery code does not normalize to itself; when a secret is accepted
/// from text other than what `to_base32` writes for it.
pub fn totp_input(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let secret = TotpSecret::from_bytes(TOTP_SECRET);
    if let Ok(step) = totp::verify(&secret, &text, NOW, None) {
        let code: String = text.trim_ascii().chars().filter(|c| *c != ' ').collect();
        assert!(
            code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
            "accepted {code:?}"
        );
        assert!(
            !text.trim_ascii().contains("  "),
            "accepted two spaces in a row: {text:?}"
        );
        let current = totp::step_at(NOW);
        assert!(
            step.saturating_add(totp::SKEW_STEPS) >= current
                && step <= current.saturating_add(totp::SKEW_STEPS),
            "accepted step {step} outside the window around {current}"
        );
        assert_eq!(
            format!("{:06}", totp::code_at(&secret, step, totp::DIGITS)),
            code
        );
        assert_ne!(
            totp::verify(&secret, &text, NOW, Some(step)),
            Ok(step),
            "accepted the same step twice"
        );
        assert_eq!(
            totp::verify(&secret, &text, NOW, Some(current.saturating_add(1))),
            Err(TotpError::Replayed)
        );
    }
    if let Some(once) = recovery::normalize(&text) {
        assert_eq!(once.len(), recovery::CODE_CHARS);
        assert_eq!(
            recovery::normalize(&once).as_deref(),
            Some(once.as_str()),
            "normalize is not canonical"
        );
    }
    if let Ok(parsed) = TotpSecret::from_base32(&text) {
        assert_eq!(parsed.to_base32(), text, "a second spelling of a secret");
    }
}

/// `bytes` as read by `serde_json`, `None` only when it refuses a number as out of range.
///
/// # Panics
/// When `serde_json` refuses `bytes` for any other reason.
fn reference_json(bytes: &[u8]) -> Option<serde_json::Value> {
    match serde_json::from_slice(bytes) {
        Ok(value) => Some(value),
        Err(e) if e.to_string().starts_with("number out of range") => None,
        Err(e) => panic!("accepted JSON that serde_json refuses: {e}"),
    }
}

fn tokens() -> AccessTokens {
    let secret = KeySecret::from_bytes(KEY.to_vec()).expect("the fuzz key is 32 bytes");
    AccessTokens::new(
        Keyring::new(&secret, &[]),
        Policy::new("latchd", "latchd", "latchd", LEEWAY_SECS),
    )
}

fn sign_segments(header: &[u8], payload: &[u8]) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &KEY);
    let tag = ring::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// What every accepted token must satisfy.
fn check_accepted(tokens: &AccessTokens, token: &[u8], claims: &AccessClaims) {
    let leeway = i64::from(LEEWAY_SECS);
    assert!(token.len() <= crate::token::MAX_TOKEN_BYTES);
    assert_eq!(memchr::memchr_iter(b'.', token).count(), 2);
    assert!(claims.exp > NOW.minus(leeway), "accepted an expired token");
    assert!(
        claims.nbf <= NOW.plus(leeway),
        "accepted a token before nbf"
    );
    assert!(
        claims.iat <= NOW.plus(leeway),
        "accepted a token from the future"
    );
    // Re-signing what was accepted yields a token that verifies to the same claims.
    let again = tokens.sign(claims);
    assert_eq!(tokens.verify(again.as_bytes(), NOW).as_ref(), Ok(claims));
}
