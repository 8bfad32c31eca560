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
//! A replace is judged the same way: [`admit_policy`] outside the lock, then
//! [`Tenants::replace`] judges the new policy as a load of it onto the tenant's cgroup with the
//! tenant's level, weight and bounds would be (the tenant itself not counted twice), and swaps
//! it in (`Host::replace`: the old policy stays on any refusal or failure).
//!
//! The host and the tenants' links are pinned, so that they outlive the daemon: a daemon that
//! starts finds them and adopts them ([`Tenants::start`]), and [`unload_all`] ends them.

use std::collections::{HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::{Gid, Uid, User};
use thiserror::Error;
use upsched_kernel::HostError;
use upsched_kernel::host::{
    ExpectedTenant, Host, HostConfig, TenantConfig, TenantHandle, cgroup_identity,
    cgroup2_mount_of, is_pinned, unload_pinned,
};
use upsched_policy::AdmittedPolicy;
use upsched_policy::check::CapabilityUse;

use crate::grants::{Grants, Principal, TenantAsk, TenantBounds};
use crate::peer::{Peer, process_uid};
use crate::protocol::{
    EjectedTenant, ErrorKind, ErrorReply, HintMapLayout, HintSlot, LoadArgs, NotifyProgram,
    SetHintsArgs, TenantStats, TenantView, ThreadArgs,
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
        let policy = admit_policy(&args.policy)?;
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

    /// The policy's content hash (sha256, hex).
    pub fn policy_hash(&self) -> String {
        self.policy.hash().to_string()
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Admits a policy object under the default limits; a refusal is the client's (`rejected`).
pub fn admit_policy(bytes: &[u8]) -> Result<AdmittedPolicy, ErrorReply> {
    Host::admit(bytes).map_err(|e| rejected(e.to_string()))
}

/// A tenant's parameters in its grant's terms.
fn ask_of(config: &TenantConfig) -> TenantAsk {
    TenantAsk {
        level: config.level,
        weight: config.weight,
        bounds: TenantBounds {
            slice_min: config.slice_min,
            slice_max: config.slice_max,
            park_max: config.park_max,
            watchdog_max: config.watchdog,
        },
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

/// The ejections kept for `stats`: the last few, so that a view polling every second or so sees
/// each, in memory bounded whatever the tenants do.
const EJECTIONS_KEPT: usize = 16;

/// How long the end of a pinned host may take to show in sched_ext's state.
const UNLOAD_TIMEOUT: Duration = Duration::from_secs(20);

struct Tenant {
    view: TenantView,
    handle: TenantHandle,
    config: TenantConfig,
    /// What its load was judged on, to judge it again when the grants change. An adopted
    /// tenant has none until a reload recovers it ([`Judged::recover`]): the connection that
    /// loaded it is gone.
    judged: Option<Judged>,
}

/// What a load is judged on besides the tenant's parameters: who asked, what the policy
/// needs, and the cgroup as opened (so that a reload judges the directory, wherever it is now).
#[derive(Debug)]
struct Judged {
    owner: Principal,
    capabilities: Vec<CapabilityUse>,
    cgroup: ResolvedCgroup,
}

impl Judged {
    /// The judgment of an adopted tenant's load, from the records: the owner with the groups
    /// the user database gives it now, the capabilities of the recorded policy object (admitted
    /// again), and the recorded cgroup, which must still be the directory that was bound.
    fn recover(state: &StateDir, view: &TenantView) -> Result<Judged, String> {
        let path = state.policy_path(&view.policy_hash);
        let bytes = std::fs::read(&path)
            .map_err(|e| format!("its policy {} cannot be read: {e}", path.display()))?;
        let policy =
            Host::admit(&bytes).map_err(|e| format!("its policy is no longer admitted: {e}"))?;
        let cgroup = ResolvedCgroup::open(Path::new(&view.cgroup)).map_err(|e| e.to_string())?;
        if cgroup.id() != view.cgroup_id {
            return Err(format!(
                "cgroup {} is no longer the directory it was bound to",
                view.cgroup
            ));
        }
        Ok(Judged {
            owner: owner_principal(view.owner),
            capabilities: policy.capabilities().to_vec(),
            cgroup,
        })
    }
}

/// `uid` as a peer of that user would be seen: its primary group and supplementary groups from
/// the user database. A uid the database does not know gets gid `(gid_t)-1`, which no process
/// can hold (setgid(2) reserves it), so that only the uid itself can be granted.
fn owner_principal(uid: u32) -> Principal {
    let uid = Uid::from_raw(uid);
    let gid = match User::from_uid(uid) {
        Ok(Some(user)) => user.gid,
        _ => Gid::from_raw(u32::MAX),
    };
    Principal::from_database(uid, gid).unwrap_or(Principal {
        uid,
        gid,
        groups: Vec::new(),
    })
}

/// The first grant covering `who` that allows a load of a policy needing `capabilities` on
/// `cgroup` with `ask`, where `held(grant)` counts the tenants `who` already holds under a
/// grant; else, for each covering grant, why not (none when no grant covers `who`). Loads and
/// reloads judge by this one function.
fn judge(
    grants: &Grants,
    who: &Principal,
    capabilities: &[CapabilityUse],
    cgroup: &ResolvedCgroup,
    ask: &TenantAsk,
    held: impl Fn(&str) -> usize,
) -> Result<String, Vec<String>> {
    let mut refusals = Vec::new();
    for grant in grants.covering(who) {
        let mut reasons: Vec<String> = capabilities
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
        if let Err(e) = grant.check_cgroup(cgroup, who) {
            reasons.push(e.to_string());
        }
        reasons.extend(grant.exceeded_bounds(ask));
        let held = held(&grant.name);
        if held >= grant.max_tenants as usize {
            reasons.push(format!(
                "uid {} holds {held} tenant(s), the grant's max_tenants {}",
                who.uid, grant.max_tenants
            ));
        }
        if reasons.is_empty() {
            return Ok(grant.name.clone());
        }
        refusals.push(format!("grant {:?}: {}", grant.name, reasons.join("; ")));
    }
    Err(refusals)
}

/// A tenant as a reload judges it.
enum Standing<'a> {
    /// Root's: it needs no grant.
    Root,
    Load {
        judged: &'a Judged,
        ask: TenantAsk,
    },
    /// An adopted tenant whose load could not be recovered: nothing shows it is covered.
    Unjudgeable(String),
}

/// For each tenant, in load order, the grant it stays under, or why `grants` no longer cover
/// it. Judged in load order, as the loads were, so that a smaller `max_tenants` keeps a user's
/// earliest tenants.
fn rejudge(grants: &Grants, tenants: &[Standing]) -> Vec<Result<String, String>> {
    let mut kept: HashMap<(Uid, String), usize> = HashMap::new();
    tenants
        .iter()
        .map(|standing| match standing {
            Standing::Root => Ok("root".to_string()),
            Standing::Unjudgeable(reason) => Err(reason.clone()),
            Standing::Load { judged, ask } => {
                let who = &judged.owner;
                let verdict = judge(
                    grants,
                    who,
                    &judged.capabilities,
                    &judged.cgroup,
                    ask,
                    |g| kept.get(&(who.uid, g.to_string())).copied().unwrap_or(0),
                );
                match verdict {
                    Ok(grant) => {
                        *kept.entry((who.uid, grant.clone())).or_default() += 1;
                        Ok(grant)
                    }
                    Err(refusals) if refusals.is_empty() => {
                        Err(format!("no grant covers uid {} any more", who.uid))
                    }
                    Err(refusals) => Err(format!(
                        "no grant allows it any more: {}",
                        refusals.join(" | ")
                    )),
                }
            }
        })
        .collect()
}

/// A tenant a reload detached because the new grants no longer cover it.
#[derive(Debug)]
pub struct Withdrawal {
    pub tenant: TenantView,
    /// Why the grants no longer cover it.
    pub reason: String,
    /// Why it could not be detached (it then stays), or its records not written.
    pub failure: Option<String>,
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
    /// The last ejections, oldest first (at most [`EJECTIONS_KEPT`]).
    ejected: VecDeque<EjectedTenant>,
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
            ejected: VecDeque::new(),
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
                judged: None,
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
            let ask = ask_of(&request.config);
            let capabilities = request.policy.capabilities();
            self.granting(peer, grants, capabilities, &request.cgroup, &ask, None)?
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
            judged: Some(Judged {
                owner: peer.principal.clone(),
                capabilities: request.policy.capabilities().to_vec(),
                cgroup: request.cgroup,
            }),
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

    /// The name of the first grant covering `peer` that allows a load of a policy needing
    /// `capabilities` onto `cgroup` with `ask`; the tenant at `replacing` (whose policy a
    /// replace swaps) does not count among those `peer` holds, so that it counts once.
    fn granting(
        &self,
        peer: &Peer,
        grants: &Grants,
        capabilities: &[CapabilityUse],
        cgroup: &ResolvedCgroup,
        ask: &TenantAsk,
        replacing: Option<usize>,
    ) -> Result<String, ErrorReply> {
        let held = |grant: &str| {
            self.tenants
                .iter()
                .enumerate()
                .filter(|(index, t)| {
                    Some(*index) != replacing && t.view.owner == peer.uid() && t.view.grant == grant
                })
                .count()
        };
        let refusals = match judge(grants, &peer.principal, capabilities, cgroup, ask, held) {
            Ok(grant) => return Ok(grant),
            Err(refusals) => refusals,
        };
        if refusals.is_empty() {
            return Err(not_permitted(format!(
                "uid {} holds no grant in {} (docs/grants.md says how one is given)",
                peer.uid(),
                grants.source.display()
            )));
        }
        Err(not_permitted(format!(
            "no grant allows this {}: {}",
            if replacing.is_some() {
                "replace"
            } else {
                "load"
            },
            refusals.join(" | ")
        )))
    }

    /// Swaps the policy of `name` (`peer`'s, or anyone's for root) for `policy`. Anyone but
    /// root needs a grant that allows a load of `policy` onto the tenant's cgroup with its
    /// level, weight and bounds; root's replace keeps the tenant's grant, which a reload
    /// judges as usual. On a refusal or failure the old policy stays, in the kernel and in the
    /// records.
    pub fn replace(
        &mut self,
        peer: &Peer,
        grants: &Grants,
        name: &str,
        policy: AdmittedPolicy,
    ) -> Result<TenantView, ErrorReply> {
        self.forget_departed();
        let index = self.visible_index(peer, name)?;
        let grant = if peer.is_root() {
            self.tenants[index].view.grant.clone()
        } else {
            // An adopted tenant's cgroup as its load opened it comes from the records.
            if self.tenants[index].judged.is_none() {
                let judged = Judged::recover(&self.state, &self.tenants[index].view)
                    .map_err(|reason| not_permitted(format!("tenant {name:?}: {reason}")))?;
                self.tenants[index].judged = Some(judged);
            }
            let tenant = &self.tenants[index];
            let cgroup = &tenant.judged.as_ref().expect("recovered above").cgroup;
            let ask = ask_of(&tenant.config);
            self.granting(
                peer,
                grants,
                policy.capabilities(),
                cgroup,
                &ask,
                Some(index),
            )?
        };
        let handle = self.tenants[index].handle;
        let host = self.host.as_mut().ok_or_else(|| {
            ErrorReply::new(ErrorKind::UnknownTenant, format!("tenant {name:?} is gone"))
        })?;
        host.replace(handle, &policy).map_err(attach_refusal)?;
        let tenant = &mut self.tenants[index];
        let before = tenant.view.clone();
        tenant.view.policy = policy.name().to_string();
        tenant.view.policy_hash = policy.hash().to_string();
        tenant.view.grant = grant;
        let old_capabilities = tenant.judged.as_mut().map(|judged| {
            std::mem::replace(&mut judged.capabilities, policy.capabilities().to_vec())
        });
        let view = tenant.view.clone();
        let recorded = self
            .state
            .store_policy(&view.policy_hash, policy.bytes())
            .and_then(|()| self.persist());
        let Err(e) = recorded else {
            return Ok(view);
        };
        // Records that name the old policy would judge it at the next reload: the old policy
        // goes back in, so that kernel and records agree again.
        let tenant = &mut self.tenants[index];
        tenant.view = before;
        if let (Some(judged), Some(old)) = (tenant.judged.as_mut(), old_capabilities) {
            judged.capabilities = old;
        }
        let old_path = self.state.policy_path(&tenant.view.policy_hash);
        let reverted = std::fs::read(&old_path)
            .map_err(|e| format!("its policy {} cannot be read: {e}", old_path.display()))
            .and_then(|bytes| admit_policy(&bytes).map_err(|e| e.message))
            .and_then(|old| {
                let host = self.host.as_mut().ok_or("the host is gone")?;
                host.replace(handle, &old).map_err(|e| e.to_string())
            });
        Err(ErrorReply::new(
            ErrorKind::Internal,
            match reverted {
                Ok(()) => format!(
                    "the new policy could not be recorded, so the old one was put back: {e}"
                ),
                Err(why) => format!(
                    "the new policy could not be recorded ({e}) and the old one not put back \
                     ({why}): the tenant runs the new policy, the records name the old one"
                ),
            },
        ))
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
        let view = self.detach(index)?;
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

    /// Detaches the tenant at `index` from the host and forgets it (the records are the
    /// caller's to write); one the host no longer has is forgotten too.
    fn detach(&mut self, index: usize) -> Result<TenantView, ErrorReply> {
        let handle = self.tenants[index].handle;
        if let Some(host) = self.host.as_mut() {
            match host.detach(handle) {
                Ok(()) | Err(HostError::UnknownTenant) => {}
                Err(e) => return Err(ErrorReply::new(ErrorKind::Internal, e.to_string())),
            }
        }
        Ok(self.tenants.remove(index).view)
    }

    /// Judges every tenant again against `grants`, as its load was judged (owner, the
    /// capabilities its policy needs, scope and owner of its cgroup, level, weight, bounds,
    /// tenant count), and detaches, as `unload` does, those no longer covered; the others keep
    /// running, under the grant that covers them now. The records are written once.
    pub fn withdraw_uncovered(&mut self, grants: &Grants) -> Vec<Withdrawal> {
        self.forget_departed();
        let state = &self.state;
        let mut unjudgeable = vec![None; self.tenants.len()];
        for (tenant, slot) in self.tenants.iter_mut().zip(&mut unjudgeable) {
            if tenant.view.owner != 0 && tenant.judged.is_none() {
                match Judged::recover(state, &tenant.view) {
                    Ok(judged) => tenant.judged = Some(judged),
                    Err(reason) => *slot = Some(reason),
                }
            }
        }
        let standings: Vec<Standing> = self
            .tenants
            .iter()
            .zip(unjudgeable)
            .map(|(t, unjudgeable)| match (&t.judged, unjudgeable) {
                _ if t.view.owner == 0 => Standing::Root,
                (Some(judged), _) => Standing::Load {
                    judged,
                    ask: ask_of(&t.config),
                },
                (None, reason) => Standing::Unjudgeable(reason.unwrap_or_default()),
            })
            .collect();
        let verdicts = rejudge(grants, &standings);
        let mut changed = false;
        let mut withdrawals = Vec::new();
        // From the last, so that the indices of those before stay valid.
        for (index, verdict) in verdicts.into_iter().enumerate().rev() {
            match verdict {
                Ok(grant) => {
                    let view = &mut self.tenants[index].view;
                    if view.owner != 0 && view.grant != grant {
                        view.grant = grant;
                        changed = true;
                    }
                }
                Err(reason) => {
                    let tenant = self.tenants[index].view.clone();
                    let failure = match self.detach(index) {
                        Ok(_) => {
                            changed = true;
                            None
                        }
                        Err(e) => Some(format!("it could not be detached: {}", e.message)),
                    };
                    withdrawals.push(Withdrawal {
                        tenant,
                        reason,
                        failure,
                    });
                }
            }
        }
        withdrawals.reverse();
        if changed && let Err(e) = self.persist() {
            for w in withdrawals.iter_mut().filter(|w| w.failure.is_none()) {
                w.failure = Some(format!(
                    "it was detached, but not removed from the records: {e}"
                ));
            }
        }
        withdrawals
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
                    default_calls: info.map_or(0, |t| t.default_calls),
                    counters: class.raw,
                }
            })
            .collect())
    }

    /// The last ejections of tenants `peer` may see, oldest first.
    pub fn ejections(&self, peer: &Peer) -> Vec<EjectedTenant> {
        self.ejected
            .iter()
            .filter(|e| visible(peer, &e.tenant))
            .cloned()
            .collect()
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

    /// An fd of `name`'s notify program and the tenant's notify key, for `peer` to run it;
    /// granted as [`Tenants::hint_map`].
    pub fn notify_program(
        &mut self,
        peer: &Peer,
        name: &str,
    ) -> Result<(NotifyProgram, OwnedFd), ErrorReply> {
        let index = self.hint_index(peer, name)?;
        let (fd, key) = self
            .running(index)?
            .notify_program(self.tenants[index].handle)
            .map_err(host_failure)?;
        let program = NotifyProgram {
            tenant: name.to_string(),
            key,
        };
        Ok((program, fd))
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
            for ejection in ejected {
                let Some(tenant) = self.tenants.iter().find(|t| t.handle == ejection.handle) else {
                    continue;
                };
                if self.ejected.len() == EJECTIONS_KEPT {
                    self.ejected.pop_front();
                }
                self.ejected.push_back(EjectedTenant {
                    tenant: tenant.view.clone(),
                    reason: ejection.reason,
                    pid: ejection.pid,
                    waited_ns: u64::try_from(ejection.waited.as_nanos()).unwrap_or(u64::MAX),
                });
                self.tenants.retain(|t| t.handle != ejection.handle);
            }
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

    /// Grants of one file whose `[[grant]]`s cover uid 1000, bound to any owner's cgroup, with
    /// the tenant parameters `TenantConfig::new` defaults to.
    fn grants(grants: &[(&str, &[&Path], &str, u32)]) -> Grants {
        let mut text = String::from("version = 1\n");
        for (name, scopes, capabilities, max_tenants) in grants {
            let scopes: Vec<String> = scopes.iter().map(|s| format!("{s:?}")).collect();
            text.push_str(&format!(
                "[[grant]]\nname = {name:?}\nusers = [1000]\ncapabilities = [{capabilities}]\n\
                 scopes = [{}]\nany_owner = true\nmax_level = 1\nmax_weight = 200\n\
                 max_tenants = {max_tenants}\nslice_min = \"500us\"\nslice_max = \"20ms\"\n\
                 park_max = \"100ms\"\nwatchdog_max = \"3s\"\n",
                scopes.join(", ")
            ));
        }
        Grants::parse(Path::new("grants.toml"), &text).unwrap()
    }

    const FIFO_CAPABILITIES: &str =
        r#""sched.order", "sched.slice", "task.accounting", "time.read""#;

    fn fifo() -> &'static [u8] {
        upsched_policies::POLICIES
            .iter()
            .find(|(name, _)| *name == "fifo")
            .map(|(_, bytes)| *bytes)
            .unwrap()
    }

    fn alice() -> Principal {
        Principal {
            uid: Uid::from_raw(1000),
            gid: Gid::from_raw(1000),
            groups: Vec::new(),
        }
    }

    /// What a load of `example:fifo` by `owner` on `cgroup` was judged on.
    fn judged(owner: Principal, cgroup: &Path) -> Judged {
        Judged {
            owner,
            capabilities: Host::admit(fifo()).unwrap().capabilities().to_vec(),
            cgroup: ResolvedCgroup::open(cgroup).unwrap(),
        }
    }

    /// A tenant of `owner` on `cgroup` at level 1, as a load (`judged`) or an adoption (none)
    /// leaves it.
    fn tenant(
        name: &str,
        slot: usize,
        owner: u32,
        cgroup: &Path,
        judged: Option<Judged>,
    ) -> Tenant {
        use std::os::unix::fs::MetadataExt;
        let config = TenantConfig::new(cgroup).level(1);
        Tenant {
            view: TenantView {
                name: name.into(),
                owner,
                grant: if owner == 0 { "root" } else { "alice" }.into(),
                policy: "fifo".into(),
                policy_hash: Host::admit(fifo()).unwrap().hash().to_string(),
                cgroup: cgroup.display().to_string(),
                cgroup_id: std::fs::metadata(cgroup).unwrap().ino(),
                level: config.level,
                weight: config.weight,
                slot: slot as u32,
            },
            handle: TenantHandle {
                slot,
                generation: 1,
            },
            config,
            judged,
        }
    }

    /// A backend with no host (detaching then only forgets) holding `tenants`, recorded.
    fn backend(state: &Path, tenants: Vec<Tenant>) -> Tenants {
        let backend = Tenants {
            host: None,
            tenants,
            ejected: VecDeque::new(),
            state: StateDir::open(state).unwrap(),
            pin_dir: state.join("pins"),
        };
        backend.persist().unwrap();
        backend
    }

    fn recorded_names(state: &Path) -> Vec<String> {
        let file = StateDir::open(state).unwrap().read().unwrap().unwrap();
        file.tenants.into_iter().map(|t| t.tenant.name).collect()
    }

    #[test]
    fn a_reload_withdraws_only_the_tenants_the_new_grants_no_longer_cover() {
        let dir = tempfile::tempdir().unwrap();
        let (web, batch, other) = (
            dir.path().join("alice/web"),
            dir.path().join("alice/batch"),
            dir.path().join("other"),
        );
        for d in [&web, &batch, &other] {
            std::fs::create_dir_all(d).unwrap();
        }
        let state = dir.path().join("state");
        let mut backend = backend(
            &state,
            vec![
                tenant("web", 0, 1000, &web, Some(judged(alice(), &web))),
                tenant("batch", 1, 1000, &batch, Some(judged(alice(), &batch))),
                tenant("roots", 2, 0, &other, None),
            ],
        );
        let both = grants(&[("alice", &[&web, &batch], FIFO_CAPABILITIES, 2)]);
        assert!(backend.withdraw_uncovered(&both).is_empty());
        assert_eq!(backend.count(), 3);

        let web_only = grants(&[("alice", &[&web], FIFO_CAPABILITIES, 2)]);
        let withdrawn = backend.withdraw_uncovered(&web_only);
        assert_eq!(withdrawn.len(), 1, "{withdrawn:?}");
        assert_eq!(withdrawn[0].tenant.name, "batch");
        assert!(
            withdrawn[0].reason.contains("outside every granted scope"),
            "{}",
            withdrawn[0].reason
        );
        assert_eq!(withdrawn[0].failure, None);
        assert_eq!(recorded_names(&state), ["web", "roots"]);

        // No grant at all: root's tenant needs none and stays.
        let withdrawn = backend.withdraw_uncovered(&Grants::none("grants.toml"));
        assert_eq!(withdrawn.len(), 1, "{withdrawn:?}");
        assert_eq!(withdrawn[0].reason, "no grant covers uid 1000 any more");
        assert_eq!(recorded_names(&state), ["roots"]);
    }

    fn example(name: &str) -> AdmittedPolicy {
        Host::admit(upsched_policies::policy(name).unwrap()).unwrap()
    }

    #[test]
    fn a_replace_is_judged_as_a_load_of_the_new_policy_with_the_tenant_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let (state, web) = (dir.path().join("state"), dir.path().join("web"));
        std::fs::create_dir_all(&web).unwrap();
        let scopes: &[&Path] = &[dir.path()];
        // max_tenants 1, held by the tenant itself: a load would be refused, a replace not.
        let grants = grants(&[("alice", scopes, FIFO_CAPABILITIES, 1)]);
        let web_tenant = tenant("web", 0, 1000, &web, Some(judged(alice(), &web)));
        let mut backend = backend(&state, vec![web_tenant]);
        let peer = Peer {
            pid: 1,
            principal: alice(),
        };
        let recorded_hash = |state: &Path| {
            let file = StateDir::open(state).unwrap().read().unwrap().unwrap();
            file.tenants[0].tenant.policy_hash.clone()
        };
        let before = recorded_hash(&state);
        // faas needs capabilities the grant lacks: refused, naming them; nothing changes.
        let refused = backend
            .replace(&peer, &grants, "web", example("faas"))
            .unwrap_err();
        assert_eq!(refused.kind, ErrorKind::NotPermitted, "{refused:?}");
        assert!(
            refused.message.starts_with("no grant allows this replace")
                && refused.message.contains("capability hints.read missing")
                && refused.message.contains("capability sched.verdict missing"),
            "{}",
            refused.message
        );
        // wfq fits the grant: judged allowed, then asked of the host (none runs here).
        let gone = backend
            .replace(&peer, &grants, "web", example("wfq"))
            .unwrap_err();
        assert_eq!(gone.kind, ErrorKind::UnknownTenant, "{gone:?}");
        // Another user's tenant is not found at all.
        let bob = Peer {
            pid: 2,
            principal: Principal {
                uid: Uid::from_raw(1001),
                ..alice()
            },
        };
        let unknown = backend
            .replace(&bob, &grants, "web", example("wfq"))
            .unwrap_err();
        assert_eq!(unknown.kind, ErrorKind::UnknownTenant, "{unknown:?}");
        assert_eq!(backend.tenants[0].view.policy, "fifo");
        assert_eq!(recorded_hash(&state), before);
    }

    #[test]
    fn a_reload_judges_capabilities_bounds_and_tenant_counts_as_a_load() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        for d in [&a, &b] {
            std::fs::create_dir_all(d).unwrap();
        }
        let (first, second) = (judged(alice(), &a), judged(alice(), &b));
        let at_level = |level| TenantAsk {
            level,
            ..ask_of(&TenantConfig::new(&a))
        };
        let standings = |level| {
            [
                Standing::Load {
                    judged: &first,
                    ask: at_level(level),
                },
                Standing::Load {
                    judged: &second,
                    ask: at_level(level),
                },
                Standing::Root,
                Standing::Unjudgeable("its policy cannot be read".into()),
            ]
        };
        let scopes: &[&Path] = &[dir.path()];
        // One tenant per user now: the earlier load keeps its place.
        let verdicts = rejudge(
            &grants(&[("alice", scopes, FIFO_CAPABILITIES, 1)]),
            &standings(1),
        );
        assert_eq!(verdicts[0], Ok("alice".to_string()));
        let count = verdicts[1].as_ref().unwrap_err();
        assert!(
            count.contains("holds 1 tenant(s), the grant's max_tenants 1"),
            "{count}"
        );
        assert_eq!(verdicts[2], Ok("root".to_string()));
        assert_eq!(verdicts[3], Err("its policy cannot be read".to_string()));
        // A grant that lacks a capability the policy needs, and the second tenant goes to the
        // next grant that allows it.
        let lacking = r#""sched.order", "time.read", "task.accounting""#;
        let verdicts = rejudge(
            &grants(&[
                ("alice", scopes, FIFO_CAPABILITIES, 1),
                ("spare", scopes, FIFO_CAPABILITIES, 1),
                ("narrow", scopes, lacking, 1),
            ]),
            &standings(1),
        );
        assert_eq!(verdicts[..2], [Ok("alice".into()), Ok("spare".into())]);
        let verdicts = rejudge(&grants(&[("narrow", scopes, lacking, 2)]), &standings(1));
        let missing = verdicts[0].as_ref().unwrap_err();
        assert!(
            missing.starts_with(
                "no grant allows it any more: grant \"narrow\": capability sched.slice missing"
            ),
            "{missing}"
        );
        // A level above the grant's max_level.
        let verdicts = rejudge(
            &grants(&[("alice", scopes, FIFO_CAPABILITIES, 2)]),
            &standings(2),
        );
        let level = verdicts[0].as_ref().unwrap_err();
        assert!(
            level.contains("level 2 above the grant's max_level 1"),
            "{level}"
        );
    }

    #[test]
    fn an_adopted_tenant_is_judged_from_its_records() {
        let dir = tempfile::tempdir().unwrap();
        let web = dir.path().join("web");
        std::fs::create_dir_all(&web).unwrap();
        let state = dir.path().join("state");
        let adopted = tenant("web", 0, 1000, &web, None);
        let mut moved = tenant("moved", 1, 1000, &web, None);
        moved.view.cgroup_id += 1;
        let mut backend = backend(&state, vec![adopted, moved]);
        let hash = Host::admit(fifo()).unwrap().hash().to_string();
        backend.state.store_policy(&hash, fifo()).unwrap();
        let lacking = grants(&[("alice", &[dir.path()], r#""sched.order""#, 2)]);
        let withdrawn = backend.withdraw_uncovered(&lacking);
        let reasons: Vec<(&str, &str)> = withdrawn
            .iter()
            .map(|w| (w.tenant.name.as_str(), w.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(
            reasons[0].1.contains("capability sched.slice missing"),
            "{reasons:?}"
        );
        assert!(
            reasons[1]
                .1
                .contains("is no longer the directory it was bound to"),
            "{reasons:?}"
        );

        // The records no longer use the policy, so it went with them; recorded again.
        let mut backend = Tenants {
            tenants: vec![tenant("web", 0, 1000, &web, None)],
            ..backend
        };
        backend.state.store_policy(&hash, fifo()).unwrap();
        let full = grants(&[("alice", &[dir.path()], FIFO_CAPABILITIES, 2)]);
        let withdrawn = backend.withdraw_uncovered(&full);
        assert!(withdrawn.is_empty(), "{withdrawn:?}");
        assert!(backend.tenants[0].judged.is_some());
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
