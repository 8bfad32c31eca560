//! Latency samples and their percentiles.

use serde::{Deserialize, Serialize};

/// Samples kept per task. Beyond it, every other kept sample is dropped and only every 2nd,
/// 4th, ... new one is kept: the buffer stays an even subsample of the whole run (no
/// randomness, so runs stay reproducible), while `count`, `max` and `sum` stay exact.
pub const MAX_SAMPLES: usize = 1 << 20;

/// Latency samples in ns, bounded in memory.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    kept: Vec<u64>,
    stride: u64,
    seen: u64,
    max: u64,
    sum: u128,
    cap: usize,
}

impl Samples {
    pub fn new() -> Self {
        Self::with_cap(MAX_SAMPLES)
    }

    pub fn with_cap(cap: usize) -> Self {
        Self {
            kept: Vec::new(),
            stride: 1,
            seen: 0,
            max: 0,
            sum: 0,
            cap: cap.max(2),
        }
    }

    pub fn push(&mut self, ns: u64) {
        self.max = self.max.max(ns);
        self.sum += ns as u128;
        if self.seen % self.stride == 0 {
            if self.kept.len() == self.cap {
                let mut i = 0;
                self.kept.retain(|_| {
                    i += 1;
                    i % 2 == 1
                });
                self.stride *= 2;
                // This sample is kept only if it also falls on the new stride.
                if self.seen % self.stride == 0 {
                    self.kept.push(ns);
                }
            } else {
                self.kept.push(ns);
            }
        }
        self.seen += 1;
    }

    pub fn count(&self) -> u64 {
        self.seen
    }

    pub fn kept(&self) -> &[u64] {
        &self.kept
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn sum(&self) -> u128 {
        self.sum
    }
}

/// Latency summary in µs, as it appears in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Number of measurements (exact).
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    /// Exact maximum.
    pub max_us: f64,
}

/// The nearest-rank percentile (`p` in 0..=100) of sorted values: the smallest value that at
/// least p% of the values are less than or equal to. `None` for no values.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn us(ns: u64) -> f64 {
    round3(ns as f64 / 1000.0)
}

/// Rounds to 3 decimals: ns precision for µs values, and short JSON numbers.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Summarises the samples of several tasks together; `None` if there are none.
/// `count`, `mean` and `max` are exact; the percentiles come from the kept samples.
pub fn summarize<'a>(parts: impl IntoIterator<Item = &'a Samples>) -> Option<Latency> {
    let mut all = Vec::new();
    let (mut count, mut sum, mut max) = (0u64, 0u128, 0u64);
    for part in parts {
        all.extend_from_slice(part.kept());
        count += part.count();
        sum += part.sum();
        max = max.max(part.max());
    }
    if count == 0 {
        return None;
    }
    all.sort_unstable();
    let pct = |p| us(percentile(&all, p).unwrap_or(0));
    Some(Latency {
        count,
        mean_us: round3(sum as f64 / count as f64 / 1000.0),
        p50_us: pct(50.0),
        p90_us: pct(90.0),
        p99_us: pct(99.0),
        max_us: us(max),
    })
}

/// Encodes samples as the worker's result tail: count, max, sum, then the kept values, all
/// little-endian.
pub fn encode(samples: &Samples, out: &mut Vec<u8>) {
    out.extend_from_slice(&samples.seen.to_le_bytes());
    out.extend_from_slice(&samples.max.to_le_bytes());
    out.extend_from_slice(&samples.sum.to_le_bytes());
    out.extend_from_slice(&(samples.kept.len() as u64).to_le_bytes());
    for v in &samples.kept {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Decodes what `encode` wrote; `None` if the bytes are truncated or inconsistent.
pub fn decode(bytes: &[u8]) -> Option<Samples> {
    let u64_at = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
    };
    let seen = u64_at(0)?;
    let max = u64_at(8)?;
    let sum = u128::from_le_bytes(bytes.get(16..32)?.try_into().ok()?);
    let len = usize::try_from(u64_at(32)?).ok()?;
    if bytes.len() != 40usize.checked_add(len.checked_mul(8)?)? {
        return None;
    }
    let kept = (0..len)
        .map(|i| u64_at(40 + i * 8))
        .collect::<Option<Vec<_>>>()?;
    Some(Samples {
        kept,
        stride: 1,
        seen,
        max,
        sum,
        cap: MAX_SAMPLES,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 90.0), Some(90));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[1, 2], 50.0), Some(1));
        assert_eq!(percentile(&[1, 2], 51.0), Some(2));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn summary_merges_tasks_in_microseconds() {
        let mut a = Samples::new();
        let mut b = Samples::new();
        for ns in [1000, 2000, 3000] {
            a.push(ns);
        }
        b.push(10_000);
        let s = summarize([&a, &b]).unwrap();
        assert_eq!(s.count, 4);
        assert_eq!(s.p50_us, 2.0);
        assert_eq!(s.p99_us, 10.0);
        assert_eq!(s.max_us, 10.0);
        assert_eq!(s.mean_us, 4.0);
        assert!(summarize([&Samples::new()]).is_none());
    }

    #[test]
    fn decimation_keeps_an_even_subsample_and_exact_extremes() {
        let mut s = Samples::with_cap(8);
        for v in 0..100u64 {
            s.push(v);
        }
        assert_eq!(s.count(), 100);
        assert_eq!(s.max(), 99);
        assert!(s.kept().len() <= 8);
        // Every kept value is a multiple of the final stride: evenly spread over the run.
        assert!(s.kept().iter().all(|v| v % s.stride == 0), "{:?}", s.kept());
        assert_eq!(s.kept()[0], 0);
        let median = percentile(s.kept(), 50.0).unwrap();
        assert!((32..=64).contains(&median), "{median}");
    }

    #[test]
    fn encode_decode_round_trip() {
        let mut s = Samples::new();
        for v in [5, 1, 9] {
            s.push(v);
        }
        let mut bytes = Vec::new();
        encode(&s, &mut bytes);
        let back = decode(&bytes).unwrap();
        assert_eq!(back.kept(), &[5, 1, 9]);
        assert_eq!((back.count(), back.max(), back.sum()), (3, 9, 15));
        assert!(decode(&bytes[..bytes.len() - 1]).is_none());
        assert!(decode(&[]).is_none());
    }
}
