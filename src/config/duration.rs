//! Durations as operators write them (`1s`, `250ms`, `1m30s`, `40.95s`) and back.
//!
//! Parsing is exact integer arithmetic on nanoseconds: `40.95s` must come out as exactly 4095 centiseconds for
//! the VRRP advertisement interval check, which a float round trip does not guarantee.

use std::time::Duration;

const UNITS: [(&str, u128); 4] = [
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Longest duration accepted anywhere (a year); keeps the arithmetic far from overflow.
const MAX_NANOS: u128 = 366 * 24 * 3_600_000_000_000;

/// Parses one or more `<number><unit>` terms, units `ms`, `s`, `m`, `h`, number with an optional decimal
/// fraction. The error says why, to be prefixed by the value.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const HINT: &str = "is not a duration (e.g. 1s, 250ms, 1m)";
    if s.is_empty() {
        return Err(HINT.to_string());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        if num.is_empty() {
            return Err(HINT.to_string());
        }
        if unit.is_empty() {
            return Err("needs a unit (ms, s, m or h), e.g. 5s".to_string());
        }
        let Some((_, scale)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(format!("has unknown unit {unit:?} (use ms, s, m or h)"));
        };
        let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
        if int_part.is_empty()
            || frac_part.contains('.')
            || (num.contains('.') && frac_part.is_empty())
        {
            return Err(HINT.to_string());
        }
        let int: u128 = int_part.parse().map_err(|_| "is too large".to_string())?;
        if int > MAX_NANOS {
            return Err("is too large".to_string());
        }
        let mut nanos = int * scale;
        if !frac_part.is_empty() {
            if frac_part.len() > 12 {
                return Err("has too many decimal places".to_string());
            }
            let frac: u128 = frac_part.parse().map_err(|_| HINT.to_string())?;
            let denom = 10u128.pow(frac_part.len() as u32);
            if !(frac * scale).is_multiple_of(denom) {
                return Err("is finer than a nanosecond".to_string());
            }
            nanos += frac * scale / denom;
        }
        total += nanos;
        if total > MAX_NANOS {
            return Err("is too large".to_string());
        }
        rest = after;
    }
    Ok(Duration::from_nanos(total as u64))
}

/// The shortest spelling `parse_duration` reads back as the same value: `1s`, `250ms`, `40.95s`, `5m`, `1h30m`.
pub fn fmt_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if !nanos.is_multiple_of(1_000_000) {
        // Sub-millisecond values never come from a config file; print them exactly all the same.
        let secs = nanos / 1_000_000_000;
        let frac = format!("{:09}", nanos % 1_000_000_000);
        return format!("{secs}.{}s", frac.trim_end_matches('0'));
    }
    let ms = nanos / 1_000_000;
    if ms < 1000 {
        return format!("{ms}ms");
    }
    if !ms.is_multiple_of(1000) {
        let frac = format!("{:03}", ms % 1000);
        return format!("{}.{}s", ms / 1000, frac.trim_end_matches('0'));
    }
    let secs = ms / 1000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out += &format!("{h}h");
    }
    if m > 0 {
        out += &format!("{m}m");
    }
    if s > 0 {
        out += &format!("{s}s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("1s"), Ok(ms(1000)));
        assert_eq!(parse_duration("250ms"), Ok(ms(250)));
        assert_eq!(parse_duration("1m"), Ok(ms(60_000)));
        assert_eq!(parse_duration("1h"), Ok(ms(3_600_000)));
        assert_eq!(parse_duration("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse_duration("40.95s"), Ok(ms(40_950)));
        assert_eq!(parse_duration("0.01s"), Ok(ms(10)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn refuses_the_rest_with_a_reason() {
        for (s, why) in [
            ("", "is not a duration (e.g. 1s, 250ms, 1m)"),
            ("5", "needs a unit (ms, s, m or h), e.g. 5s"),
            ("5 s", "needs a unit (ms, s, m or h), e.g. 5s"),
            ("-1s", "is not a duration (e.g. 1s, 250ms, 1m)"),
            ("1d", "has unknown unit \"d\" (use ms, s, m or h)"),
            ("1.s", "is not a duration (e.g. 1s, 250ms, 1m)"),
            (".5s", "is not a duration (e.g. 1s, 250ms, 1m)"),
            ("1.2.3s", "is not a duration (e.g. 1s, 250ms, 1m)"),
            ("0.0000000001s", "is finer than a nanosecond"),
            ("99999999999999999999999999h", "is too large"),
            ("9000h", "is too large"),
        ] {
            assert_eq!(parse_duration(s), Err(why.to_string()), "{s:?}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for s in [
            "0s", "1s", "250ms", "40.95s", "1.5s", "5m", "1h30m", "1m1s", "10ms",
        ] {
            let d = parse_duration(s).unwrap();
            assert_eq!(fmt_duration(d), s);
        }
        assert_eq!(fmt_duration(Duration::from_micros(1500)), "0.0015s");
        assert_eq!(parse_duration("0.0015s"), Ok(Duration::from_micros(1500)));
    }
}
