// SPDX-License-Identifier: GPL-2.0-only
//! The FaaS workload with real processes on the real sched_ext kernel, under QEMU, in one boot
//! (`docs/faas.md`): alice (uid 1000) holds a grant for `example:faas`, loads it through
//! `upschedd` on her workload's cgroup tree, and runs `upsched faas run` as herself, with the
//! runtime threads posting their hints, then with the platform posting them; then without the
//! tenant. The guest reports each run's JSON and the tenant's statistics; the assertions are
//! here, on the measured figures.
//!
//! Skipped without a kernel or QEMU unless UPSCHED_VM_REQUIRED=1 (`docs/vm-harness.md`).

use std::time::Duration;

use upsched_abi::mechanism::KERNEL_TICK_NS;
use upsched_broker::protocol::TenantStatsList;
use upsched_faas::Report;
use upsched_vmtest::protocol::TestResult;

#[path = "support/guest.rs"]
mod guest;

/// The tenant's park bound (the grant allows it).
const PARK_MAX_MS: f64 = 3000.0;

const SCRIPT: &str = r#"#!/bin/sh
. /upsched/lib.sh
@BROKER@
mkdir -p $T/alice/ctl $T/alice/faas /tmp/state
chown -R 1000:1000 $T/alice
grant_alice '"hints.read", "sched.order", "sched.verdict", "task.accounting", "time.read"' 3s 4s
start_daemon
upsched_check daemon_started test -S $SOCK

# faas_as_alice CHECK ARGS...: `upsched faas run ARGS --json` as alice, started from
# $T/alice/ctl (root moves her shell there first: cgroup2 lets only a writer of the common
# ancestor's cgroup.procs move a task, and she owns $T/alice); the report is the detail.
faas_as_alice() {
    check=$1; shift
    rm -f /tmp/go /tmp/alice.pid; mkfifo /tmp/go
    su -s /bin/sh -c 'echo $$ > /tmp/alice.pid; read go < /tmp/go; exec upsched faas run "$@" --json' \
        -- alice faas "$@" > /tmp/$check.json 2> /tmp/$check.err &
    shell=$!
    for i in $(seq 100); do [ -s /tmp/alice.pid ] && break; sleep 0.1; done
    echo $(cat /tmp/alice.pid) > $T/alice/ctl/cgroup.procs
    echo go > /tmp/go
    wait $shell
    status=$?
    if [ $status -eq 0 ]; then
        upsched_pass $check "$(cat /tmp/$check.json)"
    else
        upsched_fail $check "exit $status: $(cat /tmp/$check.err)"
    fi
}

# One chain at 5 requests/s for 2 s; runtimes that poll up to 50 ms of CPU (a long poll, so
# that what they burn with no request differs clearly from what the tenant lets them burn;
# much longer, and with platform hints the runtime thread that holds an invocation, which
# polls on unhinted, starves its worker: docs/faas.md).
RUN="--chains 1 --rate 5 --seconds 2 --drain 3 --spin 50ms --cgroup-root $T/alice/faas"
upsched_check faas_loaded alice upsched load example:faas --cgroup $T/alice/faas --name fn \
    --park-max 3s --watchdog 4s
faas_as_alice runtime_hints $RUN --hints runtime --tenant fn
upsched_check stats_after_runtime_hints alice upsched stats fn --json
faas_as_alice platform_hints $RUN --hints platform --tenant fn
upsched_check stats_after_platform_hints alice upsched stats fn --json
upsched_check unloaded alice upsched unload fn
faas_as_alice no_tenant $RUN
upsched_finish
"#;

fn detail<'a>(results: &'a [TestResult], name: &str) -> &'a str {
    &results
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("the guest did not report {name}"))
        .detail
}

fn report(results: &[TestResult], name: &str) -> Report {
    let text = detail(results, name);
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}: {text}"))
}

/// CPU the runtime threads used while their function had no pending request (ms).
fn runtime_idle_ms(report: &Report) -> f64 {
    report
        .functions
        .iter()
        .flat_map(|f| &f.threads)
        .filter(|t| t.role == "runtime")
        .map(|t| t.idle_cpu_ms)
        .sum()
}

/// The most CPU a runtime thread of the `faas` tenant can be charged for with no request
/// pending, from the mechanism, over a function's `idle_periods` lasting `idle_ms` in all:
/// - when an idle period starts (its worker passes the last request on), each runtime thread
///   is blocked, parked, or polling with SLEEPY posted and nothing pending (it posted them
///   after its hand-over, and yielded, which parks it at once; the taker of the last request
///   set every poller's pending word to what was still queued, nothing). One still running is
///   stopped at its CPU's next tick: the policy's `tick` answers PREEMPT, the slice becomes 0,
///   and at the `enqueue` that follows the policy parks it. That is at most one tick of CPU
///   (4 ms, `CONFIG_HZ=250`), plus the switch itself;
/// - a parked thread is released by a pending word (the period has ended then), by SLEEPY
///   cleared (only by the thread itself, when it runs) or by the park bound, counted from the
///   start of its current wait; a thread released by the bound runs once (until its next tick,
///   as above) and is parked again: one more tick and switch per park bound of idle time;
/// - the readings add nothing: an idle period starts at the worker's reading of its own
///   process's thread CPU clocks, exact at the read; it ends at the platform's reading of
///   schedstat, which lags a running thread by less than a tick, and a lag there only moves
///   CPU out of the period.
///
/// Hence at most a tick and a switch per idle period and per park bound of idle time.
fn idle_bound_ms(idle_periods: u64, idle_ms: f64) -> f64 {
    let tick_ms = KERNEL_TICK_NS as f64 / 1e6;
    let switch_ms = 1.0;
    let bound_releases = (idle_ms / PARK_MAX_MS).ceil();
    (idle_periods as f64 + bound_releases) * (tick_ms + switch_ms)
}

fn stats(results: &[TestResult], name: &str) -> (u64, u64, u64, usize) {
    let text = detail(results, name);
    let list: TenantStatsList =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}: {text}"));
    let tenant = list
        .tenants
        .iter()
        .find(|t| t.tenant.name == "fn")
        .unwrap_or_else(|| panic!("{name}: the tenant is gone: {text}"));
    let c = &tenant.counters;
    (c.parks, c.releases, c.ejections, list.ejected.len())
}

fn assert_completes(name: &str, report: &Report) {
    assert!(report.arrived > 0, "{name}: no request arrived");
    assert_eq!(
        report.completed, report.arrived,
        "{name}: the chain did not complete every request"
    );
}

#[test]
fn a_tenant_parks_idle_runtimes_of_real_faas_chains_and_every_request_completes() {
    let Some(results) = guest::run_cli_guest("cli-faas", SCRIPT, &[], Duration::from_secs(600))
    else {
        return;
    };
    let runtime = report(&results, "runtime_hints");
    let platform = report(&results, "platform_hints");
    let untenanted = report(&results, "no_tenant");
    for (name, r) in [
        ("runtime_hints", &runtime),
        ("platform_hints", &platform),
        ("no_tenant", &untenanted),
    ] {
        assert_completes(name, r);
        eprintln!(
            "{name}: runtime threads' idle CPU {:.1} ms, idle ratio {:?}, polling share {:?}, p99 {:.1} ms",
            runtime_idle_ms(r),
            r.idle_ratio,
            r.poll_ratio,
            r.latency.p99_ms
        );
    }
    for f in &runtime.functions {
        let bound = idle_bound_ms(f.idle_periods, f.idle_wall_ms);
        for t in f.threads.iter().filter(|t| t.role == "runtime") {
            assert!(
                t.idle_cpu_ms <= bound,
                "{}: runtime thread {} used {:.1} ms with no request pending over {} idle \
                 periods ({:.0} ms), more than the mechanism's {bound:.1} ms",
                f.function,
                t.tid,
                t.idle_cpu_ms,
                f.idle_periods,
                f.idle_wall_ms
            );
        }
    }
    // Parked pollers are released by the pending word when their request is posted, not by
    // the park bound: every request waited in an inbox far less than the bound.
    for (name, r) in [("runtime_hints", &runtime), ("platform_hints", &platform)] {
        for f in &r.functions {
            assert!(f.pickups > 0, "{name}: {} took no request", f.function);
            assert!(
                f.pickup_max_ms < PARK_MAX_MS / 2.0,
                "{name}: a request waited {:.1} ms in {}'s inbox, near the park bound",
                f.pickup_max_ms,
                f.function
            );
        }
    }
    for name in ["stats_after_runtime_hints", "stats_after_platform_hints"] {
        let (parks, releases, ejections, ejected) = stats(&results, name);
        assert!(
            parks > 0 && releases > 0,
            "{name}: parks {parks}, releases {releases}"
        );
        assert_eq!(
            (ejections, ejected),
            (0, 0),
            "{name}: the watchdog ejected the tenant"
        );
    }
    // With platform hints the runtime threads poll on until the platform has seen their
    // function idle, and the platform, a task of the tenant like the pollers, waits its turn
    // for that (measured in two boots: 5.8 and 15 times less idle CPU than without the
    // tenant, where runtime hints left 20 times less and, with the yield, none); its contrast
    // is held to 3.
    let without = runtime_idle_ms(&untenanted);
    for (name, r, factor) in [
        ("runtime_hints", &runtime, 5.0),
        ("platform_hints", &platform, 3.0),
    ] {
        let with = runtime_idle_ms(r);
        assert!(
            without >= factor * with,
            "{name}: runtime threads used {with:.1} ms with no request pending under the \
             tenant, {without:.1} ms without: less than {factor} times as much"
        );
    }
}
