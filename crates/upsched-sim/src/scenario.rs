//! A scenario in compiled form: the machine, the events, the task specs with their phase
//! programs, the arrival processes and the policy parameters. The TOML format
//! ([`crate::toml_scenario`]) and the rt-app importer ([`crate::rtapp`]) both produce it.

use crate::machine::{CpuMask, Machine};
use crate::rng::Dist;
use crate::units::{MS, Time};

pub type EventId = u32;
pub type SpecId = u32;

/// Loop count meaning "forever".
pub const FOREVER: u64 = u64::MAX;

/// One operation of a phase program, flattened (loops are begin/end pairs).
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Consume CPU for the drawn duration.
    Run(Dist),
    /// Sleep for the drawn duration (voluntary switch).
    Sleep(Dist),
    /// Periodic activation: sleep until the task's next period boundary (the first use sets the
    /// origin); when the boundary has already passed, continue at once (rt-app's `timer`).
    Timer(Time),
    /// Wait until the event is signalled (consumes a token if one is pending).
    Block(EventId),
    /// Busy-poll until the event is signalled: the task stays runnable and consumes CPU,
    /// accounted as spin time.
    SpinUntil(EventId),
    /// Adaptive wait: busy-poll the event for at most the drawn CPU time (spin time), then
    /// block until it is signalled (a runtime's spin-then-sleep poll loop). With `yield_first`
    /// the task, once it is the event's waiter, first gives up the CPU (`sched_yield()`, as a
    /// runtime that posted SLEEPY does so that the scheduler may park it), then polls.
    SpinThenBlock {
        event: EventId,
        spin_max: Dist,
        yield_first: bool,
    },
    /// Signal the event `count` times.
    Signal { event: EventId, count: u32 },
    /// Give up the CPU but stay runnable.
    Yield,
    /// Set hint word `word` (0..8, see upsched.h) of the task.
    SetHint { word: u8, value: u64 },
    /// Start of a loop of `count` iterations (`FOREVER`), whose `LoopEnd` is at `end`.
    LoopBegin { count: u64, end: u32 },
    /// End of the loop that begins at `begin`.
    LoopEnd { begin: u32 },
    /// Start a new task of the given spec.
    Fork(SpecId),
    /// End the task (also implied at the end of the program).
    Exit,
}

impl Op {
    /// Whether the operation can let simulated time pass (a forever loop needs one).
    fn consumes_time(&self) -> bool {
        matches!(
            self,
            Op::Run(_)
                | Op::Sleep(_)
                | Op::Timer(_)
                | Op::Block(_)
                | Op::SpinUntil(_)
                | Op::SpinThenBlock { .. }
                | Op::Yield
                | Op::Exit
        )
    }
}

/// A phase program before flattening: operations and nested loops.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    Op(Op),
    Loop { count: u64, body: Vec<Step> },
}

/// Flattens steps into a program. Fails when a loop that runs forever has no operation that
/// lets time pass: such a task would spin the simulator at one instant.
pub fn compile_program(steps: &[Step]) -> Result<Vec<Op>, String> {
    fn emit(steps: &[Step], out: &mut Vec<Op>) -> Result<(), String> {
        for step in steps {
            match step {
                Step::Op(op) => out.push(op.clone()),
                Step::Loop { count, body } => {
                    if *count == FOREVER && !body_consumes_time(body) {
                        return Err("a loop that runs forever needs a run, sleep, timer, block, spin_until, yield or exit".into());
                    }
                    let begin = out.len();
                    out.push(Op::LoopBegin {
                        count: *count,
                        end: 0,
                    });
                    emit(body, out)?;
                    let end = out.len() as u32;
                    out.push(Op::LoopEnd {
                        begin: begin as u32,
                    });
                    out[begin] = Op::LoopBegin { count: *count, end };
                }
            }
        }
        Ok(())
    }
    fn body_consumes_time(steps: &[Step]) -> bool {
        steps.iter().any(|s| match s {
            Step::Op(op) => op.consumes_time(),
            Step::Loop { count, body } => *count > 0 && body_consumes_time(body),
        })
    }
    let mut out = Vec::new();
    emit(steps, &mut out)?;
    if out.len() > u32::MAX as usize / 2 {
        return Err("program too long".into());
    }
    Ok(out)
}

/// How a signal reaches waiters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A counting semaphore: each signal is one token; it wakes the oldest waiter or is kept
    /// until someone blocks or spins on the event.
    Counter,
    /// Each signal wakes every current waiter and is not kept.
    Broadcast,
}

#[derive(Clone, Debug)]
pub struct EventSpec {
    pub name: String,
    pub kind: EventKind,
    /// Tokens pending at the start (counter events only).
    pub initial: u64,
    /// Whoever signals the event, after its source raised a waiter's `pending` word, notifies
    /// the scheduler for that waiter (`Scheduler::notify`, the host's notify program), paying
    /// `Costs::notify` of CPU for each when it is a task.
    pub notify: bool,
}

/// A kind of task: its placement, its weight and its behaviour.
#[derive(Clone, Debug)]
pub struct TaskSpec {
    pub name: String,
    /// Index into `Scenario::cgroups`.
    pub cgroup: u32,
    pub nice: i32,
    /// Load weight on the Linux scale (nice 0 = 1024).
    pub weight: u32,
    /// Index into `Scenario::cpusets`; 0 is "all CPUs".
    pub affinity: u32,
    /// Instances started at `start`; 0 makes the spec a template that only arrivals and fork
    /// start.
    pub count: u32,
    pub start: Time,
    pub program: Vec<Op>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ArrivalProcess {
    /// One arrival every `period`.
    Periodic { period: Time },
    /// Open-loop Poisson arrivals: exponential inter-arrival times with this mean (ns).
    Poisson { mean_interval: f64 },
}

#[derive(Clone, Debug, PartialEq)]
pub enum ArrivalAction {
    Spawn(SpecId),
    Signal { event: EventId, count: u32 },
}

#[derive(Clone, Debug)]
pub struct ArrivalSpec {
    pub name: String,
    pub process: ArrivalProcess,
    pub start: Time,
    /// No arrival at or after this time.
    pub stop: Time,
    /// At most this many arrivals.
    pub max_count: u64,
    pub action: ArrivalAction,
}

/// A chain of functions that requests pass through: each arrival of `source` (a signal
/// arrival) is one request entering at `stages[0]`; a request is at stage k from the moment
/// stage k's event is signalled on its behalf until the next stage's event (or `complete`) is;
/// signalling `complete` ends it. Requests travel with the event tokens and the tasks that take
/// them (see `docs/simulator.md`, "Chains").
#[derive(Clone, Debug, PartialEq)]
pub struct ChainSpec {
    pub name: String,
    /// Index into `Scenario::arrivals`.
    pub source: u32,
    pub stages: Vec<ChainStage>,
    pub complete: EventId,
}

/// One function of a chain: the event its requests arrive on and the runtime (cgroup) that
/// serves them, whose idle ratio the run reports.
#[derive(Clone, Debug, PartialEq)]
pub struct ChainStage {
    pub event: EventId,
    /// Index into `Scenario::cgroups`.
    pub cgroup: u32,
    /// The task specs of the runtime threads the platform posts hints for (empty: it posts
    /// none): when the stage gets its first pending request they get `flags = 0, pending = 1`,
    /// when its last one leaves `wait_event` = this stage's event, `pending = 0`, `flags =
    /// SLEEPY`; each post is followed by a notify (`docs/simulator.md`, "Hints from the
    /// platform").
    pub platform_hints: Vec<SpecId>,
}

/// Parameters of the built-in policies (the `[scheduler.NAME]` tables).
#[derive(Clone, Debug, PartialEq)]
pub struct SchedParams {
    pub eevdf: EevdfParams,
    /// Round-robin slice.
    pub rr_slice: Time,
    /// Slice of the upsched default class.
    pub default_slice: Time,
    /// Park bound of the tenant that `--policy NAME` attaches at the root (`None`: the
    /// loader's default), for scenarios whose runtimes need another one (the FaaS chains).
    pub policy_park_max: Option<Time>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EevdfParams {
    /// Base slice (Linux `sysctl_sched_base_slice`).
    pub base_slice: Time,
    /// Let the current task finish its slice before a waking task may preempt it while it is
    /// still eligible (Linux feature `RUN_TO_PARITY`).
    pub run_to_parity: bool,
    /// End slices exactly at the deadline (Linux `HRTICK`) instead of at the next tick.
    pub hrtick: bool,
    /// Interval of the periodic load balance of a busy CPU.
    pub balance_interval: Time,
}

impl Default for SchedParams {
    fn default() -> Self {
        SchedParams {
            eevdf: EevdfParams {
                base_slice: 3 * MS,
                run_to_parity: true,
                hrtick: false,
                balance_interval: 4 * MS,
            },
            rr_slice: 10 * MS,
            default_slice: 20 * MS,
            policy_park_max: None,
        }
    }
}

/// Most arrivals per second of an arrival process: one per nanosecond, the resolution of the
/// simulator's clock.
pub const MAX_ARRIVAL_RATE: f64 = 1e9;

/// Most instances a task spec may start at once (its `count`, rt-app's `instance`); how many
/// tasks a run may hold is [`crate::engine::RunLimits::max_tasks`].
pub const MAX_TASK_COUNT: u32 = 1_000_000;

/// The rule every scenario format shares: a scenario starts something.
pub fn check_starts_something(tasks: &[TaskSpec], arrivals: &[ArrivalSpec]) -> Result<(), String> {
    if tasks.iter().any(|t| t.count > 0) || !arrivals.is_empty() {
        Ok(())
    } else {
        Err("the scenario starts nothing: add a task with count > 0 or an arrival".into())
    }
}

/// A complete, validated scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    /// Simulated time to run (the run ends earlier when nothing is left to happen).
    pub duration: Time,
    pub seed: u64,
    /// Policies to run when the command line names none.
    pub policies: Vec<String>,
    pub machine: Machine,
    pub events: Vec<EventSpec>,
    pub tasks: Vec<TaskSpec>,
    /// Cgroup paths; tasks refer to them by index.
    pub cgroups: Vec<String>,
    /// Distinct affinity masks; index 0 is all CPUs.
    pub cpusets: Vec<CpuMask>,
    pub arrivals: Vec<ArrivalSpec>,
    pub params: SchedParams,
    /// Request chains whose end-to-end latency and idle ratio the run measures
    /// (see [`crate::chains`]).
    pub chains: Vec<ChainSpec>,
    /// Things an importer ignored or approximated.
    pub warnings: Vec<String>,
    /// Tenants of the upsched mechanism (`[[tenant]]`), used by the `upsched` policy.
    pub tenants: Vec<crate::tenants::TenantSpec>,
}

/// Linux's nice-to-weight table (`sched_prio_to_weight`): each nice step changes the weight by
/// about 1.25x, so one nice level is ~10% CPU between two competing tasks.
pub const NICE_TO_WEIGHT: [u32; 40] = [
    88761, 71755, 56483, 46273, 36291, 29154, 23254, 18705, 14949, 11916, 9548, 7620, 6100, 4904,
    3906, 3121, 2501, 1991, 1586, 1277, 1024, 820, 655, 526, 423, 335, 272, 215, 172, 137, 110, 87,
    70, 56, 45, 36, 29, 23, 18, 15,
];

pub fn nice_to_weight(nice: i32) -> u32 {
    NICE_TO_WEIGHT[(nice.clamp(-20, 19) + 20) as usize]
}

/// The nice value whose weight is closest to `weight` (for display and the policy context).
pub fn weight_to_nice(weight: u32) -> i32 {
    (0..40)
        .min_by_key(|i| (NICE_TO_WEIGHT[*i] as i64 - weight as i64).unsigned_abs())
        .map(|i| i as i32 - 20)
        .unwrap_or(0)
}

/// Parses a CPU list such as `0-3,8,10-11`.
pub fn parse_cpu_list(text: &str, nr_cpus: u32) -> Result<CpuMask, String> {
    let mut mask = CpuMask::empty(nr_cpus);
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let lo: u32 = lo
            .parse()
            .map_err(|_| format!("bad CPU number {lo:?} in {text:?}"))?;
        let hi: u32 = hi
            .parse()
            .map_err(|_| format!("bad CPU number {hi:?} in {text:?}"))?;
        if lo > hi || hi >= nr_cpus {
            return Err(format!("CPU range {part:?} is outside 0-{}", nr_cpus - 1));
        }
        (lo..=hi).for_each(|c| mask.set(c));
    }
    if mask.is_empty() {
        return Err(format!("CPU list {text:?} is empty"));
    }
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loops_flatten_with_matching_indices() {
        let steps = vec![
            Step::Op(Op::Yield),
            Step::Loop {
                count: 3,
                body: vec![Step::Op(Op::Run(Dist::Fixed(1)))],
            },
        ];
        let program = compile_program(&steps).unwrap();
        assert_eq!(program[1], Op::LoopBegin { count: 3, end: 3 });
        assert_eq!(program[3], Op::LoopEnd { begin: 1 });
        let busy = vec![Step::Loop {
            count: FOREVER,
            body: vec![Step::Op(Op::SetHint { word: 0, value: 1 })],
        }];
        assert!(compile_program(&busy).is_err());
    }

    #[test]
    fn nice_weights_follow_linux() {
        assert_eq!(nice_to_weight(0), 1024);
        assert_eq!(nice_to_weight(-20), 88761);
        assert_eq!(nice_to_weight(19), 15);
        assert_eq!(weight_to_nice(1024), 0);
        assert_eq!(weight_to_nice(1000), 0);
        assert_eq!(parse_cpu_list("0-2,5", 8).unwrap().to_list(), "0-2,5");
        assert!(parse_cpu_list("7-9", 8).is_err());
    }
}
