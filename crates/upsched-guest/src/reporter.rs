// SPDX-License-Identifier: GPL-2.0-only
//! The guest side's choice of what to send: a vCPU's report as soon as its state changes, and
//! a heartbeat that resends one vCPU's state in turn (so that a report the host dropped is
//! healed), all through a token bucket at half the host's rate, so that a well-behaved guest
//! is never rate-limited.

use crate::channel::{HOST_BURST, HOST_RATE_PER_S, TokenBucket};
use crate::message::{VcpuFlags, VcpuReport};

pub const GUEST_RATE_PER_S: u64 = HOST_RATE_PER_S / 2;
pub const GUEST_BURST: u64 = HOST_BURST / 2;
/// One vCPU's state is resent this often even if nothing changed.
pub const HEARTBEAT_NS: u64 = 100_000_000;

/// What a vCPU does, as the guest sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuState {
    pub flags: VcpuFlags,
    pub runnable: u32,
    pub faas_pending: u32,
}

pub struct Reporter {
    seq: u32,
    sent: Vec<Option<VcpuState>>,
    bucket: TokenBucket,
    next_heartbeat: usize,
    last_heartbeat_ns: u64,
}

impl Reporter {
    pub fn new(nr_vcpus: u16, now_ns: u64) -> Self {
        Reporter {
            seq: 0,
            sent: vec![None; usize::from(nr_vcpus)],
            bucket: TokenBucket::new(GUEST_RATE_PER_S, GUEST_BURST, now_ns),
            next_heartbeat: 0,
            last_heartbeat_ns: now_ns,
        }
    }

    /// The reports to send at `now_ns` for the vCPUs' `states` (index = vCPU; extra states
    /// beyond the guest's vCPUs are ignored). A change the bucket cannot pay for now is sent at
    /// a later call.
    pub fn reports(&mut self, states: &[VcpuState], now_ns: u64) -> Vec<VcpuReport> {
        let mut out = Vec::new();
        let nr = self.sent.len().min(states.len());
        for (vcpu, &state) in states.iter().enumerate().take(nr) {
            if self.sent[vcpu] != Some(state) && self.bucket.take(now_ns) {
                out.push(self.report(vcpu, state));
            }
        }
        if nr > 0 && now_ns.saturating_sub(self.last_heartbeat_ns) >= HEARTBEAT_NS {
            self.last_heartbeat_ns = now_ns;
            let vcpu = self.next_heartbeat % nr;
            self.next_heartbeat = (vcpu + 1) % nr;
            if !out.iter().any(|r| usize::from(r.vcpu) == vcpu) && self.bucket.take(now_ns) {
                out.push(self.report(vcpu, states[vcpu]));
            }
        }
        out
    }

    fn report(&mut self, vcpu: usize, state: VcpuState) -> VcpuReport {
        self.seq = self.seq.wrapping_add(1);
        self.sent[vcpu] = Some(state);
        VcpuReport {
            seq: self.seq,
            vcpu: vcpu as u16,
            flags: state.flags,
            runnable: state.runnable,
            faas_pending: state.faas_pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Channel;

    fn state(runnable: u32) -> VcpuState {
        let flags = if runnable == 0 {
            VcpuFlags::IDLE_LOOP
        } else {
            0
        };
        VcpuState {
            flags: VcpuFlags::new(flags).unwrap(),
            runnable,
            faas_pending: 0,
        }
    }

    #[test]
    fn changes_go_at_once_and_a_heartbeat_resends_one_vcpu_in_turn() {
        let mut reporter = Reporter::new(2, 0);
        let first = reporter.reports(&[state(0), state(1)], 0);
        assert_eq!(
            first.iter().map(|r| (r.seq, r.vcpu)).collect::<Vec<_>>(),
            [(1, 0), (2, 1)]
        );
        assert!(reporter.reports(&[state(0), state(1)], 1_000).is_empty());
        let changed = reporter.reports(&[state(0), state(2)], 2_000);
        assert_eq!(
            (changed.len(), changed[0].vcpu, changed[0].runnable),
            (1, 1, 2)
        );
        let beat = reporter.reports(&[state(0), state(2)], HEARTBEAT_NS);
        assert_eq!(beat.iter().map(|r| r.vcpu).collect::<Vec<_>>(), [0]);
        let beat = reporter.reports(&[state(0), state(2)], 2 * HEARTBEAT_NS);
        assert_eq!(beat.iter().map(|r| r.vcpu).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn a_guest_that_changes_state_as_fast_as_it_can_is_never_refused_by_the_host() {
        let mut reporter = Reporter::new(4, 0);
        let mut channel = Channel::new(4, 0);
        let mut sent = 0;
        for step in 0..20_000u64 {
            let now = step * 10_000; // every 10 µs, for 0.2 s
            let states: Vec<_> = (0..4).map(|v| state(((step + v) % 3) as u32)).collect();
            for report in reporter.reports(&states, now) {
                sent += 1;
                assert_eq!(channel.ingest(&report.encode(), now), [report]);
            }
        }
        assert_eq!(channel.counters().rejected(), 0);
        assert!(sent <= GUEST_BURST + GUEST_RATE_PER_S / 5 + 1, "{sent}");
    }
}
