//! `fifo` and `rr`: one global queue in arrival order, work conserving.
//!
//! `fifo` runs each task until it blocks, sleeps, yields or exits; `rr` ends a slice after a
//! fixed time and puts the task at the back of the queue.

use std::collections::VecDeque;

use super::{Cx, Dispatch, Scheduler, TaskId};
use crate::machine::CpuId;
use crate::units::Time;

pub struct GlobalQueue {
    name: &'static str,
    slice: Time,
    queue: VecDeque<TaskId>,
}

impl GlobalQueue {
    pub fn fifo() -> Self {
        GlobalQueue {
            name: "fifo",
            slice: Time::MAX,
            queue: VecDeque::new(),
        }
    }

    pub fn round_robin(slice: Time) -> Self {
        GlobalQueue {
            name: "rr",
            slice,
            queue: VecDeque::new(),
        }
    }
}

/// Fallback CPU when no allowed CPU is idle: the previous one if allowed, else the first
/// allowed.
pub(crate) fn allowed_or_first(cx: &Cx, task: TaskId, prev: CpuId) -> CpuId {
    if prev < cx.nr_cpus() && cx.allowed(task, prev) {
        prev
    } else {
        cx.affinity(task).iter().next().unwrap_or(0)
    }
}

/// Kicks `cpu` if it is idle and may run the task, else any idle CPU that may: the queue is
/// global, so whichever CPU looks first takes the task.
pub(crate) fn kick_an_idle_cpu(cx: &mut Cx, task: TaskId, cpu: CpuId) {
    if cx.is_idle(cpu) && cx.allowed(task, cpu) {
        cx.kick(cpu);
    } else if let Some(idle) = cx.find_idle_cpu(task, cpu) {
        cx.kick(idle);
    }
}

impl Scheduler for GlobalQueue {
    fn name(&self) -> &str {
        self.name
    }

    fn work_conserving(&self) -> bool {
        true
    }

    fn wants_tick(&self) -> bool {
        false
    }

    fn check_consistency(&self, cx: &Cx) -> Result<(), String> {
        let queued = |task: usize| cx.tasks[task].state == crate::engine::TaskState::Queued;
        let held = |task: usize| self.queue.iter().filter(|t| **t as usize == task).count();
        match (0..cx.tasks.len()).find(|t| held(*t) != usize::from(queued(*t))) {
            Some(task) => Err(format!(
                "task {task} is {:?} and {} times in the queue",
                cx.tasks[task].state,
                held(task)
            )),
            None => Ok(()),
        }
    }

    fn select_cpu(&mut self, cx: &mut Cx, task: TaskId, prev_cpu: CpuId, _flags: u32) -> CpuId {
        cx.find_idle_cpu(task, prev_cpu)
            .unwrap_or_else(|| allowed_or_first(cx, task, prev_cpu))
    }

    fn enqueue(&mut self, cx: &mut Cx, task: TaskId, cpu: CpuId, _flags: u32) {
        self.queue.push_back(task);
        kick_an_idle_cpu(cx, task, cpu);
    }

    fn dispatch(&mut self, cx: &mut Cx, cpu: CpuId) -> Option<Dispatch> {
        let index = self.queue.iter().position(|t| cx.allowed(*t, cpu))?;
        let task = self.queue.remove(index)?;
        Some(Dispatch {
            task,
            slice: self.slice,
        })
    }
}
