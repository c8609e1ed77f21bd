//! The one way sizes, durations and rates are written: decimal units (kB, MB, GB: what disks
//! and `df -H` use), three significant digits, so `1.07 GB` sits beside `950 MB` and a bar
//! and a summary never disagree. Hand-written because bytesize 1.x and indicatif mix binary
//! and decimal units and print `1071.1 MB`.

use std::time::Duration;

const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];

/// `x` with three significant digits (`1.07`, `16.1`, `950`).
fn three_digits(x: f64) -> String {
    match x {
        x if x >= 99.95 => format!("{x:.0}"),
        x if x >= 9.995 => format!("{x:.1}"),
        x => format!("{x:.2}"),
    }
}

/// `950 B`, `1.07 GB`, `13.9 GB`.
pub fn size(bytes: u64) -> String {
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1000.0;
    for unit in UNITS {
        // 999.6 kB would print as `1000 kB`: the next unit says `1.00 MB`.
        if value < 999.5 || unit == UNITS[UNITS.len() - 1] {
            return format!("{} {unit}", three_digits(value));
        }
        value /= 1000.0;
    }
    unreachable!("the loop returns at the last unit")
}

/// `951 ms`, `16.1 s`, `2 min 05 s`, `1 h 02 min`; never `0.0ns`.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    let secs = d.as_secs_f64().round() as u64;
    match () {
        _ if ms < 1000 => format!("{ms} ms"),
        _ if d.as_secs_f64() < 59.95 => format!("{} s", three_digits(d.as_secs_f64())),
        _ if secs < 3600 => format!("{} min {:02} s", secs / 60, secs % 60),
        _ => format!("{} h {:02} min", secs / 3600, secs % 3600 / 60),
    }
}

/// `8.39 MB/s`: the bytes this run moved over the time it took (resumed bytes are not
/// moved, so the caller passes only what arrived).
pub fn rate(bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    format!("{}/s", size((bytes as f64 / secs) as u64))
}

/// `1 file`, `2 files`: `word` with an `s` unless `n` is 1.
pub fn count(n: usize, word: &str) -> String {
    match n {
        1 => format!("1 {word}"),
        n => format!("{n} {word}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_decimal_units_and_three_digits() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(999), "999 B");
        assert_eq!(size(1000), "1.00 kB");
        assert_eq!(size(950_000_000), "950 MB");
        assert_eq!(size(1_071_100_000), "1.07 GB");
        assert_eq!(size(13_900_000_000), "13.9 GB");
        assert_eq!(size(999_600_000), "1.00 GB");
        assert_eq!(size(u64::MAX), "18447 PB");
    }

    #[test]
    fn durations_never_print_nanoseconds() {
        assert_eq!(duration(Duration::ZERO), "0 ms");
        assert_eq!(duration(Duration::from_millis(951)), "951 ms");
        assert_eq!(duration(Duration::from_millis(16_100)), "16.1 s");
        assert_eq!(duration(Duration::from_millis(59_990)), "1 min 00 s");
        assert_eq!(duration(Duration::from_secs(125)), "2 min 05 s");
        assert_eq!(duration(Duration::from_secs(3720)), "1 h 02 min");
    }

    #[test]
    fn rates_and_plurals() {
        assert_eq!(rate(8_000_000, Duration::from_secs(1)), "8.00 MB/s");
        assert_eq!(rate(5, Duration::ZERO), "5.00 kB/s");
        assert_eq!(count(1, "file"), "1 file");
        assert_eq!(count(0, "file"), "0 files");
    }
}
