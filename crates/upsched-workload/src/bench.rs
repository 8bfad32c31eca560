//! Stand-ins for `perf bench sched pipe` and `perf bench sched messaging` (hackbench), so the
//! guest needs no perf binary. Same structure and defaults as perf's, so the figures compare.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;

use serde::{Deserialize, Serialize};

use crate::sys::{self, Forked};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipeBench {
    pub benchmark: String,
    pub loops: u64,
    pub total_sec: f64,
    /// Microseconds per round trip (one "op" in perf's output).
    pub usec_per_op: f64,
    pub ops_per_sec: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagingBench {
    pub benchmark: String,
    pub groups: u64,
    pub loops: u64,
    /// Senders and receivers per group (each).
    pub fds: u64,
    pub data_size: u64,
    pub transport: String,
    pub processes: u64,
    pub messages: u64,
    pub total_sec: f64,
}

/// Children of the benches: die with the parent, and do not hold the start gate open.
fn child_prologue(parent: libc::pid_t, gate_read: &File, gate_write_fd: libc::c_int) {
    sys::die_with_parent(parent);
    // SAFETY: closes this child's inherited copy of the gate's write end; the parent's File is
    // never dropped in the child (it leaves with _exit).
    unsafe { libc::close(gate_write_fd) };
    let mut byte = [0u8; 1];
    while let Err(err) = (&mut &*gate_read).read(&mut byte) {
        if err.kind() != std::io::ErrorKind::Interrupted {
            break;
        }
    }
}

/// Forks a child that runs `body` after the gate opens and exits with its status. `cpus`, if
/// not empty, is the child's CPU affinity (set before the gate opens).
fn spawn(
    parent: libc::pid_t,
    gate: &(File, File),
    cpus: &[u32],
    body: impl FnOnce() -> std::io::Result<()>,
) -> std::io::Result<libc::pid_t> {
    // SAFETY: the benches run in the single-threaded `upsched-workload` binary.
    match unsafe { sys::fork() }? {
        Forked::Child => {
            if !cpus.is_empty() && sys::set_affinity(0, cpus).is_err() {
                sys::exit_child(1);
            }
            child_prologue(parent, &gate.0, gate.1.as_raw_fd());
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body))
                .map(|r| r.is_ok())
                .unwrap_or(false);
            sys::exit_child(if ok { 0 } else { 1 })
        }
        Forked::Parent(pid) => Ok(pid),
    }
}

/// Opens the gate and waits for every child. On the first failure the others are killed: a
/// receiver waiting for a dead sender would otherwise wait forever.
fn release_and_wait(gate: (File, File), pids: &[libc::pid_t]) -> std::io::Result<f64> {
    let start = sys::monotonic_ns();
    drop(gate);
    let mut left: Vec<libc::pid_t> = pids.to_vec();
    let mut failure = None;
    while !left.is_empty() {
        let Some(reaped) = sys::wait_child(-1, true)? else {
            break;
        };
        left.retain(|&pid| pid != reaped.pid);
        if reaped.status != Ok(0) && failure.is_none() {
            failure = Some(reaped.status);
            left.iter().for_each(|&pid| sys::kill(pid, libc::SIGKILL));
        }
    }
    let seconds = (sys::monotonic_ns() - start) as f64 / 1e9;
    match failure {
        None => Ok(seconds),
        Some(status) => Err(std::io::Error::other(format!(
            "a benchmark process failed ({}); the others were killed",
            match status {
                Ok(code) => format!("exit status {code}"),
                Err(sig) => format!("signal {sig}"),
            }
        ))),
    }
}

/// Two processes pass a 4-byte token back and forth over two pipes, `loops` round trips.
pub fn pipe_bench(loops: u64, cpus: &[u32]) -> std::io::Result<PipeBench> {
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    let gate = sys::pipe()?;
    let (there_read, there_write) = sys::pipe()?;
    let (back_read, back_write) = sys::pipe()?;
    let mut token = [0u8; 4];
    let echo = spawn(parent, &gate, cpus, || {
        let (mut from, mut to) = (&there_read, &back_write);
        for _ in 0..loops {
            from.read_exact(&mut token)?;
            to.write_all(&token)?;
        }
        Ok(())
    })?;
    let ping = spawn(parent, &gate, cpus, || {
        let (mut to, mut from) = (&there_write, &back_read);
        let mut token = [0u8; 4];
        for i in 0..loops {
            to.write_all(&(i as u32).to_le_bytes())?;
            from.read_exact(&mut token)?;
        }
        Ok(())
    })?;
    let total_sec = release_and_wait(gate, &[echo, ping])?;
    Ok(PipeBench {
        benchmark: "pipe".into(),
        loops,
        total_sec,
        usec_per_op: total_sec * 1e6 / loops.max(1) as f64,
        ops_per_sec: loops as f64 / total_sec.max(1e-9),
    })
}

/// hackbench: per group, `fds` receivers and `fds` senders; every sender writes `loops`
/// messages of `data_size` bytes to every receiver of its group.
pub fn messaging_bench(
    groups: u64,
    loops: u64,
    fds: u64,
    data_size: u64,
    use_pipes: bool,
    cpus: &[u32],
) -> std::io::Result<MessagingBench> {
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    let gate = sys::pipe()?;
    let mut pids = Vec::new();
    let message = vec![0x55u8; data_size as usize];
    let spawned = (|| -> std::io::Result<()> {
        for _ in 0..groups {
            // (receiver end, sender end) per receiver.
            let mut channels = Vec::new();
            for _ in 0..fds {
                channels.push(if use_pipes {
                    sys::pipe()?
                } else {
                    sys::socketpair()?
                });
            }
            for (receive, _) in &channels {
                pids.push(spawn(parent, &gate, cpus, || {
                    let mut left = loops * fds * data_size;
                    let mut buf = vec![0u8; data_size.max(1) as usize];
                    let mut from = receive;
                    while left > 0 {
                        let want = buf.len().min(left as usize);
                        match from.read(&mut buf[..want])? {
                            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                            n => left -= n as u64,
                        }
                    }
                    Ok(())
                })?);
            }
            for _ in 0..fds {
                pids.push(spawn(parent, &gate, cpus, || {
                    for _ in 0..loops {
                        for (_, send) in &channels {
                            (&mut &*send).write_all(&message)?;
                        }
                    }
                    Ok(())
                })?);
            }
            // The group's channels close here in the parent; its children keep their copies.
        }
        Ok(())
    })();
    if let Err(err) = spawned {
        for &pid in &pids {
            sys::kill(pid, libc::SIGKILL);
            let _ = sys::wait_child(pid, true);
        }
        return Err(err);
    }
    let total_sec = release_and_wait(gate, &pids)?;
    Ok(MessagingBench {
        benchmark: "messaging".into(),
        groups,
        loops,
        fds,
        data_size,
        transport: if use_pipes { "pipe" } else { "socketpair" }.into(),
        processes: pids.len() as u64,
        messages: groups * fds * fds * loops,
        total_sec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // These fork, which is sound only in a single-threaded process: the library tests of this
    // module are exercised through the binary in tests/cli.rs instead.
    #[test]
    fn result_types_serialize() {
        let r = PipeBench {
            benchmark: "pipe".into(),
            loops: 1,
            total_sec: 1.0,
            usec_per_op: 1e6,
            ops_per_sec: 1.0,
        };
        assert!(serde_json::to_string(&r).unwrap().contains("usec_per_op"));
    }
}
