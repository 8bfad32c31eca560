//! `upsched-default`: the host scheduler's default class alone. One global queue ordered by
//! weighted virtual time, work conserving, no wake-up preemption, as `docs/mechanism.md`
//! specifies it and `crates/upsched-kernel/bpf/host.bpf.c` implements it:
//!
//! - a task's virtual time advances by its CPU time × 1024 / Linux weight (nice 0 = real
//!   time; the host's `ran × 100 / p->scx.weight` on the sched_ext weight scale);
//! - a waking task restarts at most one slice behind the class's virtual now (the largest
//!   virtual time dispatched so far), so sleeping banks at most one slice of credit;
//! - the lowest virtual time runs first (ties: first queued), for a fixed slice.

use std::collections::BTreeSet;

use super::fifo::{allowed_or_first, kick_an_idle_cpu};
use super::{Cx, Dispatch, Scheduler, TaskId};
use crate::machine::CpuId;
use crate::units::Time;

pub struct VtimeFair {
    slice: Time,
    vtime: Vec<u64>,
    started: Vec<Time>,
    /// (vtime, order of enqueue, task).
    queue: BTreeSet<(u64, u64, TaskId)>,
    vnow: u64,
    order: u64,
}

impl VtimeFair {
    pub fn new(slice: Time) -> Self {
        VtimeFair {
            slice,
            vtime: Vec::new(),
            started: Vec::new(),
            queue: BTreeSet::new(),
            vnow: 0,
            order: 0,
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
        if i >= self.vtime.len() {
            self.vtime.resize(i + 1, 0);
            self.started.resize(i + 1, 0);
        }
        // Like the host: a new task starts at 0 and is lifted to the floor on enqueue.
        self.vtime[i] = 0;
    }

    fn select_cpu(&mut self, cx: &mut Cx, task: TaskId, prev_cpu: CpuId, _flags: u32) -> CpuId {
        cx.find_idle_cpu(task, prev_cpu)
            .unwrap_or_else(|| allowed_or_first(cx, task, prev_cpu))
    }

    fn enqueue(&mut self, cx: &mut Cx, task: TaskId, cpu: CpuId, _flags: u32) {
        let floor = self.vnow.saturating_sub(self.slice);
        let v = &mut self.vtime[task as usize];
        if *v < floor {
            *v = floor;
        }
        self.order += 1;
        self.queue.insert((*v, self.order, task));
        kick_an_idle_cpu(cx, task, cpu);
    }

    fn dispatch(&mut self, cx: &mut Cx, cpu: CpuId) -> Option<Dispatch> {
        let entry = *self.queue.iter().find(|(_, _, t)| cx.allowed(*t, cpu))?;
        self.queue.remove(&entry);
        self.vnow = self.vnow.max(entry.0);
        Some(Dispatch {
            task: entry.2,
            slice: self.slice,
        })
    }

    fn running(&mut self, cx: &mut Cx, task: TaskId, _cpu: CpuId) {
        self.started[task as usize] = cx.now;
    }

    fn stopping(&mut self, cx: &mut Cx, task: TaskId, _cpu: CpuId, _runnable: bool) {
        let ran = cx.now - self.started[task as usize];
        self.vtime[task as usize] += ran * 1024 / cx.weight(task).max(1) as u64;
    }
}
