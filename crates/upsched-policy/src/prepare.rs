//! Preparing a policy object for the engine's verifier: kfunc calls bound to an index of the
//! policy's kfunc table, global loads located, and the memory each hook may touch described.
//! Admission (`check`) verifies the prepared hooks; the engine loads the same prepared hooks
//! (`engine`), so what was verified is what runs.

use upsched_abi::{CTX_SIZE, Direction, FIELDS, HookInfo, KfuncInfo};
use upsched_ebpf::insn::{BPF_PSEUDO_KFUNC_CALL, Insn};
use upsched_ebpf::verifier::{DEFAULT_MAX_EXPLORED, verify_insns};
use upsched_ebpf::{
    AllowedCall, CallArg, CallKind, ContextSpec, Environment, GlobalFunction, RegionLoad,
    RegionSpec, Rejection, Verdict,
};

use crate::lines::{LineTable, SourceLine};
use crate::object::{PolicyObject, Program, RelocTarget};

/// Why an object cannot be prepared for the engine.
#[derive(Clone, Debug, thiserror::Error)]
pub enum PrepareError {
    /// An instruction refers to something the loader cannot place.
    #[error("hook {hook}, instruction {insn}: {message}")]
    Relocation {
        hook: &'static str,
        insn: usize,
        message: String,
    },
    /// A global function the kernel would verify on its own cannot be typed from its BTF.
    #[error("hook {hook}, global function {function}: {message}")]
    GlobalFunction {
        hook: &'static str,
        function: String,
        message: String,
    },
}

/// `.rodata` and `.rodata.*` are read-only for the program; the rest of global data is not.
pub(crate) fn is_writable(section: &str) -> bool {
    !section.starts_with(".rodata")
}

/// A hook program with its kfunc calls bound (each call's `imm` is an index into the policy's
/// kfunc table) and the description of the memory it may touch, ready for the verifier; its
/// global `lddw`s still hold the object's values.
#[derive(Clone, Debug)]
pub(crate) struct PreparedHook {
    pub(crate) info: &'static HookInfo,
    pub(crate) insns: Vec<Insn>,
    pub(crate) env: Environment,
}

impl PreparedHook {
    pub(crate) fn verify(&self) -> Result<Verdict, Rejection> {
        crate::counters::count_hook_verification();
        verify_insns(self.insns.clone(), &self.env).map(|(_, verdict)| verdict)
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Prepared {
    pub(crate) hooks: Vec<PreparedHook>,
    pub(crate) kfuncs: Vec<&'static KfuncInfo>,
}

/// The verifier's view of the context: the ABI's size, writable exactly at the output fields,
/// and possibly NULL (as for the kernel's freplace programs).
fn context_spec() -> ContextSpec {
    let mut writable: Vec<(u64, u64)> = Vec::new();
    for field in FIELDS.iter().filter(|f| f.dir == Direction::Out) {
        let (start, end) = (field.offset as u64, (field.offset + field.size) as u64);
        match writable.last_mut() {
            Some(last) if last.1 == start => last.1 = end,
            _ => writable.push((start, end)),
        }
    }
    ContextSpec {
        size: CTX_SIZE as u64,
        writable,
        nullable: true,
    }
}

/// Binds kfuncs, locates global loads and describes the memory of every hook of `object`.
pub(crate) fn prepare(object: &PolicyObject) -> Result<Prepared, PrepareError> {
    let regions: Vec<RegionSpec> = object
        .data_sections
        .iter()
        .map(|data| RegionSpec {
            name: data.name.clone(),
            size: data.size,
            writable: is_writable(&data.name),
        })
        .collect();
    let mut kfuncs: Vec<&'static KfuncInfo> = Vec::new();
    let mut hooks: Vec<PreparedHook> = Vec::new();
    for program in &object.programs {
        let Some(info) = program.hook else { continue };
        if hooks.iter().any(|h| h.info.id == info.id) {
            continue;
        }
        let mut insns = program.insns.clone();
        let mut region_loads = Vec::new();
        for (&pc, target) in &program.relocs {
            let relocation_error = |message: String| PrepareError::Relocation {
                hook: info.name,
                insn: pc,
                message,
            };
            match target {
                RelocTarget::Global { section, offset } => {
                    let Some(region) = regions.iter().position(|r| &r.name == section) else {
                        return Err(relocation_error(format!(
                            "refers to section {section}, which is not global data"
                        )));
                    };
                    let size = regions[region].size;
                    // One past the end is a valid address to compute; beyond it could reach
                    // another region.
                    if *offset > size {
                        return Err(relocation_error(format!(
                            "refers to offset {offset} of {section}, which has {size} bytes"
                        )));
                    }
                    if pc + 1 >= insns.len() || !insns[pc].is_lddw() {
                        return Err(relocation_error(
                            "global relocation on an instruction that is not a 64-bit load".into(),
                        ));
                    }
                    region_loads.push(RegionLoad {
                        pc,
                        region,
                        offset: *offset,
                    });
                }
                RelocTarget::Kfunc(name) => {
                    let Some(kfunc) = upsched_abi::kfunc(name) else {
                        return Err(relocation_error(format!(
                            "calls kernel function `{name}`, which policies may not call"
                        )));
                    };
                    let index = match kfuncs.iter().position(|k| k.name == kfunc.name) {
                        Some(index) => index,
                        None => {
                            kfuncs.push(kfunc);
                            kfuncs.len() - 1
                        }
                    };
                    insns[pc] = Insn {
                        src: BPF_PSEUDO_KFUNC_CALL,
                        imm: index as i32,
                        ..insns[pc]
                    };
                }
            }
        }
        let global_functions = global_functions(object, program, info.name)?;
        hooks.push(PreparedHook {
            info,
            insns,
            env: Environment {
                context: context_spec(),
                regions: regions.clone(),
                region_loads,
                calls: Vec::new(),
                global_functions,
                max_explored: DEFAULT_MAX_EXPLORED,
            },
        });
    }
    // Every hook may call every kfunc bound for the object (each one is allowed by the ABI),
    // with arguments inside the domains abi.toml gives.
    let calls: Vec<AllowedCall> = kfuncs
        .iter()
        .enumerate()
        .map(|(index, kfunc)| AllowedCall {
            kind: CallKind::Kfunc,
            id: index as i32,
            name: kfunc.name.to_string(),
            args: kfunc
                .args
                .iter()
                .map(|arg| CallArg {
                    name: arg.name.to_string(),
                    size: arg.size as u8,
                    domain: arg.domain.map(|values| {
                        values
                            .iter()
                            .map(|v| (v.name.to_string(), v.value))
                            .collect()
                    }),
                })
                .collect(),
        })
        .collect();
    for hook in &mut hooks {
        hook.env.calls = calls.clone();
    }
    hooks.sort_by_key(|hook| hook.info.id);
    Ok(Prepared { hooks, kfuncs })
}

/// The global functions linked into a hook's program (the hook's own function excepted), typed
/// from their BTF prototypes, so that the verifier checks each one alone as the kernel does.
fn global_functions(
    object: &PolicyObject,
    program: &Program,
    hook: &'static str,
) -> Result<Vec<GlobalFunction>, PrepareError> {
    program.functions[1..]
        .iter()
        .filter(|function| function.global)
        .map(|function| {
            let error = |message: String| PrepareError::GlobalFunction {
                hook,
                function: function.name.clone(),
                message,
            };
            let btf = object
                .btf
                .as_ref()
                .ok_or_else(|| error("no usable BTF to type its arguments".into()))?;
            let (args, returns_value) =
                crate::btf_check::global_function_signature(btf, &function.name).map_err(error)?;
            Ok(GlobalFunction {
                name: function.name.clone(),
                start: function.start,
                args,
                returns_value,
            })
        })
        .collect()
}

/// The engine verifier's verdict on one hook.
#[derive(Clone, Debug)]
pub struct HookVerification {
    pub hook: &'static str,
    pub result: Result<Verdict, Rejection>,
    /// Source line of the rejected instruction, when the object has line information.
    pub line: Option<SourceLine>,
}

/// Runs the engine's verifier on every hook of `object`, as admission does;
/// `lines` (from the object's bytes) locates rejections in the source. `Err` when the object
/// cannot even be prepared (a relocation the engine cannot place).
pub fn verify_object(
    object: &PolicyObject,
    lines: &LineTable,
) -> Result<Vec<HookVerification>, PrepareError> {
    Ok(verify_prepared(object, &prepare(object)?, lines))
}

/// The verifier's verdict on every hook of `prepared` (the preparation of `object`).
pub(crate) fn verify_prepared(
    object: &PolicyObject,
    prepared: &Prepared,
    lines: &LineTable,
) -> Vec<HookVerification> {
    prepared
        .hooks
        .iter()
        .map(|hook| {
            let result = hook.verify();
            let line = match &result {
                Err(rejection) => object
                    .programs
                    .iter()
                    .find(|p| p.hook.is_some_and(|info| info.id == hook.info.id))
                    .and_then(|program| lines.line(program, rejection.pc))
                    .cloned(),
                Ok(_) => None,
            };
            HookVerification {
                hook: hook.info.name,
                result,
                line,
            }
        })
        .collect()
}
