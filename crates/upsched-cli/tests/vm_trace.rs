//! `upsched trace record` on the real sched_ext kernel, under QEMU, in one boot: a recording of
//! a small workload under the kernel's own scheduler and one under the upsched host with a
//! tenant governing the workload; each is read back by `trace stats`, replayed, imported and
//! exported to Perfetto by the simulator. Refusals: a user who is not root (nothing written),
//! and the command's exit status is passed on; no tracefs instance is left behind.
//!
//! Skipped without a kernel or QEMU unless UPSCHED_VM_REQUIRED=1 (`docs/vm-harness.md`).

use std::time::Duration;

#[path = "support/guest.rs"]
mod guest;

/// Every check the guest must report as passed, in order.
const EXPECTED: &[&str] = &[
    "recorded_under_the_kernel",
    "recording_is_a_trace_of_the_workload",
    "recording_replays",
    "daemon_started",
    "tenant_loaded",
    "recorded_under_the_host",
    "host_recording_shows_the_governed_workload",
    "host_recording_replays_under_the_tenant_policy",
    "host_recording_imports_and_exports_to_perfetto",
    "command_status_passed_on",
    "non_root_refused_and_nothing_written",
    "no_instance_left",
];

const SCRIPT: &str = r#"#!/bin/sh
. /upsched/lib.sh
printf 'root:x:0:0::/root:/bin/sh\nbob:x:1001:1001::/tmp:/bin/sh\n' > /etc/passwd
printf 'root:x:0:\nbob:x:1001:\n' > /etc/group
# The workload: a busy loop named burner beside a task that sleeps and wakes 20 times; with a
# cgroup argument it first moves itself there.
cat > /tmp/work.sh <<'EOF'
[ -n "$1" ] && echo $$ > "$1/cgroup.procs"
(i=0; while [ $i -lt 40000 ]; do i=$((i+1)); done) &
for n in $(seq 20); do sleep 0.01; done
wait
EOF
# expect_json NAME FILE PATTERN...: PASS if FILE holds every (grep -E) pattern.
expect_json() {
    name=$1; file=$2; shift 2
    for pattern in "$@"; do
        if ! grep -qE -- "$pattern" "$file"; then
            upsched_fail "$name" "no $pattern in: $(head -c 600 "$file")"
            return
        fi
    done
    upsched_pass "$name" "$(head -c 200 "$file")"
}

upsched_check recorded_under_the_kernel upsched trace record -o /tmp/plain.txt -- sh /tmp/work.sh
upsched trace stats /tmp/plain.txt --json > /tmp/plain.json 2>&1
expect_json recording_is_a_trace_of_the_workload /tmp/plain.json \
    '"format": "trace-cmd"' '"cpus": [1-9]' '"comm": "sh"' '"comm": "sleep"' \
    '"switches": [1-9]'
upsched trace replay /tmp/plain.txt --policy linux-eevdf --json > /tmp/plain-replay.json 2>&1
expect_json recording_replays /tmp/plain-replay.json '"policy": "linux-eevdf"' '"name": "sh-[0-9]+'

mkdir -p /etc/upsched /tmp/state /sys/fs/cgroup/rec
printf 'version = 1\n' > /etc/upsched/grants.toml
chmod 644 /etc/upsched/grants.toml
/usr/bin/upschedd --state-dir /tmp/state 2>/tmp/upschedd.log &
for i in $(seq 100); do [ -S /run/upsched/upsched.sock ] && break; sleep 0.1; done
upsched_check daemon_started test -S /run/upsched/upsched.sock
upsched_check tenant_loaded upsched load example:fifo --cgroup /sys/fs/cgroup/rec --name rec
before=$(upsched stats rec --json | grep -oE '"dispatches": [0-9]+' | grep -oE '[0-9]+$')
upsched_check recorded_under_the_host \
    upsched trace record -o /tmp/host.txt -- sh /tmp/work.sh /sys/fs/cgroup/rec
after=$(upsched stats rec --json | grep -oE '"dispatches": [0-9]+' | grep -oE '[0-9]+$')
state="$(cat /sys/kernel/sched_ext/state) $(cat /sys/kernel/sched_ext/root/ops)"
switches=$(grep -c 'sched_switch:.*next_comm=sleep' /tmp/host.txt)
if [ "$state" = "enabled @SCHEDULER@" ] && [ "${after:-0}" -gt "${before:-0}" ] && [ "$switches" -gt 0 ]; then
    upsched_pass host_recording_shows_the_governed_workload \
        "$state; tenant dispatches $before -> $after; $switches switches to sleep"
else
    upsched_fail host_recording_shows_the_governed_workload \
        "$state; tenant dispatches $before -> $after; $switches switches to sleep"
fi
upsched trace replay /tmp/host.txt --policy linux-eevdf --policy example:fifo --json \
    > /tmp/host-replay.json 2>&1
expect_json host_recording_replays_under_the_tenant_policy /tmp/host-replay.json \
    '"policy": "linux-eevdf"' '"policy": "example:fifo"'
mkdir -p /tmp/out
if upsched trace import /tmp/host.txt -o /tmp/host.toml 2>/tmp/import.log \
    && upsched sim /tmp/host.toml --policy example:fifo --out /tmp/out > /tmp/sim.log 2>&1 \
    && grep -q '"traceEvents"' /tmp/out/*-trace.json; then
    upsched_pass host_recording_imports_and_exports_to_perfetto "$(cat /tmp/import.log) $(ls /tmp/out)"
else
    upsched_fail host_recording_imports_and_exports_to_perfetto \
        "$(cat /tmp/import.log /tmp/sim.log) $(ls /tmp/out)"
fi

upsched trace record -o /tmp/status.txt -- sh -c 'exit 3' 2>/tmp/status.log
status=$?
if [ $status -eq 3 ] && [ -s /tmp/status.txt ]; then
    upsched_pass command_status_passed_on "$(cat /tmp/status.log)"
else
    upsched_fail command_status_passed_on "exit $status: $(cat /tmp/status.log)"
fi

out=$(su -s /bin/sh -c 'cd /tmp && upsched trace record -o /tmp/bob.txt -- true' bob 2>&1)
status=$?
if [ $status -eq 2 ] && echo "$out" | grep -qF "recording needs root" && [ ! -e /tmp/bob.txt ]; then
    upsched_pass non_root_refused_and_nothing_written "$out"
else
    upsched_fail non_root_refused_and_nothing_written "exit $status: $out; $(ls -l /tmp/bob.txt 2>&1)"
fi
left=$(ls /sys/kernel/tracing/instances)
if [ -z "$left" ]; then
    upsched_pass no_instance_left
else
    upsched_fail no_instance_left "$left"
fi
upsched_finish
"#;

#[test]
fn trace_record_records_under_the_kernel_and_under_the_host_on_the_real_kernel() {
    guest::run_cli_scenario("trace-record", SCRIPT, Duration::from_secs(240), EXPECTED);
}
