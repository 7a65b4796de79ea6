//! Time as the host reads and writes it: the clock, and the two UTC forms
//! people and files see. (Strategies never see either: their clocks are
//! virtual, see `capabilities::wasi`.)

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) for a Unix time in milliseconds: tables.
pub fn utc(ms: u64) -> String {
    let (y, m, d, hh, mm, ss) = civil(ms);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}")
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time in milliseconds: JSON and files.
pub fn iso_utc(ms: u64) -> String {
    let (y, m, d, hh, mm, ss) = civil(ms);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// The Gregorian date and time of day of a Unix time in milliseconds
/// (days to a civil date by Howard Hinnant's algorithm).
fn civil(ms: u64) -> (i64, i64, i64, u64, u64, u64) {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, (rem / 60) % 60, rem % 60)
}

/// Serde for a `Duration` as a number of seconds (campaign specs store
/// durations so; `#[serde(with = "crate::time::duration_secs")]`).
pub mod duration_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs_f64(f64::deserialize(d)?))
    }
}

/// [`duration_secs`] for an `Option<Duration>`.
pub mod duration_secs_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.map(Duration::from_secs_f64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_render_in_both_forms() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc(1_795_690_800_000), "2026-11-26 11:00:00");
        assert_eq!(iso_utc(1_795_690_800_999), "2026-11-26T11:00:00Z");
        assert_eq!(iso_utc(951_868_799_999), "2000-02-29T23:59:59Z");
        assert_eq!(iso_utc(1_709_251_199_000), "2024-02-29T23:59:59Z");
        assert_eq!(iso_utc(4_107_542_400_000), "2100-03-01T00:00:00Z");
        assert_eq!(iso_utc(13_569_465_600_000), "2400-01-01T00:00:00Z");
        // A tampered huge time still renders.
        assert!(iso_utc(u64::MAX).ends_with('Z'));
        // Every day boundary of four centuries, against a day-by-day count.
        let mut date = (1970i64, 1i64, 1i64);
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        for day in 0..146_097u64 {
            let (y, m, d, ..) = civil(day * 86_400_000);
            assert_eq!((y, m, d), date, "day {day}");
            let len = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][(date.1 - 1) as usize]
                + i64::from(date.1 == 2 && leap(date.0));
            date.2 += 1;
            if date.2 > len {
                date = (date.0 + (date.1 == 12) as i64, date.1 % 12 + 1, 1);
            }
        }
    }
}
