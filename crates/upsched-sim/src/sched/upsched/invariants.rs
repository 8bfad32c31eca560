//! What the mechanism promises, in the form the simulator's invariant checker asks for it
//! (`Scheduler::is_parked`, `wait_bound`, `check_consistency`; `docs/simulator.md`,
//! "Validation", states the bounds and why).

use super::{NR_SLOTS, SlotState, UpschedHost, is_within};
use crate::engine::TaskState;
use crate::sched::{Cx, TaskId};
use crate::units::Time;

impl UpschedHost {
    pub(super) fn parked(&self, task: TaskId) -> bool {
        self.tasks.get(task as usize).is_some_and(|t| t.parked)
    }

    /// The longest a queued task may have waited since it last became runnable. A wait goes on
    /// when the task changes class (its tenant was ejected or detached: it joins the tenant of
    /// a cgroup further up, or the default class), so each tenant over the task's cgroup it is
    /// not in now may have held it for that tenant's `watchdog`, plus one timer period for the
    /// watchdog's run that sees it and one for its class queue to be re-enqueued. On top:
    /// - parked in a live tenant: `park_max` (the park bound counts from the start of the
    ///   task's wait in this tenant), plus one timer period until the release;
    /// - queued in a live tenant: the tenant's `watchdog`, plus one timer period until the
    ///   watchdog's run that sees it;
    /// - any other task: the default class's bound.
    pub(super) fn wait_bound_of(&self, cx: &Cx, task: TaskId) -> Option<Time> {
        let t = self.tasks.get(task as usize)?;
        let period = self.config.timer_period;
        let live = self.live_tenant(task);
        let current = live.map(|slot| self.slots[slot].tenant);
        let path = &self.cgroups[cx.cgroup(task) as usize];
        let earlier: Time = self
            .tenants
            .iter()
            .enumerate()
            .filter(|(index, r)| {
                Some(*index) != current && is_within(path, &r.tenant.config.cgroup)
            })
            .map(|(_, r)| r.tenant.config.watchdog + 2 * period)
            .sum();
        let here = match live {
            Some(slot) => {
                let config = self.slots[slot].config.as_ref()?;
                if t.parked {
                    return Some(earlier + config.park_max + period);
                }
                config.watchdog + period
            }
            None => self.default_class_bound(cx, task)?,
        };
        Some(earlier + here)
    }

    /// The default class's bound for `task`, in the model of today's mechanism (weighted
    /// virtual time, one slice of sleeper credit; `docs/simulator.md` derives it):
    ///
    /// `n × (S + c) × (2 + w_max/w + w_max/1024) × (100 + W_top)/100 × A/(A − G) + tick + period`
    ///
    /// with `n` the most tasks alive at once, `S` the longest slice that can hold a CPU the task
    /// may use (the default slice, the tick for lower levels, `slice_max` of tenants at the
    /// default class's level), `c` the largest switch, migration and wake-up cost, `w` the
    /// task's weight and `w_max` the largest, `W_top` the weights of tenants at the default
    /// class's level, `A` the CPUs the task may use and `G` the CPUs the starvation guard may
    /// give to the `L` lower levels with tenants (`2 × nr_cpus × guard × L`: the guard's share
    /// is of all CPUs and each of its dispatches may run to the next tick). `None` (no promise)
    /// when a tenant is above the default class or `G ≥ A`: the guard, which is global, may then
    /// keep every CPU the task may use.
    fn default_class_bound(&self, cx: &Cx, task: TaskId) -> Option<Time> {
        let machine = cx.machine;
        let costs = &machine.costs;
        let cost = costs.switch_voluntary.max(costs.switch_involuntary)
            + costs
                .migration_smt
                .max(costs.migration_llc)
                .max(costs.migration_cross_llc)
                .max(costs.migration_cross_numa)
            + costs.wakeup_ipi;
        let default_level = self.config.default_level;
        let configs = || self.tenants.iter().map(|r| &r.tenant.config);
        if configs().any(|c| c.level > default_level) {
            return None;
        }
        let top = || configs().filter(|c| c.level == default_level);
        let slice = top()
            .map(|c| c.slice_max)
            .chain([self.config.default_slice, machine.tick])
            .max()
            .unwrap_or(0);
        let top_weight = 100 + top().map(|c| u128::from(c.weight)).sum::<u128>();
        let lower_levels = (0..default_level)
            .filter(|level| configs().any(|c| c.level == *level))
            .count() as u128;
        let allowed = u128::from(cx.affinity(task).count()) * 1000;
        let guard = 2 * u128::from(cx.nr_cpus()) * u128::from(self.config.guard_min_permille);
        let guarded = guard * lower_levels;
        if guarded >= allowed {
            return None;
        }
        let n = cx.tasks.len() as u128;
        let w = u128::from(cx.weight(task).max(1));
        let w_max = cx
            .tasks
            .iter()
            .map(|t| u128::from(t.weight))
            .max()
            .unwrap_or(w);
        // (2 + w_max/w + w_max/1024), times w × 1024.
        let rounds = 2 * w * 1024 + w_max * 1024 + w_max * w;
        let bound = n * u128::from(slice + cost) * rounds / (w * 1024) * top_weight / 100 * allowed
            / (allowed - guarded)
            + u128::from(machine.tick + self.config.timer_period);
        Some(Time::try_from(bound).unwrap_or(Time::MAX))
    }

    /// Every queued task of the core is in exactly one of the mechanism's queues (a class
    /// queue, a park queue, a CPU's local queue) and no other task is; parked tasks are in their
    /// slot's park queue; the runnable and member counts of each slot match its tasks.
    pub(super) fn consistency(&self, cx: &Cx) -> Result<(), String> {
        let n = cx.tasks.len();
        let mut places = vec![0u32; n];
        let mut count = |task: TaskId| {
            if let Some(p) = places.get_mut(task as usize) {
                *p += 1;
            }
        };
        self.default_class.queued().for_each(&mut count);
        for s in &self.slots {
            s.queue.iter().for_each(|e| count(e.2));
            s.park.iter().for_each(|e| count(e.2));
        }
        self.local.iter().flatten().for_each(|d| count(d.task));
        for (id, task) in cx.tasks.iter().enumerate() {
            let queued = task.state == TaskState::Queued;
            if places[id] != u32::from(queued) {
                return Err(format!(
                    "task {id} is {:?} and in {} of the mechanism's queues",
                    task.state, places[id]
                ));
            }
            let Some(t) = self.tasks.get(id) else {
                return Err(format!("task {id} has no host state"));
            };
            let runnable = matches!(task.state, TaskState::Queued | TaskState::Running);
            if t.runnable_at.is_some() != runnable {
                return Err(format!(
                    "task {id} is {:?} but its host runnable time is {:?}",
                    task.state, t.runnable_at
                ));
            }
            if t.parked {
                let entry = (t.park_deadline, t.park_order, id as TaskId);
                let in_park = t.cls < NR_SLOTS && self.slots[t.cls].park.contains(&entry);
                if !in_park {
                    return Err(format!(
                        "task {id} is parked but not in the park queue of class {}",
                        t.cls
                    ));
                }
            }
        }
        for (slot, s) in self.slots.iter().enumerate() {
            let incarnation = |tenant: Option<usize>, generation: u32| {
                tenant == Some(slot) && generation == s.generation
            };
            let runnable = self
                .tasks
                .iter()
                .filter(|t| matches!(t.runnable_slot, Some((sl, g)) if incarnation(Some(sl), g)))
                .count() as u32;
            if runnable != s.nr_runnable {
                return Err(format!(
                    "slot {slot} counts {} runnable tasks, {runnable} are",
                    s.nr_runnable
                ));
            }
            let members = self
                .tasks
                .iter()
                .filter(|t| incarnation(t.tenant, t.tenant_gen))
                .count() as u32;
            if s.state != SlotState::Free && members != s.nr_tasks {
                return Err(format!(
                    "slot {slot} ({:?}) counts {} members, {members} are",
                    s.state, s.nr_tasks
                ));
            }
        }
        Ok(())
    }
}
