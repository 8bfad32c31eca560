//! Configuration of the upsched mechanism: the host's parameters and one tenant's, with the
//! loader's defaults and limits of `docs/mechanism.md` (`HostConfig`, `TenantConfig::new`).

use upsched_abi::mechanism;
use upsched_policy::engine::LoadedPolicy;

use crate::units::{MS, S, Time};

/// Tenant slots (`UPSCHED_NR_SLOTS`); class index [`DEFAULT_CLASS`] is the default class.
pub const NR_SLOTS: usize = 8;
pub const DEFAULT_CLASS: usize = NR_SLOTS;
pub const NR_CLASSES: usize = NR_SLOTS + 1;
/// Chain levels 0..NR_LEVELS-1; higher runs first.
pub const NR_LEVELS: u32 = 8;
/// Tenant weights (relative to each other within a level).
pub const MAX_TENANT_WEIGHT: u32 = 10_000;
/// Longest per-tenant watchdog bound the host accepts: the loader's, derived from the default
/// class's wait bound (`upsched_abi::mechanism`).
pub const MAX_WATCHDOG: Time = mechanism::MAX_WATCHDOG_NS;
/// Longest slice bound the host accepts.
pub const MAX_SLICE: Time = S;

/// The host's parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct HostConfig {
    /// Slice of the default class at low load, and the credit bound of idle classes.
    pub default_slice: Time,
    /// Shortest default-class slice under load, and how far ahead of the class's virtual now
    /// a task may be queued.
    pub default_slice_floor: Time,
    pub default_level: u32,
    pub default_weight: u32,
    pub guard_window: Time,
    /// Minimum share of each CPU per window of that CPU for each lower level with work there.
    pub guard_min_permille: u64,
    /// Period of the timer that releases parked tasks and runs the watchdog.
    pub timer_period: Time,
}

impl HostConfig {
    pub fn new(default_slice: Time) -> Self {
        HostConfig {
            default_slice,
            default_slice_floor: mechanism::DEFAULT_SLICE_FLOOR_NS,
            default_level: NR_LEVELS - 1,
            default_weight: 100,
            guard_window: 100 * MS,
            guard_min_permille: mechanism::GUARD_MIN_PERMILLE,
            timer_period: 2 * MS,
        }
    }
}

/// One tenant: where it is bound, its place in the chain and its bounds.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantConfig {
    /// cgroup path the tenant governs (with its subtree), e.g. "/batch".
    pub cgroup: String,
    pub level: u32,
    pub weight: u32,
    pub slice_min: Time,
    pub slice_max: Time,
    pub slice_default: Time,
    pub park_max: Time,
    /// Longest wait of a queued or parked task before the tenant is ejected.
    pub watchdog: Time,
    /// Simulated time of the attach (0: before anything runs).
    pub attach_at: Time,
    pub detach_at: Option<Time>,
}

impl TenantConfig {
    /// The loader's defaults: level 1, weight 100, slices 0.5..20 ms (default 5 ms), park
    /// bound 100 ms, watchdog 3 s.
    pub fn new(cgroup: &str) -> Self {
        TenantConfig {
            cgroup: cgroup.to_string(),
            level: 1,
            weight: 100,
            slice_min: MS / 2,
            slice_max: 20 * MS,
            slice_default: 5 * MS,
            park_max: 100 * MS,
            watchdog: 3 * S,
            attach_at: 0,
            detach_at: None,
        }
    }

    /// The loader's checks (`TenantConfig::validate` of upsched-kernel), and the default slice
    /// within the slice bounds; the message names the offending setting.
    pub fn validate(&self) -> Result<(), String> {
        let c = &self.cgroup;
        if !c.starts_with('/') || c.contains("//") || (c.len() > 1 && c.ends_with('/')) {
            return Err(format!(
                "cgroup {c:?} must be an absolute path like \"/tenant/a\""
            ));
        }
        if self.level >= NR_LEVELS {
            return Err(format!(
                "level {} is outside 0..{}",
                self.level,
                NR_LEVELS - 1
            ));
        }
        if !(1..=MAX_TENANT_WEIGHT).contains(&self.weight) {
            return Err(format!(
                "weight {} is outside 1..{MAX_TENANT_WEIGHT}",
                self.weight
            ));
        }
        if self.slice_min == 0 || self.slice_min > self.slice_max {
            return Err(format!(
                "slice bounds {}..{} ns: need 0 < slice_min <= slice_max",
                self.slice_min, self.slice_max
            ));
        }
        if self.slice_max > MAX_SLICE {
            return Err(format!(
                "slice_max {} ns is longer than 1 s",
                self.slice_max
            ));
        }
        if !(self.slice_min..=self.slice_max).contains(&self.slice_default) {
            return Err(format!(
                "slice {} ns is outside the bounds {}..{} ns",
                self.slice_default, self.slice_min, self.slice_max
            ));
        }
        if self.watchdog == 0 || self.watchdog > MAX_WATCHDOG {
            return Err(format!(
                "watchdog {} ns: need 0 < watchdog <= {:.1} s (an ejected task then waits in \
                 the default class too, all under sched_ext's {} s)",
                self.watchdog,
                MAX_WATCHDOG as f64 / 1e9,
                mechanism::SCX_TIMEOUT_NS / S
            ));
        }
        if self.watchdog <= self.park_max {
            return Err(format!(
                "watchdog {} ns must be longer than park_max {} ns (a parked task waits up to park_max)",
                self.watchdog, self.park_max
            ));
        }
        if let Some(detach) = self.detach_at {
            if detach <= self.attach_at {
                return Err(format!(
                    "detach at {detach} ns is not after attach at {} ns",
                    self.attach_at
                ));
            }
        }
        Ok(())
    }
}

/// A tenant as the mechanism receives it: a loaded policy (built by the caller, which chooses
/// how the engine runs it) and its configuration.
#[derive(Clone, Debug)]
pub struct Tenant {
    /// Shown in reports: the policy as the scenario or the command line named it.
    pub name: String,
    pub policy: LoadedPolicy,
    pub config: TenantConfig,
}
