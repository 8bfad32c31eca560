//! `upsched fidelity`: what the real runner refuses, and `compare` on a real run's JSON (the
//! real runs themselves are the VM suite's, `tests/vm_fidelity.rs`).

mod support;

use support::{scratch_dir, text, upsched};

const SCENARIO: &str = r#"
duration = "1s"
[machine]
cpus = 2
[[task]]
name = "hog"
program = [{ run = "300ms" }]
"#;

#[test]
fn run_refuses_what_it_does_not_run_by_name() {
    let dir = scratch_dir("fidelity-refuse");
    let file = dir.join("spin.toml");
    std::fs::write(
        &file,
        "duration = \"1s\"\n[[event]]\nname = \"e\"\n[[task]]\nname = \"poller\"\n\
         program = [{ spin_until = \"e\" }]\n[[task]]\nname = \"job\"\n\
         program = [{ run = { dist = \"exponential\", mean = \"1ms\" } }]\n",
    )
    .unwrap();
    let out = upsched(&["fidelity", "run", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("the real runner does not run"), "{err}");
    assert!(err.contains("task \"poller\": spin_until"), "{err}");
    assert!(err.contains("task \"job\": drawn durations"), "{err}");
    assert!(out.stdout.is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn compare_prints_the_table_and_fails_outside_the_bounds() {
    let dir = scratch_dir("fidelity-compare");
    let file = dir.join("hog.toml");
    std::fs::write(&file, SCENARIO).unwrap();
    let real = |cpu_ms: u64| {
        format!(
            r#"{{"scenario":"hog","cpus":2,"duration_ns":300000000,"tasks":[{{"name":"hog",
            "task":"hog","cgroup":"/","nice":0,"cpu_ns":{},"wait_ns":0,"switch_ins":1,
            "finished":true,"finish_ns":300000000}}]}}"#,
            cpu_ms * 1_000_000
        )
    };
    let json = dir.join("real.json");
    std::fs::write(&json, real(300)).unwrap();
    let args = [
        "fidelity",
        "compare",
        file.to_str().unwrap(),
        "--real",
        json.to_str().unwrap(),
    ];
    let out = upsched(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.starts_with("hog under linux-eevdf\n"), "{table}");
    assert!(table.contains("| hog | CPU share | 1.000 |"), "{table}");

    std::fs::write(&json, real(150)).unwrap();
    let out = upsched(&args);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("outside its bound: hog CPU share"),
        "{}",
        text(&out.stderr)
    );

    std::fs::write(&json, "{}").unwrap();
    assert_eq!(upsched(&args).status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}
