//! The balancer's view of the run queues: per CPU three keys (the queue with the most waiting
//! tasks, the heaviest queue with waiting tasks, the lightest queue) in a tournament tree, so
//! that the best queue of any range of CPUs (an LLC, whose CPUs are contiguous, or the
//! machine) costs O(log CPUs) instead of a scan of the range on every idle pull, periodic
//! balance and fork.
//!
//! Each key packs its ordering with the CPU id so that the largest key is the CPU a scan in
//! CPU order would have kept (ties go to the lowest CPU); 0 means "no candidate".

use crate::machine::CpuId;

/// Most waiting tasks, then the higher load: `busiest`'s order.
pub(super) const BUSIEST: usize = 0;
/// The highest load among queues with waiting tasks: the periodic balance's order.
pub(super) const HEAVIEST: usize = 1;
/// The lowest load, waiting tasks or not: where a new task goes when no CPU is idle.
pub(super) const LIGHTEST: usize = 2;

#[derive(Clone, Debug)]
pub(super) struct LoadIndex {
    size: usize,
    nodes: Vec<[u128; 3]>,
    /// CPUs whose keys changed since the last [`LoadIndex::refresh`]: a busy CPU's queue
    /// changes several times between two reads of the index, and one update is enough.
    dirty: Vec<CpuId>,
    is_dirty: Vec<bool>,
}

/// The keys of `cpu` with `waiting` queued tasks and load `load` (Σ weights, >= 0).
pub(super) fn keys(cpu: CpuId, waiting: usize, load: i64) -> [u128; 3] {
    let load = load as u128;
    let low_first = u128::from(u32::MAX - cpu);
    let (busiest, heaviest) = if waiting == 0 {
        (0, 0)
    } else {
        (
            (waiting as u128) << 96 | load << 32 | low_first,
            load << 32 | low_first,
        )
    };
    [busiest, heaviest, !(load << 32 | u128::from(cpu))]
}

impl LoadIndex {
    pub(super) fn new(nr_cpus: u32) -> Self {
        let size = (nr_cpus as usize).next_power_of_two();
        let mut index = LoadIndex {
            size,
            nodes: vec![[0; 3]; 2 * size],
            dirty: Vec::new(),
            is_dirty: vec![false; nr_cpus as usize],
        };
        for cpu in 0..nr_cpus {
            index.set(cpu, keys(cpu, 0, 0));
        }
        index
    }

    /// Notes that `cpu`'s keys changed.
    pub(super) fn mark(&mut self, cpu: CpuId) {
        if !std::mem::replace(&mut self.is_dirty[cpu as usize], true) {
            self.dirty.push(cpu);
        }
    }

    /// Brings the keys of the CPUs marked since the last refresh up to date (`keys_of`: a
    /// CPU's keys now); the tree's shape and answers do not depend on the order.
    pub(super) fn refresh(&mut self, keys_of: impl Fn(CpuId) -> [u128; 3]) {
        while let Some(cpu) = self.dirty.pop() {
            self.is_dirty[cpu as usize] = false;
            self.set(cpu, keys_of(cpu));
        }
    }

    fn set(&mut self, cpu: CpuId, keys: [u128; 3]) {
        let mut i = self.size + cpu as usize;
        self.nodes[i] = keys;
        while i > 1 {
            i /= 2;
            let (a, b) = (self.nodes[2 * i], self.nodes[2 * i + 1]);
            let node = &mut self.nodes[i];
            let mut changed = false;
            for k in 0..3 {
                let best = a[k].max(b[k]);
                changed |= node[k] != best;
                node[k] = best;
            }
            // Unchanged here, unchanged above.
            if !changed {
                break;
            }
        }
    }

    /// The largest key `k` among CPUs `first..end`.
    fn max_in(&self, k: usize, first: CpuId, end: CpuId) -> u128 {
        let (mut l, mut r) = (self.size + first as usize, self.size + end as usize);
        let mut best = 0;
        while l < r {
            if l % 2 == 1 {
                best = best.max(self.nodes[l][k]);
                l += 1;
            }
            if r % 2 == 1 {
                r -= 1;
                best = best.max(self.nodes[r][k]);
            }
            l /= 2;
            r /= 2;
        }
        best
    }

    /// The best CPU by key `k` among `first..end` other than `except`.
    pub(super) fn best_except(
        &self,
        k: usize,
        first: CpuId,
        end: CpuId,
        except: CpuId,
    ) -> Option<CpuId> {
        let best = if (first..end).contains(&except) {
            self.max_in(k, first, except)
                .max(self.max_in(k, except + 1, end))
        } else {
            self.max_in(k, first, end)
        };
        match (best, k) {
            (0, _) => None,
            (key, LIGHTEST) => Some(!key as u32),
            (key, _) => Some(u32::MAX - key as u32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SimRng;

    /// Every range query answers as a scan of the range in CPU order does.
    #[test]
    fn matches_a_scan() {
        let mut rng = SimRng::stream(5, 0);
        let nr_cpus = 24;
        let mut index = LoadIndex::new(nr_cpus);
        let mut state = vec![(0usize, 0i64); nr_cpus as usize];
        for _ in 0..5_000 {
            let cpu = (rng.next_u64() % u64::from(nr_cpus)) as CpuId;
            // Few distinct values: ties are common.
            let waiting = (rng.next_u64() % 3) as usize;
            let load = (rng.next_u64() % 3) as i64 * 1024 + waiting as i64;
            state[cpu as usize] = (waiting, load);
            index.mark(cpu);
            if rng.next_u64() % 4 != 0 {
                // Also several changes between two refreshes.
                continue;
            }
            index.refresh(|c| keys(c, state[c as usize].0, state[c as usize].1));
            let first = (rng.next_u64() % u64::from(nr_cpus)) as CpuId;
            let end = first + 1 + (rng.next_u64() % u64::from(nr_cpus - first)) as CpuId;
            let except = (rng.next_u64() % u64::from(nr_cpus)) as CpuId;
            let range = || (first..end).filter(|c| *c != except);
            let mut busiest: Option<(usize, i64, CpuId)> = None;
            let mut heaviest: Option<(i64, CpuId)> = None;
            for c in range() {
                let (w, l) = state[c as usize];
                if w > 0 && busiest.is_none_or(|b| (w, l) > (b.0, b.1)) {
                    busiest = Some((w, l, c));
                }
                if w > 0 && heaviest.is_none_or(|b| l > b.0) {
                    heaviest = Some((l, c));
                }
            }
            let lightest = range().min_by_key(|c| (state[*c as usize].1, *c));
            assert_eq!(
                index.best_except(BUSIEST, first, end, except),
                busiest.map(|b| b.2)
            );
            assert_eq!(
                index.best_except(HEAVIEST, first, end, except),
                heaviest.map(|b| b.1)
            );
            assert_eq!(index.best_except(LIGHTEST, first, end, except), lightest);
        }
    }
}
