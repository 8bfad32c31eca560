//! Generates the ABI constants, tables and layout asserts from abi.toml, and checks that the
//! C headers match the same spec (so a change on one side only fails this build): `upsched.h`
//! its layout and constants, `upsched_sdk.h` its kfunc prototypes and argument values.
//! Generates the mechanism module and `upsched_mechanism.h` from mechanism.toml, and compiles
//! the header's layout asserts with the BPF compiler.

use std::path::PathBuf;
use upsched_build::abi_spec::AbiSpec;
use upsched_build::bpf::BpfCompiler;
use upsched_build::mechanism_spec::MechanismSpec;
use upsched_build::or_fail;

fn main() {
    let spec_path = upsched_build::abi_spec_path();
    println!("cargo:rerun-if-changed={}", spec_path.display());
    let spec = or_fail(AbiSpec::load(&spec_path));
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    write(&out_dir.join("abi_tables.rs"), &spec.rust_tables());
    write(
        &out_dir.join("abi_layout_asserts.rs"),
        &spec.rust_layout_asserts("UpschedCtx"),
    );

    let c_check = out_dir.join("abi_layout_check.c");
    write(&c_check, &spec.c_layout_asserts());
    let sdk_check = out_dir.join("abi_sdk_check.c");
    write(&sdk_check, &spec.c_sdk_asserts());
    let compiler = or_fail(BpfCompiler::new());
    or_fail(compiler.compile(&c_check, &out_dir.join("abi_layout_check.o")));
    or_fail(compiler.compile(&sdk_check, &out_dir.join("abi_sdk_check.o")));

    let mechanism_path = upsched_build::mechanism_spec_path();
    println!("cargo:rerun-if-changed={}", mechanism_path.display());
    let mechanism = or_fail(MechanismSpec::load(&mechanism_path));
    write(&out_dir.join("mechanism.rs"), &mechanism.rust_module());
    write(&out_dir.join("upsched_mechanism.h"), &mechanism.c_header());
    let mechanism_check = out_dir.join("upsched_mechanism_check.c");
    write(&mechanism_check, "#include \"upsched_mechanism.h\"\n");
    or_fail(compiler.compile(&mechanism_check, &out_dir.join("upsched_mechanism_check.o")));
}

fn write(path: &std::path::Path, text: &str) {
    or_fail(
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display())),
    );
}
