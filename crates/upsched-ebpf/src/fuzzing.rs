//! Properties the fuzz targets (`fuzz/fuzz_targets/`) check on arbitrary bytes, kept here so
//! that the replay test of their seeds runs exactly the same code.

use crate::insn;
use crate::verifier::verify_insns;
use crate::{
    ContextSpec, Environment, ExecError, Interpreter, Memory, NoExternals, Program, RegionSpec,
};

/// Context size for the fuzzed programs; bytes `INPUT_END..CONTEXT_SIZE` are writable.
const CONTEXT_SIZE: usize = 64;
const INPUT_END: usize = 48;
/// Small budgets keep each fuzz iteration fast; they bound work, not correctness.
const EXPLORE_BUDGET: u64 = 20_000;
const RUN_BUDGET: u64 = 100_000;

/// Any bytes: decoding, structural validation and (when valid) interpretation return errors
/// but never panic.
pub fn interpret_arbitrary(data: &[u8]) {
    let Ok(insns) = insn::decode(&data[..data.len() / 8 * 8]) else {
        return;
    };
    let Ok(program) = Program::new(insns) else {
        return;
    };
    let mut memory = Memory::new();
    let ctx = memory
        .add_region(
            "ctx",
            data.iter().copied().cycle().take(CONTEXT_SIZE).collect(),
            true,
        )
        .expect("one small region");
    let base = memory.region_base(ctx);
    let _ = Interpreter::run(
        &program,
        0,
        [base, 0, 0, 0, 0],
        &mut memory,
        &mut NoExternals,
        RUN_BUDGET,
    );
}

/// Any bytes: if the verifier accepts them as a program, running it on a context never faults
/// and never changes the context's input bytes.
pub fn verified_programs_are_safe(data: &[u8]) {
    let Ok(insns) = insn::decode(&data[..data.len() / 8 * 8]) else {
        return;
    };
    let environment = Environment {
        context: ContextSpec {
            size: CONTEXT_SIZE as u64,
            writable: vec![(INPUT_END as u64, CONTEXT_SIZE as u64)],
            nullable: false,
        },
        regions: vec![RegionSpec {
            name: "unused".into(),
            size: 8,
            writable: true,
        }],
        region_loads: Vec::new(),
        global_functions: Vec::new(),
        calls: Vec::new(),
        max_explored: EXPLORE_BUDGET,
    };
    let Ok((program, _)) = verify_insns(insns, &environment) else {
        return;
    };
    let initial: Vec<u8> = (0..CONTEXT_SIZE as u8).collect();
    let mut memory = Memory::new();
    let ctx = memory
        .add_region("ctx", initial.clone(), true)
        .expect("one small region");
    let base = memory.region_base(ctx);
    let result = Interpreter::run(
        &program,
        0,
        [base, 0, 0, 0, 0],
        &mut memory,
        &mut NoExternals,
        RUN_BUDGET,
    );
    if let Err(error) = &result {
        assert!(
            matches!(error, ExecError::BudgetExhausted { .. }),
            "a verified program failed at run time: {error}"
        );
    }
    assert_eq!(
        &memory.region(ctx)[..INPUT_END],
        &initial[..INPUT_END],
        "a verified program changed input bytes"
    );
}
