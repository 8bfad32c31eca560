//! Compiles the corpus. Unlike the example policies, the good and bad objects are built
//! without the forced ABI asserts: some of them are wrong on purpose. The misbehaving ones are
//! valid policies (they pass the ABI asserts) whose decisions the host must clamp or punish.

use std::path::PathBuf;
use upsched_build::abi_spec::AbiSpec;
use upsched_build::bpf::{BpfCompiler, embed_module};
use upsched_build::or_fail;

fn main() {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let compiler = or_fail(BpfCompiler::new()).arg("-Wno-unused-variable");
    let mut module = String::new();
    for (kind, static_name) in [("good", "GOOD"), ("bad", "BAD")] {
        let dir = out_dir.join(kind);
        or_fail(std::fs::create_dir_all(&dir).map_err(|e| e.to_string()));
        let objects = or_fail(compiler.compile_dir(&PathBuf::from("bpf").join(kind), &dir));
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

    or_fail(std::fs::write(out_dir.join("corpus.rs"), module).map_err(|e| e.to_string()));
}
