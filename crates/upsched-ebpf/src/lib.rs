//! upsched's eBPF engine.
//!
//! Tenant scheduling policies are eBPF programs compiled by clang. Outside the kernel (simulator,
//! policy unit tests, hosts without sched_ext) they run on this engine instead.
//!
//! - [`insn`]: the instruction encoding of RFC 9669: decoding, encoding, disassembly.
//! - [`program`]: structural validation of an instruction sequence into a [`Program`].
//! - [`memory`]: the synthetic address space a program sees: embedder regions and the stack.
//! - [`interp`]: the interpreter, with helper/kfunc calls routed to the embedder's
//!   [`Externals`].
//! - [`verifier`]: proves memory safety, initialisation, no pointer leaks, allowed calls and
//!   termination for a program in an [`Environment`] the embedder describes.

#![forbid(unsafe_code)]

#[doc(hidden)]
pub mod fuzzing;
pub mod insn;
pub mod interp;
pub mod memory;
pub mod program;
pub mod verifier;

pub use interp::{CallError, CallKind, ExecError, Externals, Interpreter, NoExternals};
pub use memory::{Memory, MemoryFault, RegionError, RegionId};
pub use program::{InsnField, Program, ProgramError};
pub use verifier::{
    AllowedCall, ArgSpec, CallArg, ContextSpec, Environment, GlobalFunction, RegionLoad,
    RegionSpec, RejectKind, Rejection, Verdict, verify,
};
