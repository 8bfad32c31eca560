//! The verifier on hand-written programs: a corpus that must be rejected, each case with the
//! instruction and the reason expected, and a corpus that must be accepted. Every accepted
//! program also runs on the interpreter without a fault, in the environment it was verified
//! for.

mod common;

use common::*;
use upsched_ebpf::insn::*;
use upsched_ebpf::program::clear_unused_fields;
use upsched_ebpf::verifier::{DEFAULT_MAX_EXPLORED, verify_insns};
use upsched_ebpf::{
    AllowedCall, CallArg, CallError, CallKind, ContextSpec, Environment, Interpreter, Memory,
    RegionId, RegionLoad, RegionSpec, RejectKind,
};

/// Kfuncs whose argument must be 5 or 7 (64-bit), and 1 (32-bit: only the low half counts).
const PICK: i32 = 1;
const PICK32: i32 = 2;

/// Context of 64 bytes: inputs at 0..48, outputs at 48..64.
const CTX_SIZE: u64 = 64;
/// Region 0: 64 writable bytes; region 1: 16 read-only bytes.
const DATA: usize = 0;
const RODATA: usize = 1;

fn env(nullable: bool, loads: &[(usize, usize, u64)]) -> Environment {
    Environment {
        context: ContextSpec {
            size: CTX_SIZE,
            writable: vec![(48, 64)],
            nullable,
        },
        regions: vec![
            RegionSpec {
                name: "data".into(),
                size: 64,
                writable: true,
            },
            RegionSpec {
                name: "rodata".into(),
                size: 16,
                writable: false,
            },
        ],
        region_loads: loads
            .iter()
            .map(|&(pc, region, offset)| RegionLoad { pc, region, offset })
            .collect(),
        calls: vec![
            AllowedCall {
                kind: CallKind::Kfunc,
                id: 0,
                name: "answer".into(),
                args: vec![CallArg::any("x")],
            },
            AllowedCall {
                kind: CallKind::Kfunc,
                id: PICK,
                name: "pick".into(),
                args: vec![CallArg {
                    name: "which".into(),
                    size: 8,
                    domain: Some(vec![("FIVE".into(), 5), ("SEVEN".into(), 7)]),
                }],
            },
            AllowedCall {
                kind: CallKind::Kfunc,
                id: PICK32,
                name: "pick32".into(),
                args: vec![CallArg {
                    name: "which".into(),
                    size: 4,
                    domain: Some(vec![("ONE".into(), 1)]),
                }],
            },
        ],
        global_functions: Vec::new(),
        max_explored: DEFAULT_MAX_EXPLORED,
    }
}

/// Memory matching `env`: context region, then the two global regions.
struct TestMemory {
    memory: Memory,
    ctx: RegionId,
    ctx_address: u64,
    bases: [u64; 2],
}

fn memory() -> TestMemory {
    let mut memory = Memory::new();
    let ctx = memory
        .add_region("ctx", vec![0; CTX_SIZE as usize], true)
        .unwrap();
    let data = memory.add_region("data", vec![0; 64], true).unwrap();
    let rodata = memory.add_region("rodata", vec![1; 16], false).unwrap();
    let bases = [memory.region_base(data), memory.region_base(rodata)];
    TestMemory {
        ctx_address: memory.region_base(ctx),
        memory,
        ctx,
        bases,
    }
}

/// `lddw dst, &region[offset]`, with the address the interpreter's memory will have.
fn region_address(dst: u8, region: usize, offset: u64) -> [Insn; 2] {
    lddw(dst, memory().bases[region] + offset)
}

fn expect_reject(
    name: &str,
    insns: Vec<Insn>,
    env: &Environment,
    pc: usize,
    kind: RejectKind,
    message: &str,
) {
    match verify_insns(insns, env) {
        Ok(_) => panic!("{name}: accepted, expected {kind:?} at {pc}"),
        Err(rejection) => {
            assert_eq!(
                (rejection.pc, rejection.kind),
                (pc, kind),
                "{name}: {rejection}"
            );
            assert!(
                rejection.message.contains(message),
                "{name}: message `{}` lacks `{message}`",
                rejection.message
            );
        }
    }
}

/// Verifies, then runs with context bytes `ctx` and kfunc answer 7; returns r0.
fn expect_accept(name: &str, insns: Vec<Insn>, env: &Environment, ctx: &[u8]) -> u64 {
    let (program, _) = verify_insns(insns, env).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut m = memory();
    m.memory.region_mut(m.ctx)[..ctx.len()].copy_from_slice(ctx);
    let mut kfunc = |_: CallKind, _: i32, _: [u64; 5], _: &mut Memory| Ok::<u64, CallError>(7);
    Interpreter::run(
        &program,
        0,
        [m.ctx_address, 0, 0, 0, 0],
        &mut m.memory,
        &mut kfunc,
        BUDGET,
    )
    .unwrap_or_else(|e| panic!("{name}: verified but faulted: {e}"))
}

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R6: u8 = 6;
const R10: u8 = 10;

#[test]
fn reject_corpus() {
    let plain = env(false, &[]);
    let nullable = env(true, &[]);
    let data_at_0 = env(false, &[(0, DATA, 0)]);
    let rodata_at_0 = env(false, &[(0, RODATA, 0)]);

    expect_reject(
        "uninitialised register",
        vec![mov64_reg(R0, R2), exit()],
        &plain,
        0,
        RejectKind::UninitRegister,
        "reads r2",
    );
    expect_reject(
        "uninitialised stack",
        vec![ldx(BPF_DW, R0, R10, -8), exit()],
        &plain,
        0,
        RejectKind::UninitStack,
        "stack byte r10-8 before it is written",
    );
    expect_reject(
        "partly initialised stack",
        vec![st(BPF_W, R10, -8, 1), ldx(BPF_DW, R0, R10, -8), exit()],
        &plain,
        1,
        RejectKind::UninitStack,
        "r10-4",
    );
    expect_reject(
        "stack below the frame",
        vec![st(BPF_DW, R10, -520, 1), exit()],
        &plain,
        0,
        RejectKind::OutOfBounds,
        "outside its 512 bytes",
    );
    expect_reject(
        "stack above r10",
        vec![st(BPF_B, R10, 0, 1), exit()],
        &plain,
        0,
        RejectKind::OutOfBounds,
        "the stack",
    );
    expect_reject(
        "context read past the end",
        vec![ldx(BPF_DW, R0, R1, 60), exit()],
        &plain,
        0,
        RejectKind::OutOfBounds,
        "offset 60 of the context, which has 64 bytes",
    );
    expect_reject(
        "context read before the start",
        vec![ldx(BPF_B, R0, R1, -1), exit()],
        &plain,
        0,
        RejectKind::OutOfBounds,
        "the context",
    );
    expect_reject(
        "write of an input field",
        vec![st(BPF_W, R1, 8, 0), exit()],
        &plain,
        0,
        RejectKind::InputWrite,
        "outside the writable (output) fields",
    );
    expect_reject(
        "write straddling input and output",
        vec![st(BPF_DW, R1, 44, 0), exit()],
        &plain,
        0,
        RejectKind::InputWrite,
        "offset 44",
    );
    expect_reject(
        "variable write that may reach inputs",
        program(&[&[
            ldx(BPF_B, R2, R1, 0),
            alu64_imm(BPF_AND, R2, 15),
            alu64_reg(BPF_ADD, R2, R1),
            st(BPF_B, R2, 40, 0),
            exit(),
        ]]),
        &plain,
        3,
        RejectKind::InputWrite,
        "offsets 40..=55",
    );
    expect_reject(
        "context read through a pointer that may be NULL",
        vec![ldx(BPF_DW, R0, R1, 0), exit()],
        &nullable,
        0,
        RejectKind::NullDereference,
        "may be NULL",
    );
    expect_reject(
        "NULL check on the wrong branch",
        vec![jmp_imm(BPF_JNE, R1, 0, 1), ldx(BPF_DW, R0, R1, 0), exit()],
        &nullable,
        1,
        RejectKind::NotAPointer,
        "holds a number",
    );
    expect_reject(
        "arithmetic on a possibly-NULL context",
        vec![alu64_imm(BPF_ADD, R1, 8), exit()],
        &nullable,
        0,
        RejectKind::NullDereference,
        "before checking it against NULL",
    );
    expect_reject(
        "write to read-only global",
        program(&[
            &region_address(R2, RODATA, 0),
            &[st(BPF_B, R2, 0, 1), exit()],
        ]),
        &rodata_at_0,
        2,
        RejectKind::ReadOnlyWrite,
        "rodata, which is read-only",
    );
    expect_reject(
        "global index without a bound",
        program(&[
            &region_address(R2, DATA, 0),
            &[
                ldx(BPF_W, R3, R1, 0),
                alu64_reg(BPF_ADD, R2, R3),
                ldx(BPF_B, R0, R2, 0),
                exit(),
            ],
        ]),
        &data_at_0,
        4,
        RejectKind::OutOfBounds,
        "offsets 0..=4294967295 of data, which has 64 bytes",
    );
    expect_reject(
        "global index one past a masked bound",
        program(&[
            &region_address(R2, DATA, 0),
            &[
                ldx(BPF_W, R3, R1, 0),
                alu64_imm(BPF_AND, R3, 63),
                alu64_reg(BPF_ADD, R2, R3),
                ldx(BPF_H, R0, R2, 0),
                exit(),
            ],
        ]),
        &data_at_0,
        5,
        RejectKind::OutOfBounds,
        "2 bytes at offsets 0..=63 of data",
    );
    expect_reject(
        "context pointer stored into a global",
        program(&[
            &region_address(R2, DATA, 0),
            &[stx(BPF_DW, R2, R1, 0), exit()],
        ]),
        &data_at_0,
        2,
        RejectKind::PointerLeak,
        "into global memory",
    );
    expect_reject(
        "stack pointer stored into the context",
        vec![stx(BPF_DW, R1, R10, 48), exit()],
        &plain,
        0,
        RejectKind::PointerLeak,
        "into the context",
    );
    expect_reject(
        "part of a pointer spilled",
        vec![stx(BPF_W, R10, R1, -8), exit()],
        &plain,
        0,
        RejectKind::PointerLeak,
        "part of a pointer",
    );
    expect_reject(
        "spilled pointer read back as a number",
        vec![stx(BPF_DW, R10, R1, -8), ldx(BPF_W, R0, R10, -8), exit()],
        &plain,
        1,
        RejectKind::PointerLeak,
        "part of a spilled pointer",
    );
    expect_reject(
        "atomic on a spilled pointer",
        vec![
            stx(BPF_DW, R10, R1, -8),
            mov64_imm(R2, 1),
            atomic(BPF_DW, i32::from(BPF_ADD), R10, R2, -8),
            exit(),
        ],
        &plain,
        2,
        RejectKind::PointerLeak,
        "atomic operation on a spilled pointer",
    );
    expect_reject(
        "pointer multiplied",
        vec![alu64_imm(BPF_MUL, R1, 2), exit()],
        &plain,
        0,
        RejectKind::PointerArithmetic,
        "only 64-bit add and subtract of a scalar",
    );
    expect_reject(
        "pointer truncated to 32 bits",
        vec![alu32_reg(BPF_MOV, R0, R1), exit()],
        &plain,
        0,
        RejectKind::PointerArithmetic,
        "truncates",
    );
    expect_reject(
        "pointer compared with a number",
        vec![jmp_imm(BPF_JGT, R1, 5, 0), exit()],
        &plain,
        0,
        RejectKind::PointerLeak,
        "compares a pointer",
    );
    expect_reject(
        "number dereferenced",
        vec![mov64_imm(R2, 4096), ldx(BPF_DW, R0, R2, 0), exit()],
        &plain,
        1,
        RejectKind::NotAPointer,
        "holds a number, not a pointer",
    );
    expect_reject(
        "variable stack read of an uninitialised byte",
        program(&[&[
            st(BPF_DW, R10, -8, 0),
            ldx(BPF_B, R2, R1, 0),
            alu64_imm(BPF_AND, R2, 15),
            alu64_reg(BPF_ADD, R2, R10),
            ldx(BPF_B, R0, R2, -16),
            exit(),
        ]]),
        &plain,
        4,
        RejectKind::UninitStack,
        "r10-16",
    );
    expect_reject(
        "variable stack offset beyond the frame",
        program(&[&[
            ldx(BPF_B, R2, R1, 0),
            alu64_imm(BPF_AND, R2, 15),
            alu64_reg(BPF_ADD, R2, R10),
            st(BPF_B, R2, -8, 0),
            exit(),
        ]]),
        &plain,
        3,
        RejectKind::OutOfBounds,
        "offsets -8..=7 of the stack",
    );
    expect_reject(
        "pointer stored at a variable stack offset",
        program(&[&[
            ldx(BPF_B, R2, R1, 0),
            alu64_imm(BPF_AND, R2, 8),
            alu64_reg(BPF_ADD, R2, R10),
            stx(BPF_DW, R2, R1, -16),
            exit(),
        ]]),
        &plain,
        3,
        RejectKind::OutOfBounds,
        "variable stack offset",
    );
    expect_reject(
        "spilled pointer possibly overwritten at a variable offset",
        program(&[&[
            stx(BPF_DW, R10, R1, -8),
            ldx(BPF_B, R2, R1, 0),
            alu64_imm(BPF_AND, R2, 8),
            alu64_reg(BPF_ADD, R2, R10),
            st(BPF_B, R2, -16, 1),
            ldx(BPF_DW, R3, R10, -8),
            exit(),
        ]]),
        &plain,
        5,
        RejectKind::UninitStack,
        "r10-8",
    );
    expect_reject(
        "helper call",
        vec![call_helper(5), exit()],
        &plain,
        0,
        RejectKind::CallNotAllowed,
        "helper #5",
    );
    expect_reject(
        "unknown kfunc",
        vec![mov64_imm(R1, 0), call_kfunc(3), exit()],
        &plain,
        1,
        RejectKind::CallNotAllowed,
        "kernel function #3",
    );
    expect_reject(
        "context passed to a kfunc",
        vec![call_kfunc(0), exit()],
        &plain,
        0,
        RejectKind::PointerLeak,
        "passes a pointer to answer",
    );
    expect_reject(
        "kfunc argument missing",
        vec![mov64_imm(R1, 0), call_kfunc(0), call_kfunc(0), exit()],
        &plain,
        2,
        RejectKind::UninitRegister,
        "argument 1 of answer (r1) holds no value",
    );
    expect_reject(
        "registers clobbered by a call",
        vec![mov64_imm(R1, 1), call_kfunc(0), mov64_reg(R0, R2), exit()],
        &plain,
        2,
        RejectKind::UninitRegister,
        "reads r2",
    );
    expect_reject(
        "jump out of the program",
        vec![ja(5), exit()],
        &plain,
        0,
        RejectKind::InvalidJump,
        "outside the program",
    );
    expect_reject(
        "falls off the end",
        vec![mov64_imm(R0, 0)],
        &plain,
        0,
        RejectKind::InvalidJump,
        "past the last instruction",
    );
    expect_reject(
        "loop without progress",
        vec![mov64_imm(R0, 0), ja(-1), exit()],
        &plain,
        1,
        RejectKind::MayNotTerminate,
        "no more advanced",
    );
    expect_reject(
        "loop bounded by an input",
        program(&[&[
            ldx(BPF_DW, R2, R1, 0),
            mov64_imm(R0, 0),
            alu64_imm(BPF_ADD, R0, 1),
            jmp_reg(BPF_JLT, R0, R2, -2),
            exit(),
        ]]),
        &Environment {
            max_explored: 10_000,
            ..plain.clone()
        },
        3,
        RejectKind::MayNotTerminate,
        "explored more than 10000 instructions without covering every path: the loop that jumps back here",
    );
    expect_reject(
        "recursion",
        vec![call_local(-1), exit()],
        &plain,
        0,
        RejectKind::CallDepth,
        "deeper than 8 frames",
    );
    expect_reject(
        "pointer to the callee's stack returned",
        vec![
            call_local(1),
            exit(),
            mov64_reg(R0, R10),
            alu64_imm(BPF_ADD, R0, -8),
            exit(),
        ],
        &plain,
        4,
        RejectKind::PointerLeak,
        "own stack",
    );
    expect_reject(
        "region load past the end",
        program(&[&region_address(R2, RODATA, 0), &[exit()]]),
        &env(false, &[(0, RODATA, 17)]),
        0,
        RejectKind::OutOfBounds,
        "byte 17 of rodata, which has 16 bytes",
    );
    expect_reject(
        "callee reads an argument the caller did not pass",
        vec![call_local(1), exit(), mov64_reg(R0, R3), exit()],
        &plain,
        2,
        RejectKind::UninitRegister,
        "reads r3",
    );
}

#[test]
fn kfunc_arguments_must_be_proven_inside_their_domain() {
    let plain = env(false, &[]);
    expect_reject(
        "constant outside the domain",
        vec![mov64_imm(R1, 6), call_kfunc(PICK), exit()],
        &plain,
        1,
        RejectKind::ArgumentDomain,
        "argument 1 of pick (which, r1) is 0x6; it must be one of FIVE (0x5), SEVEN (0x7)",
    );
    expect_reject(
        "a value read from the context",
        vec![ldx(BPF_B, R1, R1, 0), call_kfunc(PICK), exit()],
        &plain,
        1,
        RejectKind::ArgumentDomain,
        "is not a constant here (it may be any of 0x0..=0xff)",
    );
    // 5..=7 holds 6: a range is admitted only if every value in it is.
    expect_reject(
        "a range around a value outside",
        vec![
            ldx(BPF_B, R1, R1, 0),
            jmp_imm(BPF_JLT, R1, 5, 2),
            jmp_imm(BPF_JGT, R1, 7, 1),
            call_kfunc(PICK),
            exit(),
        ],
        &plain,
        3,
        RejectKind::ArgumentDomain,
        "0x5..=0x7",
    );
    expect_reject(
        "upper half ignored, low half outside",
        program(&[&lddw(R1, 1 << 32 | 2), &[call_kfunc(PICK32), exit()]]),
        &plain,
        2,
        RejectKind::ArgumentDomain,
        "is 0x2; it must be ONE (0x1)",
    );
    let ctx = [7u8; CTX_SIZE as usize];
    // Narrowed by branches to a value of the domain on each path that calls.
    expect_accept(
        "a value narrowed to the domain",
        vec![
            ldx(BPF_B, R1, R1, 0),
            jmp_imm(BPF_JEQ, R1, 5, 2),
            jmp_imm(BPF_JEQ, R1, 7, 1),
            exit(),
            call_kfunc(PICK),
            exit(),
        ],
        &plain,
        &ctx,
    );
    expect_accept(
        "the constants of the domain",
        vec![
            mov64_imm(R1, 5),
            call_kfunc(PICK),
            mov64_imm(R1, 7),
            call_kfunc(PICK),
            exit(),
        ],
        &plain,
        &ctx,
    );
    expect_accept(
        "a 32-bit argument with any upper half",
        program(&[&lddw(R1, 0xdead_0000_0001), &[call_kfunc(PICK32), exit()]]),
        &plain,
        &ctx,
    );
}

#[test]
fn accept_corpus() {
    let plain = env(false, &[]);
    let nullable = env(true, &[]);
    let mut ctx = [0u8; CTX_SIZE as usize];
    ctx[0] = 200;
    ctx[8] = 3;

    // The SDK's hook shape: NULL check, then read inputs and write outputs.
    let r0 = expect_accept(
        "null-checked hook",
        vec![
            jmp_imm(BPF_JEQ, R1, 0, 3),
            ldx(BPF_DW, R2, R1, 8),
            stx(BPF_DW, R1, R2, 48),
            mov64_imm(R0, 1),
            exit(),
        ],
        &nullable,
        &ctx,
    );
    assert_eq!(r0, 1);

    // A copy of the context pointer is checked, the original used: both are the same value.
    expect_accept(
        "null check through a copy and a spill",
        vec![
            stx(BPF_DW, R10, R1, -8),
            mov64_reg(R6, R1),
            jmp_imm(BPF_JEQ, R6, 0, 3),
            ldx(BPF_DW, R2, R10, -8),
            ldx(BPF_W, R0, R2, 4),
            exit(),
            mov64_imm(R0, 0),
            exit(),
        ],
        &nullable,
        &ctx,
    );

    // Hint-style array read at a masked variable offset, write at a masked output offset.
    expect_accept(
        "masked variable offsets in the context",
        vec![
            ldx(BPF_B, R2, R1, 0),
            alu64_imm(BPF_AND, R2, 3),
            alu64_imm(BPF_LSH, R2, 3),
            mov64_reg(R3, R1),
            alu64_reg(BPF_ADD, R3, R2),
            ldx(BPF_DW, R0, R3, 8),
            alu64_imm(BPF_AND, R2, 8),
            mov64_reg(R3, R1),
            alu64_reg(BPF_ADD, R3, R2),
            stx(BPF_DW, R3, R0, 48),
            exit(),
        ],
        &plain,
        &ctx,
    );

    // A bounded loop summing a global array; the bound comes from a compare, not a mask.
    let r0 = expect_accept(
        "bounded loop over a global array",
        program(&[
            &region_address(R2, DATA, 0),
            &[
                mov64_imm(R0, 0),
                mov64_imm(R3, 0),
                // loop: r0 += data[r3]; r3 += 8; if r3 < 64 goto loop
                mov64_reg(R6, R2),
                alu64_reg(BPF_ADD, R6, R3),
                ldx(BPF_DW, R6, R6, 0),
                alu64_reg(BPF_ADD, R0, R6),
                alu64_imm(BPF_ADD, R3, 8),
                jmp_imm(BPF_JLT, R3, 64, -6),
                exit(),
            ],
        ]),
        &env(false, &[(0, DATA, 0)]),
        &ctx,
    );
    assert_eq!(r0, 0);

    // An input-dependent trip count capped by a constant (32-bit compares, as clang emits).
    expect_accept(
        "input bound capped by a constant",
        vec![
            ldx(BPF_W, R2, R1, 0),
            jmp32_imm(BPF_JLT, R2, 100, 1),
            mov32_imm(R2, 100),
            mov64_imm(R0, 0),
            jmp32_reg(BPF_JGE, R0, R2, 2),
            alu32_imm(BPF_ADD, R0, 1),
            ja(-3),
            exit(),
        ],
        &plain,
        &ctx,
    );

    // Spills keep pointers and constants; a callee gets a pointer to its caller's stack.
    let r0 = expect_accept(
        "spills and a callee writing through a stack pointer",
        vec![
            stx(BPF_DW, R10, R1, -8),
            st(BPF_DW, R10, -16, 0),
            mov64_reg(R1, R10),
            alu64_imm(BPF_ADD, R1, -16),
            call_local(4),
            ldx(BPF_DW, R2, R10, -8),
            ldx(BPF_DW, R0, R10, -16),
            stx(BPF_DW, R2, R0, 56),
            exit(),
            // callee: *(u64 *)r1 = 41 + 1
            mov64_imm(R2, 41),
            alu64_imm(BPF_ADD, R2, 1),
            stx(BPF_DW, R1, R2, 0),
            exit(),
        ],
        &plain,
        &ctx,
    );
    assert_eq!(r0, 42);

    // Atomics on a global and on the context's outputs; the kfunc gets a number.
    expect_accept(
        "atomics and a kfunc",
        program(&[
            &region_address(R2, DATA, 8),
            &[
                mov64_imm(R3, 1),
                atomic(BPF_DW, i32::from(BPF_ADD) | BPF_FETCH, R2, R3, 0),
                mov64_reg(R6, R1),
                mov64_reg(R1, R3),
                call_kfunc(0),
                stx(BPF_DW, R6, R0, 48),
                mov64_imm(R0, 0),
                atomic(BPF_W, BPF_CMPXCHG, R6, R0, 56),
                exit(),
            ],
        ]),
        &env(false, &[(0, DATA, 8)]),
        &ctx,
    );

    // A stack buffer indexed by a masked input: every byte it may read is initialised.
    let r0 = expect_accept(
        "variable-offset stack buffer",
        vec![
            st(BPF_DW, R10, -16, 0x0102),
            st(BPF_DW, R10, -8, 0x0304),
            ldx(BPF_B, R2, R1, 8),
            alu64_imm(BPF_AND, R2, 15),
            alu64_reg(BPF_ADD, R2, R10),
            st(BPF_B, R2, -16, 9),
            ldx(BPF_B, R0, R2, -16),
            exit(),
        ],
        &plain,
        &ctx,
    );
    assert_eq!(r0, 9);

    // Division by a possibly-zero input is defined (0) and so allowed.
    expect_accept(
        "division by an input",
        vec![
            ldx(BPF_DW, R2, R1, 8),
            mov64_imm(R0, 100),
            alu64_reg(BPF_DIV, R0, R2),
            exit(),
        ],
        &plain,
        &ctx,
    );

    // Pointers into the same region compare by offset, bounding a pointer-walking loop.
    expect_accept(
        "pointer-walking loop",
        program(&[
            &region_address(R2, DATA, 0),
            &region_address(R3, DATA, 64),
            &[
                mov64_imm(R0, 0),
                ldx(BPF_B, R6, R2, 0),
                alu64_reg(BPF_ADD, R0, R6),
                alu64_imm(BPF_ADD, R2, 1),
                jmp_reg(BPF_JLT, R2, R3, -4),
                exit(),
            ],
        ]),
        &env(false, &[(0, DATA, 0), (2, DATA, 64)]),
        &ctx,
    );
}

fn mov32_imm(dst: u8, imm: i32) -> Insn {
    alu32_imm(BPF_MOV, dst, imm)
}

/// Random programs: the verifier returns a verdict (never panics), and whatever it accepts
/// runs on the interpreter without a memory fault, a call failure or exceeding its budget.
#[test]
fn accepted_random_programs_never_fault() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let codes: Vec<u8> = vec![
        BPF_ALU64 | BPF_ADD | BPF_K,
        BPF_ALU64 | BPF_ADD | BPF_X,
        BPF_ALU64 | BPF_AND | BPF_K,
        BPF_ALU64 | BPF_LSH | BPF_K,
        BPF_ALU64 | BPF_MOV | BPF_K,
        BPF_ALU64 | BPF_MOV | BPF_X,
        BPF_ALU | BPF_AND | BPF_K,
        BPF_ALU | BPF_MOV | BPF_X,
        BPF_JMP | BPF_JLT | BPF_K,
        BPF_JMP | BPF_JEQ | BPF_K,
        BPF_JMP32 | BPF_JGT | BPF_X,
        BPF_LDX | BPF_MEM | BPF_DW,
        BPF_LDX | BPF_MEM | BPF_B,
        BPF_ST | BPF_MEM | BPF_W,
        BPF_STX | BPF_MEM | BPF_DW,
        BPF_STX | BPF_MEM | BPF_B,
    ];
    let insn = (
        prop::sample::select(codes),
        0u8..11,
        0u8..11,
        -70i16..70,
        -70i32..70,
    )
        .prop_map(|(code, dst, src, off, imm)| {
            // Memory operations mostly go through the pointers the prologue leaves: the
            // context (r1), the stack (r10) and a stack pointer (r6).
            let pointer = [R1, R6, R10, dst][usize::from(src) % 4];
            let mut insn = match code & 0x07 {
                BPF_JMP | BPF_JMP32 => Insn::new(code, dst, src, off.rem_euclid(4), imm),
                BPF_LDX => Insn::new(code, dst, pointer, off / 10 * 8, imm),
                BPF_ST | BPF_STX => Insn::new(code, pointer, src, off / 10 * 8, imm),
                _ => Insn::new(code, dst, src, off, imm),
            };
            clear_unused_fields(&mut insn);
            insn
        });
    let mut runner = TestRunner::new(Config {
        cases: 8000,
        ..Config::default()
    });
    let accepted = std::cell::Cell::new(0u32);
    runner
        .run(
            &(prop::collection::vec(insn, 1..8), any::<[u8; 64]>()),
            |(body, ctx)| {
                // A prologue that initialises registers and some stack makes many random
                // bodies meaningful: r0, r2..r5, r7..r9 small numbers, r6 a stack pointer.
                let mut insns: Vec<Insn> = (0..8)
                    .map(|i| st(BPF_DW, R10, -8 * (i + 1), i as i32))
                    .collect();
                for reg in [0u8, 2, 3, 4, 5, 7, 8, 9] {
                    insns.push(mov64_imm(reg, i32::from(reg) * 3));
                }
                insns.push(mov64_reg(R6, R10));
                insns.push(alu64_imm(BPF_ADD, R6, -64));
                insns.extend(body);
                insns.push(exit());
                let mut env = env(false, &[]);
                env.max_explored = 10_000;
                if let Ok((program, _)) = verify_insns(insns, &env) {
                    accepted.set(accepted.get() + 1);
                    let mut m = memory();
                    m.memory.region_mut(m.ctx).copy_from_slice(&ctx);
                    let result = Interpreter::run(
                        &program,
                        0,
                        [m.ctx_address, 0, 0, 0, 0],
                        &mut m.memory,
                        &mut upsched_ebpf::NoExternals,
                        BUDGET,
                    );
                    prop_assert!(
                        result.is_ok(),
                        "{result:?}\n{}",
                        disassemble(program.insns())
                    );
                    // Inputs are untouched.
                    prop_assert_eq!(&m.memory.region(m.ctx)[..48], &ctx[..48]);
                }
                Ok(())
            },
        )
        .unwrap();
    let accepted = accepted.get();
    assert!(
        accepted > 150,
        "only {accepted} random programs were accepted"
    );
}

/// Arbitrary instruction sequences (any opcode, register, offset, immediate; region loads and
/// calls at random places): the verifier returns a verdict and never panics.
#[test]
fn arbitrary_programs_never_panic_the_verifier() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let insn = (any::<u8>(), 0u8..16, 0u8..16, -8i16..8, -600i32..600)
        .prop_map(|(code, dst, src, off, imm)| Insn::new(code, dst, src, off, imm));
    let mut runner = TestRunner::new(Config {
        cases: 4000,
        ..Config::default()
    });
    runner
        .run(
            &(
                prop::collection::vec(insn, 1..24),
                any::<bool>(),
                prop::collection::vec((0usize..24, 0usize..3, 0u64..80), 0..3),
            ),
            |(insns, nullable, loads)| {
                let mut env = env(nullable, &loads);
                env.max_explored = 20_000;
                let _ = verify_insns(insns, &env);
                Ok(())
            },
        )
        .unwrap();
}

/// A function that stores one doubleword `depth` bytes below its r10, then returns 0.
fn uses_stack(depth: i16) -> [Insn; 3] {
    [st(BPF_DW, R10, -depth, 1), mov64_imm(R0, 0), exit()]
}

/// The kernel's rules on call graphs: the stack of a whole call chain (each function's deepest
/// access rounded up to 32 bytes) stays within 512 bytes, whether the calls are reached or not.
#[test]
fn combined_stack_of_a_call_chain_is_bounded() {
    let plain = env(false, &[]);
    // main (8 bytes -> 32) calls f (200 -> 224), which calls g (256): 512 fits exactly.
    let chain = |g_depth: i16| {
        program(&[
            &[st(BPF_DW, R10, -8, 1), call_local(1), exit()],
            &[st(BPF_DW, R10, -200, 1), call_local(1), exit()],
            &uses_stack(g_depth),
        ])
    };
    expect_accept("a chain of 512 bytes", chain(256), &plain, &[]);
    expect_reject(
        "a chain of 544 bytes",
        chain(264),
        &plain,
        1,
        RejectKind::StackSize,
        "combined stack size of 3 calls is 544 bytes",
    );
    // An unreached call counts as the kernel counts it: its callee's frame at 32 bytes least.
    expect_reject(
        "an unreached call over the limit",
        program(&[
            &[
                st(BPF_DW, R10, -488, 1),
                ja(1),
                call_local(2),
                mov64_imm(R0, 0),
                exit(),
            ],
            &[mov64_imm(R0, 0), exit()],
        ]),
        &plain,
        2,
        RejectKind::StackSize,
        "is 544 bytes",
    );
}

/// A global function is verified on its own, from its typed arguments: its pointer argument
/// may be NULL whatever the caller checked, and a call passes what the types allow only.
#[test]
fn global_functions_are_verified_alone() {
    use upsched_ebpf::{ArgSpec, GlobalFunction};
    let with_global = |args: Vec<ArgSpec>| Environment {
        global_functions: vec![GlobalFunction {
            name: "f".into(),
            start: 4,
            args,
            returns_value: false,
        }],
        ..env(true, &[])
    };
    // main: if (ctx) f(ctx); f: writes ctx->out without a NULL check.
    let unchecked = program(&[
        &[
            jmp_imm(BPF_JEQ, R1, 0, 1),
            call_local(2),
            mov64_imm(R0, 0),
            exit(),
        ],
        &[st(BPF_DW, R1, 48, 1), exit()],
    ]);
    expect_accept(
        "the same function as a static one",
        unchecked.clone(),
        &env(true, &[]),
        &[0; 64],
    );
    expect_reject(
        "a global function without a NULL check",
        unchecked,
        &with_global(vec![ArgSpec::Context]),
        4,
        RejectKind::NullDereference,
        "may be NULL",
    );
    let checked = program(&[
        &[
            jmp_imm(BPF_JEQ, R1, 0, 1),
            call_local(2),
            mov64_imm(R0, 0),
            exit(),
        ],
        &[jmp_imm(BPF_JEQ, R1, 0, 1), st(BPF_DW, R1, 48, 1), exit()],
    ]);
    expect_accept(
        "a global function that checks",
        checked.clone(),
        &with_global(vec![ArgSpec::Context]),
        &[0; 64],
    );
    expect_reject(
        "the context passed where a number is expected",
        checked,
        &with_global(vec![ArgSpec::Scalar]),
        1,
        RejectKind::PointerLeak,
        "must be a number",
    );
}
