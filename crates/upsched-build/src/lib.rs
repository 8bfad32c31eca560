//! Build-time support shared by the crates' build scripts.
//!
//! - [`abi_spec`]: the model of `crates/upsched-abi/abi.toml` (the single source of truth of the
//!   policy ABI) and the generators that turn it into Rust constants, Rust layout asserts and C
//!   layout asserts.
//! - [`mechanism_spec`]: the model of `crates/upsched-abi/mechanism.toml` (the host mechanism's
//!   constants, map layouts and parameter bounds) and the generators of its Rust module and C
//!   header.
//! - [`bpf`]: compiles `*.bpf.c` sources with clang (`-target bpf`, BTF on) for the crates that
//!   embed BPF objects.

pub mod abi_spec;
pub mod bpf;
pub mod mechanism_spec;

use std::path::{Path, PathBuf};

/// Directory of the public C headers (`upsched.h`, `upsched_sdk.h`).
pub fn sdk_include_dir() -> PathBuf {
    abi_crate_dir().join("include")
}

/// Path of the ABI spec, `abi.toml`.
pub fn abi_spec_path() -> PathBuf {
    abi_crate_dir().join("abi.toml")
}

/// Path of the mechanism spec, `mechanism.toml`.
pub fn mechanism_spec_path() -> PathBuf {
    abi_crate_dir().join("mechanism.toml")
}

fn abi_crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../upsched-abi")
}

/// Reads a TOML spec and runs its own validation; every error names the file.
fn load_spec<T: serde::de::DeserializeOwned>(
    path: &Path,
    validate: impl FnOnce(&T) -> Result<(), String>,
) -> Result<T, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let spec: T = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    validate(&spec).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(spec)
}

/// Turns an error into a build failure that prints the message (for build scripts).
pub fn or_fail<T>(result: Result<T, String>) -> T {
    result.unwrap_or_else(|message| {
        eprintln!("error: {message}");
        std::process::exit(1)
    })
}
