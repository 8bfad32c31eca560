//! Building static Rust binaries for the guest. The initramfs has no shared libraries, and a
//! binary linked with `-C target-feature=+crt-static` needs none.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::tools::{progress, run_checked};

/// Environment variable naming a prebuilt guest probe, skipping the cargo build.
pub const GUEST_PROBE_ENV: &str = "UPSCHED_GUEST_PROBE";
pub const GUEST_PROBE_BIN: &str = "upsched-guest-probe";
const TARGET_TRIPLE: &str = "x86_64-unknown-linux-gnu";
const PT_INTERP: u32 = 3;

/// The workspace this crate was built from.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Static guest binaries get their own target directory: other flags than the host build (so
/// the two do not evict each other's artifacts) and another cargo lock (so building from inside
/// `cargo test` does not wait on the lock the test run holds).
pub fn guest_target_dir() -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    base.join("guest-static")
}

/// Builds a binary of a workspace package statically for the guest and returns its path.
pub fn build_static_binary(package: &str, binary: &str) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = guest_target_dir();
    progress(format!(
        "building static guest binary {binary} (cargo, target dir {})",
        target_dir.display()
    ));
    run_checked(
        Command::new(cargo)
            // The dev profile: these binaries check facts, they are not measured, and it builds faster.
            .args(["build", "--package", package, "--bin", binary])
            // An explicit --target keeps RUSTFLAGS away from build scripts and proc macros.
            .args(["--target", TARGET_TRIPLE])
            .arg("--manifest-path")
            .arg(workspace_root().join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target_dir)
            // Without debug info the probe shrinks from 24 MB to under 2 MB, which saves about
            // 1.5 s of initramfs unpacking per boot under emulation. Symbols stay for backtraces.
            .env("CARGO_PROFILE_DEV_DEBUG", "0")
            .env("CARGO_PROFILE_DEV_STRIP", "debuginfo")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env("RUSTFLAGS", "-C target-feature=+crt-static"),
    )
    .with_context(|| format!("building the static guest binary {binary}"))?;
    let path = target_dir.join(TARGET_TRIPLE).join("debug").join(binary);
    ensure_static(&path)?;
    Ok(path)
}

/// The guest probe: `UPSCHED_GUEST_PROBE` if set, otherwise built from this crate.
pub fn guest_probe() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(GUEST_PROBE_ENV).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        ensure_static(&path)?;
        return Ok(path);
    }
    build_static_binary(env!("CARGO_PKG_NAME"), GUEST_PROBE_BIN)
}

/// Refuses a dynamically linked binary (one with a PT_INTERP program header): it would fail in
/// the guest with a confusing "not found".
pub fn ensure_static(path: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    match elf_has_interpreter(&bytes) {
        Some(false) => Ok(()),
        Some(true) => anyhow::bail!(
            "{} is dynamically linked; guest binaries must be static \
             (RUSTFLAGS='-C target-feature=+crt-static' cargo build --target {TARGET_TRIPLE})",
            path.display()
        ),
        None => anyhow::bail!("{} is not a 64-bit little-endian ELF file", path.display()),
    }
}

/// Whether a 64-bit little-endian ELF image asks for a dynamic loader; `None` if not such an ELF.
pub fn elf_has_interpreter(elf: &[u8]) -> Option<bool> {
    if elf.get(0..4)? != b"\x7fELF" || *elf.get(4)? != 2 || *elf.get(5)? != 1 {
        return None;
    }
    let read_u16 = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let program_headers = u64::from_le_bytes(elf.get(0x20..0x28)?.try_into().ok()?) as usize;
    let entry_size = read_u16(0x36)? as usize;
    let entry_count = read_u16(0x38)? as usize;
    for index in 0..entry_count {
        let at = program_headers.checked_add(index.checked_mul(entry_size)?)?;
        let kind = u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?);
        if kind == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf_with_program_headers(kinds: &[u32]) -> Vec<u8> {
        let mut elf = vec![0u8; 64 + kinds.len() * 56];
        elf[0..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&(kinds.len() as u16).to_le_bytes());
        for (i, kind) in kinds.iter().enumerate() {
            elf[64 + i * 56..68 + i * 56].copy_from_slice(&kind.to_le_bytes());
        }
        elf
    }

    #[test]
    fn interpreter_detection() {
        assert_eq!(
            elf_has_interpreter(&elf_with_program_headers(&[6, 3, 1])),
            Some(true)
        );
        assert_eq!(
            elf_has_interpreter(&elf_with_program_headers(&[1, 1])),
            Some(false)
        );
        assert_eq!(elf_has_interpreter(b"#!/bin/sh\n"), None);
        let mut truncated = elf_with_program_headers(&[1, 1]);
        truncated.truncate(80);
        assert_eq!(elf_has_interpreter(&truncated), None);
    }

    #[test]
    fn host_busybox_is_static() {
        if Path::new("/bin/busybox").is_file() {
            ensure_static(Path::new("/bin/busybox")).unwrap();
        }
    }
}
