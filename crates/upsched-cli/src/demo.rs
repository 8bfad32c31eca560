//! `upsched demo`: the host scheduler and two tenant policies on a real kernel, with a mixed
//! workload in two cgroups and statistics as it runs.
//!
//! Two modes:
//! - here (`--here`, or automatically as root on a kernel with sched_ext): runs on this machine;
//! - VM (`--vm`, or automatically elsewhere): boots the test VM of `upsched-vmtest` (Debian sid's
//!   sched_ext kernel under QEMU) with a static `upsched` in its initramfs, runs
//!   `upsched demo --here` in the guest, streams the guest's output line by line and exits with
//!   the guest's verdict.
//!
//! The workload processes are this binary again (`upsched demo-worker`, hidden), placed into
//! their cgroup between fork and exec and killed when the demo's process dies.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use upsched_kernel::intf::{DEFAULT_CLASS, NR_LEVELS};
use upsched_kernel::{
    ClassStats, Host, HostConfig, HostStats, TenantConfig, TenantHandle, detect, sched_ext_state,
    signals, wait_for_sched_ext_state,
};
use upsched_vmtest::{GuestEvent, InitramfsSpec, Scenario, guest_binary, kernel, run_scenario};
use upsched_workload::{CreatedCgroups, burn_unit, burn_until};

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

/// A static `upsched` for the guest: this binary if it is static, otherwise built from the
/// workspace this binary was built from.
fn static_upsched() -> anyhow::Result<PathBuf> {
    if let Ok(exe) = std::env::current_exe()
        && guest_binary::ensure_static(&exe).is_ok()
    {
        return Ok(exe);
    }
    say!(
        "upsched demo: building a static upsched for the guest (cargo; the first build takes a \
         few minutes, later ones seconds)"
    );
    flush();
    guest_binary::build_static_binary("upsched-cli", "upsched")
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
    let upsched = static_upsched()?;
    let script = format!(
        "#!/bin/sh\n\
         {GUEST_BINARY} demo --here --seconds {seconds}\n\
         s=$?\n\
         if [ $s -eq 0 ]; then echo 'UPSCHED-TEST demo PASS'; \
         else echo \"UPSCHED-TEST demo FAIL exit status $s\"; fi\n\
         exit $s\n"
    );
    let mut files = InitramfsSpec::with_default_busybox(script)?;
    files.add_host_file(&upsched, GUEST_BINARY, 0o755);
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
            "the demo loads a sched_ext scheduler and creates cgroups, which needs root: run it \
             with sudo, or `upsched demo --vm` to use the test VM"
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

/// One tenant of the demo: a cgroup with its workload and, for a while, a policy.
struct Tenant {
    name: &'static str,
    cgroup: PathBuf,
    policy: &'static str,
    level: u32,
    weight: u32,
    workload: &'static str,
    handle: Option<TenantHandle>,
    pids: Vec<u32>,
    /// cgroup CPU usage at the last sample and at the start of each phase.
    last_usage: Duration,
    attached_for: Duration,
    cpu_with_policy: Duration,
    cpu_default: Duration,
    /// Class statistics at the moment the policy was detached (or the demo ended).
    final_class: Option<ClassStats>,
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

/// Starts a worker already inside `cgroup` (it joins between fork and exec, so it never runs
/// outside its tenant) with the given nice value; it dies with this process.
fn spawn_worker(kind: &str, cgroup: &Path, nice: i32, max_seconds: u64) -> anyhow::Result<Child> {
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
    command
        .spawn()
        .with_context(|| format!("starting a {kind} worker in {}", cgroup.display()))
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn class_delta(now: &ClassStats, before: Option<&ClassStats>) -> (u64, u64, u64, u64) {
    let b = before.map(|c| c.raw).unwrap_or_default();
    let n = &now.raw;
    (
        n.enqueues.saturating_sub(b.enqueues),
        n.dispatches.saturating_sub(b.dispatches),
        n.parks.saturating_sub(b.parks),
        now.clamps()
            .saturating_sub(before.map_or(0, ClassStats::clamps)),
    )
}

/// The demo proper. Errors before the host is loaded are usage errors (exit 2 from main).
fn run_here(seconds: u64) -> anyhow::Result<ExitCode> {
    preflight()?;
    signals::install();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let support = detect::detect();
    say!(
        "upsched demo on this machine: kernel {}, {cpus} CPUs, sched_ext API {}, {seconds} s of workload",
        kernel_release(),
        support.api
    );
    let start = Instant::now();
    let stamp = |start: Instant| format!("[{:5.1}s]", start.elapsed().as_secs_f64());

    let load_start = Instant::now();
    let mut host = Host::load(&HostConfig::default()).context("loading the host scheduler")?;
    say!(
        "{} host scheduler loaded: sched_ext state disabled -> {} in {:.2} s; every task now runs \
         under it (default class at level {}, the top)",
        stamp(start),
        sched_ext_state().unwrap_or_default(),
        load_start.elapsed().as_secs_f64(),
        NR_LEVELS - 1
    );
    flush();

    let mut workload = Workload {
        children: Vec::new(),
        cgroups: CreatedCgroups::default(),
    };
    let outcome = demo_body(&mut host, &mut workload, seconds, cpus, start);

    // Cleanup, in order: workload, host, cgroups.
    workload.stop();
    say!("{} workload stopped", stamp(start));
    let exit = host.exit_info();
    let unload_start = Instant::now();
    drop(host);
    let unloaded = wait_for_sched_ext_state("disabled", Duration::from_secs(20), || None).is_ok();
    let state = sched_ext_state().unwrap_or_default();
    say!(
        "{} host scheduler unloaded: sched_ext state enabled -> {state} in {:.2} s{}",
        stamp(start),
        unload_start.elapsed().as_secs_f64(),
        exit.as_ref()
            .map(|e| format!(" (the kernel had stopped it: {e})"))
            .unwrap_or_default()
    );
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

    let mut problems = Vec::new();
    let tenants = match outcome {
        Ok(tenants) => tenants,
        Err(_) if signals::stop_requested() => {
            say!(
                "demo interrupted (Ctrl-C): workload stopped, scheduler unloaded (state {state}), \
                 cgroups removed"
            );
            return Ok(ExitCode::from(EXIT_INTERRUPTED));
        }
        Err(err) => {
            say!("demo FAILED: {err:#}");
            return Ok(ExitCode::from(EXIT_FAILED));
        }
    };
    if !unloaded {
        problems.push(format!(
            "sched_ext state is {state:?} after unloading, not disabled"
        ));
    }
    if let Some(exit) = exit {
        problems.push(format!("the kernel stopped the host: {exit}"));
    }
    say!("summary:");
    for t in &tenants {
        let class = t.final_class.as_ref();
        say!(
            "  {:<12} {} at level {} for {:.1} s: {:.2} CPU-s ({:.0}% of the CPUs); in the default class: {:.2} CPU-s; \
             policy totals: enq {}, run {}, max wait {:.1} ms, parks {}, clamps {}",
            t.name,
            t.policy,
            t.level,
            t.attached_for.as_secs_f64(),
            t.cpu_with_policy.as_secs_f64(),
            100.0 * t.cpu_with_policy.as_secs_f64()
                / (t.attached_for.as_secs_f64() * cpus as f64).max(1e-9),
            t.cpu_default.as_secs_f64(),
            class.map_or(0, |c| c.raw.enqueues),
            class.map_or(0, |c| c.raw.dispatches),
            class.map_or(0.0, |c| ms(c.raw.wait_max_ns)),
            class.map_or(0, |c| c.raw.parks),
            class.map_or(0, ClassStats::clamps),
        );
        if t.cpu_with_policy.is_zero() {
            problems.push(format!("tenant {} got no CPU under its policy", t.name));
        }
        if class.is_none_or(|c| c.raw.dispatches == 0) {
            problems.push(format!("policy {} never dispatched a task", t.policy));
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
/// the attach itself takes).
fn credit(tenants: &mut [Tenant], since: Duration, as_default: bool) -> Vec<Duration> {
    tenants
        .iter_mut()
        .map(|t| {
            let usage = cgroup_usage(&t.cgroup);
            let used = usage.saturating_sub(t.last_usage);
            t.last_usage = usage;
            if t.handle.is_some() && !as_default {
                t.cpu_with_policy += used;
                t.attached_for += since;
            } else {
                t.cpu_default += used;
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

fn demo_body(
    host: &mut Host,
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
        handle: None,
        pids: Vec::new(),
        last_usage: Duration::ZERO,
        attached_for: Duration::ZERO,
        cpu_with_policy: Duration::ZERO,
        cpu_default: Duration::ZERO,
        final_class: None,
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
    for t in &tenants {
        workload.cgroups.create(&t.cgroup)?;
    }
    say!(
        "{} cgroups: {}",
        stamp(),
        tenants
            .iter()
            .map(|t| t.cgroup.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
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
        let child = spawn_worker(kind, &tenants[tenant].cgroup, nice, max)?;
        tenants[tenant].pids.push(child.id());
        workload.children.push(child);
    }
    for t in &mut tenants {
        t.last_usage = cgroup_usage(&t.cgroup);
        say!("{} workload {:<12} {}", stamp(), t.name, t.workload);
    }

    let total = Duration::from_secs(seconds);
    let attach_at = Duration::from_secs((seconds / 6).max(2));
    let detach_at = Duration::from_secs(seconds * 2 / 3);
    let work_start = Instant::now();
    say!(
        "plan: {:.0} s in the default class only, then attach wfq (batch, level 1) and prio \
         (interactive, level 2) until {:.0} s, detach prio, stop at {:.0} s",
        attach_at.as_secs_f64(),
        detach_at.as_secs_f64(),
        total.as_secs_f64()
    );
    say!(
        "table, every second: cpu = share of all CPUs (tenants: their cgroup's usage); enq/s, \
         run/s = enqueues and dispatches per second; max wait = longest runnable wait since the \
         class started; parks, clamps in the interval. (default) is the default class: every \
         task without a policy, the system's own included"
    );
    let header = "  time  tenant       class           cpu  enq/s  run/s  max wait  parks  clamps";
    say!("{header}");
    flush();

    let mut attached = false;
    let mut detached = false;
    let mut previous: HostStats = host.stats()?;
    let mut last_tick = Instant::now();
    let mut tick = 1u32;
    let mut rows = 0u32;
    let mut interrupted = false;
    loop {
        let elapsed = work_start.elapsed();
        if !attached && elapsed >= attach_at {
            attached = true;
            for t in &mut tenants {
                let policy = upsched_policies::policy(t.policy)
                    .with_context(|| format!("no example policy {}", t.policy))?;
                let config = TenantConfig::new(&t.cgroup).level(t.level).weight(t.weight);
                let handle = host
                    .admit_and_attach(policy, &config)
                    .with_context(|| format!("attaching {} to {}", t.policy, t.cgroup.display()))?;
                t.handle = Some(handle);
                say!(
                    "{} attached policy {} to tenant {} (cgroup {}, level {}, weight {}, slot {}) \
                     while its tasks run",
                    stamp(),
                    t.policy,
                    t.name,
                    t.cgroup.display(),
                    t.level,
                    t.weight,
                    handle.slot
                );
            }
            say!(
                "        level 2 (interactive) is picked before level 1 (batch): its demand (a \
                 hog and a sleeper, about one CPU) is served first and batch gets the rest; \
                 the starvation guard would keep at least 5% for level 1"
            );
            credit(&mut tenants, last_tick.elapsed(), true);
            last_tick = Instant::now();
            previous = host.stats()?;
            rows = 0;
        }
        if attached && !detached && elapsed >= detach_at {
            detached = true;
            credit(&mut tenants, last_tick.elapsed(), false);
            last_tick = Instant::now();
            let t = &mut tenants[1];
            if let Some(handle) = t.handle.take() {
                t.final_class = host.stats().ok().map(|s| s.classes[handle.slot].clone());
                host.detach(handle)
                    .with_context(|| format!("detaching {}", t.policy))?;
                say!(
                    "{} detached policy {} from tenant {}: its {} tasks go on in the default class",
                    stamp(),
                    t.policy,
                    t.name,
                    t.pids.len()
                );
            }
            credit(&mut tenants, last_tick.elapsed(), false);
            last_tick = Instant::now();
            previous = host.stats()?;
            rows = 0;
        }
        if elapsed >= total {
            break;
        }
        let next = work_start + Duration::from_secs(u64::from(tick));
        let until = if !attached {
            next.min(work_start + attach_at)
        } else if !detached {
            next.min(work_start + detach_at)
        } else {
            next.min(work_start + total)
        };
        if !sleep_until(until) {
            interrupted = true;
            say!("{} Ctrl-C: stopping the demo", stamp());
            break;
        }
        if Instant::now() < next && work_start.elapsed() < total {
            continue; // a phase change came first
        }
        tick += 1;

        host.check_running().context("the host scheduler stopped")?;
        if let Some(ejection) = host.poll_ejections()?.into_iter().next() {
            say!(
                "{} EJECTED policy {}: {}",
                stamp(),
                ejection.policy,
                ejection.reason
            );
            bail!(
                "policy {} was ejected: {}",
                ejection.policy,
                ejection.reason
            );
        }
        let stats = host.stats()?;
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
        for (index, (t, used)) in tenants.iter().zip(used).enumerate() {
            let share = 100.0 * used.as_secs_f64() / capacity;
            let lead = if index == 0 { time.as_str() } else { "" };
            match t.handle {
                Some(handle) => {
                    let class = &stats.classes[handle.slot];
                    let before = Some(&previous.classes[handle.slot]);
                    let (enq, run, parks, clamps) = class_delta(class, before);
                    let per_s = |n: u64| n as f64 / dt.as_secs_f64();
                    say!(
                        "{lead:>6}  {:<12} {:<13} {share:4.0}%  {:5.0}  {:5.0}  {:6.1}ms  {parks:5}  {clamps:6}",
                        t.name,
                        format!("{} L{}", t.policy, t.level),
                        per_s(enq),
                        per_s(run),
                        ms(class.raw.wait_max_ns),
                    );
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
        let class = &stats.classes[DEFAULT_CLASS];
        let before = &previous.classes[DEFAULT_CLASS];
        let (enq, run, parks, clamps) = class_delta(class, Some(before));
        let cpu_ns = class.raw.cpu_time_ns.saturating_sub(before.raw.cpu_time_ns);
        let per_s = |n: u64| n as f64 / dt.as_secs_f64();
        say!(
            "{:>6}  {:<12} {:<13} {:4.0}%  {:5.0}  {:5.0}  {:6.1}ms  {parks:5}  {clamps:6}",
            "",
            "(default)",
            format!("default L{}", NR_LEVELS - 1),
            100.0 * cpu_ns as f64 / 1e9 / capacity,
            per_s(enq),
            per_s(run),
            ms(class.raw.wait_max_ns),
        );
        flush();
        previous = stats;
    }

    if detached {
        // Where the host's task map puts the detached tenant's tasks now.
        let t = &tenants[1];
        let in_default = t
            .pids
            .iter()
            .filter(|pid| matches!(host.task_slot(**pid), Ok(None)))
            .count();
        say!(
            "{} check: {in_default} of {} {} tasks are in the default class (host task map)",
            stamp(),
            t.pids.len(),
            t.name
        );
    }
    // Final class statistics of the tenants still attached.
    let stats = host.stats()?;
    for t in &mut tenants {
        if let Some(handle) = t.handle {
            t.final_class = Some(stats.classes[handle.slot].clone());
        }
    }
    for t in &tenants {
        if let Some(handle) = t.handle {
            say!(
                "{} detaching policy {} from tenant {}",
                stamp(),
                t.policy,
                t.name
            );
            host.detach(handle)?;
        }
    }
    if interrupted {
        bail!("interrupted (Ctrl-C)");
    }
    if !attached {
        bail!("the demo ended before the policies were attached");
    }
    Ok(tenants)
}
