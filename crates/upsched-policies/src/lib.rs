//! The example tenant policies, compiled by this crate's build from `bpf/*.bpf.c` and embedded
//! as BPF object bytes. These are the very bytes the kernel backend attaches and the simulator
//! runs.
//!
//! | name   | policy |
//! |--------|--------|
//! | `fifo` | first in, first out, longest slice |
//! | `rr`   | round-robin with a fixed 5 ms slice |
//! | `prio` | static priority from nice, preempting on wake-up |
//! | `wfq`  | weighted virtual-time fairness |
//! | `edf`  | earliest deadline first (hinted deadline, latency target, or per-task default) |
//! | `faas` | event-aware: parks idle pollers, runs tasks first when their event arrives |
//! | `vm`   | vCPU threads by their guest's reports: parks or throttles idle vCPUs past the halt-poll window, runs vCPUs with guest work first |

include!(concat!(env!("OUT_DIR"), "/policies.rs"));

/// The example policy named `name` (its object bytes).
pub fn policy(name: &str) -> Option<&'static [u8]> {
    POLICIES
        .iter()
        .find(|(policy_name, _)| *policy_name == name)
        .map(|(_, bytes)| *bytes)
}

/// Names of all example policies, sorted.
pub fn names() -> impl Iterator<Item = &'static str> {
    POLICIES.iter().map(|(name, _)| *name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_example_is_embedded_as_a_bpf_elf_object() {
        let names: Vec<_> = super::names().collect();
        assert_eq!(names, ["edf", "faas", "fifo", "prio", "rr", "vm", "wfq"]);
        for (name, bytes) in super::POLICIES {
            assert_eq!(&bytes[..4], b"\x7fELF", "{name}");
            // e_machine (little-endian u16 at 18) is EM_BPF = 247.
            assert_eq!(u16::from_le_bytes([bytes[18], bytes[19]]), 247, "{name}");
        }
    }
}
