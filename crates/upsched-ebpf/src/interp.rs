//! The interpreter: executes a [`Program`] per RFC 9669.
//!
//! It runs programs that were never verified without undefined behaviour or panics: every memory
//! access goes through [`Memory`]'s bounds checks, the call chain is at most
//! [`MAX_CALL_DEPTH`] frames deep, and an instruction budget bounds the running time. Execution
//! is deterministic: the result depends only on the program, the arguments, the memory contents
//! and what the [`Externals`] answer.

use crate::insn::*;
use crate::memory::{MAX_CALL_DEPTH, Memory, MemoryFault};
use crate::program::Program;

/// Kind of an external call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallKind {
    /// `call N` with `src` 0: helper function number `N`.
    Helper,
    /// `call` with `src` 2 ([`BPF_PSEUDO_KFUNC_CALL`]).
    Kfunc,
}

/// Why an external function failed; the interpreter adds where it was called from.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("no function is bound to this call")]
    Unbound,
    #[error("argument {index} is invalid: {reason}")]
    InvalidArgument { index: usize, reason: String },
    #[error(transparent)]
    Memory(#[from] MemoryFault),
    #[error("{0}")]
    Failed(String),
}

/// Functions a program can call that are not part of it: helpers and kfuncs, supplied by the
/// embedder.
///
/// `id` is the call instruction's `imm` as the program holds it. In an object file a kfunc
/// call's `imm` is meaningless until relocated; the loader is meant to rewrite it into an index
/// into a table of bound Rust functions (one entry per distinct kfunc name the program uses), so
/// that an implementation can dispatch with a plain slice index instead of a name lookup.
/// Helpers keep their kernel helper numbers.
///
/// `args` are r1..r5; the returned value goes into r0. `memory` gives access to everything the
/// program can reach, including its live stack frames, so pointer arguments can be followed.
pub trait Externals {
    fn call(
        &mut self,
        kind: CallKind,
        id: i32,
        args: [u64; 5],
        memory: &mut Memory,
    ) -> Result<u64, CallError>;
}

/// Any suitable closure is an [`Externals`].
impl<F> Externals for F
where
    F: FnMut(CallKind, i32, [u64; 5], &mut Memory) -> Result<u64, CallError>,
{
    fn call(
        &mut self,
        kind: CallKind,
        id: i32,
        args: [u64; 5],
        memory: &mut Memory,
    ) -> Result<u64, CallError> {
        self(kind, id, args, memory)
    }
}

/// Externals for programs that call nothing: every call fails with [`CallError::Unbound`].
#[derive(Clone, Copy, Debug, Default)]
pub struct NoExternals;

impl Externals for NoExternals {
    fn call(&mut self, _: CallKind, _: i32, _: [u64; 5], _: &mut Memory) -> Result<u64, CallError> {
        Err(CallError::Unbound)
    }
}

/// Why a run stopped without returning. `pc` is the index of the offending instruction.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    #[error("instruction {pc}: {} of {size} bytes at {addr:#x} is outside writable memory",
        if *write { "write" } else { "read" })]
    MemoryAccess {
        pc: usize,
        addr: u64,
        size: usize,
        write: bool,
    },
    #[error("instruction {pc}: budget of {budget} instructions exhausted")]
    BudgetExhausted { pc: usize, budget: u64 },
    #[error("instruction {pc}: call would exceed the maximum call depth of {MAX_CALL_DEPTH}")]
    CallDepthExceeded { pc: usize },
    #[error("instruction {pc}: {kind:?} call {id} failed: {source}")]
    Call {
        pc: usize,
        kind: CallKind,
        id: i32,
        #[source]
        source: CallError,
    },
    #[error("entry point {entry_pc} is not the start of an instruction of the program")]
    InvalidEntry { entry_pc: usize },
    /// Cannot happen for a [`Program`], whose jumps were checked; kept so that an engine bug
    /// surfaces as an error instead of a panic.
    #[error("instruction {pc}: execution left the program")]
    PcOutOfBounds { pc: usize },
    /// Cannot happen for a [`Program`], whose opcodes were checked; see `PcOutOfBounds`.
    #[error("instruction {pc}: opcode {code:#04x} is not executable")]
    InvalidInstruction { pc: usize, code: u8 },
}

impl ExecError {
    fn memory(pc: usize, fault: MemoryFault) -> ExecError {
        ExecError::MemoryAccess {
            pc,
            addr: fault.addr,
            size: fault.size,
            write: fault.write,
        }
    }
}

/// Full opcodes the interpreter dispatches on, named like the kernel's `BPF_ALU64 | BPF_ADD |
/// BPF_K` spelled out (Rust patterns cannot contain `|` expressions).
mod opcode {
    use crate::insn::*;

    pub const ADD64_IMM: u8 = BPF_ALU64 | BPF_ADD | BPF_K;
    pub const ADD64_REG: u8 = BPF_ALU64 | BPF_ADD | BPF_X;
    pub const SUB64_IMM: u8 = BPF_ALU64 | BPF_SUB | BPF_K;
    pub const SUB64_REG: u8 = BPF_ALU64 | BPF_SUB | BPF_X;
    pub const MUL64_IMM: u8 = BPF_ALU64 | BPF_MUL | BPF_K;
    pub const MUL64_REG: u8 = BPF_ALU64 | BPF_MUL | BPF_X;
    pub const DIV64_IMM: u8 = BPF_ALU64 | BPF_DIV | BPF_K;
    pub const DIV64_REG: u8 = BPF_ALU64 | BPF_DIV | BPF_X;
    pub const OR64_IMM: u8 = BPF_ALU64 | BPF_OR | BPF_K;
    pub const OR64_REG: u8 = BPF_ALU64 | BPF_OR | BPF_X;
    pub const AND64_IMM: u8 = BPF_ALU64 | BPF_AND | BPF_K;
    pub const AND64_REG: u8 = BPF_ALU64 | BPF_AND | BPF_X;
    pub const LSH64_IMM: u8 = BPF_ALU64 | BPF_LSH | BPF_K;
    pub const LSH64_REG: u8 = BPF_ALU64 | BPF_LSH | BPF_X;
    pub const RSH64_IMM: u8 = BPF_ALU64 | BPF_RSH | BPF_K;
    pub const RSH64_REG: u8 = BPF_ALU64 | BPF_RSH | BPF_X;
    pub const NEG64: u8 = BPF_ALU64 | BPF_NEG;
    pub const MOD64_IMM: u8 = BPF_ALU64 | BPF_MOD | BPF_K;
    pub const MOD64_REG: u8 = BPF_ALU64 | BPF_MOD | BPF_X;
    pub const XOR64_IMM: u8 = BPF_ALU64 | BPF_XOR | BPF_K;
    pub const XOR64_REG: u8 = BPF_ALU64 | BPF_XOR | BPF_X;
    pub const MOV64_IMM: u8 = BPF_ALU64 | BPF_MOV | BPF_K;
    pub const MOV64_REG: u8 = BPF_ALU64 | BPF_MOV | BPF_X;
    pub const ARSH64_IMM: u8 = BPF_ALU64 | BPF_ARSH | BPF_K;
    pub const ARSH64_REG: u8 = BPF_ALU64 | BPF_ARSH | BPF_X;
    pub const BSWAP: u8 = BPF_ALU64 | BPF_END | BPF_TO_LE;

    pub const ADD32_IMM: u8 = BPF_ALU | BPF_ADD | BPF_K;
    pub const ADD32_REG: u8 = BPF_ALU | BPF_ADD | BPF_X;
    pub const SUB32_IMM: u8 = BPF_ALU | BPF_SUB | BPF_K;
    pub const SUB32_REG: u8 = BPF_ALU | BPF_SUB | BPF_X;
    pub const MUL32_IMM: u8 = BPF_ALU | BPF_MUL | BPF_K;
    pub const MUL32_REG: u8 = BPF_ALU | BPF_MUL | BPF_X;
    pub const DIV32_IMM: u8 = BPF_ALU | BPF_DIV | BPF_K;
    pub const DIV32_REG: u8 = BPF_ALU | BPF_DIV | BPF_X;
    pub const OR32_IMM: u8 = BPF_ALU | BPF_OR | BPF_K;
    pub const OR32_REG: u8 = BPF_ALU | BPF_OR | BPF_X;
    pub const AND32_IMM: u8 = BPF_ALU | BPF_AND | BPF_K;
    pub const AND32_REG: u8 = BPF_ALU | BPF_AND | BPF_X;
    pub const LSH32_IMM: u8 = BPF_ALU | BPF_LSH | BPF_K;
    pub const LSH32_REG: u8 = BPF_ALU | BPF_LSH | BPF_X;
    pub const RSH32_IMM: u8 = BPF_ALU | BPF_RSH | BPF_K;
    pub const RSH32_REG: u8 = BPF_ALU | BPF_RSH | BPF_X;
    pub const NEG32: u8 = BPF_ALU | BPF_NEG;
    pub const MOD32_IMM: u8 = BPF_ALU | BPF_MOD | BPF_K;
    pub const MOD32_REG: u8 = BPF_ALU | BPF_MOD | BPF_X;
    pub const XOR32_IMM: u8 = BPF_ALU | BPF_XOR | BPF_K;
    pub const XOR32_REG: u8 = BPF_ALU | BPF_XOR | BPF_X;
    pub const MOV32_IMM: u8 = BPF_ALU | BPF_MOV | BPF_K;
    pub const MOV32_REG: u8 = BPF_ALU | BPF_MOV | BPF_X;
    pub const ARSH32_IMM: u8 = BPF_ALU | BPF_ARSH | BPF_K;
    pub const ARSH32_REG: u8 = BPF_ALU | BPF_ARSH | BPF_X;
    pub const TO_LE: u8 = BPF_ALU | BPF_END | BPF_TO_LE;
    pub const TO_BE: u8 = BPF_ALU | BPF_END | BPF_TO_BE;

    pub const JA: u8 = BPF_JMP | BPF_JA;
    pub const JEQ_IMM: u8 = BPF_JMP | BPF_JEQ | BPF_K;
    pub const JEQ_REG: u8 = BPF_JMP | BPF_JEQ | BPF_X;
    pub const JGT_IMM: u8 = BPF_JMP | BPF_JGT | BPF_K;
    pub const JGT_REG: u8 = BPF_JMP | BPF_JGT | BPF_X;
    pub const JGE_IMM: u8 = BPF_JMP | BPF_JGE | BPF_K;
    pub const JGE_REG: u8 = BPF_JMP | BPF_JGE | BPF_X;
    pub const JSET_IMM: u8 = BPF_JMP | BPF_JSET | BPF_K;
    pub const JSET_REG: u8 = BPF_JMP | BPF_JSET | BPF_X;
    pub const JNE_IMM: u8 = BPF_JMP | BPF_JNE | BPF_K;
    pub const JNE_REG: u8 = BPF_JMP | BPF_JNE | BPF_X;
    pub const JSGT_IMM: u8 = BPF_JMP | BPF_JSGT | BPF_K;
    pub const JSGT_REG: u8 = BPF_JMP | BPF_JSGT | BPF_X;
    pub const JSGE_IMM: u8 = BPF_JMP | BPF_JSGE | BPF_K;
    pub const JSGE_REG: u8 = BPF_JMP | BPF_JSGE | BPF_X;
    pub const JLT_IMM: u8 = BPF_JMP | BPF_JLT | BPF_K;
    pub const JLT_REG: u8 = BPF_JMP | BPF_JLT | BPF_X;
    pub const JLE_IMM: u8 = BPF_JMP | BPF_JLE | BPF_K;
    pub const JLE_REG: u8 = BPF_JMP | BPF_JLE | BPF_X;
    pub const JSLT_IMM: u8 = BPF_JMP | BPF_JSLT | BPF_K;
    pub const JSLT_REG: u8 = BPF_JMP | BPF_JSLT | BPF_X;
    pub const JSLE_IMM: u8 = BPF_JMP | BPF_JSLE | BPF_K;
    pub const JSLE_REG: u8 = BPF_JMP | BPF_JSLE | BPF_X;

    pub const GOTOL: u8 = BPF_JMP32 | BPF_JA;
    pub const JEQ32_IMM: u8 = BPF_JMP32 | BPF_JEQ | BPF_K;
    pub const JEQ32_REG: u8 = BPF_JMP32 | BPF_JEQ | BPF_X;
    pub const JGT32_IMM: u8 = BPF_JMP32 | BPF_JGT | BPF_K;
    pub const JGT32_REG: u8 = BPF_JMP32 | BPF_JGT | BPF_X;
    pub const JGE32_IMM: u8 = BPF_JMP32 | BPF_JGE | BPF_K;
    pub const JGE32_REG: u8 = BPF_JMP32 | BPF_JGE | BPF_X;
    pub const JSET32_IMM: u8 = BPF_JMP32 | BPF_JSET | BPF_K;
    pub const JSET32_REG: u8 = BPF_JMP32 | BPF_JSET | BPF_X;
    pub const JNE32_IMM: u8 = BPF_JMP32 | BPF_JNE | BPF_K;
    pub const JNE32_REG: u8 = BPF_JMP32 | BPF_JNE | BPF_X;
    pub const JSGT32_IMM: u8 = BPF_JMP32 | BPF_JSGT | BPF_K;
    pub const JSGT32_REG: u8 = BPF_JMP32 | BPF_JSGT | BPF_X;
    pub const JSGE32_IMM: u8 = BPF_JMP32 | BPF_JSGE | BPF_K;
    pub const JSGE32_REG: u8 = BPF_JMP32 | BPF_JSGE | BPF_X;
    pub const JLT32_IMM: u8 = BPF_JMP32 | BPF_JLT | BPF_K;
    pub const JLT32_REG: u8 = BPF_JMP32 | BPF_JLT | BPF_X;
    pub const JLE32_IMM: u8 = BPF_JMP32 | BPF_JLE | BPF_K;
    pub const JLE32_REG: u8 = BPF_JMP32 | BPF_JLE | BPF_X;
    pub const JSLT32_IMM: u8 = BPF_JMP32 | BPF_JSLT | BPF_K;
    pub const JSLT32_REG: u8 = BPF_JMP32 | BPF_JSLT | BPF_X;
    pub const JSLE32_IMM: u8 = BPF_JMP32 | BPF_JSLE | BPF_K;
    pub const JSLE32_REG: u8 = BPF_JMP32 | BPF_JSLE | BPF_X;

    pub const LDX_B: u8 = BPF_LDX | BPF_MEM | BPF_B;
    pub const LDX_H: u8 = BPF_LDX | BPF_MEM | BPF_H;
    pub const LDX_W: u8 = BPF_LDX | BPF_MEM | BPF_W;
    pub const LDX_DW: u8 = BPF_LDX | BPF_MEM | BPF_DW;
    pub const LDXSX_B: u8 = BPF_LDX | BPF_MEMSX | BPF_B;
    pub const LDXSX_H: u8 = BPF_LDX | BPF_MEMSX | BPF_H;
    pub const LDXSX_W: u8 = BPF_LDX | BPF_MEMSX | BPF_W;
    pub const ST_B: u8 = BPF_ST | BPF_MEM | BPF_B;
    pub const ST_H: u8 = BPF_ST | BPF_MEM | BPF_H;
    pub const ST_W: u8 = BPF_ST | BPF_MEM | BPF_W;
    pub const ST_DW: u8 = BPF_ST | BPF_MEM | BPF_DW;
    pub const STX_B: u8 = BPF_STX | BPF_MEM | BPF_B;
    pub const STX_H: u8 = BPF_STX | BPF_MEM | BPF_H;
    pub const STX_W: u8 = BPF_STX | BPF_MEM | BPF_W;
    pub const STX_DW: u8 = BPF_STX | BPF_MEM | BPF_DW;
    pub const ATOMIC_W: u8 = BPF_STX | BPF_ATOMIC | BPF_W;
    pub const ATOMIC_DW: u8 = BPF_STX | BPF_ATOMIC | BPF_DW;
}

/// Callee-saved state of a caller while a bpf-to-bpf callee runs.
#[derive(Clone, Copy, Default)]
struct CallerFrame {
    return_pc: usize,
    /// r6..r9
    callee_saved: [u64; 4],
}

/// Executes programs. Stateless: all per-run state lives on the Rust stack and in the
/// [`Memory`] passed to [`Interpreter::run`], so one [`Program`] can run on many threads at once.
pub struct Interpreter;

impl Interpreter {
    /// Runs the function starting at `entry_pc` with r1..r5 = `args` and returns r0 at its
    /// `exit`. At most `budget` instructions are executed.
    pub fn run(
        program: &Program,
        entry_pc: usize,
        args: [u64; 5],
        memory: &mut Memory,
        externals: &mut dyn Externals,
        budget: u64,
    ) -> Result<u64, ExecError> {
        use opcode::*;

        if !program.is_instruction_start(entry_pc) {
            return Err(ExecError::InvalidEntry { entry_pc });
        }
        let insns = program.insns();
        // 16 entries so that indexing with a 4-bit register field needs no bounds check;
        // r11..r15 are never named by a validated program.
        let mut regs = [0u64; 16];
        regs[1..6].copy_from_slice(&args);
        regs[10] = Memory::frame_pointer(0);
        memory.reset_stack();
        // One entry per frame below the deepest possible one.
        let mut callers = [CallerFrame::default(); MAX_CALL_DEPTH - 1];
        let mut depth = 0;
        let mut executed: u64 = 0;
        let mut pc = entry_pc;

        loop {
            let Some(&insn) = insns.get(pc) else {
                return Err(ExecError::PcOutOfBounds { pc });
            };
            if executed == budget {
                return Err(ExecError::BudgetExhausted { pc, budget });
            }
            executed += 1;
            let dst = usize::from(insn.dst & 0x0f);
            let src = usize::from(insn.src & 0x0f);
            // K-form operands: ALU64 and JMP sign-extend imm to 64 bits, the 32-bit forms use it
            // as is.
            let imm64 = i64::from(insn.imm) as u64;
            let imm32 = insn.imm as u32;
            let this_pc = pc;
            pc += 1;
            let mem_fault = |fault| ExecError::memory(this_pc, fault);

            match insn.code {
                ADD64_IMM => regs[dst] = regs[dst].wrapping_add(imm64),
                ADD64_REG => regs[dst] = regs[dst].wrapping_add(regs[src]),
                SUB64_IMM => regs[dst] = regs[dst].wrapping_sub(imm64),
                SUB64_REG => regs[dst] = regs[dst].wrapping_sub(regs[src]),
                MUL64_IMM => regs[dst] = regs[dst].wrapping_mul(imm64),
                MUL64_REG => regs[dst] = regs[dst].wrapping_mul(regs[src]),
                DIV64_IMM => regs[dst] = div64(regs[dst], imm64, insn.off == 1),
                DIV64_REG => regs[dst] = div64(regs[dst], regs[src], insn.off == 1),
                OR64_IMM => regs[dst] |= imm64,
                OR64_REG => regs[dst] |= regs[src],
                AND64_IMM => regs[dst] &= imm64,
                AND64_REG => regs[dst] &= regs[src],
                LSH64_IMM => regs[dst] <<= imm64 & 63,
                LSH64_REG => regs[dst] <<= regs[src] & 63,
                RSH64_IMM => regs[dst] >>= imm64 & 63,
                RSH64_REG => regs[dst] >>= regs[src] & 63,
                NEG64 => regs[dst] = regs[dst].wrapping_neg(),
                MOD64_IMM => regs[dst] = mod64(regs[dst], imm64, insn.off == 1),
                MOD64_REG => regs[dst] = mod64(regs[dst], regs[src], insn.off == 1),
                XOR64_IMM => regs[dst] ^= imm64,
                XOR64_REG => regs[dst] ^= regs[src],
                MOV64_IMM => regs[dst] = imm64,
                MOV64_REG => regs[dst] = sign_extend(regs[src], insn.off),
                ARSH64_IMM => regs[dst] = ((regs[dst] as i64) >> (imm64 & 63)) as u64,
                ARSH64_REG => regs[dst] = ((regs[dst] as i64) >> (regs[src] & 63)) as u64,
                BSWAP => regs[dst] = swap_bytes(regs[dst], insn.imm),

                ADD32_IMM => regs[dst] = u64::from((regs[dst] as u32).wrapping_add(imm32)),
                ADD32_REG => regs[dst] = alu32(regs[dst], regs[src], u32::wrapping_add),
                SUB32_IMM => regs[dst] = u64::from((regs[dst] as u32).wrapping_sub(imm32)),
                SUB32_REG => regs[dst] = alu32(regs[dst], regs[src], u32::wrapping_sub),
                MUL32_IMM => regs[dst] = u64::from((regs[dst] as u32).wrapping_mul(imm32)),
                MUL32_REG => regs[dst] = alu32(regs[dst], regs[src], u32::wrapping_mul),
                DIV32_IMM => regs[dst] = div32(regs[dst], u64::from(imm32), insn.off == 1),
                DIV32_REG => regs[dst] = div32(regs[dst], regs[src], insn.off == 1),
                OR32_IMM => regs[dst] = u64::from(regs[dst] as u32 | imm32),
                OR32_REG => regs[dst] = u64::from(regs[dst] as u32 | regs[src] as u32),
                AND32_IMM => regs[dst] = u64::from(regs[dst] as u32 & imm32),
                AND32_REG => regs[dst] = u64::from(regs[dst] as u32 & regs[src] as u32),
                LSH32_IMM => regs[dst] = u64::from((regs[dst] as u32) << (imm32 & 31)),
                LSH32_REG => regs[dst] = u64::from((regs[dst] as u32) << (regs[src] & 31)),
                RSH32_IMM => regs[dst] = u64::from((regs[dst] as u32) >> (imm32 & 31)),
                RSH32_REG => regs[dst] = u64::from((regs[dst] as u32) >> (regs[src] & 31)),
                NEG32 => regs[dst] = u64::from((regs[dst] as u32).wrapping_neg()),
                MOD32_IMM => regs[dst] = mod32(regs[dst], u64::from(imm32), insn.off == 1),
                MOD32_REG => regs[dst] = mod32(regs[dst], regs[src], insn.off == 1),
                XOR32_IMM => regs[dst] = u64::from(regs[dst] as u32 ^ imm32),
                XOR32_REG => regs[dst] = u64::from(regs[dst] as u32 ^ regs[src] as u32),
                MOV32_IMM => regs[dst] = u64::from(imm32),
                MOV32_REG => regs[dst] = u64::from(sign_extend(regs[src], insn.off) as u32),
                ARSH32_IMM => regs[dst] = arsh32(regs[dst], imm32),
                ARSH32_REG => regs[dst] = arsh32(regs[dst], regs[src] as u32),
                // The target is little-endian, so converting to little-endian only truncates.
                TO_LE => regs[dst] = truncate(regs[dst], insn.imm),
                TO_BE => regs[dst] = swap_bytes(regs[dst], insn.imm),

                JA => jump_if(&mut pc, insn.off, true),
                JEQ_IMM => jump_if(&mut pc, insn.off, regs[dst] == imm64),
                JEQ_REG => jump_if(&mut pc, insn.off, regs[dst] == regs[src]),
                JGT_IMM => jump_if(&mut pc, insn.off, regs[dst] > imm64),
                JGT_REG => jump_if(&mut pc, insn.off, regs[dst] > regs[src]),
                JGE_IMM => jump_if(&mut pc, insn.off, regs[dst] >= imm64),
                JGE_REG => jump_if(&mut pc, insn.off, regs[dst] >= regs[src]),
                JSET_IMM => jump_if(&mut pc, insn.off, regs[dst] & imm64 != 0),
                JSET_REG => jump_if(&mut pc, insn.off, regs[dst] & regs[src] != 0),
                JNE_IMM => jump_if(&mut pc, insn.off, regs[dst] != imm64),
                JNE_REG => jump_if(&mut pc, insn.off, regs[dst] != regs[src]),
                JSGT_IMM => jump_if(&mut pc, insn.off, regs[dst] as i64 > imm64 as i64),
                JSGT_REG => jump_if(&mut pc, insn.off, regs[dst] as i64 > regs[src] as i64),
                JSGE_IMM => jump_if(&mut pc, insn.off, regs[dst] as i64 >= imm64 as i64),
                JSGE_REG => jump_if(&mut pc, insn.off, regs[dst] as i64 >= regs[src] as i64),
                JLT_IMM => jump_if(&mut pc, insn.off, regs[dst] < imm64),
                JLT_REG => jump_if(&mut pc, insn.off, regs[dst] < regs[src]),
                JLE_IMM => jump_if(&mut pc, insn.off, regs[dst] <= imm64),
                JLE_REG => jump_if(&mut pc, insn.off, regs[dst] <= regs[src]),
                JSLT_IMM => jump_if(&mut pc, insn.off, (regs[dst] as i64) < imm64 as i64),
                JSLT_REG => jump_if(&mut pc, insn.off, (regs[dst] as i64) < regs[src] as i64),
                JSLE_IMM => jump_if(&mut pc, insn.off, regs[dst] as i64 <= imm64 as i64),
                JSLE_REG => jump_if(&mut pc, insn.off, regs[dst] as i64 <= regs[src] as i64),

                GOTOL => pc = pc.wrapping_add_signed(insn.imm as isize),
                JEQ32_IMM => jump_if(&mut pc, insn.off, regs[dst] as u32 == imm32),
                JEQ32_REG => jump_if(&mut pc, insn.off, regs[dst] as u32 == regs[src] as u32),
                JGT32_IMM => jump_if(&mut pc, insn.off, regs[dst] as u32 > imm32),
                JGT32_REG => jump_if(&mut pc, insn.off, regs[dst] as u32 > regs[src] as u32),
                JGE32_IMM => jump_if(&mut pc, insn.off, regs[dst] as u32 >= imm32),
                JGE32_REG => jump_if(&mut pc, insn.off, regs[dst] as u32 >= regs[src] as u32),
                JSET32_IMM => jump_if(&mut pc, insn.off, regs[dst] as u32 & imm32 != 0),
                JSET32_REG => jump_if(&mut pc, insn.off, regs[dst] as u32 & regs[src] as u32 != 0),
                JNE32_IMM => jump_if(&mut pc, insn.off, regs[dst] as u32 != imm32),
                JNE32_REG => jump_if(&mut pc, insn.off, regs[dst] as u32 != regs[src] as u32),
                JSGT32_IMM => jump_if(&mut pc, insn.off, regs[dst] as i32 > insn.imm),
                JSGT32_REG => jump_if(&mut pc, insn.off, regs[dst] as i32 > regs[src] as i32),
                JSGE32_IMM => jump_if(&mut pc, insn.off, regs[dst] as i32 >= insn.imm),
                JSGE32_REG => jump_if(&mut pc, insn.off, regs[dst] as i32 >= regs[src] as i32),
                JLT32_IMM => jump_if(&mut pc, insn.off, (regs[dst] as u32) < imm32),
                JLT32_REG => jump_if(&mut pc, insn.off, (regs[dst] as u32) < regs[src] as u32),
                JLE32_IMM => jump_if(&mut pc, insn.off, regs[dst] as u32 <= imm32),
                JLE32_REG => jump_if(&mut pc, insn.off, regs[dst] as u32 <= regs[src] as u32),
                JSLT32_IMM => jump_if(&mut pc, insn.off, (regs[dst] as i32) < insn.imm),
                JSLT32_REG => jump_if(&mut pc, insn.off, (regs[dst] as i32) < regs[src] as i32),
                JSLE32_IMM => jump_if(&mut pc, insn.off, regs[dst] as i32 <= insn.imm),
                JSLE32_REG => jump_if(&mut pc, insn.off, regs[dst] as i32 <= regs[src] as i32),

                LDDW => {
                    let Some(tail) = insns.get(pc) else {
                        return Err(ExecError::PcOutOfBounds { pc });
                    };
                    regs[dst] = wide_imm(&insn, tail);
                    pc += 1;
                }

                LDX_B | LDX_H | LDX_W | LDX_DW => {
                    let addr = regs[src].wrapping_add(i64::from(insn.off) as u64);
                    regs[dst] = memory
                        .load(addr, access_size(insn.code))
                        .map_err(mem_fault)?;
                }
                LDXSX_B | LDXSX_H | LDXSX_W => {
                    let addr = regs[src].wrapping_add(i64::from(insn.off) as u64);
                    let size = access_size(insn.code);
                    let value = memory.load(addr, size).map_err(mem_fault)?;
                    regs[dst] = sign_extend(value, (size * 8) as i16);
                }
                ST_B | ST_H | ST_W | ST_DW => {
                    let addr = regs[dst].wrapping_add(i64::from(insn.off) as u64);
                    memory
                        .store(addr, access_size(insn.code), imm64)
                        .map_err(mem_fault)?;
                }
                STX_B | STX_H | STX_W | STX_DW => {
                    let addr = regs[dst].wrapping_add(i64::from(insn.off) as u64);
                    memory
                        .store(addr, access_size(insn.code), regs[src])
                        .map_err(mem_fault)?;
                }
                ATOMIC_W | ATOMIC_DW => {
                    let addr = regs[dst].wrapping_add(i64::from(insn.off) as u64);
                    let size = access_size(insn.code);
                    let old = atomic(memory, addr, size, insn.imm, regs[src], regs[0])
                        .map_err(mem_fault)?;
                    if insn.imm == BPF_CMPXCHG {
                        regs[0] = old;
                    } else if insn.imm & BPF_FETCH != 0 {
                        regs[src] = old;
                    }
                }

                CALL => match insn.src {
                    BPF_PSEUDO_CALL => {
                        // Both limits are MAX_CALL_DEPTH; checking both keeps this panic-free
                        // without relying on that.
                        let caller = match callers.get_mut(depth) {
                            Some(caller) if memory.push_frame() => caller,
                            _ => return Err(ExecError::CallDepthExceeded { pc: this_pc }),
                        };
                        *caller = CallerFrame {
                            return_pc: pc,
                            callee_saved: [regs[6], regs[7], regs[8], regs[9]],
                        };
                        depth += 1;
                        regs[10] = Memory::frame_pointer(depth);
                        pc = pc.wrapping_add_signed(insn.imm as isize);
                    }
                    call_src => {
                        regs[0] = call_external(externals, memory, this_pc, &insn, call_src, &regs)?
                    }
                },
                EXIT => {
                    if depth == 0 {
                        return Ok(regs[0]);
                    }
                    depth -= 1;
                    let caller = callers[depth];
                    regs[6..10].copy_from_slice(&caller.callee_saved);
                    regs[10] = Memory::frame_pointer(depth);
                    memory.pop_frame();
                    pc = caller.return_pc;
                }

                code => return Err(ExecError::InvalidInstruction { pc: this_pc, code }),
            }
        }
    }
}

/// Calls a helper or kfunc. Out of line, being rare, so that the dispatch loop keeps its hot
/// values in registers.
#[inline(never)]
fn call_external(
    externals: &mut dyn Externals,
    memory: &mut Memory,
    pc: usize,
    insn: &Insn,
    call_src: u8,
    regs: &[u64; 16],
) -> Result<u64, ExecError> {
    let kind = if call_src == BPF_PSEUDO_KFUNC_CALL {
        CallKind::Kfunc
    } else {
        CallKind::Helper
    };
    let args = [regs[1], regs[2], regs[3], regs[4], regs[5]];
    externals
        .call(kind, insn.imm, args, memory)
        .map_err(|source| ExecError::Call {
            pc,
            kind,
            id: insn.imm,
            source,
        })
}

/// Takes a jump relative to the already incremented `pc` when `condition` holds.
#[inline(always)]
fn jump_if(pc: &mut usize, offset: i16, condition: bool) {
    if condition {
        *pc = pc.wrapping_add_signed(isize::from(offset));
    }
}

#[inline(always)]
fn alu32(dst: u64, src: u64, op: fn(u32, u32) -> u32) -> u64 {
    u64::from(op(dst as u32, src as u32))
}

/// Division by zero yields 0; signed `i64::MIN / -1` yields `i64::MIN` (RFC 9669 4.1).
#[inline(always)]
fn div64(dst: u64, divisor: u64, signed: bool) -> u64 {
    match (divisor, signed) {
        (0, _) => 0,
        (_, false) => dst / divisor,
        (_, true) => (dst as i64).wrapping_div(divisor as i64) as u64,
    }
}

/// Modulo by zero leaves the dividend; signed `i64::MIN % -1` is 0 and the result takes the
/// dividend's sign.
#[inline(always)]
fn mod64(dst: u64, divisor: u64, signed: bool) -> u64 {
    match (divisor, signed) {
        (0, _) => dst,
        (_, false) => dst % divisor,
        (_, true) => (dst as i64).wrapping_rem(divisor as i64) as u64,
    }
}

#[inline(always)]
fn div32(dst: u64, divisor: u64, signed: bool) -> u64 {
    let (dst, divisor) = (dst as u32, divisor as u32);
    u64::from(match (divisor, signed) {
        (0, _) => 0,
        (_, false) => dst / divisor,
        (_, true) => (dst as i32).wrapping_div(divisor as i32) as u32,
    })
}

/// Like [`mod64`] on the low halves; even modulo by zero zero-extends the result.
#[inline(always)]
fn mod32(dst: u64, divisor: u64, signed: bool) -> u64 {
    let (dst, divisor) = (dst as u32, divisor as u32);
    u64::from(match (divisor, signed) {
        (0, _) => dst,
        (_, false) => dst % divisor,
        (_, true) => (dst as i32).wrapping_rem(divisor as i32) as u32,
    })
}

#[inline(always)]
fn arsh32(dst: u64, amount: u32) -> u64 {
    u64::from(((dst as i32) >> (amount & 31)) as u32)
}

/// Sign-extends the low `bits` bits of `value` to 64 bits; `bits` 0 (plain move) and 64 keep
/// `value`.
#[inline(always)]
fn sign_extend(value: u64, bits: i16) -> u64 {
    match bits {
        8 => value as i8 as i64 as u64,
        16 => value as i16 as i64 as u64,
        32 => value as i32 as i64 as u64,
        _ => value,
    }
}

/// Keeps the low `bits` (16, 32 or 64) bits.
#[inline(always)]
fn truncate(value: u64, bits: i32) -> u64 {
    match bits {
        16 => u64::from(value as u16),
        32 => u64::from(value as u32),
        _ => value,
    }
}

/// Reverses the byte order of the low `bits` (16, 32 or 64) bits, zero-extending the result.
#[inline(always)]
fn swap_bytes(value: u64, bits: i32) -> u64 {
    match bits {
        16 => u64::from((value as u16).swap_bytes()),
        32 => u64::from((value as u32).swap_bytes()),
        _ => value.swap_bytes(),
    }
}

#[inline(always)]
fn access_size(code: u8) -> usize {
    match code & 0x18 {
        BPF_B => 1,
        BPF_H => 2,
        BPF_W => 4,
        _ => 8,
    }
}

/// Performs an atomic read-modify-write of `size` bytes at `addr` and returns the old value,
/// zero-extended. `expected` (r0) matters only for compare-and-exchange, which compares it with
/// the old value at the access width. Out of line, being rare, so that the dispatch loop keeps
/// its hot values in registers.
#[inline(never)]
fn atomic(
    memory: &mut Memory,
    addr: u64,
    size: usize,
    op: i32,
    operand: u64,
    expected: u64,
) -> Result<u64, MemoryFault> {
    let old = memory.load(addr, size)?;
    let new = match op {
        BPF_XCHG => operand,
        BPF_CMPXCHG if old == truncate(expected, size as i32 * 8) => operand,
        BPF_CMPXCHG => old,
        _ => match u8::try_from(op & !BPF_FETCH) {
            Ok(BPF_ADD) => old.wrapping_add(operand),
            Ok(BPF_OR) => old | operand,
            Ok(BPF_AND) => old & operand,
            // BPF_XOR, the only other operation a Program admits.
            _ => old ^ operand,
        },
    };
    // A failed compare-and-exchange writes the old value back, so every atomic operation needs
    // a writable location regardless of its outcome.
    memory.store(addr, size, new)?;
    Ok(old)
}

/// The result of ALU instruction `insn` (ALU or ALU64 class) on `dst` with source operand
/// `src` (the register's value; ignored for K forms, which use `imm`). Shares the helpers of the
/// dispatch loop, so the verifier folds constants with exactly the interpreter's semantics.
pub(crate) fn eval_alu(insn: &Insn, dst: u64, src: u64) -> u64 {
    let wide = insn.class() == BPF_ALU64;
    let operand = match (insn.source(), wide) {
        (BPF_X, _) => src,
        (_, true) => insn.imm as i64 as u64,
        (_, false) => u64::from(insn.imm as u32),
    };
    let signed = insn.off == 1;
    if wide {
        match insn.op() {
            BPF_ADD => dst.wrapping_add(operand),
            BPF_SUB => dst.wrapping_sub(operand),
            BPF_MUL => dst.wrapping_mul(operand),
            BPF_DIV => div64(dst, operand, signed),
            BPF_OR => dst | operand,
            BPF_AND => dst & operand,
            BPF_LSH => dst << (operand & 63),
            BPF_RSH => dst >> (operand & 63),
            BPF_NEG => dst.wrapping_neg(),
            BPF_MOD => mod64(dst, operand, signed),
            BPF_XOR => dst ^ operand,
            BPF_MOV => sign_extend(operand, insn.off),
            BPF_ARSH => ((dst as i64) >> (operand & 63)) as u64,
            // BPF_END: ALU64 END is the unconditional byte swap.
            _ => swap_bytes(dst, insn.imm),
        }
    } else {
        let (d, o) = (dst as u32, operand as u32);
        match insn.op() {
            BPF_ADD => u64::from(d.wrapping_add(o)),
            BPF_SUB => u64::from(d.wrapping_sub(o)),
            BPF_MUL => u64::from(d.wrapping_mul(o)),
            BPF_DIV => div32(dst, operand, signed),
            BPF_OR => u64::from(d | o),
            BPF_AND => u64::from(d & o),
            BPF_LSH => u64::from(d << (o & 31)),
            BPF_RSH => u64::from(d >> (o & 31)),
            BPF_NEG => u64::from(d.wrapping_neg()),
            BPF_MOD => mod32(dst, operand, signed),
            BPF_XOR => u64::from(d ^ o),
            BPF_MOV => u64::from(sign_extend(operand, insn.off) as u32),
            BPF_ARSH => arsh32(dst, o),
            _ if insn.source() == BPF_TO_BE => swap_bytes(dst, insn.imm),
            _ => truncate(dst, insn.imm),
        }
    }
}

/// Whether conditional jump `insn` (JMP or JMP32 class) is taken for `dst` and source operand
/// `src` (ignored for K forms).
pub(crate) fn eval_condition(insn: &Insn, dst: u64, src: u64) -> bool {
    let wide = insn.class() == BPF_JMP;
    let (a, b) = match (insn.source(), wide) {
        (BPF_X, true) => (dst, src),
        (BPF_X, false) => (u64::from(dst as u32), u64::from(src as u32)),
        (_, true) => (dst, insn.imm as i64 as u64),
        (_, false) => (u64::from(dst as u32), u64::from(insn.imm as u32)),
    };
    // Signed comparisons at the instruction's width.
    let (sa, sb) = if wide {
        (a as i64, b as i64)
    } else {
        (i64::from(a as u32 as i32), i64::from(b as u32 as i32))
    };
    match insn.op() {
        BPF_JEQ => a == b,
        BPF_JGT => a > b,
        BPF_JGE => a >= b,
        BPF_JSET => a & b != 0,
        BPF_JNE => a != b,
        BPF_JSGT => sa > sb,
        BPF_JSGE => sa >= sb,
        BPF_JLT => a < b,
        BPF_JLE => a <= b,
        BPF_JSLT => sa < sb,
        BPF_JSLE => sa <= sb,
        // BPF_JA
        _ => true,
    }
}
