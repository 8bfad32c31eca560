//! Turning a run into numbers: the JSON report (stable key order: struct fields in
//! declaration order, lists in a fixed order), the terminal table and the CSV.

use std::fmt::Write as _;

use serde::Serialize;

use crate::chains::{ChainReport, chain_report};
use crate::engine::RunOutcome;
use crate::machine::Costs;
use crate::metrics::{Histogram, LatencySummary, Record};
use crate::scenario::Scenario;
use crate::sched::upsched::MechanismReport;
use crate::units::{Time, format_duration};

#[derive(Serialize, Debug, Clone)]
pub struct Report {
    /// [`FORMAT_VERSION`] of this document.
    pub format_version: u32,
    pub scenario: String,
    pub seed: u64,
    pub machine: MachineReport,
    pub runs: Vec<RunReport>,
}

#[derive(Serialize, Debug, Clone)]
pub struct MachineReport {
    pub cpus: u32,
    pub smt: u32,
    pub llc_cpus: u32,
    pub numa_nodes: u32,
    pub tick_ns: Time,
    pub costs_ns: Costs,
}

#[derive(Serialize, Debug, Clone)]
pub struct RunReport {
    pub policy: String,
    pub duration_ns: Time,
    /// Events the core handled (stale timers excluded).
    pub events: u64,
    pub tasks_started: u64,
    pub tasks_alive_at_end: u64,
    pub totals: Totals,
    pub fairness: Fairness,
    pub tasks: Vec<TaskReport>,
    pub cgroups: Vec<GroupReport>,
    pub cpus: Vec<CpuReport>,
    /// Request chains (null when the scenario declares none).
    pub chains: Option<ChainsReport>,
    /// Per-tenant and per-class statistics of the upsched mechanism.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<MechanismReport>,
}

#[derive(Serialize, Debug, Clone)]
pub struct ChainsReport {
    /// All chains together: latency over every completed request, total throughput, idle
    /// ratio over all runtimes.
    pub all: ChainReport,
    pub chains: Vec<ChainReport>,
}

#[derive(Serialize, Debug, Clone)]
pub struct Totals {
    pub cpu_ns: Time,
    pub spin_ns: Time,
    /// CPU time spent switching and refilling caches after migrations.
    pub overhead_ns: Time,
    pub idle_ns: Time,
    /// Busy time (tasks and overhead) over the capacity of all CPUs.
    pub utilisation: f64,
    pub wait: LatencySummary,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    pub migrations: u64,
}

#[derive(Serialize, Debug, Clone)]
pub struct Fairness {
    /// Jain's index over CPU time ÷ weight of the tasks the scenario starts itself (1 = equal
    /// weight-normalised shares, 1/n = one task got everything); null without such tasks.
    pub jain_index: Option<f64>,
    pub tasks: usize,
}

#[derive(Serialize, Debug, Clone)]
pub struct TaskReport {
    pub name: String,
    /// The scenario's task this row reports on (`name` marks spawned rows and instances).
    pub task: String,
    pub cgroup: String,
    pub weight: u32,
    pub nice: i32,
    /// Instances started by arrivals or fork share one row.
    pub spawned: bool,
    pub instances: u64,
    pub exited: u64,
    pub cpu_ns: Time,
    /// CPU time over the run's duration (1.0 = one whole CPU).
    pub cpu_share: f64,
    pub spin_ns: Time,
    pub wait: LatencySummary,
    pub turnaround: LatencySummary,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    pub migrations: u64,
    pub wakeups: u64,
}

#[derive(Serialize, Debug, Clone)]
pub struct GroupReport {
    pub cgroup: String,
    pub rows: usize,
    pub instances: u64,
    pub cpu_ns: Time,
    pub cpu_share: f64,
    pub spin_ns: Time,
    /// For a chain's runtime: CPU time while it had no pending request, and its share of
    /// `cpu_ns` (null for other cgroups, or without CPU time).
    pub idle_ns: Option<Time>,
    pub idle_ratio: Option<f64>,
    pub wait: LatencySummary,
    pub turnaround: LatencySummary,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    pub migrations: u64,
}

#[derive(Serialize, Debug, Clone)]
pub struct CpuReport {
    pub cpu: u32,
    pub busy_ns: Time,
    pub task_ns: Time,
    pub overhead_ns: Time,
    pub idle_ns: Time,
    pub utilisation: f64,
}

fn share(ns: Time, duration: Time) -> f64 {
    if duration == 0 {
        0.0
    } else {
        ns as f64 / duration as f64
    }
}

/// Jain's fairness index of `values`.
impl RunReport {
    /// The chains' polling share: CPU the runtimes (the chains' stage cgroups) spent spinning
    /// ÷ their CPU; `None` without chains or runtime CPU.
    pub fn poll_ratio(&self) -> Option<f64> {
        let chains = self.chains.as_ref()?;
        let runtimes = self.cgroups.iter().filter(|g| g.idle_ns.is_some());
        let spin: u64 = runtimes.map(|g| g.spin_ns).sum();
        crate::chains::ratio(spin, chains.all.cpu_ns)
    }
}

pub fn jain_index(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let sum: f64 = values.iter().sum();
    let sum_sq: f64 = values.iter().map(|x| x * x).sum();
    if sum_sq == 0.0 {
        Some(1.0)
    } else {
        Some(sum * sum / (values.len() as f64 * sum_sq))
    }
}

fn task_report(r: &Record, scenario: &Scenario, duration: Time) -> TaskReport {
    TaskReport {
        name: r.name.clone(),
        task: scenario.tasks[r.spec as usize].name.clone(),
        cgroup: scenario.cgroups[r.cgroup as usize].clone(),
        weight: r.weight,
        nice: r.nice,
        spawned: r.dynamic,
        instances: r.instances,
        exited: r.exited,
        cpu_ns: r.cpu_ns,
        cpu_share: share(r.cpu_ns, duration),
        spin_ns: r.spin_ns,
        wait: r.wait.summary(),
        turnaround: r.turnaround.summary(),
        voluntary_switches: r.voluntary_switches,
        involuntary_switches: r.involuntary_switches,
        migrations: r.migrations,
        wakeups: r.wakeups,
    }
}

/// Merged wait histogram per cgroup (index = cgroup), for the CDF plot.
pub fn cgroup_waits(outcome: &RunOutcome, scenario: &Scenario) -> Vec<Histogram> {
    let mut waits = vec![Histogram::default(); scenario.cgroups.len()];
    for r in &outcome.records {
        waits[r.cgroup as usize].merge(&r.wait);
    }
    waits
}

pub fn run_report(outcome: &RunOutcome, scenario: &Scenario) -> RunReport {
    let duration = outcome.end;
    let nr_cpus = scenario.machine.nr_cpus();
    let tasks: Vec<TaskReport> = outcome
        .records
        .iter()
        .map(|r| task_report(r, scenario, duration))
        .collect();

    let mut cgroup_cpu = vec![0; scenario.cgroups.len()];
    let mut cgroup_idle = vec![0; scenario.cgroups.len()];
    for r in &outcome.records {
        cgroup_cpu[r.cgroup as usize] += r.cpu_ns;
        cgroup_idle[r.cgroup as usize] += r.idle_ns;
    }
    // One pass over the chains and one over the records, not one per cgroup: a scaled-up
    // faas has thousands of each.
    let mut runtimes = vec![false; scenario.cgroups.len()];
    for g in outcome.chains.iter().flat_map(|c| &c.cgroups) {
        runtimes[*g as usize] = true;
    }
    let mut by_cgroup: Vec<Vec<&Record>> = vec![Vec::new(); scenario.cgroups.len()];
    for r in &outcome.records {
        by_cgroup[r.cgroup as usize].push(r);
    }
    let mut cgroups = Vec::new();
    for ((index, path), members) in scenario.cgroups.iter().enumerate().zip(by_cgroup) {
        if members.is_empty() {
            continue;
        }
        let mut wait = Histogram::default();
        let mut turnaround = Histogram::default();
        for r in &members {
            wait.merge(&r.wait);
            turnaround.merge(&r.turnaround);
        }
        let cpu_ns = members.iter().map(|r| r.cpu_ns).sum();
        cgroups.push(GroupReport {
            cgroup: path.clone(),
            rows: members.len(),
            instances: members.iter().map(|r| r.instances).sum(),
            cpu_ns,
            cpu_share: share(cpu_ns, duration),
            spin_ns: members.iter().map(|r| r.spin_ns).sum(),
            idle_ns: runtimes[index].then_some(cgroup_idle[index]),
            idle_ratio: runtimes[index]
                .then(|| crate::chains::ratio(cgroup_idle[index], cpu_ns))
                .flatten(),
            wait: wait.summary(),
            turnaround: turnaround.summary(),
            voluntary_switches: members.iter().map(|r| r.voluntary_switches).sum(),
            involuntary_switches: members.iter().map(|r| r.involuntary_switches).sum(),
            migrations: members.iter().map(|r| r.migrations).sum(),
        });
    }

    let cpus: Vec<CpuReport> = (0..nr_cpus as usize)
        .map(|c| {
            let busy = outcome.cpu_busy_ns[c].min(duration);
            let task = outcome.cpu_task_ns[c].min(busy);
            CpuReport {
                cpu: c as u32,
                busy_ns: busy,
                task_ns: task,
                overhead_ns: busy - task,
                idle_ns: duration - busy,
                utilisation: share(busy, duration),
            }
        })
        .collect();

    let mut all_waits = Histogram::default();
    outcome
        .records
        .iter()
        .for_each(|r| all_waits.merge(&r.wait));
    let busy: Time = cpus.iter().map(|c| c.busy_ns).sum();
    let totals = Totals {
        cpu_ns: outcome.records.iter().map(|r| r.cpu_ns).sum(),
        spin_ns: outcome.records.iter().map(|r| r.spin_ns).sum(),
        overhead_ns: cpus.iter().map(|c| c.overhead_ns).sum(),
        idle_ns: cpus.iter().map(|c| c.idle_ns).sum(),
        utilisation: share(busy, duration * nr_cpus as Time),
        wait: all_waits.summary(),
        voluntary_switches: outcome.records.iter().map(|r| r.voluntary_switches).sum(),
        involuntary_switches: outcome.records.iter().map(|r| r.involuntary_switches).sum(),
        migrations: outcome.records.iter().map(|r| r.migrations).sum(),
    };

    let normalised: Vec<f64> = outcome
        .records
        .iter()
        .filter(|r| !r.dynamic)
        .map(|r| r.cpu_ns as f64 / r.weight.max(1) as f64)
        .collect();

    let chains = (!outcome.chains.is_empty()).then(|| {
        let all: Vec<_> = outcome.chains.iter().collect();
        ChainsReport {
            all: chain_report("all", &all, &cgroup_cpu, &cgroup_idle, duration),
            chains: all
                .iter()
                .map(|c| chain_report(&c.name, &[c], &cgroup_cpu, &cgroup_idle, duration))
                .collect(),
        }
    });

    RunReport {
        policy: outcome.policy.clone(),
        duration_ns: duration,
        events: outcome.events,
        tasks_started: outcome.tasks_started,
        tasks_alive_at_end: outcome.tasks_alive_at_end,
        totals,
        fairness: Fairness {
            jain_index: jain_index(&normalised),
            tasks: normalised.len(),
        },
        tasks,
        cgroups,
        cpus,
        chains,
        mechanism: outcome.mechanism.clone(),
    }
}

/// Version of the report's JSON (`report.json`, `upsched sim --json`): raised when a field
/// changes meaning or goes away (new fields keep it).
pub const FORMAT_VERSION: u32 = 1;

pub fn report(scenario: &Scenario, seed: u64, runs: Vec<RunReport>) -> Report {
    let topo = &scenario.machine.topology;
    Report {
        format_version: FORMAT_VERSION,
        scenario: scenario.name.clone(),
        seed,
        machine: MachineReport {
            cpus: topo.nr_cpus,
            smt: topo.smt,
            llc_cpus: topo.llc_size,
            numa_nodes: topo.numa_nodes,
            tick_ns: scenario.machine.tick,
            costs_ns: scenario.machine.costs.clone(),
        },
        runs,
    }
}

fn d(ns: Time) -> String {
    format_duration(ns)
}

/// Human-readable summary of one run.
pub fn text_summary(run: &RunReport, max_rows: usize) -> String {
    let mut out = String::new();
    let t = &run.totals;
    let _ = writeln!(
        out,
        "policy {}: {} simulated, {} events, {} tasks started; CPU utilisation {:.1}%, overhead {}, spin {}, fairness (Jain) {}",
        run.policy,
        d(run.duration_ns),
        run.events,
        run.tasks_started,
        t.utilisation * 100.0,
        d(t.overhead_ns),
        d(t.spin_ns),
        run.fairness
            .jain_index
            .map(|j| format!("{j:.4}"))
            .unwrap_or_else(|| "-".into()),
    );
    let _ = writeln!(
        out,
        "  runnable wait: mean {} p50 {} p90 {} p99 {} max {} ({} samples); switches {} voluntary, {} involuntary; {} migrations",
        d(t.wait.mean_ns as Time),
        d(t.wait.p50_ns),
        d(t.wait.p90_ns),
        d(t.wait.p99_ns),
        d(t.wait.max_ns),
        t.wait.count,
        t.voluntary_switches,
        t.involuntary_switches,
        t.migrations,
    );
    let _ = writeln!(
        out,
        "  {:<24} {:<14} {:>6} {:>5} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8} {:>6}",
        "task",
        "cgroup",
        "weight",
        "inst",
        "cpu%",
        "spin",
        "wait p50",
        "wait p99",
        "wait max",
        "turnaround",
        "vol cs",
        "invol cs",
        "migr"
    );
    for task in run.tasks.iter().take(max_rows) {
        let _ = writeln!(
            out,
            "  {:<24} {:<14} {:>6} {:>5} {:>8.2} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8} {:>6}",
            truncate(&task.name, 24),
            truncate(&task.cgroup, 14),
            task.weight,
            task.instances,
            task.cpu_share * 100.0,
            d(task.spin_ns),
            d(task.wait.p50_ns),
            d(task.wait.p99_ns),
            d(task.wait.max_ns),
            if task.turnaround.count > 0 {
                d(task.turnaround.mean_ns as Time)
            } else {
                "-".into()
            },
            task.voluntary_switches,
            task.involuntary_switches,
            task.migrations,
        );
    }
    if run.tasks.len() > max_rows {
        let _ = writeln!(
            out,
            "  ... {} more tasks (see --json or the CSV)",
            run.tasks.len() - max_rows
        );
    }
    if run.cgroups.len() > 1 {
        let _ = writeln!(
            out,
            "  {:<24} {:>8} {:>10} {:>10} {:>10} {:>10}",
            "cgroup", "cpu%", "spin", "wait p50", "wait p99", "wait max"
        );
        for g in &run.cgroups {
            let _ = writeln!(
                out,
                "  {:<24} {:>8.2} {:>10} {:>10} {:>10} {:>10}",
                truncate(&g.cgroup, 24),
                g.cpu_share * 100.0,
                d(g.spin_ns),
                d(g.wait.p50_ns),
                d(g.wait.p99_ns),
                d(g.wait.max_ns),
            );
        }
    }
    if let Some(mechanism) = &run.mechanism {
        out.push_str(&mechanism.text_table());
    }
    if let Some(chains) = &run.chains {
        let _ = writeln!(
            out,
            "  {:<24} {:>8} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10} {:>7}",
            "chain",
            "arrived",
            "completed",
            "per s",
            "e2e p50",
            "e2e p90",
            "e2e p99",
            "e2e max",
            "idle%"
        );
        for c in chains.chains.iter().take(max_rows).chain([&chains.all]) {
            let _ = writeln!(
                out,
                "  {:<24} {:>8} {:>9} {:>9.2} {:>10} {:>10} {:>10} {:>10} {:>7}",
                truncate(&c.name, 24),
                c.arrivals,
                c.completed,
                c.throughput_per_s,
                d(c.latency.p50_ns),
                d(c.latency.p90_ns),
                d(c.latency.p99_ns),
                d(c.latency.max_ns),
                c.idle_ratio
                    .map(|r| format!("{:.2}", r * 100.0))
                    .unwrap_or_else(|| "-".into()),
            );
        }
    }
    let utils: Vec<String> = run
        .cpus
        .iter()
        .take(32)
        .map(|c| format!("{:.0}", c.utilisation * 100.0))
        .collect();
    let _ = writeln!(
        out,
        "  CPU utilisation %: {}{}",
        utils.join(" "),
        if run.cpus.len() > 32 { " ..." } else { "" }
    );
    out
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}~", s.chars().take(n - 1).collect::<String>())
    }
}

/// One CSV row per task record.
pub fn tasks_csv(run: &RunReport) -> String {
    let mut out = String::from(
        "policy,task,cgroup,weight,nice,spawned,instances,exited,cpu_ns,cpu_share,spin_ns,wait_count,wait_mean_ns,wait_p50_ns,wait_p90_ns,wait_p99_ns,wait_max_ns,turnaround_count,turnaround_mean_ns,turnaround_p50_ns,turnaround_p99_ns,turnaround_max_ns,voluntary_switches,involuntary_switches,migrations,wakeups\n",
    );
    for t in &run.tasks {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{:.6},{},{},{:.1},{},{},{},{},{},{:.1},{},{},{},{},{},{},{}",
            csv_field(&run.policy),
            csv_field(&t.name),
            csv_field(&t.cgroup),
            t.weight,
            t.nice,
            t.spawned,
            t.instances,
            t.exited,
            t.cpu_ns,
            t.cpu_share,
            t.spin_ns,
            t.wait.count,
            t.wait.mean_ns,
            t.wait.p50_ns,
            t.wait.p90_ns,
            t.wait.p99_ns,
            t.wait.max_ns,
            t.turnaround.count,
            t.turnaround.mean_ns,
            t.turnaround.p50_ns,
            t.turnaround.p99_ns,
            t.turnaround.max_ns,
            t.voluntary_switches,
            t.involuntary_switches,
            t.migrations,
            t.wakeups,
        );
    }
    out
}

/// One CSV row per chain, then one for all chains together (`all`); empty without chains.
pub fn chains_csv(run: &RunReport) -> String {
    let mut out = String::from(
        "policy,chain,arrivals,completed,throughput_per_s,latency_mean_ns,latency_p50_ns,latency_p90_ns,latency_p99_ns,latency_max_ns,cpu_ns,idle_ns,idle_ratio\n",
    );
    let Some(chains) = &run.chains else {
        return out;
    };
    for c in chains.chains.iter().chain([&chains.all]) {
        let _ = writeln!(
            out,
            "{},{},{},{},{:.6},{:.1},{},{},{},{},{},{},{}",
            csv_field(&run.policy),
            csv_field(&c.name),
            c.arrivals,
            c.completed,
            c.throughput_per_s,
            c.latency.mean_ns,
            c.latency.p50_ns,
            c.latency.p90_ns,
            c.latency.p99_ns,
            c.latency.max_ns,
            c.cpu_ns,
            c.idle_ns,
            c.idle_ratio.map(|r| format!("{r:.6}")).unwrap_or_default(),
        );
    }
    out
}

pub(crate) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jain_index_bounds() {
        assert_eq!(jain_index(&[1.0, 1.0, 1.0]), Some(1.0));
        assert!((jain_index(&[1.0, 0.0, 0.0]).unwrap() - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(jain_index(&[]), None);
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }
}
