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
}

impl FieldSpec {
    pub fn size(&self) -> usize {
        self.scalar.size() * self.count
    }
}

impl AbiSpec {
    /// Reads and validates the spec.
    pub fn load(path: &Path) -> Result<AbiSpec, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let spec: AbiSpec =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        spec.validate()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(spec)
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
        for kfunc in &self.kfuncs {
            self.check_capability(&kfunc.capability)?;
        }
        Ok(())
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

    /// Rust: constants (without the `UPSCHED_` prefix) and the static tables of fields, hooks,
    /// kfuncs and capabilities. Expects `FieldInfo`, `HookInfo`, `KfuncInfo`, `Capability`,
    /// `Direction` in scope.
    pub fn rust_tables(&self) -> String {
        let mut out = String::from("// Generated from abi.toml by upsched-build. Do not edit.\n");
        for (name, value) in &self.constants {
            let rust_name = name.strip_prefix("UPSCHED_").unwrap_or(name);
            let ty = if *value < 0 { "i32" } else { "u32" };
            writeln!(out, "pub const {rust_name}: {ty} = {value};").unwrap();
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
            writeln!(
                out,
                "    KfuncInfo {{ name: {:?}, capability: {:?} }},",
                k.name, k.capability
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
