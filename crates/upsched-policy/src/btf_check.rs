//! The sanity rules the kernel applies when it loads an object's `.BTF` (kernel/bpf/btf.c,
//! `btf_parse`): a well-formed header and string section, known kinds whose records fit, names
//! and type references in range, and no type loops. libbpf hands the object's BTF to the
//! kernel before it loads any program, so BTF that breaks one of these rules makes the whole
//! object unloadable; `btf-rs` (which reads the types for our own checks) accepts some of it.
//!
//! Loops are found on the two relations the kernel resolves: the size of a type (through
//! modifiers, typedefs, array elements, struct and union members, variables; a pointer needs
//! no size of its target) and pointer chains (pointers and modifiers must end in some other
//! kind). A struct that holds a pointer to itself, directly or through a typedef, is fine.

use btf_rs::{Btf, Type};
use upsched_ebpf::ArgSpec;

const MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;
/// Largest string offset the kernel accepts (`BTF_MAX_NAME_OFFSET`).
const MAX_NAME_OFFSET: usize = 0x00ff_ffff;
/// Most types the kernel accepts (`BTF_MAX_TYPE`).
const MAX_TYPES: usize = 0x000f_ffff;

const INT: u32 = 1;
const PTR: u32 = 2;
const ARRAY: u32 = 3;
const STRUCT: u32 = 4;
const UNION: u32 = 5;
const ENUM: u32 = 6;
const FWD: u32 = 7;
const TYPEDEF: u32 = 8;
const VOLATILE: u32 = 9;
const CONST: u32 = 10;
const RESTRICT: u32 = 11;
const FUNC: u32 = 12;
const FUNC_PROTO: u32 = 13;
const VAR: u32 = 14;
const DATASEC: u32 = 15;
const FLOAT: u32 = 16;
const DECL_TAG: u32 = 17;
const TYPE_TAG: u32 = 18;
const ENUM64: u32 = 19;

/// One type record: its kind and the ids of the types it refers to, split by relation.
struct TypeRecord {
    kind: u32,
    /// Types whose size this one needs.
    size_deps: Vec<u32>,
    /// The target, for pointers and modifiers.
    target: Option<u32>,
    /// Other referenced types (checked for range only).
    other_refs: Vec<u32>,
}

fn is_modifier(kind: u32) -> bool {
    matches!(kind, TYPEDEF | VOLATILE | CONST | RESTRICT | TYPE_TAG)
}

fn word(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// Checks the raw `.BTF` section `bytes` as the kernel would; the reason when it would refuse.
pub fn validate(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < HEADER_LEN {
        return Err(format!(
            "{} bytes, shorter than the BTF header",
            bytes.len()
        ));
    }
    let magic = u16::from_le_bytes([bytes[0], bytes[1]]);
    if magic != MAGIC {
        return Err(format!("bad magic {magic:#06x} (expected {MAGIC:#06x})"));
    }
    if bytes[2] != 1 {
        return Err(format!("unsupported version {}", bytes[2]));
    }
    if bytes[3] != 0 {
        return Err(format!("unsupported flags {:#x}", bytes[3]));
    }
    let field = |at| word(bytes, at).map(|w| w as usize).unwrap_or(usize::MAX);
    let hdr_len = field(4);
    if hdr_len < HEADER_LEN || hdr_len > bytes.len() {
        return Err(format!("header length {hdr_len} out of range"));
    }
    let data = &bytes[hdr_len..];
    let (type_off, type_len, str_off, str_len) = (field(8), field(12), field(16), field(20));
    let within = |off: usize, len: usize| off.checked_add(len).is_some_and(|end| end <= data.len());
    if !within(type_off, type_len) || !within(str_off, str_len) {
        return Err("type or string section beyond the end of the BTF data".into());
    }
    if type_off % 4 != 0 {
        return Err(format!("type section at {type_off} is not 4-byte aligned"));
    }
    if type_off < str_off + str_len && str_off < type_off + type_len {
        return Err("type and string sections overlap".into());
    }
    let strings = &data[str_off..str_off + str_len];
    if strings.first() != Some(&0) || strings.last() != Some(&0) || str_len > MAX_NAME_OFFSET {
        return Err("string section must start and end with NUL and be under 16 MiB".into());
    }
    let types = parse_types(&data[type_off..type_off + type_len], strings)?;
    let count = types.len() as u32;
    for (index, record) in types.iter().enumerate() {
        let id = index + 1;
        for referenced in record
            .size_deps
            .iter()
            .chain(&record.target)
            .chain(&record.other_refs)
        {
            if *referenced > count {
                return Err(format!(
                    "type [{id}] refers to type [{referenced}]; the last type is [{count}]"
                ));
            }
        }
    }
    find_loop(&types, |record| record.size_deps.clone())?;
    find_loop(&types, |record| {
        record
            .target
            .filter(|&t| {
                t != 0 && {
                    let kind = types[t as usize - 1].kind;
                    kind == PTR || is_modifier(kind)
                }
            })
            .into_iter()
            .collect()
    })
}

/// Decodes every type record (ids from 1), checking each fits and has a known kind.
fn parse_types(section: &[u8], strings: &[u8]) -> Result<Vec<TypeRecord>, String> {
    let mut types = Vec::new();
    let mut at = 0;
    while at < section.len() {
        let id = types.len() + 1;
        if id > MAX_TYPES {
            return Err(format!("more than {MAX_TYPES} types"));
        }
        let truncated = || format!("type [{id}] is truncated");
        let (name_off, info, size_or_type) = match (
            word(section, at),
            word(section, at + 4),
            word(section, at + 8),
        ) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => return Err(truncated()),
        };
        if name_off as usize >= strings.len() {
            return Err(format!("type [{id}] has a name beyond the string section"));
        }
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let extra = match kind {
            INT | VAR | DECL_TAG => 4,
            ARRAY => 12,
            STRUCT | UNION | DATASEC | ENUM64 => 12 * vlen,
            ENUM | FUNC_PROTO => 8 * vlen,
            PTR | FWD | TYPEDEF | VOLATILE | CONST | RESTRICT | FUNC | FLOAT | TYPE_TAG => 0,
            _ => return Err(format!("type [{id}] has unknown kind {kind}")),
        };
        let body = at + 12;
        if body + extra > section.len() {
            return Err(truncated());
        }
        let member_word = |i: usize, offset: usize, stride: usize| {
            word(section, body + i * stride + offset).unwrap_or(0)
        };
        let (size_deps, target, other_refs) = match kind {
            PTR | TYPEDEF | VOLATILE | CONST | RESTRICT | TYPE_TAG => {
                if vlen != 0 {
                    return Err(format!("type [{id}] of kind {kind} has vlen {vlen}"));
                }
                let named = kind == TYPEDEF || kind == TYPE_TAG;
                if named != (name_off != 0) {
                    return Err(format!(
                        "type [{id}] of kind {kind} {}",
                        if named {
                            "needs a name"
                        } else {
                            "must have no name"
                        }
                    ));
                }
                let size_deps = if kind == PTR {
                    vec![]
                } else {
                    vec![size_or_type]
                };
                (size_deps, Some(size_or_type), vec![])
            }
            ARRAY => (vec![member_word(0, 0, 0)], None, vec![member_word(0, 4, 0)]),
            STRUCT | UNION => (
                (0..vlen).map(|i| member_word(i, 4, 12)).collect(),
                None,
                vec![],
            ),
            VAR => (vec![size_or_type], None, vec![]),
            DATASEC => (
                (0..vlen).map(|i| member_word(i, 0, 12)).collect(),
                None,
                vec![],
            ),
            // A function's prototype and a prototype's return and parameter types are checked,
            // not sized: they join no loop.
            FUNC | DECL_TAG => (vec![], None, vec![size_or_type]),
            FUNC_PROTO => {
                let mut referenced = vec![size_or_type];
                referenced.extend((0..vlen).map(|i| member_word(i, 4, 8)));
                (vec![], None, referenced)
            }
            _ => (vec![], None, vec![]),
        };
        types.push(TypeRecord {
            kind,
            size_deps,
            target,
            other_refs,
        });
        at = body + extra;
    }
    Ok(types)
}

/// Depth-first search (iterative: hostile BTF may chain a million types) for a cycle of the
/// relation `edges`; type 0 (void) has no edges.
fn find_loop(types: &[TypeRecord], edges: impl Fn(&TypeRecord) -> Vec<u32>) -> Result<(), String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut marks = vec![Mark::New; types.len() + 1];
    marks[0] = Mark::Done;
    for start in 1..=types.len() {
        if marks[start] != Mark::New {
            continue;
        }
        let mut stack: Vec<(usize, Vec<u32>)> = vec![(start, edges(&types[start - 1]))];
        marks[start] = Mark::OnPath;
        while let Some((node, pending)) = stack.last_mut() {
            let node = *node;
            match pending.pop() {
                Some(next) => {
                    let next = next as usize;
                    match marks[next] {
                        Mark::OnPath => {
                            return Err(format!(
                                "type [{next}] refers to itself through [{node}] (a type loop)"
                            ));
                        }
                        Mark::New => {
                            marks[next] = Mark::OnPath;
                            stack.push((next, edges(&types[next - 1])));
                        }
                        Mark::Done => {}
                    }
                }
                None => {
                    marks[node] = Mark::Done;
                    stack.pop();
                }
            }
        }
    }
    Ok(())
}

/// Follows typedefs and qualifiers.
pub(crate) fn strip(btf: &Btf, mut ty: Type) -> Result<Type, String> {
    for _ in 0..32 {
        ty = match ty {
            Type::Typedef(ref t) => btf.resolve_chained_type(t),
            Type::Const(ref t) | Type::Volatile(ref t) | Type::Restrict(ref t) => {
                btf.resolve_chained_type(t)
            }
            Type::TypeTag(ref t) => btf.resolve_chained_type(t),
            other => return Ok(other),
        }
        .map_err(|e| format!("broken BTF: {e}"))?;
    }
    Err("broken BTF: type chain too long".into())
}

/// The argument types and whether it returns a value of global function `name`, from its BTF
/// prototype, typed as the kernel types a global function's arguments: numbers are unknown,
/// a pointer to the context struct may be NULL. Other pointers, and returns other than a
/// number or void, are refused (the kernel would take some of them, policies need none).
pub fn global_function_signature(btf: &Btf, name: &str) -> Result<(Vec<ArgSpec>, bool), String> {
    let func = btf
        .resolve_types_by_name(name)
        .unwrap_or_default()
        .into_iter()
        .find_map(|t| if let Type::Func(f) = t { Some(f) } else { None })
        .ok_or_else(|| format!("no BTF for function `{name}`"))?;
    let Type::FuncProto(proto) = btf
        .resolve_chained_type(&func)
        .map_err(|e| format!("broken BTF: {e}"))?
    else {
        return Err(format!("BTF of `{name}` is not a function prototype"));
    };
    let is_number = |ty: &Type| matches!(ty, Type::Int(_) | Type::Enum(_) | Type::Enum64(_));
    let returns_value = match proto.return_type_id() {
        0 => false,
        id => {
            let ret = btf
                .resolve_type_by_id(id)
                .map_err(|e| format!("broken BTF: {e}"))?;
            if !is_number(&strip(btf, ret)?) {
                return Err(format!(
                    "global function `{name}` returns something other than a number or void"
                ));
            }
            true
        }
    };
    let mut args = Vec::new();
    for (index, parameter) in proto.parameters.iter().enumerate() {
        let ty = btf
            .resolve_chained_type(parameter)
            .map_err(|e| format!("broken BTF: {e}"))?;
        let arg = match strip(btf, ty)? {
            ty if is_number(&ty) => ArgSpec::Scalar,
            Type::Ptr(ptr) => {
                let target = btf
                    .resolve_chained_type(&ptr)
                    .map_err(|e| format!("broken BTF: {e}"))?;
                match strip(btf, target)? {
                    Type::Struct(s)
                        if btf.resolve_name(&s).unwrap_or_default() == "upsched_ctx" =>
                    {
                        ArgSpec::Context
                    }
                    _ => {
                        return Err(format!(
                            "parameter {} of global function `{name}` is a pointer to something other than struct upsched_ctx; make the function static",
                            index + 1
                        ));
                    }
                }
            }
            _ => {
                return Err(format!(
                    "parameter {} of global function `{name}` is neither a number nor struct upsched_ctx *; make the function static",
                    index + 1
                ));
            }
        };
        args.push(arg);
    }
    if args.iter().filter(|a| **a == ArgSpec::Context).count() > 1 {
        return Err(format!(
            "global function `{name}` takes the context more than once; pass it once"
        ));
    }
    if args.len() > 5 {
        return Err(format!(
            "global function `{name}` takes more than 5 parameters"
        ));
    }
    Ok((args, returns_value))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Raw BTF from type records (each: name offset, info, size/type, then extra words) over
    /// the string section "\0a\0".
    fn btf(types: &[&[u32]]) -> Vec<u8> {
        let type_bytes: Vec<u8> = types
            .iter()
            .flat_map(|t| t.iter().flat_map(|w| w.to_le_bytes()))
            .collect();
        let strings = b"\0a\0";
        let mut bytes = vec![0x9f, 0xeb, 1, 0];
        for word in [
            HEADER_LEN as u32,
            0,
            type_bytes.len() as u32,
            type_bytes.len() as u32,
            strings.len() as u32,
        ] {
            bytes.extend(word.to_le_bytes());
        }
        bytes.extend(type_bytes);
        bytes.extend(strings);
        bytes
    }

    const fn info(kind: u32, vlen: u32) -> u32 {
        (kind << 24) | vlen
    }

    const INT_U64: &[u32] = &[1, info(INT, 0), 8, 64];

    #[test]
    fn well_formed_types_pass() {
        // [1] int a; [2] typedef a -> [3]; [3] struct a { a *next; } via [4] ptr -> [2]:
        // a struct that points to itself through a typedef is no loop.
        assert_eq!(
            validate(&btf(&[
                INT_U64,
                &[1, info(TYPEDEF, 0), 3],
                &[1, info(STRUCT, 1), 8, 1, 4, 0],
                &[0, info(PTR, 0), 2],
            ])),
            Ok(())
        );
    }

    #[test]
    fn loops_and_bad_references_are_refused() {
        let refused = |types: &[&[u32]], reason: &str| {
            let error = validate(&btf(types)).expect_err(reason);
            assert!(error.contains(reason), "{error}");
        };
        refused(&[&[1, info(TYPEDEF, 0), 1]], "a type loop");
        refused(
            &[&[0, info(CONST, 0), 2], &[0, info(VOLATILE, 0), 1]],
            "a type loop",
        );
        // A pointer chain that never ends in a type.
        refused(&[&[0, info(PTR, 0), 1]], "a type loop");
        // A struct that embeds itself (through an array).
        refused(
            &[
                &[1, info(STRUCT, 1), 8, 1, 2, 0],
                &[0, info(ARRAY, 0), 0, 1, 3, 2],
                INT_U64,
            ],
            "a type loop",
        );
        refused(&[&[1, info(TYPEDEF, 0), 7]], "the last type is [1]");
        refused(&[&[1, info(20, 0), 0]], "unknown kind 20");
        refused(&[&[9, info(INT, 0), 8, 64]], "beyond the string section");
        refused(&[&[1, info(PTR, 0), 0]], "must have no name");
        refused(&[&[1, info(STRUCT, 2), 8, 1, 0, 0]], "truncated");
    }

    #[test]
    fn bad_headers_are_refused() {
        let good = btf(&[INT_U64]);
        assert_eq!(validate(&good), Ok(()));
        for (at, value, reason) in [
            (0, 0u8, "bad magic"),
            (2, 2, "unsupported version"),
            (3, 1, "unsupported flags"),
            (12, 0xff, "beyond the end"),
        ] {
            let mut bytes = good.clone();
            bytes[at] = value;
            let error = validate(&bytes).expect_err(reason);
            assert!(error.contains(reason), "{error}");
        }
        assert!(validate(&good[..10]).is_err());
    }
}
