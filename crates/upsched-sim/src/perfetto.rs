//! A run's trace in the Chrome JSON trace format, which https://ui.perfetto.dev (and
//! chrome://tracing) opens: CPU tracks, one track per task grouped by cgroup, wake-up flows
//! and run-queue counters. The tracks are described in `docs/simulator.md`.
//!
//! Every event comes from the stints the run kept ([`RunOutcome::trace`], bounded by the run's
//! trace limit) and the waits still open at its end, so the file grows with the trace limit
//! and two runs with the same seed give the same bytes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::engine::{RunOutcome, Segment, Wait};
use crate::machine::CpuId;
use crate::scenario::Scenario;
use crate::units::Time;

/// The machine's process: the CPU tracks and the counters.
const MACHINE_PID: u32 = 0;

/// The process of cgroup `cgroup`'s tasks.
fn cgroup_pid(cgroup: u32) -> u32 {
    cgroup + 1
}

/// Thread ids are global in the format: a task's track is its pid, and the CPU tracks come
/// after the last pid the run gave out (pids are 1 to `tasks_started`).
fn cpu_tid(outcome: &RunOutcome, cpu: CpuId) -> u64 {
    outcome.tasks_started + 1 + cpu as u64
}

/// Microseconds with nanosecond decimals, the format's unit.
fn us(t: Time) -> String {
    format!("{}.{:03}", t / 1000, t % 1000)
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"?\"".into())
}

/// One task's track: its stints (indices into the trace, in time order) and its wait still
/// open at the end of the run.
#[derive(Default)]
struct TaskTrack {
    record: u32,
    stints: Vec<usize>,
    open_wait: Option<Wait>,
}

/// The flows of a run: for each stint that a running task's wake-up led to, the flow's id
/// and the waker's stint that made it runnable. A waker's stint the trace did not keep
/// leaves its wake-up without a flow.
struct Flows {
    /// Stint index of the wakee → flow id.
    into: BTreeMap<usize, u64>,
    /// Stint index of the waker → (wake-up time, flow id) in time order.
    out_of: BTreeMap<usize, Vec<(Time, u64)>>,
}

fn flows(trace: &[Segment], tracks: &BTreeMap<u32, TaskTrack>) -> Flows {
    let mut flows = Flows {
        into: BTreeMap::new(),
        out_of: BTreeMap::new(),
    };
    let mut next_id = 1;
    for (index, stint) in trace.iter().enumerate() {
        let Some(waker) = stint.wait.waker else {
            continue;
        };
        let at = stint.wait.since;
        let Some(track) = tracks.get(&waker) else {
            continue;
        };
        // The waker's stints are in time order and do not overlap.
        let first_ending = track.stints.partition_point(|&i| trace[i].end < at);
        let Some(&source) = track
            .stints
            .get(first_ending)
            .filter(|&&i| trace[i].exec <= at)
        else {
            continue;
        };
        flows.into.insert(index, next_id);
        flows.out_of.entry(source).or_default().push((at, next_id));
        next_id += 1;
    }
    for wakes in flows.out_of.values_mut() {
        wakes.sort_unstable();
    }
    flows
}

/// Runnable tasks over time, in all and per CPU queue: a sample at the start and at every
/// instant where a count changes, written after the tracks.
fn write_counters(out: &mut String, outcome: &RunOutcome, nr_cpus: u32) {
    let mut changes: Vec<(Time, CpuId, i64)> = Vec::new();
    for stint in &outcome.trace {
        if stint.wait.since < stint.dispatched {
            changes.push((stint.wait.since, stint.wait.queued_on, 1));
            changes.push((stint.dispatched, stint.wait.queued_on, -1));
        }
    }
    for open in &outcome.trace_open_waits {
        changes.push((open.wait.since, open.wait.queued_on, 1));
    }
    changes.sort_unstable();
    let mut per_cpu = vec![0i64; nr_cpus as usize];
    let mut shown = per_cpu.clone();
    let mut total = 0i64;
    let sample = |out: &mut String, ts: Time, name: &str, value: i64| {
        let _ = write!(
            out,
            ",\n{{\"ph\":\"C\",\"name\":{},\"pid\":{MACHINE_PID},\"ts\":{},\"args\":{{\"tasks\":{value}}}}}",
            json_string(name),
            us(ts)
        );
    };
    sample(out, 0, "runnable", 0);
    for cpu in 0..nr_cpus {
        sample(out, 0, &format!("CPU {cpu} queue"), 0);
    }
    let mut at = 0;
    while at < changes.len() {
        let ts = changes[at].0;
        let before = total;
        let same_instant = changes[at..].partition_point(|c| c.0 == ts);
        for &(_, cpu, delta) in &changes[at..at + same_instant] {
            per_cpu[cpu as usize] += delta;
            total += delta;
        }
        if total != before {
            sample(out, ts, "runnable", total);
        }
        for &(_, cpu, _) in &changes[at..at + same_instant] {
            let cpu = cpu as usize;
            if per_cpu[cpu] != shown[cpu] {
                shown[cpu] = per_cpu[cpu];
                sample(out, ts, &format!("CPU {cpu} queue"), per_cpu[cpu]);
            }
        }
        at += same_instant;
    }
}

/// The run's trace as Chrome JSON (see the module's documentation).
pub fn trace(outcome: &RunOutcome, scenario: &Scenario) -> String {
    let trace = &outcome.trace;
    let nr_cpus = scenario.machine.nr_cpus();
    let mut tracks: BTreeMap<u32, TaskTrack> = BTreeMap::new();
    for (index, stint) in trace.iter().enumerate() {
        let track = tracks.entry(stint.pid).or_default();
        track.record = stint.record;
        track.stints.push(index);
    }
    for open in &outcome.trace_open_waits {
        let track = tracks.entry(open.pid).or_default();
        track.record = open.record;
        track.open_wait = Some(open.wait);
    }
    let flows = flows(trace, &tracks);

    let mut out = String::with_capacity(trace.len() * 400 + tracks.len() * 100 + 1024);
    out.push_str("{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n");
    let _ = write!(
        out,
        "{{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":{MACHINE_PID},\"args\":{{\"name\":{}}}}}",
        json_string(&format!("{} ({})", scenario.name, outcome.policy))
    );
    for cpu in 0..nr_cpus {
        let _ = write!(
            out,
            ",\n{{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":{MACHINE_PID},\"tid\":{},\"args\":{{\"name\":\"CPU {cpu}\"}}}}",
            cpu_tid(outcome, cpu)
        );
    }
    let mut cgroups: Vec<u32> = tracks
        .values()
        .map(|t| outcome.records[t.record as usize].cgroup)
        .collect();
    cgroups.sort_unstable();
    cgroups.dedup();
    for cgroup in cgroups {
        let _ = write!(
            out,
            ",\n{{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":{},\"args\":{{\"name\":{}}}}}",
            cgroup_pid(cgroup),
            json_string(&scenario.cgroups[cgroup as usize])
        );
    }
    for (pid, track) in &tracks {
        let record = &outcome.records[track.record as usize];
        let _ = write!(
            out,
            ",\n{{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":{},\"tid\":{pid},\"args\":{{\"name\":{}}}}}",
            cgroup_pid(record.cgroup),
            json_string(&record.name)
        );
    }

    // CPU tracks: a slice per stint named after its task, and the switching cost before it.
    for s in trace {
        let tid = cpu_tid(outcome, s.cpu);
        if s.exec > s.dispatched {
            let _ = write!(
                out,
                ",\n{{\"ph\":\"X\",\"name\":\"switch\",\"cat\":\"overhead\",\"pid\":{MACHINE_PID},\"tid\":{tid},\"ts\":{},\"dur\":{}}}",
                us(s.dispatched),
                us(s.exec - s.dispatched)
            );
        }
        let record = &outcome.records[s.record as usize];
        let _ = write!(
            out,
            ",\n{{\"ph\":\"X\",\"name\":{},\"cat\":\"run\",\"pid\":{MACHINE_PID},\"tid\":{tid},\"ts\":{},\"dur\":{},\"args\":{{\"cgroup\":{},\"pid\":{}}}}}",
            json_string(&record.name),
            us(s.exec),
            us(s.end - s.exec),
            json_string(&scenario.cgroups[record.cgroup as usize]),
            s.pid
        );
    }

    // Task tracks, each in time order. A flow's ends come right after the slice they bind
    // to, so that at equal timestamps that slice is the one open on the track.
    for (pid, track) in &tracks {
        let process = cgroup_pid(outcome.records[track.record as usize].cgroup);
        let slice = |out: &mut String, name: &str, from: Time, to: Time, args: String| {
            let _ = write!(
                out,
                ",\n{{\"ph\":\"X\",\"name\":\"{name}\",\"cat\":\"task\",\"pid\":{process},\"tid\":{pid},\"ts\":{},\"dur\":{},\"args\":{{{args}}}}}",
                us(from),
                us(to - from)
            );
        };
        let runnable = |out: &mut String, wait: &Wait, to: Time| {
            if wait.since < to {
                slice(
                    out,
                    "runnable",
                    wait.since,
                    to,
                    format!("\"queued_on_cpu\":{}", wait.queued_on),
                );
            }
        };
        for &index in &track.stints {
            let s = &trace[index];
            runnable(&mut out, &s.wait, s.dispatched);
            if s.exec > s.dispatched {
                slice(&mut out, "switch", s.dispatched, s.exec, String::new());
            }
            slice(
                &mut out,
                "running",
                s.exec,
                s.end,
                format!("\"cpu\":{}", s.cpu),
            );
            if let Some(id) = flows.into.get(&index) {
                let _ = write!(
                    out,
                    ",\n{{\"ph\":\"f\",\"bp\":\"e\",\"name\":\"wakeup\",\"cat\":\"wakeup\",\"id\":{id},\"pid\":{process},\"tid\":{pid},\"ts\":{}}}",
                    us(s.exec)
                );
            }
            for (at, id) in flows.out_of.get(&index).into_iter().flatten() {
                let _ = write!(
                    out,
                    ",\n{{\"ph\":\"s\",\"name\":\"wakeup\",\"cat\":\"wakeup\",\"id\":{id},\"pid\":{process},\"tid\":{pid},\"ts\":{}}}",
                    us(*at)
                );
            }
        }
        if let Some(wait) = &track.open_wait {
            runnable(&mut out, wait, outcome.end);
        }
    }

    write_counters(&mut out, outcome, nr_cpus);
    out.push_str("\n]}\n");
    out
}
