//! Compiles the corpus. Unlike the example policies, the good and bad objects are built
//! without the forced ABI asserts: some of them are wrong on purpose. The misbehaving ones are
//! valid policies (they pass the ABI asserts) whose decisions the host must clamp or punish.
//! The kernel_refuses ones pass the ABI asserts and `upsched check` but not the kernel's verifier.

use std::path::PathBuf;
use upsched_build::abi_spec::AbiSpec;
use upsched_build::bpf::{BpfCompiler, BpfObject, embed_module};
use upsched_build::mechanism_spec::MechanismSpec;
use upsched_build::or_fail;

fn main() {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // The bad objects that name the host's DSQs include the mechanism header.
    let mechanism_path = upsched_build::mechanism_spec_path();
    println!("cargo:rerun-if-changed={}", mechanism_path.display());
    let mechanism = or_fail(MechanismSpec::load(&mechanism_path));
    or_fail(
        std::fs::write(out_dir.join("upsched_mechanism.h"), mechanism.c_header())
            .map_err(|e| e.to_string()),
    );
    let compiler = or_fail(BpfCompiler::new())
        .arg("-Wno-unused-variable")
        .arg(format!("-I{}", out_dir.display()));
    let mut module = String::new();
    for (kind, static_name) in [("good", "GOOD"), ("bad", "BAD")] {
        let dir = out_dir.join(kind);
        or_fail(std::fs::create_dir_all(&dir).map_err(|e| e.to_string()));
        let objects = or_fail(compiler.compile_dir(&PathBuf::from("bpf").join(kind), &dir));
        for object in &objects {
            or_fail(corrupt(object));
        }
        module.push_str(&embed_module(static_name, &objects));
    }

    let spec_path = upsched_build::abi_spec_path();
    println!("cargo:rerun-if-changed={}", spec_path.display());
    let spec = or_fail(AbiSpec::load(&spec_path));
    let asserts = out_dir.join("upsched_abi_asserts.h");
    or_fail(std::fs::write(&asserts, spec.c_layout_asserts()).map_err(|e| e.to_string()));
    let dir = out_dir.join("misbehaving");
    or_fail(std::fs::create_dir_all(&dir).map_err(|e| e.to_string()));
    let checked = or_fail(BpfCompiler::new()).arg(format!("-include{}", asserts.display()));
    let objects = or_fail(checked.compile_dir(&PathBuf::from("bpf/misbehaving"), &dir));
    module.push_str(&embed_module("MISBEHAVING", &objects));
    let dir = out_dir.join("kernel_refuses");
    or_fail(std::fs::create_dir_all(&dir).map_err(|e| e.to_string()));
    let objects = or_fail(checked.compile_dir(&PathBuf::from("bpf/kernel_refuses"), &dir));
    module.push_str(&embed_module("KERNEL_REFUSES", &objects));

    or_fail(std::fs::write(out_dir.join("corpus.rs"), module).map_err(|e| e.to_string()));
}

/// Applies the corruption that the bad object's header comment announces, in place.
fn corrupt(object: &BpfObject) -> Result<(), String> {
    let patch: fn(&mut [u8]) -> Result<(), String> = match object.name.as_str() {
        "symtab_entsize" => zero_symtab_entsize,
        "btf_typedef_loop" => make_typedef_refer_to_itself,
        _ => return Ok(()),
    };
    let mut bytes = std::fs::read(&object.path).map_err(|e| e.to_string())?;
    patch(&mut bytes).map_err(|e| format!("{}: {e}", object.name))?;
    std::fs::write(&object.path, bytes).map_err(|e| e.to_string())
}

fn u16_at(b: &[u8], at: usize) -> usize {
    u16::from_le_bytes([b[at], b[at + 1]]) as usize
}

fn u32_at(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
}

fn u64_at(b: &[u8], at: usize) -> usize {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize
}

/// Offsets of the ELF64 section headers with their names.
fn section_headers(b: &[u8]) -> Vec<(String, usize)> {
    let (shoff, shentsize, shnum, shstrndx) = (
        u64_at(b, 0x28),
        u16_at(b, 0x3a),
        u16_at(b, 0x3c),
        u16_at(b, 0x3e),
    );
    let names = u64_at(b, shoff + shstrndx * shentsize + 0x18);
    (0..shnum)
        .map(|i| {
            let header = shoff + i * shentsize;
            let name = &b[names + u32_at(b, header)..];
            let end = name.iter().position(|c| *c == 0).unwrap_or(0);
            (String::from_utf8_lossy(&name[..end]).into_owned(), header)
        })
        .collect()
}

fn zero_symtab_entsize(b: &mut [u8]) -> Result<(), String> {
    let (_, header) = section_headers(b)
        .into_iter()
        .find(|(name, _)| name == ".symtab")
        .ok_or("no .symtab")?;
    b[header + 0x38..header + 0x40].fill(0);
    Ok(())
}

/// Points the BTF typedef `upsched_loop_t` at its own type id.
fn make_typedef_refer_to_itself(b: &mut [u8]) -> Result<(), String> {
    const KIND_TYPEDEF: usize = 8;
    let (_, header) = section_headers(b)
        .into_iter()
        .find(|(name, _)| name == ".BTF")
        .ok_or("no .BTF")?;
    let btf = u64_at(b, header + 0x18);
    let hdr_len = u32_at(b, btf + 4);
    let types = btf + hdr_len + u32_at(b, btf + 8);
    let types_end = types + u32_at(b, btf + 12);
    let strings = btf + hdr_len + u32_at(b, btf + 16);
    let (mut at, mut id) = (types, 1);
    while at < types_end {
        let (name_off, info) = (u32_at(b, at), u32_at(b, at + 4));
        let (kind, vlen) = ((info >> 24) & 0x1f, info & 0xffff);
        let name = &b[strings + name_off..];
        if kind == KIND_TYPEDEF && name.starts_with(b"upsched_loop_t\0") {
            b[at + 8..at + 12].copy_from_slice(&(id as u32).to_le_bytes());
            return Ok(());
        }
        // Bytes that follow the 12-byte common part, by kind (see the kernel's btf.rst).
        at += 12
            + match kind {
                1 | 14 | 17 => 4,
                3 => 12,
                4 | 5 | 15 | 19 => 12 * vlen,
                6 | 13 => 8 * vlen,
                _ => 0,
            };
        id += 1;
    }
    Err("no typedef upsched_loop_t".into())
}
