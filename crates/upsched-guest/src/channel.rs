// SPDX-License-Identifier: GPL-2.0-only
//! The host end of one guest's channel: bytes in, accepted reports out, everything else counted.
//!
//! The channel is a byte stream (a virtio-serial port's host socket): messages are framed by
//! their fixed size, and a frame that does not start with the magic is skipped up to the next
//! magic (one `magic` rejection per skip). Every message's worth of bytes (24) costs a token of
//! the guest's bucket before anything looks at it, messages and garbage alike, so a flooding
//! guest costs the host a bounded amount of work; a report whose sequence number is not newer
//! than the last accepted one of its vCPU is stale.

use serde::Serialize;

use crate::message::{MAGIC, MESSAGE_BYTES, Rejection, VcpuReport};

/// Messages per second the host accepts from one guest, and the burst above that rate.
pub const HOST_RATE_PER_S: u64 = 4000;
pub const HOST_BURST: u64 = 512;

/// A token bucket over a caller's clock (ns), so that tests and the simulator are exact.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate_per_s: u64,
    capacity: u64,
    /// Credit in token-nanoseconds: one token is 1e9.
    credit: u64,
    last_ns: u64,
}

const TOKEN: u64 = 1_000_000_000;

impl TokenBucket {
    /// A full bucket of `burst` tokens refilled at `rate_per_s`. Both are capped at a million
    /// so that the credit cannot overflow.
    pub fn new(rate_per_s: u64, burst: u64, now_ns: u64) -> Self {
        let burst = burst.clamp(1, 1_000_000);
        TokenBucket {
            rate_per_s: rate_per_s.min(1_000_000),
            capacity: burst * TOKEN,
            credit: burst * TOKEN,
            last_ns: now_ns,
        }
    }

    /// Takes a token if there is one at `now_ns`.
    pub fn take(&mut self, now_ns: u64) -> bool {
        let elapsed = now_ns.saturating_sub(self.last_ns);
        self.last_ns = self.last_ns.max(now_ns);
        self.credit = self
            .credit
            .saturating_add(elapsed.saturating_mul(self.rate_per_s))
            .min(self.capacity);
        if self.credit >= TOKEN {
            self.credit -= TOKEN;
            true
        } else {
            false
        }
    }
}

/// What a channel did with what it read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub accepted: u64,
    pub magic: u64,
    pub version: u64,
    pub size: u64,
    pub vcpu: u64,
    pub reserved: u64,
    pub stale: u64,
    pub rate_limited: u64,
}

impl Counters {
    fn count(&mut self, rejection: Rejection) {
        let counter = match rejection {
            Rejection::Magic => &mut self.magic,
            Rejection::Version(_) => &mut self.version,
            Rejection::Size(_) => &mut self.size,
            Rejection::Vcpu { .. } => &mut self.vcpu,
            Rejection::Reserved(_) => &mut self.reserved,
            Rejection::Stale(_) => &mut self.stale,
            Rejection::RateLimited => &mut self.rate_limited,
        };
        *counter += 1;
    }

    pub fn rejected(&self) -> u64 {
        self.magic
            + self.version
            + self.size
            + self.vcpu
            + self.reserved
            + self.stale
            + self.rate_limited
    }
}

/// One guest's channel, for a guest of `nr_vcpus` vCPUs.
pub struct Channel {
    nr_vcpus: u16,
    pending: Vec<u8>,
    bucket: TokenBucket,
    last_seq: Vec<Option<u32>>,
    counters: Counters,
}

impl Channel {
    pub fn new(nr_vcpus: u16, now_ns: u64) -> Self {
        Channel {
            nr_vcpus,
            pending: Vec::with_capacity(2 * MESSAGE_BYTES),
            bucket: TokenBucket::new(HOST_RATE_PER_S, HOST_BURST, now_ns),
            last_seq: vec![None; usize::from(nr_vcpus)],
            counters: Counters::default(),
        }
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Takes `bytes` read at `now_ns` and returns the reports accepted among them, in order
    /// (at most one per whole message the bytes complete). Bytes of an unfinished message wait
    /// for the next read; at most one message's worth is kept.
    pub fn ingest(&mut self, bytes: &[u8], now_ns: u64) -> Vec<VcpuReport> {
        let mut accepted = Vec::new();
        for chunk in bytes.chunks(MESSAGE_BYTES) {
            // Every message's worth of bytes costs a token before anything looks at it, be it
            // a message or garbage: past the bucket, bytes are dropped unread (and the next
            // ones resynchronise).
            if !self.bucket.take(now_ns) {
                self.counters.count(Rejection::RateLimited);
                self.pending.clear();
                continue;
            }
            self.pending.extend_from_slice(chunk);
            self.drain(&mut accepted);
        }
        accepted
    }

    fn drain(&mut self, accepted: &mut Vec<VcpuReport>) {
        loop {
            let prefix = self.pending.len().min(MAGIC.len());
            if self.pending[..prefix] != MAGIC[..prefix] {
                self.counters.count(Rejection::Magic);
                self.resync();
                continue;
            }
            if self.pending.len() < MESSAGE_BYTES {
                return;
            }
            let frame: [u8; MESSAGE_BYTES] = self.pending[..MESSAGE_BYTES]
                .try_into()
                .unwrap_or_else(|_| unreachable!("the frame is MESSAGE_BYTES long"));
            self.pending.drain(..MESSAGE_BYTES);
            match self.admit(&frame) {
                Ok(report) => {
                    self.counters.accepted += 1;
                    accepted.push(report);
                }
                Err(rejection) => self.counters.count(rejection),
            }
        }
    }

    /// Drops bytes up to the next possible start of a message (a magic, or a prefix of one at
    /// the end).
    fn resync(&mut self) {
        let start = (1..=self.pending.len())
            .find(|&at| {
                let rest = &self.pending[at..];
                let n = rest.len().min(MAGIC.len());
                rest[..n] == MAGIC[..n]
            })
            .unwrap_or(self.pending.len());
        self.pending.drain(..start);
    }

    fn admit(&mut self, frame: &[u8; MESSAGE_BYTES]) -> Result<VcpuReport, Rejection> {
        let report = VcpuReport::decode(frame, self.nr_vcpus)?;
        let last = &mut self.last_seq[usize::from(report.vcpu)];
        if let Some(previous) = *last {
            // Serial-number order: newer within half the sequence space.
            if (report.seq.wrapping_sub(previous) as i32) <= 0 {
                return Err(Rejection::Stale(report.seq));
            }
        }
        *last = Some(report.seq);
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::VcpuFlags;
    use proptest::prelude::*;

    fn report(seq: u32, vcpu: u16) -> VcpuReport {
        VcpuReport {
            seq,
            vcpu,
            flags: VcpuFlags::new(VcpuFlags::IDLE_LOOP).unwrap(),
            runnable: 0,
            faas_pending: 0,
        }
    }

    #[test]
    fn messages_split_across_reads_are_reassembled() {
        let mut channel = Channel::new(2, 0);
        let bytes = [report(1, 0).encode(), report(2, 1).encode()].concat();
        let mut got = channel.ingest(&bytes[..5], 0);
        got.extend(channel.ingest(&bytes[5..30], 0));
        got.extend(channel.ingest(&bytes[30..], 0));
        assert_eq!(got, [report(1, 0), report(2, 1)]);
        assert_eq!(channel.counters().rejected(), 0);
    }

    #[test]
    fn garbage_before_a_message_is_skipped_and_counted_once() {
        let mut channel = Channel::new(1, 0);
        let mut bytes = b"xxUPxx-noise".to_vec();
        bytes.extend(report(1, 0).encode());
        assert_eq!(channel.ingest(&bytes, 0), [report(1, 0)]);
        assert_eq!(channel.counters().magic, 1);
    }

    #[test]
    fn stale_and_replayed_sequence_numbers_are_refused_per_vcpu() {
        let mut channel = Channel::new(2, 0);
        let bytes = [
            report(5, 0).encode(),
            report(5, 0).encode(),
            report(4, 0).encode(),
            report(1, 1).encode(),
            report(u32::MAX, 1).encode(),
            report(6, 0).encode(),
        ]
        .concat();
        assert_eq!(
            channel.ingest(&bytes, 0),
            [report(5, 0), report(1, 1), report(6, 0)]
        );
        assert_eq!(channel.counters().stale, 3);
    }

    #[test]
    fn a_flood_is_cut_to_the_burst_and_then_to_the_rate() {
        let mut channel = Channel::new(1, 0);
        let flood: Vec<u8> = (1..=2000).flat_map(|seq| report(seq, 0).encode()).collect();
        assert_eq!(channel.ingest(&flood, 0).len() as u64, HOST_BURST);
        assert_eq!(channel.counters().rate_limited, 2000 - HOST_BURST);
        // A second later the bucket has refilled by the rate, capped at the burst.
        let more: Vec<u8> = (3000..5000)
            .flat_map(|seq| report(seq, 0).encode())
            .collect();
        assert_eq!(
            channel.ingest(&more, 1_000_000_000).len() as u64,
            HOST_BURST
        );
        let one_ms_later: Vec<u8> = (6000..6010)
            .flat_map(|seq| report(seq, 0).encode())
            .collect();
        assert_eq!(channel.ingest(&one_ms_later, 1_001_000_000).len(), 4);
    }

    proptest! {
        /// Whatever a guest writes, the channel neither panics nor accepts anything but valid
        /// reports of its vCPUs, at most one per whole message's bytes and never more than the
        /// bucket allows, and every frame is either accepted or counted.
        #[test]
        fn arbitrary_bytes_yield_only_valid_bounded_reports(
            chunks in proptest::collection::vec(
                prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..64),
                    (any::<u32>(), 0u16..6, any::<u16>(), any::<u32>()).prop_map(|(seq, vcpu, flags, runnable)| {
                        let mut bytes = report(seq, vcpu).encode();
                        bytes[14..16].copy_from_slice(&(flags & 0x1f).to_le_bytes());
                        bytes[16..20].copy_from_slice(&runnable.to_le_bytes());
                        bytes.to_vec()
                    }),
                ],
                0..40,
            ),
            nr_vcpus in 1u16..5,
        ) {
            let mut channel = Channel::new(nr_vcpus, 0);
            let mut total = 0usize;
            for (i, chunk) in chunks.iter().enumerate() {
                total += chunk.len();
                for report in channel.ingest(chunk, i as u64 * 1000) {
                    prop_assert!(report.vcpu < nr_vcpus);
                    prop_assert_eq!(report.flags.bits() & !VcpuFlags::KNOWN, 0);
                    prop_assert_eq!(VcpuReport::decode(&report.encode(), nr_vcpus), Ok(report));
                }
                prop_assert!(channel.pending.len() < MESSAGE_BYTES);
            }
            let counters = channel.counters();
            prop_assert!(counters.accepted as usize <= total / MESSAGE_BYTES);
            prop_assert!(counters.accepted <= HOST_BURST);
        }
    }
}
