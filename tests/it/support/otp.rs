//! The tests' own authenticator app: RFC 6238 TOTP (HMAC-SHA1, 30 s, 6 digits) from the
//! base32 secret latchd shows, written here from the RFC rather than taken from latchd, so
//! that the tests check latchd against the standard and not against itself.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A secret as the authenticator app keeps it.
#[derive(Clone, Debug)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// The secret of `base32` (RFC 4648, upper case, no padding), as latchd shows it; spaces
    /// between groups are ignored, as authenticator apps ignore them.
    pub fn from_base32(base32: &str) -> Self {
        const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let mut bits = 0u32;
        let mut held = 0u32;
        let mut out = Vec::new();
        for c in base32.bytes().filter(|b| *b != b' ') {
            let value = ALPHABET
                .iter()
                .position(|a| *a == c)
                .unwrap_or_else(|| panic!("{c:?} is not base32 in {base32}"));
            // At most 12 bits are held: the 7 left over from the last byte and these 5.
            bits = (bits << 5 | u32::try_from(value).expect("< 32")) & 0xfff;
            held += 5;
            if held >= 8 {
                held -= 8;
                out.push(u8::try_from((bits >> held) & 0xff).expect("masked"));
            }
        }
        Self(out)
    }

    /// The code of time step `step` (RFC 4226 §5.3 over RFC 6238's T).
    pub fn code_at_step(&self, step: u64) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &self.0);
        let mac = ring::hmac::sign(&key, &step.to_be_bytes());
        let mac = mac.as_ref();
        let offset = usize::from(mac[19] & 0x0f);
        let binary = u32::from_be_bytes([
            mac[offset],
            mac[offset + 1],
            mac[offset + 2],
            mac[offset + 3],
        ]) & 0x7fff_ffff;
        format!("{:06}", binary % 1_000_000)
    }

    /// The code at `unix_secs`.
    pub fn code_at(&self, unix_secs: i64) -> String {
        self.code_at_step(step_of(unix_secs))
    }
}

/// The time step `unix_secs` falls in.
pub fn step_of(unix_secs: i64) -> u64 {
    u64::try_from(unix_secs / 30).expect("after 1970")
}

/// Now, in whole seconds.
pub fn now_secs() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(since.as_secs()).expect("fits")
}

/// Waits until at least `margin_secs` remain in the current time step of a clock `offset`
/// seconds ahead of this one, and returns that clock's time: a test that then needs its codes
/// judged in that step does not straddle a boundary. Bounded: at most one step.
pub fn steady(offset: i64, margin_secs: i64) -> i64 {
    assert!(
        margin_secs < 25,
        "a margin of {margin_secs} s leaves no time to work"
    );
    loop {
        let now = now_secs() + offset;
        let left = 30 - now.rem_euclid(30);
        if left >= margin_secs {
            return now;
        }
        std::thread::sleep(Duration::from_secs(u64::try_from(left).unwrap_or(1)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_6238_appendix_b_sha1_vectors() {
        // The RFC's SHA-1 secret is the ASCII "12345678901234567890"; its codes have 8 digits,
        // of which the last 6 are the 6-digit code.
        let secret = Secret(b"12345678901234567890".to_vec());
        for (time, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(secret.code_at(time), code, "T = {time}");
        }
        assert_eq!(
            Secret::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").0,
            b"12345678901234567890"
        );
    }
}
