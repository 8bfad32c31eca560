//! Seeded random numbers and the duration distributions of phase programs.
//!
//! Every task instance and every arrival process draws from its own PCG stream derived from
//! (scenario seed, stream id). The workload a task sees is therefore the same under every
//! policy (common random numbers), and comparisons between policies are not blurred by the
//! order in which the policy happened to run things.

use rand_core::{RngCore, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::units::Time;

/// A deterministic random stream (PCG-64 MCG).
#[derive(Clone, Debug)]
pub struct SimRng(Pcg64Mcg);

/// SplitMix64 finaliser: spreads nearby stream ids over the whole seed space (and nearby
/// task ids over treap priorities, `sched::eevdf`).
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl SimRng {
    /// The stream `stream` of the run seeded with `seed`.
    pub fn stream(seed: u64, stream: u64) -> Self {
        SimRng(Pcg64Mcg::seed_from_u64(mix(seed ^ mix(stream))))
    }

    /// Combines two stream-id components into one id.
    pub fn child_stream(parent: u64, index: u64) -> u64 {
        mix(parent.wrapping_mul(31).wrapping_add(mix(index)))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in (0, 1]: safe to take the logarithm of.
    pub fn unit_open0(&mut self) -> f64 {
        1.0 - self.unit()
    }

    /// Standard normal variate (Box-Muller; one of the pair is discarded to keep no state).
    pub fn standard_normal(&mut self) -> f64 {
        let r = (-2.0 * self.unit_open0().ln()).sqrt();
        r * (std::f64::consts::TAU * self.unit()).cos()
    }

    /// Exponential variate with the given mean.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * self.unit_open0().ln()
    }
}

/// A duration: fixed or drawn from a distribution each time the operation runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Dist {
    Fixed(Time),
    /// Exponential with this mean (ns).
    Exponential {
        mean: f64,
    },
    /// Uniform in [min, max] (ns).
    Uniform {
        min: Time,
        max: Time,
    },
    /// Normal with this mean and standard deviation (ns), truncated at 0 by resampling.
    Normal {
        mean: f64,
        stddev: f64,
    },
    /// Log-normal whose logarithm has mean `mu` and standard deviation `sigma` (of ln ns).
    LogNormal {
        mu: f64,
        sigma: f64,
    },
}

impl Dist {
    /// Log-normal with the given mean and standard deviation of the duration itself.
    pub fn log_normal_from_moments(mean: f64, stddev: f64) -> Dist {
        let sigma2 = (1.0 + (stddev * stddev) / (mean * mean)).ln();
        Dist::LogNormal {
            mu: mean.ln() - sigma2 / 2.0,
            sigma: sigma2.sqrt(),
        }
    }

    /// Mean of the distribution in ns (for documentation and tests; the truncated normal's
    /// mean is approximated by the untruncated one).
    pub fn mean(&self) -> f64 {
        match *self {
            Dist::Fixed(t) => t as f64,
            Dist::Exponential { mean } => mean,
            Dist::Uniform { min, max } => (min as f64 + max as f64) / 2.0,
            Dist::Normal { mean, .. } => mean,
            Dist::LogNormal { mu, sigma } => (mu + sigma * sigma / 2.0).exp(),
        }
    }

    pub fn sample(&self, rng: &mut SimRng) -> Time {
        let value = match *self {
            Dist::Fixed(t) => return t,
            Dist::Exponential { mean } => rng.exponential(mean),
            Dist::Uniform { min, max } => {
                return min
                    + (rng.unit() * ((max - min) as f64 + 1.0))
                        .floor()
                        .min((max - min) as f64) as Time;
            }
            Dist::Normal { mean, stddev } => {
                // Validation guarantees mean > 0, so each draw is accepted with probability
                // > 1/2; the bound only guards against pathological parameters.
                let mut accepted = 0.0;
                for _ in 0..64 {
                    let x = mean + stddev * rng.standard_normal();
                    if x >= 0.0 {
                        accepted = x;
                        break;
                    }
                }
                accepted
            }
            Dist::LogNormal { mu, sigma } => (mu + sigma * rng.standard_normal()).exp(),
        };
        if value.is_finite() && value > 0.0 {
            value.min(u64::MAX as f64 / 4.0).round() as Time
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_mean(dist: &Dist, n: usize) -> f64 {
        let mut rng = SimRng::stream(7, 1);
        (0..n).map(|_| dist.sample(&mut rng) as f64).sum::<f64>() / n as f64
    }

    #[test]
    fn distributions_have_their_means() {
        let n = 200_000;
        for dist in [
            Dist::Exponential { mean: 1e6 },
            Dist::Uniform {
                min: 1000,
                max: 3000,
            },
            Dist::Normal {
                mean: 1e6,
                stddev: 1e5,
            },
            Dist::log_normal_from_moments(1e6, 5e5),
        ] {
            let mean = sample_mean(&dist, n);
            assert!((mean / dist.mean() - 1.0).abs() < 0.01, "{dist:?}: {mean}");
        }
        assert_eq!(sample_mean(&Dist::Fixed(5), 10), 5.0);
    }

    #[test]
    fn streams_are_deterministic_and_distinct() {
        let a: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(SimRng::stream(1, 2), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(SimRng::stream(1, 2), |r, _| Some(r.next_u64()))
            .collect();
        let c: Vec<u64> = (0..4)
            .map(|_| 0)
            .scan(SimRng::stream(1, 3), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn truncated_normal_is_never_negative() {
        let dist = Dist::Normal {
            mean: 10.0,
            stddev: 100.0,
        };
        let mut rng = SimRng::stream(3, 3);
        assert!((0..10_000).all(|_| dist.sample(&mut rng) < 1_000_000));
    }
}
