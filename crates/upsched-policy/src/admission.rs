//! Admission: the one value a checked policy travels as. [`admit`] parses an object, runs every
//! check of `upsched check` (including the engine's verifier) and, if it passes, returns an
//! [`AdmittedPolicy`]: the bytes, the parsed object, the report (analysis, verdict,
//! capabilities), the verified engine preparation and the content hash. The kernel backend
//! attaches it, the engine loads it (`LoadedPolicy::from_admitted`) and the broker will grant it,
//! none of them parsing or verifying again. Only [`admit`] makes one, so holding an
//! `AdmittedPolicy` proves the checks ran on exactly these bytes.

use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use upsched_abi::HookInfo;

use crate::check::{CapabilityUse, CheckReport, Limits, assess};
use crate::object::PolicyObject;
use crate::prepare::Prepared;

/// SHA-256 of a policy object's bytes: what a grant or a log names the policy by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    pub fn of(bytes: &[u8]) -> ContentHash {
        ContentHash(Sha256::digest(bytes).into())
    }
}

impl fmt::Display for ContentHash {
    /// Lower-case hex, as `sha256sum` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

/// A policy object that passed admission under some [`Limits`].
pub struct AdmittedPolicy {
    bytes: Arc<[u8]>,
    object: PolicyObject,
    report: CheckReport,
    prepared: Prepared,
    hash: ContentHash,
}

impl fmt::Debug for AdmittedPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmittedPolicy")
            .field("name", &self.name())
            .field("hash", &format_args!("{}", self.hash))
            .field("bytes", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// Why [`admit`] refused an object: the full report, its problems non-empty.
#[derive(Clone, Debug)]
pub struct Refused(pub Box<CheckReport>);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let problems: Vec<String> = self.0.problems.iter().map(ToString::to_string).collect();
        write!(f, "policy rejected: {}", problems.join("; "))
    }
}

impl std::error::Error for Refused {}

/// Checks `bytes` against the ABI and `limits` (everything `upsched check` reports) and admits
/// the object if no problem was found.
pub fn admit(bytes: impl Into<Arc<[u8]>>, limits: &Limits) -> Result<AdmittedPolicy, Refused> {
    let bytes = bytes.into();
    let (report, checked) = assess(&bytes, limits);
    match checked {
        Some((object, prepared)) if report.accepted => Ok(AdmittedPolicy {
            hash: ContentHash::of(&bytes),
            bytes,
            object,
            report,
            prepared,
        }),
        _ => Err(Refused(Box::new(report))),
    }
}

impl AdmittedPolicy {
    /// The object's bytes, exactly as admitted (what the kernel loads).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn object(&self) -> &PolicyObject {
        &self.object
    }

    /// The admission report: hooks, context accesses, globals, kfuncs, the engine verifier's
    /// verdict, warnings.
    pub fn report(&self) -> &CheckReport {
        &self.report
    }

    /// The name the policy declared with `UPSCHED_POLICY` (empty if none).
    pub fn name(&self) -> &str {
        self.object
            .info
            .as_ref()
            .map_or("", |info| info.name.as_str())
    }

    /// The hooks the policy implements, in hook id order.
    pub fn hooks(&self) -> impl Iterator<Item = &'static HookInfo> + '_ {
        self.prepared.hooks.iter().map(|hook| hook.info)
    }

    /// The scheduling capabilities the policy needs, with what needs each.
    pub fn capabilities(&self) -> &[CapabilityUse] {
        &self.report.capabilities
    }

    pub fn hash(&self) -> ContentHash {
        self.hash
    }

    /// The verified preparation the engine loads.
    pub(crate) fn prepared(&self) -> &Prepared {
        &self.prepared
    }
}
