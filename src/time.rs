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

    /// The time of an RFC 3339 UTC timestamp in the form [`to_rfc3339`](Self::to_rfc3339)
    /// writes (`2026-11-23T18:07:15Z`: whole seconds, `Z`); `None` for anything else.
    pub fn from_rfc3339(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        let shape = b.len() == 20
            && [4, 7].iter().all(|&i| b.get(i) == Some(&b'-'))
            && b.get(10) == Some(&b'T')
            && [13, 16].iter().all(|&i| b.get(i) == Some(&b':'))
            && b.get(19) == Some(&b'Z');
        if !shape {
            return None;
        }
        let num = |from: usize, to: usize| -> Option<i64> {
            let digits = text.get(from..to)?;
            digits
                .bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| digits.parse().ok())?
        };
        let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
        let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
        if !(1..=12).contains(&month) || hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        let days = days_from_civil(year, month, day);
        // A day past the month's end (`02-30`) comes back as another date: refused.
        if day < 1 || civil_from_days(days) != (year, month, day) {
            return None;
        }
        Some(Self(days * 86_400 + hour * 3600 + minute * 60 + second))
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

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`),
/// for years 0-9999.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_parses_what_it_formats_and_nothing_else() {
        for t in [0, 951_782_400, 1_795_457_235, -1, 4_102_444_799] {
            let text = UnixTime(t).to_rfc3339();
            assert_eq!(UnixTime::from_rfc3339(&text), Some(UnixTime(t)), "{text}");
        }
        for bad in [
            "",
            "2026-11-23",
            "2026-11-23T18:07:15",
            "2026-11-23T18:07:15+00:00",
            "2026-11-23T18:07:15.5Z",
            "2026-11-23 18:07:15Z",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-00T00:00:00Z",
            "2026-11-23T24:00:00Z",
            "2026-11-23T18:60:00Z",
            "2026-11-23T18:07:60Z",
            "+026-11-23T18:07:15Z",
            "2026-1a-23T18:07:15Z",
        ] {
            assert_eq!(UnixTime::from_rfc3339(bad), None, "{bad:?}");
        }
    }

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
