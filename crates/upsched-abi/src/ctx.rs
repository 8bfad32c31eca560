//! Rust mirror of `struct upsched_ctx`. Field meanings, units and clamps are documented in
//! `include/upsched.h`; the layout is asserted at compile time against `abi.toml`.

/// The context of one hook call (see `include/upsched.h` for every field's meaning).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpschedCtx {
    // call (in)
    pub abi_version: u32,
    pub ctx_size: u32,
    pub now_ns: u64,
    pub hook: u32,
    pub cpu: u32,
    pub nr_cpus: u32,
    pub flags: u32,
    // task (in)
    pub pid: u32,
    pub tgid: u32,
    pub task_slot: u32,
    pub weight: u32,
    pub nice: i32,
    pub prev_cpu: i32,
    pub sum_runtime_ns: u64,
    pub last_runtime_ns: u64,
    pub runnable_ns: u64,
    pub nr_voluntary_switches: u64,
    pub nr_involuntary_switches: u64,
    pub hints: [u64; crate::NR_HINTS as usize],
    // tenant (in)
    pub tenant_id: u32,
    pub tenant_level: u32,
    pub tenant_weight: u32,
    pub tenant_nr_runnable: u32,
    pub slice_min_ns: u64,
    pub slice_max_ns: u64,
    pub park_max_ns: u64,
    // decision (out)
    pub key: u64,
    pub slice_ns: u64,
    pub park_until_ns: u64,
    pub target_cpu: i32,
    pub verdict: u32,
}

/// Size and signedness of a field's type, for the generated layout asserts.
trait AbiScalar {
    const SIZE: usize;
    const SIGNED: bool;
}

impl AbiScalar for u32 {
    const SIZE: usize = 4;
    const SIGNED: bool = false;
}

impl AbiScalar for i32 {
    const SIZE: usize = 4;
    const SIGNED: bool = true;
}

impl AbiScalar for u64 {
    const SIZE: usize = 8;
    const SIGNED: bool = false;
}

impl<T: AbiScalar, const N: usize> AbiScalar for [T; N] {
    const SIZE: usize = T::SIZE * N;
    const SIGNED: bool = T::SIGNED;
}

/// (size, signed) of the field that `select` projects; only its type matters.
const fn scalar_layout<F: AbiScalar>(_select: fn(&UpschedCtx) -> &F) -> (usize, bool) {
    (F::SIZE, F::SIGNED)
}

include!(concat!(env!("OUT_DIR"), "/abi_layout_asserts.rs"));
