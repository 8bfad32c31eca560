//! The kernel path of upsched: the sched_ext host scheduler (`bpf/host.bpf.c`), its loader, and
//! tenant policies attached onto its slots with freplace.
//!
//! - [`detect`]: does the running kernel have sched_ext, which API generation, who is in charge.
//! - [`Host`]: load and attach the host scheduler; [`Host::attach`] a policy object onto a free
//!   tenant slot, bound to a cgroup, at a chain level with a weight; [`Host::detach`];
//!   [`Host::stats`]; ejections by the host's watchdog ([`Host::poll_ejections`]); a host
//!   pinned in bpffs to outlive its loader ([`Host::load_pinned`], [`Host::adopt`],
//!   [`host::unload_pinned`]).
//! - [`join_cgroup_before_exec`]: start workloads already inside a tenant's cgroup.
//! - [`intf`]: the map layouts shared with the BPF side.
//!
//! The mechanism's exact semantics are in `docs/mechanism.md`.

pub mod child;
pub mod detect;
pub mod error;
pub mod host;
pub mod intf;
pub mod signals;

pub use child::{ChildSetup, join_cgroup_before_exec};
pub use error::{HostError, PolicyLayer};
pub use host::{
    ClassStats, Ejection, ExitInfo, HOST_OBJECT, Host, HostConfig, HostStats, ProgramStats,
    TenantConfig, TenantHandle, TenantInfo, libbpf_open_verdict, run_notify, sched_ext_state,
    wait_for_sched_ext_state,
};
