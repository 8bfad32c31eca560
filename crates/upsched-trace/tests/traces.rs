//! Hand-written traces with known answers: the same schedule printed by `perf script` and by
//! `trace-cmd report`, and one that needs every kind of repair.

use upsched_trace::{
    Format, ImportOptions, ParseError, Phase, Stats, TaskId, Timeline, WaitCause, build, import,
    parse,
};

fn timeline(name: &str) -> Timeline {
    let path = format!("{}/tests/traces/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("trace file");
    build(&parse(&text).unwrap_or_else(|e| panic!("{name}: {e}")))
}

const US: u64 = 1_000;

/// Per task: (pid, comm, CPU time, waits, switches, migrations).
fn summary(stats: &Stats) -> Vec<(u32, &str, u64, u64, u64, u64)> {
    stats
        .tasks
        .iter()
        .map(|t| {
            (
                t.pid,
                t.comm.as_str(),
                t.cpu_ns,
                t.wait.count,
                t.switches,
                t.migrations,
            )
        })
        .collect()
}

#[test]
fn every_format_gives_the_same_exact_figures() {
    for (name, format) in [
        ("basic.perf.txt", Format::PerfScript),
        ("basic.trace-cmd.txt", Format::TraceCmd),
        // What `upsched trace record` writes: tracefs's own text, latency flags included.
        ("basic.tracefs.txt", Format::TraceCmd),
    ] {
        let timeline = timeline(name);
        assert_eq!(timeline.format, format, "{name}");
        assert_eq!(timeline.cpus, 2, "{name}");
        let stats = Stats::of(&timeline);
        assert_eq!(stats.duration_ns, 5_000 * US, "{name}");
        assert_eq!(
            summary(&stats),
            vec![
                (100, "a", 2_500 * US, 1, 2, 0),
                (101, "b", 3_700 * US, 2, 2, 1),
            ],
            "{name}"
        );
        let a = &stats.tasks[0].wait;
        assert_eq!((a.mean_ns, a.max_ns), (500 * US, 500 * US), "{name}");
        let b = &stats.tasks[1].wait;
        // Woken at 1.000100 (sched_waking; the sched_wakeup after it is the same wake-up),
        // ran at 1.000300; preempted at 1.003000, ran at 1.004000.
        assert_eq!(
            (b.p50_ns, b.max_ns, b.mean_ns),
            (200 * US, 1_000 * US, 600 * US)
        );
        let total = &stats.total;
        assert_eq!(total.cpu_ns, 6_200 * US, "{name}");
        assert_eq!(total.wait.count, 3, "{name}");
        assert_eq!(total.wait.mean_ns, 566_666, "{name}");
        assert_eq!(
            (total.wait.p50_ns, total.wait.p99_ns),
            (500 * US, 1_000 * US)
        );
        assert_eq!((total.switches, total.migrations), (4, 1), "{name}");
        // Who woke whom.
        let woken_by = |task: usize, wait: usize| timeline.tasks[task].waits[wait].cause;
        assert_eq!(
            woken_by(1, 0),
            WaitCause::Wakeup {
                waker: Some(TaskId(0))
            }
        );
        assert_eq!(
            woken_by(0, 0),
            WaitCause::Wakeup {
                waker: Some(TaskId(1))
            }
        );
        assert_eq!(woken_by(1, 1), WaitCause::Preempted);
        let r = &timeline.repairs;
        assert_eq!(r.runnable_at_start, 1, "{name}: a was switched in first");
        assert_eq!(
            r.counts().iter().map(|(_, n)| n).sum::<u64>(),
            1,
            "{name}: {r:?}"
        );
        let irq = if format == Format::PerfScript {
            "irq:irq_handler_entry"
        } else {
            "irq_handler_entry"
        };
        assert_eq!(r.other_events.get(irq), Some(&1), "{name}");
    }
}

#[test]
fn every_repair_is_made_and_counted() {
    let timeline = timeline("repairs.perf.txt");
    let r = &timeline.repairs;
    assert_eq!(
        r.out_of_order, 1,
        "the waking of q printed after a later switch"
    );
    assert_eq!(r.missing_wakeups, 1, "x slept, then ran with no wake-up");
    assert_eq!(r.missing_migrations, 1, "x ran on CPU 0, then on CPU 1");
    assert_eq!(r.running_at_start, 1, "x's first event is its switch-out");
    assert_eq!(r.runnable_at_start, 1, "y's first event is its switch-in");
    assert_eq!(r.pid_reuse, 1, "u forked with the pid of the live y");
    assert_eq!(r.inconsistent_switches, 0);
    assert_eq!(r.truncated_lines, 1);

    let tasks: Vec<(u32, &str, Option<u64>, Option<u64>)> = timeline
        .tasks
        .iter()
        .map(|t| (t.pid, t.comm.as_str(), t.forked_ns, t.ended_ns))
        .collect();
    let s = 1_000_000 * US;
    assert_eq!(
        tasks,
        vec![
            (300, "z", None, Some(s + 2_000 * US)),
            (200, "x", None, None),
            (201, "y", None, Some(s + 4_500 * US)),
            (400, "q", None, None),
            (300, "w", Some(s + 3_000 * US), None),
            (201, "u", Some(s + 4_500 * US), None),
        ],
        "pid 300 is two tasks (z died, w was forked), pid 201 too (y's end was lost)"
    );
    let stats = Stats::of(&timeline);
    assert_eq!(
        summary(&stats),
        vec![
            (300, "z", 1_000 * US, 1, 1, 0),
            // From the trace's start to its switch-out on CPU 0, then on CPU 1 to the end.
            (200, "x", 3_500 * US, 0, 2, 1),
            (201, "y", 3_500 * US, 0, 1, 0),
            (400, "q", 0, 0, 0, 0),
            (300, "w", 1_000 * US, 1, 1, 0),
            (201, "u", 0, 0, 0, 0),
        ]
    );
    let w = &timeline.tasks[4];
    assert_eq!(w.parent, Some(TaskId(2)));
    assert_eq!(w.waits[0].cause, WaitCause::Fork);
    assert_eq!(w.waits[0].duration_ns(), 900 * US);
    assert_eq!(timeline.tasks[5].parent, Some(TaskId(4)));
}

#[test]
fn other_text_is_refused_with_its_line() {
    assert_eq!(
        parse("# a comment\nhello world\n").unwrap_err(),
        ParseError::UnknownFormat {
            line: 2,
            excerpt: "hello world".into()
        }
    );
    assert_eq!(parse("").unwrap_err(), ParseError::NoEvents);
    assert_eq!(
        parse("# only a header\n").unwrap_err(),
        ParseError::NoEvents
    );
    let broken = "\
  a   100 [000]     1.000000: sched:sched_switch: prev_comm=a prev_pid=100 prev_prio=120 prev_state=S ==> next_comm=b
  b   101 [000]     1.000100: sched:sched_switch: prev_comm=b prev_pid=101 prev_prio=120 prev_state=S ==> next_comm=a next_pid=100 next_prio=120
";
    let err = parse(broken).unwrap_err();
    assert!(
        matches!(&err, ParseError::Malformed { line: 1, reason, .. } if reason.contains("next_pid")),
        "{err}"
    );
    let state = "  a   100 [000]     1.000000: sched:sched_switch: prev_comm=a prev_pid=100 prev_prio=120 prev_state=? ==> next_comm=b next_pid=101 next_prio=120\n  a   100 [000]     1.1: sched:sched_waking: comm=b pid=101 prio=120 target_cpu=000\n";
    assert!(matches!(
        parse(state).unwrap_err(),
        ParseError::Malformed { line: 1, .. }
    ));
}

#[test]
fn hostile_numbers_are_refused_not_allocated() {
    let cpu = "  a   100 [999999]     1.000000: sched:sched_waking: comm=b pid=101 prio=120 target_cpu=000\n  a   100 [000]     1.1: sched:sched_waking: comm=b pid=101 prio=120 target_cpu=000\n";
    assert!(matches!(
        parse(cpu).unwrap_err(),
        ParseError::Malformed { line: 1, reason, .. } if reason.contains("CPU")
    ));
    let pid = "  a   100 [000]     1.000000: sched:sched_waking: comm=b pid=99999999999 prio=120 target_cpu=000\n  a   100 [000]     1.1: sched:sched_waking: comm=b pid=101 prio=120 target_cpu=000\n";
    assert!(matches!(
        parse(pid).unwrap_err(),
        ParseError::Malformed { line: 1, .. }
    ));
}

/// The phases of each task of the imported scenario, by name.
fn programs(scenario: &upsched_trace::Scenario) -> Vec<(&str, bool, u64, Vec<Phase>)> {
    scenario
        .tasks
        .iter()
        .map(|t| (t.name.as_str(), t.forked, t.start_ns, t.program.clone()))
        .collect()
}

#[test]
fn import_replays_bursts_wakeups_and_forks() {
    let basic = timeline("basic.perf.txt");
    let scenario = import(&basic, ImportOptions::default());
    assert_eq!((scenario.cpus, scenario.duration_ns), (2, 5_000 * US));
    assert_eq!(scenario.woken, vec![TaskId(0), TaskId(1)]);
    assert_eq!(
        programs(&scenario),
        vec![
            (
                "a-100",
                false,
                0,
                // a woke b 100 µs into its first burst, slept until b woke it.
                vec![
                    Phase::Run(100 * US),
                    Phase::Signal(TaskId(1)),
                    Phase::Run(900 * US),
                    Phase::Block,
                    Phase::Run(1_500 * US),
                ]
            ),
            (
                "b-101",
                false,
                0,
                // b slept from before the trace until a woke it; its preemption is no sleep.
                vec![
                    Phase::Block,
                    Phase::Run(1_700 * US),
                    Phase::Signal(TaskId(0)),
                    Phase::Run(2_000 * US),
                ]
            ),
        ]
    );

    let repairs = timeline("repairs.perf.txt");
    let scenario = import(&repairs, ImportOptions::default());
    assert!(
        scenario.woken.is_empty(),
        "z was woken by an interrupt, x's wake-up was lost"
    );
    assert_eq!(
        programs(&scenario),
        vec![
            ("z-300", false, 0, vec![Phase::Run(1_000 * US)]),
            (
                "x-200",
                false,
                0,
                vec![
                    Phase::Run(500 * US),
                    Phase::Sleep(1_500 * US),
                    Phase::Run(3_000 * US)
                ]
            ),
            (
                "y-201",
                false,
                500 * US,
                vec![
                    Phase::Run(2_500 * US),
                    Phase::Fork(TaskId(4)),
                    Phase::Run(1_000 * US)
                ]
            ),
            // q and u never ran: nothing to replay.
            ("w-300", true, 3_000 * US, vec![Phase::Run(1_000 * US)]),
        ]
    );
    let toml = scenario.to_toml("repairs.perf.txt");
    assert!(
        toml.contains("[[task]]\nname = \"w-300\"\ncount = 0\n"),
        "{toml}"
    );
    assert!(toml.contains("{ fork = \"w-300\" }"), "{toml}");
    assert_eq!(
        toml,
        import(&repairs, ImportOptions::default()).to_toml("repairs.perf.txt")
    );
}
