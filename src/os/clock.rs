//! "Now", as every rule about age and expiry sees it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time in whole seconds. A clock before 1970 reads as 0, which makes
/// every cache entry look as if it came from the future: refetched, never
/// trusted as fresh (see `state`).
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Unix time in milliseconds (mirror health: retry intervals below a second).
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Whole seconds since `t` (a file's mtime); 0 for a time in the future.
pub fn secs_since(t: SystemTime) -> u64 {
    SystemTime::now()
        .duration_since(t)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A Unix time as UTC calendar fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcFields {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

/// The UTC calendar fields of `t` (seconds since 1970; proleptic Gregorian,
/// H. Hinnant's civil_from_days).
pub fn utc_fields(t: i64) -> UtcFields {
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    UtcFields {
        year: yoe + era * 400 + i64::from(m <= 2),
        month: m as u32,
        day: d as u32,
        hour: (secs / 3600) as u32,
        minute: (secs % 3600 / 60) as u32,
        second: (secs % 60) as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_fields() {
        let f = |t| {
            let u = utc_fields(t);
            (u.year, u.month, u.day, u.hour, u.minute, u.second)
        };
        assert_eq!(f(0), (1970, 1, 1, 0, 0, 0));
        // 2000-02-29T23:59:59Z (a leap day of a century leap year)
        assert_eq!(f(951_868_799), (2000, 2, 29, 23, 59, 59));
        // 2026-11-27T12:53:30Z
        assert_eq!(f(1_795_784_010), (2026, 11, 27, 12, 53, 30));
        assert_eq!(f(-1), (1969, 12, 31, 23, 59, 59));
    }
}
