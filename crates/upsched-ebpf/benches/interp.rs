//! Nanoseconds per instruction on a tight ALU loop: our interpreter, our JIT (`upsched-jit`) and
//! rbpf side by side.
//!
//! `cargo bench -p upsched-ebpf --bench interp`. Criterion reports each run's time and the
//! throughput in instructions (elements) per second; a plain summary line with ns/insn for all
//! three follows (best of several rounds, the machine being shared). `call_overhead` measures
//! the fixed cost of one run of a trivial program on either engine.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use upsched_ebpf::insn::*;
use upsched_ebpf::{Interpreter, Memory, NoExternals, Program};
use upsched_jit::{JitProgram, Optimization};

const ITERATIONS: i32 = 10_000;
const LOOP_BODY_INSNS: u64 = 7;

/// `r0 = 0; r1 = N; do { r0 += r1; r0 ^= 0x5a; r2 = r0; r2 >>= 3; r0 += r2; r1 -= 1; }
/// while (r1 != 0); exit`
fn alu_loop() -> Vec<Insn> {
    let alu64 = |op: u8, source: u8, dst: u8, src: u8, imm: i32| {
        Insn::new(BPF_ALU64 | op | source, dst, src, 0, imm)
    };
    vec![
        alu64(BPF_MOV, BPF_K, 0, 0, 0),
        alu64(BPF_MOV, BPF_K, 1, 0, ITERATIONS),
        alu64(BPF_ADD, BPF_X, 0, 1, 0),
        alu64(BPF_XOR, BPF_K, 0, 0, 0x5a),
        alu64(BPF_MOV, BPF_X, 2, 0, 0),
        alu64(BPF_RSH, BPF_K, 2, 0, 3),
        alu64(BPF_ADD, BPF_X, 0, 2, 0),
        alu64(BPF_SUB, BPF_K, 1, 0, 1),
        Insn::new(BPF_JMP | BPF_JNE | BPF_K, 1, 0, -7, 0),
        Insn::new(EXIT, 0, 0, 0, 0),
    ]
}

fn executed_insns() -> u64 {
    2 + LOOP_BODY_INSNS * ITERATIONS as u64 + 1
}

/// Best of several rounds of 200 runs: other load on the machine only ever adds time.
fn ns_per_insn(mut run: impl FnMut() -> u64) -> f64 {
    const RUNS: u32 = 200;
    const ROUNDS: usize = 5;
    run(); // warm up
    (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..RUNS {
                black_box(run());
            }
            start.elapsed().as_nanos() as f64 / (f64::from(RUNS) * executed_insns() as f64)
        })
        .fold(f64::INFINITY, f64::min)
}

fn bench_alu_loop(c: &mut Criterion) {
    let insns = alu_loop();
    let program = Program::new(insns.clone()).expect("valid benchmark program");
    let bytes = encode(&insns);
    let rbpf_vm = rbpf::EbpfVmNoData::new(Some(&bytes)).expect("rbpf accepts the program");
    let mut memory = Memory::new();
    let mut run_ours = || {
        Interpreter::run(
            black_box(&program),
            0,
            [0; 5],
            &mut memory,
            &mut NoExternals,
            u64::MAX,
        )
        .expect("benchmark program runs")
    };
    let compile = |optimization| {
        JitProgram::compile_with(&program, optimization).expect("the JIT compiles the program")
    };
    let (jit, cheap_jit) = (
        compile(Optimization::Speed),
        compile(Optimization::CompileTime),
    );
    let mut jit_memory = Memory::new();
    let mut run_on = |jit: &JitProgram| {
        jit.run([0; 5], &mut jit_memory, &mut NoExternals, u64::MAX)
            .expect("benchmark program runs")
    };
    let run_rbpf = || rbpf_vm.execute_program().expect("rbpf runs the program");
    let expected = run_rbpf();
    assert_eq!(run_ours(), expected, "interpreter and rbpf agree");
    assert_eq!(run_on(&jit), expected, "JIT and rbpf agree");
    assert_eq!(run_on(&cheap_jit), expected, "cheap JIT and rbpf agree");

    let mut group = c.benchmark_group("alu_loop");
    group.throughput(Throughput::Elements(executed_insns()));
    group.bench_function("upsched", |b| b.iter(&mut run_ours));
    group.bench_function("upsched-jit", |b| b.iter(|| run_on(&jit)));
    group.bench_function("upsched-jit-compile-time", |b| {
        b.iter(|| run_on(&cheap_jit))
    });
    group.bench_function("rbpf", |b| b.iter(run_rbpf));
    group.finish();

    let ours = ns_per_insn(&mut run_ours);
    let native = ns_per_insn(|| run_on(&jit));
    let cheap = ns_per_insn(|| run_on(&cheap_jit));
    let theirs = ns_per_insn(run_rbpf);
    println!(
        "alu_loop ns/insn: upsched {ours:.3}, upsched-jit {native:.3}, \
         upsched-jit compile-time {cheap:.3}, rbpf {theirs:.3} \
         (interpreter/JIT {:.1}x, compile-time/speed JIT {:.2}x)",
        ours / native,
        cheap / native
    );
}

/// Fixed cost of one `Interpreter::run` (entry checks, zeroing the stack frame) with a
/// two-instruction program, the floor under every policy hook call.
fn bench_call_overhead(c: &mut Criterion) {
    let program = Program::new(vec![
        Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, 0, 1, 0, 0),
        Insn::new(EXIT, 0, 0, 0, 0),
    ])
    .expect("valid benchmark program");
    let jit = JitProgram::compile(&program).expect("the JIT compiles the program");
    let mut memory = Memory::new();
    c.bench_function("call_overhead/upsched-jit", |b| {
        b.iter(|| {
            jit.run(
                black_box([7, 0, 0, 0, 0]),
                &mut memory,
                &mut NoExternals,
                u64::MAX,
            )
        })
    });
    c.bench_function("call_overhead/upsched", |b| {
        b.iter(|| {
            Interpreter::run(
                black_box(&program),
                0,
                black_box([7, 0, 0, 0, 0]),
                &mut memory,
                &mut NoExternals,
                u64::MAX,
            )
        })
    });
}

criterion_group!(benches, bench_alu_loop, bench_call_overhead);
criterion_main!(benches);
