//! The invariants a run is checked against when [`RunOptions::check_invariants`] is on, after
//! every event and once more at the end (`docs/simulator.md`, "Validation"):
//!
//! - **work conservation** (`check_work_conserving` in the core, for policies that promise it;
//!   tasks a policy parked on purpose do not count);
//! - **no task lost**: every task is in exactly one place the core knows — running on the one
//!   CPU that runs it, queued (the policy's [`Scheduler::check_consistency`] says in which of
//!   its queues), sleeping with exactly one wake-up timer, blocked as exactly one event's
//!   waiter, or gone — and at the end the tasks started balance the tasks exited and alive;
//! - **bounded waits**: no queued task has waited longer than the policy's
//!   [`Scheduler::wait_bound`] for it.
//!
//! A violation stops the run with [`SimError::Policy`] whose message starts with the name of
//! the invariant (`task lost`, `bookkeeping`, `wait bound`), so that a caller can tell them
//! apart.

use super::{EventWhat, NO_TASK, Phase, Sim, SimError, TaskState};
use crate::sched::{Cx, TaskId};

impl Sim<'_, '_> {
    fn violation(&self, message: String) -> SimError {
        SimError::Policy {
            policy: self.sched.name().to_string(),
            message,
        }
    }

    /// Every invariant of the state between two events (work conservation is checked by the
    /// caller, it existed first).
    pub(super) fn check_state(&mut self) -> Result<(), SimError> {
        self.check_places()
            .map_err(|m| self.violation(format!("task lost: {m} at {} ns", self.now)))?;
        let consistent = self.sched.check_consistency(&*cx!(self));
        consistent.map_err(|m| self.violation(format!("bookkeeping: {m} at {} ns", self.now)))?;
        self.check_wait_bounds()
    }

    /// The end of a run: the state once more at the end time; a queued task that the policy
    /// promised a bound would wait for ever when nothing is left to happen; the task counts
    /// balance.
    pub(super) fn check_end(&mut self) -> Result<(), SimError> {
        self.check_state()?;
        if self.heap.items.is_empty() {
            for id in 0..self.tasks.len() {
                let queued = self.tasks[id].state == TaskState::Queued;
                if queued && self.sched.wait_bound(&*cx!(self), id as TaskId).is_some() {
                    return Err(self.violation(format!(
                        "wait bound: task {id} ({:?}) is queued at {} ns, when nothing is left to happen",
                        self.records[self.tasks[id].record as usize].name, self.now
                    )));
                }
            }
        }
        let instances: u64 = self.records.iter().map(|r| r.instances).sum();
        let exited: u64 = self.records.iter().map(|r| r.exited).sum();
        let alive = self
            .tasks
            .iter()
            .filter(|t| !matches!(t.state, TaskState::Free | TaskState::Exited))
            .count() as u64;
        if instances != self.started || exited + alive != self.started {
            return Err(self.violation(format!(
                "task lost: {} tasks started, the records count {instances} instances, {exited} exited and {alive} alive at the end",
                self.started
            )));
        }
        Ok(())
    }

    /// Each task is where its state says, and nowhere else.
    fn check_places(&self) -> Result<(), String> {
        let name = |task: usize| &self.records[self.tasks[task].record as usize].name;
        for (cpu, &task) in self.curr.iter().enumerate() {
            if task == NO_TASK {
                continue;
            }
            let t = &self.tasks[task as usize];
            if t.state != TaskState::Running || t.cpu as usize != cpu {
                return Err(format!(
                    "CPU {cpu} runs task {task} ({:?}), which is {:?} on CPU {}",
                    name(task as usize),
                    t.state,
                    t.cpu
                ));
            }
            if self.idle.contains(cpu as u32) {
                return Err(format!(
                    "CPU {cpu} counts as idle while it runs task {task}"
                ));
            }
        }
        let n = self.tasks.len();
        let mut wake_timers = vec![0u32; n];
        for event in &self.heap.items {
            if let EventWhat::Wake { task } = event.what {
                wake_timers[task as usize] += 1;
            }
        }
        let (mut blocked_on, mut spinning_on) = (vec![0u32; n], vec![0u32; n]);
        for event in &self.events {
            for &(task, spinning) in &event.waiters {
                let count = if spinning {
                    &mut spinning_on
                } else {
                    &mut blocked_on
                };
                count[task as usize] += 1;
            }
        }
        for (id, t) in self.tasks.iter().enumerate() {
            let (wakes, blocks, spins) = (wake_timers[id], blocked_on[id], spinning_on[id]);
            let placed = match t.state {
                TaskState::Running => {
                    self.curr.get(t.cpu as usize) == Some(&(id as TaskId)) && wakes + blocks == 0
                }
                TaskState::Queued => wakes + blocks == 0,
                TaskState::Sleeping => wakes == 1 && blocks + spins == 0,
                TaskState::Blocked => blocks == 1 && wakes + spins == 0,
                TaskState::Free | TaskState::Exited => wakes + blocks + spins == 0,
            };
            // A spinning waiter polls on a CPU or waits to do so.
            let spin_ok = spins == 0
                || (spins == 1
                    && t.phase == Phase::Spin
                    && !t.spin_done
                    && matches!(t.state, TaskState::Running | TaskState::Queued));
            if !placed || !spin_ok {
                return Err(format!(
                    "task {id} ({:?}) is {:?} with {wakes} wake-up timers, waits on {blocks} events and spins on {spins}",
                    name(id),
                    t.state
                ));
            }
        }
        Ok(())
    }

    fn check_wait_bounds(&mut self) -> Result<(), SimError> {
        for id in 0..self.tasks.len() {
            let t = &self.tasks[id];
            if t.state != TaskState::Queued {
                continue;
            }
            let (since, record) = (t.runnable_since, t.record);
            let waited = self.now - since;
            let Some(bound) = self.sched.wait_bound(&*cx!(self), id as TaskId) else {
                continue;
            };
            if waited > bound {
                return Err(self.violation(format!(
                    "wait bound: task {id} ({:?}), runnable since {since} ns, has waited {waited} ns at {} ns, longer than the policy's bound of {bound} ns",
                    self.records[record as usize].name, self.now
                )));
            }
        }
        Ok(())
    }
}
