//! `grants.toml`: who may run which tenant policies where (`docs/grants.md`).
//!
//! A grants file is parsed whole or refused whole: every error names the file, the line and
//! the key, and a daemon that fails to reload keeps the grants it had.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::{Gid, Group, Uid, User};
use serde::Deserialize;
use toml::Spanned;

use crate::scope::{CgroupScope, ResolvedCgroup, ScopeError};

/// The format version this daemon reads (`version = 1` at the top of the file).
pub const GRANTS_VERSION: u32 = 1;

/// Where the daemon reads its grants unless told otherwise.
pub const DEFAULT_GRANTS_PATH: &str = "/etc/upsched/grants.toml";

/// Every grant of one file, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grants {
    pub source: PathBuf,
    pub grants: Vec<Grant>,
}

/// What the principals of one `[[grant]]` may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Unique within the file; the audit log and the tenants name their grant by it.
    pub name: String,
    pub users: Vec<Uid>,
    pub groups: Vec<Gid>,
    /// Names of `abi.toml`'s capabilities (`upsched_abi::CAPABILITIES`).
    pub capabilities: BTreeSet<&'static str>,
    /// The cgroup subtrees a tenant of this grant may be bound to.
    pub scopes: Vec<CgroupScope>,
    /// Whether a tenant may be bound to a cgroup in a scope that the caller does not own.
    pub any_owner: bool,
    /// Highest chain level (levels run highest first).
    pub max_level: u32,
    pub max_weight: u32,
    /// Tenants the principals of this grant may hold at once, per user.
    pub max_tenants: u32,
    pub bounds: TenantBounds,
}

/// The tenant parameters a grant allows: slices in `slice_min..=slice_max`, parking up to
/// `park_max`, a watchdog bound up to `watchdog_max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TenantBounds {
    pub slice_min: Duration,
    pub slice_max: Duration,
    pub park_max: Duration,
    pub watchdog_max: Duration,
}

/// The parameters a tenant asks for, in the grant's terms (`bounds.watchdog_max` is the
/// tenant's watchdog bound).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TenantAsk {
    pub level: u32,
    pub weight: u32,
    pub bounds: TenantBounds,
}

/// Who asks: a peer's uid, primary gid and supplementary groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub uid: Uid,
    pub gid: Gid,
    pub groups: Vec<Gid>,
}

impl Principal {
    /// `uid` with primary group `gid` and the supplementary groups the system's group database
    /// gives its user (none for a uid without a name).
    pub fn from_database(uid: Uid, gid: Gid) -> Result<Self, nix::Error> {
        let groups = match User::from_uid(uid)? {
            Some(user) => {
                let name = std::ffi::CString::new(user.name).map_err(|_| nix::Error::EINVAL)?;
                nix::unistd::getgrouplist(&name, gid)?
            }
            None => Vec::new(),
        };
        Ok(Principal { uid, gid, groups })
    }
}

impl Grant {
    /// Refuses `cgroup` unless it lies inside one of the grant's scopes and, unless the grant
    /// says `any_owner`, belongs to the caller (root owns everything).
    pub fn check_cgroup(&self, cgroup: &ResolvedCgroup, who: &Principal) -> Result<(), ScopeError> {
        let mut inside = false;
        for scope in &self.scopes {
            if scope.contains(cgroup)? {
                inside = true;
                break;
            }
        }
        if !inside {
            let scopes: Vec<_> = self
                .scopes
                .iter()
                .map(|s| s.path().display().to_string())
                .collect();
            return Err(ScopeError::OutsideScopes {
                cgroup: cgroup.current_path()?,
                scopes: scopes.join(", "),
            });
        }
        if !self.any_owner && !who.uid.is_root() && cgroup.owner() != who.uid {
            return Err(ScopeError::NotOwner {
                cgroup: cgroup.path().to_path_buf(),
                owner: cgroup.owner().as_raw(),
                caller: who.uid.as_raw(),
            });
        }
        Ok(())
    }

    /// Every way `ask` exceeds this grant, one sentence each; empty when it fits.
    pub fn exceeded_bounds(&self, ask: &TenantAsk) -> Vec<String> {
        let mut exceeded = Vec::new();
        let b = &self.bounds;
        if ask.level > self.max_level {
            exceeded.push(format!(
                "level {} above the grant's max_level {}",
                ask.level, self.max_level
            ));
        }
        if ask.weight > self.max_weight {
            exceeded.push(format!(
                "weight {} above the grant's max_weight {}",
                ask.weight, self.max_weight
            ));
        }
        if ask.bounds.slice_min < b.slice_min {
            exceeded.push(format!(
                "slice_min {:?} below the grant's slice_min {:?}",
                ask.bounds.slice_min, b.slice_min
            ));
        }
        if ask.bounds.slice_max > b.slice_max {
            exceeded.push(format!(
                "slice_max {:?} above the grant's slice_max {:?}",
                ask.bounds.slice_max, b.slice_max
            ));
        }
        if ask.bounds.park_max > b.park_max {
            exceeded.push(format!(
                "park_max {:?} above the grant's park_max {:?}",
                ask.bounds.park_max, b.park_max
            ));
        }
        if ask.bounds.watchdog_max > b.watchdog_max {
            exceeded.push(format!(
                "watchdog {:?} above the grant's watchdog_max {:?}",
                ask.bounds.watchdog_max, b.watchdog_max
            ));
        }
        exceeded
    }

    /// Whether this grant names the principal, as a user or through one of its groups.
    pub fn covers(&self, who: &Principal) -> bool {
        self.users.contains(&who.uid)
            || self
                .groups
                .iter()
                .any(|g| *g == who.gid || who.groups.contains(g))
    }
}

impl Grants {
    /// An empty set: nobody but root may do anything.
    pub fn none(source: impl Into<PathBuf>) -> Self {
        Grants {
            source: source.into(),
            grants: Vec::new(),
        }
    }

    /// Reads and parses `path`, refusing a file that someone other than its reader or root
    /// could have written (a grants file anyone may edit grants everyone everything).
    pub fn load(path: &Path) -> Result<Self, GrantsError> {
        let refuse = |message: String| GrantsError {
            file: path.to_path_buf(),
            line: None,
            key: String::new(),
            message,
        };
        let mut file =
            std::fs::File::open(path).map_err(|e| refuse(format!("cannot read: {e}")))?;
        let meta = file
            .metadata()
            .map_err(|e| refuse(format!("cannot read: {e}")))?;
        let owner = meta.uid();
        if owner != 0 && owner != nix::unistd::geteuid().as_raw() {
            return Err(refuse(format!(
                "belongs to uid {owner}: only root (or the daemon's own user) may own the grants"
            )));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(refuse(format!(
                "is writable by its group or by others (mode {:o}): `chmod go-w` it",
                meta.mode() & 0o7777
            )));
        }
        let mut text = String::new();
        std::io::Read::read_to_string(&mut file, &mut text)
            .map_err(|e| refuse(format!("cannot read: {e}")))?;
        Self::parse(path, &text)
    }

    /// Parses the text of a grants file; `path` only names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, GrantsError> {
        let error =
            |span: Option<std::ops::Range<usize>>, key: String, message: String| GrantsError {
                file: path.to_path_buf(),
                line: span.map(|s| line_of(text, s.start)),
                key,
                message,
            };
        let raw: RawFile = serde_path_to_error::deserialize(toml::Deserializer::new(text))
            .map_err(|e| {
                // Spanned values show up as a private field in the path; the key is the value.
                let key = e
                    .path()
                    .to_string()
                    .replace(".$__serde_spanned_private_value", "");
                let inner = e.into_inner();
                error(
                    inner.span(),
                    if key == "." { String::new() } else { key },
                    inner.message().to_string(),
                )
            })?;
        let at = |span: std::ops::Range<usize>, key: String, message: String| {
            error(Some(span), key, message)
        };
        if *raw.version.get_ref() != GRANTS_VERSION {
            return Err(at(
                raw.version.span(),
                "version".into(),
                format!(
                    "version {} (this daemon reads version {GRANTS_VERSION})",
                    raw.version.get_ref()
                ),
            ));
        }
        let mut names = HashSet::new();
        let mut grants = Vec::with_capacity(raw.grant.len());
        for (index, g) in raw.grant.into_iter().enumerate() {
            let key = |field: &str| format!("grant[{index}].{field}");
            if g.name.get_ref().is_empty() || !names.insert(g.name.get_ref().clone()) {
                return Err(at(
                    g.name.span(),
                    key("name"),
                    format!(
                        "grant names must be unique and non-empty: {:?}",
                        g.name.get_ref()
                    ),
                ));
            }
            if g.users.is_empty() && g.groups.is_empty() {
                return Err(at(
                    g.name.span(),
                    key("users"),
                    "a grant names at least one user or group".into(),
                ));
            }
            let mut users = Vec::with_capacity(g.users.len());
            for (i, user) in g.users.iter().enumerate() {
                users.push(
                    resolve_user(user.get_ref())
                        .map_err(|m| at(user.span(), key(&format!("users[{i}]")), m))?,
                );
            }
            let mut groups = Vec::with_capacity(g.groups.len());
            for (i, group) in g.groups.iter().enumerate() {
                groups.push(
                    resolve_group(group.get_ref())
                        .map_err(|m| at(group.span(), key(&format!("groups[{i}]")), m))?,
                );
            }
            let mut capabilities = BTreeSet::new();
            for (i, name) in g.capabilities.iter().enumerate() {
                let known = upsched_abi::capability(name.get_ref()).ok_or_else(|| {
                    let all: Vec<_> = upsched_abi::CAPABILITIES.iter().map(|c| c.name).collect();
                    at(
                        name.span(),
                        key(&format!("capabilities[{i}]")),
                        format!(
                            "unknown capability {:?} (known: {})",
                            name.get_ref(),
                            all.join(", ")
                        ),
                    )
                })?;
                capabilities.insert(known.name);
            }
            if g.scopes.get_ref().is_empty() {
                return Err(at(
                    g.scopes.span(),
                    key("scopes"),
                    "a grant names at least one cgroup scope".into(),
                ));
            }
            let mut scopes = Vec::with_capacity(g.scopes.get_ref().len());
            for (i, scope) in g.scopes.get_ref().iter().enumerate() {
                scopes.push(
                    CgroupScope::new(scope.get_ref()).map_err(|e| {
                        at(scope.span(), key(&format!("scopes[{i}]")), e.to_string())
                    })?,
                );
            }
            if *g.max_weight.get_ref() == 0 {
                return Err(at(
                    g.max_weight.span(),
                    key("max_weight"),
                    "weights start at 1".into(),
                ));
            }
            if *g.max_tenants.get_ref() == 0 {
                return Err(at(
                    g.max_tenants.span(),
                    key("max_tenants"),
                    "at least 1 (a principal with nothing to do needs no grant)".into(),
                ));
            }
            let duration = |s: &Spanned<String>, field: &str| {
                humantime::parse_duration(s.get_ref()).map_err(|e| {
                    at(
                        s.span(),
                        key(field),
                        format!("{:?} is not a duration like \"20ms\": {e}", s.get_ref()),
                    )
                })
            };
            let bounds = TenantBounds {
                slice_min: duration(&g.slice_min, "slice_min")?,
                slice_max: duration(&g.slice_max, "slice_max")?,
                park_max: duration(&g.park_max, "park_max")?,
                watchdog_max: duration(&g.watchdog_max, "watchdog_max")?,
            };
            if bounds.slice_min.is_zero() || bounds.slice_min > bounds.slice_max {
                return Err(at(
                    g.slice_min.span(),
                    key("slice_min"),
                    format!(
                        "slice bounds {:?}..{:?} (need 0 < slice_min <= slice_max)",
                        bounds.slice_min, bounds.slice_max
                    ),
                ));
            }
            let longest_watchdog = Duration::from_nanos(upsched_abi::mechanism::MAX_WATCHDOG_NS);
            if bounds.watchdog_max.is_zero() || bounds.watchdog_max > longest_watchdog {
                return Err(at(
                    g.watchdog_max.span(),
                    key("watchdog_max"),
                    format!(
                        "{:?} (the host's longest watchdog bound is {longest_watchdog:?})",
                        bounds.watchdog_max
                    ),
                ));
            }
            if bounds.park_max >= bounds.watchdog_max {
                return Err(at(
                    g.park_max.span(),
                    key("park_max"),
                    format!(
                        "{:?} must be below watchdog_max {:?}: a parked task waits",
                        bounds.park_max, bounds.watchdog_max
                    ),
                ));
            }
            grants.push(Grant {
                name: g.name.into_inner(),
                users,
                groups,
                capabilities,
                scopes,
                any_owner: g.any_owner,
                max_level: g.max_level.into_inner(),
                max_weight: g.max_weight.into_inner(),
                max_tenants: g.max_tenants.into_inner(),
                bounds,
            });
        }
        Ok(Grants {
            source: path.to_path_buf(),
            grants,
        })
    }

    /// The grants that cover `who`, in file order.
    pub fn covering<'a>(&'a self, who: &'a Principal) -> impl Iterator<Item = &'a Grant> + 'a {
        self.grants.iter().filter(move |g| g.covers(who))
    }
}

/// A refused grants file: where and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct GrantsError {
    pub file: PathBuf,
    /// 1-based; `None` when the file could not be read.
    pub line: Option<usize>,
    /// The key's path, e.g. `grant[1].max_level`; empty for the whole file.
    pub key: String,
    pub message: String,
}

impl fmt::Display for GrantsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    version: Spanned<u32>,
    #[serde(default)]
    grant: Vec<RawGrant>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrant {
    name: Spanned<String>,
    #[serde(default)]
    users: Vec<Spanned<PrincipalName>>,
    #[serde(default)]
    groups: Vec<Spanned<PrincipalName>>,
    capabilities: Vec<Spanned<String>>,
    scopes: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    any_owner: bool,
    max_level: Spanned<u32>,
    max_weight: Spanned<u32>,
    max_tenants: Spanned<u32>,
    slice_min: Spanned<String>,
    slice_max: Spanned<String>,
    park_max: Spanned<String>,
    watchdog_max: Spanned<String>,
}

/// A user or group as the file names it: a name from the system's database or a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum PrincipalName {
    Id(u32),
    Name(String),
}

fn resolve_user(name: &PrincipalName) -> Result<Uid, String> {
    match name {
        PrincipalName::Id(id) => Ok(Uid::from_raw(*id)),
        PrincipalName::Name(name) => match User::from_name(name) {
            Ok(Some(user)) => Ok(user.uid),
            Ok(None) => Err(format!("no user {name:?} in the user database")),
            Err(e) => Err(format!("cannot look up user {name:?}: {e}")),
        },
    }
}

fn resolve_group(name: &PrincipalName) -> Result<Gid, String> {
    match name {
        PrincipalName::Id(id) => Ok(Gid::from_raw(*id)),
        PrincipalName::Name(name) => match Group::from_name(name) {
            Ok(Some(group)) => Ok(group.gid),
            Ok(None) => Err(format!("no group {name:?} in the group database")),
            Err(e) => Err(format!("cannot look up group {name:?}: {e}")),
        },
    }
}
