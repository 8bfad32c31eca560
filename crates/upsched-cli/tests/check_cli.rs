//! `upsched check` as a user runs it: exit codes, text and JSON output.

use std::path::PathBuf;

mod support;
use support::upsched;

/// Exports the examples into a directory of this test's own (tests run in parallel).
fn exported_examples(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("upsched-cli-{test}-{}", std::process::id()));
    let out = upsched(&["examples", "export", dir.to_str().unwrap()]);
    assert!(out.status.success());
    dir
}

#[test]
fn accepted_objects_exit_zero_with_the_analysis() {
    let dir = exported_examples("accepted");
    let fifo = dir.join("fifo.bpf.o");
    let out = upsched(&["check", fifo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("ACCEPTED  policy \"fifo\""), "{text}");
    assert!(text.contains("writes:      key, slice_ns"), "{text}");
    assert!(text.contains("sched.order"), "{text}");
    assert!(text.contains("engine verifier: accepted"), "{text}");
}

#[test]
fn examples_are_named_with_the_example_prefix() {
    let out = upsched(&["check", "example:wfq"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("policy \"wfq\"")
    );
    let out = upsched(&["check", "example:nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("examples: edf, faas")
    );
}

#[test]
fn json_is_one_object_per_input_and_an_array_for_several() {
    let dir = exported_examples("json");
    let one = upsched(&["check", "--json", dir.join("rr.bpf.o").to_str().unwrap()]);
    let value: serde_json::Value = serde_json::from_slice(&one.stdout).unwrap();
    assert_eq!(value["policy"], "rr");
    assert_eq!(value["accepted"], true);
    assert_eq!(
        value["hooks"][0]["writes"],
        serde_json::json!(["key", "slice_ns"])
    );
    let all = upsched(&["check", "--json", "--examples"]);
    let value: serde_json::Value = serde_json::from_slice(&all.stdout).unwrap();
    assert_eq!(value.as_array().map(Vec::len), Some(7));
}

#[test]
fn rejected_objects_exit_one_and_say_why() {
    let dir = exported_examples("rejected");
    let broken = dir.join("broken.bpf.o");
    let mut bytes = std::fs::read(dir.join("fifo.bpf.o")).unwrap();
    bytes[18] = 62; // e_machine: x86-64
    std::fs::write(&broken, bytes).unwrap();
    let out = upsched(&[
        "check",
        broken.to_str().unwrap(),
        dir.join("fifo.bpf.o").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("broken.bpf.o: REJECTED"), "{text}");
    assert!(
        text.contains("error[not_bpf]: not a BPF object: ELF machine is 62"),
        "{text}"
    );
    assert!(text.contains("fifo.bpf.o: ACCEPTED"), "{text}");
}

#[test]
fn usage_errors_exit_two() {
    assert_eq!(upsched(&["check"]).status.code(), Some(2));
    assert_eq!(
        upsched(&["check", "/nonexistent/policy.bpf.o"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(upsched(&["check", "--no-such-flag"]).status.code(), Some(2));
}
