// SPDX-License-Identifier: GPL-2.0-only
//! The platform process, which routes every request from the arrivals to the first function,
//! from each function's outbox to the next one's inbox, and records its completion; and the
//! open-loop arrival process.
//!
//! The platform holds the schedstat files of every function thread: a request it routes into
//! an idle function ends that function's idle period, and it attributes the CPU of the
//! function's threads then (the worker attributes it when the last request leaves). With hints
//! it sets the pending word of the receiving function's runtime threads to the inbox's
//! length; with `--hints platform` it also keeps them SLEEPY on their inbox, except a thread
//! that took a request (the runtime API that hands out invocations knows which thread fetched
//! one: here each take rings the platform) until its function is idle again.

use std::sync::atomic::Ordering;
use std::time::Duration;

use upsched_hints::ThreadHints;
use upsched_sim::rng::SimRng;

use crate::function::{Schedstat, open_map};
use crate::shared::{ChainState, FunctionState, STAGES, Shared, now_ns};
use crate::{FaasError, HintsMode, Params, inbox_event, post_pending, post_sleepy};

/// Raises the soft limit of open files to the hard one: the platform holds a file per thread.
fn raise_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid rlimit to fill, then to set.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// What the platform keeps per function.
struct Route<'m> {
    cpu: Schedstat,
    /// The runtime threads' hint words (with hints).
    pollers: Vec<ThreadHints<'m>>,
    /// Runtime threads that took a request while the function was busy (bit `i`: poller
    /// `i`, thread `i + 1`): they hold an invocation, so the platform does not call them
    /// sleepy until the function is idle again.
    busy: u32,
}

pub fn route(shared: &Shared, params: &Params) -> Result<(), FaasError> {
    raise_file_limit();
    let chains = &shared.chains[..params.chains as usize];
    let map = match (&params.tenant, params.hints) {
        (Some(tenant), HintsMode::Runtime | HintsMode::Platform) => Some(open_map(tenant)?),
        _ => None,
    };
    let mut routes = Vec::new();
    for chain in chains {
        for function in &chain.functions {
            let threads = &function.threads[..params.threads()];
            let tids = threads.iter().map(|t| t.tid.load(Ordering::Relaxed));
            let cpu = Schedstat::open(function.pid.load(Ordering::Relaxed), tids)?;
            let pollers = match &map {
                Some(map) => threads[1..]
                    .iter()
                    .map(|t| map.entry(t.task_slot.load(Ordering::Relaxed)))
                    .collect::<Result<_, _>>()
                    .map_err(|e| FaasError::Setup(format!("a runtime thread's hints: {e}")))?,
                None => Vec::new(),
            };
            routes.push(Route {
                cpu,
                pollers,
                busy: 0,
            });
        }
    }
    if params.hints == HintsMode::Platform {
        for (i, route) in routes.iter().enumerate() {
            for poller in &route.pollers {
                post_sleepy(poller, inbox_event(i / STAGES, i % STAGES));
            }
        }
    }
    let now = now_ns();
    for (i, route) in routes.iter_mut().enumerate() {
        chains[i / STAGES].functions[i % STAGES].start_measuring(
            params.threads(),
            &mut route.cpu,
            now,
        );
    }
    shared.measuring_since_ns.store(now, Ordering::Release);
    loop {
        let rung = shared.bell.count();
        let stopping = shared.stop.load(Ordering::Acquire) != 0;
        let mut moved = false;
        for (c, chain) in chains.iter().enumerate() {
            while let Some((request, _)) = chain.arrivals.take() {
                deliver(
                    params,
                    &chain.functions[0],
                    &mut routes[c * STAGES],
                    request,
                );
                moved = true;
            }
            for k in 0..STAGES {
                while let Some((request, _)) = chain.functions[k].outbox.take() {
                    if k + 1 < STAGES {
                        let route = &mut routes[c * STAGES + k + 1];
                        deliver(params, &chain.functions[k + 1], route, request);
                    } else {
                        complete(chain, request);
                    }
                    moved = true;
                }
            }
        }
        for (i, route) in routes.iter_mut().enumerate() {
            let function = &chains[i / STAGES].functions[i % STAGES];
            let taken = function.taken_by.swap(0, Ordering::AcqRel) >> 1;
            if params.hints == HintsMode::Platform {
                tell_platform_hints(function, route, taken, inbox_event(i / STAGES, i % STAGES));
            }
        }
        if stopping {
            let now = now_ns();
            for (i, route) in routes.iter_mut().enumerate() {
                let function: &FunctionState = &chains[i / STAGES].functions[i % STAGES];
                function.finish(params.threads(), &mut route.cpu, now);
            }
            shared.finished_ns.store(now_ns(), Ordering::Release);
            return Ok(());
        }
        if !moved {
            shared.bell.wait(rung, Duration::from_millis(100));
        }
    }
}

fn deliver(params: &Params, function: &FunctionState, route: &mut Route<'_>, request: u32) {
    let now = now_ns();
    function.enter(params.threads(), &mut route.cpu, now);
    function.inbox.push(request, now);
    match params.hints {
        HintsMode::None => {}
        // `busy` stays empty with runtime hints: every poller gets the inbox's length.
        HintsMode::Runtime | HintsMode::Platform => post_queued(function, route),
    }
}

/// Platform hints: every runtime thread is SLEEPY on the inbox unless it holds an invocation
/// (it took a request while the function was busy), and its pending word is what waits in
/// the inbox; when the function is idle, all are SLEEPY with nothing pending.
fn tell_platform_hints(function: &FunctionState, route: &mut Route<'_>, taken: u32, event: u64) {
    for (i, poller) in route.pollers.iter().enumerate() {
        if taken & (1 << i) != 0 {
            poller.clear();
        }
    }
    route.busy |= taken;
    if function.in_stage.load(Ordering::Acquire) == 0 && route.busy != 0 {
        for poller in &route.pollers {
            post_pending(poller, 0);
            post_sleepy(poller, event);
        }
        route.busy = 0;
    } else if taken != 0 {
        post_queued(function, route);
    }
}

/// The pending word of the runtime threads that hold no invocation: the inbox's length.
fn post_queued(function: &FunctionState, route: &Route<'_>) {
    let queued = u64::from(function.inbox.len());
    for (i, poller) in route.pollers.iter().enumerate() {
        if route.busy & (1 << i) == 0 {
            post_pending(poller, queued);
        }
    }
}

fn complete(chain: &ChainState, request: u32) {
    if let Some(done) = chain.done_ns.get(request as usize) {
        done.store(now_ns(), Ordering::Release);
        chain.completed.fetch_add(1, Ordering::AcqRel);
    }
}

/// The arrival process: each chain's requests at the times of a Poisson process of rate
/// `rate` for `seconds`, recorded at their scheduled time (open loop: a late arrival process
/// is part of the latency).
pub fn arrive(shared: &Shared, params: &Params) -> Result<(), FaasError> {
    let chains = &shared.chains[..params.chains as usize];
    let mean_ns = 1e9 / params.rate;
    let mut rngs: Vec<SimRng> = (0..chains.len())
        .map(|c| SimRng::stream(params.seed, (1 << 32) + c as u64))
        .collect();
    let start = now_ns();
    let end = start + (params.seconds * 1e9) as u64;
    let mut next: Vec<u64> = rngs
        .iter_mut()
        .map(|rng| start + rng.exponential(mean_ns) as u64)
        .collect();
    while let Some((c, &at)) = next.iter().enumerate().min_by_key(|&(_, t)| *t) {
        if at >= end {
            break;
        }
        let now = now_ns();
        if at > now {
            std::thread::sleep(Duration::from_nanos(at - now));
        }
        let chain = &chains[c];
        let request = chain.arrived.load(Ordering::Relaxed);
        match chain.arrival_ns.get(request as usize) {
            Some(slot) => {
                slot.store(at, Ordering::Relaxed);
                chain.arrived.store(request + 1, Ordering::Release);
                chain.arrivals.push(request, now_ns());
                shared.bell.ring();
            }
            None => {
                shared.arrivals_capped.fetch_add(1, Ordering::Relaxed);
            }
        }
        next[c] = at + rngs[c].exponential(mean_ns) as u64;
    }
    shared.arrivals_done_ns.store(now_ns(), Ordering::Release);
    Ok(())
}
