//! The sched_ext kernel the VM tests boot: an override, the cache, or a fresh download of Debian
//! sid's cloud kernel.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::apt::{self, PrivateApt};
use crate::error::HarnessError;
use crate::tools::{find_tool, progress, run_checked};

/// Environment variable naming a bzImage to boot instead of the cached Debian kernel.
pub const KERNEL_OVERRIDE_ENV: &str = "UPSCHED_KERNEL";
/// The Debian suite that carries kernels with `CONFIG_SCHED_CLASS_EXT=y`.
pub const KERNEL_SUITE: &str = "sid";
/// Meta package whose dependencies name the current cloud kernel release.
pub const KERNEL_META_PACKAGE: &str = "linux-image-cloud-amd64";
/// The committed record of the kernel the project was last tested with.
pub const LOCK_FILE_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/kernel.lock.toml");

const SCHED_EXT_CONFIG_LINE: &str = "CONFIG_SCHED_CLASS_EXT=y";

/// What `kernel.json` in a cache directory records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelRecord {
    /// `uname -r` of the kernel, e.g. `7.2.13+deb14-cloud-amd64`.
    pub release: String,
    /// Debian package version, e.g. `7.2.13-1`.
    pub package_version: String,
    pub suite: String,
    /// Package that held the vmlinuz.
    pub vmlinuz_package: String,
    /// Package that held the kernel config.
    pub config_package: String,
    pub vmlinuz_sha256: String,
    pub sched_class_ext: bool,
    pub fetched_unix_time: u64,
}

/// The kernel the project was tested with (`kernel.lock.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelLock {
    pub release: String,
    pub package_version: String,
    pub vmlinuz_package: String,
    pub config_package: String,
    pub vmlinuz_sha256: String,
}

impl From<&KernelRecord> for KernelLock {
    fn from(record: &KernelRecord) -> Self {
        Self {
            release: record.release.clone(),
            package_version: record.package_version.clone(),
            vmlinuz_package: record.vmlinuz_package.clone(),
            config_package: record.config_package.clone(),
            vmlinuz_sha256: record.vmlinuz_sha256.clone(),
        }
    }
}

/// A kernel ready to boot.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub bzimage: PathBuf,
    /// Release string from the bzImage header (or the cache record).
    pub release: String,
    /// Cache directory holding config, vmlinux and vmlinux.h; `None` for an override kernel.
    pub cache_dir: Option<PathBuf>,
    pub record: Option<KernelRecord>,
}

/// Where kernels, vmlinux.h and VM logs are cached: `${XDG_CACHE_HOME:-$HOME/.cache}/upsched`.
pub fn cache_root() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir).join("upsched"));
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .context("neither XDG_CACHE_HOME nor HOME is set: cannot place the kernel cache")?;
    Ok(PathBuf::from(home).join(".cache/upsched"))
}

/// Directory of cached kernels, one sub-directory per release.
pub fn kernel_cache_dir() -> anyhow::Result<PathBuf> {
    Ok(cache_root()?.join("kernel"))
}

/// Reads the committed lock, if any. An empty or missing file means "no lock yet".
pub fn read_lock() -> anyhow::Result<Option<KernelLock>> {
    read_lock_from(Path::new(LOCK_FILE_PATH))
}

pub fn read_lock_from(path: &Path) -> anyhow::Result<Option<KernelLock>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    parse_lock(&text).with_context(|| format!("parsing {}", path.display()))
}

pub fn parse_lock(text: &str) -> anyhow::Result<Option<KernelLock>> {
    let without_comments: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    if without_comments.trim().is_empty() {
        return Ok(None);
    }
    Ok(Some(toml::from_str(text)?))
}

pub fn render_lock(lock: &KernelLock) -> anyhow::Result<String> {
    Ok(format!(
        "# The sched_ext kernel the upsched VM tests were last verified with.\n\
         # Written by `upsched-vmtest kernel --update-lock`; the harness warns when the kernel it\n\
         # boots differs from this one (Debian sid moves on) and goes on with the newer one.\n{}",
        toml::to_string(lock)?
    ))
}

pub fn write_lock(lock: &KernelLock) -> anyhow::Result<()> {
    std::fs::write(LOCK_FILE_PATH, render_lock(lock)?)
        .with_context(|| format!("writing {LOCK_FILE_PATH}"))
}

/// Whether a kernel config enables sched_ext.
pub fn config_has_sched_ext(config: &str) -> bool {
    config
        .lines()
        .any(|line| line.trim() == SCHED_EXT_CONFIG_LINE)
}

/// The kernel release string stored in a bzImage's setup header (`kernel_version` field), so an
/// override kernel can be named without booting it.
pub fn bzimage_release(image: &[u8]) -> Option<String> {
    // Boot protocol: "HdrS" at 0x202; a u16 at 0x20e points to a NUL-terminated version
    // string, relative to 0x200.
    if image.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let pointer = u16::from_le_bytes([*image.get(0x20e)?, *image.get(0x20f)?]) as usize;
    let start = pointer.checked_add(0x200)?;
    let bytes = image.get(start..)?;
    let end = bytes.iter().take(256).position(|&b| b == 0)?;
    let full = std::str::from_utf8(&bytes[..end]).ok()?;
    full.split_whitespace().next().map(str::to_string)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn read_record(dir: &Path) -> Option<KernelRecord> {
    let text = std::fs::read_to_string(dir.join("kernel.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn kernel_from_cache_dir(dir: &Path) -> Option<Kernel> {
    let record = read_record(dir)?;
    let bzimage = dir.join("vmlinuz");
    bzimage.is_file().then(|| Kernel {
        bzimage,
        release: record.release.clone(),
        cache_dir: Some(dir.to_path_buf()),
        record: Some(record),
    })
}

fn cached_kernels(cache: &Path) -> Vec<Kernel> {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return Vec::new();
    };
    let mut kernels: Vec<Kernel> = entries
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| kernel_from_cache_dir(&e.path()))
        .collect();
    kernels.sort_by_key(|k| {
        std::cmp::Reverse(k.record.as_ref().map(|r| r.fetched_unix_time).unwrap_or(0))
    });
    kernels
}

/// The `UPSCHED_KERNEL` override, if set.
pub fn override_kernel() -> Result<Option<Kernel>, HarnessError> {
    let Some(path) = std::env::var_os(KERNEL_OVERRIDE_ENV).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let path = PathBuf::from(path);
    if !path.is_file() {
        return Err(HarnessError::OverrideKernelMissing(path));
    }
    let release = std::fs::read(&path)
        .ok()
        .and_then(|image| bzimage_release(&image))
        .unwrap_or_else(|| "unknown (UPSCHED_KERNEL)".to_string());
    Ok(Some(Kernel {
        bzimage: path,
        release,
        cache_dir: None,
        record: None,
    }))
}

/// A kernel usable without network: the override, the locked release from the cache, or the
/// most recently fetched cached kernel. `None` if none is there.
pub fn locate_offline() -> anyhow::Result<Option<Kernel>> {
    if let Some(kernel) = override_kernel()? {
        return Ok(Some(kernel));
    }
    let cache = kernel_cache_dir()?;
    let lock = read_lock()?;
    if let Some(kernel) = lock
        .as_ref()
        .and_then(|lock| kernel_from_cache_dir(&cache.join(&lock.release)))
    {
        return Ok(Some(kernel));
    }
    let newest = cached_kernels(&cache).into_iter().next();
    if let (Some(kernel), Some(lock)) = (&newest, &lock) {
        progress(format!(
            "warning: using cached kernel {} which differs from the locked {} ({})",
            kernel.release, lock.release, LOCK_FILE_PATH
        ));
    }
    Ok(newest)
}

/// The kernel to boot: offline if possible, otherwise downloaded from Debian sid.
pub fn obtain() -> anyhow::Result<Kernel> {
    if let Some(kernel) = locate_offline()? {
        return Ok(kernel);
    }
    fetch_from_sid()
}

/// Downloads the current sid cloud kernel into the cache (re-using it if that release is already
/// cached), checks sched_ext, compares with the lock and writes the lock if there is none yet.
pub fn fetch_from_sid() -> anyhow::Result<Kernel> {
    let cache = kernel_cache_dir()?;
    std::fs::create_dir_all(&cache)
        .with_context(|| format!("creating the kernel cache {}", cache.display()))?;
    let mirror = apt::system_debian_mirror()?;
    let staging = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(&cache)
        .context("creating a staging directory in the kernel cache")?;
    let apt = PrivateApt::new(&staging.path().join("apt"), &mirror, KERNEL_SUITE)?;
    progress(format!(
        "updating the package index of {} {KERNEL_SUITE} (private apt state, system sources untouched)",
        mirror.uri
    ));
    apt.update()?;

    let meta = apt.show(KERNEL_META_PACKAGE)?;
    let package_version = apt::control_field(&meta, "Version")
        .context("no Version in the record of linux-image-cloud-amd64")?
        .to_string();
    let image_package = apt::control_field(&meta, "Depends")
        .map(apt::dependency_names)
        .unwrap_or_default()
        .into_iter()
        .find(|name| name.starts_with("linux-image-") && name != KERNEL_META_PACKAGE)
        .with_context(|| {
            format!("{KERNEL_META_PACKAGE} does not depend on a linux-image-<release> package")
        })?;
    let release = image_package
        .strip_prefix("linux-image-")
        .unwrap_or(&image_package)
        .to_string();
    progress(format!(
        "{KERNEL_SUITE} offers kernel {release} (package version {package_version})"
    ));

    let final_dir = cache.join(&release);
    if let Some(kernel) = kernel_from_cache_dir(&final_dir) {
        progress(format!(
            "kernel {release} is already cached in {}",
            final_dir.display()
        ));
        compare_with_lock(kernel.record.as_ref())?;
        return Ok(kernel);
    }

    // Since Debian's 2025 kernel packaging the image package is a small meta package and the
    // files live in dependencies named after the release (linux-binary-*, linux-base-*); older
    // releases keep them in linux-image-* itself. Download both kinds, skip the large modules.
    let image_record = apt.show(&image_package)?;
    let mut packages = vec![image_package.clone()];
    packages.extend(
        apt::control_field(&image_record, "Depends")
            .map(apt::dependency_names)
            .unwrap_or_default()
            .into_iter()
            .filter(|name| name.ends_with(&release) && !name.starts_with("linux-modules-")),
    );
    let downloads = staging.path().join("debs");
    std::fs::create_dir_all(&downloads)?;
    progress(format!("downloading {}", packages.join(", ")));
    let debs = apt.download(&packages, &downloads)?;

    let dpkg_deb = find_tool("dpkg-deb", "apt-get install dpkg")?;
    let staged_kernel = staging.path().join("kernel");
    std::fs::create_dir_all(&staged_kernel)?;
    let mut vmlinuz_package = None;
    let mut config_package = None;
    for (package, deb) in packages.iter().zip(&debs) {
        let unpacked = staging.path().join("unpacked").join(package);
        std::fs::create_dir_all(&unpacked)?;
        run_checked(Command::new(&dpkg_deb).arg("-x").arg(deb).arg(&unpacked))?;
        for (names, target, found_in) in [
            (
                ["vmlinuz", "boot/vmlinuz-"],
                "vmlinuz",
                &mut vmlinuz_package,
            ),
            (["config", "boot/config-"], "config", &mut config_package),
        ] {
            let candidates = [
                unpacked.join(format!("usr/lib/modules/{release}/{}", names[0])),
                unpacked.join(format!("{}{release}", names[1])),
            ];
            if let Some(source) = candidates.iter().find(|p| p.is_file()) {
                std::fs::copy(source, staged_kernel.join(target))?;
                *found_in = Some(package.clone());
            }
        }
    }
    let vmlinuz_package = vmlinuz_package
        .with_context(|| format!("none of {} contains a vmlinuz", packages.join(", ")))?;
    let config_package = config_package
        .with_context(|| format!("none of {} contains the kernel config", packages.join(", ")))?;

    let config_path = staged_kernel.join("config");
    let config = std::fs::read_to_string(&config_path)?;
    if !config_has_sched_ext(&config) {
        return Err(HarnessError::NoSchedExt {
            release,
            config_package,
        }
        .into());
    }
    let vmlinuz = std::fs::read(staged_kernel.join("vmlinuz"))?;
    let record = KernelRecord {
        release: release.clone(),
        package_version,
        suite: KERNEL_SUITE.to_string(),
        vmlinuz_package,
        config_package,
        vmlinuz_sha256: sha256_hex(&vmlinuz),
        sched_class_ext: true,
        fetched_unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    std::fs::write(
        staged_kernel.join("kernel.json"),
        serde_json::to_string_pretty(&record)? + "\n",
    )?;
    // Rename last so an interrupted fetch never leaves a half-filled cache entry.
    std::fs::rename(&staged_kernel, &final_dir)
        .with_context(|| format!("moving the kernel into {}", final_dir.display()))?;
    progress(format!(
        "cached kernel {release} in {} (vmlinuz sha256 {})",
        final_dir.display(),
        record.vmlinuz_sha256
    ));
    compare_with_lock(Some(&record))?;
    kernel_from_cache_dir(&final_dir).context("the kernel cache entry just written is unreadable")
}

/// Warns when the kernel differs from the lock; writes the lock when there is none yet.
fn compare_with_lock(record: Option<&KernelRecord>) -> anyhow::Result<()> {
    let Some(record) = record else { return Ok(()) };
    match read_lock()? {
        None => {
            write_lock(&KernelLock::from(record))?;
            progress(format!(
                "recorded kernel {} in {LOCK_FILE_PATH}",
                record.release
            ));
        }
        Some(lock) if lock.release != record.release => progress(format!(
            "warning: kernel {} differs from the tested {} in {LOCK_FILE_PATH}; continuing \
             (run `upsched-vmtest kernel --update-lock` once it passes)",
            record.release, lock.release
        )),
        Some(lock) if lock.vmlinuz_sha256 != record.vmlinuz_sha256 => anyhow::bail!(
            "kernel {} has vmlinuz sha256 {} but {LOCK_FILE_PATH} records {}: the same release \
             with other bytes; delete the cache entry and fetch again",
            record.release,
            record.vmlinuz_sha256,
            lock.vmlinuz_sha256
        ),
        Some(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sched_ext_config_detection() {
        assert!(config_has_sched_ext(
            "CONFIG_BPF=y\nCONFIG_SCHED_CLASS_EXT=y\n"
        ));
        assert!(!config_has_sched_ext(
            "# CONFIG_SCHED_CLASS_EXT is not set\n"
        ));
        assert!(!config_has_sched_ext("CONFIG_SCHED_CLASS_EXT=m\n"));
    }

    #[test]
    fn bzimage_release_from_header() {
        let mut image = vec![0u8; 0x400];
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes());
        let version = b"7.2.13+deb14-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP\0";
        image[0x300..0x300 + version.len()].copy_from_slice(version);
        assert_eq!(
            bzimage_release(&image).as_deref(),
            Some("7.2.13+deb14-cloud-amd64")
        );
        assert_eq!(bzimage_release(&image[..0x250]), None);
        assert_eq!(bzimage_release(b"not a kernel"), None);
    }

    #[test]
    fn lock_round_trip_and_empty_lock() {
        let lock = KernelLock {
            release: "7.2.13+deb14-cloud-amd64".into(),
            package_version: "7.2.13-1".into(),
            vmlinuz_package: "linux-binary-7.2.13+deb14-cloud-amd64".into(),
            config_package: "linux-base-7.2.13+deb14-cloud-amd64".into(),
            vmlinuz_sha256: "ab".repeat(32),
        };
        let text = render_lock(&lock).unwrap();
        assert_eq!(parse_lock(&text).unwrap(), Some(lock));
        assert_eq!(parse_lock("# nothing yet\n\n").unwrap(), None);
        assert!(parse_lock("release = 3").is_err());
    }

    #[test]
    fn committed_lock_parses() {
        // The committed lock must stay readable by the harness.
        read_lock().unwrap();
    }

    #[test]
    fn sha256_of_empty_input() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
