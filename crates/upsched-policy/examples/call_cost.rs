//! Calls one example policy's `enqueue` a given number of times, for counting the instructions
//! of a call with `valgrind --tool=callgrind` (counts do not depend on the machine's load; see
//! docs/ebpf-engine.md for the command that takes the difference of two runs).
//!
//! `cargo run --release -p upsched-policy --example call_cost -- POLICY jit|interp CALLS`

use std::hint::black_box;
use std::process::ExitCode;

use upsched_policy::engine::sample_ctx;
use upsched_policy::{EngineOptions, ExecMode, LoadedPolicy, NoKfuncs};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [policy, mode, calls] = args.as_slice() else {
        eprintln!("usage: call_cost POLICY jit|interp CALLS");
        return ExitCode::FAILURE;
    };
    let Some(bytes) = upsched_policies::policy(policy) else {
        eprintln!("no example policy `{policy}`");
        return ExitCode::FAILURE;
    };
    let mode = match mode.as_str() {
        "jit" => ExecMode::Jit,
        "interp" => ExecMode::Interpreter,
        other => {
            eprintln!("unknown engine `{other}` (jit or interp)");
            return ExitCode::FAILURE;
        }
    };
    let Ok(calls) = calls.parse::<u64>() else {
        eprintln!("CALLS must be a number, not `{calls}`");
        return ExitCode::FAILURE;
    };
    let options = EngineOptions {
        mode,
        ..EngineOptions::default()
    };
    let policy = match LoadedPolicy::load_with_options(bytes, &options) {
        Ok(policy) => policy,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let mut instance = policy.instantiate();
    let hook = upsched_abi::hook("enqueue").expect("the ABI has an enqueue hook");
    // Built once: filling a whole context is the embedder's cost, not the engine's.
    let template = sample_ctx(hook);
    let mut keys = 0u64;
    for step in 0..calls {
        let mut ctx = template;
        ctx.task_slot = (step % 64) as u32;
        ctx.runnable_ns = step % 1000;
        ctx.flags = (step % 2) as u32;
        if let Err(error) = instance.call_hook(hook, black_box(&mut ctx), &mut NoKfuncs) {
            eprintln!("call {step}: {error}");
            return ExitCode::FAILURE;
        }
        keys = keys.wrapping_add(ctx.key);
    }
    println!("{calls} enqueue calls, key checksum {keys:#x}");
    ExitCode::SUCCESS
}
