//! Admission checks: everything `upsched check` (and later the broker) decides about a policy
//! object before anyone loads it, gathered into one [`CheckReport`]. [`crate::admission::admit`]
//! keeps what the checks built (the parsed object, the verified engine preparation) with it.

use std::collections::{BTreeMap, BTreeSet};

use btf_rs::{Btf, Type};
use serde::Serialize;
use upsched_abi::{CTX_SIZE, Direction, FIELDS, HOOK_SECTION_PREFIX};
use upsched_ebpf::RejectKind;

use crate::analysis::{self, AccessKind, Finding};
use crate::btf_check::strip;
use crate::lines::LineTable;
use crate::object::{ObjectError, PolicyObject, Program};
use crate::prepare::{Prepared, prepare, verify_prepared};

/// Default of [`Limits::max_insns_per_hook`] (`upsched check --max-insns`).
pub const DEFAULT_MAX_INSNS_PER_HOOK: usize = 4096;

/// Admission limits (the broker may set its own per grant).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Limits {
    /// Most instructions in one linked hook program.
    pub max_insns_per_hook: usize,
    /// Most bytes of global data (all of .bss, .data, .rodata).
    pub max_globals_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_insns_per_hook: DEFAULT_MAX_INSNS_PER_HOOK,
            max_globals_bytes: 1 << 20,
        }
    }
}

/// Licenses the kernel treats as GPL-compatible (include/linux/license.h), which sched_ext
/// kfuncs require.
const GPL_COMPATIBLE: &[&str] = &[
    "GPL",
    "GPL v2",
    "GPL and additional rights",
    "Dual BSD/GPL",
    "Dual MIT/GPL",
    "Dual MPL/GPL",
];

/// What is wrong, as a stable identifier for tools and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    NotElf,
    NotBpf,
    MalformedObject,
    MissingAbi,
    WrongAbi,
    NotAHook,
    UnknownHook,
    NoHooks,
    BadPrototype,
    CtxLayout,
    MissingBtf,
    /// A `.BTF` section is present but breaks the kernel's BTF rules.
    MalformedBtf,
    HelperCall,
    KfuncNotAllowed,
    CtxEscape,
    UnsupportedInsn,
    BadJump,
    InputWrite,
    VariableWrite,
    CtxOutOfBounds,
    TooManyInsns,
    GlobalsTooLarge,
    UnsupportedSection,
    License,
    /// The engine's verifier (range analysis, see docs/verifier.md) rejected a hook.
    EngineVerifier,
    /// A kfunc argument that may lie outside its domain in abi.toml (proven by the engine's
    /// verifier at each call site).
    KfuncArgument,
    /// Warning: an output the hook's caller ignores.
    IgnoredOutput,
}

/// One problem (or warning), located as precisely as known.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
    /// Instruction index in the linked hook program.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insn: Option<usize>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.section, self.insn) {
            (Some(section), Some(insn)) => write!(f, "{section}, insn {insn}: ")?,
            (Some(section), None) => write!(f, "{section}: ")?,
            _ => {}
        }
        f.write_str(&self.message)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct HookReport {
    pub hook: String,
    pub section: String,
    pub function: String,
    /// Instructions in the hook's own section.
    pub insns: usize,
    /// Instructions after linking the subprograms it calls.
    pub linked_insns: usize,
    pub reachable_insns: usize,
    pub reads: Vec<String>,
    pub writes: Vec<String>,
    pub kfuncs: Vec<String>,
    pub subprograms: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct GlobalReport {
    pub name: String,
    pub section: String,
    pub offset: u64,
    pub size: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct CapabilityUse {
    pub name: String,
    pub description: String,
    /// What needs it, e.g. `enqueue reads hints`.
    pub needed_for: Vec<String>,
}

/// Whether the engine's verifier accepts the object (see docs/verifier.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineStatus {
    Accepted,
    Rejected,
    /// The object could not be parsed or prepared for the engine (the problems say why).
    NotRun,
}

/// The engine verifier's verdict on one hook.
#[derive(Clone, Debug, Serialize)]
pub struct EngineHookVerdict {
    pub hook: String,
    pub accepted: bool,
    /// Instructions the analysis explored over all paths (when accepted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explored_insns: Option<u64>,
    /// Where and why it was rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insn: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Source file, line and text of the rejected instruction (from `.BTF.ext`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
}

/// The engine verifier's verdict, reported next to the static analysis. A rejection also
/// rejects the object; when the static analysis already rejected it, the verdict is reported
/// here only, so that one mistake does not appear twice among the problems.
#[derive(Clone, Debug, Serialize)]
pub struct EngineReport {
    pub status: EngineStatus,
    pub hooks: Vec<EngineHookVerdict>,
}

/// Everything `upsched check` reports about one object.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    /// Version of this report's JSON layout.
    pub format: u32,
    pub accepted: bool,
    pub policy: Option<String>,
    pub abi_version: Option<u32>,
    pub license: Option<String>,
    pub hooks: Vec<HookReport>,
    pub globals: Vec<GlobalReport>,
    pub globals_size: u64,
    pub kfuncs: Vec<String>,
    pub capabilities: Vec<CapabilityUse>,
    pub limits: Limits,
    pub engine: EngineReport,
    pub problems: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

/// Checks the object in `data` against the ABI and `limits`.
pub fn check(data: &[u8], limits: &Limits) -> CheckReport {
    assess(data, limits).0
}

/// [`check`], also returning the parsed object and its engine preparation when the object could
/// be prepared (verified if the report accepts it).
pub(crate) fn assess(
    data: &[u8],
    limits: &Limits,
) -> (CheckReport, Option<(PolicyObject, Prepared)>) {
    let mut report = CheckReport {
        format: 1,
        accepted: false,
        policy: None,
        abi_version: None,
        license: None,
        hooks: Vec::new(),
        globals: Vec::new(),
        globals_size: 0,
        kfuncs: Vec::new(),
        capabilities: Vec::new(),
        limits: *limits,
        engine: EngineReport {
            status: EngineStatus::NotRun,
            hooks: Vec::new(),
        },
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    let checked = match PolicyObject::parse(data) {
        Ok(object) => {
            check_object(&object, limits, &mut report);
            check_with_engine_verifier(&object, data, &mut report).map(|p| (object, p))
        }
        Err(error) => {
            report.problems.push(object_problem(error));
            None
        }
    };
    report.accepted = report.problems.is_empty();
    (report, checked)
}

/// Runs the engine's verifier on every hook and records its verdict; returns the preparation
/// it verified.
fn check_with_engine_verifier(
    object: &PolicyObject,
    data: &[u8],
    report: &mut CheckReport,
) -> Option<Prepared> {
    let prepared = match prepare(object) {
        Ok(prepared) => prepared,
        Err(error) => {
            if report.problems.is_empty() {
                report.problems.push(problem(
                    ProblemKind::EngineVerifier,
                    None,
                    None,
                    format!("the engine cannot prepare the object: {error}"),
                ));
            }
            return None;
        }
    };
    let verifications = verify_prepared(object, &prepared, &LineTable::parse(data));
    let statically_accepted = report.problems.is_empty();
    let mut all_accepted = true;
    for verification in verifications {
        let section = format!("{HOOK_SECTION_PREFIX}{}", verification.hook);
        let line = verification.line.as_ref().map(ToString::to_string);
        let verdict = match verification.result {
            Ok(verdict) => EngineHookVerdict {
                hook: verification.hook.to_string(),
                accepted: true,
                explored_insns: Some(verdict.explored),
                insn: None,
                reason: None,
                message: None,
                line: None,
            },
            Err(rejection) => {
                all_accepted = false;
                if statically_accepted {
                    let mut message = match &line {
                        Some(line) => format!("{} (at {line})", rejection.message),
                        None => rejection.message.clone(),
                    };
                    // The hint explains a NULL dereference the caller's check does not cover;
                    // other rejections inside a global function read as they are.
                    let global_function = (rejection.kind == RejectKind::NullDereference)
                        .then(|| global_function_at(object, &section, rejection.pc))
                        .flatten();
                    if let Some(function) = global_function {
                        message.push_str(&format!(
                            "; in global function `{function}`, which the kernel verifies on its own \
                             (its pointer arguments may be NULL whatever its callers checked): check \
                             them there, or make it static"
                        ));
                    }
                    let kind = match rejection.kind {
                        RejectKind::ArgumentDomain => ProblemKind::KfuncArgument,
                        _ => ProblemKind::EngineVerifier,
                    };
                    report.problems.push(problem(
                        kind,
                        Some(&section),
                        Some(rejection.pc),
                        message,
                    ));
                }
                EngineHookVerdict {
                    hook: verification.hook.to_string(),
                    accepted: false,
                    explored_insns: None,
                    insn: Some(rejection.pc),
                    reason: Some(rejection.kind.to_string()),
                    message: Some(rejection.message),
                    line,
                }
            }
        };
        report.engine.hooks.push(verdict);
    }
    report
        .engine
        .hooks
        .sort_by_key(|h| upsched_abi::hook(&h.hook).map(|info| info.id));
    report.engine.status = if report.engine.hooks.is_empty() {
        EngineStatus::NotRun
    } else if all_accepted {
        EngineStatus::Accepted
    } else {
        EngineStatus::Rejected
    };
    Some(prepared)
}

/// The global function (not the hook's own) of hook section `section` that holds linked
/// instruction `pc`.
fn global_function_at<'a>(object: &'a PolicyObject, section: &str, pc: usize) -> Option<&'a str> {
    let program = object.programs.iter().find(|p| p.section == section)?;
    program.functions[1..]
        .iter()
        .find(|f| f.global && (f.start..f.start + f.len).contains(&pc))
        .map(|f| f.name.as_str())
}

fn object_problem(error: ObjectError) -> Problem {
    let kind = match error {
        ObjectError::NotElf => ProblemKind::NotElf,
        ObjectError::WrongClass | ObjectError::NotBpf(_) | ObjectError::NotRelocatable => {
            ProblemKind::NotBpf
        }
        _ => ProblemKind::MalformedObject,
    };
    let (section, insn) = match &error {
        ObjectError::Section { section, .. } => (Some(section.clone()), None),
        ObjectError::Insn { section, insn, .. } => (Some(section.clone()), Some(*insn)),
        _ => (None, None),
    };
    let message = match &error {
        ObjectError::Section { message, .. } | ObjectError::Insn { message, .. } => message.clone(),
        other => other.to_string(),
    };
    Problem {
        kind,
        message,
        section,
        insn,
    }
}

fn problem(
    kind: ProblemKind,
    section: Option<&str>,
    insn: Option<usize>,
    message: String,
) -> Problem {
    Problem {
        kind,
        message,
        section: section.map(str::to_string),
        insn,
    }
}

fn check_object(object: &PolicyObject, limits: &Limits, report: &mut CheckReport) {
    let problems = &mut report.problems;
    match (&object.info, &object.info_error) {
        (Some(info), _) => {
            report.policy = Some(info.name.clone());
            report.abi_version = Some(info.abi_version);
            if info.abi_version != upsched_abi::ABI_VERSION {
                problems.push(problem(
                    ProblemKind::WrongAbi,
                    Some(upsched_abi::POLICY_INFO_SECTION),
                    None,
                    format!(
                        "built for ABI version {}, this upsched speaks version {}: rebuild against the current upsched.h",
                        info.abi_version,
                        upsched_abi::ABI_VERSION
                    ),
                ));
            } else if info.ctx_size as usize != CTX_SIZE {
                problems.push(problem(
                    ProblemKind::WrongAbi,
                    Some(upsched_abi::POLICY_INFO_SECTION),
                    None,
                    format!(
                        "built with a context of {} bytes, expected {CTX_SIZE}: rebuild against the current upsched.h",
                        info.ctx_size
                    ),
                ));
            }
        }
        (None, Some(error)) => {
            problems.push(problem(ProblemKind::MissingAbi, None, None, error.clone()))
        }
        (None, None) => problems.push(problem(
            ProblemKind::MissingAbi,
            None,
            None,
            format!(
                "no ABI declaration (section {}): declare the policy with UPSCHED_POLICY(\"name\")",
                upsched_abi::POLICY_INFO_SECTION
            ),
        )),
    }

    report.license = object.license.clone();
    match &object.license {
        Some(license) if GPL_COMPATIBLE.contains(&license.as_str()) => {}
        Some(license) => problems.push(problem(
            ProblemKind::License,
            Some("license"),
            None,
            format!("license \"{license}\" is not GPL-compatible; sched_ext requires GPL code"),
        )),
        None => problems.push(problem(
            ProblemKind::License,
            None,
            None,
            "no license section; sched_ext requires GPL code (UPSCHED_POLICY declares it)".into(),
        )),
    }

    for (section, reason) in &object.unsupported_sections {
        problems.push(problem(
            ProblemKind::UnsupportedSection,
            Some(section),
            None,
            (*reason).to_string(),
        ));
    }

    for data in &object.data_sections {
        for (name, offset, size) in &data.variables {
            report.globals.push(GlobalReport {
                name: name.clone(),
                section: data.name.clone(),
                offset: *offset,
                size: *size,
            });
        }
    }
    report.globals_size = object.globals_size();
    if report.globals_size > limits.max_globals_bytes {
        problems.push(problem(
            ProblemKind::GlobalsTooLarge,
            None,
            None,
            format!(
                "global data takes {} bytes, the limit is {}",
                report.globals_size, limits.max_globals_bytes
            ),
        ));
    }

    match (&object.btf, &object.btf_error) {
        (Some(_), _) => {}
        (None, Some(error)) => problems.push(problem(
            ProblemKind::MalformedBtf,
            Some(".BTF"),
            None,
            format!("the object's BTF is malformed, the kernel would refuse it: {error}"),
        )),
        (None, None) => problems.push(problem(
            ProblemKind::MissingBtf,
            None,
            None,
            "no .BTF section; compile with -g (the kernel needs BTF to attach freplace programs)"
                .into(),
        )),
    }

    let mut capability_uses: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    for program in &object.programs {
        let Some(hook) = program.hook else {
            let kind = if program.section.starts_with("freplace/") {
                ProblemKind::UnknownHook
            } else {
                ProblemKind::NotAHook
            };
            let known: Vec<_> = upsched_abi::HOOKS.iter().map(|h| h.name).collect();
            problems.push(problem(
                kind,
                Some(&program.section),
                None,
                format!(
                    "section is not a policy hook; hooks are sections {HOOK_SECTION_PREFIX}<hook> with <hook> one of: {}",
                    known.join(", ")
                ),
            ));
            continue;
        };
        if report.hooks.iter().any(|h| h.hook == hook.name) {
            problems.push(problem(
                ProblemKind::NotAHook,
                Some(&program.section),
                None,
                format!("hook {} is implemented by more than one section", hook.name),
            ));
            continue;
        }
        let hook_report = check_hook(
            object,
            program,
            hook,
            limits,
            problems,
            &mut report.warnings,
            &mut capability_uses,
        );
        report.hooks.push(hook_report);
    }
    if report.hooks.is_empty() && problems.iter().all(|p| p.kind != ProblemKind::UnknownHook) {
        problems.push(problem(
            ProblemKind::NoHooks,
            None,
            None,
            "implements no hook: define at least one with UPSCHED_ENQUEUE(ctx) { ... } or another hook macro".into(),
        ));
    }
    report
        .hooks
        .sort_by_key(|h| upsched_abi::hook(&h.hook).map(|info| info.id));

    let kfuncs: BTreeSet<_> = report
        .hooks
        .iter()
        .flat_map(|h| h.kfuncs.iter().cloned())
        .collect();
    report.kfuncs = kfuncs.into_iter().collect();
    report.capabilities = capability_uses
        .into_iter()
        .map(|(name, needed_for)| CapabilityUse {
            name: name.to_string(),
            description: upsched_abi::capability(name)
                .map_or_else(String::new, |c| c.description.to_string()),
            needed_for: needed_for.into_iter().collect(),
        })
        .collect();
    report
        .problems
        .sort_by(|a, b| (&a.section, a.insn, a.kind).cmp(&(&b.section, b.insn, b.kind)));
}

fn check_hook(
    object: &PolicyObject,
    program: &Program,
    hook: &'static upsched_abi::HookInfo,
    limits: &Limits,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<Problem>,
    capability_uses: &mut BTreeMap<&'static str, BTreeSet<String>>,
) -> HookReport {
    let section = Some(program.section.as_str());
    let function = program.functions[0].name.clone();
    if program.section_functions.len() != 1 {
        problems.push(problem(
            ProblemKind::NotAHook,
            section,
            None,
            format!(
                "a hook section must hold exactly one function, found {}",
                program.section_functions.len()
            ),
        ));
    }
    if let Some(Err(message)) = object
        .btf
        .as_ref()
        .map(|btf| check_prototype(btf, &function))
    {
        problems.push(problem(ProblemKind::BadPrototype, section, None, message));
    }
    if program.insns.len() > limits.max_insns_per_hook {
        problems.push(problem(
            ProblemKind::TooManyInsns,
            section,
            None,
            format!(
                "{} instructions after linking, the limit is {}",
                program.insns.len(),
                limits.max_insns_per_hook
            ),
        ));
    }

    let analysis = analysis::analyse(program);
    for finding in &analysis.findings {
        let (kind, pc, message) = match finding {
            Finding::HelperCall { pc, helper } => (
                ProblemKind::HelperCall,
                *pc,
                format!(
                    "calls BPF helper #{helper}; policies may not call helpers (everything they may read is in the context)"
                ),
            ),
            Finding::UnresolvedKfunc { pc } => (
                ProblemKind::KfuncNotAllowed,
                *pc,
                "calls a kernel function without a relocation naming it".to_string(),
            ),
            Finding::CtxEscapes { pc, how } => (ProblemKind::CtxEscape, *pc, (*how).to_string()),
            Finding::Unsupported { pc } => (
                ProblemKind::UnsupportedInsn,
                *pc,
                format!("`{}` is not allowed in policies", program.insns[*pc]),
            ),
            Finding::BadTarget { pc } => (
                ProblemKind::BadJump,
                *pc,
                "jumps or falls outside the program".to_string(),
            ),
        };
        problems.push(problem(kind, section, Some(pc), message));
    }

    let mut reads = BTreeSet::new();
    let mut writes = BTreeSet::new();
    for access in &analysis.accesses {
        let Some(offset) = access.offset else {
            match access.kind {
                AccessKind::Read => reads.extend(FIELDS.iter().map(|f| f.name)),
                AccessKind::Write => problems.push(problem(
                    ProblemKind::VariableWrite,
                    section,
                    Some(access.pc),
                    "writes the context at a variable offset: cannot prove it only writes output fields".into(),
                )),
            }
            continue;
        };
        let end = offset + access.size as i64;
        if offset < 0 || end > CTX_SIZE as i64 {
            problems.push(problem(
                ProblemKind::CtxOutOfBounds,
                section,
                Some(access.pc),
                format!("accesses bytes {offset}..{end} of a {CTX_SIZE}-byte context"),
            ));
            continue;
        }
        let fields = FIELDS
            .iter()
            .filter(|f| (f.offset as i64) < end && offset < (f.offset + f.size) as i64);
        for field in fields {
            match access.kind {
                AccessKind::Read => {
                    reads.insert(field.name);
                }
                AccessKind::Write if field.dir == Direction::In => problems.push(problem(
                    ProblemKind::InputWrite,
                    section,
                    Some(access.pc),
                    format!(
                        "writes input field `{}`; only output fields may be written",
                        field.name
                    ),
                )),
                AccessKind::Write => {
                    writes.insert(field.name);
                }
            }
        }
    }
    for name in &writes {
        if !hook.outputs.contains(name) {
            warnings.push(problem(
                ProblemKind::IgnoredOutput,
                section,
                None,
                format!(
                    "writes `{name}`, which the host ignores after {}",
                    hook.name
                ),
            ));
        }
    }

    let mut kfuncs = BTreeSet::new();
    for (pc, name) in &analysis.kfunc_calls {
        match upsched_abi::kfunc(name) {
            Some(kfunc) => {
                kfuncs.insert(name.clone());
                capability_uses
                    .entry(kfunc.capability)
                    .or_default()
                    .insert(format!("{} calls {name}", hook.name));
            }
            None => {
                let allowed: Vec<_> = upsched_abi::KFUNCS.iter().map(|k| k.name).collect();
                problems.push(problem(
                    ProblemKind::KfuncNotAllowed,
                    section,
                    Some(*pc),
                    format!(
                        "calls kernel function `{name}`, which policies may not call (allowed: {})",
                        allowed.join(", ")
                    ),
                ));
            }
        }
    }
    for name in &reads {
        if let Some(cap) = upsched_abi::field(name).and_then(|f| f.read_cap) {
            capability_uses
                .entry(cap)
                .or_default()
                .insert(format!("{} reads {name}", hook.name));
        }
    }
    for name in &writes {
        if let Some(cap) = upsched_abi::field(name).and_then(|f| f.write_cap) {
            capability_uses
                .entry(cap)
                .or_default()
                .insert(format!("{} writes {name}", hook.name));
        }
    }

    HookReport {
        hook: hook.name.to_string(),
        section: program.section.clone(),
        function,
        insns: program.own_len,
        linked_insns: program.insns.len(),
        reachable_insns: analysis.reachable_insns,
        reads: reads.into_iter().map(str::to_string).collect(),
        writes: writes.into_iter().map(str::to_string).collect(),
        kfuncs: kfuncs.into_iter().collect(),
        subprograms: analysis.subprograms.into_iter().collect(),
    }
}

/// The hook's function must be `void f(struct upsched_ctx *)` with the context laid out as in
/// the ABI (the kernel matches freplace prototypes by BTF, so a mismatch would fail at attach).
fn check_prototype(btf: &Btf, function: &str) -> Result<(), String> {
    let wanted = format!("void {function}(struct upsched_ctx *ctx)");
    let func = btf
        .resolve_types_by_name(function)
        .unwrap_or_default()
        .into_iter()
        .find_map(|t| if let Type::Func(f) = t { Some(f) } else { None })
        .ok_or_else(|| format!("no BTF for function `{function}`; compile with -g"))?;
    let Type::FuncProto(proto) = btf
        .resolve_chained_type(&func)
        .map_err(|e| format!("broken BTF: {e}"))?
    else {
        return Err(format!("BTF of `{function}` is not a function prototype"));
    };
    if proto.return_type_id() != 0 {
        return Err(format!(
            "`{function}` returns a value; hooks must be {wanted}"
        ));
    }
    if proto.parameters.len() != 1 {
        return Err(format!(
            "`{function}` takes {} parameters; hooks must be {wanted}",
            proto.parameters.len()
        ));
    }
    let param = btf
        .resolve_chained_type(&proto.parameters[0])
        .map_err(|e| format!("broken BTF: {e}"))?;
    let Type::Ptr(ptr) = strip(btf, param)? else {
        return Err(format!(
            "the parameter of `{function}` is not a pointer; hooks must be {wanted}"
        ));
    };
    let target = btf
        .resolve_chained_type(&ptr)
        .map_err(|e| format!("broken BTF: {e}"))?;
    let Type::Struct(ctx) = strip(btf, target)? else {
        return Err(format!(
            "the parameter of `{function}` does not point to a struct; hooks must be {wanted}"
        ));
    };
    let name = btf.resolve_name(&ctx).unwrap_or_default();
    if name != "upsched_ctx" {
        return Err(format!(
            "the parameter of `{function}` points to struct {name}; hooks must be {wanted}"
        ));
    }
    if ctx.size() != CTX_SIZE {
        return Err(format!(
            "struct upsched_ctx has {} bytes in this object, the ABI has {CTX_SIZE}: rebuild against the current upsched.h",
            ctx.size()
        ));
    }
    let members: Vec<(String, u32)> = ctx
        .members
        .iter()
        .map(|m| (btf.resolve_name(m).unwrap_or_default(), m.bit_offset() / 8))
        .collect();
    let expected: Vec<(String, u32)> = FIELDS
        .iter()
        .map(|f| (f.name.to_string(), f.offset as u32))
        .collect();
    if members != expected {
        let first_difference = members
            .iter()
            .zip(&expected)
            .find(|(a, b)| a != b)
            .map_or_else(
                || format!("{} members instead of {}", members.len(), expected.len()),
                |((name, offset), (want, want_offset))| {
                    format!(
                        "member `{name}` at {offset} where the ABI has `{want}` at {want_offset}"
                    )
                },
            );
        return Err(format!(
            "struct upsched_ctx in this object differs from the ABI ({first_difference}): rebuild against the current upsched.h"
        ));
    }
    Ok(())
}
