//! Simulated time and the duration syntax of scenarios.

/// Simulated time and durations, in nanoseconds since the start of the run.
pub type Time = u64;

pub const NS: Time = 1;
pub const US: Time = 1_000;
pub const MS: Time = 1_000_000;
pub const S: Time = 1_000_000_000;

/// Parses a duration such as `"3ms"`, `"1.5s"`, `"250us"`, `"40ns"` (units: ns, us, µs, ms, s,
/// min). A bare number without unit is refused: scenario durations always name their unit.
pub fn parse_duration(text: &str) -> Result<Time, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .ok_or_else(|| format!("duration {text:?} has no unit (use ns, us, ms, s or min)"))?;
    let (number, unit) = text.split_at(split);
    let number: String = number.chars().filter(|c| *c != '_').collect();
    let value: f64 = number
        .parse()
        .map_err(|_| format!("duration {text:?} does not start with a number"))?;
    let scale = match unit.trim() {
        "ns" => NS,
        "us" | "µs" => US,
        "ms" => MS,
        "s" => S,
        "min" => 60 * S,
        other => return Err(format!("duration {text:?} has unknown unit {other:?}")),
    } as f64;
    let ns = value * scale;
    if !ns.is_finite() || ns < 0.0 || ns > u64::MAX as f64 / 2.0 {
        return Err(format!("duration {text:?} is out of range"));
    }
    Ok(ns.round() as Time)
}

/// Formats a duration for humans with three significant decimals (`"1.250ms"`).
pub fn format_duration(ns: Time) -> String {
    if ns >= S {
        format!("{:.3}s", ns as f64 / S as f64)
    } else if ns >= MS {
        format!("{:.3}ms", ns as f64 / MS as f64)
    } else if ns >= US {
        format!("{:.3}us", ns as f64 / US as f64)
    } else {
        format!("{ns}ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("3ms"), Ok(3 * MS));
        assert_eq!(parse_duration("1.5s"), Ok(1_500 * MS));
        assert_eq!(parse_duration("250us"), Ok(250 * US));
        assert_eq!(parse_duration("1_000ns"), Ok(1_000));
        assert!(parse_duration("3").is_err());
        assert!(parse_duration("3 parsecs").is_err());
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("1e400s").is_err());
        assert_eq!(format_duration(1_250_000), "1.250ms");
    }
}
