//! The interface between the simulator's core and a scheduling policy, shaped like sched_ext.
//!
//! The core owns the tasks, the CPUs, time and all mechanism (switching, costs, accounting);
//! a [`Scheduler`] owns its run queues and decides: which CPU a waking task goes to
//! (`select_cpu`), where a runnable task waits (`enqueue`), what a CPU runs next (`dispatch`),
//! and whether to preempt (`tick`, or [`Cx::preempt`] from any hook). It observes `running`,
//! `stopping`, `task_init` and `task_exit`. This is the shape of `struct sched_ext_ops` and of
//! upsched's host scheduler, so the host mechanism (default class, tenant slots, chain of
//! levels) can be written as one more `Scheduler` that calls tenant policies through the
//! eBPF engine, without changes to the core.
//!
//! Call order for a task, as in sched_ext:
//! - new task: `task_init`, `select_cpu(F_FORK)`, `enqueue(F_FORK)`;
//! - wake-up: `select_cpu(F_WAKEUP)`, `enqueue(F_WAKEUP)`;
//! - `dispatch(cpu)` → `running`; then at the end of the stint `stopping(runnable)` and, when
//!   the task stays runnable (slice end, preemption, yield), `enqueue` with `F_PREEMPTED`,
//!   `F_YIELD` or no flag (slice expired) followed by `dispatch` on that CPU;
//! - exit: `stopping(false)`, `task_exit`.
//!
//! A task re-picked by the same CPU right after `enqueue` continues without a context switch.

pub mod eevdf;
pub mod fifo;
pub mod upsched;
pub mod vtime;

use crate::engine::{Task, TaskState};
use crate::machine::{CpuId, CpuMask, IdleCpus, Machine, Topology};
use crate::scenario::{Scenario, SchedParams};
use crate::units::Time;

/// Index of a live task in the simulator; reused after the task exits (`task_init` marks the
/// reuse).
pub type TaskId = u32;

/// "No CPU" in CPU fields.
pub const NO_CPU: CpuId = u32::MAX;

pub use upsched_abi::{F_FORK, F_PREEMPTED, F_WAKEUP, F_YIELD};

/// A CPU's next task and how long it may run before the core ends its slice
/// (`Time::MAX`: until it blocks or is preempted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dispatch {
    pub task: TaskId,
    pub slice: Time,
}

/// Something a policy asks the core to do once the current hook returns.
#[derive(Clone, Debug)]
pub(crate) enum Request {
    /// Make `cpu` reschedule (after the wake-up IPI latency when it is remote); with `preempt`
    /// the task running there is preempted.
    Kick { cpu: CpuId, preempt: bool },
    /// Call [`Scheduler::timer`] with `token` at time `at`.
    Timer { at: Time, token: u64 },
    /// The scheduler cannot go on (as sched_ext disables a BPF scheduler on a runtime error):
    /// the run ends with this reason as its error.
    Abort(String),
}

/// What a policy may see and ask for during a hook.
pub struct Cx<'a> {
    pub now: Time,
    pub(crate) here: CpuId,
    pub(crate) tasks: &'a [Task],
    pub(crate) curr: &'a [TaskId],
    pub(crate) machine: &'a Machine,
    pub(crate) cpusets: &'a [CpuMask],
    pub(crate) idle: &'a mut IdleCpus,
    pub(crate) requests: &'a mut Vec<Request>,
}

impl Cx<'_> {
    /// The CPU this hook runs on, or [`NO_CPU`] for events from outside (arrivals).
    pub fn here(&self) -> CpuId {
        self.here
    }
    pub fn nr_cpus(&self) -> u32 {
        self.machine.topology.nr_cpus
    }
    pub fn topology(&self) -> &Topology {
        &self.machine.topology
    }
    pub fn tick_period(&self) -> Time {
        self.machine.tick
    }

    #[inline]
    fn task(&self, task: TaskId) -> &Task {
        &self.tasks[task as usize]
    }
    /// Load weight, Linux scale (nice 0 = 1024).
    #[inline]
    pub fn weight(&self, task: TaskId) -> u32 {
        self.task(task).weight
    }
    pub fn nice(&self, task: TaskId) -> i32 {
        self.task(task).nice
    }
    /// Index of the task's cgroup in the scenario.
    pub fn cgroup(&self, task: TaskId) -> u32 {
        self.task(task).cgroup
    }
    #[inline]
    pub fn affinity(&self, task: TaskId) -> &CpuMask {
        &self.cpusets[self.task(task).affinity as usize]
    }
    #[inline]
    pub fn allowed(&self, task: TaskId, cpu: CpuId) -> bool {
        let t = self.task(task);
        t.affinity == 0 || self.cpusets[t.affinity as usize].contains(cpu)
    }
    /// CPU the task last ran on ([`NO_CPU`] if it never ran).
    pub fn prev_cpu(&self, task: TaskId) -> CpuId {
        self.task(task).last_cpu
    }
    pub fn hints(&self, task: TaskId) -> &[u64; upsched_abi::NR_HINTS as usize] {
        &self.task(task).hints
    }
    pub fn sum_runtime(&self, task: TaskId) -> Time {
        self.task(task).sum_runtime
    }
    /// CPU time of the task's last stint.
    pub fn last_runtime(&self, task: TaskId) -> Time {
        self.task(task).last_runtime
    }
    /// When the task last became runnable.
    pub fn runnable_since(&self, task: TaskId) -> Time {
        self.task(task).runnable_since
    }
    pub fn switches(&self, task: TaskId) -> (u64, u64) {
        let t = self.task(task);
        (t.nr_voluntary, t.nr_involuntary)
    }
    pub fn pid(&self, task: TaskId) -> u32 {
        self.task(task).pid
    }
    pub fn is_running(&self, task: TaskId) -> bool {
        self.task(task).state == TaskState::Running
    }
    /// The CPU the task runs on, if it runs.
    pub fn running_on(&self, task: TaskId) -> Option<CpuId> {
        let t = self.task(task);
        (t.state == TaskState::Running).then_some(t.cpu)
    }

    /// The task running on `cpu`, if any.
    #[inline]
    pub fn curr(&self, cpu: CpuId) -> Option<TaskId> {
        let t = self.curr[cpu as usize];
        (t != u32::MAX).then_some(t)
    }
    /// Whether `cpu` is idle and nobody has asked it to reschedule yet.
    #[inline]
    pub fn is_idle(&self, cpu: CpuId) -> bool {
        self.idle.contains(cpu)
    }
    pub fn idle_mask(&self) -> &CpuMask {
        self.idle.cpus()
    }

    /// Asks `cpu` to look for work (`dispatch`). An idle CPU stops counting as idle at once,
    /// so two wake-ups in a row do not pick the same idle CPU.
    pub fn kick(&mut self, cpu: CpuId) {
        self.idle.clear(cpu);
        self.requests.push(Request::Kick {
            cpu,
            preempt: false,
        });
    }
    /// Asks `cpu` to preempt its running task and dispatch again.
    pub fn preempt(&mut self, cpu: CpuId) {
        self.idle.clear(cpu);
        self.requests.push(Request::Kick { cpu, preempt: true });
    }
    /// Ends the run after the current event with `reason` as its error: the scheduler failed
    /// the way sched_ext's runtime errors make the kernel disable a BPF scheduler.
    pub fn abort(&mut self, reason: String) {
        self.requests.push(Request::Abort(reason));
    }
    /// Asks for a call of [`Scheduler::timer`] with `token` at `at` (not before now).
    pub fn set_timer(&mut self, at: Time, token: u64) {
        self.requests.push(Request::Timer {
            at: at.max(self.now),
            token,
        });
    }

    /// The first CPU of `cpu`'s LLC whose whole core is idle and that `allowed` contains.
    pub fn idle_core_in_llc(&self, allowed: &CpuMask, cpu: CpuId) -> Option<CpuId> {
        self.idle
            .whole_cores()
            .first_common3(allowed, self.topology().llc_mask(cpu))
    }

    /// An idle CPU for a waking task, the way Linux's `select_idle_sibling` and sched_ext's
    /// default CPU selection look: the previous CPU if it is idle; else a whole idle core in
    /// the previous CPU's LLC; else any idle CPU of that LLC; else of its NUMA node; else any
    /// allowed idle CPU.
    pub fn find_idle_cpu(&self, task: TaskId, prev: CpuId) -> Option<CpuId> {
        let allowed = self.affinity(task);
        let topo = self.topology();
        let prev = if prev < topo.nr_cpus { prev } else { 0 };
        if self.idle.contains(prev) && allowed.contains(prev) {
            return Some(prev);
        }
        let llc = topo.llc_mask(prev);
        if topo.smt > 1 {
            if let Some(cpu) = self.idle_core_in_llc(allowed, prev) {
                return Some(cpu);
            }
        }
        let idle = self.idle.cpus();
        idle.first_common3(allowed, llc)
            .or_else(|| idle.first_common3(allowed, topo.node_mask(prev)))
            .or_else(|| idle.first_common(allowed))
    }
}

/// A scheduling policy driven by the simulator. Hooks with a default body are optional.
pub trait Scheduler {
    fn name(&self) -> &str;

    /// The policy promises never to leave a CPU idle while a queued task may run there. When
    /// the simulator checks invariants it verifies this after every event.
    fn work_conserving(&self) -> bool {
        false
    }

    /// Whether the runnable `task` is held back on purpose (parked by a tenant policy within
    /// its bound): the work-conservation check does not count it.
    fn is_parked(&self, _task: TaskId) -> bool {
        false
    }

    /// The longest the queued `task` may have waited since it last became runnable under the
    /// policy's guarantees (`None`: no promise). Checked after every event with invariants on.
    fn wait_bound(&self, _cx: &Cx, _task: TaskId) -> Option<Time> {
        None
    }

    /// Checks the policy's own bookkeeping against the core's task states (e.g. every queued
    /// task is in exactly one of its queues). Called after every event with invariants on.
    fn check_consistency(&self, _cx: &Cx) -> Result<(), String> {
        Ok(())
    }

    /// Whether to call `tick` on busy CPUs every tick period.
    fn wants_tick(&self) -> bool {
        true
    }

    /// Called once before the first event, e.g. to set timers.
    fn init(&mut self, _cx: &mut Cx) {}

    fn task_init(&mut self, _cx: &mut Cx, _task: TaskId) {}
    fn task_exit(&mut self, _cx: &mut Cx, _task: TaskId) {}

    /// CPU for a task that wakes up or is new; it must be in the task's affinity (the core
    /// replaces any other answer with the previous CPU or the first allowed one).
    fn select_cpu(&mut self, cx: &mut Cx, task: TaskId, prev_cpu: CpuId, flags: u32) -> CpuId;

    /// The task became runnable; `cpu` is the CPU chosen by `select_cpu` for wake-ups and the
    /// CPU it ran on for re-enqueues. The policy queues it and kicks CPUs as needed.
    fn enqueue(&mut self, cx: &mut Cx, task: TaskId, cpu: CpuId, flags: u32);

    /// `cpu` needs a task: return one of the queued tasks allowed on `cpu`, removed from the
    /// policy's queues, or `None` to leave the CPU idle.
    fn dispatch(&mut self, cx: &mut Cx, cpu: CpuId) -> Option<Dispatch>;

    fn running(&mut self, _cx: &mut Cx, _task: TaskId, _cpu: CpuId) {}
    fn stopping(&mut self, _cx: &mut Cx, _task: TaskId, _cpu: CpuId, _runnable: bool) {}

    /// Scheduler tick on a busy CPU; return `true` to end the running task's slice now.
    fn tick(&mut self, _cx: &mut Cx, _cpu: CpuId, _task: TaskId) -> bool {
        false
    }

    /// A timer the policy set with [`Cx::set_timer`] fired.
    fn timer(&mut self, _cx: &mut Cx, _token: u64) {}

    /// The task changed one of its hint words.
    fn hints_changed(&mut self, _cx: &mut Cx, _task: TaskId) {}

    /// Whoever changed the task's hint words asks the scheduler to look at them now (the
    /// upsched host's notify program); schedulers without one ignore it.
    fn notify(&mut self, _cx: &mut Cx, _task: TaskId) {}

    /// The upsched mechanism's statistics (tenants, classes) at the end of a run at `end`,
    /// for schedulers that are it.
    fn mechanism_report(&self, _end: Time) -> Option<upsched::MechanismReport> {
        None
    }
}

/// Builds a built-in policy by name (`linux-eevdf`, `upsched-default`, `fifo`, `rr`).
pub fn builtin(name: &str, scenario: &Scenario) -> Option<Box<dyn Scheduler>> {
    let params: &SchedParams = &scenario.params;
    let nr_cpus = scenario.machine.nr_cpus();
    Some(match name {
        "linux-eevdf" => Box::new(eevdf::Eevdf::new(
            nr_cpus,
            params.eevdf.clone(),
            scenario.machine.tick,
        )),
        "upsched-default" => Box::new(vtime::VtimeFair::new(params.default_slice)),
        "fifo" => Box::new(fifo::GlobalQueue::fifo()),
        "rr" => Box::new(fifo::GlobalQueue::round_robin(params.rr_slice)),
        _ => return None,
    })
}
