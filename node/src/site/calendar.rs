//! Calendar arithmetic without a time-zone database: proleptic Gregorian day numbers (Howard
//! Hinnant's algorithms), DICOM DA/TM values and RFC 3339 timestamps, all in UTC.

/// Shifts a DICOM DA value (YYYYMMDD) by `days`; `None` for anything that is not a valid date.
pub fn shift_da(da: &str, days: i64) -> Option<String> {
    let da = da.trim();
    if da.len() != 8 || !da.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let y: i64 = da.get(0..4)?.parse().ok()?;
    let m: i64 = da.get(4..6)?.parse().ok()?;
    let d: i64 = da.get(6..8)?.parse().ok()?;
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let (y, m, d) = civil_from_days(days_from_civil(y, m, d) + days);
    if !(1..=9999).contains(&y) {
        return None;
    }
    Some(format!("{y:04}{m:02}{d:02}"))
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A Unix time as DICOM (DA, TM) in UTC: ("YYYYMMDD", "HHMMSS").
pub fn utc_date_time(unix_seconds: i64) -> (String, String) {
    let days = unix_seconds.div_euclid(86_400);
    let secs = unix_seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    (
        format!("{y:04}{m:02}{d:02}"),
        format!("{:02}{:02}{:02}", secs / 3600, secs / 60 % 60, secs % 60),
    )
}

/// A Unix time as RFC 3339 in UTC.
pub fn rfc3339(unix_seconds: i64) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let secs = unix_seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_shift_across_months_years_and_leap_days() {
        assert_eq!(shift_da("20240228", 1).as_deref(), Some("20240229"));
        assert_eq!(shift_da("20240229", 1).as_deref(), Some("20240301"));
        assert_eq!(shift_da("20231231", 1).as_deref(), Some("20240101"));
        assert_eq!(shift_da("20000101", -1).as_deref(), Some("19991231"));
        assert_eq!(shift_da("20230229", 1), None);
        assert_eq!(shift_da("2023-01-01", 1), None);
        assert_eq!(shift_da("", 1), None);
    }

    #[test]
    fn unix_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        // Reference values from Python's datetime.utcfromtimestamp.
        assert_eq!(rfc3339(1_795_838_643), "2026-11-28T04:04:03Z");
        assert_eq!(
            utc_date_time(951_782_400 + 3661),
            ("20000229".into(), "010101".into())
        );
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }
}
