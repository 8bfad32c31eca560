//! The property the `jit` fuzz target checks on arbitrary bytes, kept here so that the replay
//! test of its seeds runs exactly the same code.

use upsched_ebpf::{CallError, CallKind, Interpreter, Memory, Program, insn};

use crate::{JitProgram, Optimization};

/// Small budget: it bounds each iteration's work, and running out is compared like any error.
const RUN_BUDGET: u64 = 10_000;

/// Any bytes that form a [`Program`] run on the JIT and on the interpreter with the same
/// result (errors included, instruction index and all) and leave the same memory. Panics on
/// any difference.
pub fn jit_matches_interpreter(data: &[u8]) {
    let Ok(insns) = insn::decode(&data[..data.len() / 8 * 8]) else {
        return;
    };
    let Ok(program) = Program::new(insns) else {
        return;
    };

    // A writable context and a read-only region filled from the input, so that loads see data.
    let mut memory = Memory::new();
    let fill = |len| data.iter().copied().cycle().take(len).collect::<Vec<u8>>();
    let ctx = memory
        .add_region("ctx", fill(64), true)
        .expect("small region");
    memory
        .add_region(".rodata", fill(16), false)
        .expect("small region");
    let args = [memory.region_base(ctx), 0, 0, 0, 0];

    // Answers from the call and its arguments; stores the answer through r1 when it points
    // somewhere writable, so memory effects of externals are compared too.
    let external = |kind: CallKind, id: i32, args: [u64; 5], memory: &mut Memory| {
        if id < 0 {
            return Err(CallError::Failed(format!("{kind:?} {id} refused")));
        }
        let answer = args
            .iter()
            .fold(u64::from(id as u32), |acc, &arg| acc.rotate_left(7) ^ arg);
        let _ = memory.store(args[0], 8, answer);
        Ok(answer)
    };
    let initial = memory.clone();
    let interpreted = Interpreter::run(
        &program,
        0,
        args,
        &mut memory,
        &mut { external },
        RUN_BUDGET,
    );
    for optimization in [Optimization::Speed, Optimization::CompileTime] {
        let jit = JitProgram::compile_with(&program, optimization)
            .expect("the JIT compiles every valid program");
        let mut native_memory = initial.clone();
        let native = jit.run(args, &mut native_memory, &mut { external }, RUN_BUDGET);
        assert_eq!(native, interpreted, "results differ ({optimization:?})");
        let (native_regions, native_stack) = native_memory.engine_view();
        let (regions, stack) = memory.engine_view();
        assert!(
            native_regions
                .map(|(bytes, _)| bytes.to_vec())
                .eq(regions.map(|(bytes, _)| bytes.to_vec())),
            "region contents differ ({optimization:?})"
        );
        assert_eq!(
            native_stack, stack,
            "stack contents differ ({optimization:?})"
        );
    }
}
