// SPDX-License-Identifier: GPL-2.0-only
//! A run's report: per function and thread the CPU attributed to idle and pending times, the
//! polling CPU and the inbox waits; per run the idle ratio, the polling share, the end-to-end
//! latencies and the throughput (the definitions of `docs/faas-sim.md`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use upsched_sim::faas::FUNCTIONS;

use crate::Params;
use crate::shared::{NO_SLOT, STAGES, Shared};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThreadReport {
    /// `worker` or `runtime`.
    pub role: String,
    pub tid: u32,
    pub task_slot: Option<u32>,
    /// CPU while the function had a request, and while it had none (the kernel's accounting).
    pub pending_cpu_ms: f64,
    pub idle_cpu_ms: f64,
    /// CPU spent polling the inbox (the thread's own clock).
    pub poll_cpu_ms: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionReport {
    pub chain: u32,
    pub function: String,
    pub pid: u32,
    /// Periods without a pending request, and their total length.
    pub idle_periods: u64,
    pub idle_wall_ms: f64,
    /// Requests taken from the inbox, and how long they waited there (mean, longest).
    pub pickups: u64,
    pub pickup_mean_ms: f64,
    pub pickup_max_ms: f64,
    pub threads: Vec<ThreadReport>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub params: Params,
    /// From the first process started to the last figure.
    pub wall_seconds: f64,
    /// From the start of the measurement to its end.
    pub measured_seconds: f64,
    pub arrived: u64,
    pub completed: u64,
    pub arrivals_capped: u64,
    /// Completed requests per second of arrivals.
    pub throughput_per_s: f64,
    /// End to end, of the completed requests (none: all zero).
    pub latency: Latency,
    /// The CPU of every function thread (worker and runtime), and its parts.
    pub cpu_ms: f64,
    pub idle_cpu_ms: f64,
    pub poll_cpu_ms: f64,
    /// idle / all CPU of the function threads; polling / all.
    pub idle_ratio: Option<f64>,
    pub poll_ratio: Option<f64>,
    pub functions: Vec<FunctionReport>,
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// The `q`-quantile of sorted `values` (nearest rank).
fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Report {
    pub fn collect(shared: &Shared, params: &Params, wall: Duration) -> Report {
        let chains = &shared.chains[..params.chains as usize];
        let mut latencies = Vec::new();
        let mut arrived = 0;
        for chain in chains {
            let n = chain.arrived.load(Ordering::Acquire) as usize;
            arrived += n as u64;
            for (arrival, done) in chain.arrival_ns[..n].iter().zip(&chain.done_ns[..n]) {
                let done = done.load(Ordering::Acquire);
                if done != 0 {
                    latencies.push(done.saturating_sub(arrival.load(Ordering::Relaxed)));
                }
            }
        }
        latencies.sort_unstable();
        let (mut cpu, mut idle, mut polled) = (0, 0, 0);
        let mut functions = Vec::new();
        for (c, chain) in chains.iter().enumerate() {
            for (k, function) in chain.functions.iter().enumerate().take(STAGES) {
                let threads = function.threads[..params.threads()]
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        let pending_ns = t.pending_cpu_ns.load(Ordering::Relaxed);
                        let idle_ns = t.idle_cpu_ns.load(Ordering::Relaxed);
                        let poll_ns = t
                            .poll_cpu_ns
                            .load(Ordering::Relaxed)
                            .saturating_sub(t.poll_base_ns.load(Ordering::Relaxed));
                        cpu += pending_ns + idle_ns;
                        idle += idle_ns;
                        polled += poll_ns;
                        let slot = t.task_slot.load(Ordering::Relaxed);
                        ThreadReport {
                            role: if i == 0 { "worker" } else { "runtime" }.into(),
                            tid: t.tid.load(Ordering::Relaxed),
                            task_slot: (slot != NO_SLOT).then_some(slot),
                            pending_cpu_ms: ms(pending_ns),
                            idle_cpu_ms: ms(idle_ns),
                            poll_cpu_ms: ms(poll_ns),
                        }
                    })
                    .collect();
                let pickups = function.pickups.load(Ordering::Relaxed);
                let pickup_sum = function.pickup_sum_ns.load(Ordering::Relaxed);
                functions.push(FunctionReport {
                    chain: c as u32,
                    function: FUNCTIONS[k].name.into(),
                    pid: function.pid.load(Ordering::Relaxed),
                    idle_periods: function.idle_periods.load(Ordering::Relaxed),
                    idle_wall_ms: ms(function.idle_wall_ns.load(Ordering::Relaxed)),
                    pickups,
                    pickup_mean_ms: if pickups == 0 {
                        0.0
                    } else {
                        ms(pickup_sum) / pickups as f64
                    },
                    pickup_max_ms: ms(function.pickup_max_ns.load(Ordering::Relaxed)),
                    threads,
                });
            }
        }
        let ratio = |part: u64| (cpu > 0).then(|| part as f64 / cpu as f64);
        let completed = latencies.len() as u64;
        let mean = if latencies.is_empty() {
            0
        } else {
            latencies.iter().sum::<u64>() / completed
        };
        let measured = shared
            .finished_ns
            .load(Ordering::Acquire)
            .saturating_sub(shared.measuring_since_ns.load(Ordering::Acquire));
        Report {
            params: params.clone(),
            wall_seconds: wall.as_secs_f64(),
            measured_seconds: measured as f64 / 1e9,
            arrived,
            completed,
            arrivals_capped: shared.arrivals_capped.load(Ordering::Relaxed),
            throughput_per_s: completed as f64 / params.seconds,
            latency: Latency {
                mean_ms: ms(mean),
                p50_ms: ms(quantile(&latencies, 0.5)),
                p99_ms: ms(quantile(&latencies, 0.99)),
                max_ms: ms(latencies.last().copied().unwrap_or(0)),
            },
            cpu_ms: ms(cpu),
            idle_cpu_ms: ms(idle),
            poll_cpu_ms: ms(polled),
            idle_ratio: ratio(idle),
            poll_ratio: ratio(polled),
            functions,
        }
    }

    /// A few lines for a person.
    pub fn summary(&self) -> String {
        let percent = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0));
        format!(
            "faas: {} chain(s), {} requests/s each, {} s, hints {}\n\
             requests: {} arrived, {} completed ({:.1}/s){}\n\
             latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms\n\
             function threads' CPU: {:.0} ms; idle ratio {}, polling share {}\n",
            self.params.chains,
            self.params.rate,
            self.params.seconds,
            self.params.hints.name(),
            self.arrived,
            self.completed,
            self.throughput_per_s,
            if self.arrivals_capped > 0 {
                format!(", {} refused at the bound", self.arrivals_capped)
            } else {
                String::new()
            },
            self.latency.p50_ms,
            self.latency.p99_ms,
            self.latency.max_ms,
            self.cpu_ms,
            percent(self.idle_ratio),
            percent(self.poll_ratio),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&v, 1.0), 100);
        assert_eq!(quantile(&[7], 0.99), 7);
        assert_eq!(quantile(&[], 0.5), 0);
    }
}
