//! The host mechanism's facts, shared by the host scheduler (BPF), its loader
//! (`upsched-kernel`) and the simulator (`upsched-sim`):
//!
//! - generated from `mechanism.toml` (the single source of truth, also generated into the C
//!   header [`C_HEADER`], `upsched_mechanism.h`): the constants, the map value layouts
//!   ([`HostConfigRaw`], [`TenantConfigRaw`], [`ClassCounters`], ...) with offset and size
//!   asserts, and the bounds and defaults of every host and tenant parameter ([`HostParams`],
//!   [`TenantParams`]);
//! - written here: the rules between parameters ([`HostParams::validate`],
//!   [`TenantParams::validate`], which both the loader and the simulator call) and the default
//!   class's wait bound, from which the longest tenant watchdog bound follows.
//!   `docs/mechanism.md` ("The default class's wait bound") states the formula and why it
//!   holds.

use std::time::Duration;

include!(concat!(env!("OUT_DIR"), "/mechanism.rs"));

/// `upsched_mechanism.h`, generated from the same spec (the kernel crate compiles the host
/// scheduler with it).
pub const C_HEADER: &str = include_str!(concat!(env!("OUT_DIR"), "/upsched_mechanism.h"));

/// The size of a field, for the generated layout asserts.
const fn size_of_field<S, F>(_select: fn(&S) -> &F) -> usize {
    core::mem::size_of::<F>()
}

/// How far apart the entries of a mapped hint map are: the kernel spaces the elements of a
/// mmapped array `round_up(value_size, 8)` bytes apart. Entry `task_slot` of a tenant's hint
/// map (`MAX_TASKS` of them) starts at `task_slot * HINT_ENTRY_STRIDE`.
pub const HINT_ENTRY_STRIDE: usize = size_of::<HintWordsRaw>().next_multiple_of(8);

const MS: u64 = 1_000_000;

/// The bounds and default of one parameter (`mechanism.toml`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamBound {
    pub name: &'static str,
    pub min: u64,
    pub max: u64,
    pub default: u64,
    /// Why the bounds are what they are (may be empty).
    pub why: &'static str,
}

/// A parameter value the mechanism refuses, with the parameter's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamError {
    pub parameter: &'static str,
    pub message: String,
}

impl std::fmt::Display for ParamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParamError {}

impl ParamBound {
    /// Times end in `_ns` and are shown as durations, under the name without the suffix.
    fn label(&self) -> &'static str {
        self.name.strip_suffix("_ns").unwrap_or(self.name)
    }

    /// `value` in this parameter's unit.
    pub fn show(&self, value: u64) -> String {
        if self.name.ends_with("_ns") {
            format!("{:?}", Duration::from_nanos(value))
        } else {
            value.to_string()
        }
    }

    /// Refuses a value outside `min..=max`.
    pub fn check(&self, value: u64) -> Result<(), ParamError> {
        if (self.min..=self.max).contains(&value) {
            return Ok(());
        }
        let why = if self.why.is_empty() {
            String::new()
        } else {
            format!(": {}", self.why)
        };
        Err(ParamError {
            parameter: self.name,
            message: format!(
                "{} {} is outside {}..={}{why}",
                self.label(),
                self.show(value),
                self.show(self.min),
                self.show(self.max)
            ),
        })
    }
}

/// A refusal of `bound`'s parameter for a rule that involves another one.
fn refuse(bound: &ParamBound, message: String) -> Result<(), ParamError> {
    Err(ParamError {
        parameter: bound.name,
        message,
    })
}

impl HostParams {
    /// Every bound of `mechanism.toml`, and the slice floor at most the slice.
    pub fn validate(&self) -> Result<(), ParamError> {
        self.check_bounds()?;
        if self.default_slice_floor_ns > self.default_slice_ns {
            return refuse(
                &HOST_DEFAULT_SLICE_FLOOR_NS,
                format!(
                    "default_slice_floor {} is longer than default_slice {}",
                    HOST_DEFAULT_SLICE_FLOOR_NS.show(self.default_slice_floor_ns),
                    HOST_DEFAULT_SLICE_NS.show(self.default_slice_ns)
                ),
            );
        }
        Ok(())
    }
}

impl TenantParams {
    /// Every bound of `mechanism.toml`, the default slice within the slice bounds, and the
    /// park bound below the watchdog bound (a parked task waits up to park_max).
    pub fn validate(&self) -> Result<(), ParamError> {
        self.check_bounds()?;
        let show = |v| TENANT_SLICE_MIN_NS.show(v);
        if self.slice_min_ns > self.slice_max_ns {
            return refuse(
                &TENANT_SLICE_MIN_NS,
                format!(
                    "slice_min {} is longer than slice_max {}",
                    show(self.slice_min_ns),
                    show(self.slice_max_ns)
                ),
            );
        }
        if !(self.slice_min_ns..=self.slice_max_ns).contains(&self.slice_default_ns) {
            return refuse(
                &TENANT_SLICE_DEFAULT_NS,
                format!(
                    "slice_default {} is outside slice_min..=slice_max ({}..={})",
                    show(self.slice_default_ns),
                    show(self.slice_min_ns),
                    show(self.slice_max_ns)
                ),
            );
        }
        if self.park_max_ns >= self.watchdog_ns {
            return refuse(
                &TENANT_PARK_MAX_NS,
                format!(
                    "park_max {} must be below the watchdog bound {} (a parked task waits up to \
                     park_max)",
                    show(self.park_max_ns),
                    show(self.watchdog_ns)
                ),
            );
        }
        Ok(())
    }
}

/// sched_ext's own watchdog, the `timeout_ms` the host scheduler asks for: a task runnable for
/// this long without running makes the kernel disable the whole host.
pub const SCX_TIMEOUT_NS: u64 = 10_000 * MS;

/// The default class's slice at low load (and the loader's default `default_slice`).
pub const DEFAULT_SLICE_NS: u64 = HOST_DEFAULT_SLICE_NS.default;

/// The shortest slice the default class hands out under load, and the most a task may be
/// queued ahead of the class's virtual now (at weight 100). The kernel's own EEVDF base slice
/// (`sysctl_sched_base_slice`, 0.75 ms): short enough that a round of hundreds of tasks stays
/// far below [`SCX_TIMEOUT_NS`], long enough that a switch (about 0.1 ms through the host under
/// emulation) costs little of it.
pub const DEFAULT_SLICE_FLOOR_NS: u64 = HOST_DEFAULT_SLICE_FLOOR_NS.default;

/// How many floor slices of virtual time a default-class task may be ahead of the class's
/// virtual now, at most: one at weight 100, `100 / weight` at lower weights up to this cap.
/// Without a cap a task of weight 1 (nice 19, e.g. `khugepaged`) would be 100 floor slices
/// ahead and wait for that many runs of every other task (seen in the guest: 15.6 s behind
/// 1,200 hogs, and sched_ext disabled the host). Weights below 50 (nice 4 and more) then get
/// no fewer turns than weight 50 under contention.
pub const LEAD_FLOOR_SLICES: u64 = 2;

/// The tick of the kernels the host runs on (Debian's `CONFIG_HZ=250`): sched_ext ends a slice
/// only at a tick, so a run lasts up to its slice plus one tick.
pub const KERNEL_TICK_NS: u64 = 4 * MS;

/// The loader's default starvation guard share, per mille, of each lower chain level.
pub const GUARD_MIN_PERMILLE: u64 = HOST_GUARD_MIN_PERMILLE.default;

/// Chain levels below the default class that the guard may serve at once (the default class
/// sits at the top level).
pub const LOWER_LEVELS: u64 = NR_LEVELS as u64 - 1;

/// Runnable default-class tasks per CPU up to which [`MAX_WATCHDOG_NS`] keeps a tenant's wait
/// plus its wait in the default class after an ejection below [`SCX_TIMEOUT_NS`]: a tenant's
/// whole task limit (4096) on an 8-CPU machine.
pub const REFERENCE_TASKS_PER_CPU: u64 = 512;

/// Kept free under [`SCX_TIMEOUT_NS`] on top of the two waits: the timer periods between an
/// ejection and the tasks' move, and clock jitter.
pub const TIMEOUT_MARGIN_NS: u64 = 500 * MS;

/// The parameters of the default class that its wait bound depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultClassShape {
    pub nr_cpus: u64,
    /// Slice at low load.
    pub slice_ns: u64,
    /// Shortest slice under load, and the most a task is queued ahead of the virtual now.
    pub slice_floor_ns: u64,
    /// How much longer than its slice a run can last (the kernel's tick; 0 in the simulator,
    /// whose runs end exactly at the slice).
    pub overrun_ns: u64,
    /// CPU share per mille that the starvation guard may give to each lower level with work.
    pub guard_min_permille: u64,
    /// Lower levels with work that the guard serves.
    pub lower_levels: u64,
}

impl DefaultClassShape {
    /// The loader's defaults on `nr_cpus` CPUs of a kernel with [`KERNEL_TICK_NS`].
    pub const fn kernel_defaults(nr_cpus: u64) -> Self {
        DefaultClassShape {
            nr_cpus,
            slice_ns: DEFAULT_SLICE_NS,
            slice_floor_ns: DEFAULT_SLICE_FLOOR_NS,
            overrun_ns: KERNEL_TICK_NS,
            guard_min_permille: GUARD_MIN_PERMILLE,
            lower_levels: LOWER_LEVELS,
        }
    }

    /// The slice of a default-class task when `queued` tasks of the class (itself included)
    /// wait for a CPU: `slice × nr_cpus / queued`, within `[slice_floor, slice]`, so that a
    /// round of every queued task takes about one slice.
    pub const fn slice_at(&self, queued: u64) -> u64 {
        let floor = if self.slice_floor_ns < self.slice_ns {
            self.slice_floor_ns
        } else {
            self.slice_ns
        };
        if queued <= self.nr_cpus {
            return self.slice_ns;
        }
        let slice = self.slice_ns * self.nr_cpus / queued;
        if slice < floor { floor } else { slice }
    }

    /// The longest a default-class task that may run on every CPU waits, with `runnable`
    /// default-class tasks of weight 100 or more (itself included, of any weight):
    ///
    /// `(slice + overrun + (runnable - 1) × (slice_at(runnable) + overrun + LEAD_FLOOR_SLICES
    /// × floor) / nr_cpus) / (1 - lower_levels × guard)`.
    ///
    /// The runs in progress end within `slice + overrun`; each other task then runs ahead of
    /// this one for at most its lead (`LEAD_FLOOR_SLICES` floors of virtual time) plus one run;
    /// the guard may give the lower levels their shares meanwhile.
    pub const fn wait_bound(&self, runnable: u64) -> u64 {
        let cpus = if self.nr_cpus == 0 { 1 } else { self.nr_cpus };
        let others = if runnable == 0 { 0 } else { runnable - 1 };
        let floor = if self.slice_floor_ns < self.slice_ns {
            self.slice_floor_ns
        } else {
            self.slice_ns
        };
        let per_task = self.slice_at(runnable) + self.overrun_ns + LEAD_FLOOR_SLICES * floor;
        let busy = self.slice_ns + self.overrun_ns + others * per_task / cpus;
        let guard = self.lower_levels * self.guard_min_permille;
        let left = if guard < 1000 { 1000 - guard } else { 1 };
        busy * 1000 / left
    }
}

/// The longest tenant watchdog bound the host accepts: a tenant task may wait that long, be
/// ejected with its tenant into the default class and wait there again; with up to
/// [`REFERENCE_TASKS_PER_CPU`] runnable tasks per CPU (the loader's default class on any number
/// of CPUs, every lower level busy) the sum stays [`TIMEOUT_MARGIN_NS`] below
/// [`SCX_TIMEOUT_NS`]. Rounded down to 100 ms.
pub const MAX_WATCHDOG_NS: u64 = {
    // The bound per CPU count barely depends on it beyond 1; take the largest of 1, 2 and 8.
    let shapes = [
        DefaultClassShape::kernel_defaults(1),
        DefaultClassShape::kernel_defaults(2),
        DefaultClassShape::kernel_defaults(8),
    ];
    let mut worst = 0;
    let mut i = 0;
    while i < shapes.len() {
        let bound = shapes[i].wait_bound(REFERENCE_TASKS_PER_CPU * shapes[i].nr_cpus);
        if bound > worst {
            worst = bound;
        }
        i += 1;
    }
    let max = SCX_TIMEOUT_NS - TIMEOUT_MARGIN_NS - worst;
    max / (100 * MS) * (100 * MS)
};
// Room for a tenant: more than the default watchdog bound.
const _: () = assert!(MAX_WATCHDOG_NS > TENANT_WATCHDOG_NS.default);

/// The fill classes (`FILL_*`) a policy needs whose hooks read the context fields `reads`
/// (their names in abi.toml, as `upsched check` reports them): the host fills the fields of the
/// other classes with 0 instead of their values, which no hook of the policy reads.
pub fn fills_for_reads<'a>(reads: impl IntoIterator<Item = &'a str>) -> u32 {
    reads.into_iter().fold(0, |fills, field| {
        fills
            | match field {
                "prev_cpu" => FILL_PREV_CPU,
                "hints" => FILL_HINTS,
                "tenant_nr_runnable" => FILL_TENANT_RUNNABLE,
                _ => 0,
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_follow_the_fields_read() {
        assert_eq!(
            fills_for_reads(["now_ns", "runnable_ns", "slice_max_ns"]),
            0
        );
        assert_eq!(fills_for_reads(["hints", "pid"]), FILL_HINTS);
        assert_eq!(
            fills_for_reads(["prev_cpu", "tenant_nr_runnable", "hints"]),
            FILL_ALL
        );
        // A policy that reads every field (or the context at a variable offset) gets every
        // class, so the names above are the context's.
        assert_eq!(
            fills_for_reads(crate::FIELDS.iter().map(|f| f.name)),
            FILL_ALL
        );
    }

    #[test]
    fn slices_shrink_with_the_queue_down_to_the_floor() {
        let shape = DefaultClassShape::kernel_defaults(2);
        assert_eq!(shape.slice_at(1), DEFAULT_SLICE_NS);
        assert_eq!(shape.slice_at(2), DEFAULT_SLICE_NS);
        assert_eq!(shape.slice_at(4), DEFAULT_SLICE_NS / 2);
        assert_eq!(shape.slice_at(40), MS);
        assert_eq!(shape.slice_at(10_000), DEFAULT_SLICE_FLOOR_NS);
    }

    /// Sets one tenant parameter by its name in `mechanism.toml`.
    fn set_tenant(params: &mut TenantParams, name: &str, value: u64) {
        let narrow = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        match name {
            "level" => params.level = narrow(value),
            "weight" => params.weight = narrow(value),
            "slice_min_ns" => params.slice_min_ns = value,
            "slice_max_ns" => params.slice_max_ns = value,
            "slice_default_ns" => params.slice_default_ns = value,
            "park_max_ns" => params.park_max_ns = value,
            "watchdog_ns" => params.watchdog_ns = value,
            other => panic!("tenant parameter {other} has no setter in this test"),
        }
    }

    fn set_host(params: &mut HostParams, name: &str, value: u64) {
        let narrow = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        match name {
            "default_slice_ns" => params.default_slice_ns = value,
            "default_slice_floor_ns" => params.default_slice_floor_ns = value,
            "default_level" => params.default_level = narrow(value),
            "default_weight" => params.default_weight = narrow(value),
            "guard_min_permille" => params.guard_min_permille = narrow(value),
            "guard_window_ns" => params.guard_window_ns = value,
            "timer_period_ns" => params.timer_period_ns = value,
            other => panic!("host parameter {other} has no setter in this test"),
        }
    }

    /// Values just outside a bound, each with the bound's own refusal.
    fn outside(bound: &ParamBound) -> Vec<(u64, String)> {
        let mut values = vec![bound.max + 1];
        if bound.min > 0 {
            values.push(bound.min - 1);
        }
        values
            .into_iter()
            .map(|v| (v, bound.check(v).unwrap_err().message))
            .collect()
    }

    #[test]
    fn defaults_are_valid_and_within_their_bounds() {
        assert_eq!(TenantParams::default().validate(), Ok(()));
        assert_eq!(HostParams::default().validate(), Ok(()));
        for bound in TenantParams::BOUNDS.iter().chain(HostParams::BOUNDS) {
            assert_eq!(bound.check(bound.default), Ok(()), "{}", bound.name);
            assert_eq!(bound.check(bound.min), Ok(()), "{}", bound.name);
            assert_eq!(bound.check(bound.max), Ok(()), "{}", bound.name);
        }
    }

    #[test]
    fn a_value_outside_each_bound_is_refused_naming_the_parameter() {
        for bound in TenantParams::BOUNDS {
            for (value, message) in outside(bound) {
                let mut params = TenantParams::default();
                set_tenant(&mut params, bound.name, value);
                let refused = params.validate().unwrap_err();
                assert_eq!(refused.parameter, bound.name, "{message}");
                assert_eq!(refused.message, message);
                assert!(message.contains(bound.label()), "{message}");
            }
        }
        for bound in HostParams::BOUNDS {
            for (value, message) in outside(bound) {
                let mut params = HostParams::default();
                set_host(&mut params, bound.name, value);
                let refused = params.validate().unwrap_err();
                assert_eq!(refused.parameter, bound.name, "{message}");
                assert_eq!(refused.message, message);
            }
        }
    }

    #[test]
    fn rules_between_parameters_are_checked() {
        let ms = |n: u64| n * MS;
        let refused = |p: TenantParams| p.validate().unwrap_err().parameter;
        let base = TenantParams::default();
        assert_eq!(
            refused(TenantParams {
                slice_min_ns: ms(30),
                ..base
            }),
            "slice_min_ns"
        );
        assert_eq!(
            refused(TenantParams {
                slice_default_ns: ms(30),
                ..base
            }),
            "slice_default_ns"
        );
        assert_eq!(
            refused(TenantParams {
                park_max_ns: base.watchdog_ns,
                ..base
            }),
            "park_max_ns"
        );
        let host = HostParams::default();
        let floor_above_slice = HostParams {
            default_slice_floor_ns: host.default_slice_ns + 1,
            ..host
        };
        assert_eq!(
            floor_above_slice.validate().unwrap_err().parameter,
            "default_slice_floor_ns"
        );
    }

    #[test]
    fn the_watchdog_maximum_leaves_room_for_the_default_class() {
        for cpus in [1, 2, 4, 8, 64] {
            let shape = DefaultClassShape::kernel_defaults(cpus);
            let wait = shape.wait_bound(REFERENCE_TASKS_PER_CPU * cpus);
            assert!(
                MAX_WATCHDOG_NS + wait + TIMEOUT_MARGIN_NS <= SCX_TIMEOUT_NS,
                "{cpus} CPUs: default-class wait {wait} ns"
            );
        }
    }
}
