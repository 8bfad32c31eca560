//! Latency histograms and the per-task accounting the core keeps during a run.

use serde::Serialize;

use crate::units::Time;

/// Sub-buckets per power of two: a bucket spans at most 1/64 of its value, so reporting its
/// midpoint is off by at most 0.8%.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;

/// A log-linear histogram of durations (like HdrHistogram): exact below 64 ns, then 64
/// buckets per power of two. Memory spans only the buckets from the smallest to the largest
/// value seen (a task's waits cluster: its histogram is a few buckets, not the thousands below
/// them, which cost memory and cache misses per task); count, sum, min and max are exact.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// Counts of buckets `first..first + counts.len()`.
    counts: Vec<u32>,
    first: usize,
    pub count: u64,
    pub sum: u128,
    pub min: Time,
    pub max: Time,
}

#[inline]
fn bucket_of(v: u64) -> usize {
    if v < SUB {
        v as usize
    } else {
        let exp = 63 - v.leading_zeros(); // >= SUB_BITS
        let shift = exp - SUB_BITS;
        (((shift + 1) as u64) * SUB + ((v >> shift) - SUB)) as usize
    }
}

/// Smallest and largest value of bucket `b`.
fn bucket_range(b: usize) -> (u64, u64) {
    let b = b as u64;
    if b < SUB {
        (b, b)
    } else {
        let shift = b / SUB - 1;
        let lo = (SUB + b % SUB) << shift;
        (lo, lo + (1u64 << shift) - 1)
    }
}

impl Histogram {
    #[inline]
    pub fn record(&mut self, v: Time) {
        let b = bucket_of(v);
        self.cover(b, b + 1);
        let c = &mut self.counts[b - self.first];
        *c = c.saturating_add(1);
        if self.count == 0 || v < self.min {
            self.min = v;
        }
        self.max = self.max.max(v);
        self.count += 1;
        self.sum += v as u128;
    }

    /// Extends the kept span to cover buckets `lo..hi`. Growing down moves the counts, at
    /// most once per bucket below the first value seen.
    fn cover(&mut self, lo: usize, hi: usize) {
        if self.counts.is_empty() {
            self.first = lo;
        } else if lo < self.first {
            self.counts
                .splice(0..0, std::iter::repeat_n(0, self.first - lo));
            self.first = lo;
        }
        if hi > self.first + self.counts.len() {
            self.counts.resize(hi - self.first, 0);
        }
    }

    /// Bucket indexes with their counts, in order.
    fn buckets(&self) -> impl Iterator<Item = (usize, u32)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .map(|(i, c)| (self.first + i, *c))
    }

    pub fn merge(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        self.cover(other.first, other.first + other.counts.len());
        let at = other.first - self.first;
        for (a, b) in self.counts[at..].iter_mut().zip(&other.counts) {
            *a = a.saturating_add(*b);
        }
        if self.count == 0 || other.min < self.min {
            self.min = other.min;
        }
        self.max = self.max.max(other.max);
        self.count += other.count;
        self.sum += other.sum;
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The value below which a fraction `q` of the samples lie (nearest rank; the bucket's
    /// midpoint, clamped to the exact min and max).
    pub fn quantile(&self, q: f64) -> Time {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (b, c) in self.buckets() {
            seen += c as u64;
            if seen >= rank {
                let (lo, hi) = bucket_range(b);
                return (lo + (hi - lo) / 2).clamp(self.min, self.max);
            }
        }
        self.max
    }

    /// (upper value of bucket, cumulative fraction) for every non-empty bucket: the CDF.
    pub fn cdf(&self) -> Vec<(Time, f64)> {
        let mut seen = 0u64;
        let mut out = Vec::new();
        for (b, c) in self.buckets() {
            if c > 0 {
                seen += c as u64;
                out.push((
                    bucket_range(b).1.min(self.max),
                    seen as f64 / self.count as f64,
                ));
            }
        }
        out
    }

    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            count: self.count,
            mean_ns: self.mean(),
            p50_ns: self.quantile(0.50),
            p90_ns: self.quantile(0.90),
            p99_ns: self.quantile(0.99),
            max_ns: self.max,
        }
    }
}

/// Percentiles of a latency distribution, in ns.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ns: f64,
    pub p50_ns: Time,
    pub p90_ns: Time,
    pub p99_ns: Time,
    pub max_ns: Time,
}

/// Accounting for one task instance that the scenario starts (`count` instances), or for all
/// instances of a spec started by arrivals or fork (they share one record).
#[derive(Clone, Debug, Default)]
pub struct Record {
    pub name: String,
    pub spec: u32,
    pub cgroup: u32,
    pub weight: u32,
    pub nice: i32,
    /// Instances started by arrivals or fork share this record.
    pub dynamic: bool,
    pub instances: u64,
    pub exited: u64,
    pub cpu_ns: Time,
    pub spin_ns: Time,
    /// CPU time while the task's cgroup, a chain's runtime, had no pending request.
    pub idle_ns: Time,
    /// Time from becoming runnable (new, wake-up, preemption, yield) to running.
    pub wait: Histogram,
    /// Time from start to exit of instances that exited.
    pub turnaround: Histogram,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    pub migrations: u64,
    pub wakeups: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values_contiguously() {
        let mut last_hi = None;
        for b in 0..3000 {
            let (lo, hi) = bucket_range(b);
            if let Some(prev) = last_hi {
                assert_eq!(lo, prev + 1, "bucket {b}");
            }
            assert_eq!(bucket_of(lo), b);
            assert_eq!(bucket_of(hi), b);
            last_hi = Some(hi);
        }
    }

    #[test]
    fn quantiles_are_within_one_percent() {
        let mut h = Histogram::default();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        for (q, exact) in [
            (0.5, 50_000_000.0),
            (0.9, 90_000_000.0),
            (0.99, 99_000_000.0),
        ] {
            let got = h.quantile(q) as f64;
            assert!((got / exact - 1.0).abs() < 0.01, "q{q}: {got}");
        }
        assert_eq!(h.max, 100_000_000);
        assert_eq!(h.min, 1000);
        let mut other = Histogram::default();
        other.record(5);
        h.merge(&other);
        assert_eq!(h.min, 5);
        assert_eq!(h.count, 100_001);
        assert_eq!(h.cdf().last().unwrap().1, 1.0);
    }

    /// The kept span grows both ways: the order of the values and of merges changes nothing.
    #[test]
    fn the_span_grows_down_and_up() {
        let values: Vec<u64> = (0..2000u64).map(|i| (i * 7919) % 1_000_003 + i).collect();
        let mut rising = Histogram::default();
        let mut falling = Histogram::default();
        let (mut low, mut high) = (Histogram::default(), Histogram::default());
        let mut sorted = values.clone();
        sorted.sort();
        for v in &sorted {
            rising.record(*v);
        }
        for v in sorted.iter().rev() {
            falling.record(*v);
        }
        for v in &values {
            if *v < 500_000 {
                low.record(*v)
            } else {
                high.record(*v)
            }
        }
        // Merged into an empty one, below and above.
        let mut merged = Histogram::default();
        merged.merge(&high);
        merged.merge(&low);
        for h in [&falling, &merged] {
            assert_eq!(h.cdf(), rising.cdf());
            for q in [0.0, 0.1, 0.5, 0.99, 1.0] {
                assert_eq!(h.quantile(q), rising.quantile(q));
            }
        }
    }
}
