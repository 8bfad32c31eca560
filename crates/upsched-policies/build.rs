//! Compiles every example policy under bpf/ with the ABI layout asserts force-included, so a
//! policy is only ever built against a header that matches abi.toml.

use std::path::PathBuf;
use upsched_build::abi_spec::AbiSpec;
use upsched_build::bpf::{BpfCompiler, embed_module};
use upsched_build::or_fail;

fn main() {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let spec_path = upsched_build::abi_spec_path();
    println!("cargo:rerun-if-changed={}", spec_path.display());
    let spec = or_fail(AbiSpec::load(&spec_path));
    let asserts = out_dir.join("upsched_abi_asserts.h");
    or_fail(std::fs::write(&asserts, spec.c_layout_asserts()).map_err(|e| e.to_string()));

    let compiler = or_fail(BpfCompiler::new()).arg(format!("-include{}", asserts.display()));
    let objects = or_fail(compiler.compile_dir(&PathBuf::from("bpf"), &out_dir));
    or_fail(
        std::fs::write(
            out_dir.join("policies.rs"),
            embed_module("POLICIES", &objects),
        )
        .map_err(|e| e.to_string()),
    );
}
