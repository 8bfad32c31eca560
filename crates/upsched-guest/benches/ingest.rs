// SPDX-License-Identifier: GPL-2.0-only
//! What the host end of a guest's channel costs per byte (`docs/guest-host.md`, "Figures"),
//! side by side in one run:
//!
//! - **copy**: copying the bytes once (the floor: a read of them from the socket costs at least
//!   this);
//! - **valid**: a stream of valid reports, each decoded and accepted (the bucket refilled by a
//!   clock that runs fast enough never to limit);
//! - **garbage**: bytes without a message, skipped by resynchronisation (the same clock);
//! - **flood**: valid reports past the guest's bucket, dropped as `rate_limited`.
//!
//! `cargo bench -p upsched-guest` prints ns per 24-byte message for each and the ratio to copy.

use std::hint::black_box;
use std::time::Instant;

use upsched_guest::channel::Channel;
use upsched_guest::message::{MESSAGE_BYTES, VcpuFlags, VcpuReport};

const MESSAGES: usize = 200_000;
const ROUNDS: usize = 20;

fn stream(messages: usize) -> Vec<u8> {
    (0..messages)
        .flat_map(|i| {
            VcpuReport {
                seq: i as u32 + 1,
                vcpu: (i % 4) as u16,
                flags: VcpuFlags::new(VcpuFlags::IDLE_LOOP).unwrap_or_default(),
                runnable: 0,
                faas_pending: 0,
            }
            .encode()
        })
        .collect()
}

/// Mean ns per message of `run` over the rounds, fed in 4 KiB reads as the agent reads.
/// `run` gets each read with its round and its index in the round.
fn per_message(bytes: &[u8], mut run: impl FnMut(&[u8], usize, usize)) -> f64 {
    let start = Instant::now();
    for round in 0..ROUNDS {
        for (i, chunk) in bytes.chunks(4096).enumerate() {
            run(chunk, round, i);
        }
    }
    start.elapsed().as_nanos() as f64 / (ROUNDS * bytes.len() / MESSAGE_BYTES) as f64
}

fn main() {
    let valid = stream(MESSAGES);
    let garbage: Vec<u8> = (0..valid.len()).map(|i| (i * 7 % 251) as u8).collect();
    let mut sink = vec![0u8; 4096];
    let copy = per_message(&valid, |chunk, _, _| {
        sink[..chunk.len()].copy_from_slice(chunk);
        black_box(&sink);
    });
    // A new channel per round (sequence numbers restart); the clock advances a second per read,
    // so that the bucket never limits.
    let mut channel = Channel::new(4, 0);
    let mut now = 0u64;
    let valid_ns = per_message(&valid, |chunk, _, i| {
        now += 1_000_000_000;
        if i == 0 {
            channel = Channel::new(4, now);
        }
        black_box(channel.ingest(chunk, now));
    });
    let accepted = channel.counters().accepted;
    let mut channel = Channel::new(4, 0);
    let garbage_ns = per_message(&garbage, |chunk, _, _| {
        now += 1_000_000_000;
        black_box(channel.ingest(chunk, now));
    });
    let mut channel = Channel::new(4, 0);
    let flood_ns = per_message(&valid, |chunk, _, _| {
        black_box(channel.ingest(chunk, 0));
    });
    let rejected = channel.counters().rate_limited;
    println!("channel ingest, {MESSAGES} messages x {ROUNDS} rounds, 4 KiB reads:");
    println!("  copy     {copy:8.1} ns/message (1.00)");
    for (name, ns) in [
        ("valid", valid_ns),
        ("garbage", garbage_ns),
        ("flood", flood_ns),
    ] {
        println!("  {name:8} {ns:8.1} ns/message ({:.2})", ns / copy);
    }
    println!("  (valid: {accepted} accepted in the last round; flood: {rejected} rate-limited)");
}
