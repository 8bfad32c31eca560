//! Parsing a policy's BPF ELF object and linking each hook program with the subprograms it
//! calls, the way libbpf prepares programs for the kernel.
//!
//! ELF reading uses the `object` crate (gimli-rs; maintained, fuzzed, handles malformed input
//! with errors rather than panics); BTF uses `btf-rs` (maintained by the retis project). What
//! this module adds is BPF-specific: section roles, relocations of global variables and calls,
//! and the bpf-to-bpf call linking.

use std::collections::BTreeMap;

use object::elf::{SHT_PROGBITS, SHT_REL, SHT_SYMTAB};
use object::read::elf::SectionHeader;
use object::{Object, ObjectSection, ObjectSymbol, RelocationFlags, RelocationTarget};
use upsched_abi::{HOOK_SECTION_PREFIX, HookInfo, POLICY_INFO_SECTION};
use upsched_ebpf::insn::{self, Insn};

/// ELF `e_machine` of BPF objects.
const EM_BPF: u16 = 247;
/// Relocation types of BPF ELF objects (see the kernel's Documentation/bpf/llvm_reloc.rst).
const R_BPF_64_64: u32 = 1;
const R_BPF_64_32: u32 = 10;
/// Sizes of `Elf64_Sym` and `Elf64_Rel`, which libbpf requires as the `sh_entsize` of the
/// symbol table and of relocation sections.
const SYM_ENTRY_SIZE: u64 = 24;
const REL_ENTRY_SIZE: u64 = 16;
/// The one section libbpf takes subprograms from.
const TEXT_SECTION: &str = ".text";

/// Why a file cannot be read as a BPF object at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    #[error("not an ELF file (no ELF magic at the start)")]
    NotElf,
    #[error("not a 64-bit little-endian ELF file (BPF objects are ELF64 little-endian)")]
    WrongClass,
    #[error("not a BPF object: ELF machine is {0} (expected 247, EM_BPF)")]
    NotBpf(u16),
    #[error("not a relocatable object file (compile with `clang -c`)")]
    NotRelocatable,
    #[error("malformed ELF: {0}")]
    Malformed(String),
    #[error("section {section}: {message}")]
    Section { section: String, message: String },
    #[error("section {section}, instruction {insn}: {message}")]
    Insn {
        section: String,
        insn: usize,
        message: String,
    },
}

fn malformed(e: object::Error) -> ObjectError {
    ObjectError::Malformed(e.to_string())
}

/// `struct upsched_policy_info` as stored in the `.upsched` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    pub abi_version: u32,
    pub ctx_size: u32,
    pub name: String,
}

/// Where a relocated instruction points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelocTarget {
    /// `lddw` of the address of byte `offset` of a global data section.
    Global { section: String, offset: u64 },
    /// Call of the kernel function `name`.
    Kfunc(String),
}

/// A function inside a linked program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSpan {
    pub name: String,
    /// First instruction in the linked program.
    pub start: usize,
    pub len: usize,
    /// A global function (as libbpf marks it for the kernel: non-static, not hidden), which the
    /// kernel verifies on its own rather than in its caller's context.
    pub global: bool,
}

/// One program section of the object (a hook, if named `freplace/upsched_<hook>`), linked with
/// the subprograms it calls: `insns` is what the kernel or the engine runs for this hook.
#[derive(Debug, Clone)]
pub struct Program {
    /// ELF section name, e.g. `freplace/upsched_enqueue`.
    pub section: String,
    /// The ABI hook this section implements; `None` if the name is not a known hook.
    pub hook: Option<&'static HookInfo>,
    /// Functions in the section (a hook section must hold exactly one).
    pub section_functions: Vec<String>,
    /// Linked instructions: the section's code, then each called subprogram.
    pub insns: Vec<Insn>,
    /// Instructions that came from the section itself (the rest are subprograms).
    pub own_len: usize,
    /// The entry function first, then the appended subprograms.
    pub functions: Vec<FunctionSpan>,
    /// Relocations by linked instruction index.
    pub relocs: BTreeMap<usize, RelocTarget>,
}

/// A data section (`.bss`, `.data`, `.rodata`, `.data.*`, `.rodata.*`) and its variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSection {
    pub name: String,
    pub size: u64,
    /// Named variables: (name, offset, size).
    pub variables: Vec<(String, u64, u64)>,
    /// Initial contents: the section's bytes for `.data` and `.rodata`, empty for `.bss`
    /// (which starts zeroed). The engine initialises each instance's globals from them.
    pub bytes: Vec<u8>,
}

/// A parsed policy object.
pub struct PolicyObject {
    pub info: Option<PolicyInfo>,
    /// Raw `.upsched` section size, when present but not decodable.
    pub info_error: Option<String>,
    pub license: Option<String>,
    pub programs: Vec<Program>,
    pub data_sections: Vec<DataSection>,
    /// Sections that libbpf would give a meaning the policy format does not allow
    /// (`.maps`, `.kconfig`, ...), with the reason.
    pub unsupported_sections: Vec<(String, &'static str)>,
    /// The object's BTF, when present and well-formed.
    pub btf: Option<btf_rs::Btf>,
    /// Why a `.BTF` section that is present cannot be used (the kernel would refuse it).
    pub btf_error: Option<String>,
}

fn is_data_section(name: &str) -> bool {
    [".bss", ".data", ".rodata"]
        .iter()
        .any(|base| name == *base || name.starts_with(&format!("{base}.")))
}

fn unsupported_reason(name: &str) -> Option<&'static str> {
    match name {
        ".maps" | "maps" => Some("policies cannot define BPF maps (they cannot call map helpers)"),
        ".kconfig" => Some("policies cannot read kernel config externs"),
        ".struct_ops" | ".struct_ops.link" => Some("policies cannot define struct_ops"),
        _ => None,
    }
}

/// Checks the ELF header by hand first so that the common wrong inputs get precise messages.
fn check_header(data: &[u8]) -> Result<(), ObjectError> {
    if data.len() < 4 || &data[..4] != b"\x7fELF" {
        return Err(ObjectError::NotElf);
    }
    // EI_CLASS = 2 (64-bit), EI_DATA = 1 (little-endian).
    if data.len() < 20 || data[4] != 2 || data[5] != 1 {
        return Err(ObjectError::WrongClass);
    }
    let machine = u16::from_le_bytes([data[18], data[19]]);
    if machine != EM_BPF {
        return Err(ObjectError::NotBpf(machine));
    }
    Ok(())
}

impl PolicyObject {
    /// Parses `data` as a BPF ELF object and links its programs.
    pub fn parse(data: &[u8]) -> Result<PolicyObject, ObjectError> {
        crate::counters::count_object_parse();
        check_header(data)?;
        let file =
            object::read::elf::ElfFile64::<object::LittleEndian>::parse(data).map_err(malformed)?;
        if file.kind() != object::ObjectKind::Relocatable {
            return Err(ObjectError::NotRelocatable);
        }
        check_section_headers(&file)?;

        let mut object = PolicyObject {
            info: None,
            info_error: None,
            license: None,
            programs: Vec::new(),
            data_sections: Vec::new(),
            unsupported_sections: Vec::new(),
            btf: None,
            btf_error: None,
        };
        let mut code_sections = Vec::new();
        for section in file.sections() {
            let name = section.name().map_err(malformed)?.to_string();
            let section_error = |message: String| ObjectError::Section {
                section: name.clone(),
                message,
            };
            if let Some(reason) = unsupported_reason(&name) {
                object.unsupported_sections.push((name.clone(), reason));
            } else if name == POLICY_INFO_SECTION {
                let bytes = section.data().map_err(|e| section_error(e.to_string()))?;
                match decode_info(bytes) {
                    Ok(info) => object.info = Some(info),
                    Err(e) => object.info_error = Some(e),
                }
            } else if name == "license" {
                let bytes = section.data().map_err(|e| section_error(e.to_string()))?;
                let text = bytes.split(|b| *b == 0).next().unwrap_or_default();
                object.license = Some(String::from_utf8_lossy(text).into_owned());
            } else if name == ".BTF" {
                let bytes = section.data().map_err(|e| section_error(e.to_string()))?;
                match crate::btf_check::validate(bytes)
                    .and_then(|()| btf_rs::Btf::from_bytes(bytes).map_err(|e| e.to_string()))
                {
                    Ok(btf) => object.btf = Some(btf),
                    Err(e) => object.btf_error = Some(e),
                }
            } else if is_data_section(&name) {
                if section.size() > u64::from(u32::MAX) {
                    return Err(section_error(format!(
                        "size {} bytes is beyond any policy limit",
                        section.size()
                    )));
                }
                // SHT_NOBITS (.bss) has no bytes in the file: `data()` is empty for it.
                let bytes = section.data().map_err(|e| section_error(e.to_string()))?;
                object.data_sections.push(DataSection {
                    name: name.clone(),
                    size: section.size(),
                    variables: Vec::new(),
                    bytes: bytes.to_vec(),
                });
            } else if is_code_section(&section) {
                let bytes = section.data().map_err(|e| section_error(e.to_string()))?;
                let insns = insn::decode(bytes).map_err(|e| section_error(e.to_string()))?;
                code_sections.push(CodeSection {
                    index: section.index().0,
                    name,
                    insns,
                    functions: Vec::new(),
                    relocs: BTreeMap::new(),
                });
            }
        }

        collect_symbols(&file, &mut object, &mut code_sections)?;
        for section in &mut code_sections {
            collect_relocations(&file, section)?;
        }
        object.programs = link_programs(&code_sections)?;
        Ok(object)
    }

    /// Total size in bytes of the policy's global data.
    pub fn globals_size(&self) -> u64 {
        self.data_sections.iter().map(|s| s.size).sum()
    }
}

/// The section-header rules libbpf applies when it opens an object (`bpf_object__elf_collect`),
/// which the `object` crate does not enforce: one symbol table, with 24-byte entries;
/// relocation sections with 16-byte entries that point at an existing section; `.BTF` and
/// `.BTF.ext` stored as plain bits.
fn check_section_headers(file: &Elf<'_>) -> Result<(), ObjectError> {
    let endian = file.endian();
    let table = file.elf_section_table();
    let mut symbol_tables = 0;
    for (index, header) in table.iter().enumerate() {
        let name = table
            .section_name(endian, header)
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .map_err(malformed)?;
        let refuse = |message: String| {
            Err(ObjectError::Section {
                section: if name.is_empty() {
                    format!("#{index}")
                } else {
                    name.clone()
                },
                message,
            })
        };
        let entsize = header.sh_entsize(endian);
        match header.sh_type(endian) {
            SHT_SYMTAB => {
                symbol_tables += 1;
                if symbol_tables > 1 {
                    return refuse("a second symbol table (libbpf accepts one)".into());
                }
                if entsize != SYM_ENTRY_SIZE {
                    return refuse(format!(
                        "symbol table entry size (sh_entsize) is {entsize}, expected {SYM_ENTRY_SIZE}"
                    ));
                }
            }
            SHT_REL => {
                if entsize != REL_ENTRY_SIZE {
                    return refuse(format!(
                        "relocation entry size (sh_entsize) is {entsize}, expected {REL_ENTRY_SIZE}"
                    ));
                }
                let target = header.sh_info(endian) as usize;
                if target >= table.len() {
                    return refuse(format!("relocates section #{target}, which does not exist"));
                }
            }
            kind if (name == ".BTF" || name == ".BTF.ext") && kind != SHT_PROGBITS => {
                return refuse(format!("section type is {kind}, expected SHT_PROGBITS"));
            }
            _ => {}
        }
    }
    if symbol_tables == 0 {
        return Err(ObjectError::Malformed(
            "no symbol table (stripped object?)".into(),
        ));
    }
    Ok(())
}

fn decode_info(bytes: &[u8]) -> Result<PolicyInfo, String> {
    let name_len = upsched_abi::POLICY_NAME_LEN as usize;
    if bytes.len() != 8 + name_len {
        return Err(format!(
            "section {POLICY_INFO_SECTION} has {} bytes, expected {}",
            bytes.len(),
            8 + name_len
        ));
    }
    let word = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let name = bytes[8..].split(|b| *b == 0).next().unwrap_or_default();
    Ok(PolicyInfo {
        abi_version: word(0),
        ctx_size: word(4),
        name: String::from_utf8_lossy(name).into_owned(),
    })
}

fn is_code_section(
    section: &object::read::elf::ElfSection64<'_, '_, object::LittleEndian>,
) -> bool {
    section.kind() == object::SectionKind::Text
}

/// A code section before linking: its own instructions, functions and relocations (indices are
/// section-relative).
struct CodeSection {
    /// ELF section index.
    index: usize,
    name: String,
    insns: Vec<Insn>,
    /// (name, first insn, number of insns, global), sorted by start.
    functions: Vec<(String, usize, usize, bool)>,
    relocs: BTreeMap<usize, SectionReloc>,
}

#[derive(Clone)]
enum SectionReloc {
    Global {
        section: String,
        offset: u64,
    },
    Kfunc(String),
    /// bpf-to-bpf call into another code section, at `insn` of that section.
    Call {
        section: usize,
        insn: usize,
    },
}

type Elf<'data> = object::read::elf::ElfFile64<'data, object::LittleEndian>;

fn collect_symbols(
    file: &Elf<'_>,
    object: &mut PolicyObject,
    code_sections: &mut [CodeSection],
) -> Result<(), ObjectError> {
    for symbol in file.symbols() {
        let Some(section_index) = symbol.section_index() else {
            continue;
        };
        let name = symbol.name().map_err(malformed)?;
        if name.is_empty() || symbol.kind() == object::SymbolKind::Section {
            continue;
        }
        let section_name = file
            .section_by_index(section_index)
            .and_then(|s| s.name().map(str::to_string))
            .map_err(malformed)?;
        if symbol.kind() == object::SymbolKind::Text {
            if let Some(code) = code_sections
                .iter_mut()
                .find(|c| c.index == section_index.0)
            {
                let start = (symbol.address() / insn::INSN_SIZE as u64) as usize;
                let len = (symbol.size() / insn::INSN_SIZE as u64) as usize;
                if start
                    .checked_add(len)
                    .is_none_or(|end| end > code.insns.len())
                {
                    return Err(ObjectError::Section {
                        section: section_name,
                        message: format!("function {name} extends beyond its section"),
                    });
                }
                if code.name != TEXT_SECTION && symbol.is_local() {
                    return Err(ObjectError::Section {
                        section: section_name,
                        message: format!(
                            "function {name} is static; a program section's function must be global (libbpf refuses static ones)"
                        ),
                    });
                }
                code.functions
                    .push((name.to_string(), start, len, is_global_function(&symbol)));
            }
        } else if let Some(data) = object
            .data_sections
            .iter_mut()
            .find(|d| d.name == section_name)
        {
            data.variables
                .push((name.to_string(), symbol.address(), symbol.size()));
        }
    }
    for code in code_sections {
        code.functions.sort_by_key(|(_, start, _, _)| *start);
    }
    Ok(())
}

/// Whether the kernel will see `symbol` as a global function: libbpf gives the kernel the
/// BTF of non-static functions as global unless their visibility is hidden or internal.
fn is_global_function(
    symbol: &object::read::elf::ElfSymbol64<'_, '_, object::LittleEndian>,
) -> bool {
    const STV_INTERNAL: u8 = 1;
    const STV_HIDDEN: u8 = 2;
    let hidden = match symbol.flags() {
        object::SymbolFlags::Elf { st_other, .. } => {
            matches!(st_other & 3, STV_INTERNAL | STV_HIDDEN)
        }
        _ => false,
    };
    !symbol.is_local() && !hidden
}

fn collect_relocations(file: &Elf<'_>, code: &mut CodeSection) -> Result<(), ObjectError> {
    let section = file
        .section_by_index(object::SectionIndex(code.index))
        .map_err(malformed)?;
    for (offset, relocation) in section.relocations() {
        let index = (offset / insn::INSN_SIZE as u64) as usize;
        let insn_error = |message: String| ObjectError::Insn {
            section: code.name.clone(),
            insn: index,
            message,
        };
        let Some(insn) = code.insns.get(index).copied() else {
            return Err(insn_error(
                "relocation beyond the end of the section".into(),
            ));
        };
        let RelocationTarget::Symbol(symbol_index) = relocation.target() else {
            return Err(insn_error("relocation without a symbol".into()));
        };
        let symbol = file.symbol_by_index(symbol_index).map_err(|_| {
            insn_error(format!(
                "relocation to a missing symbol (index {})",
                symbol_index.0
            ))
        })?;
        let symbol_name = symbol.name().unwrap_or("?").to_string();
        let r_type = match relocation.flags() {
            RelocationFlags::Elf { r_type } => r_type,
            _ => 0,
        };
        let reloc = match (r_type, symbol.section_index()) {
            (R_BPF_64_64, Some(target)) if insn.is_lddw() => {
                let target_name = file
                    .section_by_index(target)
                    .and_then(|s| s.name().map(str::to_string))
                    .map_err(malformed)?;
                if !is_data_section(&target_name) {
                    return Err(insn_error(format!(
                        "loads the address of {symbol_name} in section {target_name}, which is not global data"
                    )));
                }
                SectionReloc::Global {
                    section: target_name,
                    offset: symbol.address().wrapping_add(insn.imm as i64 as u64),
                }
            }
            (R_BPF_64_32, None) if insn.is_call() => {
                if symbol.is_undefined() && !symbol_name.is_empty() {
                    SectionReloc::Kfunc(symbol_name)
                } else {
                    return Err(insn_error(format!(
                        "call to undefined symbol `{symbol_name}`"
                    )));
                }
            }
            (R_BPF_64_32, Some(target)) if insn.is_pseudo_call() => {
                let target_name = file
                    .section_by_index(target)
                    .and_then(|s| s.name().map(str::to_string))
                    .map_err(malformed)?;
                if target_name != TEXT_SECTION {
                    return Err(insn_error(format!(
                        "calls `{symbol_name}` in section {target_name}; subprograms must be in {TEXT_SECTION} \
                         (libbpf refuses calls into another program's section: make it a separate, \
                         non-hook function)"
                    )));
                }
                if symbol.address() % insn::INSN_SIZE as u64 != 0 {
                    return Err(insn_error(format!(
                        "calls `{symbol_name}` at byte {}, which is not an instruction boundary",
                        symbol.address()
                    )));
                }
                let base = symbol.address() / insn::INSN_SIZE as u64;
                let target_insn = (base as i64).checked_add(i64::from(insn.imm) + 1);
                let Some(target_insn) = target_insn.and_then(|t| usize::try_from(t).ok()) else {
                    return Err(insn_error(
                        "call target before the start of its section".into(),
                    ));
                };
                SectionReloc::Call {
                    section: target.0,
                    insn: target_insn,
                }
            }
            (_, None) => {
                return Err(insn_error(format!(
                    "relocation to undefined symbol `{symbol_name}`"
                )));
            }
            _ => {
                return Err(insn_error(format!(
                    "unsupported relocation (type {r_type}) against `{symbol_name}` on `{insn}`"
                )));
            }
        };
        code.relocs.insert(index, reloc);
    }
    // A call without a relocation stays inside its own section; libbpf resolves every call
    // into .text, so only .text may hold such calls.
    if code.name != TEXT_SECTION {
        let local_call = code
            .insns
            .iter()
            .enumerate()
            .find(|(index, insn)| insn.is_pseudo_call() && !code.relocs.contains_key(index));
        if let Some((index, _)) = local_call {
            return Err(ObjectError::Insn {
                section: code.name.clone(),
                insn: index,
                message: format!(
                    "calls a function of its own section; subprograms must be in {TEXT_SECTION}"
                ),
            });
        }
    }
    Ok(())
}

/// Builds one linked program per code section other than `.text`.
fn link_programs(code_sections: &[CodeSection]) -> Result<Vec<Program>, ObjectError> {
    code_sections
        .iter()
        .filter(|c| c.name != ".text")
        .map(|entry| link_program(entry, code_sections))
        .collect()
}

fn link_program(entry: &CodeSection, all: &[CodeSection]) -> Result<Program, ObjectError> {
    let hook = entry
        .name
        .strip_prefix(HOOK_SECTION_PREFIX)
        .and_then(upsched_abi::hook);
    let mut program = Program {
        section: entry.name.clone(),
        hook,
        section_functions: entry.functions.iter().map(|f| f.0.clone()).collect(),
        insns: entry.insns.clone(),
        own_len: entry.insns.len(),
        functions: vec![FunctionSpan {
            name: entry
                .functions
                .first()
                .map_or_else(|| entry.name.clone(), |f| f.0.clone()),
            start: 0,
            len: entry.insns.len(),
            global: true,
        }],
        relocs: BTreeMap::new(),
    };
    // Appended code sections by index -> linked base of the section.
    let mut placed: BTreeMap<usize, usize> = BTreeMap::from([(entry.index, 0)]);
    let mut pending = vec![(entry, 0usize)];
    while let Some((code, base)) = pending.pop() {
        for (&index, reloc) in &code.relocs {
            let linked = base + index;
            let target = match reloc {
                SectionReloc::Global { section, offset } => RelocTarget::Global {
                    section: section.clone(),
                    offset: *offset,
                },
                SectionReloc::Kfunc(name) => {
                    // clang emits extern calls as bpf-to-bpf calls; mark them as kfunc calls,
                    // as libbpf does before loading.
                    program.insns[linked].src = insn::BPF_PSEUDO_KFUNC_CALL;
                    RelocTarget::Kfunc(name.clone())
                }
                SectionReloc::Call { section, insn } => {
                    let call_error = |message: String| ObjectError::Insn {
                        section: code.name.clone(),
                        insn: index,
                        message,
                    };
                    let Some(callee) = all.iter().find(|c| c.index == *section) else {
                        return Err(call_error("call into a section that holds no code".into()));
                    };
                    let Some((name, _, len, global)) = callee
                        .functions
                        .iter()
                        .find(|(_, start, _, _)| start == insn)
                    else {
                        return Err(call_error(format!(
                            "call to instruction {insn} of {}, which is not the start of a function",
                            callee.name
                        )));
                    };
                    let section_base = *placed.entry(*section).or_insert_with(|| {
                        let section_base = program.insns.len();
                        program.insns.extend_from_slice(&callee.insns);
                        pending.push((callee, section_base));
                        section_base
                    });
                    let start = section_base + insn;
                    if !program.functions.iter().any(|f| f.start == start) {
                        program.functions.push(FunctionSpan {
                            name: name.clone(),
                            start,
                            len: *len,
                            global: *global,
                        });
                    }
                    let offset = start as i64 - (linked as i64 + 1);
                    program.insns[linked].imm = i32::try_from(offset)
                        .map_err(|_| call_error("linked program too large".into()))?;
                    continue;
                }
            };
            program.relocs.insert(linked, target);
        }
    }
    Ok(program)
}
