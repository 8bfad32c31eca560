//! The simulated machine: CPUs, their topology, and the costs of moving work between them.

use serde::Serialize;

use crate::units::{Time, US};

/// CPU id, 0..nr_cpus.
pub type CpuId = u32;

/// A set of CPUs as a bit mask (one bit per CPU, 64 CPUs per word).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CpuMask {
    words: Vec<u64>,
}

impl CpuMask {
    pub fn empty(nr_cpus: u32) -> Self {
        CpuMask {
            words: vec![0; (nr_cpus as usize).div_ceil(64).max(1)],
        }
    }

    pub fn full(nr_cpus: u32) -> Self {
        let mut mask = Self::empty(nr_cpus);
        for cpu in 0..nr_cpus {
            mask.set(cpu);
        }
        mask
    }

    #[inline]
    pub fn set(&mut self, cpu: CpuId) {
        self.words[(cpu / 64) as usize] |= 1 << (cpu % 64);
    }

    #[inline]
    pub fn clear(&mut self, cpu: CpuId) {
        self.words[(cpu / 64) as usize] &= !(1 << (cpu % 64));
    }

    #[inline]
    pub fn contains(&self, cpu: CpuId) -> bool {
        self.words
            .get((cpu / 64) as usize)
            .is_some_and(|w| w & (1 << (cpu % 64)) != 0)
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    pub fn count(&self) -> u32 {
        self.words.iter().map(|w| w.count_ones()).sum()
    }

    /// Lowest CPU in `self ∩ other`.
    #[inline]
    pub fn first_common(&self, other: &CpuMask) -> Option<CpuId> {
        for (i, (a, b)) in self.words.iter().zip(&other.words).enumerate() {
            let both = a & b;
            if both != 0 {
                return Some(i as u32 * 64 + both.trailing_zeros());
            }
        }
        None
    }

    /// Lowest CPU in `self ∩ a ∩ b`.
    #[inline]
    pub fn first_common3(&self, a: &CpuMask, b: &CpuMask) -> Option<CpuId> {
        for (i, ((x, y), z)) in self.words.iter().zip(&a.words).zip(&b.words).enumerate() {
            let all = x & y & z;
            if all != 0 {
                return Some(i as u32 * 64 + all.trailing_zeros());
            }
        }
        None
    }

    pub fn iter(&self) -> impl Iterator<Item = CpuId> + '_ {
        self.words.iter().enumerate().flat_map(|(i, w)| {
            let mut word = *w;
            std::iter::from_fn(move || {
                if word == 0 {
                    return None;
                }
                let bit = word.trailing_zeros();
                word &= word - 1;
                Some(i as u32 * 64 + bit)
            })
        })
    }

    /// Compact text form, e.g. `0-3,8`.
    pub fn to_list(&self) -> String {
        let cpus: Vec<CpuId> = self.iter().collect();
        let mut parts = Vec::new();
        let mut i = 0;
        while i < cpus.len() {
            let mut j = i;
            while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
                j += 1;
            }
            parts.push(if i == j {
                format!("{}", cpus[i])
            } else {
                format!("{}-{}", cpus[i], cpus[j])
            });
            i = j + 1;
        }
        parts.join(",")
    }
}

/// The idle CPUs, and among them those whose whole core is idle: an idle core is then a
/// find-first over the masks, not a scan of an LLC's CPUs and their siblings (Linux keeps
/// `has_idle_cores` for the same reason).
#[derive(Clone, Debug)]
pub struct IdleCpus {
    cpus: CpuMask,
    whole_cores: CpuMask,
    /// CPUs per core; a core's CPUs are numbered contiguously ([`Topology`]).
    smt: u32,
}

impl IdleCpus {
    /// Every CPU idle.
    pub fn all(topology: &Topology) -> Self {
        IdleCpus {
            cpus: CpuMask::full(topology.nr_cpus),
            whole_cores: CpuMask::full(topology.nr_cpus),
            smt: topology.smt,
        }
    }

    fn core(&self, cpu: CpuId) -> std::ops::Range<CpuId> {
        let first = cpu - cpu % self.smt;
        first..first + self.smt
    }

    pub fn set(&mut self, cpu: CpuId) {
        self.cpus.set(cpu);
        if self.core(cpu).all(|c| self.cpus.contains(c)) {
            self.core(cpu).for_each(|c| self.whole_cores.set(c));
        }
    }

    pub fn clear(&mut self, cpu: CpuId) {
        self.cpus.clear(cpu);
        self.core(cpu).for_each(|c| self.whole_cores.clear(c));
    }

    #[inline]
    pub fn contains(&self, cpu: CpuId) -> bool {
        self.cpus.contains(cpu)
    }

    /// The idle CPUs.
    pub fn cpus(&self) -> &CpuMask {
        &self.cpus
    }

    /// The idle CPUs whose SMT siblings are all idle too.
    pub fn whole_cores(&self) -> &CpuMask {
        &self.whole_cores
    }
}

/// Costs the machine charges, all in ns. A cost is CPU time during which the CPU is busy but
/// the task makes no progress (it is neither the task's CPU time nor idle time).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Costs {
    /// Switching to a task after the previous one slept, blocked, yielded or exited, or after
    /// the CPU was idle.
    pub switch_voluntary: Time,
    /// Switching to a task after the previous one was preempted or its slice ended; higher than
    /// the voluntary cost because the preempted task's cache state is disturbed.
    pub switch_involuntary: Time,
    /// Extra cost when a task runs on an SMT sibling of the CPU it last ran on (shared L1/L2).
    pub migration_smt: Time,
    /// Extra cost when a task runs on another core of the same LLC (L1/L2 refill).
    pub migration_llc: Time,
    /// Extra cost when a task runs in another LLC of the same NUMA node (LLC refill).
    pub migration_cross_llc: Time,
    /// Extra cost when a task runs on another NUMA node (remote memory, LLC refill).
    pub migration_cross_numa: Time,
    /// Delay between a CPU asking another CPU to reschedule (wake-up on a remote CPU,
    /// preemption kick) and that CPU acting on it: IPI delivery plus idle exit.
    pub wakeup_ipi: Time,
    /// CPU a task spends notifying the scheduler of an event (`upsched-hints`' `notify()`: a
    /// `BPF_PROG_TEST_RUN` syscall that runs the tenant's notify program).
    pub notify: Time,
}

impl Default for Costs {
    /// Defaults in the range measured on current x86 servers: a context switch is about
    /// 1-2 µs (`perf bench sched pipe` does a round trip of two switches and two wake-ups in
    /// 1.4-2.3 µs here), an IPI plus a shallow idle exit a few µs, cache refill after a
    /// migration grows with the distance.
    fn default() -> Self {
        Costs {
            switch_voluntary: US,
            switch_involuntary: 3 * US / 2,
            migration_smt: US / 5,
            migration_llc: 2 * US,
            migration_cross_llc: 10 * US,
            migration_cross_numa: 20 * US,
            wakeup_ipi: 2 * US,
            // A syscall entry and exit plus a short BPF program: about one context switch.
            notify: US,
        }
    }
}

impl Costs {
    pub fn zero() -> Self {
        Costs {
            switch_voluntary: 0,
            switch_involuntary: 0,
            migration_smt: 0,
            migration_llc: 0,
            migration_cross_llc: 0,
            migration_cross_numa: 0,
            wakeup_ipi: 0,
            notify: 0,
        }
    }
}

/// CPU topology. CPUs are numbered contiguously: SMT siblings are adjacent, then cores of an
/// LLC, then LLCs of a NUMA node.
#[derive(Clone, Debug)]
pub struct Topology {
    pub nr_cpus: u32,
    /// Hardware threads per core (1: no SMT).
    pub smt: u32,
    /// CPUs per last-level cache.
    pub llc_size: u32,
    pub numa_nodes: u32,
    core_of: Vec<u32>,
    llc_of: Vec<u32>,
    node_of: Vec<u32>,
    core_masks: Vec<CpuMask>,
    llc_masks: Vec<CpuMask>,
    node_masks: Vec<CpuMask>,
    all: CpuMask,
}

impl Topology {
    /// Checks the shape (every level divides the next) and builds the look-up tables.
    pub fn new(nr_cpus: u32, smt: u32, llc_size: u32, numa_nodes: u32) -> Result<Self, String> {
        if nr_cpus == 0 || nr_cpus > 65_536 {
            return Err(format!("cpus = {nr_cpus}: must be 1..=65536"));
        }
        if smt == 0 || nr_cpus % smt != 0 {
            return Err(format!("smt = {smt}: must divide cpus = {nr_cpus}"));
        }
        if llc_size == 0 || nr_cpus % llc_size != 0 || llc_size % smt != 0 {
            return Err(format!(
                "llc_cpus = {llc_size}: must divide cpus = {nr_cpus} and be a multiple of smt = {smt}"
            ));
        }
        if numa_nodes == 0 || nr_cpus % numa_nodes != 0 || (nr_cpus / numa_nodes) % llc_size != 0 {
            return Err(format!(
                "numa_nodes = {numa_nodes}: must divide cpus = {nr_cpus} into nodes made of whole LLCs of {llc_size} CPUs"
            ));
        }
        let node_size = nr_cpus / numa_nodes;
        let core_of: Vec<u32> = (0..nr_cpus).map(|c| c / smt).collect();
        let llc_of: Vec<u32> = (0..nr_cpus).map(|c| c / llc_size).collect();
        let node_of: Vec<u32> = (0..nr_cpus).map(|c| c / node_size).collect();
        let group_masks = |size: u32| -> Vec<CpuMask> {
            (0..nr_cpus / size)
                .map(|g| {
                    let mut mask = CpuMask::empty(nr_cpus);
                    (g * size..(g + 1) * size).for_each(|c| mask.set(c));
                    mask
                })
                .collect()
        };
        Ok(Topology {
            nr_cpus,
            smt,
            llc_size,
            numa_nodes,
            core_of,
            llc_of,
            node_of,
            core_masks: group_masks(smt),
            llc_masks: group_masks(llc_size),
            node_masks: group_masks(node_size),
            all: CpuMask::full(nr_cpus),
        })
    }

    #[inline]
    pub fn core_of(&self, cpu: CpuId) -> u32 {
        self.core_of[cpu as usize]
    }
    #[inline]
    pub fn llc_of(&self, cpu: CpuId) -> u32 {
        self.llc_of[cpu as usize]
    }
    #[inline]
    pub fn node_of(&self, cpu: CpuId) -> u32 {
        self.node_of[cpu as usize]
    }
    /// The SMT siblings of `cpu`'s core, `cpu` included.
    pub fn core_mask(&self, cpu: CpuId) -> &CpuMask {
        &self.core_masks[self.core_of(cpu) as usize]
    }
    pub fn llc_mask(&self, cpu: CpuId) -> &CpuMask {
        &self.llc_masks[self.llc_of(cpu) as usize]
    }
    pub fn node_mask(&self, cpu: CpuId) -> &CpuMask {
        &self.node_masks[self.node_of(cpu) as usize]
    }
    pub fn all(&self) -> &CpuMask {
        &self.all
    }
}

/// The machine: topology, costs and the scheduler tick.
#[derive(Clone, Debug)]
pub struct Machine {
    pub topology: Topology,
    pub costs: Costs,
    /// Scheduler tick period (Debian kernels: HZ=250, 4 ms).
    pub tick: Time,
}

impl Machine {
    pub fn nr_cpus(&self) -> u32 {
        self.topology.nr_cpus
    }

    /// Extra cost for a task that last ran on `from` to start on `to`.
    #[inline]
    pub fn migration_cost(&self, from: CpuId, to: CpuId) -> Time {
        let topo = &self.topology;
        if from == to {
            0
        } else if topo.core_of(from) == topo.core_of(to) {
            self.costs.migration_smt
        } else if topo.llc_of(from) == topo.llc_of(to) {
            self.costs.migration_llc
        } else if topo.node_of(from) == topo.node_of(to) {
            self.costs.migration_cross_llc
        } else {
            self.costs.migration_cross_numa
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topology_groups_cpus() {
        let topo = Topology::new(16, 2, 8, 2).unwrap();
        assert_eq!(topo.core_of(5), 2);
        assert_eq!(topo.llc_of(9), 1);
        assert_eq!(topo.node_of(7), 0);
        assert_eq!(topo.core_mask(5).to_list(), "4-5");
        assert_eq!(topo.llc_mask(9).to_list(), "8-15");
        assert!(Topology::new(16, 3, 8, 1).is_err());
        assert!(Topology::new(16, 2, 8, 4).is_err());
        let big = Topology::new(1024, 2, 32, 4).unwrap();
        assert_eq!(big.all().count(), 1024);
        let machine = Machine {
            topology: topo,
            costs: Costs::default(),
            tick: 4_000_000,
        };
        assert_eq!(machine.migration_cost(4, 5), Costs::default().migration_smt);
        assert_eq!(machine.migration_cost(4, 6), Costs::default().migration_llc);
        assert_eq!(
            machine.migration_cost(4, 9),
            Costs::default().migration_cross_numa
        );
    }

    #[test]
    fn masks_intersect() {
        let mut a = CpuMask::empty(130);
        a.set(3);
        a.set(129);
        let mut b = CpuMask::empty(130);
        b.set(129);
        assert_eq!(a.first_common(&b), Some(129));
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![3, 129]);
        assert!(!a.contains(200));
    }
}
