//! HTTP dates (RFC 9110 §5.6.7): formatting the IMF-fixdate form from Unix seconds, and
//! parsing all three forms a recipient must accept back to Unix seconds.
//!
//! Never reads the clock: the one rule of §5.6.7 that needs "now" (two-digit years) uses a
//! fixed pivot instead, see [`HttpDate::parse`].

/// An IMF-fixdate such as `Sun, 06 Nov 1994 08:49:37 GMT`: always 29 bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HttpDate([u8; HttpDate::LEN]);

const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// 9999-12-31T23:59:59Z: the last second a four-digit year can show.
const MAX_SECS: i64 = 253_402_300_799;

impl HttpDate {
    pub const LEN: usize = 29;

    /// Formats `secs` after the Unix epoch, clamped to years 1970..=9999.
    pub fn from_unix(secs: i64) -> HttpDate {
        let secs = secs.clamp(0, MAX_SECS);
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
        out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
        two(&mut out[5..7], day);
        out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
        two(&mut out[12..14], year / 100);
        two(&mut out[14..16], year % 100);
        two(&mut out[17..19], rem / 3600);
        two(&mut out[20..22], rem % 3600 / 60);
        two(&mut out[23..25], rem % 60);
        HttpDate(out)
    }

    pub fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }

    /// Parses an HTTP-date to seconds since the Unix epoch (RFC 9110 §5.6.7), or `None`.
    ///
    /// Accepts exactly the three forms of the grammar, case-sensitively (§5.6.7: "HTTP-date
    /// is case sensitive"), with surrounding whitespace trimmed:
    /// - IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`;
    /// - obsolete RFC 850: `Sunday, 06-Nov-94 08:49:37 GMT`;
    /// - obsolete asctime: `Sun Nov  6 08:49:37 1994`.
    ///
    /// The month, the day of the month (leap years included), the hour (≤ 23) and the
    /// minute (≤ 59) are checked; a leap second (60) is read as 59. The weekday must be a
    /// weekday's name but is not checked against the date.
    ///
    /// An RFC 850 two-digit year 70..=99 is 19xx and 00..=69 is 20xx. §5.6.7 instead reads
    /// a year "more than 50 years in the future" as the past century, which needs a clock;
    /// the two rules differ only for years that a sliding window would place in the 2070s,
    /// and this one errs towards the past, the safe side for both If-Modified-Since (no
    /// spurious 304) and If-Unmodified-Since (a 412 rather than a lost update).
    pub fn parse(s: &[u8]) -> Option<i64> {
        let s = s.trim_ascii();
        match s.get(3)? {
            b',' => parse_imf_fixdate(s),
            b' ' => parse_asctime(s),
            _ => parse_rfc850(s),
        }
    }
}

const LONG_DAYS: [&[u8]; 7] = [
    b"Monday",
    b"Tuesday",
    b"Wednesday",
    b"Thursday",
    b"Friday",
    b"Saturday",
    b"Sunday",
];

/// `Sun, 06 Nov 1994 08:49:37 GMT`
fn parse_imf_fixdate(s: &[u8]) -> Option<i64> {
    let s: &[u8; 29] = s.try_into().ok()?;
    if !is_day(&s[..3])
        || &s[3..5] != b", "
        || s[7] != b' '
        || s[11] != b' '
        || s[16] != b' '
        || &s[25..] != b" GMT"
    {
        return None;
    }
    let year = number(&s[12..16])?;
    to_unix(year, month(&s[8..11])?, number(&s[5..7])?, &s[17..25])
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`
fn parse_rfc850(s: &[u8]) -> Option<i64> {
    let rest = LONG_DAYS.iter().find_map(|day| s.strip_prefix(*day))?;
    let s: &[u8; 24] = rest.try_into().ok()?;
    if &s[..2] != b", " || s[4] != b'-' || s[8] != b'-' || s[11] != b' ' || &s[20..] != b" GMT" {
        return None;
    }
    let yy = number(&s[9..11])?;
    let year = if yy >= 70 { 1900 + yy } else { 2000 + yy };
    to_unix(year, month(&s[5..8])?, number(&s[2..4])?, &s[12..20])
}

/// `Sun Nov  6 08:49:37 1994`: the day is two digits or a space and one digit.
fn parse_asctime(s: &[u8]) -> Option<i64> {
    let s: &[u8; 24] = s.try_into().ok()?;
    if !is_day(&s[..3]) || s[3] != b' ' || s[7] != b' ' || s[10] != b' ' || s[19] != b' ' {
        return None;
    }
    let day = match s[8..10] {
        [b' ', d] => number(&[d])?,
        _ => number(&s[8..10])?,
    };
    to_unix(number(&s[20..24])?, month(&s[4..7])?, day, &s[11..19])
}

/// Validates a date and a `hh:mm:ss` time of day and converts them to Unix seconds.
fn to_unix(year: i64, month: i64, day: i64, time: &[u8]) -> Option<i64> {
    let [h1, h2, b':', m1, m2, b':', s1, s2] = *time else {
        return None;
    };
    let (hour, minute, second) = (number(&[h1, h2])?, number(&[m1, m2])?, number(&[s1, s2])?);
    if !(1..=month_len(year, month)).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second.min(59))
}

/// A run of ASCII digits as a number (at most four digits reach here).
fn number(digits: &[u8]) -> Option<i64> {
    digits.iter().try_fold(0, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
    })
}

fn is_day(name: &[u8]) -> bool {
    DAYS.iter().any(|d| &d[..] == name)
}

/// 1..=12 from `Jan`..`Dec`.
fn month(name: &[u8]) -> Option<i64> {
    let i = MONTHS.iter().position(|m| &m[..] == name)?;
    Some(i as i64 + 1)
}

fn month_len(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl std::fmt::Debug for HttpDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::str::from_utf8(&self.0).unwrap_or("?"))
    }
}

fn two(out: &mut [u8], n: i64) {
    out[0] = b'0' + (n / 10) as u8;
    out[1] = b'0' + (n % 10) as u8;
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31) in the proleptic Gregorian
/// calendar (H. Hinnant's `civil_from_days`).
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
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

/// (year, month 1..=12, day 1..=31) to days since 1970-01-01 in the proleptic Gregorian
/// calendar (H. Hinnant's `days_from_civil`, the inverse of [`civil_from_days`]).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_dates() {
        let cases: &[(i64, &str)] = &[
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (1_709_164_800, "Thu, 29 Feb 2024 00:00:00 GMT"),
            (1_798_761_599, "Thu, 31 Dec 2026 23:59:59 GMT"),
            (4_107_542_400, "Mon, 01 Mar 2100 00:00:00 GMT"),
            (-5, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (i64::MAX, "Fri, 31 Dec 9999 23:59:59 GMT"),
        ];
        for &(secs, want) in cases {
            assert_eq!(
                format!("{:?}", HttpDate::from_unix(secs)),
                want,
                "secs={secs}"
            );
        }
    }

    /// Every day for 200 years against a naive day-by-day calendar walk.
    #[test]
    fn matches_naive_calendar() {
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let (mut y, mut m, mut d) = (1970, 1, 1);
        for days in 0..(200 * 366) {
            assert_eq!(civil_from_days(days), (y, m, d), "days={days}");
            let month_len = match m {
                2 if leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > month_len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn parses_the_three_forms() {
        let cases: &[(&str, i64)] = &[
            ("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_777),
            ("Sunday, 06-Nov-94 08:49:37 GMT", 784_111_777),
            ("Sun Nov  6 08:49:37 1994", 784_111_777),
            ("Sun Nov 16 08:49:37 1994", 784_111_777 + 10 * 86_400),
            ("  Sun, 06 Nov 1994 08:49:37 GMT\t", 784_111_777),
            // The weekday is not checked against the date.
            ("Mon, 06 Nov 1994 08:49:37 GMT", 784_111_777),
            ("Thu, 01 Jan 1970 00:00:00 GMT", 0),
            ("Wed, 31 Dec 1969 23:59:59 GMT", -1),
            ("Tue, 29 Feb 2000 00:00:00 GMT", 951_782_400),
            ("Thu, 29 Feb 2024 00:00:00 GMT", 1_709_164_800),
            ("Fri, 31 Dec 9999 23:59:59 GMT", 253_402_300_799),
            // A leap second is read as the second before it.
            ("Sat, 31 Dec 2016 23:59:60 GMT", 1_483_228_799),
            // Two-digit years: 70..=99 are 19xx, 00..=69 are 20xx.
            ("Thursday, 01-Jan-70 00:00:00 GMT", 0),
            ("Friday, 31-Dec-99 23:59:59 GMT", 946_684_799),
            ("Saturday, 01-Jan-00 00:00:00 GMT", 946_684_800),
            ("Tuesday, 31-Dec-69 00:00:00 GMT", 3_155_673_600),
        ];
        for &(raw, want) in cases {
            assert_eq!(HttpDate::parse(raw.as_bytes()), Some(want), "{raw:?}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for raw in [
            "",
            "Sun",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 08:49:37 gmt",
            "sun, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 nov 1994 08:49:37 GMT",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 94 08:49:37 GMT",
            "Sun,  06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT x",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "Sun, 00 Nov 1994 08:49:37 GMT",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 30 Feb 2000 08:49:37 GMT",
            "Sun, 29 Feb 1900 08:49:37 GMT",
            "Sun, 29 Feb 2023 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:60:37 GMT",
            "Sun, 06 Nov 1994 08:49:61 GMT",
            "Sun, 06 Nov 1994 08-49-37 GMT",
            "Sun, +6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov -994 08:49:37 GMT",
            "Sun, 06 Xyz 1994 08:49:37 GMT",
            "Sun, 06-Nov-94 08:49:37 GMT",
            "Sunday, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37",
            "Someday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov 6 08:49:37 1994",
            "Sun Nov  6 08:49:37 94",
            "Sun Nov 06 08:49:37 1994 GMT",
            "Sun Nov 31 08:49:37 1994",
            "1994-11-06T08:49:37Z",
            "784111777",
        ] {
            assert_eq!(HttpDate::parse(raw.as_bytes()), None, "{raw:?}");
        }
    }

    /// Every formatted date parses back to its second, and so do the two obsolete forms of
    /// the same instant, rebuilt from the IMF-fixdate's fields.
    #[test]
    fn parse_inverts_from_unix() {
        let long_day = |short: &str| {
            LONG_DAYS
                .iter()
                .map(|d| std::str::from_utf8(d).unwrap())
                .find(|d| d.starts_with(short))
                .unwrap()
        };
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for i in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Half over all representable seconds, half within 1970..2070 for RFC 850.
            let t = if i % 2 == 0 {
                (seed % (MAX_SECS as u64 + 1)) as i64
            } else {
                (seed % 3_155_760_000) as i64
            };
            let imf = format!("{:?}", HttpDate::from_unix(t));
            assert_eq!(HttpDate::parse(imf.as_bytes()), Some(t), "{imf}");
            // "Sun, 06 Nov 1994 08:49:37 GMT"
            let (day, dd, mon, year, time) = (
                &imf[..3],
                &imf[5..7],
                &imf[8..11],
                &imf[12..16],
                &imf[17..25],
            );
            let asctime = format!(
                "{day} {mon} {:>2} {time} {year}",
                dd.trim_start_matches('0')
            );
            assert_eq!(HttpDate::parse(asctime.as_bytes()), Some(t), "{asctime}");
            if t < 3_155_760_000 {
                let rfc850 = format!("{}, {dd}-{mon}-{} {time} GMT", long_day(day), &year[2..]);
                assert_eq!(HttpDate::parse(rfc850.as_bytes()), Some(t), "{rfc850}");
            }
        }
    }

    #[test]
    fn days_from_civil_inverts_civil_from_days() {
        for days in (-800_000..3_000_000).step_by(7) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
