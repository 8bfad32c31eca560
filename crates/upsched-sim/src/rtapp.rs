//! Import of rt-app JSON workloads (the common subset).
//!
//! Mapped: `tasks.NAME.{instance, loop, priority (nice of SCHED_OTHER tasks), cpus, delay,
//! taskgroup, phases}`; events `run`/`runtime` (CPU for the given µs), `sleep`, `timer`
//! (`period` in µs, periodic activation; each task has its own timer whatever its `ref`),
//! `suspend`/`resume` (block on / signal an event of that name), `yield`, `fork` (start an
//! instance of another task, usually one with `instance: 0`); `global.duration` (seconds).
//! rt-app matches event keys by prefix, so `run0`, `sleep1` are `run`, `sleep`.
//! Ignored, with a warning each: scheduling classes and their parameters (`policy`,
//! `dl-runtime`, ...), locks, barriers, memory and I/O events, and every other global key.

use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};

use crate::machine::{Costs, CpuMask, Machine, Topology};
use crate::rng::Dist;
use crate::scenario::*;
use crate::toml_scenario::ScenarioError;
use crate::units::{MS, S, Time, US};

/// A JSON value whose objects keep their key order (rt-app events run in file order).
#[derive(Clone, Debug, PartialEq)]
enum J {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl<'de> Deserialize<'de> for J {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = J;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<J, E> {
                Ok(J::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<J, E> {
                Ok(J::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<J, E> {
                Ok(J::Num(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<J, E> {
                Ok(J::Num(v as f64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<J, E> {
                Ok(J::Num(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<J, E> {
                Ok(J::Str(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<J, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element()? {
                    out.push(v);
                }
                Ok(J::Arr(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<J, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, J>()? {
                    out.push((k, v));
                }
                Ok(J::Obj(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl J {
    fn get(&self, key: &str) -> Option<&J> {
        match self {
            J::Obj(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    fn num(&self) -> Option<f64> {
        match self {
            J::Num(n) => Some(*n),
            _ => None,
        }
    }
}

/// What the JSON file does not say.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// CPUs of the machine (default: enough for every `cpus` list, at least 4).
    pub nr_cpus: Option<u32>,
    /// Used when `global.duration` is missing or -1.
    pub default_duration: Time,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            nr_cpus: None,
            default_duration: 10 * S,
        }
    }
}

/// Which rt-app event a key is, by prefix as rt-app matches it.
fn event_kind(key: &str) -> &str {
    const KINDS: [&str; 20] = [
        "runtime", "run", "sleep", "timer", "suspend", "resume", "yield", "fork", "lock", "unlock",
        "wait", "signal", "broad", "sync", "barrier", "mem", "iorun", "delay", "sem_post",
        "sem_wait",
    ];
    KINDS
        .iter()
        .find(|k| key.starts_with(**k))
        .copied()
        .unwrap_or(key)
}

const TASK_KEYS: [&str; 8] = [
    "instance",
    "loop",
    "priority",
    "policy",
    "cpus",
    "delay",
    "taskgroup",
    "phases",
];

/// Converts an rt-app JSON file into a scenario.
pub fn import(text: &str, file: &str, opts: &ImportOptions) -> Result<Scenario, ScenarioError> {
    let fail = |line: Option<usize>, message: String| ScenarioError {
        file: file.to_string(),
        line,
        message,
    };
    let root: J = serde_json::from_str(text).map_err(|e| fail(Some(e.line()), e.to_string()))?;
    let Some(J::Obj(tasks)) = root.get("tasks") else {
        return Err(fail(None, "rt-app: no \"tasks\" object".into()));
    };
    let mut warnings = Vec::new();

    let mut duration = opts.default_duration;
    if let Some(J::Obj(global)) = root.get("global") {
        for (k, v) in global {
            match k.as_str() {
                "duration" => match v.num() {
                    Some(d) if d > 0.0 => duration = (d * S as f64) as Time,
                    Some(_) => {}
                    None => {
                        return Err(fail(
                            None,
                            "rt-app: global.duration must be a number of seconds".into(),
                        ));
                    }
                },
                other => warnings.push(format!("global.{other} ignored")),
            }
        }
    }

    // Task names and the highest CPU mentioned come first: fork and affinity refer to them.
    let names: Vec<String> = tasks.iter().map(|(n, _)| n.clone()).collect();
    let mut max_cpu = 0u32;
    for (_, t) in tasks {
        if let Some(J::Arr(cpus)) = t.get("cpus") {
            for c in cpus {
                max_cpu = max_cpu.max(c.num().unwrap_or(0.0).max(0.0) as u32);
            }
        }
    }
    let nr_cpus = opts.nr_cpus.unwrap_or((max_cpu + 1).max(4));
    if max_cpu >= nr_cpus {
        return Err(fail(
            None,
            format!("rt-app: a task uses CPU {max_cpu}, but the machine has {nr_cpus} CPUs"),
        ));
    }

    let mut events: Vec<EventSpec> = Vec::new();
    let event_id = |name: &str, events: &mut Vec<EventSpec>| -> EventId {
        match events.iter().position(|e| e.name == name) {
            Some(i) => i as EventId,
            None => {
                events.push(EventSpec {
                    name: name.to_string(),
                    kind: EventKind::Counter,
                    initial: 0,
                    notify: false,
                });
                (events.len() - 1) as EventId
            }
        }
    };

    let us = |v: &J, what: &str, task: &str| -> Result<Time, ScenarioError> {
        match v.num() {
            Some(n) if n >= 0.0 && n.is_finite() => Ok((n * US as f64).round() as Time),
            _ => Err(fail(
                None,
                format!("rt-app: task {task:?}: {what} must be a number of microseconds >= 0"),
            )),
        }
    };
    let loop_count = |v: Option<&J>, task: &str| -> Result<u64, ScenarioError> {
        match v.map(|v| v.num()) {
            None => Ok(FOREVER),
            Some(Some(n)) if n < 0.0 => Ok(FOREVER),
            Some(Some(n)) => Ok(n as u64),
            Some(None) => Err(fail(
                None,
                format!("rt-app: task {task:?}: loop must be a number"),
            )),
        }
    };

    let mut cgroups = vec!["/".to_string()];
    let mut cpusets = vec![CpuMask::full(nr_cpus)];
    let mut specs = Vec::new();
    for (name, t) in tasks {
        let J::Obj(entries) = t else {
            return Err(fail(
                None,
                format!("rt-app: task {name:?} is not an object"),
            ));
        };
        let mut nice = 0;
        let policy = match t.get("policy") {
            Some(J::Str(p)) => p.clone(),
            _ => "SCHED_OTHER".into(),
        };
        if policy != "SCHED_OTHER" {
            warnings.push(format!(
                "task {name:?}: policy {policy} simulated as a normal task of the chosen policy"
            ));
        }
        if let Some(p) = t.get("priority").and_then(J::num) {
            if policy == "SCHED_OTHER" {
                nice = (p as i32).clamp(-20, 19);
            } else {
                warnings.push(format!("task {name:?}: priority of {policy} ignored"));
            }
        }
        let affinity = match t.get("cpus") {
            Some(J::Arr(list)) => {
                let mut mask = CpuMask::empty(nr_cpus);
                list.iter()
                    .filter_map(J::num)
                    .for_each(|c| mask.set(c.max(0.0) as u32));
                if mask.is_empty() {
                    return Err(fail(
                        None,
                        format!("rt-app: task {name:?}: empty cpus list"),
                    ));
                }
                match cpusets.iter().position(|m| *m == mask) {
                    Some(i) => i as u32,
                    None => {
                        cpusets.push(mask);
                        (cpusets.len() - 1) as u32
                    }
                }
            }
            Some(_) => {
                return Err(fail(
                    None,
                    format!("rt-app: task {name:?}: cpus must be a list of CPU numbers"),
                ));
            }
            None => 0,
        };
        let cgroup = match t.get("taskgroup") {
            Some(J::Str(path)) if path.starts_with('/') => {
                match cgroups.iter().position(|c| c == path) {
                    Some(i) => i as u32,
                    None => {
                        cgroups.push(path.clone());
                        (cgroups.len() - 1) as u32
                    }
                }
            }
            Some(_) => {
                return Err(fail(
                    None,
                    format!("rt-app: task {name:?}: taskgroup must be an absolute path"),
                ));
            }
            None => 0,
        };
        let start = match t.get("delay") {
            Some(v) => us(v, "delay", name)?,
            None => 0,
        };
        let count = match t.get("instance").map(J::num) {
            None => 1,
            Some(Some(n)) if (0.0..=MAX_TASK_COUNT as f64).contains(&n) => n as u32,
            _ => {
                return Err(fail(
                    None,
                    format!("rt-app: task {name:?}: instance must be a number 0-{MAX_TASK_COUNT}"),
                ));
            }
        };

        // Phases (each looped), or the task's own events as one phase.
        let phases: Vec<(String, &Vec<(String, J)>)> = match t.get("phases") {
            Some(J::Obj(phases)) => phases
                .iter()
                .map(|(pname, p)| match p {
                    J::Obj(e) => Ok((pname.clone(), e)),
                    _ => Err(fail(
                        None,
                        format!("rt-app: task {name:?}: phase {pname:?} is not an object"),
                    )),
                })
                .collect::<Result<_, _>>()?,
            _ => vec![(String::new(), entries)],
        };
        let mut body = Vec::new();
        for (pname, phase_entries) in &phases {
            let mut steps = Vec::new();
            for (key, value) in phase_entries.iter() {
                if pname.is_empty() && TASK_KEYS.contains(&key.as_str()) {
                    continue;
                }
                if !pname.is_empty() && key == "loop" {
                    continue;
                }
                let step = match event_kind(key) {
                    "run" | "runtime" => Some(Op::Run(Dist::Fixed(us(value, key, name)?))),
                    "sleep" => Some(Op::Sleep(Dist::Fixed(us(value, key, name)?))),
                    "timer" => match value.get("period") {
                        Some(p) => {
                            let period = us(p, "timer.period", name)?;
                            if period == 0 {
                                return Err(fail(
                                    None,
                                    format!("rt-app: task {name:?}: timer.period must be > 0"),
                                ));
                            }
                            Some(Op::Timer(period))
                        }
                        None => {
                            return Err(fail(
                                None,
                                format!("rt-app: task {name:?}: timer needs a period"),
                            ));
                        }
                    },
                    "suspend" | "resume" => {
                        let J::Str(ev) = value else {
                            return Err(fail(
                                None,
                                format!("rt-app: task {name:?}: {key} needs an event name"),
                            ));
                        };
                        let id = event_id(ev, &mut events);
                        Some(if event_kind(key) == "suspend" {
                            Op::Block(id)
                        } else {
                            Op::Signal {
                                event: id,
                                count: 1,
                            }
                        })
                    }
                    "yield" => Some(Op::Yield),
                    "fork" => {
                        let J::Str(child) = value else {
                            return Err(fail(
                                None,
                                format!("rt-app: task {name:?}: fork needs a task name"),
                            ));
                        };
                        match names.iter().position(|n| n == child) {
                            Some(i) => Some(Op::Fork(i as SpecId)),
                            None => {
                                return Err(fail(
                                    None,
                                    format!(
                                        "rt-app: task {name:?}: fork of unknown task {child:?}"
                                    ),
                                ));
                            }
                        }
                    }
                    _ => {
                        warnings.push(format!("task {name:?}: {key} ignored"));
                        None
                    }
                };
                steps.extend(step.map(Step::Op));
            }
            if pname.is_empty() {
                body.extend(steps);
            } else {
                let phase = phase_entries
                    .iter()
                    .find(|(k, _)| k == "loop")
                    .map(|(_, v)| v);
                let n = match phase.map(J::num) {
                    None => 1,
                    Some(Some(n)) if n < 0.0 => FOREVER,
                    Some(Some(n)) => n as u64,
                    Some(None) => {
                        return Err(fail(
                            None,
                            format!(
                                "rt-app: task {name:?}: phase {pname:?}: loop must be a number"
                            ),
                        ));
                    }
                };
                body.push(Step::Loop {
                    count: n,
                    body: steps,
                });
            }
        }
        let outer = loop_count(t.get("loop"), name)?;
        let program = compile_program(&[Step::Loop { count: outer, body }])
            .map_err(|e| fail(None, format!("rt-app: task {name:?}: {e}")))?;
        specs.push(TaskSpec {
            name: name.clone(),
            cgroup,
            nice,
            weight: nice_to_weight(nice),
            affinity,
            count,
            start,
            program,
        });
    }
    check_starts_something(&specs, &[]).map_err(|e| fail(None, format!("rt-app: {e}")))?;
    let topology = Topology::new(nr_cpus, 1, nr_cpus, 1).map_err(|e| fail(None, e))?;
    warnings.sort();
    warnings.dedup();
    Ok(Scenario {
        name: file
            .rsplit('/')
            .next()
            .unwrap_or(file)
            .trim_end_matches(".json")
            .to_string(),
        description: "imported from rt-app JSON".into(),
        duration,
        seed: 1,
        policies: vec!["linux-eevdf".into()],
        machine: Machine {
            topology,
            costs: Costs::default(),
            tick: 4 * MS,
        },
        events,
        tasks: specs,
        cgroups,
        cpusets,
        arrivals: Vec::new(),
        params: SchedParams::default(),
        chains: Vec::new(),
        warnings,
        tenants: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
  "global": { "duration": 2, "calibration": "CPU0", "default_policy": "SCHED_OTHER" },
  "tasks": {
    "periodic": { "instance": 2, "loop": -1, "priority": 5, "cpus": [0, 1],
                  "run": 2000, "timer": { "ref": "t", "period": 10000 } },
    "waker": { "loop": 3, "run0": 100, "resume": "go", "sleep": 1000, "lock": "m" },
    "phased": { "phases": { "p1": { "loop": 2, "run": 500, "suspend": "go" }, "p2": { "sleep": 300 } } }
  }
}"#;

    #[test]
    fn rt_app_subset_maps_to_programs() {
        let s = import(SAMPLE, "sample.json", &ImportOptions::default()).unwrap();
        assert_eq!(s.duration, 2 * S);
        assert_eq!(s.machine.nr_cpus(), 4);
        let periodic = &s.tasks[0];
        assert_eq!(periodic.count, 2);
        assert_eq!(periodic.nice, 5);
        assert_eq!(s.cpusets[periodic.affinity as usize].to_list(), "0-1");
        assert_eq!(
            periodic.program,
            vec![
                Op::LoopBegin {
                    count: FOREVER,
                    end: 3
                },
                Op::Run(Dist::Fixed(2 * MS)),
                Op::Timer(10 * MS),
                Op::LoopEnd { begin: 0 },
            ]
        );
        let waker = &s.tasks[1];
        assert_eq!(waker.program[1], Op::Run(Dist::Fixed(100 * US)));
        assert_eq!(waker.program[2], Op::Signal { event: 0, count: 1 });
        assert!(
            s.warnings.iter().any(|w| w.contains("lock")),
            "{:?}",
            s.warnings
        );
        assert!(s.warnings.iter().any(|w| w.contains("calibration")));
        let phased = &s.tasks[2];
        assert_eq!(phased.program[1], Op::LoopBegin { count: 2, end: 4 });
        assert_eq!(phased.program[3], Op::Block(0));
        assert_eq!(s.tasks.len(), 3);
    }

    #[test]
    fn bad_rt_app_files_are_refused_with_a_reason() {
        let e = import(
            "{ \"tasks\": { \"a\": { \"run\": -5 } } }",
            "x.json",
            &ImportOptions::default(),
        )
        .unwrap_err();
        assert!(e.message.contains("microseconds"), "{e}");
        let e = import("{\n\"tasks\": [\n}", "x.json", &ImportOptions::default()).unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        let e = import(
            "{ \"tasks\": { \"a\": { \"loop\": -1, \"lock\": \"m\" } } }",
            "x.json",
            &ImportOptions::default(),
        )
        .unwrap_err();
        assert!(e.message.contains("forever"), "{e}");
    }
}
