// SPDX-License-Identifier: GPL-2.0-only
//! The FaaS chain experiment of `docs/faas-sim.md` with real processes (`docs/faas.md`):
//! N chains of the five functions, each function a process in its own cgroup
//! (`ROOT/cNN/FUNCTION`) with a worker thread (CPU bursts, an I/O sleep) and runtime threads
//! that spin-poll the function's inbox in shared memory for up to a CPU budget and then block
//! on a futex; an open-loop Poisson arrival process and a platform process that routes each
//! request from one function to the next (both in `ROOT/platform`). Hints go through the real
//! hint path (`upsched-hints`): posted by the runtime threads themselves or by the platform
//! on their behalf.
//!
//! Each function's threads' CPU is read from the kernel's per-thread accounting whenever the
//! function's pending state changes (by the platform from `/proc/PID/task/TID/schedstat`, by
//! the worker through its process's thread CPU clocks), and the time since the last read is
//! attributed to the state that ends (see [`shared::FunctionState`]).
//!
//! The supervisor ([`run`]) starts every process as this program re-executed with the
//! arguments a [`Launcher`] says (the CLI's hidden `faas-child`), which calls [`child`].

pub mod function;
pub mod platform;
pub mod report;
pub mod shared;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use upsched_hints::ThreadHints;
use upsched_sim::faas::FUNCTIONS;

pub use report::Report;
use shared::{MAX_CHAINS, MAX_POLLERS, MAX_REQUESTS, Region, STAGES, Shared};

#[derive(Debug, thiserror::Error)]
pub enum FaasError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Setup(String),
    #[error("{0}")]
    Failed(String),
    #[error("interrupted")]
    Interrupted,
}

/// Who posts the runtime threads' hints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HintsMode {
    /// Nobody: the runtimes are not instrumented.
    None,
    /// Each runtime thread: SLEEPY with its inbox as event when it finds no request, cleared
    /// when it takes one; whoever queues requests raises the pending word.
    Runtime,
    /// The platform, for unmodified runtimes: SLEEPY (nothing pending) when it sees a function
    /// idle, the pending count when it routes a request to it.
    Platform,
}

impl HintsMode {
    pub const ALL: [HintsMode; 3] = [HintsMode::None, HintsMode::Runtime, HintsMode::Platform];

    pub fn name(self) -> &'static str {
        match self {
            HintsMode::None => "none",
            HintsMode::Runtime => "runtime",
            HintsMode::Platform => "platform",
        }
    }
}

impl std::str::FromStr for HintsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        HintsMode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("hints {s:?}: expected none, runtime or platform"))
    }
}

/// A run's parameters; [`Params::validate`] bounds every one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Params {
    pub chains: u32,
    /// Requests per second entering each chain.
    pub rate: f64,
    /// How long requests arrive.
    pub seconds: f64,
    /// How long in-flight requests may take to complete after the last arrival.
    pub drain_seconds: f64,
    pub pollers: u32,
    /// CPU a runtime thread polls before it blocks.
    pub spin_ns: u64,
    /// CPU a runtime thread spends handing a request to the worker.
    pub handoff_ns: u64,
    pub cpu_scale: f64,
    pub io_scale: f64,
    pub seed: u64,
    pub hints: HintsMode,
    /// The tenant whose hint map the hints go to (with hints).
    pub tenant: Option<String>,
    /// The cgroup under which `cNN/FUNCTION` and `platform` are created.
    pub cgroup_root: PathBuf,
}

impl Default for Params {
    /// The simulator's defaults (`upsched_sim::faas::FaasParams`), a 10 s run.
    fn default() -> Self {
        let sim = upsched_sim::faas::FaasParams::default();
        Params {
            chains: sim.chains,
            rate: sim.rate,
            seconds: 10.0,
            drain_seconds: 3.0,
            pollers: sim.pollers,
            spin_ns: sim.spin,
            handoff_ns: sim.handoff,
            cpu_scale: sim.cpu_scale,
            io_scale: sim.io_scale,
            seed: sim.seed,
            hints: HintsMode::None,
            tenant: None,
            cgroup_root: PathBuf::from("/sys/fs/cgroup/faas"),
        }
    }
}

/// The longest run and drain, in seconds.
pub const MAX_SECONDS: f64 = 600.0;
/// The largest spin budget (a runtime that polls longer is a busy loop) and hand-over.
pub const MAX_SPIN: Duration = Duration::from_secs(10);
pub const MAX_HANDOFF: Duration = Duration::from_millis(100);

fn check(ok: bool, message: impl FnOnce() -> String) -> Result<(), FaasError> {
    if ok {
        Ok(())
    } else {
        Err(FaasError::Invalid(message()))
    }
}

impl Params {
    /// Refuses values outside the bounds, each with what is accepted.
    pub fn validate(&self) -> Result<(), FaasError> {
        check((1..=MAX_CHAINS as u32).contains(&self.chains), || {
            format!("--chains {}: expected 1-{MAX_CHAINS}", self.chains)
        })?;
        check(
            self.rate.is_finite() && self.rate > 0.0 && self.rate <= 1000.0,
            || {
                format!(
                    "--rate {}: expected > 0 and at most 1000 per second",
                    self.rate
                )
            },
        )?;
        check(
            self.seconds.is_finite() && self.seconds > 0.0 && self.seconds <= MAX_SECONDS,
            || {
                format!(
                    "--seconds {}: expected > 0 and at most {MAX_SECONDS}",
                    self.seconds
                )
            },
        )?;
        // The Poisson count stays below the tables' size with overwhelming probability at half
        // of it; arrivals past it are refused and counted.
        let expected = self.rate * self.seconds;
        check(expected <= (MAX_REQUESTS / 2) as f64, || {
            format!(
                "--rate {} x --seconds {} = {expected} requests per chain: at most {} \
                 (each chain's queues hold {MAX_REQUESTS})",
                self.rate,
                self.seconds,
                MAX_REQUESTS / 2
            )
        })?;
        check(
            self.drain_seconds.is_finite()
                && self.drain_seconds >= 0.0
                && self.drain_seconds <= MAX_SECONDS,
            || {
                format!(
                    "--drain {}: expected 0 to {MAX_SECONDS} seconds",
                    self.drain_seconds
                )
            },
        )?;
        check((1..=MAX_POLLERS as u32).contains(&self.pollers), || {
            format!("--pollers {}: expected 1-{MAX_POLLERS}", self.pollers)
        })?;
        check(self.spin_ns <= MAX_SPIN.as_nanos() as u64, || {
            format!("--spin: at most {MAX_SPIN:?}")
        })?;
        check(self.handoff_ns <= MAX_HANDOFF.as_nanos() as u64, || {
            format!("--handoff: at most {MAX_HANDOFF:?}")
        })?;
        check(
            self.cpu_scale.is_finite() && self.cpu_scale > 0.0 && self.cpu_scale <= 100.0,
            || {
                format!(
                    "--cpu-scale {}: expected > 0 and at most 100",
                    self.cpu_scale
                )
            },
        )?;
        check(
            self.io_scale.is_finite() && self.io_scale >= 0.0 && self.io_scale <= 100.0,
            || format!("--io-scale {}: expected 0 to 100", self.io_scale),
        )?;
        match (&self.hints, &self.tenant) {
            (HintsMode::None, Some(_)) => Err(FaasError::Invalid(
                "--tenant needs --hints runtime or platform".into(),
            )),
            (HintsMode::Runtime | HintsMode::Platform, None) => Err(FaasError::Invalid(
                "--hints runtime and platform need --tenant, the tenant that governs the cgroup root".into(),
            )),
            _ => Ok(()),
        }?;
        check(self.cgroup_root.is_absolute(), || {
            format!(
                "--cgroup-root {}: expected an absolute path",
                self.cgroup_root.display()
            )
        })
    }

    fn from_shared(shared: &Shared) -> Result<Params, FaasError> {
        let params: Params = serde_json::from_str(&shared.params())
            .map_err(|e| FaasError::Setup(format!("the run's parameters: {e}")))?;
        params.validate()?;
        Ok(params)
    }

    /// Accounted threads per function process: the worker and the pollers.
    pub fn threads(&self) -> usize {
        1 + self.pollers as usize
    }

    fn function_cgroup(&self, chain: usize, stage: usize) -> PathBuf {
        self.cgroup_root
            .join(format!("c{chain:02}"))
            .join(FUNCTIONS[stage].name)
    }
}

/// The event a function's runtime threads wait for: its inbox (never 0).
pub fn inbox_event(chain: usize, stage: usize) -> u64 {
    (chain * STAGES + stage + 1) as u64
}

/// The platform says a runtime thread only polls for `event` (a running thread is stopped at
/// its next tick, or at once by a notify, when upsched-hints has one).
pub fn post_sleepy(thread: &ThreadHints<'_>, event: u64) {
    thread.sleepy(event);
}

/// A runtime thread says it only polls for `event`, then yields once: the host re-enqueues
/// it at once and the policy may park it there, instead of at its next tick
/// (`docs/mechanism.md`, "Parking and release").
pub fn post_own_sleepy(me: &ThreadHints<'_>, event: u64) {
    post_sleepy(me, event);
    std::thread::yield_now();
}

/// `n` requests wait for the thread. Once upsched-hints hands out the tenant's notify
/// program, this is where the poster asks the host to look at the thread at once; until then
/// the host's 2 ms timer releases a parked thread.
pub fn post_pending(thread: &ThreadHints<'_>, n: u64) {
    thread.pending(n);
}

/// How the supervisor starts a child: this program, with arguments that lead to [`child`].
#[derive(Clone, Debug)]
pub struct Launcher {
    pub program: PathBuf,
    /// The arguments before the child's own (`ROLE --shm-fd FD --chain C --stage K`).
    pub prefix: Vec<String>,
}

/// The processes of a run other than the supervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Function,
    Platform,
    Arrivals,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Function => "function",
            Role::Platform => "platform",
            Role::Arrivals => "arrivals",
        }
    }

    pub fn from_name(name: &str) -> Option<Role> {
        [Role::Function, Role::Platform, Role::Arrivals]
            .into_iter()
            .find(|r| r.name() == name)
    }
}

/// A child process's body; `shm_fd` is the inherited shared region.
pub fn child(role: Role, shm_fd: i32, chain: u32, stage: u32) -> Result<(), FaasError> {
    let region = Region::inherit(shm_fd)?;
    let shared = region.shared();
    let result = Params::from_shared(shared).and_then(|params| match role {
        Role::Function => {
            let (chain, stage) = (chain as usize, stage as usize);
            check(chain < params.chains as usize && stage < STAGES, || {
                format!("no function {stage} of chain {chain} in this run")
            })?;
            function::run(shared, &params, chain, stage)
        }
        Role::Platform => platform::route(shared, &params),
        Role::Arrivals => platform::arrive(shared, &params),
    });
    if let Err(e) = &result {
        shared.fail(&format!("{}: {e}", role.name()));
    }
    result
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn interrupted() -> Result<(), FaasError> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        Err(FaasError::Interrupted)
    } else {
        Ok(())
    }
}

/// The children, killed and reaped when dropped (after an error or Ctrl-C too).
struct Children(Vec<(Role, String, Child)>);

impl Children {
    /// The first child that exited before its time (only the arrival process ends by
    /// itself, successfully), with its status.
    fn exited(&mut self) -> Option<String> {
        self.0.iter_mut().find_map(|(role, name, child)| {
            let status = child.try_wait().ok().flatten()?;
            let finished = *role == Role::Arrivals && status.success();
            (!finished).then(|| format!("{name} exited ({status})"))
        })
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, _, child) in &mut self.0 {
            let _ = child.kill();
        }
        for (_, _, child) in &mut self.0 {
            let _ = child.wait();
        }
    }
}

/// Runs the workload and returns its report. Every process and every cgroup it created is
/// gone when it returns, whatever the outcome; SIGINT and SIGTERM end the run the same way
/// ([`FaasError::Interrupted`]).
pub fn run(params: &Params, launcher: &Launcher) -> Result<Report, FaasError> {
    params.validate()?;
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let mut cgroups = upsched_workload::CreatedCgroups::default();
    let cgroup = |e: upsched_workload::CgroupError| FaasError::Setup(e.to_string());
    cgroups.create(&params.cgroup_root).map_err(cgroup)?;
    let platform_cgroup = params.cgroup_root.join("platform");
    cgroups.create(&platform_cgroup).map_err(cgroup)?;
    for chain in 0..params.chains as usize {
        cgroups
            .create(&params.cgroup_root.join(format!("c{chain:02}")))
            .map_err(cgroup)?;
        for stage in 0..STAGES {
            cgroups
                .create(&params.function_cgroup(chain, stage))
                .map_err(cgroup)?;
        }
    }
    let region = Region::create()?;
    let shared = region.shared();
    shared
        .set_params(&serde_json::to_string(params).map_err(|e| FaasError::Setup(e.to_string()))?)?;
    let mut children = Children(Vec::new());
    let spawn = |children: &mut Children, role: Role, chain: usize, stage: usize| {
        let cgroup = match role {
            Role::Function => params.function_cgroup(chain, stage),
            _ => platform_cgroup.clone(),
        };
        let mut command = Command::new(&launcher.program);
        command
            .args(&launcher.prefix)
            .args([role.name(), "--shm-fd", &region.fd().to_string()])
            .args(["--chain", &chain.to_string(), "--stage", &stage.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let setup = upsched_kernel::ChildSetup {
            nice: 0,
            die_with_parent: true,
        };
        upsched_kernel::join_cgroup_before_exec(&mut command, &cgroup, setup)
            .map_err(|e| FaasError::Setup(format!("{}: {e}", cgroup.display())))?;
        let child = command.spawn().map_err(|e| {
            FaasError::Setup(format!(
                "starting the {} process in {}: {e}",
                role.name(),
                cgroup.display()
            ))
        })?;
        let name = match role {
            Role::Function => format!("function {}", cgroup.display()),
            _ => role.name().to_string(),
        };
        children.0.push((role, name, child));
        Ok::<(), FaasError>(())
    };
    let started = Instant::now();
    for chain in 0..params.chains as usize {
        for stage in 0..STAGES {
            spawn(&mut children, Role::Function, chain, stage)?;
        }
    }
    let functions = params.chains * STAGES as u32;
    // Under emulation a few hundred threads take seconds to start and join their tenant.
    let startup = Duration::from_secs(60);
    wait_until(
        shared,
        &mut children,
        startup,
        "the functions to start",
        &|| shared.functions_ready.load(Ordering::Acquire) >= functions,
    )?;
    spawn(&mut children, Role::Platform, 0, 0)?;
    wait_until(
        shared,
        &mut children,
        startup,
        "the platform to start",
        &|| shared.measuring_since_ns.load(Ordering::Acquire) != 0,
    )?;
    spawn(&mut children, Role::Arrivals, 0, 0)?;
    let arrival_window = Duration::from_secs_f64(params.seconds) + startup;
    wait_until(
        shared,
        &mut children,
        arrival_window,
        "the arrivals to end",
        &|| shared.arrivals_done_ns.load(Ordering::Acquire) != 0,
    )?;
    // Requests still in flight after the drain are reported as not completed.
    let drain = Duration::from_secs_f64(params.drain_seconds);
    wait_for(shared, &mut children, drain, &|| {
        let chains = &shared.chains[..params.chains as usize];
        chains
            .iter()
            .all(|c| c.completed.load(Ordering::Acquire) >= c.arrived.load(Ordering::Acquire))
    })?;
    shared.stop.store(1, Ordering::SeqCst);
    shared.bell.ring();
    wait_until(
        shared,
        &mut children,
        Duration::from_secs(10),
        "the platform's last figures",
        &|| shared.finished_ns.load(Ordering::Acquire) != 0,
    )?;
    let report = Report::collect(shared, params, started.elapsed());
    drop(children);
    let failed = cgroups.remove();
    if !failed.is_empty() {
        return Err(FaasError::Failed(format!(
            "could not remove cgroups: {}",
            failed.join("; ")
        )));
    }
    Ok(report)
}

/// As [`wait_for`], a timeout being a failure that names `what`.
fn wait_until(
    shared: &Shared,
    children: &mut Children,
    timeout: Duration,
    what: &str,
    done: &dyn Fn() -> bool,
) -> Result<(), FaasError> {
    if wait_for(shared, children, timeout, done)? {
        Ok(())
    } else {
        Err(FaasError::Failed(format!(
            "timed out after {timeout:?} waiting for {what}"
        )))
    }
}

/// Waits until `done` holds (true) or `timeout` passes (false), failing if a child reports
/// an error or exits, and on Ctrl-C.
fn wait_for(
    shared: &Shared,
    children: &mut Children,
    timeout: Duration,
    done: &dyn Fn() -> bool,
) -> Result<bool, FaasError> {
    let deadline = Instant::now() + timeout;
    loop {
        interrupted()?;
        if let Some(error) = shared.error() {
            return Err(FaasError::Failed(error));
        }
        if done() {
            return Ok(true);
        }
        if let Some(exit) = children.exited() {
            return Err(FaasError::Failed(exit));
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_bounds_parameters_are_refused_by_name() {
        let ok = Params::default();
        ok.validate().unwrap();
        let cases: Vec<(Params, &str)> = vec![
            (
                Params {
                    chains: 0,
                    ..ok.clone()
                },
                "--chains 0",
            ),
            (
                Params {
                    chains: 33,
                    ..ok.clone()
                },
                "--chains 33",
            ),
            (
                Params {
                    rate: 0.0,
                    ..ok.clone()
                },
                "--rate 0",
            ),
            (
                Params {
                    rate: f64::NAN,
                    ..ok.clone()
                },
                "--rate NaN",
            ),
            (
                Params {
                    seconds: 601.0,
                    ..ok.clone()
                },
                "--seconds 601",
            ),
            (
                Params {
                    rate: 100.0,
                    seconds: 100.0,
                    ..ok.clone()
                },
                "requests per chain",
            ),
            (
                Params {
                    pollers: 9,
                    ..ok.clone()
                },
                "--pollers 9",
            ),
            (
                Params {
                    spin_ns: 11_000_000_000,
                    ..ok.clone()
                },
                "--spin",
            ),
            (
                Params {
                    cpu_scale: -1.0,
                    ..ok.clone()
                },
                "--cpu-scale -1",
            ),
            (
                Params {
                    io_scale: f64::INFINITY,
                    ..ok.clone()
                },
                "--io-scale inf",
            ),
            (
                Params {
                    hints: HintsMode::Runtime,
                    ..ok.clone()
                },
                "need --tenant",
            ),
            (
                Params {
                    tenant: Some("t".into()),
                    ..ok.clone()
                },
                "--tenant needs",
            ),
            (
                Params {
                    cgroup_root: "rel".into(),
                    ..ok.clone()
                },
                "absolute",
            ),
            (
                Params {
                    drain_seconds: -1.0,
                    ..ok.clone()
                },
                "--drain -1",
            ),
        ];
        for (params, expected) in cases {
            match params.validate() {
                Err(FaasError::Invalid(message)) => {
                    assert!(message.contains(expected), "{message:?} lacks {expected:?}")
                }
                other => panic!("{params:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn hint_modes_parse_and_events_are_distinct_and_non_zero() {
        assert_eq!("platform".parse::<HintsMode>(), Ok(HintsMode::Platform));
        assert!("sometimes".parse::<HintsMode>().is_err());
        let mut events: Vec<u64> = (0..MAX_CHAINS)
            .flat_map(|c| (0..STAGES).map(move |k| inbox_event(c, k)))
            .collect();
        assert!(!events.contains(&0));
        events.sort();
        events.dedup();
        assert_eq!(events.len(), MAX_CHAINS * STAGES);
    }
}
