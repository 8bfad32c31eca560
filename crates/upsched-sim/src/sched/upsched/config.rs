//! Configuration of the upsched mechanism: the host's parameters and one tenant's, with the
//! loader's defaults, bounds and checks, all from `upsched_abi::mechanism` (`mechanism.toml`).

use upsched_abi::mechanism::{HostParams, ParamError, TenantParams};
use upsched_policy::engine::LoadedPolicy;

use crate::units::Time;

pub use upsched_abi::mechanism::{DEFAULT_CLASS, NR_CLASSES, NR_LEVELS, NR_SLOTS};

/// The host's parameters; their bounds and defaults are those of [`HostParams`]
/// (`mechanism.toml`), checked by the same [`HostParams::validate`] as the kernel loader's.
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
    /// The loader's defaults, with the default class's slice `default_slice`.
    pub fn new(default_slice: Time) -> Self {
        let params = HostParams::default();
        HostConfig {
            default_slice,
            default_slice_floor: params.default_slice_floor_ns.min(default_slice),
            default_level: params.default_level,
            default_weight: params.default_weight,
            guard_window: params.guard_window_ns,
            guard_min_permille: params.guard_min_permille.into(),
            timer_period: params.timer_period_ns,
        }
    }

    /// The mechanism's parameters of this configuration.
    pub fn params(&self) -> HostParams {
        HostParams {
            default_slice_ns: self.default_slice,
            default_slice_floor_ns: self.default_slice_floor,
            default_level: self.default_level,
            default_weight: self.default_weight,
            guard_min_permille: u32::try_from(self.guard_min_permille).unwrap_or(u32::MAX),
            guard_window_ns: self.guard_window,
            timer_period_ns: self.timer_period,
        }
    }

    /// The loader's check ([`HostParams::validate`]).
    pub fn validate(&self) -> Result<(), ParamError> {
        self.params().validate()
    }
}

/// One tenant: where it is bound, its place in the chain and its bounds; their bounds and
/// defaults are those of [`TenantParams`] (`mechanism.toml`).
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
    /// The loader's defaults ([`TenantParams::default`]).
    pub fn new(cgroup: &str) -> Self {
        let params = TenantParams::default();
        TenantConfig {
            cgroup: cgroup.to_string(),
            level: params.level,
            weight: params.weight,
            slice_min: params.slice_min_ns,
            slice_max: params.slice_max_ns,
            slice_default: params.slice_default_ns,
            park_max: params.park_max_ns,
            watchdog: params.watchdog_ns,
            attach_at: 0,
            detach_at: None,
        }
    }

    /// The mechanism's parameters of this configuration.
    pub fn params(&self) -> TenantParams {
        TenantParams {
            level: self.level,
            weight: self.weight,
            slice_min_ns: self.slice_min,
            slice_max_ns: self.slice_max,
            slice_default_ns: self.slice_default,
            park_max_ns: self.park_max,
            watchdog_ns: self.watchdog,
        }
    }

    /// The loader's checks ([`TenantParams::validate`], the same code as the kernel loader's),
    /// and what only a scenario has: the cgroup path's form and the attach/detach times.
    pub fn validate(&self) -> Result<(), String> {
        let c = &self.cgroup;
        if !c.starts_with('/') || c.contains("//") || (c.len() > 1 && c.ends_with('/')) {
            return Err(format!(
                "cgroup {c:?} must be an absolute path like \"/tenant/a\""
            ));
        }
        self.params().validate().map_err(|e| e.to_string())?;
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
    /// A hot swap of the policy while the tenant is attached (`Host::replace`).
    pub replace: Option<Replacement>,
}

/// A scheduled replace of a tenant's policy: at `at`, `policy` governs the tenant in place of
/// the one it had, with the slot, its members and statistics kept (docs/mechanism.md).
#[derive(Clone, Debug)]
pub struct Replacement {
    pub at: Time,
    /// Shown in reports: the policy as the scenario named it.
    pub name: String,
    pub policy: LoadedPolicy,
}
