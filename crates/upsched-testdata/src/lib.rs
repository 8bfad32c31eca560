//! Policy objects for tests, compiled from `bpf/good/*.bpf.c` (valid policies that exercise
//! corners of the format), `bpf/bad/*.bpf.c` (each breaks one admission rule; its header
//! comment says which) and `bpf/misbehaving/*.bpf.c` (policies whose decisions the host must
//! clamp, or that it must eject; the kernel's scenarios and the simulator's tests run them).

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
