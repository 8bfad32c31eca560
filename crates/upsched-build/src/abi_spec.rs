//! Model of `abi.toml` and the generators that keep the C header and the Rust mirror in step.
//!
//! The spec is validated on load (contiguous, aligned, in-bounds fields; known capabilities;
//! hook outputs that are output fields), so a mistake in the spec itself fails the build with a
//! message that names the field.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbiSpec {
    /// C name of the context struct.
    pub context: String,
    /// sizeof the context struct.
    pub size: usize,
    pub constants: BTreeMap<String, i64>,
    pub hooks: Vec<HookSpec>,
    pub fields: Vec<FieldSpec>,
    pub kfuncs: Vec<KfuncSpec>,
    pub capabilities: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookSpec {
    pub name: String,
    pub outputs: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub scalar: Scalar,
    #[serde(default = "one")]
    pub count: usize,
    pub offset: usize,
    pub dir: Direction,
    pub read_cap: Option<String>,
    pub write_cap: Option<String>,
}

fn one() -> usize {
    1
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Scalar {
    U32,
    S32,
    U64,
}

impl Scalar {
    pub fn size(self) -> usize {
        match self {
            Scalar::U32 | Scalar::S32 => 4,
            Scalar::U64 => 8,
        }
    }
    pub fn signed(self) -> bool {
        self == Scalar::S32
    }
    /// The type's name in `upsched.h`.
    pub fn c_type(self) -> &'static str {
        match self {
            Scalar::U32 => "upsched_u32",
            Scalar::S32 => "upsched_s32",
            Scalar::U64 => "upsched_u64",
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KfuncSpec {
    pub name: String,
    pub capability: String,
    pub returns: Scalar,
    #[serde(default)]
    pub args: Vec<KfuncArgSpec>,
}

/// One parameter of a kfunc; with a `domain`, the only values a policy may pass.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KfuncArgSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub scalar: Scalar,
    pub domain: Option<Vec<NamedValueSpec>>,
}

/// A named constant of an argument domain. `value` is a string (decimal or `0x` hex) because
/// TOML integers are signed 64-bit and sched_ext's ids use bit 63.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedValueSpec {
    pub name: String,
    pub value: String,
}

impl NamedValueSpec {
    pub fn parse_value(&self) -> Result<u64, String> {
        let text = self.value.trim();
        let parsed = match text.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => text.parse(),
        };
        parsed.map_err(|e| format!("value {:?} of `{}`: {e}", self.value, self.name))
    }
}

impl FieldSpec {
    pub fn size(&self) -> usize {
        self.scalar.size() * self.count
    }
}

impl AbiSpec {
    /// Reads and validates the spec.
    pub fn load(path: &Path) -> Result<AbiSpec, String> {
        crate::load_spec(path, AbiSpec::validate)
    }

    fn validate(&self) -> Result<(), String> {
        let mut end = 0;
        for field in &self.fields {
            if field.offset != end {
                return Err(format!(
                    "field `{}` at offset {} leaves a gap or overlap (previous field ends at {end})",
                    field.name, field.offset
                ));
            }
            if !field.offset.is_multiple_of(field.scalar.size()) {
                return Err(format!("field `{}` is misaligned", field.name));
            }
            if field.dir == Direction::In && field.write_cap.is_some() {
                return Err(format!("input field `{}` has a write_cap", field.name));
            }
            for cap in [&field.read_cap, &field.write_cap].into_iter().flatten() {
                self.check_capability(cap)?;
            }
            end = field.offset + field.size();
        }
        if end != self.size {
            return Err(format!("fields end at {end} but size is {}", self.size));
        }
        if !self.size.is_multiple_of(8) {
            return Err(format!("size {} is not a multiple of 8", self.size));
        }
        for hook in &self.hooks {
            // The name becomes C and Rust identifiers (stubs, macros, constants).
            let identifier = hook.name.starts_with(|c: char| c.is_ascii_lowercase())
                && hook
                    .name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !identifier {
                return Err(format!(
                    "hook name `{}` is not a lowercase identifier",
                    hook.name
                ));
            }
            for output in &hook.outputs {
                match self.fields.iter().find(|f| &f.name == output) {
                    Some(f) if f.dir == Direction::Out => {}
                    _ => {
                        return Err(format!(
                            "hook `{}` lists `{output}`, which is not an output field",
                            hook.name
                        ));
                    }
                }
            }
        }
        let mut value_names = std::collections::BTreeSet::new();
        for kfunc in &self.kfuncs {
            self.check_capability(&kfunc.capability)?;
            if kfunc.args.len() > 5 {
                return Err(format!("kfunc `{}` has more than 5 arguments", kfunc.name));
            }
            for arg in &kfunc.args {
                for value in arg.domain.iter().flatten() {
                    // Each name becomes one constant in Rust and is asserted once in C.
                    if !value_names.insert(value.name.as_str()) {
                        return Err(format!("domain value `{}` is named twice", value.name));
                    }
                    let number = value.parse_value()?;
                    let bits = 8 * arg.scalar.size() as u32;
                    if bits < 64 && number >> bits != 0 {
                        return Err(format!(
                            "`{}` ({number:#x}) does not fit argument `{}` of `{}`",
                            value.name, arg.name, kfunc.name
                        ));
                    }
                }
                if arg.domain.as_ref().is_some_and(Vec::is_empty) {
                    return Err(format!(
                        "argument `{}` of `{}` has an empty domain: remove the kfunc instead",
                        arg.name, kfunc.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every named value of every kfunc argument domain, with its number.
    fn domain_values(&self) -> impl Iterator<Item = (&NamedValueSpec, u64)> {
        self.kfuncs
            .iter()
            .flat_map(|k| &k.args)
            .flat_map(|a| a.domain.iter().flatten())
            .map(|v| (v, v.parse_value().expect("validated on load")))
    }

    fn check_capability(&self, cap: &str) -> Result<(), String> {
        if self.capabilities.contains_key(cap) {
            Ok(())
        } else {
            Err(format!(
                "capability `{cap}` is not described in [capabilities]"
            ))
        }
    }

    /// Rust: constants (without the `UPSCHED_` prefix; the named values of kfunc argument
    /// domains as `u64`) and the static tables of fields, hooks, kfuncs and capabilities.
    /// Expects `FieldInfo`, `HookInfo`, `KfuncInfo`, `KfuncArg`, `NamedValue`, `Capability`,
    /// `Direction` in scope.
    pub fn rust_tables(&self) -> String {
        let mut out = String::from("// Generated from abi.toml by upsched-build. Do not edit.\n");
        for (name, value) in &self.constants {
            let rust_name = name.strip_prefix("UPSCHED_").unwrap_or(name);
            let ty = if *value < 0 { "i32" } else { "u32" };
            writeln!(out, "pub const {rust_name}: {ty} = {value};").unwrap();
        }
        for (value, number) in self.domain_values() {
            writeln!(out, "pub const {}: u64 = {number:#x};", value.name).unwrap();
        }
        writeln!(out, "/// sizeof(struct {}).", self.context).unwrap();
        writeln!(out, "pub const CTX_SIZE: usize = {};", self.size).unwrap();

        out.push_str("pub static FIELDS: &[FieldInfo] = &[\n");
        for f in &self.fields {
            writeln!(
                out,
                "    FieldInfo {{ name: {:?}, offset: {}, size: {}, count: {}, signed: {}, dir: Direction::{:?}, read_cap: {:?}, write_cap: {:?} }},",
                f.name, f.offset, f.size(), f.count, f.scalar.signed(), f.dir, f.read_cap, f.write_cap
            )
            .unwrap();
        }
        out.push_str("];\n");

        writeln!(out, "/// Number of hooks.").unwrap();
        writeln!(out, "pub const NR_HOOKS: usize = {};", self.hooks.len()).unwrap();
        for (id, h) in self.hooks.iter().enumerate() {
            writeln!(out, "/// Id of hook `{}`.", h.name).unwrap();
            writeln!(out, "pub const HOOK_{}: u32 = {id};", h.name.to_uppercase()).unwrap();
        }
        out.push_str("pub static HOOKS: &[HookInfo] = &[\n");
        for (id, h) in self.hooks.iter().enumerate() {
            writeln!(
                out,
                "    HookInfo {{ id: {id}, name: {:?}, outputs: &{:?} }},",
                h.name, h.outputs
            )
            .unwrap();
        }
        out.push_str("];\n");

        out.push_str("pub static KFUNCS: &[KfuncInfo] = &[\n");
        for k in &self.kfuncs {
            let args: Vec<String> = k
                .args
                .iter()
                .map(|a| {
                    let domain = match &a.domain {
                        Some(values) => format!(
                            "Some(&[{}])",
                            values
                                .iter()
                                .map(|v| format!(
                                    "NamedValue {{ name: {:?}, value: {} }}",
                                    v.name, v.name
                                ))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        None => "None".to_string(),
                    };
                    format!(
                        "KfuncArg {{ name: {:?}, size: {}, domain: {domain} }}",
                        a.name,
                        a.scalar.size()
                    )
                })
                .collect();
            writeln!(
                out,
                "    KfuncInfo {{ name: {:?}, capability: {:?}, args: &[{}] }},",
                k.name,
                k.capability,
                args.join(", ")
            )
            .unwrap();
        }
        out.push_str("];\n");

        out.push_str("pub static CAPABILITIES: &[Capability] = &[\n");
        for (name, description) in &self.capabilities {
            writeln!(
                out,
                "    Capability {{ name: {name:?}, description: {description:?} }},"
            )
            .unwrap();
        }
        out.push_str("];\n");
        out
    }

    /// Rust: compile-time asserts that the hand-written mirror `ty` has exactly the spec's
    /// layout. Expects `core::mem::offset_of` and `scalar_layout` in scope.
    pub fn rust_layout_asserts(&self, ty: &str) -> String {
        let mut out = String::from("// Generated from abi.toml by upsched-build. Do not edit.\n");
        writeln!(
            out,
            "const _: () = assert!(core::mem::size_of::<{ty}>() == {}, \"{ty}: size differs from abi.toml\");",
            self.size
        )
        .unwrap();
        for f in &self.fields {
            let name = &f.name;
            writeln!(
                out,
                "const _: () = assert!(core::mem::offset_of!({ty}, {name}) == {}, \"{ty}.{name}: offset differs from abi.toml\");",
                f.offset
            )
            .unwrap();
            writeln!(
                out,
                "const _: () = assert!(matches!(scalar_layout(|c: &{ty}| &c.{name}), ({}, {})), \"{ty}.{name}: type differs from abi.toml\");",
                f.size(),
                f.scalar.signed()
            )
            .unwrap();
        }
        out
    }

    /// C: `_Static_assert`s that `upsched_sdk.h` declares every kfunc with the spec's prototype
    /// and defines the named values of the argument domains as the spec does, and that it has
    /// the definition macro of every hook (`UPSCHED_SELECT_CPU(ctx)`, ...).
    pub fn c_sdk_asserts(&self) -> String {
        let mut out = String::from(
            "/* Generated from abi.toml by upsched-build. Do not edit. */\n#include \"upsched_sdk.h\"\n",
        );
        for k in &self.kfuncs {
            let params: Vec<&str> = k.args.iter().map(|a| a.scalar.c_type()).collect();
            let params = if params.is_empty() {
                "void".to_string()
            } else {
                params.join(", ")
            };
            writeln!(
                out,
                "_Static_assert(__builtin_types_compatible_p(__typeof__({name}), {ret}({params})), \"{name}: prototype differs from abi.toml\");",
                name = k.name,
                ret = k.returns.c_type(),
            )
            .unwrap();
        }
        for (value, number) in self.domain_values() {
            writeln!(
                out,
                "_Static_assert({name} == {number:#x}ULL, \"{name} differs from abi.toml\");",
                name = value.name
            )
            .unwrap();
        }
        for hook in &self.hooks {
            let mac = format!("UPSCHED_{}", hook.name.to_uppercase());
            writeln!(
                out,
                "#ifndef {mac}\n#error \"upsched_sdk.h has no {mac} for hook {} of abi.toml\"\n#endif",
                hook.name
            )
            .unwrap();
        }
        out
    }

    /// C: the hooks as an X-macro, `UPSCHED_HOOKS(X, arg)` expanding to `X(arg, name)` for
    /// each hook in id order, for C that needs one definition per hook (the host's stubs).
    pub fn c_hook_list(&self) -> String {
        let mut out = String::from(
            "/* Generated from abi.toml by upsched-build. Do not edit. */\n#define UPSCHED_HOOKS(X, arg)",
        );
        for h in &self.hooks {
            write!(out, " X(arg, {})", h.name).unwrap();
        }
        out.push('\n');
        out
    }

    /// C: `_Static_assert`s that `upsched.h` matches the spec. Include after `upsched.h`.
    pub fn c_layout_asserts(&self) -> String {
        let ctx = format!("struct {}", self.context);
        let mut out = String::from(
            "/* Generated from abi.toml by upsched-build. Do not edit. */\n#include \"upsched.h\"\n",
        );
        writeln!(
            out,
            "_Static_assert(sizeof({ctx}) == {}, \"{ctx}: size differs from abi.toml\");",
            self.size
        )
        .unwrap();
        for f in &self.fields {
            let name = &f.name;
            let member = if f.count > 1 {
                format!("((({ctx} *)0)->{name}[0])")
            } else {
                format!("((({ctx} *)0)->{name})")
            };
            writeln!(
                out,
                "_Static_assert(__builtin_offsetof({ctx}, {name}) == {}, \"{name}: offset differs from abi.toml\");",
                f.offset
            )
            .unwrap();
            writeln!(
                out,
                "_Static_assert(sizeof((({ctx} *)0)->{name}) == {}, \"{name}: size differs from abi.toml\");",
                f.size()
            )
            .unwrap();
            let signed_cmp = if f.scalar.signed() { "<" } else { ">" };
            writeln!(
                out,
                "_Static_assert((__typeof__({member}))-1 {signed_cmp} 0, \"{name}: signedness differs from abi.toml\");"
            )
            .unwrap();
        }
        for (name, value) in &self.constants {
            writeln!(
                out,
                "_Static_assert({name} == {value}, \"{name} differs from abi.toml\");"
            )
            .unwrap();
        }
        for (id, hook) in self.hooks.iter().enumerate() {
            writeln!(
                out,
                "_Static_assert(UPSCHED_HOOK_{} == {id}, \"hook id of {} differs from abi.toml\");",
                hook.name.to_uppercase(),
                hook.name
            )
            .unwrap();
        }
        out
    }
}
