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

use super::{Cx, Dispatch, F_FORK, F_WAKEUP, F_YIELD, Scheduler, TaskId};
use crate::machine::CpuId;
use crate::scenario::EevdfParams;
use crate::units::Time;

const NO_TASK: TaskId = u32::MAX;
const NO_CPU: CpuId = u32::MAX;

#[derive(Clone, Debug, Default)]
struct Entity {
    v: i64,
    deadline: i64,
    /// Deadline when last picked: while unchanged, RUN_TO_PARITY protects the task.
    picked_deadline: i64,
    vlag: i64,
    weight: i64,
    cpu: CpuId,
    on_rq: bool,
    exec_start: Time,
}

/// Queued tasks sorted by (deadline, task). Per-CPU queues are short, and a sorted vector
/// beats a B-tree there; a long queue costs a memmove per insertion, still cheap at
/// thousands of tasks.
#[derive(Clone, Debug, Default)]
struct DeadlineQueue(Vec<(i64, TaskId)>);

impl DeadlineQueue {
    fn insert(&mut self, entry: (i64, TaskId)) {
        let at = self.0.partition_point(|e| *e < entry);
        self.0.insert(at, entry);
    }

    fn remove(&mut self, entry: &(i64, TaskId)) -> bool {
        match self.0.binary_search(entry) {
            Ok(at) => {
                self.0.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    fn iter(&self) -> std::slice::Iter<'_, (i64, TaskId)> {
        self.0.iter()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Clone, Debug, Default)]
struct RunQueue {
    /// Queued tasks by (deadline, task); the running task is not in it.
    tree: DeadlineQueue,
    curr: TaskId,
    /// Σ w and Σ w·v over the tasks on the queue, running one included.
    sum_w: i128,
    sum_wv: i128,
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
    /// Tasks waiting in any tree: lets idle CPUs skip a scan of all queues when there is none.
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
            queued_total: 0,
        }
    }

    fn vslice(&self, w: i64) -> i64 {
        (self.p.base_slice as i128 * 1024 / w as i128) as i64
    }

    fn avg_v(&self, cpu: CpuId) -> i64 {
        let rq = &self.rqs[cpu as usize];
        if rq.sum_w == 0 {
            rq.last_v
        } else {
            rq.sum_wv.div_euclid(rq.sum_w) as i64
        }
    }

    fn eligible(&self, cpu: CpuId, task: TaskId) -> bool {
        let rq = &self.rqs[cpu as usize];
        rq.sum_w == 0 || (self.ent[task as usize].v as i128) * rq.sum_w <= rq.sum_wv
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
        let dv = (delta as i128 * 1024 / e.weight as i128) as i64;
        e.v += dv;
        let w = e.weight;
        let rq = &mut self.rqs[cpu as usize];
        rq.sum_wv += w as i128 * dv as i128;
        let e = &self.ent[curr as usize];
        if e.v >= e.deadline {
            let new_deadline = e.v + self.vslice(w);
            self.ent[curr as usize].deadline = new_deadline;
            return true;
        }
        false
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
        let best = rq
            .tree
            .iter()
            .map(|(_, t)| *t)
            .find(|t| self.eligible(cpu, *t));
        match (best, curr) {
            (Some(b), Some(c)) if self.ent[c as usize].deadline < self.ent[b as usize].deadline => {
                Some(c)
            }
            (Some(b), _) => Some(b),
            (None, Some(c)) => Some(c),
            // Nothing eligible can only come from rounding: take the earliest deadline.
            (None, None) => rq.tree.iter().next().map(|(_, t)| *t),
        }
    }

    fn add_to_sums(&mut self, cpu: CpuId, task: TaskId) {
        let e = &self.ent[task as usize];
        let rq = &mut self.rqs[cpu as usize];
        rq.sum_w += e.weight as i128;
        rq.sum_wv += e.weight as i128 * e.v as i128;
    }

    /// `update_entity_lag` + dequeue: the task leaves `cpu`'s queue keeping its clamped lag.
    fn detach(&mut self, cpu: CpuId, task: TaskId) {
        let v_avg = self.avg_v(cpu);
        let e = &mut self.ent[task as usize];
        let limit = (self.p.base_slice * 2).max(self.tick) as i64 * 1024 / e.weight;
        e.vlag = (v_avg - e.v).clamp(-limit, limit);
        e.on_rq = false;
        e.cpu = NO_CPU;
        let (w, v) = (e.weight as i128, e.v as i128);
        let rq = &mut self.rqs[cpu as usize];
        rq.sum_w -= w;
        rq.sum_wv -= w * v;
        // Kept for when the queue becomes empty: the next task placed there starts near it.
        rq.last_v = v_avg;
    }

    /// `place_entity` + enqueue on `cpu`.
    fn attach(&mut self, cpu: CpuId, task: TaskId, initial: bool) {
        let v_avg = self.avg_v(cpu);
        let load = self.rqs[cpu as usize].sum_w;
        let w = self.ent[task as usize].weight;
        let mut lag = self.ent[task as usize].vlag as i128;
        if load > 0 {
            lag = lag * (load + w as i128) / load;
        }
        let mut vslice = self.vslice(w);
        if initial {
            vslice /= 2;
        }
        let e = &mut self.ent[task as usize];
        e.v = v_avg - lag as i64;
        e.deadline = e.v + vslice;
        e.on_rq = true;
        e.cpu = cpu;
        self.add_to_sums(cpu, task);
        self.insert(cpu, task);
    }

    fn insert(&mut self, cpu: CpuId, task: TaskId) {
        let deadline = self.ent[task as usize].deadline;
        self.rqs[cpu as usize].tree.insert((deadline, task));
        self.queued_total += 1;
    }

    fn unqueue(&mut self, cpu: CpuId, task: TaskId) {
        let deadline = self.ent[task as usize].deadline;
        if self.rqs[cpu as usize].tree.remove(&(deadline, task)) {
            self.queued_total -= 1;
        }
    }

    fn load(&self, cpu: CpuId) -> i128 {
        self.rqs[cpu as usize].sum_w
    }

    /// Moves a queued task to `to` (lag kept, as `detach_task`/`attach_task`).
    fn migrate(&mut self, task: TaskId, from: CpuId, to: CpuId) {
        self.unqueue(from, task);
        self.detach(from, task);
        self.attach(to, task, false);
    }

    /// The queue among `cpus` with the most waiting tasks that `cpu` may take, ties to the
    /// higher load, then the lower CPU id.
    fn busiest(&self, cx: &Cx, cpu: CpuId, cpus: impl Iterator<Item = CpuId>) -> Option<CpuId> {
        let mut best: Option<(usize, i128, CpuId)> = None;
        for c in cpus {
            if c == cpu {
                continue;
            }
            let rq = &self.rqs[c as usize];
            if rq.tree.is_empty() || !rq.tree.iter().any(|(_, t)| cx.allowed(*t, cpu)) {
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
        let source = self
            .busiest(cx, cpu, topo.llc_mask(cpu).iter())
            .or_else(|| self.busiest(cx, cpu, 0..cx.nr_cpus()));
        let Some(source) = source else { return false };
        // The waiting task that would run last there is the cheapest to take.
        let task = self.rqs[source as usize]
            .tree
            .iter()
            .rev()
            .map(|(_, t)| *t)
            .find(|t| cx.allowed(*t, cpu));
        match task {
            Some(t) => {
                self.migrate(t, source, cpu);
                true
            }
            None => false,
        }
    }

    /// Periodic balance of a busy CPU against the busiest queue of `cpus`.
    fn balance(&mut self, cx: &Cx, cpu: CpuId, cpus: impl Iterator<Item = CpuId>) {
        let mut busiest: Option<(i128, CpuId)> = None;
        for c in cpus {
            if c != cpu
                && !self.rqs[c as usize].tree.is_empty()
                && busiest.is_none_or(|b| self.load(c) > b.0)
            {
                busiest = Some((self.load(c), c));
            }
        }
        let Some((_, source)) = busiest else { return };
        let mut moved = 0;
        while moved < 8 {
            let (src_load, my_load) = (self.load(source), self.load(cpu));
            if src_load * 100 <= my_load * 117 {
                break;
            }
            let gap = src_load - my_load;
            let candidate = self.rqs[source as usize]
                .tree
                .iter()
                .rev()
                .map(|(_, t)| *t)
                .find(|t| cx.allowed(*t, cpu) && 2 * self.ent[*t as usize].weight as i128 <= gap);
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
        self.ent[i] = Entity {
            weight: cx.weight(task).max(1) as i64,
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
                let w = self.ent[task as usize].weight;
                self.ent[task as usize].deadline += self.vslice(w);
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
                self.balance(cx, cpu, 0..cx.nr_cpus());
            } else {
                // CPUs of an LLC are numbered contiguously.
                let first = topo.llc_of(cpu) * topo.llc_size;
                self.balance(cx, cpu, first..first + topo.llc_size);
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
