//! A timeline as a scenario of the simulator (its TOML, `docs/simulator.md`), so that a workload
//! recorded on a real machine runs under any policy, and a user can read and edit it.
//!
//! Each task becomes a task spec whose phase program replays what it was seen to do: its bursts
//! of CPU (the runs between two sleeps, preemptions merged), its sleeps, and who woke it. A task
//! woken by another task blocks on an event of its own (`wake.NAME`, a counter) that the waker
//! signals at the point of its burst where the wake-up happened; a task woken by nobody seen (an
//! interrupt, a timer) sleeps for the time it slept. A fork becomes the parent's `fork` of the
//! child's spec (`count = 0`) at the same point; a task that existed when the trace began, or
//! whose parent is not in it, starts on its own at its first appearance.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use crate::timeline::{RunEnd, Task, TaskId, Timeline, WaitCause};

/// One phase of a task's program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    Run(u64),
    Sleep(u64),
    /// Wait for the task's own wake-up event.
    Block,
    /// Signal the wake-up event of a task.
    Signal(TaskId),
    Fork(TaskId),
}

/// A task spec of the scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskSpec {
    pub task: TaskId,
    /// Unique in the scenario: the comm and pid, and a suffix for a reused pid.
    pub name: String,
    /// Started by its parent's fork (`count = 0`) rather than at `start_ns`.
    pub forked: bool,
    /// From the trace's start.
    pub start_ns: u64,
    pub program: Vec<Phase>,
}

#[derive(Clone, Debug)]
pub struct Scenario {
    pub cpus: u32,
    pub duration_ns: u64,
    pub tasks: Vec<TaskSpec>,
    /// Tasks whose wake-up event some task signals.
    pub woken: Vec<TaskId>,
    /// The name of every task of the timeline, by [`TaskId`].
    names: Vec<String>,
}

/// Which tasks the scenario holds.
#[derive(Clone, Copy, Debug, Default)]
pub struct ImportOptions {
    /// Leave out the kernel's own threads (and what only they woke or forked).
    pub skip_kernel_threads: bool,
}

fn running_at(task: &Task, at: u64) -> bool {
    // Runs are in time order and do not overlap.
    let next = task.runs.partition_point(|r| r.start_ns <= at);
    next > 0 && task.runs[next - 1].end_ns >= at
}

/// The scenario of a timeline.
pub fn import(timeline: &Timeline, options: ImportOptions) -> Scenario {
    // A task that never ran has nothing to replay; what woke or forked it does not either.
    let kept = |t: &Task| !(t.runs.is_empty() || options.skip_kernel_threads && t.kernel_thread);
    // What each task does at an instant of one of its runs: (time, phase), by task.
    let mut points: HashMap<TaskId, Vec<(u64, Phase)>> = HashMap::new();
    // Wake-ups that became a block on an event: (wakee, the instant it became runnable).
    let mut blocked: HashSet<(TaskId, u64)> = HashSet::new();
    for task in timeline.tasks.iter().filter(|t| kept(t)) {
        for wait in &task.waits {
            let WaitCause::Wakeup { waker: Some(waker) } = wait.cause else {
                continue;
            };
            let waker_task = &timeline.tasks[waker.0];
            if waker != task.id && kept(waker_task) && running_at(waker_task, wait.runnable_ns) {
                points
                    .entry(waker)
                    .or_default()
                    .push((wait.runnable_ns, Phase::Signal(task.id)));
                blocked.insert((task.id, wait.runnable_ns));
            }
        }
    }
    let mut forked = HashSet::new();
    for task in timeline.tasks.iter().filter(|t| kept(t)) {
        if let (Some(parent), Some(at)) = (task.parent, task.forked_ns) {
            let parent_task = &timeline.tasks[parent.0];
            if kept(parent_task) && running_at(parent_task, at) {
                points
                    .entry(parent)
                    .or_default()
                    .push((at, Phase::Fork(task.id)));
                forked.insert(task.id);
            }
        }
    }
    let names = unique_names(timeline);
    let mut woken: Vec<TaskId> = blocked.iter().map(|(t, _)| *t).collect();
    woken.sort();
    woken.dedup();
    let tasks = timeline
        .tasks
        .iter()
        .filter(|t| kept(t))
        .map(|task| {
            let mut own = points.remove(&task.id).unwrap_or_default();
            // Stable: two points of one instant keep the order they were found in.
            own.sort_by_key(|(at, _)| *at);
            let first_seen = task
                .waits
                .first()
                .map(|w| w.runnable_ns)
                .into_iter()
                .chain(task.runs.first().map(|r| r.start_ns))
                .chain(task.forked_ns)
                .min()
                .unwrap_or(timeline.start_ns);
            // A task a replayed task woke first was asleep from before the trace: it starts
            // blocked at the trace's start.
            let start = match (task.forked_ns, first_wake_blocked(task, &blocked)) {
                (Some(forked), _) => forked,
                (None, true) => timeline.start_ns,
                (None, false) => first_seen,
            }
            .max(timeline.start_ns);
            TaskSpec {
                task: task.id,
                name: names[task.id.0].clone(),
                forked: forked.contains(&task.id),
                start_ns: start - timeline.start_ns,
                program: program(task, start, &own, &blocked),
            }
        })
        .collect();
    Scenario {
        cpus: timeline.cpus,
        duration_ns: timeline.duration_ns().max(1),
        tasks,
        woken,
        names,
    }
}

/// The phases of one task, from its start.
fn program(
    task: &Task,
    start: u64,
    points: &[(u64, Phase)],
    blocked: &HashSet<(TaskId, u64)>,
) -> Vec<Phase> {
    let mut phases = Vec::new();
    let mut burst = 0u64;
    let mut points = points.iter().peekable();
    // When the task last went to sleep: its start, if a replayed task woke it first.
    let mut asleep_since = first_wake_blocked(task, blocked).then_some(start);
    for (index, run) in task.runs.iter().enumerate() {
        if let Some(since) = asleep_since.take() {
            phases.push(wake_phase(task, since, run.start_ns, blocked));
        }
        let mut cursor = run.start_ns;
        while let Some((at, phase)) = points.next_if(|(at, _)| *at <= run.end_ns) {
            burst += at.saturating_sub(cursor);
            cursor = cursor.max(*at);
            if burst > 0 {
                phases.push(Phase::Run(burst));
                burst = 0;
            }
            phases.push(phase.clone());
        }
        burst += run.end_ns - cursor;
        match run.end {
            RunEnd::Slept => {
                if burst > 0 {
                    phases.push(Phase::Run(burst));
                }
                burst = 0;
                // A sleep with nothing after it lasts to the end: the program's end does that.
                if index + 1 < task.runs.len() {
                    asleep_since = Some(run.end_ns);
                }
            }
            RunEnd::Exited | RunEnd::TraceEnded | RunEnd::Preempted => {}
        }
    }
    if burst > 0 {
        phases.push(Phase::Run(burst));
    }
    phases
}

/// Whether the task's first run followed a wake-up by a replayed task.
fn first_wake_blocked(task: &Task, blocked: &HashSet<(TaskId, u64)>) -> bool {
    let first_run = task.runs.first().map(|r| r.start_ns);
    task.waits
        .first()
        .is_some_and(|w| Some(w.ran_ns) == first_run && blocked.contains(&(task.id, w.runnable_ns)))
}

/// How a sleep from `since` that ended with a run at `ran` is replayed: a block on the task's
/// event if a replayed task woke it, else a sleep to the instant it became runnable.
fn wake_phase(task: &Task, since: u64, ran: u64, blocked: &HashSet<(TaskId, u64)>) -> Phase {
    let wake = task
        .waits
        .iter()
        .find(|w| w.ran_ns == ran && w.runnable_ns >= since);
    match wake {
        Some(w) if blocked.contains(&(task.id, w.runnable_ns)) => Phase::Block,
        Some(w) => Phase::Sleep(w.runnable_ns - since),
        // Its wake-up was lost: asleep until it ran.
        None => Phase::Sleep(ran.saturating_sub(since)),
    }
}

/// `comm-pid`, with characters other than letters, digits, `-`, `_` and `.` as `_`, and `.2`,
/// `.3`, ... for later tasks of a reused pid.
fn unique_names(timeline: &Timeline) -> Vec<String> {
    let mut seen: HashMap<String, u32> = HashMap::new();
    timeline
        .tasks
        .iter()
        .map(|task| {
            let comm: String = task
                .comm
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let base = format!("{comm}-{}", task.pid);
            let n = seen.entry(base.clone()).or_default();
            *n += 1;
            if *n == 1 { base } else { format!("{base}.{n}") }
        })
        .collect()
}

impl Scenario {
    /// A task's name in the scenario (every task of the timeline has one, kept or not).
    fn name_of(&self, task: TaskId) -> &str {
        &self.names[task.0]
    }

    /// The scenario as TOML, readable by `upsched sim`.
    pub fn to_toml(&self, source: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Imported by `upsched trace import` from {source}.");
        let _ = writeln!(
            out,
            "# Each task replays its bursts, sleeps and wake-ups (docs/traces.md)."
        );
        let _ = writeln!(out, "name = \"{}\"", escape(&stem(source)));
        let _ = writeln!(out, "duration = \"{}ns\"", self.duration_ns);
        let _ = writeln!(out, "\n[machine]\ncpus = {}", self.cpus.max(1));
        for task in &self.woken {
            let _ = writeln!(
                out,
                "\n[[event]]\nname = \"wake.{}\"",
                escape(self.name_of(*task))
            );
        }
        for spec in &self.tasks {
            let _ = writeln!(out, "\n[[task]]\nname = \"{}\"", escape(&spec.name));
            if spec.forked {
                let _ = writeln!(out, "count = 0");
            } else {
                let _ = writeln!(out, "start = \"{}ns\"", spec.start_ns);
            }
            let _ = writeln!(out, "program = [");
            for phase in &spec.program {
                let line = match phase {
                    Phase::Run(ns) => format!("{{ run = \"{ns}ns\" }}"),
                    Phase::Sleep(ns) => format!("{{ sleep = \"{ns}ns\" }}"),
                    Phase::Block => format!("{{ block = \"wake.{}\" }}", escape(&spec.name)),
                    Phase::Signal(t) => {
                        format!("{{ signal = \"wake.{}\" }}", escape(self.name_of(*t)))
                    }
                    Phase::Fork(t) => format!("{{ fork = \"{}\" }}", escape(self.name_of(*t))),
                };
                let _ = writeln!(out, "  {line},");
            }
            let _ = writeln!(out, "]");
        }
        out
    }
}

/// The file name without directories and extension.
fn stem(source: &str) -> String {
    let file = source.rsplit('/').next().unwrap_or(source);
    file.split('.').next().unwrap_or(file).to_string()
}

/// A TOML basic string's content.
fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}
