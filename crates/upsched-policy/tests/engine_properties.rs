//! Property tests: every example policy, run by the engine from its object bytes, gives exactly
//! the outputs (and keeps exactly the state) of the same policy written again in Rust from its
//! C source, over thousands of generated call sequences with arbitrary contexts; and the JIT and
//! the interpreter agree on every output, global, kfunc call and error.

use proptest::prelude::*;
use std::sync::OnceLock;
use upsched_abi::{
    F_RELEASED, F_WAKEUP, HINT_DEADLINE, HINT_FIRST_FREE, HINT_FLAGS, HINT_LATENCY_NS,
    HINT_PENDING, HINTF_IDLE_LOOP, HINTF_LATENCY_SENSITIVE, HINTF_SLEEPY, MAX_TASKS, UpschedCtx,
    VERDICT_PARK, VERDICT_PREEMPT,
};

use upsched_abi::KfuncInfo;
use upsched_ebpf::CallError;
use upsched_ebpf::insn::{BPF_PSEUDO_CALL, BPF_PSEUDO_KFUNC_CALL, Insn};
use upsched_policy::engine::sample_ctx;
use upsched_policy::{
    EngineOptions, ExecMode, KfuncProvider, LoadedPolicy, NoKfuncs, PolicyInstance, PolicyObject,
};

const MS: u64 = 1_000_000;

/// A policy written in Rust: `call` applies a hook to the context and the model's state.
trait Model {
    fn call(&mut self, hook: &str, ctx: &mut UpschedCtx);
    /// Global variables the engine instance must agree on: (name, value).
    fn globals(&self) -> Vec<(&'static str, u64)>;
}

fn slot(ctx: &UpschedCtx) -> usize {
    (ctx.task_slot & (MAX_TASKS - 1)) as usize
}

fn weight_or_one(ctx: &UpschedCtx) -> u64 {
    u64::from(ctx.weight.max(1))
}

struct Fifo;
impl Model for Fifo {
    fn call(&mut self, hook: &str, ctx: &mut UpschedCtx) {
        if hook == "enqueue" {
            ctx.key = ctx.now_ns.wrapping_sub(ctx.runnable_ns);
            ctx.slice_ns = ctx.slice_max_ns;
        }
    }
    fn globals(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

struct RoundRobin;
impl Model for RoundRobin {
    fn call(&mut self, hook: &str, ctx: &mut UpschedCtx) {
        if hook == "enqueue" {
            ctx.key = ctx.now_ns;
            ctx.slice_ns = 5 * MS;
        }
    }
    fn globals(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

struct Prio;
impl Model for Prio {
    fn call(&mut self, hook: &str, ctx: &mut UpschedCtx) {
        if hook == "enqueue" {
            let band = (ctx.nice.wrapping_add(20) as u64) & 0x3f;
            let time = ctx.now_ns.wrapping_sub(ctx.runnable_ns) & ((1 << 56) - 1);
            ctx.key = band << 56 | time;
            if ctx.flags & F_WAKEUP != 0 {
                ctx.verdict = VERDICT_PREEMPT;
            }
        }
    }
    fn globals(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

struct Wfq {
    vtime: Vec<u64>,
    vtime_now: u64,
}
impl Model for Wfq {
    fn call(&mut self, hook: &str, ctx: &mut UpschedCtx) {
        let slot = slot(ctx);
        match hook {
            "task_init" => self.vtime[slot] = self.vtime_now,
            "enqueue" => {
                let floor = self.vtime_now.saturating_sub(5 * MS);
                if self.vtime[slot] < floor {
                    self.vtime[slot] = floor;
                }
                ctx.key = self.vtime[slot];
            }
            "running" => self.vtime_now = self.vtime_now.max(self.vtime[slot]),
            "stopping" => {
                let charge = ctx.last_runtime_ns.wrapping_mul(100) / weight_or_one(ctx);
                self.vtime[slot] = self.vtime[slot].wrapping_add(charge);
            }
            _ => {}
        }
    }
    fn globals(&self) -> Vec<(&'static str, u64)> {
        vec![("vtime_now", self.vtime_now)]
    }
}

struct Edf {
    rel_deadline: Vec<u64>,
}
impl Model for Edf {
    fn call(&mut self, hook: &str, ctx: &mut UpschedCtx) {
        let slot = slot(ctx);
        match hook {
            "task_init" => self.rel_deadline[slot] = 20 * MS * 100 / weight_or_one(ctx),
            "enqueue" => {
                let since = ctx.now_ns.wrapping_sub(ctx.runnable_ns);
                let mut deadline = ctx.hints[HINT_DEADLINE as usize];
                if deadline == 0 {
                    let mut relative = ctx.hints[HINT_LATENCY_NS as usize];
                    if relative == 0 {
                        relative = self.rel_deadline[slot];
                    }
                    deadline = since.wrapping_add(relative);
                }
                ctx.key = deadline;
                if ctx.flags & F_WAKEUP != 0 && deadline <= ctx.now_ns.wrapping_add(ctx.slice_ns) {
                    ctx.verdict = VERDICT_PREEMPT;
                }
            }
            _ => {}
        }
    }
    fn globals(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

struct Faas {
    nr_parked: u64,
}
impl Model for Faas {
    fn call(&mut self, hook: &str, ctx: &mut UpschedCtx) {
        let pending = ctx.hints[HINT_PENDING as usize];
        let idle = ctx.hints[HINT_FLAGS as usize] & u64::from(HINTF_SLEEPY) != 0 && pending == 0;
        match hook {
            "enqueue" => {
                let since = ctx.now_ns.wrapping_sub(ctx.runnable_ns);
                if idle {
                    ctx.verdict = VERDICT_PARK;
                    ctx.key = since | 1 << 63;
                    self.nr_parked += 1;
                } else if ctx.flags & F_RELEASED != 0 || pending != 0 {
                    ctx.key = since & !(1 << 63);
                    ctx.verdict = VERDICT_PREEMPT;
                } else {
                    ctx.key = since | 1 << 63;
                }
            }
            "tick" if idle => ctx.verdict = VERDICT_PREEMPT,
            _ => {}
        }
    }
    fn globals(&self) -> Vec<(&'static str, u64)> {
        vec![("nr_parked", self.nr_parked)]
    }
}

/// vm.bpf.c: per task its virtual time, idle epoch and when its idle period was first seen.
struct Vm {
    vtime: Vec<u64>,
    idle_epoch: Vec<u64>,
    idle_seen: Vec<u64>,
    vtime_now: u64,
    nr_parked: u64,
    nr_throttled: u64,
}
impl Vm {
    const HALT_POLL: usize = HINT_FIRST_FREE as usize;
    const EPOCH: usize = HINT_FIRST_FREE as usize + 1;
    const PARK: usize = HINT_FIRST_FREE as usize + 2;

    fn hint_or(ctx: &UpschedCtx, word: usize, fallback: u64) -> u64 {
        match ctx.hints[word] {
            0 => fallback,
            value => value,
        }
    }

    fn idles(ctx: &UpschedCtx) -> bool {
        ctx.hints[HINT_FLAGS as usize] & u64::from(HINTF_IDLE_LOOP) != 0
    }

    fn idle_past_window(&mut self, slot: usize, ctx: &UpschedCtx) -> bool {
        if !Self::idles(ctx) {
            self.idle_seen[slot] = 0;
            return false;
        }
        let epoch = ctx.hints[Self::EPOCH];
        if self.idle_seen[slot] == 0 || self.idle_epoch[slot] != epoch {
            self.idle_epoch[slot] = epoch;
            self.idle_seen[slot] = ctx.now_ns;
        }
        ctx.now_ns.wrapping_sub(self.idle_seen[slot])
            >= Self::hint_or(ctx, Self::HALT_POLL, 200_000)
    }
}
impl Model for Vm {
    fn call(&mut self, hook: &str, ctx: &mut UpschedCtx) {
        let slot = slot(ctx);
        let park_ns = Self::hint_or(ctx, Self::PARK, 20 * MS);
        match hook {
            "task_init" => {
                self.vtime[slot] = self.vtime_now;
                self.idle_seen[slot] = 0;
            }
            "enqueue" => {
                let floor = self.vtime_now.saturating_sub(5 * MS);
                if self.vtime[slot] < floor {
                    self.vtime[slot] = floor;
                }
                ctx.key = self.vtime[slot];
                if self.idle_past_window(slot, ctx) {
                    ctx.slice_ns = ctx.slice_min_ns;
                    if ctx.flags & F_RELEASED != 0 {
                        ctx.key = floor;
                    } else if ctx.runnable_ns.wrapping_add(park_ns) <= ctx.park_max_ns {
                        ctx.verdict = VERDICT_PARK;
                        ctx.park_until_ns = ctx.now_ns.wrapping_add(park_ns);
                        self.nr_parked += 1;
                    } else {
                        self.nr_throttled += 1;
                    }
                } else if ctx.hints[HINT_PENDING as usize] != 0 {
                    ctx.key = self.vtime[slot].saturating_sub(5 * MS);
                    if ctx.hints[HINT_FLAGS as usize] & u64::from(HINTF_LATENCY_SENSITIVE) != 0 {
                        ctx.key = self.vtime[slot].saturating_sub(10 * MS);
                        if ctx.flags & (F_WAKEUP | F_RELEASED) != 0 {
                            ctx.verdict = VERDICT_PREEMPT;
                        }
                    }
                }
            }
            "tick" if self.idle_past_window(slot, ctx) => ctx.verdict = VERDICT_PREEMPT,
            "running" if !Self::idles(ctx) => {
                self.vtime_now = self.vtime_now.max(self.vtime[slot]);
            }
            "stopping" => {
                let charge = ctx.last_runtime_ns.wrapping_mul(100) / weight_or_one(ctx);
                if Self::idles(ctx) {
                    let lead_cap = self.vtime_now.wrapping_add(park_ns);
                    self.vtime[slot] = self.vtime[slot].wrapping_add(charge.wrapping_mul(32));
                    if self.vtime[slot] > lead_cap {
                        self.vtime[slot] = lead_cap;
                    }
                } else {
                    self.vtime[slot] = self.vtime[slot].wrapping_add(charge);
                }
            }
            _ => {}
        }
    }
    fn globals(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("vtime_now", self.vtime_now),
            ("nr_parked", self.nr_parked),
            ("nr_throttled", self.nr_throttled),
        ]
    }
}

fn model(name: &str) -> Box<dyn Model> {
    match name {
        "fifo" => Box::new(Fifo),
        "rr" => Box::new(RoundRobin),
        "prio" => Box::new(Prio),
        "wfq" => Box::new(Wfq {
            vtime: vec![0; MAX_TASKS as usize],
            vtime_now: 0,
        }),
        "edf" => Box::new(Edf {
            rel_deadline: vec![0; MAX_TASKS as usize],
        }),
        "faas" => Box::new(Faas { nr_parked: 0 }),
        "vm" => Box::new(Vm {
            vtime: vec![0; MAX_TASKS as usize],
            idle_epoch: vec![0; MAX_TASKS as usize],
            idle_seen: vec![0; MAX_TASKS as usize],
            vtime_now: 0,
            nr_parked: 0,
            nr_throttled: 0,
        }),
        other => panic!("no model for {other}"),
    }
}

/// One generated call: which hook, and the context's fields. Values mix small numbers (so
/// that slots collide and flags hit) with arbitrary ones (wrap-around, huge weights).
#[derive(Clone, Debug)]
struct Call {
    hook: usize,
    words: [u64; 12],
    hints: [u64; 8],
    small: [u8; 8],
}

fn arb_call() -> impl Strategy<Value = Call> {
    (
        0usize..7,
        any::<[u64; 12]>(),
        prop::array::uniform8(prop_oneof![Just(0u64), 0u64..4, any::<u64>()]),
        any::<[u8; 8]>(),
    )
        .prop_map(|(hook, words, hints, small)| Call {
            hook,
            words,
            hints,
            small,
        })
}

fn context(call: &Call) -> UpschedCtx {
    let hook = &upsched_abi::HOOKS[call.hook];
    let mut ctx = sample_ctx(hook);
    let [w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11] = call.words;
    let small = |i: usize| u64::from(call.small[i]);
    ctx.now_ns = if small(0) & 1 == 0 {
        w0 % (1 << 40)
    } else {
        w0
    };
    ctx.runnable_ns = if small(1) & 1 == 0 {
        w1 % (10 * MS)
    } else {
        w1
    };
    ctx.flags = w2 as u32 & 0x7f;
    ctx.task_slot = if small(2) & 1 == 0 {
        (small(3) % 5) as u32
    } else {
        w3 as u32
    };
    ctx.weight = match small(4) % 4 {
        0 => 0,
        1 => 100,
        2 => (w4 % 10_000) as u32,
        _ => w4 as u32,
    };
    ctx.nice = if small(5) & 1 == 0 {
        (small(6) % 40) as i32 - 20
    } else {
        w5 as i32
    };
    ctx.last_runtime_ns = if small(7) & 1 == 0 {
        w6 % (100 * MS)
    } else {
        w6
    };
    ctx.slice_max_ns = w7;
    ctx.hints = call.hints;
    // Outputs pre-filled with arbitrary values: hooks that do not set them must keep them.
    ctx.key = w8;
    ctx.slice_ns = w9 % (100 * MS);
    ctx.target_cpu = w10 as i32;
    ctx.verdict = (w11 % 4) as u32;
    ctx.park_until_ns = w11;
    ctx
}

fn run_sequence(name: &str, instance: &mut PolicyInstance, calls: &[Call]) {
    let mut model = model(name);
    for (step, call) in calls.iter().enumerate() {
        let hook = upsched_abi::HOOKS[call.hook].name;
        let mut by_engine = context(call);
        let mut by_model = by_engine;
        instance
            .call(hook, &mut by_engine, &mut NoKfuncs)
            .unwrap_or_else(|e| panic!("{name} step {step} {hook}: {e}"));
        if instance.policy().implements(hook) {
            model.call(hook, &mut by_model);
        }
        assert_eq!(by_engine, by_model, "{name} step {step} {hook}");
        for (global, value) in model.globals() {
            assert_eq!(
                instance.global_u64(global),
                Some(value),
                "{name} step {step} {hook}: {global}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// 400 sequences of up to 40 calls per policy: 16,000 calls per policy at most, each
    /// compared field by field.
    #[test]
    fn examples_agree_with_their_rust_models(calls in prop::collection::vec(arb_call(), 1..40)) {
        for name in upsched_policies::names() {
            let policy = LoadedPolicy::load(upsched_policies::policy(name).unwrap()).unwrap();
            let mut instance = policy.instantiate();
            run_sequence(name, &mut instance, &calls);
        }
    }
}

/// Answers each kfunc call with a value mixed from its arguments and the number of calls before
/// it, and records the calls, so that two engines can be compared call by call.
#[derive(Default)]
struct ScriptedKfuncs {
    log: Vec<(&'static str, [u64; 5])>,
}

impl KfuncProvider for ScriptedKfuncs {
    fn call_kfunc(&mut self, kfunc: &'static KfuncInfo, args: [u64; 5]) -> Result<u64, CallError> {
        self.log.push((kfunc.name, args));
        Ok((self.log.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ args[0])
    }
}

/// Every example policy and the kfunc-calling test object, loaded once per engine.
fn policies_in_both_modes() -> &'static [(String, LoadedPolicy, LoadedPolicy)] {
    static LOADED: OnceLock<Vec<(String, LoadedPolicy, LoadedPolicy)>> = OnceLock::new();
    LOADED.get_or_init(|| {
        let objects = upsched_policies::POLICIES
            .iter()
            .map(|&(name, bytes)| (name, bytes))
            .chain([("kfunc_user", upsched_testdata::object("kfunc_user"))]);
        objects
            .map(|(name, bytes)| {
                let object = PolicyObject::parse(bytes).unwrap();
                let load = |mode| {
                    let options = EngineOptions {
                        budget: 1_000_000,
                        mode,
                        ..EngineOptions::default()
                    };
                    LoadedPolicy::from_object(&object, &options).unwrap()
                };
                (
                    name.to_string(),
                    load(ExecMode::Jit),
                    load(ExecMode::Interpreter),
                )
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// 300 sequences of up to 40 calls on each of 7 objects: the JIT and the interpreter give
    /// the same result, outputs and globals after every call, and make the same kfunc calls.
    #[test]
    fn jit_and_interpreter_agree_on_outputs_globals_and_kfunc_calls(
        calls in prop::collection::vec(arb_call(), 1..40),
    ) {
        for (name, jit, interpreter) in policies_in_both_modes() {
            prop_assert_eq!(jit.mode(), ExecMode::Jit);
            prop_assert_eq!(interpreter.mode(), ExecMode::Interpreter);
            let (mut native, mut interpreted) = (jit.instantiate(), interpreter.instantiate());
            let (mut native_kfuncs, mut interpreted_kfuncs) =
                (ScriptedKfuncs::default(), ScriptedKfuncs::default());
            for (step, call) in calls.iter().enumerate() {
                let hook = &upsched_abi::HOOKS[call.hook];
                let mut native_ctx = context(call);
                let mut interpreted_ctx = native_ctx;
                let native_result = native
                    .call_hook(hook, &mut native_ctx, &mut native_kfuncs)
                    .map_err(|e| e.to_string());
                let interpreted_result = interpreted
                    .call_hook(hook, &mut interpreted_ctx, &mut interpreted_kfuncs)
                    .map_err(|e| e.to_string());
                prop_assert_eq!(native_result, interpreted_result, "{} step {}", name, step);
                prop_assert_eq!(native_ctx, interpreted_ctx, "{} step {}", name, step);
                for global in native.global_names() {
                    prop_assert_eq!(
                        native.global(global),
                        interpreted.global(global),
                        "{} step {}: {}", name, step, global
                    );
                }
            }
            prop_assert_eq!(&native_kfuncs.log, &interpreted_kfuncs.log, "{}", name);
        }
    }
}

/// Hook programs that skip the verifier and fail at run time fail the same way, with the same
/// message (instruction index included), on both engines.
#[test]
fn unverified_failures_are_the_same_on_both_engines() {
    let exit = Insn::new(0x95, 0, 0, 0, 0);
    let failing: [(&str, Vec<Insn>); 6] = [
        ("endless loop", vec![Insn::new(0x05, 0, 0, -1, 0), exit]),
        ("load through NULL", vec![Insn::new(0x79, 0, 2, 8, 0), exit]),
        (
            "store past the context",
            vec![Insn::new(0x7a, 1, 0, 4096, 7), exit],
        ),
        (
            "store below the frame",
            vec![Insn::new(0x7a, 10, 0, -520, 7), exit],
        ),
        (
            "unbound kfunc",
            vec![Insn::new(0x85, 0, BPF_PSEUDO_KFUNC_CALL, 0, 9), exit],
        ),
        (
            "unbounded recursion",
            vec![Insn::new(0x85, 0, BPF_PSEUDO_CALL, 0, -1), exit],
        ),
    ];
    let mut object = PolicyObject::parse(upsched_policies::policy("rr").unwrap()).unwrap();
    for (what, insns) in failing {
        object.programs[0].insns = insns;
        object.programs[0].relocs.clear();
        let errors: Vec<String> = [ExecMode::Jit, ExecMode::Interpreter]
            .into_iter()
            .map(|mode| {
                let options = EngineOptions {
                    budget: 10_000,
                    mode,
                    ..EngineOptions::default()
                };
                let policy = LoadedPolicy::from_object_unverified(&object, &options).unwrap();
                let mut ctx = sample_ctx(upsched_abi::hook("enqueue").unwrap());
                policy
                    .instantiate()
                    .call("enqueue", &mut ctx, &mut ScriptedKfuncs::default())
                    .expect_err(what)
                    .to_string()
            })
            .collect();
        assert_eq!(errors[0], errors[1], "{what}");
    }
}
