//! What the running kernel offers: sched_ext at all, its state, the scheduler in charge, and
//! the generation of the kfunc API.

use std::path::Path;

pub const SCHED_EXT_STATE: &str = "/sys/kernel/sched_ext/state";
pub const SCHED_EXT_ROOT_OPS: &str = "/sys/kernel/sched_ext/root/ops";
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Which names the sched_ext kfuncs have in this kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiGeneration {
    /// 6.13 and later: `scx_bpf_dsq_insert`, `scx_bpf_dsq_move_to_local`.
    DsqInsert,
    /// 6.12: `scx_bpf_dispatch`, `scx_bpf_consume` (the host is not built for these names).
    Dispatch,
    /// Neither name found (no BTF, or an unknown kernel).
    Unknown,
}

impl std::fmt::Display for ApiGeneration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ApiGeneration::DsqInsert => "6.13+ (scx_bpf_dsq_insert)",
            ApiGeneration::Dispatch => "6.12 (scx_bpf_dispatch)",
            ApiGeneration::Unknown => "unknown",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelSupport {
    /// /sys/kernel/sched_ext/state exists.
    pub sched_ext: bool,
    /// Its content: `disabled`, `enabling`, `enabled`, `disabling`.
    pub state: Option<String>,
    /// Name of the scheduler in charge, if one is.
    pub active_ops: Option<String>,
    pub api: ApiGeneration,
}

/// Looks at the running kernel. Never fails: what cannot be read is reported as absent.
pub fn detect() -> KernelSupport {
    detect_at(Path::new("/"))
}

/// `detect` with another root directory (for tests).
pub fn detect_at(root: &Path) -> KernelSupport {
    let read = |path: &str| {
        std::fs::read_to_string(root.join(path.trim_start_matches('/')))
            .ok()
            .map(|s| s.trim().to_string())
    };
    let state = read(SCHED_EXT_STATE);
    let active_ops = read(SCHED_EXT_ROOT_OPS).filter(|s| !s.is_empty());
    let api = std::fs::read(root.join(VMLINUX_BTF.trim_start_matches('/')))
        .map(|btf| api_generation(&btf))
        .unwrap_or(ApiGeneration::Unknown);
    KernelSupport {
        sched_ext: state.is_some(),
        state,
        active_ops,
        api,
    }
}

/// The API generation from the kernel's BTF: kfunc names are NUL-terminated strings in its
/// string section, so a byte search for the exact name is enough.
pub fn api_generation(btf: &[u8]) -> ApiGeneration {
    if contains_name(btf, b"scx_bpf_dsq_insert") {
        ApiGeneration::DsqInsert
    } else if contains_name(btf, b"scx_bpf_dispatch") {
        ApiGeneration::Dispatch
    } else {
        ApiGeneration::Unknown
    }
}

fn contains_name(haystack: &[u8], name: &[u8]) -> bool {
    let mut needle = Vec::with_capacity(name.len() + 2);
    needle.push(0);
    needle.extend_from_slice(name);
    needle.push(0);
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_generation_from_btf_strings() {
        assert_eq!(
            api_generation(b"\0foo\0scx_bpf_dsq_insert\0bar\0"),
            ApiGeneration::DsqInsert
        );
        assert_eq!(
            api_generation(b"\0scx_bpf_dispatch\0"),
            ApiGeneration::Dispatch
        );
        // A longer name that merely starts with the kfunc's is not the kfunc.
        assert_eq!(
            api_generation(b"\0scx_bpf_dsq_insert_vtime\0"),
            ApiGeneration::Unknown
        );
    }

    #[test]
    fn detect_reads_a_fake_sysfs() {
        let dir = std::env::temp_dir().join(format!("upsched-detect-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sys/kernel/sched_ext/root")).unwrap();
        std::fs::write(dir.join("sys/kernel/sched_ext/state"), "enabled\n").unwrap();
        std::fs::write(dir.join("sys/kernel/sched_ext/root/ops"), "simple\n").unwrap();
        let support = detect_at(&dir);
        assert!(support.sched_ext);
        assert_eq!(support.state.as_deref(), Some("enabled"));
        assert_eq!(support.active_ops.as_deref(), Some("simple"));
        assert_eq!(support.api, ApiGeneration::Unknown);
        std::fs::remove_dir_all(&dir).unwrap();

        let missing = detect_at(Path::new("/nonexistent-upsched-root"));
        assert!(!missing.sched_ext);
    }
}
