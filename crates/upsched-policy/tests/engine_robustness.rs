//! Bad input never panics the engine: mutated objects either load or fail with a typed error,
//! and programs with mutated instructions (loaded without the checks) run to a result or a
//! typed error.

use proptest::prelude::*;
use upsched_abi::UpschedCtx;
use upsched_ebpf::insn::Insn;
use upsched_policy::engine::sample_ctx;
use upsched_policy::{EngineOptions, FixedKfuncs, LoadedPolicy, PolicyObject};

fn examples() -> Vec<&'static [u8]> {
    upsched_policies::POLICIES
        .iter()
        .map(|(_, bytes)| *bytes)
        .chain([upsched_testdata::object("kfunc_user")])
        .collect()
}

fn random_ctx(words: &[u64]) -> UpschedCtx {
    let mut ctx = sample_ctx(&upsched_abi::HOOKS[1]);
    let word = |i: usize| words[i % words.len()];
    ctx.now_ns = word(0);
    ctx.flags = word(1) as u32;
    ctx.task_slot = word(2) as u32;
    ctx.weight = word(3) as u32;
    ctx.nice = word(4) as i32;
    ctx.runnable_ns = word(5);
    ctx.last_runtime_ns = word(6);
    ctx.hints = std::array::from_fn(|i| word(7 + i));
    ctx.slice_ns = word(15);
    ctx
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn mutated_objects_load_or_fail_with_a_typed_error(
        which in 0usize..7,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
    ) {
        let objects = examples();
        let mut bytes = objects[which % objects.len()].to_vec();
        for (index, value) in flips {
            let at = index.index(bytes.len());
            bytes[at] = value;
        }
        if let Ok(policy) = LoadedPolicy::load(&bytes) {
            let mut instance = policy.instantiate();
            let hooks: Vec<_> = policy.hooks().collect();
            for hook in hooks {
                let mut ctx = random_ctx(&[1, 2, 3]);
                let _ = instance.call(hook, &mut ctx, &mut FixedKfuncs::default());
            }
        }
    }

    #[test]
    fn mutated_programs_run_to_a_result_or_a_typed_error(
        which in 0usize..7,
        mutations in prop::collection::vec(
            (any::<prop::sample::Index>(), any::<u8>(), any::<u8>(), any::<i16>(), any::<i32>()),
            1..6,
        ),
        words in prop::collection::vec(any::<u64>(), 1..20),
    ) {
        let objects = examples();
        let mut object = PolicyObject::parse(objects[which % objects.len()]).unwrap();
        for program in &mut object.programs {
            for (index, code, regs, off, imm) in &mutations {
                let at = index.index(program.insns.len());
                program.insns[at] = Insn::new(*code, regs & 0x0f, regs >> 4, *off, *imm);
            }
        }
        // Verified or not, nothing panics; run the unverified ones to exercise the guards.
        let options = EngineOptions {
            budget: 10_000,
            ..EngineOptions::default()
        };
        let _ = LoadedPolicy::from_object(&object, &options);
        if let Ok(policy) = LoadedPolicy::from_object_unverified(&object, &options) {
            let mut instance = policy.instantiate();
            let hooks: Vec<_> = policy.hooks().collect();
            for hook in hooks {
                let mut ctx = random_ctx(&words);
                let mut kfuncs = FixedKfuncs::default();
                kfuncs.answers.insert("scx_bpf_dsq_nr_queued", words[0]);
                let _ = instance.call(hook, &mut ctx, &mut kfuncs);
            }
        }
    }
}
