//! Compiles the corpus. Unlike the example policies, these are built without the forced ABI
//! asserts: some of them are wrong on purpose.

use std::path::PathBuf;
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
    or_fail(std::fs::write(out_dir.join("corpus.rs"), module).map_err(|e| e.to_string()));
}
