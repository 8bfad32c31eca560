// SPDX-License-Identifier: GPL-2.0-only
//! The broker's benchmark (docs/broker.md, "Benchmark"; not a test: ignored by default, it
//! boots the guest for a minute or two and its figures want an idle machine):
//!
//! ```sh
//! flock /work/vm.lock cargo test -p upsched-cli --test vm_broker_bench -- --ignored --nocapture
//! ```
//!
//! In one boot of the test guest: load+attach, replace and unload of a tenant through `Host`
//! in one process (as root, no daemon) and through `upschedd`'s socket (as alice, a grant
//! holder; `upsched-broker-bench`), two blocks of [`ROUNDS`] rounds on each path, alternating; the cost of posting a thread's hint
//! words with a store into the mapped hint map against a `set_hints` request (`upsched hint
//! --bench`, as alice); and the daemon's CPU time over [`IDLE_SPAN`] with a tenant loaded, once
//! with no client and once with a client asking for `stats` every second (as `upsched top`).
//! Prints the medians and the ratios.

use std::collections::BTreeMap;
use std::time::Duration;

#[path = "support/guest.rs"]
mod guest;

/// Rounds of load, replace, unload on each path.
const ROUNDS: u32 = 10;
/// The span over which the daemon's CPU time is measured.
const IDLE_SPAN: &str = "10s";

const SCRIPT: &str = r#"#!/bin/sh
. /upsched/lib.sh
@BROKER@
chmod 755 /usr/bin/upsched-broker-bench
mkdir -p $T/alice/web /tmp/state /tmp/ex
chown -R 1000:1000 $T/alice
upsched examples export /tmp/ex >/dev/null
chmod -R a+rX /tmp/ex
OPS="--policy /tmp/ex/fifo.bpf.o --replacement /tmp/ex/wfq.bpf.o --cgroup $T/alice/web --rounds @ROUNDS@"
# bench NAME COMMAND...: the command's UPSCHED-BENCH lines, on one line, as the check's detail.
bench() {
    name=$1; shift
    out=$("$@" 2>&1); status=$?
    lines=$(echo "$out" | grep '^UPSCHED-BENCH' | sed 's/^UPSCHED-BENCH //' | tr '\n' ';')
    if [ $status -eq 0 ] && [ -n "$lines" ]; then
        upsched_pass "$name" "$lines"
    else
        upsched_fail "$name" "exit $status: $out"
    fi
}
grant_alice '"sched.order", "sched.slice", "task.accounting", "time.read"' 100ms 3s
# Two blocks of rounds on each path, alternating (ABAB), so that a drift of the machine's load
# shows on both paths; the daemon's host is ended between its blocks (one scheduler at a time).
for block in 1 2; do
    bench direct_$block /usr/bin/upsched-broker-bench direct $OPS
    for i in $(seq 100); do grep -qx disabled /sys/kernel/sched_ext/state && break; sleep 0.1; done
    start_daemon
    # The first load loads the host scheduler: not part of the rounds.
    alice upsched load /tmp/ex/fifo.bpf.o --cgroup $T/alice/web --level 1 --name warm-up >/dev/null
    alice upsched unload warm-up >/dev/null
    bench daemon_$block alice /usr/bin/upsched-broker-bench daemon --socket $SOCK $OPS
    if [ $block = 1 ]; then
        kill $daemon
        wait $daemon
        /usr/bin/upschedd --unload --state-dir /tmp/state >/dev/null
    fi
done

alice upsched load example:fifo --cgroup $T/alice/web --level 1 --name web >/dev/null
su -s /bin/sh alice -c 'echo $$ > /tmp/spinner.pid; while :; do :; done' &
for i in $(seq 50); do [ -s /tmp/spinner.pid ] && break; sleep 0.1; done
spinner=$(cat /tmp/spinner.pid)
echo $spinner > $T/alice/web/cgroup.procs
sleep 1
bench idle_no_client /usr/bin/upsched-broker-bench idle --pid $daemon --span @SPAN@
bench idle_polled alice /usr/bin/upsched-broker-bench idle --pid $daemon --span @SPAN@ --poll 1s --socket $SOCK

ns_per_post() { "$@" --json | grep '"ns_per_post"' | tr -dc 0-9.; }
map_ns=$(ns_per_post alice upsched hint web --tid $spinner --pending 3 --bench 1000000)
request_ns=$(ns_per_post alice upsched hint web --tid $spinner --slow --pending 3 --bench 200)
if [ -n "$map_ns" ] && [ -n "$request_ns" ]; then
    upsched_pass hints "map_ns=$map_ns request_ns=$request_ns"
else
    upsched_fail hints "map store '$map_ns' ns, set_hints request '$request_ns' ns"
fi
kill $spinner
alice upsched unload web >/dev/null
kill $daemon
wait $daemon
/usr/bin/upschedd --unload --state-dir /tmp/state >/dev/null
upsched_finish
"#;

/// The `key=value` fields of one measurement.
fn fields(record: &str) -> BTreeMap<&str, &str> {
    record
        .split_whitespace()
        .filter_map(|field| field.split_once('='))
        .collect()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

#[test]
#[ignore = "a benchmark: boots the guest for a minute or two; run with --ignored --nocapture"]
fn broker_latency_hint_cost_and_idle_cpu() {
    let bench = guest_binary("upsched-broker-bench");
    let script = SCRIPT
        .replace("@ROUNDS@", &ROUNDS.to_string())
        .replace("@SPAN@", IDLE_SPAN);
    let extra = [(bench.as_path(), "/usr/bin/upsched-broker-bench".to_string())];
    let Some(results) =
        guest::run_cli_guest("broker-bench", &script, &extra, Duration::from_secs(600))
    else {
        return;
    };
    let detail = |name: &str| {
        results
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.detail.clone())
            .unwrap_or_else(|| panic!("no check {name}"))
    };

    println!(
        "broker benchmark, one boot, 2 x {ROUNDS} rounds per path, ABAB (median; microseconds)"
    );
    println!(
        "{:<10} {:>12} {:>12} {:>8}",
        "operation", "Host", "upschedd", "ratio"
    );
    let latencies = |path: &str, operation: &str| -> Vec<f64> {
        [detail(&format!("{path}_1")), detail(&format!("{path}_2"))]
            .join(";")
            .split(';')
            .map(fields)
            .filter(|f| f.get("op") == Some(&operation))
            .filter_map(|f| f.get("us")?.parse().ok())
            .collect()
    };
    for operation in ["load", "replace", "unload"] {
        let (direct, daemon) = (
            latencies("direct", operation),
            latencies("daemon", operation),
        );
        let rounds = 2 * ROUNDS as usize;
        assert_eq!(direct.len(), rounds, "{operation} through Host");
        assert_eq!(daemon.len(), rounds, "{operation} through upschedd");
        let (direct, daemon) = (median(direct), median(daemon));
        println!(
            "{operation:<10} {direct:>12.0} {daemon:>12.0} {:>8.2}",
            daemon / direct
        );
    }

    let hints = detail("hints");
    let hint = fields(&hints);
    let number = |key: &str| -> f64 {
        hint.get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {hints}"))
    };
    let (store, request) = (number("map_ns"), number("request_ns"));
    println!(
        "hint post: store into the mapping {store:.0} ns, set_hints request {request:.0} ns, \
         ratio {:.0}",
        request / store
    );

    for (name, what) in [
        ("idle_no_client", "no client"),
        ("idle_polled", "stats polled every second"),
    ] {
        let text = detail(name);
        let idle = fields(text.trim_end_matches(';'));
        println!(
            "daemon CPU over {} s with a tenant loaded, {what}: {} ms ({}% of one CPU; {} \
             requests)",
            idle["span_s"], idle["cpu_ms"], idle["cpu_percent"], idle["requests"]
        );
    }
}

/// The static guest build of a binary of upsched-broker.
fn guest_binary(binary: &str) -> std::path::PathBuf {
    upsched_vmtest::guest_binary::build_static_binary("upsched-broker", binary)
        .unwrap_or_else(|e| panic!("{e:#}"))
}
