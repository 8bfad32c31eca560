//! Loading the host scheduler, attaching tenant policies onto its slots, reading its state.
//!
//! ```no_run
//! use upsched_kernel::{Host, HostConfig, TenantConfig};
//! # fn main() -> Result<(), upsched_kernel::HostError> {
//! let mut host = Host::load(&HostConfig::default())?; // the scheduler is now in charge
//! // Checked once; the admitted value is what the kernel gets.
//! let policy = Host::admit(upsched_policies::policy("wfq").unwrap())?;
//! let tenant = host.attach(&policy, &TenantConfig::new("/sys/fs/cgroup/batch"))?;
//! println!("{:#?}", host.stats()?);
//! host.detach(tenant)?;
//! # Ok(())
//! # }   // dropping the host detaches every policy, then the scheduler
//! ```

use std::ffi::CString;
use std::mem::offset_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libbpf_rs::{
    AsRawLibbpf, Link, MapCore, MapFlags, MapHandle, Object, ObjectBuilder, PrintLevel,
    ProgramHandle, ProgramType,
};
use upsched_abi::mechanism::{EXIT_MSG_LEN, EXIT_REASON_LEN, FILL_ALL, HostParams, TenantParams};
use upsched_abi::{
    HOOK_ENQUEUE, HOOK_RUNNING, HOOK_SELECT_CPU, HOOK_STOPPING, HOOK_TASK_EXIT, HOOK_TASK_INIT,
    HOOK_TICK, HookInfo, NR_HOOKS,
};
use upsched_policy::AdmittedPolicy;

use crate::detect::{self, ApiGeneration};
use crate::error::{HostError, is_permission};
use crate::intf::*;

/// The host scheduler object, compiled from `bpf/host.bpf.c` by the build.
pub static HOST_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/host.bpf.o"));

/// Name of the struct_ops map in the host object (and of the scheduler in sysfs).
pub const SCHEDULER_NAME: &str = "upsched_host";
const STRUCT_OPS_MAP: &str = "upsched_host";

/// The host programs that call the stubs of each hook of the ABI, by hook id. A stub exists
/// once per calling program, and one loaded freplace program replaces one of them (the kernel
/// refuses to re-attach it to a struct_ops program of another member), so a hook with a second
/// caller is served by a second load of its program, sharing the policy's maps. A hook added to
/// abi.toml without its callers here fails the build.
pub const HOOK_CALLERS: [&[&str]; NR_HOOKS] = {
    let mut callers: [&[&str]; NR_HOOKS] = [&[]; NR_HOOKS];
    callers[HOOK_SELECT_CPU as usize] = &["host_select_cpu"];
    // ops.select_cpu decides the wake-ups it can (docs/mechanism.md), ops.enqueue the rest.
    callers[HOOK_ENQUEUE as usize] = &["host_select_cpu", "host_enqueue"];
    callers[HOOK_RUNNING as usize] = &["host_running"];
    callers[HOOK_STOPPING as usize] = &["host_stopping"];
    callers[HOOK_TICK as usize] = &["host_tick"];
    // Tasks join tenants when ops.enqueue classifies them, so it calls the task_init stubs.
    callers[HOOK_TASK_INIT as usize] = &["host_enqueue"];
    // Exits call it from ops.exit_task; moves, detaches and ejections from ops.enqueue.
    callers[HOOK_TASK_EXIT as usize] = &["host_exit_task", "host_enqueue"];
    let mut id = 0;
    while id < NR_HOOKS {
        assert!(!callers[id].is_empty(), "a hook of abi.toml has no caller");
        id += 1;
    }
    callers
};

/// Most callers any hook has (the number of loads of a policy's programs).
const MAX_CALLERS: usize = {
    let (mut max, mut id) = (0, 0);
    while id < NR_HOOKS {
        if HOOK_CALLERS[id].len() > max {
            max = HOOK_CALLERS[id].len();
        }
        id += 1;
    }
    max
};

/// The host programs that call `hook`'s stubs.
fn callers_of(hook: &HookInfo) -> &'static [&'static str] {
    HOOK_CALLERS[hook.id as usize]
}

/// The hook a program of section `section` implements, by the ABI's section names.
fn hook_of_section(section: &str) -> Option<&'static HookInfo> {
    section
        .strip_prefix(upsched_abi::HOOK_SECTION_PREFIX)
        .and_then(upsched_abi::hook)
}

/// How long `detach` and `poll_ejections` wait for a tenant's members to leave (calling its
/// `task_exit`) before freeing the slot. Running members leave within a tick, queued ones
/// within a timer period; a member asleep longer leaves without the call.
const DRAIN_BOUND: Duration = Duration::from_millis(500);

/// Settings of the host scheduler itself; the bounds of each are those of
/// [`HostParams`] (`mechanism.toml`), and [`Host::load`] refuses a value outside them.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// Slice of default-class tasks at low load (and of tenants that set none).
    pub default_slice: Duration,
    /// Shortest default-class slice under load, and how far ahead of the class's virtual now
    /// a task may be queued (docs/mechanism.md, "The default class's wait bound").
    pub default_slice_floor: Duration,
    /// Chain level of the default class (default: the top level, NR_LEVELS - 1).
    pub default_level: u32,
    /// Weight of the default class among the classes of its level.
    pub default_weight: u32,
    /// Starvation guard: each lower level with work gets at least this share (per mille) of
    /// every CPU on which it has work, in every window of that CPU.
    pub guard_min_permille: u32,
    pub guard_window: Duration,
    /// Period of the timer that releases parked tasks and runs the tenant watchdog.
    pub timer_period: Duration,
    /// How long to wait for the kernel to report the scheduler enabled.
    pub enable_timeout: Duration,
}

impl Default for HostConfig {
    fn default() -> Self {
        let params = HostParams::default();
        HostConfig {
            default_slice: Duration::from_nanos(params.default_slice_ns),
            default_slice_floor: Duration::from_nanos(params.default_slice_floor_ns),
            default_level: params.default_level,
            default_weight: params.default_weight,
            guard_min_permille: params.guard_min_permille,
            guard_window: Duration::from_nanos(params.guard_window_ns),
            timer_period: Duration::from_nanos(params.timer_period_ns),
            enable_timeout: Duration::from_secs(20),
        }
    }
}

impl HostConfig {
    /// The mechanism's parameters of this configuration.
    pub fn params(&self) -> HostParams {
        HostParams {
            default_slice_ns: nanos(self.default_slice),
            default_slice_floor_ns: nanos(self.default_slice_floor),
            default_level: self.default_level,
            default_weight: self.default_weight,
            guard_min_permille: self.guard_min_permille,
            guard_window_ns: nanos(self.guard_window),
            timer_period_ns: nanos(self.timer_period),
        }
    }
}

/// A duration in ns; one too long for a u64 saturates (and is refused as out of bounds).
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Where a tenant sits and what bounds its policy's decisions; the bounds of each setting are
/// those of [`TenantParams`] (`mechanism.toml`), and attaching refuses a value outside them.
#[derive(Clone, Debug)]
pub struct TenantConfig {
    /// Root of the cgroup2 subtree whose tasks the tenant governs.
    pub cgroup: PathBuf,
    /// Chain level, 0..NR_LEVELS; higher levels run first.
    pub level: u32,
    /// Weight among the classes of the same level.
    pub weight: u32,
    pub slice_min: Duration,
    pub slice_max: Duration,
    /// Slice pre-filled into ctx->slice_ns.
    pub slice_default: Duration,
    /// Longest a task may stay parked after it became runnable.
    pub park_max: Duration,
    /// A tenant task waiting (runnable, not running) longer than this ejects the tenant.
    /// At most [`upsched_abi::mechanism::MAX_WATCHDOG_NS`], so that this wait plus the default class's
    /// after an ejection stays under sched_ext's own watchdog.
    pub watchdog: Duration,
}

impl TenantConfig {
    /// The defaults of [`TenantParams`] for the tenant of `cgroup`.
    pub fn new(cgroup: impl Into<PathBuf>) -> Self {
        let params = TenantParams::default();
        TenantConfig {
            cgroup: cgroup.into(),
            level: params.level,
            weight: params.weight,
            slice_min: Duration::from_nanos(params.slice_min_ns),
            slice_max: Duration::from_nanos(params.slice_max_ns),
            slice_default: Duration::from_nanos(params.slice_default_ns),
            park_max: Duration::from_nanos(params.park_max_ns),
            watchdog: Duration::from_nanos(params.watchdog_ns),
        }
    }

    pub fn level(mut self, level: u32) -> Self {
        self.level = level;
        self
    }

    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// The mechanism's parameters of this configuration.
    pub fn params(&self) -> TenantParams {
        TenantParams {
            level: self.level,
            weight: self.weight,
            slice_min_ns: nanos(self.slice_min),
            slice_max_ns: nanos(self.slice_max),
            slice_default_ns: nanos(self.slice_default),
            park_max_ns: nanos(self.park_max),
            watchdog_ns: nanos(self.watchdog),
        }
    }

    /// The parameters, if [`TenantParams::validate`] accepts them.
    fn validate(&self) -> Result<TenantParams, HostError> {
        let params = self.params();
        params
            .validate()
            .map_err(|e| HostError::BadTenantConfig(e.to_string()))?;
        Ok(params)
    }
}

/// A tenant attached to the host: slot and incarnation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TenantHandle {
    pub slot: usize,
    pub generation: u32,
}

/// Why a tenant was removed by the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ejection {
    pub handle: TenantHandle,
    pub policy: String,
    pub reason: String,
    pub pid: u32,
    pub waited: Duration,
}

struct Tenant {
    handle: TenantHandle,
    policy: String,
    config: TenantConfig,
    /// The policy's loads: the first owns its maps, the others reuse them.
    instances: Vec<PolicyInstance>,
    /// The stub set its programs replace and the host calls (0: A, 1: B; see [`Host::replace`]).
    set: u32,
}

/// A stub of `slot`'s set `set` (0: A, 1: B) for `hook`, as `bpf/host.bpf.c` names them.
fn stub_name(slot: usize, set: u32, hook: &str) -> String {
    let set = if set == 0 { "" } else { "b" };
    format!("upsched_s{slot}{set}_{hook}")
}

/// What attaching an admitted policy takes from the admitted value (nothing is re-derived).
struct AttachPlan<'a> {
    policy: &'a AdmittedPolicy,
    name: &'a str,
    /// Loads of the object: the most callers a hook of the policy has.
    loads: usize,
    /// The `FILL_*` classes of the context fields some hook of the policy reads: the host
    /// fills only those.
    fills: u32,
}

impl<'a> AttachPlan<'a> {
    fn of(policy: &'a AdmittedPolicy) -> Self {
        let reads = policy.report().hooks.iter().flat_map(|hook| &hook.reads);
        AttachPlan {
            policy,
            name: match policy.name() {
                "" => "unnamed",
                name => name,
            },
            loads: policy
                .hooks()
                .map(|hook| callers_of(hook).len())
                .max()
                .unwrap_or(0),
            fills: upsched_abi::mechanism::fills_for_reads(reads.map(String::as_str)),
        }
    }

    /// The hook of the admitted object's program in section `section`.
    fn hook_of(&self, section: &str) -> Option<&'static HookInfo> {
        self.policy
            .object()
            .programs
            .iter()
            .find(|program| program.section == section)
            .and_then(|program| program.hook)
    }
}

/// The pin name of the `index`-th link of a tenant whose programs replace stub set `set`: set
/// A's are the plain index, as before there were two sets, so that older pins still adopt.
fn link_pin_name(set: u32, index: usize) -> String {
    if set == 0 {
        index.to_string()
    } else {
        format!("b{index}")
    }
}

/// The stub set of the link pinned as `name` (see [`link_pin_name`]).
fn set_of_link_pin(name: &str) -> u32 {
    u32::from(name.starts_with('b'))
}

/// How long [`Host::replace`] waits after the flip before it detaches the old policy: a call
/// that read the old set just before the flip still enters the old programs, and host callbacks
/// run without preemption, so a call in flight ends well within this.
const SWAP_GRACE: Duration = Duration::from_millis(10);

/// One load of a policy object and the links of its programs to their stubs.
/// A policy object loaded for one caller index, not yet attached: (program name, hook, target
/// program fd, stub name) per program.
struct LoadedInstance {
    object: Object,
    targets: Vec<(String, String, i32, String)>,
    hooks: u32,
}

struct PolicyInstance {
    hooks: u32,
    // Field order matters: links detach before the object (and its programs) go away.
    links: Vec<Link>,
    /// `None` for a tenant adopted from pins: its programs live on through its pinned links.
    object: Option<Object>,
}

/// Statistics of one class (the default class or a tenant slot).
#[derive(Clone, Debug, Default)]
pub struct ClassStats {
    /// `default`, or the tenant's policy name, or `slot N` for a free slot.
    pub name: String,
    pub raw: ClassCounters,
}

impl ClassStats {
    pub fn clamps(&self) -> u64 {
        self.raw.clamp_slice + self.raw.clamp_cpu + self.raw.clamp_verdict + self.raw.clamp_park
    }
}

/// Per-tenant state as the host sees it.
#[derive(Clone, Debug)]
pub struct TenantInfo {
    pub handle: TenantHandle,
    pub policy: String,
    pub cgroup: PathBuf,
    pub level: u32,
    pub weight: u32,
    pub nr_tasks: i32,
    pub nr_runnable: i32,
    /// Calls that reached a stub of the live set with no policy program on it, for a hook the
    /// policy replaces (wraps): 0 while every call reaches the policy, across replaces too.
    pub default_calls: u32,
}

#[derive(Clone, Debug)]
pub struct HostStats {
    /// Index 0..NR_SLOTS: tenant slots; index DEFAULT_CLASS: the default class.
    pub classes: Vec<ClassStats>,
    pub tenants: Vec<TenantInfo>,
}

impl HostStats {
    /// Lines for people: one per class with activity.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (index, class) in self.classes.iter().enumerate() {
            let raw = &class.raw;
            if raw.enqueues == 0 && raw.dispatches == 0 && index != DEFAULT_CLASS {
                continue;
            }
            out.push_str(&format!(
                "{:<14} enq {:>8} run {:>8} cpu {:>9.3}s wait max {:>8.3}ms avg {:>7.3}ms parks {} releases {} clamps {} ejections {}\n",
                class.name,
                raw.enqueues,
                raw.dispatches,
                raw.cpu_time_ns as f64 / 1e9,
                raw.wait_max_ns as f64 / 1e6,
                if raw.dispatches > 0 {
                    raw.wait_sum_ns as f64 / raw.dispatches as f64 / 1e6
                } else {
                    0.0
                },
                raw.parks,
                raw.releases,
                class.clamps(),
                raw.ejections,
            ));
        }
        out
    }
}

/// How the kernel stopped the scheduler, if it did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitInfo {
    pub kind: i32,
    pub exit_code: i64,
    pub reason: String,
    pub message: String,
}

impl std::fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (kind {})", self.reason, self.kind)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

/// The loaded and attached host scheduler. Dropping it detaches every policy, then the
/// scheduler: all tasks go back to the kernel's fair class.
pub struct Host {
    tenants: Vec<Option<Tenant>>,
    generations: [u32; NR_SLOTS],
    host_config: HostConfigRaw,
    struct_ops_link: Option<Link>,
    /// The host's maps and programs by their names in the object (pin names, see
    /// [`pin_name`]): handles, because an adopted host has no libbpf object.
    maps: Vec<(String, MapHandle)>,
    progs: Vec<(String, ProgramHandle)>,
    /// The bpffs directory of a pinned host (see [`Host::load_pinned`]).
    pins: Option<PathBuf>,
}

/// Layout of a pinned host under its directory: the struct_ops link, the maps and programs by
/// name, and per tenant slot the policy's freplace links.
const PIN_LINK: &str = "link";
const PIN_MAPS: &str = "maps";
const PIN_PROGS: &str = "progs";
const PIN_TENANTS: &str = "tenants";

/// The host's map of the tenants' hint maps: at a slot, the map of the slot's tenant.
const HINT_MAPS: &str = "hint_maps";

/// bpffs refuses dots in names; libbpf's names of global sections have them (`.bss`).
fn pin_name(name: &str) -> String {
    name.replace('.', "_")
}

fn pin_error(path: &Path, error: impl std::fmt::Display) -> HostError {
    HostError::Pin {
        path: path.display().to_string(),
        message: error.to_string(),
    }
}

/// libbpf's messages of the current load, to hand the verifier log to the caller.
static LIBBPF_LOG: Mutex<String> = Mutex::new(String::new());
/// The first warning of the current load: libbpf's own reason for a refusal (later warnings
/// are its consequences, such as "failed to load object").
static LIBBPF_FIRST_WARNING: Mutex<Option<String>> = Mutex::new(None);

fn capture_libbpf_log(level: PrintLevel, message: String) {
    if level == PrintLevel::Debug {
        return;
    }
    if level == PrintLevel::Warn {
        if let Ok(mut first) = LIBBPF_FIRST_WARNING.lock() {
            first.get_or_insert_with(|| message.trim().to_string());
        }
    }
    if let Ok(mut log) = LIBBPF_LOG.lock() {
        log.push_str(&message);
        bound_log(&mut log);
    }
}

/// Most bytes of libbpf's messages kept for one load: a verifier log can be megabytes (libbpf
/// passes it whole, in one message), and the broker returns what is kept in one protocol
/// message.
const LOG_MAX_BYTES: usize = 512 * 1024;
/// Of those, the bytes kept from the log's start: libbpf's first messages and the verifier
/// log's `BEGIN PROG LOAD LOG` line, by which a refusal is told to be the verifier's.
const LOG_HEAD_BYTES: usize = 16 * 1024;

/// Cuts `log` to at most about [`LOG_MAX_BYTES`]: its first [`LOG_HEAD_BYTES`], a line saying
/// how much was left out, and its end, which holds the reason.
fn bound_log(log: &mut String) {
    if log.len() <= LOG_MAX_BYTES {
        return;
    }
    let boundary = |at: usize| (at..log.len()).find(|i| log.is_char_boundary(*i));
    let head_end = boundary(LOG_HEAD_BYTES).unwrap_or(log.len());
    let tail_start = boundary(log.len() - (LOG_MAX_BYTES - LOG_HEAD_BYTES)).unwrap_or(log.len());
    let left_out = tail_start.saturating_sub(head_end);
    log.replace_range(
        head_end..tail_start,
        &format!("\n[... {left_out} bytes of the log left out ...]\n"),
    );
}

fn start_log_capture() {
    libbpf_rs::set_print(Some((PrintLevel::Info, capture_libbpf_log)));
    if let Ok(mut log) = LIBBPF_LOG.lock() {
        log.clear();
    }
    if let Ok(mut first) = LIBBPF_FIRST_WARNING.lock() {
        *first = None;
    }
}

/// libbpf's reason for the current refusal: its first warning, else `error`'s text.
fn libbpf_reason(error: &libbpf_rs::Error) -> String {
    let first = LIBBPF_FIRST_WARNING
        .lock()
        .ok()
        .and_then(|mut first| first.take());
    match first {
        Some(warning) => format!("{warning} ({error})"),
        None => error.to_string(),
    }
}

fn take_log() -> String {
    LIBBPF_LOG
        .lock()
        .map(|mut log| std::mem::take(&mut *log))
        .unwrap_or_default()
}

/// Opens `policy` with libbpf, as every load does first (starting a fresh log capture).
fn open_policy(policy: &[u8]) -> Result<libbpf_rs::OpenObject, HostError> {
    start_log_capture();
    ObjectBuilder::default()
        .open_memory(policy)
        .map_err(|e| HostError::PolicyOpen {
            message: libbpf_reason(&e),
            log: take_log(),
        })
}

/// libbpf's verdict on `policy` when it opens it: its ELF, BTF and relocation rules, which
/// need no kernel (the first layer of [`Host::kernel_verdict`]).
pub fn libbpf_open_verdict(policy: &[u8]) -> Result<(), HostError> {
    open_policy(policy).map(drop)
}

/// The kernel verifier's own words: the last lines of its log before the statistics.
pub fn verifier_summary(log: &str) -> String {
    let body: Vec<&str> = log
        .lines()
        .skip_while(|l| !l.contains("BEGIN PROG LOAD LOG"))
        .skip(1)
        .take_while(|l| !l.contains("END PROG LOAD LOG"))
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("processed ")
                && !l.starts_with("verification time")
                && !l.starts_with("stack depth")
        })
        .collect();
    if let Some(last) = body.last() {
        return (*last).to_string();
    }
    log.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}

fn map_error(action: &str, error: impl std::fmt::Display) -> HostError {
    HostError::Map {
        action: action.to_string(),
        message: error.to_string(),
    }
}

/// Kernel state of sched_ext right now (`enabled`, `disabled`, ...), or `None` without sched_ext.
pub fn sched_ext_state() -> Option<String> {
    std::fs::read_to_string(detect::SCHED_EXT_STATE)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Polls the sched_ext state until it reads `want` (`enabled`, `disabled`) and returns how long
/// that took. Gives up after `timeout`, or as soon as `failed` gives a reason (a scheduler that
/// exited will never be enabled).
pub fn wait_for_sched_ext_state(
    want: &str,
    timeout: Duration,
    mut failed: impl FnMut() -> Option<String>,
) -> Result<Duration, String> {
    let start = Instant::now();
    loop {
        if let Some(reason) = failed() {
            return Err(reason);
        }
        let state = sched_ext_state();
        if state.as_deref() == Some(want) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            return Err(format!(
                "sched_ext not {want} after {timeout:?} (state {})",
                state.unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Host {
    /// Loads the host scheduler and makes it the system's scheduler (full switch), for as long
    /// as the returned value lives.
    pub fn load(config: &HostConfig) -> Result<Host, HostError> {
        Self::load_with(config, None)
    }

    /// [`Host::load`], with the scheduler's link, maps and programs and every tenant's links
    /// pinned under `pin_dir` (bpffs), so that they outlive this process: dropping the host
    /// leaves the scheduler and its tenants running, [`Host::adopt`] takes them over and
    /// [`unload_pinned`] ends them. `pin_dir` must hold no pins yet; a failed load leaves none.
    pub fn load_pinned(config: &HostConfig, pin_dir: &Path) -> Result<Host, HostError> {
        if is_pinned(pin_dir) {
            return Err(pin_error(
                pin_dir,
                "holds a pinned host already (adopt it, or end it with `upschedd --unload`)",
            ));
        }
        let loaded = Self::load_with(config, Some(pin_dir));
        if loaded.is_err() {
            // Removing the pins releases whatever the failed load had pinned.
            let _ = std::fs::remove_dir_all(pin_dir);
        }
        loaded
    }

    fn load_with(config: &HostConfig, pins: Option<&Path>) -> Result<Host, HostError> {
        let params = config.params();
        params
            .validate()
            .map_err(|e| HostError::BadHostConfig(e.to_string()))?;
        let support = detect::detect();
        if !support.sched_ext {
            return Err(HostError::NoSchedExt);
        }
        if support.api == ApiGeneration::Dispatch {
            return Err(HostError::UnsupportedApi(support.api));
        }
        match support.state.as_deref() {
            Some("disabled") | None => {}
            Some(state) => {
                return Err(HostError::OtherSchedulerActive(
                    support
                        .active_ops
                        .map(|ops| format!("{ops}, state {state}"))
                        .unwrap_or_else(|| format!("state {state}")),
                ));
            }
        }

        start_log_capture();
        let open = ObjectBuilder::default()
            .open_memory(HOST_OBJECT)
            .map_err(|e| HostError::HostLoad {
                action: "opening the host object".into(),
                message: e.to_string(),
                log: take_log(),
            })?;
        let object = open.load().map_err(|e| {
            let log = take_log();
            // The verifier answers EACCES too: only without a verifier log is it a permission
            // problem.
            if is_permission(&e) && !log.contains("BEGIN PROG LOAD LOG") {
                HostError::Permission("loading the host scheduler".into())
            } else {
                HostError::HostLoad {
                    action: "loading the host scheduler".into(),
                    message: e.to_string(),
                    log,
                }
            }
        })?;

        let host_config = HostConfigRaw {
            default_slice_ns: params.default_slice_ns,
            guard_window_ns: params.guard_window_ns,
            timer_period_ns: params.timer_period_ns,
            default_slice_floor_ns: params.default_slice_floor_ns,
            guard_min_permille: params.guard_min_permille,
            default_level: params.default_level,
            default_weight: params.default_weight,
            classify_gen: 1,
        };
        let mut object = object;
        let maps = object
            .maps()
            .map(|m| {
                let name = pin_name(&m.name().to_string_lossy());
                MapHandle::try_from(&m).map(|handle| (name, handle))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| map_error("opening the host's maps", e))?;
        let progs = object
            .progs_mut()
            .map(|p| {
                let name = p.name().to_string_lossy().into_owned();
                ProgramHandle::try_from(&p).map(|handle| (name, handle))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| map_error("opening the host's programs", e))?;
        let mut host = Host {
            tenants: (0..NR_SLOTS).map(|_| None).collect(),
            generations: [0; NR_SLOTS],
            host_config,
            struct_ops_link: None,
            maps,
            progs,
            pins: pins.map(Path::to_path_buf),
        };
        host.write_host_config()?;
        host.pin_maps_and_progs()?;

        let mut link = {
            let mut map = object
                .maps_mut()
                .find(|m| m.name() == STRUCT_OPS_MAP)
                .ok_or_else(|| map_error("finding the struct_ops map", STRUCT_OPS_MAP))?;
            map.attach_struct_ops().map_err(|e| {
                if is_permission(&e) {
                    HostError::Permission("attaching the host scheduler".into())
                } else if matches!(e.kind(), libbpf_rs::ErrorKind::AlreadyExists)
                    || e.to_string().contains("busy")
                {
                    HostError::OtherSchedulerActive(
                        detect::detect()
                            .active_ops
                            .unwrap_or_else(|| "unknown".to_string()),
                    )
                } else {
                    HostError::HostLoad {
                        action: "attaching the host scheduler".into(),
                        message: e.to_string(),
                        log: take_log(),
                    }
                }
            })?
        };
        if let Some(pins) = &host.pins {
            let path = pins.join(PIN_LINK);
            link.pin(&path).map_err(|e| pin_error(&path, e))?;
            // The pin holds the scheduler now; closing this process's link must not end it.
            link.disconnect();
        }
        host.struct_ops_link = Some(link);
        host.wait_enabled(config.enable_timeout)?;
        Ok(host)
    }

    /// Pins every map (a `bpf_timer` stops with the last reference to its map) and every
    /// program (the targets a later process attaches tenants to) of a pinned host.
    fn pin_maps_and_progs(&mut self) -> Result<(), HostError> {
        let Some(pins) = &self.pins else {
            return Ok(());
        };
        for dir in [PIN_MAPS, PIN_PROGS, PIN_TENANTS] {
            let dir = pins.join(dir);
            std::fs::create_dir_all(&dir).map_err(|e| pin_error(&dir, e))?;
        }
        for (name, map) in &mut self.maps {
            let path = pins.join(PIN_MAPS).join(name.as_str());
            map.pin(&path).map_err(|e| pin_error(&path, e))?;
        }
        for (name, prog) in &self.progs {
            let path = pins.join(PIN_PROGS).join(name.as_str());
            prog.pin(&path).map_err(|e| pin_error(&path, e))?;
        }
        Ok(())
    }

    fn wait_enabled(&self, timeout: Duration) -> Result<(), HostError> {
        wait_for_sched_ext_state("enabled", timeout, || {
            self.exit_info().map(|exit| exit.to_string())
        })
        .map(drop)
        .map_err(HostError::HostExited)
    }

    fn map(&self, name: &str) -> Result<&MapHandle, HostError> {
        self.maps
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, map)| map)
            .ok_or_else(|| map_error("finding a map of the host", name))
    }

    /// Writes entry `index` of the host's array map `map`; `what` names it in errors.
    fn write_entry(
        &self,
        map: &str,
        index: u32,
        value: &[u8],
        what: &str,
    ) -> Result<(), HostError> {
        self.map(map)?
            .update(&index.to_ne_bytes(), value, MapFlags::ANY)
            .map_err(|e| map_error(&format!("writing {what}"), e))
    }

    fn write_host_config(&self) -> Result<(), HostError> {
        let config = self.host_config.as_bytes();
        self.write_entry("host_config", 0, config, "the host configuration")
    }

    fn write_tenant_config(&self, slot: usize, config: &TenantConfigRaw) -> Result<(), HostError> {
        let config = config.as_bytes();
        self.write_entry(
            "tenant_config",
            slot as u32,
            config,
            "a tenant configuration",
        )
    }

    fn read_tenant_config(&self, slot: usize) -> Result<TenantConfigRaw, HostError> {
        let bytes = self
            .map("tenant_config")?
            .lookup(&(slot as u32).to_ne_bytes(), MapFlags::ANY)
            .map_err(|e| map_error("reading a tenant configuration", e))?
            .unwrap_or_default();
        Ok(TenantConfigRaw::from_bytes(&bytes).unwrap_or_default())
    }

    fn write_tenant_status(&self, slot: usize, status: &TenantStatusRaw) -> Result<(), HostError> {
        let status = status.as_bytes();
        self.write_entry("tenant_status", slot as u32, status, "a tenant status")
    }

    fn read_tenant_status(&self, slot: usize) -> Result<TenantStatusRaw, HostError> {
        let bytes = self
            .map("tenant_status")?
            .lookup(&(slot as u32).to_ne_bytes(), MapFlags::ANY)
            .map_err(|e| map_error("reading a tenant status", e))?
            .unwrap_or_default();
        Ok(TenantStatusRaw::from_bytes(&bytes).unwrap_or_default())
    }

    fn reset_class_stats(&self, class: usize) -> Result<(), HostError> {
        let cpus = libbpf_rs::num_possible_cpus().map_err(|e| map_error("counting CPUs", e))?;
        let zero = vec![ClassCounters::default().as_bytes().to_vec(); cpus];
        self.map("class_stats")?
            .update_percpu(&(class as u32).to_ne_bytes(), &zero, MapFlags::ANY)
            .map_err(|e| map_error("resetting statistics", e))
    }

    /// Empties a slot's pool of task slots (every one fresh again). Members of an earlier
    /// tenant that never left hold slots of the old pool, but no longer use or return them.
    fn reset_slot_pool(&self, slot: usize) -> Result<(), HostError> {
        let map = self.map("slot_pools")?;
        let zero = vec![0u8; map.value_size() as usize];
        self.write_entry("slot_pools", slot as u32, &zero, "a slot's task pool")
    }

    /// Tasks reclassify themselves at their next enqueue when this changes.
    fn bump_classification(&mut self) -> Result<(), HostError> {
        self.host_config.classify_gen = self.host_config.classify_gen.wrapping_add(1).max(1);
        self.write_host_config()
    }

    fn host_prog_fd(&self, name: &str) -> Result<i32, HostError> {
        self.progs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.as_fd().as_raw_fd())
            .ok_or_else(|| map_error("finding a host program", name))
    }

    /// Admits `policy` under the default limits (`upsched_policy::admit`) for [`Host::attach`];
    /// a refusal is [`HostError::PolicyRejected`] with the problems.
    pub fn admit(policy: &[u8]) -> Result<AdmittedPolicy, HostError> {
        upsched_policy::admit(policy, &upsched_policy::Limits::default()).map_err(|refused| {
            HostError::PolicyRejected(refused.0.problems.iter().map(ToString::to_string).collect())
        })
    }

    /// Attaches an admitted policy onto a free slot, bound to `config.cgroup`. Admission
    /// (`upsched_policy::admit`) already ran `upsched check`; here the kernel verifier judges
    /// the same bytes. The hooks, and so the loads, come from the admitted value: libbpf opens
    /// the bytes once per load, and a policy without a hook of two callers is loaded once. On
    /// any failure nothing changes.
    pub fn attach(
        &mut self,
        policy: &AdmittedPolicy,
        config: &TenantConfig,
    ) -> Result<TenantHandle, HostError> {
        let plan = AttachPlan::of(policy);
        let hook_of = |section: &str| plan.hook_of(section);
        self.attach_object(
            policy.bytes(),
            plan.name,
            plan.loads,
            plan.fills,
            &hook_of,
            config,
        )
    }

    /// [`Host::admit`] then [`Host::attach`], for callers that hold only the object's bytes.
    pub fn admit_and_attach(
        &mut self,
        policy: &[u8],
        config: &TenantConfig,
    ) -> Result<TenantHandle, HostError> {
        self.attach(&Host::admit(policy)?, config)
    }

    /// `attach` without `upsched check`: the kernel verifier is the only judge, and the hooks
    /// are taken from the section names libbpf reads. Tests use it to exercise the kernel's
    /// rejection path with objects our own checker already refuses; a broker must always use
    /// [`Host::attach`].
    pub fn attach_unchecked(
        &mut self,
        policy: &[u8],
        config: &TenantConfig,
    ) -> Result<TenantHandle, HostError> {
        // Its reads are not analysed: every field is filled.
        self.attach_object(
            policy,
            "unchecked",
            MAX_CALLERS,
            FILL_ALL,
            &hook_of_section,
            config,
        )
    }

    /// The kernel's verdict on `policy`, without `upsched check` and without attaching: each
    /// hook program is aimed at the stubs of a free slot, loaded through libbpf (so libbpf's
    /// ELF, BTF and relocation rules and the kernel verifier all judge it) and dropped. The
    /// running scheduler and its tenants are untouched either way. `Err` says which layer
    /// refused the object ([`HostError::policy_layer`]).
    pub fn kernel_verdict(&self, policy: &[u8]) -> Result<(), HostError> {
        let slot = self
            .tenants
            .iter()
            .position(Option::is_none)
            .ok_or(HostError::NoFreeSlot(NR_SLOTS))?;
        let mut first: Option<LoadedInstance> = None;
        for caller_index in 0..MAX_CALLERS {
            let maps_of = first.as_ref().map(|f| &f.object);
            let loaded = self.load_policy_instance(
                policy,
                &hook_of_section,
                slot,
                0,
                caller_index,
                maps_of,
            )?;
            if first.is_none() {
                first = loaded;
            }
        }
        Ok(())
    }

    /// Loads `policy` `loads` times (the `i`-th load for the `i`-th caller of each hook,
    /// `hook_of` naming the hook of a section) and attaches it onto a free slot, whose
    /// context fills are `fills` (`FILL_*`).
    fn attach_object(
        &mut self,
        policy: &[u8],
        policy_name: &str,
        loads: usize,
        fills: u32,
        hook_of: &dyn Fn(&str) -> Option<&'static HookInfo>,
        config: &TenantConfig,
    ) -> Result<TenantHandle, HostError> {
        let params = config.validate()?;
        let policy_name = policy_name.to_string();
        let (cgroup_id, cgroup_level) = cgroup_identity(&config.cgroup)?;
        let slot = self
            .tenants
            .iter()
            .position(Option::is_none)
            .ok_or(HostError::NoFreeSlot(NR_SLOTS))?;
        self.install_hint_map(slot)?;
        let (mut instances, hooks) = self.attach_instances(policy, loads, hook_of, slot, 0)?;
        self.pin_tenant_links(slot, 0, &mut instances)?;

        // Statistics, task pool and member count of a slot describe its current tenant only
        // (members of an earlier one that never left no longer count, see drain_and_free).
        self.reset_class_stats(slot)?;
        self.reset_slot_pool(slot)?;
        let mut status = self.read_tenant_status(slot)?;
        status.nr_tasks = 0;
        status.default_calls = 0;
        self.write_tenant_status(slot, &status)?;
        let generation = self.generations[slot].wrapping_add(1).max(1);
        self.generations[slot] = generation;
        let raw = TenantConfigRaw {
            state: SLOT_ACTIVE,
            generation,
            cgroup_id,
            cgroup_level,
            level: params.level,
            weight: params.weight,
            hooks,
            slice_min_ns: params.slice_min_ns,
            slice_max_ns: params.slice_max_ns,
            slice_dfl_ns: params.slice_default_ns,
            park_max_ns: params.park_max_ns,
            watchdog_ns: params.watchdog_ns,
            fills,
            stubs: 0,
            hooks_b: 0,
            fills_b: 0,
            notify_key: new_notify_key()?,
        };
        self.write_tenant_config(slot, &raw)?;
        let handle = TenantHandle { slot, generation };
        self.tenants[slot] = Some(Tenant {
            handle,
            policy: policy_name,
            config: config.clone(),
            instances,
            set: 0,
        });
        self.bump_classification()?;
        Ok(handle)
    }

    /// Loads the policy once per caller of its hooks (`loads` times, the first load owning the
    /// maps) and attaches each load's programs to their stubs of set `set` in `slot`; the hooks
    /// they replace come back with them. On failure the links made so far end with them.
    fn attach_instances(
        &self,
        policy: &[u8],
        loads: usize,
        hook_of: &dyn Fn(&str) -> Option<&'static HookInfo>,
        slot: usize,
        set: u32,
    ) -> Result<(Vec<PolicyInstance>, u32), HostError> {
        let mut instances: Vec<PolicyInstance> = Vec::new();
        let mut hooks = 0u32;
        for caller_index in 0..loads {
            let loaded = self.load_policy_instance(
                policy,
                hook_of,
                slot,
                set,
                caller_index,
                instances.first().and_then(|first| first.object.as_ref()),
            )?;
            if let Some(loaded) = loaded {
                let instance = Self::attach_instance(loaded)?;
                hooks |= instance.hooks;
                instances.push(instance);
            }
        }
        Ok((instances, hooks))
    }

    /// Replaces the policy of tenant `handle` by `policy`, atomically for every call: the new
    /// policy is loaded and attached onto the slot's idle stub set, the tenant configuration
    /// learns that set's hooks and fills, then one write flips the set the host calls, and only
    /// then is the old policy detached. No call reaches a default stub in between (the slot's
    /// `default_calls` counts any that would). The slot, its generation, members, task slots,
    /// statistics and hint map stay: members are not told (no `task_exit` of the old policy,
    /// no `task_init` of the new one; docs/mechanism.md). Any failure before the flip detaches
    /// what was attached and leaves the old policy in place.
    pub fn replace(
        &mut self,
        handle: TenantHandle,
        policy: &AdmittedPolicy,
    ) -> Result<(), HostError> {
        let slot = self.live_slot(handle)?;
        let old_set = self.tenants[slot].as_ref().map_or(0, |t| t.set);
        let set = 1 - old_set;
        let plan = AttachPlan::of(policy);
        let hook_of = |section: &str| plan.hook_of(section);
        let fills = plan.fills;
        let (mut instances, hooks) =
            self.attach_instances(policy.bytes(), plan.loads, &hook_of, slot, set)?;
        // Stale pins of the idle set (a replace interrupted before its flip) are gone by now:
        // their links held the idle stubs, which the attach above could not have taken.
        self.pin_tenant_links(slot, set, &mut instances)?;
        let flipped = self.read_tenant_config(slot).and_then(|mut raw| {
            // The idle set's hooks and fills first: the host reads them only once `stubs`
            // names that set, and the second write changes nothing but `stubs`.
            if set == 0 {
                (raw.hooks, raw.fills) = (hooks, fills);
            } else {
                (raw.hooks_b, raw.fills_b) = (hooks, fills);
            }
            self.write_tenant_config(slot, &raw)?;
            raw.stubs = set;
            self.write_tenant_config(slot, &raw)
        });
        if let Err(e) = flipped {
            let _ = self.unpin_set(slot, set);
            return Err(e);
        }
        let old = self.tenants[slot].as_mut().map(|tenant| {
            tenant.policy = plan.name.to_string();
            tenant.set = set;
            std::mem::replace(&mut tenant.instances, instances)
        });
        std::thread::sleep(SWAP_GRACE);
        drop(old);
        self.unpin_set(slot, old_set)
    }

    /// The bpffs directory of `slot`'s links, on a pinned host.
    fn slot_pins(&self, slot: usize) -> Option<PathBuf> {
        self.pins
            .as_ref()
            .map(|pins| pins.join(PIN_TENANTS).join(slot.to_string()))
    }

    /// Pins the links of a tenant's policy attached onto stub set `set` of `slot` on a pinned
    /// host; on failure that set's pins are removed again (the links then end with
    /// `instances`).
    fn pin_tenant_links(
        &self,
        slot: usize,
        set: u32,
        instances: &mut [PolicyInstance],
    ) -> Result<(), HostError> {
        let Some(dir) = self.slot_pins(slot) else {
            return Ok(());
        };
        let pinned = std::fs::create_dir_all(&dir)
            .map_err(|e| pin_error(&dir, e))
            .and_then(|()| {
                let links = instances.iter_mut().flat_map(|i| i.links.iter_mut());
                for (index, link) in links.enumerate() {
                    let path = dir.join(link_pin_name(set, index));
                    link.pin(&path).map_err(|e| pin_error(&path, e))?;
                }
                Ok(())
            });
        if pinned.is_err() {
            let _ = self.unpin_set(slot, set);
        }
        pinned
    }

    /// Removes the pins of the links of `slot`'s stub set `set` (the links end with their
    /// values).
    fn unpin_set(&self, slot: usize, set: u32) -> Result<(), HostError> {
        let Some(dir) = self.slot_pins(slot).filter(|dir| dir.exists()) else {
            return Ok(());
        };
        let entries = std::fs::read_dir(&dir).map_err(|e| pin_error(&dir, e))?;
        for entry in entries {
            let path = entry.map_err(|e| pin_error(&dir, e))?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if name.is_some_and(|name| set_of_link_pin(&name) == set) {
                std::fs::remove_file(&path).map_err(|e| pin_error(&path, e))?;
            }
        }
        Ok(())
    }

    /// Removes the pins of `slot`'s links, once its tenant is gone: the links end when the
    /// tenant's value drops.
    fn unpin_slot(&self, slot: usize) -> Result<(), HostError> {
        match self.slot_pins(slot) {
            Some(dir) if dir.exists() => {
                std::fs::remove_dir_all(&dir).map_err(|e| pin_error(&dir, e))
            }
            _ => Ok(()),
        }
    }

    /// Loads `policy` with each hook program aimed at the stub of its `caller_index`-th caller
    /// in `slot`'s stub set `set`, without attaching; programs of hooks with no such caller are
    /// not loaded, and `None` means no program had one. `maps_of` is the first load, whose maps
    /// are reused so that all loads share the policy's globals.
    fn load_policy_instance(
        &self,
        policy: &[u8],
        hook_of: &dyn Fn(&str) -> Option<&'static HookInfo>,
        slot: usize,
        set: u32,
        caller_index: usize,
        maps_of: Option<&Object>,
    ) -> Result<Option<LoadedInstance>, HostError> {
        let mut open = open_policy(policy)?;
        let mut targets = Vec::new();
        let mut hooks = 0u32;
        for mut prog in open.progs_mut() {
            let section = prog.section().to_string_lossy().into_owned();
            let info = hook_of(&section)
                .ok_or_else(|| HostError::PolicyRejected(vec![format!("{section}: not a hook")]))?;
            let Some(caller) = callers_of(info).get(caller_index) else {
                prog.set_autoload(false);
                continue;
            };
            let target_fd = self.host_prog_fd(caller)?;
            hooks |= 1 << info.id;
            let hook = info.name.to_string();
            let stub = stub_name(slot, set, &hook);
            prog.set_attach_target(target_fd, Some(stub.clone()))
                .map_err(|e| HostError::PolicyAttach {
                    hook: hook.clone(),
                    message: e.to_string(),
                })?;
            targets.push((
                prog.name().to_string_lossy().into_owned(),
                hook,
                target_fd,
                stub,
            ));
        }
        if targets.is_empty() {
            return Ok(None);
        }
        if let Some(first) = maps_of {
            for mut map in open.maps_mut() {
                let shared = first
                    .maps()
                    .find(|m| m.name() == map.name())
                    .ok_or_else(|| {
                        map_error(
                            "finding a policy map to share",
                            map.name().to_string_lossy(),
                        )
                    })?;
                map.reuse_fd(shared.as_fd())
                    .map_err(|e| map_error("sharing a policy map between loads", e))?;
            }
        }
        let object = open.load().map_err(|e| {
            let reason = libbpf_reason(&e);
            let log = take_log();
            let verified = log.contains("BEGIN PROG LOAD LOG");
            // libbpf treats the object's BTF as optional and goes on when the kernel refuses
            // it; the programs then fail for the lack of it. The BTF is the cause.
            let btf_refused = reason.contains("BTF") && !reason.contains("BEGIN PROG LOAD LOG");
            if is_permission(&e) && !verified {
                HostError::Permission("loading the policy".into())
            } else if btf_refused {
                let consequence = verifier_summary(&log);
                HostError::PolicyPrepare {
                    message: if verified && !consequence.is_empty() {
                        format!("{reason}; then the kernel verifier: {consequence}")
                    } else {
                        reason
                    },
                    log,
                }
            } else if verified {
                HostError::PolicyVerifier {
                    message: {
                        let summary = verifier_summary(&log);
                        if summary.is_empty() { reason } else { summary }
                    },
                    log,
                }
            } else {
                HostError::PolicyPrepare {
                    message: reason,
                    log,
                }
            }
        })?;
        Ok(Some(LoadedInstance {
            object,
            targets,
            hooks,
        }))
    }

    /// Attaches the programs of a loaded instance onto their stubs.
    fn attach_instance(loaded: LoadedInstance) -> Result<PolicyInstance, HostError> {
        let LoadedInstance {
            object,
            targets,
            hooks,
        } = loaded;

        let mut links = Vec::new();
        for (prog_name, hook, target_fd, stub) in &targets {
            let prog = object
                .progs()
                .find(|p| p.name().to_string_lossy() == *prog_name)
                .ok_or_else(|| HostError::PolicyAttach {
                    hook: hook.clone(),
                    message: "program vanished after load".into(),
                })?;
            if prog.prog_type() != ProgramType::Ext {
                return Err(HostError::PolicyAttach {
                    hook: hook.clone(),
                    message: format!("program type {:?} is not freplace (EXT)", prog.prog_type()),
                });
            }
            let stub_c = CString::new(stub.as_str()).map_err(|e| HostError::PolicyAttach {
                hook: hook.clone(),
                message: e.to_string(),
            })?;
            // SAFETY: the program pointer is valid while `object` lives; libbpf copies the name.
            let raw = unsafe {
                libbpf_rs::libbpf_sys::bpf_program__attach_freplace(
                    prog.as_libbpf_object().as_ptr(),
                    *target_fd,
                    stub_c.as_ptr(),
                )
            };
            let Some(raw) = NonNull::new(raw) else {
                let os = std::io::Error::last_os_error();
                return Err(HostError::PolicyAttach {
                    hook: hook.clone(),
                    message: format!("{os}{}", {
                        let log = take_log();
                        if log.is_empty() {
                            String::new()
                        } else {
                            format!("\n{log}")
                        }
                    }),
                });
            };
            // SAFETY: `raw` is a link freshly returned by libbpf; Link takes ownership.
            links.push(unsafe { Link::from_ptr(raw) });
        }
        Ok(PolicyInstance {
            hooks,
            links,
            object: Some(object),
        })
    }

    /// Detaches a tenant: its tasks leave it (calling its `task_exit`) and go back to the
    /// default class; then the policy's programs are detached from the stubs.
    pub fn detach(&mut self, handle: TenantHandle) -> Result<(), HostError> {
        let tenant = match self.tenants.get(handle.slot) {
            Some(Some(t)) if t.handle == handle => self.tenants[handle.slot].take(),
            _ => return Err(HostError::UnknownTenant),
        };
        self.drain_and_free(handle.slot, SLOT_DRAINING)?;
        self.unpin_slot(handle.slot)?;
        drop(tenant);
        Ok(())
    }

    /// Frees the slot of a departing tenant. In `leaving_state` (DRAINING after a detach,
    /// EJECTED after an ejection) the policy is still attached but governs nothing: every
    /// member leaves at its next enqueue (within a tick if it runs) and calls `task_exit`.
    /// Once none is left, or after DRAIN_BOUND, the slot becomes FREE (keeping its level, so
    /// that queued tasks drain at it).
    fn drain_and_free(&mut self, slot: usize, leaving_state: u32) -> Result<(), HostError> {
        let mut raw = self.read_tenant_config(slot)?;
        raw.state = leaving_state;
        self.write_tenant_config(slot, &raw)?;
        self.bump_classification()?;
        let start = Instant::now();
        while self.read_tenant_status(slot)?.nr_tasks > 0 && start.elapsed() < DRAIN_BOUND {
            std::thread::sleep(Duration::from_millis(1));
        }
        raw.state = SLOT_FREE;
        self.write_tenant_config(slot, &raw)?;
        self.bump_classification()?;
        self.remove_hint_map(slot)
    }

    /// Gives `slot` a hint map of its own, all words 0, for the tenant about to be attached
    /// there: a runtime of an earlier tenant of the slot that still maps that tenant's map
    /// writes where the host no longer reads.
    fn install_hint_map(&self, slot: usize) -> Result<(), HostError> {
        let words = new_hint_map(&format!("hints_{slot}"))?;
        let fd = words.as_fd().as_raw_fd() as u32;
        self.map(HINT_MAPS)?
            .update(
                &(slot as u32).to_ne_bytes(),
                &fd.to_ne_bytes(),
                MapFlags::ANY,
            )
            .map_err(|e| map_error("installing a tenant's hint map", e))
    }

    /// Drops a freed slot's hint map from the host; it ends with the last mapping or fd of it.
    fn remove_hint_map(&self, slot: usize) -> Result<(), HostError> {
        match self.map(HINT_MAPS)?.delete(&(slot as u32).to_ne_bytes()) {
            Err(e) if e.kind() != libbpf_rs::ErrorKind::NotFound => {
                Err(map_error("removing a tenant's hint map", e))
            }
            _ => Ok(()),
        }
    }

    /// The hint map of the tenant of `slot`, as the kernel holds it now.
    fn hint_map_of(&self, slot: usize) -> Result<MapHandle, HostError> {
        let id = self
            .map(HINT_MAPS)?
            .lookup(&(slot as u32).to_ne_bytes(), MapFlags::ANY)
            .map_err(|e| map_error("finding a tenant's hint map", e))?
            .and_then(|bytes| Some(u32::from_ne_bytes(bytes.get(..4)?.try_into().ok()?)))
            .ok_or_else(|| {
                map_error(
                    "finding a tenant's hint map",
                    format!("slot {slot} has none"),
                )
            })?;
        MapHandle::from_map_id(id).map_err(|e| map_error("opening a tenant's hint map", e))
    }

    /// A read-write fd of `handle`'s hint map, for the tenant's runtimes to map (`mmap` of
    /// `MAX_TASKS * HINT_ENTRY_STRIDE` bytes, shared): entry `task_slot` (see
    /// [`Host::task_slot`]) holds that task's hint words. The fd reaches this tenant's words
    /// only, and none once the tenant is gone.
    pub fn hint_map(&self, handle: TenantHandle) -> Result<OwnedFd, HostError> {
        self.live_slot(handle)?;
        self.hint_map_of(handle.slot)?
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| map_error("sharing a tenant's hint map", e))
    }

    /// The tenant's notify program (`docs/mechanism.md`, "Notify"), as an fd that reaches
    /// this slot only, and the tenant's notify key, which it refuses a run without: what the
    /// broker hands out with the hint map.
    pub fn notify_program(&self, handle: TenantHandle) -> Result<(OwnedFd, u64), HostError> {
        let slot = self.live_slot(handle)?;
        let name = notify_prog_name(slot);
        let fd = self
            .progs
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| map_error("finding a tenant's notify program", &name))?
            .1
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| map_error("sharing a tenant's notify program", e))?;
        Ok((fd, self.read_tenant_config(slot)?.notify_key))
    }

    /// Runs `handle`'s notify program for `task_slot` as a runtime does (root, tests): its
    /// return value (0, or `-ESTALE`/`-EINVAL` as the program refuses).
    pub fn notify(&self, handle: TenantHandle, task_slot: u32) -> Result<i32, HostError> {
        let (fd, key) = self.notify_program(handle)?;
        run_notify(fd.as_fd(), task_slot, key)
    }

    /// The slot of `handle` while its tenant is attached.
    fn live_slot(&self, handle: TenantHandle) -> Result<usize, HostError> {
        match self.tenants.get(handle.slot) {
            Some(Some(t)) if t.handle == handle => Ok(handle.slot),
            _ => Err(HostError::UnknownTenant),
        }
    }

    /// A handle on the map of `handle`'s policy whose name ends with `suffix` (its globals:
    /// `.bss`, `.data`), which stays usable after the tenant is detached.
    pub fn policy_map(
        &self,
        handle: TenantHandle,
        suffix: &str,
    ) -> Result<libbpf_rs::MapHandle, HostError> {
        let tenant = match self.tenants.get(handle.slot) {
            Some(Some(t)) if t.handle == handle => t,
            _ => return Err(HostError::UnknownTenant),
        };
        let object = tenant
            .instances
            .first()
            .and_then(|instance| instance.object.as_ref())
            .ok_or_else(|| {
                map_error(
                    "finding a policy map",
                    "the tenant was adopted from pins, without its policy's object",
                )
            })?;
        let map = object
            .maps()
            .find(|m| m.name().to_string_lossy().ends_with(suffix))
            .ok_or_else(|| map_error("finding a policy map", suffix))?;
        libbpf_rs::MapHandle::try_from(&map).map_err(|e| map_error("sharing a policy map", e))
    }

    /// Tenants the host's watchdog ejected since the last call. Their policies are detached and
    /// their slots freed here.
    pub fn poll_ejections(&mut self) -> Result<Vec<Ejection>, HostError> {
        let mut ejections = Vec::new();
        for slot in 0..NR_SLOTS {
            let Some(tenant) = &self.tenants[slot] else {
                continue;
            };
            let status = self.read_tenant_status(slot)?;
            if status.ejected_gen != tenant.handle.generation || status.eject_reason == 0 {
                continue;
            }
            let reason = match status.eject_reason {
                EJECT_WATCHDOG => format!(
                    "watchdog: task {} waited {:.3} s to run, longer than the tenant's bound of {:.3} s",
                    status.eject_pid,
                    status.eject_waited_ns as f64 / 1e9,
                    tenant.config.watchdog.as_secs_f64()
                ),
                other => format!("reason code {other}"),
            };
            ejections.push(Ejection {
                handle: tenant.handle,
                policy: tenant.policy.clone(),
                reason,
                pid: status.eject_pid,
                waited: Duration::from_nanos(status.eject_waited_ns),
            });
            let tenant = self.tenants[slot].take();
            self.drain_and_free(slot, SLOT_EJECTED)?;
            self.unpin_slot(slot)?;
            drop(tenant);
        }
        Ok(ejections)
    }

    /// Handles of the attached tenants.
    pub fn tenants(&self) -> Vec<TenantHandle> {
        self.tenants.iter().flatten().map(|t| t.handle).collect()
    }

    /// Statistics per class and per tenant.
    pub fn stats(&self) -> Result<HostStats, HostError> {
        let map = self.map("class_stats")?;
        let mut classes = Vec::with_capacity(NR_CLASSES);
        for index in 0..NR_CLASSES {
            let per_cpu = map
                .lookup_percpu(&(index as u32).to_ne_bytes(), MapFlags::ANY)
                .map_err(|e| map_error("reading statistics", e))?
                .unwrap_or_default();
            let mut raw = ClassCounters::default();
            for cpu in &per_cpu {
                if let Some(value) = ClassCounters::from_bytes(cpu) {
                    raw.accumulate(&value);
                }
            }
            let name = if index == DEFAULT_CLASS {
                "default".to_string()
            } else {
                match &self.tenants[index] {
                    Some(t) => format!("{}[{}]", t.policy, index),
                    None => format!("slot {index}"),
                }
            };
            classes.push(ClassStats { name, raw });
        }
        let mut tenants = Vec::new();
        for tenant in self.tenants.iter().flatten() {
            let status = self.read_tenant_status(tenant.handle.slot)?;
            tenants.push(TenantInfo {
                handle: tenant.handle,
                policy: tenant.policy.clone(),
                cgroup: tenant.config.cgroup.clone(),
                level: tenant.config.level,
                weight: tenant.config.weight,
                nr_tasks: status.nr_tasks,
                nr_runnable: status.nr_runnable,
                default_calls: status.default_calls,
            });
        }
        Ok(HostStats { classes, tenants })
    }

    /// Set when the kernel stopped the scheduler (error, watchdog, sysrq).
    pub fn exit_info(&self) -> Option<ExitInfo> {
        let bytes = self
            .map("exit_record")
            .ok()?
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .ok()??;
        if bytes.len() < size_of::<ExitRecordRaw>() {
            return None;
        }
        let field = |at: usize, len: usize| &bytes[at..at + len];
        let kind = i32::from_ne_bytes(field(offset_of!(ExitRecordRaw, kind), 4).try_into().ok()?);
        if kind == 0 {
            return None;
        }
        let text = |raw: &[u8]| {
            let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
            String::from_utf8_lossy(&raw[..end]).into_owned()
        };
        Some(ExitInfo {
            kind,
            exit_code: i64::from_ne_bytes(
                field(offset_of!(ExitRecordRaw, exit_code), 8)
                    .try_into()
                    .ok()?,
            ),
            reason: text(field(offset_of!(ExitRecordRaw, reason), EXIT_REASON_LEN)),
            message: text(field(offset_of!(ExitRecordRaw, msg), EXIT_MSG_LEN)),
        })
    }

    /// Ok while the kernel runs the host; the exit reason once it stopped it.
    pub fn check_running(&self) -> Result<(), HostError> {
        match self.exit_info() {
            Some(exit) => Err(HostError::HostExited(exit.to_string())),
            None => Ok(()),
        }
    }

    /// The tenant slot and task slot of a task, if it belongs to a tenant.
    pub fn task_slot(&self, pid: u32) -> Result<Option<(usize, u32)>, HostError> {
        let bytes = self
            .map("task_lookup")?
            .lookup(&pid.to_ne_bytes(), MapFlags::ANY)
            .map_err(|e| map_error("looking up a task", e))?;
        Ok(bytes
            .and_then(|b| TaskWhereRaw::from_bytes(&b))
            .filter(|w| w.tenant >= 0 && (w.tenant as usize) < NR_SLOTS)
            .map(|w| (w.tenant as usize, w.task_slot)))
    }

    /// Posts the hint words of task `pid` (as its runtime would through the hint map).
    pub fn set_hints(&self, pid: u32, words: [u64; 8]) -> Result<(), HostError> {
        let (slot, task_slot) = self
            .task_slot(pid)?
            .ok_or_else(|| map_error("posting hints", format!("task {pid} is in no tenant")))?;
        self.write_hints(slot, task_slot, words)
    }

    /// Writes the hint words of task slot `task_slot` of the tenant on `slot`.
    pub fn write_hints(
        &self,
        slot: usize,
        task_slot: u32,
        words: [u64; 8],
    ) -> Result<(), HostError> {
        self.hint_map_of(slot)?
            .update(
                &(task_slot % MAX_TASKS).to_ne_bytes(),
                HintWordsRaw { words }.as_bytes(),
                MapFlags::ANY,
            )
            .map_err(|e| map_error("posting hints", e))
    }
}

/// Kernel run-time statistics of one BPF program (`kernel.bpf_stats_enabled=1` must be set
/// for the kernel to count; the times are wall clock, inflated under emulation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgramStats {
    pub name: String,
    pub run_count: u64,
    pub run_time_ns: u64,
}

fn program_stats_of(name: String, fd: i32) -> Option<ProgramStats> {
    // SAFETY: bpf_prog_info is plain data; the kernel fills at most `len` bytes of it.
    let mut info: libbpf_rs::libbpf_sys::bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libbpf_rs::libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: valid fd, pointer and length.
    let ret = unsafe { libbpf_rs::libbpf_sys::bpf_prog_get_info_by_fd(fd, &mut info, &mut len) };
    (ret == 0).then_some(ProgramStats {
        name,
        run_count: info.run_cnt,
        run_time_ns: info.run_time_ns,
    })
}

impl Host {
    /// Run counts and times of the host's struct_ops programs and of every attached policy
    /// program (a policy program's time is also inside its host caller's time).
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        let mut out: Vec<ProgramStats> = self
            .progs
            .iter()
            .filter_map(|(name, p)| program_stats_of(name.clone(), p.as_fd().as_raw_fd()))
            .collect();
        for tenant in self.tenants.iter().flatten() {
            for (load, instance) in tenant.instances.iter().enumerate() {
                // Only loaded programs have statistics (a later load holds a few of them); an
                // adopted tenant's objects stayed with the process that attached it.
                let Some(object) = &instance.object else {
                    continue;
                };
                for prog in object.progs().filter(|p| p.autoload()) {
                    let load = if load == 0 {
                        String::new()
                    } else {
                        format!(" (load {})", load + 1)
                    };
                    let name = format!(
                        "{}[{}]/{}{load}",
                        tenant.policy,
                        tenant.handle.slot,
                        prog.name().to_string_lossy()
                    );
                    out.extend(program_stats_of(name, prog.as_fd().as_raw_fd()));
                }
            }
        }
        out
    }
}

/// A tenant that a process adopting a pinned host expects on `slot`, as its own records say.
#[derive(Clone, Debug)]
pub struct ExpectedTenant {
    pub slot: usize,
    pub policy: String,
    pub config: TenantConfig,
}

/// The entries of the bpffs directory `dir`, by name, each opened by `open`.
fn open_pinned<T>(
    dir: &Path,
    open: impl Fn(PathBuf) -> libbpf_rs::Result<T>,
) -> Result<Vec<(String, T)>, HostError> {
    let entries = std::fs::read_dir(dir).map_err(|e| pin_error(dir, e))?;
    let mut opened = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| pin_error(dir, e))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let handle = open(path.clone()).map_err(|e| pin_error(&path, e))?;
        opened.push((name, handle));
    }
    opened.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(opened)
}

impl Host {
    /// Takes over the host that [`Host::load_pinned`] pinned under `pin_dir` (usually in a
    /// process that is gone), with its tenants, while it keeps scheduling. `expected` are the
    /// tenants the caller's records hold, and they must be exactly the kernel's: each on a slot
    /// that holds a tenant, bound to the same cgroup with the same level, weight and bounds,
    /// with its links pinned, and no other slot holding one. Every disagreement is named in
    /// the refusal, which changes nothing. The handles come back in the order of `expected`.
    pub fn adopt(
        pin_dir: &Path,
        expected: &[ExpectedTenant],
    ) -> Result<(Host, Vec<TenantHandle>), HostError> {
        let link_path = pin_dir.join(PIN_LINK);
        let mut link = Link::open(&link_path).map_err(|e| pin_error(&link_path, e))?;
        link.disconnect();
        let maps = open_pinned(&pin_dir.join(PIN_MAPS), MapHandle::from_pinned_path)?;
        let progs = open_pinned(&pin_dir.join(PIN_PROGS), ProgramHandle::from_pinned_path)?;
        let mut host = Host {
            tenants: (0..NR_SLOTS).map(|_| None).collect(),
            generations: [0; NR_SLOTS],
            host_config: HostConfigRaw::default(),
            struct_ops_link: Some(link),
            maps,
            progs,
            pins: Some(pin_dir.to_path_buf()),
        };
        host.check_running().map_err(|e| {
            HostError::Adopt(format!(
                "{e}; its pins in {} remain until `upschedd --unload`",
                pin_dir.display()
            ))
        })?;
        let bytes = host
            .map("host_config")?
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .map_err(|e| map_error("reading the host configuration", e))?
            .unwrap_or_default();
        host.host_config = HostConfigRaw::from_bytes(&bytes)
            .ok_or_else(|| map_error("reading the host configuration", "short value"))?;

        let mut disagreements = Vec::new();
        let mut stale_sets = Vec::new();
        let mut handles = Vec::with_capacity(expected.len());
        for slot in 0..NR_SLOTS {
            let raw = host.read_tenant_config(slot)?;
            let live_set = raw.stubs & 1;
            host.generations[slot] = raw.generation;
            // An ejected tenant's policy is still attached; poll_ejections frees it as usual.
            let held = matches!(raw.state, SLOT_ACTIVE | SLOT_EJECTED);
            // Only the links of the set the host calls are the tenant's: a replace that
            // stopped before its flip left its new links on the idle set, which is unpinned
            // below (it changed nothing, so the old policy stays).
            let (links, stale): (Vec<_>, Vec<_>) = match host.slot_pins(slot) {
                Some(dir) if dir.exists() => open_pinned(&dir, Link::open)?,
                _ => Vec::new(),
            }
            .into_iter()
            .partition(|(name, _)| !held || set_of_link_pin(name) == live_set);
            if !stale.is_empty() {
                stale_sets.push((slot, 1 - live_set));
            }
            let mut wanted = expected.iter().filter(|t| t.slot == slot);
            let (tenant, duplicate) = (wanted.next(), wanted.next());
            if duplicate.is_some() {
                disagreements.push(format!("slot {slot} is listed for two tenants"));
                continue;
            }
            let Some(tenant) = tenant else {
                if held {
                    disagreements.push(format!(
                        "slot {slot} holds a tenant (cgroup id {}, level {}, weight {}) that is not listed",
                        raw.cgroup_id, raw.level, raw.weight
                    ));
                } else if !links.is_empty() {
                    disagreements.push(format!(
                        "slot {slot} holds no tenant but has {} pinned link(s)",
                        links.len()
                    ));
                }
                continue;
            };
            let before = disagreements.len();
            host.compare_adopted(&raw, held, links.len(), tenant, &mut disagreements);
            if disagreements.len() > before {
                continue;
            }
            let handle = TenantHandle {
                slot,
                generation: raw.generation,
            };
            handles.push((tenant, handle));
            host.tenants[slot] = Some(Tenant {
                handle,
                policy: tenant.policy.clone(),
                config: tenant.config.clone(),
                instances: vec![PolicyInstance {
                    hooks: if live_set == 0 {
                        raw.hooks
                    } else {
                        raw.hooks_b
                    },
                    links: links.into_iter().map(|(_, link)| link).collect(),
                    object: None,
                }],
                set: live_set,
            });
        }
        for tenant in expected.iter().filter(|t| t.slot >= NR_SLOTS) {
            disagreements.push(format!(
                "tenant {} is listed on slot {}, past the host's {NR_SLOTS} slots",
                tenant.policy, tenant.slot
            ));
        }
        if !disagreements.is_empty() {
            // Nothing is detached: the links and the pins stay as they were.
            for tenant in &mut host.tenants {
                *tenant = None;
            }
            return Err(HostError::Adopt(disagreements.join("; ")));
        }
        for (slot, set) in stale_sets {
            host.unpin_set(slot, set)?;
        }
        let ordered = expected
            .iter()
            .filter_map(|want| {
                handles
                    .iter()
                    .find(|(t, _)| std::ptr::eq(*t, want))
                    .map(|(_, h)| *h)
            })
            .collect();
        Ok((host, ordered))
    }

    /// Adds to `disagreements` how slot `raw` of a pinned host differs from `tenant`.
    fn compare_adopted(
        &self,
        raw: &TenantConfigRaw,
        held: bool,
        links: usize,
        tenant: &ExpectedTenant,
        disagreements: &mut Vec<String>,
    ) {
        let slot = tenant.slot;
        let who = format!("tenant {} on slot {slot}", tenant.policy);
        if !held {
            disagreements.push(format!(
                "{who}: the slot holds no tenant (state {})",
                raw.state
            ));
            return;
        }
        if links == 0 {
            disagreements.push(format!("{who}: no pinned links"));
        }
        match cgroup_identity(&tenant.config.cgroup) {
            Ok((id, _)) if id == raw.cgroup_id => {}
            Ok((id, _)) => disagreements.push(format!(
                "{who}: cgroup {} has id {id}, the slot is bound to id {}",
                tenant.config.cgroup.display(),
                raw.cgroup_id
            )),
            Err(e) => disagreements.push(format!("{who}: {e}")),
        }
        let params = tenant.config.params();
        let pairs = [
            ("level", u64::from(params.level), u64::from(raw.level)),
            ("weight", u64::from(params.weight), u64::from(raw.weight)),
            ("slice_min_ns", params.slice_min_ns, raw.slice_min_ns),
            ("slice_max_ns", params.slice_max_ns, raw.slice_max_ns),
            (
                "slice_default_ns",
                params.slice_default_ns,
                raw.slice_dfl_ns,
            ),
            ("park_max_ns", params.park_max_ns, raw.park_max_ns),
            ("watchdog_ns", params.watchdog_ns, raw.watchdog_ns),
        ];
        for (field, listed, kernel) in pairs {
            if listed != kernel {
                disagreements.push(format!(
                    "{who}: {field} is {listed} in the records, {kernel} in the kernel"
                ));
            }
        }
    }
}

/// Whether a host is pinned under `pin_dir` (its struct_ops link is).
pub fn is_pinned(pin_dir: &Path) -> bool {
    pin_dir.join(PIN_LINK).exists()
}

/// Ends the host pinned under `pin_dir`: detaches the scheduler (sched_ext disabled, every
/// task back in the kernel's fair class; members still leave their tenants through the
/// policies, attached until then), waits for sched_ext to say so within `timeout`, and removes
/// every pin, the tenants' links with them. `Ok(false)` if nothing was pinned there.
pub fn unload_pinned(pin_dir: &Path, timeout: Duration) -> Result<bool, HostError> {
    if !pin_dir.exists() {
        return Ok(false);
    }
    let link_path = pin_dir.join(PIN_LINK);
    if link_path.exists() {
        let link = Link::open(&link_path).map_err(|e| pin_error(&link_path, e))?;
        // A scheduler the kernel already stopped cannot be detached again; it is disabled.
        let detached = link.detach();
        if let Err(e) = detached
            && sched_ext_state().as_deref() != Some("disabled")
        {
            return Err(pin_error(&link_path, e));
        }
        wait_for_sched_ext_state("disabled", timeout, || None).map_err(HostError::HostExited)?;
    }
    std::fs::remove_dir_all(pin_dir).map_err(|e| pin_error(pin_dir, e))?;
    Ok(true)
}

impl Drop for Host {
    fn drop(&mut self) {
        // A pinned host's links are pinned (and the scheduler's disconnected): dropping them
        // leaves it and its tenants running. Unpinned, the scheduler goes first: unloading it
        // calls ops.exit_task for every task, which calls
        // the task_exit of each member's policy while the policies are still attached.
        self.struct_ops_link = None;
        for tenant in &mut self.tenants {
            *tenant = None;
        }
    }
}

/// The cgroup2 id (inode number) and depth below the cgroup2 root of `path`.
pub fn cgroup_identity(path: &Path) -> Result<(u64, u32), HostError> {
    let err = |message: String| HostError::Cgroup {
        path: path.display().to_string(),
        message,
    };
    let canonical = path
        .canonicalize()
        .map_err(|e| err(format!("cannot resolve it: {e}")))?;
    let metadata = std::fs::metadata(&canonical).map_err(|e| err(e.to_string()))?;
    if !metadata.is_dir() || !canonical.join("cgroup.procs").exists() {
        return Err(err("not a cgroup2 directory (no cgroup.procs)".into()));
    }
    let mount = cgroup2_mount_of(&canonical)
        .ok_or_else(|| err("not below a cgroup2 mount (see /proc/self/mountinfo)".into()))?;
    let relative = canonical
        .strip_prefix(&mount)
        .map_err(|e| err(e.to_string()))?;
    let level = relative.components().count() as u32;
    Ok((metadata.ino(), level))
}

/// A new hint map, all words 0, of the exact shape of host.bpf.c's template for the maps in
/// `hint_maps` (which the kernel compares): `MAX_TASKS` entries of `HintWordsRaw`, mmapable.
/// The host's notify program of `slot`.
fn notify_prog_name(slot: usize) -> String {
    format!("upsched_notify_s{slot}")
}

/// A random, non-zero notify key for a new tenant: a former tenant's runtimes, which may keep
/// the slot's program fd, cannot guess the next one.
fn new_notify_key() -> Result<u64, HostError> {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| map_error("drawing a notify key", e))?;
    Ok(u64::from_ne_bytes(bytes).max(1))
}

/// Runs a notify program (`BPF_PROG_TEST_RUN`) with its argument; the program's return value.
pub fn run_notify(prog: BorrowedFd<'_>, task_slot: u32, key: u64) -> Result<i32, HostError> {
    let mut args = upsched_abi::mechanism::NotifyArgs {
        task_slot,
        pad: 0,
        key,
    };
    let mut opts = libbpf_sys::bpf_test_run_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _,
        ctx_in: (&raw mut args).cast(),
        ctx_size_in: std::mem::size_of_val(&args) as u32,
        ..Default::default()
    };
    // SAFETY: `opts` points at `args`, which outlives the call; the kernel reads
    // `ctx_size_in` bytes of it and writes only `opts`' out fields.
    let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(prog.as_raw_fd(), &mut opts) };
    if rc != 0 {
        return Err(map_error(
            "running a notify program",
            std::io::Error::from_raw_os_error(-rc),
        ));
    }
    Ok(opts.retval as i32)
}

pub fn new_hint_map(name: &str) -> Result<MapHandle, HostError> {
    let opts = libbpf_rs::libbpf_sys::bpf_map_create_opts {
        sz: size_of::<libbpf_rs::libbpf_sys::bpf_map_create_opts>()
            as libbpf_rs::libbpf_sys::size_t,
        map_flags: libbpf_rs::libbpf_sys::BPF_F_MMAPABLE,
        ..Default::default()
    };
    MapHandle::create(
        libbpf_rs::MapType::Array,
        Some(name),
        size_of::<u32>() as u32,
        size_of::<HintWordsRaw>() as u32,
        MAX_TASKS,
        &opts,
    )
    .map_err(|e| map_error("creating a tenant's hint map", e))
}

/// The mount point of the cgroup2 file system that holds `path` (the deepest such mount).
pub fn cgroup2_mount_of(path: &Path) -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo
        .lines()
        .filter_map(|line| {
            // "id parent major:minor root mountpoint options ... - fstype source superopts"
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            let mountpoint = left.split_whitespace().nth(4)?;
            (fstype == "cgroup2").then(|| PathBuf::from(mountpoint))
        })
        .filter(|mount| path.starts_with(mount))
        .max_by_key(|mount| mount.components().count())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_long_log_keeps_its_start_and_its_end() {
        let mut short = "BEGIN PROG LOAD LOG\nunreachable insn 4\n".to_string();
        let before = short.clone();
        super::bound_log(&mut short);
        assert_eq!(short, before);

        let line = "12: (15) if r3 == 0x7 goto pc+3 ; R3=scalar() \u{e9}\n";
        let mut long = format!("-- BEGIN PROG LOAD LOG --\n{}", line.repeat(100_000));
        long.push_str("The sequence of 8193 jumps is too complex.\n-- END PROG LOAD LOG --\n");
        let whole = long.len();
        super::bound_log(&mut long);
        assert!(long.len() <= super::LOG_MAX_BYTES + 64, "{}", long.len());
        assert!(long.starts_with("-- BEGIN PROG LOAD LOG --\n12: (15)"));
        assert!(long.ends_with("too complex.\n-- END PROG LOAD LOG --\n"));
        let left_out: usize = long
            .split("[... ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .expect("the line saying what was left out");
        let marker = format!("\n[... {left_out} bytes of the log left out ...]\n");
        assert_eq!(long.len() - marker.len() + left_out, whole);
    }

    use super::*;

    #[test]
    fn host_object_has_all_stubs_and_callers() {
        let object = upsched_policy::object::PolicyObject::parse(HOST_OBJECT);
        // The host is no policy; parse errors are expected. Look at the symbol names instead.
        drop(object);
        let text = String::from_utf8_lossy(HOST_OBJECT);
        for slot in 0..NR_SLOTS {
            for hook in upsched_abi::HOOKS {
                for set in 0..2 {
                    let stub = stub_name(slot, set, hook.name);
                    assert!(text.contains(&stub), "{stub} missing from the host object");
                }
            }
        }
        for caller in HOOK_CALLERS.iter().flat_map(|callers| *callers) {
            assert!(text.contains(caller), "{caller} missing");
        }
    }

    #[test]
    fn tenant_config_validation() {
        let good = TenantConfig::new("/sys/fs/cgroup/x");
        assert!(good.validate().is_ok());
        assert!(good.clone().level(NR_LEVELS).validate().is_err());
        assert!(good.clone().weight(0).validate().is_err());
        let mut long_park = good.clone();
        long_park.park_max = long_park.watchdog;
        assert!(long_park.validate().is_err());
        // The longest watchdog leaves room for a wait in the default class after an ejection.
        let mut longest = good.clone();
        longest.watchdog = Duration::from_nanos(upsched_abi::mechanism::MAX_WATCHDOG_NS);
        assert!(longest.validate().is_ok());
        let mut slow_watchdog = good;
        slow_watchdog.watchdog = longest.watchdog + Duration::from_millis(1);
        let refused = slow_watchdog.validate().unwrap_err().to_string();
        assert!(refused.contains("default class"), "{refused}");
        // The refusal is the mechanism's own (the simulator gives the same).
        let mechanism_refusal = slow_watchdog.params().validate().unwrap_err().message;
        assert!(refused.ends_with(&mechanism_refusal), "{refused}");
        // The default slice outside the slice bounds is refused, not clamped.
        let mut fast = TenantConfig::new("/sys/fs/cgroup/x");
        fast.slice_default = Duration::from_millis(30);
        let refused = fast.validate().unwrap_err().to_string();
        assert!(refused.contains("slice_default"), "{refused}");
    }

    #[test]
    fn a_host_config_outside_its_bounds_is_refused_before_anything_loads() {
        let config = HostConfig {
            default_slice_floor: Duration::from_millis(30),
            ..HostConfig::default()
        };
        match Host::load(&config) {
            Err(HostError::BadHostConfig(message)) => {
                assert!(message.contains("default_slice_floor"), "{message}")
            }
            Err(other) => panic!("refused for another reason: {other}"),
            Ok(_) => panic!("loaded with a slice floor above the slice"),
        }
        let config = HostConfig {
            timer_period: Duration::ZERO,
            ..HostConfig::default()
        };
        assert!(matches!(
            Host::load(&config),
            Err(HostError::BadHostConfig(_))
        ));
    }

    #[test]
    fn verifier_summary_picks_the_reason() {
        let log = "libbpf: prog 'x': BPF program load failed: Permission denied\n\
                   libbpf: prog 'x': -- BEGIN PROG LOAD LOG --\n\
                   0: R1=ctx() R10=fp0\n\
                   0: (7b) *(u64 *)(r1 +48) = r2\n\
                   R1 invalid mem access 'mem_or_null'\n\
                   processed 2 insns (limit 1000000)\n\
                   -- END PROG LOAD LOG --\n";
        assert_eq!(verifier_summary(log), "R1 invalid mem access 'mem_or_null'");
        assert_eq!(verifier_summary("just one line\n"), "just one line");
    }

    #[test]
    fn cgroup_identity_refuses_non_cgroups() {
        assert!(cgroup_identity(Path::new("/nonexistent/upsched")).is_err());
        assert!(cgroup_identity(Path::new("/tmp")).is_err());
    }
}
