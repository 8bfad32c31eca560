//! Tenant policy objects: parsing (`object`), static analysis of what each hook does to the
//! context (`analysis`), and the admission checks behind `upsched check` (`check`).

pub mod analysis;
pub mod check;
pub mod object;

pub use check::{CheckReport, Limits, Problem, ProblemKind, check};
pub use object::{ObjectError, PolicyObject, Program};
