//! Events into task lifetimes: when each task ran, on which CPU, how long it waited to run after
//! becoming runnable, who woke it, whom it forked.
//!
//! A task is one fork-to-exit lifetime, not a pid: a pid seen again after its task died (or
//! forked again while its task lives, the old one's end lost) is a new task. What a real trace
//! lacks or garbles is repaired and counted in [`Repairs`], as `perf sched` counts lost and
//! out-of-order events.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::parse::{Event, EventKind, Format, Parsed, TaskState};

/// A task's index in [`Timeline::tasks`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct TaskId(pub usize);

/// One stint on a CPU, `[start_ns, end_ns)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Run {
    pub cpu: u32,
    pub start_ns: u64,
    pub end_ns: u64,
    pub end: RunEnd,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunEnd {
    /// Switched out asleep: the end of a burst.
    Slept,
    /// Switched out still runnable (or its switch-out was lost).
    Preempted,
    /// Its last run.
    Exited,
    /// Still running when the trace ended.
    TraceEnded,
}

/// Why a task became runnable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WaitCause {
    /// Woken from a sleep; `waker` is the task in whose context the wake-up happened (None for
    /// the idle task, i.e. an interrupt on an idle CPU).
    Wakeup { waker: Option<TaskId> },
    /// Created: its first run after its fork.
    Fork,
    /// Switched out while still runnable.
    Preempted,
}

/// From becoming runnable to running: what `perf sched latency` calls a delay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Wait {
    pub runnable_ns: u64,
    pub ran_ns: u64,
    pub cause: WaitCause,
}

impl Wait {
    pub fn duration_ns(&self) -> u64 {
        self.ran_ns - self.runnable_ns
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Task {
    pub id: TaskId,
    pub pid: u32,
    /// Its last name (an exec renames it).
    pub comm: String,
    pub parent: Option<TaskId>,
    /// When its fork was seen; None for a task that existed when the trace began.
    pub forked_ns: Option<u64>,
    /// When it ended (switched out dead, or its pid was reused); None if alive at the end.
    pub ended_ns: Option<u64>,
    /// Named like a kernel thread, or forked by kthreadd.
    pub kernel_thread: bool,
    pub runs: Vec<Run>,
    /// Completed waits (a wait still open at the end of the trace is not one).
    pub waits: Vec<Wait>,
    pub migrations: u64,
    /// Times it was switched out in a sleeping state: the ends of its run bursts.
    pub sleeps: u64,
}

impl Task {
    pub fn cpu_ns(&self) -> u64 {
        self.runs.iter().map(|r| r.end_ns - r.start_ns).sum()
    }

    /// Times it was switched in.
    pub fn switches(&self) -> u64 {
        self.runs.len() as u64
    }
}

/// Everything repaired while building the timeline, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Repairs {
    /// Events whose timestamp is earlier than one on an earlier line (trace-cmd merges the
    /// CPUs' buffers; a lost buffer page shows as this too): sorted by time.
    pub out_of_order: u64,
    /// A task switched in from a sleep with no wake-up in between: the wake-up was lost, the
    /// wait is unknown and not counted.
    pub missing_wakeups: u64,
    /// A task moved CPU with no migration event: counted as a migration.
    pub missing_migrations: u64,
    /// Tasks that were running when the trace began (their first event is their switch-out):
    /// their first run counts from the trace's start.
    pub running_at_start: u64,
    /// Tasks that were runnable when the trace began (first seen switching in): no wait counted.
    pub runnable_at_start: u64,
    /// A pid forked again while its task lived (its exit was lost): the old task ended there.
    pub pid_reuse: u64,
    /// A switch whose previous task is not the one last switched in on that CPU, or that
    /// switches in a task running elsewhere: events were lost there.
    pub inconsistent_switches: u64,
    /// The last line was cut short: left out.
    pub truncated_lines: u64,
    /// Events of other kinds, by name: read past.
    pub other_events: BTreeMap<String, u64>,
}

impl Repairs {
    /// Every repair, as (name, count), for reports.
    pub fn counts(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("out_of_order", self.out_of_order),
            ("missing_wakeups", self.missing_wakeups),
            ("missing_migrations", self.missing_migrations),
            ("running_at_start", self.running_at_start),
            ("runnable_at_start", self.runnable_at_start),
            ("pid_reuse", self.pid_reuse),
            ("inconsistent_switches", self.inconsistent_switches),
            ("truncated_lines", self.truncated_lines),
        ]
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Timeline {
    pub format: Format,
    /// The trace's CPU count: its header's, or one more than the highest CPU it names.
    pub cpus: u32,
    pub start_ns: u64,
    pub end_ns: u64,
    /// In order of first appearance. The idle task (pid 0) is none of them.
    pub tasks: Vec<Task>,
    pub repairs: Repairs,
}

impl Timeline {
    pub fn duration_ns(&self) -> u64 {
        self.end_ns - self.start_ns
    }
}

/// Where a live task stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    /// Not seen running, waking or sleeping yet.
    Unknown,
    /// Forked, not yet woken.
    New,
    Running {
        cpu: u32,
        since: u64,
    },
    Runnable {
        since: u64,
        cause: WaitCause,
    },
    Sleeping,
    /// Ended.
    Gone,
}

struct Builder {
    tasks: Vec<Task>,
    standing: Vec<Standing>,
    /// The CPU of each task's last run, and whether a migration event moved it since.
    last_cpu: Vec<Option<u32>>,
    migrated: Vec<bool>,
    /// Exited while running: its next switch-out ends it.
    exiting: Vec<bool>,
    live: HashMap<u32, TaskId>,
    on_cpu: Vec<Option<TaskId>>,
    repairs: Repairs,
    start_ns: u64,
}

/// The pid of kthreadd, every kernel thread's parent.
const KTHREADD_PID: u32 = 2;

/// Name prefixes of the kernel's own threads (a trace carries no flag for them).
const KERNEL_THREAD_PREFIXES: [&str; 14] = [
    "kworker/",
    "ksoftirqd/",
    "migration/",
    "rcu_",
    "cpuhp/",
    "kthreadd",
    "irq/",
    "watchdog/",
    "kswapd",
    "kcompactd",
    "khugepaged",
    "jbd2/",
    "idle_inject/",
    "kauditd",
];

fn is_kernel_thread_name(comm: &str) -> bool {
    KERNEL_THREAD_PREFIXES.iter().any(|p| comm.starts_with(p))
}

impl Builder {
    fn task(&mut self, pid: u32, comm: &str) -> Option<TaskId> {
        if pid == 0 {
            return None;
        }
        if let Some(&id) = self.live.get(&pid) {
            if !comm.is_empty() {
                self.tasks[id.0].comm = comm.to_string();
            }
            return Some(id);
        }
        Some(self.create(pid, comm, None, None))
    }

    fn create(
        &mut self,
        pid: u32,
        comm: &str,
        parent: Option<TaskId>,
        forked_ns: Option<u64>,
    ) -> TaskId {
        let id = TaskId(self.tasks.len());
        let parent_is_kthreadd = parent.is_some_and(|p| self.tasks[p.0].pid == KTHREADD_PID);
        self.tasks.push(Task {
            id,
            pid,
            comm: comm.to_string(),
            parent,
            forked_ns,
            ended_ns: None,
            kernel_thread: parent_is_kthreadd || is_kernel_thread_name(comm),
            runs: Vec::new(),
            waits: Vec::new(),
            migrations: 0,
            sleeps: 0,
        });
        self.standing.push(if forked_ns.is_some() {
            Standing::New
        } else {
            Standing::Unknown
        });
        self.last_cpu.push(None);
        self.migrated.push(false);
        self.exiting.push(false);
        self.live.insert(pid, id);
        id
    }

    fn end(&mut self, id: TaskId, at: u64) {
        self.tasks[id.0].ended_ns = Some(at);
        if self.live.get(&self.tasks[id.0].pid) == Some(&id) {
            self.live.remove(&self.tasks[id.0].pid);
        }
        for slot in self.on_cpu.iter_mut().filter(|s| **s == Some(id)) {
            *slot = None;
        }
    }

    fn close_run(&mut self, id: TaskId, cpu: u32, since: u64, at: u64, end: RunEnd) {
        self.tasks[id.0].runs.push(Run {
            cpu,
            start_ns: since,
            end_ns: at,
            end,
        });
    }

    fn event(&mut self, event: &Event) {
        let at = event.ts_ns;
        match &event.kind {
            EventKind::Switch {
                prev_comm,
                prev_pid,
                prev_state,
                next_comm,
                next_pid,
            } => {
                let cpu = event.cpu as usize;
                let prev = self.task(*prev_pid, prev_comm);
                if self.on_cpu[cpu] != prev && self.on_cpu[cpu].is_some() {
                    self.repairs.inconsistent_switches += 1;
                }
                if let Some(prev) = prev {
                    self.switch_out(prev, event.cpu, *prev_state, at);
                }
                self.on_cpu[cpu] = None;
                if let Some(next) = self.task(*next_pid, next_comm) {
                    self.switch_in(next, event.cpu, at);
                    self.on_cpu[cpu] = Some(next);
                }
            }
            EventKind::Wakeup { comm, pid, new } => {
                let waker = self.live.get(&event.pid).copied();
                let Some(id) = self.task(*pid, comm) else {
                    return;
                };
                let cause = match self.standing[id.0] {
                    Standing::New if *new => WaitCause::Fork,
                    Standing::New | Standing::Unknown | Standing::Sleeping => {
                        WaitCause::Wakeup { waker }
                    }
                    // Already runnable (sched_waking then sched_wakeup) or running.
                    _ => return,
                };
                self.standing[id.0] = Standing::Runnable { since: at, cause };
            }
            EventKind::Migrate {
                pid,
                orig_cpu,
                dest_cpu,
            } => {
                if let Some(id) = self.task(*pid, "")
                    && orig_cpu != dest_cpu
                {
                    self.tasks[id.0].migrations += 1;
                    self.migrated[id.0] = true;
                }
            }
            EventKind::Fork {
                parent_pid,
                child_comm,
                child_pid,
            } => {
                let parent = self.task(*parent_pid, "");
                if let Some(&old) = self.live.get(child_pid) {
                    self.repairs.pid_reuse += 1;
                    self.end(old, at);
                }
                if *child_pid != 0 {
                    self.create(*child_pid, child_comm, parent, Some(at));
                }
            }
            EventKind::Exec { pid, filename } => {
                let name = filename.rsplit('/').next().unwrap_or(filename);
                self.task(*pid, name);
            }
            EventKind::Exit { pid } => {
                if let Some(id) = self.task(*pid, "") {
                    // A running task runs on to its last switch-out, which ends it.
                    if matches!(self.standing[id.0], Standing::Running { .. }) {
                        self.exiting[id.0] = true;
                    } else {
                        self.standing[id.0] = Standing::Gone;
                        self.end(id, at);
                    }
                }
            }
        }
    }

    fn switch_out(&mut self, id: TaskId, cpu: u32, state: TaskState, at: u64) {
        let end = if state == TaskState::Dead || self.exiting[id.0] {
            RunEnd::Exited
        } else if state == TaskState::Runnable {
            RunEnd::Preempted
        } else {
            RunEnd::Slept
        };
        match self.standing[id.0] {
            Standing::Running { cpu: ran_on, since } => self.close_run(id, ran_on, since, at, end),
            Standing::Unknown => {
                self.repairs.running_at_start += 1;
                self.close_run(id, cpu, self.start_ns, at, end);
                self.last_cpu[id.0] = Some(cpu);
            }
            _ => self.repairs.inconsistent_switches += 1,
        }
        if end == RunEnd::Exited {
            self.standing[id.0] = Standing::Gone;
            self.end(id, at);
            return;
        }
        self.standing[id.0] = match state {
            TaskState::Runnable => Standing::Runnable {
                since: at,
                cause: WaitCause::Preempted,
            },
            _ => {
                self.tasks[id.0].sleeps += 1;
                Standing::Sleeping
            }
        };
    }

    fn switch_in(&mut self, id: TaskId, cpu: u32, at: u64) {
        match self.standing[id.0] {
            Standing::Runnable { since, cause } => self.tasks[id.0].waits.push(Wait {
                runnable_ns: since,
                ran_ns: at,
                cause,
            }),
            Standing::Unknown => self.repairs.runnable_at_start += 1,
            Standing::New | Standing::Sleeping => self.repairs.missing_wakeups += 1,
            Standing::Running { cpu: other, since } => {
                self.repairs.inconsistent_switches += 1;
                self.close_run(id, other, since, at, RunEnd::Preempted);
                self.on_cpu[other as usize] = None;
            }
            Standing::Gone => {}
        }
        if let Some(last) = self.last_cpu[id.0]
            && last != cpu
            && !self.migrated[id.0]
        {
            self.repairs.missing_migrations += 1;
            self.tasks[id.0].migrations += 1;
        }
        self.migrated[id.0] = false;
        self.last_cpu[id.0] = Some(cpu);
        self.standing[id.0] = Standing::Running { cpu, since: at };
    }
}

/// Builds the timeline of a parsed trace.
pub fn build(parsed: &Parsed) -> Timeline {
    let mut events: Vec<&Event> = parsed.events.iter().collect();
    let mut out_of_order = 0;
    let mut latest = 0;
    for event in &events {
        if event.ts_ns < latest {
            out_of_order += 1;
        }
        latest = latest.max(event.ts_ns);
    }
    // Stable: events of one instant keep their lines' order.
    events.sort_by_key(|e| e.ts_ns);
    let highest_cpu = events.iter().map(|e| e.cpu).max().unwrap_or(0);
    let cpus = parsed.cpus.unwrap_or(0).max(highest_cpu + 1);
    let start_ns = events.first().map_or(0, |e| e.ts_ns);
    let end_ns = events.last().map_or(0, |e| e.ts_ns);
    let mut builder = Builder {
        tasks: Vec::new(),
        standing: Vec::new(),
        last_cpu: Vec::new(),
        migrated: Vec::new(),
        exiting: Vec::new(),
        live: HashMap::new(),
        on_cpu: vec![None; cpus as usize],
        repairs: Repairs {
            out_of_order,
            truncated_lines: u64::from(parsed.truncated_last_line),
            other_events: parsed.other_events.clone(),
            ..Repairs::default()
        },
        start_ns,
    };
    for event in events {
        builder.event(event);
    }
    // Runs still open end with the trace.
    for index in 0..builder.tasks.len() {
        if let Standing::Running { cpu, since } = builder.standing[index] {
            builder.close_run(TaskId(index), cpu, since, end_ns, RunEnd::TraceEnded);
        }
    }
    Timeline {
        format: parsed.format,
        cpus,
        start_ns,
        end_ns,
        tasks: builder.tasks,
        repairs: builder.repairs,
    }
}
