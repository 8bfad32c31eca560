//! A JIT for upsched's eBPF engine: compiles a [`Program`] to native code through Cranelift.
//!
//! The compiled code has the observable semantics of [`upsched_ebpf::Interpreter::run`] from
//! instruction 0: the same return value, the same memory effects and the same errors with the
//! same instruction index (memory faults, budget exhaustion, call depth, failed external calls).
//! Its memory safety does not rest on the verifier:
//!
//! - Every load and store translates the program's synthetic address (see
//!   `upsched_ebpf::memory`) into a host address through the run's region table, with a bounds
//!   check against the region's length (its writable length for stores, 0 for read-only
//!   regions), or against the live stack frames; anything else ends the run with a memory fault.
//!   Accesses relative to the frame pointer r10 (which a [`Program`] never writes) are checked
//!   when compiling, since their frame and offset are known then.
//! - The instruction budget is charged once per basic block, on entry. When the rest of the
//!   budget does not cover the block, a second, instruction-counting copy of the block runs
//!   instead, so the run stops at exactly the instruction where the interpreter would.
//! - bpf-to-bpf calls stay inside the one native function: a call pushes the return site and
//!   r6..r9 onto a small save area and jumps; `exit` in a callee pops them and dispatches back
//!   through a jump table. Frames are pushed and popped on the [`Memory`] itself, so helpers and
//!   kfuncs see the same live frames as under the interpreter.
//! - Helpers and kfuncs go through an `extern "C"` trampoline to the embedder's [`Externals`];
//!   a panic in them is caught there and resumed after the native code has returned.

use std::any::Any;
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use upsched_ebpf::insn::BPF_PSEUDO_KFUNC_CALL;
use upsched_ebpf::{CallKind, ExecError, Externals, Memory, Program};

mod compile;
#[doc(hidden)]
pub mod fuzzing;

/// Why a program could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum JitError {
    /// The host is not one Cranelift can generate code for, or is big-endian (the compiled
    /// code reads the program's little-endian memory with native loads).
    #[error("the JIT does not support this host: {0}")]
    UnsupportedHost(String),
    #[error("code generation failed: {0}")]
    Codegen(String),
}

/// Status the compiled function returns; details are left in [`RunState`].
mod status {
    pub const OK: u64 = 0;
    pub const MEMORY_FAULT: u64 = 1;
    pub const BUDGET_EXHAUSTED: u64 = 2;
    pub const CALL_DEPTH_EXCEEDED: u64 = 3;
    /// A helper or kfunc failed or panicked; the trampoline stored what happened.
    pub const CALL_FAILED: u64 = 4;
}

/// One region as the compiled code sees it. 32 bytes, so that indexing is a shift.
#[repr(C)]
#[derive(Clone, Copy)]
struct RegionEntry {
    host: *mut u8,
    len: u64,
    /// `len` for writable regions, 0 for read-only ones.
    writable_len: u64,
    _padding: u64,
}

impl RegionEntry {
    const UNUSED: RegionEntry = RegionEntry {
        host: std::ptr::null_mut(),
        len: 0,
        writable_len: 0,
        _padding: 0,
    };
}

/// Regions whose table lives inside the [`RunState`]; a policy has the context and at most
/// one region per global data section (`.bss`, `.data`, `.rodata`), so only unusual programs
/// need the heap.
const INLINE_REGIONS: usize = 4;

/// Everything the compiled code and the trampolines share during one run. The code reads and
/// writes the leading `repr(C)` fields at offsets taken with `offset_of!`.
#[repr(C)]
struct RunState<'a> {
    regions: *const RegionEntry,
    region_count: u64,
    stack: *mut u8,
    args: [u64; 5],
    /// r0 at the final `exit`, or the value a helper/kfunc returned.
    result: u64,
    fault_pc: u64,
    fault_addr: u64,
    /// Access size in the low byte, bit 8 set for a write.
    fault_info: u64,
    budget: u64,
    memory: *mut Memory,
    externals: &'a mut dyn Externals,
    /// The region table when it has at most [`INLINE_REGIONS`] entries, else `spilled_table`.
    inline_table: [RegionEntry; INLINE_REGIONS],
    spilled_table: Vec<RegionEntry>,
    call_error: Option<ExecError>,
    panic: Option<Box<dyn Any + Send>>,
}

impl RunState<'_> {
    /// Re-derives the region table and stack pointer from the [`Memory`]. Called at the start
    /// and after every trampoline that borrowed the memory mutably, so the code never uses a
    /// pointer older than the latest mutable borrow (and sees regions an external added).
    #[inline]
    fn refresh(&mut self) {
        // SAFETY: `memory` is the exclusive borrow `JitProgram::run` received; nothing else uses
        // it while the compiled code runs, and this borrow ends before the code continues.
        let memory = unsafe { &mut *self.memory };
        let (regions, stack) = memory.engine_view();
        let count = regions.len();
        // This runs on every call: no allocation and no growth checks for the usual few regions.
        let table = match self.inline_table.get_mut(..count) {
            Some(inline) => inline,
            None => {
                self.spilled_table.resize(count, RegionEntry::UNUSED);
                &mut self.spilled_table[..]
            }
        };
        for (entry, (bytes, writable)) in table.iter_mut().zip(regions) {
            *entry = RegionEntry {
                host: bytes.as_mut_ptr(),
                len: bytes.len() as u64,
                writable_len: if writable { bytes.len() as u64 } else { 0 },
                _padding: 0,
            };
        }
        self.regions = table.as_ptr();
        self.region_count = count as u64;
        self.stack = stack.as_mut_ptr();
    }
}

/// Calls helper or kfunc `imm` (kind from the call's `src`) with r1..r5, which the compiled
/// code stored in `args`; the code calls this for every external call.
extern "C" fn call_external(state: *mut RunState<'_>, pc: u64, src: u64, imm: u64) -> u64 {
    // SAFETY: the compiled code passes the state pointer `run` gave it, valid for the whole
    // run and not otherwise borrowed while the code waits for this call.
    let state = unsafe { &mut *state };
    let args = state.args;
    let kind = if src == u64::from(BPF_PSEUDO_KFUNC_CALL) {
        CallKind::Kfunc
    } else {
        CallKind::Helper
    };
    let id = imm as i32;
    // SAFETY: as in `refresh`: the run's exclusive memory borrow, used by nothing else now.
    let memory = unsafe { &mut *state.memory };
    let externals = &mut *state.externals;
    let outcome = catch_unwind(AssertUnwindSafe(|| externals.call(kind, id, args, memory)));
    state.refresh();
    match outcome {
        Ok(Ok(value)) => {
            state.result = value;
            status::OK
        }
        Ok(Err(source)) => {
            state.call_error = Some(ExecError::Call {
                pc: pc as usize,
                kind,
                id,
                source,
            });
            status::CALL_FAILED
        }
        Err(payload) => {
            state.panic = Some(payload);
            status::CALL_FAILED
        }
    }
}

/// Makes the next stack frame live (zeroed); 0 when the call chain is full.
extern "C" fn push_frame(state: *mut RunState<'_>) -> u64 {
    // SAFETY: see `call_external`.
    let state = unsafe { &mut *state };
    // SAFETY: see `RunState::refresh`.
    let pushed = unsafe { &mut *state.memory }.push_frame();
    state.refresh();
    u64::from(pushed)
}

/// Ends the deepest stack frame.
extern "C" fn pop_frame(state: *mut RunState<'_>) {
    // SAFETY: see `call_external`.
    let state = unsafe { &mut *state };
    // SAFETY: see `RunState::refresh`.
    unsafe { &mut *state.memory }.pop_frame();
    state.refresh();
}

type EntryPoint = unsafe extern "C" fn(*mut c_void) -> u64;

/// A program compiled to native code. Immutable and shareable: any number of threads may run it
/// at once, each with its own [`Memory`].
pub struct JitProgram {
    entry: EntryPoint,
    code: compile::CodeMemory,
}

impl std::fmt::Debug for JitProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JitProgram")
            .field("entry", &(self.entry as *const u8))
            .finish_non_exhaustive()
    }
}

/// How hard Cranelift works on a program. Compile time is what an untrusted object makes its
/// loader spend, so a large program trades code quality for a cost that grows about linearly
/// with its size (figures in docs/ebpf-engine.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Optimization {
    /// The optimiser and the backtracking register allocator: the fastest code, at a compile
    /// time that grows faster than the program.
    Speed,
    /// No optimiser passes and the single-pass register allocator.
    CompileTime,
}

impl JitProgram {
    /// Compiles `program`, entered at instruction 0, with [`Optimization::Speed`].
    pub fn compile(program: &Program) -> Result<JitProgram, JitError> {
        JitProgram::compile_with(program, Optimization::Speed)
    }

    /// Compiles `program`, entered at instruction 0, at the given optimisation.
    pub fn compile_with(
        program: &Program,
        optimization: Optimization,
    ) -> Result<JitProgram, JitError> {
        let (entry, code) = compile::compile(program, optimization)?;
        Ok(JitProgram { entry, code })
    }

    /// Bytes of native code generated.
    pub fn code_size(&self) -> usize {
        self.code.size
    }

    /// Runs the program from instruction 0 with r1..r5 = `args`, like
    /// `Interpreter::run(program, 0, args, memory, externals, budget)`, and with the same result.
    pub fn run(
        &self,
        args: [u64; 5],
        memory: &mut Memory,
        externals: &mut dyn Externals,
        budget: u64,
    ) -> Result<u64, ExecError> {
        memory.reset_stack();
        let mut state = RunState {
            regions: std::ptr::null(),
            region_count: 0,
            stack: std::ptr::null_mut(),
            args,
            result: 0,
            fault_pc: 0,
            fault_addr: 0,
            fault_info: 0,
            budget,
            memory,
            externals,
            inline_table: [RegionEntry::UNUSED; INLINE_REGIONS],
            spilled_table: Vec::new(),
            call_error: None,
            panic: None,
        };
        state.refresh();
        // SAFETY: `entry` is code generated by `compile` for exactly this calling convention;
        // it only dereferences the state (alive across the call), the region and stack
        // pointers the state holds after bounds checks, and calls the trampolines above.
        let outcome = unsafe { (self.entry)((&raw mut state).cast()) };
        if let Some(payload) = state.panic.take() {
            resume_unwind(payload);
        }
        let pc = state.fault_pc as usize;
        match outcome {
            status::OK => Ok(state.result),
            status::MEMORY_FAULT => Err(ExecError::MemoryAccess {
                pc,
                addr: state.fault_addr,
                size: (state.fault_info & 0xff) as usize,
                write: state.fault_info & compile::FAULT_WRITE != 0,
            }),
            status::BUDGET_EXHAUSTED => Err(ExecError::BudgetExhausted { pc, budget }),
            status::CALL_DEPTH_EXCEEDED => Err(ExecError::CallDepthExceeded { pc }),
            status::CALL_FAILED => Err(state
                .call_error
                .take()
                .unwrap_or(ExecError::PcOutOfBounds { pc })),
            // Only an engine bug (a return dispatch with no matching call site) gets here.
            _ => Err(ExecError::PcOutOfBounds { pc }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use upsched_ebpf::insn::{CALL, EXIT, Insn};
    use upsched_ebpf::{CallError, NoExternals};

    fn helper_call_program() -> Program {
        Program::new(vec![
            Insn::new(CALL, 0, 0, 0, 1),
            Insn::new(EXIT, 0, 0, 0, 0),
        ])
        .unwrap()
    }

    #[test]
    fn compiled_programs_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<JitProgram>();
        let jit = JitProgram::compile(&helper_call_program()).unwrap();
        assert!(jit.code_size() > 0);
        let results: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..2u64)
                .map(|n| {
                    let jit = &jit;
                    scope.spawn(move || {
                        let mut answer =
                            |_: CallKind, _: i32, args: [u64; 5], _: &mut Memory| Ok(args[0] + n);
                        jit.run([10, 0, 0, 0, 0], &mut Memory::new(), &mut answer, 100)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(results, [Ok(10), Ok(11)]);
    }

    /// More regions than fit in the run state's inline table: the table goes to the heap and
    /// the code reads, writes and faults exactly as the interpreter does.
    #[test]
    fn programs_reach_every_region_beyond_the_inline_table() {
        use upsched_ebpf::insn::{BPF_DW, BPF_LDX, BPF_MEM, BPF_STX, LDDW};
        use upsched_ebpf::{Interpreter, NoExternals};
        // Region n holds n + 1 in every byte and is writable when n is even.
        let mut memory = Memory::new();
        let ids: Vec<_> = (0..=INLINE_REGIONS as u8 + 1)
            .map(|n| {
                let bytes = vec![n + 1; 8];
                memory
                    .add_region(format!("r{n}"), bytes, n % 2 == 0)
                    .unwrap()
            })
            .collect();
        let (writable, last) = (ids[INLINE_REGIONS], ids[INLINE_REGIONS + 1]);
        let lddw = |reg: u8, address: u64| {
            [
                Insn::new(LDDW, reg, 0, 0, address as u32 as i32),
                Insn::new(0, 0, 0, 0, (address >> 32) as u32 as i32),
            ]
        };
        // r0 = *(u64 *)last; *(u64 *)target = r0; exit
        let copy_last_to = |target| {
            let mut insns = Vec::new();
            insns.extend(lddw(1, memory.region_base(last)));
            insns.push(Insn::new(BPF_LDX | BPF_MEM | BPF_DW, 0, 1, 0, 0));
            insns.extend(lddw(2, memory.region_base(target)));
            insns.push(Insn::new(BPF_STX | BPF_MEM | BPF_DW, 2, 0, 0, 0));
            insns.push(Insn::new(EXIT, 0, 0, 0, 0));
            Program::new(insns).unwrap()
        };
        let last_bytes = [INLINE_REGIONS as u8 + 2; 8];
        for target in [writable, last] {
            let program = copy_last_to(target);
            let (mut native_memory, mut interpreted_memory) = (memory.clone(), memory.clone());
            let native = JitProgram::compile(&program).unwrap().run(
                [0; 5],
                &mut native_memory,
                &mut NoExternals,
                100,
            );
            let interpreted = Interpreter::run(
                &program,
                0,
                [0; 5],
                &mut interpreted_memory,
                &mut NoExternals,
                100,
            );
            assert_eq!(native, interpreted);
            for id in &ids {
                assert_eq!(native_memory.region(*id), interpreted_memory.region(*id));
            }
            if target == writable {
                assert_eq!(native, Ok(u64::from_le_bytes(last_bytes)));
                assert_eq!(native_memory.region(writable), last_bytes);
            } else {
                assert!(
                    matches!(native, Err(ExecError::MemoryAccess { write: true, .. })),
                    "{native:?}"
                );
            }
        }
    }

    #[test]
    fn a_panic_in_an_external_unwinds_past_the_native_code() {
        let jit = JitProgram::compile(&helper_call_program()).unwrap();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut boom =
                |_: CallKind, _: i32, _: [u64; 5], _: &mut Memory| -> Result<u64, CallError> {
                    panic!("boom")
                };
            jit.run([0; 5], &mut Memory::new(), &mut boom, 100)
        }));
        let payload = outcome.expect_err("the panic reaches the caller");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom"));
        // The program is still usable afterwards.
        let unbound = jit.run([0; 5], &mut Memory::new(), &mut NoExternals, 100);
        assert!(matches!(
            unbound,
            Err(ExecError::Call {
                pc: 0,
                source: CallError::Unbound,
                ..
            })
        ));
    }
}
