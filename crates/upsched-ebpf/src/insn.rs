//! eBPF instruction encoding (RFC 9669), little-endian byte order.
//!
//! Every 8-byte slot of a program becomes one [`Insn`], so an index into the decoded vector is the
//! same instruction index the kernel, clang and the verifier log use. The 64-bit immediate load
//! (`lddw`, opcode `0x18`) takes two slots; its second slot is kept as an [`Insn`] of its own whose
//! `imm` holds the upper 32 bits (see [`wide_imm`]).

use std::fmt;

// Instruction classes: the low 3 bits of the opcode.
pub const BPF_LD: u8 = 0x00;
pub const BPF_LDX: u8 = 0x01;
pub const BPF_ST: u8 = 0x02;
pub const BPF_STX: u8 = 0x03;
pub const BPF_ALU: u8 = 0x04;
pub const BPF_JMP: u8 = 0x05;
pub const BPF_JMP32: u8 = 0x06;
pub const BPF_ALU64: u8 = 0x07;

// Load/store access sizes: bits 3-4 of the opcode.
pub const BPF_W: u8 = 0x00;
pub const BPF_H: u8 = 0x08;
pub const BPF_B: u8 = 0x10;
pub const BPF_DW: u8 = 0x18;

// Load/store modes: bits 5-7 of the opcode.
pub const BPF_IMM: u8 = 0x00;
pub const BPF_ABS: u8 = 0x20;
pub const BPF_IND: u8 = 0x40;
pub const BPF_MEM: u8 = 0x60;
pub const BPF_MEMSX: u8 = 0x80;
pub const BPF_ATOMIC: u8 = 0xc0;

// Operand source (bit 3) of ALU and jump instructions.
pub const BPF_K: u8 = 0x00;
pub const BPF_X: u8 = 0x08;

// Byte-order target of `BPF_END` in the `BPF_ALU` class (same bit as the source bit).
pub const BPF_TO_LE: u8 = 0x00;
pub const BPF_TO_BE: u8 = 0x08;

// ALU operations: bits 4-7 of the opcode.
pub const BPF_ADD: u8 = 0x00;
pub const BPF_SUB: u8 = 0x10;
pub const BPF_MUL: u8 = 0x20;
pub const BPF_DIV: u8 = 0x30;
pub const BPF_OR: u8 = 0x40;
pub const BPF_AND: u8 = 0x50;
pub const BPF_LSH: u8 = 0x60;
pub const BPF_RSH: u8 = 0x70;
pub const BPF_NEG: u8 = 0x80;
pub const BPF_MOD: u8 = 0x90;
pub const BPF_XOR: u8 = 0xa0;
pub const BPF_MOV: u8 = 0xb0;
pub const BPF_ARSH: u8 = 0xc0;
pub const BPF_END: u8 = 0xd0;

// Jump operations: bits 4-7 of the opcode.
pub const BPF_JA: u8 = 0x00;
pub const BPF_JEQ: u8 = 0x10;
pub const BPF_JGT: u8 = 0x20;
pub const BPF_JGE: u8 = 0x30;
pub const BPF_JSET: u8 = 0x40;
pub const BPF_JNE: u8 = 0x50;
pub const BPF_JSGT: u8 = 0x60;
pub const BPF_JSGE: u8 = 0x70;
pub const BPF_CALL: u8 = 0x80;
pub const BPF_EXIT: u8 = 0x90;
pub const BPF_JLT: u8 = 0xa0;
pub const BPF_JLE: u8 = 0xb0;
pub const BPF_JSLT: u8 = 0xc0;
pub const BPF_JSLE: u8 = 0xd0;

// Atomic operations, carried in `imm` of a `BPF_STX | BPF_ATOMIC` instruction. The plain
// read-modify-write operations reuse the ALU operation values `BPF_ADD`, `BPF_OR`, `BPF_AND` and
// `BPF_XOR`; `BPF_FETCH` additionally returns the old value in the source register.
pub const BPF_FETCH: i32 = 0x01;
pub const BPF_XCHG: i32 = 0xe0 | BPF_FETCH;
pub const BPF_CMPXCHG: i32 = 0xf0 | BPF_FETCH;

// `src` of a 64-bit immediate load: what the immediate refers to before relocation.
pub const BPF_PSEUDO_MAP_FD: u8 = 1;
pub const BPF_PSEUDO_MAP_VALUE: u8 = 2;
pub const BPF_PSEUDO_BTF_ID: u8 = 3;
pub const BPF_PSEUDO_FUNC: u8 = 4;
pub const BPF_PSEUDO_MAP_IDX: u8 = 5;
pub const BPF_PSEUDO_MAP_IDX_VALUE: u8 = 6;

// `src` of a call instruction: 0 calls a helper by number.
pub const BPF_PSEUDO_CALL: u8 = 1;
pub const BPF_PSEUDO_KFUNC_CALL: u8 = 2;

/// Opcode of the first slot of a 64-bit immediate load.
pub const LDDW: u8 = BPF_LD | BPF_IMM | BPF_DW;
/// Opcode of a call instruction (helper, bpf-to-bpf or kfunc, told apart by `src`).
pub const CALL: u8 = BPF_JMP | BPF_CALL;
/// Opcode of the return instruction.
pub const EXIT: u8 = BPF_JMP | BPF_EXIT;

/// Size of one instruction slot in bytes.
pub const INSN_SIZE: usize = 8;

/// One 8-byte eBPF instruction slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// Destination register, 4 bits on the wire.
    pub dst: u8,
    /// Source register, 4 bits on the wire.
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

/// Why a byte string is not a sequence of eBPF instructions.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("program length {len} bytes is not a multiple of {INSN_SIZE}")]
    LengthNotMultipleOf8 { len: usize },
    #[error("64-bit immediate load at instruction {index} is missing its second slot")]
    TruncatedWideImmediate { index: usize },
}

/// Decodes little-endian eBPF bytecode into one [`Insn`] per 8-byte slot.
pub fn decode(bytes: &[u8]) -> Result<Vec<Insn>, DecodeError> {
    if bytes.len() % INSN_SIZE != 0 {
        return Err(DecodeError::LengthNotMultipleOf8 { len: bytes.len() });
    }
    let insns: Vec<Insn> = bytes
        .chunks_exact(INSN_SIZE)
        .map(|slot| Insn {
            code: slot[0],
            dst: slot[1] & 0x0f,
            src: slot[1] >> 4,
            off: i16::from_le_bytes([slot[2], slot[3]]),
            imm: i32::from_le_bytes([slot[4], slot[5], slot[6], slot[7]]),
        })
        .collect();
    let mut index = 0;
    while index < insns.len() {
        if insns[index].is_lddw() {
            if index + 1 >= insns.len() {
                return Err(DecodeError::TruncatedWideImmediate { index });
            }
            // The second slot is data, not an instruction: it must not be read as an opcode.
            index += 2;
        } else {
            index += 1;
        }
    }
    Ok(insns)
}

/// Encodes instructions into little-endian bytecode; the inverse of [`decode`].
///
/// Register numbers are truncated to their 4-bit wire fields.
pub fn encode(insns: &[Insn]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(insns.len() * INSN_SIZE);
    for insn in insns {
        bytes.push(insn.code);
        bytes.push((insn.dst & 0x0f) | (insn.src << 4));
        bytes.extend_from_slice(&insn.off.to_le_bytes());
        bytes.extend_from_slice(&insn.imm.to_le_bytes());
    }
    bytes
}

/// The 64-bit immediate of an `lddw` from its two slots.
pub fn wide_imm(lo: &Insn, hi: &Insn) -> u64 {
    u64::from(lo.imm as u32) | (u64::from(hi.imm as u32) << 32)
}

impl Insn {
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            dst,
            src,
            off,
            imm,
        }
    }

    /// Instruction class (`BPF_LD` ... `BPF_ALU64`).
    pub const fn class(&self) -> u8 {
        self.code & 0x07
    }

    /// ALU or jump operation (`BPF_ADD`, `BPF_JEQ`, ...); meaningful for those classes only.
    pub const fn op(&self) -> u8 {
        self.code & 0xf0
    }

    /// Operand source bit (`BPF_K` or `BPF_X`) of ALU and jump instructions.
    pub const fn source(&self) -> u8 {
        self.code & 0x08
    }

    /// Access size bits (`BPF_W`, `BPF_H`, `BPF_B`, `BPF_DW`) of loads and stores.
    pub const fn size(&self) -> u8 {
        self.code & 0x18
    }

    /// Mode bits (`BPF_IMM`, `BPF_MEM`, `BPF_ATOMIC`, ...) of loads and stores.
    pub const fn mode(&self) -> u8 {
        self.code & 0xe0
    }

    /// First slot of a 64-bit immediate load.
    pub const fn is_lddw(&self) -> bool {
        self.code == LDDW
    }

    pub const fn is_call(&self) -> bool {
        self.code == CALL
    }

    /// Call of a helper function by number (`src` 0).
    pub const fn is_helper_call(&self) -> bool {
        self.is_call() && self.src == 0
    }

    /// bpf-to-bpf call (`src` 1); `imm` is the target relative to the next instruction.
    pub const fn is_pseudo_call(&self) -> bool {
        self.is_call() && self.src == BPF_PSEUDO_CALL
    }

    /// Call of a kernel function (`src` 2); `imm` is its BTF id, or a loader-assigned index.
    pub const fn is_kfunc_call(&self) -> bool {
        self.is_call() && self.src == BPF_PSEUDO_KFUNC_CALL
    }

    pub const fn is_exit(&self) -> bool {
        self.code == EXIT
    }

    /// Conditional jump or unconditional `ja`/`gotol` (not call or exit).
    pub const fn is_jump(&self) -> bool {
        let class = self.class();
        (class == BPF_JMP || class == BPF_JMP32) && self.op() != BPF_CALL && self.op() != BPF_EXIT
    }

    /// Unconditional jump: `ja` (offset in `off`) or `gotol` (`BPF_JMP32 | BPF_JA`, offset in `imm`).
    pub const fn is_unconditional_jump(&self) -> bool {
        self.is_jump() && self.op() == BPF_JA
    }

    /// Index of the instruction a jump at `pc` goes to when taken; `None` if this is no jump or
    /// the target would be negative.
    pub fn jump_target(&self, pc: usize) -> Option<usize> {
        if !self.is_jump() {
            return None;
        }
        // `gotol` keeps its 32-bit offset in imm; every other jump uses the 16-bit off.
        let offset = if self.code == BPF_JMP32 | BPF_JA {
            i64::from(self.imm)
        } else {
            i64::from(self.off)
        };
        relative_target(pc, offset)
    }

    /// Index of the first instruction of the function a bpf-to-bpf call at `pc` enters.
    pub fn pseudo_call_target(&self, pc: usize) -> Option<usize> {
        if !self.is_pseudo_call() {
            return None;
        }
        relative_target(pc, i64::from(self.imm))
    }

    /// `LDX` load (`BPF_MEM` or sign-extending `BPF_MEMSX`).
    pub const fn is_load(&self) -> bool {
        self.class() == BPF_LDX
    }

    /// Plain store: `ST` (immediate) or `STX` in `BPF_MEM` mode.
    pub const fn is_store(&self) -> bool {
        self.class() == BPF_ST || (self.class() == BPF_STX && self.mode() == BPF_MEM)
    }

    /// Atomic read-modify-write (`STX | BPF_ATOMIC`); the operation is in `imm`.
    pub const fn is_atomic(&self) -> bool {
        self.class() == BPF_STX && self.mode() == BPF_ATOMIC
    }

    /// Bytes a load, store or atomic accesses; `None` for other instructions.
    pub const fn mem_size_bytes(&self) -> Option<usize> {
        let accesses_memory = match self.class() {
            BPF_LDX | BPF_ST | BPF_STX => true,
            BPF_LD => self.mode() == BPF_ABS || self.mode() == BPF_IND,
            _ => false,
        };
        if !accesses_memory {
            return None;
        }
        Some(size_bytes(self.size()))
    }
}

fn relative_target(pc: usize, offset: i64) -> Option<usize> {
    let target = (pc as i64).checked_add(1)?.checked_add(offset)?;
    usize::try_from(target).ok()
}

/// Bytes of a `BPF_W`/`BPF_H`/`BPF_B`/`BPF_DW` size field.
const fn size_bytes(size: u8) -> usize {
    match size {
        BPF_W => 4,
        BPF_H => 2,
        BPF_B => 1,
        _ => 8,
    }
}

/// Signed hexadecimal, as llvm-objdump prints immediates: `0x10`, `-0x8`.
struct Hex(i64);

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < 0 {
            write!(f, "-{:#x}", self.0.unsigned_abs())
        } else {
            write!(f, "{:#x}", self.0)
        }
    }
}

/// Memory operand `(r2 + 8)`, `(r10 - 4)`.
struct MemOperand {
    base: u8,
    off: i16,
}

impl fmt::Display for MemOperand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.off < 0 {
            write!(f, "(r{} - {})", self.base, self.off.unsigned_abs())
        } else {
            write!(f, "(r{} + {})", self.base, self.off)
        }
    }
}

/// Jump offset `+5`, `-3`.
struct Rel(i64);

impl fmt::Display for Rel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < 0 {
            write!(f, "{}", self.0)
        } else {
            write!(f, "+{}", self.0)
        }
    }
}

fn unsigned_type(size: u8) -> &'static str {
    match size {
        BPF_W => "u32",
        BPF_H => "u16",
        BPF_B => "u8",
        _ => "u64",
    }
}

fn signed_type(size: u8) -> &'static str {
    match size {
        BPF_W => "s32",
        BPF_H => "s16",
        BPF_B => "s8",
        _ => "s64",
    }
}

fn alu_operator(op: u8, signed: bool) -> Option<&'static str> {
    Some(match (op, signed) {
        (BPF_ADD, _) => "+=",
        (BPF_SUB, _) => "-=",
        (BPF_MUL, _) => "*=",
        (BPF_DIV, false) => "/=",
        (BPF_DIV, true) => "s/=",
        (BPF_OR, _) => "|=",
        (BPF_AND, _) => "&=",
        (BPF_LSH, _) => "<<=",
        (BPF_RSH, _) => ">>=",
        (BPF_MOD, false) => "%=",
        (BPF_MOD, true) => "s%=",
        (BPF_XOR, _) => "^=",
        (BPF_MOV, _) => "=",
        (BPF_ARSH, _) => "s>>=",
        _ => return None,
    })
}

fn jump_operator(op: u8) -> Option<&'static str> {
    Some(match op {
        BPF_JEQ => "==",
        BPF_JGT => ">",
        BPF_JGE => ">=",
        BPF_JSET => "&",
        BPF_JNE => "!=",
        BPF_JSGT => "s>",
        BPF_JSGE => "s>=",
        BPF_JLT => "<",
        BPF_JLE => "<=",
        BPF_JSLT => "s<",
        BPF_JSLE => "s<=",
        _ => return None,
    })
}

/// Name and compound-assignment operator of an atomic read-modify-write operation, fetch bit
/// ignored.
fn atomic_operation(op: i32) -> Option<(&'static str, &'static str)> {
    let alu_op = u8::try_from(op & !BPF_FETCH).ok()?;
    Some(match alu_op {
        BPF_ADD => ("add", "+="),
        BPF_OR => ("or", "|="),
        BPF_AND => ("and", "&="),
        BPF_XOR => ("xor", "^="),
        _ => return None,
    })
}

impl Insn {
    fn fmt_alu(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wide = self.class() == BPF_ALU64;
        let reg = if wide { 'r' } else { 'w' };
        let (dst, src) = (self.dst, self.src);
        match self.op() {
            BPF_NEG => return write!(f, "{reg}{dst} = -{reg}{dst}"),
            BPF_END => {
                let bits = self.imm;
                let conversion = match (wide, self.source()) {
                    (true, _) => "bswap",
                    (false, BPF_TO_BE) => "be",
                    (false, _) => "le",
                };
                return write!(f, "r{dst} = {conversion}{bits} r{dst}");
            }
            BPF_MOV if self.off != 0 && self.source() == BPF_X => {
                return write!(f, "{reg}{dst} = (s{}){reg}{src}", self.off);
            }
            _ => {}
        }
        let Some(operator) = alu_operator(self.op(), self.off == 1) else {
            return self.fmt_invalid(f);
        };
        if self.source() == BPF_X {
            write!(f, "{reg}{dst} {operator} {reg}{src}")
        } else {
            write!(f, "{reg}{dst} {operator} {}", Hex(i64::from(self.imm)))
        }
    }

    fn fmt_jump(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wide = self.class() == BPF_JMP;
        match self.op() {
            BPF_JA if wide => return write!(f, "goto {}", Rel(i64::from(self.off))),
            BPF_JA => return write!(f, "gotol {}", Rel(i64::from(self.imm))),
            BPF_CALL if wide => {
                return match self.src {
                    0 => write!(f, "call {}", self.imm),
                    BPF_PSEUDO_CALL => write!(f, "call pc{}", Rel(i64::from(self.imm))),
                    BPF_PSEUDO_KFUNC_CALL => write!(f, "call kfunc#{}", self.imm),
                    _ => self.fmt_invalid(f),
                };
            }
            BPF_EXIT if wide => return write!(f, "exit"),
            _ => {}
        }
        let Some(operator) = jump_operator(self.op()) else {
            return self.fmt_invalid(f);
        };
        let reg = if wide { 'r' } else { 'w' };
        write!(f, "if {reg}{} {operator} ", self.dst)?;
        if self.source() == BPF_X {
            write!(f, "{reg}{}", self.src)?;
        } else {
            write!(f, "{}", Hex(i64::from(self.imm)))?;
        }
        write!(f, " goto {}", Rel(i64::from(self.off)))
    }

    fn fmt_atomic(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let operand = MemOperand {
            base: self.dst,
            off: self.off,
        };
        let (width, reg, prefix) = match self.size() {
            BPF_DW => ("u64", 'r', "atomic64"),
            BPF_W => ("u32", 'w', "atomic"),
            _ => return self.fmt_invalid(f),
        };
        let src = self.src;
        match self.imm {
            BPF_XCHG => write!(
                f,
                "{reg}{src} = {prefix}_xchg(({width} *){operand}, {reg}{src})"
            ),
            BPF_CMPXCHG => write!(
                f,
                "{reg}0 = {prefix}_cmpxchg(({width} *){operand}, {reg}0, {reg}{src})"
            ),
            op => match atomic_operation(op) {
                Some((name, _)) if op & BPF_FETCH != 0 => write!(
                    f,
                    "{reg}{src} = {prefix}_fetch_{name}(({width} *){operand}, {reg}{src})"
                ),
                Some((_, operator)) => {
                    write!(f, "lock *({width} *){operand} {operator} {reg}{src}")
                }
                None => self.fmt_invalid(f),
            },
        }
    }

    fn fmt_invalid(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid insn code={:#04x} dst={} src={} off={} imm={}",
            self.code, self.dst, self.src, self.off, self.imm
        )
    }
}

impl fmt::Display for Insn {
    /// Disassembles one slot in the style of llvm-objdump and the kernel verifier log.
    ///
    /// A 64-bit immediate load shows only the low 32 bits its first slot holds; [`disassemble`]
    /// shows the whole value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let size = self.size();
        match self.class() {
            BPF_ALU | BPF_ALU64 => self.fmt_alu(f),
            BPF_JMP | BPF_JMP32 => self.fmt_jump(f),
            BPF_LDX => {
                let ty = match self.mode() {
                    BPF_MEM => unsigned_type(size),
                    BPF_MEMSX => signed_type(size),
                    _ => return self.fmt_invalid(f),
                };
                let operand = MemOperand {
                    base: self.src,
                    off: self.off,
                };
                write!(f, "r{} = *({ty} *){operand}", self.dst)
            }
            BPF_ST | BPF_STX => {
                let operand = MemOperand {
                    base: self.dst,
                    off: self.off,
                };
                match (self.class(), self.mode()) {
                    (BPF_ST, BPF_MEM) => write!(
                        f,
                        "*({} *){operand} = {}",
                        unsigned_type(size),
                        Hex(i64::from(self.imm))
                    ),
                    (BPF_STX, BPF_MEM) => {
                        write!(f, "*({} *){operand} = r{}", unsigned_type(size), self.src)
                    }
                    (BPF_STX, BPF_ATOMIC) => self.fmt_atomic(f),
                    _ => self.fmt_invalid(f),
                }
            }
            _ => match (self.mode(), size) {
                (BPF_IMM, BPF_DW) => self.fmt_lddw(f, None),
                (BPF_ABS, _) => write!(f, "r0 = *({} *)skb[{}]", unsigned_type(size), self.imm),
                (BPF_IND, _) => write!(
                    f,
                    "r0 = *({} *)skb[r{} + {}]",
                    unsigned_type(size),
                    self.src,
                    self.imm
                ),
                _ => self.fmt_invalid(f),
            },
        }
    }
}

impl Insn {
    /// `hi` is the second slot when known; without it only the first slot's fields are shown.
    fn fmt_lddw(&self, f: &mut fmt::Formatter<'_>, hi: Option<&Insn>) -> fmt::Result {
        let dst = self.dst;
        // For map values the second slot holds the offset into the value.
        let value_offset = hi.map_or(String::new(), |hi| format!(" + {:#x}", hi.imm as u32));
        match self.src {
            0 => {
                let value = hi.map_or(u64::from(self.imm as u32), |hi| wide_imm(self, hi));
                write!(f, "r{dst} = {value:#x} ll")
            }
            BPF_PSEUDO_MAP_FD => write!(f, "r{dst} = map_fd[{}] ll", self.imm),
            BPF_PSEUDO_MAP_VALUE => write!(f, "r{dst} = map_value[{}]{value_offset} ll", self.imm),
            BPF_PSEUDO_BTF_ID => write!(f, "r{dst} = btf_id[{}] ll", self.imm),
            BPF_PSEUDO_FUNC => write!(f, "r{dst} = func pc{} ll", Rel(i64::from(self.imm))),
            BPF_PSEUDO_MAP_IDX => write!(f, "r{dst} = map_idx[{}] ll", self.imm),
            BPF_PSEUDO_MAP_IDX_VALUE => {
                write!(f, "r{dst} = map_idx_value[{}]{value_offset} ll", self.imm)
            }
            _ => self.fmt_invalid(f),
        }
    }
}

/// Disassembles a whole program, one line per slot prefixed with its index (`12: exit`).
///
/// Unlike [`Insn`]'s `Display`, a 64-bit immediate load shows its full value; its second slot is
/// listed as a continuation so that line numbers stay equal to instruction indices.
pub fn disassemble(insns: &[Insn]) -> String {
    let mut out = String::new();
    let mut pc = 0;
    while pc < insns.len() {
        let insn = &insns[pc];
        let line = match insns.get(pc + 1) {
            Some(hi) if insn.is_lddw() => {
                let text = LddwPair { lo: insn, hi }.to_string();
                format!("{pc}: {text}\n{}: (second slot of lddw)\n", pc + 1)
            }
            _ => format!("{pc}: {insn}\n"),
        };
        out.push_str(&line);
        pc += if insn.is_lddw() { 2 } else { 1 };
    }
    out
}

struct LddwPair<'a> {
    lo: &'a Insn,
    hi: &'a Insn,
}

impl fmt::Display for LddwPair<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.lo.fmt_lddw(f, Some(self.hi))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> String {
        Insn::new(code, dst, src, off, imm).to_string()
    }

    #[test]
    fn decodes_fields_little_endian() {
        let bytes = [0x61, 0x21, 0x08, 0x00, 0x78, 0x56, 0x34, 0x12];
        let insns = decode(&bytes).unwrap();
        assert_eq!(insns, vec![Insn::new(0x61, 1, 2, 8, 0x1234_5678)]);
        let negative = [0x07, 0x0a, 0xfc, 0xff, 0xfe, 0xff, 0xff, 0xff];
        assert_eq!(
            decode(&negative).unwrap(),
            vec![Insn::new(0x07, 10, 0, -4, -2)]
        );
    }

    #[test]
    fn rejects_length_not_multiple_of_8() {
        assert_eq!(
            decode(&[0x95, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(DecodeError::LengthNotMultipleOf8 { len: 9 })
        );
    }

    #[test]
    fn rejects_lddw_without_second_slot() {
        let mut bytes = encode(&[Insn::new(EXIT, 0, 0, 0, 0)]);
        bytes.extend(encode(&[Insn::new(LDDW, 1, 0, 0, 7)]));
        assert_eq!(
            decode(&bytes),
            Err(DecodeError::TruncatedWideImmediate { index: 1 })
        );
    }

    #[test]
    fn lddw_second_slot_is_not_read_as_an_opcode() {
        // The upper half 0x18 looks like another lddw opcode byte; it must not be one.
        let insns = [Insn::new(LDDW, 0, 0, 0, 1), Insn::new(LDDW, 0, 0, 0, 0)];
        assert_eq!(decode(&encode(&insns)).unwrap(), insns);
        assert_eq!(wide_imm(&insns[0], &insns[1]), 1);
    }

    #[test]
    fn wide_imm_joins_halves_without_sign_extension() {
        let lo = Insn::new(LDDW, 0, 0, 0, -1);
        let hi = Insn::new(0, 0, 0, 0, 0x1234);
        assert_eq!(wide_imm(&lo, &hi), 0x0000_1234_ffff_ffff);
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(slots in prop::collection::vec(
            (any::<u8>(), 0u8..16, 0u8..16, any::<i16>(), any::<i32>()), 0..64)
        ) {
            // Avoid a trailing lone lddw, which is a decode error by design.
            let mut insns: Vec<Insn> = slots
                .into_iter()
                .map(|(code, dst, src, off, imm)| Insn::new(code, dst, src, off, imm))
                .collect();
            insns.push(Insn::new(EXIT, 0, 0, 0, 0));
            let bytes = encode(&insns);
            prop_assert_eq!(bytes.len(), insns.len() * INSN_SIZE);
            prop_assert_eq!(decode(&bytes).unwrap(), insns);
        }
    }

    #[test]
    fn classifies_calls_exits_and_jumps() {
        let helper = Insn::new(CALL, 0, 0, 0, 5);
        let local = Insn::new(CALL, 0, BPF_PSEUDO_CALL, 0, 3);
        let kfunc = Insn::new(CALL, 0, BPF_PSEUDO_KFUNC_CALL, 0, 1234);
        assert!(helper.is_call() && helper.is_helper_call() && !helper.is_pseudo_call());
        assert!(local.is_pseudo_call() && !local.is_kfunc_call() && !local.is_jump());
        assert!(kfunc.is_kfunc_call() && !kfunc.is_helper_call());
        assert_eq!(local.pseudo_call_target(10), Some(14));
        assert_eq!(helper.pseudo_call_target(10), None);
        assert!(Insn::new(EXIT, 0, 0, 0, 0).is_exit());

        let ja = Insn::new(BPF_JMP | BPF_JA, 0, 0, -3, 0);
        assert!(ja.is_jump() && ja.is_unconditional_jump());
        assert_eq!(ja.jump_target(5), Some(3));
        assert_eq!(ja.jump_target(1), None);
        let gotol = Insn::new(BPF_JMP32 | BPF_JA, 0, 0, 0, 70_000);
        assert!(gotol.is_unconditional_jump());
        assert_eq!(gotol.jump_target(0), Some(70_001));
        let jgt = Insn::new(BPF_JMP32 | BPF_JGT | BPF_K, 1, 0, 2, 9);
        assert!(jgt.is_jump() && !jgt.is_unconditional_jump());
        assert_eq!(jgt.jump_target(0), Some(3));
        assert_eq!(helper.jump_target(0), None);
    }

    #[test]
    fn classifies_memory_access() {
        let ldx = Insn::new(BPF_LDX | BPF_MEM | BPF_DW, 1, 2, 8, 0);
        let ldsx = Insn::new(BPF_LDX | BPF_MEMSX | BPF_H, 1, 2, 8, 0);
        let st = Insn::new(BPF_ST | BPF_MEM | BPF_B, 10, 0, -1, 3);
        let stx = Insn::new(BPF_STX | BPF_MEM | BPF_W, 10, 1, -4, 0);
        let atomic = Insn::new(BPF_STX | BPF_ATOMIC | BPF_DW, 1, 2, 0, i32::from(BPF_ADD));
        assert!(ldx.is_load() && ldsx.is_load() && !ldx.is_store());
        assert!(st.is_store() && stx.is_store() && !atomic.is_store());
        assert!(atomic.is_atomic() && !stx.is_atomic());
        assert_eq!(ldx.mem_size_bytes(), Some(8));
        assert_eq!(ldsx.mem_size_bytes(), Some(2));
        assert_eq!(st.mem_size_bytes(), Some(1));
        assert_eq!(stx.mem_size_bytes(), Some(4));
        assert_eq!(atomic.mem_size_bytes(), Some(8));
        assert_eq!(Insn::new(LDDW, 0, 0, 0, 0).mem_size_bytes(), None);
        assert_eq!(
            Insn::new(BPF_ALU64 | BPF_ADD, 0, 0, 0, 0).mem_size_bytes(),
            None
        );
        assert_eq!(
            Insn::new(BPF_LD | BPF_ABS | BPF_H, 0, 0, 0, 0).mem_size_bytes(),
            Some(2)
        );
    }

    #[test]
    fn disassembles_alu() {
        assert_eq!(text(BPF_ALU64 | BPF_ADD | BPF_K, 1, 0, 0, 8), "r1 += 0x8");
        assert_eq!(text(BPF_ALU64 | BPF_SUB | BPF_K, 1, 0, 0, -8), "r1 -= -0x8");
        assert_eq!(text(BPF_ALU64 | BPF_MOV | BPF_X, 6, 1, 0, 0), "r6 = r1");
        assert_eq!(text(BPF_ALU | BPF_MUL | BPF_X, 2, 3, 0, 0), "w2 *= w3");
        assert_eq!(text(BPF_ALU64 | BPF_DIV | BPF_X, 2, 3, 1, 0), "r2 s/= r3");
        assert_eq!(text(BPF_ALU | BPF_MOD | BPF_K, 2, 0, 1, 7), "w2 s%= 0x7");
        assert_eq!(text(BPF_ALU64 | BPF_MOD | BPF_K, 2, 0, 0, 7), "r2 %= 0x7");
        assert_eq!(
            text(BPF_ALU64 | BPF_ARSH | BPF_K, 2, 0, 0, 3),
            "r2 s>>= 0x3"
        );
        assert_eq!(text(BPF_ALU64 | BPF_LSH | BPF_X, 2, 4, 0, 0), "r2 <<= r4");
        assert_eq!(text(BPF_ALU | BPF_RSH | BPF_K, 2, 0, 0, 1), "w2 >>= 0x1");
        assert_eq!(text(BPF_ALU64 | BPF_XOR | BPF_X, 0, 0, 0, 0), "r0 ^= r0");
        assert_eq!(text(BPF_ALU64 | BPF_OR | BPF_K, 0, 0, 0, 16), "r0 |= 0x10");
        assert_eq!(text(BPF_ALU | BPF_AND | BPF_K, 0, 0, 0, 255), "w0 &= 0xff");
        assert_eq!(text(BPF_ALU64 | BPF_NEG, 3, 0, 0, 0), "r3 = -r3");
        assert_eq!(text(BPF_ALU | BPF_NEG, 3, 0, 0, 0), "w3 = -w3");
        assert_eq!(text(BPF_ALU64 | BPF_MOV | BPF_X, 1, 2, 8, 0), "r1 = (s8)r2");
        assert_eq!(text(BPF_ALU | BPF_MOV | BPF_X, 1, 2, 16, 0), "w1 = (s16)w2");
        assert_eq!(
            text(BPF_ALU | BPF_END | BPF_TO_BE, 1, 0, 0, 16),
            "r1 = be16 r1"
        );
        assert_eq!(
            text(BPF_ALU | BPF_END | BPF_TO_LE, 1, 0, 0, 32),
            "r1 = le32 r1"
        );
        assert_eq!(text(BPF_ALU64 | BPF_END, 1, 0, 0, 64), "r1 = bswap64 r1");
    }

    #[test]
    fn disassembles_jumps_calls_and_exit() {
        assert_eq!(
            text(BPF_JMP | BPF_JGT | BPF_K, 1, 0, 5, 3),
            "if r1 > 0x3 goto +5"
        );
        assert_eq!(
            text(BPF_JMP | BPF_JSGT | BPF_X, 1, 2, -2, 0),
            "if r1 s> r2 goto -2"
        );
        assert_eq!(
            text(BPF_JMP32 | BPF_JNE | BPF_K, 1, 0, 1, -1),
            "if w1 != -0x1 goto +1"
        );
        assert_eq!(
            text(BPF_JMP | BPF_JSET | BPF_X, 1, 2, 0, 0),
            "if r1 & r2 goto +0"
        );
        assert_eq!(
            text(BPF_JMP32 | BPF_JSLE | BPF_X, 3, 4, 7, 0),
            "if w3 s<= w4 goto +7"
        );
        assert_eq!(text(BPF_JMP | BPF_JA, 0, 0, 3, 0), "goto +3");
        assert_eq!(text(BPF_JMP32 | BPF_JA, 0, 0, 0, -100_000), "gotol -100000");
        assert_eq!(text(CALL, 0, 0, 0, 5), "call 5");
        assert_eq!(text(CALL, 0, BPF_PSEUDO_CALL, 0, 4), "call pc+4");
        assert_eq!(text(CALL, 0, BPF_PSEUDO_KFUNC_CALL, 0, 77), "call kfunc#77");
        assert_eq!(text(EXIT, 0, 0, 0, 0), "exit");
    }

    #[test]
    fn disassembles_loads_and_stores() {
        assert_eq!(
            text(BPF_LDX | BPF_MEM | BPF_DW, 1, 2, 8, 0),
            "r1 = *(u64 *)(r2 + 8)"
        );
        assert_eq!(
            text(BPF_LDX | BPF_MEMSX | BPF_B, 1, 2, -1, 0),
            "r1 = *(s8 *)(r2 - 1)"
        );
        assert_eq!(
            text(BPF_STX | BPF_MEM | BPF_W, 10, 1, -4, 0),
            "*(u32 *)(r10 - 4) = r1"
        );
        assert_eq!(
            text(BPF_ST | BPF_MEM | BPF_H, 10, 0, -2, 0x1234),
            "*(u16 *)(r10 - 2) = 0x1234"
        );
        assert_eq!(text(LDDW, 0, 0, 0, 0x1234), "r0 = 0x1234 ll");
        assert_eq!(
            text(BPF_LD | BPF_ABS | BPF_B, 0, 0, 0, 12),
            "r0 = *(u8 *)skb[12]"
        );
        assert_eq!(
            text(BPF_LD | BPF_IND | BPF_W, 0, 3, 0, 4),
            "r0 = *(u32 *)skb[r3 + 4]"
        );
    }

    #[test]
    fn disassembles_atomics() {
        let atomic64 = BPF_STX | BPF_ATOMIC | BPF_DW;
        let atomic32 = BPF_STX | BPF_ATOMIC | BPF_W;
        let add = i32::from(BPF_ADD);
        assert_eq!(text(atomic64, 1, 2, 0, add), "lock *(u64 *)(r1 + 0) += r2");
        assert_eq!(
            text(atomic32, 1, 2, 8, i32::from(BPF_XOR)),
            "lock *(u32 *)(r1 + 8) ^= w2"
        );
        assert_eq!(
            text(atomic64, 1, 2, 0, add | BPF_FETCH),
            "r2 = atomic64_fetch_add((u64 *)(r1 + 0), r2)"
        );
        assert_eq!(
            text(atomic32, 1, 2, 0, i32::from(BPF_OR) | BPF_FETCH),
            "w2 = atomic_fetch_or((u32 *)(r1 + 0), w2)"
        );
        assert_eq!(
            text(atomic64, 1, 3, -8, BPF_XCHG),
            "r3 = atomic64_xchg((u64 *)(r1 - 8), r3)"
        );
        assert_eq!(
            text(atomic32, 1, 3, 0, BPF_CMPXCHG),
            "w0 = atomic_cmpxchg((u32 *)(r1 + 0), w0, w3)"
        );
        assert!(text(atomic64, 1, 2, 0, 0x33).starts_with("invalid insn"));
    }

    #[test]
    fn disassembles_invalid_opcodes() {
        assert_eq!(
            text(0xff, 1, 2, 3, 4),
            "invalid insn code=0xff dst=1 src=2 off=3 imm=4"
        );
        assert!(text(BPF_JMP32 | BPF_EXIT, 0, 0, 0, 0).starts_with("invalid insn"));
    }

    #[test]
    fn disassembles_program_with_full_lddw_values() {
        let program = [
            Insn::new(LDDW, 1, 0, 0, 0x5678),
            Insn::new(0, 0, 0, 0, 0x1234),
            Insn::new(LDDW, 2, BPF_PSEUDO_MAP_VALUE, 0, 3),
            Insn::new(0, 0, 0, 0, 16),
            Insn::new(EXIT, 0, 0, 0, 0),
        ];
        assert_eq!(
            disassemble(&program),
            "0: r1 = 0x123400005678 ll\n\
             1: (second slot of lddw)\n\
             2: r2 = map_value[3] + 0x10 ll\n\
             3: (second slot of lddw)\n\
             4: exit\n"
        );
    }
}
