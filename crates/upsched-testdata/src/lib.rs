//! Policy objects for tests, compiled from `bpf/good/*.bpf.c` (valid policies that exercise
//! corners of the format), `bpf/bad/*.bpf.c` (each breaks one admission rule; its header
//! comment says which) and `bpf/misbehaving/*.bpf.c` (policies whose decisions the host must
//! clamp, or that it must eject; the kernel's scenarios and the simulator's tests run them) and
//! `bpf/kernel_refuses/*.bpf.c` (policies `upsched check` accepts and the kernel's verifier
//! refuses, for the tests of a kernel refusal's path: `kernel_refuses(name)`).

include!(concat!(env!("OUT_DIR"), "/corpus.rs"));

/// The object named `name` from the good or bad list.
pub fn object(name: &str) -> &'static [u8] {
    GOOD.iter()
        .chain(BAD)
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
        .unwrap_or_else(|| panic!("no test object named {name}"))
}

/// The misbehaving policy named `name`.
pub fn misbehaving(name: &str) -> Option<&'static [u8]> {
    MISBEHAVING
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}

/// The policy named `name` that passes `upsched check` but that the kernel refuses.
pub fn kernel_refuses(name: &str) -> Option<&'static [u8]> {
    KERNEL_REFUSES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}
