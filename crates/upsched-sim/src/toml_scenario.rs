//! The TOML scenario format (documented in `docs/simulator.md`).
//!
//! Values are checked while they are deserialised, so that the TOML parser attaches the line
//! of the offending value to the error; names that refer to other parts of the file (events,
//! task templates) are resolved afterwards with their spans.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use toml::Spanned;

use crate::machine::{Costs, CpuMask, Machine, Topology};
use crate::rng::Dist;
use crate::scenario::*;
use crate::units::{MS, S, Time, parse_duration};

/// A scenario that cannot be used, with the place in the file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{}: {message}", file, line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ScenarioError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// A duration written with its unit, e.g. `"3ms"`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DurationValue(pub(crate) Time);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DurationValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration string with a unit, like \"3ms\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<DurationValue, E> {
                parse_duration(s).map(DurationValue).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationValue, E> {
                Err(E::custom(format!(
                    "duration {v} has no unit: write it as a string like \"{v}us\""
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration: a fixed string, or a table `{ dist = "...", ... }`.
#[derive(Clone, Debug)]
struct DistValue(Dist);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDist {
    dist: String,
    mean: Option<DurationValue>,
    stddev: Option<DurationValue>,
    min: Option<DurationValue>,
    max: Option<DurationValue>,
}

impl RawDist {
    fn build(self) -> Result<Dist, String> {
        let need = |v: Option<DurationValue>, name: &str| {
            v.map(|d| d.0)
                .ok_or_else(|| format!("distribution {:?} needs `{name}`", self.dist))
        };
        let only = |allowed: &[&str]| -> Result<(), String> {
            let given = [
                ("mean", self.mean.is_some()),
                ("stddev", self.stddev.is_some()),
                ("min", self.min.is_some()),
                ("max", self.max.is_some()),
            ];
            for (name, present) in given {
                if present && !allowed.contains(&name) {
                    return Err(format!(
                        "distribution {:?} takes no `{name}` (it takes {})",
                        self.dist,
                        allowed.join(", ")
                    ));
                }
            }
            Ok(())
        };
        match self.dist.as_str() {
            "fixed" => {
                only(&["mean"])?;
                Ok(Dist::Fixed(need(self.mean, "mean")?))
            }
            "exponential" => {
                only(&["mean"])?;
                let mean = need(self.mean, "mean")?;
                if mean == 0 {
                    return Err("exponential: mean must be > 0".into());
                }
                Ok(Dist::Exponential { mean: mean as f64 })
            }
            "uniform" => {
                only(&["min", "max"])?;
                let (min, max) = (need(self.min, "min")?, need(self.max, "max")?);
                if min > max {
                    return Err("uniform: min must not exceed max".into());
                }
                Ok(Dist::Uniform { min, max })
            }
            "normal" => {
                only(&["mean", "stddev"])?;
                let mean = need(self.mean, "mean")?;
                if mean == 0 {
                    return Err(
                        "normal: mean must be > 0 (the distribution is truncated at 0)".into(),
                    );
                }
                Ok(Dist::Normal {
                    mean: mean as f64,
                    stddev: need(self.stddev, "stddev")? as f64,
                })
            }
            "lognormal" => {
                only(&["mean", "stddev"])?;
                let mean = need(self.mean, "mean")?;
                if mean == 0 {
                    return Err("lognormal: mean must be > 0".into());
                }
                Ok(Dist::log_normal_from_moments(
                    mean as f64,
                    need(self.stddev, "stddev")? as f64,
                ))
            }
            other => Err(format!(
                "unknown distribution {other:?} (fixed, exponential, uniform, normal, lognormal)"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for DistValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DistValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a duration like \"3ms\" or a table { dist = \"exponential\", mean = \"3ms\" }",
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<DistValue, E> {
                parse_duration(s)
                    .map(|t| DistValue(Dist::Fixed(t)))
                    .map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DistValue, E> {
                Err(E::custom(format!(
                    "duration {v} has no unit: write it as a string like \"{v}us\""
                )))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<DistValue, A::Error> {
                let raw = RawDist::deserialize(de::value::MapAccessDeserializer::new(map))?;
                raw.build().map(DistValue).map_err(de::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// `loop = 10` or `loop = "forever"`.
#[derive(Clone, Copy, Debug)]
struct LoopCount(u64);

impl<'de> Deserialize<'de> for LoopCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LoopCount;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of iterations or \"forever\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LoopCount, E> {
                u64::try_from(v)
                    .map(LoopCount)
                    .map_err(|_| E::custom("loop count must be >= 0"))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<LoopCount, E> {
                if s == "forever" {
                    Ok(LoopCount(FOREVER))
                } else {
                    Err(E::custom(format!(
                        "loop count {s:?}: use a number or \"forever\""
                    )))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `set_hint = "flags"` or `set_hint = 5`.
#[derive(Clone, Copy, Debug)]
struct HintWord(u8);

const HINT_NAMES: [&str; 5] = ["flags", "wait_event", "pending", "deadline", "latency_ns"];

impl<'de> Deserialize<'de> for HintWord {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HintWord;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a hint word index 0-7 or one of flags, wait_event, pending, deadline, latency_ns")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HintWord, E> {
                if (0..upsched_abi::NR_HINTS as i64).contains(&v) {
                    Ok(HintWord(v as u8))
                } else {
                    Err(E::custom(format!(
                        "hint word {v} is outside 0-{}",
                        upsched_abi::NR_HINTS - 1
                    )))
                }
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<HintWord, E> {
                HINT_NAMES.iter().position(|n| *n == s).map(|i| HintWord(i as u8)).ok_or_else(|| E::custom(format!("unknown hint word {s:?} (flags, wait_event, pending, deadline, latency_ns or 0-7)")))
            }
        }
        d.deserialize_any(V)
    }
}

/// One operation of a program as written: a table with exactly one operation key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOpFields {
    run: Option<DistValue>,
    sleep: Option<DistValue>,
    timer: Option<DurationValue>,
    block: Option<Spanned<String>>,
    spin_until: Option<Spanned<String>>,
    spin_max: Option<DistValue>,
    yield_first: Option<bool>,
    signal: Option<Spanned<String>>,
    count: Option<u32>,
    #[serde(rename = "yield")]
    yield_: Option<bool>,
    set_hint: Option<HintWord>,
    value: Option<u64>,
    event: Option<Spanned<String>>,
    #[serde(rename = "loop")]
    loop_: Option<LoopCount>,
    body: Option<Vec<RawOp>>,
    fork: Option<Spanned<String>>,
    exit: Option<bool>,
}

enum RawOp {
    Run(Dist),
    Sleep(Dist),
    Timer(Time),
    Block(Spanned<String>),
    /// The event, the spin budget (spin then block), whether to yield first.
    SpinUntil(Spanned<String>, Option<Dist>, bool),
    Signal(Spanned<String>, u32),
    Yield,
    SetHint(u8, u64),
    /// `set_hint = WORD, event = "NAME"`: the word gets the event's id (1 + its index).
    SetHintEvent(u8, Spanned<String>),
    Loop(u64, Vec<RawOp>),
    Fork(Spanned<String>),
    Exit,
}

impl<'de> Deserialize<'de> for RawOp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawOp;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an operation table such as { run = \"1ms\" }")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawOp, A::Error> {
                let f = RawOpFields::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let keys = [
                    ("run", f.run.is_some()),
                    ("sleep", f.sleep.is_some()),
                    ("timer", f.timer.is_some()),
                    ("block", f.block.is_some()),
                    ("spin_until", f.spin_until.is_some()),
                    ("signal", f.signal.is_some()),
                    ("yield", f.yield_.is_some()),
                    ("set_hint", f.set_hint.is_some()),
                    ("loop", f.loop_.is_some()),
                    ("fork", f.fork.is_some()),
                    ("exit", f.exit.is_some()),
                ];
                let present: Vec<&str> = keys.iter().filter(|k| k.1).map(|k| k.0).collect();
                if present.len() != 1 {
                    return Err(de::Error::custom(format!(
                        "an operation needs exactly one of run, sleep, timer, block, spin_until, signal, yield, set_hint, loop, fork, exit (found: {})",
                        if present.is_empty() {
                            "none".to_string()
                        } else {
                            present.join(", ")
                        }
                    )));
                }
                let op = present[0];
                let misplaced =
                    |name: &str, present: bool, allowed_with: &str| -> Result<(), A::Error> {
                        if present && op != allowed_with {
                            Err(de::Error::custom(format!(
                                "`{name}` belongs to `{allowed_with}`, not to `{op}`"
                            )))
                        } else {
                            Ok(())
                        }
                    };
                misplaced("count", f.count.is_some(), "signal")?;
                misplaced("value", f.value.is_some(), "set_hint")?;
                misplaced("event", f.event.is_some(), "set_hint")?;
                misplaced("spin_max", f.spin_max.is_some(), "spin_until")?;
                misplaced("yield_first", f.yield_first.is_some(), "spin_until")?;
                if f.yield_first.is_some() && f.spin_max.is_none() {
                    return Err(de::Error::custom(
                        "`yield_first` needs `spin_max` (it starts a spin-then-block wait)",
                    ));
                }
                misplaced("body", f.body.is_some(), "loop")?;
                Ok(match op {
                    "run" => RawOp::Run(f.run.unwrap_or_else(|| unreachable!()).0),
                    "sleep" => RawOp::Sleep(f.sleep.unwrap_or_else(|| unreachable!()).0),
                    "timer" => {
                        let period = f.timer.unwrap_or_else(|| unreachable!()).0;
                        if period == 0 {
                            return Err(de::Error::custom("timer: period must be > 0"));
                        }
                        RawOp::Timer(period)
                    }
                    "block" => RawOp::Block(f.block.unwrap_or_else(|| unreachable!())),
                    "spin_until" => RawOp::SpinUntil(
                        f.spin_until.unwrap_or_else(|| unreachable!()),
                        f.spin_max.map(|d| d.0),
                        f.yield_first.unwrap_or(false),
                    ),
                    "signal" => RawOp::Signal(
                        f.signal.unwrap_or_else(|| unreachable!()),
                        f.count.unwrap_or(1),
                    ),
                    "yield" => RawOp::Yield,
                    "set_hint" => {
                        let word = f.set_hint.unwrap_or_else(|| unreachable!()).0;
                        match (f.value, f.event) {
                            (Some(value), None) => RawOp::SetHint(word, value),
                            (None, Some(event)) => RawOp::SetHintEvent(word, event),
                            _ => {
                                return Err(de::Error::custom(
                                    "set_hint needs exactly one of `value` or `event`",
                                ));
                            }
                        }
                    }
                    "loop" => {
                        let body = f
                            .body
                            .ok_or_else(|| de::Error::custom("loop needs `body = [ ... ]`"))?;
                        RawOp::Loop(f.loop_.unwrap_or_else(|| unreachable!()).0, body)
                    }
                    "fork" => RawOp::Fork(f.fork.unwrap_or_else(|| unreachable!())),
                    _ => RawOp::Exit,
                })
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CpuListValue {
    Text(String),
    List(Vec<u32>),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCosts {
    preset: Option<Spanned<String>>,
    switch_voluntary: Option<DurationValue>,
    switch_involuntary: Option<DurationValue>,
    migration_smt: Option<DurationValue>,
    migration_llc: Option<DurationValue>,
    migration_cross_llc: Option<DurationValue>,
    migration_cross_numa: Option<DurationValue>,
    wakeup_ipi: Option<DurationValue>,
    notify: Option<DurationValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMachine {
    cpus: Option<Spanned<u32>>,
    smt: Option<u32>,
    llc_cpus: Option<u32>,
    numa_nodes: Option<u32>,
    tick: Option<DurationValue>,
    #[serde(default)]
    costs: RawCosts,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    name: Spanned<String>,
    kind: Option<Spanned<String>>,
    initial: Option<u64>,
    notify: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    name: Spanned<String>,
    count: Option<Spanned<u32>>,
    cgroup: Option<Spanned<String>>,
    nice: Option<Spanned<i32>>,
    weight: Option<Spanned<u32>>,
    cpus: Option<Spanned<CpuListValue>>,
    start: Option<DurationValue>,
    program: Vec<RawOp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArrival {
    name: Spanned<String>,
    process: Spanned<String>,
    rate: Option<Spanned<f64>>,
    period: Option<DurationValue>,
    start: Option<DurationValue>,
    stop: Option<DurationValue>,
    count: Option<u64>,
    spawn: Option<Spanned<String>>,
    signal: Option<Spanned<String>>,
    signal_count: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEevdf {
    base_slice: Option<DurationValue>,
    run_to_parity: Option<bool>,
    hrtick: Option<bool>,
    balance_interval: Option<DurationValue>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSliceOnly {
    slice: Option<DurationValue>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNothing {}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSchedulers {
    #[serde(rename = "linux-eevdf")]
    eevdf: Option<RawEevdf>,
    rr: Option<RawSliceOnly>,
    #[serde(rename = "upsched-default")]
    default_class: Option<RawSliceOnly>,
    // Accepted so that `[scheduler.fifo]` is not an error; fifo has no parameters.
    #[allow(dead_code)]
    fifo: Option<RawNothing>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<String>,
    description: Option<String>,
    duration: Option<DurationValue>,
    seed: Option<u64>,
    policy: Option<Spanned<OneOrMany>>,
    machine: Option<RawMachine>,
    #[serde(default)]
    scheduler: RawSchedulers,
    #[serde(default, rename = "event")]
    events: Vec<RawEvent>,
    #[serde(default, rename = "task")]
    tasks: Vec<RawTask>,
    #[serde(default, rename = "arrival")]
    arrivals: Vec<RawArrival>,
    #[serde(default, rename = "chain")]
    chains: Vec<RawChain>,
    #[serde(default, rename = "tenant")]
    tenants: Vec<crate::tenants::RawTenant>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChain {
    name: Spanned<String>,
    source: Spanned<String>,
    stages: Vec<RawChainStage>,
    complete: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChainStage {
    event: Spanned<String>,
    cgroup: Spanned<String>,
    platform_hints: Option<Vec<Spanned<String>>>,
}

/// Names of the built-in policies.
pub const BUILTIN_POLICIES: [&str; 4] = ["linux-eevdf", "upsched-default", "fifo", "rr"];

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn err<T>(
        &self,
        span: Option<std::ops::Range<usize>>,
        message: impl Into<String>,
    ) -> Result<T, ScenarioError> {
        Err(ScenarioError {
            file: self.file.to_string(),
            line: span.map(|s| line_of(self.text, s.start)),
            message: message.into(),
        })
    }
}

/// Parses and validates a TOML scenario. `file` names the source in error messages.
pub fn parse_scenario(text: &str, file: &str) -> Result<Scenario, ScenarioError> {
    parse_scenario_on(text, file, None)
}

/// [`parse_scenario`] on a machine of `nr_cpus` CPUs instead of the file's `machine.cpus`
/// (the command line's `--cpus`).
pub fn parse_scenario_on(
    text: &str,
    file: &str,
    nr_cpus: Option<u32>,
) -> Result<Scenario, ScenarioError> {
    let cx = Ctx { file, text };
    let cpus_override = nr_cpus;
    let raw: RawScenario = toml::from_str(text).map_err(|e| ScenarioError {
        file: file.to_string(),
        line: e.span().map(|s| line_of(text, s.start)),
        message: e.message().trim().to_string(),
    })?;

    // Machine.
    let (machine, nr_cpus) = {
        let m = raw.machine;
        let cpus_span = match cpus_override {
            Some(_) => None,
            None => m.as_ref().and_then(|m| m.cpus.as_ref()).map(|c| c.span()),
        };
        let nr_cpus = cpus_override
            .or_else(|| {
                m.as_ref()
                    .and_then(|m| m.cpus.as_ref())
                    .map(|c| *c.get_ref())
            })
            .unwrap_or(1);
        let smt = m.as_ref().and_then(|m| m.smt).unwrap_or(1);
        let llc = m.as_ref().and_then(|m| m.llc_cpus).unwrap_or(nr_cpus);
        let nodes = m.as_ref().and_then(|m| m.numa_nodes).unwrap_or(1);
        let topology = match Topology::new(nr_cpus, smt, llc, nodes) {
            Ok(t) => t,
            Err(e) if cpus_override.is_some() => {
                return cx.err(cpus_span, format!("machine (with --cpus {nr_cpus}): {e}"));
            }
            Err(e) => return cx.err(cpus_span, format!("machine: {e}")),
        };
        let tick = m
            .as_ref()
            .and_then(|m| m.tick)
            .map(|t| t.0)
            .unwrap_or(4 * MS);
        if tick == 0 {
            return cx.err(cpus_span, "machine: tick must be > 0");
        }
        let rc = m.map(|m| m.costs).unwrap_or_default();
        let mut costs = match rc.preset.as_ref().map(|p| p.get_ref().as_str()) {
            None | Some("default") => Costs::default(),
            Some("zero") => Costs::zero(),
            Some(other) => {
                return cx.err(
                    rc.preset.as_ref().map(|p| p.span()),
                    format!("machine.costs.preset {other:?}: use \"default\" or \"zero\""),
                );
            }
        };
        let set = |slot: &mut Time, v: Option<DurationValue>| {
            if let Some(v) = v {
                *slot = v.0;
            }
        };
        set(&mut costs.switch_voluntary, rc.switch_voluntary);
        set(&mut costs.switch_involuntary, rc.switch_involuntary);
        set(&mut costs.migration_smt, rc.migration_smt);
        set(&mut costs.migration_llc, rc.migration_llc);
        set(&mut costs.migration_cross_llc, rc.migration_cross_llc);
        set(&mut costs.migration_cross_numa, rc.migration_cross_numa);
        set(&mut costs.wakeup_ipi, rc.wakeup_ipi);
        set(&mut costs.notify, rc.notify);
        (
            Machine {
                topology,
                costs,
                tick,
            },
            nr_cpus,
        )
    };

    // Events.
    let mut event_ids: BTreeMap<String, EventId> = BTreeMap::new();
    let mut events = Vec::new();
    for e in &raw.events {
        let kind = match e.kind.as_ref().map(|k| k.get_ref().as_str()) {
            None | Some("counter") => EventKind::Counter,
            Some("broadcast") => EventKind::Broadcast,
            Some(other) => {
                return cx.err(
                    e.kind.as_ref().map(|k| k.span()),
                    format!("event.kind {other:?}: use \"counter\" or \"broadcast\""),
                );
            }
        };
        if event_ids
            .insert(e.name.get_ref().clone(), events.len() as EventId)
            .is_some()
        {
            return cx.err(
                Some(e.name.span()),
                format!("event {:?} is declared twice", e.name.get_ref()),
            );
        }
        events.push(EventSpec {
            name: e.name.get_ref().clone(),
            kind,
            initial: e.initial.unwrap_or(0),
            notify: e.notify.unwrap_or(false),
        });
    }

    // Task names first: programs may fork any task.
    let mut spec_ids: BTreeMap<String, SpecId> = BTreeMap::new();
    for (i, t) in raw.tasks.iter().enumerate() {
        if t.name.get_ref().is_empty() {
            return cx.err(Some(t.name.span()), "task.name must not be empty");
        }
        if spec_ids
            .insert(t.name.get_ref().clone(), i as SpecId)
            .is_some()
        {
            return cx.err(
                Some(t.name.span()),
                format!("task {:?} is declared twice", t.name.get_ref()),
            );
        }
    }

    let resolve_event = |name: &Spanned<String>| -> Result<EventId, ScenarioError> {
        match event_ids.get(name.get_ref()) {
            Some(id) => Ok(*id),
            None => cx.err(
                Some(name.span()),
                format!(
                    "unknown event {:?} (declare it with [[event]])",
                    name.get_ref()
                ),
            ),
        }
    };
    let resolve_spec = |name: &Spanned<String>| -> Result<SpecId, ScenarioError> {
        match spec_ids.get(name.get_ref()) {
            Some(id) => Ok(*id),
            None => cx.err(
                Some(name.span()),
                format!("unknown task {:?}", name.get_ref()),
            ),
        }
    };

    fn to_steps(
        ops: &[RawOp],
        resolve_event: &dyn Fn(&Spanned<String>) -> Result<EventId, ScenarioError>,
        resolve_spec: &dyn Fn(&Spanned<String>) -> Result<SpecId, ScenarioError>,
    ) -> Result<Vec<Step>, ScenarioError> {
        ops.iter()
            .map(|op| {
                Ok(match op {
                    RawOp::Run(d) => Step::Op(Op::Run(d.clone())),
                    RawOp::Sleep(d) => Step::Op(Op::Sleep(d.clone())),
                    RawOp::Timer(p) => Step::Op(Op::Timer(*p)),
                    RawOp::Block(e) => Step::Op(Op::Block(resolve_event(e)?)),
                    RawOp::SpinUntil(e, None, _) => Step::Op(Op::SpinUntil(resolve_event(e)?)),
                    RawOp::SpinUntil(e, Some(spin_max), yield_first) => {
                        Step::Op(Op::SpinThenBlock {
                            event: resolve_event(e)?,
                            spin_max: spin_max.clone(),
                            yield_first: *yield_first,
                        })
                    }
                    RawOp::Signal(e, count) => Step::Op(Op::Signal {
                        event: resolve_event(e)?,
                        count: *count,
                    }),
                    RawOp::Yield => Step::Op(Op::Yield),
                    RawOp::SetHint(word, value) => Step::Op(Op::SetHint {
                        word: *word,
                        value: *value,
                    }),
                    RawOp::SetHintEvent(word, e) => Step::Op(Op::SetHint {
                        word: *word,
                        value: crate::chains::event_hint_id(resolve_event(e)?),
                    }),
                    RawOp::Loop(count, body) => Step::Loop {
                        count: *count,
                        body: to_steps(body, resolve_event, resolve_spec)?,
                    },
                    RawOp::Fork(name) => Step::Op(Op::Fork(resolve_spec(name)?)),
                    RawOp::Exit => Step::Op(Op::Exit),
                })
            })
            .collect()
    }

    let mut cgroups: Vec<String> = vec!["/".to_string()];
    let mut cpusets: Vec<CpuMask> = vec![CpuMask::full(nr_cpus)];
    let mut tasks = Vec::new();
    for t in &raw.tasks {
        let name = t.name.get_ref().clone();
        let cgroup = match &t.cgroup {
            None => 0,
            Some(path) => {
                let p = path.get_ref();
                if !p.starts_with('/') || p.contains("//") || (p.len() > 1 && p.ends_with('/')) {
                    return cx.err(Some(path.span()), format!("task {name:?}: cgroup {p:?} must be an absolute path like \"/tenant/a\""));
                }
                match cgroups.iter().position(|c| c == p) {
                    Some(i) => i as u32,
                    None => {
                        cgroups.push(p.clone());
                        (cgroups.len() - 1) as u32
                    }
                }
            }
        };
        let (nice, weight) = match (&t.nice, &t.weight) {
            (Some(n), Some(_)) => {
                return cx.err(
                    Some(n.span()),
                    format!("task {name:?}: give `nice` or `weight`, not both"),
                );
            }
            (Some(n), None) => {
                if !(-20..=19).contains(n.get_ref()) {
                    return cx.err(
                        Some(n.span()),
                        format!("task {name:?}: nice {} is outside -20..19", n.get_ref()),
                    );
                }
                (*n.get_ref(), nice_to_weight(*n.get_ref()))
            }
            (None, Some(w)) => {
                if !(1..=1_000_000).contains(w.get_ref()) {
                    return cx.err(
                        Some(w.span()),
                        format!(
                            "task {name:?}: weight {} is outside 1..1000000 (nice 0 = 1024)",
                            w.get_ref()
                        ),
                    );
                }
                (weight_to_nice(*w.get_ref()), *w.get_ref())
            }
            (None, None) => (0, 1024),
        };
        let affinity = match &t.cpus {
            None => 0,
            Some(list) => {
                let mask = match list.get_ref() {
                    CpuListValue::Text(s) => parse_cpu_list(s, nr_cpus),
                    CpuListValue::List(v) => {
                        let mut m = CpuMask::empty(nr_cpus);
                        let mut bad = None;
                        for c in v {
                            if *c >= nr_cpus {
                                bad = Some(*c)
                            } else {
                                m.set(*c)
                            }
                        }
                        match bad {
                            Some(c) => Err(format!("CPU {c} does not exist (cpus = {nr_cpus})")),
                            None if m.is_empty() => Err("the CPU list is empty".into()),
                            None => Ok(m),
                        }
                    }
                };
                let mask = match mask {
                    Ok(m) => m,
                    Err(e) => {
                        return cx.err(Some(list.span()), format!("task {name:?}: cpus: {e}"));
                    }
                };
                match cpusets.iter().position(|c| *c == mask) {
                    Some(i) => i as u32,
                    None => {
                        cpusets.push(mask);
                        (cpusets.len() - 1) as u32
                    }
                }
            }
        };
        let count = match &t.count {
            None => 1,
            Some(c) if *c.get_ref() <= MAX_TASK_COUNT => *c.get_ref(),
            Some(c) => {
                return cx.err(
                    Some(c.span()),
                    format!(
                        "task {name:?}: count = {}: at most {MAX_TASK_COUNT} instances",
                        c.get_ref()
                    ),
                );
            }
        };
        let steps = to_steps(&t.program, &resolve_event, &resolve_spec)?;
        let program = match compile_program(&steps) {
            Ok(p) => p,
            Err(e) => return cx.err(Some(t.name.span()), format!("task {name:?}: program: {e}")),
        };
        tasks.push(TaskSpec {
            name,
            cgroup,
            nice,
            weight,
            affinity,
            count,
            start: t.start.map(|s| s.0).unwrap_or(0),
            program,
        });
    }

    let mut arrivals = Vec::new();
    for a in &raw.arrivals {
        let name = a.name.get_ref().clone();
        let process = match a.process.get_ref().as_str() {
            "poisson" => {
                if a.period.is_some() {
                    return cx.err(
                        Some(a.process.span()),
                        format!("arrival {name:?}: a poisson process takes `rate`, not `period`"),
                    );
                }
                match a.rate.as_ref().map(|r| (*r.get_ref(), r.span())) {
                    Some((r, _)) if r.is_finite() && r > 0.0 && r <= MAX_ARRIVAL_RATE => ArrivalProcess::Poisson { mean_interval: S as f64 / r },
                    Some((r, span)) if r > MAX_ARRIVAL_RATE => return cx.err(Some(span), format!("arrival {name:?}: rate = {r}: at most {MAX_ARRIVAL_RATE:e} arrivals per second (one per ns, the simulator's resolution)")),
                    _ => return cx.err(Some(a.process.span()), format!("arrival {name:?}: a poisson process needs `rate` > 0 (arrivals per second)")),
                }
            }
            "periodic" => {
                if a.rate.is_some() {
                    return cx.err(
                        Some(a.process.span()),
                        format!("arrival {name:?}: a periodic process takes `period`, not `rate`"),
                    );
                }
                match a.period {
                    Some(p) if p.0 > 0 => ArrivalProcess::Periodic { period: p.0 },
                    _ => {
                        return cx.err(
                            Some(a.process.span()),
                            format!("arrival {name:?}: a periodic process needs `period` > 0"),
                        );
                    }
                }
            }
            other => {
                return cx.err(
                    Some(a.process.span()),
                    format!("arrival {name:?}: process {other:?}: use \"poisson\" or \"periodic\""),
                );
            }
        };
        let action = match (&a.spawn, &a.signal) {
            (Some(spec), None) => {
                if a.signal_count.is_some() {
                    return cx.err(
                        Some(spec.span()),
                        format!("arrival {name:?}: signal_count needs `signal`"),
                    );
                }
                ArrivalAction::Spawn(resolve_spec(spec)?)
            }
            (None, Some(event)) => ArrivalAction::Signal {
                event: resolve_event(event)?,
                count: a.signal_count.unwrap_or(1),
            },
            _ => return cx.err(
                Some(a.name.span()),
                format!(
                    "arrival {name:?}: give exactly one of `spawn` (a task) or `signal` (an event)"
                ),
            ),
        };
        arrivals.push(ArrivalSpec {
            name,
            process,
            start: a.start.map(|s| s.0).unwrap_or(0),
            stop: a.stop.map(|s| s.0).unwrap_or(Time::MAX),
            max_count: a.count.unwrap_or(u64::MAX),
            action,
        });
    }

    let mut chains = Vec::new();
    for c in &raw.chains {
        let name = c.name.get_ref();
        let Some(source) = raw
            .arrivals
            .iter()
            .position(|a| a.name.get_ref() == c.source.get_ref())
        else {
            return cx.err(
                Some(c.source.span()),
                format!("chain {name:?}: unknown arrival {:?}", c.source.get_ref()),
            );
        };
        let mut stages = Vec::new();
        for stage in &c.stages {
            let Some(cgroup) = cgroups.iter().position(|g| g == stage.cgroup.get_ref()) else {
                return cx.err(
                    Some(stage.cgroup.span()),
                    format!(
                        "chain {name:?}: no task is in cgroup {:?}",
                        stage.cgroup.get_ref()
                    ),
                );
            };
            let mut platform_hints = Vec::new();
            for task in stage.platform_hints.iter().flatten() {
                let spec = resolve_spec(task)?;
                if tasks[spec as usize].cgroup != cgroup as u32 {
                    return cx.err(
                        Some(task.span()),
                        format!(
                            "chain {name:?}: platform_hints task {:?} is not in the stage's cgroup {:?}",
                            task.get_ref(),
                            stage.cgroup.get_ref()
                        ),
                    );
                }
                platform_hints.push(spec);
            }
            stages.push(ChainStage {
                event: resolve_event(&stage.event)?,
                cgroup: cgroup as u32,
                platform_hints,
            });
        }
        chains.push(ChainSpec {
            name: name.clone(),
            source: source as u32,
            stages,
            complete: resolve_event(&c.complete)?,
        });
        if let Err(e) = crate::chains::validate(&chains, &arrivals, &events) {
            return cx.err(Some(c.name.span()), e);
        }
    }

    let mut params = SchedParams::default();
    if let Some(e) = raw.scheduler.eevdf {
        if let Some(v) = e.base_slice {
            params.eevdf.base_slice = v.0.max(1);
        }
        if let Some(v) = e.run_to_parity {
            params.eevdf.run_to_parity = v;
        }
        if let Some(v) = e.hrtick {
            params.eevdf.hrtick = v;
        }
        if let Some(v) = e.balance_interval {
            params.eevdf.balance_interval = v.0.max(1);
        }
    }
    if let Some(v) = raw.scheduler.rr.and_then(|r| r.slice) {
        params.rr_slice = v.0.max(1);
    }
    if let Some(v) = raw.scheduler.default_class.and_then(|r| r.slice) {
        // The host's own bound (the loader's), not a silent fix-up.
        if let Err(e) = upsched_abi::mechanism::HOST_DEFAULT_SLICE_NS.check(v.0) {
            return cx.err(None, format!("[scheduler.upsched-default] slice: {e}"));
        }
        params.default_slice = v.0;
    }

    let policies = match &raw.policy {
        None => vec!["linux-eevdf".to_string()],
        Some(p) => {
            let list = match p.get_ref() {
                OneOrMany::One(s) => vec![s.clone()],
                OneOrMany::Many(v) => v.clone(),
            };
            for name in &list {
                if !BUILTIN_POLICIES.contains(&name.as_str()) && name != crate::sched::upsched::NAME
                {
                    return cx.err(
                        Some(p.span()),
                        format!(
                            "policy {name:?} is not built in ({}, or {} with [[tenant]]s)",
                            BUILTIN_POLICIES.join(", "),
                            crate::sched::upsched::NAME
                        ),
                    );
                }
            }
            if list.is_empty() {
                return cx.err(Some(p.span()), "policy: the list is empty");
            }
            list
        }
    };

    let tenants = crate::tenants::from_raw(&raw.tenants, file, &|offset| line_of(text, offset))?;

    if let Err(e) = check_starts_something(&tasks, &arrivals) {
        return cx.err(None, e);
    }
    let duration = match raw.duration {
        Some(d) if d.0 > 0 => d.0,
        Some(_) => return cx.err(None, "duration must be > 0"),
        None => {
            return cx.err(
                None,
                "missing `duration` (simulated time to run, e.g. duration = \"10s\")",
            );
        }
    };

    Ok(Scenario {
        name: raw.name.unwrap_or_else(|| {
            file.rsplit('/')
                .next()
                .unwrap_or(file)
                .trim_end_matches(".toml")
                .to_string()
        }),
        description: raw.description.unwrap_or_default(),
        duration,
        seed: raw.seed.unwrap_or(1),
        policies,
        machine,
        events,
        tasks,
        cgroups,
        cpusets,
        arrivals,
        params,
        chains,
        warnings: Vec::new(),
        tenants,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "t"
duration = "1s"
[machine]
cpus = 4
smt = 2
[[event]]
name = "go"
[[task]]
name = "a"
count = 2
cgroup = "/x/y"
nice = 5
cpus = "0-1"
program = [
  { run = { dist = "exponential", mean = "1ms" } },
  { loop = "forever", body = [ { spin_until = "go" }, { set_hint = "flags", value = 1 }, { sleep = "2ms" } ] },
]
[[task]]
name = "b"
program = [{ signal = "go", count = 2 }, { fork = "a" }]
[[arrival]]
name = "r"
process = "poisson"
rate = 100.0
spawn = "b"
"#;

    #[test]
    fn a_complete_scenario_parses() {
        let s = parse_scenario(GOOD, "good.toml").unwrap();
        assert_eq!(s.machine.nr_cpus(), 4);
        assert_eq!(s.tasks[0].weight, 335);
        assert_eq!(s.cgroups, vec!["/", "/x/y"]);
        assert_eq!(s.cpusets[s.tasks[0].affinity as usize].to_list(), "0-1");
        assert_eq!(s.tasks[1].program[0], Op::Signal { event: 0, count: 2 });
        assert_eq!(s.tasks[1].program[1], Op::Fork(0));
        assert!(matches!(
            s.arrivals[0].process,
            ArrivalProcess::Poisson { .. }
        ));
    }

    fn error_of(text: &str) -> ScenarioError {
        parse_scenario(text, "bad.toml").unwrap_err()
    }

    #[test]
    fn a_default_class_slice_outside_the_hosts_bound_is_refused() {
        let task = "[[task]]\nname = \"a\"\nprogram = [ { run = \"1ms\" } ]\n";
        for slice in ["0ms", "2s"] {
            let e = error_of(&format!(
                "duration = \"1s\"\n[scheduler.upsched-default]\nslice = \"{slice}\"\n{task}"
            ));
            assert!(e.message.contains("default_slice"), "{e}");
            assert!(e.message.contains("is outside"), "{e}");
        }
        let ok = format!("duration = \"1s\"\n[scheduler.upsched-default]\nslice = \"5ms\"\n{task}");
        assert_eq!(
            parse_scenario(&ok, "ok.toml").unwrap().params.default_slice,
            5_000_000
        );
    }

    #[test]
    fn errors_name_the_field_and_line() {
        let e = error_of(
            "duration = \"1s\"\n[[task]]\nname = \"a\"\nprogram = [ { run = \"3 parsecs\" } ]\n",
        );
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.message.contains("parsecs"), "{e}");

        let e = error_of(
            "duration = \"1s\"\n[[task]]\nname = \"a\"\nprogram = [\n  { run = \"1ms\" },\n  { block = \"nope\" },\n]\n",
        );
        assert_eq!(e.line, Some(6), "{e}");
        assert!(e.message.contains("unknown event \"nope\""), "{e}");

        let e = error_of("duration = \"1s\"\n[[task]]\nname = \"a\"\ncolour = 3\nprogram = []\n");
        assert!(e.message.contains("colour"), "{e}");
        assert_eq!(e.line, Some(4), "{e}");

        let e = error_of(
            "duration = \"1s\"\n[[task]]\nname = \"a\"\nprogram = [ { run = \"1ms\", sleep = \"1ms\" } ]\n",
        );
        assert!(e.message.contains("exactly one"), "{e}");

        let e = error_of(
            "duration = \"1s\"\n[[task]]\nname = \"a\"\nprogram = [ { loop = \"forever\", body = [ { signal = \"x\" } ] } ]\n[[event]]\nname = \"x\"\n",
        );
        assert!(e.message.contains("forever"), "{e}");

        let e = error_of(
            "duration = \"1s\"\n[machine]\ncpus = 6\nsmt = 4\n[[task]]\nname = \"a\"\nprogram = []\n",
        );
        assert!(e.message.contains("smt"), "{e}");
        assert_eq!(e.line, Some(3), "{e}");

        let e = error_of("[[task]]\nname = \"a\"\nprogram = []\n");
        assert!(e.message.contains("duration"), "{e}");

        let e = error_of(
            "duration = \"1s\"\n[[task]]\nname = \"a\"\nprogram = [ { run = { dist = \"normal\", mean = \"1ms\" } } ]\n",
        );
        assert!(e.message.contains("stddev"), "{e}");
        assert_eq!(e.to_string().split(':').nth(1), Some("4"), "{e}");
    }
}
