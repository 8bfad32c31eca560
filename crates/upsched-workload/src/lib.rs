//! Measured scheduling workloads for upsched's real-kernel tests: CPU hogs, sleepers, pipe
//! ping-pong and arbitrary commands, each group of tasks in its own cgroup v2 group, with a
//! JSON report of CPU time, shares, finish times and latency percentiles. The binary
//! `upsched-workload` is the usual entry point (see README.md for the spec and report
//! formats); this library is it, for Rust scenario runners that parse or build the JSON.
//!
//! Everything that forks (`run::run`, the benches) must be called from a single-threaded
//! process.

pub mod bench;
pub mod cgroup;
pub mod report;
pub mod run;
pub mod spec;
pub mod stats;
pub mod sys;
pub mod worker;

pub use report::Report;
pub use run::{RunError, run};
pub use spec::{Spec, SpecError, parse};
