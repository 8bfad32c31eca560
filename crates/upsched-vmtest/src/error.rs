//! Errors a user of the harness is expected to act on. Everything else travels as
//! `anyhow::Error` with context.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("{tool} not found: {install_hint}")]
    MissingTool { tool: String, install_hint: String },

    #[error(
        "no Debian archive found in this machine's apt configuration (/etc/apt/sources.list, \
         /etc/apt/sources.list.d/): expected a `deb` source with component `main` for a release \
         suite such as bookworm. Add one, or set UPSCHED_DEBIAN_MIRROR to a Debian mirror URI"
    )]
    NoDebianMirror,

    #[error(
        "kernel {release} cannot run upsched: its config (from package {config_package}) does not have \
         CONFIG_SCHED_CLASS_EXT=y (sched_ext). Use a kernel built with sched_ext, e.g. Debian \
         sid's linux-image-cloud-amd64, or point UPSCHED_KERNEL at such a bzImage"
    )]
    NoSchedExt {
        release: String,
        config_package: String,
    },

    #[error("UPSCHED_KERNEL={0} does not exist or is not a file")]
    OverrideKernelMissing(PathBuf),
}
