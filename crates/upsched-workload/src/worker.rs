//! What the forked tasks do: the work loops, and the result they leave for the parent.
//!
//! A worker writes one JSON line (`WorkerResult`) and then its latency samples (binary, see
//! `stats::encode`) into a memfd the parent created before forking; the parent reads it after
//! reaping the worker.

use std::fs::File;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};

use crate::stats::{self, Samples};
use crate::sys;

/// One unit of hog work: a fixed chain of dependent integer operations (xorshift and a
/// multiply), so its cost depends on the CPU, not on memory or on the compiler's cleverness.
/// About 0.4 µs per iteration in a release build on the development host, 4x more in a debug
/// build, 1 µs or so under QEMU TCG; `upsched-workload calibrate` measures it.
#[inline(never)]
pub fn hog_iteration(state: u64) -> u64 {
    let mut x = std::hint::black_box(state) | 1;
    for _ in 0..128 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
    }
    std::hint::black_box(x)
}

/// What a worker reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerResult {
    /// Did its fixed work (false: stopped at the end of the run, or it had no fixed work).
    pub finished: bool,
    /// CLOCK_MONOTONIC when it finished or stopped.
    pub end_ns: u64,
    /// Iterations (hog), cycles (sleeper) or round trips (pingpong) done.
    pub work: u64,
    pub error: Option<String>,
}

/// The work one task does.
#[derive(Debug)]
pub enum Work {
    Hog {
        iterations: Option<u64>,
    },
    Sleeper {
        run_ns: u64,
        sleep_ns: u64,
        cycles: Option<u64>,
        timer_slack_ns: u64,
    },
    /// The side that sends first and measures round trips.
    PingpongInitiator {
        to_peer: File,
        from_peer: File,
        round_trips: Option<u64>,
        message_bytes: usize,
    },
    PingpongResponder {
        to_peer: File,
        from_peer: File,
        message_bytes: usize,
    },
}

const PING: u8 = b'p';
const QUIT: u8 = b'q';

/// Runs `work` until it is done or `stop` is set; returns the result and latency samples.
pub fn run_work(work: Work, stop: &AtomicU32) -> (WorkerResult, Samples) {
    let stopped = || stop.load(Ordering::Relaxed) != 0;
    let mut samples = Samples::new();
    let mut result = WorkerResult::default();
    match work {
        Work::Hog { iterations } => {
            let mut state = 1u64;
            let limit = iterations.unwrap_or(u64::MAX);
            while result.work < limit && !stopped() {
                state = hog_iteration(state);
                result.work += 1;
            }
            result.finished = iterations.is_some() && result.work >= limit;
        }
        Work::Sleeper {
            run_ns,
            sleep_ns,
            cycles,
            timer_slack_ns,
        } => {
            sys::set_timer_slack(timer_slack_ns);
            let limit = cycles.unwrap_or(u64::MAX);
            while result.work < limit && !stopped() {
                burn_cpu_ns(run_ns);
                let before = sys::monotonic_ns();
                sys::sleep_ns(sleep_ns);
                let slept = sys::monotonic_ns() - before;
                samples.push(slept.saturating_sub(sleep_ns));
                result.work += 1;
            }
            result.finished = cycles.is_some() && result.work >= limit;
        }
        Work::PingpongInitiator {
            mut to_peer,
            mut from_peer,
            round_trips,
            message_bytes,
        } => {
            let limit = round_trips.unwrap_or(u64::MAX);
            let mut message = vec![PING; message_bytes];
            let mut reply = vec![0u8; message_bytes];
            let outcome = (|| -> std::io::Result<()> {
                while result.work < limit && !stopped() {
                    let before = sys::monotonic_ns();
                    to_peer.write_all(&message)?;
                    from_peer.read_exact(&mut reply)?;
                    samples.push(sys::monotonic_ns() - before);
                    result.work += 1;
                }
                // The responder only ever waits for us, so telling it to quit cannot block.
                message[0] = QUIT;
                to_peer.write_all(&message)
            })();
            if let Err(err) = outcome {
                result.error = Some(format!("pingpong pipe: {err}"));
            }
            result.finished = round_trips.is_some() && result.work >= limit;
        }
        Work::PingpongResponder {
            mut to_peer,
            mut from_peer,
            message_bytes,
        } => {
            let mut message = vec![0u8; message_bytes];
            let outcome = (|| -> std::io::Result<()> {
                loop {
                    from_peer.read_exact(&mut message)?;
                    if message[0] == QUIT {
                        return Ok(());
                    }
                    to_peer.write_all(&message)?;
                    result.work += 1;
                }
            })();
            match outcome {
                // The responder "finishes" when its initiator did its fixed work.
                Ok(()) => result.finished = !stopped(),
                Err(err) => result.error = Some(format!("pingpong pipe: {err}")),
            }
        }
    }
    result.end_ns = sys::monotonic_ns();
    (result, samples)
}

/// Spins until the calling thread has used `ns` of CPU time. CPU time rather than wall time:
/// under contention a sleeper still does the same work per cycle.
fn burn_cpu_ns(ns: u64) {
    if ns == 0 {
        return;
    }
    let start = sys::thread_cpu_ns();
    let mut state = 1u64;
    while sys::thread_cpu_ns() - start < ns {
        // One small unit of work between clock reads (each is a system call), so that the
        // overshoot stays small even under emulation.
        state = hog_iteration(state);
    }
    std::hint::black_box(state);
}

/// Serialises a worker's result for the parent.
pub fn encode_result(result: &WorkerResult, samples: &Samples) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(result).unwrap_or_default();
    bytes.push(b'\n');
    stats::encode(samples, &mut bytes);
    bytes
}

/// Parses what `encode_result` wrote.
pub fn decode_result(bytes: &[u8]) -> Option<(WorkerResult, Samples)> {
    let newline = bytes.iter().position(|&b| b == b'\n')?;
    let result = serde_json::from_slice(&bytes[..newline]).ok()?;
    let samples = stats::decode(&bytes[newline + 1..])?;
    Some((result, samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_round_trip() {
        let mut samples = Samples::new();
        samples.push(42);
        let result = WorkerResult {
            finished: true,
            end_ns: 7,
            work: 3,
            error: None,
        };
        let (back, back_samples) = decode_result(&encode_result(&result, &samples)).unwrap();
        assert_eq!(back, result);
        assert_eq!(back_samples.kept(), &[42]);
        assert!(decode_result(b"{}").is_none());
    }

    #[test]
    fn fixed_hog_work_finishes() {
        let stop = AtomicU32::new(0);
        let (result, _) = run_work(
            Work::Hog {
                iterations: Some(10),
            },
            &stop,
        );
        assert!(result.finished);
        assert_eq!(result.work, 10);
    }

    #[test]
    fn stop_flag_ends_unbounded_work() {
        let stop = AtomicU32::new(1);
        let (result, _) = run_work(Work::Hog { iterations: None }, &stop);
        assert!(!result.finished);
        assert_eq!(result.work, 0);
    }

    #[test]
    fn sleeper_measures_wakeup_latency() {
        let stop = AtomicU32::new(0);
        let (result, samples) = run_work(
            Work::Sleeper {
                run_ns: 10_000,
                sleep_ns: 200_000,
                cycles: Some(5),
                timer_slack_ns: 1,
            },
            &stop,
        );
        assert!(result.finished);
        assert_eq!(samples.count(), 5);
    }
}
