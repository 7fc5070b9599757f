//! Human sizes ("10GiB", "4M") and durations ("31d", "2h", "500ms"), parsed the
//! way storage tools print them. Single-letter and IEC suffixes are powers of
//! 1024 (as qemu-img reads them); "KB", "MB", ... are powers of 1000.
//!
//! [`HumanSize`] and [`HumanDuration`] are what configuration fields hold: the
//! text is parsed once, when the file is loaded (a bad value is an error
//! naming the key), and code that uses the value never parses again.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as text ("31d", "5s") in a configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(HumanDuration)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

/// A byte size written as text ("256MiB", "64KiB") in a configuration file,
/// parsed once at load. Shown as it was written (or in IEC units when made
/// from a number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HumanSize {
    bytes: u64,
    text: String,
}

impl HumanSize {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// A size of `bytes`, shown in IEC units.
    pub fn from_bytes(bytes: u64) -> Self {
        Self {
            bytes,
            text: format_size(bytes).replace(' ', ""),
        }
    }
}

impl std::str::FromStr for HumanSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(Self {
            bytes: parse_size(s)?,
            text: s.trim().to_string(),
        })
    }
}

impl<'de> Deserialize<'de> for HumanSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for HumanSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl fmt::Display for HumanSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parses a byte size: a whole number with an optional unit.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!(
            "{s:?} is not a size: expected a whole number with an optional unit such as 10GiB"
        ));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: number too large"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "p" | "pib" => 1 << 50,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "pb" => 1_000_000_000_000_000,
        other => {
            return Err(format!(
                "{s:?}: unknown size unit {other:?} (use B, KiB, MiB, GiB, TiB, PiB, or KB, MB, GB, TB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?}: size too large"))
}

/// Formats a byte count with the largest IEC unit that keeps it readable.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else if v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[i])
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// Parses a duration: a whole number and a unit (ms, s, m, h, d, w), or several
/// such terms run together ("1h30m").
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration: expected a number and a unit such as 31d, 2h, 30s".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "{s:?} is not a duration: expected a number and a unit such as 31d, 2h, 30s"
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{s:?}: number too large"))?;
        rest = &rest[digits..];
        let ulen = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = rest[..ulen].trim();
        rest = &rest[ulen..];
        let secs: u64 = match unit {
            "ms" => {
                total += Duration::from_millis(n);
                continue;
            }
            "s" | "sec" | "secs" => 1,
            "m" | "min" | "mins" => 60,
            "h" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            "w" | "week" | "weeks" => 7 * 86_400,
            "" => {
                return Err(format!(
                    "{s:?}: missing unit after {n} (use ms, s, m, h, d or w)"
                ))
            }
            other => {
                return Err(format!(
                    "{s:?}: unknown duration unit {other:?} (use ms, s, m, h, d or w)"
                ))
            }
        };
        let add = n
            .checked_mul(secs)
            .ok_or_else(|| format!("{s:?}: duration too large"))?;
        total += Duration::from_secs(add);
    }
    Ok(total)
}

/// Formats a duration in its largest whole unit ("31d", "90s", "1500ms").
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    for (unit, len) in [("w", 604_800), ("d", 86_400), ("h", 3600), ("m", 60)] {
        if s >= len && s.is_multiple_of(len) {
            return format!("{}{unit}", s / len);
        }
    }
    format!("{s}s")
}

/// Formats a duration to the minute in its two largest units, for people
/// ("16h 15m", "2d 3h", "45m", "12s" below a minute).
pub fn format_duration_approx(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        return format_duration(d);
    }
    let m = s / 60;
    let (days, hours, mins) = (m / 1440, m / 60 % 24, m % 60);
    match (days, hours, mins) {
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approximate_durations_for_people() {
        let f = |s: u64| format_duration_approx(Duration::from_secs(s));
        assert_eq!(f(58_545), "16h 15m");
        assert_eq!(f(3_600), "1h");
        assert_eq!(f(2 * 86_400 + 3 * 3_600 + 59), "2d 3h");
        assert_eq!(f(183 * 86_400), "183d");
        assert_eq!(f(45 * 60 + 30), "45m");
        assert_eq!(f(12), "12s");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10GiB").unwrap(), 10 << 30);
        assert_eq!(parse_size("4M").unwrap(), 4 << 20);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("1 TiB").unwrap(), 1 << 40);
        assert_eq!(parse_size("2GB").unwrap(), 2_000_000_000);
        assert!(parse_size("GiB").unwrap_err().contains("not a size"));
        assert!(parse_size("3 furlongs")
            .unwrap_err()
            .contains("unknown size unit"));
        assert!(parse_size("99999999999P")
            .unwrap_err()
            .contains("too large"));
        assert_eq!(format_size(10 << 30), "10 GiB");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(17), "17 B");
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("31d").unwrap(),
            Duration::from_secs(31 * 86_400)
        );
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("10").unwrap_err().contains("missing unit"));
        assert!(parse_duration("5 fortnights")
            .unwrap_err()
            .contains("unknown duration unit"));
        assert!(parse_duration("").is_err());
        assert_eq!(format_duration(Duration::from_secs(31 * 86_400)), "31d");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn human_values_parse_once_and_show_as_written() {
        #[derive(serde::Deserialize, serde::Serialize)]
        struct T {
            size: HumanSize,
            every: HumanDuration,
        }
        let t: T = toml::from_str("size = \"256MiB\"\nevery = \"90s\"\n").unwrap();
        assert_eq!(t.size.bytes(), 256 << 20);
        assert_eq!(t.every.0, Duration::from_secs(90));
        assert_eq!(t.size.to_string(), "256MiB");
        let back = toml::to_string(&t).unwrap();
        assert!(
            back.contains("size = \"256MiB\"") && back.contains("every = \"90s\""),
            "{back}"
        );
        let e = toml::from_str::<T>("size = \"lots\"\nevery = \"1s\"\n")
            .err()
            .unwrap();
        assert!(e.to_string().contains("not a size"), "{e}");
        assert_eq!(HumanSize::from_bytes(64 << 10).to_string(), "64KiB");
    }
}
