//! `upsched-default`: the host scheduler's default class alone. One global queue ordered by
//! weighted virtual time, work conserving, no wake-up preemption, as `docs/mechanism.md`
//! specifies it and `crates/upsched-kernel/bpf/host.bpf.c` implements it:
//!
//! - a task's virtual time advances by its CPU time × 1024 / Linux weight (nice 0 = real
//!   time; the host's `ran × 100 / p->scx.weight` on the sched_ext weight scale);
//! - a waking task restarts at most one slice behind the class's virtual now (the largest
//!   virtual time dispatched so far), so sleeping banks at most one slice of credit;
//! - the lowest virtual time runs first (ties: first queued), for a fixed slice.
//!
//! The class itself is [`VtimeClass`], shared with the upsched mechanism
//! ([`super::upsched`]), whose default class it is.

use std::collections::BTreeSet;

use super::fifo::{allowed_or_first, kick_an_idle_cpu};
use super::{Cx, Dispatch, Scheduler, TaskId};
use crate::machine::CpuId;
use crate::units::Time;

/// The default class: per-task virtual times and one queue ordered by them.
pub struct VtimeClass {
    slice: Time,
    vtime: Vec<u64>,
    /// (vtime, order of enqueue, task).
    queue: BTreeSet<(u64, u64, TaskId)>,
    vnow: u64,
    order: u64,
}

impl VtimeClass {
    pub fn new(slice: Time) -> Self {
        VtimeClass {
            slice,
            vtime: Vec::new(),
            queue: BTreeSet::new(),
            vnow: 0,
            order: 0,
        }
    }

    pub fn slice(&self) -> Time {
        self.slice
    }

    /// A new task (or a task joining the class afresh) starts at 0 and is lifted to the floor
    /// when it is queued, like the host's.
    pub fn reset_task(&mut self, task: TaskId) {
        let i = task as usize;
        if i >= self.vtime.len() {
            self.vtime.resize(i + 1, 0);
        }
        self.vtime[i] = 0;
    }

    /// Queues `task` at its virtual time, raised to at most one slice behind the class's
    /// virtual now.
    pub fn insert(&mut self, task: TaskId) {
        let v = self.lift(task);
        self.order += 1;
        self.queue.insert((v, self.order, task));
    }

    /// Raises the task's virtual time to at most one slice behind the class's virtual now
    /// (as `insert` does), for a task that runs without being queued; returns it.
    pub fn lift(&mut self, task: TaskId) -> u64 {
        let floor = self.vnow.saturating_sub(self.slice);
        let v = &mut self.vtime[task as usize];
        if *v < floor {
            *v = floor;
        }
        *v
    }

    /// Removes and returns the lowest-vtime queued task that may run on `cpu`.
    pub fn pop_for(&mut self, cx: &Cx, cpu: CpuId) -> Option<TaskId> {
        let entry = *self.queue.iter().find(|(_, _, t)| cx.allowed(*t, cpu))?;
        self.queue.remove(&entry);
        self.vnow = self.vnow.max(entry.0);
        Some(entry.2)
    }

    /// Advances the task's virtual time by `ran` of CPU time at Linux weight `weight`.
    pub fn charge(&mut self, task: TaskId, ran: Time, weight: u32) {
        self.vtime[task as usize] += ran * 1024 / weight.max(1) as u64;
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Queued tasks in dispatch order.
    pub fn queued(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.queue.iter().map(|(_, _, t)| *t)
    }
}

pub struct VtimeFair {
    class: VtimeClass,
    started: Vec<Time>,
}

impl VtimeFair {
    pub fn new(slice: Time) -> Self {
        VtimeFair {
            class: VtimeClass::new(slice),
            started: Vec::new(),
        }
    }
}

impl Scheduler for VtimeFair {
    fn name(&self) -> &str {
        "upsched-default"
    }

    fn work_conserving(&self) -> bool {
        true
    }

    fn wants_tick(&self) -> bool {
        false
    }

    fn task_init(&mut self, _cx: &mut Cx, task: TaskId) {
        let i = task as usize;
        if i >= self.started.len() {
            self.started.resize(i + 1, 0);
        }
        self.class.reset_task(task);
    }

    fn select_cpu(&mut self, cx: &mut Cx, task: TaskId, prev_cpu: CpuId, _flags: u32) -> CpuId {
        cx.find_idle_cpu(task, prev_cpu)
            .unwrap_or_else(|| allowed_or_first(cx, task, prev_cpu))
    }

    fn enqueue(&mut self, cx: &mut Cx, task: TaskId, cpu: CpuId, _flags: u32) {
        self.class.insert(task);
        kick_an_idle_cpu(cx, task, cpu);
    }

    fn dispatch(&mut self, cx: &mut Cx, cpu: CpuId) -> Option<Dispatch> {
        let task = self.class.pop_for(cx, cpu)?;
        Some(Dispatch {
            task,
            slice: self.class.slice(),
        })
    }

    fn running(&mut self, cx: &mut Cx, task: TaskId, _cpu: CpuId) {
        self.started[task as usize] = cx.now;
    }

    fn stopping(&mut self, cx: &mut Cx, task: TaskId, _cpu: CpuId, _runnable: bool) {
        let ran = cx.now - self.started[task as usize];
        self.class.charge(task, ran, cx.weight(task));
    }
}
