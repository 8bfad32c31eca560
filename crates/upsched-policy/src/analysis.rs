//! Static analysis of a linked hook program: which bytes of the context it reads and writes,
//! which functions it calls, and where the context pointer would escape.
//!
//! A forward data-flow analysis over the control-flow graph (an abstract interpretation with a
//! small lattice per register and spilled stack slot: unknown scalar, context pointer at a
//! known offset, context pointer at an unknown offset, stack pointer at a known offset). It
//! follows bpf-to-bpf calls into subprograms with the caller's argument registers. It does not
//! track value ranges: an access through a context pointer with a variable offset is reported
//! as such (reads then count as reading the whole context; writes are rejected by the check).
//! The policy engine's verifier (issue 4) does the full range analysis.

use std::collections::{BTreeMap, BTreeSet};

use upsched_ebpf::insn::{
    BPF_ADD, BPF_ALU, BPF_ALU64, BPF_JMP, BPF_JMP32, BPF_K, BPF_LD, BPF_LDX, BPF_MOV, BPF_ST,
    BPF_STX, BPF_SUB, BPF_X, Insn,
};

use crate::object::{Program, RelocTarget};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Value {
    Unknown,
    /// Context pointer plus a known byte offset.
    Ctx(i64),
    /// Context pointer plus an unknown offset.
    CtxVar,
    /// Frame pointer of the current function plus a known byte offset.
    Stack(i64),
}

impl Value {
    fn is_ctx(self) -> bool {
        matches!(self, Value::Ctx(_) | Value::CtxVar)
    }

    fn join(self, other: Value) -> Value {
        match (self, other) {
            (a, b) if a == b => a,
            (a, b) if a.is_ctx() && b.is_ctx() => Value::CtxVar,
            _ => Value::Unknown,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct State {
    regs: [Value; 11],
    /// 8-byte stack slots holding a tracked value, by frame offset.
    stack: BTreeMap<i64, Value>,
}

impl State {
    fn entry(args: [Value; 5]) -> State {
        let mut regs = [Value::Unknown; 11];
        regs[1..6].copy_from_slice(&args);
        regs[10] = Value::Stack(0);
        State {
            regs,
            stack: BTreeMap::new(),
        }
    }

    /// Joins `other` into `self`; true if `self` changed.
    fn join_from(&mut self, other: &State) -> bool {
        let mut joined = self.clone();
        for (mine, theirs) in joined.regs.iter_mut().zip(other.regs) {
            *mine = mine.join(theirs);
        }
        joined.stack = self
            .stack
            .iter()
            .filter_map(|(slot, value)| {
                other
                    .stack
                    .get(slot)
                    .map(|theirs| (*slot, value.join(*theirs)))
            })
            .filter(|(_, value)| *value != Value::Unknown)
            .collect();
        let changed = joined != *self;
        *self = joined;
        changed
    }

    fn forget_stack(&mut self, offset: i64, size: i64) {
        self.stack
            .retain(|slot, _| *slot + 8 <= offset || *slot >= offset + size);
    }
}

/// Kind of a context access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AccessKind {
    Read,
    Write,
}

/// One context access by one instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// Linked instruction index.
    pub pc: usize,
    pub kind: AccessKind,
    /// Byte offset in the context, or `None` when it is not a constant.
    pub offset: Option<i64>,
    pub size: usize,
}

/// Something the analysis found that a policy may not do.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Finding {
    HelperCall {
        pc: usize,
        helper: i32,
    },
    /// A call instruction whose kernel-function relocation is missing.
    UnresolvedKfunc {
        pc: usize,
    },
    /// The context pointer is stored to memory other than the stack, or passed to a kfunc.
    CtxEscapes {
        pc: usize,
        how: &'static str,
    },
    /// An instruction the policy format does not allow: legacy packet access, an invalid
    /// register, a write to the frame pointer.
    Unsupported {
        pc: usize,
    },
    /// A jump or call leaves the program.
    BadTarget {
        pc: usize,
    },
}

/// What a linked hook program does, as far as the analysis can tell.
#[derive(Clone, Debug, Default)]
pub struct ProgramAnalysis {
    pub accesses: Vec<Access>,
    /// (pc, kfunc name).
    pub kfunc_calls: Vec<(usize, String)>,
    pub findings: Vec<Finding>,
    /// Number of instruction slots reachable from the entry.
    pub reachable_insns: usize,
    /// Names of the subprograms reachable from the entry.
    pub subprograms: BTreeSet<String>,
}

/// Analyses `program` from its entry with the context pointer in r1.
pub fn analyse(program: &Program) -> ProgramAnalysis {
    let insns = &program.insns;
    let mut states: Vec<Option<State>> = vec![None; insns.len()];
    let mut worklist = BTreeSet::new();
    let mut accesses = BTreeMap::new();
    let mut kfunc_calls = BTreeMap::new();
    let mut findings = BTreeSet::new();
    let mut subprogram_entries = BTreeSet::new();

    let push = |states: &mut Vec<Option<State>>,
                worklist: &mut BTreeSet<usize>,
                pc: usize,
                state: &State| {
        match &mut states[pc] {
            Some(existing) => {
                if existing.join_from(state) {
                    worklist.insert(pc);
                }
            }
            slot @ None => {
                *slot = Some(state.clone());
                worklist.insert(pc);
            }
        }
    };
    if !insns.is_empty() {
        let entry = State::entry([
            Value::Ctx(0),
            Value::Unknown,
            Value::Unknown,
            Value::Unknown,
            Value::Unknown,
        ]);
        push(&mut states, &mut worklist, 0, &entry);
    }

    while let Some(pc) = worklist.pop_first() {
        let mut state = states[pc].clone().expect("queued pcs have a state");
        let insn = insns[pc];
        let mut successors: Vec<usize> = Vec::with_capacity(2);
        let mut record = |kind: AccessKind, base: Value, size: usize| {
            let offset = match base {
                Value::Ctx(offset) => Some(offset + i64::from(insn.off)),
                Value::CtxVar => None,
                _ => return,
            };
            accesses.insert(
                (pc, kind),
                Access {
                    pc,
                    kind,
                    offset,
                    size,
                },
            );
        };
        let writes_dst = matches!(insn.class(), BPF_LD | BPF_LDX | BPF_ALU | BPF_ALU64);
        if insn.dst > 10 || insn.src > 10 || (writes_dst && insn.dst == 10) {
            // Invalid register, or a write to the read-only frame pointer: nothing after it
            // runs in any kernel, so the path ends here.
            findings.insert(Finding::Unsupported { pc });
            continue;
        }
        let size = insn.mem_size_bytes().unwrap_or(0);
        match insn.class() {
            BPF_LD if insn.is_lddw() => {
                set_reg(&mut state, insn.dst, Value::Unknown);
                successors.push(pc + 2);
            }
            BPF_LD => {
                findings.insert(Finding::Unsupported { pc });
            }
            BPF_LDX => {
                let base = reg(&state, insn.src);
                record(AccessKind::Read, base, size);
                let loaded = match base {
                    Value::Stack(frame) if size == 8 => state
                        .stack
                        .get(&(frame + i64::from(insn.off)))
                        .copied()
                        .unwrap_or(Value::Unknown),
                    _ => Value::Unknown,
                };
                set_reg(&mut state, insn.dst, loaded);
                successors.push(pc + 1);
            }
            BPF_ST | BPF_STX => {
                let base = reg(&state, insn.dst);
                let stored = if insn.class() == BPF_STX {
                    reg(&state, insn.src)
                } else {
                    Value::Unknown
                };
                if insn.is_atomic() {
                    record(AccessKind::Read, base, size);
                }
                record(AccessKind::Write, base, size);
                match base {
                    Value::Stack(frame) => {
                        let slot = frame + i64::from(insn.off);
                        state.forget_stack(slot, size as i64);
                        if size == 8 && stored != Value::Unknown && !insn.is_atomic() {
                            state.stack.insert(slot, stored);
                        }
                    }
                    _ if stored.is_ctx() => {
                        findings.insert(Finding::CtxEscapes {
                            pc,
                            how: "stores the context pointer outside the stack",
                        });
                    }
                    _ => {}
                }
                if insn.is_atomic() && insn.imm & upsched_ebpf::insn::BPF_FETCH != 0 {
                    // Fetching atomics write the old value into src (r0 for cmpxchg).
                    let fetched = if insn.imm == upsched_ebpf::insn::BPF_CMPXCHG {
                        0
                    } else {
                        insn.src
                    };
                    set_reg(&mut state, fetched, Value::Unknown);
                }
                successors.push(pc + 1);
            }
            BPF_JMP | BPF_JMP32 if insn.is_exit() => {}
            BPF_JMP | BPF_JMP32 if insn.is_call() => {
                let args = [1, 2, 3, 4, 5].map(|r| state.regs[r]);
                if insn.is_pseudo_call() {
                    match insn.pseudo_call_target(pc).filter(|t| *t < insns.len()) {
                        Some(target) => {
                            subprogram_entries.insert(target);
                            // The callee has its own frame: stack pointers of ours mean nothing there.
                            let callee_args = args.map(|a| {
                                if let Value::Stack(_) = a {
                                    Value::Unknown
                                } else {
                                    a
                                }
                            });
                            push(
                                &mut states,
                                &mut worklist,
                                target,
                                &State::entry(callee_args),
                            );
                        }
                        None => {
                            findings.insert(Finding::BadTarget { pc });
                        }
                    }
                } else if let Some(RelocTarget::Kfunc(name)) = program.relocs.get(&pc) {
                    kfunc_calls.insert(pc, name.clone());
                    if args.iter().any(|a| a.is_ctx()) {
                        findings.insert(Finding::CtxEscapes {
                            pc,
                            how: "passes the context pointer to a kernel function",
                        });
                    }
                } else if insn.is_helper_call() {
                    findings.insert(Finding::HelperCall {
                        pc,
                        helper: insn.imm,
                    });
                } else {
                    findings.insert(Finding::UnresolvedKfunc { pc });
                }
                for r in 0..=5 {
                    state.regs[r] = Value::Unknown;
                }
                successors.push(pc + 1);
            }
            BPF_JMP | BPF_JMP32 => {
                match insn.jump_target(pc) {
                    Some(target) => successors.push(target),
                    None => {
                        findings.insert(Finding::BadTarget { pc });
                    }
                }
                if !insn.is_unconditional_jump() {
                    successors.push(pc + 1);
                }
            }
            _ => alu(&mut state, &insn),
        }
        if matches!(insn.class(), BPF_ALU | BPF_ALU64) {
            successors.push(pc + 1);
        }
        for next in successors {
            if next < insns.len() {
                push(&mut states, &mut worklist, next, &state);
            } else {
                findings.insert(Finding::BadTarget { pc });
            }
        }
    }

    ProgramAnalysis {
        accesses: accesses.into_values().collect(),
        kfunc_calls: kfunc_calls.into_iter().collect(),
        findings: findings.into_iter().collect(),
        // Instruction slots, as the kernel counts them: an lddw takes two.
        reachable_insns: (0..insns.len())
            .filter(|pc| states[*pc].is_some())
            .map(|pc| if insns[pc].is_lddw() { 2 } else { 1 })
            .sum(),
        subprograms: program
            .functions
            .iter()
            .filter(|f| subprogram_entries.contains(&f.start))
            .map(|f| f.name.clone())
            .collect(),
    }
}

fn reg(state: &State, r: u8) -> Value {
    state
        .regs
        .get(usize::from(r))
        .copied()
        .unwrap_or(Value::Unknown)
}

fn set_reg(state: &mut State, r: u8, value: Value) {
    if let Some(slot) = state.regs.get_mut(usize::from(r)) {
        *slot = value;
    }
}

/// ALU transfer: pointer arithmetic with constants keeps offsets, with registers loses them.
fn alu(state: &mut State, insn: &Insn) {
    let dst = reg(state, insn.dst);
    let result = if insn.class() != BPF_ALU64 {
        Value::Unknown
    } else {
        match (insn.op(), insn.source()) {
            (BPF_MOV, BPF_X) => reg(state, insn.src),
            (BPF_ADD | BPF_SUB, BPF_K) => {
                let delta = if insn.op() == BPF_ADD {
                    i64::from(insn.imm)
                } else {
                    -i64::from(insn.imm)
                };
                match dst {
                    Value::Ctx(offset) => Value::Ctx(offset + delta),
                    Value::Stack(offset) => Value::Stack(offset + delta),
                    other => other,
                }
            }
            (BPF_ADD, BPF_X) => match (dst, reg(state, insn.src)) {
                (a, Value::Unknown) if a.is_ctx() => Value::CtxVar,
                (Value::Unknown, b) if b.is_ctx() => Value::CtxVar,
                _ => Value::Unknown,
            },
            (BPF_SUB, BPF_X) if dst.is_ctx() && reg(state, insn.src) == Value::Unknown => {
                Value::CtxVar
            }
            _ => Value::Unknown,
        }
    };
    set_reg(state, insn.dst, result);
}
