//! Durations as people write them in flags and config files: `1h30m`, `90s`, `500ms`,
//! read ([`parse`]) and written back in messages ([`Written`]).

use std::fmt;
use std::time::Duration;

/// A duration as a message says it, in the units [`parse`] reads: under a minute as Rust
/// writes it (`500ms`, `1.5s`, `30s`), from a minute on in hours, minutes and seconds with
/// the parts that are zero left out (`2m`, `1h30m`, `24h`, `1m30.5s`), which reads back as
/// the same duration. A `Retry-After` of a day read "86400s".
///
/// ```
/// use std::time::Duration;
/// use dist::duration::Written;
///
/// assert_eq!(Written(Duration::from_secs(86400)).to_string(), "24h");
/// assert_eq!(Written(Duration::from_secs(5400)).to_string(), "1h30m");
/// assert_eq!(Written(Duration::from_millis(1500)).to_string(), "1.5s");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written(pub Duration);

impl fmt::Display for Written {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let secs = d.as_secs();
        if secs < 60 {
            return write!(f, "{d:?}");
        }
        let (hours, minutes) = (secs / 3600, secs / 60 % 60);
        if hours > 0 {
            write!(f, "{hours}h")?;
        }
        if minutes > 0 {
            write!(f, "{minutes}m")?;
        }
        // Under a minute, with its fraction, as the short durations are written.
        let rest = Duration::new(secs % 60, d.subsec_nanos());
        if !rest.is_zero() {
            write!(f, "{rest:?}")?;
        }
        Ok(())
    }
}

/// Parses `1h30m`, `90s`, `500ms`, `2m`, `250us` (Go's units, `ns` to `h`, as containerd's
/// `hosts.toml` writes them: a `dial_timeout` copied from there in `us` was refused); a
/// bare number is seconds.
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let invalid = || format!("invalid duration {s:?}");
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| invalid());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("invalid duration {s:?}: missing unit"))?;
        let n: f64 = rest[..num_end].parse().map_err(|_| invalid())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        // In nanoseconds, so that `250us` is 250 µs exactly, not the nearest f64 of seconds.
        let unit = match &rest[..unit_end] {
            "ns" => 1.0,
            // Go takes the micro sign and the Greek letter mu alike.
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            u => return Err(format!("invalid duration {s:?}: unknown unit {u:?}")),
        };
        rest = &rest[unit_end..];
        let nanos = (n * unit).round();
        if !nanos.is_finite() || nanos >= u64::MAX as f64 {
            return Err(invalid());
        }
        let part = Duration::from_nanos(nanos as u64);
        total = total.checked_add(part).ok_or_else(invalid)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_units_and_bare_seconds() {
        assert_eq!(parse("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        for micro in ["250us", "250\u{b5}s", "250\u{3bc}s"] {
            assert_eq!(parse(micro).unwrap(), Duration::from_micros(250), "{micro}");
        }
        assert_eq!(
            parse("1s500000ns").unwrap(),
            Duration::from_micros(1_000_500)
        );
        assert!(parse("5u").is_err());
        assert!(parse("5x").is_err());
        assert!(parse("").is_err());
        assert!(parse("-1").is_err());
        assert!(parse("1e30").is_err());
        assert!(parse("99999999999999999999h").is_err());
    }

    #[test]
    fn long_durations_are_written_in_hours_and_minutes_and_read_back() {
        let written = |d: Duration| Written(d).to_string();
        // Short ones as before: what users already see.
        assert_eq!(written(Duration::from_millis(500)), "500ms");
        assert_eq!(written(Duration::from_millis(1500)), "1.5s");
        assert_eq!(written(Duration::from_secs(59)), "59s");
        assert_eq!(written(Duration::ZERO), "0ns");
        assert_eq!(written(Duration::from_secs(60)), "1m");
        assert_eq!(written(Duration::from_secs(120)), "2m");
        assert_eq!(written(Duration::from_secs(3600)), "1h");
        assert_eq!(written(Duration::from_secs(5400)), "1h30m");
        assert_eq!(written(Duration::from_secs(86400)), "24h");
        assert_eq!(written(Duration::from_secs(3601)), "1h1s");
        assert_eq!(written(Duration::from_millis(90_500)), "1m30.5s");
        assert_eq!(written(Duration::new(60, 1)), "1m1ns");
        for d in [
            Duration::from_micros(250),
            Duration::from_secs(59),
            Duration::from_millis(90_500),
            Duration::from_secs(86_400 * 3 + 61),
            Duration::new(3_600, 999_999_999),
            Duration::from_secs(86_400 * 100 + 3_599),
        ] {
            assert_eq!(parse(&written(d)), Ok(d), "{}", written(d));
        }
    }
}
