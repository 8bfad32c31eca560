//! `upsched sim` with tenant policies as a user runs it: an example policy, a `.bpf.o` file,
//! the scenario's tenants, and refusals.

use std::path::{Path, PathBuf};

mod support;
use support::{text, upsched};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

#[test]
fn a_tenant_policy_runs_in_the_mechanism_and_reports_its_statistics() {
    let dir = std::env::temp_dir().join(format!("upsched-cli-sim-{}", std::process::id()));
    let out = upsched(&["examples", "export", dir.to_str().unwrap()]);
    assert!(out.status.success());
    let scenario = examples_dir().join("cpu-weights.toml");
    let wfq_file = dir.join("wfq.bpf.o");
    for policy in ["example:fifo", wfq_file.to_str().unwrap()] {
        let out = upsched(&[
            "sim",
            scenario.to_str().unwrap(),
            "--policy",
            policy,
            "--duration",
            "200ms",
            "--json",
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let tenant = &report["runs"][0]["mechanism"]["tenants"][0];
        assert_eq!(tenant["name"], policy);
        assert_eq!(tenant["cgroup"], "/");
        assert!(
            tenant["stats"]["dispatches"].as_u64().unwrap() > 0,
            "{tenant}"
        );
    }
    // The scenario's own tenants, with the summary table.
    let out = upsched(&[
        "sim",
        examples_dir().join("tenants.toml").to_str().unwrap(),
        "--policy",
        "upsched",
        "--duration",
        "1500ms",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let summary = text(&out.stdout);
    assert!(summary.contains("example:prio /service"), "{summary}");
    assert!(summary.contains("example:wfq /batch"), "{summary}");
}

#[test]
fn refused_policies_print_the_reason_and_run_nothing() {
    let scenario = examples_dir().join("cpu-weights.toml");
    let dir = std::env::temp_dir().join(format!("upsched-cli-sim-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("text.bpf.o");
    std::fs::write(&bad, "not a policy\n").unwrap();
    for (policy, reason) in [
        (
            bad.to_str().unwrap(),
            "rejected by the checks of `upsched check`",
        ),
        ("example:nope", "no example policy \"nope\""),
        ("upsched", "declares no [[tenant]]"),
        ("nonsense", "unknown policy \"nonsense\""),
    ] {
        let out = upsched(&["sim", scenario.to_str().unwrap(), "--policy", policy]);
        assert_eq!(out.status.code(), Some(2), "{policy}");
        assert!(out.stdout.is_empty(), "{policy}: ran anyway");
        assert!(
            text(&out.stderr).contains(reason),
            "{policy}: {}",
            text(&out.stderr)
        );
    }
}

/// The JIT and the interpreter run the scenario's tenant policies to the same report, byte for
/// byte (the report holds every decision's consequence: waits, CPU times, clamps, parks).
#[test]
fn the_jit_and_the_interpreter_give_the_same_run() {
    let scenario = examples_dir().join("tenants.toml");
    let run = |engine: &str| {
        let out = upsched(&[
            "sim",
            scenario.to_str().unwrap(),
            "--policy",
            "upsched",
            "--policy",
            "example:faas",
            "--duration",
            "300ms",
            "--json",
            "--engine",
            engine,
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        out.stdout
    };
    let jit = run("jit");
    assert!(!jit.is_empty());
    assert!(jit == run("interp"), "the engines' reports differ");
    let out = upsched(&["sim", scenario.to_str().unwrap(), "--engine", "wasm"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown engine is a usage error"
    );
}
