//! Runs what clang-19 `-O2 -mcpu=v4` really emits for policy-style C (fixtures/clang_policy.c):
//! bpf-to-bpf calls, stack spills, sign-extending loads, signed division, atomics on the
//! context and on a global, a 64-bit constant and a byte swap. The test plays the loader's part
//! for the one relocation (the address of the global `total`).

use proptest::prelude::*;
use upsched_ebpf::insn::{Insn, decode, disassemble};
use upsched_ebpf::{Interpreter, Memory, NoExternals, Program, RegionId};

const TEXT: &[u8] = include_bytes!("fixtures/clang_policy.bin");
/// Slot of `r1 = total ll` (`R_BPF_64_64 total` in `llvm-objdump -dr`).
const TOTAL_RELOCATION_SLOT: usize = 70;
const CTX_SIZE: usize = 40;

#[derive(Clone, Copy, Debug)]
struct Ctx {
    a: u64,
    b: u64,
    c: i8,
    d: i16,
    e: i32,
    counter: u64,
    flags: u64,
}

impl Ctx {
    fn to_bytes(self) -> Vec<u8> {
        let mut bytes = vec![0; CTX_SIZE];
        bytes[0..8].copy_from_slice(&self.a.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.b.to_le_bytes());
        bytes[16] = self.c as u8;
        bytes[18..20].copy_from_slice(&self.d.to_le_bytes());
        bytes[20..24].copy_from_slice(&self.e.to_le_bytes());
        bytes[24..32].copy_from_slice(&self.counter.to_le_bytes());
        bytes[32..40].copy_from_slice(&self.flags.to_le_bytes());
        bytes
    }
}

/// The C program, written again in Rust: (return value, `acc` added to `total`).
fn expected(ctx: Ctx) -> (u32, u64) {
    let mix = |x: u64, y: u64| {
        (x ^ (y << 7))
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(x >> 13)
    };
    let buf: Vec<u64> = (0..8).map(|i| mix(ctx.a.wrapping_add(i), ctx.b)).collect();
    let acc = (0..8).fold(0u64, |acc, i| acc.wrapping_add(buf[(i * 3) & 7] >> i));
    let dividend = i64::from(ctx.c) * i64::from(ctx.d);
    let divisor = i64::from(ctx.e);
    let s = if divisor == 0 {
        0
    } else {
        dividend / divisor + dividend % divisor
    };
    let result = acc ^ s as u64 ^ ctx.flags ^ acc.swap_bytes();
    (result as u32, acc)
}

struct Instance {
    program: Program,
    memory: Memory,
    ctx: RegionId,
    bss: RegionId,
}

fn instantiate() -> Instance {
    let mut insns = decode(TEXT).unwrap();
    let mut memory = Memory::new();
    let ctx = memory.add_region("ctx", vec![0; CTX_SIZE], true).unwrap();
    let bss = memory.add_region(".bss", vec![0; 8], true).unwrap();
    relocate_wide_load(&mut insns, TOTAL_RELOCATION_SLOT, memory.region_base(bss));
    Instance {
        program: Program::new(insns).unwrap(),
        memory,
        ctx,
        bss,
    }
}

fn relocate_wide_load(insns: &mut [Insn], slot: usize, address: u64) {
    assert!(insns[slot].is_lddw());
    insns[slot].imm = address as u32 as i32;
    insns[slot + 1].imm = (address >> 32) as u32 as i32;
}

fn call(instance: &mut Instance, ctx: Ctx) -> u32 {
    instance
        .memory
        .region_mut(instance.ctx)
        .copy_from_slice(&ctx.to_bytes());
    let ctx_address = instance.memory.region_base(instance.ctx);
    let r0 = Interpreter::run(
        &instance.program,
        0,
        [ctx_address, 0, 0, 0, 0],
        &mut instance.memory,
        &mut NoExternals,
        10_000,
    )
    .unwrap();
    // The C function returns int: only w0 is defined.
    r0 as u32
}

fn read_u64(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap())
}

#[test]
fn disassembles_clang_output() {
    let insns = decode(TEXT).unwrap();
    assert_eq!(insns.len(), 100);
    let listing = disassemble(&insns);
    for line in [
        "5: call pc+75",
        "50: r2 = *(s8 *)(r8 + 16)",
        "51: r1 = *(s16 *)(r8 + 18)",
        "53: r2 = *(s32 *)(r8 + 20)",
        "56: lock *(u64 *)(r8 + 24) += r1",
        "69: r2 = atomic64_fetch_or((u64 *)(r8 + 32), r2)",
        "70: r1 = 0x0 ll",
        "75: r1 = bswap64 r1",
        "76: w1 ^= w0",
        "84: r2 = 0x9e3779b97f4a7c15 ll",
        "91: if r2 == 0x0 goto +7",
        "93: r3 s/= r2",
        "99: exit",
    ] {
        assert!(
            listing.lines().any(|listed| listed == line),
            "missing {line:?} in\n{listing}"
        );
    }
}

#[test]
fn runs_clang_output_and_keeps_globals_across_calls() {
    let mut instance = instantiate();
    let ctx = Ctx {
        a: 0x0123_4567_89ab_cdef,
        b: 42,
        c: -7,
        d: 300,
        e: -11,
        counter: 5,
        flags: 1,
    };
    let (result, acc) = expected(ctx);
    assert_eq!(call(&mut instance, ctx), result);
    let ctx_bytes = instance.memory.region(instance.ctx);
    assert_eq!(read_u64(ctx_bytes, 24), 6, "counter incremented");
    assert_eq!(read_u64(ctx_bytes, 32), 5, "flag 4 set");
    assert_eq!(read_u64(instance.memory.region(instance.bss), 0), acc);

    assert_eq!(call(&mut instance, ctx), result);
    assert_eq!(
        read_u64(instance.memory.region(instance.bss), 0),
        acc.wrapping_mul(2),
        "the global accumulates across calls"
    );
}

proptest! {
    #[test]
    fn clang_output_matches_the_c_semantics(
        a in any::<u64>(),
        b in any::<u64>(),
        c in any::<i8>(),
        d in any::<i16>(),
        e in any::<i32>(),
        flags in any::<u64>(),
    ) {
        let mut instance = instantiate();
        let ctx = Ctx { a, b, c, d, e, counter: 0, flags };
        prop_assert_eq!(call(&mut instance, ctx), expected(ctx).0);
    }
}
