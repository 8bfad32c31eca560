//! The scenario generator: a seed gives a scenario (machine, events, tasks with random phase
//! programs, arrivals, tenants with example and misbehaving policies at random levels, weights
//! and bounds, attached and detached at random times), kept as a small model that renders to
//! the TOML format (so a failure is reproduced by `upsched sim` from exactly what ran) and that
//! the shrinker can take parts away from.

use std::fmt::Write;

use upsched_sim::rng::SimRng;

/// Example policies (`example:NAME`) and misbehaving ones (`NAME.bpf.o`, from
/// `upsched-testdata`) the tenants draw from. `no_null_check` is left out: admission refuses it.
pub const EXAMPLES: [&str; 7] = ["edf", "faas", "fifo", "prio", "rr", "vm", "wfq"];
pub const MISBEHAVING: [&str; 4] = ["absurd", "cpu_one", "park_forever", "starve"];

const CGROUPS: [&str; 6] = ["/", "/a", "/a/x", "/a/y", "/b", "/b/z"];
const HINT_WORDS: [&str; 5] = ["flags", "wait_event", "pending", "deadline", "latency_ns"];

/// Stream of the generator, apart from the simulator's streams of the same seed.
const GENERATOR_STREAM: u64 = 0x5eed_f022;

#[derive(Clone, Debug)]
pub enum Step {
    Run(Dist),
    Sleep(Dist),
    Block(usize),
    Spin { event: usize, max: Option<Dist> },
    Signal { event: usize, count: u32 },
    Yield,
    Hint { word: usize, value: u64 },
    HintEvent { word: usize, event: usize },
    Fork(usize),
    Loop { count: Option<u32>, body: Vec<Step> },
}

#[derive(Clone, Debug)]
pub enum Dist {
    Fixed(u64),
    Exponential(u64),
    Uniform(u64, u64),
}

#[derive(Clone, Debug)]
pub struct Task {
    pub name: String,
    /// 0: a template that forks and arrivals start.
    pub count: u32,
    pub cgroup: usize,
    pub nice: i32,
    pub cpus: Option<Vec<u32>>,
    pub start_us: u64,
    pub program: Vec<Step>,
}

#[derive(Clone, Debug)]
pub struct Arrival {
    pub periodic: bool,
    /// Period or mean interval.
    pub interval_us: u64,
    pub count: u32,
    /// Spawn this task (a template), else signal `event`.
    pub spawn: Option<usize>,
    pub event: usize,
}

#[derive(Clone, Debug)]
pub struct Tenant {
    pub policy: String,
    pub cgroup: usize,
    pub level: u32,
    pub weight: u32,
    pub slice_min_us: u64,
    pub slice_us: u64,
    pub slice_max_us: u64,
    pub park_max_us: u64,
    pub watchdog_us: u64,
    pub attach_us: u64,
    pub detach_us: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct Scenario {
    pub seed: u64,
    pub duration_ms: u64,
    pub cpus: u32,
    pub smt: u32,
    pub llc_cpus: u32,
    pub numa_nodes: u32,
    pub zero_costs: bool,
    /// (broadcast, initial tokens) per event `e0`, `e1`, ...
    pub events: Vec<(bool, u32)>,
    pub tasks: Vec<Task>,
    pub arrivals: Vec<Arrival>,
    pub tenants: Vec<Tenant>,
}

struct Gen {
    rng: SimRng,
}

impl Gen {
    fn below(&mut self, n: u64) -> u64 {
        self.rng.next_u64() % n.max(1)
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    /// Log-uniform in [lo, hi].
    fn log_range(&mut self, lo: u64, hi: u64) -> u64 {
        let (l, h) = ((lo as f64).ln(), (hi as f64).ln());
        ((l + self.rng.unit() * (h - l)).exp().round() as u64).clamp(lo, hi)
    }

    fn dist(&mut self, lo_us: u64, hi_us: u64) -> Dist {
        let mean = self.log_range(lo_us, hi_us) * 1000;
        match self.below(3) {
            0 => Dist::Fixed(mean),
            1 => Dist::Exponential(mean),
            _ => Dist::Uniform(mean / 2, mean + mean / 2),
        }
    }

    fn op(&mut self, events: usize, templates: &[usize], may_fork: bool) -> Step {
        let event = self.below(events as u64) as usize;
        loop {
            let step = match self.below(12) {
                0..=2 => Step::Run(self.dist(20, 8000)),
                3 | 4 => Step::Sleep(self.dist(20, 20_000)),
                5 if events > 0 => Step::Block(event),
                6 if events > 0 => Step::Spin {
                    event,
                    max: self.chance(60).then(|| self.dist(10, 3000)),
                },
                7 if events > 0 => Step::Signal {
                    event,
                    count: self.range(1, 3) as u32,
                },
                8 => Step::Yield,
                9 if events > 0 && self.chance(50) => Step::HintEvent { word: 1, event },
                9 => Step::Hint {
                    word: self.below(HINT_WORDS.len() as u64) as usize,
                    value: self.below(4),
                },
                10 if may_fork && !templates.is_empty() => Step::Fork(*self.pick(templates)),
                _ => continue,
            };
            return step;
        }
    }

    /// A body of a few operations with at least one that takes CPU or sleeps, so that a loop
    /// around it lets time pass.
    fn body(&mut self, events: usize, templates: &[usize], may_fork: bool) -> Vec<Step> {
        let n = self.range(1, 5);
        let mut body: Vec<Step> = (0..n)
            .map(|_| self.op(events, templates, may_fork))
            .collect();
        if !body
            .iter()
            .any(|s| matches!(s, Step::Run(_) | Step::Sleep(_)))
        {
            body.push(Step::Run(self.dist(20, 4000)));
        }
        body
    }

    fn program(&mut self, events: usize, templates: &[usize]) -> Vec<Step> {
        let mut program = self.body(events, templates, true);
        if self.chance(30) {
            let inner = self.body(events, templates, false);
            program.push(Step::Loop {
                count: Some(self.range(2, 6) as u32),
                body: inner,
            });
        }
        // Forks stay outside loops that run forever: a scenario creates a bounded set of tasks.
        let body = self.body(events, templates, false);
        let count = if self.chance(70) {
            None
        } else {
            Some(self.range(1, 40) as u32)
        };
        program.push(Step::Loop { count, body });
        program
    }

    fn tenant(&mut self, duration_us: u64) -> Tenant {
        let policy = if self.chance(60) {
            format!("example:{}", self.pick(&EXAMPLES))
        } else {
            format!("{}.bpf.o", self.pick(&MISBEHAVING))
        };
        let slice_min_us = self.log_range(500, 4000);
        let slice_max_us = self.log_range(slice_min_us, 30_000);
        let slice_us = self.range(slice_min_us, slice_max_us);
        let park_max_us = self.log_range(1000, 60_000);
        let watchdog_us = park_max_us + self.log_range(1000, 300_000);
        let attach_us = if self.chance(60) {
            0
        } else {
            self.below(duration_us / 2)
        };
        let detach_us = self
            .chance(35)
            .then(|| attach_us + self.range(1000, duration_us));
        Tenant {
            policy,
            cgroup: self.below(CGROUPS.len() as u64) as usize,
            level: self.below(8) as u32,
            weight: self.log_range(1, 10_000) as u32,
            slice_min_us,
            slice_us,
            slice_max_us,
            park_max_us,
            watchdog_us,
            attach_us,
            detach_us,
        }
    }
}

/// The scenario of `seed`.
pub fn generate(seed: u64) -> Scenario {
    let mut g = Gen {
        rng: SimRng::stream(seed, GENERATOR_STREAM),
    };
    let smt = if g.chance(30) { 2 } else { 1 };
    let cores = g.range(1, 4) as u32;
    let cpus = smt * cores;
    let numa_nodes = if cores % 2 == 0 && g.chance(30) { 2 } else { 1 };
    let llc_cpus = if g.chance(40) { cpus / numa_nodes } else { smt };
    let duration_ms = g.range(100, 400);
    let events: Vec<(bool, u32)> = (0..g.below(4))
        .map(|_| (g.chance(25), g.below(3) as u32))
        .collect();
    let nr_templates = g.below(3) as usize;
    let nr_tasks = g.range(1, 6) as usize;
    let templates: Vec<usize> = (nr_tasks..nr_tasks + nr_templates).collect();
    let mut tasks = Vec::new();
    for i in 0..nr_tasks + nr_templates {
        let template = i >= nr_tasks;
        let cpus_list = g.chance(30).then(|| {
            let mut list: Vec<u32> = (0..cpus).filter(|_| g.chance(50)).collect();
            if list.is_empty() {
                list.push(g.below(u64::from(cpus)) as u32);
            }
            list
        });
        let program = if template {
            // Templates run a finite program and fork nothing: forks and arrivals stay bounded.
            let mut body = g.body(events.len(), &[], false);
            body.push(Step::Run(g.dist(20, 3000)));
            body
        } else {
            g.program(events.len(), &templates)
        };
        tasks.push(Task {
            name: format!("t{i}"),
            count: if template { 0 } else { g.range(1, 3) as u32 },
            cgroup: g.below(CGROUPS.len() as u64) as usize,
            nice: g.range(0, 39) as i32 - 20,
            cpus: cpus_list,
            start_us: if g.chance(50) { 0 } else { g.below(50_000) },
            program,
        });
    }
    let arrivals = (0..g.below(3))
        .map(|_| Arrival {
            periodic: g.chance(50),
            interval_us: g.log_range(500, 50_000),
            count: g.range(1, 30) as u32,
            spawn: (!templates.is_empty() && (events.is_empty() || g.chance(50)))
                .then(|| *g.pick(&templates)),
            event: g.below(events.len() as u64) as usize,
        })
        .filter(|a| a.spawn.is_some() || !events.is_empty())
        .collect();
    let tenants = (0..g.range(1, 4))
        .map(|_| g.tenant(duration_ms * 1000))
        .collect();
    Scenario {
        seed,
        duration_ms,
        cpus,
        smt,
        llc_cpus,
        numa_nodes,
        zero_costs: g.chance(25),
        events,
        tasks,
        arrivals,
        tenants,
    }
}

fn duration(ns: u64) -> String {
    if ns % 1000 == 0 {
        format!("\"{}us\"", ns / 1000)
    } else {
        format!("\"{ns}ns\"")
    }
}

fn dist_toml(d: &Dist) -> String {
    match d {
        Dist::Fixed(ns) => duration(*ns),
        Dist::Exponential(mean) => {
            format!("{{ dist = \"exponential\", mean = {} }}", duration(*mean))
        }
        Dist::Uniform(min, max) => format!(
            "{{ dist = \"uniform\", min = {}, max = {} }}",
            duration(*min),
            duration(*max)
        ),
    }
}

fn steps_toml(steps: &[Step], tasks: &[Task]) -> String {
    let items: Vec<String> = steps
        .iter()
        .map(|step| match step {
            Step::Run(d) => format!("{{ run = {} }}", dist_toml(d)),
            Step::Sleep(d) => format!("{{ sleep = {} }}", dist_toml(d)),
            Step::Block(e) => format!("{{ block = \"e{e}\" }}"),
            Step::Spin { event, max: None } => format!("{{ spin_until = \"e{event}\" }}"),
            Step::Spin {
                event,
                max: Some(d),
            } => format!(
                "{{ spin_until = \"e{event}\", spin_max = {} }}",
                dist_toml(d)
            ),
            Step::Signal { event, count } => {
                format!("{{ signal = \"e{event}\", count = {count} }}")
            }
            Step::Yield => "{ yield = true }".to_string(),
            Step::Hint { word, value } => {
                format!(
                    "{{ set_hint = \"{}\", value = {value} }}",
                    HINT_WORDS[*word]
                )
            }
            Step::HintEvent { word, event } => {
                format!(
                    "{{ set_hint = \"{}\", event = \"e{event}\" }}",
                    HINT_WORDS[*word]
                )
            }
            Step::Fork(t) => format!("{{ fork = \"{}\" }}", tasks[*t].name),
            Step::Loop { count, body } => format!(
                "{{ loop = {}, body = [{}] }}",
                count.map_or("\"forever\"".to_string(), |c| c.to_string()),
                steps_toml(body, tasks)
            ),
        })
        .collect();
    items.join(", ")
}

impl Scenario {
    /// The scenario in the TOML format, runnable with `upsched sim FILE --check` (the
    /// misbehaving policies as `.bpf.o` files next to it).
    pub fn to_toml(&self) -> String {
        let mut s = String::new();
        let w = &mut s;
        let _ = writeln!(w, "name = \"simfuzz-{}\"", self.seed);
        let _ = writeln!(w, "duration = \"{}ms\"", self.duration_ms);
        let _ = writeln!(w, "seed = {}", self.seed);
        let _ = writeln!(w, "policy = [\"upsched\"]\n\n[machine]");
        let _ = writeln!(
            w,
            "cpus = {}\nsmt = {}\nllc_cpus = {}\nnuma_nodes = {}",
            self.cpus, self.smt, self.llc_cpus, self.numa_nodes
        );
        if self.zero_costs {
            let _ = writeln!(w, "costs = {{ preset = \"zero\" }}");
        }
        for (i, (broadcast, initial)) in self.events.iter().enumerate() {
            let kind = if *broadcast { "broadcast" } else { "counter" };
            let _ = writeln!(w, "\n[[event]]\nname = \"e{i}\"\nkind = \"{kind}\"");
            if !broadcast {
                let _ = writeln!(w, "initial = {initial}");
            }
        }
        for t in &self.tasks {
            let _ = writeln!(w, "\n[[task]]\nname = \"{}\"\ncount = {}", t.name, t.count);
            let _ = writeln!(w, "cgroup = \"{}\"\nnice = {}", CGROUPS[t.cgroup], t.nice);
            if let Some(cpus) = &t.cpus {
                let _ = writeln!(w, "cpus = {cpus:?}");
            }
            let _ = writeln!(w, "start = \"{}us\"", t.start_us);
            let _ = writeln!(w, "program = [{}]", steps_toml(&t.program, &self.tasks));
        }
        for (i, a) in self.arrivals.iter().enumerate() {
            let _ = writeln!(w, "\n[[arrival]]\nname = \"a{i}\"");
            if a.periodic {
                let _ = writeln!(
                    w,
                    "process = \"periodic\"\nperiod = \"{}us\"",
                    a.interval_us
                );
            } else {
                let rate = 1e6 / a.interval_us as f64;
                let _ = writeln!(w, "process = \"poisson\"\nrate = {rate:.3}");
            }
            let _ = writeln!(w, "count = {}", a.count);
            match a.spawn {
                Some(t) => {
                    let _ = writeln!(w, "spawn = \"{}\"", self.tasks[t].name);
                }
                None => {
                    let _ = writeln!(w, "signal = \"e{}\"", a.event);
                }
            }
        }
        for t in &self.tenants {
            let _ = writeln!(w, "\n[[tenant]]\npolicy = \"{}\"", t.policy);
            let _ = writeln!(w, "cgroup = \"{}\"", CGROUPS[t.cgroup]);
            let _ = writeln!(w, "level = {}\nweight = {}", t.level, t.weight);
            let _ = writeln!(
                w,
                "slice_min = \"{}us\"\nslice = \"{}us\"\nslice_max = \"{}us\"",
                t.slice_min_us, t.slice_us, t.slice_max_us
            );
            let _ = writeln!(
                w,
                "park_max = \"{}us\"\nwatchdog = \"{}us\"\nattach = \"{}us\"",
                t.park_max_us, t.watchdog_us, t.attach_us
            );
            if let Some(detach) = t.detach_us {
                let _ = writeln!(w, "detach = \"{detach}us\"");
            }
        }
        s
    }

    /// Smaller variants of the scenario, for the shrinker: without one tenant (one stays, the
    /// reproduction runs `upsched`), task, arrival or program step, with one instance less, a
    /// shorter run, the tenants attached from the start or never detached. Variants that break
    /// a reference (an event no longer declared...) are refused by the parser and skipped by
    /// the caller.
    pub fn smaller(&self) -> Vec<Scenario> {
        let mut out = Vec::new();
        let mut with = |f: &dyn Fn(&mut Scenario)| {
            let mut s = self.clone();
            f(&mut s);
            out.push(s);
        };
        if self.duration_ms > 10 {
            with(&|s| s.duration_ms /= 2);
            with(&|s| s.duration_ms = s.duration_ms * 3 / 4);
        }
        for i in 0..self.tenants.len() {
            if self.tenants.len() > 1 {
                with(&|s| {
                    s.tenants.remove(i);
                });
            }
            if self.tenants[i].detach_us.is_some() {
                with(&|s| s.tenants[i].detach_us = None);
            }
            if self.tenants[i].attach_us > 0 {
                with(&|s| s.tenants[i].attach_us = 0);
            }
        }
        for i in 0..self.arrivals.len() {
            with(&|s| {
                s.arrivals.remove(i);
            });
        }
        for i in 0..self.tasks.len() {
            if !self.starts(i) {
                with(&|s| s.remove_task(i));
            }
            if self.tasks[i].count > 1 {
                with(&|s| s.tasks[i].count -= 1);
            }
            for j in 0..self.tasks[i].program.len() {
                with(&|s| {
                    s.tasks[i].program.remove(j);
                });
                if let Step::Loop { body, .. } = &self.tasks[i].program[j] {
                    for k in 0..body.len() {
                        with(&|s| {
                            if let Step::Loop { body, .. } = &mut s.tasks[i].program[j] {
                                body.remove(k);
                            }
                        });
                    }
                }
            }
        }
        if self.cpus > 1 {
            with(&|s| {
                s.cpus = 1;
                s.smt = 1;
                s.llc_cpus = 1;
                s.numa_nodes = 1;
                for t in &mut s.tasks {
                    t.cpus = None;
                }
            });
        }
        if !self.zero_costs {
            with(&|s| s.zero_costs = true);
        }
        out
    }

    /// Whether a fork or an arrival starts task `i`.
    fn starts(&self, i: usize) -> bool {
        fn forks(steps: &[Step], i: usize) -> bool {
            steps.iter().any(|step| match step {
                Step::Fork(t) => *t == i,
                Step::Loop { body, .. } => forks(body, i),
                _ => false,
            })
        }
        self.tasks.iter().any(|t| forks(&t.program, i))
            || self.arrivals.iter().any(|a| a.spawn == Some(i))
    }

    /// Removes task `i`, which nothing starts, renumbering the references to later tasks.
    fn remove_task(&mut self, i: usize) {
        self.tasks.remove(i);
        fn renumber(steps: &mut [Step], i: usize) {
            for step in steps {
                match step {
                    Step::Fork(t) if *t > i => *t -= 1,
                    Step::Loop { body, .. } => renumber(body, i),
                    _ => {}
                }
            }
        }
        for t in &mut self.tasks {
            renumber(&mut t.program, i);
        }
        for a in &mut self.arrivals {
            if let Some(t) = a.spawn.as_mut().filter(|t| **t > i) {
                *t -= 1;
            }
        }
    }
}
