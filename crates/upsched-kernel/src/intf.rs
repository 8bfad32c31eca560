//! The map value layouts shared with the host scheduler (`bpf/host_intf.h`), all generated
//! from `crates/upsched-abi/mechanism.toml` ([`upsched_abi::mechanism`]), and how the loader
//! reads and writes them.

pub use upsched_abi::mechanism::{
    ClassCounters, DEFAULT_CLASS, EJECT_WATCHDOG, ExitRecordRaw, HintWordsRaw, HostConfigRaw,
    NR_CLASSES, NR_LEVELS, NR_SLOTS, SLOT_ACTIVE, SLOT_DRAINING, SLOT_EJECTED, SLOT_FREE,
    TaskWhereRaw, TenantConfigRaw, TenantStatusRaw, WAIT_BUCKETS,
};
/// Task slots per tenant (`UPSCHED_MAX_TASKS`).
pub const MAX_TASKS: u32 = upsched_abi::MAX_TASKS;

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

// SAFETY: the generated map values are repr(C) integers and arrays of them, without padding
// (mechanism.toml lays them out contiguously; every offset and size is asserted).
unsafe impl Pod for HostConfigRaw {}
// SAFETY: as above.
unsafe impl Pod for TenantConfigRaw {}
// SAFETY: as above.
unsafe impl Pod for TenantStatusRaw {}
// SAFETY: as above.
unsafe impl Pod for ClassCounters {}
// SAFETY: as above.
unsafe impl Pod for HintWordsRaw {}
// SAFETY: as above.
unsafe impl Pod for TaskWhereRaw {}

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
