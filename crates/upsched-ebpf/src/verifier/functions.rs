//! The kernel's rules for bpf-to-bpf functions that path exploration alone does not give:
//! global functions verified on their own, and the limits of the call graph (at most
//! [`MAX_CALL_DEPTH`] frames, at most [`MAX_COMBINED_STACK`] bytes of stack along any call
//! chain, counting each function's stack as the kernel does).

use std::collections::BTreeMap;

use super::{Base, RejectKind, Rejection, Scalar, Value, reject};
use crate::insn::Insn;
use crate::memory::MAX_CALL_DEPTH;

/// The kernel's limit on the stack of a whole call chain (`MAX_BPF_STACK`).
pub const MAX_COMBINED_STACK: u32 = 512;

/// What the kernel charges a function whose deepest stack access is `depth` bytes below r10:
/// the interpreter's granularity, 32 bytes with at least one unit per frame. The JIT charges
/// `depth` rounded up to 16, never more, so a chain within this count fits either way.
pub fn frame_stack_size(depth: u32) -> u32 {
    depth.max(1).div_ceil(32) * 32
}

/// How a global function's argument is typed from its prototype.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgSpec {
    /// A number: unknown inside the function.
    Scalar,
    /// A pointer to the context: possibly NULL inside the function (as the kernel types a
    /// pointer to a struct), the context itself or NULL at the call.
    Context,
}

impl ArgSpec {
    pub(super) fn entry_value(self) -> Value {
        match self {
            ArgSpec::Scalar => Value::Scalar(Scalar::UNKNOWN),
            ArgSpec::Context => Value::Pointer {
                base: Base::Context { nullable: true },
                offset: Scalar::constant(0),
            },
        }
    }
}

/// A function the verifier explores on its own from `start`, with arguments `args` in r1...
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalFunction {
    pub name: String,
    pub start: usize,
    pub args: Vec<ArgSpec>,
    /// Whether it returns a value (then it must leave a number in r0).
    pub returns_value: bool,
}

/// Checks the arguments of a call at `pc` to global `function`; `reg` reads the caller's
/// registers.
pub(super) fn check_global_call(
    pc: usize,
    function: &GlobalFunction,
    reg: impl Fn(u8) -> Value,
) -> Result<(), Rejection> {
    for (index, spec) in function.args.iter().enumerate() {
        let number = index as u8 + 1;
        let value = reg(number);
        let fits = match (spec, value) {
            (_, Value::Uninit) => {
                return Err(reject(
                    pc,
                    RejectKind::UninitRegister,
                    format!(
                        "argument {number} of {} (r{number}) holds no value",
                        function.name
                    ),
                ));
            }
            (ArgSpec::Scalar, value) => matches!(value, Value::Scalar(_)),
            (ArgSpec::Context, Value::Scalar(s)) => s.as_constant() == Some(0),
            (ArgSpec::Context, Value::Pointer { base, offset }) => {
                matches!(base, Base::Context { .. }) && offset.as_constant() == Some(0)
            }
        };
        if !fits {
            let wanted = match spec {
                ArgSpec::Scalar => "a number",
                ArgSpec::Context => "the context pointer or NULL",
            };
            return Err(reject(
                pc,
                RejectKind::PointerLeak,
                format!(
                    "argument {number} of global function {} (r{number}) must be {wanted}",
                    function.name
                ),
            ));
        }
    }
    Ok(())
}

/// Walks the static call graph from instruction 0, as the kernel does after verification:
/// every call instruction of a function counts, reached or not; functions span from their
/// first instruction to the next function's.
pub(super) fn check_call_chains(
    insns: &[Insn],
    globals: &[GlobalFunction],
    stack_depths: &BTreeMap<usize, u32>,
) -> Result<(), Rejection> {
    let calls: Vec<(usize, usize)> = insns
        .iter()
        .enumerate()
        .filter(|(_, insn)| insn.is_pseudo_call())
        .filter_map(|(pc, insn)| Some((pc, insn.pseudo_call_target(pc)?)))
        .collect();
    let mut starts: Vec<usize> = std::iter::once(0)
        .chain(calls.iter().map(|&(_, target)| target))
        .chain(globals.iter().map(|f| f.start))
        .collect();
    starts.sort_unstable();
    starts.dedup();
    let mut walk = Walk {
        starts: &starts,
        calls: &calls,
        stack_depths,
        memo: BTreeMap::new(),
        on_path: Vec::new(),
    };
    let worst = walk.chain_from(0)?;
    if worst.stack > MAX_COMBINED_STACK {
        return Err(reject(
            worst.first_call.unwrap_or(0),
            RejectKind::StackSize,
            format!(
                "combined stack size of {} calls is {} bytes, over the kernel's {MAX_COMBINED_STACK} \
                 (each function counts its deepest stack access, rounded up to 32 bytes; \
                 functions at instructions {}): use less stack or fewer nested calls",
                worst.stack_chain.len(),
                worst.stack,
                worst
                    .stack_chain
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" -> ")
            ),
        ));
    }
    Ok(())
}

/// The worst call chain that starts at one function.
#[derive(Clone)]
struct Chain {
    /// Most stack over the chains from here, and that chain's function starts.
    stack: u32,
    stack_chain: Vec<usize>,
    /// The call instruction that begins the worst chain, when it has a call.
    first_call: Option<usize>,
    /// Most frames over the chains from here.
    frames: usize,
}

struct Walk<'a> {
    starts: &'a [usize],
    calls: &'a [(usize, usize)],
    stack_depths: &'a BTreeMap<usize, u32>,
    memo: BTreeMap<usize, Chain>,
    on_path: Vec<usize>,
}

impl Walk<'_> {
    fn chain_from(&mut self, start: usize) -> Result<Chain, Rejection> {
        if let Some(chain) = self.memo.get(&start) {
            return Ok(chain.clone());
        }
        self.on_path.push(start);
        let end = self
            .starts
            .iter()
            .find(|&&s| s > start)
            .copied()
            .unwrap_or(usize::MAX);
        let own = frame_stack_size(self.stack_depths.get(&start).copied().unwrap_or(0));
        let mut worst = Chain {
            stack: own,
            stack_chain: vec![start],
            first_call: None,
            frames: 1,
        };
        let calls: Vec<(usize, usize)> = self
            .calls
            .iter()
            .filter(|(pc, _)| (start..end).contains(pc))
            .copied()
            .collect();
        for (pc, target) in calls {
            if self.on_path.contains(&target) {
                return Err(reject(
                    pc,
                    RejectKind::CallDepth,
                    "recursive call (the kernel allows no recursion)",
                ));
            }
            if self.on_path.len() >= MAX_CALL_DEPTH {
                return Err(reject(
                    pc,
                    RejectKind::CallDepth,
                    format!(
                        "the call stack of {} frames is too deep (the kernel allows {MAX_CALL_DEPTH})",
                        self.on_path.len() + 1
                    ),
                ));
            }
            let callee = self.chain_from(target)?;
            if self.on_path.len() + callee.frames > MAX_CALL_DEPTH {
                return Err(reject(
                    pc,
                    RejectKind::CallDepth,
                    format!(
                        "the call stack of {} frames is too deep (the kernel allows {MAX_CALL_DEPTH})",
                        self.on_path.len() + callee.frames
                    ),
                ));
            }
            worst.frames = worst.frames.max(1 + callee.frames);
            if own + callee.stack > worst.stack {
                worst = Chain {
                    stack: own + callee.stack,
                    stack_chain: std::iter::once(start).chain(callee.stack_chain).collect(),
                    first_call: Some(pc),
                    frames: worst.frames,
                };
            }
        }
        self.on_path.pop();
        self.memo.insert(start, worst.clone());
        Ok(worst)
    }
}
