//! Policy objects for tests, compiled from `bpf/good/*.bpf.c` (valid policies that exercise
//! corners of the format) and `bpf/bad/*.bpf.c` (each breaks one admission rule; its header
//! comment says which).

include!(concat!(env!("OUT_DIR"), "/corpus.rs"));

/// The object named `name` from either list.
pub fn object(name: &str) -> &'static [u8] {
    GOOD.iter()
        .chain(BAD)
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
        .unwrap_or_else(|| panic!("no test object named {name}"))
}
