// SPDX-License-Identifier: GPL-2.0-only
//! `upsched demo` interrupted (SIGINT, as Ctrl-C sends it) while the demo user's two tenants
//! run through the daemon, in the test guest: the demo exits 130 after its clean-up, and
//! nothing is left: sched_ext disabled, no pin, no daemon, no demo cgroup, no demo files.
//!
//! Skipped without a kernel or QEMU unless UPSCHED_VM_REQUIRED=1 (`docs/vm-harness.md`).

use std::time::Duration;

#[path = "support/guest.rs"]
mod guest;

const EXPECTED: &[&str] = &[
    "tenants_loaded_through_the_daemon",
    "interrupted_demo_exits_130",
    "nothing_left",
];

const SCRIPT: &str = r#"#!/bin/sh
. /upsched/lib.sh
printf 'root:x:0:0::/root:/bin/sh\nupsched-demo:x:1000:1000::/nonexistent:/bin/false\n' > /etc/passwd
printf 'root:x:0:\nupsched-demo:x:1000:\n' > /etc/group
upsched demo --here --seconds 12 > /tmp/demo.out 2>&1 &
demo=$!
for i in $(seq 900); do grep -q 'upschedd swapped tenant "batch"' /tmp/demo.out && break; sleep 0.1; done
if grep -q 'upschedd swapped tenant "batch"' /tmp/demo.out; then
    upsched_pass tenants_loaded_through_the_daemon "$(grep -c 'upschedd loaded tenant' /tmp/demo.out) loads"
else
    upsched_fail tenants_loaded_through_the_daemon "$(cat /tmp/demo.out)"
fi
kill -INT $demo
wait $demo
status=$?
if [ $status -eq 130 ] && grep -qF 'demo interrupted (Ctrl-C)' /tmp/demo.out; then
    upsched_pass interrupted_demo_exits_130 "$(tail -1 /tmp/demo.out)"
else
    upsched_fail interrupted_demo_exits_130 "exit $status: $(tail -20 /tmp/demo.out)"
fi
state=$(cat /sys/kernel/sched_ext/state)
pins=$(ls -A /sys/fs/bpf/upsched-demo 2>/dev/null)
daemons=$(pidof upschedd)
if [ "$state" = disabled ] && [ -z "$pins" ] && [ -z "$daemons" ] \
    && [ ! -e /sys/fs/cgroup/upsched-demo ] && [ ! -e /run/upsched-demo ]; then
    upsched_pass nothing_left "sched_ext $state; no pin, daemon, cgroup or demo file"
else
    upsched_fail nothing_left "sched_ext $state; pins '$pins'; daemons '$daemons'; $(ls -d /sys/fs/cgroup/upsched-demo /run/upsched-demo 2>&1)"
fi
upsched_finish
"#;

#[test]
fn an_interrupted_demo_leaves_nothing_behind() {
    guest::run_cli_scenario("demo-interrupt", SCRIPT, Duration::from_secs(240), EXPECTED);
}
