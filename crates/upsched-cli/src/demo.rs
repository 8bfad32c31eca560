//! `upsched demo`: the host scheduler and two tenant policies on a real kernel, loaded,
//! replaced and unloaded by an unprivileged user through the broker daemon `upschedd`, with a
//! mixed workload in two cgroups and the daemon's statistics as it runs.
//!
//! Two modes:
//! - here (`--here`, or automatically as root on a kernel with sched_ext): runs on this machine;
//! - VM (`--vm`, or automatically elsewhere): boots the test VM of `upsched-vmtest` (Debian sid's
//!   sched_ext kernel under QEMU) with a static `upsched` and `upschedd` in its initramfs,
//!   creates the demo user in the guest, runs `upsched demo --here` there, streams the guest's
//!   output line by line and exits with the guest's verdict.
//!
//! As root the demo creates and delegates the cgroups, writes the demo user's grant and starts
//! `upschedd` (`demo_daemon`); every policy operation and statistic then goes through the
//! daemon's socket as `upsched` commands run as that user. The workload processes are this
//! binary again (`upsched demo-worker`, hidden), the demo user's, placed into their cgroup
//! between fork and exec and killed when the demo's process dies.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde::de::DeserializeOwned;
use upsched_broker::protocol::{TenantList, TenantStats, TenantStatsList, TenantView};
use upsched_kernel::intf::NR_LEVELS;
use upsched_kernel::{detect, sched_ext_state, signals, wait_for_sched_ext_state};
use upsched_vmtest::{GuestEvent, InitramfsSpec, Scenario, guest_binary, kernel, run_scenario};
use upsched_workload::{CreatedCgroups, burn_unit, burn_until};

use crate::demo_daemon::{DEMO_PIN_DIR, DEMO_USER, DemoDaemon, DemoGrant, DemoUser};

/// Prints a line of the demo's output. A closed stdout loses the output but not the demo: it
/// goes on and cleans up (main ignores SIGPIPE for the demo).
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Exit status when the demo ran but something went wrong (host stopped, a tenant got no CPU...).
const EXIT_FAILED: u8 = 1;
/// Exit status when the VM crashed or timed out (the guest gave no verdict).
const EXIT_VM_BROKEN: u8 = 3;
/// Exit status after Ctrl-C (SIGINT/SIGTERM), once everything is cleaned up (128 + SIGINT).
const EXIT_INTERRUPTED: u8 = 130;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const DEMO_CGROUP: &str = "upsched-demo";
const GUEST_BINARY: &str = "/usr/bin/upsched";
const GUEST_DAEMON: &str = "/usr/bin/upschedd";
/// The demo user's ids in the guest, which has no user database of its own.
const GUEST_DEMO_UID: u32 = 1000;

#[derive(Args, Debug)]
// A negative number reaches the value parser, which says what is wrong with it (clap would
// take it for an option and suggest `-- -1`).
#[command(allow_negative_numbers = true)]
pub struct DemoArgs {
    /// Seconds the workload runs (loading, booting and unloading come on top).
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u64).range(6..=600))]
    pub seconds: u64,
    /// Run on this machine; fail if it has no sched_ext or you are not root.
    #[arg(long, conflicts_with = "vm")]
    pub here: bool,
    /// Boot the test VM even if this machine could run the demo itself.
    #[arg(long)]
    pub vm: bool,
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    #[arg(value_enum)]
    kind: WorkerKind,
    /// Safety net: the worker exits by itself after this long.
    #[arg(long, default_value_t = 600.0)]
    max_seconds: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum WorkerKind {
    /// Burns CPU without pause.
    Hog,
    /// Sleeps 10 ms, works 0.5 ms, again (an interactive task).
    Sleeper,
}

/// `upsched demo-worker`: one process of the demo's workload.
pub fn worker(args: &WorkerArgs) -> anyhow::Result<ExitCode> {
    let end = Instant::now() + Duration::from_secs_f64(args.max_seconds.max(0.0));
    while Instant::now() < end {
        match args.kind {
            WorkerKind::Hog => burn_unit(),
            WorkerKind::Sleeper => {
                std::thread::sleep(Duration::from_millis(10));
                burn_until(Instant::now() + Duration::from_micros(500));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn is_root() -> bool {
    // SAFETY: plain syscall without arguments.
    unsafe { libc::geteuid() == 0 }
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// `upsched demo`.
pub fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let support = detect::detect();
    if args.here {
        return run_here(args.seconds);
    }
    if args.vm {
        return run_vm(args.seconds, "--vm given");
    }
    let release = kernel_release();
    if support.sched_ext && is_root() {
        say!(
            "upsched demo: kernel {release} has sched_ext and you are root: running on this machine \
             (use --vm for the test VM instead)"
        );
        return run_here(args.seconds);
    }
    let why = if support.sched_ext {
        format!(
            "kernel {release} has sched_ext, but loading a scheduler needs root (run it with sudo \
             to use this machine)"
        )
    } else {
        format!(
            "this kernel ({release}) has no sched_ext (no {})",
            detect::SCHED_EXT_STATE
        )
    };
    run_vm(args.seconds, &why)
}

// ---- VM mode -------------------------------------------------------------------------------

/// A static `binary` of `package` for the guest: the one beside this binary if it is static
/// (`./scripts/main` builds both statically), otherwise built from the workspace this binary was
/// built from.
fn static_guest_binary(package: &str, binary: &str) -> anyhow::Result<PathBuf> {
    if let Ok(exe) = std::env::current_exe() {
        let beside = exe.with_file_name(binary);
        if guest_binary::ensure_static(&beside).is_ok() {
            return Ok(beside);
        }
    }
    say!(
        "upsched demo: building a static {binary} for the guest (cargo; the first build takes a \
         few minutes, later ones seconds)"
    );
    flush();
    guest_binary::build_static_binary(package, binary)
}

fn run_vm(seconds: u64, why: &str) -> anyhow::Result<ExitCode> {
    upsched_vmtest::tools::find_tool("qemu-system-x86_64", "apt-get install qemu-system-x86")
        .context("the demo's VM needs QEMU")?;
    let locked = kernel::read_lock().ok().flatten().map(|l| l.release);
    let kernel = match kernel::locate_offline()? {
        Some(kernel) => {
            say!(
                "upsched demo: {why}: booting the test VM with Debian sid's sched_ext kernel {} \
                 (cached: {})",
                kernel.release,
                kernel.bzimage.display()
            );
            kernel
        }
        None => {
            say!(
                "upsched demo: {why}: booting the test VM with Debian sid's sched_ext kernel{}; \
                 first run downloads it (about 10 s on a good connection; cached afterwards)",
                locked.map(|r| format!(" {r}")).unwrap_or_default()
            );
            flush();
            kernel::fetch_from_sid().context("fetching the sched_ext kernel for the VM")?
        }
    };
    let upsched = static_guest_binary("upsched-cli", "upsched")?;
    let upschedd = static_guest_binary("upsched-broker", "upschedd")?;
    // The guest has no user database: root's entries, and the demo user's, unprivileged.
    let script = format!(
        "#!/bin/sh\n\
         [ -e /etc/passwd ] || echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd\n\
         [ -e /etc/group ] || echo 'root:x:0:' > /etc/group\n\
         if ! grep -q '^{DEMO_USER}:' /etc/passwd; then\n\
         echo '{DEMO_USER}:x:{GUEST_DEMO_UID}:{GUEST_DEMO_UID}:upsched demo:/nonexistent:/bin/false' >> /etc/passwd\n\
         echo '{DEMO_USER}:x:{GUEST_DEMO_UID}:' >> /etc/group\n\
         echo 'guest: created the unprivileged user {DEMO_USER} (uid {GUEST_DEMO_UID}, gid {GUEST_DEMO_UID})'\n\
         fi\n\
         {GUEST_BINARY} demo --here --seconds {seconds}\n\
         s=$?\n\
         if [ $s -eq 0 ]; then echo 'UPSCHED-TEST demo PASS'; \
         else echo \"UPSCHED-TEST demo FAIL exit status $s\"; fi\n\
         exit $s\n"
    );
    let mut files = InitramfsSpec::with_default_busybox(script)?;
    files.add_host_file(&upsched, GUEST_BINARY, 0o755);
    files.add_host_file(&upschedd, GUEST_DAEMON, 0o755);
    let mut scenario = Scenario::new("demo", files);
    scenario.timeout = Duration::from_secs(seconds + 150);
    say!(
        "upsched demo: QEMU software emulation (2 vCPUs), so everything runs a few times slower \
         than on real hardware; the guest's output follows"
    );
    flush();

    let mut booted = false;
    let mut stream = |event: &GuestEvent, raw: &str| {
        let line = upsched_vmtest::tools::printable(raw.trim_end());
        match event {
            GuestEvent::Booted { release } => {
                booted = true;
                say!("[vm] guest booted kernel {release}");
            }
            GuestEvent::Test(result) => {
                say!("[vm] guest verdict: {} {}", result.name, result.verdict)
            }
            GuestEvent::KernelCrash { .. } => say!("[vm] guest kernel: {line}"),
            GuestEvent::ScenarioExit { .. } | GuestEvent::Done => {}
            // Firmware and early kernel lines before /init are noise for a demo.
            GuestEvent::Malformed { .. } | GuestEvent::Other
                if booted && !line.contains("reboot: Power down") =>
            {
                say!("{line}")
            }
            GuestEvent::Malformed { .. } | GuestEvent::Other => {}
        }
        flush();
    };
    let report = run_scenario(&kernel, &scenario, &mut stream)?;
    let boot = report.final_boot();
    let timing = boot
        .map(|b| format!(", {:.1} s wall clock", b.total_time.as_secs_f64()))
        .unwrap_or_default();
    if report.passed() {
        say!("[vm] the demo passed in the VM{timing}");
        return Ok(ExitCode::SUCCESS);
    }
    match boot.and_then(|b| b.console.scenario_exit) {
        Some(status) if boot.is_some_and(|b| b.console.done) => {
            say!("[vm] the demo FAILED in the VM (exit status {status}){timing}");
            Ok(ExitCode::from(
                u8::try_from(status).unwrap_or(EXIT_FAILED).max(1),
            ))
        }
        _ => {
            say!("{}", report.describe());
            Ok(ExitCode::from(EXIT_VM_BROKEN))
        }
    }
}

fn flush() {
    let _ = std::io::stdout().flush();
}

// ---- here mode -----------------------------------------------------------------------------

fn preflight() -> anyhow::Result<()> {
    let support = detect::detect();
    if !support.sched_ext {
        bail!(
            "this kernel ({}) has no sched_ext (no {}): upsched needs CONFIG_SCHED_CLASS_EXT=y \
             (Linux 6.12 or later); run `upsched demo --vm` to use the test VM instead",
            kernel_release(),
            detect::SCHED_EXT_STATE
        );
    }
    if !is_root() {
        bail!(
            "the demo starts the broker daemon, creates cgroups and delegates them to its user, \
             which needs root: run it with sudo, or `upsched demo --vm` to use the test VM"
        );
    }
    if let Some(state) = support.state.as_deref()
        && state != "disabled"
    {
        bail!(
            "another sched_ext scheduler is active ({}state {state}); stop it first",
            support
                .active_ops
                .map(|ops| format!("{ops}, "))
                .unwrap_or_default()
        );
    }
    if !Path::new(CGROUP_ROOT).join("cgroup.controllers").exists() {
        bail!(
            "no cgroup2 hierarchy at {CGROUP_ROOT} (tenants are bound to cgroup2 subtrees): mount \
             it with `mount -t cgroup2 none {CGROUP_ROOT}`"
        );
    }
    Ok(())
}

/// One tenant of the demo: a cgroup with its workload and, for a while, a policy that the demo
/// user loaded through the daemon.
struct Tenant {
    name: &'static str,
    cgroup: PathBuf,
    policy: &'static str,
    level: u32,
    weight: u32,
    workload: &'static str,
    /// The daemon's view of the tenant while it is loaded.
    loaded: Option<TenantView>,
    /// The daemon's statistics of the tenant at the last sample.
    last_stats: Option<TenantStats>,
    pids: Vec<u32>,
    /// cgroup CPU usage at the last sample and at the start of each phase.
    last_usage: Duration,
    attached_for: Duration,
    cpu_with_policy: Duration,
    cpu_default: Duration,
    /// CPU used in the default class after its policy was unloaded.
    cpu_after_unload: Duration,
    /// The policies it ran, in order (a replace adds one).
    policies: Vec<String>,
}

/// Workers and cgroups: killed and removed on every path out (also on errors and Ctrl-C).
struct Workload {
    children: Vec<Child>,
    /// Dropped after `Drop for Workload` stopped the children.
    cgroups: CreatedCgroups,
}

impl Workload {
    fn stop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
        }
        for child in &mut self.children {
            let _ = child.wait();
        }
        self.children.clear();
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.stop();
    }
}

fn cgroup_usage(cgroup: &Path) -> Duration {
    upsched_workload::cgroup_usage(cgroup).unwrap_or_default()
}

/// Starts a worker of the demo user already inside `cgroup` (root moves it there between fork
/// and exec, as cgroup2 lets only a writer of the common ancestor's `cgroup.procs` move a task
/// out of the root cgroup; then it drops to the user) with the given nice value; it dies with
/// this process.
fn spawn_worker(
    kind: &str,
    cgroup: &Path,
    nice: i32,
    max_seconds: u64,
    user: &DemoUser,
) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("finding this binary to start the workload")?;
    let mut command = Command::new(exe);
    command
        .args([
            "demo-worker",
            kind,
            "--max-seconds",
            &max_seconds.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    upsched_kernel::join_cgroup_before_exec(
        &mut command,
        cgroup,
        upsched_kernel::ChildSetup {
            nice,
            die_with_parent: true,
        },
    )
    .context("preparing a worker's cgroup")?;
    user.drop_privileges_before_exec(&mut command);
    command
        .spawn()
        .with_context(|| format!("starting a {kind} worker in {}", cgroup.display()))
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Runs `upsched ARGS` as the demo user against the demo's daemon, saying so first, and reads
/// its JSON answer.
fn user_step<T: DeserializeOwned>(
    daemon: &DemoDaemon,
    user: &DemoUser,
    stamp: &str,
    args: &[&str],
) -> anyhow::Result<T> {
    say!(
        "{stamp} as {}: upsched {} (UPSCHED_SOCKET={})",
        user.label(),
        args.join(" "),
        daemon.socket().display()
    );
    daemon.as_user(user, args)
}

/// The policy a replace swaps in for batch's wfq: round robin keeps all three hogs running
/// (fifo would let the earliest of them keep the CPU, and the watchdog eject the tenant).
const REPLACEMENT_POLICY: &str = "rr";

/// The capabilities the demo's policies need, from `upsched check` (the least grant).
fn capabilities_needed(policies: &[&str]) -> anyhow::Result<Vec<String>> {
    let mut needed = std::collections::BTreeSet::new();
    for name in policies {
        let bytes =
            upsched_policies::policy(name).with_context(|| format!("no example policy {name}"))?;
        let report = upsched_policy::check(bytes, &upsched_policy::Limits::default());
        needed.extend(report.capabilities.into_iter().map(|c| c.name));
    }
    Ok(needed.into_iter().collect())
}

/// The demo proper. Errors before the daemon is started are usage errors (exit 2 from main).
fn run_here(seconds: u64) -> anyhow::Result<ExitCode> {
    // Before preflight: a leftover demo host makes sched_ext look taken by another scheduler.
    DemoDaemon::refuse_leftover_pins()?;
    preflight()?;
    let user = DemoUser::find()?;
    let daemon_binary = DemoDaemon::find_binary()?;
    signals::install();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let support = detect::detect();
    say!(
        "upsched demo on this machine: kernel {}, {cpus} CPUs, sched_ext API {}, {seconds} s of workload",
        kernel_release(),
        support.api
    );
    say!(
        "who does what: root creates the cgroups, delegates them to {}, grants it and runs the \
         broker upschedd; {} loads, replaces and unloads the policies through upschedd's socket \
         and reads the statistics from it, as `upsched` commands (lines marked `as {DEMO_USER}`)",
        user.label(),
        user.label()
    );
    let start = Instant::now();
    let stamp = |start: Instant| format!("[{:5.1}s]", start.elapsed().as_secs_f64());

    let mut workload = Workload {
        children: Vec::new(),
        cgroups: CreatedCgroups::default(),
    };
    let mut daemon = None;
    let outcome = demo_body(
        &mut daemon,
        daemon_binary,
        &user,
        &mut workload,
        seconds,
        cpus,
        start,
    );

    // Cleanup, in order: workload, daemon and host, cgroups.
    workload.stop();
    say!("{} workload stopped", stamp(start));
    let mut problems = Vec::new();
    let mut state = sched_ext_state().unwrap_or_default();
    if let Some(mut daemon) = daemon {
        let pid = daemon
            .pid()
            .map(|p| format!(" (pid {p})"))
            .unwrap_or_default();
        let unload_start = Instant::now();
        match daemon.shut_down() {
            Ok(done) => {
                let unloaded =
                    wait_for_sched_ext_state("disabled", Duration::from_secs(20), || None).is_ok();
                state = sched_ext_state().unwrap_or_default();
                say!(
                    "{} as root: stopped upschedd{pid} with SIGTERM (its pinned host would run on) \
                     and ran `upschedd --unload`: {}",
                    stamp(start),
                    done.unload_said
                );
                say!(
                    "{} host scheduler unloaded: sched_ext state enabled -> {state} in {:.2} s; {}",
                    stamp(start),
                    unload_start.elapsed().as_secs_f64(),
                    if done.pins_left.is_empty() {
                        format!("no pin left in {DEMO_PIN_DIR}")
                    } else {
                        format!("pins left: {}", done.pins_left.join(", "))
                    }
                );
                if !unloaded {
                    problems.push(format!(
                        "sched_ext state is {state:?} after unloading, not disabled"
                    ));
                }
                if !done.pins_left.is_empty() {
                    problems.push(format!(
                        "pins left in {DEMO_PIN_DIR}: {}",
                        done.pins_left.join(", ")
                    ));
                }
            }
            Err(err) => problems.push(format!("ending the daemon's host: {err:#}")),
        }
    }
    let leftovers = workload.cgroups.remove();
    if leftovers.is_empty() {
        say!("{} cgroups removed", stamp(start));
    } else {
        say!(
            "{} could not remove: {}",
            stamp(start),
            leftovers.join("; ")
        );
    }

    let tenants = match outcome {
        Ok(tenants) => tenants,
        Err(_) if signals::stop_requested() => {
            say!(
                "demo interrupted (Ctrl-C): workload stopped, daemon stopped and its host \
                 unloaded (state {state}), cgroups removed"
            );
            return Ok(ExitCode::from(EXIT_INTERRUPTED));
        }
        Err(err) => {
            say!("demo FAILED: {err:#}");
            for problem in &problems {
                say!("problem: {problem}");
            }
            return Ok(ExitCode::from(EXIT_FAILED));
        }
    };
    say!("summary (policy totals from upschedd's stats, CPU from the cgroups):");
    for t in &tenants {
        let counters = t.last_stats.as_ref().map(|s| &s.counters);
        say!(
            "  {:<12} {} at level {} for {:.1} s: {:.2} CPU-s ({:.0}% of the CPUs); in the default class: {:.2} CPU-s; \
             policy totals: enq {}, run {}, max wait {:.1} ms, parks {}, clamps {}, default-stub calls {}",
            t.name,
            t.policies.join(" then "),
            t.level,
            t.attached_for.as_secs_f64(),
            t.cpu_with_policy.as_secs_f64(),
            100.0 * t.cpu_with_policy.as_secs_f64()
                / (t.attached_for.as_secs_f64() * cpus as f64).max(1e-9),
            t.cpu_default.as_secs_f64(),
            counters.map_or(0, |c| c.enqueues),
            counters.map_or(0, |c| c.dispatches),
            counters.map_or(0.0, |c| ms(c.wait_max_ns)),
            counters.map_or(0, |c| c.parks),
            t.last_stats.as_ref().map_or(0, |s| s.clamps),
            t.last_stats.as_ref().map_or(0, |s| s.default_calls),
        );
        if t.cpu_with_policy.is_zero() {
            problems.push(format!("tenant {} got no CPU under its policy", t.name));
        }
        if counters.is_none_or(|c| c.dispatches == 0) {
            problems.push(format!(
                "policy {} never dispatched a task",
                t.policies.join(", ")
            ));
        }
        if let Some(stats) = &t.last_stats
            && stats.default_calls != 0
        {
            problems.push(format!(
                "{} calls of tenant {}'s tasks reached a default stub",
                stats.default_calls, t.name
            ));
        }
    }
    say!(
        "  host: {}; sched_ext state {state}",
        if problems.is_empty() {
            "no error exit, no ejections"
        } else {
            "see problems below"
        }
    );
    if problems.is_empty() {
        say!("demo OK ({:.1} s)", start.elapsed().as_secs_f64());
        Ok(ExitCode::SUCCESS)
    } else {
        for problem in &problems {
            say!("problem: {problem}");
        }
        say!("demo FAILED");
        Ok(ExitCode::from(EXIT_FAILED))
    }
}

/// Credits each tenant's CPU since the last sample to the phase it is in (with or without its
/// policy); called at every sample and before each phase change. Returns the CPU used.
/// `as_default` credits it to the default class whatever the tenant's state (for the moments
/// a load itself takes).
fn credit(tenants: &mut [Tenant], since: Duration, as_default: bool) -> Vec<Duration> {
    tenants
        .iter_mut()
        .map(|t| {
            let usage = cgroup_usage(&t.cgroup);
            let used = usage.saturating_sub(t.last_usage);
            t.last_usage = usage;
            if t.loaded.is_some() && !as_default {
                t.cpu_with_policy += used;
                t.attached_for += since;
            } else {
                t.cpu_default += used;
                if !t.policies.is_empty() {
                    t.cpu_after_unload += used;
                }
            }
            used
        })
        .collect()
}

/// Sleeps until `until`, returning early (false) on Ctrl-C.
fn sleep_until(until: Instant) -> bool {
    loop {
        if signals::stop_requested() {
            return false;
        }
        let now = Instant::now();
        if now >= until {
            return true;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(50)));
    }
}

/// The demo's phases, in order, each with what starts it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// Every task in the default class.
    Default,
    /// After the loads of both policies.
    Loaded,
    /// After the replace of batch's policy.
    Replaced,
    /// After the unload of interactive's policy.
    Unloaded,
}

/// How long each phase lasts, counted from the end of the step that starts it (a load through
/// the daemon takes seconds under emulation, the first one loading the host scheduler).
struct Plan {
    lengths: [Duration; 4],
}

impl Plan {
    fn new(seconds: u64) -> Plan {
        let load_at = (seconds / 6).max(2);
        let unload_at = seconds * 2 / 3;
        let replace_at = (load_at + unload_at) / 2;
        let secs = |from: u64, to: u64| Duration::from_secs(to.saturating_sub(from).max(1));
        Plan {
            lengths: [
                Duration::from_secs(load_at),
                secs(load_at, replace_at),
                secs(replace_at, unload_at),
                secs(unload_at, seconds),
            ],
        }
    }

    fn length(&self, phase: Phase) -> Duration {
        self.lengths[phase as usize]
    }
}

fn demo_body(
    daemon_slot: &mut Option<DemoDaemon>,
    daemon_binary: PathBuf,
    user: &DemoUser,
    workload: &mut Workload,
    seconds: u64,
    cpus: usize,
    start: Instant,
) -> anyhow::Result<Vec<Tenant>> {
    let stamp = || format!("[{:5.1}s]", start.elapsed().as_secs_f64());
    let root = Path::new(CGROUP_ROOT).join(DEMO_CGROUP);
    workload.cgroups.create(&root)?;
    let new_tenant = |name, policy, level, weight, workload| Tenant {
        name,
        cgroup: root.join(name),
        policy,
        level,
        weight,
        workload,
        loaded: None,
        last_stats: None,
        pids: Vec::new(),
        last_usage: Duration::ZERO,
        attached_for: Duration::ZERO,
        cpu_with_policy: Duration::ZERO,
        cpu_default: Duration::ZERO,
        cpu_after_unload: Duration::ZERO,
        policies: Vec::new(),
    };
    let mut tenants = vec![
        new_tenant("batch", "wfq", 1, 100, "3 CPU hogs"),
        new_tenant(
            "interactive",
            "prio",
            2,
            100,
            "1 sleeper (10 ms sleep, 0.5 ms work; nice -5) + 1 hog (nice 5)",
        ),
    ];
    user.delegate(&root)?;
    for t in &tenants {
        workload.cgroups.create(&t.cgroup)?;
        user.delegate(&t.cgroup)?;
    }
    say!(
        "{} as root: created the cgroups {} and delegated them to {DEMO_USER} (directories, \
         cgroup.procs, cgroup.threads, cgroup.subtree_control), as systemd's Delegate= does",
        stamp(),
        tenants
            .iter()
            .map(|t| t.cgroup.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );

    let mut policies: Vec<&str> = tenants.iter().map(|t| t.policy).collect();
    policies.push(REPLACEMENT_POLICY);
    let capabilities = capabilities_needed(&policies)?;
    let grant = DemoGrant {
        capabilities: &capabilities,
        scope: &root,
        max_level: tenants.iter().map(|t| t.level).max().unwrap_or(0),
        max_weight: tenants.iter().map(|t| t.weight).max().unwrap_or(1),
        max_tenants: tenants.len() as u32,
    };
    let daemon = daemon_slot.insert(DemoDaemon::start(daemon_binary, user, &grant)?);
    say!(
        "{} as root: granted {DEMO_USER} in {} what {} need ({}) on cgroups it owns below {}, \
         levels up to {}, weights up to {}, {} tenants",
        stamp(),
        daemon.grants().display(),
        policies.join(", "),
        capabilities.join(", "),
        root.display(),
        grant.max_level,
        grant.max_weight,
        grant.max_tenants
    );
    say!(
        "{} as root: started `{}` (pid {}); sched_ext state {} (the daemon loads the host \
         scheduler at the first load)",
        stamp(),
        daemon.command_line(),
        daemon.pid().unwrap_or_default(),
        sched_ext_state().unwrap_or_default()
    );

    // Safety net: workers end by themselves if everything else fails.
    let max = seconds + 120;
    let plan: [(usize, &str, i32); 5] = [
        (0, "hog", 0),
        (0, "hog", 0),
        (0, "hog", 0),
        (1, "sleeper", -5),
        (1, "hog", 5),
    ];
    for (tenant, kind, nice) in plan {
        let child = spawn_worker(kind, &tenants[tenant].cgroup, nice, max, user)?;
        tenants[tenant].pids.push(child.id());
        workload.children.push(child);
    }
    for t in &mut tenants {
        t.last_usage = cgroup_usage(&t.cgroup);
        say!(
            "{} workload {:<12} {} ({DEMO_USER}'s processes)",
            stamp(),
            t.name,
            t.workload
        );
    }

    let plan = Plan::new(seconds);
    let work_start = Instant::now();
    let secs = |phase| plan.length(phase).as_secs_f64();
    say!(
        "plan: {:.0} s in the default class only; then {DEMO_USER} loads wfq (batch, level 1) and \
         prio (interactive, level 2); {:.0} s later it replaces batch's wfq by \
         {REPLACEMENT_POLICY}; {:.0} s later it unloads prio, and {:.0} s later \
         {REPLACEMENT_POLICY} (the daemon's answers take their time on top)",
        secs(Phase::Default),
        secs(Phase::Loaded),
        secs(Phase::Replaced),
        secs(Phase::Unloaded)
    );
    say!(
        "table, every second, from `upsched stats` as {DEMO_USER}: cpu = share of all CPUs (the \
         tenant's cgroup usage); enq/s, run/s = enqueues and dispatches per second; max wait = \
         longest runnable wait since the tenant was loaded; parks, clamps in the interval"
    );
    let header = "  time  tenant       class           cpu  enq/s  run/s  max wait  parks  clamps";
    say!("{header}");
    flush();

    let mut phase = Phase::Default;
    let mut last_tick = Instant::now();
    let mut phase_start = last_tick;
    let mut rows = 0u32;
    let mut interrupted = false;
    let mut replace_checked = false;
    loop {
        let due = |phase, phase_start: Instant| phase_start.elapsed() >= plan.length(phase);
        if phase == Phase::Default && due(phase, phase_start) {
            phase = Phase::Loaded;
            for t in &mut tenants {
                let cgroup = t.cgroup.display().to_string();
                let (level, weight) = (t.level.to_string(), t.weight.to_string());
                let policy = format!("example:{}", t.policy);
                let args = [
                    "load", &policy, "--cgroup", &cgroup, "--level", &level, "--weight", &weight,
                    "--name", t.name,
                ];
                let state_before = sched_ext_state().unwrap_or_default();
                let asked = Instant::now();
                let view: TenantView = user_step(daemon, user, &stamp(), &args)?;
                say!(
                    "        -> upschedd loaded tenant {:?} for uid {} (grant {:?}): policy {} \
                     (sha256 {:.12}...), slot {}, level {}, weight {}, while its tasks run \
                     ({:.1} s)",
                    view.name,
                    view.owner,
                    view.grant,
                    view.policy,
                    view.policy_hash,
                    view.slot,
                    view.level,
                    view.weight,
                    asked.elapsed().as_secs_f64()
                );
                let state_after = sched_ext_state().unwrap_or_default();
                if state_before != state_after {
                    say!(
                        "        -> host scheduler loaded by upschedd at this first load: \
                         sched_ext state {state_before} -> {state_after}; every task now runs \
                         under it (default class at level {}, the top)",
                        NR_LEVELS - 1
                    );
                }
                t.policies.push(view.policy.clone());
                t.loaded = Some(view);
            }
            say!(
                "        level 2 (interactive) is picked before level 1 (batch): its demand (a \
                 hog and a sleeper, about one CPU) is served first and batch gets the rest; \
                 the starvation guard would keep at least 5% for level 1"
            );
            credit(&mut tenants, last_tick.elapsed(), true);
            last_tick = Instant::now();
            phase_start = last_tick;
            rows = 0;
        }
        if phase == Phase::Loaded && due(phase, phase_start) {
            phase = Phase::Replaced;
            credit(&mut tenants, last_tick.elapsed(), false);
            last_tick = Instant::now();
            let t = &mut tenants[0];
            let before: TenantStatsList = daemon.as_user(user, &["stats", t.name])?;
            let policy = format!("example:{REPLACEMENT_POLICY}");
            let args = ["replace", t.name, &policy];
            let view: TenantView = user_step(daemon, user, &stamp(), &args)?;
            let calls = before.tenants.first().map_or(0, |s| s.default_calls);
            say!(
                "        -> upschedd swapped tenant {:?}'s policy {} for {} (sha256 {:.12}...) \
                 on slot {} while its {} tasks ran; default-stub calls before the swap: {calls}",
                view.name,
                t.policies.last().map_or("?", String::as_str),
                view.policy,
                view.policy_hash,
                view.slot,
                t.pids.len()
            );
            t.policies.push(view.policy.clone());
            t.loaded = Some(view);
            phase_start = Instant::now();
            rows = 0;
        }
        if phase == Phase::Replaced && due(phase, phase_start) {
            phase = Phase::Unloaded;
            credit(&mut tenants, last_tick.elapsed(), false);
            last_tick = Instant::now();
            let t = &mut tenants[1];
            let args = ["unload", t.name];
            let view: TenantView = user_step(daemon, user, &stamp(), &args)?;
            t.loaded = None;
            say!(
                "        -> upschedd unloaded tenant {:?} (policy {}) from slot {}: its {} tasks \
                 go on in the default class",
                view.name,
                view.policy,
                view.slot,
                t.pids.len()
            );
            phase_start = Instant::now();
            rows = 0;
        }
        if phase == Phase::Unloaded && due(phase, phase_start) {
            break;
        }
        let next = last_tick + Duration::from_secs(1);
        let until = next.min(phase_start + plan.length(phase));
        if !sleep_until(until) {
            interrupted = true;
            say!("{} Ctrl-C: stopping the demo", stamp());
            break;
        }
        if Instant::now() < next {
            continue; // a phase change comes first
        }

        if sched_ext_state().as_deref() != Some("enabled") && phase != Phase::Default {
            bail!(
                "the host scheduler stopped: sched_ext state {}; {}",
                sched_ext_state().unwrap_or_default(),
                daemon.log_tail()
            );
        }
        let stats: TenantStatsList = daemon.as_user(user, &["stats"])?;
        if let Some(ejected) = stats.ejected.first() {
            say!(
                "{} EJECTED tenant {} (policy {}): {}",
                stamp(),
                ejected.tenant.name,
                ejected.tenant.policy,
                ejected.reason
            );
            bail!(
                "tenant {} was ejected: {}",
                ejected.tenant.name,
                ejected.reason
            );
        }
        let dt = last_tick.elapsed();
        last_tick = Instant::now();
        let capacity = dt.as_secs_f64() * cpus as f64;
        if rows == 10 {
            say!("{header}");
            rows = 0;
        }
        rows += 1;
        let time = format!("{:6.1}", work_start.elapsed().as_secs_f64());
        let used = credit(&mut tenants, dt, false);
        let per_s = |n: u64| n as f64 / dt.as_secs_f64();
        for (index, (t, used)) in tenants.iter_mut().zip(used).enumerate() {
            let share = 100.0 * used.as_secs_f64() / capacity;
            let lead = if index == 0 { time.as_str() } else { "" };
            let now = t
                .loaded
                .as_ref()
                .and_then(|view| stats.tenants.iter().find(|s| s.tenant.name == view.name));
            match now {
                Some(now) => {
                    let before = t.last_stats.as_ref();
                    let delta =
                        |f: fn(&TenantStats) -> u64| f(now).saturating_sub(before.map_or(0, f));
                    say!(
                        "{lead:>6}  {:<12} {:<13} {share:4.0}%  {:5.0}  {:5.0}  {:6.1}ms  {:5}  {:6}",
                        t.name,
                        format!("{} L{}", now.tenant.policy, t.level),
                        per_s(delta(|s| s.counters.enqueues)),
                        per_s(delta(|s| s.counters.dispatches)),
                        ms(now.counters.wait_max_ns),
                        delta(|s| s.counters.parks),
                        delta(|s| s.clamps),
                    );
                    if phase == Phase::Replaced && index == 0 && !replace_checked {
                        replace_checked = true;
                        say!(
                            "        check: after the swap, upschedd counts {} calls of batch's \
                             tasks that reached a default stub",
                            now.default_calls
                        );
                    }
                    t.last_stats = Some(now.clone());
                }
                None => {
                    say!(
                        "{lead:>6}  {:<12} {:<13} {share:4.0}%  (counted in the default class)",
                        t.name,
                        "default"
                    );
                }
            }
        }
        flush();
    }

    if phase == Phase::Unloaded {
        let t = &tenants[1];
        say!(
            "{} check: {}'s {} tasks used {:.2} CPU-s in the default class since the unload, and \
             upschedd no longer lists it",
            stamp(),
            t.name,
            t.pids.len(),
            t.cpu_after_unload.as_secs_f64()
        );
    }
    for t in &mut tenants {
        if t.loaded.is_some() {
            let args = ["unload", t.name];
            let view: TenantView = user_step(daemon, user, &stamp(), &args)?;
            t.loaded = None;
            say!(
                "        -> upschedd unloaded tenant {:?} (policy {})",
                view.name,
                view.policy
            );
        }
    }
    let list: TenantList = daemon.as_user(user, &["list"])?;
    say!(
        "{} as {}: upsched list -> {} tenants",
        stamp(),
        user.label(),
        list.tenants.len()
    );
    if interrupted {
        bail!("interrupted (Ctrl-C)");
    }
    if phase == Phase::Default {
        bail!("the demo ended before the policies were loaded");
    }
    if !list.tenants.is_empty() {
        bail!(
            "tenants left after the unloads: {}",
            list.tenants
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if tenants[1].cpu_after_unload.is_zero() && phase == Phase::Unloaded {
        bail!("the unloaded tenant's tasks got no CPU in the default class");
    }
    Ok(tenants)
}
