//! Scheduler traces recorded on a real machine, as text: `perf script` after `perf sched
//! record`, or `trace-cmd report`. [`parse`] turns the text into events, [`timeline`] into the
//! lifetimes of tasks (a task is a fork-to-exit lifetime, not a pid) with every repair counted,
//! and [`stats`] into the figures `perf sched latency` gives, with percentiles.

pub mod parse;
pub mod record;
pub mod scenario;
pub mod stats;
pub mod timeline;

use std::io::Read;
use std::path::Path;

/// The largest trace read (about 2.5 million events of `perf script`): a bound on the memory one
/// file can make us take, with a clear error beyond it.
pub const MAX_TRACE_BYTES: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: larger than {} MiB, the most a trace may be (cut it with `head`, or record a shorter run)", MAX_TRACE_BYTES >> 20)]
    TooLarge { path: String },
    #[error(
        "{path}: not text (a trace is the text `perf script` or `trace-cmd report` prints, not perf.data or trace.dat)"
    )]
    NotText { path: String },
    #[error("{path}: {source}")]
    Parse { path: String, source: ParseError },
}

/// Reads and parses the trace at `path` (`-`: standard input), within [`MAX_TRACE_BYTES`].
pub fn read(path: &Path) -> Result<Parsed, ReadError> {
    let name = path.display().to_string();
    let io = |source| ReadError::Io {
        path: name.clone(),
        source,
    };
    let mut bytes = Vec::new();
    let limit = MAX_TRACE_BYTES + 1;
    if path == Path::new("-") {
        std::io::stdin().lock().take(limit).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit).read_to_end(&mut bytes))
    }
    .map_err(io)?;
    if bytes.len() as u64 > MAX_TRACE_BYTES {
        return Err(ReadError::TooLarge { path: name });
    }
    let text = String::from_utf8(bytes).map_err(|_| ReadError::NotText { path: name.clone() })?;
    parse(&text).map_err(|source| ReadError::Parse { path: name, source })
}

pub use parse::{Event, EventKind, Format, ParseError, Parsed, TaskState, parse};
pub use record::{RecordError, Recorded, Recording};
pub use scenario::{ImportOptions, Phase, Scenario, TaskSpec, import};
pub use stats::{Stats, TaskStats, TaskTotals, WaitStats};
pub use timeline::{Repairs, Run, RunEnd, Task, TaskId, Timeline, Wait, WaitCause, build};
