//! Bad or ignored input says so: out-of-range context values, unknown verdicts, tenants that
//! no policy runs, `--cpus`, output names of policies that share a file name, negative option
//! values, scenarios that start nothing (TOML and rt-app alike), and errors as JSON under
//! `--json`.

use std::path::{Path, PathBuf};

mod support;
use support::{text, upsched};

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    path.to_str().unwrap().to_string()
}

fn temp(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("upsched-input-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_negative_value_for_an_unsigned_field_is_out_of_range() {
    let out = upsched(&["call", "example:fifo", "enqueue", "--ctx", "now_ns=-5"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr)
            .contains("field `now_ns`: `-5` is out of range for u64 (0 to 18446744073709551615)"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn an_unknown_verdict_names_what_is_accepted() {
    let out = upsched(&[
        "call",
        "example:fifo",
        "enqueue",
        "--ctx",
        "verdict=explode",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("`explode` is neither run, park, preempt nor a number"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn tenants_no_policy_runs_are_warned_about() {
    let tenants = example("tenants.toml");
    let out = upsched(&["sim", &tenants, "--policy", "fifo", "--duration", "10ms"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(
            "warning: the scenario's 2 [[tenant]] table(s) are not used: fifo has no tenants"
        ),
        "{}",
        text(&out.stderr)
    );
    let out = upsched(&["sim", &tenants, "--duration", "10ms"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn cpus_replaces_the_machine_of_every_scenario_format() {
    let cpus_of = |scenario: &str| {
        let out = upsched(&[
            "sim",
            scenario,
            "--cpus",
            "4",
            "--duration",
            "10ms",
            "--json",
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{scenario}: {}",
            text(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["format_version"], 1);
        report["machine"]["cpus"].as_u64()
    };
    assert_eq!(cpus_of(&example("cpu-weights.toml")), Some(4));
    assert_eq!(cpus_of(&example("rt-app-periodic.json")), Some(4));
    assert_eq!(cpus_of("faas:chains=1"), Some(4));
    let out = upsched(&["sim", &example("cpu-weights.toml"), "--cpus", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("(with --cpus 0): cpus = 0"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn policies_whose_files_share_a_name_write_separate_outputs() {
    let dir = temp("stems");
    for sub in ["a", "b"] {
        let export = dir.join(sub);
        assert!(
            upsched(&["examples", "export", export.to_str().unwrap()])
                .status
                .success()
        );
    }
    let (a, b) = (dir.join("a/fifo.bpf.o"), dir.join("b/fifo.bpf.o"));
    let out_dir = dir.join("out");
    let out = upsched(&[
        "sim",
        &example("cpu-weights.toml"),
        "--duration",
        "10ms",
        "--policy",
        a.to_str().unwrap(),
        "--policy",
        b.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for stem in ["fifo.bpf.o", "fifo.bpf.o-2"] {
        assert!(out_dir.join(format!("{stem}-tasks.csv")).exists(), "{stem}");
        assert!(
            out_dir.join(format!("{stem}-trace.json")).exists(),
            "{stem}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_negative_option_value_is_judged_by_its_parser() {
    for args in [
        &["sim", "x.toml", "--seed", "-1"][..],
        &["sweep", "x.toml", "--param", "a=1", "--seeds", "-2"],
        &["check", "--examples", "--max-insns", "-5"],
    ] {
        let out = upsched(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(!stderr.contains("-- -"), "{args:?}: {stderr}");
        assert!(stderr.contains("invalid value '-"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_scenario_that_starts_nothing_is_refused_in_both_formats() {
    let dir = temp("empty");
    let toml = dir.join("empty.toml");
    let json = dir.join("empty.json");
    std::fs::write(&toml, "duration = \"1s\"\n").unwrap();
    std::fs::write(&json, "{\"tasks\": {}}").unwrap();
    for file in [&toml, &json] {
        let out = upsched(&["sim", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{}", file.display());
        assert!(
            text(&out.stderr).contains("the scenario starts nothing"),
            "{}: {}",
            file.display(),
            text(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn errors_under_json_are_one_error_object_on_stdout() {
    for (args, command, status, message) in [
        (
            &["sim", "missing.toml", "--json"][..],
            "sim",
            2,
            "cannot read",
        ),
        (
            &["check", "missing.bpf.o", "--json"],
            "check",
            2,
            "cannot read missing.bpf.o",
        ),
        (
            &["call", "example:nope", "enqueue", "--json"],
            "call",
            2,
            "no example policy `nope`",
        ),
        (
            &["sweep", "missing.toml", "--param", "a=1", "--json"],
            "sweep",
            2,
            "cannot read",
        ),
        (
            &["sim", "--json", "--bogus", "x.toml"],
            "sim",
            2,
            "unexpected argument '--bogus'",
        ),
    ] {
        let out = upsched(args);
        assert_eq!(out.status.code(), Some(status), "{args:?}");
        assert!(out.stderr.is_empty(), "{args:?}: {}", text(&out.stderr));
        let document: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", text(&out.stdout)));
        let error = &document["error"];
        assert_eq!(error["command"], command, "{document}");
        assert_eq!(error["exit_status"], status, "{document}");
        assert!(
            error["message"].as_str().unwrap().contains(message),
            "{document}"
        );
    }
    let big = std::env::temp_dir().join(format!("upsched-input-run-{}.toml", std::process::id()));
    let mm1 = std::fs::read_to_string(example("mm1.toml")).unwrap();
    std::fs::write(&big, mm1.replace("rate = 500.0", "rate = 1e9")).unwrap();
    let out = upsched(&["sim", big.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let document: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(document["error"]["exit_status"], 1, "{document}");
    assert!(
        document["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("fifo: run stopped at")
    );
}

#[test]
fn examples_list_prints_json() {
    let out = upsched(&["examples", "list", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, upsched_policies::names().collect::<Vec<_>>());
    assert!(list[0]["bytes"].as_u64().unwrap() > 0);
}
