//! The engine's verifier on real objects: it accepts every example policy, the good test
//! objects and what clang-19 -O2 emits for bounded loops over per-task arrays; it rejects what
//! the static analysis cannot see (missing NULL check, unmasked per-task index, input-bounded
//! loop), and `upsched check` reports its verdict next to the static analysis.
//!
//! The fixtures in `engine_fixtures/` are built from the `.bpf.c` next to them with the
//! project's flags:
//! `clang-19 -O2 -g -target bpf -mcpu=v3 -Wall -Werror -I crates/upsched-abi/include -c X.bpf.c -o X.bpf.o`

use upsched_abi::UpschedCtx;
use upsched_policy::check::EngineHookVerdict;
use upsched_policy::engine::sample_ctx;
use upsched_policy::{
    CheckReport, EngineError, EngineStatus, Limits, LoadedPolicy, NoKfuncs, ProblemKind, check,
};

const LOOPS: &[u8] = include_bytes!("engine_fixtures/loops.bpf.o");
const REALISTIC: &[u8] = include_bytes!("engine_fixtures/realistic.bpf.o");
const CHECKS: &[u8] = include_bytes!("engine_fixtures/checks.bpf.o");
const NO_NULL_CHECK: &[u8] = include_bytes!("engine_fixtures/no_null_check.bpf.o");
const UNMASKED_SLOT: &[u8] = include_bytes!("engine_fixtures/unmasked_slot.bpf.o");
const UNBOUNDED_LOOP: &[u8] = include_bytes!("engine_fixtures/unbounded_loop.bpf.o");
const SUBPROG_OOB: &[u8] = include_bytes!("engine_fixtures/subprog_oob.bpf.o");

fn report(bytes: &[u8]) -> CheckReport {
    check(bytes, &Limits::default())
}

fn engine_hook<'a>(report: &'a CheckReport, hook: &str) -> &'a EngineHookVerdict {
    report
        .engine
        .hooks
        .iter()
        .find(|h| h.hook == hook)
        .unwrap_or_else(|| panic!("no engine verdict for {hook}: {:?}", report.engine))
}

#[test]
fn examples_good_objects_and_clang_loops_are_accepted() {
    let good = upsched_policies::POLICIES
        .iter()
        .chain(upsched_testdata::GOOD)
        // Accepted here, refused by the kernel (docs/verifier.md); vm_broker checks the refusal.
        .chain(upsched_testdata::KERNEL_REFUSES)
        .map(|(name, bytes)| (*name, *bytes))
        .chain([
            ("loops", LOOPS),
            ("realistic", REALISTIC),
            ("checks", CHECKS),
        ]);
    for (name, bytes) in good {
        let report = report(bytes);
        assert!(report.accepted, "{name}: {:?}", report.problems);
        assert_eq!(report.engine.status, EngineStatus::Accepted, "{name}");
        assert_eq!(report.engine.hooks.len(), report.hooks.len(), "{name}");
        for hook in &report.engine.hooks {
            assert!(
                hook.accepted && hook.explored_insns.unwrap_or(0) > 0,
                "{name}: {hook:?}"
            );
        }
    }
}

/// Rejected by the engine verifier only: the static analysis finds nothing wrong. Each
/// rejection names the instruction, the reason and the source line (also inside a linked
/// subprogram).
#[test]
fn what_only_range_analysis_sees_is_rejected_with_instruction_and_reason() {
    for (name, bytes, insn, reason, message, line) in [
        (
            "no_null_check",
            NO_NULL_CHECK,
            0,
            "null_dereference",
            "reads the context through r1, which may be NULL: check it against NULL first",
            "no_null_check.bpf.c:10: ctx->key = ctx->now_ns;",
        ),
        (
            "unmasked_slot",
            UNMASKED_SLOT,
            6,
            "out_of_bounds",
            "reads 8 bytes at offsets 0..=34359738360 of .bss, which has 32768 bytes",
            "unmasked_slot.bpf.c:12: ctx->key = vtime[ctx->task_slot];",
        ),
        (
            "unbounded_loop",
            UNBOUNDED_LOOP,
            16,
            "may_not_terminate",
            "the loop that jumps back here may not terminate",
            "unbounded_loop.bpf.c:14: for (i = 0; i < ctx->hints[UPSCHED_HINT_FIRST_FREE]; i++)",
        ),
        (
            "subprog_oob",
            SUBPROG_OOB,
            12,
            "out_of_bounds",
            "reads 8 bytes at offsets 0..=1016 of .bss, which has 512 bytes",
            "subprog_oob.bpf.c:12: return weights[index & 127];",
        ),
    ] {
        let report = report(bytes);
        assert!(!report.accepted, "{name}");
        assert_eq!(report.engine.status, EngineStatus::Rejected, "{name}");
        let verdict = engine_hook(&report, "enqueue");
        assert_eq!(verdict.insn, Some(insn), "{name}: {verdict:?}");
        assert_eq!(verdict.reason.as_deref(), Some(reason), "{name}");
        assert!(
            verdict.message.as_deref().unwrap_or("").contains(message),
            "{name}: {verdict:?}"
        );
        assert_eq!(verdict.line.as_deref(), Some(line), "{name}");
        assert_eq!(report.problems.len(), 1, "{name}: {:?}", report.problems);
        let problem = &report.problems[0];
        assert_eq!(problem.kind, ProblemKind::EngineVerifier);
        assert_eq!(problem.insn, Some(insn));
        assert_eq!(problem.section.as_deref(), Some("freplace/upsched_enqueue"));
        assert!(problem.message.contains(message), "{name}: {problem}");
        assert!(
            problem.message.ends_with(&format!("(at {line})")),
            "{name}: {problem}"
        );
        match LoadedPolicy::load(bytes) {
            Err(EngineError::Rejected { problems }) => {
                assert_eq!(problems[0].kind, ProblemKind::EngineVerifier)
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

/// Objects the static checks reject get the engine's own verdict too, without a second
/// problem for the same mistake.
#[test]
fn bad_objects_get_the_engine_verdict_next_to_the_static_one() {
    for (name, reason) in [
        ("input_write", "input_write"),
        ("variable_write", "input_write"),
        ("old_layout", "input_write"),
        ("ctx_escape", "pointer_leak"),
        ("helper_call", "call_not_allowed"),
        ("bad_proto_args", "uninit_register"),
    ] {
        let report = report(upsched_testdata::object(name));
        assert!(!report.accepted, "{name}");
        assert_eq!(report.engine.status, EngineStatus::Rejected, "{name}");
        assert_eq!(
            engine_hook(&report, "enqueue").reason.as_deref(),
            Some(reason),
            "{name}"
        );
        assert!(
            report
                .problems
                .iter()
                .all(|p| p.kind != ProblemKind::EngineVerifier),
            "{name}: {:?}",
            report.problems
        );
    }
    let unknown = report(upsched_testdata::object("unknown_hook"));
    assert_eq!(unknown.engine.status, EngineStatus::NotRun);
    let garbage = report(b"\x7fELF garbage");
    assert_eq!(garbage.engine.status, EngineStatus::NotRun);
}

/// The loops fixture computes what its C says: a decayed sum over the last 16 runtimes in a
/// per-task array, via a stack buffer and a .rodata table, scaled by a .data tunable.
#[test]
fn loops_fixture_runs_as_written() {
    let policy = LoadedPolicy::load(LOOPS).unwrap();
    let mut instance = policy.instantiate();
    let stopping = upsched_abi::hook("stopping").unwrap();
    let enqueue = upsched_abi::hook("enqueue").unwrap();
    let runtimes: Vec<u64> = (1..=20).map(|k| k * 1_000).collect();
    for &runtime in &runtimes {
        let mut ctx = sample_ctx(stopping);
        ctx.task_slot = 9;
        ctx.last_runtime_ns = runtime;
        instance.call("stopping", &mut ctx, &mut NoKfuncs).unwrap();
    }
    let mut ctx: UpschedCtx = sample_ctx(enqueue);
    ctx.task_slot = 9;
    ctx.tenant_nr_runnable = 100;
    ctx.hints[5] = 0x1ff;
    instance.call("enqueue", &mut ctx, &mut NoKfuncs).unwrap();
    // Newest first, weights 16..1.
    let decayed: u64 = runtimes
        .iter()
        .rev()
        .take(16)
        .zip((1..=16).rev())
        .map(|(runtime, weight)| runtime * weight)
        .sum();
    let capped_sum: u64 = (0..64).sum();
    assert_eq!(ctx.key, ctx.now_ns + (decayed + capped_sum) / 136);
    assert_eq!(ctx.slice_ns, 1000 * 0xff);
    assert_eq!(instance.global_u64("nr_calls"), Some(1));
    assert_eq!(instance.global_u64("slice_per_unit"), Some(1000));
    assert_eq!(
        instance.global("decay").map(|d| d[..4].to_vec()),
        Some(vec![16, 0, 0, 0])
    );
}
