//! The kernel backend: the host scheduler and the tenants the daemon attached to it.
//!
//! A load is judged in two steps. [`LoadRequest::admit`] runs without the backend's lock: the
//! policy's admission (`Host::admit`, the checks of `upsched check`, once), the cgroup opened
//! and checked to be a cgroup2 directory, the tenant parameters. [`Tenants::load`] then, under
//! the lock, compares all of it with the caller's grants (so that two loads cannot both take a
//! user's last tenant), loads the host scheduler if it does not run yet, attaches, and records
//! the tenant in the state directory. Every refusal happens before the kernel is asked; a
//! refusal or failure changes nothing, in the kernel or in the records.
//!
//! The host and the tenants' links are pinned, so that they outlive the daemon: a daemon that
//! starts finds them and adopts them ([`Tenants::start`]), and [`unload_all`] ends them.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;
use upsched_kernel::HostError;
use upsched_kernel::host::{
    ExpectedTenant, Host, HostConfig, TenantConfig, TenantHandle, cgroup_identity,
    cgroup2_mount_of, is_pinned, unload_pinned,
};
use upsched_policy::AdmittedPolicy;

use crate::grants::{Grants, TenantAsk, TenantBounds};
use crate::peer::{Peer, process_uid};
use crate::protocol::{
    ErrorKind, ErrorReply, HintMapLayout, HintSlot, LoadArgs, SetHintsArgs, TenantStats,
    TenantView, ThreadArgs,
};
use crate::scope::{ResolvedCgroup, ScopeError, cgroup_within, process_cgroup};
use crate::state::{StateDir, StateError, StoredTenant, boot_id};

/// The longest tenant name.
const MAX_NAME_LEN: usize = 64;

/// A load request that passed every check that needs neither the grants nor the kernel.
pub struct LoadRequest {
    policy: AdmittedPolicy,
    name: String,
    cgroup: ResolvedCgroup,
    config: TenantConfig,
}

fn rejected(message: impl Into<String>) -> ErrorReply {
    ErrorReply::new(ErrorKind::Rejected, message)
}

fn not_permitted(message: impl Into<String>) -> ErrorReply {
    ErrorReply::new(ErrorKind::NotPermitted, message)
}

/// A scope error as the client hears it: a cgroup that cannot be used is `rejected`, one the
/// caller may not use is `not_permitted`.
fn scope_refusal(error: ScopeError) -> ErrorReply {
    match error {
        ScopeError::OutsideScopes { .. }
        | ScopeError::NotOwner { .. }
        | ScopeError::ParentComponent(_)
        | ScopeError::Moved { .. } => not_permitted(error.to_string()),
        _ => rejected(error.to_string()),
    }
}

impl LoadRequest {
    /// Admits the policy and opens the cgroup; the policy hash comes back even on refusal, for
    /// the audit log.
    pub fn admit(args: &LoadArgs) -> Result<LoadRequest, ErrorReply> {
        let policy = Host::admit(&args.policy).map_err(|e| rejected(e.to_string()))?;
        let name = match &args.name {
            Some(name) => name.clone(),
            None if policy.name().is_empty() => {
                return Err(rejected(
                    "the policy declares no name (UPSCHED_POLICY); give the tenant one with --name",
                ));
            }
            None => policy.name().to_string(),
        };
        check_name(&name)?;
        let cgroup =
            ResolvedCgroup::open(std::path::Path::new(&args.cgroup)).map_err(scope_refusal)?;
        cgroup.require_cgroup2().map_err(scope_refusal)?;
        let mut config = TenantConfig::new(cgroup.path())
            .level(args.level)
            .weight(args.weight);
        let ns = Duration::from_nanos;
        if let Some(v) = args.slice_min_ns {
            config.slice_min = ns(v);
        }
        if let Some(v) = args.slice_max_ns {
            config.slice_max = ns(v);
        }
        // The pre-filled slice stays inside the bounds the caller chose.
        config.slice_default = config
            .slice_default
            .clamp(config.slice_min, config.slice_max);
        if let Some(v) = args.park_max_ns {
            config.park_max = ns(v);
        }
        if let Some(v) = args.watchdog_ns {
            config.watchdog = ns(v);
        }
        Ok(LoadRequest {
            policy,
            name,
            cgroup,
            config,
        })
    }

    fn ask(&self) -> TenantAsk {
        TenantAsk {
            level: self.config.level,
            weight: self.config.weight,
            bounds: TenantBounds {
                slice_min: self.config.slice_min,
                slice_max: self.config.slice_max,
                park_max: self.config.park_max,
                watchdog_max: self.config.watchdog,
            },
        }
    }

    /// The policy's content hash (sha256, hex).
    pub fn policy_hash(&self) -> String {
        self.policy.hash().to_string()
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

fn check_name(name: &str) -> Result<(), ErrorReply> {
    let good = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if good {
        Ok(())
    } else {
        Err(rejected(format!(
            "tenant name {name:?}: 1..{MAX_NAME_LEN} characters of A-Z a-z 0-9 . _ -"
        )))
    }
}

/// How long the end of a pinned host may take to show in sched_ext's state.
const UNLOAD_TIMEOUT: Duration = Duration::from_secs(20);

struct Tenant {
    view: TenantView,
    handle: TenantHandle,
    config: TenantConfig,
}

impl Tenant {
    fn stored(&self) -> StoredTenant {
        let params = self.config.params();
        StoredTenant {
            tenant: self.view.clone(),
            slice_min_ns: params.slice_min_ns,
            slice_max_ns: params.slice_max_ns,
            slice_default_ns: params.slice_default_ns,
            park_max_ns: params.park_max_ns,
            watchdog_ns: params.watchdog_ns,
        }
    }
}

/// The configuration a stored tenant was attached with.
fn config_of(stored: &StoredTenant) -> TenantConfig {
    let ns = Duration::from_nanos;
    let mut config = TenantConfig::new(&stored.tenant.cgroup)
        .level(stored.tenant.level)
        .weight(stored.tenant.weight);
    config.slice_min = ns(stored.slice_min_ns);
    config.slice_max = ns(stored.slice_max_ns);
    config.slice_default = ns(stored.slice_default_ns);
    config.park_max = ns(stored.park_max_ns);
    config.watchdog = ns(stored.watchdog_ns);
    config
}

/// Why the backend could not start.
#[derive(Debug, Error)]
pub enum BackendError {
    #[error("{0}")]
    State(#[from] StateError),
    #[error(
        "{records} lists {count} tenant(s) ({names}) of this boot, but no host is pinned in \
         {pins}; nothing was changed (`upschedd --unload` clears the records)"
    )]
    NoPinnedHost {
        records: PathBuf,
        count: usize,
        names: String,
        pins: PathBuf,
    },
    #[error("cannot adopt the host pinned in {pins} with the tenants of {records}: {error}")]
    Adopt {
        pins: PathBuf,
        records: PathBuf,
        error: HostError,
    },
    #[error("{0}")]
    Unload(HostError),
}

/// The host scheduler (loaded at the first load, or adopted from its pins) and the daemon's
/// tenants on it.
pub struct Tenants {
    host: Option<Host>,
    tenants: Vec<Tenant>,
    state: StateDir,
    pin_dir: PathBuf,
}

impl Tenants {
    /// The backend of a daemon starting with `state_dir` and `pin_dir`: with the host and the
    /// tenants pinned there if there are pins, which must be exactly the tenants the state file
    /// lists (else the start is refused, naming each disagreement, and nothing changes); with
    /// none if neither lists any. The second value says what the start found, for the audit log.
    pub fn start(state_dir: &Path, pin_dir: &Path) -> Result<(Tenants, String), BackendError> {
        let state = StateDir::open(state_dir)?;
        let mut stored = state.read()?.map_or_else(Vec::new, |file| {
            if file.boot_id == boot_id() {
                file.tenants
            } else {
                // Pins do not survive a reboot: these tenants ended with their boot.
                Vec::new()
            }
        });
        let mut backend = Tenants {
            host: None,
            tenants: Vec::new(),
            state,
            pin_dir: pin_dir.to_path_buf(),
        };
        let records = backend.state.tenants_path();
        if !is_pinned(pin_dir) {
            if !stored.is_empty() {
                return Err(BackendError::NoPinnedHost {
                    records,
                    count: stored.len(),
                    names: names_of(&stored),
                    pins: pin_dir.to_path_buf(),
                });
            }
            backend.state.write(&[])?;
            return Ok((backend, "no pinned host; it loads at the first load".into()));
        }
        let expected: Vec<ExpectedTenant> = stored
            .iter()
            .map(|t| ExpectedTenant {
                slot: t.tenant.slot as usize,
                policy: t.tenant.policy.clone(),
                config: config_of(t),
            })
            .collect();
        let (host, handles) =
            Host::adopt(pin_dir, &expected).map_err(|error| BackendError::Adopt {
                pins: pin_dir.to_path_buf(),
                records,
                error,
            })?;
        let summary = format!(
            "adopted the host pinned in {} with {} tenant(s){}",
            pin_dir.display(),
            stored.len(),
            if stored.is_empty() {
                String::new()
            } else {
                format!(": {}", names_of(&stored))
            }
        );
        backend.host = Some(host);
        for ((stored, handle), config) in stored.drain(..).zip(handles).zip(expected) {
            backend.tenants.push(Tenant {
                view: stored.tenant,
                handle,
                config: config.config,
            });
        }
        Ok((backend, summary))
    }

    pub fn count(&self) -> usize {
        self.tenants.len()
    }

    /// Writes the tenants as they are now to the state file.
    fn persist(&self) -> Result<(), StateError> {
        let stored: Vec<StoredTenant> = self.tenants.iter().map(Tenant::stored).collect();
        self.state.write(&stored)
    }

    /// Checks `request` against `peer`'s grants and attaches it. Root needs no grant; anyone
    /// else needs one grant that allows all of it, and a refusal names, for each grant that
    /// covers the caller, every capability it lacks and every bound the request exceeds.
    pub fn load(
        &mut self,
        peer: &Peer,
        grants: &Grants,
        request: LoadRequest,
    ) -> Result<TenantView, ErrorReply> {
        self.forget_departed();
        if self.tenants.iter().any(|t| t.view.name == request.name) {
            return Err(rejected(format!(
                "a tenant named {:?} exists; choose another with --name",
                request.name
            )));
        }
        let grant = if peer.is_root() {
            "root".to_string()
        } else {
            self.granting(peer, grants, &request)?
        };
        // The grant's scope check above read the cgroup's path under this lock; here it is
        // bound by that path, refused if the path now names another directory.
        let path = request.cgroup.current_path().map_err(scope_refusal)?;
        match cgroup_identity(&path) {
            Ok((id, _)) if id == request.cgroup.id() => {}
            Ok(_) => {
                return Err(not_permitted(format!(
                    "cgroup {} was replaced since the request opened it",
                    path.display()
                )));
            }
            Err(e) => return Err(rejected(e.to_string())),
        }
        let host = self.running_host()?;
        let handle = host
            .attach(&request.policy, &request.config)
            .map_err(attach_refusal)?;
        let policy_hash = request.policy_hash();
        let view = TenantView {
            name: request.name.clone(),
            owner: peer.uid(),
            grant,
            policy: request.policy.name().to_string(),
            policy_hash: policy_hash.clone(),
            cgroup: path.display().to_string(),
            cgroup_id: request.cgroup.id(),
            level: request.config.level,
            weight: request.config.weight,
            slot: handle.slot as u32,
        };
        self.tenants.push(Tenant {
            view: view.clone(),
            handle,
            config: request.config,
        });
        let recorded = self
            .state
            .store_policy(&policy_hash, request.policy.bytes())
            .and_then(|()| self.persist());
        if let Err(e) = recorded {
            // A tenant the records lack would stop the next start: it is detached again.
            let tenant = self.tenants.pop().map(|t| t.handle);
            if let (Some(host), Some(handle)) = (self.host.as_mut(), tenant) {
                let _ = host.detach(handle);
            }
            return Err(ErrorReply::new(
                ErrorKind::Internal,
                format!("the tenant could not be recorded, so it was not kept: {e}"),
            ));
        }
        Ok(view)
    }

    /// The name of the first grant covering `peer` that allows all of `request`.
    fn granting(
        &self,
        peer: &Peer,
        grants: &Grants,
        request: &LoadRequest,
    ) -> Result<String, ErrorReply> {
        let ask = request.ask();
        let mut refusals = Vec::new();
        for grant in grants.covering(&peer.principal) {
            let mut reasons: Vec<String> = request
                .policy
                .capabilities()
                .iter()
                .filter(|used| !grant.capabilities.contains(used.name.as_str()))
                .map(|used| {
                    format!(
                        "capability {} missing (needed for {})",
                        used.name,
                        used.needed_for.join(", ")
                    )
                })
                .collect();
            if let Err(e) = grant.check_cgroup(&request.cgroup, &peer.principal) {
                reasons.push(e.to_string());
            }
            reasons.extend(grant.exceeded_bounds(&ask));
            let held = self
                .tenants
                .iter()
                .filter(|t| t.view.owner == peer.uid() && t.view.grant == grant.name)
                .count();
            if held >= grant.max_tenants as usize {
                reasons.push(format!(
                    "uid {} holds {held} tenant(s), the grant's max_tenants {}",
                    peer.uid(),
                    grant.max_tenants
                ));
            }
            if reasons.is_empty() {
                return Ok(grant.name.clone());
            }
            refusals.push(format!("grant {:?}: {}", grant.name, reasons.join("; ")));
        }
        if refusals.is_empty() {
            return Err(not_permitted(format!(
                "uid {} holds no grant in {} (docs/grants.md says how one is given)",
                peer.uid(),
                grants.source.display()
            )));
        }
        Err(not_permitted(format!(
            "no grant allows this load: {}",
            refusals.join(" | ")
        )))
    }

    /// The running host, loaded now if none runs (or if the kernel stopped the last one, whose
    /// tenants went with it; forget_departed cleared them and its pins).
    fn running_host(&mut self) -> Result<&mut Host, ErrorReply> {
        if self.host.is_none() {
            let host = Host::load_pinned(&HostConfig::default(), &self.pin_dir).map_err(|e| {
                ErrorReply::new(
                    ErrorKind::Internal,
                    format!("cannot load the host scheduler: {e}"),
                )
            })?;
            self.host = Some(host);
        }
        Ok(self.host.as_mut().expect("just loaded"))
    }

    /// Detaches `name` if `peer` may (its owner, or root).
    pub fn unload(&mut self, peer: &Peer, name: &str) -> Result<TenantView, ErrorReply> {
        self.forget_departed();
        let index = self.visible_index(peer, name)?;
        let handle = self.tenants[index].handle;
        if let Some(host) = self.host.as_mut() {
            match host.detach(handle) {
                Ok(()) | Err(HostError::UnknownTenant) => {}
                Err(e) => return Err(ErrorReply::new(ErrorKind::Internal, e.to_string())),
            }
        }
        let view = self.tenants.remove(index).view;
        self.persist().map_err(|e| {
            ErrorReply::new(
                ErrorKind::Internal,
                format!(
                    "tenant {:?} was detached, but not removed from the records: {e}",
                    view.name
                ),
            )
        })?;
        Ok(view)
    }

    /// The tenants `peer` may see: root all, anyone else its own.
    pub fn list(&mut self, peer: &Peer) -> Vec<TenantView> {
        self.forget_departed();
        self.tenants
            .iter()
            .filter(|t| visible(peer, &t.view))
            .map(|t| t.view.clone())
            .collect()
    }

    /// Statistics of `name`, or of every tenant `peer` may see.
    pub fn stats(
        &mut self,
        peer: &Peer,
        name: Option<&str>,
    ) -> Result<Vec<TenantStats>, ErrorReply> {
        self.forget_departed();
        let chosen: Vec<usize> = match name {
            Some(name) => vec![self.visible_index(peer, name)?],
            None => (0..self.tenants.len())
                .filter(|&i| visible(peer, &self.tenants[i].view))
                .collect(),
        };
        let Some(host) = &self.host else {
            return Ok(Vec::new());
        };
        let stats = host
            .stats()
            .map_err(|e| ErrorReply::new(ErrorKind::Internal, e.to_string()))?;
        Ok(chosen
            .into_iter()
            .map(|i| {
                let tenant = &self.tenants[i];
                let class = &stats.classes[tenant.handle.slot];
                let info = stats.tenants.iter().find(|t| t.handle == tenant.handle);
                TenantStats {
                    tenant: tenant.view.clone(),
                    nr_tasks: info.map_or(0, |t| t.nr_tasks),
                    nr_runnable: info.map_or(0, |t| t.nr_runnable),
                    clamps: class.clamps(),
                    counters: class.raw,
                }
            })
            .collect())
    }

    /// A read-write fd of `name`'s hint map, for `peer` to map, and its layout.
    pub fn hint_map(
        &mut self,
        peer: &Peer,
        name: &str,
    ) -> Result<(HintMapLayout, OwnedFd), ErrorReply> {
        let index = self.hint_index(peer, name)?;
        let fd = self
            .running(index)?
            .hint_map(self.tenants[index].handle)
            .map_err(host_failure)?;
        Ok((HintMapLayout::of(name), fd))
    }

    /// The task slot of `args.tid`, a thread of `peer`'s in tenant `args.tenant`.
    pub fn hint_slot(&mut self, peer: &Peer, args: &ThreadArgs) -> Result<HintSlot, ErrorReply> {
        let index = self.hint_index(peer, &args.tenant)?;
        self.member_slot(peer, index, args.tid)
            .map(|task_slot| HintSlot {
                tenant: args.tenant.clone(),
                tid: args.tid,
                task_slot,
            })
    }

    /// Writes the hint words of `args.tid`, as [`Tenants::hint_slot`] finds it.
    pub fn set_hints(&mut self, peer: &Peer, args: &SetHintsArgs) -> Result<HintSlot, ErrorReply> {
        let index = self.hint_index(peer, &args.tenant)?;
        let task_slot = self.member_slot(peer, index, args.tid)?;
        self.running(index)?
            .write_hints(self.tenants[index].handle.slot, task_slot, args.words)
            .map_err(host_failure)?;
        Ok(HintSlot {
            tenant: args.tenant.clone(),
            tid: args.tid,
            task_slot,
        })
    }

    /// The tenant `name` if `peer` may reach its hints: root, the tenant's owner, or a process
    /// whose cgroup is the tenant's cgroup or below it (the tenant's runtimes, whoever runs
    /// them). A tenant that exists but that `peer` may not reach is refused as one that does
    /// not exist, so that nobody learns the names of others' tenants.
    fn hint_index(&mut self, peer: &Peer, name: &str) -> Result<usize, ErrorReply> {
        self.forget_departed();
        if let Some(index) = self.tenants.iter().position(|t| t.view.name == name) {
            let view = &self.tenants[index].view;
            // The peer's pid is the kernel's (SO_PEERCRED), but a pid may be reused once the
            // process is gone: only a process of the peer's uid counts as the peer.
            let inside = || {
                let mount = cgroup2_mount_of(Path::new(&view.cgroup))?;
                let cgroup = process_cgroup(peer.pid, &mount).ok()?;
                Some(cgroup_within(&cgroup, &mount, view.cgroup_id))
            };
            if visible(peer, view)
                || (process_uid(peer.pid) == Some(peer.uid()) && inside() == Some(true))
            {
                return Ok(index);
            }
        }
        Err(ErrorReply::new(
            ErrorKind::UnknownTenant,
            format!(
                "no tenant {name:?} that uid {} owns or whose cgroup holds process {}",
                peer.uid(),
                peer.pid
            ),
        ))
    }

    /// The task slot of thread `tid` in tenant `index`: a thread of `peer`'s (anyone's for
    /// root) that the host counts as a member of that tenant.
    fn member_slot(&self, peer: &Peer, index: usize, tid: i32) -> Result<u32, ErrorReply> {
        let tenant = &self.tenants[index];
        let Some(owner) = u32::try_from(tid)
            .ok()
            .filter(|&t| t > 0)
            .and(process_uid(tid))
        else {
            return Err(not_permitted(format!("no thread {tid}")));
        };
        if !peer.is_root() && owner != peer.uid() {
            return Err(not_permitted(format!(
                "thread {tid} belongs to uid {owner}, not to the caller (uid {})",
                peer.uid()
            )));
        }
        let place = self
            .running(index)?
            .task_slot(tid as u32)
            .map_err(host_failure)?;
        match place {
            Some((slot, task_slot)) if slot == tenant.handle.slot => Ok(task_slot),
            _ => Err(not_permitted(format!(
                "thread {tid} is not a member of tenant {:?} (a thread joins at its first \
                 scheduling after it entered {})",
                tenant.view.name, tenant.view.cgroup
            ))),
        }
    }

    /// The host that runs tenant `index`.
    fn running(&self, index: usize) -> Result<&Host, ErrorReply> {
        self.host.as_ref().ok_or_else(|| {
            ErrorReply::new(
                ErrorKind::UnknownTenant,
                format!("tenant {:?} is gone", self.tenants[index].view.name),
            )
        })
    }

    fn visible_index(&self, peer: &Peer, name: &str) -> Result<usize, ErrorReply> {
        self.tenants
            .iter()
            .position(|t| t.view.name == name && visible(peer, &t.view))
            .ok_or_else(|| {
                ErrorReply::new(
                    ErrorKind::UnknownTenant,
                    format!("no tenant {name:?} of yours (`upsched list` shows them)"),
                )
            })
    }

    /// Drops the tenants the host no longer runs: ejected by its watchdog, or gone with a host
    /// the kernel stopped (whose pins are removed, so that the next load pins a new one).
    fn forget_departed(&mut self) {
        let Some(host) = self.host.as_mut() else {
            return;
        };
        let before = self.tenants.len();
        if host.check_running().is_err() {
            self.host = None;
            self.tenants.clear();
            if let Err(e) = unload_pinned(&self.pin_dir, UNLOAD_TIMEOUT) {
                eprintln!("upschedd: removing the pins of the stopped host: {e}");
            }
        } else if let Ok(ejected) = host.poll_ejections() {
            self.tenants
                .retain(|t| !ejected.iter().any(|e| e.handle == t.handle));
        }
        if self.tenants.len() != before
            && let Err(e) = self.persist()
        {
            eprintln!("upschedd: recording the departed tenants: {e}");
        }
    }
}

fn names_of(stored: &[StoredTenant]) -> String {
    let names: Vec<&str> = stored.iter().map(|t| t.tenant.name.as_str()).collect();
    names.join(", ")
}

/// `upschedd --unload`: ends the host pinned in `pin_dir` (sched_ext disabled, every task back
/// in the kernel's fair class), removes its pins, and clears the tenants of `state_dir`'s
/// records. It works whatever the records say, so that it also clears records a start refused.
/// The answer says what was done.
pub fn unload_all(state_dir: &Path, pin_dir: &Path) -> Result<String, BackendError> {
    let state = StateDir::open(state_dir)?;
    let ended = unload_pinned(pin_dir, UNLOAD_TIMEOUT).map_err(BackendError::Unload)?;
    state.write(&[])?;
    Ok(if ended {
        format!(
            "ended the host pinned in {} and cleared the tenants of {}",
            pin_dir.display(),
            state.tenants_path().display()
        )
    } else {
        format!(
            "no host was pinned in {}; cleared the tenants of {}",
            pin_dir.display(),
            state.tenants_path().display()
        )
    })
}

fn visible(peer: &Peer, tenant: &TenantView) -> bool {
    peer.is_root() || tenant.owner == peer.uid()
}

/// A failure of the host on a tenant's behalf: a tenant it no longer holds, or the daemon's.
fn host_failure(error: HostError) -> ErrorReply {
    let kind = match error {
        HostError::UnknownTenant => ErrorKind::UnknownTenant,
        _ => ErrorKind::Internal,
    };
    ErrorReply::new(kind, error.to_string())
}

/// A kernel refusal of the policy or its parameters is the client's (`rejected`, with the
/// verifier's log); anything else is the daemon's failure.
fn attach_refusal(error: HostError) -> ErrorReply {
    let kind = match error {
        HostError::PolicyRejected(_)
        | HostError::PolicyOpen { .. }
        | HostError::PolicyPrepare { .. }
        | HostError::PolicyVerifier { .. }
        | HostError::PolicyAttach { .. }
        | HostError::BadTenantConfig(_)
        | HostError::NoFreeSlot(_)
        | HostError::Cgroup { .. } => ErrorKind::Rejected,
        _ => ErrorKind::Internal,
    };
    ErrorReply::new(kind, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateFile;

    fn record(dir: &Path, boot_id: &str) -> String {
        let tenant = StoredTenant {
            tenant: TenantView {
                name: "web".into(),
                owner: 1000,
                grant: "alice".into(),
                policy: "fifo".into(),
                policy_hash: "a".repeat(64),
                cgroup: "/sys/fs/cgroup/tenants/alice/web".into(),
                cgroup_id: 4242,
                level: 1,
                weight: 100,
                slot: 0,
            },
            slice_min_ns: 500_000,
            slice_max_ns: 20_000_000,
            slice_default_ns: 5_000_000,
            park_max_ns: 100_000_000,
            watchdog_ns: 3_000_000_000,
        };
        let file = StateFile {
            version: crate::state::STATE_VERSION,
            boot_id: boot_id.into(),
            tenants: vec![tenant],
        };
        let text = serde_json::to_string(&file).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(crate::state::TENANTS_FILE), &text).unwrap();
        text
    }

    #[test]
    fn records_of_this_boot_without_a_pinned_host_refuse_the_start_and_stay() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let text = record(&state, &boot_id());
        let refused = Tenants::start(&state, &dir.path().join("pins")).err();
        let message = refused.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains("lists 1 tenant(s) (web) of this boot, but no host is pinned"),
            "{message}"
        );
        let after = std::fs::read_to_string(state.join(crate::state::TENANTS_FILE)).unwrap();
        assert_eq!(after, text);
    }

    #[test]
    fn tenants_of_an_earlier_boot_are_cleared_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        record(&state, "an earlier boot");
        let (tenants, found) = Tenants::start(&state, &dir.path().join("pins")).unwrap();
        assert_eq!(tenants.count(), 0);
        assert!(found.contains("no pinned host"), "{found}");
        let file = StateDir::open(&state).unwrap().read().unwrap().unwrap();
        assert_eq!((file.tenants.len(), file.boot_id), (0, boot_id()));
    }
}
