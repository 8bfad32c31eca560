//! Translation of a [`Program`] into one Cranelift function `fn(*mut RunState) -> status`.

use std::mem::offset_of;

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{I8, I16, I32, I64};
use cranelift_codegen::ir::{
    AbiParam, Block, BlockArg, InstBuilder, JumpTableData, MemFlagsData, SigRef, Signature,
    StackSlot, StackSlotData, StackSlotKind, Type, Value,
};
use cranelift_codegen::isa::TargetFrontendConfig;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Linkage, Module, default_libcall_names};
use upsched_ebpf::insn::*;
use upsched_ebpf::memory::{MAX_CALL_DEPTH, STACK_BASE, STACK_FRAME_SIZE, STACK_FRAME_STRIDE};
use upsched_ebpf::{Memory, Program};

use crate::{EntryPoint, JitError, Optimization, RegionEntry, RunState, status};

/// Bit of the fault info word marking a write.
pub(crate) const FAULT_WRITE: u64 = 1 << 8;

/// Bytes one caller frame takes in the save area: return site index and r6..r9.
const SAVED_FRAME_BYTES: i64 = 5 * 8;

/// The module that owns the generated code; freed when the program is dropped.
pub(crate) struct CodeMemory {
    module: Option<JITModule>,
    pub(crate) size: usize,
}

// SAFETY: after `finalize_definitions` the module is never used again except to free its memory
// on drop; the code it holds is immutable and reentrant (all run state lives in `RunState`).
unsafe impl Send for CodeMemory {}
// SAFETY: as for `Send`: shared references give no access to the module at all.
unsafe impl Sync for CodeMemory {}

impl Drop for CodeMemory {
    fn drop(&mut self) {
        if let Some(module) = self.module.take() {
            // SAFETY: the only pointer into this memory is the `JitProgram`'s entry point, which
            // is being dropped with it, and no run can be in progress (it would borrow it).
            unsafe { module.free_memory() };
        }
    }
}

pub(crate) fn compile(
    program: &Program,
    optimization: Optimization,
) -> Result<(EntryPoint, CodeMemory), JitError> {
    if cfg!(target_endian = "big") {
        return Err(JitError::UnsupportedHost("big-endian host".into()));
    }
    let codegen_error = |e: &dyn std::fmt::Display| JitError::Codegen(e.to_string());
    let mut flags = settings::builder();
    let (opt_level, regalloc) = match optimization {
        Optimization::Speed => ("speed", "backtracking"),
        Optimization::CompileTime => ("none", "single_pass"),
    };
    for (name, value) in [
        ("opt_level", opt_level),
        ("regalloc_algorithm", regalloc),
        ("use_colocated_libcalls", "false"),
        ("is_pic", "false"),
    ] {
        flags.set(name, value).map_err(|e| codegen_error(&e))?;
    }
    let isa = cranelift_native::builder()
        .map_err(|e| JitError::UnsupportedHost(e.to_string()))?
        .finish(settings::Flags::new(flags))
        .map_err(|e| codegen_error(&e))?;
    let mut module = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
    let mut context = module.make_context();
    context.func.signature.params.push(AbiParam::new(I64));
    context.func.signature.returns.push(AbiParam::new(I64));
    let call_conv = module.target_config().default_call_conv;

    let mut builder_context = FunctionBuilderContext::new();
    let builder = FunctionBuilder::new(&mut context.func, &mut builder_context);
    Translator::new(builder, program, call_conv).finish_function(module.target_config());

    let id = module
        .declare_function("upsched_bpf", Linkage::Local, &context.func.signature)
        .map_err(|e| codegen_error(&e))?;
    module
        .define_function(id, &mut context)
        .map_err(|e| codegen_error(&e))?;
    let size = context
        .compiled_code()
        .map_or(0, |code| code.code_buffer().len());
    module
        .finalize_definitions()
        .map_err(|e| codegen_error(&e))?;
    let code = module.get_finalized_function(id);
    // SAFETY: `code` is the finalized function just defined with the signature
    // `(i64) -> i64` in the default (C) calling convention, which is `EntryPoint`.
    let entry = unsafe { std::mem::transmute::<*const u8, EntryPoint>(code) };
    Ok((
        entry,
        CodeMemory {
            module: Some(module),
            size,
        },
    ))
}

/// How an instruction touches memory.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
    /// Atomics: the location must be readable and writable.
    ReadWrite,
}

struct Translator<'a> {
    b: FunctionBuilder<'a>,
    insns: &'a [Insn],
    program: &'a Program,
    regs: [Variable; 11],
    depth: Variable,
    budget: Variable,
    state: Value,
    /// Budget check block of every basic block, by leader pc.
    block_at: Vec<Option<Block>>,
    /// Leaders in order; basic block `i` spans `leaders[i]..leaders[i + 1]`.
    leaders: Vec<usize>,
    /// pc of each bpf-to-bpf call; its index is the return site id.
    call_sites: Vec<usize>,
    save_area: StackSlot,
    memory_fault: Block,
    budget_exhausted: Block,
    depth_exceeded: Block,
    leave: Block,
    finish: Block,
    return_to_caller: Block,
    external_sig: SigRef,
    push_sig: SigRef,
    pop_sig: SigRef,
}

fn field_offset(offset: usize) -> i32 {
    offset as i32
}

/// A plain (non-trapping, possibly unaligned) access to checked memory.
fn data_flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

/// Accesses to the run state and the stack save area.
fn state_flags() -> MemFlagsData {
    MemFlagsData::trusted()
}

fn int_type(size: usize) -> Type {
    match size {
        1 => I8,
        2 => I16,
        4 => I32,
        _ => I64,
    }
}

/// `value` as an immediate of type `ty`: masked to its width, as Cranelift expects.
fn masked(ty: Type, value: i64) -> i64 {
    match ty.bits() {
        64 => value,
        bits => value & ((1i64 << bits) - 1),
    }
}

fn arg(value: Value) -> BlockArg {
    BlockArg::Value(value)
}

impl<'a> Translator<'a> {
    fn new(
        mut b: FunctionBuilder<'a>,
        program: &'a Program,
        call_conv: cranelift_codegen::isa::CallConv,
    ) -> Translator<'a> {
        let insns = program.insns();
        let regs = std::array::from_fn(|_| b.declare_var(I64));
        let depth = b.declare_var(I64);
        let budget = b.declare_var(I64);
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let state = b.block_params(entry)[0];

        let signature = |params: usize, returns: bool| {
            let mut sig = Signature::new(call_conv);
            sig.params.extend((0..params).map(|_| AbiParam::new(I64)));
            if returns {
                sig.returns.push(AbiParam::new(I64));
            }
            sig
        };
        let external_sig = b.import_signature(signature(4, true));
        let push_sig = b.import_signature(signature(1, true));
        let pop_sig = b.import_signature(signature(1, false));
        let save_area = b.create_sized_stack_slot(StackSlotData::new(
            StackSlotKind::ExplicitSlot,
            (MAX_CALL_DEPTH as i64 * SAVED_FRAME_BYTES) as u32,
            3,
        ));

        let leaders = leaders(program);
        let mut block_at = vec![None; insns.len() + 1];
        for &pc in &leaders {
            block_at[pc] = Some(b.create_block());
        }
        let with_params = |b: &mut FunctionBuilder, count: usize| {
            let block = b.create_block();
            for _ in 0..count {
                b.append_block_param(block, I64);
            }
            block
        };
        let memory_fault = with_params(&mut b, 3);
        let budget_exhausted = with_params(&mut b, 1);
        let depth_exceeded = with_params(&mut b, 1);
        let leave = with_params(&mut b, 1);
        let finish = b.create_block();
        let return_to_caller = b.create_block();

        let mut t = Translator {
            b,
            insns,
            program,
            regs,
            depth,
            budget,
            state,
            block_at,
            leaders,
            call_sites: Vec::new(),
            save_area,
            memory_fault,
            budget_exhausted,
            depth_exceeded,
            leave,
            finish,
            return_to_caller,
            external_sig,
            push_sig,
            pop_sig,
        };
        t.emit_entry();
        t
    }

    fn finish_function(mut self, config: TargetFrontendConfig) {
        for index in 0..self.leaders.len() {
            let start = self.leaders[index];
            let end = self
                .leaders
                .get(index + 1)
                .copied()
                .unwrap_or(self.insns.len());
            self.emit_basic_block(start, end);
        }
        self.emit_shared_exits();
        self.b.seal_all_blocks();
        self.b.finalize(config);
    }

    fn load_state(&mut self, offset: usize) -> Value {
        self.b
            .ins()
            .load(I64, state_flags(), self.state, field_offset(offset))
    }

    fn store_state(&mut self, value: Value, offset: usize) {
        self.b
            .ins()
            .store(state_flags(), value, self.state, field_offset(offset));
    }

    fn reg(&mut self, reg: u8) -> Value {
        self.b.use_var(self.regs[usize::from(reg & 0x0f).min(10)])
    }

    fn set_reg(&mut self, reg: u8, value: Value) {
        self.b
            .def_var(self.regs[usize::from(reg & 0x0f).min(10)], value);
    }

    fn iconst(&mut self, ty: Type, value: i64) -> Value {
        self.b.ins().iconst(ty, masked(ty, value))
    }

    /// r10 for call depth `depth`: `Memory::frame_pointer(depth)`.
    fn frame_pointer(&mut self, depth: Value) -> Value {
        let base = self
            .b
            .ins()
            .ishl_imm_s(depth, STACK_FRAME_STRIDE.trailing_zeros() as i64);
        self.b
            .ins()
            .iadd_imm_s(base, Memory::frame_pointer(0) as i64)
    }

    fn emit_entry(&mut self) {
        let zero = self.iconst(I64, 0);
        for reg in [0, 6, 7, 8, 9] {
            self.set_reg(reg, zero);
        }
        for (index, reg) in (1..=5).enumerate() {
            let value = self.load_state(offset_of!(RunState, args) + index * 8);
            self.set_reg(reg, value);
        }
        self.b.def_var(self.depth, zero);
        let fp = self.frame_pointer(zero);
        self.set_reg(10, fp);
        let budget = self.load_state(offset_of!(RunState, budget));
        self.b.def_var(self.budget, budget);
        self.jump_to_pc(0);
    }

    fn jump_to_pc(&mut self, pc: usize) {
        let block = self.block_at[pc].expect("every jump target is a leader");
        self.b.ins().jump(block, &[]);
    }

    /// Number of instructions (not slots) in `start..end`, and their pcs.
    fn instruction_pcs(&self, start: usize, end: usize) -> Vec<usize> {
        (start..end)
            .filter(|&pc| self.program.is_instruction_start(pc))
            .collect()
    }

    fn emit_basic_block(&mut self, start: usize, end: usize) {
        let pcs = self.instruction_pcs(start, end);
        let count = pcs.len() as i64;
        let check = self.block_at[start].expect("leader");
        let body = self.b.create_block();
        let counting = self.b.create_block();
        self.b.switch_to_block(check);
        let remaining = self.b.use_var(self.budget);
        let covered = self
            .b
            .ins()
            .icmp_imm_s(IntCC::UnsignedGreaterThanOrEqual, remaining, count);
        self.b.ins().brif(covered, body, &[], counting, &[]);

        self.b.switch_to_block(body);
        let left = self.b.ins().iadd_imm_s(remaining, -count);
        self.b.def_var(self.budget, left);
        let (last, plain) = pcs.split_last().expect("a basic block has an instruction");
        for &pc in plain {
            self.emit_plain(pc);
        }
        if is_terminator(&self.insns[*last]) {
            self.emit_terminator(*last);
        } else {
            self.emit_plain(*last);
            self.jump_to_pc(end);
        }

        // The budget runs out inside this block: run the first `remaining` instructions, then
        // stop at the next one, as the interpreter does. The terminator is never reached.
        self.b.switch_to_block(counting);
        for (index, &pc) in plain.iter().enumerate() {
            let runs_out = self
                .b
                .ins()
                .icmp_imm_s(IntCC::Equal, remaining, index as i64);
            let next = self.b.create_block();
            let pc_value = self.iconst(I64, pc as i64);
            self.b
                .ins()
                .brif(runs_out, self.budget_exhausted, &[arg(pc_value)], next, &[]);
            self.b.switch_to_block(next);
            self.emit_plain(pc);
        }
        let pc_value = self.iconst(I64, *last as i64);
        self.b.ins().jump(self.budget_exhausted, &[arg(pc_value)]);
    }

    /// Instructions that continue with the next one: ALU, 64-bit immediate loads, memory.
    fn emit_plain(&mut self, pc: usize) {
        let insn = self.insns[pc];
        match insn.class() {
            BPF_ALU | BPF_ALU64 => self.emit_alu(&insn),
            BPF_LD => {
                let value = wide_imm(&insn, &self.insns[pc + 1]);
                let value = self.iconst(I64, value as i64);
                self.set_reg(insn.dst, value);
            }
            BPF_LDX => self.emit_load(pc, &insn),
            BPF_ST | BPF_STX if insn.mode() == BPF_ATOMIC => self.emit_atomic(pc, &insn),
            BPF_ST | BPF_STX => self.emit_store(pc, &insn),
            _ => unreachable!("control flow instructions end basic blocks"),
        }
    }

    fn emit_alu(&mut self, insn: &Insn) {
        let wide = insn.class() == BPF_ALU64;
        let dst = self.reg(insn.dst);
        let src = if insn.source() == BPF_X && insn.op() != BPF_END && insn.op() != BPF_NEG {
            self.reg(insn.src)
        } else {
            self.iconst(I64, i64::from(insn.imm))
        };
        let result = match insn.op() {
            BPF_END => self.byte_swap(insn, wide, dst),
            BPF_MOV if insn.source() == BPF_X && insn.off != 0 => {
                let narrow = self.b.ins().ireduce(int_type(insn.off as usize / 8), src);
                let extended = self.b.ins().sextend(I64, narrow);
                if wide {
                    extended
                } else {
                    self.zero_extend_low(extended)
                }
            }
            _ if wide => self.alu_op(insn, I64, dst, src),
            _ => {
                let dst = self.b.ins().ireduce(I32, dst);
                let src = self.b.ins().ireduce(I32, src);
                let result = self.alu_op(insn, I32, dst, src);
                self.b.ins().uextend(I64, result)
            }
        };
        self.set_reg(insn.dst, result);
    }

    fn zero_extend_low(&mut self, value: Value) -> Value {
        let low = self.b.ins().ireduce(I32, value);
        self.b.ins().uextend(I64, low)
    }

    /// `op` of ALU instruction `insn` at width `ty` (I32 or I64).
    fn alu_op(&mut self, insn: &Insn, ty: Type, dst: Value, src: Value) -> Value {
        let signed = insn.off == 1;
        let shift_mask = i64::from(ty.bits()) - 1;
        let ins = self.b.ins();
        match insn.op() {
            BPF_ADD => ins.iadd(dst, src),
            BPF_SUB => ins.isub(dst, src),
            BPF_MUL => ins.imul(dst, src),
            BPF_OR => ins.bor(dst, src),
            BPF_AND => ins.band(dst, src),
            BPF_XOR => ins.bxor(dst, src),
            BPF_NEG => ins.ineg(dst),
            BPF_MOV => src,
            BPF_LSH | BPF_RSH | BPF_ARSH => {
                let amount = ins.band_imm_s(src, shift_mask);
                let ins = self.b.ins();
                match insn.op() {
                    BPF_LSH => ins.ishl(dst, amount),
                    BPF_RSH => ins.ushr(dst, amount),
                    _ => ins.sshr(dst, amount),
                }
            }
            BPF_DIV => self.divide(ty, dst, src, signed, false),
            // BPF_MOD, the last operation a Program admits here.
            _ => self.divide(ty, dst, src, signed, true),
        }
    }

    /// Division or remainder without traps: by 0 the quotient is 0 and the remainder the
    /// dividend; signed by -1 the quotient is the wrapping negation and the remainder 0.
    fn divide(&mut self, ty: Type, x: Value, y: Value, signed: bool, remainder: bool) -> Value {
        let zero = self.iconst(ty, 0);
        let one = self.iconst(ty, 1);
        let by_zero = self.b.ins().icmp(IntCC::Equal, y, zero);
        let on_zero = if remainder { x } else { zero };
        if !signed {
            let divisor = self.b.ins().select(by_zero, one, y);
            let result = if remainder {
                self.b.ins().urem(x, divisor)
            } else {
                self.b.ins().udiv(x, divisor)
            };
            return self.b.ins().select(by_zero, on_zero, result);
        }
        let minus_one = self.iconst(ty, -1);
        let by_minus_one = self.b.ins().icmp(IntCC::Equal, y, minus_one);
        let special = self.b.ins().bor(by_zero, by_minus_one);
        let divisor = self.b.ins().select(special, one, y);
        let result = if remainder {
            self.b.ins().srem(x, divisor)
        } else {
            self.b.ins().sdiv(x, divisor)
        };
        let on_minus_one = if remainder {
            zero
        } else {
            self.b.ins().ineg(x)
        };
        let result = self.b.ins().select(by_minus_one, on_minus_one, result);
        self.b.ins().select(by_zero, on_zero, result)
    }

    /// `BPF_END`: the 64-bit class and `to_be` swap the low `imm` bits, `to_le` truncates them
    /// (the target is little-endian); either way the result is zero-extended.
    fn byte_swap(&mut self, insn: &Insn, wide: bool, dst: Value) -> Value {
        let swap = wide || insn.source() == BPF_TO_BE;
        if insn.imm == 64 {
            return if swap { self.b.ins().bswap(dst) } else { dst };
        }
        let narrow = self.b.ins().ireduce(int_type(insn.imm as usize / 8), dst);
        let narrow = if swap {
            self.b.ins().bswap(narrow)
        } else {
            narrow
        };
        self.b.ins().uextend(I64, narrow)
    }

    fn emit_load(&mut self, pc: usize, insn: &Insn) {
        let size = access_size(insn);
        let host = self.translate(pc, insn.src, insn.off, size, Access::Read);
        let ty = int_type(size);
        let value = self.b.ins().load(ty, data_flags(), host, 0);
        let value = match (ty == I64, insn.mode() == BPF_MEMSX) {
            (true, _) => value,
            (false, true) => self.b.ins().sextend(I64, value),
            (false, false) => self.b.ins().uextend(I64, value),
        };
        self.set_reg(insn.dst, value);
    }

    fn emit_store(&mut self, pc: usize, insn: &Insn) {
        let size = access_size(insn);
        let value = if insn.class() == BPF_ST {
            self.iconst(I64, i64::from(insn.imm))
        } else {
            self.reg(insn.src)
        };
        let host = self.translate(pc, insn.dst, insn.off, size, Access::Write);
        let flags = data_flags();
        let ins = self.b.ins();
        match size {
            1 => ins.istore8(flags, value, host, 0),
            2 => ins.istore16(flags, value, host, 0),
            4 => ins.istore32(flags, value, host, 0),
            _ => ins.store(flags, value, host, 0),
        };
    }

    /// Read-modify-write at the access width; like the interpreter, even a failed
    /// compare-and-exchange writes (the old value) back.
    fn emit_atomic(&mut self, pc: usize, insn: &Insn) {
        let size = access_size(insn);
        let ty = int_type(size);
        let operand = self.reg(insn.src);
        let expected = self.reg(0);
        let host = self.translate(pc, insn.dst, insn.off, size, Access::ReadWrite);
        let old = self.b.ins().load(ty, data_flags(), host, 0);
        let narrow = |t: &mut Self, value: Value| {
            if ty == I64 {
                value
            } else {
                t.b.ins().ireduce(ty, value)
            }
        };
        let operand = narrow(self, operand);
        let new = match insn.imm {
            BPF_XCHG => operand,
            BPF_CMPXCHG => {
                let expected = narrow(self, expected);
                let matches = self.b.ins().icmp(IntCC::Equal, old, expected);
                self.b.ins().select(matches, operand, old)
            }
            imm => match u8::try_from(imm & !BPF_FETCH) {
                Ok(BPF_ADD) => self.b.ins().iadd(old, operand),
                Ok(BPF_OR) => self.b.ins().bor(old, operand),
                Ok(BPF_AND) => self.b.ins().band(old, operand),
                // BPF_XOR, the only other operation a Program admits.
                _ => self.b.ins().bxor(old, operand),
            },
        };
        self.b.ins().store(data_flags(), new, host, 0);
        let old = if ty == I64 {
            old
        } else {
            self.b.ins().uextend(I64, old)
        };
        if insn.imm == BPF_CMPXCHG {
            self.set_reg(0, old);
        } else if insn.imm & BPF_FETCH != 0 {
            self.set_reg(insn.src, old);
        }
    }

    /// Host address of the `size` bytes at `base + off`, after checking they lie inside one
    /// region (writable for `Write`/`ReadWrite`) or one live stack frame; otherwise the run ends
    /// with a memory fault at `pc`. Leaves the builder in a block where the address is valid.
    fn translate(&mut self, pc: usize, base: u8, off: i16, size: usize, access: Access) -> Value {
        let write_bit = if access == Access::Write {
            FAULT_WRITE
        } else {
            0
        };
        let info = size as u64 | write_bit;
        let base_value = self.reg(base);
        let addr = self.b.ins().iadd_imm_s(base_value, i64::from(off));
        if base == 10 {
            return self.translate_frame_relative(pc, addr, info, off, size);
        }
        let done = self.b.create_block();
        self.b.append_block_param(done, I64);
        let region_block = self.b.create_block();
        let stack_block = self.b.create_block();

        // Region k lives at (k + 1) << 32.
        let high = self.b.ins().ushr_imm_s(addr, 32);
        let index = self.b.ins().iadd_imm_s(high, -1);
        let count = self.load_state(std::mem::offset_of!(RunState, region_count));
        let is_region = self.b.ins().icmp(IntCC::UnsignedLessThan, index, count);
        self.b
            .ins()
            .brif(is_region, region_block, &[], stack_block, &[]);

        self.b.switch_to_block(region_block);
        let table = self.load_state(std::mem::offset_of!(RunState, regions));
        let entry_offset = self
            .b
            .ins()
            .ishl_imm_s(index, size_of::<RegionEntry>().trailing_zeros() as i64);
        let entry = self.b.ins().iadd(table, entry_offset);
        let offset = self.zero_extend_low(addr);
        let end = self.b.ins().iadd_imm_s(offset, size as i64);
        let limit_field = if access == Access::Write {
            offset_of!(RegionEntry, writable_len)
        } else {
            offset_of!(RegionEntry, len)
        };
        let limit = self
            .b
            .ins()
            .load(I64, state_flags(), entry, field_offset(limit_field));
        let inside = self
            .b
            .ins()
            .icmp(IntCC::UnsignedLessThanOrEqual, end, limit);
        let mut in_bounds = self.b.create_block();
        self.continue_or_fault(inside, in_bounds, pc, addr, info);
        if access == Access::ReadWrite {
            // Readable but read-only faults as the interpreter's write-back does.
            self.b.switch_to_block(in_bounds);
            in_bounds = self.b.create_block();
            let writable_len = self.b.ins().load(
                I64,
                state_flags(),
                entry,
                field_offset(offset_of!(RegionEntry, writable_len)),
            );
            let writable = self
                .b
                .ins()
                .icmp(IntCC::UnsignedLessThanOrEqual, end, writable_len);
            self.continue_or_fault(writable, in_bounds, pc, addr, size as u64 | FAULT_WRITE);
        }
        self.b.switch_to_block(in_bounds);
        let host_base = self.b.ins().load(
            I64,
            state_flags(),
            entry,
            field_offset(offset_of!(RegionEntry, host)),
        );
        let host = self.b.ins().iadd(host_base, offset);
        self.b.ins().jump(done, &[arg(host)]);

        // Stack frame f lives at STACK_BASE + f * STACK_FRAME_STRIDE; frames 0..=depth are live.
        self.b.switch_to_block(stack_block);
        let from_stack_base = self
            .b
            .ins()
            .iadd_imm_s(addr, (STACK_BASE as i64).wrapping_neg());
        let frame = self
            .b
            .ins()
            .ushr_imm_s(from_stack_base, STACK_FRAME_STRIDE.trailing_zeros() as i64);
        let within = self
            .b
            .ins()
            .band_imm_s(from_stack_base, STACK_FRAME_STRIDE as i64 - 1);
        let depth = self.b.use_var(self.depth);
        let live = self
            .b
            .ins()
            .icmp(IntCC::UnsignedLessThanOrEqual, frame, depth);
        let within_end = self.b.ins().iadd_imm_s(within, size as i64);
        let fits = self.b.ins().icmp_imm_s(
            IntCC::UnsignedLessThanOrEqual,
            within_end,
            STACK_FRAME_SIZE as i64,
        );
        let ok = self.b.ins().band(live, fits);
        let stack_ok = self.b.create_block();
        self.continue_or_fault(ok, stack_ok, pc, addr, info);
        self.b.switch_to_block(stack_ok);
        let host = self.stack_address(frame, within);
        self.b.ins().jump(done, &[arg(host)]);

        self.b.switch_to_block(done);
        self.b.block_params(done)[0]
    }

    /// Continues in `then` when `ok`, else ends the run with a memory fault at `pc`. The fault's
    /// details are set up in a cold block of their own, off the path of accesses that succeed.
    fn continue_or_fault(&mut self, ok: Value, then: Block, pc: usize, addr: Value, info: u64) {
        let fault = self.b.create_block();
        self.b.set_cold_block(fault);
        self.b.ins().brif(ok, then, &[], fault, &[]);
        self.b.switch_to_block(fault);
        self.jump_to_memory_fault(pc, addr, info);
    }

    fn jump_to_memory_fault(&mut self, pc: usize, addr: Value, info: u64) {
        let pc_value = self.iconst(I64, pc as i64);
        let info = self.iconst(I64, info as i64);
        self.b
            .ins()
            .jump(self.memory_fault, &[arg(pc_value), arg(addr), arg(info)]);
    }

    /// `r10 + off` is in the current frame at a compile-time offset: check it now.
    fn translate_frame_relative(
        &mut self,
        pc: usize,
        addr: Value,
        info: u64,
        off: i16,
        size: usize,
    ) -> Value {
        let within = STACK_FRAME_SIZE as i64 + i64::from(off);
        if within >= 0 && within + size as i64 <= STACK_FRAME_SIZE as i64 {
            let depth = self.b.use_var(self.depth);
            let within = self.iconst(I64, within);
            return self.stack_address(depth, within);
        }
        self.jump_to_memory_fault(pc, addr, info);
        // Code after a certain fault is unreachable but must still be well-formed.
        let unreachable = self.b.create_block();
        self.b.switch_to_block(unreachable);
        self.iconst(I64, 0)
    }

    fn stack_address(&mut self, frame: Value, within: Value) -> Value {
        let stack = self.load_state(offset_of!(RunState, stack));
        let frame_offset = self
            .b
            .ins()
            .ishl_imm_s(frame, STACK_FRAME_SIZE.trailing_zeros() as i64);
        let frame_base = self.b.ins().iadd(stack, frame_offset);
        self.b.ins().iadd(frame_base, within)
    }

    fn emit_terminator(&mut self, pc: usize) {
        let insn = self.insns[pc];
        match insn.code {
            EXIT => {
                let depth = self.b.use_var(self.depth);
                self.b
                    .ins()
                    .brif(depth, self.return_to_caller, &[], self.finish, &[]);
            }
            CALL if insn.src == BPF_PSEUDO_CALL => self.emit_local_call(pc, &insn),
            CALL => self.emit_external_call(pc, &insn),
            _ => {
                let target = insn.jump_target(pc).expect("validated jump");
                if insn.op() == BPF_JA {
                    self.jump_to_pc(target);
                } else {
                    let taken = self.condition(&insn);
                    let taken_block = self.block_at[target].expect("leader");
                    let next_block = self.block_at[pc + 1].expect("leader");
                    self.b.ins().brif(taken, taken_block, &[], next_block, &[]);
                }
            }
        }
    }

    fn condition(&mut self, insn: &Insn) -> Value {
        let wide = insn.class() == BPF_JMP;
        let ty = if wide { I64 } else { I32 };
        let mut a = self.reg(insn.dst);
        let mut b = if insn.source() == BPF_X {
            self.reg(insn.src)
        } else {
            self.iconst(I64, i64::from(insn.imm))
        };
        if !wide {
            a = self.b.ins().ireduce(I32, a);
            b = self.b.ins().ireduce(I32, b);
        }
        let cc = match insn.op() {
            BPF_JEQ => IntCC::Equal,
            BPF_JNE => IntCC::NotEqual,
            BPF_JGT => IntCC::UnsignedGreaterThan,
            BPF_JGE => IntCC::UnsignedGreaterThanOrEqual,
            BPF_JLT => IntCC::UnsignedLessThan,
            BPF_JLE => IntCC::UnsignedLessThanOrEqual,
            BPF_JSGT => IntCC::SignedGreaterThan,
            BPF_JSGE => IntCC::SignedGreaterThanOrEqual,
            BPF_JSLT => IntCC::SignedLessThan,
            BPF_JSLE => IntCC::SignedLessThanOrEqual,
            // BPF_JSET
            _ => {
                let common = self.b.ins().band(a, b);
                let zero = self.iconst(ty, 0);
                return self.b.ins().icmp(IntCC::NotEqual, common, zero);
            }
        };
        self.b.ins().icmp(cc, a, b)
    }

    fn call_helper(&mut self, address: usize, sig: SigRef, args: &[Value]) -> Option<Value> {
        let callee = self.iconst(I64, address as i64);
        let call = self.b.ins().call_indirect(sig, callee, args);
        self.b.inst_results(call).first().copied()
    }

    fn emit_local_call(&mut self, pc: usize, insn: &Insn) {
        let target = insn.pseudo_call_target(pc).expect("validated call");
        let pushed = self
            .call_helper(
                crate::push_frame as *const () as usize,
                self.push_sig,
                &[self.state],
            )
            .expect("push_frame returns a value");
        let entered = self.b.create_block();
        let pc_value = self.iconst(I64, pc as i64);
        self.b
            .ins()
            .brif(pushed, entered, &[], self.depth_exceeded, &[arg(pc_value)]);

        self.b.switch_to_block(entered);
        let site = self.call_sites.len();
        self.call_sites.push(pc);
        let depth = self.b.use_var(self.depth);
        let saved = self.saved_frame(depth);
        let site_value = self.iconst(I64, site as i64);
        self.b.ins().store(state_flags(), site_value, saved, 0);
        for (slot, reg) in (6..=9).enumerate() {
            let value = self.reg(reg);
            self.b
                .ins()
                .store(state_flags(), value, saved, 8 * (slot as i32 + 1));
        }
        let depth = self.b.ins().iadd_imm_s(depth, 1);
        self.b.def_var(self.depth, depth);
        let fp = self.frame_pointer(depth);
        self.set_reg(10, fp);
        self.jump_to_pc(target);
    }

    /// Address of the save area entry of the caller at `depth`.
    fn saved_frame(&mut self, depth: Value) -> Value {
        let area = self.b.ins().stack_addr(I64, self.save_area, 0);
        let offset = self.b.ins().imul_imm_s(depth, SAVED_FRAME_BYTES);
        self.b.ins().iadd(area, offset)
    }

    fn emit_external_call(&mut self, pc: usize, insn: &Insn) {
        for (index, reg) in (1..=5).enumerate() {
            let value = self.reg(reg);
            self.store_state(value, offset_of!(RunState, args) + index * 8);
        }
        let pc_value = self.iconst(I64, pc as i64);
        let src = self.iconst(I64, i64::from(insn.src));
        let imm = self.iconst(I64, i64::from(insn.imm as u32));
        let outcome = self
            .call_helper(
                crate::call_external as *const () as usize,
                self.external_sig,
                &[self.state, pc_value, src, imm],
            )
            .expect("call_external returns a status");
        let returned = self.b.create_block();
        self.b
            .ins()
            .brif(outcome, self.leave, &[arg(outcome)], returned, &[]);
        self.b.switch_to_block(returned);
        let result = self.load_state(offset_of!(RunState, result));
        self.set_reg(0, result);
        self.jump_to_pc(pc + 1);
    }

    fn emit_shared_exits(&mut self) {
        self.b.switch_to_block(self.finish);
        let r0 = self.reg(0);
        self.store_state(r0, offset_of!(RunState, result));
        let ok = self.iconst(I64, status::OK as i64);
        self.b.ins().return_(&[ok]);

        self.b.switch_to_block(self.leave);
        let outcome = self.b.block_params(self.leave)[0];
        self.b.ins().return_(&[outcome]);

        self.b.switch_to_block(self.memory_fault);
        let params = self.b.block_params(self.memory_fault).to_vec();
        for (value, field) in params.into_iter().zip([
            offset_of!(RunState, fault_pc),
            offset_of!(RunState, fault_addr),
            offset_of!(RunState, fault_info),
        ]) {
            self.store_state(value, field);
        }
        self.return_status(status::MEMORY_FAULT);

        for (block, code) in [
            (self.budget_exhausted, status::BUDGET_EXHAUSTED),
            (self.depth_exceeded, status::CALL_DEPTH_EXCEEDED),
        ] {
            self.b.switch_to_block(block);
            let pc = self.b.block_params(block)[0];
            self.store_state(pc, offset_of!(RunState, fault_pc));
            self.return_status(code);
        }

        // `exit` of a callee: restore the caller's r6..r9 and frame, pop the frame, continue
        // after the call site it came from.
        self.b.switch_to_block(self.return_to_caller);
        let depth = self.b.use_var(self.depth);
        let depth = self.b.ins().iadd_imm_s(depth, -1);
        self.b.def_var(self.depth, depth);
        let saved = self.saved_frame(depth);
        let site = self.b.ins().load(I64, state_flags(), saved, 0);
        for (slot, reg) in (6..=9).enumerate() {
            let value = self
                .b
                .ins()
                .load(I64, state_flags(), saved, 8 * (slot as i32 + 1));
            self.set_reg(reg, value);
        }
        let fp = self.frame_pointer(depth);
        self.set_reg(10, fp);
        self.call_helper(
            crate::pop_frame as *const () as usize,
            self.pop_sig,
            &[self.state],
        );
        let no_site = self.b.create_block();
        let sites: Vec<_> = self
            .call_sites
            .clone()
            .into_iter()
            .map(|pc| {
                let block =
                    self.block_at[pc + 1].expect("the instruction after a call is a leader");
                self.b.func.dfg.block_call(block, &[])
            })
            .collect();
        let default = self.b.func.dfg.block_call(no_site, &[]);
        let table = self
            .b
            .create_jump_table(JumpTableData::new(default, &sites));
        let site = self.b.ins().ireduce(I32, site);
        self.b.ins().br_table(site, table);
        // Unreachable: every saved site index is in the table.
        self.b.switch_to_block(no_site);
        self.return_status(u64::MAX);
    }

    fn return_status(&mut self, code: u64) {
        let value = self.iconst(I64, code as i64);
        self.b.ins().return_(&[value]);
    }
}

fn access_size(insn: &Insn) -> usize {
    match insn.size() {
        BPF_B => 1,
        BPF_H => 2,
        BPF_W => 4,
        _ => 8,
    }
}

/// Jumps, calls and exits end a basic block.
fn is_terminator(insn: &Insn) -> bool {
    matches!(insn.class(), BPF_JMP | BPF_JMP32)
}

/// First instruction of every basic block: the entry, every jump and call target, and every
/// instruction after a jump, call or exit.
fn leaders(program: &Program) -> Vec<usize> {
    let insns = program.insns();
    let mut is_leader = vec![false; insns.len()];
    is_leader[0] = true;
    for (pc, insn) in insns.iter().enumerate() {
        if !program.is_instruction_start(pc) || !is_terminator(insn) {
            continue;
        }
        if let Some(next) = is_leader.get_mut(pc + 1) {
            *next = true;
        }
        let target = insn.jump_target(pc).or(insn.pseudo_call_target(pc));
        if let Some(target) = target.and_then(|t| is_leader.get_mut(t)) {
            *target = true;
        }
    }
    (0..insns.len())
        .filter(|&pc| is_leader[pc] && program.is_instruction_start(pc))
        .collect()
}
