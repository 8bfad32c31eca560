//! The discrete-event core: tasks, CPUs, time, and the mechanism that carries out a policy's
//! decisions.
//!
//! Events live in a 4-ary min-heap ordered by (time, sequence number): two events at the same
//! nanosecond are handled in the order they were created, so a run depends only on the
//! scenario and the seed. Per-CPU timers are invalidated lazily with a generation number
//! instead of being removed from the heap.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::chains::{ChainOutcome, ChainTracker, NO_REQUEST, event_hint_id};
use crate::machine::{CpuId, IdleCpus};
use crate::metrics::Record;
use crate::rng::SimRng;
use crate::scenario::{
    ArrivalAction, ArrivalProcess, EventId, EventKind, FOREVER, Op, Scenario, SpecId,
};
use crate::sched::{
    Cx, F_FORK, F_PREEMPTED, F_WAKEUP, F_YIELD, NO_CPU, Request, Scheduler, TaskId,
};
use crate::units::Time;

const NO_TASK: TaskId = u32::MAX;

/// Operations a task may run at one instant before the run is declared broken (a program
/// that never lets time pass).
const INSTANT_OP_BUDGET: u32 = 1_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskState {
    /// Slot not in use.
    Free,
    /// Runnable, waiting in the policy's queues.
    Queued,
    Running,
    Sleeping,
    Blocked,
    Exited,
}

/// Where the task is in its current operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The next operation starts when the task runs.
    Next,
    /// In a `run` with `remaining` ns of CPU left.
    Run,
    /// Spinning until its event (`spin_done` once signalled), with `remaining` ns of spin
    /// budget left (`Time::MAX`: no budget).
    Spin,
}

/// A task instance. Fields are read by policies through [`Cx`].
#[derive(Clone, Debug)]
pub struct Task {
    pub(crate) spec: u32,
    pub(crate) record: u32,
    pub(crate) pid: u32,
    pub(crate) state: TaskState,
    pub(crate) weight: u32,
    pub(crate) nice: i32,
    pub(crate) cgroup: u32,
    pub(crate) affinity: u32,
    pc: u32,
    /// Remaining iterations of the enclosing loops, innermost last.
    loops: Vec<u64>,
    phase: Phase,
    remaining: Time,
    spin_done: bool,
    /// The event a spinning task polls.
    spin_event: u32,
    pub(crate) cpu: CpuId,
    pub(crate) last_cpu: CpuId,
    pub(crate) runnable_since: Time,
    /// The CPU the task was last enqueued for, and the task (pid) whose operation made it
    /// runnable then, for the trace's run-queue counters and wake-up flows.
    queued_on: CpuId,
    waker: Option<u32>,
    spawned_at: Time,
    run_start: Time,
    pub(crate) sum_runtime: Time,
    pub(crate) last_runtime: Time,
    pub(crate) nr_voluntary: u64,
    pub(crate) nr_involuntary: u64,
    pub(crate) hints: [u64; upsched_abi::NR_HINTS as usize],
    timer_next: Time,
    rng: SimRng,
    stream: u64,
    forks: u64,
}

impl Task {
    /// The runnable wait the task is in, or was in before its current stint.
    fn wait(&self) -> Wait {
        Wait {
            since: self.runnable_since,
            queued_on: self.queued_on,
            waker: self.waker,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EventWhat {
    /// The running task on `cpu` reaches a decision point (operation done, slice end).
    CpuTimer {
        cpu: CpuId,
        generation: u32,
    },
    Tick {
        cpu: CpuId,
    },
    /// `cpu` acts on a kick.
    Resched {
        cpu: CpuId,
    },
    /// A sleeping task's timer.
    Wake {
        task: TaskId,
    },
    /// Start instance `instance` of a spec.
    Start {
        spec: u32,
        instance: u32,
    },
    Arrival {
        index: u32,
    },
    PolicyTimer {
        token: u64,
    },
}

#[derive(Clone, Copy, Debug)]
struct Event {
    /// Time in the high 64 bits, sequence number in the low: one integer comparison orders
    /// events by (time, creation order).
    key: u128,
    what: EventWhat,
}

impl Event {
    fn time(&self) -> Time {
        (self.key >> 64) as Time
    }
}

/// Min-heap of events on `key` with four children per node: half the depth of a binary heap,
/// and the four children of a node share a cache line or two.
struct EventQueue {
    items: Vec<Event>,
}

impl EventQueue {
    fn with_capacity(n: usize) -> Self {
        EventQueue {
            items: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, event: Event) {
        let mut i = self.items.len();
        self.items.push(event);
        while i > 0 {
            let parent = (i - 1) / 4;
            if self.items[parent].key <= event.key {
                break;
            }
            self.items[i] = self.items[parent];
            i = parent;
        }
        self.items[i] = event;
    }

    fn pop(&mut self) -> Option<Event> {
        let last = self.items.pop()?;
        let n = self.items.len();
        if n == 0 {
            return Some(last);
        }
        let top = self.items[0];
        let mut i = 0;
        loop {
            let first = 4 * i + 1;
            if first >= n {
                break;
            }
            let mut min = first;
            for c in first + 1..(first + 4).min(n) {
                if self.items[c].key < self.items[min].key {
                    min = c;
                }
            }
            if self.items[min].key >= last.key {
                break;
            }
            self.items[i] = self.items[min];
            i = min;
        }
        self.items[i] = last;
        Some(top)
    }
}

#[derive(Clone, Debug, Default)]
struct CpuState {
    generation: u32,
    dispatched_at: Time,
    exec_start: Time,
    acct_from: Time,
    slice_end: Time,
    pub(crate) busy_ns: Time,
    pub(crate) task_ns: Time,
    /// 0: none, 1: kick pending, 2: preemption pending.
    resched: u8,
    tick_armed: bool,
    /// Task that left this CPU still runnable (preempted, slice end, yield), until the CPU
    /// picks its next task: if it picks the same one, there was no context switch.
    last_out: TaskId,
    last_out_voluntary: bool,
    /// The next switch follows a voluntary one (or idle): charged the voluntary cost.
    next_switch_voluntary: bool,
}

struct EventState {
    kind: EventKind,
    tokens: u64,
    /// (task, spinning) in arrival order.
    waiters: VecDeque<(TaskId, bool)>,
}

struct ArrivalState {
    rng: SimRng,
    count: u64,
}

/// One stint of a task on a CPU, for the timeline and the trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub cpu: CpuId,
    pub record: u32,
    /// The task instance's pid (a record may have many instances).
    pub pid: u32,
    /// When the CPU picked the task; `exec` - `dispatched` is switching/migration cost.
    pub dispatched: Time,
    pub exec: Time,
    pub end: Time,
    /// The runnable wait the stint ended, from `wait.since` to `dispatched`.
    pub wait: Wait,
}

/// A task's runnable wait: since when, on which CPU's queue, and who made it runnable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait {
    pub since: Time,
    /// The CPU the engine enqueued the task for (`select_cpu`'s choice, or the CPU it left):
    /// a policy with shared queues may still run it elsewhere.
    pub queued_on: CpuId,
    /// The pid of the running task that woke (signal) or forked it at `since`; `None` for
    /// timers, arrivals, the start of the run, and preemption.
    pub waker: Option<u32>,
}

/// A task still runnable when the run ended: its wait has no stint to end it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenWait {
    pub record: u32,
    pub pid: u32,
    pub wait: Wait,
}

/// A run that had to stop.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    #[error("policy {policy}: {message}")]
    Policy { policy: String, message: String },
    #[error("scenario: {0}")]
    Scenario(String),
    #[error("unknown policy {0:?}")]
    UnknownPolicy(String),
    /// The run reached one of its [`RunLimits`].
    #[error(
        "run stopped at {} simulated: {limit} reached the limit of {} (raise it with {}; 0 lifts it)",
        crate::units::format_duration(*at_ns),
        limit.show(*bound),
        limit.option()
    )]
    Limit {
        limit: Limit,
        /// The limit in force (wall time in ns).
        bound: u64,
        /// Simulated time reached.
        at_ns: Time,
    },
}

/// Which of the [`RunLimits`] a run reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Events,
    Tasks,
    Memory,
    WallTime,
}

impl Limit {
    /// The command-line option that sets this limit (`upsched sim`, `upsched sweep`).
    pub fn option(self) -> &'static str {
        match self {
            Limit::Events => "--max-events",
            Limit::Tasks => "--max-tasks",
            Limit::Memory => "--max-memory",
            Limit::WallTime => "--max-wall",
        }
    }

    /// A bound of this limit with its unit.
    fn show(self, bound: u64) -> String {
        match self {
            Limit::Events | Limit::Tasks => bound.to_string(),
            Limit::Memory => format!("{bound} bytes"),
            Limit::WallTime => crate::units::format_duration(bound),
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self {
            Limit::Events => "the number of events handled",
            Limit::Tasks => "the number of tasks alive at once",
            Limit::Memory => "the estimated memory of the run",
            Limit::WallTime => "the wall-clock time of the run",
        })
    }
}

/// What one run may create before it stops with [`SimError::Limit`]: a scenario whose
/// arrivals or forks outpace the machine would otherwise grow until memory runs out. A limit
/// of 0 is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    /// Events handled.
    pub max_events: u64,
    /// Tasks alive at once (started and not exited), the tasks a scenario starts at time 0
    /// included.
    pub max_tasks: u64,
    /// Estimated bytes of the run's state: tasks, pending events, per-task records, the
    /// trace, and [`POLICY_BYTES_PER_TASK`] per live task for the policy's queues.
    pub max_memory: u64,
    /// Wall-clock time of the run.
    pub max_wall: Duration,
}

/// Bytes a run's memory estimate allows per live task for the policy's own state.
pub const POLICY_BYTES_PER_TASK: u64 = 256;

impl Default for RunLimits {
    fn default() -> Self {
        RunLimits {
            max_events: 2_000_000_000,
            max_tasks: 100_000,
            max_memory: 2 << 30,
            max_wall: Duration::from_secs(600),
        }
    }
}

/// Whether `value` is over `bound` (0: no bound).
fn over(value: u64, bound: u64) -> bool {
    bound != 0 && value > bound
}

/// Events between two checks of the memory estimate and the wall clock.
const SLOW_CHECK_EVERY: u64 = 1 << 12;

/// Options of one run.
pub struct RunOptions<'p> {
    pub seed: u64,
    /// Overrides the scenario's duration.
    pub duration: Option<Time>,
    /// Keep every stint for the timeline and the trace, up to `trace_limit` stints.
    pub record_trace: bool,
    pub trace_limit: usize,
    /// Check the invariants of `engine::invariants` (work conservation, no task lost, bounded
    /// waits) after every event and at the end (slow; on in debug builds and tests).
    pub check_invariants: bool,
    /// Called now and then with the simulated time reached.
    pub progress: Option<&'p mut dyn FnMut(Time)>,
    pub limits: RunLimits,
}

impl Default for RunOptions<'_> {
    fn default() -> Self {
        RunOptions {
            seed: 1,
            duration: None,
            record_trace: false,
            trace_limit: 1_000_000,
            check_invariants: cfg!(debug_assertions),
            progress: None,
            limits: RunLimits::default(),
        }
    }
}

/// What a run produced: raw accounting, turned into a report by [`crate::report`].
pub struct RunOutcome {
    pub policy: String,
    pub seed: u64,
    /// Simulated time covered (the scenario's duration, or less if nothing was left to do).
    pub end: Time,
    pub events: u64,
    pub records: Vec<Record>,
    pub cpu_busy_ns: Vec<Time>,
    pub cpu_task_ns: Vec<Time>,
    pub trace: Vec<Segment>,
    /// The tasks runnable at the end (with the trace only).
    pub trace_open_waits: Vec<OpenWait>,
    pub trace_truncated: bool,
    pub tasks_started: u64,
    pub tasks_alive_at_end: u64,
    /// One entry per chain of the scenario.
    pub chains: Vec<ChainOutcome>,
    /// Per-tenant and per-class statistics when the policy is the upsched mechanism.
    pub mechanism: Option<crate::sched::upsched::MechanismReport>,
}

struct Sim<'s, 'p> {
    scenario: &'s Scenario,
    sched: Box<dyn Scheduler>,
    opts: RunOptions<'p>,
    now: Time,
    end: Time,
    seq: u64,
    heap: EventQueue,
    tasks: Vec<Task>,
    free: Vec<TaskId>,
    /// Σ of the tasks' loop stack capacities (kept as they grow: summing them at every
    /// memory check would cost a pass over all tasks).
    loop_capacity: usize,
    /// Per cgroup, the CPUs running one of its tasks, in scenarios with chains (whose
    /// requests account the CPU time of a cgroup's running tasks when it turns idle or busy).
    running_in: Vec<Vec<CpuId>>,
    /// Per CPU, its place in its task's `running_in` list (O(1) removal).
    running_at: Vec<u32>,
    curr: Vec<TaskId>,
    cpus: Vec<CpuState>,
    idle: IdleCpus,
    requests: Vec<Request>,
    here: CpuId,
    /// CPUs kicked with no latency (local or from outside), handled right after the current
    /// event in kick order: the same order the event heap would give, without its cost.
    deferred_resched: Vec<CpuId>,
    events: Vec<EventState>,
    arrivals: Vec<ArrivalState>,
    records: Vec<Record>,
    dynamic_record: Vec<u32>,
    trace: Vec<Segment>,
    trace_truncated: bool,
    /// The running task whose operation (signal, fork) is being carried out: the waker of
    /// the tasks it makes runnable.
    acting: TaskId,
    error: Option<SimError>,
    processed: u64,
    next_pid: u32,
    started: u64,
    wants_tick: bool,
    chains: Option<ChainTracker>,
    /// The platform's hint posts for chain stages that declare them (`None`: no stage does).
    platform: Option<PlatformHints>,
    /// Notifications the acting task made during its current operation, charged to it.
    notifies: u32,
    started_at: Instant,
}

/// Which runtime threads the platform posts hints for, per cgroup: the stage's event and the
/// task specs named in its `platform_hints`, and the live instances of those specs.
struct PlatformHints {
    stages: Vec<Option<(EventId, Vec<SpecId>)>>,
    tasks: Vec<Vec<TaskId>>,
}

impl PlatformHints {
    fn new(scenario: &Scenario) -> Option<PlatformHints> {
        let mut stages = vec![None; scenario.cgroups.len()];
        let mut any = false;
        for stage in scenario.chains.iter().flat_map(|c| &c.stages) {
            if !stage.platform_hints.is_empty() {
                stages[stage.cgroup as usize] = Some((stage.event, stage.platform_hints.clone()));
                any = true;
            }
        }
        any.then(|| PlatformHints {
            tasks: vec![Vec::new(); stages.len()],
            stages,
        })
    }

    /// A new instance of `spec` in `cgroup`: the platform posts for it if the stage names it.
    fn spawned(&mut self, task: TaskId, spec: SpecId, cgroup: u32) {
        let Some((_, specs)) = &self.stages[cgroup as usize] else {
            return;
        };
        let tasks = &mut self.tasks[cgroup as usize];
        if specs.contains(&spec) && !tasks.contains(&task) {
            tasks.push(task);
        }
    }
}

/// Runs `scenario` under the built-in policy `policy`.
pub fn run_builtin(
    scenario: &Scenario,
    policy: &str,
    opts: RunOptions,
) -> Result<RunOutcome, SimError> {
    let sched = crate::sched::builtin(policy, scenario)
        .ok_or_else(|| SimError::UnknownPolicy(policy.to_string()))?;
    run(scenario, sched, opts)
}

/// Runs `scenario` under any policy.
pub fn run(
    scenario: &Scenario,
    sched: Box<dyn Scheduler>,
    opts: RunOptions,
) -> Result<RunOutcome, SimError> {
    let nr_cpus = scenario.machine.nr_cpus();
    let end = opts.duration.unwrap_or(scenario.duration);
    let mut sim = Sim {
        scenario,
        wants_tick: sched.wants_tick(),
        sched,
        now: 0,
        end,
        seq: 0,
        heap: EventQueue::with_capacity(1024),
        tasks: Vec::new(),
        free: Vec::new(),
        loop_capacity: 0,
        running_in: if scenario.chains.is_empty() {
            Vec::new()
        } else {
            vec![Vec::new(); scenario.cgroups.len()]
        },
        running_at: vec![0; nr_cpus as usize],
        curr: vec![NO_TASK; nr_cpus as usize],
        cpus: vec![
            CpuState {
                last_out: NO_TASK,
                next_switch_voluntary: true,
                ..Default::default()
            };
            nr_cpus as usize
        ],
        idle: IdleCpus::all(&scenario.machine.topology),
        requests: Vec::with_capacity(16),
        here: NO_CPU,
        deferred_resched: Vec::with_capacity(16),
        events: scenario
            .events
            .iter()
            .map(|e| EventState {
                kind: e.kind,
                tokens: e.initial,
                waiters: VecDeque::new(),
            })
            .collect(),
        arrivals: (0..scenario.arrivals.len())
            .map(|i| ArrivalState {
                rng: SimRng::stream(opts.seed, 1 << 40 | i as u64),
                count: 0,
            })
            .collect(),
        records: Vec::new(),
        dynamic_record: vec![u32::MAX; scenario.tasks.len()],
        trace: Vec::new(),
        trace_truncated: false,
        acting: NO_TASK,
        error: None,
        processed: 0,
        next_pid: 1,
        started: 0,
        chains: ChainTracker::new(scenario),
        platform: PlatformHints::new(scenario),
        notifies: 0,
        opts,
        started_at: Instant::now(),
    };
    sim.start()?;
    sim.main_loop()?;
    if sim.opts.check_invariants {
        sim.check_end()?;
    }
    Ok(sim.finish())
}

/// Builds the [`Cx`] a policy hook gets, borrowing the simulator's fields one by one.
macro_rules! cx {
    ($s:expr) => {
        &mut Cx {
            now: $s.now,
            here: $s.here,
            tasks: &$s.tasks,
            curr: &$s.curr,
            machine: &$s.scenario.machine,
            cpusets: &$s.scenario.cpusets,
            idle: &mut $s.idle,
            requests: &mut $s.requests,
        }
    };
}

mod invariants;

impl Sim<'_, '_> {
    fn push(&mut self, time: Time, what: EventWhat) {
        self.seq += 1;
        self.heap.push(Event {
            key: (time as u128) << 64 | self.seq as u128,
            what,
        });
    }

    fn fail(&mut self, message: String) {
        if self.error.is_none() {
            self.error = Some(SimError::Policy {
                policy: self.sched.name().to_string(),
                message,
            });
        }
    }

    fn limit_reached(&self, limit: Limit, bound: u64) -> SimError {
        SimError::Limit {
            limit,
            bound,
            at_ns: self.now,
        }
    }

    /// A rough size of the run's state, for [`RunLimits::max_memory`].
    fn memory_estimate(&self) -> u64 {
        use std::mem::size_of;
        let live = (self.tasks.len() - self.free.len()) as u64;
        (self.tasks.capacity() * size_of::<Task>()
            + self.loop_capacity * size_of::<u64>()
            + self.heap.items.capacity() * size_of::<Event>()
            + self.records.capacity() * size_of::<Record>()
            + self.trace.capacity() * size_of::<Segment>()) as u64
            + live * POLICY_BYTES_PER_TASK
    }

    /// Checks the limits that cost more than a comparison: the memory estimate and the clock.
    fn check_slow_limits(&self) -> Result<(), SimError> {
        let limits = self.opts.limits;
        if limits.max_memory != 0 {
            let bytes = self.memory_estimate();
            if over(bytes, limits.max_memory) {
                return Err(self.limit_reached(Limit::Memory, limits.max_memory));
            }
        }
        if !limits.max_wall.is_zero() && self.started_at.elapsed() > limits.max_wall {
            let ns = limits.max_wall.as_nanos().try_into().unwrap_or(u64::MAX);
            return Err(self.limit_reached(Limit::WallTime, ns));
        }
        Ok(())
    }

    fn start(&mut self) -> Result<(), SimError> {
        // The tasks started at time 0 are counted before their start events are queued: a
        // scenario of a billion tasks fails here, not in the allocation of their events.
        let initial: u64 = self.scenario.tasks.iter().map(|t| t.count as u64).sum();
        if over(initial, self.opts.limits.max_tasks) {
            return Err(self.limit_reached(Limit::Tasks, self.opts.limits.max_tasks));
        }
        self.sched.init(cx!(self));
        self.apply_requests();
        for (spec, t) in self.scenario.tasks.iter().enumerate() {
            for instance in 0..t.count {
                self.push(
                    t.start,
                    EventWhat::Start {
                        spec: spec as u32,
                        instance,
                    },
                );
            }
        }
        for (i, a) in self.scenario.arrivals.iter().enumerate() {
            if a.max_count > 0 && a.start < a.stop {
                self.push(a.start, EventWhat::Arrival { index: i as u32 });
            }
        }
        Ok(())
    }

    fn main_loop(&mut self) -> Result<(), SimError> {
        let progress_every: u64 = 1 << 16;
        let mut iterations: u64 = 0;
        while let Some(event) = self.heap.pop() {
            let time = event.time();
            if time > self.end {
                self.now = self.end;
                // Still pending at the end (the end-of-run invariants look for it).
                self.heap.push(event);
                return Ok(());
            }
            self.now = time;
            let handled = self.handle(event.what);
            if !handled {
                continue;
            }
            self.processed += 1;
            let mut i = 0;
            while i < self.deferred_resched.len() && self.error.is_none() {
                let cpu = self.deferred_resched[i];
                self.here = cpu;
                self.on_resched(cpu);
                self.processed += 1;
                i += 1;
            }
            self.deferred_resched.clear();
            if let Some(error) = self.error.take() {
                return Err(error);
            }
            if self.opts.check_invariants {
                if self.sched.work_conserving() {
                    self.check_work_conserving()?;
                }
                self.check_state()?;
            }
            if over(self.processed, self.opts.limits.max_events) {
                return Err(self.limit_reached(Limit::Events, self.opts.limits.max_events));
            }
            iterations += 1;
            if iterations % SLOW_CHECK_EVERY == 0 {
                self.check_slow_limits()?;
            }
            let report_progress = self.processed % progress_every == 0;
            if let Some(progress) = self.opts.progress.as_mut().filter(|_| report_progress) {
                progress(self.now);
            }
        }
        // Nothing left to happen: the run ends at the last event.
        Ok(())
    }

    /// Handles one event; `false` for a stale timer.
    fn handle(&mut self, what: EventWhat) -> bool {
        match what {
            EventWhat::CpuTimer { cpu, generation } => {
                if self.cpus[cpu as usize].generation != generation {
                    return false;
                }
                self.here = cpu;
                self.on_cpu_timer(cpu);
            }
            EventWhat::Tick { cpu } => {
                self.here = cpu;
                self.on_tick(cpu);
            }
            EventWhat::Resched { cpu } => {
                self.here = cpu;
                self.on_resched(cpu);
            }
            EventWhat::Wake { task } => {
                // The sleep timer fires on the CPU the task slept on.
                self.here = self.tasks[task as usize].last_cpu;
                self.records[self.tasks[task as usize].record as usize].wakeups += 1;
                self.wake(task, F_WAKEUP);
            }
            EventWhat::Start { spec, instance } => {
                self.here = NO_CPU;
                let record = self.new_record(spec, Some(instance));
                let stream = SimRng::child_stream(spec as u64, instance as u64);
                self.spawn(spec, record, stream);
            }
            EventWhat::Arrival { index } => {
                self.here = NO_CPU;
                self.on_arrival(index);
            }
            EventWhat::PolicyTimer { token } => {
                self.here = NO_CPU;
                self.sched.timer(cx!(self), token);
                self.apply_requests();
            }
        }
        true
    }

    fn new_record(&mut self, spec: u32, instance: Option<u32>) -> u32 {
        let s = &self.scenario.tasks[spec as usize];
        let name = match instance {
            Some(_) if s.count == 1 => s.name.clone(),
            Some(i) => format!("{}.{i}", s.name),
            None => format!("{}[*]", s.name),
        };
        self.records.push(Record {
            name,
            spec,
            cgroup: s.cgroup,
            weight: s.weight,
            nice: s.nice,
            dynamic: instance.is_none(),
            ..Default::default()
        });
        (self.records.len() - 1) as u32
    }

    fn dynamic_record(&mut self, spec: u32) -> u32 {
        if self.dynamic_record[spec as usize] == u32::MAX {
            self.dynamic_record[spec as usize] = self.new_record(spec, None);
        }
        self.dynamic_record[spec as usize]
    }

    fn on_arrival(&mut self, index: u32) {
        let spec = &self.scenario.arrivals[index as usize];
        match spec.action {
            ArrivalAction::Spawn(task_spec) => {
                let record = self.dynamic_record(task_spec);
                let n = self.arrivals[index as usize].count;
                let stream = SimRng::child_stream(1 << 32 | index as u64, n);
                self.spawn(task_spec, record, stream);
            }
            ArrivalAction::Signal { event, count } => {
                let request = match self.chains.as_mut() {
                    Some(chains) => chains.arrive(index, self.now),
                    None => NO_REQUEST,
                };
                self.signal(event, count, request);
            }
        }
        let state = &mut self.arrivals[index as usize];
        state.count += 1;
        let gap = match spec.process {
            ArrivalProcess::Periodic { period } => period,
            ArrivalProcess::Poisson { mean_interval } => {
                (state.rng.exponential(mean_interval).round() as Time).max(1)
            }
        };
        let next = self.now.saturating_add(gap);
        if state.count < spec.max_count && next < spec.stop {
            self.push(next, EventWhat::Arrival { index });
        }
    }

    /// Creates a task instance and makes it runnable.
    fn spawn(&mut self, spec: u32, record: u32, stream: u64) {
        let live = (self.tasks.len() - self.free.len()) as u64;
        let max_tasks = self.opts.limits.max_tasks;
        if over(live + 1, max_tasks) {
            if self.error.is_none() {
                self.error = Some(self.limit_reached(Limit::Tasks, max_tasks));
            }
            return;
        }
        let s = &self.scenario.tasks[spec as usize];
        let task = Task {
            spec,
            record,
            pid: self.next_pid,
            state: TaskState::Queued,
            weight: s.weight,
            nice: s.nice,
            cgroup: s.cgroup,
            affinity: s.affinity,
            pc: 0,
            loops: Vec::new(),
            phase: Phase::Next,
            remaining: 0,
            spin_done: false,
            spin_event: 0,
            cpu: NO_CPU,
            last_cpu: NO_CPU,
            runnable_since: self.now,
            queued_on: NO_CPU,
            waker: None,
            spawned_at: self.now,
            run_start: 0,
            sum_runtime: 0,
            last_runtime: 0,
            nr_voluntary: 0,
            nr_involuntary: 0,
            hints: [0; upsched_abi::NR_HINTS as usize],
            timer_next: 0,
            rng: SimRng::stream(self.opts.seed, stream),
            stream,
            forks: 0,
        };
        self.next_pid += 1;
        self.started += 1;
        self.records[record as usize].instances += 1;
        let id = match self.free.pop() {
            Some(id) => {
                // Keep the slot's loop stack allocation for the new task.
                let mut loops = std::mem::take(&mut self.tasks[id as usize].loops);
                loops.clear();
                self.tasks[id as usize] = Task { loops, ..task };
                id
            }
            None => {
                self.tasks.push(task);
                (self.tasks.len() - 1) as TaskId
            }
        };
        if let Some(chains) = self.chains.as_mut() {
            chains.set_task_request(id, NO_REQUEST);
        }
        if let Some(platform) = self.platform.as_mut() {
            platform.spawned(id, spec, s.cgroup);
        }
        self.sched.task_init(cx!(self), id);
        self.apply_requests();
        self.wake(id, F_FORK);
    }

    /// Makes a task runnable: `select_cpu`, then `enqueue`.
    fn wake(&mut self, task: TaskId, flags: u32) {
        let now = self.now;
        let t = &mut self.tasks[task as usize];
        t.state = TaskState::Queued;
        t.runnable_since = now;
        let nr_cpus = self.scenario.machine.nr_cpus();
        let prev = if t.last_cpu != NO_CPU {
            t.last_cpu
        } else if self.here != NO_CPU {
            self.here
        } else {
            0
        };
        let allowed = &self.scenario.cpusets[self.tasks[task as usize].affinity as usize];
        // Linux asks the scheduling class for a CPU only if the task may run on more than one
        // (`select_task_rq`): sched_ext never calls `ops.select_cpu` for a pinned task.
        let only_cpu = match (allowed.iter().next(), allowed.iter().nth(1)) {
            (Some(cpu), None) => Some(cpu),
            _ => None,
        };
        let chosen = match only_cpu {
            Some(cpu) => cpu,
            None => self.sched.select_cpu(cx!(self), task, prev, flags),
        };
        let allowed = &self.scenario.cpusets[self.tasks[task as usize].affinity as usize];
        let cpu = if chosen < nr_cpus && allowed.contains(chosen) {
            chosen
        } else if allowed.contains(prev) {
            prev
        } else {
            allowed.iter().next().unwrap_or(0)
        };
        let waker = (self.acting != NO_TASK).then(|| self.tasks[self.acting as usize].pid);
        let t = &mut self.tasks[task as usize];
        t.queued_on = cpu;
        t.waker = waker;
        self.sched.enqueue(cx!(self), task, cpu, flags);
        self.apply_requests();
    }

    fn apply_requests(&mut self) {
        // Requests are few (usually zero or one); draining by index keeps the buffer.
        let mut i = 0;
        while i < self.requests.len() {
            match self.requests[i].clone() {
                Request::Kick { cpu, preempt } => self.kick(cpu, preempt),
                Request::Timer { at, token } => self.push(at, EventWhat::PolicyTimer { token }),
                Request::Abort(reason) => self.fail(reason),
            }
            i += 1;
        }
        self.requests.clear();
    }

    fn kick(&mut self, cpu: CpuId, preempt: bool) {
        if cpu >= self.scenario.machine.nr_cpus() {
            self.fail(format!("kicked CPU {cpu}, which does not exist"));
            return;
        }
        let busy = self.curr[cpu as usize] != NO_TASK;
        let c = &mut self.cpus[cpu as usize];
        if c.resched != 0 {
            if preempt {
                c.resched = 2;
            }
            return;
        }
        if busy && !preempt {
            return;
        }
        c.resched = if preempt { 2 } else { 1 };
        self.idle.clear(cpu);
        let latency = if self.here == cpu || self.here == NO_CPU {
            0
        } else {
            self.scenario.machine.costs.wakeup_ipi
        };
        if latency == 0 {
            self.deferred_resched.push(cpu);
        } else {
            self.push(self.now + latency, EventWhat::Resched { cpu });
        }
    }

    fn on_resched(&mut self, cpu: CpuId) {
        let kind = std::mem::take(&mut self.cpus[cpu as usize].resched);
        if self.curr[cpu as usize] == NO_TASK {
            self.schedule(cpu);
        } else if kind == 2 {
            self.preempt_curr(cpu, F_PREEMPTED);
        }
    }

    /// Brings the running task's accounting up to now.
    fn account(&mut self, cpu: CpuId) {
        let task = self.curr[cpu as usize];
        let c = &mut self.cpus[cpu as usize];
        let from = c.acct_from.max(c.exec_start);
        if self.now <= from {
            return;
        }
        let ran = self.now - from;
        c.acct_from = self.now;
        c.task_ns += ran;
        let t = &mut self.tasks[task as usize];
        t.sum_runtime += ran;
        let record = &mut self.records[t.record as usize];
        record.cpu_ns += ran;
        if self.chains.as_ref().is_some_and(|c| c.is_idle(t.cgroup)) {
            record.idle_ns += ran;
        }
        match t.phase {
            Phase::Run => t.remaining = t.remaining.saturating_sub(ran),
            Phase::Spin if !t.spin_done => {
                record.spin_ns += ran;
                if t.remaining != Time::MAX {
                    t.remaining = t.remaining.saturating_sub(ran);
                }
            }
            _ => {}
        }
    }

    /// Sets the CPU timer to the running task's next decision point.
    fn arm(&mut self, cpu: CpuId) {
        let t = &self.tasks[self.curr[cpu as usize] as usize];
        let c = &mut self.cpus[cpu as usize];
        let base = c.exec_start.max(self.now);
        let decision = match t.phase {
            Phase::Next => base,
            Phase::Run => base.saturating_add(t.remaining),
            Phase::Spin if t.spin_done => base,
            Phase::Spin => base.saturating_add(t.remaining),
        };
        let at = decision.min(c.slice_end).max(self.now);
        c.generation = c.generation.wrapping_add(1);
        if at != Time::MAX {
            let generation = c.generation;
            self.push(at, EventWhat::CpuTimer { cpu, generation });
        }
    }

    fn arm_tick(&mut self, cpu: CpuId) {
        if !self.wants_tick || self.cpus[cpu as usize].tick_armed {
            return;
        }
        self.cpus[cpu as usize].tick_armed = true;
        let tick = self.scenario.machine.tick;
        self.push((self.now / tick + 1) * tick, EventWhat::Tick { cpu });
    }

    fn on_cpu_timer(&mut self, cpu: CpuId) {
        self.account(cpu);
        let task = self.curr[cpu as usize];
        let t = &self.tasks[task as usize];
        let c = &self.cpus[cpu as usize];
        if self.now < c.exec_start {
            self.arm(cpu);
            return;
        }
        let done = match t.phase {
            Phase::Next => true,
            Phase::Run => t.remaining == 0,
            Phase::Spin => t.spin_done,
        };
        if done {
            self.advance(cpu);
        } else if t.phase == Phase::Spin && t.remaining == 0 {
            self.stop_spinning(cpu);
        } else if self.now >= c.slice_end {
            self.preempt_curr(cpu, 0);
        } else {
            self.arm(cpu);
        }
    }

    fn on_tick(&mut self, cpu: CpuId) {
        self.cpus[cpu as usize].tick_armed = false;
        let task = self.curr[cpu as usize];
        if task == NO_TASK {
            return;
        }
        self.account(cpu);
        let end_slice = self.sched.tick(cx!(self), cpu, task);
        self.apply_requests();
        if end_slice && self.curr[cpu as usize] == task {
            self.preempt_curr(cpu, 0);
        }
        if self.curr[cpu as usize] != NO_TASK {
            self.arm_tick(cpu);
        }
    }

    /// Runs the current task's program from its next operation until one takes time.
    fn advance(&mut self, cpu: CpuId) {
        let scenario = self.scenario;
        let task = self.curr[cpu as usize];
        let mut budget = INSTANT_OP_BUDGET;
        loop {
            budget -= 1;
            if budget == 0 {
                let t = &self.tasks[task as usize];
                self.error = Some(SimError::Scenario(format!(
                    "task {:?} ran {INSTANT_OP_BUDGET} operations at one instant without letting time pass",
                    self.records[t.record as usize].name
                )));
                return;
            }
            let t = &mut self.tasks[task as usize];
            let program = &scenario.tasks[t.spec as usize].program;
            let Some(op) = program.get(t.pc as usize) else {
                self.exit_curr(cpu);
                return;
            };
            t.pc += 1;
            t.phase = Phase::Next;
            match op {
                Op::Run(dist) => {
                    let d = dist.sample(&mut t.rng);
                    if d > 0 {
                        t.phase = Phase::Run;
                        t.remaining = d;
                        self.arm(cpu);
                        return;
                    }
                }
                Op::Sleep(dist) => {
                    let d = dist.sample(&mut t.rng);
                    if d > 0 {
                        self.sleep_curr(cpu, self.now + d);
                        return;
                    }
                }
                Op::Timer(period) => {
                    if t.timer_next == 0 {
                        t.timer_next = self.now;
                    }
                    t.timer_next += period;
                    if t.timer_next > self.now {
                        let until = t.timer_next;
                        self.sleep_curr(cpu, until);
                        return;
                    }
                }
                Op::Block(event) => {
                    let e = &mut self.events[*event as usize];
                    if e.tokens > 0 {
                        e.tokens -= 1;
                        self.take_token(task, *event);
                    } else {
                        e.waiters.push_back((task, false));
                        self.block_curr(cpu, TaskState::Blocked);
                        self.schedule(cpu);
                        return;
                    }
                }
                Op::SpinUntil(event) | Op::SpinThenBlock { event, .. } => {
                    let yield_first = matches!(
                        op,
                        Op::SpinThenBlock {
                            yield_first: true,
                            ..
                        }
                    );
                    let e = &mut self.events[*event as usize];
                    if e.tokens > 0 {
                        e.tokens -= 1;
                        self.take_token(task, *event);
                    } else {
                        e.waiters.push_back((task, true));
                        t.phase = Phase::Spin;
                        t.spin_done = false;
                        t.remaining = match op {
                            Op::SpinThenBlock { spin_max, .. } => spin_max.sample(&mut t.rng),
                            _ => Time::MAX,
                        };
                        t.spin_event = *event;
                        if t.remaining == 0 {
                            self.stop_spinning(cpu);
                        } else if yield_first {
                            self.requeue_curr(cpu, F_YIELD);
                        } else {
                            self.arm(cpu);
                        }
                        return;
                    }
                }
                Op::Signal { event, count } => {
                    let request = match &self.chains {
                        Some(chains) => chains.task_request(task),
                        None => NO_REQUEST,
                    };
                    self.acting = task;
                    self.signal(*event, *count, request);
                    self.acting = NO_TASK;
                    if self.error.is_some() {
                        return;
                    }
                    let notifies = std::mem::take(&mut self.notifies);
                    let cost = Time::from(notifies) * scenario.machine.costs.notify;
                    if cost > 0 {
                        // The notify syscalls take the signalling task's CPU.
                        let t = &mut self.tasks[task as usize];
                        t.phase = Phase::Run;
                        t.remaining = cost;
                        self.arm(cpu);
                        return;
                    }
                }
                Op::Yield => {
                    self.requeue_curr(cpu, F_YIELD);
                    return;
                }
                Op::SetHint { word, value } => {
                    t.hints[*word as usize] = *value;
                    self.sched.hints_changed(cx!(self), task);
                    self.apply_requests();
                }
                Op::LoopBegin { count, end } => {
                    if *count == 0 {
                        t.pc = end + 1;
                    } else {
                        let before = t.loops.capacity();
                        t.loops.push(*count);
                        self.loop_capacity += t.loops.capacity() - before;
                    }
                }
                Op::LoopEnd { begin } => {
                    let again = match t.loops.last_mut() {
                        Some(left) if *left == FOREVER => true,
                        Some(left) => {
                            *left -= 1;
                            *left > 0
                        }
                        None => false,
                    };
                    if again {
                        t.pc = begin + 1;
                    } else {
                        t.loops.pop();
                    }
                }
                Op::Fork(spec) => {
                    t.forks += 1;
                    let stream = SimRng::child_stream(t.stream, t.forks);
                    let record = self.dynamic_record(*spec);
                    self.acting = task;
                    self.spawn(*spec, record, stream);
                    self.acting = NO_TASK;
                }
                Op::Exit => {
                    self.exit_curr(cpu);
                    return;
                }
            }
        }
    }

    /// Signals `event` `count` times on behalf of `request` (`NO_REQUEST` outside chains).
    fn signal(&mut self, event: u32, count: u32, request: u32) {
        if request != NO_REQUEST {
            self.move_request(request, event);
        }
        match self.events[event as usize].kind {
            EventKind::Counter => {
                for i in 0..count {
                    match self.events[event as usize].waiters.pop_front() {
                        Some((task, spinning)) => self.satisfy(task, spinning, event, request),
                        None => {
                            let left = (count - i) as u64;
                            self.events[event as usize].tokens += left;
                            if let Some(chains) = self.chains.as_mut() {
                                chains.keep_tokens(event, request, left);
                            }
                            break;
                        }
                    }
                }
            }
            EventKind::Broadcast => {
                let mut waiters = std::mem::take(&mut self.events[event as usize].waiters);
                for (task, spinning) in waiters.drain(..) {
                    self.satisfy(task, spinning, event, request);
                }
                self.events[event as usize].waiters = waiters;
            }
        }
    }

    /// Moves a chain request to the stage `event` starts, first bringing up to date the CPU
    /// time of the runtimes whose idle state this changes.
    fn move_request(&mut self, request: u32, event: u32) {
        let Some(chains) = &self.chains else {
            return;
        };
        let flips = chains.flips(request, event);
        for cgroup in flips.into_iter().flatten() {
            // Accounting a CPU touches only that CPU and its task: the order is free.
            for i in 0..self.running_in[cgroup as usize].len() {
                self.account(self.running_in[cgroup as usize][i]);
            }
        }
        let [idle, busy] = flips;
        if let Some(chains) = self.chains.as_mut() {
            chains.signalled(request, event, self.now);
        }
        if let Some(cgroup) = idle {
            self.post_platform_hints(cgroup, false);
        }
        if let Some(cgroup) = busy {
            self.post_platform_hints(cgroup, true);
        }
    }

    /// The current task took a kept token of `event`: it now works on the token's request.
    fn take_token(&mut self, task: TaskId, event: u32) {
        if let Some(chains) = self.chains.as_mut() {
            let request = chains.take_token(event);
            chains.set_task_request(task, request);
        }
    }

    /// A spinning task used up its spin budget: it stays a waiter of its event but blocks.
    fn stop_spinning(&mut self, cpu: CpuId) {
        let task = self.curr[cpu as usize];
        let t = &mut self.tasks[task as usize];
        t.phase = Phase::Next;
        let waiters = &mut self.events[t.spin_event as usize].waiters;
        if let Some(entry) = waiters.iter_mut().find(|(w, _)| *w == task) {
            entry.1 = false;
        }
        self.block_curr(cpu, TaskState::Blocked);
        self.schedule(cpu);
    }

    /// Hands a signal on `event` to a waiter, on behalf of `request`.
    fn satisfy(&mut self, task: TaskId, spinning: bool, event: u32, request: u32) {
        if let Some(chains) = self.chains.as_mut() {
            chains.set_task_request(task, request);
        }
        self.post_pending(task, event);
        if spinning {
            let t = &self.tasks[task as usize];
            if t.state == TaskState::Running {
                let cpu = t.cpu;
                self.account(cpu);
                self.tasks[task as usize].spin_done = true;
                self.arm(cpu);
            } else {
                self.tasks[task as usize].spin_done = true;
            }
        } else {
            self.records[self.tasks[task as usize].record as usize].wakeups += 1;
            self.wake(task, F_WAKEUP);
        }
    }

    /// A waiter whose `wait_event` hint names `event` (its id is 1 + the event's index) learns
    /// of its arrival through its `pending` word, as an instrumented runtime's event source
    /// posts it, and the policy is told; this is how a parked poller gets released, and how a
    /// woken worker shows it has work.
    fn post_pending(&mut self, task: TaskId, event: u32) {
        let hints = &mut self.tasks[task as usize].hints;
        if hints[upsched_abi::HINT_WAIT_EVENT as usize] != event_hint_id(event) {
            return;
        }
        let pending = &mut hints[upsched_abi::HINT_PENDING as usize];
        *pending = pending.saturating_add(1);
        self.sched.hints_changed(cx!(self), task);
        self.apply_requests();
        if self.scenario.events[event as usize].notify {
            self.notify(task);
            if self.acting != NO_TASK {
                self.notifies += 1;
            }
        }
    }

    /// The scheduler is notified of a hint change of `task` (the notify program).
    fn notify(&mut self, task: TaskId) {
        self.sched.notify(cx!(self), task);
        self.apply_requests();
    }

    /// The platform's posts for `cgroup`'s runtime threads when the stage turns busy (its
    /// first pending request) or idle (its last one left), each followed by a notify.
    fn post_platform_hints(&mut self, cgroup: u32, busy: bool) {
        let Some(platform) = &self.platform else {
            return;
        };
        let Some((event, specs)) = &platform.stages[cgroup as usize] else {
            return;
        };
        let wait_event = event_hint_id(*event);
        let targets: Vec<TaskId> = platform.tasks[cgroup as usize]
            .iter()
            .copied()
            .filter(|task| {
                let t = &self.tasks[*task as usize];
                t.state != TaskState::Free && specs.contains(&t.spec)
            })
            .collect();
        for task in targets {
            let hints = &mut self.tasks[task as usize].hints;
            if busy {
                hints[upsched_abi::HINT_FLAGS as usize] = 0;
                hints[upsched_abi::HINT_PENDING as usize] = 1;
            } else {
                hints[upsched_abi::HINT_WAIT_EVENT as usize] = wait_event;
                hints[upsched_abi::HINT_PENDING as usize] = 0;
                hints[upsched_abi::HINT_FLAGS as usize] = upsched_abi::HINTF_SLEEPY as u64;
            }
            self.sched.hints_changed(cx!(self), task);
            self.apply_requests();
            self.notify(task);
        }
    }

    /// Ends the running task's stint (accounting, trace) and frees the CPU.
    fn stop_running(&mut self, cpu: CpuId) -> TaskId {
        self.account(cpu);
        let task = self.curr[cpu as usize];
        let now = self.now;
        let c = &mut self.cpus[cpu as usize];
        c.busy_ns += now - c.dispatched_at;
        c.generation = c.generation.wrapping_add(1);
        let t = &mut self.tasks[task as usize];
        t.last_runtime = t.sum_runtime - t.run_start;
        t.cpu = NO_CPU;
        self.curr[cpu as usize] = NO_TASK;
        if let Some(running) = self.running_in.get_mut(t.cgroup as usize) {
            let at = self.running_at[cpu as usize] as usize;
            running.swap_remove(at);
            if let Some(&moved) = running.get(at) {
                self.running_at[moved as usize] = at as u32;
            }
        }
        if self.opts.record_trace {
            if self.trace.len() < self.opts.trace_limit {
                self.trace.push(Segment {
                    cpu,
                    record: t.record,
                    pid: t.pid,
                    dispatched: c.dispatched_at,
                    exec: c.exec_start.min(now),
                    end: now,
                    wait: t.wait(),
                });
            } else {
                self.trace_truncated = true;
            }
        }
        task
    }

    /// The running task sleeps, blocks or exits: a voluntary switch.
    fn block_curr(&mut self, cpu: CpuId, state: TaskState) {
        let task = self.stop_running(cpu);
        let t = &mut self.tasks[task as usize];
        t.state = state;
        if state != TaskState::Exited {
            t.nr_voluntary += 1;
            self.records[t.record as usize].voluntary_switches += 1;
        }
        self.cpus[cpu as usize].next_switch_voluntary = true;
        self.sched.stopping(cx!(self), task, cpu, false);
        self.apply_requests();
    }

    fn sleep_curr(&mut self, cpu: CpuId, until: Time) {
        let task = self.curr[cpu as usize];
        self.block_curr(cpu, TaskState::Sleeping);
        self.push(until, EventWhat::Wake { task });
        self.schedule(cpu);
    }

    fn exit_curr(&mut self, cpu: CpuId) {
        let task = self.curr[cpu as usize];
        self.block_curr(cpu, TaskState::Exited);
        let t = &self.tasks[task as usize];
        let record = &mut self.records[t.record as usize];
        record.exited += 1;
        record.turnaround.record(self.now - t.spawned_at);
        self.sched.task_exit(cx!(self), task);
        self.apply_requests();
        self.tasks[task as usize].state = TaskState::Free;
        self.tasks[task as usize].loops.clear();
        self.free.push(task);
        self.schedule(cpu);
    }

    /// The running task stays runnable but leaves the CPU (slice end, preemption, yield).
    fn requeue_curr(&mut self, cpu: CpuId, flags: u32) {
        let task = self.stop_running(cpu);
        let t = &mut self.tasks[task as usize];
        t.state = TaskState::Queued;
        t.runnable_since = self.now;
        t.queued_on = cpu;
        t.waker = None;
        let c = &mut self.cpus[cpu as usize];
        c.last_out = task;
        c.last_out_voluntary = flags & F_YIELD != 0;
        self.sched.stopping(cx!(self), task, cpu, true);
        self.apply_requests();
        self.sched.enqueue(cx!(self), task, cpu, flags);
        self.apply_requests();
        self.schedule(cpu);
    }

    fn preempt_curr(&mut self, cpu: CpuId, flags: u32) {
        self.requeue_curr(cpu, flags);
    }

    /// `cpu` has no task: ask the policy for one and start it.
    fn schedule(&mut self, cpu: CpuId) {
        if self.error.is_some() {
            return;
        }
        let picked = self.sched.dispatch(cx!(self), cpu);
        self.apply_requests();
        let last_out = std::mem::replace(&mut self.cpus[cpu as usize].last_out, NO_TASK);
        let same = picked.is_some_and(|d| d.task == last_out);
        if last_out != NO_TASK && !same {
            // The task that left runnable really lost the CPU: count its switch now.
            let voluntary = self.cpus[cpu as usize].last_out_voluntary;
            let t = &mut self.tasks[last_out as usize];
            let record = &mut self.records[t.record as usize];
            if voluntary {
                t.nr_voluntary += 1;
                record.voluntary_switches += 1;
            } else {
                t.nr_involuntary += 1;
                record.involuntary_switches += 1;
            }
            self.cpus[cpu as usize].next_switch_voluntary = voluntary;
        }
        let Some(dispatch) = picked else {
            self.cpus[cpu as usize].next_switch_voluntary = true;
            if self.cpus[cpu as usize].resched == 0 {
                self.idle.set(cpu);
            }
            return;
        };
        let task = dispatch.task;
        let Some(t) = self.tasks.get(task as usize) else {
            self.fail(format!("dispatched task {task}, which does not exist"));
            return;
        };
        if t.state != TaskState::Queued {
            self.fail(format!(
                "dispatched task {task} ({:?}) on CPU {cpu}, but it is {:?}",
                self.records[t.record as usize].name, t.state
            ));
            return;
        }
        let allowed = &self.scenario.cpusets[t.affinity as usize];
        if !allowed.contains(cpu) {
            self.fail(format!(
                "dispatched task {task} on CPU {cpu}, outside its CPUs {}",
                allowed.to_list()
            ));
            return;
        }
        let machine = &self.scenario.machine;
        let mut overhead = 0;
        if !same {
            overhead = if self.cpus[cpu as usize].next_switch_voluntary {
                machine.costs.switch_voluntary
            } else {
                machine.costs.switch_involuntary
            };
            let record = &mut self.records[t.record as usize];
            record.wait.record(self.now - t.runnable_since);
            if t.last_cpu != NO_CPU && t.last_cpu != cpu {
                overhead += machine.migration_cost(t.last_cpu, cpu);
                record.migrations += 1;
            }
        }
        let now = self.now;
        let t = &mut self.tasks[task as usize];
        if t.phase == Phase::Next {
            // A task whose next operation is `run` would only draw its duration when the
            // switch completes; drawing it now (from the task's own stream, so the same
            // value) saves a timer event per burst.
            if let Some(Op::Run(dist)) = self.scenario.tasks[t.spec as usize]
                .program
                .get(t.pc as usize)
            {
                let d = dist.sample(&mut t.rng);
                t.pc += 1;
                if d > 0 {
                    t.phase = Phase::Run;
                    t.remaining = d;
                }
            }
        }
        t.state = TaskState::Running;
        t.cpu = cpu;
        t.last_cpu = cpu;
        t.run_start = t.sum_runtime;
        self.curr[cpu as usize] = task;
        if let Some(running) = self.running_in.get_mut(t.cgroup as usize) {
            self.running_at[cpu as usize] = running.len() as u32;
            running.push(cpu);
        }
        self.idle.clear(cpu);
        let c = &mut self.cpus[cpu as usize];
        // A pending kick asked for what this dispatch just did.
        c.resched = 0;
        c.dispatched_at = now;
        c.exec_start = now + overhead;
        c.acct_from = c.exec_start;
        c.slice_end = c.exec_start.saturating_add(dispatch.slice);
        self.sched.running(cx!(self), task, cpu);
        self.apply_requests();
        if self.curr[cpu as usize] == task {
            self.arm(cpu);
            self.arm_tick(cpu);
        }
    }

    /// Fails the run when a CPU idles while a queued task may run on it and no other idle CPU
    /// is already on its way to take that task. A kick to an idle CPU takes the wake-up IPI
    /// latency to arrive; during that window the task is spoken for, so the check allows, per
    /// idle CPU, as many waiting tasks as there are idle CPUs with a kick in flight.
    fn check_work_conserving(&mut self) -> Result<(), SimError> {
        if self.idle.cpus().is_empty() {
            return Ok(());
        }
        let kicks_in_flight = self
            .cpus
            .iter()
            .zip(&self.curr)
            .filter(|(c, curr)| **curr == NO_TASK && c.resched != 0)
            .count();
        for cpu in self.idle.cpus().iter() {
            let mut waiting = self.tasks.iter().enumerate().filter(|(id, t)| {
                t.state == TaskState::Queued
                    && !self.sched.is_parked(*id as TaskId)
                    && self.scenario.cpusets[t.affinity as usize].contains(cpu)
            });
            if let Some((id, t)) = waiting.nth(kicks_in_flight) {
                return Err(SimError::Policy {
                    policy: self.sched.name().to_string(),
                    message: format!(
                        "not work conserving: CPU {cpu} is idle at {} ns while task {id} ({:?}), runnable since {} ns, may run there ({kicks_in_flight} kicks in flight)",
                        self.now, self.records[t.record as usize].name, t.runnable_since
                    ),
                });
            }
        }
        Ok(())
    }

    fn finish(mut self) -> RunOutcome {
        // Close the stints still running at the end.
        let end = self.now;
        for cpu in 0..self.curr.len() as CpuId {
            if self.curr[cpu as usize] != NO_TASK {
                self.account(cpu);
                let c = &mut self.cpus[cpu as usize];
                c.busy_ns += end - c.dispatched_at;
                if self.opts.record_trace && self.trace.len() >= self.opts.trace_limit {
                    self.trace_truncated = true;
                } else if self.opts.record_trace {
                    let t = &self.tasks[self.curr[cpu as usize] as usize];
                    self.trace.push(Segment {
                        cpu,
                        record: t.record,
                        pid: t.pid,
                        dispatched: c.dispatched_at,
                        exec: c.exec_start.min(end),
                        end,
                        wait: t.wait(),
                    });
                }
            }
        }
        // A wait still open at the end counts as ending there, so a task starved for good
        // shows its wait.
        let mut open_waits = Vec::new();
        for t in &self.tasks {
            if t.state == TaskState::Queued {
                self.records[t.record as usize]
                    .wait
                    .record(end - t.runnable_since);
                if self.opts.record_trace && !self.trace_truncated {
                    open_waits.push(OpenWait {
                        record: t.record,
                        pid: t.pid,
                        wait: t.wait(),
                    });
                }
            }
        }
        let alive = self
            .tasks
            .iter()
            .filter(|t| !matches!(t.state, TaskState::Free | TaskState::Exited))
            .count() as u64;
        RunOutcome {
            policy: self.sched.name().to_string(),
            seed: self.opts.seed,
            end,
            events: self.processed,
            records: self.records,
            cpu_busy_ns: self.cpus.iter().map(|c| c.busy_ns).collect(),
            cpu_task_ns: self.cpus.iter().map(|c| c.task_ns).collect(),
            trace: self.trace,
            trace_open_waits: open_waits,
            trace_truncated: self.trace_truncated,
            tasks_started: self.started,
            tasks_alive_at_end: alive,
            chains: self.chains.map(ChainTracker::finish).unwrap_or_default(),
            mechanism: self.sched.mechanism_report(end),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_queue_pops_in_key_order() {
        let mut queue = EventQueue::with_capacity(4);
        let mut rng = SimRng::stream(5, 5);
        let mut keys: Vec<u128> = (0..2000)
            .map(|_| (rng.next_u64() % 500) as u128 * 1_000_000 + rng.next_u64() as u128 % 1000)
            .collect();
        keys.sort();
        keys.dedup();
        let mut shuffled = keys.clone();
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, rng.next_u64() as usize % (i + 1));
        }
        for (n, key) in shuffled.iter().enumerate() {
            queue.push(Event {
                key: *key,
                what: EventWhat::Arrival { index: 0 },
            });
            if n % 3 == 0 {
                // Interleave pops: what comes out is always the smallest key present.
                let popped = queue.pop().unwrap().key;
                assert!(queue.items.iter().all(|e| e.key > popped));
                queue.push(Event {
                    key: popped,
                    what: EventWhat::Arrival { index: 0 },
                });
            }
        }
        let popped: Vec<u128> = std::iter::from_fn(|| queue.pop().map(|e| e.key)).collect();
        assert_eq!(popped, keys);
    }
}
