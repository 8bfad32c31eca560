//! Request chains: end-to-end latency, throughput and the idle ratio of the runtimes that serve
//! them.
//!
//! A request is born when the chain's source arrival signals the first stage's event. It
//! travels with event tokens and tasks: a signal carries the request of the task that sends it
//! (the last one that task took from an event), a token kept on a counter event keeps its
//! request, and a task that takes a token or is woken by a signal now works on that request.
//! Signalling a stage's event on a request's behalf moves the request to that stage (a request
//! is at one stage at a time: signalling the stage it is at again changes nothing);
//! signalling the chain's `complete` event ends it, and later signals on its behalf count for
//! nothing.
//!
//! A runtime (the cgroup of a stage) has a **pending request** while at least one request is
//! at one of its stages: from the signal of the stage's event (the request is queued for the
//! runtime, or being handed over, or being processed, including its I/O waits) until the
//! request is signalled onward. CPU time the runtime's tasks consume while none is pending is
//! its **idle** CPU time.

use std::collections::VecDeque;

use crate::metrics::{Histogram, LatencySummary};
use crate::scenario::{ArrivalAction, ArrivalSpec, ChainSpec, EventId, EventSpec, Scenario};
use crate::units::{S, Time};

/// A task or token that carries no request.
pub const NO_REQUEST: u32 = u32::MAX;

/// The id an event has in the `wait_event` hint word (`UPSCHED_HINT_WAIT_EVENT`: 0 = none).
pub fn event_hint_id(event: EventId) -> u64 {
    event as u64 + 1
}

/// Checks what the format cannot: each chain has stages, its source signals its first stage
/// once per arrival, and no event plays a part in two chains.
pub fn validate(
    chains: &[ChainSpec],
    arrivals: &[ArrivalSpec],
    events: &[EventSpec],
) -> Result<(), String> {
    let mut used = vec![false; events.len()];
    let mut sources = vec![false; arrivals.len()];
    for c in chains {
        let name = &c.name;
        let Some(first) = c.stages.first() else {
            return Err(format!("chain {name:?} needs at least one stage"));
        };
        let source = &arrivals[c.source as usize];
        match source.action {
            ArrivalAction::Signal { event, count: 1 } if event == first.event => {}
            _ => {
                return Err(format!(
                    "chain {name:?}: its source {:?} must signal the first stage's event {:?} once per arrival",
                    source.name, events[first.event as usize].name
                ));
            }
        }
        if std::mem::replace(&mut sources[c.source as usize], true) {
            return Err(format!(
                "chain {name:?}: arrival {:?} is already the source of another chain",
                source.name
            ));
        }
        for event in c.stages.iter().map(|s| s.event).chain([c.complete]) {
            if std::mem::replace(&mut used[event as usize], true) {
                return Err(format!(
                    "chain {name:?}: event {:?} appears twice in the chains",
                    events[event as usize].name
                ));
            }
        }
    }
    Ok(())
}

#[derive(Clone, Copy)]
struct Request {
    origin: Time,
    chain: u32,
    /// Index of the stage it is at; `NOT_STARTED` before its first stage event.
    stage: u32,
}

const NOT_STARTED: u32 = u32::MAX;

/// Where an event sits in a chain.
#[derive(Clone, Copy)]
enum Role {
    Stage { chain: u32, stage: u32 },
    Complete { chain: u32 },
}

/// What one chain did during a run.
#[derive(Clone, Debug, Default)]
pub struct ChainOutcome {
    pub name: String,
    /// Requests that entered (source arrivals).
    pub arrivals: u64,
    pub completed: u64,
    /// Entry to completion of the completed requests.
    pub latency: Histogram,
    /// The stages' cgroups (indices into `Scenario::cgroups`).
    pub cgroups: Vec<u32>,
}

/// The request bookkeeping of a run with chains.
pub(crate) struct ChainTracker {
    /// Requests of the tokens kept on each event, oldest first, run-length encoded.
    tokens: Vec<VecDeque<(u32, u64)>>,
    task_request: Vec<u32>,
    requests: Vec<Request>,
    roles: Vec<Option<Role>>,
    source_chain: Vec<Option<u32>>,
    stage_cgroups: Vec<Vec<u32>>,
    /// Requests at a stage of each cgroup.
    pending: Vec<u32>,
    /// The cgroup is some chain's runtime (it has an idle ratio).
    runtime: Vec<bool>,
    chains: Vec<ChainOutcome>,
}

impl ChainTracker {
    /// `None` for a scenario without chains, so that such runs pay nothing.
    pub(crate) fn new(scenario: &Scenario) -> Option<ChainTracker> {
        if scenario.chains.is_empty() {
            return None;
        }
        let mut roles = vec![None; scenario.events.len()];
        let mut source_chain = vec![None; scenario.arrivals.len()];
        let mut runtime = vec![false; scenario.cgroups.len()];
        for (c, spec) in scenario.chains.iter().enumerate() {
            let chain = c as u32;
            source_chain[spec.source as usize] = Some(chain);
            for (stage, s) in spec.stages.iter().enumerate() {
                roles[s.event as usize] = Some(Role::Stage {
                    chain,
                    stage: stage as u32,
                });
                runtime[s.cgroup as usize] = true;
            }
            roles[spec.complete as usize] = Some(Role::Complete { chain });
        }
        Some(ChainTracker {
            tokens: scenario
                .events
                .iter()
                .map(|e| {
                    let mut q = VecDeque::new();
                    if e.initial > 0 {
                        q.push_back((NO_REQUEST, e.initial));
                    }
                    q
                })
                .collect(),
            task_request: Vec::new(),
            requests: Vec::new(),
            roles,
            source_chain,
            stage_cgroups: scenario
                .chains
                .iter()
                .map(|c| c.stages.iter().map(|s| s.cgroup).collect())
                .collect(),
            pending: vec![0; scenario.cgroups.len()],
            runtime,
            chains: scenario
                .chains
                .iter()
                .map(|c| ChainOutcome {
                    name: c.name.clone(),
                    cgroups: c.stages.iter().map(|s| s.cgroup).collect(),
                    ..Default::default()
                })
                .collect(),
        })
    }

    /// Whether CPU time of a task in `cgroup` counts as idle now.
    #[inline]
    pub(crate) fn is_idle(&self, cgroup: u32) -> bool {
        self.runtime[cgroup as usize] && self.pending[cgroup as usize] == 0
    }

    /// A new request if `arrival` is a chain's source.
    pub(crate) fn arrive(&mut self, arrival: u32, now: Time) -> u32 {
        let Some(chain) = self.source_chain[arrival as usize] else {
            return NO_REQUEST;
        };
        self.chains[chain as usize].arrivals += 1;
        self.requests.push(Request {
            origin: now,
            chain,
            stage: NOT_STARTED,
        });
        (self.requests.len() - 1) as u32
    }

    pub(crate) fn task_request(&self, task: u32) -> u32 {
        self.task_request
            .get(task as usize)
            .copied()
            .unwrap_or(NO_REQUEST)
    }

    pub(crate) fn set_task_request(&mut self, task: u32, request: u32) {
        let slot = task as usize;
        if slot >= self.task_request.len() {
            self.task_request.resize(slot + 1, NO_REQUEST);
        }
        self.task_request[slot] = request;
    }

    pub(crate) fn keep_tokens(&mut self, event: EventId, request: u32, count: u64) {
        let queue = &mut self.tokens[event as usize];
        match queue.back_mut() {
            Some((r, n)) if *r == request => *n += count,
            _ => queue.push_back((request, count)),
        }
    }

    /// The request of the oldest token of `event` (which the caller takes).
    pub(crate) fn take_token(&mut self, event: EventId) -> u32 {
        let queue = &mut self.tokens[event as usize];
        let Some((request, n)) = queue.front_mut() else {
            return NO_REQUEST;
        };
        let request = *request;
        *n -= 1;
        if *n == 0 {
            queue.pop_front();
        }
        request
    }

    /// The cgroups whose idle state changes if `request` is signalled on `event` (the caller
    /// must bring their running tasks' accounting up to now first).
    pub(crate) fn flips(&self, request: u32, event: EventId) -> [Option<u32>; 2] {
        let Some((from, to)) = self.transition(request, event) else {
            return [None, None];
        };
        [
            from.filter(|cg| self.pending[*cg as usize] == 1),
            to.filter(|cg| self.pending[*cg as usize] == 0),
        ]
    }

    /// (cgroup the request leaves, cgroup it enters) when it is signalled on `event`.
    fn transition(&self, request: u32, event: EventId) -> Option<(Option<u32>, Option<u32>)> {
        let r = self.requests.get(request as usize)?;
        // A completed request belongs to no chain any more.
        let cgroups = self.stage_cgroups.get(r.chain as usize)?;
        let from = cgroups.get(r.stage as usize).copied();
        match self.roles[event as usize]? {
            Role::Stage { chain, stage } if chain == r.chain && stage != r.stage => {
                Some((from, Some(cgroups[stage as usize])))
            }
            Role::Complete { chain } if chain == r.chain && r.stage != NOT_STARTED => {
                Some((from, None))
            }
            _ => None,
        }
    }

    /// Moves `request` along its chain for a signal of `event` at `now`.
    pub(crate) fn signalled(&mut self, request: u32, event: EventId, now: Time) {
        let Some((from, to)) = self.transition(request, event) else {
            return;
        };
        if let Some(cg) = from {
            self.pending[cg as usize] -= 1;
        }
        if let Some(cg) = to {
            self.pending[cg as usize] += 1;
        }
        let r = &mut self.requests[request as usize];
        match self.roles[event as usize] {
            Some(Role::Stage { stage, .. }) => r.stage = stage,
            _ => {
                let chain = &mut self.chains[r.chain as usize];
                chain.completed += 1;
                chain.latency.record(now - r.origin);
                r.stage = NOT_STARTED;
                // A completed request may not complete again.
                r.chain = u32::MAX;
            }
        }
    }

    pub(crate) fn finish(self) -> Vec<ChainOutcome> {
        self.chains
    }
}

/// A chain's figures for the report.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct ChainReport {
    pub name: String,
    pub arrivals: u64,
    pub completed: u64,
    /// Completed requests per simulated second.
    pub throughput_per_s: f64,
    /// End-to-end latency of the completed requests.
    pub latency: LatencySummary,
    pub cpu_ns: Time,
    /// CPU time of the chain's runtimes while they had no pending request.
    pub idle_ns: Time,
    /// `idle_ns / cpu_ns` (null when the runtimes used no CPU).
    pub idle_ratio: Option<f64>,
}

pub fn ratio(part: Time, whole: Time) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The report line of one chain, or of several merged under `name`; `cgroup_cpu` and
/// `cgroup_idle` are CPU and idle time per cgroup.
pub fn chain_report(
    name: &str,
    chains: &[&ChainOutcome],
    cgroup_cpu: &[Time],
    cgroup_idle: &[Time],
    duration: Time,
) -> ChainReport {
    let mut latency = Histogram::default();
    let mut cgroups: Vec<u32> = Vec::new();
    for c in chains {
        latency.merge(&c.latency);
        cgroups.extend(&c.cgroups);
    }
    cgroups.sort_unstable();
    cgroups.dedup();
    let cpu_ns = cgroups.iter().map(|g| cgroup_cpu[*g as usize]).sum();
    let idle_ns = cgroups.iter().map(|g| cgroup_idle[*g as usize]).sum();
    let completed: u64 = chains.iter().map(|c| c.completed).sum();
    ChainReport {
        name: name.to_string(),
        arrivals: chains.iter().map(|c| c.arrivals).sum(),
        completed,
        throughput_per_s: if duration == 0 {
            0.0
        } else {
            completed as f64 * S as f64 / duration as f64
        },
        latency: latency.summary(),
        cpu_ns,
        idle_ns,
        idle_ratio: ratio(idle_ns, cpu_ns),
    }
}
