//! RFC 9669 §3: fields an instruction does not use SHALL be zero. `Program::new` rejects a
//! non-zero unused field with the instruction index, the field and the instruction's form; one
//! test per instruction class.

mod common;

use common::*;
use upsched_ebpf::insn::*;
use upsched_ebpf::{InsnField, Program, ProgramError};

/// Places `insn` at index 1 of a program that is valid once `field` is zero (every jump and
/// call below targets the `exit` at index 2), and checks that exactly that field is refused.
fn assert_refused(insn: Insn, field: InsnField) {
    let value = field.value(&insn);
    assert_ne!(value, 0, "test case {insn:?} leaves {field} zero");
    let with = |insn| vec![mov64_imm(0, 0), insn, exit()];
    let error = Program::new(with(insn)).expect_err("a non-zero unused field is refused");
    match &error {
        ProgramError::ReservedFieldSet {
            pc: 1,
            field: refused,
            value: refused_value,
            ..
        } if *refused == field && *refused_value == value => {}
        other => panic!("{insn:?}: expected {field} = {value} refused at 1, got {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.starts_with("instruction 1: ")
            && message.contains(&format!("{field} is {value}"))
            && message.contains("RFC 9669"),
        "message names the index, the field and the rule: {message}"
    );
    let mut cleared = insn;
    field.clear(&mut cleared);
    Program::new(with(cleared)).expect("the same instruction with the field zero is accepted");
}

fn with_src(mut insn: Insn, src: u8) -> Insn {
    insn.src = src;
    insn
}

fn with_imm(mut insn: Insn, imm: i32) -> Insn {
    insn.imm = imm;
    insn
}

fn with_off(mut insn: Insn, off: i16) -> Insn {
    insn.off = off;
    insn
}

fn with_dst(mut insn: Insn, dst: u8) -> Insn {
    insn.dst = dst;
    insn
}

#[test]
fn alu_and_alu64_refuse_unused_fields() {
    use InsnField::*;
    for (class_imm, class_reg) in [
        (
            alu64_imm as fn(u8, u8, i32) -> Insn,
            alu64_reg as fn(u8, u8, u8) -> Insn,
        ),
        (alu32_imm, alu32_reg),
    ] {
        // Immediate operand: src is unused; register operand: imm is unused.
        for op in [BPF_ADD, BPF_SUB, BPF_MUL, BPF_OR, BPF_AND, BPF_XOR, BPF_MOV] {
            assert_refused(with_src(class_imm(op, 0, 1), 3), Src);
            assert_refused(with_imm(class_reg(op, 0, 1), 7), Imm);
        }
        assert_refused(with_src(class_imm(BPF_LSH, 0, 3), 1), Src);
        assert_refused(with_imm(class_reg(BPF_ARSH, 0, 1), -1), Imm);
        // Signed division keeps off 1 and is otherwise like its unsigned form.
        assert_refused(with_src(signed(class_imm(BPF_DIV, 0, 3)), 2), Src);
        assert_refused(with_imm(signed(class_reg(BPF_MOD, 0, 1)), 3), Imm);
        // Sign-extending move: off is the width, imm is unused.
        assert_refused(with_imm(with_off(class_reg(BPF_MOV, 0, 1), 8), 5), Imm);
        // Negation uses dst only.
        assert_refused(with_src(class_imm(BPF_NEG, 0, 0), 1), Src);
        assert_refused(class_imm(BPF_NEG, 0, 5), Imm);
    }
    // Byte swaps use dst and the width in imm; src and off are unused (be16/le16, bswap).
    for code in [
        BPF_ALU | BPF_END | BPF_TO_BE,
        BPF_ALU | BPF_END | BPF_TO_LE,
        BPF_ALU64 | BPF_END | BPF_TO_LE,
    ] {
        let swap16 = Insn::new(code, 0, 0, 0, 16);
        assert_refused(with_src(swap16, 2), Src);
        assert_refused(with_off(swap16, 3), Off);
    }
}

#[test]
fn jmp_and_jmp32_refuse_unused_fields() {
    use InsnField::*;
    for (cond_imm, cond_reg) in [
        (
            jmp_imm as fn(u8, u8, i32, i16) -> Insn,
            jmp_reg as fn(u8, u8, u8, i16) -> Insn,
        ),
        (jmp32_imm, jmp32_reg),
    ] {
        for op in [BPF_JEQ, BPF_JGT, BPF_JSET, BPF_JSLE] {
            assert_refused(with_src(cond_imm(op, 0, 1, 0), 1), Src);
            assert_refused(with_imm(cond_reg(op, 0, 1, 0), 9), Imm);
        }
    }
    // ja: offset in off; gotol (JMP32 | JA): offset in imm.
    let gotol = Insn::new(BPF_JMP32 | BPF_JA, 0, 0, 0, 0);
    for (jump, offset_field) in [(ja(0), Off), (gotol, Imm)] {
        assert_refused(with_dst(jump, 1), Dst);
        assert_refused(with_src(jump, 2), Src);
        let unused_offset = if offset_field == Off { Imm } else { Off };
        let mut other = jump;
        match unused_offset {
            Imm => other.imm = 1,
            _ => other.off = 1,
        }
        assert_refused(other, unused_offset);
    }
    // Calls: src selects helper, local or kfunc and imm names the callee; dst and off are unused.
    for call in [call_helper(1), call_local(0), call_kfunc(4)] {
        assert_refused(with_dst(call, 1), Dst);
        assert_refused(with_off(call, 2), Off);
    }
    // exit uses no field at all.
    assert_refused(with_dst(exit(), 1), Dst);
    assert_refused(with_src(exit(), 1), Src);
    assert_refused(with_off(exit(), 1), Off);
    assert_refused(with_imm(exit(), 1), Imm);
}

#[test]
fn ld_refuses_an_offset_on_a_64_bit_immediate_load() {
    let [first, second] = lddw(1, 0x1234_5678_9abc);
    let program = vec![with_off(first, 4), second, exit()];
    assert_eq!(
        Program::new(program).unwrap_err(),
        ProgramError::ReservedFieldSet {
            pc: 0,
            field: InsnField::Off,
            value: 4,
            form: "a 64-bit immediate load",
        }
    );
    Program::new(vec![first, second, exit()]).expect("the load without offset is accepted");
}

#[test]
fn ldx_refuses_an_immediate() {
    assert_refused(with_imm(ldx(BPF_DW, 0, 1, 8), 1), InsnField::Imm);
    assert_refused(with_imm(ldxsx(BPF_B, 0, 1, 0), -3), InsnField::Imm);
}

#[test]
fn st_refuses_a_source_register() {
    assert_refused(with_src(st(BPF_W, 10, -8, 1), 2), InsnField::Src);
}

#[test]
fn stx_refuses_an_immediate_except_on_atomics() {
    assert_refused(with_imm(stx(BPF_DW, 10, 1, -8), 1), InsnField::Imm);
    // Atomics use every field: imm is the operation.
    let fetch_add = atomic(BPF_DW, i32::from(BPF_ADD) | BPF_FETCH, 10, 1, -8);
    Program::new(vec![mov64_imm(1, 0), fetch_add, exit()]).expect("atomics use all fields");
}
