//! Recording the scheduler's events through tracefs while a command runs, written as text this
//! crate reads back (the ftrace text of the events is the line format of `trace-cmd report`,
//! headed by its `cpus=N` line).
//!
//! The recording uses a tracefs instance of its own (`instances/upsched-record-PID`): a ring
//! buffer and event switches apart from the global ones, so a recording neither clobbers nor
//! sees another tracer's, and it is removed when the recording ends, whatever happens.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::parse::SCHED_EVENTS;

/// Where tracefs is mounted, first match wins.
const TRACEFS_MOUNTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// The ring buffer per CPU when the caller does not choose: about 100k scheduler events per
/// CPU before the oldest are overwritten.
pub const DEFAULT_BUFFER_KB: u32 = 8192;

/// A bound on the ring buffer one recording asks the kernel for, per CPU.
pub const MAX_BUFFER_KB: u32 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(
        "no tracefs at {} (mount it: mount -t tracefs nodev /sys/kernel/tracing)",
        TRACEFS_MOUNTS.join(" or ")
    )]
    NoTracefs,
    #[error("recording needs root (tracefs is writable only by root): {path}: {source}")]
    NotPermitted {
        path: String,
        source: std::io::Error,
    },
    #[error("this kernel has no event sched/{0} in tracefs (CONFIG_TRACEPOINTS?)")]
    MissingEvent(&'static str),
    #[error("buffer of {0} KiB per CPU outside 1..={MAX_BUFFER_KB}")]
    BufferSize(u32),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// What a finished recording holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Event lines written.
    pub events: u64,
    /// The CPUs the kernel keeps a buffer for (the trace's `cpus=`).
    pub cpus: u32,
    /// Events the ring buffer overwrote before they were read (the oldest are lost).
    pub overrun: u64,
}

/// A tracefs instance with the scheduler's events on; removed on drop.
pub struct Recording {
    dir: PathBuf,
}

fn io_error(path: &Path, source: std::io::Error) -> RecordError {
    if source.kind() == std::io::ErrorKind::PermissionDenied {
        RecordError::NotPermitted {
            path: path.display().to_string(),
            source,
        }
    } else {
        RecordError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

fn write(path: &Path, value: &str) -> Result<(), RecordError> {
    fs::write(path, value).map_err(|e| io_error(path, e))
}

/// The first tracefs mount with instances; a mount the caller may not look into is a refusal
/// (tracefs is root's only), not an absence.
fn find_tracefs() -> Result<&'static Path, RecordError> {
    for mount in TRACEFS_MOUNTS.map(Path::new) {
        let instances = mount.join("instances");
        match fs::metadata(&instances) {
            Ok(meta) if meta.is_dir() => return Ok(mount),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(io_error(&instances, e));
            }
            _ => {}
        }
    }
    Err(RecordError::NoTracefs)
}

impl Recording {
    /// Creates the instance, sizes its buffer and enables the events; tracing is on when this
    /// returns.
    pub fn start(buffer_kb: u32) -> Result<Recording, RecordError> {
        if buffer_kb == 0 || buffer_kb > MAX_BUFFER_KB {
            return Err(RecordError::BufferSize(buffer_kb));
        }
        let tracefs = find_tracefs()?;
        let dir = tracefs
            .join("instances")
            .join(format!("upsched-record-{}", std::process::id()));
        fs::create_dir(&dir).map_err(|e| io_error(&dir, e))?;
        // From here on, dropping the recording removes the instance.
        let recording = Recording { dir };
        let dir = &recording.dir;
        write(&dir.join("tracing_on"), "0")?;
        write(&dir.join("buffer_size_kb"), &buffer_kb.to_string())?;
        for event in SCHED_EVENTS {
            let enable = dir.join("events/sched").join(event).join("enable");
            if !enable.exists() {
                return Err(RecordError::MissingEvent(event));
            }
            write(&enable, "1")?;
        }
        write(&dir.join("tracing_on"), "1")?;
        Ok(recording)
    }

    /// Stops tracing and writes the recorded events to `out`, headed by `cpus=N`.
    pub fn finish(self, out: &mut impl Write) -> Result<Recorded, RecordError> {
        write(&self.dir.join("tracing_on"), "0")?;
        let (cpus, overrun) = self.buffer_stats()?;
        let out_error = |source| RecordError::Io {
            path: "the output".to_string(),
            source,
        };
        writeln!(out, "cpus={cpus}").map_err(out_error)?;
        let trace = self.dir.join("trace");
        let reader = BufReader::new(fs::File::open(&trace).map_err(|e| io_error(&trace, e))?);
        let mut events = 0;
        // Line by line: a full buffer is hundreds of MiB of text, never held in memory.
        for line in reader.lines() {
            let line = line.map_err(|e| io_error(&trace, e))?;
            if line.starts_with('#') {
                continue;
            }
            events += 1;
            writeln!(out, "{line}").map_err(out_error)?;
        }
        out.flush().map_err(out_error)?;
        Ok(Recorded {
            events,
            cpus,
            overrun,
        })
    }

    /// The CPUs with a buffer and the events overwritten in all of them (`per_cpu/cpuN/stats`).
    fn buffer_stats(&self) -> Result<(u32, u64), RecordError> {
        let per_cpu = self.dir.join("per_cpu");
        let entries = fs::read_dir(&per_cpu).map_err(|e| io_error(&per_cpu, e))?;
        let (mut cpus, mut overrun) = (0, 0);
        for entry in entries {
            let path = entry.map_err(|e| io_error(&per_cpu, e))?.path();
            let stats = path.join("stats");
            let text = fs::read_to_string(&stats).map_err(|e| io_error(&stats, e))?;
            cpus += 1;
            overrun += overrun_of(&text);
        }
        Ok((cpus, overrun))
    }
}

/// The `overrun:` figure of a `per_cpu/cpuN/stats` file (0 when absent).
fn overrun_of(stats: &str) -> u64 {
    stats
        .lines()
        .find_map(|l| l.strip_prefix("overrun:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

impl Drop for Recording {
    fn drop(&mut self) {
        // An instance is removed with rmdir; its files go with it. Tracing off first, so the
        // kernel is not asked to remove a buffer that is being written.
        let _ = fs::write(self.dir.join("tracing_on"), "0");
        let _ = fs::remove_dir(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overrun_is_read_from_the_stats_file() {
        let stats = "entries: 12\noverrun: 345\ncommit overrun: 0\nbytes: 1\n";
        assert_eq!(overrun_of(stats), 345);
        assert_eq!(overrun_of("entries: 1\n"), 0);
    }

    #[test]
    fn a_buffer_size_out_of_bounds_is_refused_before_tracefs_is_touched() {
        assert!(matches!(
            Recording::start(0),
            Err(RecordError::BufferSize(0))
        ));
        assert!(matches!(
            Recording::start(MAX_BUFFER_KB + 1),
            Err(RecordError::BufferSize(_))
        ));
    }
}
