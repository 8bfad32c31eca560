//! The Rust mirror of `bpf/host_intf.h`: map value layouts shared with the host scheduler.
//! Sizes are asserted here and in the C header, so a change on one side only fails the build.

/// Tenant slots of the host.
pub const NR_SLOTS: usize = 8;
/// Class index of the host's default class (tenant slots are 0..NR_SLOTS).
pub const DEFAULT_CLASS: usize = NR_SLOTS;
pub const NR_CLASSES: usize = NR_SLOTS + 1;
/// Chain levels 0..NR_LEVELS; higher levels run first.
pub const NR_LEVELS: u32 = 8;
/// `struct upsched_class_stats` is the shared [`ClassCounters`] record.
pub use upsched_abi::stats::{ClassCounters, WAIT_BUCKETS};
/// Task slots per tenant (`UPSCHED_MAX_TASKS`).
pub const MAX_TASKS: u32 = 4096;

pub const SLOT_FREE: u32 = 0;
pub const SLOT_ACTIVE: u32 = 1;
pub const SLOT_EJECTED: u32 = 2;
pub const SLOT_DRAINING: u32 = 3;

pub const EJECT_WATCHDOG: u32 = 1;

/// A plain-old-data map value: `#[repr(C)]`, no padding the C side lacks, any bit pattern valid.
///
/// # Safety
/// Implementors must be `#[repr(C)]` structs of integers (and arrays of them) only.
pub unsafe trait Pod: Copy + Default {
    fn as_bytes(&self) -> &[u8] {
        // SAFETY: Pod types are repr(C) integer aggregates: every byte is initialised.
        unsafe { std::slice::from_raw_parts((self as *const Self).cast::<u8>(), size_of::<Self>()) }
    }

    /// Reads a value from the start of `bytes`; `None` if too short.
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < size_of::<Self>() {
            return None;
        }
        let mut value = Self::default();
        // SAFETY: any bit pattern is a valid Pod value and the lengths were checked.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                (&mut value as *mut Self).cast::<u8>(),
                size_of::<Self>(),
            );
        }
        Some(value)
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostConfigRaw {
    pub default_slice_ns: u64,
    pub guard_window_ns: u64,
    pub timer_period_ns: u64,
    pub default_slice_floor_ns: u64,
    pub guard_min_permille: u32,
    pub default_level: u32,
    pub default_weight: u32,
    pub classify_gen: u32,
}
const _: () = assert!(size_of::<HostConfigRaw>() == 48);
// SAFETY: repr(C) integers only, no padding (asserted size equals the sum of fields).
unsafe impl Pod for HostConfigRaw {}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TenantConfigRaw {
    pub state: u32,
    pub generation: u32,
    pub cgroup_id: u64,
    pub cgroup_level: u32,
    pub level: u32,
    pub weight: u32,
    /// Bit `1 << hook id` for every hook the policy replaces; the host calls no other stub
    /// (an unreplaced stub is the default decision, which the host fills in itself).
    pub hooks: u32,
    pub slice_min_ns: u64,
    pub slice_max_ns: u64,
    pub slice_dfl_ns: u64,
    pub park_max_ns: u64,
    pub watchdog_ns: u64,
}
const _: () = assert!(size_of::<TenantConfigRaw>() == 72);
// SAFETY: as above.
unsafe impl Pod for TenantConfigRaw {}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TenantStatusRaw {
    pub ejected_gen: u32,
    pub eject_reason: u32,
    pub eject_pid: u32,
    pub nr_runnable: i32,
    pub eject_waited_ns: u64,
    pub eject_at_ns: u64,
    pub nr_tasks: i32,
    pub pad: u32,
}
const _: () = assert!(size_of::<TenantStatusRaw>() == 40);
// SAFETY: as above.
unsafe impl Pod for TenantStatusRaw {}

// SAFETY: as above (`ClassCounters` is repr(C), u64 fields and arrays only).
unsafe impl Pod for ClassCounters {}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HintWordsRaw {
    pub words: [u64; 8],
}
// SAFETY: as above.
unsafe impl Pod for HintWordsRaw {}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskWhereRaw {
    pub tenant: i32,
    pub task_slot: u32,
}
// SAFETY: as above.
unsafe impl Pod for TaskWhereRaw {}

/// `struct upsched_exit_record` is 1,168 bytes; read field by field from the raw bytes.
pub const EXIT_RECORD_SIZE: usize = 16 + 128 + 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_round_trip() {
        let config = TenantConfigRaw {
            state: SLOT_ACTIVE,
            generation: 7,
            cgroup_id: 0x1234,
            weight: 3,
            ..Default::default()
        };
        assert_eq!(TenantConfigRaw::from_bytes(config.as_bytes()), Some(config));
        assert_eq!(TenantConfigRaw::from_bytes(&[0u8; 10]), None);
    }
}
