//! The statistics the host keeps per class (`docs/mechanism.md`, "Statistics") and the
//! mechanism's part of a run report.

use serde::Serialize;
use upsched_policy::engine::PolicyInstance;

use upsched_abi::stats::{ClassCounters, WAIT_BUCKETS};

use crate::metrics::{Histogram, LatencySummary};
use crate::units::Time;

/// The kernel's counters of one class, plus the exact wait distribution the simulator can
/// afford.
#[derive(Clone, Debug, Default)]
pub struct ClassStats {
    pub counters: ClassCounters,
    pub wait: Histogram,
    /// Waits that had not ended when the statistics were taken (included in the others).
    pub open_waits: u64,
}

impl ClassStats {
    pub fn record_wait(&mut self, wait: Time) {
        self.counters.record_wait(wait);
        self.wait.record(wait);
    }

    /// A wait still going on, counted as if it ended now.
    pub fn record_open_wait(&mut self, wait: Time) {
        self.record_wait(wait);
        self.open_waits += 1;
    }

    pub fn report(&self) -> ClassReport {
        let c = &self.counters;
        ClassReport {
            enqueues: c.enqueues,
            dispatches: c.dispatches,
            cpu_time_ns: c.cpu_time_ns,
            wait: self.wait.summary(),
            open_waits: self.open_waits,
            wait_sum_ns: c.wait_sum_ns,
            wait_hist: c.wait_hist,
            parks: c.parks,
            releases: c.releases,
            clamps: ClampReport {
                slice: c.clamp_slice,
                cpu: c.clamp_cpu,
                verdict: c.clamp_verdict,
                park: c.clamp_park,
            },
            ejections: c.ejections,
            preempt_kicks: c.preempt_kicks,
            policy_calls: c.policy_calls,
            notifies: c.notifies,
            notify_releases: c.notify_releases,
            notify_kicks: c.notify_kicks,
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
    /// Waits ended by a run, and those still open at the end of the run (as if they ended
    /// then): percentiles from the simulator's exact histogram.
    pub wait: LatencySummary,
    /// How many of those waits were still open at the end.
    pub open_waits: u64,
    pub wait_sum_ns: u64,
    /// The kernel's log2 buckets, for comparison with `Host::stats()`.
    pub wait_hist: [u64; WAIT_BUCKETS],
    pub parks: u64,
    pub releases: u64,
    pub clamps: ClampReport,
    pub ejections: u64,
    pub preempt_kicks: u64,
    pub policy_calls: u64,
    pub notifies: u64,
    pub notify_releases: u64,
    pub notify_kicks: u64,
}

/// When a tenant's policy was replaced, by which, or why it was not.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ReplaceReport {
    pub at_ns: Time,
    pub policy: String,
    /// Why the replace did not happen (the tenant was not attached then), if it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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
    /// The scheduled replace of the policy, if the tenant had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replace: Option<ReplaceReport>,
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
    /// `ops.enqueue` calls the kernel's host would run: every enqueue except the wake-ups
    /// `select_cpu` inserted directly (the kernel's `host_enqueue` run count).
    pub host_enqueues: u64,
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
