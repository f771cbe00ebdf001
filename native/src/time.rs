//! RFC 3339 timestamps as microseconds since the Unix epoch (UTC), and back.
//!
//! Read: only `YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|±HH:MM)`; other forms msgspec also reads (a
//! space, lower case, more digits) are refused, so the reference takes them. Written: as
//! msgspec writes a UTC datetime (`.ffffff` only when the microseconds are not zero, `Z`).

pub const MICROS_PER_DAY: i64 = 86_400_000_000;

pub fn parse(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(&b[0..4])?, num(&b[5..7])?, num(&b[8..10])?);
    let (hour, minute, second) = (num(&b[11..13])?, num(&b[14..16])?, num(&b[17..19])?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if year < 1 || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut at = 19;
    let mut micros = 0;
    if b[at] == b'.' {
        let start = at + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        if end == start || end - start > 6 {
            return None;
        }
        micros = num(&b[start..end])? * 10_i64.pow(6 - (end - start) as u32);
        at = end;
    }
    let offset_minutes = match &b[at..] {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (hours, minutes) = (num(&[*h1, *h2])?, num(&[*m1, *m2])?);
            if hours > 23 || minutes > 59 || (*sign == b'-' && hours == 0 && minutes == 0) {
                return None;
            }
            let total = hours * 60 + minutes;
            if *sign == b'-' {
                -total
            } else {
                total
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let local = days * MICROS_PER_DAY + ((hour * 60 + minute) * 60 + second) * 1_000_000 + micros;
    Some(local - offset_minutes * 60_000_000)
}

fn num(digits: &[u8]) -> Option<i64> {
    digits
        .iter()
        .try_fold(0_i64, |acc, d| d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0')))
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Whether `micros` (UTC) falls in years 1..=9999, as a Python datetime must.
pub fn in_years(micros: i64) -> bool {
    let first = days_from_civil(1, 1, 1) * MICROS_PER_DAY;
    let end = days_from_civil(10_000, 1, 1) * MICROS_PER_DAY;
    (first..end).contains(&micros)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Appends `micros` (UTC, years 1..=9999) as a JSON string.
pub fn write(out: &mut Vec<u8>, micros: i64) {
    out.push(b'"');
    write_bare(out, micros, b"Z");
    out.push(b'"');
}

/// Appends `micros` (UTC, years 1..=9999) as Python's `datetime.isoformat()` writes an aware
/// UTC datetime (`.ffffff` only when the microseconds are not zero, `+00:00`).
pub fn write_isoformat(out: &mut Vec<u8>, micros: i64) {
    write_bare(out, micros, b"+00:00");
}

fn write_bare(out: &mut Vec<u8>, micros: i64, zone: &[u8]) {
    let (days, rest) = (micros.div_euclid(MICROS_PER_DAY), micros.rem_euclid(MICROS_PER_DAY));
    let (year, month, day) = civil_from_days(days);
    let seconds = rest / 1_000_000;
    let fraction = rest % 1_000_000;
    let (hour, minute, second) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    digits(out, year, 4);
    out.push(b'-');
    digits(out, month, 2);
    out.push(b'-');
    digits(out, day, 2);
    out.push(b'T');
    digits(out, hour, 2);
    out.push(b':');
    digits(out, minute, 2);
    out.push(b':');
    digits(out, second, 2);
    if fraction != 0 {
        out.push(b'.');
        digits(out, fraction, 6);
    }
    out.extend_from_slice(zone);
}

/// Appends `value` (0 ..= 10^width - 1) in `width` digits, zero-padded.
fn digits(out: &mut Vec<u8>, value: i64, width: u32) {
    let mut divisor = 10_i64.pow(width - 1);
    while divisor > 0 {
        out.push(b'0' + (value / divisor % 10) as u8);
        divisor /= 10;
    }
}
