//! The per-class statistics record of the host scheduler (`struct upsched_class_stats` of
//! `mechanism.toml`), shared by the kernel backend, which reads it from the
//! host's per-CPU map, and the simulator, which keeps the same counters for the same mechanism
//! (`docs/mechanism.md`, "Statistics").

pub use crate::mechanism::{ClassCounters, WAIT_BUCKETS};

/// Bucket of a wait in the log2 histogram.
pub fn wait_bucket(wait_ns: u64) -> usize {
    let us = wait_ns / 1000;
    if us < 2 {
        0
    } else {
        (us.ilog2() as usize).min(WAIT_BUCKETS - 1)
    }
}

impl ClassCounters {
    /// Records a wait that ended when the task started running.
    pub fn record_wait(&mut self, wait_ns: u64) {
        self.wait_sum_ns = self.wait_sum_ns.saturating_add(wait_ns);
        self.wait_max_ns = self.wait_max_ns.max(wait_ns);
        self.wait_hist[wait_bucket(wait_ns)] += 1;
    }

    /// Adds the counters of another CPU; the maximum is a maximum.
    pub fn accumulate(&mut self, other: &ClassCounters) {
        self.enqueues += other.enqueues;
        self.dispatches += other.dispatches;
        self.cpu_time_ns += other.cpu_time_ns;
        self.wait_max_ns = self.wait_max_ns.max(other.wait_max_ns);
        self.wait_sum_ns += other.wait_sum_ns;
        self.parks += other.parks;
        self.releases += other.releases;
        self.clamp_slice += other.clamp_slice;
        self.clamp_cpu += other.clamp_cpu;
        self.clamp_verdict += other.clamp_verdict;
        self.clamp_park += other.clamp_park;
        self.ejections += other.ejections;
        self.preempt_kicks += other.preempt_kicks;
        self.policy_calls += other.policy_calls;
        self.notifies += other.notifies;
        self.notify_releases += other.notify_releases;
        self.notify_kicks += other.notify_kicks;
        for (sum, value) in self.wait_hist.iter_mut().zip(other.wait_hist.iter()) {
            *sum += value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_buckets_are_log2_microseconds_with_an_open_last_bucket() {
        assert_eq!(wait_bucket(0), 0);
        assert_eq!(wait_bucket(1_999), 0);
        assert_eq!(wait_bucket(2_000), 1);
        assert_eq!(wait_bucket(4_000), 2);
        assert_eq!(wait_bucket(1_000_000), 9);
        // A starving task's multi-second wait lands in the last bucket, not outside.
        assert_eq!(wait_bucket(5_000_000_000), WAIT_BUCKETS - 1);
        assert_eq!(wait_bucket(u64::MAX), WAIT_BUCKETS - 1);
    }

    #[test]
    fn accumulate_sums_counters_and_keeps_the_maximum() {
        let mut total = ClassCounters {
            enqueues: 1,
            wait_max_ns: 10,
            ..Default::default()
        };
        let mut other = ClassCounters {
            enqueues: 2,
            wait_max_ns: 5,
            ..Default::default()
        };
        other.wait_hist[3] = 4;
        total.accumulate(&other);
        assert_eq!(total.enqueues, 3);
        assert_eq!(total.wait_max_ns, 10);
        assert_eq!(total.wait_hist[3], 4);
    }

    #[test]
    fn record_wait_updates_sum_maximum_and_histogram() {
        let mut counters = ClassCounters::default();
        counters.record_wait(3_000);
        counters.record_wait(1_000);
        assert_eq!(counters.wait_sum_ns, 4_000);
        assert_eq!(counters.wait_max_ns, 3_000);
        assert_eq!(counters.wait_hist[0], 1);
        assert_eq!(counters.wait_hist[1], 1);
    }
}
