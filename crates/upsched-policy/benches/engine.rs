//! Per-call cost of each example policy's `enqueue` through the engine (context copied in, the
//! verified program runs on the JIT or the interpreter, outputs copied back), and the cost of
//! loading (check, verify and, for the JIT, compile) each policy.
//!
//! `cargo bench -p upsched-policy --bench engine`; the last lines print ns per call on both
//! engines side by side (best of several rounds, in CPU time of the measuring thread, so that
//! time the thread spends descheduled on a busy machine does not count), then the cost of
//! loading one hook against its size, 1k to 1M instructions: what a load does now (the
//! optimising JIT up to `JIT_OPTIMIZE_MAX_INSNS_PER_HOOK`, the cheap JIT up to
//! `JIT_MAX_INSNS_PER_HOOK`, the interpreter above) next to optimising every size (before).
//! `cargo bench -p upsched-policy --bench engine -- load_scaling` skips criterion's groups and
//! prints only the summaries.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use upsched_ebpf::insn::*;
use upsched_ebpf::verifier::{DEFAULT_MAX_EXPLORED, verify_insns};
use upsched_ebpf::{ContextSpec, Environment};
use upsched_jit::JitProgram;
use upsched_policy::engine::{
    JIT_MAX_INSNS_PER_HOOK, JIT_OPTIMIZE_MAX_INSNS_PER_HOOK, native_code, sample_ctx,
};
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

/// Stack slots (8 bytes each, below r10) the generated code uses.
const STACK_SLOTS: i16 = 16;

/// Registers a straight-line program keeps busy; r1 (the context) and r10 are left alone.
const WORK_REGISTERS: [u8; 9] = [0, 2, 3, 4, 5, 6, 7, 8, 9];

/// `len` instructions of straight-line code in one basic block, the shape that costs Cranelift
/// most per instruction: ALU on registers, stack spills and reloads, and context loads (each a
/// bounds check in native code), ending in `exit`.
fn straight_line(len: usize) -> Vec<Insn> {
    let mut insns: Vec<Insn> = WORK_REGISTERS
        .iter()
        .map(|&reg| Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, reg, 0, 0, i32::from(reg)))
        .collect();
    // Every stack slot the loop reads or writes is initialised first, as the verifier demands.
    insns.extend(
        (1..=STACK_SLOTS).map(|slot| Insn::new(BPF_STX | BPF_MEM | BPF_DW, 10, 0, -8 * slot, 0)),
    );
    for i in 0..len.saturating_sub(insns.len() + 1) {
        let dst = WORK_REGISTERS[i % 9];
        let src = WORK_REGISTERS[(i * 7 + 3) % 9];
        let slot = -8 * (1 + (i % STACK_SLOTS as usize) as i16);
        insns.push(match i % 5 {
            0 => Insn::new(BPF_ALU64 | BPF_ADD | BPF_K, dst, 0, 0, i as i32),
            1 => Insn::new(BPF_ALU64 | BPF_XOR | BPF_X, dst, src, 0, 0),
            2 => Insn::new(BPF_STX | BPF_MEM | BPF_DW, 10, dst, slot, 0),
            3 => Insn::new(BPF_LDX | BPF_MEM | BPF_DW, dst, 10, -8, 0),
            _ => Insn::new(BPF_LDX | BPF_MEM | BPF_W, dst, 1, (i % 16) as i16 * 4, 0),
        });
    }
    insns.push(Insn::new(EXIT, 0, 0, 0, 0));
    insns
}

/// Thread CPU seconds of one hook load as the engine does it: structural checks and the
/// verifier, then native code in `Jit` mode (by size), or, with `compile_all`, the optimising
/// JIT at any size as before. Also whether it runs native code.
fn load_hook(insns: Vec<Insn>, compile_all: bool) -> (f64, &'static str) {
    let environment = Environment {
        context: ContextSpec {
            size: upsched_abi::CTX_SIZE as u64,
            writable: Vec::new(),
            nullable: false,
        },
        regions: Vec::new(),
        region_loads: Vec::new(),
        calls: Vec::new(),
        global_functions: Vec::new(),
        max_explored: DEFAULT_MAX_EXPLORED,
    };
    let start = thread_cpu_time();
    let outcome = match verify_insns(insns, &environment) {
        Err(error) => panic!("the verifier refused the generated program: {error}"),
        Ok((program, _)) if compile_all => {
            black_box(JitProgram::compile(&program).unwrap());
            "native"
        }
        Ok((program, _)) => match native_code(&program, ExecMode::Jit).unwrap() {
            Some(native) => {
                black_box(native);
                "native"
            }
            None => "interpreted",
        },
    };
    ((thread_cpu_time() - start).as_secs_f64(), outcome)
}

/// Load cost against hook size, now (by size) and before (the JIT at every size, run only up
/// to `BEFORE_MAX` because it grows superlinearly), interleaved per size. Costs are the best of
/// a few rounds at small sizes, one round at large ones.
fn load_scaling(_: &mut Criterion) {
    const BEFORE_MAX: usize = 10_000;
    println!(
        "load_scaling: JIT_OPTIMIZE_MAX_INSNS_PER_HOOK {JIT_OPTIMIZE_MAX_INSNS_PER_HOOK}, \
         JIT_MAX_INSNS_PER_HOOK {JIT_MAX_INSNS_PER_HOOK}"
    );
    for len in [1_000, 2_048, 4_096, 10_000, 100_000, 1_000_000] {
        let rounds = if len <= BEFORE_MAX { 3 } else { 1 };
        let best = |compile_all| {
            (0..rounds)
                .map(|_| load_hook(straight_line(len), compile_all))
                .fold((f64::INFINITY, ""), |a, b| if b.0 < a.0 { b } else { a })
        };
        let (now, outcome) = best(false);
        let per_insn = |seconds: f64| seconds * 1e6 / len as f64;
        let before = if len <= BEFORE_MAX {
            let (before, _) = best(true);
            format!(
                "before {before:8.3} s ({:6.1} us/insn), before/now {:6.1}",
                per_insn(before),
                before / now
            )
        } else {
            "before not run (superlinear)".to_string()
        };
        println!(
            "load_scaling: {len:>9} insns: now {now:8.3} s ({:6.2} us/insn, {outcome}), {before}",
            per_insn(now)
        );
    }
}

criterion_group!(benches, bench_enqueue, bench_load, summary, load_scaling);
criterion_main!(benches);
