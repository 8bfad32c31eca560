//! Per-call cost of each example policy's `enqueue` through the engine (context copied in, the
//! verified program runs on the JIT or the interpreter, outputs copied back), and the cost of
//! loading (check, verify and, for the JIT, compile) each policy.
//!
//! `cargo bench -p upsched-policy --bench engine`; the last lines print ns per call on both
//! engines side by side (best of several rounds, in CPU time of the measuring thread, so that
//! time the thread spends descheduled on a busy machine does not count).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use upsched_policy::engine::sample_ctx;
use upsched_policy::{EngineOptions, ExecMode, LoadedPolicy, NoKfuncs, PolicyInstance};

const MODES: [(ExecMode, &str); 2] = [(ExecMode::Jit, "jit"), (ExecMode::Interpreter, "interp")];

fn enqueue_ctx(step: u64) -> upsched_abi::UpschedCtx {
    let mut ctx = sample_ctx(upsched_abi::hook("enqueue").unwrap());
    ctx.task_slot = (step % 64) as u32;
    ctx.runnable_ns = step % 1000;
    ctx.flags = (step % 2) as u32;
    ctx
}

fn load(name: &str, mode: ExecMode) -> LoadedPolicy {
    let options = EngineOptions {
        mode,
        ..EngineOptions::default()
    };
    LoadedPolicy::load_with_options(upsched_policies::policy(name).unwrap(), &options).unwrap()
}

/// One enqueue call as an embedder makes it: the context filled, the hook found by name (a scan
/// of the seven ABI hooks), the call.
fn enqueue(instance: &mut PolicyInstance, step: u64) -> u64 {
    let hook = upsched_abi::hook("enqueue").unwrap();
    let mut ctx = enqueue_ctx(step);
    instance
        .call_hook(hook, black_box(&mut ctx), &mut NoKfuncs)
        .unwrap();
    ctx.key
}

fn bench_enqueue(c: &mut Criterion) {
    let mut group = c.benchmark_group("enqueue");
    for name in upsched_policies::names() {
        for (mode, mode_name) in MODES {
            let mut instance = load(name, mode).instantiate();
            let mut step = 0u64;
            group.bench_function(format!("{name}/{mode_name}"), |b| {
                b.iter(|| {
                    step += 1;
                    black_box(enqueue(&mut instance, step))
                })
            });
        }
    }
    group.finish();
}

fn bench_load(c: &mut Criterion) {
    let mut group = c.benchmark_group("load");
    for name in upsched_policies::names() {
        for (mode, mode_name) in MODES {
            group.bench_function(format!("{name}/{mode_name}"), |b| {
                b.iter(|| load(black_box(name), mode))
            });
        }
    }
    group.finish();
}

/// CPU time the calling thread has used so far.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the duration of the call.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(status, 0, "CLOCK_THREAD_CPUTIME_ID is unavailable");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// ns of thread CPU time per enqueue call: best of several rounds of `CALLS` calls.
fn ns_per_call(instance: &mut PolicyInstance) -> f64 {
    const CALLS: u64 = 200_000;
    const ROUNDS: usize = 7;
    (0..ROUNDS)
        .map(|_| {
            let start = thread_cpu_time();
            for step in 0..CALLS {
                black_box(enqueue(instance, step));
            }
            (thread_cpu_time() - start).as_nanos() as f64 / CALLS as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// A plain summary that is easy to paste into docs: ns per enqueue call, per policy and engine.
fn summary(_: &mut Criterion) {
    for name in upsched_policies::names() {
        let jit = ns_per_call(&mut load(name, ExecMode::Jit).instantiate());
        let interp = ns_per_call(&mut load(name, ExecMode::Interpreter).instantiate());
        println!(
            "summary: {name:<5} enqueue jit {jit:6.1} ns/call, interpreter {interp:6.1} ns/call \
             ({:.1}x)",
            interp / jit
        );
    }
}

criterion_group!(benches, bench_enqueue, bench_load, summary);
criterion_main!(benches);
