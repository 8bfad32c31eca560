//! Compiles the host scheduler (`bpf/host.bpf.c`) and the benchmark's minimal scheduler
//! (`bpf/floor.bpf.c`) into BPF objects that the crate embeds (the test policies come from
//! `upsched-testdata`). The host needs no kernel headers: `bpf/kernel.h` declares
//! the kernel types it uses with CO-RE relocations, and libbpf's own headers come from the
//! vendored libbpf of libbpf-sys (`DEP_BPF_INCLUDE`).

use std::path::PathBuf;

use upsched_build::abi_spec::AbiSpec;
use upsched_build::bpf::BpfCompiler;
use upsched_build::or_fail;

fn main() {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let spec_path = upsched_build::abi_spec_path();
    println!("cargo:rerun-if-changed={}", spec_path.display());
    let spec = or_fail(AbiSpec::load(&spec_path));
    let asserts = out_dir.join("upsched_abi_asserts.h");
    or_fail(std::fs::write(&asserts, spec.c_layout_asserts()).map_err(|e| e.to_string()));

    let libbpf_include = std::env::var("DEP_BPF_INCLUDE")
        .expect("libbpf-sys exports its include directory as DEP_BPF_INCLUDE");
    println!("cargo:rerun-if-changed=bpf");

    let compiler = or_fail(BpfCompiler::new())
        .arg("-Ibpf")
        .arg(format!("-I{libbpf_include}"))
        .arg("-D__TARGET_ARCH_x86")
        // sched_ext's watchdog the host asks for: one home, upsched_abi::mechanism.
        .arg(format!(
            "-DUPSCHED_SCX_TIMEOUT_MS={}",
            upsched_abi::mechanism::SCX_TIMEOUT_NS / 1_000_000
        ))
        .arg(format!(
            "-DUPSCHED_LEAD_FLOOR_SLICES={}",
            upsched_abi::mechanism::LEAD_FLOOR_SLICES
        ))
        .arg(format!("-include{}", asserts.display()));
    for name in ["host", "floor"] {
        let object = out_dir.join(format!("{name}.bpf.o"));
        or_fail(compiler.compile(&PathBuf::from(format!("bpf/{name}.bpf.c")), &object));
    }
    println!("cargo:rerun-if-changed=bpf/kernel.h");
    println!("cargo:rerun-if-changed=bpf/host_intf.h");
}
