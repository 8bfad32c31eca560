//! Tenant policy objects: parsing (`object`), static analysis of what each hook does to the
//! context (`analysis`), the admission checks behind `upsched check` (`check`), and running
//! policies on upsched's own eBPF engine (`engine`).

pub mod admission;
pub mod analysis;
pub mod btf_check;
pub mod check;
pub mod counters;
pub mod engine;
pub mod lines;
pub mod object;
pub mod prepare;

pub use admission::{AdmittedPolicy, ContentHash, Refused, admit};
pub use check::{CheckReport, EngineReport, EngineStatus, Limits, Problem, ProblemKind, check};
pub use engine::{
    EngineError, EngineOptions, ExecMode, FixedKfuncs, KfuncProvider, LoadedPolicy, NoKfuncs,
    PolicyInstance,
};
pub use object::{ObjectError, PolicyObject, Program};
