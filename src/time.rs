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

    /// The time as an RFC 3339 UTC timestamp, e.g. `2026-11-23T18:07:15Z`.
    pub fn to_rfc3339(self) -> String {
        let days = self.0.div_euclid(86_400);
        let secs = self.0.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        )
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

/// Year, month, day of a count of days since 1970-01-01 in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(UnixTime(0).to_rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(UnixTime(951_782_400).to_rfc3339(), "2000-02-29T00:00:00Z");
        assert_eq!(UnixTime(1_795_457_235).to_rfc3339(), "2026-11-23T18:07:15Z");
        assert_eq!(UnixTime(-1).to_rfc3339(), "1969-12-31T23:59:59Z");
    }

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
