//! Wall-clock time as whole Unix seconds. The only call to `SystemTime::now()` in latchd.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (UTC), as JWT `NumericDate`s count them (RFC 7519 §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(pub i64);

impl UnixTime {
    /// The current time. A clock before 1970 reads as the epoch rather than failing.
    pub fn now() -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self(i64::try_from(secs).unwrap_or(i64::MAX))
    }

    /// The seconds value.
    pub fn secs(self) -> i64 {
        self.0
    }

    /// `self + secs`, saturating at the ends of `i64` (attacker numbers may be `i64::MAX`).
    #[must_use]
    pub fn plus(self, secs: i64) -> Self {
        Self(self.0.saturating_add(secs))
    }

    /// `self - secs`, saturating at the ends of `i64`.
    #[must_use]
    pub fn minus(self, secs: i64) -> Self {
        Self(self.0.saturating_sub(secs))
    }
}

impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        assert_eq!(UnixTime(i64::MAX).plus(5), UnixTime(i64::MAX));
        assert_eq!(UnixTime(i64::MIN).minus(5), UnixTime(i64::MIN));
        assert_eq!(UnixTime(10).plus(5).minus(3), UnixTime(12));
    }

    #[test]
    fn now_is_after_2024() {
        assert!(UnixTime::now() > UnixTime(1_704_067_200));
    }
}
