//! Unverified, random programs never panic: they are either rejected by `Program::new` or run to
//! a value or a typed error.

use proptest::prelude::*;
use upsched_ebpf::insn::*;
use upsched_ebpf::program::clear_unused_fields;
use upsched_ebpf::{CallKind, ExecError, Interpreter, Memory, Program, ProgramError};

/// Every opcode byte the interpreter executes, so that most random programs get past
/// `Program::new` and actually run.
fn executable_opcodes() -> Vec<u8> {
    let mut codes = Vec::new();
    for class in [BPF_ALU, BPF_ALU64] {
        for op in [
            BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_OR, BPF_AND, BPF_LSH, BPF_RSH, BPF_NEG,
            BPF_MOD, BPF_XOR, BPF_MOV, BPF_ARSH, BPF_END,
        ] {
            codes.extend([class | op | BPF_K, class | op | BPF_X]);
        }
    }
    codes.extend([BPF_JMP | BPF_JA, BPF_JMP32 | BPF_JA]);
    for class in [BPF_JMP, BPF_JMP32] {
        for op in [
            BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET, BPF_JNE, BPF_JSGT, BPF_JSGE, BPF_JLT, BPF_JLE,
            BPF_JSLT, BPF_JSLE,
        ] {
            codes.extend([class | op | BPF_K, class | op | BPF_X]);
        }
    }
    codes.extend([CALL, EXIT, LDDW]);
    for size in [BPF_B, BPF_H, BPF_W, BPF_DW] {
        codes.extend([
            BPF_LDX | BPF_MEM | size,
            BPF_LDX | BPF_MEMSX | size,
            BPF_ST | BPF_MEM | size,
            BPF_STX | BPF_MEM | size,
            BPF_STX | BPF_ATOMIC | size,
        ]);
    }
    codes
}

fn insn() -> impl Strategy<Value = Insn> {
    (
        prop::sample::select(executable_opcodes()),
        0u8..=10,
        0u8..=10,
        // Mostly 0, which most opcodes require, else short jumps and the variant selectors.
        prop_oneof![
            6 => Just(0i16),
            3 => -8i16..8,
            1 => prop::sample::select(vec![1i16, 8, 16, 32, i16::MIN, i16::MAX]),
        ],
        prop_oneof![
            -8i32..8,
            any::<i32>(),
            prop::sample::select(vec![16, 32, 64, 0x01, 0x41, 0xe1, 0xf1, 0xa0, 0x51])
        ],
        0u8..3,
    )
        .prop_map(|(code, dst, src, off, imm, call_src)| {
            let src = if code == CALL {
                call_src
            } else if code == LDDW {
                0
            } else {
                src
            };
            Insn::new(code, dst, src, off, imm)
        })
}

/// Nudges each instruction's fields towards what `Program::new` accepts for its opcode, so that
/// most programs run instead of being rejected for one bad field among many.
fn make_mostly_valid(insns: &mut [Insn]) {
    let len = insns.len() as i64;
    for pc in 0..insns.len() {
        if pc > 0 && insns[pc - 1].is_lddw() {
            // The second slot of a 64-bit load carries only the upper immediate.
            insns[pc] = Insn::new(0, 0, 0, 0, insns[pc].imm);
            continue;
        }
        let insn = &mut insns[pc];
        let writes_dst = matches!(insn.class(), BPF_ALU | BPF_ALU64 | BPF_LDX) || insn.is_lddw();
        if writes_dst && insn.dst == 10 {
            insn.dst = insn.src % 10;
        }
        match insn.class() {
            BPF_ALU | BPF_ALU64 => match insn.op() {
                BPF_DIV | BPF_MOD => insn.off &= 1,
                BPF_MOV if insn.source() == BPF_X => {
                    insn.off = [0, 8, 16][insn.off.unsigned_abs() as usize % 3];
                }
                BPF_END => {
                    insn.imm = [16, 32, 64][insn.imm.unsigned_abs() as usize % 3];
                    if insn.class() == BPF_ALU64 {
                        insn.code &= !BPF_X;
                    }
                    insn.off = 0;
                }
                BPF_NEG => {
                    insn.code &= !BPF_X;
                    insn.off = 0;
                }
                _ => insn.off = 0,
            },
            BPF_JMP | BPF_JMP32 if insn.is_jump() => {
                // Any target inside the program, backwards included (the budget ends loops).
                let target = i64::from(insn.off).rem_euclid(len);
                let offset = (target - pc as i64 - 1) as i16;
                if insn.code == BPF_JMP32 | BPF_JA {
                    insn.imm = i32::from(offset);
                } else {
                    insn.off = offset;
                }
            }
            BPF_JMP if insn.is_pseudo_call() => {
                insn.imm = (i64::from(insn.imm).rem_euclid(len) - pc as i64 - 1) as i32;
            }
            BPF_STX if insn.mode() == BPF_ATOMIC => {
                insn.code = BPF_STX | BPF_ATOMIC | if insn.imm & 1 == 0 { BPF_W } else { BPF_DW };
                insn.imm = [0x00, 0x01, 0x40, 0x41, 0x50, 0x51, 0xa0, 0xa1, 0xe1, 0xf1]
                    [insn.imm.unsigned_abs() as usize % 10];
            }
            BPF_LDX if insn.mode() == BPF_MEMSX && insn.size() == BPF_DW => {
                insn.code = BPF_LDX | BPF_MEM | BPF_DW;
            }
            _ => {}
        }
        clear_unused_fields(insn);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn random_programs_never_panic(
        mut insns in prop::collection::vec(insn(), 1..48),
        repair in prop::bool::weighted(0.9),
        args in prop::array::uniform5(any::<u64>()),
        answer in any::<u64>(),
    ) {
        insns.push(Insn::new(EXIT, 0, 0, 0, 0));
        if repair {
            make_mostly_valid(&mut insns);
        }
        let program = match Program::new(insns) {
            Ok(program) => program,
            Err(error) => {
                // Rejection must name a real instruction and render.
                let _ = error.to_string();
                prop_assert!(!matches!(error, ProgramError::Empty));
                return Ok(());
            }
        };
        let mut memory = Memory::new();
        let ctx = memory.add_region("ctx", vec![0xa5; 64], true).unwrap();
        let rodata = memory.add_region(".rodata", vec![0x5a; 16], false).unwrap();
        let mut args = args;
        args[0] = memory.region_base(ctx) + args[0] % 72;
        args[1] = memory.region_base(rodata) + args[1] % 24;
        args[2] = Memory::frame_pointer(0) - args[2] % 520;
        let mut externals = |kind: CallKind, id: i32, call_args: [u64; 5], memory: &mut Memory| {
            // Follow the first argument like a helper taking a pointer would.
            let _ = memory.load(call_args[0], 8);
            if kind == CallKind::Kfunc && id < 0 {
                Err(upsched_ebpf::CallError::Unbound)
            } else {
                Ok(answer ^ id as u64)
            }
        };
        match Interpreter::run(&program, 0, args, &mut memory, &mut externals, 1_000) {
            Ok(_) => {}
            Err(error) => {
                prop_assert!(
                    !matches!(error, ExecError::PcOutOfBounds { .. } | ExecError::InvalidInstruction { .. }),
                    "validated program hit an engine guard: {error}"
                );
                let _ = error.to_string();
            }
        }
    }
}
