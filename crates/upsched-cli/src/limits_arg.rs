//! `--max-events`, `--max-tasks`, `--max-memory`, `--max-wall`: the limits of one simulated
//! run (`sim`, and every run of a `sweep`), so that an absurd scenario ends with an error
//! instead of exhausting the machine.

use std::time::Duration;

use clap::Args;
use upsched_sim::engine::RunLimits;
use upsched_sim::units::{NS, parse_duration};

#[derive(Args, Clone, Copy)]
pub struct LimitArgs {
    /// Most events one run may handle (0: no limit).
    #[arg(long, value_name = "N", default_value_t = RunLimits::default().max_events)]
    max_events: u64,
    /// Most tasks alive at once in one run (0: no limit).
    #[arg(long, value_name = "N", default_value_t = RunLimits::default().max_tasks)]
    max_tasks: u64,
    /// Most memory one run may use by the simulator's estimate, in bytes or with a suffix K,
    /// M, G (powers of 1024); 0: no limit.
    #[arg(long, value_name = "SIZE", default_value = "2G", value_parser = parse_size)]
    max_memory: u64,
    /// Most wall-clock time one run may take, e.g. 30s or 10min (0: no limit).
    #[arg(long, value_name = "DURATION", default_value = "10min", value_parser = parse_wall)]
    max_wall: Duration,
}

impl LimitArgs {
    pub fn limits(self) -> RunLimits {
        RunLimits {
            max_events: self.max_events,
            max_tasks: self.max_tasks,
            max_memory: self.max_memory,
            max_wall: self.max_wall,
        }
    }
}

/// `2G`, `512M`, `64K`, `1000`.
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, shift) = match text.char_indices().last() {
        Some((at, unit)) if unit.is_ascii_alphabetic() => {
            let shift = match unit.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("{text:?}: the unit is K, M, G or T")),
            };
            (&text[..at], shift)
        }
        _ => (text, 0),
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (bytes, or a number with K, M, G or T)"))?;
    value
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A duration of `parse_duration`, or a bare `0` for no limit.
fn parse_wall(text: &str) -> Result<Duration, String> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    parse_duration(text).map(|ns| Duration::from_nanos(ns / NS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_wall_times_parse_or_are_refused() {
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("3X").unwrap_err().contains("K, M, G or T"));
        assert!(parse_size("-1").is_err());
        assert!(
            parse_size("99999999999T")
                .unwrap_err()
                .contains("too large")
        );
        assert_eq!(parse_wall("0"), Ok(Duration::ZERO));
        assert_eq!(parse_wall("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_wall("5").is_err());
    }
}
