//! The engine runs every example policy from its embedded object bytes, and each behaves as its
//! header comment promises on hand-built contexts. Also: instances are independent, only
//! outputs come back, kfuncs reach the embedder, errors are typed.

use upsched_abi::{
    F_RELEASED, F_WAKEUP, HINT_DEADLINE, HINT_FLAGS, HINT_LATENCY_NS, HINT_PENDING, HINTF_SLEEPY,
    UpschedCtx, VERDICT_PARK, VERDICT_PREEMPT, VERDICT_RUN,
};
use upsched_ebpf::insn::Insn;
use upsched_ebpf::{CallError, ExecError};
use upsched_policy::engine::{
    EngineError, FixedKfuncs, JIT_MAX_INSNS_PER_HOOK, sample, sample_ctx,
};
use upsched_policy::{
    EngineOptions, ExecMode, Limits, LoadedPolicy, NoKfuncs, PolicyInstance, PolicyObject,
    ProblemKind,
};

const MS: u64 = 1_000_000;

fn example(name: &str) -> LoadedPolicy {
    let bytes = upsched_policies::policy(name).expect("example exists");
    LoadedPolicy::load(bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn ctx(hook: &str) -> UpschedCtx {
    sample_ctx(upsched_abi::hook(hook).expect("hook exists"))
}

/// Calls `hook` on `instance` with `ctx` modified by `setup`; returns the context after.
fn call(
    instance: &mut PolicyInstance,
    hook: &str,
    setup: impl FnOnce(&mut UpschedCtx),
) -> UpschedCtx {
    let mut ctx = ctx(hook);
    setup(&mut ctx);
    instance
        .call(hook, &mut ctx, &mut NoKfuncs)
        .unwrap_or_else(|e| panic!("{hook}: {e}"));
    ctx
}

#[test]
fn every_example_loads_and_declares_its_name_and_hooks() {
    let expected: &[(&str, &[&str])] = &[
        ("edf", &["enqueue", "task_init"]),
        ("faas", &["enqueue", "tick"]),
        ("fifo", &["enqueue"]),
        ("prio", &["enqueue"]),
        ("rr", &["enqueue"]),
        ("wfq", &["enqueue", "running", "stopping", "task_init"]),
    ];
    for (name, hooks) in expected {
        let policy = example(name);
        assert_eq!(policy.name(), *name);
        assert_eq!(policy.hooks().collect::<Vec<_>>(), *hooks, "{name}");
        assert!(!policy.implements("select_cpu"));
    }
}

#[test]
fn fifo_keys_by_the_time_the_task_became_runnable_with_the_longest_slice() {
    let mut fifo = example("fifo").instantiate();
    let after = call(&mut fifo, "enqueue", |c| {
        c.now_ns = 7_000 * MS;
        c.runnable_ns = 3 * MS;
    });
    assert_eq!(after.key, 6_997 * MS);
    assert_eq!(after.slice_ns, sample::SLICE_MAX_NS);
    assert_eq!(after.verdict, VERDICT_RUN);
    // A task runnable for longer queues ahead of one that just became runnable.
    let old = call(&mut fifo, "enqueue", |c| c.runnable_ns = 10 * MS);
    let new = call(&mut fifo, "enqueue", |c| c.runnable_ns = 0);
    assert!(old.key < new.key);
}

#[test]
fn rr_keys_by_now_with_a_5ms_slice() {
    let mut rr = example("rr").instantiate();
    let after = call(&mut rr, "enqueue", |c| {
        c.now_ns = 42 * MS;
        c.runnable_ns = 3 * MS;
        c.nice = -10;
        c.weight = 1000;
    });
    assert_eq!(after.key, 42 * MS);
    assert_eq!(after.slice_ns, 5 * MS);
}

#[test]
fn prio_orders_by_nice_band_then_fifo_and_preempts_on_wakeup() {
    let mut prio = example("prio").instantiate();
    let enqueue = |prio: &mut PolicyInstance, nice: i32, runnable_ns: u64, flags: u32| {
        call(prio, "enqueue", |c| {
            c.nice = nice;
            c.runnable_ns = runnable_ns;
            c.flags = flags;
        })
    };
    let urgent_late = enqueue(&mut prio, -20, 0, 0);
    let normal_early = enqueue(&mut prio, 0, 500 * MS, 0);
    let normal_late = enqueue(&mut prio, 0, 0, 0);
    let background = enqueue(&mut prio, 19, 900 * MS, 0);
    assert!(
        urgent_late.key < normal_early.key,
        "a lower nice runs first"
    );
    assert!(normal_early.key < normal_late.key, "FIFO within a band");
    assert!(normal_late.key < background.key);
    assert_eq!(urgent_late.key >> 56, 0);
    assert_eq!(background.key >> 56, 39);
    assert_eq!(normal_late.verdict, VERDICT_RUN);
    let woken = enqueue(&mut prio, 0, 0, F_WAKEUP);
    assert_eq!(woken.verdict, VERDICT_PREEMPT);
    assert_eq!(woken.key, normal_late.key);
}

#[test]
fn wfq_accumulates_virtual_time_by_weight() {
    let wfq = example("wfq");
    let mut instance = wfq.instantiate();
    let (light, heavy) = (1, 2);
    for slot in [light, heavy] {
        call(&mut instance, "task_init", |c| c.task_slot = slot);
    }
    // Both run 10 ms; the heavy task (weight 200) accrues half the virtual time.
    for (slot, weight) in [(light, 100), (heavy, 200)] {
        call(&mut instance, "running", |c| {
            c.task_slot = slot;
            c.weight = weight;
        });
        call(&mut instance, "stopping", |c| {
            c.task_slot = slot;
            c.weight = weight;
            c.last_runtime_ns = 10 * MS;
        });
    }
    let key = |instance: &mut PolicyInstance, slot: u32| {
        call(instance, "enqueue", |c| c.task_slot = slot).key
    };
    assert_eq!(key(&mut instance, light), 10 * MS);
    assert_eq!(key(&mut instance, heavy), 5 * MS);
    // Running again moves the tenant's virtual time to the largest vtime that started.
    call(&mut instance, "running", |c| c.task_slot = light);
    assert_eq!(instance.global_u64("vtime_now"), Some(10 * MS));
    call(&mut instance, "stopping", |c| {
        c.task_slot = light;
        c.last_runtime_ns = 30 * MS;
    });
    assert_eq!(key(&mut instance, light), 40 * MS);
    // A task that never ran is placed at most one sleep credit (5 ms) behind vtime_now.
    call(&mut instance, "running", |c| c.task_slot = light);
    assert_eq!(key(&mut instance, 3), 35 * MS);
    // Weight 0 counts as 1 instead of dividing by zero; a task joining starts at vtime_now.
    call(&mut instance, "task_init", |c| c.task_slot = 4);
    call(&mut instance, "stopping", |c| {
        c.task_slot = 4;
        c.weight = 0;
        c.last_runtime_ns = 1_000;
    });
    assert_eq!(key(&mut instance, 4), 40 * MS + 100_000);
    // A fresh instance starts from zero again.
    let fresh = wfq.instantiate();
    assert_eq!(fresh.global_u64("vtime_now"), Some(0));
}

#[test]
fn edf_prefers_hinted_deadline_then_latency_target_then_weight_default() {
    let mut edf = example("edf").instantiate();
    call(&mut edf, "task_init", |c| c.task_slot = 1);
    call(&mut edf, "task_init", |c| {
        c.task_slot = 2;
        c.weight = 200;
    });
    let now = sample::NOW_NS;
    let runnable_ns = 2 * MS;
    let since = now - runnable_ns;
    let enqueue = |edf: &mut PolicyInstance, slot: u32, hints: &[(u32, u64)], flags: u32| {
        call(edf, "enqueue", |c| {
            c.task_slot = slot;
            c.runnable_ns = runnable_ns;
            c.flags = flags;
            for &(word, value) in hints {
                c.hints[word as usize] = value;
            }
        })
    };
    let hinted = enqueue(
        &mut edf,
        1,
        &[(HINT_DEADLINE, now + 3 * MS), (HINT_LATENCY_NS, MS)],
        0,
    );
    assert_eq!(hinted.key, now + 3 * MS, "an absolute deadline wins");
    let latency = enqueue(&mut edf, 1, &[(HINT_LATENCY_NS, 7 * MS)], 0);
    assert_eq!(latency.key, since + 7 * MS);
    let nice0 = enqueue(&mut edf, 1, &[], 0);
    assert_eq!(nice0.key, since + 20 * MS);
    let heavy = enqueue(&mut edf, 2, &[], 0);
    assert_eq!(
        heavy.key,
        since + 10 * MS,
        "heavier tasks get shorter deadlines"
    );
    // Choice order: hinted < latency < heavy default < nice-0 default.
    let mut keys = [nice0.key, heavy.key, latency.key, hinted.key];
    keys.sort_unstable();
    assert_eq!(keys, [hinted.key, latency.key, heavy.key, nice0.key]);
    // A waking task whose deadline falls within its slice (20 ms default) asks to preempt.
    assert_eq!(enqueue(&mut edf, 2, &[], F_WAKEUP).verdict, VERDICT_PREEMPT);
    assert_eq!(enqueue(&mut edf, 2, &[], 0).verdict, VERDICT_RUN);
    let far = enqueue(&mut edf, 1, &[(HINT_DEADLINE, now + 100 * MS)], F_WAKEUP);
    assert_eq!(far.verdict, VERDICT_RUN);
}

#[test]
fn faas_parks_idle_pollers_preempts_them_on_tick_and_runs_event_ready_tasks_first() {
    let mut faas = example("faas").instantiate();
    let sleepy = |pending: u64| {
        move |c: &mut UpschedCtx| {
            c.hints[HINT_FLAGS as usize] = u64::from(HINTF_SLEEPY);
            c.hints[HINT_PENDING as usize] = pending;
        }
    };
    assert_eq!(faas.global_u64("nr_parked"), Some(0));
    let parked = call(&mut faas, "enqueue", sleepy(0));
    assert_eq!(parked.verdict, VERDICT_PARK);
    assert_eq!(faas.global_u64("nr_parked"), Some(1));
    let with_work = call(&mut faas, "enqueue", sleepy(3));
    assert_eq!(with_work.verdict, VERDICT_PREEMPT, "pending work preempts");
    assert_eq!(faas.global_u64("nr_parked"), Some(1));

    assert_eq!(call(&mut faas, "tick", sleepy(0)).verdict, VERDICT_PREEMPT);
    assert_eq!(call(&mut faas, "tick", sleepy(1)).verdict, VERDICT_RUN);
    assert_eq!(call(&mut faas, "tick", |_| {}).verdict, VERDICT_RUN);

    // Event-ready tasks (released from park, or pending work) key below ordinary ones, even
    // when they became runnable later.
    let ordinary = call(&mut faas, "enqueue", |c| c.runnable_ns = 500 * MS);
    assert_eq!(ordinary.verdict, VERDICT_RUN);
    let released = call(&mut faas, "enqueue", |c| c.flags = F_RELEASED);
    assert_eq!(released.verdict, VERDICT_PREEMPT);
    assert!(released.key < ordinary.key);
    assert!(with_work.key < ordinary.key);
    assert_eq!(ordinary.key, (sample::NOW_NS - 500 * MS) | 1 << 63);
    assert_eq!(released.key, sample::NOW_NS);
}

#[test]
fn instances_do_not_share_globals() {
    let faas = example("faas");
    let mut first = faas.instantiate();
    let second = faas.instantiate();
    call(&mut first, "enqueue", |c| {
        c.hints[HINT_FLAGS as usize] = u64::from(HINTF_SLEEPY)
    });
    assert_eq!(first.global_u64("nr_parked"), Some(1));
    assert_eq!(second.global_u64("nr_parked"), Some(0));
    assert_eq!(first.global("no_such_variable"), None);
}

#[test]
fn kfunc_calls_reach_the_embedder() {
    let policy = LoadedPolicy::load(upsched_testdata::object("kfunc_user")).unwrap();
    let mut instance = policy.instantiate();
    let mut busy = FixedKfuncs::default();
    busy.answers.insert("scx_bpf_dsq_nr_queued", 5);
    let mut ctx = ctx("enqueue");
    instance.call("enqueue", &mut ctx, &mut busy).unwrap();
    assert_eq!(ctx.slice_ns, sample::SLICE_MIN_NS);
    let mut idle = FixedKfuncs::default();
    idle.answers.insert("scx_bpf_dsq_nr_queued", 0);
    instance.call("enqueue", &mut ctx, &mut idle).unwrap();
    assert_eq!(ctx.slice_ns, sample::SLICE_MAX_NS);

    // The provider sees the kfunc's ABI entry and its argument.
    struct Recorder(Vec<(&'static str, u64)>);
    impl upsched_policy::KfuncProvider for Recorder {
        fn call_kfunc(
            &mut self,
            kfunc: &'static upsched_abi::KfuncInfo,
            args: [u64; 5],
        ) -> Result<u64, CallError> {
            assert_eq!(args[1..], [0; 4], "only the kfunc's parameter is passed");
            self.0.push((kfunc.name, args[0]));
            Ok(0)
        }
    }
    let mut recorder = Recorder(Vec::new());
    instance.call("enqueue", &mut ctx, &mut recorder).unwrap();
    assert_eq!(recorder.0, [("scx_bpf_dsq_nr_queued", 1 << 63 | 2)]);

    let before = ctx;
    let error = instance
        .call("enqueue", &mut ctx, &mut NoKfuncs)
        .unwrap_err();
    assert!(
        matches!(
            error,
            EngineError::Exec {
                hook: "enqueue",
                source: ExecError::Call {
                    source: CallError::Unbound,
                    ..
                }
            }
        ),
        "{error:?}"
    );
    assert_eq!(ctx, before, "a failed call leaves the outputs alone");
}

#[test]
fn subprograms_run_linked_into_the_hook() {
    let policy = LoadedPolicy::load(upsched_testdata::object("subprog")).unwrap();
    let mut instance = policy.instantiate();
    let after = call(&mut instance, "enqueue", |c| {
        c.hints[HINT_DEADLINE as usize] = 1234
    });
    assert_eq!(after.key, 1234);
}

#[test]
fn rejected_objects_are_refused_with_the_check_problems() {
    for (name, kind) in [
        ("input_write", ProblemKind::InputWrite),
        ("helper_call", ProblemKind::HelperCall),
        ("bad_kfunc", ProblemKind::KfuncNotAllowed),
        ("ctx_escape", ProblemKind::CtxEscape),
    ] {
        match LoadedPolicy::load(upsched_testdata::object(name)) {
            Err(EngineError::Rejected { problems }) => {
                assert!(
                    problems.iter().any(|p| p.kind == kind),
                    "{name}: {problems:?}"
                )
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    assert!(matches!(
        LoadedPolicy::load(b"not an object"),
        Err(EngineError::Rejected { .. })
    ));
}

#[test]
fn hooks_are_named_by_the_abi() {
    let mut fifo = example("fifo").instantiate();
    let mut ctx = ctx("enqueue");
    let error = fifo.call("dispatch", &mut ctx, &mut NoKfuncs).unwrap_err();
    assert!(matches!(&error, EngineError::UnknownHook(name) if name == "dispatch"));
    assert!(error.to_string().contains("select_cpu, enqueue"), "{error}");
    // A hook the policy does not implement keeps the host's defaults.
    let before = ctx;
    fifo.call("tick", &mut ctx, &mut NoKfuncs).unwrap();
    assert_eq!(ctx, before);
}

fn budget(budget: u64) -> EngineOptions {
    EngineOptions {
        budget,
        ..EngineOptions::default()
    }
}

/// The engine's own guards hold for objects that skipped the checks: only outputs come back,
/// and runaway code stops at the budget.
#[test]
fn only_outputs_come_back_and_the_budget_stops_runaway_code() {
    let object = PolicyObject::parse(upsched_testdata::object("input_write")).unwrap();
    assert!(matches!(
        LoadedPolicy::from_object(&object, &budget(1000)),
        Err(EngineError::Verifier {
            hook: "enqueue",
            ..
        })
    ));
    let policy = LoadedPolicy::from_object_unverified(&object, &budget(1000)).unwrap();
    let mut instance = policy.instantiate();
    let mut ctx = ctx("enqueue");
    ctx.pid = 77;
    instance.call("enqueue", &mut ctx, &mut NoKfuncs).unwrap();
    assert_eq!(ctx.pid, 77, "the write to an input never reaches the host");

    let mut object = PolicyObject::parse(upsched_policies::policy("rr").unwrap()).unwrap();
    // `ja -1`: a loop without end.
    object.programs[0].insns = vec![Insn::new(0x05, 0, 0, -1, 0), Insn::new(0x95, 0, 0, 0, 0)];
    object.programs[0].relocs.clear();
    let error = LoadedPolicy::from_object(&object, &budget(1000)).unwrap_err();
    assert!(error.to_string().contains("may not terminate"), "{error}");
    let policy = LoadedPolicy::from_object_unverified(&object, &budget(1000)).unwrap();
    let error = policy
        .instantiate()
        .call("enqueue", &mut ctx, &mut NoKfuncs)
        .unwrap_err();
    assert!(
        matches!(
            error,
            EngineError::Exec {
                source: ExecError::BudgetExhausted { budget: 1000, .. },
                ..
            }
        ),
        "{error:?}"
    );
}

/// Objects loaded without the admission checks still cannot make the engine allocate
/// unbounded global memory.
#[test]
fn huge_globals_are_refused_without_allocating() {
    let mut object = PolicyObject::parse(upsched_policies::policy("faas").unwrap()).unwrap();
    object.data_sections[0].size = 1 << 32;
    let error = LoadedPolicy::from_object_unverified(&object, &budget(1000)).unwrap_err();
    assert!(matches!(error, EngineError::Region(_)), "{error:?}");
}

/// Same inputs, same outputs: a second instance replaying the same calls agrees exactly.
#[test]
fn runs_are_deterministic() {
    for name in upsched_policies::names() {
        let policy = example(name);
        let (mut a, mut b) = (policy.instantiate(), policy.instantiate());
        for step in 0..200u64 {
            for hook in policy.hooks() {
                let setup = |c: &mut UpschedCtx| {
                    c.now_ns = sample::NOW_NS + step * 997;
                    c.task_slot = (step % 7) as u32;
                    c.last_runtime_ns = step * 13_001;
                    c.runnable_ns = step % 5 * MS;
                    c.flags = (step % 3) as u32;
                    c.hints[HINT_FLAGS as usize] = step % 2;
                    c.weight = (step % 4) as u32 * 50;
                };
                assert_eq!(
                    call(&mut a, hook, setup),
                    call(&mut b, hook, setup),
                    "{name}"
                );
            }
        }
    }
}

/// A hook above the JIT's size limit (`too_many_insns`: 2,000 unrolled steps over `now_ns`, far
/// more instructions than admission allows by default) loads in `ExecMode::Jit` without being
/// compiled, runs on the interpreter, and computes what the C source says on both engines, as a
/// hook below the limit does natively.
#[test]
fn hooks_above_the_jit_limit_are_interpreted_with_the_same_results() {
    let bytes = upsched_testdata::object("too_many_insns");
    let load = |mode| {
        let options = EngineOptions {
            limits: Limits {
                max_insns_per_hook: 1 << 20,
                ..Limits::default()
            },
            mode,
            ..EngineOptions::default()
        };
        LoadedPolicy::load_with_options(bytes, &options).unwrap()
    };
    let jit = load(ExecMode::Jit);
    let interpreted = load(ExecMode::Interpreter);
    let insns = jit.program("enqueue").unwrap().insns().len();
    assert!(insns > JIT_MAX_INSNS_PER_HOOK, "{insns} instructions");
    assert!(!jit.runs_native("enqueue"));
    let small = LoadedPolicy::load_with_options(
        upsched_policies::policy("fifo").unwrap(),
        &EngineOptions {
            mode: ExecMode::Jit,
            ..EngineOptions::default()
        },
    )
    .unwrap();
    assert!(small.runs_native("enqueue"));

    let model = |now: u64| {
        (0..2000).fold(now, |key, i| {
            key.wrapping_mul(31).wrapping_add(key >> (i & 7))
        })
    };
    for now in [0, 1, 12_345_678, u64::MAX] {
        for policy in [&jit, &interpreted] {
            let after = call(&mut policy.instantiate(), "enqueue", |ctx| ctx.now_ns = now);
            assert_eq!(after.key, model(now), "now_ns {now}, {:?}", policy.mode());
        }
    }
}
