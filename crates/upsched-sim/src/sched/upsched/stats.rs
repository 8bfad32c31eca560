//! The statistics the host keeps per class (`docs/mechanism.md`, "Statistics") and the
//! mechanism's part of a run report.

use serde::Serialize;
use upsched_policy::engine::PolicyInstance;

use crate::metrics::{Histogram, LatencySummary};
use crate::units::Time;

/// Wait buckets of the kernel's histogram: 0 is < 2 µs, i is [2^i, 2^(i+1)) µs, 19 the rest.
pub const WAIT_BUCKETS: usize = 20;

/// Counters of one class, as the kernel's `struct upsched_class_stats`, plus the exact wait
/// distribution the simulator can afford.
#[derive(Clone, Debug, Default)]
pub struct ClassStats {
    pub enqueues: u64,
    pub dispatches: u64,
    pub cpu_time_ns: Time,
    pub wait_hist: [u64; WAIT_BUCKETS],
    pub wait: Histogram,
    pub parks: u64,
    pub releases: u64,
    pub clamp_slice: u64,
    pub clamp_cpu: u64,
    pub clamp_verdict: u64,
    pub clamp_park: u64,
    pub ejections: u64,
    pub preempt_kicks: u64,
    pub policy_calls: u64,
}

/// Bucket of a wait in the kernel's log2 histogram.
pub fn wait_bucket(wait: Time) -> usize {
    let us = wait / 1000;
    if us < 2 {
        0
    } else {
        (63 - us.leading_zeros() as usize).min(WAIT_BUCKETS - 1)
    }
}

impl ClassStats {
    pub fn record_wait(&mut self, wait: Time) {
        self.wait_hist[wait_bucket(wait)] += 1;
        self.wait.record(wait);
    }

    pub fn report(&self) -> ClassReport {
        ClassReport {
            enqueues: self.enqueues,
            dispatches: self.dispatches,
            cpu_time_ns: self.cpu_time_ns,
            wait: self.wait.summary(),
            wait_sum_ns: self.wait.sum.min(u64::MAX as u128) as u64,
            wait_hist: self.wait_hist,
            parks: self.parks,
            releases: self.releases,
            clamps: ClampReport {
                slice: self.clamp_slice,
                cpu: self.clamp_cpu,
                verdict: self.clamp_verdict,
                park: self.clamp_park,
            },
            ejections: self.ejections,
            preempt_kicks: self.preempt_kicks,
            policy_calls: self.policy_calls,
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ClampReport {
    pub slice: u64,
    pub cpu: u64,
    pub verdict: u64,
    pub park: u64,
}

impl ClampReport {
    pub fn total(&self) -> u64 {
        self.slice + self.cpu + self.verdict + self.park
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ClassReport {
    pub enqueues: u64,
    pub dispatches: u64,
    pub cpu_time_ns: Time,
    /// Waits ended by a run: percentiles from the simulator's exact histogram.
    pub wait: LatencySummary,
    pub wait_sum_ns: u64,
    /// The kernel's log2 buckets, for comparison with `Host::stats()`.
    pub wait_hist: [u64; WAIT_BUCKETS],
    pub parks: u64,
    pub releases: u64,
    pub clamps: ClampReport,
    pub ejections: u64,
    pub preempt_kicks: u64,
    pub policy_calls: u64,
}

/// Why and when a tenant was ejected.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EjectionReport {
    /// "watchdog" or "fault".
    pub kind: &'static str,
    pub at_ns: Time,
    /// The task that waited longest (watchdog) or whose hook failed (fault).
    pub pid: u32,
    pub waited_ns: Time,
    pub reason: String,
}

/// One tenant over the run (a slot reused by a later attach gives a second entry).
#[derive(Clone, Debug, Serialize)]
pub struct TenantReport {
    pub name: String,
    pub policy: String,
    pub cgroup: String,
    pub slot: Option<u32>,
    pub level: u32,
    pub weight: u32,
    pub attached_at_ns: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detached_at_ns: Option<Time>,
    /// Why the attach failed (no free slot), if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attach_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ejection: Option<EjectionReport>,
    /// Tasks holding a task slot at the end of the run.
    pub nr_tasks: u32,
    pub stats: ClassReport,
    /// The policy's instance at the end of the run (attached, or as it was when its slot
    /// became FREE), for reading its globals, as `Host::policy_map` outlives a detach.
    #[serde(skip)]
    pub policy_state: Option<PolicyInstance>,
}

/// The mechanism's statistics for a run.
#[derive(Clone, Debug, Serialize)]
pub struct MechanismReport {
    pub default_class: ClassReport,
    pub tenants: Vec<TenantReport>,
}

impl MechanismReport {
    /// The per-class table of the terminal summary: the default class, then each tenant.
    pub fn text_table(&self) -> String {
        use std::fmt::Write as _;
        let d = crate::units::format_duration;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "  {:<22} {:>5} {:>4} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10} {:>6} {:>7} {:>7}  ejection",
            "class (upsched)",
            "level",
            "slot",
            "enqueues",
            "dispatch",
            "cpu",
            "wait p50",
            "wait p99",
            "wait max",
            "parks",
            "release",
            "clamps",
        );
        let mut row = |name: &str, level: String, slot: String, s: &ClassReport, eject: &str| {
            let name: String = name.chars().take(22).collect();
            let _ = writeln!(
                out,
                "  {:<22} {:>5} {:>4} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10} {:>6} {:>7} {:>7}  {}",
                name,
                level,
                slot,
                s.enqueues,
                s.dispatches,
                d(s.cpu_time_ns),
                d(s.wait.p50_ns),
                d(s.wait.p99_ns),
                d(s.wait.max_ns),
                s.parks,
                s.releases,
                s.clamps.total(),
                eject
            );
        };
        row("default", "-".into(), "-".into(), &self.default_class, "-");
        for t in &self.tenants {
            let eject = match (&t.attach_error, &t.ejection) {
                (Some(error), _) => format!("not attached: {error}"),
                (None, Some(e)) => format!("at {}: {}", d(e.at_ns), e.reason),
                (None, None) => "-".into(),
            };
            row(
                &format!("{} {}", t.name, t.cgroup),
                t.level.to_string(),
                t.slot.map_or("-".into(), |s| s.to_string()),
                &t.stats,
                &eject,
            );
        }
        out
    }
}
