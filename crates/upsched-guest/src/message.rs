// SPDX-License-Identifier: GPL-2.0-only
//! The guest-to-host message: one vCPU's state in 24 bytes, little-endian.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | magic `UPVG` |
//! | 4 | 2 | version, [`VERSION`] |
//! | 6 | 2 | size in bytes, [`MESSAGE_BYTES`] |
//! | 8 | 4 | sequence number (per guest, increasing, wrapping) |
//! | 12 | 2 | vCPU index |
//! | 14 | 2 | flags ([`VcpuFlags`]; every other bit reserved, must be 0) |
//! | 16 | 4 | runnable: the guest run-queue length of that vCPU (the running task included) |
//! | 20 | 4 | FaaS pending: requests waiting for a function runtime on that vCPU |

use serde::Serialize;

pub const MAGIC: [u8; 4] = *b"UPVG";
pub const VERSION: u16 = 1;
pub const MESSAGE_BYTES: usize = 24;
/// The most vCPUs a guest may report about; a VMM with more vCPU threads is refused by the host
/// agent (`docs/guest-host.md`, "Bounds").
pub const MAX_VCPUS: u16 = 1024;

/// What a vCPU does, as bits of the message's flags field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VcpuFlags(u16);

impl VcpuFlags {
    /// The vCPU runs only the guest's idle task (its idle loop, `idle=poll` or halt polling).
    pub const IDLE_LOOP: u16 = 1;
    /// The vCPU halted (HLT): the VMM's thread sleeps until an interrupt.
    pub const HALTED: u16 = 2;
    /// Latency-sensitive work is runnable on the vCPU.
    pub const LATENCY_SENSITIVE: u16 = 4;
    /// A FaaS runtime on the vCPU only polls for its next event.
    pub const FAAS_SLEEPY: u16 = 8;
    /// Every defined bit; the others are reserved.
    pub const KNOWN: u16 =
        Self::IDLE_LOOP | Self::HALTED | Self::LATENCY_SENSITIVE | Self::FAAS_SLEEPY;

    /// `bits` if no reserved bit is set.
    pub fn new(bits: u16) -> Option<Self> {
        (bits & !Self::KNOWN == 0).then_some(VcpuFlags(bits))
    }

    pub fn bits(self) -> u16 {
        self.0
    }

    pub fn has(self, bit: u16) -> bool {
        self.0 & bit != 0
    }
}

/// One vCPU's state, as a guest reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VcpuReport {
    pub seq: u32,
    pub vcpu: u16,
    pub flags: VcpuFlags,
    pub runnable: u32,
    pub faas_pending: u32,
}

/// Why a message was refused. Each kind has its own counter on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Rejection {
    #[error("no message magic (the stream was resynchronised)")]
    Magic,
    #[error("version {0}, not {VERSION}")]
    Version(u16),
    #[error("size {0}, not {MESSAGE_BYTES}")]
    Size(u16),
    #[error("vCPU {vcpu} of a guest with {nr_vcpus}")]
    Vcpu { vcpu: u16, nr_vcpus: u16 },
    #[error("reserved flag bits {0:#06x} set")]
    Reserved(u16),
    #[error("sequence number {0} is not newer than the vCPU's last")]
    Stale(u32),
    #[error("over the guest's rate limit")]
    RateLimited,
}

impl VcpuReport {
    pub fn encode(&self) -> [u8; MESSAGE_BYTES] {
        let mut bytes = [0u8; MESSAGE_BYTES];
        bytes[0..4].copy_from_slice(&MAGIC);
        bytes[4..6].copy_from_slice(&VERSION.to_le_bytes());
        bytes[6..8].copy_from_slice(&(MESSAGE_BYTES as u16).to_le_bytes());
        bytes[8..12].copy_from_slice(&self.seq.to_le_bytes());
        bytes[12..14].copy_from_slice(&self.vcpu.to_le_bytes());
        bytes[14..16].copy_from_slice(&self.flags.bits().to_le_bytes());
        bytes[16..20].copy_from_slice(&self.runnable.to_le_bytes());
        bytes[20..24].copy_from_slice(&self.faas_pending.to_le_bytes());
        bytes
    }

    /// Decodes one message of a guest with `nr_vcpus` vCPUs: every field is checked, and
    /// nothing is returned unless all are valid.
    pub fn decode(bytes: &[u8; MESSAGE_BYTES], nr_vcpus: u16) -> Result<Self, Rejection> {
        let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        let u32_at = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        if bytes[0..4] != MAGIC {
            return Err(Rejection::Magic);
        }
        let version = u16_at(4);
        if version != VERSION {
            return Err(Rejection::Version(version));
        }
        let size = u16_at(6);
        if usize::from(size) != MESSAGE_BYTES {
            return Err(Rejection::Size(size));
        }
        let vcpu = u16_at(12);
        if vcpu >= nr_vcpus {
            return Err(Rejection::Vcpu { vcpu, nr_vcpus });
        }
        let raw_flags = u16_at(14);
        let flags =
            VcpuFlags::new(raw_flags).ok_or(Rejection::Reserved(raw_flags & !VcpuFlags::KNOWN))?;
        Ok(VcpuReport {
            seq: u32_at(8),
            vcpu,
            flags,
            runnable: u32_at(16),
            faas_pending: u32_at(20),
        })
    }

    /// The vCPU has no guest work: it idles (in its loop or halted) with nothing runnable.
    pub fn idle(&self) -> bool {
        self.runnable == 0
            && (self.flags.has(VcpuFlags::IDLE_LOOP) || self.flags.has(VcpuFlags::HALTED))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> VcpuReport {
        VcpuReport {
            seq: 7,
            vcpu: 1,
            flags: VcpuFlags::new(VcpuFlags::LATENCY_SENSITIVE).unwrap(),
            runnable: 3,
            faas_pending: 2,
        }
    }

    #[test]
    fn a_report_round_trips_through_its_bytes() {
        let bytes = report().encode();
        assert_eq!(&bytes[..4], b"UPVG");
        assert_eq!(VcpuReport::decode(&bytes, 2), Ok(report()));
    }

    #[test]
    fn every_bad_field_is_its_own_rejection() {
        let good = report().encode();
        let with = |at: usize, value: &[u8]| {
            let mut bytes = good;
            bytes[at..at + value.len()].copy_from_slice(value);
            VcpuReport::decode(&bytes, 2)
        };
        assert_eq!(with(0, b"UPVH"), Err(Rejection::Magic));
        assert_eq!(with(4, &2u16.to_le_bytes()), Err(Rejection::Version(2)));
        assert_eq!(with(6, &25u16.to_le_bytes()), Err(Rejection::Size(25)));
        assert_eq!(
            with(12, &2u16.to_le_bytes()),
            Err(Rejection::Vcpu {
                vcpu: 2,
                nr_vcpus: 2
            })
        );
        assert_eq!(
            with(14, &0x8004u16.to_le_bytes()),
            Err(Rejection::Reserved(0x8000))
        );
    }

    #[test]
    fn a_vcpu_idles_only_in_its_idle_loop_or_halted_with_nothing_runnable() {
        let mut r = report();
        r.flags = VcpuFlags::new(VcpuFlags::IDLE_LOOP).unwrap();
        r.runnable = 0;
        assert!(r.idle());
        r.flags = VcpuFlags::new(VcpuFlags::HALTED).unwrap();
        assert!(r.idle());
        r.runnable = 1;
        assert!(!r.idle());
        r.runnable = 0;
        r.flags = VcpuFlags::default();
        assert!(!r.idle());
    }
}
