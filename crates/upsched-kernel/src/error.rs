//! Errors of the kernel backend, worded for the person who asked.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum HostError {
    #[error(
        "this kernel has no sched_ext (no /sys/kernel/sched_ext/state): upsched needs a kernel \
         built with CONFIG_SCHED_CLASS_EXT=y (Linux 6.12 or later)"
    )]
    NoSchedExt,

    #[error(
        "this kernel's sched_ext API is {0}; the host scheduler is built for the 6.13+ names \
         (scx_bpf_dsq_insert...)"
    )]
    UnsupportedApi(crate::detect::ApiGeneration),

    #[error(
        "another sched_ext scheduler is active ({0}); stop it first (its state is in \
         /sys/kernel/sched_ext/state)"
    )]
    OtherSchedulerActive(String),

    #[error(
        "permission denied while {0}: loading a scheduler needs root, or CAP_BPF and \
         CAP_PERFMON (and CAP_SYS_ADMIN to attach policies)"
    )]
    Permission(String),

    #[error("the kernel refused the host scheduler while {action}: {message}{}", log_suffix(.log))]
    HostLoad {
        action: String,
        message: String,
        log: String,
    },

    #[error("the host scheduler was enabled but the kernel stopped it: {0}")]
    HostExited(String),

    #[error("the policy was refused by `upsched check`:\n{}", .0.join("\n"))]
    PolicyRejected(Vec<String>),

    #[error("libbpf could not open the policy object (the running scheduler is unchanged): {message}{}", log_suffix(.log))]
    PolicyOpen { message: String, log: String },

    /// libbpf refused the object while preparing it for the kernel (relocations, BTF), before
    /// the kernel verifier saw any program.
    #[error("libbpf could not prepare the policy for the kernel (the running scheduler is unchanged): {message}{}", log_suffix(.log))]
    PolicyPrepare { message: String, log: String },

    #[error("the kernel verifier rejected the policy (the running scheduler is unchanged): {message}{}", log_suffix(.log))]
    PolicyVerifier { message: String, log: String },

    #[error("attaching hook {hook} of the policy failed (nothing was attached): {message}")]
    PolicyAttach { hook: String, message: String },

    #[error("no free tenant slot: all {0} slots are in use")]
    NoFreeSlot(usize),

    #[error("bad tenant configuration: {0}")]
    BadTenantConfig(String),

    #[error("bad host configuration (nothing was loaded): {0}")]
    BadHostConfig(String),

    #[error("cgroup {path}: {message}")]
    Cgroup { path: String, message: String },

    #[error("unknown tenant (already detached or ejected)")]
    UnknownTenant,

    #[error("{action}: {message}")]
    Map { action: String, message: String },

    #[error("pin {path}: {message}")]
    Pin { path: String, message: String },

    /// A pinned host and the records of the process adopting it disagree.
    #[error("the pinned host and the records disagree (nothing was changed): {0}")]
    Adopt(String),
}

fn log_suffix(log: &str) -> String {
    if log.trim().is_empty() {
        String::new()
    } else {
        format!("\n--- libbpf / kernel log ---\n{}", log.trim_end())
    }
}

/// The step of loading a policy that refused it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyLayer {
    /// `upsched check` (our admission rules).
    Check,
    /// libbpf opening the ELF object.
    LibbpfOpen,
    /// libbpf preparing the loaded object (relocations, BTF) before the kernel verifier.
    LibbpfPrepare,
    /// The kernel verifier.
    KernelVerifier,
    /// Attaching the loaded programs onto the host's stubs.
    Attach,
}

impl HostError {
    /// The verifier log carried by the error, if any.
    pub fn verifier_log(&self) -> Option<&str> {
        match self {
            HostError::HostLoad { log, .. }
            | HostError::PolicyOpen { log, .. }
            | HostError::PolicyPrepare { log, .. }
            | HostError::PolicyVerifier { log, .. } => Some(log),
            _ => None,
        }
    }

    /// Which step refused a policy, when this error is a policy's refusal.
    pub fn policy_layer(&self) -> Option<PolicyLayer> {
        match self {
            HostError::PolicyRejected(_) => Some(PolicyLayer::Check),
            HostError::PolicyOpen { .. } => Some(PolicyLayer::LibbpfOpen),
            HostError::PolicyPrepare { .. } => Some(PolicyLayer::LibbpfPrepare),
            HostError::PolicyVerifier { .. } => Some(PolicyLayer::KernelVerifier),
            HostError::PolicyAttach { .. } => Some(PolicyLayer::Attach),
            _ => None,
        }
    }
}

/// Whether a libbpf error stands for EPERM/EACCES.
pub(crate) fn is_permission(error: &libbpf_rs::Error) -> bool {
    matches!(error.kind(), libbpf_rs::ErrorKind::PermissionDenied)
}
