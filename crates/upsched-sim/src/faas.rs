//! The FaaS chain experiment as a built-in scenario (`upsched sim faas:chains=50,...`).
//!
//! N colocated chains of the five functions of the image-processing application
//! (extract-metadata -> transform-metadata -> handler -> thumbnail -> store-metadata). Each
//! function runs in its own runtime (cgroup `/faas/cNN/FUNCTION`) with
//! - a **worker** thread: waits for a request, runs a CPU burst, waits for I/O, runs a second
//!   burst, and passes the request to the next function (or completes it);
//! - `pollers` **runtime threads**: poll the function's inbox (`spin_until` with a spin budget,
//!   then sleep until the event, like a spin-then-block event loop) and hand each request to
//!   the worker.
//!
//! Who posts the hints (`hints`):
//! - `runtime` (default): an instrumented runtime. A runtime thread that starts polling posts
//!   `wait_event = inbox, flags = SLEEPY` and yields once (the scheduler may park it there);
//!   the inbox raises its `pending` word when it delivers a request and the sender notifies
//!   the scheduler; the thread clears its words when it takes the request. The worker declares
//!   its hand-over event the same way.
//! - `platform`: the runtime is unmodified (it spins, then blocks, and posts nothing); the
//!   platform, which routes every request, posts for the function's runtime threads: `flags =
//!   0, pending = 1` when the function gets a request, `flags = SLEEPY, pending = 0` when its
//!   last one has left it, and notifies the scheduler after each post.
//!
//! Requests arrive open loop (Poisson) at each chain's first function. The model and its
//! calibration are explained in `docs/faas-sim.md`.

use crate::chains::event_hint_id;
use crate::machine::{Costs, CpuMask, Machine, Topology};
use crate::rng::Dist;
use crate::scenario::*;
use crate::units::{MS, S, Time, US, format_duration, parse_duration};

/// Who posts the runtime threads' hints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HintSource {
    /// The runtime itself: it posts SLEEPY and yields as it starts polling.
    Runtime,
    /// The platform on the runtime's behalf, from the requests it routes.
    Platform,
}

impl HintSource {
    fn name(self) -> &'static str {
        match self {
            HintSource::Runtime => "runtime",
            HintSource::Platform => "platform",
        }
    }
}

/// One function of the chain: mean CPU time and mean I/O wait per request.
pub struct Function {
    pub name: &'static str,
    pub cpu: Time,
    pub io: Time,
}

impl Function {
    /// Each of a request's two CPU bursts: log-normal, half the function's CPU time (scaled)
    /// as mean, half that mean as standard deviation.
    pub fn burst(&self, cpu_scale: f64) -> Dist {
        let half_burst = self.cpu as f64 * cpu_scale / 2.0;
        Dist::log_normal_from_moments(half_burst, half_burst / 2.0)
    }

    /// A request's I/O wait: exponential with the function's I/O wait (scaled) as mean.
    pub fn io_wait(&self, io_scale: f64) -> Dist {
        let io = self.io as f64 * io_scale;
        if io >= 1.0 {
            Dist::Exponential { mean: io }
        } else {
            Dist::Fixed(0)
        }
    }
}

/// The chain, in order. Costs are those of a warm runtime serving one image: the metadata
/// steps parse or reshape a small document (about a millisecond of CPU), thumbnail decodes,
/// resizes and encodes an image (about ten), and the I/O waits are object-store and database
/// round trips inside a data centre (a few milliseconds each).
pub const FUNCTIONS: [Function; 5] = [
    Function {
        name: "extract-metadata",
        cpu: 4 * MS,
        io: 6 * MS,
    },
    Function {
        name: "transform-metadata",
        cpu: MS,
        io: 500 * US,
    },
    Function {
        name: "handler",
        cpu: MS,
        io: 2 * MS,
    },
    Function {
        name: "thumbnail",
        cpu: 12 * MS,
        io: 6 * MS,
    },
    Function {
        name: "store-metadata",
        cpu: MS,
        io: 4 * MS,
    },
];

/// The generator's parameters; `faas:NAME=VALUE,...` sets them.
#[derive(Clone, Debug, PartialEq)]
pub struct FaasParams {
    pub chains: u32,
    /// Requests per second entering each chain (Poisson).
    pub rate: f64,
    pub cpus: u32,
    pub duration: Time,
    /// Runtime threads per function.
    pub pollers: u32,
    /// CPU time a runtime thread polls before it sleeps until the event.
    pub spin: Time,
    /// CPU time a runtime thread needs to hand a request to the worker.
    pub handoff: Time,
    /// Factors on every function's CPU bursts and I/O waits.
    pub cpu_scale: f64,
    pub io_scale: f64,
    pub hints: HintSource,
    /// Park bound of the tenant that `--policy` attaches (its grant's `park_max`).
    pub park_max: Time,
    pub seed: u64,
}

impl Default for FaasParams {
    fn default() -> Self {
        FaasParams {
            chains: 1,
            rate: 10.0,
            cpus: 16,
            duration: 60 * S,
            pollers: 2,
            spin: 5 * MS,
            handoff: 50 * US,
            cpu_scale: 1.0,
            io_scale: 1.0,
            hints: HintSource::Runtime,
            // Longer than almost every idle period of a runtime at 10 requests/s, so that a
            // parked poller is nearly always released by its request, not by the bound.
            park_max: S,
            seed: 1,
        }
    }
}

/// Name, meaning and accepted values of every parameter, for help texts and errors.
pub const PARAMS: [(&str, &str); 12] = [
    ("chains", "colocated chains, 0-3200"),
    ("rate", "requests per second into each chain, > 0"),
    ("cpus", "CPUs of the machine, 1-1024"),
    ("duration", "simulated time, e.g. 60s"),
    ("pollers", "runtime threads per function, 0-64"),
    (
        "spin",
        "CPU time a runtime thread polls before sleeping, e.g. 5ms",
    ),
    (
        "handoff",
        "CPU time to hand a request to the worker, e.g. 50us",
    ),
    ("cpu_scale", "factor on the functions' CPU bursts, > 0"),
    ("io_scale", "factor on the functions' I/O waits, >= 0"),
    (
        "hints",
        "who posts the runtime threads' hints: runtime or platform",
    ),
    (
        "park_max",
        "park bound of the --policy tenant, e.g. 1s (below its 3 s watchdog)",
    ),
    ("seed", "seed of the random streams"),
];

fn parse_number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("faas parameter {name}: {value:?} is not a valid number"))
}

fn in_range<T: PartialOrd + std::fmt::Display>(
    name: &str,
    v: T,
    ok: bool,
    expected: &str,
) -> Result<T, String> {
    if ok {
        Ok(v)
    } else {
        Err(format!("faas parameter {name}: {v} is outside {expected}"))
    }
}

impl FaasParams {
    /// Sets one parameter from its text; the parameters stay unchanged on error.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let duration =
            |v: &str| parse_duration(v).map_err(|e| format!("faas parameter {name}: {e}"));
        match name {
            "chains" => {
                let v: u32 = parse_number(name, value)?;
                // 3200: 50 chains per 16 CPUs (the experiment's density) on the largest machine.
                self.chains = in_range(name, v, v <= 3200, "0-3200")?;
            }
            "rate" => {
                let v: f64 = parse_number(name, value)?;
                let bounded = v.is_finite() && v > 0.0 && v <= MAX_ARRIVAL_RATE;
                let bound = format!("> 0 and at most {MAX_ARRIVAL_RATE:e} per second");
                self.rate = in_range(name, v, bounded, &bound)?;
            }
            "cpus" => {
                let v: u32 = parse_number(name, value)?;
                self.cpus = in_range(name, v, (1..=1024).contains(&v), "1-1024")?;
            }
            "duration" => {
                let v = duration(value)?;
                self.duration = in_range(name, v, v > 0, "> 0")?;
            }
            "pollers" => {
                let v: u32 = parse_number(name, value)?;
                self.pollers = in_range(name, v, v <= 64, "0-64")?;
            }
            "spin" => self.spin = duration(value)?,
            "handoff" => self.handoff = duration(value)?,
            "cpu_scale" => {
                let v: f64 = parse_number(name, value)?;
                self.cpu_scale = in_range(name, v, v.is_finite() && v > 0.0, "> 0")?;
            }
            "io_scale" => {
                let v: f64 = parse_number(name, value)?;
                self.io_scale = in_range(name, v, v.is_finite() && v >= 0.0, ">= 0")?;
            }
            "hints" => {
                self.hints = match value.trim() {
                    "runtime" => HintSource::Runtime,
                    "platform" => HintSource::Platform,
                    other => {
                        return Err(format!(
                            "faas parameter hints: {other:?}: use runtime or platform"
                        ));
                    }
                }
            }
            "park_max" => {
                let v = duration(value)?;
                let watchdog = upsched_abi::mechanism::TenantParams::default().watchdog_ns;
                let bound = format!(
                    "below the tenant's watchdog ({})",
                    format_duration(watchdog)
                );
                self.park_max = in_range(name, v, v < watchdog, &bound)?;
            }
            "seed" => self.seed = parse_number(name, value)?,
            _ => {
                return Err(format!(
                    "unknown faas parameter {name:?} (known: {})",
                    PARAMS.map(|p| p.0).join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Parses `faas` or `faas:NAME=VALUE,...`; `None` when `spec` names no built-in scenario.
    pub fn from_spec(spec: &str) -> Option<Result<FaasParams, String>> {
        let rest = spec.strip_prefix("faas")?;
        let assignments = match rest {
            "" => "",
            _ => rest.strip_prefix(':')?,
        };
        let mut params = FaasParams::default();
        for item in assignments.split(',').filter(|s| !s.trim().is_empty()) {
            let Some((name, value)) = item.split_once('=') else {
                return Some(Err(format!(
                    "faas parameter {item:?}: write NAME=VALUE (known: {})",
                    PARAMS.map(|p| p.0).join(", ")
                )));
            };
            if let Err(e) = params.set(name.trim(), value) {
                return Some(Err(e));
            }
        }
        Some(Ok(params))
    }

    /// The scenario's name: `faas` and the parameters that differ from the defaults.
    pub fn name(&self) -> String {
        let d = FaasParams::default();
        let mut parts = Vec::new();
        let mut show = |name: &str, differs: bool, value: String| {
            if differs {
                parts.push(format!("{name}={value}"));
            }
        };
        show("chains", self.chains != d.chains, self.chains.to_string());
        show("rate", self.rate != d.rate, self.rate.to_string());
        show("cpus", self.cpus != d.cpus, self.cpus.to_string());
        show(
            "duration",
            self.duration != d.duration,
            format_duration(self.duration),
        );
        show(
            "pollers",
            self.pollers != d.pollers,
            self.pollers.to_string(),
        );
        show("spin", self.spin != d.spin, format_duration(self.spin));
        show(
            "handoff",
            self.handoff != d.handoff,
            format_duration(self.handoff),
        );
        show(
            "cpu_scale",
            self.cpu_scale != d.cpu_scale,
            self.cpu_scale.to_string(),
        );
        show(
            "io_scale",
            self.io_scale != d.io_scale,
            self.io_scale.to_string(),
        );
        show(
            "hints",
            self.hints != d.hints,
            self.hints.name().to_string(),
        );
        show(
            "park_max",
            self.park_max != d.park_max,
            format_duration(self.park_max),
        );
        show("seed", self.seed != d.seed, self.seed.to_string());
        if parts.is_empty() {
            "faas".into()
        } else {
            format!("faas:{}", parts.join(","))
        }
    }

    /// Builds the scenario.
    pub fn build(&self) -> Scenario {
        let smt = if self.cpus % 2 == 0 { 2 } else { 1 };
        let topology = Topology::new(self.cpus, smt, self.cpus, 1)
            .unwrap_or_else(|e| unreachable!("a single-LLC machine is always valid: {e}"));
        let mut s = Scenario {
            name: self.name(),
            description: format!(
                "{} colocated FaaS chains of 5 functions, {} requests/s each, {} CPUs",
                self.chains, self.rate, self.cpus
            ),
            duration: self.duration,
            seed: self.seed,
            policies: vec!["linux-eevdf".into()],
            machine: Machine {
                topology,
                costs: Costs::default(),
                tick: 4 * MS,
            },
            events: Vec::new(),
            tasks: Vec::new(),
            cgroups: vec!["/".into()],
            cpusets: vec![CpuMask::full(self.cpus)],
            arrivals: Vec::new(),
            params: SchedParams {
                policy_park_max: Some(self.park_max),
                ..SchedParams::default()
            },
            chains: Vec::new(),
            tenants: Vec::new(),
            warnings: Vec::new(),
        };
        for chain in 0..self.chains {
            self.add_chain(&mut s, chain);
        }
        s
    }

    fn add_chain(&self, s: &mut Scenario, chain: u32) {
        let event = |s: &mut Scenario, name: String, notify: bool| {
            s.events.push(EventSpec {
                name,
                kind: EventKind::Counter,
                initial: 0,
                notify,
            });
            (s.events.len() - 1) as EventId
        };
        let runtime_hints = self.hints == HintSource::Runtime;
        let prefix = format!("c{chain:02}");
        // An instrumented runtime's inbox notifies the scheduler when it raises a parked
        // poller's `pending`; the platform notifies after its own posts instead.
        let inboxes: Vec<EventId> = FUNCTIONS
            .iter()
            .map(|f| event(s, format!("{prefix}.{}.in", f.name), runtime_hints))
            .collect();
        let complete = event(s, format!("{prefix}.done"), false);
        let mut stages = Vec::new();
        for (k, f) in FUNCTIONS.iter().enumerate() {
            let work = event(s, format!("{prefix}.{}.work", f.name), false);
            s.cgroups.push(format!("/faas/{prefix}/{}", f.name));
            let cgroup = (s.cgroups.len() - 1) as u32;
            let next = inboxes.get(k + 1).copied().unwrap_or(complete);
            let burst = f.burst(self.cpu_scale);
            let io = f.io_wait(self.io_scale);
            let hint = |word: u32, value: u64| {
                Step::Op(Op::SetHint {
                    word: word as u8,
                    value,
                })
            };
            // The runtime's own posts; the unmodified runtime of the platform model has none.
            let posts = |steps: Vec<Step>| if runtime_hints { steps } else { Vec::new() };
            let worker_body = [
                posts(vec![hint(
                    upsched_abi::HINT_WAIT_EVENT,
                    event_hint_id(work),
                )]),
                vec![Step::Op(Op::Block(work))],
                posts(vec![hint(upsched_abi::HINT_PENDING, 0)]),
                vec![
                    Step::Op(Op::Run(burst.clone())),
                    Step::Op(Op::Sleep(io)),
                    Step::Op(Op::Run(burst)),
                    Step::Op(Op::Signal {
                        event: next,
                        count: 1,
                    }),
                ],
            ];
            let poller_body = [
                // Event first, then SLEEPY: never SLEEPY with a stale event.
                posts(vec![
                    hint(upsched_abi::HINT_WAIT_EVENT, event_hint_id(inboxes[k])),
                    hint(upsched_abi::HINT_FLAGS, upsched_abi::HINTF_SLEEPY as u64),
                ]),
                vec![Step::Op(Op::SpinThenBlock {
                    event: inboxes[k],
                    spin_max: Dist::Fixed(self.spin),
                    yield_first: runtime_hints,
                })],
                posts(vec![
                    hint(upsched_abi::HINT_FLAGS, 0),
                    hint(upsched_abi::HINT_PENDING, 0),
                ]),
                vec![
                    Step::Op(Op::Run(Dist::Fixed(self.handoff))),
                    Step::Op(Op::Signal {
                        event: work,
                        count: 1,
                    }),
                ],
            ];
            let forever = |body: [Vec<Step>; 4]| {
                vec![Step::Loop {
                    count: FOREVER,
                    body: body.concat(),
                }]
            };
            let (worker, poller) = (forever(worker_body), forever(poller_body));
            for (name, count, program) in [("worker", 1, worker), ("runtime", self.pollers, poller)]
            {
                s.tasks.push(TaskSpec {
                    name: format!("{prefix}.{}.{name}", f.name),
                    cgroup,
                    nice: 0,
                    weight: 1024,
                    affinity: 0,
                    count,
                    start: 0,
                    program: compile_program(&program)
                        .unwrap_or_else(|e| unreachable!("the FaaS programs let time pass: {e}")),
                });
            }
            // The runtime threads' spec was pushed last.
            let runtime_spec = (s.tasks.len() - 1) as u32;
            stages.push(ChainStage {
                event: inboxes[k],
                cgroup,
                platform_hints: if runtime_hints {
                    Vec::new()
                } else {
                    vec![runtime_spec]
                },
            });
        }
        s.arrivals.push(ArrivalSpec {
            name: format!("{prefix}.requests"),
            process: ArrivalProcess::Poisson {
                mean_interval: S as f64 / self.rate,
            },
            start: 0,
            stop: Time::MAX,
            max_count: u64::MAX,
            action: ArrivalAction::Signal {
                event: inboxes[0],
                count: 1,
            },
        });
        s.chains.push(ChainSpec {
            name: prefix,
            source: (s.arrivals.len() - 1) as u32,
            stages,
            complete,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_builds_n_chains_of_five_runtimes() {
        let p = FaasParams::from_spec("faas:chains=3,pollers=2,rate=5")
            .unwrap()
            .unwrap();
        let s = p.build();
        assert_eq!(s.name, "faas:chains=3,rate=5");
        assert_eq!(s.chains.len(), 3);
        assert_eq!(s.arrivals.len(), 3);
        // "/" plus one cgroup per function and chain, each holding a worker and 2 pollers.
        assert_eq!(s.cgroups.len(), 1 + 15);
        assert_eq!(s.tasks.len(), 30);
        assert_eq!(s.tasks.iter().map(|t| t.count).sum::<u32>(), 45);
        for (c, chain) in s.chains.iter().enumerate() {
            assert_eq!(chain.stages.len(), 5);
            for (k, stage) in chain.stages.iter().enumerate() {
                assert_eq!(
                    s.cgroups[stage.cgroup as usize],
                    format!("/faas/c{c:02}/{}", FUNCTIONS[k].name)
                );
                assert_eq!(
                    s.events[stage.event as usize].name,
                    format!("c{c:02}.{}.in", FUNCTIONS[k].name)
                );
            }
        }
        crate::chains::validate(&s.chains, &s.arrivals, &s.events).unwrap();
        assert_eq!(
            FaasParams::from_spec("faas")
                .unwrap()
                .unwrap()
                .build()
                .chains
                .len(),
            1
        );
        assert!(
            FaasParams::from_spec("faas:chains=0")
                .unwrap()
                .unwrap()
                .build()
                .tasks
                .is_empty()
        );
        let platform = FaasParams::from_spec("faas:hints=platform,park_max=500ms")
            .unwrap()
            .unwrap();
        assert_eq!(platform.name(), "faas:hints=platform,park_max=500.000ms");
        let s = platform.build();
        assert_eq!(s.params.policy_park_max, Some(500 * MS));
        // The platform posts for the runtime threads; the runtime's inboxes do not notify.
        for stage in &s.chains[0].stages {
            let specs: Vec<&str> = stage
                .platform_hints
                .iter()
                .map(|&spec| s.tasks[spec as usize].name.as_str())
                .collect();
            assert_eq!(specs.len(), 1);
            assert!(specs[0].ends_with(".runtime"), "{specs:?}");
            assert!(!s.events[stage.event as usize].notify);
        }
        let runtime = FaasParams::default().build();
        assert!(
            runtime.chains[0]
                .stages
                .iter()
                .all(|st| st.platform_hints.is_empty() && runtime.events[st.event as usize].notify)
        );
        assert!(FaasParams::from_spec("faasx").is_none());
        assert!(FaasParams::from_spec("examples/x.toml").is_none());
    }

    #[test]
    fn bad_parameters_are_refused_and_change_nothing() {
        for (spec, expected) in [
            ("faas:chains=-1", "not a valid number"),
            ("faas:chains=3201", "outside 0-3200"),
            ("faas:rate=0", "outside > 0"),
            ("faas:cpus=0", "outside 1-1024"),
            ("faas:spin=5", "no unit"),
            ("faas:colour=blue", "unknown faas parameter \"colour\""),
            ("faas:chains", "write NAME=VALUE"),
            ("faas:hints=kernel", "use runtime or platform"),
            ("faas:park_max=3s", "below the tenant's watchdog"),
            ("faas:park_max=1", "no unit"),
        ] {
            let e = FaasParams::from_spec(spec).unwrap().unwrap_err();
            assert!(e.contains(expected), "{spec}: {e}");
        }
        let mut p = FaasParams::default();
        assert!(p.set("rate", "-3").is_err());
        assert_eq!(p, FaasParams::default());
    }
}
