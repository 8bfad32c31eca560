// SPDX-License-Identifier: GPL-2.0-only
//! One function's process: its worker (the main thread) and its runtime threads.
//!
//! A runtime thread polls the inbox for up to the spin budget of its own CPU time, then blocks
//! on the inbox's futex; when it takes a request it spends the hand-over's CPU and passes the
//! request to the worker. The worker runs a CPU burst, sleeps for the I/O, runs the second
//! burst and pushes the request into its outbox for the platform. With `--hints runtime` the
//! runtime threads post their own hints (SLEEPY with the inbox as event when the inbox is
//! empty; cleared when they take a request, and every poller's pending word set to what is
//! still queued).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::thread::JoinHandleExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use upsched_hints::HintMap;
use upsched_sim::faas::FUNCTIONS;
use upsched_sim::rng::SimRng;
use upsched_workload::{burn_cpu, cpu_time};

use crate::shared::{CpuReader, FunctionState, NO_SLOT, Shared, now_ns};
use crate::{FaasError, HintsMode, Params, inbox_event, post_own_sleepy, post_pending};

/// Open schedstat files of a set of threads (another process's: the platform's readings); a
/// thread that is gone reads as `None`.
pub struct Schedstat {
    files: Vec<File>,
}

impl Schedstat {
    /// The files of `tids` of process `pid`.
    pub fn open(pid: u32, tids: impl IntoIterator<Item = u32>) -> Result<Schedstat, FaasError> {
        let files = tids
            .into_iter()
            .map(|tid| {
                let path = format!("/proc/{pid}/task/{tid}/schedstat");
                File::open(&path).map_err(|e| FaasError::Setup(format!("{path}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Schedstat { files })
    }
}

impl CpuReader for Schedstat {
    fn cpu_ns(&mut self, index: usize) -> Option<u64> {
        let file = self.files.get(index)?;
        let mut buf = [0u8; 96];
        let n = file.read_at(&mut buf, 0).ok()?;
        // "RUN_NS WAIT_NS TIMESLICES": the first field is the CPU time the thread ran.
        std::str::from_utf8(&buf[..n])
            .ok()?
            .split_ascii_whitespace()
            .next()?
            .parse()
            .ok()
    }
}

fn gettid() -> u32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::gettid() as u32 }
}

/// Asks the daemon through `ask`, again while it refuses: a thread is a member of the
/// tenant only from its first scheduling in the tenant's cgroup (under emulation that can take
/// a while), and the daemon serves 16 connections per user at once while every process and
/// runtime thread of a run asks at its start. Retried for up to 10 s.
pub fn ask_daemon<T>(
    what: &str,
    mut ask: impl FnMut() -> Result<T, upsched_hints::HintError>,
) -> Result<T, FaasError> {
    let mut last = String::new();
    for _ in 0..400 {
        match ask() {
            Ok(answer) => return Ok(answer),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Err(FaasError::Setup(format!("{what}: {last}")))
}

/// The thread's task slot in the tenant.
fn resolve_slot(tenant: &str, tid: u32) -> Result<u32, FaasError> {
    let socket = upsched_broker::daemon::default_socket();
    let what = format!("thread {tid} got no task slot in tenant {tenant:?}");
    ask_daemon(&what, || {
        upsched_hints::task_slot(&socket, tenant, tid as i32).map(|slot| slot.task_slot)
    })
}

/// The tenant's hint map, mapped.
pub fn open_map(tenant: &str) -> Result<HintMap, FaasError> {
    ask_daemon(&format!("the hint map of tenant {tenant:?}"), || {
        HintMap::open(tenant)
    })
}

pub fn run(
    shared: &'static Shared,
    params: &Params,
    chain: usize,
    stage: usize,
) -> Result<(), FaasError> {
    let function = &shared.chains[chain].functions[stage];
    function.pid.store(std::process::id(), Ordering::Relaxed);
    let tenant = params
        .tenant
        .clone()
        .filter(|_| params.hints != HintsMode::None);
    let map = match (&tenant, params.hints) {
        (Some(tenant), HintsMode::Runtime) => Some(Arc::new(open_map(tenant)?)),
        _ => None,
    };
    let (to_worker, requests) = mpsc::channel::<u32>();
    // SAFETY: pthread_self has no preconditions.
    let mut pthreads = vec![unsafe { libc::pthread_self() }];
    for index in 1..params.threads() {
        let to_worker = to_worker.clone();
        let map = map.clone();
        let tenant = tenant.clone();
        let params = params.clone();
        let handle = std::thread::Builder::new()
            .name(format!("runtime-{index}"))
            .spawn(move || {
                if let Err(e) = poll(
                    shared, function, &params, chain, stage, index, tenant, map, to_worker,
                ) {
                    shared.fail(&format!(
                        "runtime thread of c{chain:02}/{}: {e}",
                        FUNCTIONS[stage].name
                    ));
                }
            })
            .map_err(|e| FaasError::Setup(format!("starting a runtime thread: {e}")))?;
        // The threads run until the process is killed: their handles are kept for their
        // CPU clocks only.
        pthreads.push(handle.as_pthread_t());
    }
    drop(to_worker);
    publish(function, 0, gettid(), None)?;
    wait_for_threads(function, params);
    shared.functions_ready.fetch_add(1, Ordering::AcqRel);
    let cpu = ThreadClocks::of(&pthreads)?;
    work(shared, function, params, chain, stage, requests, cpu)
}

/// The CPU clocks of this process's threads: the kernel's `sum_exec_runtime` of each, brought
/// up to date at the read (schedstat shows a running thread's as of its last tick or switch).
pub struct ThreadClocks {
    clocks: Vec<libc::clockid_t>,
}

impl ThreadClocks {
    fn of(threads: &[libc::pthread_t]) -> Result<ThreadClocks, FaasError> {
        let clocks = threads
            .iter()
            .map(|&thread| {
                let mut clock: libc::clockid_t = 0;
                // SAFETY: a live thread of this process (none exits) and a clock to fill.
                match unsafe { libc::pthread_getcpuclockid(thread, &mut clock) } {
                    0 => Ok(clock),
                    e => Err(FaasError::Setup(format!(
                        "a thread's CPU clock: {}",
                        std::io::Error::from_raw_os_error(e)
                    ))),
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(ThreadClocks { clocks })
    }
}

impl CpuReader for ThreadClocks {
    fn cpu_ns(&mut self, index: usize) -> Option<u64> {
        Some(cpu_time(*self.clocks.get(index)?).as_nanos() as u64)
    }
}

/// Publishes thread `index`'s tid (and its task slot, resolved if `tenant` is given).
fn publish(
    function: &FunctionState,
    index: usize,
    tid: u32,
    tenant: Option<&str>,
) -> Result<(), FaasError> {
    let account = &function.threads[index];
    account.tid.store(tid, Ordering::Relaxed);
    let slot = tenant.map(|t| resolve_slot(t, tid)).transpose()?;
    account
        .task_slot
        .store(slot.unwrap_or(NO_SLOT), Ordering::Relaxed);
    function.threads_ready.fetch_add(1, Ordering::AcqRel);
    Ok(())
}

fn wait_for_threads(function: &FunctionState, params: &Params) {
    while (function.threads_ready.load(Ordering::Acquire) as usize) < params.threads() {
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn work(
    shared: &Shared,
    function: &FunctionState,
    params: &Params,
    chain: usize,
    stage: usize,
    requests: mpsc::Receiver<u32>,
    mut cpu: ThreadClocks,
) -> Result<(), FaasError> {
    let spec = &FUNCTIONS[stage];
    let (burst, io) = (spec.burst(params.cpu_scale), spec.io_wait(params.io_scale));
    let mut rng = SimRng::stream(params.seed, (1 + chain * crate::STAGES + stage) as u64);
    while let Ok(request) = requests.recv() {
        burn_cpu(Duration::from_nanos(burst.sample(&mut rng)));
        std::thread::sleep(Duration::from_nanos(io.sample(&mut rng)));
        burn_cpu(Duration::from_nanos(burst.sample(&mut rng)));
        function.outbox.push(request, now_ns());
        function.leave(params.threads(), &mut cpu, now_ns());
        shared.bell.ring();
    }
    Err(FaasError::Failed("every runtime thread ended".into()))
}

/// How many inbox checks a poller makes between two reads of its CPU clock (a system call).
const CHECKS_PER_CLOCK_READ: u32 = 16;

#[allow(clippy::too_many_arguments)] // one thread's whole context, passed once
fn poll(
    shared: &Shared,
    function: &FunctionState,
    params: &Params,
    chain: usize,
    stage: usize,
    index: usize,
    tenant: Option<String>,
    map: Option<Arc<HintMap>>,
    to_worker: mpsc::Sender<u32>,
) -> Result<(), FaasError> {
    publish(function, index, gettid(), tenant.as_deref())?;
    wait_for_threads(function, params);
    let entry = |i: usize| {
        let map = map.as_ref()?;
        map.entry(function.threads[i].task_slot.load(Ordering::Relaxed))
            .ok()
    };
    let me = entry(index);
    let pollers: Vec<_> = (1..params.threads()).filter_map(entry).collect();
    let event = inbox_event(chain, stage);
    let account = &function.threads[index];
    let spin = Duration::from_nanos(params.spin_ns);
    let thread_cpu = || cpu_time(libc::CLOCK_THREAD_CPUTIME_ID);
    // The runtime starts cold: it waits for its first request before it polls. (A poller
    // that never sleeps stays runnable from its start, and the park bound counts from then.)
    while function.inbox.is_empty() {
        function.inbox.wait(Duration::from_secs(1));
    }
    loop {
        let start = thread_cpu();
        if let Some(me) = &me
            && function.inbox.is_empty()
        {
            post_own_sleepy(me, event);
        }
        let mut checks = 0u32;
        let taken = loop {
            if let Some(taken) = function.inbox.take() {
                break Some(taken);
            }
            checks += 1;
            if checks % CHECKS_PER_CLOCK_READ == 0 && thread_cpu() - start >= spin {
                break None;
            }
            std::hint::spin_loop();
        };
        let polled = thread_cpu().saturating_sub(start);
        account
            .poll_cpu_ns
            .fetch_add(polled.as_nanos() as u64, Ordering::Relaxed);
        let Some((request, pushed_ns)) = taken else {
            // The budget is spent: block until the platform pushes a request.
            function.inbox.wait(Duration::from_secs(1));
            continue;
        };
        function.picked_up(now_ns().saturating_sub(pushed_ns));
        function.taken_by.fetch_or(1 << index, Ordering::AcqRel);
        shared.bell.ring();
        if let Some(me) = &me {
            me.clear();
            let queued = u64::from(function.inbox.len());
            for poller in &pollers {
                post_pending(poller, queued);
            }
        }
        burn_cpu(Duration::from_nanos(params.handoff_ns));
        if to_worker.send(request).is_err() {
            return Err(FaasError::Failed("the worker ended".into()));
        }
    }
}
