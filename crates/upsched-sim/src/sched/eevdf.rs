//! `linux-eevdf`: a model of Linux's default scheduler (the fair class, EEVDF, Linux 6.6+).
//!
//! Modelled (names are the kernel's):
//! - per-CPU run queues; each task has a virtual runtime `v` that advances by
//!   CPU time × 1024 / weight, and a virtual deadline `v + base_slice × 1024 / weight`;
//! - the queue's weighted average virtual runtime `V` (`avg_vruntime`); a task is eligible
//!   when `v <= V`; `pick_eevdf` runs the eligible task with the earliest deadline;
//! - when the running task reaches its deadline it gets a new one (`update_deadline`) and the
//!   CPU reschedules at the next tick (or at once with `hrtick = true`);
//! - lag: a task that sleeps keeps `V - v`, clamped to ±max(2 × slice, tick) in virtual time,
//!   and is placed back at `V - lag × (W + w) / W` (`place_entity`, `PLACE_LAG`); a new task
//!   gets half a slice as its first deadline (`PLACE_DEADLINE_INITIAL`);
//! - wake-up preemption: the woken task preempts when `pick_eevdf` would now choose it; with
//!   `RUN_TO_PARITY` the running task keeps the CPU while it is eligible and still in the
//!   slice it was picked with;
//! - CPU selection at wake-up (`select_idle_sibling`): the previous CPU if idle, else an idle
//!   core, else an idle CPU of its LLC, else the previous CPU; a new task goes to an idle CPU
//!   anywhere, else to the least loaded CPU (`find_idlest_cpu`);
//! - load balancing: a CPU that goes idle pulls a task from the busiest queue of its LLC, then
//!   of the machine (`newidle_balance`); a busy CPU balances every `balance_interval` with its
//!   LLC and every `balance_interval × LLCs` with the machine, pulling queued tasks while the
//!   load (sum of weights) of the busiest queue exceeds its own by more than 17%
//!   (`imbalance_pct`) and a move narrows the gap; a busy CPU with waiting tasks kicks an
//!   idle CPU at its tick (NOHZ idle balance).
//!
//! Not modelled: cgroup hierarchy (group scheduling), PELT load tracking (load is the sum of
//! weights), wake_affine, utilisation clamping, `NEXT_BUDDY`, per-task slices, SMT balancing
//! beyond idle-core preference. Those change details, not the order of magnitude of latencies
//! or shares.

mod load_index;
mod tree;

use load_index::{BUSIEST, HEAVIEST, LIGHTEST, LoadIndex};
use tree::{Forest, Queue};

use super::{Cx, Dispatch, F_FORK, F_WAKEUP, F_YIELD, Scheduler, TaskId};
use crate::machine::CpuId;
use crate::scenario::EevdfParams;
use crate::units::Time;

const NO_TASK: TaskId = u32::MAX;

/// Up to this many CPUs the balancer scans the queues: cheaper than keeping the index up to
/// date at every change of a queue, and still a bounded amount of work.
const SCAN_CPUS: u32 = 32;
const NO_CPU: CpuId = u32::MAX;

#[derive(Clone, Debug, Default)]
struct Entity {
    v: i64,
    deadline: i64,
    /// Deadline when last picked: while unchanged, RUN_TO_PARITY protects the task.
    picked_deadline: i64,
    vlag: i64,
    weight: i64,
    /// `base_slice` in virtual time at this weight (the weight is fixed at task_init).
    vslice: i64,
    cpu: CpuId,
    on_rq: bool,
    exec_start: Time,
}

#[derive(Clone, Debug, Default)]
struct RunQueue {
    /// Queued tasks by (deadline, task), in `Eevdf::forest`; the running task is not in it.
    tree: Queue,
    curr: TaskId,
    /// Σ w and Σ w·(v - zero_v) over the tasks on the queue, running one included. Keys
    /// relative to `zero_v` keep the weighted sum in 64 bits (as Linux's `avg_vruntime`
    /// does): `zero_v` moves to V whenever the sum grows large, which changes no result.
    sum_w: i64,
    sum_wv: i64,
    zero_v: i64,
    /// V when the queue last had tasks (used when it is empty).
    last_v: i64,
    next_balance: Time,
    balances: u64,
}

pub struct Eevdf {
    p: EevdfParams,
    tick: Time,
    rqs: Vec<RunQueue>,
    ent: Vec<Entity>,
    /// The nodes of every queue's tree.
    forest: Forest,
    /// The queues' lengths and loads, for the balancer and forks, on machines of more than
    /// [`SCAN_CPUS`] CPUs.
    index: Option<LoadIndex>,
    /// Tasks waiting in any tree: lets idle CPUs skip the search for a queue when there is none.
    queued_total: u64,
}

impl Eevdf {
    pub fn new(nr_cpus: u32, p: EevdfParams, tick: Time) -> Self {
        let rq = RunQueue {
            curr: NO_TASK,
            ..Default::default()
        };
        Eevdf {
            p,
            tick,
            rqs: vec![rq; nr_cpus as usize],
            ent: Vec::new(),
            forest: Forest::default(),
            index: (nr_cpus > SCAN_CPUS).then(|| LoadIndex::new(nr_cpus)),
            queued_total: 0,
        }
    }

    fn avg_v(&self, cpu: CpuId) -> i64 {
        let rq = &self.rqs[cpu as usize];
        if rq.sum_w == 0 {
            rq.last_v
        } else {
            rq.zero_v + rq.sum_wv.div_euclid(rq.sum_w)
        }
    }

    /// `v <= V`, i.e. `(v - zero_v) · Σw <= Σ w·(v - zero_v)`; the product needs 128 bits.
    fn eligible(&self, cpu: CpuId, task: TaskId) -> bool {
        let rq = &self.rqs[cpu as usize];
        rq.sum_w == 0
            || i128::from(self.ent[task as usize].v - rq.zero_v) * i128::from(rq.sum_w)
                <= i128::from(rq.sum_wv)
    }

    /// Adds `w · (v - zero_v)` to the queue's weighted sum (`w` < 0 removes a task). While
    /// the sum stays below 2^60 in size no term can overflow: V is within 2^60 / Σw of
    /// `zero_v` and a member's `v` within its lag bound of V, so `|w · (v - zero_v)| <= 2^60`
    /// plus a few slices. Past that bound `zero_v` moves to V, which changes no result.
    fn add_weighted(&mut self, cpu: CpuId, w: i64, v: i64) {
        let rq = &mut self.rqs[cpu as usize];
        rq.sum_wv += w * (v - rq.zero_v);
        Self::rebase_if_large(rq);
    }

    fn rebase_if_large(rq: &mut RunQueue) {
        const REBASE_LIMIT: i64 = 1 << 60;
        if rq.sum_w == 0 || rq.sum_wv.abs() < REBASE_LIMIT {
            return;
        }
        let shift = rq.sum_wv.div_euclid(rq.sum_w);
        rq.sum_wv -= rq.sum_w * shift;
        rq.zero_v += shift;
    }

    /// Charges the running task for its CPU time; true when it reached its deadline (and got
    /// a new one).
    fn update_curr(&mut self, cpu: CpuId, now: Time) -> bool {
        let curr = self.rqs[cpu as usize].curr;
        if curr == NO_TASK {
            return false;
        }
        let e = &mut self.ent[curr as usize];
        let delta = now.saturating_sub(e.exec_start);
        e.exec_start = now;
        // Bounded to 13 days so that w · dv <= 1024 · delta stays below 2^60.
        let dv = (delta.min(1 << 50) * 1024 / e.weight as u64) as i64;
        e.v += dv;
        let reached = e.v >= e.deadline;
        if reached {
            e.deadline = e.v + e.vslice;
        }
        let rq = &mut self.rqs[cpu as usize];
        // Σ w·(v - zero_v) grows by w·dv whatever zero_v is.
        rq.sum_wv += e.weight * dv;
        Self::rebase_if_large(rq);
        reached
    }

    /// `pick_eevdf`: the task the queue would run now, running task included.
    fn pick(&self, cpu: CpuId) -> Option<TaskId> {
        let rq = &self.rqs[cpu as usize];
        let mut curr = (rq.curr != NO_TASK).then_some(rq.curr);
        if let Some(c) = curr {
            if !self.eligible(cpu, c) {
                curr = None;
            } else if self.p.run_to_parity
                && self.ent[c as usize].deadline == self.ent[c as usize].picked_deadline
            {
                return Some(c);
            }
        }
        // `eligible` on a bare `v`: monotone in it, as the tree's descent needs.
        let best = self.forest.first_eligible(&rq.tree, |v| {
            rq.sum_w == 0
                || i128::from(v - rq.zero_v) * i128::from(rq.sum_w) <= i128::from(rq.sum_wv)
        });
        match (best, curr) {
            (Some(b), Some(c)) if self.ent[c as usize].deadline < self.ent[b as usize].deadline => {
                Some(c)
            }
            (Some(b), _) => Some(b),
            (None, Some(c)) => Some(c),
            // Nothing eligible can only come from rounding: take the earliest deadline.
            (None, None) => self.forest.first(&rq.tree),
        }
    }

    fn add_to_sums(&mut self, cpu: CpuId, task: TaskId) {
        let (w, v) = (self.ent[task as usize].weight, self.ent[task as usize].v);
        if self.rqs[cpu as usize].sum_w == 0 {
            // An empty queue restarts its keys at the new task: they stay small.
            self.rqs[cpu as usize].zero_v = v;
        }
        self.rqs[cpu as usize].sum_w += w;
        self.add_weighted(cpu, w, v);
    }

    /// `update_entity_lag` + dequeue: the task leaves `cpu`'s queue keeping its clamped lag.
    fn detach(&mut self, cpu: CpuId, task: TaskId) {
        let v_avg = self.avg_v(cpu);
        let e = &mut self.ent[task as usize];
        let limit = (self.p.base_slice * 2).max(self.tick) as i64 * 1024 / e.weight;
        e.vlag = (v_avg - e.v).clamp(-limit, limit);
        e.on_rq = false;
        e.cpu = NO_CPU;
        let (w, v) = (e.weight, e.v);
        self.rqs[cpu as usize].sum_w -= w;
        self.add_weighted(cpu, -w, v);
        // Kept for when the queue becomes empty: the next task placed there starts near it.
        self.rqs[cpu as usize].last_v = v_avg;
        self.reindex(cpu);
    }

    /// `cpu`'s queue length or load changed: the balancer's index reads it at its next use.
    fn reindex(&mut self, cpu: CpuId) {
        if let Some(index) = &mut self.index {
            index.mark(cpu);
        }
    }

    /// The balancer's index brought up to date, if the machine has one.
    fn fresh_index(&mut self) -> Option<&LoadIndex> {
        let rqs = &self.rqs;
        let index = self.index.as_mut()?;
        index.refresh(|c| {
            let rq = &rqs[c as usize];
            load_index::keys(c, rq.tree.len(), rq.sum_w)
        });
        Some(index)
    }

    /// `place_entity` + enqueue on `cpu`.
    fn attach(&mut self, cpu: CpuId, task: TaskId, initial: bool) {
        let v_avg = self.avg_v(cpu);
        let load = self.rqs[cpu as usize].sum_w;
        let w = self.ent[task as usize].weight;
        let mut lag = self.ent[task as usize].vlag;
        if load > 0 {
            // |lag| <= 2 slices · 1024 / w, so lag · (load + w) fits in 64 bits unless the
            // queue holds millions of tasks.
            lag = match lag.checked_mul(load + w) {
                Some(scaled) => scaled / load,
                None => (i128::from(lag) * i128::from(load + w) / i128::from(load)) as i64,
            };
        }
        let mut vslice = self.ent[task as usize].vslice;
        if initial {
            vslice /= 2;
        }
        let e = &mut self.ent[task as usize];
        e.v = v_avg - lag;
        e.deadline = e.v + vslice;
        e.on_rq = true;
        e.cpu = cpu;
        self.add_to_sums(cpu, task);
        self.insert(cpu, task);
    }

    /// Queues `task` on `cpu` (its sums already count it) and reindexes the queue.
    fn insert(&mut self, cpu: CpuId, task: TaskId) {
        let e = &self.ent[task as usize];
        self.forest.insert(
            &mut self.rqs[cpu as usize].tree,
            task,
            e.deadline,
            e.v,
            e.weight,
        );
        self.queued_total += 1;
        self.reindex(cpu);
    }

    fn unqueue(&mut self, cpu: CpuId, task: TaskId) {
        if self.forest.remove(&mut self.rqs[cpu as usize].tree, task) {
            self.queued_total -= 1;
            self.reindex(cpu);
        }
    }

    /// Whether `cpu` may take one of `from`'s waiting tasks.
    fn has_allowed(&self, cx: &Cx, from: CpuId, cpu: CpuId) -> bool {
        self.forest
            .last_where(&self.rqs[from as usize].tree, i64::MAX, &mut |t| {
                cx.allowed(t, cpu)
            })
            .is_some()
    }

    fn load(&self, cpu: CpuId) -> i64 {
        self.rqs[cpu as usize].sum_w
    }

    /// Moves a queued task to `to` (lag kept, as `detach_task`/`attach_task`).
    fn migrate(&mut self, task: TaskId, from: CpuId, to: CpuId) {
        self.unqueue(from, task);
        self.detach(from, task);
        self.attach(to, task, false);
    }

    /// The queue among CPUs `first..end` with the most waiting tasks that `cpu` may take,
    /// ties to the higher load, then the lower CPU id.
    fn busiest(&mut self, cx: &Cx, cpu: CpuId, first: CpuId, end: CpuId) -> Option<CpuId> {
        if let Some(index) = self.fresh_index() {
            let best = index.best_except(BUSIEST, first, end, cpu)?;
            if self.has_allowed(cx, best, cpu) {
                return Some(best);
            }
            // Affinities keep `cpu` off the best queue: scan the range (pinned tasks only).
        }
        let mut best: Option<(usize, i64, CpuId)> = None;
        for c in first..end {
            let rq = &self.rqs[c as usize];
            if c == cpu || rq.tree.is_empty() || !self.has_allowed(cx, c, cpu) {
                continue;
            }
            let key = (rq.tree.len(), rq.sum_w, c);
            if best.is_none_or(|b| (key.0, key.1) > (b.0, b.1)) {
                best = Some(key);
            }
        }
        best.map(|b| b.2)
    }

    /// `newidle_balance`: an idle CPU pulls one waiting task.
    fn pull_one(&mut self, cx: &Cx, cpu: CpuId) -> bool {
        if self.queued_total == 0 {
            return false;
        }
        let topo = cx.topology();
        // CPUs of an LLC are numbered contiguously.
        let llc = topo.llc_of(cpu) * topo.llc_size;
        let source = self
            .busiest(cx, cpu, llc, llc + topo.llc_size)
            .or_else(|| self.busiest(cx, cpu, 0, cx.nr_cpus()));
        let Some(source) = source else { return false };
        // The waiting task that would run last there is the cheapest to take.
        let task = self
            .forest
            .last_where(&self.rqs[source as usize].tree, i64::MAX, &mut |t| {
                cx.allowed(t, cpu)
            });
        match task {
            Some(t) => {
                self.migrate(t, source, cpu);
                true
            }
            None => false,
        }
    }

    /// Periodic balance of a busy CPU against the heaviest queue with waiting tasks among
    /// CPUs `first..end` (ties to the lower CPU id).
    fn balance(&mut self, cx: &Cx, cpu: CpuId, first: CpuId, end: CpuId) {
        let source = match self.fresh_index() {
            Some(index) => index.best_except(HEAVIEST, first, end, cpu),
            None => {
                let mut busiest: Option<(i64, CpuId)> = None;
                for c in first..end {
                    if c != cpu
                        && !self.rqs[c as usize].tree.is_empty()
                        && busiest.is_none_or(|b| self.load(c) > b.0)
                    {
                        busiest = Some((self.load(c), c));
                    }
                }
                busiest.map(|b| b.1)
            }
        };
        let Some(source) = source else { return };
        let mut moved = 0;
        while moved < 8 {
            let (src_load, my_load) = (self.load(source), self.load(cpu));
            if src_load * 100 <= my_load * 117 {
                break;
            }
            let gap = src_load - my_load;
            // The last in deadline order of weight at most gap / 2 (2w <= gap).
            let candidate = self.forest.last_where(
                &self.rqs[source as usize].tree,
                gap.div_euclid(2),
                &mut |t| cx.allowed(t, cpu),
            );
            let Some(task) = candidate else { break };
            self.migrate(task, source, cpu);
            moved += 1;
        }
    }

    /// Idle CPU in `prev`'s LLC for a waking task (`select_idle_sibling`).
    fn idle_sibling(cx: &Cx, task: TaskId, prev: CpuId) -> Option<CpuId> {
        let allowed = cx.affinity(task);
        if cx.is_idle(prev) && allowed.contains(prev) {
            return Some(prev);
        }
        let topo = cx.topology();
        let llc = topo.llc_mask(prev);
        if topo.smt > 1 {
            if let Some(cpu) = cx.idle_core_in_llc(allowed, prev) {
                return Some(cpu);
            }
        }
        cx.idle_mask().first_common3(allowed, llc)
    }
}

impl Scheduler for Eevdf {
    fn name(&self) -> &str {
        "linux-eevdf"
    }

    fn task_init(&mut self, cx: &mut Cx, task: TaskId) {
        let i = task as usize;
        if i >= self.ent.len() {
            self.ent.resize(i + 1, Entity::default());
        }
        let weight = cx.weight(task).max(1) as i64;
        self.ent[i] = Entity {
            weight,
            vslice: (self.p.base_slice.saturating_mul(1024) / weight as u64) as i64,
            cpu: NO_CPU,
            ..Default::default()
        };
    }

    fn select_cpu(&mut self, cx: &mut Cx, task: TaskId, prev_cpu: CpuId, flags: u32) -> CpuId {
        let prev = if prev_cpu < cx.nr_cpus() { prev_cpu } else { 0 };
        if flags & F_FORK != 0 {
            if let Some(idle) = cx.find_idle_cpu(task, prev) {
                return idle;
            }
            let allowed = cx.affinity(task);
            if allowed == cx.topology().all() {
                if let Some(index) = self.fresh_index() {
                    return index
                        .best_except(LIGHTEST, 0, cx.nr_cpus(), NO_CPU)
                        .unwrap_or(prev);
                }
            }
            return allowed
                .iter()
                .min_by_key(|c| (self.load(*c), *c))
                .unwrap_or(prev);
        }
        if let Some(idle) = Self::idle_sibling(cx, task, prev) {
            return idle;
        }
        super::fifo::allowed_or_first(cx, task, prev)
    }

    fn enqueue(&mut self, cx: &mut Cx, task: TaskId, cpu: CpuId, flags: u32) {
        if self.ent[task as usize].on_rq {
            // Back from the CPU it ran on (slice end, preemption, yield): it never left the
            // queue's sums.
            let on = self.ent[task as usize].cpu;
            if flags & F_YIELD != 0 {
                let e = &mut self.ent[task as usize];
                e.deadline += e.vslice;
            }
            self.insert(on, task);
            return;
        }
        let now = cx.now;
        self.update_curr(cpu, now);
        self.attach(cpu, task, flags & F_FORK != 0);
        if cx.curr(cpu).is_some() {
            if flags & (F_WAKEUP | F_FORK) != 0
                && self.rqs[cpu as usize].curr != NO_TASK
                && self.pick(cpu) == Some(task)
            {
                cx.preempt(cpu);
            }
        } else if cx.is_idle(cpu) {
            cx.kick(cpu);
        }
    }

    fn dispatch(&mut self, cx: &mut Cx, cpu: CpuId) -> Option<Dispatch> {
        if self.rqs[cpu as usize].tree.is_empty() && !self.pull_one(cx, cpu) {
            return None;
        }
        let task = self.pick(cpu)?;
        self.unqueue(cpu, task);
        let e = &mut self.ent[task as usize];
        e.picked_deadline = e.deadline;
        let slice = if self.p.hrtick {
            let left = (e.deadline - e.v).max(1) as i128 * e.weight as i128 / 1024;
            (left as Time).max(1)
        } else {
            Time::MAX
        };
        self.rqs[cpu as usize].curr = task;
        Some(Dispatch { task, slice })
    }

    fn running(&mut self, cx: &mut Cx, task: TaskId, cpu: CpuId) {
        self.ent[task as usize].exec_start = cx.now;
        self.rqs[cpu as usize].curr = task;
    }

    fn stopping(&mut self, cx: &mut Cx, task: TaskId, cpu: CpuId, runnable: bool) {
        self.update_curr(cpu, cx.now);
        self.rqs[cpu as usize].curr = NO_TASK;
        if !runnable {
            self.detach(cpu, task);
        }
    }

    fn tick(&mut self, cx: &mut Cx, cpu: CpuId, _task: TaskId) -> bool {
        let now = cx.now;
        let resched = self.update_curr(cpu, now);
        if now >= self.rqs[cpu as usize].next_balance {
            let interval = self.p.balance_interval;
            self.rqs[cpu as usize].next_balance = now + interval;
            self.rqs[cpu as usize].balances += 1;
            let topo = cx.topology();
            let nr_llcs = (topo.nr_cpus / topo.llc_size) as u64;
            if nr_llcs > 1 && self.rqs[cpu as usize].balances % nr_llcs == 0 {
                self.balance(cx, cpu, 0, cx.nr_cpus());
            } else {
                // CPUs of an LLC are numbered contiguously.
                let first = topo.llc_of(cpu) * topo.llc_size;
                self.balance(cx, cpu, first, first + topo.llc_size);
            }
        }
        if !self.rqs[cpu as usize].tree.is_empty() {
            // NOHZ idle balance: an idle CPU comes to take waiting work.
            let topo = cx.topology();
            let idle = cx
                .idle_mask()
                .first_common(topo.llc_mask(cpu))
                .or_else(|| cx.idle_mask().iter().next());
            if let Some(idle) = idle {
                cx.kick(idle);
            }
        }
        if resched && self.rqs[cpu as usize].tree.is_empty() {
            // Linux reschedules and picks the same task again, which starts a new protected
            // slice for RUN_TO_PARITY.
            if let Some(curr) = cx.curr(cpu) {
                let e = &mut self.ent[curr as usize];
                e.picked_deadline = e.deadline;
            }
            return false;
        }
        resched
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SimRng;

    /// The 64-bit relative sums give exactly the V and eligibility of a 128-bit absolute sum,
    /// far from zero and across rebases: V drifts from 2^61 by 2^40 while up to 40 tasks with
    /// weights from nice 19 to nice -20 come and go within 2^37 of it (a realistic lag spread).
    #[test]
    fn relative_sums_match_absolute_ones() {
        let mut rng = SimRng::stream(7, 0);
        let mut eevdf = Eevdf::new(1, crate::scenario::SchedParams::default().eevdf, 1_000_000);
        let mut members: Vec<(i64, i64)> = Vec::new();
        let mut rebases = 0;
        for step in 0..20_000i64 {
            let base = (1 << 61) + step * (1 << 26);
            let leaving = if members.len() > 40 {
                // The task furthest behind: no member stays far from V.
                (0..members.len()).min_by_key(|&i| members[i].1)
            } else if !members.is_empty() && rng.next_u64() % 3 == 0 {
                Some((rng.next_u64() % members.len() as u64) as usize)
            } else {
                None
            };
            if let Some(index) = leaving {
                let (w, v) = members.swap_remove(index);
                eevdf.rqs[0].sum_w -= w;
                eevdf.add_weighted(0, -w, v);
            } else {
                let w = 15 + (rng.next_u64() % 88_747) as i64;
                let v = base + (rng.next_u64() % (1 << 37)) as i64 - (1 << 36);
                if eevdf.rqs[0].sum_w == 0 {
                    eevdf.rqs[0].zero_v = v;
                }
                eevdf.rqs[0].sum_w += w;
                let before = eevdf.rqs[0].zero_v;
                eevdf.add_weighted(0, w, v);
                rebases += u32::from(eevdf.rqs[0].zero_v != before);
                members.push((w, v));
            }
            let sum_w: i128 = members.iter().map(|m| i128::from(m.0)).sum();
            let sum_wv: i128 = members
                .iter()
                .map(|m| i128::from(m.0) * i128::from(m.1))
                .sum();
            if sum_w == 0 {
                assert_eq!(eevdf.rqs[0].sum_wv, 0);
                continue;
            }
            assert_eq!(
                i128::from(eevdf.avg_v(0)),
                sum_wv.div_euclid(sum_w),
                "step {step}"
            );
            for (task, &(w, v)) in members.iter().enumerate().take(4) {
                if eevdf.ent.len() <= task {
                    eevdf.ent.resize(task + 1, Entity::default());
                }
                eevdf.ent[task] = Entity {
                    v,
                    weight: w,
                    ..Default::default()
                };
                let expected = i128::from(v) * sum_w <= sum_wv;
                assert_eq!(eevdf.eligible(0, task as TaskId), expected, "step {step}");
            }
        }
        assert!(rebases > 0, "the test must cross the rebase path");
    }
}
