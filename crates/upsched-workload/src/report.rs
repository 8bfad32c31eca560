//! The JSON report of `run` (documented in the crate's README.md), and how it is computed from
//! what the tasks left behind.

use serde::{Deserialize, Serialize};

use crate::spec::{Kind, Spec};
use crate::stats::{self, Latency, Samples, round3};

/// Identifies the report format; bumped on incompatible changes.
pub const FORMAT: &str = "upsched-workload-report/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub format: String,
    pub name: Option<String>,
    /// Every task finished or was stopped by the run as planned (see `TaskStatus`).
    pub ok: bool,
    pub cpus_online: u32,
    /// From the start of the run (all tasks released at once) to its end.
    pub wall_ms: f64,
    pub stopped_by: StoppedBy,
    pub cgroup_root: Option<String>,
    /// Sum of the groups' `cpu_usec`.
    pub total_cpu_usec: u64,
    pub groups: Vec<GroupReport>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoppedBy {
    /// `duration_ms` elapsed.
    Duration,
    /// Every foreground task finished its fixed work.
    WorkDone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuSource {
    /// Delta of `usage_usec` in the group's cgroup `cpu.stat` over the run.
    Cgroup,
    /// Sum of the tasks' user+system time from `wait4` (rusage).
    Tasks,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Did its fixed work; a command exited with status 0.
    Finished,
    /// Was still working at the end of the run and stopped when told to.
    Stopped,
    /// A command exited with a non-zero status (`exit_code`).
    Exited,
    /// Did not stop within `grace_ms` and was killed (its counters are missing).
    Killed,
    /// Died on its own (a signal we did not send, or a worker error: see `error`).
    Crashed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Initiator,
    Responder,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinishTimes {
    pub first_ms: f64,
    pub last_ms: f64,
    pub mean_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupReport {
    pub name: String,
    pub kind: Kind,
    /// Absolute cgroup directory, or null when the group ran in the current cgroup.
    pub cgroup: Option<String>,
    pub tasks: u64,
    pub nice: Option<i32>,
    /// CPU time of the group during the run (see `cpu_source`).
    pub cpu_usec: u64,
    pub cpu_source: CpuSource,
    /// Sum of the tasks' own CPU time (rusage), whatever `cpu_source` is.
    pub tasks_cpu_usec: u64,
    /// `cpu_usec` / total over all groups (0..1).
    pub cpu_share: f64,
    /// Tasks with status `finished`.
    pub finished_tasks: u64,
    /// Finish times (ms since the start) of the finished tasks; null if none finished.
    pub finish_ms: Option<FinishTimes>,
    /// hog: iterations; sleeper: cycles; pingpong: round trips (initiators); exec: 0.
    pub work: u64,
    /// `work` per second of `wall_ms`.
    pub work_per_sec: f64,
    /// sleeper: wake-up latency (actual minus requested sleep); pingpong: round-trip time;
    /// null for hog and exec.
    pub latency_us: Option<Latency>,
    pub task_results: Vec<TaskReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskReport {
    pub index: u64,
    pub pid: i32,
    /// pingpong only.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub role: Option<Role>,
    pub status: TaskStatus,
    pub cpu_usec: u64,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    /// ms since the start when it finished (status `finished` only).
    pub finish_ms: Option<f64>,
    pub work: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub signal: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub output: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

/// What the run collected about one task, before summarising.
#[derive(Debug, Clone)]
pub struct TaskRaw {
    pub group: usize,
    pub index: u64,
    pub pid: i32,
    pub role: Option<Role>,
    pub status: TaskStatus,
    pub cpu_usec: u64,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    /// ns since the start, for finished tasks.
    pub finish_ns: Option<u64>,
    pub work: u64,
    pub samples: Samples,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub output: Option<String>,
    pub error: Option<String>,
}

/// What the run collected about one group.
#[derive(Debug, Clone, Default)]
pub struct GroupRaw {
    pub cgroup: Option<String>,
    /// cgroup `usage_usec` delta, when the cgroup is the group's own and was readable.
    pub cgroup_usage_usec: Option<u64>,
}

/// Computes the report.
pub fn build(
    spec: &Spec,
    groups: &[GroupRaw],
    tasks: &[TaskRaw],
    wall_ns: u64,
    stopped_by: StoppedBy,
    cpus_online: u32,
) -> Report {
    let wall_s = wall_ns as f64 / 1e9;
    let mut reports: Vec<GroupReport> = spec
        .groups
        .iter()
        .enumerate()
        .map(|(gi, g)| {
            let mine: Vec<&TaskRaw> = tasks.iter().filter(|t| t.group == gi).collect();
            let tasks_cpu_usec = mine.iter().map(|t| t.cpu_usec).sum();
            let raw = groups.get(gi).cloned().unwrap_or_default();
            let (cpu_usec, cpu_source) = match raw.cgroup_usage_usec {
                Some(usage) => (usage, CpuSource::Cgroup),
                None => (tasks_cpu_usec, CpuSource::Tasks),
            };
            let finishes: Vec<u64> = mine
                .iter()
                .filter(|t| t.status == TaskStatus::Finished)
                .filter_map(|t| t.finish_ns)
                .collect();
            let finish_ms = (!finishes.is_empty()).then(|| FinishTimes {
                first_ms: ms(*finishes.iter().min().unwrap_or(&0)),
                last_ms: ms(*finishes.iter().max().unwrap_or(&0)),
                mean_ms: round3(
                    finishes.iter().map(|&f| f as f64).sum::<f64>() / finishes.len() as f64 / 1e6,
                ),
            });
            // Responders echo the initiators' round trips; count each round trip once.
            let work: u64 = mine
                .iter()
                .filter(|t| t.role != Some(Role::Responder))
                .map(|t| t.work)
                .sum();
            let latency_us = match g.kind {
                Kind::Sleeper | Kind::Pingpong => stats::summarize(mine.iter().map(|t| &t.samples)),
                Kind::Hog | Kind::Exec => None,
            };
            GroupReport {
                name: g.name.clone(),
                kind: g.kind,
                cgroup: raw.cgroup,
                tasks: g.task_count(),
                nice: g.nice,
                cpu_usec,
                cpu_source,
                tasks_cpu_usec,
                cpu_share: 0.0,
                finished_tasks: mine
                    .iter()
                    .filter(|t| t.status == TaskStatus::Finished)
                    .count() as u64,
                finish_ms,
                work,
                work_per_sec: if wall_s > 0.0 {
                    round3(work as f64 / wall_s)
                } else {
                    0.0
                },
                latency_us,
                task_results: mine.iter().map(|t| task_report(t)).collect(),
            }
        })
        .collect();
    let total_cpu_usec: u64 = reports.iter().map(|g| g.cpu_usec).sum();
    for g in &mut reports {
        g.cpu_share = if total_cpu_usec > 0 {
            (g.cpu_usec as f64 / total_cpu_usec as f64 * 1e4).round() / 1e4
        } else {
            0.0
        };
    }
    let ok = tasks
        .iter()
        .all(|t| matches!(t.status, TaskStatus::Finished | TaskStatus::Stopped));
    Report {
        format: FORMAT.to_string(),
        name: spec.name.clone(),
        ok,
        cpus_online,
        wall_ms: ms(wall_ns),
        stopped_by,
        cgroup_root: spec
            .groups
            .iter()
            .any(|g| g.cgroup.is_some())
            .then(|| spec.cgroup_root.clone()),
        total_cpu_usec,
        groups: reports,
    }
}

fn ms(ns: u64) -> f64 {
    round3(ns as f64 / 1e6)
}

fn task_report(t: &TaskRaw) -> TaskReport {
    TaskReport {
        index: t.index,
        pid: t.pid,
        role: t.role,
        status: t.status,
        cpu_usec: t.cpu_usec,
        voluntary_switches: t.voluntary_switches,
        involuntary_switches: t.involuntary_switches,
        finish_ms: t
            .finish_ns
            .filter(|_| t.status == TaskStatus::Finished)
            .map(ms),
        work: t.work,
        exit_code: t.exit_code,
        signal: t.signal,
        output: t.output.clone(),
        error: t.error.clone(),
    }
}

/// Flattens JSON into `path=value` lines (`groups.0.cpu_share=0.25`; group entries are also
/// addressed by name: `group.hi.cpu_share=0.25`), for busybox shell scenarios that have no
/// JSON parser but do have grep, cut and awk.
pub fn to_key_values(report: &Report) -> String {
    let mut value = serde_json::to_value(report).unwrap_or(serde_json::Value::Null);
    // Address groups by name rather than by position.
    if let Some(groups) = value.get_mut("groups").map(serde_json::Value::take)
        && let serde_json::Value::Array(groups) = groups
        && let Some(object) = value.as_object_mut()
    {
        let mut by_name = serde_json::Map::new();
        for group in groups {
            let name = group
                .get("name")
                .and_then(|n| n.as_str())
                .unwrap_or("?")
                .to_string();
            by_name.insert(name, group);
        }
        object.remove("groups");
        object.insert("group".into(), serde_json::Value::Object(by_name));
    }
    let mut out = String::new();
    flatten("", &value, &mut out);
    out
}

fn flatten(prefix: &str, value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match value {
        Value::Object(map) => map.iter().for_each(|(k, v)| flatten(&key(k), v, out)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, v)| flatten(&key(&i.to_string()), v, out)),
        Value::String(s) => out.push_str(&format!("{prefix}={}\n", s.replace('\n', "\\n"))),
        other => out.push_str(&format!("{prefix}={other}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec;

    fn raw(group: usize, index: u64, cpu_usec: u64, finish_ms: Option<u64>) -> TaskRaw {
        TaskRaw {
            group,
            index,
            pid: 100 + index as i32,
            role: None,
            status: if finish_ms.is_some() {
                TaskStatus::Finished
            } else {
                TaskStatus::Stopped
            },
            cpu_usec,
            voluntary_switches: 0,
            involuntary_switches: 3,
            finish_ns: finish_ms.map(|m| m * 1_000_000),
            work: 10,
            samples: Samples::new(),
            exit_code: None,
            signal: None,
            output: None,
            error: None,
        }
    }

    #[test]
    fn shares_finish_times_and_sources() {
        let spec = spec::parse(
            r#"{"groups": [
                {"name": "hi", "kind": "hog", "tasks": 2, "iterations": 10, "cgroup": "t/hi"},
                {"name": "lo", "kind": "hog", "iterations": 10},
                {"name": "s", "kind": "sleeper", "sleep_us": 100, "background": true}
            ]}"#,
        )
        .unwrap();
        let groups = [
            GroupRaw {
                cgroup: Some("/sys/fs/cgroup/t/hi".into()),
                cgroup_usage_usec: Some(3000),
            },
            GroupRaw::default(),
            GroupRaw::default(),
        ];
        let mut sleeper = raw(2, 0, 0, None);
        for ns in [1000, 3000, 2000] {
            sleeper.samples.push(ns);
        }
        let tasks = [
            raw(0, 0, 1400, Some(100)),
            raw(0, 1, 1500, Some(300)),
            raw(1, 0, 1000, Some(500)),
            sleeper,
        ];
        let report = build(&spec, &groups, &tasks, 600_000_000, StoppedBy::WorkDone, 2);
        assert!(report.ok);
        assert_eq!(report.wall_ms, 600.0);
        assert_eq!(report.total_cpu_usec, 4000);
        assert_eq!(report.cgroup_root.as_deref(), Some("/sys/fs/cgroup"));
        let hi = &report.groups[0];
        assert_eq!(hi.cpu_source, CpuSource::Cgroup);
        assert_eq!((hi.cpu_usec, hi.tasks_cpu_usec), (3000, 2900));
        assert_eq!(hi.cpu_share, 0.75);
        let f = hi.finish_ms.as_ref().unwrap();
        assert_eq!((f.first_ms, f.last_ms, f.mean_ms), (100.0, 300.0, 200.0));
        assert_eq!(hi.work, 20);
        assert!(hi.latency_us.is_none());
        let lo = &report.groups[1];
        assert_eq!(
            (lo.cpu_source, lo.cpu_usec, lo.cpu_share),
            (CpuSource::Tasks, 1000, 0.25)
        );
        let s = &report.groups[2];
        assert!(s.finish_ms.is_none());
        assert_eq!(s.task_results[0].finish_ms, None);
        let lat = s.latency_us.as_ref().unwrap();
        assert_eq!((lat.count, lat.p50_us, lat.max_us), (3, 2.0, 3.0));

        // The JSON names exactly what the README documents and parses back.
        let json = serde_json::to_string(&report).unwrap();
        assert!(json.contains(r#""stopped_by":"work_done""#), "{json}");
        assert!(json.contains(r#""cpu_source":"cgroup""#), "{json}");
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);

        let kv = to_key_values(&report);
        assert!(kv.contains("group.hi.cpu_share=0.75\n"), "{kv}");
        assert!(kv.contains("group.s.latency_us.p50_us=2.0\n"), "{kv}");
        assert!(kv.contains("stopped_by=work_done\n"), "{kv}");
    }

    #[test]
    fn a_crashed_task_makes_the_report_not_ok() {
        let spec =
            spec::parse(r#"{"groups": [{"name": "h", "kind": "hog", "iterations": 1}]}"#).unwrap();
        let mut t = raw(0, 0, 0, None);
        t.status = TaskStatus::Crashed;
        let report = build(&spec, &[], &[t], 1, StoppedBy::WorkDone, 1);
        assert!(!report.ok);
        assert_eq!(report.groups[0].cpu_share, 0.0);
        assert_eq!(report.cgroup_root, None);
    }
}
