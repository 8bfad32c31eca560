//! Per-call cost of each example policy's `enqueue` through the engine (context copied in, the
//! interpreter runs the verified program, outputs copied back), and the cost of loading (check
//! and verify) each policy.
//!
//! `cargo bench -p upsched-policy --bench engine`; the last lines print ns per call.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use upsched_policy::engine::sample_ctx;
use upsched_policy::{LoadedPolicy, NoKfuncs};

fn enqueue_ctx(step: u64) -> upsched_abi::UpschedCtx {
    let mut ctx = sample_ctx(upsched_abi::hook("enqueue").unwrap());
    ctx.task_slot = (step % 64) as u32;
    ctx.runnable_ns = step % 1000;
    ctx.flags = (step % 2) as u32;
    ctx
}

fn bench_enqueue(c: &mut Criterion) {
    let mut group = c.benchmark_group("enqueue");
    for name in upsched_policies::names() {
        let policy = LoadedPolicy::load(upsched_policies::policy(name).unwrap()).unwrap();
        let mut instance = policy.instantiate();
        let mut step = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                step += 1;
                let mut ctx = enqueue_ctx(step);
                instance
                    .call("enqueue", black_box(&mut ctx), &mut NoKfuncs)
                    .unwrap();
                black_box(ctx.key)
            })
        });
    }
    group.finish();
}

fn bench_load(c: &mut Criterion) {
    let mut group = c.benchmark_group("load");
    for name in upsched_policies::names() {
        let bytes = upsched_policies::policy(name).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| LoadedPolicy::load(black_box(bytes)).unwrap())
        });
    }
    group.finish();
}

/// A plain summary that is easy to paste into docs: ns per enqueue call, per policy.
fn summary(_: &mut Criterion) {
    const CALLS: u64 = 200_000;
    for name in upsched_policies::names() {
        let policy = LoadedPolicy::load(upsched_policies::policy(name).unwrap()).unwrap();
        let mut instance = policy.instantiate();
        let start = Instant::now();
        for step in 0..CALLS {
            let mut ctx = enqueue_ctx(step);
            instance.call("enqueue", &mut ctx, &mut NoKfuncs).unwrap();
            black_box(ctx.key);
        }
        let ns = start.elapsed().as_nanos() as f64 / CALLS as f64;
        println!("summary: {name:<5} enqueue {ns:6.1} ns/call (interpreter)");
    }
}

criterion_group!(benches, bench_enqueue, bench_load, summary);
criterion_main!(benches);
