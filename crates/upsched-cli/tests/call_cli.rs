//! `upsched call --engine`: both engines print the same outputs; a bad engine is a usage error.

mod support;
use support::upsched;

#[test]
fn jit_and_interpreter_print_the_same_outputs_for_every_example_hook() {
    let context = "now_ns=5000000000,weight=300,sum_runtime_ns=123456,hints=7:3:1,task_slot=5";
    for (name, _) in upsched_policies::POLICIES {
        for hook in upsched_abi::HOOKS {
            let example = format!("example:{name}");
            let call = |engine| {
                let args = [
                    "call", &example, hook.name, "--ctx", context, "--json", "--engine", engine,
                ];
                let out = upsched(&args);
                assert_eq!(out.status.code(), Some(0), "{name} {}: {out:?}", hook.name);
                String::from_utf8(out.stdout).unwrap()
            };
            assert_eq!(call("jit"), call("interp"), "{name} {}", hook.name);
        }
    }
}

#[test]
fn unknown_engine_is_a_usage_error() {
    let out = upsched(&["call", "example:fifo", "enqueue", "--engine", "wasm"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("possible values: jit, interp"), "{stderr}");
    assert!(out.stdout.is_empty());
}
