//! Source lines of instructions, from the line information clang writes into `.BTF.ext` (with
//! `-g`), so that a verifier rejection can say which line of C it is about.
//!
//! Layouts (the kernel's `include/uapi/linux/btf.h` and `tools/lib/bpf/libbpf_internal.h`):
//! `.BTF` starts with {magic u16 0xeB9F, version u8, flags u8, hdr_len u32, type_off u32,
//! type_len u32, str_off u32, str_len u32}; strings follow at `hdr_len + str_off`. `.BTF.ext`
//! starts with {magic u16, version u8, flags u8, hdr_len u32, func_info_off u32,
//! func_info_len u32, line_info_off u32, line_info_len u32}; its line information, at
//! `hdr_len + line_info_off`, is a record size (u32) followed by one block per code section:
//! {section name offset u32, number of records u32}, then records {byte offset of the
//! instruction in its section u32, file name offset u32, source line text offset u32,
//! line << 10 | column u32}. All little-endian (BPF objects built for `bpfel`).

use std::collections::BTreeMap;

use object::{Object, ObjectSection, ObjectSymbol};

use crate::object::Program;

const BTF_MAGIC: u16 = 0xeb9f;

/// One line record: where an instruction comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceLine {
    pub file: String,
    pub line: u32,
    pub column: u32,
    /// The text of the source line, as clang recorded it.
    pub text: String,
}

impl std::fmt::Display for SourceLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let file = self.file.rsplit('/').next().unwrap_or(&self.file);
        write!(f, "{file}:{}", self.line)?;
        if !self.text.is_empty() {
            write!(f, ": {}", self.text.trim())?;
        }
        Ok(())
    }
}

/// Line records of an object, by section, sorted by instruction; and where each function
/// symbol starts (section, instruction), to map linked subprograms back to their section.
#[derive(Debug, Default)]
pub struct LineTable {
    by_section: BTreeMap<String, Vec<(usize, SourceLine)>>,
    functions: BTreeMap<String, (String, usize)>,
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn string_at(strings: &[u8], offset: u32) -> String {
    let tail = strings.get(offset as usize..).unwrap_or_default();
    let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
    String::from_utf8_lossy(&tail[..end]).into_owned()
}

impl LineTable {
    /// Reads the line table of an object; empty when it has no (readable) line information.
    pub fn parse(data: &[u8]) -> LineTable {
        LineTable::try_parse(data).unwrap_or_default()
    }

    fn try_parse(data: &[u8]) -> Option<LineTable> {
        let file = object::read::elf::ElfFile64::<object::LittleEndian>::parse(data).ok()?;
        let btf = file.section_by_name(".BTF")?.data().ok()?;
        let ext = file.section_by_name(".BTF.ext")?.data().ok()?;
        if u16_at(btf, 0)? != BTF_MAGIC || u16_at(ext, 0)? != BTF_MAGIC {
            return None;
        }
        let strings_start = (u32_at(btf, 4)? as usize).checked_add(u32_at(btf, 16)? as usize)?;
        let strings_len = u32_at(btf, 20)? as usize;
        let strings = btf.get(strings_start..strings_start.checked_add(strings_len)?)?;

        let line_start = (u32_at(ext, 4)? as usize).checked_add(u32_at(ext, 16)? as usize)?;
        let line_len = u32_at(ext, 20)? as usize;
        let lines = ext.get(line_start..line_start.checked_add(line_len)?)?;
        let record_size = u32_at(lines, 0)? as usize;
        if record_size < 16 {
            return None;
        }
        let mut table = LineTable::default();
        let mut at = 4;
        while at + 8 <= lines.len() {
            let section = string_at(strings, u32_at(lines, at)?);
            let count = u32_at(lines, at + 4)? as usize;
            at += 8;
            let records = table.by_section.entry(section).or_default();
            for _ in 0..count {
                let record = lines.get(at..at.checked_add(record_size)?)?;
                let line_col = u32_at(record, 12)?;
                records.push((
                    u32_at(record, 0)? as usize / upsched_ebpf::insn::INSN_SIZE,
                    SourceLine {
                        file: string_at(strings, u32_at(record, 4)?),
                        line: line_col >> 10,
                        column: line_col & 0x3ff,
                        text: string_at(strings, u32_at(record, 8)?),
                    },
                ));
                at += record_size;
            }
            records.sort_by_key(|(insn, _)| *insn);
        }
        for symbol in file.symbols() {
            if symbol.kind() != object::SymbolKind::Text {
                continue;
            }
            let (Ok(name), Some(index)) = (symbol.name(), symbol.section_index()) else {
                continue;
            };
            let Ok(section) = file
                .section_by_index(index)
                .and_then(|s| s.name().map(str::to_string))
            else {
                continue;
            };
            let start = (symbol.address() / upsched_ebpf::insn::INSN_SIZE as u64) as usize;
            table.functions.insert(name.to_string(), (section, start));
        }
        Some(table)
    }

    /// The source line of instruction `pc` of the linked program `program`.
    pub fn line(&self, program: &Program, pc: usize) -> Option<&SourceLine> {
        let (section, insn) = if pc < program.own_len {
            (program.section.as_str(), pc)
        } else {
            let span = program
                .functions
                .iter()
                .find(|f| f.start <= pc && pc < f.start + f.len)?;
            let (section, start) = self.functions.get(&span.name)?;
            (section.as_str(), start + (pc - span.start))
        };
        let records = self.by_section.get(section)?;
        let index = records.partition_point(|(first, _)| *first <= insn);
        records.get(index.checked_sub(1)?).map(|(_, line)| line)
    }
}
