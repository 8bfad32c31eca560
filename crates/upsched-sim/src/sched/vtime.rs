//! `upsched-default`: the host scheduler's default class alone. One global queue ordered by
//! weighted virtual time, work conserving, no wake-up preemption, as `docs/mechanism.md`
//! specifies it and `crates/upsched-kernel/bpf/host.bpf.c` implements it:
//!
//! - a task's virtual time advances by its CPU time, at most the floor slice per run,
//!   × 1024 / Linux weight (nice 0 = real time; the host's `ran × 100 / p->scx.weight` on
//!   the sched_ext weight scale): fair in turns of one slice;
//! - an arriving task (a wake-up, a new task, a task joining the class) is queued no earlier
//!   than vnow, the largest virtual time dispatched so far: sleeping or joining banks no
//!   credit; no task is queued more than one floor slice × 1024 / weight past vnow, at most
//!   [`upsched_abi::mechanism::LEAD_FLOOR_SLICES`] floor slices;
//! - the lowest virtual time runs first (ties: first queued), for a slice that shrinks with
//!   the queue: `slice × nr_cpus / queued`, not below the floor
//!   ([`upsched_abi::mechanism::DefaultClassShape::slice_at`]).
//!
//! The class itself is [`VtimeClass`], shared with the upsched mechanism
//! ([`super::upsched`]), whose default class it is.

use std::collections::BTreeSet;

use upsched_abi::mechanism::{self, DefaultClassShape};

use super::fifo::{allowed_or_first, kick_an_idle_cpu};
use super::{Cx, Dispatch, F_FORK, F_WAKEUP, Scheduler, TaskId};
use crate::machine::CpuId;
use crate::units::Time;

/// The default class: per-task virtual times and one queue ordered by them.
pub struct VtimeClass {
    slice: Time,
    floor: Time,
    vtime: Vec<u64>,
    /// (vtime, order of enqueue, task).
    queue: BTreeSet<(u64, u64, TaskId)>,
    vnow: u64,
    order: u64,
}

impl VtimeClass {
    /// `slice` at low load, not below `floor` under load (`floor` is capped at `slice`).
    pub fn new(slice: Time, floor: Time) -> Self {
        VtimeClass {
            slice,
            floor: floor.min(slice),
            vtime: Vec::new(),
            queue: BTreeSet::new(),
            vnow: 0,
            order: 0,
        }
    }

    /// The slice of a task of the class while `queued` tasks (itself included) wait for one of
    /// `nr_cpus` CPUs.
    pub fn slice_at(&self, queued: usize, nr_cpus: u32) -> Time {
        DefaultClassShape {
            nr_cpus: u64::from(nr_cpus),
            slice_ns: self.slice,
            slice_floor_ns: self.floor,
            overrun_ns: 0,
            guard_min_permille: 0,
            lower_levels: 0,
        }
        .slice_at(queued as u64)
    }

    /// A new task (or a task that left the class for a tenant) starts at the class's virtual
    /// now, as the host's `ops.enable` places it.
    pub fn reset_task(&mut self, task: TaskId) {
        let i = task as usize;
        if i >= self.vtime.len() {
            self.vtime.resize(i + 1, 0);
        }
        self.vtime[i] = self.vnow;
    }

    /// Queues `task` at its virtual time, placed as `place` does.
    pub fn insert(&mut self, task: TaskId, weight: u32, arriving: bool) {
        let v = self.place(task, weight, arriving);
        self.order += 1;
        self.queue.insert((v, self.order, task));
    }

    /// Raises the virtual time of an `arriving` task (of Linux weight `weight`) to vnow and
    /// caps its lead past vnow (as `insert` does), also for a task that runs without being
    /// queued; returns it.
    pub fn place(&mut self, task: TaskId, weight: u32, arriving: bool) -> u64 {
        let lead = (self.floor * 1024 / u64::from(weight.max(1)))
            .min(mechanism::LEAD_FLOOR_SLICES * self.floor);
        let v = &mut self.vtime[task as usize];
        if arriving {
            *v = (*v).max(self.vnow);
        }
        *v = (*v).min(self.vnow + lead);
        *v
    }

    /// Removes the lowest-vtime queued task that may run on `cpu` and returns it with its
    /// slice at the queue's length (itself included).
    pub fn pop_for(&mut self, cx: &Cx, cpu: CpuId) -> Option<(TaskId, Time)> {
        let entry = *self.queue.iter().find(|(_, _, t)| cx.allowed(*t, cpu))?;
        let slice = self.slice_at(self.queue.len(), cx.nr_cpus());
        self.queue.remove(&entry);
        self.vnow = self.vnow.max(entry.0);
        Some((entry.2, slice))
    }

    /// Advances the task's virtual time by `ran` of CPU time, at most the floor, at Linux
    /// weight `weight`.
    pub fn charge(&mut self, task: TaskId, ran: Time, weight: u32) {
        self.vtime[task as usize] += ran.min(self.floor) * 1024 / weight.max(1) as u64;
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
            class: VtimeClass::new(slice, upsched_abi::mechanism::DEFAULT_SLICE_FLOOR_NS),
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

    fn enqueue(&mut self, cx: &mut Cx, task: TaskId, cpu: CpuId, flags: u32) {
        let arriving = flags & (F_WAKEUP | F_FORK) != 0;
        self.class.insert(task, cx.weight(task), arriving);
        kick_an_idle_cpu(cx, task, cpu);
    }

    fn dispatch(&mut self, cx: &mut Cx, cpu: CpuId) -> Option<Dispatch> {
        let (task, slice) = self.class.pop_for(cx, cpu)?;
        Some(Dispatch { task, slice })
    }

    fn running(&mut self, cx: &mut Cx, task: TaskId, _cpu: CpuId) {
        self.started[task as usize] = cx.now;
    }

    fn stopping(&mut self, cx: &mut Cx, task: TaskId, _cpu: CpuId, _runnable: bool) {
        let ran = cx.now - self.started[task as usize];
        self.class.charge(task, ran, cx.weight(task));
    }
}
