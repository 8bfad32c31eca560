//! Model of `mechanism.toml` (the host mechanism's constants, map value layouts and parameter
//! bounds) and the generators of its two forms: the Rust module `upsched_abi::mechanism` and
//! the C header `upsched_mechanism.h`. Both carry layout asserts (every field's offset and
//! size, every struct's size) computed from the spec, so a compiler that lays a struct out
//! differently fails the build on either side.
//!
//! The spec is validated on load (contiguous, aligned fields that end at the declared size;
//! array counts that name known constants), so a mistake in the spec fails with a message that
//! names the field.

use serde::Deserialize;
use std::fmt::Write as _;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MechanismSpec {
    pub constants: Vec<ConstantSpec>,
    pub structs: Vec<StructSpec>,
    pub host_params: Vec<ParamSpec>,
    pub tenant_params: Vec<ParamSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstantSpec {
    /// C name; the Rust name drops the `UPSCHED_` prefix.
    pub name: String,
    /// An expression valid in C and (without the prefixes) in Rust.
    pub value: String,
    /// Rust type: `usize`, `u32` or `u64` (a `u64` is an `unsigned long long` in C).
    #[serde(rename = "type")]
    pub rust_type: String,
    pub doc: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StructSpec {
    /// C tag (`struct <c>`).
    pub c: String,
    pub rust: String,
    pub doc: String,
    pub size: usize,
    /// Derive serde's traits: the broker sends the struct to its clients as it is.
    #[serde(default)]
    pub serde: bool,
    pub fields: Vec<StructFieldSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StructFieldSpec {
    pub name: String,
    /// The Rust field name where the C one is a Rust keyword (`gen`).
    pub rust: Option<String>,
    #[serde(rename = "type")]
    pub scalar: FieldType,
    /// Array length: a number or the name of a constant of the spec.
    pub count: Option<Count>,
    pub offset: usize,
    pub doc: Option<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum Count {
    Number(usize),
    Constant(String),
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    U32,
    S32,
    U64,
    S64,
    Char,
}

impl FieldType {
    pub fn size(self) -> usize {
        match self {
            FieldType::Char => 1,
            FieldType::U32 | FieldType::S32 => 4,
            FieldType::U64 | FieldType::S64 => 8,
        }
    }
    fn c_type(self) -> &'static str {
        match self {
            FieldType::U32 => "unsigned int",
            FieldType::S32 => "int",
            FieldType::U64 => "unsigned long long",
            FieldType::S64 => "long long",
            FieldType::Char => "char",
        }
    }
    fn rust_type(self) -> &'static str {
        match self {
            FieldType::U32 => "u32",
            FieldType::S32 => "i32",
            FieldType::U64 => "u64",
            FieldType::S64 => "i64",
            FieldType::Char => "u8",
        }
    }
}

/// One parameter of `HostParams` or `TenantParams`: its bounds and default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    pub name: String,
    /// Rust type of the field: `u32` or `u64`.
    #[serde(rename = "type")]
    pub rust_type: String,
    pub min: Bound,
    pub max: Bound,
    pub default: Bound,
    pub doc: String,
    /// Why the bounds are what they are, appended to the refusal of a value outside them.
    #[serde(default)]
    pub why: String,
}

/// A number, or a Rust constant expression in the scope of `upsched_abi::mechanism`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Bound {
    Number(u64),
    Expression(String),
}

impl Bound {
    fn rust(&self) -> String {
        match self {
            Bound::Number(n) => n.to_string(),
            Bound::Expression(e) => format!("({e})"),
        }
    }
}

fn rust_name(c_name: &str) -> &str {
    c_name.strip_prefix("UPSCHED_").unwrap_or(c_name)
}

fn parse_number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

impl StructFieldSpec {
    fn rust_name(&self) -> &str {
        self.rust.as_deref().unwrap_or(&self.name)
    }
}

impl MechanismSpec {
    /// Reads and validates the spec.
    pub fn load(path: &Path) -> Result<MechanismSpec, String> {
        crate::load_spec(path, MechanismSpec::validate)
    }

    /// The length of an array field (1 for a scalar).
    fn count(&self, field: &StructFieldSpec) -> Result<usize, String> {
        match &field.count {
            None => Ok(1),
            Some(Count::Number(n)) => Ok(*n),
            Some(Count::Constant(name)) => {
                let constant = self
                    .constants
                    .iter()
                    .find(|c| &c.name == name)
                    .ok_or_else(|| format!("field `{}`: no constant `{name}`", field.name))?;
                if constant.rust_type != "usize" {
                    return Err(format!(
                        "field `{}`: count `{name}` must be a usize constant",
                        field.name
                    ));
                }
                parse_number(&constant.value)
                    .map(|n| n as usize)
                    .ok_or_else(|| format!("field `{}`: `{name}` is not a number", field.name))
            }
        }
    }

    fn validate(&self) -> Result<(), String> {
        for constant in &self.constants {
            if !["usize", "u32", "u64"].contains(&constant.rust_type.as_str()) {
                return Err(format!("constant `{}`: unknown type", constant.name));
            }
        }
        for s in &self.structs {
            let mut end = 0;
            let mut align = 1;
            for field in &s.fields {
                if field.offset != end {
                    return Err(format!(
                        "{}.{} at offset {} leaves a gap or overlap (previous field ends at {end})",
                        s.c, field.name, field.offset
                    ));
                }
                if !field.offset.is_multiple_of(field.scalar.size()) {
                    return Err(format!("{}.{} is misaligned", s.c, field.name));
                }
                align = align.max(field.scalar.size());
                end = field.offset + field.scalar.size() * self.count(field)?;
            }
            if end != s.size || !s.size.is_multiple_of(align) {
                return Err(format!(
                    "{}: fields end at {end}, size is {} (must be the end, a multiple of {align})",
                    s.c, s.size
                ));
            }
        }
        for p in self.host_params.iter().chain(&self.tenant_params) {
            if !["u32", "u64"].contains(&p.rust_type.as_str()) {
                return Err(format!("parameter `{}`: type must be u32 or u64", p.name));
            }
        }
        Ok(())
    }

    /// Rust: the constants, the structs with their layout asserts, the parameter bounds and
    /// the parameter structs (with `Default` and `check_bounds`). Expects `ParamBound` and
    /// `ParamError` in scope.
    pub fn rust_module(&self) -> String {
        let mut out =
            String::from("// Generated from mechanism.toml by upsched-build. Do not edit.\n");
        for c in &self.constants {
            let value = c.value.replace("UPSCHED_", "");
            writeln!(
                out,
                "/// {}\npub const {}: {} = {value};",
                c.doc,
                rust_name(&c.name),
                c.rust_type
            )
            .unwrap();
        }
        for s in &self.structs {
            self.rust_struct(&mut out, s);
        }
        rust_params(
            &mut out,
            "HostParams",
            "HOST",
            "The host's parameters.",
            &self.host_params,
        );
        rust_params(
            &mut out,
            "TenantParams",
            "TENANT",
            "One tenant's parameters.",
            &self.tenant_params,
        );
        out
    }

    fn rust_struct(&self, out: &mut String, s: &StructSpec) {
        let counts: Vec<usize> = s
            .fields
            .iter()
            .map(|f| self.count(f).expect("validated on load"))
            .collect();
        // The standard library implements Default for arrays of up to 32 elements only.
        let default = if counts.iter().all(|n| *n <= 32) {
            ", Default"
        } else {
            ""
        };
        let serde = if s.serde {
            ", serde::Serialize, serde::Deserialize"
        } else {
            ""
        };
        writeln!(
            out,
            "/// {} (`struct {}`)\n#[repr(C)]\n#[derive(Clone, Copy, Debug, PartialEq, Eq{default}{serde})]\npub struct {} {{",
            s.doc, s.c, s.rust
        )
        .unwrap();
        for f in &s.fields {
            if let Some(doc) = &f.doc {
                writeln!(out, "    /// {doc}").unwrap();
            }
            let ty = match &f.count {
                None => f.scalar.rust_type().to_string(),
                Some(Count::Number(n)) => format!("[{}; {n}]", f.scalar.rust_type()),
                Some(Count::Constant(name)) => {
                    format!("[{}; {}]", f.scalar.rust_type(), rust_name(name))
                }
            };
            writeln!(out, "    pub {}: {ty},", f.rust_name()).unwrap();
        }
        out.push_str("}\n");
        let ty = &s.rust;
        writeln!(
            out,
            "const _: () = assert!(core::mem::size_of::<{ty}>() == {}, \"{ty}: size differs from mechanism.toml\");",
            s.size
        )
        .unwrap();
        for (f, count) in s.fields.iter().zip(counts) {
            let name = f.rust_name();
            writeln!(
                out,
                "const _: () = assert!(core::mem::offset_of!({ty}, {name}) == {}, \"{ty}.{name}: offset differs from mechanism.toml\");",
                f.offset
            )
            .unwrap();
            writeln!(
                out,
                "const _: () = assert!(size_of_field(|v: &{ty}| &v.{name}) == {}, \"{ty}.{name}: size differs from mechanism.toml\");",
                f.scalar.size() * count
            )
            .unwrap();
        }
    }

    /// C: the header `upsched_mechanism.h`: defines, structs and `_Static_assert`s of every
    /// struct's size and every field's offset and size.
    pub fn c_header(&self) -> String {
        let mut out = String::from(
            "/* SPDX-License-Identifier: GPL-2.0-only */\n\
             /* Generated from crates/upsched-abi/mechanism.toml by upsched-build. Do not edit. */\n\
             #ifndef UPSCHED_MECHANISM_H\n#define UPSCHED_MECHANISM_H\n\n",
        );
        for c in &self.constants {
            let value = if c.rust_type == "u64" {
                format!("((unsigned long long)({}))", c.value)
            } else {
                format!("({})", c.value)
            };
            writeln!(out, "/* {} */\n#define {} {value}", c.doc, c.name).unwrap();
        }
        for s in &self.structs {
            writeln!(out, "\n/* {} */\nstruct {} {{", s.doc, s.c).unwrap();
            for f in &s.fields {
                let array = match &f.count {
                    None => String::new(),
                    Some(Count::Number(n)) => format!("[{n}]"),
                    Some(Count::Constant(name)) => format!("[{name}]"),
                };
                let doc = f
                    .doc
                    .as_ref()
                    .map(|d| format!(" /* {d} */"))
                    .unwrap_or_default();
                writeln!(out, "\t{} {}{array};{doc}", f.scalar.c_type(), f.name).unwrap();
            }
            out.push_str("};\n");
            let tag = format!("struct {}", s.c);
            writeln!(
                out,
                "_Static_assert(sizeof({tag}) == {}, \"{tag}: size differs from mechanism.toml\");",
                s.size
            )
            .unwrap();
            for f in &s.fields {
                let size = f.scalar.size() * self.count(f).expect("validated on load");
                writeln!(
                    out,
                    "_Static_assert(__builtin_offsetof({tag}, {name}) == {}, \"{name}: offset differs from mechanism.toml\");\n\
                     _Static_assert(sizeof((({tag} *)0)->{name}) == {size}, \"{name}: size differs from mechanism.toml\");",
                    f.offset,
                    name = f.name,
                )
                .unwrap();
            }
        }
        out.push_str("\n#endif /* UPSCHED_MECHANISM_H */\n");
        out
    }
}

/// One `ParamBound` constant per parameter (`{prefix}_{NAME}`) and the struct `ty` of the
/// parameters, with the defaults and the check of every bound.
fn rust_params(out: &mut String, ty: &str, prefix: &str, doc: &str, params: &[ParamSpec]) {
    let bound_name = |p: &ParamSpec| format!("{prefix}_{}", p.name.to_uppercase());
    for p in params {
        let name = bound_name(p);
        writeln!(
            out,
            "/// Bounds of `{ty}::{field}`.\npub const {name}: ParamBound = ParamBound {{ name: {field:?}, min: {min}, max: {max}, default: {default}, why: {why:?} }};\n\
             // A minimum of 0 makes the first comparison trivially true.\n\
             #[allow(clippy::absurd_extreme_comparisons)]\n\
             const _: () = assert!({name}.min <= {name}.default && {name}.default <= {name}.max{fits}, \"{field}: default outside its bounds, or bounds outside the field's type\");",
            field = p.name,
            min = p.min.rust(),
            max = p.max.rust(),
            default = p.default.rust(),
            why = p.why,
            fits = if p.rust_type == "u32" {
                format!(" && {name}.max <= u32::MAX as u64")
            } else {
                String::new()
            },
        )
        .unwrap();
    }
    writeln!(
        out,
        "/// {doc}\n#[derive(Clone, Copy, Debug, PartialEq, Eq)]\npub struct {ty} {{"
    )
    .unwrap();
    for p in params {
        writeln!(
            out,
            "    /// {}\n    pub {}: {},",
            p.doc, p.name, p.rust_type
        )
        .unwrap();
    }
    writeln!(
        out,
        "}}\nimpl Default for {ty} {{\n    /// Every parameter's default.\n    fn default() -> Self {{\n        {ty} {{"
    )
    .unwrap();
    for p in params {
        // A u32 parameter's bounds fit its type (asserted above); the checks compare in u64.
        let cast = if p.rust_type == "u32" { " as u32" } else { "" };
        writeln!(
            out,
            "            {}: {}.default{cast},",
            p.name,
            bound_name(p)
        )
        .unwrap();
    }
    writeln!(
        out,
        "        }}\n    }}\n}}\nimpl {ty} {{\n    /// Bounds of every parameter, in the order of the fields.\n    pub const BOUNDS: &[ParamBound] = &[{}];\n\n    /// Checks every parameter against its own bounds.\n    fn check_bounds(&self) -> Result<(), ParamError> {{",
        params
            .iter()
            .map(bound_name)
            .collect::<Vec<_>>()
            .join(", ")
    )
    .unwrap();
    for p in params {
        let value = if p.rust_type == "u32" {
            format!("u64::from(self.{})", p.name)
        } else {
            format!("self.{}", p.name)
        };
        writeln!(out, "        {}.check({value})?;", bound_name(p)).unwrap();
    }
    out.push_str("        Ok(())\n    }\n}\n");
}
