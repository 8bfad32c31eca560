//! Scheduler traces recorded on a real machine, as text: `perf script` after `perf sched
//! record`, or `trace-cmd report`. [`parse`] turns the text into events, [`timeline`] into the
//! lifetimes of tasks (a task is a fork-to-exit lifetime, not a pid) with every repair counted,
//! and [`stats`] into the figures `perf sched latency` gives, with percentiles.

pub mod parse;
pub mod stats;
pub mod timeline;

pub use parse::{Event, EventKind, Format, ParseError, Parsed, TaskState, parse};
pub use stats::{Stats, TaskStats, TaskTotals, WaitStats};
pub use timeline::{Repairs, Run, Task, TaskId, Timeline, Wait, WaitCause, build};
