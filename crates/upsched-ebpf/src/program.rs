//! A structurally valid instruction sequence, ready for the interpreter.
//!
//! [`Program::new`] performs cheap per-instruction checks so that the interpreter's hot loop can
//! trust the shape of every instruction: opcodes are known, fields that select a variant hold a
//! defined value, registers exist, r10 is never written, jump and call targets land on an
//! instruction inside the program, 64-bit immediate loads are complete and relocated, and
//! execution cannot fall off the end, and every field the instruction does not use is zero (RFC 9669
//! §3: "unused fields SHALL be cleared to zero"; see [`unused_fields`]). It says nothing about memory safety or termination: those
//! are the verifier's business, and the interpreter guards them at run time anyway.

use crate::insn::*;

/// Number of registers r0..r10.
pub const REGISTER_COUNT: u8 = 11;
/// The read-only frame pointer.
pub const FRAME_POINTER: u8 = 10;

/// Why an instruction sequence is not an executable program. `pc` is the instruction index.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProgramError {
    #[error("program has no instructions")]
    Empty,
    #[error("instruction {pc}: unknown opcode {code:#04x}")]
    UnknownOpcode { pc: usize, code: u8 },
    #[error("instruction {pc}: {reason}")]
    InvalidField { pc: usize, reason: &'static str },
    #[error("instruction {pc}: register r{reg} does not exist")]
    InvalidRegister { pc: usize, reg: u8 },
    #[error("instruction {pc}: writes the read-only frame pointer r10")]
    WritesFramePointer { pc: usize },
    #[error("instruction {pc}: jump target {target} is outside the program")]
    JumpOutOfBounds { pc: usize, target: i64 },
    #[error("instruction {pc}: call target {target} is outside the program")]
    CallOutOfBounds { pc: usize, target: i64 },
    #[error("instruction {pc}: jump or call target {target} is the second slot of a 64-bit load")]
    TargetInsideWideLoad { pc: usize, target: usize },
    #[error("instruction {pc}: execution can continue past the last instruction")]
    FallsOffEnd { pc: usize },
    #[error("instruction {pc}: 64-bit immediate load is missing its second slot")]
    IncompleteWideLoad { pc: usize },
    #[error(
        "instruction {pc}: {field} is {value}, but {form} does not use it \
         (RFC 9669: unused fields must be zero)"
    )]
    ReservedFieldSet {
        pc: usize,
        field: InsnField,
        value: i32,
        form: &'static str,
    },
    #[error(
        "instruction {pc}: 64-bit immediate load has pseudo source {src}; \
         the loader must relocate it into a plain value first"
    )]
    UnrelocatedWideLoad { pc: usize, src: u8 },
}

/// A field of an instruction slot, as named in error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsnField {
    Dst,
    Src,
    Off,
    Imm,
}

impl InsnField {
    /// The field's value in `insn`, widened to `i32`.
    pub fn value(self, insn: &Insn) -> i32 {
        match self {
            InsnField::Dst => i32::from(insn.dst),
            InsnField::Src => i32::from(insn.src),
            InsnField::Off => i32::from(insn.off),
            InsnField::Imm => insn.imm,
        }
    }

    /// Sets the field to zero in `insn`.
    pub fn clear(self, insn: &mut Insn) {
        match self {
            InsnField::Dst => insn.dst = 0,
            InsnField::Src => insn.src = 0,
            InsnField::Off => insn.off = 0,
            InsnField::Imm => insn.imm = 0,
        }
    }
}

impl std::fmt::Display for InsnField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InsnField::Dst => "dst register",
            InsnField::Src => "src register",
            InsnField::Off => "offset",
            InsnField::Imm => "immediate",
        })
    }
}

/// The form of a (first-slot) instruction as RFC 9669 groups them, and the fields that form does
/// not use, which must be zero. Atomics use every field; the second slot of a 64-bit load is
/// checked on its own (only its immediate is used).
pub fn unused_fields(insn: &Insn) -> (&'static str, &'static [InsnField]) {
    use InsnField::*;
    let register_operand = insn.source() == BPF_X;
    match insn.class() {
        BPF_ALU | BPF_ALU64 => match insn.op() {
            BPF_NEG => ("a negation", &[Src, Off, Imm]),
            // The width is in imm; the source bit selects the byte order.
            BPF_END => ("a byte swap", &[Src, Off]),
            // off selects sign extension (register moves) or signed division.
            _ if register_operand => ("a register-operand ALU instruction", &[Imm]),
            _ => ("an immediate-operand ALU instruction", &[Src]),
        },
        BPF_JMP | BPF_JMP32 => match insn.op() {
            BPF_EXIT => ("exit", &[Dst, Src, Off, Imm]),
            // src tells helper, local and kfunc calls apart; imm names the callee.
            BPF_CALL => ("a call", &[Dst, Off]),
            BPF_JA if insn.class() == BPF_JMP => ("ja", &[Dst, Src, Imm]),
            BPF_JA => ("gotol", &[Dst, Src, Off]),
            _ if register_operand => ("a register-operand jump", &[Imm]),
            _ => ("an immediate-operand jump", &[Src]),
        },
        // src would name a pseudo source; Program::new requires relocated loads.
        BPF_LD => ("a 64-bit immediate load", &[Off]),
        BPF_LDX => ("a load", &[Imm]),
        BPF_ST => ("a store of an immediate", &[Src]),
        _ if insn.mode() == BPF_ATOMIC => ("an atomic operation", &[]),
        _ => ("a register store", &[Imm]),
    }
}

/// Zeroes the fields [`unused_fields`] names, e.g. to repair generated instructions.
pub fn clear_unused_fields(insn: &mut Insn) {
    for field in unused_fields(insn).1 {
        field.clear(insn);
    }
}

/// An instruction sequence that passed [`Program::new`]'s structural checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    insns: Vec<Insn>,
    /// `true` at the second slot of every 64-bit immediate load, which is data, not code.
    wide_load_tail: Vec<bool>,
}

impl Program {
    pub fn new(insns: Vec<Insn>) -> Result<Program, ProgramError> {
        if insns.is_empty() {
            return Err(ProgramError::Empty);
        }
        let wide_load_tail = mark_wide_load_tails(&insns)?;
        let program = Program {
            insns,
            wide_load_tail,
        };
        for pc in 0..program.insns.len() {
            if !program.wide_load_tail[pc] {
                program.check_insn(pc)?;
                check_unused_fields(pc, &program.insns[pc])?;
            }
        }
        Ok(program)
    }

    pub fn insns(&self) -> &[Insn] {
        &self.insns
    }

    /// Whether `pc` is the first slot of an instruction, i.e. a place execution may start.
    pub fn is_instruction_start(&self, pc: usize) -> bool {
        self.wide_load_tail.get(pc) == Some(&false)
    }

    fn check_insn(&self, pc: usize) -> Result<(), ProgramError> {
        let insn = self.insns[pc];
        let field = |reason| Err(ProgramError::InvalidField { pc, reason });
        match insn.class() {
            BPF_ALU | BPF_ALU64 => {
                check_alu(pc, &insn)?;
                check_register(pc, insn.dst)?;
                check_writable_register(pc, insn.dst)?;
                if insn.source() == BPF_X {
                    check_register(pc, insn.src)?;
                }
            }
            BPF_JMP | BPF_JMP32 => return self.check_jump_class(pc, &insn),
            BPF_LD => {
                if !insn.is_lddw() {
                    // Legacy packet access (ABS/IND) has no meaning for scheduler policies.
                    return Err(ProgramError::UnknownOpcode {
                        pc,
                        code: insn.code,
                    });
                }
                if insn.src != 0 {
                    return Err(ProgramError::UnrelocatedWideLoad { pc, src: insn.src });
                }
                let tail = self.insns[pc + 1];
                if (tail.code, tail.dst, tail.src, tail.off) != (0, 0, 0, 0) {
                    return field("second slot of a 64-bit load must have only an immediate");
                }
                check_register(pc, insn.dst)?;
                check_writable_register(pc, insn.dst)?;
                return self.check_falls_through_to(pc, pc + 2);
            }
            BPF_LDX => {
                match (insn.mode(), insn.size()) {
                    (BPF_MEM, _) => {}
                    (BPF_MEMSX, BPF_DW) => return field("sign-extending load of 8 bytes"),
                    (BPF_MEMSX, _) => {}
                    _ => {
                        return Err(ProgramError::UnknownOpcode {
                            pc,
                            code: insn.code,
                        });
                    }
                }
                check_register(pc, insn.dst)?;
                check_writable_register(pc, insn.dst)?;
                check_register(pc, insn.src)?;
            }
            BPF_ST => {
                if insn.mode() != BPF_MEM {
                    return Err(ProgramError::UnknownOpcode {
                        pc,
                        code: insn.code,
                    });
                }
                check_register(pc, insn.dst)?;
            }
            _ => {
                // BPF_STX
                match insn.mode() {
                    BPF_MEM => {}
                    BPF_ATOMIC => check_atomic(pc, &insn)?,
                    _ => {
                        return Err(ProgramError::UnknownOpcode {
                            pc,
                            code: insn.code,
                        });
                    }
                }
                check_register(pc, insn.dst)?;
                check_register(pc, insn.src)?;
            }
        }
        self.check_falls_through_to(pc, pc + 1)
    }

    fn check_jump_class(&self, pc: usize, insn: &Insn) -> Result<(), ProgramError> {
        let wide = insn.class() == BPF_JMP;
        let takes_no_operand = matches!(insn.op(), BPF_JA | BPF_CALL | BPF_EXIT);
        if takes_no_operand && insn.source() != BPF_K {
            return Err(ProgramError::UnknownOpcode {
                pc,
                code: insn.code,
            });
        }
        match insn.op() {
            BPF_EXIT if wide => return Ok(()),
            BPF_CALL if wide => {
                return match insn.src {
                    0 | BPF_PSEUDO_KFUNC_CALL => self.check_falls_through_to(pc, pc + 1),
                    BPF_PSEUDO_CALL => {
                        let target = pc as i64 + 1 + i64::from(insn.imm);
                        self.check_target(
                            pc,
                            target,
                            ProgramError::CallOutOfBounds { pc, target },
                        )?;
                        self.check_falls_through_to(pc, pc + 1)
                    }
                    _ => Err(ProgramError::InvalidField {
                        pc,
                        reason: "call with unknown source (not helper, local or kfunc)",
                    }),
                };
            }
            BPF_JA => {
                let offset = if wide {
                    insn.off.into()
                } else {
                    insn.imm.into()
                };
                return self.check_jump_target(pc, offset);
            }
            BPF_JEQ | BPF_JGT | BPF_JGE | BPF_JSET | BPF_JNE | BPF_JSGT | BPF_JSGE | BPF_JLT
            | BPF_JLE | BPF_JSLT | BPF_JSLE => {}
            _ => {
                return Err(ProgramError::UnknownOpcode {
                    pc,
                    code: insn.code,
                });
            }
        }
        check_register(pc, insn.dst)?;
        if insn.source() == BPF_X {
            check_register(pc, insn.src)?;
        }
        self.check_jump_target(pc, insn.off.into())?;
        self.check_falls_through_to(pc, pc + 1)
    }

    fn check_jump_target(&self, pc: usize, offset: i64) -> Result<(), ProgramError> {
        let target = pc as i64 + 1 + offset;
        self.check_target(pc, target, ProgramError::JumpOutOfBounds { pc, target })
    }

    /// Checks that `target` is the first slot of an instruction; `outside` is the error for a
    /// target beyond either end of the program.
    fn check_target(
        &self,
        pc: usize,
        target: i64,
        outside: ProgramError,
    ) -> Result<(), ProgramError> {
        let index = usize::try_from(target)
            .ok()
            .filter(|&index| index < self.insns.len())
            .ok_or(outside)?;
        if self.wide_load_tail[index] {
            Err(ProgramError::TargetInsideWideLoad { pc, target: index })
        } else {
            Ok(())
        }
    }

    fn check_falls_through_to(&self, pc: usize, next: usize) -> Result<(), ProgramError> {
        if next < self.insns.len() {
            Ok(())
        } else {
            Err(ProgramError::FallsOffEnd { pc })
        }
    }
}

fn mark_wide_load_tails(insns: &[Insn]) -> Result<Vec<bool>, ProgramError> {
    let mut tails = vec![false; insns.len()];
    let mut pc = 0;
    while pc < insns.len() {
        if insns[pc].is_lddw() {
            if pc + 1 >= insns.len() {
                return Err(ProgramError::IncompleteWideLoad { pc });
            }
            tails[pc + 1] = true;
            pc += 2;
        } else {
            pc += 1;
        }
    }
    Ok(tails)
}

/// Runs after [`Program::check_insn`], so the opcode is known to be valid.
fn check_unused_fields(pc: usize, insn: &Insn) -> Result<(), ProgramError> {
    let (form, fields) = unused_fields(insn);
    match fields.iter().find(|field| field.value(insn) != 0) {
        Some(&field) => Err(ProgramError::ReservedFieldSet {
            pc,
            field,
            value: field.value(insn),
            form,
        }),
        None => Ok(()),
    }
}

fn check_register(pc: usize, reg: u8) -> Result<(), ProgramError> {
    if reg < REGISTER_COUNT {
        Ok(())
    } else {
        Err(ProgramError::InvalidRegister { pc, reg })
    }
}

fn check_writable_register(pc: usize, reg: u8) -> Result<(), ProgramError> {
    if reg == FRAME_POINTER {
        Err(ProgramError::WritesFramePointer { pc })
    } else {
        Ok(())
    }
}

fn check_alu(pc: usize, insn: &Insn) -> Result<(), ProgramError> {
    let wide = insn.class() == BPF_ALU64;
    let field = |reason| Err(ProgramError::InvalidField { pc, reason });
    match insn.op() {
        BPF_ADD | BPF_SUB | BPF_MUL | BPF_OR | BPF_AND | BPF_LSH | BPF_RSH | BPF_XOR | BPF_ARSH => {
            if insn.off != 0 {
                return field("offset must be 0");
            }
        }
        BPF_DIV | BPF_MOD => {
            // off 1 selects the signed variant.
            if insn.off != 0 && insn.off != 1 {
                return field("division offset must be 0 (unsigned) or 1 (signed)");
            }
        }
        BPF_NEG => {
            if insn.source() != BPF_K || insn.off != 0 {
                return field("negation takes no source operand");
            }
        }
        BPF_MOV => match (insn.source(), insn.off, wide) {
            (_, 0, _) | (BPF_X, 8 | 16, _) | (BPF_X, 32, true) => {}
            _ => return field("sign-extending move needs a register source and width 8, 16 or 32"),
        },
        BPF_END => {
            if wide && insn.source() != BPF_TO_LE {
                return field("64-bit byte swap must have source bit 0");
            }
            if !matches!(insn.imm, 16 | 32 | 64) {
                return field("byte swap width must be 16, 32 or 64");
            }
        }
        _ => {
            return Err(ProgramError::UnknownOpcode {
                pc,
                code: insn.code,
            });
        }
    }
    Ok(())
}

fn check_atomic(pc: usize, insn: &Insn) -> Result<(), ProgramError> {
    let field = |reason| Err(ProgramError::InvalidField { pc, reason });
    if insn.size() != BPF_W && insn.size() != BPF_DW {
        return field("atomic operations need a 4- or 8-byte width");
    }
    let plain_op = insn.imm & !BPF_FETCH;
    let known = insn.imm == BPF_XCHG
        || insn.imm == BPF_CMPXCHG
        || [BPF_ADD, BPF_OR, BPF_AND, BPF_XOR]
            .iter()
            .any(|&op| i32::from(op) == plain_op);
    if !known {
        return field("unknown atomic operation");
    }
    // Fetching variants write the old value back into the source register.
    if insn.imm & BPF_FETCH != 0 && insn.imm != BPF_CMPXCHG {
        check_writable_register(pc, insn.src)?;
    }
    Ok(())
}
