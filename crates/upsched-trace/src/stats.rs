//! The figures of a trace, per task and in total: CPU time, runnable wait (from becoming
//! runnable, by a wake-up, a fork or a preemption, to running: what `perf sched latency` calls a
//! delay) with percentiles, switches and migrations.

use serde::Serialize;

use crate::timeline::{Task, Timeline};

/// Runnable waits, in nanoseconds. Percentiles are nearest-rank over the exact samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WaitStats {
    pub count: u64,
    pub mean_ns: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
}

impl WaitStats {
    pub fn of(mut samples: Vec<u64>) -> WaitStats {
        if samples.is_empty() {
            return WaitStats::default();
        }
        samples.sort_unstable();
        let count = samples.len() as u64;
        let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
        WaitStats {
            count,
            mean_ns: (sum / u128::from(count)) as u64,
            p50_ns: nearest_rank(&samples, 50),
            p99_ns: nearest_rank(&samples, 99),
            max_ns: *samples.last().expect("not empty"),
        }
    }
}

/// The smallest sample with at least `percent`% of the samples at or below it.
fn nearest_rank(sorted: &[u64], percent: u64) -> u64 {
    let rank = (sorted.len() as u64 * percent).div_ceil(100).max(1);
    sorted[rank as usize - 1]
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TaskStats {
    pub pid: u32,
    pub comm: String,
    pub kernel_thread: bool,
    pub cpu_ns: u64,
    pub wait: WaitStats,
    pub switches: u64,
    pub migrations: u64,
}

impl TaskStats {
    fn of(task: &Task) -> TaskStats {
        TaskStats {
            pid: task.pid,
            comm: task.comm.clone(),
            kernel_thread: task.kernel_thread,
            cpu_ns: task.cpu_ns(),
            wait: WaitStats::of(task.waits.iter().map(|w| w.duration_ns()).collect()),
            switches: task.switches(),
            migrations: task.migrations,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub cpus: u32,
    pub duration_ns: u64,
    /// In the timeline's order (first appearance).
    pub tasks: Vec<TaskStats>,
    /// Over every task: sums, and the waits of all tasks together.
    pub total: TaskTotals,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TaskTotals {
    pub tasks: u64,
    pub cpu_ns: u64,
    pub wait: WaitStats,
    pub switches: u64,
    pub migrations: u64,
}

impl Stats {
    pub fn of(timeline: &Timeline) -> Stats {
        let tasks: Vec<TaskStats> = timeline.tasks.iter().map(TaskStats::of).collect();
        let waits = timeline
            .tasks
            .iter()
            .flat_map(|t| t.waits.iter().map(|w| w.duration_ns()))
            .collect();
        let total = TaskTotals {
            tasks: tasks.len() as u64,
            cpu_ns: tasks.iter().map(|t| t.cpu_ns).sum(),
            wait: WaitStats::of(waits),
            switches: tasks.iter().map(|t| t.switches).sum(),
            migrations: tasks.iter().map(|t| t.migrations).sum(),
        };
        Stats {
            cpus: timeline.cpus,
            duration_ns: timeline.duration_ns(),
            tasks,
            total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let w = WaitStats::of((1..=100).collect());
        assert_eq!((w.p50_ns, w.p99_ns, w.max_ns, w.mean_ns), (50, 99, 100, 50));
        let w = WaitStats::of(vec![7]);
        assert_eq!((w.count, w.p50_ns, w.p99_ns), (1, 7, 7));
        let w = WaitStats::of(vec![1, 2, 3]);
        assert_eq!((w.p50_ns, w.p99_ns), (2, 3));
    }
}
