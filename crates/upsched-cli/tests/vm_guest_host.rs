// SPDX-License-Identifier: GPL-2.0-only
//! Guest/host hints on the real sched_ext kernel, under QEMU, in one boot
//! (`docs/guest-host.md`). The test VM is the host. A "VMM" of alice's (`upsched
//! vmm-emulator`) has two vCPU threads named `CPU 0/TCG` and `CPU 1/TCG` that spin like an
//! idle-polling guest and serve a request injected into vCPU 0 every 100 ms; its guest side
//! reports their state in the guest protocol on a real channel socket. A CPU hog of alice's
//! shares CPU 1 with them, all in the cgroup of alice's tenant. Three runs of 2 s each,
//! measured from `/proc/TID/schedstat`: plain Linux; the `vm` policy loaded through the daemon
//! by alice but no host agent; the `vm` policy with alice's `upsched vm-agent` posting the
//! words. With the agent the idle vCPUs burn far less of the CPU, the hog gets it, and the
//! requests are still served within a bound. Then a hostile guest (malformed messages, vCPUs it
//! does not have, replays, a flood) next to a well-behaved VM in the same tenant: its agent
//! rejects and counts everything, the other VM's words do not change, and the host goes on.
//!
//! Skipped without a kernel or QEMU unless UPSCHED_VM_REQUIRED=1 (`docs/vm-harness.md`).

use std::time::Duration;

#[path = "support/guest.rs"]
mod guest;

/// Every check the guest must report as passed, in order.
const EXPECTED: &[&str] = &[
    "daemon_started",
    "baseline_measured",
    "vm_loaded",
    "policy_without_agent_measured",
    "policy_with_agent_measured",
    "idle_vcpus_burn_far_less",
    "hog_gets_the_cpu",
    "requests_served_within_bound",
    "hostile_guest_rejected_and_counted",
    "other_vm_words_unchanged",
    "host_unaffected",
    "unloaded",
];

const SCRIPT: &str = r#"#!/bin/sh
. /upsched/lib.sh
@BROKER@
mkdir -p $T/alice/vms /tmp/run
chown -R 1000:1000 $T/alice /tmp/run
grant_alice '"hints.read", "sched.order", "sched.park", "sched.slice", "sched.verdict", "task.accounting", "time.read"' 100ms 3s
start_daemon
upsched_check daemon_started test -S $SOCK

# field FILE KEY: a number of a one-level JSON document.
field() { tr -d ' \n' < $1 | sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p"; }
vcpu_tids() { for t in /proc/$1/task/*; do case "$(cat $t/comm)" in "CPU "*) echo ${t##*/};; esac; done; }
cpu_ns() { s=0; for t in "$@"; do read run rest < /proc/$t/schedstat; s=$((s + run)); done; echo $s; }
wait_file() { for i in $(seq 100); do [ -s $1 ] && return 0; sleep 0.05; done; return 1; }
# vmm NAME ARGS...: alice's VMM on CPU 1 in the tenant's cgroup; $vmm is its pid.
vmm() {
    vmm_name=$1; shift
    rm -f /tmp/run/$vmm_name.pid
    alice taskset -c 1 upsched vmm-emulator --channel /tmp/run/$vmm_name.sock --pid-file /tmp/run/$vmm_name.pid "$@" \
        > /tmp/run/$vmm_name.vmm.json 2> /tmp/run/$vmm_name.vmm.err &
    wait_file /tmp/run/$vmm_name.pid
    vmm=$(cat /tmp/run/$vmm_name.pid)
    echo $vmm > $T/alice/vms/cgroup.procs
}
# agent NAME PID [ARGS...]: alice's host agent for that VMM, for 4 s; $agent is its shell's pid.
agent() {
    agent_name=$1; agent_vmm=$2; shift 2
    alice upsched vm-agent --tenant vms --vmm-pid $agent_vmm --channel /tmp/run/$agent_name.sock --duration 4s --json "$@" \
        > /tmp/run/$agent_name.agent.json 2>&1 &
    agent=$!
}
# run NAME WITH_AGENT [AGENT ARGS...]: a VMM with a request into vCPU 0 every 100 ms and the
# hog on CPU 1; $vcpu_ms and $hog_ms are the CPU they got from 1.5 s to 3.5 s, $max the
# requests' longest wait (us), $figures all of it.
run() {
    run_name=$1; with_agent=$2; shift 2
    vmm $run_name --request-every 100ms --work 2ms --duration 5s
    vmm_shell=$!
    alice sh -c 'echo $$ > /tmp/run/hog.pid; exec taskset -c 1 sh -c "while :; do :; done"' &
    wait_file /tmp/run/hog.pid
    hog=$(cat /tmp/run/hog.pid)
    rm /tmp/run/hog.pid
    echo $hog > $T/alice/vms/cgroup.procs
    [ $with_agent = 1 ] && agent $run_name $vmm "$@"
    sleep 1.5
    tids=$(vcpu_tids $vmm)
    v0=$(cpu_ns $tids); h0=$(cpu_ns $hog)
    sleep 2
    v1=$(cpu_ns $tids); h1=$(cpu_ns $hog)
    vcpu_ms=$(( (v1 - v0) / 1000000 )); hog_ms=$(( (h1 - h0) / 1000000 ))
    wait $vmm_shell
    kill $hog
    [ $with_agent = 1 ] && wait $agent
    out=/tmp/run/$run_name.vmm.json
    requests=$(field $out requests); served=$(field $out served); max=$(field $out latency_us_max)
    figures="2 vCPUs $vcpu_ms ms, hog $hog_ms ms of CPU 1 in 2000 ms; requests $requests, served $served, latency p50 $(field $out latency_us_p50) us p99 $(field $out latency_us_p99) us max $max us"
}
# check NAME CONDITION DETAIL: PASS if the test expression CONDITION holds.
check() { if eval "$2"; then upsched_pass $1 "$3"; else upsched_fail $1 "$3"; fi; }

run base 0
base_vcpu=$vcpu_ms; base_hog=$hog_ms; base_figures=$figures
check baseline_measured '[ $base_vcpu -gt 0 ] && [ $base_hog -gt 0 ]' "plain Linux: $figures"

upsched_check vm_loaded alice upsched load example:vm --cgroup $T/alice/vms --name vms --park-max 100ms --watchdog 3s

run noagent 0
noagent_vcpu=$vcpu_ms; noagent_hog=$hog_ms
check policy_without_agent_measured '[ $noagent_vcpu -gt 0 ]' "vm policy, no agent: $figures"

# With the agent: parked (or throttled) idle vCPUs poll once per park time, 20 ms by default
# and 50 ms in the second run (less CPU, longer waits for a request).
run hinted 1
vcpu20=$vcpu_ms; hog20=$hog_ms; served20=$served; requests20=$requests; max20=$max; figures20=$figures
run hinted50 1 --park 50ms
vcpu50=$vcpu_ms; hog50=$hog_ms; served50=$served; requests50=$requests; max50=$max; figures50=$figures
check policy_with_agent_measured '[ "$(field /tmp/run/hinted.agent.json posts)" -gt 0 ] && [ "$(field /tmp/run/hinted50.agent.json posts)" -gt 0 ]' \
    "park 20 ms: $figures20; park 50 ms: $figures50; agent: $(tr -d ' \n' < /tmp/run/hinted.agent.json)"
check idle_vcpus_burn_far_less '[ $((vcpu20 * 3)) -lt $((base_vcpu * 2)) ] && [ $((vcpu20 * 3)) -lt $((noagent_vcpu * 2)) ] && [ $((vcpu50 * 3)) -lt $base_vcpu ] && [ $((vcpu50 * 3)) -lt $noagent_vcpu ]' \
    "vCPUs $vcpu20 ms (park 20 ms), $vcpu50 ms (park 50 ms) with hints; $noagent_vcpu ms without the agent, $base_vcpu ms under plain Linux"
check hog_gets_the_cpu '[ $((hog20 * 5)) -gt $((base_hog * 7)) ] && [ $((hog20 * 5)) -gt $((noagent_hog * 7)) ] && [ $hog50 -gt $hog20 ]' \
    "hog $hog20 ms (park 20 ms), $hog50 ms (park 50 ms) with hints; $noagent_hog ms without the agent, $base_hog ms under plain Linux"
# A parked or throttled vCPU polls once per park time; the bounds leave room for the emulated
# machine.
check requests_served_within_bound '[ $served20 -ge $((requests20 - 1)) ] && [ $requests20 -ge 40 ] && [ $max20 -lt 80000 ] && [ $served50 -ge $((requests50 - 1)) ] && [ $max50 -lt 150000 ]' \
    "park 20 ms: $served20 of $requests20 served, max $max20 us; park 50 ms: $served50 of $requests50, max $max50 us; plain Linux: $base_figures"

# A well-behaved VM without requests (its words stay as they are) and a hostile one, each with
# its host agent, in the same tenant: the hostile agent holds the same map.
vmm calm --duration 12s
calm_shell=$!; calm=$vmm
agent calm $calm; calm_agent=$agent
vmm hostile --vcpus 1 --guest hostile --duration 6s
hostile_shell=$!; hostile=$vmm
sleep 0.5
words() { for t in $(vcpu_tids $calm); do alice upsched hint vms --tid $t --show | sed 's/.*words //'; done | tr '\n' ';'; }
before=$(words)
agent hostile $hostile; hostile_agent=$agent
wait $hostile_agent
after=$(words)
h=/tmp/run/hostile.agent.json
check hostile_guest_rejected_and_counted '[ "$(field $h version)" = 1 ] && [ "$(field $h size)" = 1 ] && [ "$(field $h reserved)" = 1 ] && [ "$(field $h vcpu)" = 2 ] && [ "$(field $h stale)" = 2 ] && [ "$(field $h magic)" -ge 1 ] && [ "$(field $h rate_limited)" -gt 10000 ]' \
    "$(tr -d ' \n' < $h)"
check other_vm_words_unchanged '[ "$before" = "$after" ] && [ "$before" = "5 0 0 0 0 200000 1 20000000;5 0 0 0 0 200000 1 20000000;" ]' \
    "before $before, after $after"
wait $calm_agent $calm_shell $hostile_shell
check host_unaffected 'upsched host status >/dev/null && alice upsched list | grep -q vms && tr -d " \n" < /tmp/run/calm.agent.json | grep -q "\"magic\":0,\"version\":0,\"size\":0,\"vcpu\":0,\"reserved\":0,\"stale\":0,\"rate_limited\":0"' \
    "the daemon answers, the tenant is loaded, the calm VM's channel rejected nothing: $(tr -d ' \n' < /tmp/run/calm.agent.json)"
upsched_check unloaded alice upsched unload vms
upsched_finish
"#;

#[test]
fn guest_hints_free_the_cpu_idle_vcpus_burn_and_a_hostile_guest_changes_nothing_else() {
    guest::run_cli_scenario("cli-guest-host", SCRIPT, Duration::from_secs(300), EXPECTED);
}
