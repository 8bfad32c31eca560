//! The kernel backend: the host scheduler and the tenants the daemon attached to it.
//!
//! A load is judged in two steps. [`LoadRequest::admit`] runs without the backend's lock: the
//! policy's admission (`Host::admit`, the checks of `upsched check`, once), the cgroup opened
//! and checked to be a cgroup2 directory, the tenant parameters. [`Tenants::load`] then, under
//! the lock, compares all of it with the caller's grants (so that two loads cannot both take a
//! user's last tenant), loads the host scheduler if it does not run yet, and attaches. Every
//! refusal happens before the kernel is asked; a refusal or failure changes nothing.

use std::time::Duration;

use upsched_kernel::HostError;
use upsched_kernel::host::{Host, HostConfig, TenantConfig, TenantHandle, cgroup_identity};
use upsched_policy::AdmittedPolicy;

use crate::grants::{Grants, TenantAsk, TenantBounds};
use crate::peer::Peer;
use crate::protocol::{ErrorKind, ErrorReply, LoadArgs, TenantStats, TenantView};
use crate::scope::{ResolvedCgroup, ScopeError};

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

struct Tenant {
    view: TenantView,
    handle: TenantHandle,
}

/// The host scheduler (loaded at the first load) and the daemon's tenants on it.
#[derive(Default)]
pub struct Tenants {
    host: Option<Host>,
    tenants: Vec<Tenant>,
}

impl Tenants {
    pub fn count(&self) -> usize {
        self.tenants.len()
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
        let view = TenantView {
            name: request.name.clone(),
            owner: peer.uid(),
            grant,
            policy: request.policy.name().to_string(),
            policy_hash: request.policy_hash(),
            cgroup: path.display().to_string(),
            cgroup_id: request.cgroup.id(),
            level: request.config.level,
            weight: request.config.weight,
            slot: handle.slot as u32,
        };
        self.tenants.push(Tenant {
            view: view.clone(),
            handle,
        });
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
    /// tenants went with it).
    fn running_host(&mut self) -> Result<&mut Host, ErrorReply> {
        if self
            .host
            .as_ref()
            .is_some_and(|h| h.check_running().is_err())
        {
            self.host = None;
            self.tenants.clear();
        }
        if self.host.is_none() {
            let host = Host::load(&HostConfig::default()).map_err(|e| {
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
        Ok(self.tenants.remove(index).view)
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
    /// the kernel stopped.
    fn forget_departed(&mut self) {
        let Some(host) = self.host.as_mut() else {
            return;
        };
        if host.check_running().is_err() {
            self.tenants.clear();
            return;
        }
        if let Ok(ejected) = host.poll_ejections() {
            self.tenants
                .retain(|t| !ejected.iter().any(|e| e.handle == t.handle));
        }
    }
}

fn visible(peer: &Peer, tenant: &TenantView) -> bool {
    peer.is_root() || tenant.owner == peer.uid()
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
