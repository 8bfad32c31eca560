//! Instruction semantics of the interpreter, class by class, against RFC 9669.

mod common;

use common::*;
use upsched_ebpf::insn::*;
use upsched_ebpf::memory::{MAX_CALL_DEPTH, STACK_BASE};
use upsched_ebpf::{
    CallError, CallKind, ExecError, Interpreter, Memory, NoExternals, Program, ProgramError,
};

const R0: u8 = 0;
const R1: u8 = 1;

// ---- ALU64 ----

#[test]
fn alu64_add_sub_mul_wrap() {
    assert_eq!(binary(u64::MAX, 2, alu64_reg(BPF_ADD, R0, R1)), 1);
    assert_eq!(binary(0, 1, alu64_reg(BPF_SUB, R0, R1)), u64::MAX);
    assert_eq!(
        binary(1 << 63, 2, alu64_reg(BPF_MUL, R0, R1)),
        0,
        "product wraps modulo 2^64"
    );
    assert_eq!(unary(3, alu64_imm(BPF_MUL, R0, -1)), 3u64.wrapping_neg());
}

#[test]
fn alu64_immediate_is_sign_extended() {
    assert_eq!(unary(0, alu64_imm(BPF_ADD, R0, -1)), u64::MAX);
    assert_eq!(unary(0, mov64_imm(R0, -2)), (-2i64) as u64);
    assert_eq!(
        unary(0, alu64_imm(BPF_OR, R0, i32::MIN)),
        0xffff_ffff_8000_0000
    );
    assert_eq!(
        unary(u64::MAX, alu64_imm(BPF_AND, R0, 0x7fff_ffff)),
        0x7fff_ffff
    );
    // Unsigned division treats the sign-extended immediate as a 64-bit unsigned value.
    assert_eq!(unary(u64::MAX, alu64_imm(BPF_DIV, R0, -1)), 1);
    assert_eq!(unary(10, alu64_imm(BPF_DIV, R0, -1)), 0);
}

#[test]
fn alu64_division_by_zero_gives_zero() {
    assert_eq!(binary(42, 0, alu64_reg(BPF_DIV, R0, R1)), 0);
    assert_eq!(unary(42, alu64_imm(BPF_DIV, R0, 0)), 0);
    assert_eq!(binary(42, 0, signed(alu64_reg(BPF_DIV, R0, R1))), 0);
}

#[test]
fn alu64_modulo_by_zero_leaves_dst() {
    let dst = 0xffff_ffff_0000_0005;
    assert_eq!(binary(dst, 0, alu64_reg(BPF_MOD, R0, R1)), dst);
    assert_eq!(unary(dst, alu64_imm(BPF_MOD, R0, 0)), dst);
    assert_eq!(binary(dst, 0, signed(alu64_reg(BPF_MOD, R0, R1))), dst);
}

#[test]
fn alu64_unsigned_division_and_modulo() {
    assert_eq!(binary(100, 7, alu64_reg(BPF_DIV, R0, R1)), 14);
    assert_eq!(binary(100, 7, alu64_reg(BPF_MOD, R0, R1)), 2);
    assert_eq!(
        binary((-7i64) as u64, 2, alu64_reg(BPF_DIV, R0, R1)),
        ((-7i64) as u64) / 2
    );
}

#[test]
fn alu64_signed_division_and_modulo() {
    let neg = |v: i64| v as u64;
    assert_eq!(
        binary(neg(-7), 2, signed(alu64_reg(BPF_DIV, R0, R1))),
        neg(-3)
    );
    assert_eq!(
        binary(neg(-7), 2, signed(alu64_reg(BPF_MOD, R0, R1))),
        neg(-1)
    );
    assert_eq!(binary(7, neg(-2), signed(alu64_reg(BPF_MOD, R0, R1))), 1);
    assert_eq!(unary(neg(-9), signed(alu64_imm(BPF_DIV, R0, -3))), 3);
    // Overflow cases of RFC 9669: LLONG_MIN / -1 = LLONG_MIN, LLONG_MIN % -1 = 0.
    let min = i64::MIN as u64;
    assert_eq!(
        binary(min, neg(-1), signed(alu64_reg(BPF_DIV, R0, R1))),
        min
    );
    assert_eq!(binary(min, neg(-1), signed(alu64_reg(BPF_MOD, R0, R1))), 0);
}

#[test]
fn alu64_shifts_mask_the_amount_to_6_bits() {
    assert_eq!(binary(1, 65, alu64_reg(BPF_LSH, R0, R1)), 2);
    assert_eq!(binary(0x80, 64 + 4, alu64_reg(BPF_RSH, R0, R1)), 0x8);
    assert_eq!(unary(1, alu64_imm(BPF_LSH, R0, 63)), 1 << 63);
    assert_eq!(unary(1 << 63, alu64_imm(BPF_RSH, R0, 63)), 1);
    assert_eq!(unary(1 << 63, alu64_imm(BPF_ARSH, R0, 63)), u64::MAX);
    assert_eq!(
        binary(1 << 63, 64 + 1, alu64_reg(BPF_ARSH, R0, R1)),
        0xc000_0000_0000_0000
    );
    assert_eq!(unary(0x40, alu64_imm(BPF_ARSH, R0, 4)), 0x4);
}

#[test]
fn alu64_bitwise_and_neg() {
    assert_eq!(binary(0b1100, 0b1010, alu64_reg(BPF_AND, R0, R1)), 0b1000);
    assert_eq!(binary(0b1100, 0b1010, alu64_reg(BPF_OR, R0, R1)), 0b1110);
    assert_eq!(binary(0b1100, 0b1010, alu64_reg(BPF_XOR, R0, R1)), 0b0110);
    assert_eq!(unary(5, alu64_imm(BPF_NEG, R0, 0)), 5u64.wrapping_neg());
    assert_eq!(
        unary(i64::MIN as u64, alu64_imm(BPF_NEG, R0, 0)),
        i64::MIN as u64
    );
}

#[test]
fn movsx_sign_extends_from_8_16_32_bits() {
    let movsx64 = |bits| Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, R0, R1, bits, 0);
    let movsx32 = |bits| Insn::new(BPF_ALU | BPF_MOV | BPF_X, R0, R1, bits, 0);
    assert_eq!(binary(0, 0x1_80, movsx64(8)), 0xffff_ffff_ffff_ff80);
    assert_eq!(binary(0, 0x7f, movsx64(8)), 0x7f);
    assert_eq!(binary(0, 0x1_8000, movsx64(16)), 0xffff_ffff_ffff_8000);
    assert_eq!(binary(0, 0x1_8000_0000, movsx64(32)), 0xffff_ffff_8000_0000);
    assert_eq!(binary(0, 0x7fff_ffff, movsx64(32)), 0x7fff_ffff);
    // The 32-bit form sign-extends into 32 bits, then zero-extends like every ALU32 result.
    assert_eq!(binary(u64::MAX, 0x80, movsx32(8)), 0xffff_ff80);
    assert_eq!(binary(u64::MAX, 0x8000, movsx32(16)), 0xffff_8000);
}

#[test]
fn byte_swaps() {
    let value = 0x1122_3344_5566_7788;
    let to_le = |bits| Insn::new(BPF_ALU | BPF_END | BPF_TO_LE, R0, 0, 0, bits);
    let to_be = |bits| Insn::new(BPF_ALU | BPF_END | BPF_TO_BE, R0, 0, 0, bits);
    let bswap = |bits| Insn::new(BPF_ALU64 | BPF_END, R0, 0, 0, bits);
    assert_eq!(unary(value, to_le(16)), 0x7788);
    assert_eq!(unary(value, to_le(32)), 0x5566_7788);
    assert_eq!(unary(value, to_le(64)), value);
    assert_eq!(unary(value, to_be(16)), 0x8877);
    assert_eq!(unary(value, to_be(32)), 0x8877_6655);
    assert_eq!(unary(value, to_be(64)), 0x8877_6655_4433_2211);
    assert_eq!(unary(value, bswap(16)), 0x8877);
    assert_eq!(unary(value, bswap(32)), 0x8877_6655);
    assert_eq!(unary(value, bswap(64)), 0x8877_6655_4433_2211);
}

// ---- ALU32 ----

#[test]
fn alu32_results_are_zero_extended() {
    let high = 0xdead_beef_0000_0000;
    assert_eq!(binary(high | 1, high | 2, alu32_reg(BPF_ADD, R0, R1)), 3);
    assert_eq!(binary(high | 1, 2, alu32_reg(BPF_SUB, R0, R1)), 0xffff_ffff);
    assert_eq!(binary(high | 3, high | 5, alu32_reg(BPF_MUL, R0, R1)), 15);
    assert_eq!(binary(high, high | 7, alu32_reg(BPF_OR, R0, R1)), 7);
    assert_eq!(binary(u64::MAX, 0, alu32_reg(BPF_MOV, R0, R1)), 0);
    assert_eq!(unary(u64::MAX, alu32_imm(BPF_AND, R0, -1)), 0xffff_ffff);
    assert_eq!(unary(u64::MAX, alu32_imm(BPF_XOR, R0, 0)), 0xffff_ffff);
    assert_eq!(unary(high | 5, alu32_imm(BPF_NEG, R0, 0)), 0xffff_fffb);
}

#[test]
fn alu32_immediate_is_not_sign_extended() {
    assert_eq!(unary(0, alu32_imm(BPF_ADD, R0, -1)), 0xffff_ffff);
    assert_eq!(unary(u64::MAX, alu32_imm(BPF_MOV, R0, -1)), 0xffff_ffff);
    assert_eq!(unary(10, alu32_imm(BPF_DIV, R0, -1)), 0);
}

#[test]
fn alu32_division_and_modulo_by_zero() {
    let dst = 0xffff_ffff_0000_0005;
    assert_eq!(binary(dst, 0, alu32_reg(BPF_DIV, R0, R1)), 0);
    // The divisor is the low half: 2^32 counts as zero.
    assert_eq!(binary(dst, 1 << 32, alu32_reg(BPF_DIV, R0, R1)), 0);
    // Modulo by zero keeps dst, zero-extended from 32 bits.
    assert_eq!(binary(dst, 0, alu32_reg(BPF_MOD, R0, R1)), 5);
    assert_eq!(unary(dst, alu32_imm(BPF_MOD, R0, 0)), 5);
    assert_eq!(binary(dst, 0, signed(alu32_reg(BPF_MOD, R0, R1))), 5);
    assert_eq!(binary(dst, 0, signed(alu32_reg(BPF_DIV, R0, R1))), 0);
}

#[test]
fn alu32_signed_division_and_modulo() {
    let w = |v: i32| u64::from(v as u32);
    assert_eq!(
        binary(w(-7), w(2), signed(alu32_reg(BPF_DIV, R0, R1))),
        w(-3)
    );
    assert_eq!(
        binary(w(-7), w(2), signed(alu32_reg(BPF_MOD, R0, R1))),
        w(-1)
    );
    assert_eq!(unary(w(-9), signed(alu32_imm(BPF_DIV, R0, -3))), 3);
    assert_eq!(
        binary(w(i32::MIN), w(-1), signed(alu32_reg(BPF_DIV, R0, R1))),
        w(i32::MIN)
    );
    assert_eq!(
        binary(w(i32::MIN), w(-1), signed(alu32_reg(BPF_MOD, R0, R1))),
        0
    );
    // Only the low halves take part.
    assert_eq!(
        binary(
            0x1_ffff_fff9,
            0xf_0000_0002,
            signed(alu32_reg(BPF_DIV, R0, R1))
        ),
        w(-3)
    );
}

#[test]
fn alu32_shifts_mask_the_amount_to_5_bits() {
    assert_eq!(binary(1, 33, alu32_reg(BPF_LSH, R0, R1)), 2);
    assert_eq!(unary(1, alu32_imm(BPF_LSH, R0, 31)), 0x8000_0000);
    assert_eq!(unary(0x1_0000_0000, alu32_imm(BPF_LSH, R0, 1)), 0);
    assert_eq!(
        binary(0xffff_ffff_8000_0000, 32 + 31, alu32_reg(BPF_RSH, R0, R1)),
        1
    );
    assert_eq!(unary(0x8000_0000, alu32_imm(BPF_ARSH, R0, 4)), 0xf800_0000);
    assert_eq!(
        binary(0x8000_0000, 36, alu32_reg(BPF_ARSH, R0, R1)),
        0xf800_0000
    );
}

// ---- JMP / JMP32 ----

/// 1 if the jump is taken, 0 if not: `r0 = 1; r1 = a; r2 = b; <jump +1>; r0 = 0; exit`.
fn taken(a: u64, b: u64, jump: Insn) -> u64 {
    run(program(&[
        &[mov64_imm(0, 1)],
        &lddw(1, a),
        &lddw(2, b),
        &[jump, mov64_imm(0, 0), exit()],
    ]))
    .unwrap()
}

#[test]
fn unsigned_and_signed_compares_differ() {
    let minus_one = u64::MAX;
    assert_eq!(taken(minus_one, 1, jmp_reg(BPF_JGT, 1, 2, 1)), 1);
    assert_eq!(taken(minus_one, 1, jmp_reg(BPF_JSGT, 1, 2, 1)), 0);
    assert_eq!(taken(minus_one, 1, jmp_reg(BPF_JSLT, 1, 2, 1)), 1);
    assert_eq!(taken(minus_one, 1, jmp_reg(BPF_JLT, 1, 2, 1)), 0);
    assert_eq!(taken(1, 1, jmp_reg(BPF_JGE, 1, 2, 1)), 1);
    assert_eq!(taken(1, 1, jmp_reg(BPF_JLE, 1, 2, 1)), 1);
    assert_eq!(taken(minus_one, 0, jmp_reg(BPF_JSGE, 1, 2, 1)), 0);
    assert_eq!(taken(minus_one, 0, jmp_reg(BPF_JSLE, 1, 2, 1)), 1);
    assert_eq!(taken(3, 3, jmp_reg(BPF_JEQ, 1, 2, 1)), 1);
    assert_eq!(taken(3, 3, jmp_reg(BPF_JNE, 1, 2, 1)), 0);
}

#[test]
fn jump_immediates_are_sign_extended_for_64_bit_compares() {
    assert_eq!(taken(u64::MAX, 0, jmp_imm(BPF_JEQ, 1, -1, 1)), 1);
    assert_eq!(taken(0xffff_ffff, 0, jmp_imm(BPF_JEQ, 1, -1, 1)), 0);
    assert_eq!(
        taken(5, 0, jmp_imm(BPF_JGT, 1, -1, 1)),
        0,
        "-1 is u64::MAX unsigned"
    );
    assert_eq!(taken(5, 0, jmp_imm(BPF_JSGT, 1, -1, 1)), 1);
    assert_eq!(taken(0b1010, 0, jmp_imm(BPF_JSET, 1, 0b0010, 1)), 1);
    assert_eq!(taken(0b1010, 0b0101, jmp_reg(BPF_JSET, 1, 2, 1)), 0);
}

#[test]
fn jmp32_compares_only_the_low_halves() {
    let big = 0x1_0000_0000;
    assert_eq!(taken(big, 0, jmp32_imm(BPF_JEQ, 1, 0, 1)), 1);
    assert_eq!(taken(big, 0, jmp_imm(BPF_JEQ, 1, 0, 1)), 0);
    assert_eq!(taken(0xffff_ffff, 0, jmp32_imm(BPF_JEQ, 1, -1, 1)), 1);
    assert_eq!(taken(0x8000_0000, 0, jmp32_imm(BPF_JSLT, 1, 0, 1)), 1);
    assert_eq!(taken(0x8000_0000, 0, jmp32_imm(BPF_JLT, 1, 0, 1)), 0);
    assert_eq!(taken(0xffff_ffff, 1, jmp32_reg(BPF_JSGT, 1, 2, 1)), 0);
    assert_eq!(taken(0xffff_ffff, 1, jmp32_reg(BPF_JGT, 1, 2, 1)), 1);
    assert_eq!(taken(big | 2, 3, jmp32_reg(BPF_JLE, 1, 2, 1)), 1);
    assert_eq!(taken(big | 4, 3, jmp32_reg(BPF_JGE, 1, 2, 1)), 1);
    assert_eq!(taken(big | 4, 4, jmp32_reg(BPF_JNE, 1, 2, 1)), 0);
    assert_eq!(taken(big, big, jmp32_reg(BPF_JSET, 1, 2, 1)), 0);
    assert_eq!(taken(u64::MAX, 0, jmp32_imm(BPF_JSGE, 1, -1, 1)), 1);
    assert_eq!(taken(u64::MAX, 0, jmp32_imm(BPF_JSLE, 1, -2, 1)), 0);
}

#[test]
fn backward_jumps_loop() {
    // r0 = sum of 1..=10
    let insns = vec![
        mov64_imm(0, 0),
        mov64_imm(1, 10),
        alu64_reg(BPF_ADD, 0, 1),
        alu64_imm(BPF_SUB, 1, 1),
        jmp_imm(BPF_JNE, 1, 0, -3),
        exit(),
    ];
    assert_eq!(run(insns).unwrap(), 55);
}

#[test]
fn ja_and_gotol_jump_unconditionally() {
    let insns = vec![
        mov64_imm(0, 1),
        ja(1),
        mov64_imm(0, 2),
        // gotol takes its offset from imm.
        Insn::new(BPF_JMP32 | BPF_JA, 0, 0, 0, 1),
        mov64_imm(0, 3),
        exit(),
    ];
    assert_eq!(run(insns).unwrap(), 1);
}

#[test]
fn lddw_loads_64_bits() {
    assert_eq!(
        run(program(&[&lddw(0, 0x8000_0001_ffff_fffe), &[exit()]])).unwrap(),
        0x8000_0001_ffff_fffe
    );
}

// ---- Memory ----

#[test]
fn stack_loads_and_stores_of_every_width() {
    let insns = program(&[
        &lddw(1, 0x1122_3344_5566_7788),
        &[
            stx(BPF_DW, 10, 1, -8),
            ldx(BPF_B, 2, 10, -8),
            ldx(BPF_H, 3, 10, -8),
            ldx(BPF_W, 4, 10, -4),
            ldx(BPF_DW, 5, 10, -8),
            stx(BPF_B, 10, 1, -16),
            stx(BPF_H, 10, 1, -14),
            stx(BPF_W, 10, 1, -12),
            ldx(BPF_DW, 6, 10, -16),
            // Fold into r0 so one value checks all.
            mov64_reg(0, 2),
            alu64_reg(BPF_XOR, 0, 3),
            alu64_reg(BPF_XOR, 0, 4),
            alu64_reg(BPF_XOR, 0, 5),
            alu64_reg(BPF_XOR, 0, 6),
            exit(),
        ],
    ]);
    let expected = 0x88 ^ 0x7788 ^ 0x1122_3344 ^ 0x1122_3344_5566_7788 ^ 0x5566_7788_7788_0088;
    assert_eq!(run(insns).unwrap(), expected);
}

#[test]
fn store_immediate_truncates_and_sign_extends_only_for_8_bytes() {
    let stored = |size, imm| {
        run(vec![
            st(BPF_DW, 10, -8, 0),
            st(size, 10, -8, imm),
            ldx(BPF_DW, 0, 10, -8),
            exit(),
        ])
        .unwrap()
    };
    assert_eq!(stored(BPF_DW, -1), u64::MAX);
    assert_eq!(stored(BPF_W, -1), 0xffff_ffff);
    assert_eq!(stored(BPF_H, -2), 0xfffe);
    assert_eq!(stored(BPF_B, 0x1ff), 0xff);
}

#[test]
fn sign_extending_loads() {
    let load = |insn: Insn| {
        run(program(&[
            &lddw(1, 0x0000_0000_8000_8080),
            &[stx(BPF_DW, 10, 1, -8), insn, exit()],
        ]))
        .unwrap()
    };
    assert_eq!(load(ldxsx(BPF_B, 0, 10, -8)), 0xffff_ffff_ffff_ff80);
    assert_eq!(load(ldxsx(BPF_H, 0, 10, -8)), 0xffff_ffff_ffff_8080);
    assert_eq!(load(ldxsx(BPF_W, 0, 10, -8)), 0xffff_ffff_8000_8080);
    assert_eq!(load(ldxsx(BPF_B, 0, 10, -7)), 0xffff_ffff_ffff_ff80);
    assert_eq!(load(ldxsx(BPF_B, 0, 10, -4)), 0);
    assert_eq!(load(ldx(BPF_W, 0, 10, -8)), 0x8000_8080);
}

#[test]
fn context_region_is_reachable_through_r1() {
    let mut memory = Memory::new();
    let mut ctx = vec![0u8; 16];
    ctx[8..].copy_from_slice(&7u64.to_le_bytes());
    let ctx = memory.add_region("ctx", ctx, true).unwrap();
    let base = memory.region_base(ctx);
    let insns = vec![
        ldx(BPF_DW, 0, 1, 8),
        alu64_imm(BPF_MUL, 0, 6),
        stx(BPF_DW, 1, 0, 0),
        exit(),
    ];
    let r0 = run_with(insns, &mut memory, &mut NoExternals, [base, 0, 0, 0, 0]).unwrap();
    assert_eq!(r0, 42);
    assert_eq!(memory.region(ctx)[..8], 42u64.to_le_bytes());
}

#[test]
fn out_of_region_accesses_fault_with_the_pc() {
    let null_read = vec![mov64_imm(0, 0), ldx(BPF_DW, 0, 1, 16), exit()];
    assert_eq!(
        run(null_read),
        Err(ExecError::MemoryAccess {
            pc: 1,
            addr: 16,
            size: 8,
            write: false
        })
    );
    let above_stack = vec![st(BPF_W, 10, 0, 1), exit()];
    assert_eq!(
        run(above_stack),
        Err(ExecError::MemoryAccess {
            pc: 0,
            addr: Memory::frame_pointer(0),
            size: 4,
            write: true
        })
    );
    let below_stack = vec![ldx(BPF_B, 0, 10, -513), exit()];
    assert!(matches!(
        run(below_stack),
        Err(ExecError::MemoryAccess { pc: 0, .. })
    ));
    let straddling = vec![ldx(BPF_DW, 0, 10, -4), exit()];
    assert!(matches!(
        run(straddling),
        Err(ExecError::MemoryAccess { pc: 0, size: 8, .. })
    ));
    let wild = program(&[
        &lddw(1, 0xdead_beef_dead_beef),
        &[stx(BPF_DW, 1, 1, 0), exit()],
    ]);
    assert!(matches!(
        run(wild),
        Err(ExecError::MemoryAccess {
            pc: 2,
            write: true,
            ..
        })
    ));
}

#[test]
fn read_only_region_rejects_stores_and_atomics() {
    let mut memory = Memory::new();
    let rodata = memory.add_region(".rodata", vec![1; 8], false).unwrap();
    let base = memory.region_base(rodata);
    let read = vec![ldx(BPF_B, 0, 1, 0), exit()];
    assert_eq!(
        run_with(read, &mut memory, &mut NoExternals, [base, 0, 0, 0, 0]),
        Ok(1)
    );
    let write = vec![st(BPF_B, 1, 0, 2), exit()];
    assert!(matches!(
        run_with(write, &mut memory, &mut NoExternals, [base, 0, 0, 0, 0]),
        Err(ExecError::MemoryAccess { write: true, .. })
    ));
    let add = vec![
        mov64_imm(2, 1),
        atomic(BPF_DW, i32::from(BPF_ADD), 1, 2, 0),
        exit(),
    ];
    assert!(matches!(
        run_with(add, &mut memory, &mut NoExternals, [base, 0, 0, 0, 0]),
        Err(ExecError::MemoryAccess {
            pc: 1,
            write: true,
            ..
        })
    ));
    assert_eq!(memory.region(rodata), &[1; 8]);
}

// ---- Atomics ----

/// Runs `*(r10 - 8) = initial; r1 = operand; r0 = expected; <atomic on r10-8 with src r1>` and
/// returns (memory value, r0, r1) afterwards, as reported to a helper.
fn run_atomic(size: u8, op: i32, initial: u64, operand: u64, expected: u64) -> (u64, u64, u64) {
    let insns = program(&[
        &lddw(2, initial),
        &lddw(1, operand),
        &lddw(0, expected),
        &[
            stx(BPF_DW, 10, 2, -8),
            atomic(size, op, 10, 1, -8),
            mov64_reg(3, 0),
            ldx(BPF_DW, 2, 10, -8),
            call_helper(0),
            exit(),
        ],
    ]);
    let mut observed = None;
    let mut report = |_: CallKind, _: i32, args: [u64; 5], _: &mut Memory| {
        observed = Some((args[1], args[2], args[0]));
        Ok(0)
    };
    run_with(insns, &mut Memory::new(), &mut report, [0; 5]).unwrap();
    observed.unwrap()
}

#[test]
fn atomic_add_or_and_xor_without_fetch() {
    let add = i32::from(BPF_ADD);
    assert_eq!(run_atomic(BPF_DW, add, 40, 2, 0).0, 42);
    assert_eq!(run_atomic(BPF_DW, add, 40, 2, 0).2, 2, "src unchanged");
    assert_eq!(
        run_atomic(BPF_DW, i32::from(BPF_OR), 0b1100, 0b1010, 0).0,
        0b1110
    );
    assert_eq!(
        run_atomic(BPF_DW, i32::from(BPF_AND), 0b1100, 0b1010, 0).0,
        0b1000
    );
    assert_eq!(
        run_atomic(BPF_DW, i32::from(BPF_XOR), 0b1100, 0b1010, 0).0,
        0b0110
    );
    // 32-bit: wraps at 2^32 and leaves the neighbouring upper half alone.
    let (value, _, _) = run_atomic(BPF_W, add, 0x7777_7777_ffff_ffff, 1, 0);
    assert_eq!(value, 0x7777_7777_0000_0000);
}

#[test]
fn atomic_fetch_returns_the_old_value_in_src() {
    let fetch_add = i32::from(BPF_ADD) | BPF_FETCH;
    assert_eq!(run_atomic(BPF_DW, fetch_add, 40, 2, 0), (42, 0, 40));
    let fetch_or = i32::from(BPF_OR) | BPF_FETCH;
    assert_eq!(
        run_atomic(BPF_DW, fetch_or, 0b1100, 0b0011, 0),
        (0b1111, 0, 0b1100)
    );
    let fetch_and = i32::from(BPF_AND) | BPF_FETCH;
    assert_eq!(
        run_atomic(BPF_DW, fetch_and, 0b1100, 0b0110, 0),
        (0b0100, 0, 0b1100)
    );
    let fetch_xor = i32::from(BPF_XOR) | BPF_FETCH;
    assert_eq!(
        run_atomic(BPF_DW, fetch_xor, 0b1100, 0b0110, 0),
        (0b1010, 0, 0b1100)
    );
    // 32-bit fetch zero-extends the old value.
    let (value, _, old) = run_atomic(BPF_W, fetch_add, 0x1234_5678_ffff_fffe, 3, 0);
    assert_eq!((value, old), (0x1234_5678_0000_0001, 0xffff_fffe));
}

#[test]
fn atomic_exchange() {
    assert_eq!(run_atomic(BPF_DW, BPF_XCHG, 5, 9, 0), (9, 0, 5));
    assert_eq!(
        run_atomic(
            BPF_W,
            BPF_XCHG,
            0xaaaa_aaaa_0000_0005,
            0xffff_ffff_0000_0009,
            0
        ),
        (0xaaaa_aaaa_0000_0009, 0, 5)
    );
}

#[test]
fn atomic_compare_exchange_success_and_failure() {
    // Success: memory == r0, so memory = src; r0 = old.
    assert_eq!(run_atomic(BPF_DW, BPF_CMPXCHG, 5, 9, 5), (9, 5, 9));
    // Failure: memory unchanged; r0 = old.
    assert_eq!(run_atomic(BPF_DW, BPF_CMPXCHG, 5, 9, 6), (5, 5, 9));
    // 32-bit compares only the low half of r0 and zero-extends the old value into r0.
    assert_eq!(
        run_atomic(
            BPF_W,
            BPF_CMPXCHG,
            0x1111_1111_0000_0005,
            9,
            0xffff_ffff_0000_0005
        ),
        (0x1111_1111_0000_0009, 5, 9)
    );
    assert_eq!(
        run_atomic(BPF_W, BPF_CMPXCHG, 0x1111_1111_0000_0005, 9, 4),
        (0x1111_1111_0000_0005, 5, 9)
    );
}

// ---- Calls ----

#[test]
fn helpers_and_kfuncs_reach_the_externals() {
    let insns = vec![
        mov64_imm(1, 1),
        mov64_imm(2, 2),
        mov64_imm(3, 3),
        mov64_imm(4, 4),
        mov64_imm(5, 5),
        call_helper(7),
        mov64_reg(6, 0),
        call_kfunc(3),
        alu64_reg(BPF_ADD, 0, 6),
        exit(),
    ];
    let mut calls = Vec::new();
    let mut record = |kind: CallKind, id: i32, args: [u64; 5], _: &mut Memory| {
        calls.push((kind, id, args));
        Ok(if kind == CallKind::Helper { 100 } else { 20 })
    };
    assert_eq!(
        run_with(insns, &mut Memory::new(), &mut record, [0; 5]),
        Ok(120)
    );
    // Once on the JIT at each optimisation, once on the interpreter.
    let once = [
        (CallKind::Helper, 7, [1, 2, 3, 4, 5]),
        (CallKind::Kfunc, 3, [1, 2, 3, 4, 5]),
    ];
    assert_eq!(calls, [once, once, once].concat());
}

#[test]
fn failing_external_call_reports_pc_kind_and_id() {
    let insns = vec![mov64_imm(0, 0), call_kfunc(9), exit()];
    assert_eq!(
        run(insns),
        Err(ExecError::Call {
            pc: 1,
            kind: CallKind::Kfunc,
            id: 9,
            source: CallError::Unbound
        })
    );
}

#[test]
fn externals_can_follow_pointers_into_the_stack() {
    let insns = vec![
        st(BPF_DW, 10, -8, 1234),
        mov64_reg(1, 10),
        alu64_imm(BPF_ADD, 1, -8),
        call_helper(1),
        ldx(BPF_DW, 0, 10, -8),
        exit(),
    ];
    let mut double = |_: CallKind, _: i32, args: [u64; 5], memory: &mut Memory| {
        let value = memory.load(args[0], 8)?;
        memory.store(args[0], 8, value * 2)?;
        Ok(0)
    };
    assert_eq!(
        run_with(insns, &mut Memory::new(), &mut double, [0; 5]),
        Ok(2468)
    );
}

#[test]
fn local_calls_get_a_fresh_frame_and_preserve_callee_saved_registers() {
    let insns = vec![
        // main
        mov64_imm(6, 6),
        mov64_imm(7, 7),
        mov64_imm(8, 8),
        mov64_imm(9, 9),
        st(BPF_DW, 10, -8, 1000),
        mov64_imm(1, 5),
        call_local(8), // -> 14
        // r0 = callee result + r6..r9 + caller's stack slot
        alu64_reg(BPF_ADD, 0, 6),
        alu64_reg(BPF_ADD, 0, 7),
        alu64_reg(BPF_ADD, 0, 8),
        alu64_reg(BPF_ADD, 0, 9),
        ldx(BPF_DW, 1, 10, -8),
        alu64_reg(BPF_ADD, 0, 1),
        exit(),
        // callee at 14: clobbers r6..r9 and its own stack slot, returns r1 * 10 + its old slot.
        ldx(BPF_DW, 0, 10, -8), // fresh frame: zero
        mov64_imm(6, 0),
        mov64_imm(7, 0),
        mov64_imm(8, 0),
        mov64_imm(9, 0),
        st(BPF_DW, 10, -8, 77),
        alu64_imm(BPF_MUL, 1, 10),
        alu64_reg(BPF_ADD, 0, 1),
        exit(),
    ];
    assert_eq!(run(insns), Ok(50 + 6 + 7 + 8 + 9 + 1000));
}

#[test]
fn callee_can_access_the_callers_stack_through_a_pointer() {
    let insns = vec![
        st(BPF_DW, 10, -8, 5),
        mov64_reg(1, 10),
        alu64_imm(BPF_ADD, 1, -8),
        call_local(2),
        ldx(BPF_DW, 0, 10, -8),
        exit(),
        // callee: *r1 += 1, r10 differs from the caller's
        ldx(BPF_DW, 2, 1, 0),
        alu64_imm(BPF_ADD, 2, 1),
        stx(BPF_DW, 1, 2, 0),
        exit(),
    ];
    assert_eq!(run(insns), Ok(6));
}

#[test]
fn call_depth_is_limited() {
    // f(n) = n == 0 ? 0 : 1 + f(n - 1)
    let recursive = |n: i32| {
        vec![
            mov64_imm(1, n),
            call_local(1),
            exit(),
            mov64_imm(0, 0),
            jmp_imm(BPF_JEQ, 1, 0, 5),
            mov64_reg(6, 1),
            alu64_imm(BPF_SUB, 1, 1),
            call_local(-5),
            alu64_imm(BPF_ADD, 0, 1),
            mov64_reg(1, 6),
            exit(),
        ]
    };
    // Main plus n + 1 nested frames of f.
    let deepest_ok = (MAX_CALL_DEPTH - 2) as i32;
    assert_eq!(run(recursive(deepest_ok)), Ok(deepest_ok as u64));
    assert_eq!(
        run(recursive(deepest_ok + 1)),
        Err(ExecError::CallDepthExceeded { pc: 7 })
    );
}

#[test]
fn run_can_start_at_a_subprogram() {
    let insns = vec![mov64_imm(0, 1), exit(), mov64_reg(0, 2), exit()];
    let program = Program::new(insns).unwrap();
    let r0 = Interpreter::run(
        &program,
        2,
        [0, 77, 0, 0, 0],
        &mut Memory::new(),
        &mut NoExternals,
        BUDGET,
    );
    assert_eq!(r0, Ok(77));
    let program = Program::new(program_with_lddw()).unwrap();
    let entry_in_lddw_tail = Interpreter::run(
        &program,
        1,
        [0; 5],
        &mut Memory::new(),
        &mut NoExternals,
        BUDGET,
    );
    assert_eq!(
        entry_in_lddw_tail,
        Err(ExecError::InvalidEntry { entry_pc: 1 })
    );
}

fn program_with_lddw() -> Vec<Insn> {
    program(&[&lddw(0, 1), &[exit()]])
}

// ---- Budget, determinism ----

#[test]
fn budget_counts_executed_instructions() {
    let insns = vec![mov64_imm(0, 1), mov64_imm(0, 2), exit()];
    let run = |budget| {
        run_both(
            insns.clone(),
            &mut Memory::new(),
            &mut NoExternals,
            [0; 5],
            budget,
        )
    };
    assert_eq!(run(3), Ok(2));
    assert_eq!(run(2), Err(ExecError::BudgetExhausted { pc: 2, budget: 2 }));
    assert_eq!(run(0), Err(ExecError::BudgetExhausted { pc: 0, budget: 0 }));
}

#[test]
fn budget_stops_at_the_same_instruction_inside_a_block() {
    // Stores before the budget runs out happen, later ones do not, on both engines.
    let insns = vec![
        st(BPF_DW, 10, -8, 1),
        st(BPF_DW, 10, -16, 2),
        st(BPF_DW, 10, -24, 3),
        ldx(BPF_DW, 0, 10, -8),
        exit(),
    ];
    for budget in 0..6 {
        let mut memory = Memory::new();
        let result = run_both(insns.clone(), &mut memory, &mut NoExternals, [0; 5], budget);
        let expected = if budget == 5 {
            Ok(1)
        } else {
            Err(ExecError::BudgetExhausted {
                pc: budget as usize,
                budget,
            })
        };
        assert_eq!(result, expected);
    }
}

#[test]
fn infinite_loop_exhausts_the_budget() {
    let insns = vec![mov64_imm(0, 0), ja(-1), exit()];
    let result = run_both(insns, &mut Memory::new(), &mut NoExternals, [0; 5], 1000);
    assert_eq!(
        result,
        Err(ExecError::BudgetExhausted {
            pc: 1,
            budget: 1000
        })
    );
}

#[test]
fn stack_is_zeroed_between_runs() {
    // Reads a slot before writing it: with a reused Memory the value must not leak.
    let program =
        Program::new(vec![ldx(BPF_DW, 0, 10, -8), st(BPF_DW, 10, -8, 99), exit()]).unwrap();
    let mut memory = Memory::new();
    for _ in 0..2 {
        let r0 = Interpreter::run(&program, 0, [0; 5], &mut memory, &mut NoExternals, BUDGET);
        assert_eq!(r0, Ok(0));
    }
}

#[test]
fn stack_addresses_follow_the_documented_layout() {
    let insns = vec![mov64_reg(0, 10), exit()];
    assert_eq!(run(insns), Ok(STACK_BASE + 512));
}

// ---- Structural validation ----

fn rejected(insns: Vec<Insn>) -> ProgramError {
    Program::new(insns).unwrap_err()
}

#[test]
fn program_validation_rejects_malformed_code_with_the_pc() {
    assert_eq!(rejected(vec![]), ProgramError::Empty);
    assert_eq!(
        rejected(vec![mov64_imm(0, 0), Insn::new(0xff, 0, 0, 0, 0), exit()]),
        ProgramError::UnknownOpcode { pc: 1, code: 0xff }
    );
    assert_eq!(
        rejected(vec![mov64_imm(11, 0), exit()]),
        ProgramError::InvalidRegister { pc: 0, reg: 11 }
    );
    assert_eq!(
        rejected(vec![mov64_reg(0, 12), exit()]),
        ProgramError::InvalidRegister { pc: 0, reg: 12 }
    );
    assert_eq!(
        rejected(vec![alu64_imm(BPF_ADD, 10, 8), exit()]),
        ProgramError::WritesFramePointer { pc: 0 }
    );
    assert_eq!(
        rejected(vec![ldx(BPF_DW, 10, 1, 0), exit()]),
        ProgramError::WritesFramePointer { pc: 0 }
    );
    assert_eq!(
        rejected(vec![atomic(BPF_DW, BPF_XCHG, 1, 10, 0), exit()]),
        ProgramError::WritesFramePointer { pc: 0 }
    );
    assert_eq!(
        rejected(vec![ja(5), exit()]),
        ProgramError::JumpOutOfBounds { pc: 0, target: 6 }
    );
    assert_eq!(
        rejected(vec![jmp_imm(BPF_JEQ, 0, 0, -3), exit()]),
        ProgramError::JumpOutOfBounds { pc: 0, target: -2 }
    );
    assert_eq!(
        rejected(vec![Insn::new(BPF_JMP32 | BPF_JA, 0, 0, 0, 100), exit()]),
        ProgramError::JumpOutOfBounds { pc: 0, target: 101 }
    );
    assert_eq!(
        rejected(vec![mov64_imm(0, 0)]),
        ProgramError::FallsOffEnd { pc: 0 }
    );
    assert_eq!(
        rejected(vec![exit(), jmp_imm(BPF_JEQ, 0, 0, -2)]),
        ProgramError::FallsOffEnd { pc: 1 }
    );
    assert_eq!(
        rejected(program(&[&[ja(1)], &lddw(0, 1), &[exit()]])),
        ProgramError::TargetInsideWideLoad { pc: 0, target: 2 }
    );
    assert_eq!(
        rejected(vec![exit(), Insn::new(LDDW, 0, 0, 0, 0)]),
        ProgramError::IncompleteWideLoad { pc: 1 }
    );
    assert_eq!(
        rejected(vec![
            Insn::new(LDDW, 1, BPF_PSEUDO_MAP_VALUE, 0, 3),
            Insn::new(0, 0, 0, 0, 0),
            exit()
        ]),
        ProgramError::UnrelocatedWideLoad { pc: 0, src: 2 }
    );
    assert_eq!(
        rejected(vec![call_local(-5), exit()]),
        ProgramError::CallOutOfBounds { pc: 0, target: -4 }
    );
    assert_eq!(
        rejected(vec![Insn::new(BPF_JMP32 | BPF_CALL, 0, 0, 0, 1), exit()]),
        ProgramError::UnknownOpcode {
            pc: 0,
            code: BPF_JMP32 | BPF_CALL
        }
    );
    assert_eq!(
        rejected(vec![
            Insn::new(BPF_LD | BPF_ABS | BPF_W, 0, 0, 0, 0),
            exit()
        ]),
        ProgramError::UnknownOpcode {
            pc: 0,
            code: BPF_LD | BPF_ABS | BPF_W
        }
    );
    // Unconditional jumps, calls and exit take no operand: the X source bit is undefined.
    for code in [
        BPF_JMP | BPF_JA | BPF_X,
        BPF_JMP32 | BPF_JA | BPF_X,
        CALL | BPF_X,
        EXIT | BPF_X,
    ] {
        assert_eq!(
            rejected(vec![Insn::new(code, 0, 0, 0, 0), exit()]),
            ProgramError::UnknownOpcode { pc: 0, code }
        );
    }
}

#[test]
fn program_validation_rejects_undefined_variants() {
    let invalid = |insn: Insn| {
        matches!(
            rejected(vec![insn, exit()]),
            ProgramError::InvalidField { pc: 0, .. }
        )
    };
    assert!(invalid(Insn::new(
        BPF_ALU | BPF_END | BPF_TO_BE,
        0,
        0,
        0,
        24
    )));
    assert!(invalid(Insn::new(
        BPF_ALU64 | BPF_END | BPF_TO_BE,
        0,
        0,
        0,
        16
    )));
    assert!(invalid(Insn::new(BPF_ALU | BPF_MOV | BPF_X, 0, 1, 32, 0)));
    assert!(invalid(Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, 0, 1, 7, 0)));
    assert!(invalid(Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 8, 0)));
    assert!(invalid(Insn::new(BPF_ALU64 | BPF_DIV | BPF_X, 0, 1, 2, 0)));
    assert!(invalid(Insn::new(BPF_ALU64 | BPF_ADD | BPF_X, 0, 1, 1, 0)));
    assert!(invalid(Insn::new(BPF_ALU64 | BPF_NEG | BPF_X, 0, 1, 0, 0)));
    assert!(invalid(Insn::new(BPF_LDX | BPF_MEMSX | BPF_DW, 0, 1, 0, 0)));
    assert!(invalid(atomic(BPF_H, i32::from(BPF_ADD), 1, 2, 0)));
    assert!(invalid(atomic(BPF_DW, 0x33, 1, 2, 0)));
    assert!(invalid(Insn::new(CALL, 0, 3, 0, 0)));
}
