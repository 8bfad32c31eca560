//! The default class's wait bound (docs/mechanism.md, "The default class's wait bound") in the
//! simulator's mechanism: at several scales, after a tenant's ejection floods the class, and
//! the starvation guard per CPU for a tenant task pinned under a busy higher level.

use upsched_abi::mechanism::{self, DefaultClassShape};
use upsched_sim::report::{self, RunReport, TaskReport};
use upsched_sim::units::{MS, S, Time};
use upsched_sim::{RunOptions, engine, parse_scenario, tenants};

const FILE: &str = "tests/default_class.toml";

fn run(text: &str) -> RunReport {
    let scenario = parse_scenario(text, FILE).unwrap_or_else(|e| panic!("{e}"));
    let sched =
        tenants::scheduler_for("upsched", &scenario, FILE).unwrap_or_else(|e| panic!("{e}"));
    let outcome =
        engine::run(&scenario, sched, RunOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    report::run_report(&outcome, &scenario)
}

/// The bound in the simulator: its runs end exactly at their slice (no tick overrun), with the
/// loader's slices and guard.
fn bound(cpus: u64, runnable: u64) -> Time {
    DefaultClassShape {
        overrun_ns: 0,
        ..DefaultClassShape::kernel_defaults(cpus)
    }
    .wait_bound(runnable)
}

fn machine(cpus: u32, duration: &str) -> String {
    format!(
        "duration = \"{duration}\"\n[machine]\ncpus = {cpus}\ncosts = {{ preset = \"zero\" }}\n"
    )
}

fn longest_wait<'r>(run: &'r RunReport, prefix: &str) -> &'r TaskReport {
    run.tasks
        .iter()
        .filter(|t| t.name.starts_with(prefix))
        .max_by_key(|t| t.wait.max_ns)
        .unwrap_or_else(|| panic!("no task {prefix}*"))
}

#[test]
fn the_default_class_wait_stays_within_its_bound_at_every_scale() {
    for (cpus, hogs) in [(1u32, 10u64), (2, 100), (4, 1000)] {
        // The mechanism needs a tenant; this one governs no task.
        let text = machine(cpus, "1500ms")
            + "[[tenant]]\npolicy = \"example:fifo\"\ncgroup = \"/idle\"\n"
            + &format!(
                "[[task]]\nname = \"hog\"\ncount = {hogs}\nprogram = [{{ run = \"10s\" }}]\n"
            );
        let run = run(&text);
        let worst = longest_wait(&run, "hog");
        let limit = bound(cpus.into(), hogs);
        assert!(
            worst.wait.max_ns <= limit,
            "{hogs} hogs on {cpus} CPUs: {} waited {} ns, bound {limit} ns",
            worst.name,
            worst.wait.max_ns
        );
        // Every hog ran: the rounds are short, not only the first wait.
        assert!(run.tasks.iter().all(|t| t.cpu_ns > 0));
    }
}

/// The case: 600 hogs of a starving tenant ejected at once on 4 CPUs, while an unrelated
/// default-class hog, a shell-like sleeper and a nice 19 sleeper run.
#[test]
fn an_ejection_flood_keeps_every_default_class_wait_within_the_bound() {
    const HOGS: u64 = 600;
    let text = machine(4, "10s")
        + &format!(
            "[[tenant]]\npolicy = \"{}\"\ncgroup = \"/t\"\nwatchdog = \"1s\"\n",
            starve_policy().display()
        )
        + &format!(
            "[[task]]\nname = \"flood\"\ncount = {HOGS}\ncgroup = \"/t\"\nprogram = [{{ run = \"40ms\" }}]\n"
        )
        + "[[task]]\nname = \"probe\"\nprogram = [{ run = \"100s\" }]\n"
        + "[[task]]\nname = \"shell\"\nprogram = [{ loop = 500, body = [{ run = \"1ms\" }, { sleep = \"10ms\" }] }]\n"
        // Like the kernel's khugepaged: nice 19, wakes up now and then.
        + "[[task]]\nname = \"nice19\"\nnice = 19\nprogram = [{ loop = 200, body = [{ run = \"2ms\" }, { sleep = \"20ms\" }] }]\n";
    let run = run(&text);
    let mechanism = run.mechanism.as_ref().expect("the mechanism reports");
    let tenant = &mechanism.tenants[0];
    let ejection = tenant
        .ejection
        .as_ref()
        .expect("the starving tenant is ejected");
    assert!(ejection.at_ns < 2 * S, "{ejection:?}");
    let limit = bound(4, HOGS + 3);
    for name in ["probe", "shell", "nice19"] {
        let t = longest_wait(&run, name);
        assert!(
            t.wait.max_ns <= limit,
            "{name} waited {} ns, bound {limit} ns",
            t.wait.max_ns
        );
    }
    // The victims' waits in the tenant count there, not in the default class.
    assert!(tenant.stats.wait.max_ns >= S, "{:?}", tenant.stats.wait);
    assert!(
        mechanism.default_class.wait.max_ns <= limit,
        "default class {:?}, bound {limit} ns",
        mechanism.default_class.wait
    );
    assert!(
        run.tasks
            .iter()
            .filter(|t| t.name.starts_with("flood"))
            .all(|t| t.exited == 1),
        "every flood task finished"
    );
}

fn starve_policy() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("upsched-sim-dflt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("starve.bpf.o");
    std::fs::write(
        &path,
        upsched_testdata::misbehaving("starve").expect("test policy"),
    )
    .expect("write the policy");
    path
}

#[test]
fn a_tenant_task_pinned_under_a_busy_higher_level_gets_its_guard_share_of_its_cpu() {
    const SECS: u64 = 3;
    let hog = |name: &str, extra: &str| {
        format!("[[task]]\nname = \"{name}\"\n{extra}\nprogram = [{{ run = \"{SECS}s\" }}]\n")
    };
    let text = machine(2, "4s")
        + "[[tenant]]\npolicy = \"example:rr\"\ncgroup = \"/t\"\nwatchdog = \"1s\"\n"
        + &hog("pinned", "cgroup = \"/t\"\ncpus = \"1\"")
        + &hog("free", "cgroup = \"/t\"")
        + &hog("top", "count = 2\ncpus = \"1\"");
    let run = run(&text);
    let mechanism = run.mechanism.as_ref().expect("the mechanism reports");
    assert!(
        mechanism.tenants[0].ejection.is_none(),
        "{:?}",
        mechanism.tenants[0].ejection
    );
    let pinned = run.tasks.iter().find(|t| t.name == "pinned").unwrap();
    let share = pinned.cpu_ns as f64 / (SECS * S) as f64;
    let guard = mechanism::GUARD_MIN_PERMILLE as f64 / 1000.0;
    // At least its level's share of CPU 1 in every window (a run that starts the window may
    // add one slice), and far from the third of it that the default class would give it.
    assert!(
        share >= guard * 0.9 && share <= 0.2,
        "pinned task: {:.1}% of its CPU",
        share * 100.0
    );
    assert!(
        pinned.wait.max_ns <= 100 * MS + 20 * MS,
        "{:?}",
        pinned.wait
    );
}
