//! The structure of the pictures and the trace of a run, read back from their text: which
//! legend entries the SVGs have, what shape the CDF curves take, which tracks, flows and
//! counters the Perfetto trace holds. No pixel is compared.

use std::collections::BTreeSet;

use upsched_sim::units::MS;
use upsched_sim::{RunOptions, RunOutcome, Scenario, parse_scenario, plots, run_builtin};

#[path = "support/svg.rs"]
mod svg;
use svg::{elements, legend, points};

fn example(name: &str) -> Scenario {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    upsched_sim::load_scenario(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn traced(s: &Scenario, policy: &str) -> RunOutcome {
    run_builtin(
        s,
        policy,
        RunOptions {
            record_trace: true,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{policy}: {e}"))
}

#[test]
fn the_timeline_has_a_legend_entry_of_its_own_colour_per_task() {
    let mut s = example("interactive.toml");
    s.duration = 100 * MS;
    let outcome = traced(&s, "linux-eevdf");
    let svg = plots::timeline_svg(&outcome, &s, 50 * MS).unwrap();
    let legend = legend(&svg);
    let labels: BTreeSet<&str> = legend.iter().map(|(l, _)| l.as_str()).collect();
    let ran: BTreeSet<&str> = outcome
        .trace
        .iter()
        .filter(|seg| seg.dispatched < 50 * MS)
        .map(|seg| outcome.records[seg.record as usize].name.as_str())
        .collect();
    assert_eq!(ran.len(), 10, "every task of the example runs in 50 ms");
    let mut expected = ran.clone();
    expected.insert("switch / migration");
    assert_eq!(labels, expected, "{legend:?}");
    let colours: BTreeSet<&str> = legend.iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(colours.len(), legend.len(), "colours repeat: {legend:?}");
    // Every task's stints are drawn in its legend colour.
    let fills: BTreeSet<String> = elements(&svg, "rect")
        .iter()
        .map(|r| r.attrs["fill"].clone())
        .collect();
    assert!(
        legend
            .iter()
            .all(|(_, c)| fills.iter().filter(|f| *f == c).count() == 1)
    );
    assert!(
        elements(&svg, "rect")
            .iter()
            .filter(|r| r.attrs["fill"] == legend[0].1)
            .count()
            > 1,
        "the first task's stints share its colour"
    );
    // Wide stints carry their task's name.
    let texts = elements(&svg, "text");
    let in_stints = texts
        .iter()
        .filter(|t| ran.contains(t.text.as_str()))
        .count();
    assert!(in_stints > legend.len(), "{in_stints} names");
}

#[test]
fn a_timeline_of_more_tasks_than_colours_groups_them_by_name() {
    let s = parse_scenario(
        r#"
duration = "20ms"
[machine]
cpus = 4
[[task]]
name = "worker"
count = 30
program = [{ loop = "forever", body = [{ run = "1ms" }, { sleep = "1ms" }] }]
[[task]]
name = "hog"
program = [{ run = "1s" }]
"#,
        "many.toml",
    )
    .unwrap();
    let outcome = traced(&s, "linux-eevdf");
    let svg = plots::timeline_svg(&outcome, &s, 20 * MS).unwrap();
    let labels: Vec<String> = legend(&svg).into_iter().map(|(l, _)| l).collect();
    assert_eq!(labels, ["worker", "hog", "switch / migration"]);
}

#[test]
fn the_latency_cdf_is_a_staircase_with_a_legend_beside_the_data() {
    let mut s = example("interactive.toml");
    s.duration = 200 * MS;
    let outcome = traced(&s, "linux-eevdf");
    let svg = plots::latency_cdf_svg(&outcome, &s).unwrap();
    let curves: Vec<Vec<(f64, f64)>> = elements(&svg, "polyline")
        .iter()
        .map(|l| points(&l.attrs["points"]))
        .filter(|p| p.len() > 2)
        .collect();
    assert_eq!(curves.len(), 2);
    for curve in &curves {
        let mut rises = 0;
        for pair in curve.windows(2) {
            let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
            assert!(
                x0 == x1 || y0 == y1,
                "a slope from {:?} to {:?}",
                pair[0],
                pair[1]
            );
            assert!(x1 >= x0 && y1 <= y0, "the CDF goes right and up");
            rises += (y1 < y0) as usize;
        }
        assert!(rises > 3, "{curve:?}");
    }
    let legend = legend(&svg);
    let labels: BTreeSet<&str> = legend.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels, BTreeSet::from(["/batch", "/interactive"]));
    let legend_x = elements(&svg, "text")
        .iter()
        .filter(|t| labels.contains(t.text.as_str()))
        .map(|t| t.num("x"))
        .fold(f64::MAX, f64::min);
    for curve in &curves {
        assert!(
            curve.iter().all(|(x, _)| *x < legend_x),
            "the legend is over the data"
        );
    }
}
