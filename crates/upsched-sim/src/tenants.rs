//! Tenants of the upsched mechanism in a scenario: the `[[tenant]]` table of the TOML format,
//! where each tenant's policy comes from (`example:NAME` or a `.bpf.o` file), and loading the
//! policies through the engine's admission checks and verifier.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Deserialize;
use toml::Spanned;
use upsched_policy::engine::{EngineError, EngineOptions, ExecMode, LoadedPolicy};

use crate::scenario::Scenario;
use crate::sched::Scheduler;
use crate::sched::upsched::{self, HostConfig, Replacement, Tenant, TenantConfig, UpschedHost};
use crate::toml_scenario::{DurationValue, ScenarioError};

/// Prefix of an example policy's name (`upsched_policies::POLICIES`).
pub const EXAMPLE_PREFIX: &str = "example:";

/// Where a tenant's policy object comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicySource {
    /// One of the embedded example policies.
    Example(String),
    /// A `.bpf.o` file.
    File(PathBuf),
}

impl PolicySource {
    /// Reads `text` as written on the command line or in a scenario: `example:NAME`, or a path
    /// (relative paths are taken from `base`).
    pub fn parse(text: &str, base: &Path) -> Result<PolicySource, String> {
        if let Some(name) = text.strip_prefix(EXAMPLE_PREFIX) {
            if upsched_policies::policy(name).is_none() {
                return Err(format!(
                    "no example policy {name:?} (examples: {})",
                    upsched_policies::names().collect::<Vec<_>>().join(", ")
                ));
            }
            return Ok(PolicySource::Example(name.to_string()));
        }
        if text.is_empty() {
            return Err("the policy is empty: give example:NAME or a .bpf.o path".into());
        }
        Ok(PolicySource::File(base.join(text)))
    }

    /// Whether `text` names a tenant policy rather than a built-in scheduler.
    pub fn looks_like_policy(text: &str) -> bool {
        text.starts_with(EXAMPLE_PREFIX) || text.ends_with(".o") || text.contains('/')
    }

    /// Checks and loads the policy: admission (the checks of `upsched check` with the engine's
    /// verifier, each run once), then the engine loads what was admitted; its hooks run in
    /// `mode`. The one place the simulator builds a `LoadedPolicy`.
    pub fn load(&self, mode: ExecMode) -> Result<LoadedPolicy, String> {
        let owned;
        let bytes: &[u8] = match self {
            PolicySource::Example(name) => upsched_policies::policy(name)
                .ok_or_else(|| format!("no example policy {name:?}"))?,
            PolicySource::File(path) => {
                owned = std::fs::read(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                &owned
            }
        };
        let options = EngineOptions {
            mode,
            ..EngineOptions::default()
        };
        LoadedPolicy::load_with_options(bytes, &options).map_err(|e| match e {
            EngineError::Rejected { problems } => format!(
                "rejected by the checks of `upsched check`:\n  {}",
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n  ")
            ),
            EngineError::Verifier { hook, rejection } => {
                format!("rejected by the engine's verifier: hook {hook}: {rejection}")
            }
            other => format!("cannot be loaded: {other}"),
        })
    }
}

impl fmt::Display for PolicySource {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            PolicySource::Example(name) => write!(f, "{EXAMPLE_PREFIX}{name}"),
            PolicySource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A `[[tenant]]` of a scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantSpec {
    /// The policy as the scenario wrote it.
    pub policy_text: String,
    pub policy: PolicySource,
    pub config: TenantConfig,
    /// Line of the table in the scenario file, for errors found when the policy is loaded.
    pub line: Option<usize>,
    /// The tenant's scheduled replace of its policy (`replace = { at, policy }`).
    pub replace: Option<ReplaceSpec>,
}

/// A replace of a tenant's policy at a time, as the scenario wrote it.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplaceSpec {
    pub at: crate::units::Time,
    /// The new policy as the scenario wrote it.
    pub policy_text: String,
    pub policy: PolicySource,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReplace {
    at: DurationValue,
    policy: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTenant {
    policy: Spanned<String>,
    cgroup: Option<Spanned<String>>,
    level: Option<u32>,
    weight: Option<u32>,
    slice: Option<DurationValue>,
    slice_min: Option<DurationValue>,
    slice_max: Option<DurationValue>,
    park_max: Option<DurationValue>,
    watchdog: Option<DurationValue>,
    attach: Option<DurationValue>,
    detach: Option<DurationValue>,
    replace: Option<RawReplace>,
}

/// Validates the `[[tenant]]` tables. `line_of` maps a span to its line; `base` is the
/// scenario's directory (policy paths are relative to it).
pub(crate) fn from_raw(
    raw: &[RawTenant],
    file: &str,
    line_of: &dyn Fn(usize) -> usize,
) -> Result<Vec<TenantSpec>, ScenarioError> {
    let base = Path::new(file).parent().unwrap_or(Path::new(""));
    let err = |line: usize, message: String| ScenarioError {
        file: file.to_string(),
        line: Some(line),
        message,
    };
    let mut specs = Vec::new();
    for (i, t) in raw.iter().enumerate() {
        let line = line_of(t.policy.span().start);
        let policy = PolicySource::parse(t.policy.get_ref(), base)
            .map_err(|e| err(line, format!("tenant {}: policy: {e}", i + 1)))?;
        let mut config = TenantConfig::new(t.cgroup.as_ref().map_or("/", |c| c.get_ref()));
        let set = |slot: &mut u64, value: Option<DurationValue>| {
            if let Some(v) = value {
                *slot = v.0;
            }
        };
        if let Some(level) = t.level {
            config.level = level;
        }
        if let Some(weight) = t.weight {
            config.weight = weight;
        }
        set(&mut config.slice_default, t.slice);
        set(&mut config.slice_min, t.slice_min);
        set(&mut config.slice_max, t.slice_max);
        set(&mut config.park_max, t.park_max);
        set(&mut config.watchdog, t.watchdog);
        set(&mut config.attach_at, t.attach);
        config.detach_at = t.detach.map(|d| d.0);
        config.validate().map_err(|e| {
            err(
                line,
                format!("tenant {} ({}): {e}", i + 1, t.policy.get_ref()),
            )
        })?;
        let replace = t
            .replace
            .as_ref()
            .map(|r| {
                let at = r.at.0;
                if at <= config.attach_at || config.detach_at.is_some_and(|d| d <= at) {
                    return Err(format!(
                        "replace at {at} ns is not between attach ({} ns) and detach",
                        config.attach_at
                    ));
                }
                let policy = PolicySource::parse(&r.policy, base)
                    .map_err(|e| format!("replace policy: {e}"))?;
                Ok(ReplaceSpec {
                    at,
                    policy_text: r.policy.clone(),
                    policy,
                })
            })
            .transpose()
            .map_err(|e| err(line, format!("tenant {}: {e}", i + 1)))?;
        specs.push(TenantSpec {
            policy_text: t.policy.get_ref().clone(),
            policy,
            config,
            line: Some(line),
            replace,
        });
    }
    Ok(specs)
}

/// Loaded policies by source, for the runs that share them: a sweep loads (checks, verifies,
/// compiles) each policy once and every run instantiates it afresh (fresh globals), on any
/// thread. A refusal is kept too, so it is found once.
pub struct PolicyCache {
    mode: ExecMode,
    loaded: Mutex<Vec<(PolicySource, Result<LoadedPolicy, String>)>>,
}

impl PolicyCache {
    /// An empty cache whose policies run in `mode`.
    pub fn new(mode: ExecMode) -> PolicyCache {
        PolicyCache {
            mode,
            loaded: Mutex::new(Vec::new()),
        }
    }

    /// The policy of `source`, loaded on first use.
    pub fn get(&self, source: &PolicySource) -> Result<LoadedPolicy, String> {
        // Held while loading, so that threads asking for one policy at once load it once.
        let mut loaded = self
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, policy)) = loaded.iter().find(|(s, _)| s == source) {
            return policy.clone();
        }
        let policy = source.load(self.mode);
        loaded.push((source.clone(), policy.clone()));
        policy
    }
}

/// Loads the policy of every tenant spec from `cache`; an error names the scenario line and
/// the reason the policy was refused.
pub fn load(
    specs: &[TenantSpec],
    file: &str,
    cache: &PolicyCache,
) -> Result<Vec<Tenant>, ScenarioError> {
    specs
        .iter()
        .map(|spec| {
            let get = |source: &PolicySource, text: &str| {
                cache.get(source).map_err(|message| ScenarioError {
                    file: file.to_string(),
                    line: spec.line,
                    message: format!("tenant policy {text}: {message}"),
                })
            };
            let replace = spec
                .replace
                .as_ref()
                .map(|r| {
                    Ok(Replacement {
                        at: r.at,
                        name: r.policy_text.clone(),
                        policy: get(&r.policy, &r.policy_text)?,
                    })
                })
                .transpose()?;
            Ok(Tenant {
                name: spec.policy_text.clone(),
                policy: get(&spec.policy, &spec.policy_text)?,
                config: spec.config.clone(),
                replace,
            })
        })
        .collect()
}

/// A warning when the scenario declares `[[tenant]]`s and none of `policies` runs them: the
/// built-in schedulers have no tenants; `upsched`, `example:NAME` and `FILE.bpf.o` do.
pub fn unused_tenants_warning(scenario: &Scenario, policies: &[String]) -> Option<String> {
    let builtin = |p: &String| crate::BUILTIN_POLICIES.contains(&p.as_str());
    (!scenario.tenants.is_empty() && policies.iter().all(builtin)).then(|| {
        format!(
            "the scenario's {} [[tenant]] table(s) are not used: {} {} no tenants (they run under {}, example:NAME or FILE.bpf.o)",
            scenario.tenants.len(),
            policies.join(", "),
            if policies.len() == 1 { "has" } else { "have" },
            upsched::NAME
        )
    })
}

/// The scheduler a policy name stands for: a built-in (`linux-eevdf`, ...), `upsched` (the
/// mechanism with the scenario's tenants), or a tenant policy (`example:NAME`, a `.bpf.o`
/// path relative to the working directory), which runs in the mechanism bound to the root
/// cgroup next to the scenario's tenants (those keep their subtrees: the nearest cgroup wins).
/// `file` names the scenario in errors.
pub fn scheduler_for(
    name: &str,
    scenario: &Scenario,
    file: &str,
) -> Result<Box<dyn Scheduler>, String> {
    scheduler_in(name, scenario, file, ExecMode::default())
}

/// [`scheduler_for`] with tenant policies run in `mode` (JIT or interpreter).
pub fn scheduler_in(
    name: &str,
    scenario: &Scenario,
    file: &str,
    mode: ExecMode,
) -> Result<Box<dyn Scheduler>, String> {
    scheduler_from(name, scenario, file, &PolicyCache::new(mode))
}

/// [`scheduler_for`] with tenant policies taken from `cache` (and run in its mode).
pub fn scheduler_from(
    name: &str,
    scenario: &Scenario,
    file: &str,
    cache: &PolicyCache,
) -> Result<Box<dyn Scheduler>, String> {
    if let Some(builtin) = crate::sched::builtin(name, scenario) {
        return Ok(builtin);
    }
    let mut tenants = load(&scenario.tenants, file, cache).map_err(|e| e.to_string())?;
    if name == upsched::NAME {
        if tenants.is_empty() {
            return Err(format!(
                "policy {name}: the scenario declares no [[tenant]] (or give a tenant policy: --policy example:NAME or FILE.bpf.o)"
            ));
        }
    } else if PolicySource::looks_like_policy(name) {
        let source = PolicySource::parse(name, Path::new(""))?;
        let policy = cache
            .get(&source)
            .map_err(|e| format!("policy {name}: {e}"))?;
        let mut config = TenantConfig::new("/");
        if let Some(park_max) = scenario.params.policy_park_max {
            config.park_max = park_max;
        }
        config
            .validate()
            .map_err(|e| format!("policy {name}: the tenant's parameters: {e}"))?;
        tenants.push(Tenant {
            name: name.to_string(),
            policy,
            config,
            replace: None,
        });
    } else {
        return Err(format!(
            "unknown policy {name:?} (built in: {}; {}; example:NAME; FILE.bpf.o)",
            crate::BUILTIN_POLICIES.join(", "),
            upsched::NAME
        ));
    }
    let config = HostConfig::new(scenario.params.default_slice);
    config
        .validate()
        .map_err(|e| format!("the host's parameters: {e}"))?;
    let host = UpschedHost::new(config, tenants, &scenario.cgroups).with_name(name);
    Ok(Box::new(host))
}
