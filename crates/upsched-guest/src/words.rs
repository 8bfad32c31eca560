// SPDX-License-Identifier: GPL-2.0-only
//! The hint words of a vCPU thread, made from its guest's reports: the words the `vm` policy
//! (`crates/upsched-policies/bpf/vm.bpf.c`) reads.
//!
//! | word | value |
//! | --- | --- |
//! | `UPSCHED_HINT_FLAGS` | `SLEEPY \| IDLE_LOOP` while the guest has no work on the vCPU (it idles, or only a FaaS poller with nothing pending runs); `LATENCY_SENSITIVE` while latency-sensitive work is runnable |
//! | `UPSCHED_HINT_PENDING` | guest work waiting: the run-queue length plus FaaS requests (0 while idle); non-zero releases a parked vCPU |
//! | [`VM_HINT_HALT_POLL_NS`] | the guest's halt-poll window: the policy parks no vCPU that went idle less than this ago (0: the policy's default, 200 µs) |
//! | [`VM_HINT_IDLE_EPOCH`] | how many times the vCPU went idle: the policy starts the window anew when it changes |
//! | [`VM_HINT_PARK_NS`] | how long the policy parks an idle vCPU between two polls (0: its default, 20 ms): the longest a parked guest waits to see an interrupt |
//!
//! The host's own release rule (`docs/mechanism.md`, "Parking and release") frees a parked
//! thread once `PENDING` is non-zero or `SLEEPY` is clear, so the words release a vCPU as soon
//! as its guest reports work, without any call into the policy.

use upsched_abi::{
    HINT_FIRST_FREE, HINT_FLAGS, HINT_PENDING, HINTF_IDLE_LOOP, HINTF_LATENCY_SENSITIVE,
    HINTF_SLEEPY, NR_HINTS,
};

use crate::message::{VcpuFlags, VcpuReport};

/// A thread's hint words.
pub type Words = [u64; NR_HINTS as usize];

/// The policy's own words, from the first free one (the `vm` policy's `VM_HINT_*`).
pub const VM_HINT_HALT_POLL_NS: usize = HINT_FIRST_FREE as usize;
pub const VM_HINT_IDLE_EPOCH: usize = HINT_FIRST_FREE as usize + 1;
pub const VM_HINT_PARK_NS: usize = HINT_FIRST_FREE as usize + 2;
/// The guest's default halt-poll window (Linux's `guest_halt_poll_ns`, KVM's `halt_poll_ns`).
pub const DEFAULT_HALT_POLL_NS: u64 = 200_000;
/// The `vm` policy's park time when the word is 0.
pub const DEFAULT_PARK_NS: u64 = 20_000_000;

/// The host's settings for a VM's vCPUs, posted in the policy's words (0: the policy's default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmSettings {
    pub halt_poll_ns: u64,
    pub park_ns: u64,
}

/// The order in which a writer stores a vCPU's words: the flags last, so that the host never
/// sees the new flags with the old counts.
pub const STORE_ORDER: [usize; NR_HINTS as usize] = {
    let mut order = [0; NR_HINTS as usize];
    let mut i = 0;
    while i + 1 < order.len() {
        order[i] = i + 1;
        i += 1;
    }
    order[i] = HINT_FLAGS as usize;
    order
};

/// One vCPU's words as its reports arrive.
#[derive(Clone, Debug, Default)]
pub struct VcpuWords {
    idle_epoch: u64,
    idle: bool,
}

impl VcpuWords {
    /// The words after `report`, with the host's `settings`.
    pub fn apply(&mut self, report: &VcpuReport, settings: VmSettings) -> Words {
        let faas_polls_only = report.flags.has(VcpuFlags::FAAS_SLEEPY)
            && report.faas_pending == 0
            && report.runnable <= 1;
        let idle = report.idle() || faas_polls_only;
        if idle && !self.idle {
            self.idle_epoch += 1;
        }
        self.idle = idle;
        let mut words = [0; NR_HINTS as usize];
        let mut flags = 0;
        if idle {
            flags |= u64::from(HINTF_SLEEPY | HINTF_IDLE_LOOP);
        } else {
            words[HINT_PENDING as usize] =
                u64::from(report.runnable) + u64::from(report.faas_pending);
            if report.flags.has(VcpuFlags::LATENCY_SENSITIVE) {
                flags |= u64::from(HINTF_LATENCY_SENSITIVE);
            }
        }
        words[HINT_FLAGS as usize] = flags;
        words[VM_HINT_HALT_POLL_NS] = settings.halt_poll_ns;
        words[VM_HINT_PARK_NS] = settings.park_ns;
        words[VM_HINT_IDLE_EPOCH] = self.idle_epoch;
        words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: VmSettings = VmSettings {
        halt_poll_ns: 0,
        park_ns: 0,
    };

    fn report(flags: u16, runnable: u32, faas_pending: u32) -> VcpuReport {
        VcpuReport {
            seq: 1,
            vcpu: 0,
            flags: VcpuFlags::new(flags).unwrap(),
            runnable,
            faas_pending,
        }
    }

    #[test]
    fn an_idle_vcpu_is_sleepy_in_its_idle_loop_and_each_idle_period_is_a_new_epoch() {
        let mut vcpu = VcpuWords::default();
        let idle = vcpu.apply(&report(VcpuFlags::IDLE_LOOP, 0, 0), DEFAULTS);
        assert_eq!(idle, [5, 0, 0, 0, 0, 0, 1, 0]);
        // Still idle: the same epoch.
        assert_eq!(vcpu.apply(&report(VcpuFlags::HALTED, 0, 0), DEFAULTS), idle);
        let settings = VmSettings {
            halt_poll_ns: 300_000,
            park_ns: 5_000_000,
        };
        let busy = vcpu.apply(&report(VcpuFlags::LATENCY_SENSITIVE, 2, 1), settings);
        assert_eq!(busy, [2, 0, 3, 0, 0, 300_000, 1, 5_000_000]);
        assert_eq!(
            vcpu.apply(&report(VcpuFlags::IDLE_LOOP, 0, 0), DEFAULTS)[VM_HINT_IDLE_EPOCH],
            2
        );
    }

    #[test]
    fn a_faas_poller_with_nothing_pending_counts_as_idle() {
        let mut vcpu = VcpuWords::default();
        assert_eq!(
            vcpu.apply(&report(VcpuFlags::FAAS_SLEEPY, 1, 0), DEFAULTS)[0],
            5
        );
        assert_eq!(
            vcpu.apply(&report(VcpuFlags::FAAS_SLEEPY, 1, 2), DEFAULTS)[..3],
            [0, 0, 3]
        );
    }

    #[test]
    fn the_policy_s_words_are_the_ones_vm_bpf_c_reads() {
        let source = include_str!("../../upsched-policies/bpf/vm.bpf.c");
        assert!(source.contains("#define VM_HINT_HALT_POLL_NS UPSCHED_HINT_FIRST_FREE\n"));
        assert!(source.contains("#define VM_HINT_IDLE_EPOCH (UPSCHED_HINT_FIRST_FREE + 1)\n"));
        assert!(source.contains("#define VM_HINT_PARK_NS (UPSCHED_HINT_FIRST_FREE + 2)\n"));
        assert!(source.contains("#define DEFAULT_HALT_POLL_NS 200000ULL\n"));
        assert!(source.contains("#define DEFAULT_PARK_NS 20000000ULL\n"));
        assert_eq!(
            (DEFAULT_HALT_POLL_NS, DEFAULT_PARK_NS),
            (200_000, 20_000_000)
        );
        assert_eq!(STORE_ORDER, [1, 2, 3, 4, 5, 6, 7, 0]);
    }
}
