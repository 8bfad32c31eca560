//! Running policy objects outside the kernel: the loader and the embedder API of the engine.
//!
//! ```text
//! admit(bytes, limits)            parse, check (admission rules + engine verifier), link,
//!                                  bind kfuncs: an AdmittedPolicy (crate::admission)
//! LoadedPolicy::from_admitted(&admitted, mode, budget)   place globals, compile; no second
//!                                  parse or verification (LoadedPolicy::load does both steps)
//!   .instantiate() -> PolicyInstance   fresh globals (.bss zeroed, .data/.rodata from the object)
//!     .call("enqueue", &mut ctx, &mut kfuncs)   copy ctx in, run, copy the outputs back
//! ```
//!
//! A loaded policy is immutable and can be instantiated any number of times; each instance owns
//! its globals, so instances never influence each other. Every call runs with an instruction
//! budget, either as native code from `upsched-jit` (compiled once at load, shared by all
//! instances; the default on x86-64) or on the interpreter of `upsched-ebpf` ([`ExecMode`]).
//! Both give the same results, globals and errors, and a call's result depends only on the
//! policy, the instance's globals, the context and the kfunc answers (determinism).
//!
//! Memory of an instance (see `upsched_ebpf::memory` for the address space): region 0 is the
//! context (`CTX_SIZE` bytes, writable at run time because output fields are written through
//! it; the static checks and the verifier keep the policy off the input fields, and only the
//! output fields are copied back anyway), then one region per global data section in object
//! order, `.rodata*` read-only.
//!
//! `LoadedPolicy` and `PolicyInstance` are `Send`: a simulator may run instances on several
//! threads; cloning an instance snapshots its globals.

use std::collections::BTreeMap;
use std::sync::Arc;

use upsched_abi::{CTX_SIZE, HOOKS, HookInfo, KfuncInfo, UpschedCtx};
use upsched_ebpf::{
    CallError, CallKind, ExecError, Externals, Interpreter, Memory, Program, ProgramError,
    RegionError, RegionId, Rejection,
};
use upsched_jit::{JitError, JitProgram, Optimization};

pub use crate::lines::{LineTable, SourceLine};
pub use crate::prepare::{HookVerification, PrepareError, verify_object};

use crate::admission::{AdmittedPolicy, admit};
use crate::check::{Limits, Problem};
use crate::object::{ObjectError, PolicyObject};
use crate::prepare::{Prepared, is_writable, prepare};

/// Instructions one hook call may execute before it is stopped. Far above what any accepted
/// policy needs (the verifier bounds every loop), it is the run-time second guard.
pub const DEFAULT_CALL_BUDGET: u64 = 1_000_000;

/// Most bytes of global data the engine allocates per instance, even for objects loaded without
/// the admission checks (whose default limit is far lower): a hostile section size must not
/// exhaust the host's memory.
pub const MAX_INSTANCE_GLOBALS: u64 = 64 << 20;

/// Hooks of more instructions than this are compiled with [`Optimization::CompileTime`]:
/// Cranelift's optimiser and backtracking register allocator cost more per instruction the
/// longer a basic block; the cheap setting costs several times less and grows close to linearly
/// (figures in `docs/ebpf-engine.md`).
pub const JIT_OPTIMIZE_MAX_INSNS_PER_HOOK: usize = 1024;

/// Hooks of more instructions than this run on the interpreter even in [`ExecMode::Jit`]: it
/// needs no preparation beyond the checks every load makes, so a load costs time linear in what
/// it loads and bounded per hook. Admission's default limit is within it (asserted below), so
/// policies admitted by default always run native code.
pub const JIT_MAX_INSNS_PER_HOOK: usize = 4096;
const _: () = assert!(crate::check::DEFAULT_MAX_INSNS_PER_HOOK <= JIT_MAX_INSNS_PER_HOOK);
const _: () = assert!(JIT_OPTIMIZE_MAX_INSNS_PER_HOOK <= JIT_MAX_INSNS_PER_HOOK);

/// Which engine runs a policy's hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExecMode {
    /// Native code compiled by `upsched-jit` when the policy is loaded, for every hook of at
    /// most [`JIT_MAX_INSNS_PER_HOOK`] instructions; larger hooks are interpreted.
    Jit,
    /// The interpreter of `upsched-ebpf`.
    Interpreter,
}

impl Default for ExecMode {
    /// The JIT on x86-64, the interpreter elsewhere.
    fn default() -> ExecMode {
        if cfg!(target_arch = "x86_64") {
            ExecMode::Jit
        } else {
            ExecMode::Interpreter
        }
    }
}

/// How [`LoadedPolicy::load_with_options`] loads a policy.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Admission limits (`upsched check`).
    pub limits: Limits,
    /// Instructions one hook call may execute.
    pub budget: u64,
    pub mode: ExecMode,
}

impl Default for EngineOptions {
    fn default() -> EngineOptions {
        EngineOptions {
            limits: Limits::default(),
            budget: DEFAULT_CALL_BUDGET,
            mode: ExecMode::default(),
        }
    }
}

/// Why a policy cannot be loaded or a call failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The admission checks (`upsched check`) rejected the object.
    #[error("policy rejected: {}", render_problems(.problems))]
    Rejected { problems: Vec<Problem> },
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// A hook program is not structurally executable.
    #[error("hook {hook}: {source}")]
    Program {
        hook: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    #[error(transparent)]
    Region(#[from] RegionError),
    /// The engine's verifier rejected a hook.
    #[error("hook {hook}: {rejection}")]
    Verifier {
        hook: &'static str,
        rejection: Rejection,
    },
    /// The JIT could not compile a hook.
    #[error("hook {hook}: {source}")]
    Jit {
        hook: &'static str,
        #[source]
        source: JitError,
    },
    /// No hook of the ABI has this name.
    #[error("unknown hook `{0}` (hooks: {hooks})", hooks = hook_names())]
    UnknownHook(String),
    /// The hook stopped without finishing: memory fault, budget, failed kfunc.
    #[error("hook {hook}: {source}")]
    Exec {
        hook: &'static str,
        #[source]
        source: ExecError,
    },
}

fn render_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn hook_names() -> String {
    HOOKS.iter().map(|h| h.name).collect::<Vec<_>>().join(", ")
}

/// The embedder's implementations of the kfuncs a policy may call (`upsched_abi::KFUNCS`).
///
/// The simulator answers from its model (e.g. the length of a dispatch queue); tests answer
/// what they need. `kfunc` is the entry of `upsched_abi::KFUNCS` the program calls, `args` are
/// r1..r5 (only the kfunc's own parameters are meaningful), and the result goes into r0 as is:
/// return 32-bit results sign-extended (`i64::from(n) as u64`), as a C caller expects.
pub trait KfuncProvider {
    fn call_kfunc(&mut self, kfunc: &'static KfuncInfo, args: [u64; 5]) -> Result<u64, CallError>;
}

/// Refuses every kfunc call (for policies that call none).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoKfuncs;

impl KfuncProvider for NoKfuncs {
    fn call_kfunc(&mut self, _: &'static KfuncInfo, _: [u64; 5]) -> Result<u64, CallError> {
        Err(CallError::Unbound)
    }
}

/// Answers every kfunc with a fixed value per name; kfuncs without an entry fail with
/// [`CallError::Unbound`]. Handy for tests and `upsched call`.
#[derive(Clone, Debug, Default)]
pub struct FixedKfuncs {
    pub answers: BTreeMap<&'static str, u64>,
}

impl KfuncProvider for FixedKfuncs {
    fn call_kfunc(&mut self, kfunc: &'static KfuncInfo, _: [u64; 5]) -> Result<u64, CallError> {
        self.answers
            .get(kfunc.name)
            .copied()
            .ok_or(CallError::Unbound)
    }
}

/// One hook's executable program.
#[derive(Clone, Debug)]
struct HookProgram {
    info: &'static HookInfo,
    program: Program,
    /// The compiled program in [`ExecMode::Jit`] (see [`native_code`]).
    native: Option<Arc<JitProgram>>,
}

/// A named global variable: where its bytes live in an instance.
#[derive(Clone, Debug)]
struct Variable {
    name: String,
    region: RegionId,
    offset: usize,
    size: usize,
}

/// A policy object, checked, linked and relocated, ready to be instantiated. Cheap to clone
/// (shared, immutable); instances keep it alive.
#[derive(Clone, Debug)]
pub struct LoadedPolicy {
    inner: Arc<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    name: String,
    /// Indexed by hook id.
    hooks: Vec<Option<HookProgram>>,
    /// Memory of a fresh instance: context region (zeroed) and initialised globals.
    template: Memory,
    ctx_region: RegionId,
    variables: Vec<Variable>,
    /// Kfuncs by the index the loader wrote into each call's `imm`, with their arity.
    kfuncs: Vec<(&'static KfuncInfo, usize)>,
    budget: u64,
    mode: ExecMode,
}

/// What a hook runs on in `mode`: native code, compiled now, in [`ExecMode::Jit`] for a program
/// of at most [`JIT_MAX_INSNS_PER_HOOK`] instructions (optimised up to
/// [`JIT_OPTIMIZE_MAX_INSNS_PER_HOOK`]); `None` (the interpreter) otherwise.
pub fn native_code(program: &Program, mode: ExecMode) -> Result<Option<Arc<JitProgram>>, JitError> {
    let len = program.insns().len();
    let optimization = match mode {
        ExecMode::Jit if len <= JIT_OPTIMIZE_MAX_INSNS_PER_HOOK => Optimization::Speed,
        ExecMode::Jit if len <= JIT_MAX_INSNS_PER_HOOK => Optimization::CompileTime,
        ExecMode::Jit | ExecMode::Interpreter => return Ok(None),
    };
    JitProgram::compile_with(program, optimization).map(|jit| Some(Arc::new(jit)))
}

impl LoadedPolicy {
    /// Checks `bytes` with the default admission limits and loads the policy.
    pub fn load(bytes: &[u8]) -> Result<LoadedPolicy, EngineError> {
        LoadedPolicy::load_with_options(bytes, &EngineOptions::default())
    }

    /// Like [`LoadedPolicy::load`] with explicit admission limits and per-call instruction
    /// budget, in the default [`ExecMode`].
    pub fn load_with(
        bytes: &[u8],
        limits: &Limits,
        budget: u64,
    ) -> Result<LoadedPolicy, EngineError> {
        LoadedPolicy::load_with_options(
            bytes,
            &EngineOptions {
                limits: *limits,
                budget,
                mode: ExecMode::default(),
            },
        )
    }

    /// Like [`LoadedPolicy::load`] with explicit limits, budget and engine.
    pub fn load_with_options(
        bytes: &[u8],
        options: &EngineOptions,
    ) -> Result<LoadedPolicy, EngineError> {
        let admitted = admit(bytes, &options.limits).map_err(|refused| EngineError::Rejected {
            problems: refused.0.problems,
        })?;
        LoadedPolicy::from_admitted(&admitted, options.mode, options.budget)
    }

    /// Loads an admitted policy to run in `mode` with `budget` instructions per call. It uses
    /// the object and the verified preparation admission made: nothing is parsed or verified
    /// again.
    pub fn from_admitted(
        admitted: &AdmittedPolicy,
        mode: ExecMode,
        budget: u64,
    ) -> Result<LoadedPolicy, EngineError> {
        LoadedPolicy::build(
            admitted.object(),
            admitted.prepared().clone(),
            mode,
            budget,
            true,
        )
    }

    /// Loads a parsed object with the budget and engine of `options`, skipping the admission
    /// checks (`options.limits`) but not the engine's verifier.
    pub fn from_object(
        object: &PolicyObject,
        options: &EngineOptions,
    ) -> Result<LoadedPolicy, EngineError> {
        let prepared = prepare(object)?;
        for hook in &prepared.hooks {
            hook.verify().map_err(|rejection| EngineError::Verifier {
                hook: hook.info.name,
                rejection,
            })?;
        }
        LoadedPolicy::build(object, prepared, options.mode, options.budget, true)
    }

    /// Like [`LoadedPolicy::from_object`], also without the verifier. Only for testing the
    /// run-time guards (both engines stay memory-safe and bounded by the budget) and for
    /// differential tests; never for tenant code.
    pub fn from_object_unverified(
        object: &PolicyObject,
        options: &EngineOptions,
    ) -> Result<LoadedPolicy, EngineError> {
        LoadedPolicy::build(
            object,
            prepare(object)?,
            options.mode,
            options.budget,
            false,
        )
    }

    /// Places the globals of `object` and compiles the hooks of `prepared` (its preparation,
    /// `verified` or not).
    fn build(
        object: &PolicyObject,
        prepared: Prepared,
        mode: ExecMode,
        budget: u64,
        verified: bool,
    ) -> Result<LoadedPolicy, EngineError> {
        let globals: u64 = object.data_sections.iter().map(|d| d.size).sum();
        if globals > MAX_INSTANCE_GLOBALS {
            return Err(EngineError::Region(RegionError::TooLarge {
                name: "global data".into(),
                len: usize::try_from(globals).unwrap_or(usize::MAX),
            }));
        }

        let mut template = Memory::new();
        // The verifier rejects every read of a stack byte not written first in the same run, so
        // verified hooks need no zeroed frames; unverified ones keep them for determinism.
        template.set_zero_frames(!verified);
        let ctx_region = template.add_region("ctx", vec![0; CTX_SIZE], true)?;
        let mut regions = Vec::new();
        let mut variables = Vec::new();
        for data in &object.data_sections {
            let size = usize::try_from(data.size).map_err(|_| RegionError::TooLarge {
                name: data.name.clone(),
                len: usize::MAX,
            })?;
            let mut bytes = vec![0; size];
            // .bss has no bytes; .data/.rodata have exactly `size` (never more, but be lenient).
            let initialised = data.bytes.len().min(size);
            bytes[..initialised].copy_from_slice(&data.bytes[..initialised]);
            let region = template.add_region(data.name.clone(), bytes, is_writable(&data.name))?;
            regions.push(region);
            for (name, offset, var_size) in &data.variables {
                let fits = offset
                    .checked_add(*var_size)
                    .is_some_and(|end| end <= data.size);
                if fits {
                    variables.push(Variable {
                        name: name.clone(),
                        region,
                        offset: *offset as usize,
                        size: *var_size as usize,
                    });
                }
            }
        }

        let mut hooks: Vec<Option<HookProgram>> = vec![None; HOOKS.len()];
        for hook in prepared.hooks {
            let mut insns = hook.insns;
            // Point every global lddw at the instance's region (prepare checked the offsets).
            for load in &hook.env.region_loads {
                let address = template.region_base(regions[load.region]) + load.offset;
                insns[load.pc].imm = address as u32 as i32;
                insns[load.pc + 1].imm = (address >> 32) as u32 as i32;
            }
            let program = Program::new(insns).map_err(|source| EngineError::Program {
                hook: hook.info.name,
                source,
            })?;
            let native = native_code(&program, mode).map_err(|source| EngineError::Jit {
                hook: hook.info.name,
                source,
            })?;
            if let Some(slot) = hooks.get_mut(hook.info.id as usize) {
                *slot = Some(HookProgram {
                    info: hook.info,
                    program,
                    native,
                });
            }
        }

        let loaded = Loaded {
            name: object
                .info
                .as_ref()
                .map_or_else(String::new, |info| info.name.clone()),
            hooks,
            template,
            ctx_region,
            variables,
            kfuncs: prepared
                .kfuncs
                .iter()
                .map(|&kfunc| (kfunc, kfunc.args.len()))
                .collect(),
            budget,
            mode,
        };
        Ok(LoadedPolicy {
            inner: Arc::new(loaded),
        })
    }

    /// The name the policy declared with `UPSCHED_POLICY`.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The engine the policy was loaded for.
    pub fn mode(&self) -> ExecMode {
        self.inner.mode
    }

    /// Whether the hook named `hook` runs native code (`false` when it is interpreted, or not
    /// implemented).
    pub fn runs_native(&self, hook: &str) -> bool {
        upsched_abi::hook(hook)
            .and_then(|info| self.inner.hooks.get(info.id as usize))
            .is_some_and(|slot| slot.as_ref().is_some_and(|h| h.native.is_some()))
    }

    /// Whether the policy implements the hook named `hook`.
    pub fn implements(&self, hook: &str) -> bool {
        self.program(hook).is_some()
    }

    /// Names of the hooks the policy implements, in hook id order.
    pub fn hooks(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.inner.hooks.iter().flatten().map(|h| h.info.name)
    }

    /// The executable (linked, relocated) program of a hook, e.g. for disassembly.
    pub fn program(&self, hook: &str) -> Option<&Program> {
        let info = upsched_abi::hook(hook)?;
        self.inner.hook(info).map(|h| &h.program)
    }

    /// A fresh instance: globals as in the object, nothing shared with other instances.
    pub fn instantiate(&self) -> PolicyInstance {
        PolicyInstance {
            policy: self.clone(),
            memory: self.inner.template.clone(),
        }
    }
}

impl Loaded {
    fn hook(&self, info: &HookInfo) -> Option<&HookProgram> {
        self.hooks.get(info.id as usize)?.as_ref()
    }
}

/// One instance of a loaded policy: its own globals, persisting across calls.
#[derive(Clone, Debug)]
pub struct PolicyInstance {
    policy: LoadedPolicy,
    memory: Memory,
}

impl PolicyInstance {
    pub fn policy(&self) -> &LoadedPolicy {
        &self.policy
    }

    /// Calls `hook` with `ctx`: copies the whole context in, runs the hook, and copies back only
    /// the output fields (`key`, `slice_ns`, `park_until_ns`, `target_cpu`, `verdict`), so a
    /// policy can never change an input as the host sees it. A hook the policy does not
    /// implement leaves `ctx` as it is (the host's defaults stand). On an error the outputs are
    /// left untouched, but globals keep what the hook wrote before it failed.
    pub fn call(
        &mut self,
        hook: &str,
        ctx: &mut UpschedCtx,
        kfuncs: &mut dyn KfuncProvider,
    ) -> Result<(), EngineError> {
        let info = upsched_abi::hook(hook).ok_or_else(|| EngineError::UnknownHook(hook.into()))?;
        self.call_hook(info, ctx, kfuncs)
    }

    /// [`PolicyInstance::call`] for a hook of `upsched_abi::HOOKS`, without the lookup by name:
    /// for embedders that call hooks at a high rate.
    pub fn call_hook(
        &mut self,
        info: &HookInfo,
        ctx: &mut UpschedCtx,
        kfuncs: &mut dyn KfuncProvider,
    ) -> Result<(), EngineError> {
        let policy = &*self.policy.inner;
        let Some(hook_program) = policy.hook(info) else {
            return Ok(());
        };
        let ctx_region = policy.ctx_region;
        ctx_to_bytes(ctx, self.memory.region_mut(ctx_region));
        let args = [self.memory.region_base(ctx_region), 0, 0, 0, 0];
        let mut externals = KfuncTable {
            kfuncs: &policy.kfuncs,
            provider: kfuncs,
        };
        let result = match &hook_program.native {
            Some(native) => native.run(args, &mut self.memory, &mut externals, policy.budget),
            None => Interpreter::run(
                &hook_program.program,
                0,
                args,
                &mut self.memory,
                &mut externals,
                policy.budget,
            ),
        };
        result.map_err(|source| EngineError::Exec {
            hook: hook_program.info.name,
            source,
        })?;
        outputs_from_bytes(self.memory.region(ctx_region), ctx);
        Ok(())
    }

    /// Names of the global variables the object defines, in section order.
    pub fn global_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.policy.inner.variables.iter().map(|v| v.name.as_str())
    }

    /// The current bytes of the global variable `name`, if the object names one.
    pub fn global(&self, name: &str) -> Option<&[u8]> {
        let variable = self
            .policy
            .inner
            .variables
            .iter()
            .find(|v| v.name == name)?;
        self.memory
            .region(variable.region)
            .get(variable.offset..variable.offset + variable.size)
    }

    /// The global variable `name` as a little-endian `u64` (it must be 8 bytes long).
    pub fn global_u64(&self, name: &str) -> Option<u64> {
        let bytes: [u8; 8] = self.global(name)?.try_into().ok()?;
        Some(u64::from_le_bytes(bytes))
    }
}

/// Defaults of [`sample_ctx`], documented for `upsched call`.
pub mod sample {
    /// `now_ns`: one second after boot.
    pub const NOW_NS: u64 = 1_000_000_000;
    /// `nr_cpus`.
    pub const NR_CPUS: u32 = 4;
    /// `pid` and `tgid`.
    pub const PID: u32 = 1000;
    /// `weight` and `tenant_weight` (nice 0 on the sched_ext scale).
    pub const WEIGHT: u32 = 100;
    /// `slice_min_ns`: 100 µs.
    pub const SLICE_MIN_NS: u64 = 100_000;
    /// `slice_max_ns`: 50 ms.
    pub const SLICE_MAX_NS: u64 = 50_000_000;
    /// `park_max_ns`: 100 ms.
    pub const PARK_MAX_NS: u64 = 100_000_000;
    /// `slice_ns` pre-filled as the host's default slice: 20 ms (sched_ext's SCX_SLICE_DFL).
    pub const DEFAULT_SLICE_NS: u64 = 20_000_000;
}

/// A plausible context for a call of `hook`, as the host would pre-fill it for a nice-0 task in
/// task slot 0 on CPU 0 of a 4-CPU machine, runnable since just now, with no hints:
/// `abi_version`, `ctx_size` and `hook` set for the ABI, the times and bounds of [`sample`],
/// `tenant_nr_runnable` 1, every other input 0, and the outputs at the host's defaults (`key` =
/// `now_ns`, `slice_ns` = the default slice, `target_cpu` = `UPSCHED_CPU_ANY`, `verdict` RUN,
/// `park_until_ns` 0).
pub fn sample_ctx(hook: &HookInfo) -> UpschedCtx {
    UpschedCtx {
        abi_version: upsched_abi::ABI_VERSION,
        ctx_size: CTX_SIZE as u32,
        now_ns: sample::NOW_NS,
        hook: hook.id,
        nr_cpus: sample::NR_CPUS,
        pid: sample::PID,
        tgid: sample::PID,
        weight: sample::WEIGHT,
        tenant_weight: sample::WEIGHT,
        tenant_nr_runnable: 1,
        slice_min_ns: sample::SLICE_MIN_NS,
        slice_max_ns: sample::SLICE_MAX_NS,
        park_max_ns: sample::PARK_MAX_NS,
        key: sample::NOW_NS,
        slice_ns: sample::DEFAULT_SLICE_NS,
        target_cpu: upsched_abi::CPU_ANY,
        verdict: upsched_abi::VERDICT_RUN,
        ..UpschedCtx::default()
    }
}

/// Routes the program's kfunc calls (whose `imm` the loader replaced with an index into
/// `kfuncs`) to the embedder; helpers are never bound.
struct KfuncTable<'a> {
    kfuncs: &'a [(&'static KfuncInfo, usize)],
    provider: &'a mut dyn KfuncProvider,
}

impl Externals for KfuncTable<'_> {
    fn call(
        &mut self,
        kind: CallKind,
        id: i32,
        args: [u64; 5],
        _memory: &mut Memory,
    ) -> Result<u64, CallError> {
        if kind != CallKind::Kfunc {
            return Err(CallError::Unbound);
        }
        let &(kfunc, arity) = usize::try_from(id)
            .ok()
            .and_then(|index| self.kfuncs.get(index))
            .ok_or(CallError::Unbound)?;
        // Registers past the kfunc's parameters are whatever the program left there (the
        // verifier checks only the parameters): pass zeros instead.
        let mut args = args;
        for arg in args.iter_mut().skip(arity) {
            *arg = 0;
        }
        self.provider.call_kfunc(kfunc, args)
    }
}

/// Appends little-endian fields in declaration order; `UpschedCtx` is `repr(C)` without padding
/// (asserted against abi.toml at build time), so this is its C layout. A test compares every
/// field's position with `upsched_abi::FIELDS`.
struct CtxWriter<'a> {
    bytes: &'a mut [u8; CTX_SIZE],
    at: usize,
}

impl CtxWriter<'_> {
    /// Inlined, every call has a constant position in a fixed-size array, so the whole
    /// serialisation compiles to plain stores without bounds checks (it runs on every call).
    #[inline(always)]
    fn put<const N: usize>(&mut self, value: [u8; N]) {
        self.bytes[self.at..self.at + N].copy_from_slice(&value);
        self.at += N;
    }
}

/// Serialises the whole context into its C layout; a shorter `bytes` gets the leading part.
pub fn ctx_to_bytes(ctx: &UpschedCtx, bytes: &mut [u8]) {
    match <&mut [u8; CTX_SIZE]>::try_from(&mut *bytes) {
        Ok(exact) => write_ctx(ctx, exact),
        Err(_) => {
            let mut whole = [0; CTX_SIZE];
            write_ctx(ctx, &mut whole);
            let len = bytes.len().min(CTX_SIZE);
            bytes[..len].copy_from_slice(&whole[..len]);
        }
    }
}

fn write_ctx(ctx: &UpschedCtx, bytes: &mut [u8; CTX_SIZE]) {
    let mut w = CtxWriter { bytes, at: 0 };
    w.put(ctx.abi_version.to_le_bytes());
    w.put(ctx.ctx_size.to_le_bytes());
    w.put(ctx.now_ns.to_le_bytes());
    w.put(ctx.hook.to_le_bytes());
    w.put(ctx.cpu.to_le_bytes());
    w.put(ctx.nr_cpus.to_le_bytes());
    w.put(ctx.flags.to_le_bytes());
    w.put(ctx.pid.to_le_bytes());
    w.put(ctx.tgid.to_le_bytes());
    w.put(ctx.task_slot.to_le_bytes());
    w.put(ctx.weight.to_le_bytes());
    w.put(ctx.nice.to_le_bytes());
    w.put(ctx.prev_cpu.to_le_bytes());
    w.put(ctx.sum_runtime_ns.to_le_bytes());
    w.put(ctx.last_runtime_ns.to_le_bytes());
    w.put(ctx.runnable_ns.to_le_bytes());
    w.put(ctx.nr_voluntary_switches.to_le_bytes());
    w.put(ctx.nr_involuntary_switches.to_le_bytes());
    for hint in &ctx.hints {
        w.put(hint.to_le_bytes());
    }
    w.put(ctx.tenant_id.to_le_bytes());
    w.put(ctx.tenant_level.to_le_bytes());
    w.put(ctx.tenant_weight.to_le_bytes());
    w.put(ctx.tenant_nr_runnable.to_le_bytes());
    w.put(ctx.slice_min_ns.to_le_bytes());
    w.put(ctx.slice_max_ns.to_le_bytes());
    w.put(ctx.park_max_ns.to_le_bytes());
    w.put(ctx.key.to_le_bytes());
    w.put(ctx.slice_ns.to_le_bytes());
    w.put(ctx.park_until_ns.to_le_bytes());
    w.put(ctx.target_cpu.to_le_bytes());
    w.put(ctx.verdict.to_le_bytes());
}

/// Reads a whole context from its C layout (the inverse of [`ctx_to_bytes`]); missing bytes
/// read as 0.
pub fn ctx_from_bytes(bytes: &[u8]) -> UpschedCtx {
    let mut r = CtxReader { bytes, at: 0 };
    let mut ctx = UpschedCtx {
        abi_version: r.u32(),
        ctx_size: r.u32(),
        now_ns: r.u64(),
        hook: r.u32(),
        cpu: r.u32(),
        nr_cpus: r.u32(),
        flags: r.u32(),
        pid: r.u32(),
        tgid: r.u32(),
        task_slot: r.u32(),
        weight: r.u32(),
        nice: r.u32() as i32,
        prev_cpu: r.u32() as i32,
        sum_runtime_ns: r.u64(),
        last_runtime_ns: r.u64(),
        runnable_ns: r.u64(),
        nr_voluntary_switches: r.u64(),
        nr_involuntary_switches: r.u64(),
        ..UpschedCtx::default()
    };
    for hint in &mut ctx.hints {
        *hint = r.u64();
    }
    ctx.tenant_id = r.u32();
    ctx.tenant_level = r.u32();
    ctx.tenant_weight = r.u32();
    ctx.tenant_nr_runnable = r.u32();
    ctx.slice_min_ns = r.u64();
    ctx.slice_max_ns = r.u64();
    ctx.park_max_ns = r.u64();
    outputs_from_bytes(bytes, &mut ctx);
    ctx
}

struct CtxReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl CtxReader<'_> {
    fn u32(&mut self) -> u32 {
        self.at += 4;
        read_u32(self.bytes, self.at - 4)
    }

    fn u64(&mut self) -> u64 {
        self.at += 8;
        read_u64(self.bytes, self.at - 8)
    }
}

/// Byte offset of the first output field (`key`); the outputs run to the end of the context.
const OUTPUTS_START: usize = 200;

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut value = [0; 8];
    if let Some(source) = bytes.get(at..at + 8) {
        value.copy_from_slice(source);
    }
    u64::from_le_bytes(value)
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut value = [0; 4];
    if let Some(source) = bytes.get(at..at + 4) {
        value.copy_from_slice(source);
    }
    u32::from_le_bytes(value)
}

/// Copies only the output fields from the context's C layout into `ctx`.
pub fn outputs_from_bytes(bytes: &[u8], ctx: &mut UpschedCtx) {
    ctx.key = read_u64(bytes, OUTPUTS_START);
    ctx.slice_ns = read_u64(bytes, OUTPUTS_START + 8);
    ctx.park_until_ns = read_u64(bytes, OUTPUTS_START + 16);
    ctx.target_cpu = read_u32(bytes, OUTPUTS_START + 24) as i32;
    ctx.verdict = read_u32(bytes, OUTPUTS_START + 28);
}

#[cfg(test)]
mod tests {
    use super::*;
    use upsched_abi::{Direction, FIELDS};

    #[test]
    fn policies_and_instances_can_move_between_threads() {
        fn assert_send<T: Send>() {}
        assert_send::<LoadedPolicy>();
        assert_send::<PolicyInstance>();
    }

    /// Every field's bytes land at the offset `abi.toml` gives it, and exactly the output
    /// fields come back.
    #[test]
    fn ctx_layout_matches_the_abi_tables() {
        let mut ctx = UpschedCtx::default();
        // A distinct byte pattern per field: field index + 1 in every byte.
        let mut bytes = vec![0u8; CTX_SIZE];
        for (index, field) in FIELDS.iter().enumerate() {
            bytes[field.offset..field.offset + field.size].fill(index as u8 + 1);
        }
        let pattern = |index: usize| u64::from_le_bytes([index as u8 + 1; 8]);
        let by_name = |name: &str| FIELDS.iter().position(|f| f.name == name).unwrap();
        ctx.abi_version = pattern(by_name("abi_version")) as u32;
        ctx.ctx_size = pattern(by_name("ctx_size")) as u32;
        ctx.now_ns = pattern(by_name("now_ns"));
        ctx.hook = pattern(by_name("hook")) as u32;
        ctx.cpu = pattern(by_name("cpu")) as u32;
        ctx.nr_cpus = pattern(by_name("nr_cpus")) as u32;
        ctx.flags = pattern(by_name("flags")) as u32;
        ctx.pid = pattern(by_name("pid")) as u32;
        ctx.tgid = pattern(by_name("tgid")) as u32;
        ctx.task_slot = pattern(by_name("task_slot")) as u32;
        ctx.weight = pattern(by_name("weight")) as u32;
        ctx.nice = pattern(by_name("nice")) as i32;
        ctx.prev_cpu = pattern(by_name("prev_cpu")) as i32;
        ctx.sum_runtime_ns = pattern(by_name("sum_runtime_ns"));
        ctx.last_runtime_ns = pattern(by_name("last_runtime_ns"));
        ctx.runnable_ns = pattern(by_name("runnable_ns"));
        ctx.nr_voluntary_switches = pattern(by_name("nr_voluntary_switches"));
        ctx.nr_involuntary_switches = pattern(by_name("nr_involuntary_switches"));
        ctx.hints = [pattern(by_name("hints")); 8];
        ctx.tenant_id = pattern(by_name("tenant_id")) as u32;
        ctx.tenant_level = pattern(by_name("tenant_level")) as u32;
        ctx.tenant_weight = pattern(by_name("tenant_weight")) as u32;
        ctx.tenant_nr_runnable = pattern(by_name("tenant_nr_runnable")) as u32;
        ctx.slice_min_ns = pattern(by_name("slice_min_ns"));
        ctx.slice_max_ns = pattern(by_name("slice_max_ns"));
        ctx.park_max_ns = pattern(by_name("park_max_ns"));
        ctx.key = pattern(by_name("key"));
        ctx.slice_ns = pattern(by_name("slice_ns"));
        ctx.park_until_ns = pattern(by_name("park_until_ns"));
        ctx.target_cpu = pattern(by_name("target_cpu")) as i32;
        ctx.verdict = pattern(by_name("verdict")) as u32;
        let mut written = vec![0u8; CTX_SIZE];
        ctx_to_bytes(&ctx, &mut written);
        assert_eq!(written, bytes);
        assert_eq!(ctx_from_bytes(&bytes), ctx);

        let outputs: Vec<_> = FIELDS.iter().filter(|f| f.dir == Direction::Out).collect();
        assert_eq!(outputs.first().map(|f| f.offset), Some(OUTPUTS_START));
        assert_eq!(
            outputs.iter().map(|f| f.size).sum::<usize>(),
            CTX_SIZE - 200
        );
        // Reading back from all-0xff bytes changes every output and no input.
        let mut back = UpschedCtx::default();
        outputs_from_bytes(&[0xff; CTX_SIZE], &mut back);
        let expected = UpschedCtx {
            key: u64::MAX,
            slice_ns: u64::MAX,
            park_until_ns: u64::MAX,
            target_cpu: -1,
            verdict: u32::MAX,
            ..UpschedCtx::default()
        };
        assert_eq!(back, expected);
    }
}
