//! The broker on the real sched_ext kernel, under QEMU, in one boot: `upschedd` runs as root,
//! and the CLI runs as real unprivileged users (uid 1000 with a grant, uid 1001 without),
//! dropped to them by busybox `su` (setgid/setuid in the process before it execs the CLI). Every refusal is
//! checked to leave sched_ext disabled (the daemon never loaded the host for it); the granted
//! load is checked to govern its cgroup's task (the host's tenant status counts it and its
//! slot's counters move), and the unload to give it back. The lifecycle: the daemon killed with
//! `kill -9` leaves the pinned host scheduling the tenant (its class is charged the CPU time of
//! the gap), a restarted daemon adopts it, a state file that disagrees with the kernel is
//! refused at start and left as it was, a grant that no longer covers a tenant withdraws it on
//! `SIGHUP` (its slot freed, the other tenant still governing; root reads it with `upsched audit`,
//! which alice may not), and `upschedd --unload` ends the host with every task alive. `upsched
//! top --once` shows alice her tenant's row. While her task spins, alice replaces the tenant's
//! fifo by wfq (no call reaches a default stub, the task stays governed, the records and the
//! audit log name wfq) and is refused a replace by faas, which her grant does not allow (wfq
//! stays); the daemon killed afterwards adopts the tenant on its second stub set.
//!
//! Skipped without a kernel or QEMU unless UPSCHED_VM_REQUIRED=1 (`docs/vm-harness.md`).

use std::time::Duration;

#[path = "support/guest.rs"]
mod guest;

/// Every check the guest must report as passed, in order.
const EXPECTED: &[&str] = &[
    "daemon_started",
    "ungranted_user_refused",
    "outside_scope_refused",
    "parent_component_refused",
    "symlink_out_of_scope_refused",
    "missing_capabilities_named",
    "level_and_weight_above_grant_named",
    "refusals_left_sched_ext_disabled",
    "granted_load",
    "host_enabled_by_the_load",
    "more_tenants_than_granted_refused",
    "tenant_task_governed",
    "top_shows_the_tenant",
    "others_see_no_tenant",
    "replaced_under_load_without_default_calls",
    "replace_the_grant_does_not_allow_refused",
    "sched_ext_enabled_after_kill_9",
    "tenant_scheduled_while_no_daemon_ran",
    "restarted_daemon_adopts_the_tenant",
    "sigterm_leaves_the_tenant_pinned",
    "disagreeing_state_file_refused_unchanged",
    "readopted_after_the_refusal",
    "unload",
    "unloaded_task_back_in_default_class",
    "kernel_verifier_refusal_changes_nothing",
    "long_kernel_log_cut_to_its_start_and_end",
    "second_load",
    "second_tenant_under_the_reloaded_grant",
    "withdrawn_grant_detaches_its_tenant",
    "audit_for_root_only",
    "unload_ends_the_pinned_host",
];

const SCRIPT: &str = r#"#!/bin/sh
. /upsched/lib.sh
@BROKER@
mkdir -p $T/alice/web /sys/fs/cgroup/outside /etc/upsched /tmp/state
chown -R 1000:1000 $T/alice /sys/fs/cgroup/outside
ln -s /sys/fs/cgroup/outside /tmp/link
CAPS='"sched.order", "sched.slice", "task.accounting", "time.read"'
grant_alice "$CAPS" 100ms 3s
PINS=/sys/fs/bpf/upsched
start_daemon
upsched_check daemon_started test -S $SOCK

refused ungranted_user_refused "uid 1001 holds no grant" \
    bob upsched load example:fifo --cgroup $T/alice/web
refused outside_scope_refused "outside every granted scope" \
    alice upsched load example:fifo --cgroup /sys/fs/cgroup/outside
refused parent_component_refused "goes through \`..\`" \
    alice upsched load example:fifo --cgroup $T/alice/web/../../../outside
refused symlink_out_of_scope_refused "outside every granted scope" \
    alice upsched load example:fifo --cgroup /tmp/link
out=$(alice upsched load example:faas --cgroup $T/alice/web 2>&1)
if echo "$out" | grep -qF "capability hints.read missing" \
    && echo "$out" | grep -qF "capability sched.verdict missing"; then
    upsched_pass missing_capabilities_named "$out"
else
    upsched_fail missing_capabilities_named "$out"
fi
out=$(alice upsched load example:fifo --cgroup $T/alice/web --level 2 --weight 300 2>&1)
if echo "$out" | grep -qF "level 2 above the grant's max_level 1" \
    && echo "$out" | grep -qF "weight 300 above the grant's max_weight 200"; then
    upsched_pass level_and_weight_above_grant_named "$out"
else
    upsched_fail level_and_weight_above_grant_named "$out"
fi
upsched_check refusals_left_sched_ext_disabled grep -qx disabled /sys/kernel/sched_ext/state

upsched_check granted_load alice upsched load example:fifo --cgroup $T/alice/web --level 1 --name web
state="$(cat /sys/kernel/sched_ext/state) $(cat /sys/kernel/sched_ext/root/ops)"
if [ "$state" = "enabled @SCHEDULER@" ]; then
    upsched_pass host_enabled_by_the_load "$state"
else
    upsched_fail host_enabled_by_the_load "$state"
fi
refused more_tenants_than_granted_refused "the grant's max_tenants 1" \
    alice upsched load example:fifo --cgroup $T/alice/web --name second

# A task of alice's, moved into the tenant's cgroup by root (cgroup2 lets only a writer of the
# common ancestor's cgroup.procs move a task out of the root cgroup).
su -s /bin/sh alice -c 'echo $$ > /tmp/spinner.pid; while :; do :; done' &
for i in $(seq 50); do [ -s /tmp/spinner.pid ] && break; sleep 0.1; done
spinner=$(cat /tmp/spinner.pid)
echo $spinner > $T/alice/web/cgroup.procs
sleep 1
stats=$(alice upsched stats web --json 2>&1)
if echo "$stats" | grep -qE '"nr_tasks": [1-9]' && echo "$stats" | grep -qE '"dispatches": [1-9]'; then
    upsched_pass tenant_task_governed "$(echo "$stats" | grep -E 'nr_tasks|dispatches')"
else
    upsched_fail tenant_task_governed "$stats"
fi
# alice's view of her tenant: its row, with the spinner's CPU share over the interval.
top=$(alice upsched top --once --interval 500ms 2>&1)
if echo "$top" | grep -qE '^web +1000 +1 +100 +[0-9.]+% +1 '; then
    upsched_pass top_shows_the_tenant "$top"
else
    upsched_fail top_shows_the_tenant "$top"
fi
list=$(bob upsched list 2>&1)
if [ "$list" = "no tenants" ]; then
    upsched_pass others_see_no_tenant "$list"
else
    upsched_fail others_see_no_tenant "$list"
fi
# Field $2 of stats JSON $1 (the first of that name).
field() { echo "$1" | sed -n "s/.*\"$2\": \([0-9]*\).*/\1/p" | head -n 1; }
# A hot swap while the spinner runs: fifo -> wfq (onto the slot's second stub set, pinned b0...).
before=$(alice upsched stats web --json 2>&1)
out=$(alice upsched replace web example:wfq --json 2>&1); status=$?
sleep 0.5
after=$(alice upsched stats web --json 2>&1)
calls="default calls $(field "$before" default_calls) -> $(field "$after" default_calls)"
runs="dispatches $(field "$before" dispatches) -> $(field "$after" dispatches)"
tasks="tasks $(field "$before" nr_tasks) -> $(field "$after" nr_tasks)"
if [ $status -eq 0 ] && echo "$out" | grep -qF '"policy": "wfq"' \
    && alice upsched list | grep -qF 'policy wfq' && grep -qF '"policy": "wfq"' /tmp/state/tenants.json \
    && [ "$(field "$before" default_calls)" = 0 ] && [ "$(field "$after" default_calls)" = 0 ] \
    && [ "$(field "$after" dispatches)" -gt "$(field "$before" dispatches)" ] \
    && [ "$(field "$after" nr_tasks)" -ge 1 ] && ls $PINS/tenants/*/b0 >/dev/null \
    && grep -q '"operation":"replace","tenant":"web","policy_hash":"[0-9a-f]*","result":"ok"' /tmp/state/audit.jsonl; then
    upsched_pass replaced_under_load_without_default_calls "$calls; $runs; $tasks"
else
    upsched_fail replaced_under_load_without_default_calls "exit $status: $out; $calls; $runs; $tasks; $(ls -R $PINS/tenants); $(tail -3 /tmp/state/audit.jsonl)"
fi
out=$(alice upsched replace web example:faas 2>&1); status=$?
if [ $status -eq 1 ] && echo "$out" | grep -qF "no grant allows this replace" \
    && echo "$out" | grep -qF "capability hints.read missing" \
    && alice upsched list | grep -qF 'policy wfq' && grep -qF '"policy": "wfq"' /tmp/state/tenants.json \
    && [ "$(field "$(alice upsched stats web --json)" default_calls)" = 0 ]; then
    upsched_pass replace_the_grant_does_not_allow_refused "$out"
else
    upsched_fail replace_the_grant_does_not_allow_refused "exit $status: $out; $(alice upsched list 2>&1)"
fi
# The tenant's class's CPU time (ns) as the daemon reports it, and the uptime in ms.
tenant_cpu() { alice upsched stats web --json 2>&1 | sed -n 's/.*"cpu_time_ns": \([0-9]*\).*/\1/p' | head -n 1; }
now_ms() { awk '{printf "%d", $1 * 1000}' /proc/uptime; }
cpu_before=$(tenant_cpu)
kill -9 $daemon
wait $daemon 2>/dev/null
sleep 2
state="$(cat /sys/kernel/sched_ext/state) $(cat /sys/kernel/sched_ext/root/ops)"
links=$(ls $PINS/tenants/*/ 2>&1)
if [ "$state" = "enabled @SCHEDULER@" ] && [ -e $PINS/link ] && [ -n "$links" ]; then
    upsched_pass sched_ext_enabled_after_kill_9 "$state; tenant links: $links"
else
    upsched_fail sched_ext_enabled_after_kill_9 "$state; $(ls -R $PINS 2>&1)"
fi
restart_ms=$(now_ms)
start_daemon
cpu_after=$(tenant_cpu)
read_ms=$(now_ms)
# One spinning task: at most (read - restart) of the growth came after the restart; the rest
# was charged to the tenant's class while no daemon ran (2 s of it).
gap_ms=$(( (${cpu_after:-0} - ${cpu_before:-0}) / 1000000 - (read_ms - restart_ms) ))
if [ -n "$cpu_before" ] && [ "$gap_ms" -gt 1000 ]; then
    upsched_pass tenant_scheduled_while_no_daemon_ran "cpu ns $cpu_before -> $cpu_after; ${gap_ms} ms in the gap"
else
    upsched_fail tenant_scheduled_while_no_daemon_ran "cpu ns $cpu_before -> $cpu_after; ${gap_ms} ms; $(tail -5 /tmp/upschedd.log)"
fi
list=$(alice upsched list 2>&1)
if echo "$list" | grep -q web && echo "$list" | grep -qF 'policy wfq' && grep -q '"operation":"start","tenant":null,"policy_hash":null,"result":"ok","reason":"adopted' /tmp/state/audit.jsonl; then
    upsched_pass restarted_daemon_adopts_the_tenant "$list"
else
    upsched_fail restarted_daemon_adopts_the_tenant "$list; $(tail -5 /tmp/upschedd.log)"
fi
kill $daemon
wait $daemon
upsched_check sigterm_leaves_the_tenant_pinned \
    sh -c "grep -qx enabled /sys/kernel/sched_ext/state && ls $PINS/tenants/*/b0"
# The records say level 0 where the kernel has level 1: the start is refused and changes nothing.
cp /tmp/state/tenants.json /tmp/tenants.good
sed 's/"level": 1/"level": 0/' /tmp/tenants.good > /tmp/state/tenants.json
cp /tmp/state/tenants.json /tmp/tenants.bad
out=$(/usr/bin/upschedd --state-dir /tmp/state 2>&1); status=$?
if [ $status -eq 1 ] && echo "$out" | grep -qF "level is 0 in the records, 1 in the kernel" \
    && cmp -s /tmp/state/tenants.json /tmp/tenants.bad && grep -qx enabled /sys/kernel/sched_ext/state \
    && ls $PINS/tenants/*/b0 >/dev/null; then
    upsched_pass disagreeing_state_file_refused_unchanged "$out"
else
    upsched_fail disagreeing_state_file_refused_unchanged "exit $status: $out"
fi
cp /tmp/tenants.good /tmp/state/tenants.json
start_daemon
list=$(alice upsched list 2>&1)
if echo "$list" | grep -q web; then
    upsched_pass readopted_after_the_refusal "$list"
else
    upsched_fail readopted_after_the_refusal "$list; $(tail -5 /tmp/upschedd.log)"
fi
upsched_check unload alice upsched unload web
list=$(alice upsched list 2>&1)
# The spinner still gets CPU time (schedstat's first field, ns) once its tenant is gone.
before=$(cut -d' ' -f1 /proc/$spinner/schedstat)
sleep 0.5
after=$(cut -d' ' -f1 /proc/$spinner/schedstat)
if [ "$list" = "no tenants" ] && [ "$after" -gt "$before" ]; then
    upsched_pass unloaded_task_back_in_default_class "no tenant left; cpu ns $before -> $after"
else
    upsched_fail unloaded_task_back_in_default_class "$list; cpu ns $before -> $after"
fi
# A policy that passes `upsched check` but not the kernel's verifier (an unreachable
# instruction): alice gets the kernel's whole log, and nothing changed (no slot pinned, the
# records as they were, no tenant), the host still runs, the refusal is audited.
cp /tmp/state/tenants.json /tmp/tenants.before
out=$(alice upsched load /opt/unreachable_insn.bpf.o --cgroup $T/alice/web --level 1 2>&1); status=$?
slots=$(ls -A $PINS/tenants 2>/dev/null)
if [ $status -eq 1 ] && echo "$out" | grep -qF "the kernel verifier rejected the policy" \
    && echo "$out" | grep -qF -- "-- BEGIN PROG LOAD LOG --" && echo "$out" | grep -qF "unreachable insn" \
    && echo "$out" | grep -qF "processed 0 insns" && echo "$out" | grep -qF -- "-- END PROG LOAD LOG --" \
    && [ -z "$slots" ] && cmp -s /tmp/state/tenants.json /tmp/tenants.before \
    && [ "$(alice upsched list 2>&1)" = "no tenants" ] && grep -qx enabled /sys/kernel/sched_ext/state \
    && grep -q '"operation":"load","tenant":null,"policy_hash":"[0-9a-f]*","result":"refused"' /tmp/state/audit.jsonl; then
    upsched_pass kernel_verifier_refusal_changes_nothing "$out"
else
    upsched_fail kernel_verifier_refusal_changes_nothing "exit $status: $out; slots: $slots; $(diff /tmp/state/tenants.json /tmp/tenants.before); $(tail -2 /tmp/state/audit.jsonl)"
fi
# A refusal whose verifier log is megabytes: the answer keeps the log's start (the refusal is
# still the verifier's) and its end (the reason), says what it left out, and fits a message.
out=$(alice upsched load /opt/jump_sequence.bpf.o --cgroup $T/alice/web --level 1 2>&1); status=$?
bytes=$(echo "$out" | wc -c)
if [ $status -eq 1 ] && echo "$out" | grep -qF "the kernel verifier rejected the policy" \
    && echo "$out" | grep -qF "The sequence of 8193 jumps is too complex" \
    && echo "$out" | grep -qF -- "-- BEGIN PROG LOAD LOG --" && echo "$out" | grep -qF "bytes of the log left out" \
    && [ "$bytes" -lt 1048576 ] && [ -z "$(ls -A $PINS/tenants 2>/dev/null)" ] \
    && cmp -s /tmp/state/tenants.json /tmp/tenants.before; then
    upsched_pass long_kernel_log_cut_to_its_start_and_end "$bytes bytes: $(echo "$out" | head -c 300) ... $(echo "$out" | tail -c 300)"
else
    upsched_fail long_kernel_log_cut_to_its_start_and_end "exit $status, $bytes bytes: $(echo "$out" | head -c 600) ... $(echo "$out" | tail -c 600)"
fi
upsched_check second_load alice upsched load example:fifo --cgroup $T/alice/web --level 1 --name web
# A withdrawn grant: alice may hold two tenants, one per cgroup; then the grant's scope shrinks
# to web's cgroup, and the SIGHUP that reads it detaches batch and leaves web governing.
mkdir -p $T/alice/batch
chown 1000:1000 $T/alice/batch
grant_alice "$CAPS" 100ms 3s $T/alice 2
kill -HUP $daemon
for i in $(seq 50); do alice upsched grants show --json | grep -q '"max_tenants": 2' && break; sleep 0.1; done
upsched_check second_tenant_under_the_reloaded_grant \
    alice upsched load example:fifo --cgroup $T/alice/batch --level 1 --name batch
batch_slot=$(alice upsched list | grep -A2 -x batch | sed -n 's/.*, slot \([0-9]*\)$/\1/p')
grant_alice "$CAPS" 100ms 3s $T/alice/web 2
kill -HUP $daemon
for i in $(seq 50); do grep -q '"operation":"withdraw"' /tmp/state/audit.jsonl && break; sleep 0.1; done
list=$(alice upsched list 2>&1)
cpu_before=$(tenant_cpu)
sleep 0.5
cpu_after=$(tenant_cpu)
withdrawn=$(grep '"operation":"withdraw","tenant":"batch"' /tmp/state/audit.jsonl)
if [ -n "$batch_slot" ] && [ ! -e $PINS/tenants/$batch_slot ] && ! echo "$list" | grep -qx batch \
    && echo "$list" | grep -qx web && echo "$withdrawn" | grep -qF 'outside every granted scope' \
    && ! grep -q '"name": "batch"' /tmp/state/tenants.json && [ "${cpu_after:-0}" -gt "${cpu_before:-0}" ]; then
    upsched_pass withdrawn_grant_detaches_its_tenant "slot $batch_slot freed; $withdrawn; web cpu ns $cpu_before -> $cpu_after"
else
    upsched_fail withdrawn_grant_detaches_its_tenant "slot $batch_slot: $(ls $PINS/tenants 2>&1); $list; $withdrawn; cpu $cpu_before -> $cpu_after; $(tail -5 /tmp/upschedd.log)"
fi
# Root reads the withdrawal over the socket; alice may not read the log.
out=$(upsched audit --tail 20 2>&1)
refusal=$(alice upsched audit 2>&1); status=$?
if echo "$out" | grep -qF ' withdraw batch ok: tenant of uid 1000' && [ $status -eq 1 ] \
    && echo "$refusal" | grep -qF 'only root may read the audit log'; then
    upsched_pass audit_for_root_only "$(echo "$out" | grep withdraw); alice: $refusal"
else
    upsched_fail audit_for_root_only "$out; alice (exit $status): $refusal"
fi
kill $daemon
wait $daemon
out=$(/usr/bin/upschedd --unload --state-dir /tmp/state 2>&1); status=$?
before=$(cut -d' ' -f1 /proc/$spinner/schedstat)
sleep 0.5
after=$(cut -d' ' -f1 /proc/$spinner/schedstat)
left=$(ls -A $PINS 2>/dev/null)
if [ $status -eq 0 ] && grep -qx disabled /sys/kernel/sched_ext/state && [ -z "$left" ] \
    && kill -0 $spinner && [ "$after" -gt "$before" ] && ! grep -q '"name"' /tmp/state/tenants.json; then
    upsched_pass unload_ends_the_pinned_host "$out; spinner cpu ns $before -> $after"
else
    upsched_fail unload_ends_the_pinned_host "exit $status: $out; pins left: $left; $(cat /sys/kernel/sched_ext/state); $(cat /tmp/state/tenants.json)"
fi
kill $spinner
upsched_finish
"#;

#[test]
fn the_broker_loads_for_granted_users_and_refuses_the_rest_on_the_real_kernel() {
    // The policies the kernel's verifier refuses, as files in the guest.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let fixtures: Vec<_> = ["unreachable_insn", "jump_sequence"]
        .into_iter()
        .map(|name| {
            let path = dir.path().join(format!("{name}.bpf.o"));
            let bytes = upsched_testdata::kernel_refuses(name).expect("the fixture");
            std::fs::write(&path, bytes).expect("writing the fixture");
            (path, format!("/opt/{name}.bpf.o"))
        })
        .collect();
    let extra: Vec<_> = fixtures
        .iter()
        .map(|(path, guest)| (path.as_path(), guest.clone()))
        .collect();
    if let Some(results) = guest::run_cli_guest("broker", SCRIPT, &extra, Duration::from_secs(300))
    {
        let names: Vec<&str> = results.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, EXPECTED);
    }
}
