//! Chain metrics (end-to-end latency, throughput, idle ratio) and the spin-then-block wait on
//! scenarios small enough to check by hand.

use upsched_sim::report::{self, RunReport};
use upsched_sim::units::MS;
use upsched_sim::{RunOptions, Scenario, parse_scenario, run_builtin};

fn scenario(text: &str) -> Scenario {
    parse_scenario(text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn run_report(s: &Scenario, policy: &str) -> RunReport {
    let outcome = run_builtin(
        s,
        policy,
        RunOptions {
            check_invariants: true,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{policy}: {e}"));
    report::run_report(&outcome, s)
}

/// See the comment at the top of the file for the hand-checked values.
const ONE_STAGE: &str = include_str!("data/one-stage-chain.toml");

#[test]
fn one_stage_chain_latency_throughput_and_idle_ratio_are_exact() {
    let s = scenario(ONE_STAGE);
    for policy in ["fifo", "upsched-default", "linux-eevdf"] {
        let run = run_report(&s, policy);
        let chains = run.chains.as_ref().expect("chains reported");
        let c = &chains.chains[0];
        assert_eq!((c.name.as_str(), c.arrivals, c.completed), ("one", 3, 3));
        assert_eq!(c.latency.count, 3);
        for v in [c.latency.p50_ns, c.latency.p99_ns, c.latency.max_ns] {
            assert_eq!(v, 6 * MS, "{policy}");
        }
        assert!((c.throughput_per_s - 100.0).abs() < 1e-9, "{policy}");
        assert_eq!(c.cpu_ns, 19 * MS, "{policy}");
        assert_eq!(c.idle_ns, 4 * MS, "{policy}");
        assert_eq!(c.idle_ratio, Some(4.0 / 19.0));
        assert_eq!(chains.all.idle_ratio, c.idle_ratio);
        let rt = run.cgroups.iter().find(|g| g.cgroup == "/rt").unwrap();
        assert_eq!(
            (rt.idle_ns, rt.idle_ratio),
            (Some(4 * MS), Some(4.0 / 19.0))
        );
        let other = run.cgroups.iter().find(|g| g.cgroup == "/other").unwrap();
        assert_eq!((other.idle_ns, other.idle_ratio), (None, None));
        let csv = report::chains_csv(&run);
        let rows: Vec<&str> = csv.lines().collect();
        assert_eq!(rows.len(), 3, "{csv}");
        assert_eq!(
            rows[1],
            format!(
                "{policy},one,3,3,100.000000,6000000.0,6000000,6000000,6000000,6000000,19000000,4000000,0.210526"
            )
        );
        assert!(rows[2].starts_with(&format!("{policy},all,3,3,")));
        let text = report::text_summary(&run, 10);
        assert!(text.contains("e2e p99") && text.contains("21.05"), "{text}");
    }
}

/// Two stages in two runtimes; the second stage's request is taken by a poller that hands it
/// to its worker, so the request travels through a token, a poller and a second event.
#[test]
fn requests_travel_through_pollers_and_tokens() {
    let s = scenario(
        r#"
duration = "100ms"
[machine]
cpus = 4
costs = { preset = "zero" }
[[event]]
name = "a"
[[event]]
name = "b"
[[event]]
name = "b-work"
[[event]]
name = "done"
[[task]]
name = "stage-a"
cgroup = "/a"
program = [ { loop = "forever", body = [ { block = "a" }, { run = "3ms" }, { signal = "b" } ] } ]
[[task]]
name = "poller-b"
cgroup = "/b"
program = [ { loop = "forever", body = [
  { set_hint = "wait_event", event = "b" },
  { spin_until = "b", spin_max = "1ms" },
  { run = "100us" },
  { signal = "b-work" },
] } ]
[[task]]
name = "worker-b"
cgroup = "/b"
program = [ { loop = "forever", body = [ { block = "b-work" }, { run = "2ms" }, { signal = "done" } ] } ]
[[arrival]]
name = "requests"
process = "periodic"
period = "20ms"
count = 4
signal = "a"
[[chain]]
name = "ab"
source = "requests"
stages = [ { event = "a", cgroup = "/a" }, { event = "b", cgroup = "/b" } ]
complete = "done"
"#,
    );
    let run = run_report(&s, "fifo");
    let c = &run.chains.as_ref().unwrap().chains[0];
    // 3 ms in a, 0.1 ms of hand-over, 2 ms in b's worker.
    assert_eq!((c.arrivals, c.completed), (4, 4));
    assert_eq!((c.latency.p50_ns, c.latency.max_ns), (5_100_000, 5_100_000));
    // The poller spins 1 ms at the start (nothing pending: idle), then after each hand-over
    // spins its 1 ms budget while b's worker runs the 2 ms (pending: not idle) and blocks.
    let poller = run.tasks.iter().find(|t| t.name == "poller-b").unwrap();
    assert_eq!(poller.spin_ns, 5 * MS);
    let b = run.cgroups.iter().find(|g| g.cgroup == "/b").unwrap();
    assert_eq!(b.idle_ns, Some(MS));
    assert_eq!(b.cpu_ns, 5 * MS + 4 * 100_000 + 4 * 2 * MS);
    // Stage a's runtime only runs with a request.
    let a = run.cgroups.iter().find(|g| g.cgroup == "/a").unwrap();
    assert_eq!(a.idle_ratio, Some(0.0));
}

/// The last worker keeps the completed request as its current one and signals two more events
/// on its behalf (its own log, and the chain's first stage with count 0): neither counts.
#[test]
fn signals_on_behalf_of_a_completed_request_count_for_nothing() {
    let text = ONE_STAGE
        .replace(
            "{ signal = \"done\" },",
            "{ signal = \"done\" }, { signal = \"log\" }, { signal = \"in\", count = 0 },",
        )
        .replace(
            "[[event]]\nname = \"done\"",
            "[[event]]\nname = \"done\"\n[[event]]\nname = \"log\"",
        );
    let run = run_report(&scenario(&text), "fifo");
    let c = &run.chains.as_ref().unwrap().chains[0];
    assert_eq!((c.arrivals, c.completed, c.latency.max_ns), (3, 3, 6 * MS));
    assert_eq!((c.idle_ns, c.cpu_ns), (4 * MS, 19 * MS));
}

#[test]
fn spin_then_block_spins_its_budget_then_sleeps_until_the_event() {
    let s = scenario(
        r#"
duration = "20ms"
[machine]
costs = { preset = "zero" }
[[event]]
name = "e"
[[task]]
name = "waiter"
program = [ { spin_until = "e", spin_max = "2ms" }, { run = "1ms" } ]
[[arrival]]
name = "later"
process = "periodic"
period = "5ms"
start = "5ms"
count = 1
signal = "e"
"#,
    );
    for policy in ["fifo", "linux-eevdf"] {
        let run = run_report(&s, policy);
        let t = &run.tasks[0];
        assert_eq!(t.spin_ns, 2 * MS, "{policy}");
        assert_eq!(t.cpu_ns, 3 * MS, "{policy}");
        assert_eq!(t.turnaround.max_ns, 6 * MS, "{policy}");
        assert_eq!(t.voluntary_switches, 1, "{policy}");
        assert!(run.chains.is_none());
    }
}

#[test]
fn bad_chains_are_refused_with_their_line() {
    let base = ONE_STAGE.split("[[chain]]").next().unwrap();
    for (chain, expected) in [
        (
            "name = \"x\"\nsource = \"nope\"\nstages = [ { event = \"in\", cgroup = \"/rt\" } ]\ncomplete = \"done\"",
            "unknown arrival \"nope\"",
        ),
        (
            "name = \"x\"\nsource = \"requests\"\nstages = [ { event = \"done\", cgroup = \"/rt\" } ]\ncomplete = \"in\"",
            "must signal the first stage's event",
        ),
        (
            "name = \"x\"\nsource = \"requests\"\nstages = []\ncomplete = \"done\"",
            "needs at least one stage",
        ),
        (
            "name = \"x\"\nsource = \"requests\"\nstages = [ { event = \"in\", cgroup = \"/nobody\" } ]\ncomplete = \"done\"",
            "no task is in cgroup \"/nobody\"",
        ),
        (
            "name = \"x\"\nsource = \"requests\"\nstages = [ { event = \"in\", cgroup = \"/rt\" } ]\ncomplete = \"in\"",
            "appears twice",
        ),
        (
            "name = \"x\"\nsource = \"requests\"\nstages = [ { event = \"in\", cgroup = \"/rt\" } ]\ncomplete = \"nothing\"",
            "unknown event \"nothing\"",
        ),
        (
            "name = \"x\"\nsource = \"requests\"\nstages = [ { event = \"in\", cgroup = \"/rt\", platform_hints = [\"bystander\"] } ]\ncomplete = \"done\"",
            "platform_hints task \"bystander\" is not in the stage's cgroup \"/rt\"",
        ),
        (
            "name = \"x\"\nsource = \"requests\"\nstages = [ { event = \"in\", cgroup = \"/rt\", platform_hints = [\"ghost\"] } ]\ncomplete = \"done\"",
            "ghost",
        ),
    ] {
        let text = format!("{base}[[chain]]\n{chain}\n");
        let e = parse_scenario(&text, "bad.toml").unwrap_err();
        assert!(e.message.contains(expected), "{}", e.message);
        assert!(e.line.is_some(), "{e}");
    }
    let e = parse_scenario(
        &ONE_STAGE.replace(
            "{ run = \"1ms\" }, { sleep = \"2ms\" }",
            "{ run = \"1ms\", spin_max = \"1ms\" }, { sleep = \"2ms\" }",
        ),
        "bad.toml",
    )
    .unwrap_err();
    assert!(
        e.message.contains("`spin_max` belongs to `spin_until`"),
        "{e}"
    );
    for (op, expected) in [
        (
            "{ run = \"1ms\", yield_first = true }",
            "`yield_first` belongs to `spin_until`",
        ),
        (
            "{ spin_until = \"in\", yield_first = true }",
            "`yield_first` needs `spin_max`",
        ),
    ] {
        let text = ONE_STAGE.replace("{ run = \"1ms\" }, { sleep = \"2ms\" }", op);
        let e = parse_scenario(&text, "bad.toml").unwrap_err();
        assert!(e.message.contains(expected), "{e}");
    }
}
