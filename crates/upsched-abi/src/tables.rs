//! Types of the generated ABI tables, the tables themselves, and look-ups over them.

use serde::Serialize;

/// Who writes a context field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Written by the host before the call; read-only for the policy.
    In,
    /// Pre-filled by the host with the default decision; the policy may overwrite it.
    Out,
}

/// One field of the context.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct FieldInfo {
    pub name: &'static str,
    /// Byte offset in the context.
    pub offset: usize,
    /// Size in bytes (of the whole array for array fields).
    pub size: usize,
    /// Number of elements (1 for scalars).
    pub count: usize,
    /// Whether the (element) type is signed (`s32` in abi.toml) rather than unsigned.
    pub signed: bool,
    pub dir: Direction,
    /// Capability needed to read the field, if any.
    pub read_cap: Option<&'static str>,
    /// Capability needed to write the field (outputs only).
    pub write_cap: Option<&'static str>,
}

/// One hook of the ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct HookInfo {
    /// Value of `ctx->hook` for this hook.
    pub id: u32,
    /// Hook name; the policy's program is in section `freplace/upsched_<name>`.
    pub name: &'static str,
    /// Output fields the host reads after this hook.
    pub outputs: &'static [&'static str],
}

/// A kfunc a policy may call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct KfuncInfo {
    pub name: &'static str,
    pub capability: &'static str,
    /// Its parameters, in r1.. order.
    pub args: &'static [KfuncArg],
}

/// A parameter of a kfunc.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct KfuncArg {
    pub name: &'static str,
    /// Size in bytes (4 or 8): the callee sees only this many low bytes of the register.
    pub size: usize,
    /// The only values a policy may pass (proven at every call site before the object is
    /// admitted); `None`: any value.
    pub domain: Option<&'static [NamedValue]>,
}

/// A named constant (of a kfunc argument domain).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct NamedValue {
    pub name: &'static str,
    pub value: u64,
}

/// A scheduling capability a user may be granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Capability {
    pub name: &'static str,
    pub description: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/abi_tables.rs"));

/// Section-name prefix of a policy's hook programs.
pub const HOOK_SECTION_PREFIX: &str = "freplace/upsched_";

/// ELF section holding the policy's `struct upsched_policy_info`.
pub const POLICY_INFO_SECTION: &str = ".upsched";

/// Symbol name of the policy's `struct upsched_policy_info`.
pub const POLICY_INFO_SYMBOL: &str = "upsched_policy_info";

/// The field covering byte `offset` of the context.
pub fn field_at(offset: usize) -> Option<&'static FieldInfo> {
    FIELDS
        .iter()
        .find(|f| offset >= f.offset && offset < f.offset + f.size)
}

/// The field named `name`.
pub fn field(name: &str) -> Option<&'static FieldInfo> {
    FIELDS.iter().find(|f| f.name == name)
}

/// The hook named `name`.
pub fn hook(name: &str) -> Option<&'static HookInfo> {
    HOOKS.iter().find(|h| h.name == name)
}

/// The allowed kfunc named `name`.
pub fn kfunc(name: &str) -> Option<&'static KfuncInfo> {
    KFUNCS.iter().find(|k| k.name == name)
}

/// The description of capability `name`.
pub fn capability(name: &str) -> Option<&'static Capability> {
    CAPABILITIES.iter().find(|c| c.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_agree_with_the_tables() {
        assert_eq!(field("now_ns").map(|f| f.offset), Some(8));
        assert_eq!(field_at(100).map(|f| f.name), Some("hints"));
        assert_eq!(field_at(CTX_SIZE), None);
        assert_eq!(hook("enqueue").map(|h| h.id), Some(1));
        assert!(hook("dispatch").is_none());
        let nr_queued = kfunc("scx_bpf_dsq_nr_queued").expect("allowed");
        assert_eq!(nr_queued.args.len(), 1);
        assert_eq!(
            nr_queued.args[0].domain,
            Some(
                &[NamedValue {
                    name: "SCX_DSQ_LOCAL",
                    value: 1 << 63 | 2
                }][..]
            )
        );
        assert!(kfunc("scx_bpf_dsq_insert").is_none());
    }

    #[test]
    fn every_capability_used_is_described() {
        let used = FIELDS
            .iter()
            .flat_map(|f| [f.read_cap, f.write_cap])
            .flatten()
            .chain(KFUNCS.iter().map(|k| k.capability));
        for cap in used {
            assert!(capability(cap).is_some(), "{cap} has no description");
        }
    }

    #[test]
    fn hook_ids_follow_the_table_order() {
        for (index, hook) in HOOKS.iter().enumerate() {
            assert_eq!(hook.id as usize, index);
        }
        assert_eq!(HOOKS.len(), 7);
    }
}
