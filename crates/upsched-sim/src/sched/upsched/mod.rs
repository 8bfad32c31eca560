//! The upsched mechanism as a [`Scheduler`]: the host scheduler of
//! `crates/upsched-kernel/bpf/host.bpf.c`, as `docs/mechanism.md` specifies it, with tenant
//! policies (`.bpf.o`) run through the policy engine.
//!
//! Classes: tenant slots 0..7, each a queue ordered by the policy's keys plus a park queue,
//! and the default class ([`VtimeClass`], shared with `upsched-default`). A CPU that needs
//! work takes the highest chain level with work, unless the starvation guard owes a lower
//! level its minimum share; within a level the class with the least weighted virtual time.
//! Every decision a policy returns is clamped; a periodic host timer releases parked tasks and
//! runs the per-tenant watchdog, which ejects a tenant whose tasks wait too long.
//!
//! Where the simulator differs from the kernel, `docs/mechanism.md` says so ("The simulator").

mod config;
mod invariants;
mod stats;
mod wait_list;

use std::collections::{BTreeSet, VecDeque};

use upsched_abi::mechanism::{CLASS_DSQ_BASE, PARK_DSQ_BASE};
use upsched_abi::{
    HINT_FLAGS, HINT_PENDING, HINTF_SLEEPY, HookInfo, KfuncInfo, UpschedCtx, VERDICT_PARK,
    VERDICT_PREEMPT, VERDICT_RUN,
};
use upsched_ebpf::CallError;
use upsched_policy::engine::{EngineError, KfuncProvider, PolicyInstance};

pub use config::{
    DEFAULT_CLASS, HostConfig, NR_CLASSES, NR_LEVELS, NR_SLOTS, Replacement, Tenant, TenantConfig,
};
pub use stats::{
    ClampReport, ClassReport, ClassStats, EjectionReport, MechanismReport, ReplaceReport,
    TenantReport,
};

use super::fifo::{allowed_or_first, kick_an_idle_cpu};
use super::vtime::VtimeClass;
use super::{Cx, Dispatch, F_FORK, F_PREEMPTED, F_WAKEUP, NO_CPU, Scheduler, TaskId};
use crate::machine::CpuId;
use crate::units::Time;
use wait_list::{WaitEntry, WaitList};

/// Name of the mechanism as a policy (`--policy upsched`).
pub const NAME: &str = "upsched";

/// Tasks a tenant can hold (`UPSCHED_MAX_TASKS`).
const MAX_TASK_SLOTS: u32 = upsched_abi::MAX_TASKS;
/// Deepest cgroup nesting searched for a tenant's cgroup.
const MAX_CGROUP_DEPTH: usize = 16;
/// The ctx `weight` scale: 100 = nice 0 (sched_ext's `p->scx.weight`).
const NICE_0_WEIGHT: u64 = 100;
/// `UPSCHED_CPU_ANY`.
const CPU_ANY: i32 = upsched_abi::CPU_ANY;

/// Timer tokens: the host timer, and scheduled attaches/detaches/replaces (tenant index in
/// the low bits).
const TIMER_HOST: u64 = 0;
const TIMER_ATTACH: u64 = 1 << 32;
const TIMER_DETACH: u64 = 2 << 32;
const TIMER_DRAIN_BOUND: u64 = 3 << 32;
const TIMER_REPLACE: u64 = 4 << 32;
const TIMER_KIND: u64 = !0xffff_ffff;

/// sched_ext's `SCX_DSQ_LOCAL_ON`: with both bits set, the low 32 bits are a CPU number.
const SCX_DSQ_LOCAL_ON: u64 = 1 << 63 | 1 << 62;
/// `-ENOENT`, what `scx_bpf_dsq_nr_queued` answers for a DSQ that does not exist.
const ENOENT: i64 = -2;
/// How long a detached or ejected slot waits for its members to leave before it becomes FREE
/// (`DRAIN_BOUND` of the kernel's user space).
const DRAIN_BOUND: Time = 500 * crate::units::MS;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    Free,
    Active,
    Ejected,
    /// Detached: the policy stays attached (for `task_exit`) while the members leave.
    Draining,
}

/// The hooks the mechanism calls by name; the discriminants are the ABI's hook ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
enum Hook {
    SelectCpu = upsched_abi::HOOK_SELECT_CPU,
    Enqueue = upsched_abi::HOOK_ENQUEUE,
    Running = upsched_abi::HOOK_RUNNING,
    Stopping = upsched_abi::HOOK_STOPPING,
    Tick = upsched_abi::HOOK_TICK,
    TaskInit = upsched_abi::HOOK_TASK_INIT,
    TaskExit = upsched_abi::HOOK_TASK_EXIT,
}

impl Hook {
    /// The ABI's entry for this hook (the discriminants are the ABI's hook ids, which follow
    /// the order of `upsched_abi::HOOKS`).
    fn info(self) -> &'static HookInfo {
        &upsched_abi::HOOKS[self as usize]
    }
}

// `Slot::replaced` has a bit per hook.
const _: () = assert!(upsched_abi::NR_HOOKS <= u8::BITS as usize);

/// `Slot::replaced` of `policy`: a bit per hook it implements.
fn replaced_hooks(policy: &upsched_policy::engine::LoadedPolicy) -> u8 {
    upsched_abi::HOOKS
        .iter()
        .filter(|hook| policy.implements(hook.name))
        .fold(0, |bits, hook| bits | 1 << hook.id)
}

struct Slot {
    state: SlotState,
    /// Incarnation: bumped by every attach, so tasks of an earlier tenant are not its members.
    generation: u32,
    /// The tenant's configuration; kept after a detach so that queued tasks drain at its level.
    config: Option<TenantConfig>,
    instance: Option<PolicyInstance>,
    /// Bit per `Hook` the policy replaces: the others are not called (their default stands).
    replaced: u8,
    /// Index of the tenant's entry in `UpschedHost::tenants`.
    tenant: usize,
    /// (key >> 1, order of insertion, task).
    queue: BTreeSet<(u64, u64, TaskId)>,
    /// (park deadline, order, task).
    park: BTreeSet<(Time, u64, TaskId)>,
    /// The tenant's waiting tasks, queued or parked, for the watchdog.
    waiting: WaitList,
    nr_runnable: u32,
    nr_tasks: u32,
    free_task_slots: Vec<u32>,
    next_fresh: u32,
}

impl Slot {
    fn new() -> Self {
        Slot {
            state: SlotState::Free,
            generation: 0,
            config: None,
            instance: None,
            replaced: 0,
            tenant: usize::MAX,
            queue: BTreeSet::new(),
            park: BTreeSet::new(),
            waiting: WaitList::default(),
            nr_runnable: 0,
            nr_tasks: 0,
            free_task_slots: Vec::new(),
            next_fresh: 0,
        }
    }
}

/// The host's per-task state (`struct task_ctx`).
#[derive(Clone, Debug)]
struct TaskCtx {
    /// Slot the task belongs to.
    tenant: Option<usize>,
    tenant_gen: u32,
    seen_classify_gen: u32,
    task_slot: u32,
    /// Class the task is queued or running under (accounting).
    cls: usize,
    /// Slot (and its incarnation) whose `nr_runnable` counts this task.
    runnable_slot: Option<(usize, u32)>,
    parked: bool,
    /// Its entry in the park queue while parked: (deadline, order).
    park_deadline: Time,
    park_order: u64,
    /// When it became runnable (None: not runnable).
    runnable_at: Option<Time>,
    /// Runnable and not running since (None: running or asleep).
    waiting_since: Option<Time>,
    /// Its entry on the wait list of its tenant's slot while it waits there.
    wait_listed: Option<(usize, WaitEntry)>,
    running_at: Time,
    last_runtime: Time,
    /// The clamped slice of its last tenant enqueue.
    slice: Time,
    /// The enqueue decision `select_cpu` took for this wake-up, for the enqueue that follows.
    decision: Option<Decision>,
    /// `select_cpu` inserted it on a CPU's local queue: the kernel calls no `ops.enqueue`.
    inserted: bool,
    /// The hint words as the host's map holds them: zeroed when the task joins or leaves a
    /// tenant, written by the task.
    hints: [u64; upsched_abi::NR_HINTS as usize],
}

impl TaskCtx {
    fn new() -> Self {
        TaskCtx {
            tenant: None,
            tenant_gen: 0,
            // Stale on purpose: the first enqueue classifies the task.
            seen_classify_gen: u32::MAX,
            task_slot: 0,
            cls: DEFAULT_CLASS,
            runnable_slot: None,
            parked: false,
            park_deadline: 0,
            park_order: 0,
            runnable_at: None,
            waiting_since: None,
            wait_listed: None,
            running_at: 0,
            last_runtime: 0,
            slice: 0,
            decision: None,
            inserted: false,
            hints: [0; upsched_abi::NR_HINTS as usize],
        }
    }
}

/// A tenant's enqueue decision after the clamps (`decide_enqueue`).
#[derive(Clone, Copy, Debug)]
struct Decision {
    key: u64,
    slice: Time,
    verdict: u32,
    /// PARK: the park deadline, bounded.
    until: Time,
}

/// One tenant of the run: its policy, configuration and statistics.
struct TenantRecord {
    tenant: Tenant,
    slot: Option<usize>,
    attached_at: Option<Time>,
    detached_at: Option<Time>,
    attach_error: Option<String>,
    ejection: Option<EjectionReport>,
    replaced: Option<ReplaceReport>,
    stats: ClassStats,
    /// The policy's instance once its slot is FREE: its globals outlive the detach.
    final_policy: Option<PolicyInstance>,
}

/// Answers the kfuncs a policy may call from the model, with the kernel's every outcome,
/// including the runtime error that disables the whole scheduler.
struct DsqModel {
    queued: [usize; NR_CLASSES],
    parked: [usize; NR_SLOTS],
    /// Length of each CPU's local DSQ (index: CPU).
    local: Vec<usize>,
    /// The CPU the hook runs on (`this_rq()`).
    here: CpuId,
    /// sched_ext's runtime error, if a call raised one: the kernel disables the scheduler.
    error: Option<String>,
}

impl KfuncProvider for DsqModel {
    fn call_kfunc(&mut self, kfunc: &'static KfuncInfo, args: [u64; 5]) -> Result<u64, CallError> {
        match kfunc.name {
            "scx_bpf_dsq_nr_queued" => Ok(self.nr_queued(args[0]) as u64),
            _ => Err(CallError::Unbound),
        }
    }
}

impl DsqModel {
    /// `scx_bpf_dsq_nr_queued(dsq_id)` as kernel 7.2 answers it: `SCX_DSQ_LOCAL` the calling
    /// CPU's local DSQ; `SCX_DSQ_LOCAL_ON | cpu` that CPU's local DSQ if the CPU exists, else a
    /// runtime error ("invalid CPU", the scheduler is disabled) and `-ENOENT`; any other id a
    /// user DSQ, i.e. the host's class (`CLASS_DSQ_BASE + class`) and park (`PARK_DSQ_BASE + slot`) queues, or
    /// `-ENOENT` (the global DSQ included: it is not a user DSQ).
    fn nr_queued(&mut self, dsq: u64) -> i64 {
        let count = if dsq == upsched_abi::SCX_DSQ_LOCAL {
            Some(self.local_len(self.here))
        } else if dsq & SCX_DSQ_LOCAL_ON == SCX_DSQ_LOCAL_ON {
            // The kernel reads the low 32 bits as an s32 CPU number.
            let cpu = dsq as u32 as i32;
            match u32::try_from(cpu) {
                Ok(cpu) if (cpu as usize) < self.local.len() => Some(self.local_len(cpu)),
                _ => {
                    self.error.get_or_insert(format!("invalid CPU {cpu}"));
                    None
                }
            }
        } else if (CLASS_DSQ_BASE..CLASS_DSQ_BASE + NR_CLASSES as u64).contains(&dsq) {
            Some(self.queued[(dsq - CLASS_DSQ_BASE) as usize])
        } else if (PARK_DSQ_BASE..PARK_DSQ_BASE + NR_SLOTS as u64).contains(&dsq) {
            Some(self.parked[(dsq - PARK_DSQ_BASE) as usize])
        } else {
            None
        };
        count.map_or(ENOENT, |n| i64::from(i32::try_from(n).unwrap_or(i32::MAX)))
    }

    fn local_len(&self, cpu: CpuId) -> usize {
        self.local.get(cpu as usize).copied().unwrap_or(0)
    }
}

/// Runs one hook of a tenant's policy. The only place the simulator executes tenant code:
/// how the engine runs it (interpreter, JIT) is decided where the caller built the
/// `LoadedPolicy`.
fn run_policy_hook(
    instance: &mut PolicyInstance,
    hook: Hook,
    ctx: &mut UpschedCtx,
    kfuncs: &mut dyn KfuncProvider,
) -> Result<(), EngineError> {
    instance.call_hook(hook.info(), ctx, kfuncs)
}

/// The CPU a task the host timer puts back is enqueued for: its last, else one it may use.
fn home_cpu(cx: &Cx, task: TaskId) -> CpuId {
    let prev = cx.prev_cpu(task);
    if prev != NO_CPU {
        prev
    } else {
        allowed_or_first(cx, task, 0)
    }
}

/// sched_ext's weight scale from Linux's (`sched_weight_to_cgroup`).
fn scx_weight(linux_weight: u32) -> u32 {
    ((u64::from(linux_weight) * NICE_0_WEIGHT + 512) / 1024).clamp(1, 10_000) as u32
}

/// Whether `ancestor` is `path` or one of its ancestors, as cgroup paths.
fn is_within(path: &str, ancestor: &str) -> bool {
    ancestor == "/"
        || path == ancestor
        || (path.starts_with(ancestor) && path.as_bytes().get(ancestor.len()) == Some(&b'/'))
}

/// Path components between `path` and `ancestor` (0: the same cgroup).
fn depth_below(path: &str, ancestor: &str) -> usize {
    let count = |p: &str| p.split('/').filter(|c| !c.is_empty()).count();
    count(path) - count(ancestor)
}

/// The starvation guard's window on one CPU.
#[derive(Clone, Copy, Default)]
struct CpuGuard {
    window_start: Option<Time>,
    level_runtime: [u64; NR_LEVELS as usize],
}

pub struct UpschedHost {
    name: String,
    config: HostConfig,
    slots: Vec<Slot>,
    tenants: Vec<TenantRecord>,
    default_class: VtimeClass,
    default_stats: ClassStats,
    tasks: Vec<TaskCtx>,
    /// Weighted CPU time of each class within its level.
    class_vtime: [u64; NR_CLASSES],
    /// Largest class vtime picked so far per level.
    level_vnow: [u64; NR_LEVELS as usize],
    /// Per CPU, the start of its guard window and the CPU time each level got on it since.
    guards: Vec<CpuGuard>,
    /// Bumped by attach, detach and ejection: tasks classify themselves again.
    classify_gen: u32,
    /// Insertion counter of the queues: equal keys run first in, first out.
    order: u64,
    timer_armed: bool,
    /// cgroup paths by the scenario's cgroup index.
    cgroups: Vec<String>,
    /// Per CPU, tasks inserted directly for it (sched_ext's local DSQ), with their slices:
    /// its next dispatch takes them first.
    local: Vec<VecDeque<Dispatch>>,
    /// `ops.enqueue` calls: the engine's enqueues less the wake-ups `select_cpu` inserted.
    host_enqueues: u64,
}

impl UpschedHost {
    /// The mechanism with `tenants` to attach (each at its `attach_at`), over the scenario's
    /// cgroups (`Scenario::cgroups`).
    pub fn new(config: HostConfig, tenants: Vec<Tenant>, cgroups: &[String]) -> Self {
        UpschedHost {
            name: NAME.to_string(),
            default_class: VtimeClass::new(config.default_slice, config.default_slice_floor),
            config,
            slots: (0..NR_SLOTS).map(|_| Slot::new()).collect(),
            tenants: tenants
                .into_iter()
                .map(|tenant| TenantRecord {
                    tenant,
                    slot: None,
                    attached_at: None,
                    detached_at: None,
                    attach_error: None,
                    ejection: None,
                    replaced: None,
                    stats: ClassStats::default(),
                    final_policy: None,
                })
                .collect(),
            default_stats: ClassStats::default(),
            tasks: Vec::new(),
            class_vtime: [0; NR_CLASSES],
            level_vnow: [0; NR_LEVELS as usize],
            guards: Vec::new(),
            classify_gen: 0,
            order: 0,
            timer_armed: false,
            cgroups: cgroups.to_vec(),
            local: Vec::new(),
            host_enqueues: 0,
        }
    }

    /// Reports itself under another name (e.g. the tenant's policy for `--policy FILE`).
    pub fn with_name(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// The statistics at time `end`; waits still open then count as ending at `end`.
    pub fn report(&self, end: Time) -> MechanismReport {
        let mut default_stats = self.default_stats.clone();
        let mut tenant_stats: Vec<ClassStats> =
            self.tenants.iter().map(|t| t.stats.clone()).collect();
        for t in &self.tasks {
            let Some(since) = t.waiting_since else {
                continue;
            };
            let stats = if t.cls == DEFAULT_CLASS {
                Some(&mut default_stats)
            } else {
                tenant_stats.get_mut(self.slots[t.cls].tenant)
            };
            if let Some(stats) = stats {
                stats.record_open_wait(end.saturating_sub(since));
            }
        }
        MechanismReport {
            host_enqueues: self.host_enqueues,
            default_class: default_stats.report(),
            tenants: self
                .tenants
                .iter()
                .zip(&tenant_stats)
                .enumerate()
                .map(|(index, (t, stats))| TenantReport {
                    name: t.tenant.name.clone(),
                    policy: t.tenant.policy.name().to_string(),
                    cgroup: t.tenant.config.cgroup.clone(),
                    slot: t.slot.map(|s| s as u32),
                    level: t.tenant.config.level,
                    weight: t.tenant.config.weight,
                    attached_at_ns: t.attached_at,
                    detached_at_ns: t.detached_at,
                    attach_error: t.attach_error.clone(),
                    ejection: t.ejection.clone(),
                    replace: t.replaced.clone(),
                    nr_tasks: t
                        .slot
                        .filter(|s| self.slots[*s].tenant == index)
                        .map_or(0, |s| self.slots[s].nr_tasks),
                    stats: stats.report(),
                    policy_state: t.final_policy.clone().or_else(|| {
                        let s = &self.slots[t.slot?];
                        (s.tenant == index).then(|| s.instance.clone()).flatten()
                    }),
                })
                .collect(),
        }
    }

    // ---- small helpers -------------------------------------------------------------------

    fn class_level(&self, cls: usize) -> u32 {
        let level = if cls == DEFAULT_CLASS {
            self.config.default_level
        } else {
            self.slots[cls].config.as_ref().map_or(0, |c| c.level)
        };
        level.min(NR_LEVELS - 1)
    }

    fn class_weight(&self, cls: usize) -> u64 {
        let weight = if cls == DEFAULT_CLASS {
            self.config.default_weight
        } else {
            self.slots[cls].config.as_ref().map_or(100, |c| c.weight)
        };
        u64::from(weight.max(1))
    }

    fn class_len(&self, cls: usize) -> usize {
        if cls == DEFAULT_CLASS {
            self.default_class.len()
        } else {
            self.slots[cls].queue.len()
        }
    }

    fn stats_of(&mut self, cls: usize) -> Option<&mut ClassStats> {
        if cls == DEFAULT_CLASS {
            return Some(&mut self.default_stats);
        }
        let tenant = self.slots[cls].tenant;
        self.tenants.get_mut(tenant).map(|t| &mut t.stats)
    }

    /// The slot of the task's tenant if that tenant is live (ACTIVE, the incarnation it joined).
    fn live_tenant(&self, task: TaskId) -> Option<usize> {
        let t = &self.tasks[task as usize];
        let slot = t.tenant?;
        let s = &self.slots[slot];
        (s.state == SlotState::Active && s.generation == t.tenant_gen).then_some(slot)
    }

    /// The DSQs as a hook running on `here` sees them.
    fn dsq_model(&self, cx: &Cx, here: CpuId) -> DsqModel {
        DsqModel {
            queued: std::array::from_fn(|cls| self.class_len(cls)),
            parked: std::array::from_fn(|slot| self.slots[slot].park.len()),
            local: (0..cx.nr_cpus())
                .map(|cpu| self.local.get(cpu as usize).map_or(0, VecDeque::len))
                .collect(),
            here,
            error: None,
        }
    }

    fn ensure_timer(&mut self, cx: &mut Cx) {
        if !self.timer_armed {
            self.timer_armed = true;
            let period = self.config.timer_period;
            cx.set_timer((cx.now / period + 1) * period, TIMER_HOST);
        }
    }

    // ---- calling the policy --------------------------------------------------------------

    /// The context for `hook` of `task` in `slot`, filled as `docs/mechanism.md` says.
    fn fill_ctx(&self, cx: &Cx, task: TaskId, slot: usize, hook: Hook, flags: u32) -> UpschedCtx {
        let t = &self.tasks[task as usize];
        let s = &self.slots[slot];
        let config = s.config.as_ref().expect("a live slot has a configuration");
        let now = cx.now;
        let here = cx.here();
        let prev = cx.prev_cpu(task);
        let cpu = if here != NO_CPU {
            here
        } else if prev != NO_CPU {
            prev
        } else {
            0
        };
        let (voluntary, involuntary) = cx.switches(task);
        let mut ctx = UpschedCtx {
            abi_version: upsched_abi::ABI_VERSION,
            ctx_size: std::mem::size_of::<UpschedCtx>() as u32,
            now_ns: now,
            hook: hook as u32,
            cpu,
            nr_cpus: cx.nr_cpus(),
            flags,
            pid: cx.pid(task),
            tgid: cx.pid(task),
            task_slot: t.task_slot,
            weight: scx_weight(cx.weight(task)),
            nice: cx.nice(task),
            prev_cpu: if prev == NO_CPU {
                cpu as i32
            } else {
                prev as i32
            },
            sum_runtime_ns: cx.sum_runtime(task),
            last_runtime_ns: t.last_runtime,
            runnable_ns: 0,
            nr_voluntary_switches: voluntary,
            nr_involuntary_switches: involuntary,
            hints: t.hints,
            tenant_id: slot as u32,
            tenant_level: config.level,
            tenant_weight: config.weight,
            tenant_nr_runnable: s.nr_runnable,
            slice_min_ns: config.slice_min,
            slice_max_ns: config.slice_max,
            park_max_ns: config.park_max,
            ..UpschedCtx::default()
        };
        if let Some(since) = t
            .runnable_at
            .filter(|_| matches!(hook, Hook::SelectCpu | Hook::Enqueue))
        {
            ctx.runnable_ns = now.saturating_sub(since);
        }
        ctx.key = now;
        ctx.slice_ns = config.slice_default;
        ctx.park_until_ns = 0;
        ctx.target_cpu = CPU_ANY;
        ctx.verdict = VERDICT_RUN;
        ctx
    }

    fn replaces(&self, slot: usize, hook: Hook) -> bool {
        self.slots[slot].replaced & (1 << hook as u32) != 0
    }

    /// The outputs a hook's stub returns when the policy did not replace it.
    fn default_outputs(&self, cx: &Cx, slot: usize) -> UpschedCtx {
        let config = self.slots[slot]
            .config
            .as_ref()
            .expect("a live slot has a configuration");
        UpschedCtx {
            key: cx.now,
            slice_ns: config.slice_default,
            park_until_ns: 0,
            target_cpu: CPU_ANY,
            verdict: VERDICT_RUN,
            ..UpschedCtx::default()
        }
    }

    /// Calls `hook` for `task` of `slot` (live, or not FREE for `task_exit`) if the policy
    /// replaced it, else returns the default outputs; `None` when the policy failed, which
    /// ejects the tenant (the caller then falls back).
    fn call(
        &mut self,
        cx: &mut Cx,
        task: TaskId,
        slot: usize,
        hook: Hook,
        flags: u32,
    ) -> Option<UpschedCtx> {
        if !self.replaces(slot, hook) {
            return Some(self.default_outputs(cx, slot));
        }
        let mut ctx = self.fill_ctx(cx, task, slot, hook, flags);
        let mut kfuncs = self.dsq_model(cx, ctx.cpu);
        let instance = self.slots[slot]
            .instance
            .as_mut()
            .expect("a live slot has a policy instance");
        let result = run_policy_hook(instance, hook, &mut ctx, &mut kfuncs);
        if let Some(error) = kfuncs.error {
            // The kernel raises it inside the kfunc, which returns and lets the hook finish;
            // then it disables the whole scheduler (every tenant with it).
            let name = &self.tenants[self.slots[slot].tenant].tenant.name;
            cx.abort(format!(
                "sched_ext runtime error: {error} (scx_bpf_dsq_nr_queued called by the {} hook of tenant {name:?} in slot {slot}, at {} ns): the kernel disables the host scheduler",
                hook.info().name,
                cx.now
            ));
        }
        match result {
            Ok(()) => Some(ctx),
            Err(error) => {
                let pid = cx.pid(task);
                self.eject(
                    cx,
                    slot,
                    EjectionReport {
                        kind: "fault",
                        at_ns: cx.now,
                        pid,
                        waited_ns: 0,
                        reason: format!("fault: the policy failed for task {pid}: {error}"),
                    },
                );
                None
            }
        }
    }

    // ---- tenants: attach, detach, ejection ----------------------------------------------

    fn attach(&mut self, cx: &mut Cx, index: usize) {
        let Some(slot) = self.slots.iter().position(|s| s.state == SlotState::Free) else {
            self.tenants[index].attach_error = Some(format!(
                "no free tenant slot at {} ns (all {NR_SLOTS} in use)",
                cx.now
            ));
            return;
        };
        let record = &mut self.tenants[index];
        record.slot = Some(slot);
        record.attached_at = Some(cx.now);
        let s = &mut self.slots[slot];
        s.state = SlotState::Active;
        s.generation = s.generation.wrapping_add(1);
        // A fresh incarnation: tasks of an earlier tenant of this slot hold nothing of it.
        s.nr_runnable = 0;
        s.nr_tasks = 0;
        s.free_task_slots.clear();
        s.next_fresh = 0;
        s.waiting.clear();
        s.config = Some(record.tenant.config.clone());
        s.instance = Some(record.tenant.policy.instantiate());
        s.replaced = replaced_hooks(&record.tenant.policy);
        s.tenant = index;
        self.classify_gen = self.classify_gen.wrapping_add(1);
        self.ensure_timer(cx);
    }

    /// The tenant's scheduled replace: the slot's policy instance and its replaced hooks
    /// change at once, as the kernel's flip of the stub set does; the slot, its generation,
    /// members, task slots, hints and statistics stay, and members are told nothing (no
    /// `task_exit` of the old policy, no `task_init` of the new). A tenant that is not ACTIVE
    /// then (not attached yet, detached, ejected) keeps its policy, and the report says why.
    fn replace(&mut self, cx: &mut Cx, index: usize) {
        let record = &mut self.tenants[index];
        let Some(replacement) = record.tenant.replace.clone() else {
            return;
        };
        let live = record.slot.filter(|s| {
            self.slots[*s].tenant == index && self.slots[*s].state == SlotState::Active
        });
        let mut report = ReplaceReport {
            at_ns: cx.now,
            policy: replacement.name.clone(),
            error: None,
        };
        match live {
            Some(slot) => {
                let s = &mut self.slots[slot];
                s.instance = Some(replacement.policy.instantiate());
                s.replaced = replaced_hooks(&replacement.policy);
            }
            None => {
                report.error = Some(format!(
                    "the tenant is not attached at {} ns: its policy stays",
                    cx.now
                ));
            }
        }
        record.replaced = Some(report);
    }

    fn detach(&mut self, cx: &mut Cx, index: usize) {
        let record = &mut self.tenants[index];
        let Some(slot) = record.slot else {
            return;
        };
        record.detached_at = Some(cx.now);
        // An ejected tenant drains already (or is gone).
        if self.slots[slot].tenant == index && self.slots[slot].state == SlotState::Active {
            self.slots[slot].state = SlotState::Draining;
            self.start_drain(cx, slot);
        }
    }

    /// A slot that stopped being ACTIVE (detach, ejection): its members leave at their next
    /// enqueue, calling `task_exit`; the slot becomes FREE when the last one left or at the
    /// drain bound, whichever is first.
    fn start_drain(&mut self, cx: &mut Cx, slot: usize) {
        self.classify_gen = self.classify_gen.wrapping_add(1);
        if self.slots[slot].nr_tasks == 0 {
            self.free_slot(slot);
        } else {
            let tenant = self.slots[slot].tenant as u64;
            cx.set_timer(cx.now + DRAIN_BOUND, TIMER_DRAIN_BOUND | tenant);
        }
        // Parked and queued tasks go back (to the default class) at the next timer run.
        self.ensure_timer(cx);
    }

    fn drain_bound_reached(&mut self, index: usize) {
        let Some(slot) = self.tenants[index].slot else {
            return;
        };
        let s = &self.slots[slot];
        if s.tenant == index && matches!(s.state, SlotState::Draining | SlotState::Ejected) {
            self.free_slot(slot);
        }
    }

    /// The slot becomes FREE (its level is kept so queued tasks drain); members that have
    /// not left yet leave without a call. The policy's globals stay readable in the report.
    fn free_slot(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        s.state = SlotState::Free;
        let instance = s.instance.take();
        if let Some(record) = self.tenants.get_mut(s.tenant) {
            record.final_policy = instance;
        }
        self.classify_gen = self.classify_gen.wrapping_add(1);
    }

    fn eject(&mut self, cx: &mut Cx, slot: usize, ejection: EjectionReport) {
        if self.slots[slot].state != SlotState::Active {
            return;
        }
        self.slots[slot].state = SlotState::Ejected;
        let tenant = self.slots[slot].tenant;
        if let Some(record) = self.tenants.get_mut(tenant) {
            record.stats.counters.ejections += 1;
            record.ejection = Some(ejection);
        }
        // User space polls the ejection at once and drains the slot as for a detach.
        self.start_drain(cx, slot);
        // Parked tasks go back through enqueue, which now puts them in the default class.
        let parked: Vec<TaskId> = self.slots[slot].park.iter().map(|e| e.2).collect();
        for task in parked {
            self.unpark(cx, slot, task);
        }
    }

    // ---- classification ------------------------------------------------------------------

    /// The active slot bound to the task's cgroup or its nearest ancestor that has one.
    fn tenant_of_cgroup(&self, path: &str) -> Option<usize> {
        (0..NR_SLOTS)
            .filter_map(|slot| {
                let s = &self.slots[slot];
                let config = s.config.as_ref()?;
                (s.state == SlotState::Active && is_within(path, &config.cgroup))
                    .then(|| (depth_below(path, &config.cgroup), slot))
            })
            .filter(|(depth, _)| *depth < MAX_CGROUP_DEPTH)
            .min()
            .map(|(_, slot)| slot)
    }

    /// `ops.runnable` for the tenant count: the task counts where it was classified last.
    fn count_runnable(&mut self, task: TaskId) {
        let t = &mut self.tasks[task as usize];
        if let (Some(slot), None) = (t.tenant, t.runnable_slot) {
            t.runnable_slot = Some((slot, t.tenant_gen));
            if self.slots[slot].generation == t.tenant_gen {
                self.slots[slot].nr_runnable += 1;
            }
        }
    }

    fn uncount_runnable(&mut self, task: TaskId) {
        if let Some((slot, generation)) = self.tasks[task as usize].runnable_slot.take() {
            if self.slots[slot].generation == generation {
                self.slots[slot].nr_runnable -= 1;
            }
        }
    }

    /// The task leaves its tenant (exit, detach, ejection): while the slot holds the
    /// incarnation it joined and is not FREE, `task_exit` is called and its task slot
    /// returned; a draining slot whose last member left becomes FREE.
    fn leave_tenant(&mut self, cx: &mut Cx, task: TaskId) {
        self.unlist_waiter(task);
        let t = &self.tasks[task as usize];
        let Some(slot) = t.tenant else {
            return;
        };
        let s = &self.slots[slot];
        // A task of an earlier incarnation holds nothing of the slot's current pool.
        let member = s.generation == t.tenant_gen && s.state != SlotState::Free;
        if member {
            self.call(cx, task, slot, Hook::TaskExit, 0);
        }
        let t = &mut self.tasks[task as usize];
        t.tenant = None;
        t.tenant_gen = 0;
        t.hints = [0; upsched_abi::NR_HINTS as usize];
        if !member {
            return;
        }
        let s = &mut self.slots[slot];
        s.free_task_slots.push(t.task_slot);
        s.nr_tasks -= 1;
        if s.nr_tasks == 0 && matches!(s.state, SlotState::Draining | SlotState::Ejected) {
            self.free_slot(slot);
        }
    }

    fn classify(&mut self, cx: &mut Cx, task: TaskId) {
        let t = &mut self.tasks[task as usize];
        if t.seen_classify_gen == self.classify_gen {
            return;
        }
        t.seen_classify_gen = self.classify_gen;
        let path = &self.cgroups[cx.cgroup(task) as usize];
        let new_tenant = self.tenant_of_cgroup(path);
        let t = &self.tasks[task as usize];
        if new_tenant.is_some()
            && new_tenant == t.tenant
            && self.slots[new_tenant.unwrap_or(0)].generation == t.tenant_gen
        {
            return;
        }
        // The runnable count follows the task to its new class.
        self.uncount_runnable(task);
        self.leave_tenant(cx, task);
        let Some(slot) = new_tenant else {
            return;
        };
        let s = &mut self.slots[slot];
        let task_slot = match s.free_task_slots.pop() {
            Some(free) => free,
            None if s.next_fresh < MAX_TASK_SLOTS => {
                s.next_fresh += 1;
                s.next_fresh - 1
            }
            // Tenant full: the task stays in the default class.
            None => return,
        };
        s.nr_tasks += 1;
        let generation = s.generation;
        let t = &mut self.tasks[task as usize];
        t.tenant = Some(slot);
        t.tenant_gen = generation;
        t.task_slot = task_slot;
        t.hints = [0; upsched_abi::NR_HINTS as usize];
        self.default_class.reset_task(task);
        if t.runnable_at.is_some() {
            self.count_runnable(task);
        }
        self.call(cx, task, slot, Hook::TaskInit, 0);
    }

    // ---- enqueue -------------------------------------------------------------------------

    fn tenant_has_queued(&self) -> bool {
        self.slots.iter().any(|s| !s.queue.is_empty())
    }

    /// Puts `task` on `cpu`'s local queue, which that CPU's dispatch takes at once.
    fn insert_local(&mut self, cx: &mut Cx, cpu: CpuId, dispatch: Dispatch) {
        let cpu_index = cpu as usize;
        if cpu_index >= self.local.len() {
            self.local.resize_with(cpu_index + 1, VecDeque::new);
        }
        self.local[cpu_index].push_back(dispatch);
        cx.kick(cpu);
    }

    /// `ops.select_cpu`'s direct insertion of a default-class wake-up onto the idle CPU it
    /// claimed, while no tenant class has queued tasks and the classification is current.
    fn try_insert_default_direct(&mut self, cx: &mut Cx, task: TaskId, cpu: CpuId) -> bool {
        let t = &self.tasks[task as usize];
        if t.tenant.is_some() || t.seen_classify_gen != self.classify_gen {
            return false;
        }
        if self.tenant_has_queued() {
            return false;
        }
        self.mark_runnable(task, cx.now);
        let t = &mut self.tasks[task as usize];
        t.inserted = true;
        t.parked = false;
        t.cls = DEFAULT_CLASS;
        self.default_stats.counters.enqueues += 1;
        self.default_class.place(task, cx.weight(task), true);
        let slice = self
            .default_class
            .slice_at(self.default_class.len() + 1, cx.nr_cpus());
        self.insert_local(cx, cpu, Dispatch { task, slice });
        true
    }

    /// `flags`: the ABI's; a wake-up or a task that comes from a tenant arrives in the class.
    fn enqueue_default(&mut self, cx: &mut Cx, task: TaskId, cpu: CpuId, flags: u32) {
        let t = &mut self.tasks[task as usize];
        let arriving = flags & F_WAKEUP != 0 || t.cls != DEFAULT_CLASS;
        t.parked = false;
        t.cls = DEFAULT_CLASS;
        self.default_stats.counters.enqueues += 1;
        self.default_class.insert(task, cx.weight(task), arriving);
        kick_an_idle_cpu(cx, task, cpu);
    }

    /// A class that had nothing queued restarts near its level's virtual now.
    fn catch_up_class(&mut self, cls: usize) {
        if self.class_len(cls) > 0 {
            return;
        }
        let floor = self.level_vnow[self.class_level(cls) as usize]
            .saturating_sub(self.config.default_slice);
        if self.class_vtime[cls] < floor {
            self.class_vtime[cls] = floor;
        }
    }

    /// The task becomes runnable, seen at the first of `select_cpu` (when it decides the
    /// wake-up) and `enqueue`.
    fn mark_runnable(&mut self, task: TaskId, now: Time) {
        let t = &mut self.tasks[task as usize];
        if t.runnable_at.is_some() {
            return;
        }
        t.runnable_at = Some(now);
        t.waiting_since = Some(now);
        self.count_runnable(task);
    }

    /// The enqueue decision for `task` of live tenant `slot`: the policy's enqueue (or the
    /// stub's default), clamped. The one place it is taken, for `enqueue` and for the wake-ups
    /// `select_cpu` decides. `None`: the policy failed and its tenant is gone.
    fn decide_enqueue(
        &mut self,
        cx: &mut Cx,
        task: TaskId,
        slot: usize,
        flags: u32,
    ) -> Option<Decision> {
        let out = self.call(cx, task, slot, Hook::Enqueue, flags)?;
        let config = self.slots[slot]
            .config
            .as_ref()
            .expect("a live slot has a configuration");
        let (slice_min, slice_max, park_max) =
            (config.slice_min, config.slice_max, config.park_max);
        let now = cx.now;
        // The park bound counts from the start of the task's current wait: it ran or became
        // runnable then, so a task is never held off the CPU longer than park_max at a time.
        let t = &self.tasks[task as usize];
        let off_cpu_since = t.waiting_since.or(t.runnable_at).unwrap_or(now);
        let called = u64::from(self.replaces(slot, Hook::Enqueue));
        let stats = self.stats_of(slot).expect("a live slot has statistics");
        stats.counters.policy_calls += called;
        let mut slice = out.slice_ns;
        if slice == 0 || slice < slice_min {
            slice = slice_min;
            stats.counters.clamp_slice += 1;
        } else if slice > slice_max {
            slice = slice_max;
            stats.counters.clamp_slice += 1;
        }
        let mut verdict = out.verdict;
        if verdict > VERDICT_PREEMPT {
            verdict = VERDICT_RUN;
            stats.counters.clamp_verdict += 1;
        }
        let mut until = out.park_until_ns;
        if verdict == VERDICT_PARK {
            let bound = off_cpu_since.saturating_add(park_max);
            // A released task runs before it may be parked again.
            if flags & upsched_abi::F_RELEASED != 0 || now >= bound {
                verdict = VERDICT_RUN;
                stats.counters.clamp_park += 1;
            } else if until == 0 || until > bound {
                if until != 0 {
                    stats.counters.clamp_park += 1;
                }
                until = bound;
            }
        }
        Some(Decision {
            key: out.key,
            slice,
            verdict,
            until,
        })
    }

    /// `ops.enqueue` (after classification): `flags` are the ABI's for the policy.
    fn enqueue_task(&mut self, cx: &mut Cx, task: TaskId, cpu: CpuId, flags: u32) {
        let t = &mut self.tasks[task as usize];
        let decided = t.decision.take();
        let before = (t.tenant, t.tenant_gen, t.cls);
        self.classify(cx, task);
        let now = cx.now;
        self.end_wait_on_leaving(task, before, now);
        self.tasks[task as usize].waiting_since.get_or_insert(now);
        let Some(slot) = self.live_tenant(task) else {
            self.enqueue_default(cx, task, cpu, flags);
            return;
        };
        self.list_waiter(task, slot);
        let released = flags & upsched_abi::F_RELEASED != 0;
        // select_cpu's decision holds while the task is in the tenant it was taken for.
        let t = &self.tasks[task as usize];
        let decided = decided.filter(|_| (t.tenant, t.tenant_gen) == (before.0, before.1));
        let Some(decision) = decided.or_else(|| self.decide_enqueue(cx, task, slot, flags)) else {
            // The policy failed and its tenant is gone.
            self.classify(cx, task);
            self.enqueue_default(cx, task, cpu, flags);
            return;
        };
        let stats = self.stats_of(slot).expect("a live slot has statistics");
        stats.counters.enqueues += 1;
        if released {
            stats.counters.releases += 1;
        }
        if decision.verdict == VERDICT_PARK {
            self.stats_of(slot).expect("live").counters.parks += 1;
            let t = &mut self.tasks[task as usize];
            t.parked = true;
            self.order += 1;
            t.park_deadline = decision.until;
            t.park_order = self.order;
            t.cls = slot;
            t.slice = decision.slice;
            self.slots[slot]
                .park
                .insert((decision.until, self.order, task));
            self.ensure_timer(cx);
            return;
        }
        self.catch_up_class(slot);
        let t = &mut self.tasks[task as usize];
        t.cls = slot;
        t.slice = decision.slice;
        self.order += 1;
        self.slots[slot]
            .queue
            .insert((decision.key >> 1, self.order, task));
        if decision.verdict == VERDICT_PREEMPT {
            self.stats_of(slot).expect("live").counters.preempt_kicks += 1;
            cx.preempt(cpu);
        } else {
            kick_an_idle_cpu(cx, task, cpu);
        }
        // The watchdog looks at queued tasks.
        self.ensure_timer(cx);
    }

    /// `select_cpu` of a wake-up of `task` of live tenant `slot` whose classification is
    /// current, after the CPU choice (`claimed`: the idle CPU the host claimed, if the policy
    /// kept it): the enqueue decision is taken here, a RUN onto the claimed CPU while nothing
    /// is queued is inserted there at once (that CPU's dispatch would take exactly this task),
    /// any other decision is kept for the enqueue that follows.
    fn decide_wakeup(&mut self, cx: &mut Cx, task: TaskId, slot: usize, claimed: Option<CpuId>) {
        self.mark_runnable(task, cx.now);
        let Some(decision) = self.decide_enqueue(cx, task, slot, upsched_abi::F_WAKEUP) else {
            return;
        };
        let direct = claimed.filter(|_| {
            decision.verdict == VERDICT_RUN
                && !self.tenant_has_queued()
                && self.default_class.is_empty()
        });
        let Some(cpu) = direct else {
            self.tasks[task as usize].decision = Some(decision);
            return;
        };
        self.stats_of(slot).expect("live").counters.enqueues += 1;
        self.catch_up_class(slot);
        let level = self.class_level(slot) as usize;
        self.level_vnow[level] = self.level_vnow[level].max(self.class_vtime[slot]);
        let t = &mut self.tasks[task as usize];
        t.cls = slot;
        t.slice = decision.slice;
        t.inserted = true;
        let slice = decision.slice;
        self.insert_local(cx, cpu, Dispatch { task, slice });
    }

    /// The tenant's `select_cpu` (if the policy replaced it) after the host's choice: the CPU
    /// to return, and the idle CPU the host claimed if the policy kept it.
    fn tenant_select_cpu(
        &mut self,
        cx: &mut Cx,
        task: TaskId,
        slot: usize,
        flags: u32,
        idle: Option<CpuId>,
        host_choice: CpuId,
    ) -> (CpuId, Option<CpuId>) {
        if !self.replaces(slot, Hook::SelectCpu) {
            return (host_choice, idle);
        }
        // The engine's F_FORK means a new task; the ABI's select_cpu flags are WAKEUP plus
        // FORK for it.
        let abi_flags = upsched_abi::F_WAKEUP | (flags & F_FORK);
        let Some(out) = self.call(cx, task, slot, Hook::SelectCpu, abi_flags) else {
            return (host_choice, idle);
        };
        self.stats_of(slot).expect("live").counters.policy_calls += 1;
        let target = out.target_cpu;
        if target == CPU_ANY {
            return (host_choice, idle);
        }
        // The policy moved the task elsewhere: the claimed CPU is not its.
        let claimed = idle.filter(|cpu| target == *cpu as i32);
        if target >= 0 && (target as u32) < cx.nr_cpus() && cx.allowed(task, target as u32) {
            return (target as u32, claimed);
        }
        self.stats_of(slot).expect("live").counters.clamp_cpu += 1;
        (host_choice, idle)
    }

    /// A waiting task that left its tenant (`before`: its tenant, the incarnation it joined and
    /// its class until then) ends the wait there, counted in the tenant's statistics, and
    /// starts a new one in its new class.
    fn end_wait_on_leaving(
        &mut self,
        task: TaskId,
        before: (Option<usize>, u32, usize),
        now: Time,
    ) {
        let (tenant_before, gen_before, cls_before) = before;
        let t = &self.tasks[task as usize];
        let Some(slot) = tenant_before.filter(|s| t.tenant != Some(*s) && cls_before == *s) else {
            return;
        };
        let Some(since) = t.waiting_since else {
            return;
        };
        self.tasks[task as usize].waiting_since = Some(now);
        if self.slots[slot].generation != gen_before {
            return;
        }
        if let Some(stats) = self.stats_of(slot) {
            stats.record_wait(now - since);
        }
    }

    /// Takes a parked task out of its park queue and enqueues it as released.
    fn unpark(&mut self, cx: &mut Cx, slot: usize, task: TaskId) {
        let t = &mut self.tasks[task as usize];
        self.slots[slot]
            .park
            .remove(&(t.park_deadline, t.park_order, task));
        t.parked = false;
        self.enqueue_task(cx, task, home_cpu(cx, task), upsched_abi::F_RELEASED);
    }

    /// Passes every task queued in `slot`'s class queue through enqueue again: members of a
    /// tenant that is gone leave it there and land in the default class.
    fn reenqueue_class(&mut self, cx: &mut Cx, slot: usize) {
        let queued = std::mem::take(&mut self.slots[slot].queue);
        for (_, _, task) in queued {
            self.enqueue_task(cx, task, home_cpu(cx, task), 0);
        }
    }

    fn release_due(&self, task: TaskId, now: Time) -> bool {
        let t = &self.tasks[task as usize];
        now >= t.park_deadline
            || t.hints[HINT_PENDING as usize] != 0
            || t.hints[HINT_FLAGS as usize] & u64::from(HINTF_SLEEPY) == 0
    }

    // ---- the chain: which class a CPU serves -------------------------------------------

    fn guard_of(&mut self, cpu: CpuId) -> &mut CpuGuard {
        let index = cpu as usize;
        if index >= self.guards.len() {
            self.guards.resize(index + 1, CpuGuard::default());
        }
        &mut self.guards[index]
    }

    /// `cpu`'s guard window: a new one starts when the last has elapsed.
    fn roll_guard_window(&mut self, now: Time, cpu: CpuId) {
        let window = self.config.guard_window;
        let guard = self.guard_of(cpu);
        if guard.window_start.is_some_and(|start| now - start < window) {
            return;
        }
        *guard = CpuGuard {
            window_start: Some(now),
            level_runtime: [0; NR_LEVELS as usize],
        };
    }

    /// The class `cpu` takes its next task from: the highest level with work unless the
    /// guard owes a lower one its share of this CPU; within the level the least virtual time.
    fn pick_class(&mut self, now: Time, cpu: CpuId, tried: u32) -> Option<usize> {
        let mut work_classes = 0u32;
        let mut work_levels = 0u32;
        let mut top_level = 0;
        for cls in 0..NR_CLASSES {
            if tried & (1 << cls) == 0 && self.class_len(cls) > 0 {
                let level = self.class_level(cls);
                work_classes |= 1 << cls;
                work_levels |= 1 << level;
                top_level = top_level.max(level);
            }
        }
        if work_classes == 0 {
            return None;
        }
        let mut chosen_level = top_level;
        if work_levels.count_ones() > 1 && self.config.guard_min_permille > 0 {
            let permille = self.config.guard_min_permille;
            let guard = *self.guard_of(cpu);
            if let Some(start) = guard.window_start.filter(|s| now > *s) {
                let owed = (now - start) / 1000 * permille;
                let mut best_deficit = 0;
                for level in 0..top_level {
                    let runtime = guard.level_runtime[level as usize];
                    if work_levels & (1 << level) != 0
                        && owed.saturating_sub(runtime) > best_deficit
                    {
                        best_deficit = owed - runtime;
                        chosen_level = level;
                    }
                }
            }
        }
        // Ties: the lowest class index.
        let best = (0..NR_CLASSES)
            .filter(|cls| work_classes & (1 << cls) != 0 && self.class_level(*cls) == chosen_level)
            .min_by_key(|cls| (self.class_vtime[*cls], *cls))?;
        let level = chosen_level as usize;
        self.level_vnow[level] = self.level_vnow[level].max(self.class_vtime[best]);
        Some(best)
    }

    fn pop_tenant_task(&mut self, cx: &Cx, slot: usize, cpu: CpuId) -> Option<TaskId> {
        let queue = &mut self.slots[slot].queue;
        let entry = *queue.iter().find(|e| cx.allowed(e.2, cpu))?;
        queue.remove(&entry);
        Some(entry.2)
    }

    /// A waiting member of a live tenant is on its slot's wait list (parked ones too) until
    /// it runs or leaves the tenant.
    fn list_waiter(&mut self, task: TaskId, slot: usize) {
        let t = &mut self.tasks[task as usize];
        if let (None, Some(since)) = (t.wait_listed, t.waiting_since) {
            t.wait_listed = Some((slot, self.slots[slot].waiting.append(task, since)));
        }
    }

    fn unlist_waiter(&mut self, task: TaskId) {
        if let Some((slot, entry)) = self.tasks[task as usize].wait_listed.take() {
            self.slots[slot].waiting.remove(task, entry);
        }
    }

    /// The per-tenant watchdog: the head of the slot's wait list is its longest wait.
    fn watch(&mut self, cx: &mut Cx, slot: usize) {
        let s = &self.slots[slot];
        let Some(config) = s.config.as_ref() else {
            return;
        };
        if s.state != SlotState::Active {
            return;
        }
        let now = cx.now;
        let longest = s
            .waiting
            .oldest()
            .filter(|(since, _)| now > *since)
            .map(|(since, task)| (now - since, task));
        if let Some((waited, task)) = longest.filter(|(w, _)| *w > config.watchdog) {
            let pid = cx.pid(task);
            let bound = config.watchdog;
            self.eject(
                cx,
                slot,
                EjectionReport {
                    kind: "watchdog",
                    at_ns: now,
                    pid,
                    waited_ns: waited,
                    reason: format!(
                        "watchdog: task {pid} waited {:.3} s to run, longer than the tenant's bound of {:.3} s",
                        waited as f64 / 1e9,
                        bound as f64 / 1e9
                    ),
                },
            );
        }
    }

    /// Releases the parked tasks of `slot` that meet a release condition (all of them when
    /// the slot is not live); the others stay parked, as the kernel's re-enqueue puts them
    /// back without a call.
    fn release_parked(&mut self, cx: &mut Cx, slot: usize) -> u64 {
        let live = self.slots[slot].state == SlotState::Active;
        let now = cx.now;
        let due: Vec<TaskId> = self.slots[slot]
            .park
            .iter()
            .map(|e| e.2)
            .filter(|task| !live || self.release_due(*task, now))
            .collect();
        let released = due.len() as u64;
        for task in due {
            self.unpark(cx, slot, task);
        }
        released
    }

    fn on_host_timer(&mut self, cx: &mut Cx) {
        self.timer_armed = false;
        for slot in 0..NR_SLOTS {
            let live = self.slots[slot].state == SlotState::Active;
            self.release_parked(cx, slot);
            if !live {
                self.reenqueue_class(cx, slot);
            }
            self.watch(cx, slot);
        }
        // Queued tasks of slots that are not ACTIVE went back above; the watchdog needs runs
        // while an active tenant has queued tasks.
        let needed = self
            .slots
            .iter()
            .any(|s| !s.park.is_empty() || (s.state == SlotState::Active && !s.queue.is_empty()));
        if needed {
            self.ensure_timer(cx);
        }
    }
}

impl Scheduler for UpschedHost {
    fn name(&self) -> &str {
        &self.name
    }

    fn work_conserving(&self) -> bool {
        true
    }

    fn is_parked(&self, task: TaskId) -> bool {
        self.parked(task)
    }

    fn wait_bound(&self, cx: &Cx, task: TaskId) -> Option<Time> {
        self.wait_bound_of(cx, task)
    }

    fn check_consistency(&self, cx: &Cx) -> Result<(), String> {
        self.consistency(cx)
    }

    fn init(&mut self, cx: &mut Cx) {
        for index in 0..self.tenants.len() {
            let config = &self.tenants[index].tenant.config;
            let detach_at = config.detach_at;
            if config.attach_at == 0 {
                self.attach(cx, index);
            } else {
                cx.set_timer(config.attach_at, TIMER_ATTACH | index as u64);
            }
            if let Some(at) = detach_at {
                cx.set_timer(at, TIMER_DETACH | index as u64);
            }
            if let Some(replace) = &self.tenants[index].tenant.replace {
                cx.set_timer(replace.at, TIMER_REPLACE | index as u64);
            }
        }
    }

    fn task_init(&mut self, _cx: &mut Cx, task: TaskId) {
        let i = task as usize;
        if i >= self.tasks.len() {
            self.tasks.resize(i + 1, TaskCtx::new());
        }
        self.tasks[i] = TaskCtx::new();
        self.default_class.reset_task(task);
    }

    fn task_exit(&mut self, cx: &mut Cx, task: TaskId) {
        self.uncount_runnable(task);
        self.leave_tenant(cx, task);
    }

    fn select_cpu(&mut self, cx: &mut Cx, task: TaskId, prev_cpu: CpuId, flags: u32) -> CpuId {
        let idle = cx.find_idle_cpu(task, prev_cpu);
        let host_choice = idle.unwrap_or_else(|| allowed_or_first(cx, task, prev_cpu));
        let t = &mut self.tasks[task as usize];
        t.decision = None;
        let current = t.seen_classify_gen == self.classify_gen;
        let Some(slot) = self.live_tenant(task) else {
            if let Some(cpu) = idle {
                self.try_insert_default_direct(cx, task, cpu);
            }
            return host_choice;
        };
        let (chosen, claimed) = self.tenant_select_cpu(cx, task, slot, flags, idle, host_choice);
        // A stale classification is settled in enqueue, which then decides the wake-up.
        if current && self.live_tenant(task).is_some() {
            self.decide_wakeup(cx, task, slot, claimed);
        }
        chosen
    }

    fn enqueue(&mut self, cx: &mut Cx, task: TaskId, cpu: CpuId, flags: u32) {
        // select_cpu inserted the task: the kernel calls no ops.enqueue for it.
        if std::mem::take(&mut self.tasks[task as usize].inserted) {
            return;
        }
        self.host_enqueues += 1;
        if flags & (F_WAKEUP | F_FORK) != 0 {
            self.mark_runnable(task, cx.now);
        }
        // sched_ext sets ENQ_WAKEUP for wake-ups, not for a new task.
        let abi_flags = (flags & F_WAKEUP) | (flags & F_PREEMPTED);
        self.enqueue_task(cx, task, cpu, abi_flags);
    }

    fn dispatch(&mut self, cx: &mut Cx, cpu: CpuId) -> Option<Dispatch> {
        let now = cx.now;
        self.roll_guard_window(now, cpu);
        if let Some(direct) = self
            .local
            .get_mut(cpu as usize)
            .and_then(VecDeque::pop_front)
        {
            return Some(direct);
        }
        let mut tried = 0u32;
        for _ in 0..NR_CLASSES {
            let cls = self.pick_class(now, cpu, tried)?;
            let picked = if cls == DEFAULT_CLASS {
                self.default_class.pop_for(cx, cpu)
            } else {
                self.pop_tenant_task(cx, cls, cpu)
                    .map(|task| (task, self.tasks[task as usize].slice))
            };
            match picked {
                Some((task, slice)) => return Some(Dispatch { task, slice }),
                // Nothing of that class may run on this CPU: choose again without it.
                None => tried |= 1 << cls,
            }
        }
        None
    }

    fn running(&mut self, cx: &mut Cx, task: TaskId, _cpu: CpuId) {
        let now = cx.now;
        let t = &mut self.tasks[task as usize];
        t.running_at = now;
        let waiting_since = std::mem::take(&mut t.waiting_since);
        let cls = t.cls;
        self.unlist_waiter(task);
        if let Some(stats) = self.stats_of(cls) {
            stats.counters.dispatches += 1;
            if let Some(since) = waiting_since {
                stats.record_wait(now - since);
            }
        }
        if let Some(slot) = self.live_tenant(task) {
            self.call(cx, task, slot, Hook::Running, 0);
        }
    }

    fn stopping(&mut self, cx: &mut Cx, task: TaskId, cpu: CpuId, runnable: bool) {
        let now = cx.now;
        let t = &mut self.tasks[task as usize];
        let ran = now.saturating_sub(t.running_at);
        t.last_runtime = ran;
        let cls = t.cls;
        if runnable {
            t.waiting_since = Some(now);
        } else {
            // ops.quiescent.
            t.runnable_at = None;
            t.waiting_since = None;
            t.parked = false;
            self.uncount_runnable(task);
        }
        self.class_vtime[cls] += ran * NICE_0_WEIGHT / self.class_weight(cls);
        let level = self.class_level(cls) as usize;
        self.guard_of(cpu).level_runtime[level] += ran;
        if let Some(stats) = self.stats_of(cls) {
            stats.counters.cpu_time_ns += ran;
        }
        if cls == DEFAULT_CLASS {
            self.default_class.charge(task, ran, cx.weight(task));
        }
        if let Some(slot) = self.live_tenant(task) {
            let flags = if runnable { upsched_abi::F_RUNNABLE } else { 0 };
            self.call(cx, task, slot, Hook::Stopping, flags);
        }
    }

    fn tick(&mut self, cx: &mut Cx, _cpu: CpuId, task: TaskId) -> bool {
        let t = &self.tasks[task as usize];
        // Its tenant is gone: end the slice, so that enqueue classifies it now.
        if t.tenant.is_some() && self.live_tenant(task).is_none() {
            return true;
        }
        // A higher level with queued work takes the CPU, as a higher scheduling class would.
        let level = self.class_level(t.cls);
        if (0..NR_CLASSES).any(|cls| self.class_level(cls) > level && self.class_len(cls) > 0) {
            return true;
        }
        let Some(slot) = self.live_tenant(task) else {
            return false;
        };
        let Some(out) = self.call(cx, task, slot, Hook::Tick, 0) else {
            return true;
        };
        match out.verdict {
            VERDICT_PREEMPT => true,
            VERDICT_RUN => false,
            _ => {
                self.stats_of(slot).expect("live").counters.clamp_verdict += 1;
                false
            }
        }
    }

    fn timer(&mut self, cx: &mut Cx, token: u64) {
        let index = (token & !TIMER_KIND) as usize;
        match token & TIMER_KIND {
            TIMER_HOST => self.on_host_timer(cx),
            TIMER_ATTACH => self.attach(cx, index),
            TIMER_DETACH => self.detach(cx, index),
            TIMER_DRAIN_BOUND => self.drain_bound_reached(index),
            TIMER_REPLACE => self.replace(cx, index),
            _ => {}
        }
    }

    fn hints_changed(&mut self, cx: &mut Cx, task: TaskId) {
        // The task writes its words in its tenant's hint map; in the default class it has
        // none (the kernel's `task_lookup` has no entry to write through).
        if self.live_tenant(task).is_some() {
            self.tasks[task as usize].hints = *cx.hints(task);
        }
    }

    /// The notify program of the task's tenant: its park queue is re-examined at once (the
    /// timer's release conditions), and the task, if it runs while SLEEPY with nothing
    /// pending, is preempted so that its enqueue may park it.
    fn notify(&mut self, cx: &mut Cx, task: TaskId) {
        let Some(slot) = self.live_tenant(task) else {
            return;
        };
        let released = self.release_parked(cx, slot);
        let counters = &mut self.stats_of(slot).expect("live").counters;
        counters.notifies += 1;
        counters.notify_releases += u64::from(released > 0);
        let hints = &self.tasks[task as usize].hints;
        let idle = hints[HINT_FLAGS as usize] & u64::from(HINTF_SLEEPY) != 0
            && hints[HINT_PENDING as usize] == 0;
        if let Some(cpu) = cx.running_on(task).filter(|_| idle) {
            self.stats_of(slot).expect("live").counters.notify_kicks += 1;
            cx.preempt(cpu);
        }
    }

    fn mechanism_report(&self, end: Time) -> Option<MechanismReport> {
        Some(self.report(end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_ancestry_is_by_whole_components() {
        assert!(is_within("/a/b", "/a"));
        assert!(is_within("/a", "/a"));
        assert!(is_within("/a", "/"));
        assert!(!is_within("/ab", "/a"));
        assert!(!is_within("/a", "/a/b"));
        assert_eq!(depth_below("/a/b/c", "/a"), 2);
        assert_eq!(depth_below("/a", "/"), 1);
    }

    #[test]
    fn scx_weights_scale_linux_weights() {
        assert_eq!(scx_weight(1024), 100);
        assert_eq!(scx_weight(88761), 8668);
        assert_eq!(scx_weight(15), 1);
    }

    #[test]
    fn the_dsq_model_answers_like_the_kernel() {
        let mut model = DsqModel {
            queued: [0; NR_CLASSES],
            parked: [0; NR_SLOTS],
            local: vec![1, 2, 0, 4],
            here: 1,
            error: None,
        };
        model.queued[3] = 5;
        model.parked[2] = 7;
        assert_eq!(model.nr_queued(0x103), 5);
        assert_eq!(model.nr_queued(0x202), 7);
        assert_eq!(model.nr_queued(upsched_abi::SCX_DSQ_LOCAL), 2);
        assert_eq!(model.nr_queued(SCX_DSQ_LOCAL_ON), 1);
        assert_eq!(model.nr_queued(SCX_DSQ_LOCAL_ON | 3), 4);
        // Bits 32..61 do not take part in the CPU number.
        assert_eq!(model.nr_queued(SCX_DSQ_LOCAL_ON | 0xabc << 32 | 3), 4);
        let global = 1 << 63 | 1;
        for missing in [0x300, 0x109, 0x208, global, 1 << 63, 0x12345] {
            assert_eq!(model.nr_queued(missing), ENOENT, "{missing:#x}");
        }
        assert_eq!(model.error, None, "none of these fails in the kernel");
        assert_eq!(model.nr_queued(SCX_DSQ_LOCAL_ON | 4), ENOENT);
        assert_eq!(model.error.as_deref(), Some("invalid CPU 4"));
        model.error = None;
        assert_eq!(model.nr_queued(SCX_DSQ_LOCAL_ON | 0xffff_ffff), ENOENT);
        assert_eq!(model.error.as_deref(), Some("invalid CPU -1"));
    }
}
