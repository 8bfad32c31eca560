//! The verifier: proves, before a program runs, that it only touches the memory it was given,
//! never reads what it did not initialise, never leaks a pointer, calls only what it may, and
//! terminates.
//!
//! It is generic: the embedder describes the memory in an [`Environment`] (the context the
//! program gets in r1, its size, which bytes are writable, whether r1 may be NULL; the global
//! regions and which `lddw` instructions load their addresses; the external calls allowed).
//!
//! Method: abstract interpretation along paths, as the kernel's verifier does. Each register
//! holds an abstract [`Value`]: uninitialised, a scalar with unsigned and signed bounds, or a
//! pointer (context, possibly-NULL context, stack frame, global region) with an offset range.
//! The stack is tracked per byte (uninitialised, initialised, zero) with whole-register spills
//! per 8-byte slot. Conditional jumps narrow the ranges on each edge and drop infeasible edges;
//! calls into the program's own functions are analysed in their caller's context. At jump
//! targets the state is compared with states seen there before: a state contained in one whose
//! every continuation was already verified is pruned; a state contained in one that is still
//! being explored on the current path means a loop that made no progress, which is rejected.
//! Loops whose exit the analysis reaches within the exploration budget are accepted (bounded
//! loops); anything else is rejected as possibly not terminating.

mod functions;
mod scalar;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;

use crate::insn::*;
use crate::interp::{CallKind, eval_alu, eval_condition};
use crate::memory::{MAX_CALL_DEPTH, STACK_FRAME_SIZE};
use crate::program::Program;
pub use functions::{ArgSpec, GlobalFunction, MAX_COMBINED_STACK, frame_stack_size};
pub use scalar::Scalar;
use scalar::{Relation, refine};

/// Default limit of instructions explored over all paths (the kernel's limit too).
pub const DEFAULT_MAX_EXPLORED: u64 = 1_000_000;
/// Most states remembered per jump target for pruning.
const MAX_STATES_PER_TARGET: usize = 64;
/// Most states remembered over the whole program, and most paths waiting to be explored: both
/// bound the verifier's memory on hostile input.
const MAX_REMEMBERED_STATES: usize = 8192;
const MAX_PENDING_PATHS: usize = 32768;
const STACK_SLOTS: usize = STACK_FRAME_SIZE / 8;
/// Pointer offsets beyond this magnitude are treated as unknown, which keeps offset arithmetic
/// far from overflow; no region of an accepted program is this large.
const MAX_POINTER_OFFSET: i64 = 1 << 40;

/// The context the entry function receives in r1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextSpec {
    /// Bytes the program may read: `0..size`.
    pub size: u64,
    /// Byte ranges the program may write (start, end exclusive).
    pub writable: Vec<(u64, u64)>,
    /// Whether r1 may be NULL at entry, so the program must check it before any access.
    pub nullable: bool,
}

/// A global memory region (e.g. `.bss`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionSpec {
    pub name: String,
    pub size: u64,
    pub writable: bool,
}

/// An `lddw` that loads the address of byte `offset` of region `region` (an index into
/// [`Environment::regions`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionLoad {
    pub pc: usize,
    pub region: usize,
    pub offset: u64,
}

/// An external function the program may call: helper or kfunc `id` (the call's `imm`), with
/// scalar arguments `args` in r1.. ; it returns a scalar in r0 and clobbers r1..r5.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedCall {
    pub kind: CallKind,
    pub id: i32,
    pub name: String,
    pub args: Vec<CallArg>,
}

/// A parameter of an external function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallArg {
    pub name: String,
    /// Bytes of the register the callee reads (4 or 8; 4 means the low half).
    pub size: u8,
    /// The only values the program may pass, each with a name for messages; `None`: any
    /// number.
    pub domain: Option<Vec<(String, u64)>>,
}

impl CallArg {
    /// A 64-bit parameter that takes any number.
    pub fn any(name: &str) -> CallArg {
        CallArg {
            name: name.to_string(),
            size: 8,
            domain: None,
        }
    }

    /// Why `value` (the register's abstract value) may lie outside the domain, if it may.
    fn outside_domain(&self, value: &Scalar) -> Option<String> {
        let domain = self.domain.as_ref()?;
        let value = match value.as_constant() {
            Some(constant) if self.size < 8 => Scalar::constant(u64::from(constant as u32)),
            _ if self.size < 8 => value.low32(),
            _ => *value,
        };
        let allowed = |x: u64| domain.iter().any(|(_, v)| *v == x);
        let covered =
            value.umax - value.umin < domain.len() as u64 && (value.umin..=value.umax).all(allowed);
        if covered {
            return None;
        }
        let found = match value.as_constant() {
            Some(constant) => format!("is {constant:#x}"),
            None => format!(
                "is not a constant here (it may be any of {:#x}..={:#x})",
                value.umin, value.umax
            ),
        };
        let names: Vec<String> = domain
            .iter()
            .map(|(name, v)| format!("{name} ({v:#x})"))
            .collect();
        let wanted = match names.as_slice() {
            [one] => one.clone(),
            many => format!("one of {}", many.join(", ")),
        };
        Some(format!("{found}; it must be {wanted}"))
    }
}

/// What the program may touch and call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Environment {
    pub context: ContextSpec,
    pub regions: Vec<RegionSpec>,
    pub region_loads: Vec<RegionLoad>,
    pub calls: Vec<AllowedCall>,
    /// Functions verified on their own, as the kernel verifies global (non-static) functions:
    /// from their typed arguments, whatever their callers pass; a call to one is checked
    /// against its argument types and returns an unknown number.
    pub global_functions: Vec<GlobalFunction>,
    /// Instructions the analysis may explore over all paths before it gives up.
    pub max_explored: u64,
}

/// Stable identifiers of the reasons for a rejection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectKind {
    /// Not structurally a program (see [`crate::ProgramError`]).
    Malformed,
    InvalidJump,
    UninitRegister,
    UninitStack,
    NullDereference,
    OutOfBounds,
    ReadOnlyWrite,
    InputWrite,
    PointerLeak,
    PointerArithmetic,
    NotAPointer,
    CallNotAllowed,
    /// An argument of an external call may lie outside its domain.
    ArgumentDomain,
    CallDepth,
    /// The stack of a call chain exceeds the kernel's combined limit.
    StackSize,
    MayNotTerminate,
}

/// Why a program is rejected, at which instruction.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("instruction {pc}: {message}")]
pub struct Rejection {
    pub pc: usize,
    pub kind: RejectKind,
    pub message: String,
}

/// Statistics of a successful verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Verdict {
    /// Instructions explored over all paths.
    pub explored: u64,
    /// States remembered at jump targets.
    pub states: usize,
}

/// Where a pointer points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Base {
    Context {
        nullable: bool,
    },
    /// Stack frame `frame` of the call chain (0: the entry function); offsets are relative to
    /// the frame's r10, so valid ones are negative.
    Stack {
        frame: usize,
    },
    Region(usize),
}

/// Abstract value of a register or a spilled stack slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Value {
    Uninit,
    Scalar(Scalar),
    Pointer { base: Base, offset: Scalar },
}

impl Value {
    fn includes(&self, other: &Value) -> bool {
        match (self, other) {
            // A state that never read the register stays safe whatever it holds.
            (Value::Uninit, _) => true,
            (Value::Scalar(a), Value::Scalar(b)) => a.contains(b),
            (
                Value::Pointer {
                    base: base_a,
                    offset: a,
                },
                Value::Pointer {
                    base: base_b,
                    offset: b,
                },
            ) => {
                let same_base = match (base_a, base_b) {
                    (Base::Context { nullable: na }, Base::Context { nullable: nb }) => *na || !nb,
                    _ => base_a == base_b,
                };
                same_base && a.contains(b)
            }
            _ => false,
        }
    }

    fn constant(value: u64) -> Value {
        Value::Scalar(Scalar::constant(value))
    }
}

/// One byte of a stack slot that holds no spilled register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Byte {
    Uninit,
    Zero,
    Initialised,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Bytes([Byte; 8]),
    /// An 8-byte aligned store of a whole register: reloading it gives the value back, which is
    /// how pointers survive on the stack.
    Spill(Value),
}

impl Slot {
    const UNINIT: Slot = Slot::Bytes([Byte::Uninit; 8]);

    fn includes(&self, other: &Slot) -> bool {
        match (self, other) {
            (Slot::Bytes(a), Slot::Bytes(b)) => a.iter().zip(b).all(|(a, b)| match a {
                Byte::Uninit => true,
                Byte::Zero => *b == Byte::Zero,
                Byte::Initialised => *b != Byte::Uninit,
            }),
            (Slot::Bytes(a), Slot::Spill(Value::Scalar(s))) => a.iter().all(|a| match a {
                Byte::Uninit | Byte::Initialised => true,
                Byte::Zero => s.as_constant() == Some(0),
            }),
            (Slot::Bytes(a), Slot::Spill(Value::Uninit)) => a.iter().all(|a| *a == Byte::Uninit),
            (Slot::Bytes(a), Slot::Spill(_)) => a.iter().all(|a| *a == Byte::Uninit),
            (Slot::Spill(a), Slot::Spill(b)) => a.includes(b),
            (Slot::Spill(Value::Uninit), _) => true,
            (Slot::Spill(_), Slot::Bytes(_)) => false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Frame {
    regs: [Value; 11],
    /// Shared between the states of different paths until one of them writes it, so that
    /// remembered and pending states stay small.
    stack: Rc<[Slot; STACK_SLOTS]>,
    /// Where the caller continues; unused for frame 0.
    return_pc: usize,
    /// First instruction of the function this frame runs.
    entry: usize,
}

impl Frame {
    fn new(depth: usize, return_pc: usize, entry: usize) -> Frame {
        let mut regs = [Value::Uninit; 11];
        regs[10] = Value::Pointer {
            base: Base::Stack { frame: depth },
            offset: Scalar::constant(0),
        };
        Frame {
            regs,
            stack: Rc::new([Slot::UNINIT; STACK_SLOTS]),
            return_pc,
            entry,
        }
    }

    fn includes(&self, other: &Frame) -> bool {
        self.return_pc == other.return_pc
            && self
                .regs
                .iter()
                .zip(&other.regs)
                .all(|(a, b)| a.includes(b))
            && (Rc::ptr_eq(&self.stack, &other.stack)
                || self
                    .stack
                    .iter()
                    .zip(other.stack.iter())
                    .all(|(a, b)| a.includes(b)))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct State {
    /// The call chain, entry function first; the last frame is the running one.
    frames: Vec<Frame>,
}

impl State {
    fn includes(&self, other: &State) -> bool {
        self.frames.len() == other.frames.len()
            && self
                .frames
                .iter()
                .zip(&other.frames)
                .all(|(a, b)| a.includes(b))
    }

    fn frame(&self) -> &Frame {
        self.frames.last().expect("a state always has a frame")
    }

    fn frame_mut(&mut self) -> &mut Frame {
        self.frames.last_mut().expect("a state always has a frame")
    }

    fn depth(&self) -> usize {
        self.frames.len() - 1
    }

    fn reg(&self, reg: u8) -> Value {
        self.frame().regs[usize::from(reg)]
    }

    fn set(&mut self, reg: u8, value: Value) {
        self.frame_mut().regs[usize::from(reg)] = value;
    }

    /// Replaces every copy of the possibly-NULL context pointer (registers and spills in all
    /// frames) by `value`. Sound because arithmetic on that pointer is refused, so every copy
    /// holds the very value r1 had at entry.
    fn resolve_nullable_context(&mut self, value: Value) {
        let is_nullable = |v: &Value| {
            matches!(
                v,
                Value::Pointer {
                    base: Base::Context { nullable: true },
                    ..
                }
            )
        };
        for frame in &mut self.frames {
            for reg in &mut frame.regs {
                if is_nullable(reg) {
                    *reg = value;
                }
            }
            let holds_nullable = frame
                .stack
                .iter()
                .any(|slot| matches!(slot, Slot::Spill(spilled) if is_nullable(spilled)));
            if holds_nullable {
                for slot in Rc::make_mut(&mut frame.stack).iter_mut() {
                    if let Slot::Spill(spilled) = slot {
                        if is_nullable(spilled) {
                            *spilled = value;
                        }
                    }
                }
            }
        }
    }
}

/// A state remembered at a jump target.
struct Remembered {
    state: State,
    /// Every continuation of this state has been verified.
    complete: bool,
}

/// A path waiting to be explored: where, in which state, and how long the path of
/// remembered in-progress states was when it branched off.
struct Pending {
    pc: usize,
    state: State,
    path_len: usize,
}

/// Verifies `program` against `env`: `Ok` with statistics, or the first rejection found.
pub fn verify(program: &Program, env: &Environment) -> Result<Verdict, Rejection> {
    Verifier::new(program, env).run()
}

/// Builds the [`Program`] (structural checks) and verifies it; structural errors become
/// rejections too.
pub fn verify_insns(insns: Vec<Insn>, env: &Environment) -> Result<(Program, Verdict), Rejection> {
    let program = Program::new(insns).map_err(structural_rejection)?;
    let verdict = verify(&program, env)?;
    Ok((program, verdict))
}

fn structural_rejection(error: crate::ProgramError) -> Rejection {
    use crate::ProgramError as E;
    let (pc, kind) = match &error {
        E::Empty => (0, RejectKind::Malformed),
        E::JumpOutOfBounds { pc, .. }
        | E::CallOutOfBounds { pc, .. }
        | E::TargetInsideWideLoad { pc, .. }
        | E::FallsOffEnd { pc } => (*pc, RejectKind::InvalidJump),
        E::UnknownOpcode { pc, .. }
        | E::InvalidField { pc, .. }
        | E::ReservedFieldSet { pc, .. }
        | E::InvalidRegister { pc, .. }
        | E::WritesFramePointer { pc }
        | E::IncompleteWideLoad { pc }
        | E::UnrelocatedWideLoad { pc, .. } => (*pc, RejectKind::Malformed),
    };
    let message = error.to_string();
    let message = message
        .strip_prefix(&format!("instruction {pc}: "))
        .unwrap_or(&message)
        .to_string();
    Rejection { pc, kind, message }
}

struct Verifier<'a> {
    insns: &'a [Insn],
    env: &'a Environment,
    /// Jump targets: where states are remembered and compared.
    is_target: Vec<bool>,
    remembered: Vec<Vec<Remembered>>,
    /// In-progress remembered states of the current path: (pc, index in `remembered[pc]`).
    path: Vec<(usize, usize)>,
    pending: Vec<Pending>,
    explored: u64,
    /// The last backward jump taken: where a loop that exhausts the budget is reported.
    last_back_edge: Option<usize>,
    remembered_total: usize,
    /// Deepest stack byte accessed per function (by first instruction), as the kernel counts
    /// a function's stack depth.
    stack_depths: RefCell<BTreeMap<usize, u32>>,
}

type Step = Result<Option<usize>, Rejection>;

fn reject(pc: usize, kind: RejectKind, message: impl Into<String>) -> Rejection {
    Rejection {
        pc,
        kind,
        message: message.into(),
    }
}

impl<'a> Verifier<'a> {
    fn new(program: &'a Program, env: &'a Environment) -> Verifier<'a> {
        let insns = program.insns();
        let mut is_target = vec![false; insns.len()];
        for (pc, insn) in insns.iter().enumerate() {
            if !program.is_instruction_start(pc) {
                continue;
            }
            if let Some(target) = insn.jump_target(pc) {
                if let Some(t) = is_target.get_mut(target) {
                    *t = true;
                }
                if !insn.is_unconditional_jump() {
                    if let Some(next) = is_target.get_mut(pc + 1) {
                        *next = true;
                    }
                }
            }
        }
        Verifier {
            insns,
            env,
            is_target,
            remembered: (0..insns.len()).map(|_| Vec::new()).collect(),
            path: Vec::new(),
            pending: Vec::new(),
            explored: 0,
            last_back_edge: None,
            remembered_total: 0,
            stack_depths: RefCell::new(BTreeMap::new()),
        }
    }

    fn run(mut self) -> Result<Verdict, Rejection> {
        for function in &self.env.global_functions {
            let mut entry = State {
                frames: vec![Frame::new(0, 0, function.start)],
            };
            for (index, arg) in function.args.iter().enumerate() {
                entry.set(index as u8 + 1, arg.entry_value());
            }
            self.pending.push(Pending {
                pc: function.start,
                state: entry,
                path_len: 0,
            });
        }
        let mut entry = State {
            frames: vec![Frame::new(0, 0, 0)],
        };
        entry.set(
            1,
            Value::Pointer {
                base: Base::Context {
                    nullable: self.env.context.nullable,
                },
                offset: Scalar::constant(0),
            },
        );
        self.pending.push(Pending {
            pc: 0,
            state: entry,
            path_len: 0,
        });
        while let Some(next) = self.pending.pop() {
            // Everything remembered since this branch was put aside has been fully explored.
            for (pc, index) in self.path.drain(next.path_len..) {
                self.remembered[pc][index].complete = true;
            }
            self.explore(next.pc, next.state)?;
        }
        functions::check_call_chains(
            self.insns,
            &self.env.global_functions,
            &self.stack_depths.borrow(),
        )?;
        Ok(Verdict {
            explored: self.explored,
            states: self.remembered_total,
        })
    }

    /// Follows one path until it exits, is pruned, or is rejected; branches are queued.
    fn explore(&mut self, mut pc: usize, mut state: State) -> Result<(), Rejection> {
        loop {
            self.explored += 1;
            if self.explored > self.env.max_explored {
                let message = format!(
                    "explored more than {} instructions without covering every path: ",
                    self.env.max_explored
                );
                return Err(match self.last_back_edge {
                    Some(back_edge) => reject(
                        back_edge,
                        RejectKind::MayNotTerminate,
                        message
                            + "the loop that jumps back here may not terminate (bound it with a constant)",
                    ),
                    None => reject(
                        pc,
                        RejectKind::MayNotTerminate,
                        message + "the program is too complex",
                    ),
                });
            }
            if self.is_target[pc] && self.visit_target(pc, &state)? {
                return Ok(());
            }
            let Some(insn) = self.insns.get(pc).copied() else {
                return Err(reject(
                    pc,
                    RejectKind::InvalidJump,
                    "execution leaves the program",
                ));
            };
            match self.step(pc, &insn, &mut state)? {
                Some(next) => pc = next,
                None => return Ok(()),
            }
        }
    }

    /// Compares `state` with the states remembered at jump target `pc`; `true` to prune.
    fn visit_target(&mut self, pc: usize, state: &State) -> Result<bool, Rejection> {
        for remembered in &self.remembered[pc] {
            if remembered.state.includes(state) {
                if remembered.complete {
                    return Ok(true);
                }
                return Err(reject(
                    pc,
                    RejectKind::MayNotTerminate,
                    "loop may not terminate: execution returns here in a state no more advanced \
                     than on an earlier iteration",
                ));
            }
        }
        let states = &mut self.remembered[pc];
        if states.len() < MAX_STATES_PER_TARGET && self.remembered_total < MAX_REMEMBERED_STATES {
            self.remembered_total += 1;
            states.push(Remembered {
                state: state.clone(),
                complete: false,
            });
            self.path.push((pc, states.len() - 1));
        }
        Ok(false)
    }

    /// Executes one instruction abstractly; the next pc, or `None` when the path ends.
    fn step(&mut self, pc: usize, insn: &Insn, state: &mut State) -> Step {
        match insn.class() {
            BPF_ALU | BPF_ALU64 => {
                self.alu(pc, insn, state)?;
                Ok(Some(pc + 1))
            }
            BPF_JMP | BPF_JMP32 => self.jump(pc, insn, state),
            BPF_LD => {
                // lddw: Program::new admits no other LD instruction.
                let tail = self
                    .insns
                    .get(pc + 1)
                    .copied()
                    .unwrap_or(Insn::new(0, 0, 0, 0, 0));
                let value = match self.env.region_loads.iter().find(|l| l.pc == pc) {
                    Some(load) => {
                        let Some(region) = self.env.regions.get(load.region) else {
                            return Err(reject(
                                pc,
                                RejectKind::Malformed,
                                "loads the address of a region the environment does not have",
                            ));
                        };
                        if load.offset > region.size {
                            return Err(reject(
                                pc,
                                RejectKind::OutOfBounds,
                                format!(
                                    "loads the address of byte {} of {}, which has {} bytes",
                                    load.offset, region.name, region.size
                                ),
                            ));
                        }
                        Value::Pointer {
                            base: Base::Region(load.region),
                            offset: Scalar::constant(load.offset),
                        }
                    }
                    None => Value::constant(wide_imm(insn, &tail)),
                };
                state.set(insn.dst, value);
                Ok(Some(pc + 2))
            }
            BPF_LDX => {
                let value = self.load(pc, insn, state)?;
                state.set(insn.dst, value);
                Ok(Some(pc + 1))
            }
            _ => {
                // ST, STX (plain and atomic)
                self.store(pc, insn, state)?;
                Ok(Some(pc + 1))
            }
        }
    }

    fn read_reg(&self, pc: usize, state: &State, reg: u8) -> Result<Value, Rejection> {
        match state.reg(reg) {
            Value::Uninit => Err(reject(
                pc,
                RejectKind::UninitRegister,
                format!("reads r{reg}, which holds no value here"),
            )),
            value => Ok(value),
        }
    }

    fn alu(&self, pc: usize, insn: &Insn, state: &mut State) -> Result<(), Rejection> {
        let wide = insn.class() == BPF_ALU64;
        let op = insn.op();
        let dst = insn.dst;
        // Source operand: register value or immediate (sign-extended for ALU64).
        let source = if insn.source() == BPF_X && op != BPF_NEG && op != BPF_END {
            Some(self.read_reg(pc, state, insn.src)?)
        } else {
            None
        };
        let immediate = if wide {
            insn.imm as i64 as u64
        } else {
            u64::from(insn.imm as u32)
        };
        let source_value = source.unwrap_or(Value::constant(immediate));

        if op == BPF_MOV {
            let value = match (source_value, wide, insn.off) {
                (value @ Value::Pointer { .. }, true, 0) => value,
                (Value::Pointer { .. }, _, _) => {
                    return Err(reject(
                        pc,
                        RejectKind::PointerArithmetic,
                        "truncates or sign-extends a pointer",
                    ));
                }
                (Value::Scalar(s), _, _) => {
                    Value::Scalar(self.scalar_alu(insn, &Scalar::UNKNOWN, &s))
                }
                (Value::Uninit, _, _) => unreachable_uninit(pc)?,
            };
            state.set(dst, value);
            return Ok(());
        }

        let destination = self.read_reg(pc, state, dst)?;
        let result = match (destination, source_value) {
            (Value::Scalar(d), Value::Scalar(s)) => Value::Scalar(self.scalar_alu(insn, &d, &s)),
            (Value::Pointer { base, offset }, Value::Scalar(s)) if wide => {
                self.pointer_arithmetic(pc, op, base, offset, s, false)?
            }
            (Value::Scalar(d), Value::Pointer { base, offset }) if wide && op == BPF_ADD => {
                self.pointer_arithmetic(pc, op, base, offset, d, true)?
            }
            (
                Value::Pointer {
                    base: base_a,
                    offset: a,
                },
                Value::Pointer {
                    base: base_b,
                    offset: b,
                },
            ) if wide && op == BPF_SUB && base_a == base_b && !is_nullable(base_a) => {
                Value::Scalar(a.sub(&b))
            }
            _ => {
                return Err(reject(
                    pc,
                    RejectKind::PointerArithmetic,
                    format!(
                        "`{insn}` is not allowed on a pointer: only 64-bit add and subtract of a scalar (or the difference of two pointers into the same memory)"
                    ),
                ));
            }
        };
        state.set(dst, result);
        Ok(())
    }

    /// Abstract result of a scalar ALU instruction; constants are folded with the
    /// interpreter's own semantics.
    fn scalar_alu(&self, insn: &Insn, d: &Scalar, s: &Scalar) -> Scalar {
        let wide = insn.class() == BPF_ALU64;
        let op = insn.op();
        // MOV ignores the destination; NEG and byte swaps have no source operand.
        let dst_known = if op == BPF_MOV {
            Some(0)
        } else {
            d.as_constant()
        };
        let src_known = if op == BPF_NEG || op == BPF_END {
            Some(0)
        } else {
            s.as_constant()
        };
        if let (Some(dv), Some(sv)) = (dst_known, src_known) {
            return Scalar::constant(eval_alu(insn, dv, sv));
        }
        if op == BPF_END {
            return d.byte_order(insn);
        }
        if wide {
            d.alu64(insn, s)
        } else {
            d.low32().alu32(insn, &s.low32())
        }
    }

    fn pointer_arithmetic(
        &self,
        pc: usize,
        op: u8,
        base: Base,
        offset: Scalar,
        amount: Scalar,
        scalar_is_dst: bool,
    ) -> Result<Value, Rejection> {
        if is_nullable(base) {
            return Err(reject(
                pc,
                RejectKind::NullDereference,
                "arithmetic on the context pointer before checking it against NULL",
            ));
        }
        let offset = match op {
            BPF_ADD => offset.add(&amount),
            BPF_SUB if !scalar_is_dst => offset.sub(&amount),
            _ => {
                return Err(reject(
                    pc,
                    RejectKind::PointerArithmetic,
                    "only 64-bit add and subtract of a scalar are allowed on a pointer",
                ));
            }
        };
        let offset = if offset.smin < -MAX_POINTER_OFFSET || offset.smax > MAX_POINTER_OFFSET {
            Scalar::UNKNOWN
        } else {
            offset
        };
        Ok(Value::Pointer { base, offset })
    }

    /// Checks an access of `size` bytes at `pointer + off`; returns the base and the constant
    /// offset of the access when it is constant.
    fn check_access(
        &self,
        pc: usize,
        pointer: Value,
        access: Access,
        state: &State,
    ) -> Result<(Base, Scalar), Rejection> {
        let Access {
            reg,
            off,
            size,
            write,
        } = access;
        let (base, offset) = match pointer {
            Value::Pointer { base, offset } => (base, offset),
            Value::Uninit => unreachable_uninit(pc)?,
            Value::Scalar(_) => {
                return Err(reject(
                    pc,
                    RejectKind::NotAPointer,
                    format!(
                        "{} memory through r{reg}, which holds a number, not a pointer",
                        if write { "writes" } else { "reads" }
                    ),
                ));
            }
        };
        let start = offset.add(&Scalar::constant(i64::from(off) as u64));
        let (lo, hi) = (start.smin, start.smax);
        let end_hi = hi.saturating_add(size as i64);
        let verb = if write { "writes" } else { "reads" };
        let unit = if size == 1 { "byte" } else { "bytes" };
        let describe = |what: &str, limit: String| {
            if lo == hi {
                format!("{verb} {size} {unit} at offset {lo} of {what}, {limit}")
            } else {
                format!("{verb} {size} {unit} at offsets {lo}..={hi} of {what}, {limit}")
            }
        };
        match base {
            Base::Context { nullable: true } => {
                return Err(reject(
                    pc,
                    RejectKind::NullDereference,
                    format!(
                        "{verb} the context through r{reg}, which may be NULL: check it against NULL first"
                    ),
                ));
            }
            Base::Context { nullable: false } => {
                let size_limit = self.env.context.size as i64;
                if lo < 0 || end_hi > size_limit {
                    return Err(reject(
                        pc,
                        RejectKind::OutOfBounds,
                        describe("the context", format!("which has {size_limit} bytes")),
                    ));
                }
                if write {
                    let inside = self
                        .env
                        .context
                        .writable
                        .iter()
                        .any(|&(s, e)| s as i64 <= lo && end_hi <= e as i64);
                    if !inside {
                        return Err(reject(
                            pc,
                            RejectKind::InputWrite,
                            describe(
                                "the context",
                                "outside the writable (output) fields".to_string(),
                            ),
                        ));
                    }
                }
            }
            Base::Region(index) => {
                let Some(region) = self.env.regions.get(index) else {
                    return Err(reject(
                        pc,
                        RejectKind::Malformed,
                        "pointer to an unknown region",
                    ));
                };
                if lo < 0 || end_hi > region.size as i64 {
                    return Err(reject(
                        pc,
                        RejectKind::OutOfBounds,
                        describe(&region.name, format!("which has {} bytes", region.size)),
                    ));
                }
                if write && !region.writable {
                    return Err(reject(
                        pc,
                        RejectKind::ReadOnlyWrite,
                        format!("writes {}, which is read-only", region.name),
                    ));
                }
            }
            Base::Stack { frame } => {
                if lo < -(STACK_FRAME_SIZE as i64) || end_hi > 0 {
                    return Err(reject(
                        pc,
                        RejectKind::OutOfBounds,
                        describe(
                            "the stack",
                            format!("outside its {STACK_FRAME_SIZE} bytes below r10"),
                        ),
                    ));
                }
                if frame > state.depth() {
                    return Err(reject(
                        pc,
                        RejectKind::OutOfBounds,
                        "accesses the stack of a function that has returned",
                    ));
                }
                let depth = lo.unsigned_abs() as u32;
                let mut depths = self.stack_depths.borrow_mut();
                let deepest = depths.entry(state.frames[frame].entry).or_default();
                *deepest = (*deepest).max(depth);
            }
        }
        Ok((base, start))
    }

    fn load(&self, pc: usize, insn: &Insn, state: &State) -> Result<Value, Rejection> {
        let size = insn.mem_size_bytes().unwrap_or(8);
        let sign_extend = insn.mode() == BPF_MEMSX;
        let pointer = self.read_reg(pc, state, insn.src)?;
        let (base, offset) =
            self.check_access(pc, pointer, Access::of(insn, insn.src, size, false), state)?;
        match base {
            Base::Stack { frame } if offset.smin == offset.smax => {
                let at = (offset.smin + STACK_FRAME_SIZE as i64) as usize;
                read_stack(pc, &state.frames[frame].stack, at, size, sign_extend)
            }
            Base::Stack { frame } => {
                // Variable offset: every byte it may read must hold an initialised number.
                let (first, end) = stack_span(&offset, size);
                for byte in first..end {
                    read_stack(pc, &state.frames[frame].stack, byte, 1, false)?;
                }
                Ok(Value::Scalar(Scalar::loaded(size, sign_extend)))
            }
            _ => Ok(Value::Scalar(Scalar::loaded(size, sign_extend))),
        }
    }

    fn store(&self, pc: usize, insn: &Insn, state: &mut State) -> Result<(), Rejection> {
        let size = insn.mem_size_bytes().unwrap_or(8);
        let atomic = insn.is_atomic();
        let value = if insn.class() == BPF_ST {
            Value::constant(insn.imm as i64 as u64)
        } else {
            self.read_reg(pc, state, insn.src)?
        };
        let pointer = self.read_reg(pc, state, insn.dst)?;
        let (base, offset) =
            self.check_access(pc, pointer, Access::of(insn, insn.dst, size, true), state)?;
        if let Value::Pointer { base: stored, .. } = value {
            let allowed = matches!(base, Base::Stack { .. }) && !atomic && size == 8;
            if !allowed {
                return Err(reject(
                    pc,
                    RejectKind::PointerLeak,
                    match base {
                        Base::Stack { .. } => "stores part of a pointer, or a pointer with an atomic operation".to_string(),
                        Base::Context { .. } => "stores a pointer into the context: pointers may only be spilled to the stack".to_string(),
                        Base::Region(_) => "stores a pointer into global memory: pointers may only be spilled to the stack".to_string(),
                    },
                ));
            }
            if let (Base::Stack { frame }, Base::Stack { frame: pointee }) = (base, stored) {
                if pointee > frame {
                    return Err(reject(
                        pc,
                        RejectKind::PointerLeak,
                        "stores a pointer to a callee's stack into a caller's stack, where it would outlive the callee",
                    ));
                }
            }
        }
        let variable_stack_offset =
            matches!(base, Base::Stack { .. }) && offset.smin != offset.smax;
        if variable_stack_offset && (atomic || matches!(value, Value::Pointer { .. })) {
            return Err(reject(
                pc,
                RejectKind::OutOfBounds,
                "stores a pointer, or does an atomic operation, at a variable stack offset; \
                 only numbers may be stored at variable stack offsets",
            ));
        }
        if atomic {
            self.atomic_effects(pc, insn, state, base, offset, size)?;
            return Ok(());
        }
        if let (Base::Stack { frame }, true) = (base, variable_stack_offset) {
            let (first, end) = stack_span(&offset, size);
            smear_stack(Rc::make_mut(&mut state.frames[frame].stack), first, end);
        } else if let Base::Stack { frame } = base {
            let at = (offset.smin + STACK_FRAME_SIZE as i64) as usize;
            write_stack(
                Rc::make_mut(&mut state.frames[frame].stack),
                at,
                size,
                value,
            );
        }
        Ok(())
    }

    /// Atomics read and write memory and may return the old value in a register.
    fn atomic_effects(
        &self,
        pc: usize,
        insn: &Insn,
        state: &mut State,
        base: Base,
        offset: Scalar,
        size: usize,
    ) -> Result<(), Rejection> {
        if insn.imm == BPF_CMPXCHG {
            let expected = self.read_reg(pc, state, 0)?;
            if matches!(expected, Value::Pointer { .. }) {
                return Err(reject(
                    pc,
                    RejectKind::PointerLeak,
                    "compares memory with a pointer (r0) in an atomic compare-exchange",
                ));
            }
        }
        if let Base::Stack { frame } = base {
            let at = (offset.smin + STACK_FRAME_SIZE as i64) as usize;
            // The old value must be an initialised number: an atomic on a spilled pointer
            // would turn address bits into a number.
            let old = read_stack(pc, &state.frames[frame].stack, at, size, false)?;
            if matches!(old, Value::Pointer { .. }) {
                return Err(reject(
                    pc,
                    RejectKind::PointerLeak,
                    "atomic operation on a spilled pointer",
                ));
            }
            write_stack(
                Rc::make_mut(&mut state.frames[frame].stack),
                at,
                size,
                Value::Scalar(Scalar::UNKNOWN),
            );
        }
        let old = Value::Scalar(Scalar::loaded(size, false));
        if insn.imm == BPF_CMPXCHG {
            state.set(0, old);
        } else if insn.imm & BPF_FETCH != 0 {
            state.set(insn.src, old);
        }
        Ok(())
    }

    fn jump(&mut self, pc: usize, insn: &Insn, state: &mut State) -> Step {
        let op = insn.op();
        if op == BPF_EXIT {
            return self.exit(pc, state);
        }
        if op == BPF_CALL {
            return self.call(pc, insn, state);
        }
        let target = insn.jump_target(pc).ok_or_else(|| {
            reject(
                pc,
                RejectKind::InvalidJump,
                "jump target before the program",
            )
        })?;
        if target <= pc {
            self.last_back_edge = Some(pc);
        }
        if op == BPF_JA {
            return Ok(Some(target));
        }
        let wide = insn.class() == BPF_JMP;
        let dst = self.read_reg(pc, state, insn.dst)?;
        let src = if insn.source() == BPF_X {
            self.read_reg(pc, state, insn.src)?
        } else if wide {
            Value::constant(insn.imm as i64 as u64)
        } else {
            Value::constant(u64::from(insn.imm as u32))
        };
        let mut branches: Vec<(usize, State)> = Vec::with_capacity(2);
        for (taken, next) in [(false, pc + 1), (true, target)] {
            if let Some(narrowed) = self.narrow(pc, insn, state, dst, src, taken)? {
                branches.push((next, narrowed));
            }
        }
        // Explore the fall-through first; queue the taken edge.
        let mut branches = branches.into_iter();
        let Some((first_pc, first_state)) = branches.next() else {
            // Neither edge is feasible: this state cannot occur.
            return Ok(None);
        };
        if let Some((second_pc, second_state)) = branches.next() {
            if self.pending.len() >= MAX_PENDING_PATHS {
                return Err(reject(
                    pc,
                    RejectKind::MayNotTerminate,
                    format!(
                        "more than {MAX_PENDING_PATHS} paths wait to be explored: a loop may not \
                         terminate or the program is too complex"
                    ),
                ));
            }
            self.pending.push(Pending {
                pc: second_pc,
                state: second_state,
                path_len: self.path.len(),
            });
        }
        *state = first_state;
        Ok(Some(first_pc))
    }

    /// The state on one edge of a conditional jump, or `None` if the edge is infeasible.
    fn narrow(
        &self,
        pc: usize,
        insn: &Insn,
        state: &State,
        dst: Value,
        src: Value,
        taken: bool,
    ) -> Result<Option<State>, Rejection> {
        let wide = insn.class() == BPF_JMP;
        let relation = Relation::of(insn.op(), taken)
            .ok_or_else(|| reject(pc, RejectKind::Malformed, "unknown jump operation"))?;
        let mut next = state.clone();
        match (dst, src) {
            (Value::Scalar(d), Value::Scalar(s)) => {
                if let (Some(a), Some(b)) = (d.as_constant(), s.as_constant()) {
                    let holds = eval_condition(insn, a, b);
                    return Ok((holds == taken).then_some(next));
                }
                let comparable = if wide {
                    true
                } else {
                    // A 32-bit comparison says something about the whole register only if
                    // both operands fit in 32 bits and, for signed ones, are non-negative.
                    let limit = if matches!(insn.op(), BPF_JSGT | BPF_JSGE | BPF_JSLT | BPF_JSLE) {
                        i32::MAX as u64
                    } else {
                        u64::from(u32::MAX)
                    };
                    d.umax <= limit && s.umax <= limit
                };
                if !comparable {
                    return Ok(Some(next));
                }
                let Some((d, s)) = refine(relation, d, s) else {
                    return Ok(None);
                };
                next.set(insn.dst, Value::Scalar(d));
                if insn.source() == BPF_X {
                    next.set(insn.src, Value::Scalar(s));
                }
                Ok(Some(next))
            }
            // NULL checks: a pointer compared with 0.
            (Value::Pointer { base, offset }, Value::Scalar(zero))
                if zero.as_constant() == Some(0)
                    && wide
                    && matches!(relation, Relation::Eq | Relation::Ne) =>
            {
                let is_null = relation == Relation::Eq;
                if is_nullable(base) {
                    let value = if is_null {
                        Value::constant(0)
                    } else {
                        Value::Pointer {
                            base: Base::Context { nullable: false },
                            offset: Scalar::constant(0),
                        }
                    };
                    next.resolve_nullable_context(value);
                    Ok(Some(next))
                } else if offset.smin > -(1i64 << 32) {
                    // Every base address is at least 2^32, so the pointer is not NULL.
                    Ok((!is_null).then_some(next))
                } else {
                    Ok(Some(next))
                }
            }
            (
                Value::Pointer {
                    base: base_a,
                    offset: a,
                },
                Value::Pointer {
                    base: base_b,
                    offset: b,
                },
            ) if wide
                && base_a == base_b
                && !is_nullable(base_a)
                && is_small(&a)
                && is_small(&b) =>
            {
                // Same memory and offsets far too small for an address to wrap around:
                // comparing addresses compares offsets.
                let Some((a, b)) = refine(relation, a, b) else {
                    return Ok(None);
                };
                next.set(
                    insn.dst,
                    Value::Pointer {
                        base: base_a,
                        offset: a,
                    },
                );
                next.set(
                    insn.src,
                    Value::Pointer {
                        base: base_b,
                        offset: b,
                    },
                );
                Ok(Some(next))
            }
            _ => Err(reject(
                pc,
                RejectKind::PointerLeak,
                format!(
                    "`{insn}` compares a pointer with something other than NULL or a pointer into the same memory"
                ),
            )),
        }
    }

    fn exit(&mut self, pc: usize, state: &mut State) -> Step {
        if state.depth() == 0 {
            let entry = state.frame().entry;
            let function = self.env.global_functions.iter().find(|f| f.start == entry);
            if function.is_some_and(|f| f.returns_value)
                && !matches!(state.reg(0), Value::Scalar(_))
            {
                return Err(reject(
                    pc,
                    RejectKind::UninitRegister,
                    "a global function that returns a value must return a number in r0",
                ));
            }
            return Ok(None);
        }
        let returned = state.reg(0);
        if let Value::Pointer {
            base: Base::Stack { frame },
            ..
        } = returned
        {
            if frame == state.depth() {
                return Err(reject(
                    pc,
                    RejectKind::PointerLeak,
                    "returns a pointer to the function's own stack, which is gone after the return",
                ));
            }
        }
        let callee = state.frames.pop().expect("depth > 0");
        let frame = state.frame_mut();
        frame.regs[0] = returned;
        for reg in &mut frame.regs[1..6] {
            *reg = Value::Uninit;
        }
        Ok(Some(callee.return_pc))
    }

    fn call(&mut self, pc: usize, insn: &Insn, state: &mut State) -> Step {
        if insn.src == BPF_PSEUDO_CALL {
            let target = insn.pseudo_call_target(pc).ok_or_else(|| {
                reject(
                    pc,
                    RejectKind::InvalidJump,
                    "call target before the program",
                )
            })?;
            if let Some(function) = self.env.global_functions.iter().find(|f| f.start == target) {
                functions::check_global_call(pc, function, |reg| state.reg(reg))?;
                let frame = state.frame_mut();
                frame.regs[0] = Value::Scalar(Scalar::UNKNOWN);
                for reg in &mut frame.regs[1..6] {
                    *reg = Value::Uninit;
                }
                return Ok(Some(pc + 1));
            }
            if state.frames.len() >= MAX_CALL_DEPTH {
                return Err(reject(
                    pc,
                    RejectKind::CallDepth,
                    format!(
                        "calls nest deeper than {MAX_CALL_DEPTH} frames (recursion is not allowed)"
                    ),
                ));
            }
            let mut frame = Frame::new(state.frames.len(), pc + 1, target);
            frame.regs[1..6].copy_from_slice(&state.frame().regs[1..6]);
            state.frames.push(frame);
            return Ok(Some(target));
        }
        let kind = if insn.src == BPF_PSEUDO_KFUNC_CALL {
            CallKind::Kfunc
        } else {
            CallKind::Helper
        };
        let Some(allowed) = self
            .env
            .calls
            .iter()
            .find(|c| c.kind == kind && c.id == insn.imm)
        else {
            let what = match kind {
                CallKind::Kfunc => format!("kernel function #{}", insn.imm),
                CallKind::Helper => format!("helper #{}", insn.imm),
            };
            return Err(reject(
                pc,
                RejectKind::CallNotAllowed,
                format!("calls {what}, which this program may not call"),
            ));
        };
        for (arg, spec) in (1..=5u8).zip(&allowed.args) {
            match state.reg(arg) {
                Value::Scalar(value) => {
                    if let Some(why) = spec.outside_domain(&value) {
                        return Err(reject(
                            pc,
                            RejectKind::ArgumentDomain,
                            format!(
                                "argument {arg} of {} ({}, r{arg}) {why}",
                                allowed.name, spec.name
                            ),
                        ));
                    }
                }
                Value::Uninit => {
                    return Err(reject(
                        pc,
                        RejectKind::UninitRegister,
                        format!("argument {arg} of {} (r{arg}) holds no value", allowed.name),
                    ));
                }
                Value::Pointer { .. } => {
                    return Err(reject(
                        pc,
                        RejectKind::PointerLeak,
                        format!(
                            "passes a pointer to {} (argument {arg}); it takes numbers only",
                            allowed.name
                        ),
                    ));
                }
            }
        }
        let frame = state.frame_mut();
        frame.regs[0] = Value::Scalar(Scalar::UNKNOWN);
        for reg in &mut frame.regs[1..6] {
            *reg = Value::Uninit;
        }
        Ok(Some(pc + 1))
    }
}

/// A memory access by a load, store or atomic: through register `reg` at offset `off`.
#[derive(Clone, Copy)]
struct Access {
    reg: u8,
    off: i16,
    size: usize,
    write: bool,
}

impl Access {
    fn of(insn: &Insn, reg: u8, size: usize, write: bool) -> Access {
        Access {
            reg,
            off: insn.off,
            size,
            write,
        }
    }
}

/// Whether every offset in the range keeps an address clear of wrapping around.
fn is_small(offset: &Scalar) -> bool {
    offset.smin >= -MAX_POINTER_OFFSET && offset.smax <= MAX_POINTER_OFFSET
}

fn is_nullable(base: Base) -> bool {
    matches!(base, Base::Context { nullable: true })
}

/// `read_reg` already rejects uninitialised registers; this keeps the match exhaustive without
/// a panic.
fn unreachable_uninit<T>(pc: usize) -> Result<T, Rejection> {
    Err(reject(
        pc,
        RejectKind::UninitRegister,
        "reads a register that holds no value",
    ))
}

/// Reads `size` bytes at byte `at` (0..512 from the frame's bottom) of a frame's stack.
fn read_stack(
    pc: usize,
    stack: &[Slot; STACK_SLOTS],
    at: usize,
    size: usize,
    sign_extend: bool,
) -> Result<Value, Rejection> {
    let slot_index = at / 8;
    let within = at % 8;
    // A whole spilled register comes back as it was.
    if size == 8 && within == 0 {
        if let Slot::Spill(value) = stack[slot_index] {
            if value == Value::Uninit {
                return Err(uninit_stack(pc, at));
            }
            return Ok(value);
        }
    }
    let mut all_zero = true;
    let mut constant_bytes = [0u8; 8];
    let mut known = true;
    for (i, constant_byte) in constant_bytes.iter_mut().enumerate().take(size) {
        let byte = at + i;
        match stack.get(byte / 8).copied().unwrap_or(Slot::UNINIT) {
            Slot::Bytes(bytes) => match bytes[byte % 8] {
                Byte::Uninit => return Err(uninit_stack(pc, byte)),
                Byte::Zero => {}
                Byte::Initialised => {
                    all_zero = false;
                    known = false;
                }
            },
            Slot::Spill(Value::Scalar(s)) => match s.as_constant() {
                Some(c) => {
                    let b = c.to_le_bytes()[byte % 8];
                    *constant_byte = b;
                    all_zero &= b == 0;
                }
                None => {
                    all_zero = false;
                    known = false;
                }
            },
            Slot::Spill(Value::Uninit) => return Err(uninit_stack(pc, byte)),
            Slot::Spill(Value::Pointer { .. }) => {
                return Err(reject(
                    pc,
                    RejectKind::PointerLeak,
                    "reads part of a spilled pointer as a number",
                ));
            }
        }
    }
    if all_zero {
        return Ok(Value::constant(0));
    }
    if known {
        let raw = u64::from_le_bytes(constant_bytes);
        let value = if sign_extend {
            let shift = 64 - 8 * size as u32;
            (((raw << shift) as i64) >> shift) as u64
        } else {
            raw
        };
        return Ok(Value::constant(value));
    }
    Ok(Value::Scalar(Scalar::loaded(size, sign_extend)))
}

fn uninit_stack(pc: usize, byte: usize) -> Rejection {
    reject(
        pc,
        RejectKind::UninitStack,
        format!(
            "reads stack byte r10{} before it is written",
            byte as i64 - STACK_FRAME_SIZE as i64
        ),
    )
}

/// Bytes (0..512 from the frame's bottom) an access of `size` bytes at any offset of `offset`
/// (relative to r10, already checked to lie within the frame) may touch: `first..end`.
fn stack_span(offset: &Scalar, size: usize) -> (usize, usize) {
    let first = (offset.smin + STACK_FRAME_SIZE as i64) as usize;
    let last = (offset.smax + STACK_FRAME_SIZE as i64) as usize;
    (first, last + size)
}

/// A number stored somewhere in `first..end`: each byte may or may not have been written.
/// Bytes that were uninitialised stay so (they may not have been written); zero bytes and
/// spilled numbers become plain initialised bytes; a spilled pointer, which may now be partly
/// overwritten, becomes unreadable.
fn smear_stack(stack: &mut [Slot; STACK_SLOTS], first: usize, end: usize) {
    let (first_slot, end_slot) = (first / 8, end.div_ceil(8).min(STACK_SLOTS));
    for slot in &mut stack[first_slot..end_slot] {
        *slot = match *slot {
            Slot::Spill(Value::Scalar(_)) => Slot::Bytes([Byte::Initialised; 8]),
            Slot::Spill(_) => Slot::UNINIT,
            Slot::Bytes(bytes) => Slot::Bytes(bytes.map(|b| match b {
                Byte::Uninit => Byte::Uninit,
                _ => Byte::Initialised,
            })),
        };
    }
}

/// Writes `size` bytes of `value` at byte `at` of a frame's stack.
fn write_stack(stack: &mut [Slot; STACK_SLOTS], at: usize, size: usize, value: Value) {
    let slot_index = at / 8;
    if size == 8 && at % 8 == 0 {
        stack[slot_index] = Slot::Spill(value);
        return;
    }
    let byte_state = match value {
        Value::Scalar(s) if s.as_constant() == Some(0) => Byte::Zero,
        _ => Byte::Initialised,
    };
    for byte in at..at + size {
        let Some(slot) = stack.get_mut(byte / 8) else {
            continue;
        };
        // Breaking up a spill: a number's other bytes stay readable; a pointer's must not be
        // readable as a number, so they become uninitialised.
        if let Slot::Spill(spilled) = *slot {
            *slot = Slot::Bytes(match spilled {
                Value::Scalar(s) => match s.as_constant() {
                    Some(c) => c.to_le_bytes().map(|b| {
                        if b == 0 {
                            Byte::Zero
                        } else {
                            Byte::Initialised
                        }
                    }),
                    None => [Byte::Initialised; 8],
                },
                _ => [Byte::Uninit; 8],
            });
        }
        if let Slot::Bytes(bytes) = slot {
            bytes[byte % 8] = byte_state;
        }
    }
}

impl fmt::Display for RejectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            RejectKind::Malformed => "malformed",
            RejectKind::InvalidJump => "invalid_jump",
            RejectKind::UninitRegister => "uninit_register",
            RejectKind::UninitStack => "uninit_stack",
            RejectKind::NullDereference => "null_dereference",
            RejectKind::OutOfBounds => "out_of_bounds",
            RejectKind::ReadOnlyWrite => "read_only_write",
            RejectKind::InputWrite => "input_write",
            RejectKind::PointerLeak => "pointer_leak",
            RejectKind::PointerArithmetic => "pointer_arithmetic",
            RejectKind::NotAPointer => "not_a_pointer",
            RejectKind::CallNotAllowed => "call_not_allowed",
            RejectKind::ArgumentDomain => "argument_domain",
            RejectKind::CallDepth => "call_depth",
            RejectKind::StackSize => "stack_size",
            RejectKind::MayNotTerminate => "may_not_terminate",
        };
        f.write_str(name)
    }
}
