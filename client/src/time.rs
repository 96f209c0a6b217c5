//! Time helpers: the clock read (the only one in the client), UTC display,
//! and human durations such as `30d`.

use std::time::{SystemTime, UNIX_EPOCH};

use medrelay_crypto::Timestamp;

use crate::ClientError;

/// Longest duration accepted for a grant: ten years.
pub const MAX_DURATION_SECS: u64 = 10 * 366 * 86_400;

/// The current time.
pub fn now() -> Timestamp {
    Timestamp(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0))
}

/// Parses `90s`, `45m`, `12h`, `30d` or `2w` (a positive whole number and
/// one unit) into seconds, at most [`MAX_DURATION_SECS`].
pub fn parse_duration(text: &str) -> Result<u64, ClientError> {
    let bad = || ClientError::Invalid(format!("invalid duration {text:?}: use e.g. 90m, 12h, 30d or 2w"));
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (num, unit) = text.split_at(split);
    if num.is_empty() || num.len() > 12 {
        return Err(bad());
    }
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    let secs = n.checked_mul(mult).ok_or_else(bad)?;
    if secs == 0 || secs > MAX_DURATION_SECS {
        return Err(ClientError::Invalid(format!(
            "duration {text:?} out of range (1 second to {} days)",
            MAX_DURATION_SECS / 86_400
        )));
    }
    Ok(secs)
}

/// `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_utc(t: Timestamp) -> String {
    let secs = t.unix_seconds();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// An FHIR `instant`: `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_instant(t: Timestamp) -> String {
    let secs = t.unix_seconds();
    let (y, m, d) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
/// algorithm, for non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_bad_ones_are_refused() {
        assert_eq!(parse_duration("30d").unwrap(), 30 * 86_400);
        assert_eq!(parse_duration("90m").unwrap(), 5400);
        assert_eq!(parse_duration("2w").unwrap(), 14 * 86_400);
        assert_eq!(parse_duration("1s").unwrap(), 1);
        for bad in ["", "d", "30", "30x", "-1d", "0d", "3.5d", "99999999999999d", "4000d", "1 d"] {
            assert!(matches!(parse_duration(bad), Err(ClientError::Invalid(_))), "{bad}");
        }
    }

    #[test]
    fn utc_formatting_matches_known_dates() {
        assert_eq!(format_utc(Timestamp(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(Timestamp(951_782_400)), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_utc(Timestamp(1_800_000_000)), "2027-01-15 08:00:00 UTC");
        assert_eq!(format_instant(Timestamp(951_782_400)), "2000-02-29T00:00:00Z");
    }
}
