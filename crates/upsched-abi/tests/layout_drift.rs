//! Changing the context on one side only must fail the build: these tests mutate a copy of the
//! C header or of the Rust mirror and compile it against the asserts generated from abi.toml.

use std::path::{Path, PathBuf};
use std::process::Command;

use upsched_build::abi_spec::AbiSpec;

fn spec() -> AbiSpec {
    AbiSpec::load(&upsched_build::abi_spec_path()).expect("abi.toml is valid")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("upsched-drift-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn clang() -> String {
    std::env::var("UPSCHED_CLANG").unwrap_or_else(|_| "clang-19".into())
}

/// Compiles the generated C asserts against `header`; returns clang's stderr on failure.
fn compile_c(dir: &Path, header: &str) -> Result<(), String> {
    std::fs::write(dir.join("upsched.h"), header).unwrap();
    syntax_check(dir, &spec().c_layout_asserts())
}

/// Checks the C source `check` with the headers in `dir`; returns clang's stderr on failure.
fn syntax_check(dir: &Path, check: &str) -> Result<(), String> {
    std::fs::write(dir.join("check.c"), check).unwrap();
    let out = Command::new(clang())
        .args(["-target", "bpf", "-fsyntax-only", "-I"])
        .arg(dir)
        .arg(dir.join("check.c"))
        .output()
        .expect("clang runs");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into())
    }
}

/// Compiles the Rust mirror `ctx_source` with the generated asserts; returns rustc's stderr on
/// failure.
fn compile_rust(dir: &Path, ctx_source: &str) -> Result<(), String> {
    let source = ctx_source.replace("crate::NR_HINTS as usize", "8").replace(
        r#"include!(concat!(env!("OUT_DIR"), "/abi_layout_asserts.rs"));"#,
        &spec().rust_layout_asserts("UpschedCtx"),
    );
    let path = dir.join("ctx.rs");
    std::fs::write(&path, format!("#![allow(dead_code)]\n{source}")).unwrap();
    let out = Command::new("rustc")
        .args([
            "--edition",
            "2024",
            "--crate-type",
            "lib",
            "--emit",
            "metadata",
            "-o",
        ])
        .arg(dir.join("ctx.rmeta"))
        .arg(&path)
        .output()
        .expect("rustc runs");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into())
    }
}

fn header() -> String {
    std::fs::read_to_string(upsched_abi::include_dir().join("upsched.h")).unwrap()
}

fn rust_mirror() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ctx.rs")).unwrap()
}

#[test]
fn unchanged_sides_compile() {
    compile_c(&scratch("c-ok"), &header()).unwrap();
    compile_rust(&scratch("rs-ok"), &rust_mirror()).unwrap();
}

#[test]
fn c_header_changed_alone_fails() {
    let cases = [
        (
            "upsched_u32 cpu;",
            "unsigned short cpu;",
            "cpu: size differs",
        ),
        (
            "upsched_s32 nice;",
            "upsched_u32 nice;",
            "nice: signedness differs",
        ),
        (
            "#define UPSCHED_VERDICT_PARK 1",
            "#define UPSCHED_VERDICT_PARK 3",
            "UPSCHED_VERDICT_PARK differs",
        ),
    ];
    for (from, to, message) in cases {
        let mutated = header().replacen(from, to, 1);
        assert_ne!(mutated, header(), "{from} not found in upsched.h");
        let error = compile_c(&scratch("c-bad"), &mutated).expect_err(from);
        assert!(error.contains(message), "{from}: {error}");
    }
    // Swapping two fields of equal size moves their offsets.
    let swapped = header().replacen(
        "upsched_u32 pid;         /* kernel task id (thread id) */\n\tupsched_u32 tgid;",
        "upsched_u32 tgid;\n\tupsched_u32 pid;",
        1,
    );
    assert_ne!(swapped, header());
    let error = compile_c(&scratch("c-swap"), &swapped).expect_err("swap");
    assert!(error.contains("pid: offset differs"), "{error}");
}

#[test]
fn rust_mirror_changed_alone_fails() {
    let cases = [
        (
            "pub nice: i32,",
            "pub nice: u32,",
            "UpschedCtx.nice: type differs",
        ),
        (
            "pub cpu: u32,",
            "pub cpu: u16,",
            "UpschedCtx.cpu: type differs",
        ),
        (
            "pub key: u64,\n    pub slice_ns: u64,",
            "pub slice_ns: u64,\n    pub key: u64,",
            "UpschedCtx.key: offset differs",
        ),
    ];
    for (from, to, message) in cases {
        let mutated = rust_mirror().replacen(from, to, 1);
        assert_ne!(mutated, rust_mirror(), "{from} not found in ctx.rs");
        let error = compile_rust(&scratch("rs-bad"), &mutated).expect_err(from);
        assert!(error.contains(message), "{from}: {error}");
    }
}

/// The SDK's checks against `sdk` (with the real `upsched.h`); clang's stderr on failure.
fn compile_sdk(dir: &Path, sdk: &str) -> Result<(), String> {
    std::fs::write(dir.join("upsched.h"), header()).unwrap();
    std::fs::write(dir.join("upsched_sdk.h"), sdk).unwrap();
    syntax_check(dir, &spec().c_sdk_asserts())
}

#[test]
fn sdk_without_a_hook_macro_fails() {
    let sdk = std::fs::read_to_string(upsched_abi::include_dir().join("upsched_sdk.h")).unwrap();
    compile_sdk(&scratch("sdk-ok"), &sdk).unwrap();
    let mutated = sdk.replacen("#define UPSCHED_TICK(ctx) UPSCHED_HOOK(tick, ctx)\n", "", 1);
    assert_ne!(mutated, sdk, "UPSCHED_TICK not found in upsched_sdk.h");
    let error = compile_sdk(&scratch("sdk-bad"), &mutated).expect_err("no UPSCHED_TICK");
    assert!(
        error.contains("upsched_sdk.h has no UPSCHED_TICK for hook tick"),
        "{error}"
    );
}
