//! Instruction builders shared by the integration tests.

#![allow(dead_code)] // each test binary uses a different subset

use upsched_ebpf::insn::*;
use upsched_ebpf::{ExecError, Externals, Interpreter, Memory, NoExternals, Program};
use upsched_jit::{JitProgram, Optimization};

pub const BUDGET: u64 = 100_000;

pub fn alu64_imm(op: u8, dst: u8, imm: i32) -> Insn {
    Insn::new(BPF_ALU64 | op | BPF_K, dst, 0, 0, imm)
}

pub fn alu64_reg(op: u8, dst: u8, src: u8) -> Insn {
    Insn::new(BPF_ALU64 | op | BPF_X, dst, src, 0, 0)
}

pub fn alu32_imm(op: u8, dst: u8, imm: i32) -> Insn {
    Insn::new(BPF_ALU | op | BPF_K, dst, 0, 0, imm)
}

pub fn alu32_reg(op: u8, dst: u8, src: u8) -> Insn {
    Insn::new(BPF_ALU | op | BPF_X, dst, src, 0, 0)
}

/// Signed division or modulo (`off` 1).
pub fn signed(mut insn: Insn) -> Insn {
    insn.off = 1;
    insn
}

pub fn mov64_imm(dst: u8, imm: i32) -> Insn {
    alu64_imm(BPF_MOV, dst, imm)
}

pub fn mov64_reg(dst: u8, src: u8) -> Insn {
    alu64_reg(BPF_MOV, dst, src)
}

pub fn lddw(dst: u8, value: u64) -> [Insn; 2] {
    [
        Insn::new(LDDW, dst, 0, 0, value as u32 as i32),
        Insn::new(0, 0, 0, 0, (value >> 32) as u32 as i32),
    ]
}

pub fn jmp_imm(op: u8, dst: u8, imm: i32, off: i16) -> Insn {
    Insn::new(BPF_JMP | op | BPF_K, dst, 0, off, imm)
}

pub fn jmp_reg(op: u8, dst: u8, src: u8, off: i16) -> Insn {
    Insn::new(BPF_JMP | op | BPF_X, dst, src, off, 0)
}

pub fn jmp32_imm(op: u8, dst: u8, imm: i32, off: i16) -> Insn {
    Insn::new(BPF_JMP32 | op | BPF_K, dst, 0, off, imm)
}

pub fn jmp32_reg(op: u8, dst: u8, src: u8, off: i16) -> Insn {
    Insn::new(BPF_JMP32 | op | BPF_X, dst, src, off, 0)
}

pub fn ja(off: i16) -> Insn {
    Insn::new(BPF_JMP | BPF_JA, 0, 0, off, 0)
}

pub fn ldx(size: u8, dst: u8, src: u8, off: i16) -> Insn {
    Insn::new(BPF_LDX | BPF_MEM | size, dst, src, off, 0)
}

pub fn ldxsx(size: u8, dst: u8, src: u8, off: i16) -> Insn {
    Insn::new(BPF_LDX | BPF_MEMSX | size, dst, src, off, 0)
}

pub fn st(size: u8, dst: u8, off: i16, imm: i32) -> Insn {
    Insn::new(BPF_ST | BPF_MEM | size, dst, 0, off, imm)
}

pub fn stx(size: u8, dst: u8, src: u8, off: i16) -> Insn {
    Insn::new(BPF_STX | BPF_MEM | size, dst, src, off, 0)
}

pub fn atomic(size: u8, op: i32, dst: u8, src: u8, off: i16) -> Insn {
    Insn::new(BPF_STX | BPF_ATOMIC | size, dst, src, off, op)
}

pub fn call_helper(id: i32) -> Insn {
    Insn::new(CALL, 0, 0, 0, id)
}

pub fn call_kfunc(id: i32) -> Insn {
    Insn::new(CALL, 0, BPF_PSEUDO_KFUNC_CALL, 0, id)
}

pub fn call_local(relative: i32) -> Insn {
    Insn::new(CALL, 0, BPF_PSEUDO_CALL, 0, relative)
}

pub fn exit() -> Insn {
    Insn::new(EXIT, 0, 0, 0, 0)
}

/// Flattens instruction groups (single instructions and `lddw` pairs) into one program.
pub fn program(parts: &[&[Insn]]) -> Vec<Insn> {
    parts.iter().flat_map(|part| part.iter().copied()).collect()
}

/// Runs the program on the interpreter and, on a copy of `memory`, on the JIT, and checks that
/// both engines return the same result and leave the same memory; externals are called once
/// per engine (JIT first).
pub fn run_with(
    insns: Vec<Insn>,
    memory: &mut Memory,
    externals: &mut dyn Externals,
    args: [u64; 5],
) -> Result<u64, ExecError> {
    run_both(insns, memory, externals, args, BUDGET)
}

/// [`run_with`] with an explicit instruction budget.
pub fn run_both(
    insns: Vec<Insn>,
    memory: &mut Memory,
    externals: &mut dyn Externals,
    args: [u64; 5],
    budget: u64,
) -> Result<u64, ExecError> {
    let program = Program::new(insns).expect("structurally valid test program");
    let native_runs: Vec<_> = [Optimization::Speed, Optimization::CompileTime]
        .into_iter()
        .map(|optimization| {
            let jit = JitProgram::compile_with(&program, optimization)
                .expect("the JIT compiles every valid program");
            let mut jit_memory = memory.clone();
            let jit_result = jit.run(args, &mut jit_memory, externals, budget);
            (optimization, jit_result, jit_memory)
        })
        .collect();
    let result = Interpreter::run(&program, 0, args, memory, externals, budget);
    for (optimization, jit_result, mut jit_memory) in native_runs {
        assert_eq!(
            jit_result,
            result,
            "JIT ({optimization:?}) and interpreter disagree on\n{}",
            disassemble(program.insns())
        );
        assert_same_memory(memory, &mut jit_memory);
    }
    result
}

/// Every region, the whole stack and the live frame count are equal.
pub fn assert_same_memory(expected: &mut Memory, actual: &mut Memory) {
    assert_eq!(
        expected.live_frames(),
        actual.live_frames(),
        "live stack frames"
    );
    let (expected_regions, expected_stack) = expected.engine_view();
    let (actual_regions, actual_stack) = actual.engine_view();
    let expected_regions: Vec<_> = expected_regions.map(|(bytes, _)| bytes.to_vec()).collect();
    let actual_regions: Vec<_> = actual_regions.map(|(bytes, _)| bytes.to_vec()).collect();
    assert_eq!(expected_regions, actual_regions, "region contents");
    assert_eq!(expected_stack, actual_stack, "stack contents");
}

/// Runs with fresh memory, no externals and zero arguments.
pub fn run(insns: Vec<Insn>) -> Result<u64, ExecError> {
    run_with(insns, &mut Memory::new(), &mut NoExternals, [0; 5])
}

/// r0 after `r0 = a; r1 = b; <op>; exit`, for binary operations on r0 and r1.
pub fn binary(a: u64, b: u64, op: Insn) -> u64 {
    run(program(&[&lddw(0, a), &lddw(1, b), &[op, exit()]])).unwrap()
}

/// r0 after `r0 = a; <op>; exit`.
pub fn unary(a: u64, op: Insn) -> u64 {
    run(program(&[&lddw(0, a), &[op, exit()]])).unwrap()
}
