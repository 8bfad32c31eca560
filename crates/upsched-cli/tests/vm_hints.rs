//! The hint path on the real sched_ext kernel, under QEMU, in one boot (`docs/hints.md`):
//! `upschedd` runs as root; alice (uid 1000) holds a grant for `example:faas`, which parks a
//! task whose runtime says it is sleepy with nothing pending. A runtime process of alice's in
//! the tenant's cgroup gets the tenant's hint map from the daemon, maps it and posts SLEEPY for
//! alice's polling task (it naps between polls): the task stops running (its schedstat CPU time
//! stands still, the host counts a park). Posting PENDING through the map releases it (it runs
//! again, the host counts a release). PENDING posted with a notify (the tenant's notify program,
//! its fd from the daemon, run by alice) releases it at once, counted by the host as a release
//! by notify. The slow path (`set_hints`) writes the words too. Bob
//! (uid 1001, no grant, outside every tenant) is refused the map and `set_hints` with the
//! reason, the words stay as they were, and the audit log holds his refusals. A daemon
//! restarted after `kill -9` adopts the pinned host and hands out the same map. The guest also
//! measures what a post costs through the mapping and through a request (`docs/broker.md`,
//! "Hint path benchmark").
//!
//! Skipped without a kernel or QEMU unless UPSCHED_VM_REQUIRED=1 (`docs/vm-harness.md`).

use std::time::Duration;

#[path = "support/guest.rs"]
mod guest;

/// Every check the guest must report as passed, in order.
const EXPECTED: &[&str] = &[
    "daemon_started",
    "faas_loaded",
    "spinner_joined",
    "runtime_in_cgroup_posts_sleepy",
    "sleepy_task_parked",
    "pending_releases_it",
    "notify_releases_at_once",
    "slow_path_writes_words",
    "store_vs_request_benchmark",
    "other_user_refused_the_map",
    "other_user_refused_set_hints",
    "words_unchanged_by_refusals",
    "adopted_host_hands_out_the_same_map",
    "refusals_audited",
    "unloaded",
];

const SCRIPT: &str = r#"#!/bin/sh
. /upsched/lib.sh
@BROKER@
mkdir -p $T/alice/fn /tmp/state
chown -R 1000:1000 $T/alice
# The faas policy's capabilities; a park bound long enough to see a parked task stand still.
grant_alice '"hints.read", "sched.order", "sched.verdict", "task.accounting", "time.read"' 3s 4s
start_daemon
upsched_check daemon_started test -S $SOCK

# cpu_ns PID: the CPU time the task has run, from schedstat.
cpu_ns() { read run rest < /proc/$1/schedstat; echo $run; }
# words: the spinner's hint words as alice reads them through the map.
words() { alice upsched hint fn --tid $spinner --show 2>&1 | sed 's/.*words //'; }
stat() { alice upsched stats fn --json | grep "\"$1\"" | tr -dc 0-9; }

upsched_check faas_loaded alice upsched load example:faas --cgroup $T/alice/fn --name fn \
    --park-max 3s --watchdog 4s

# Alice's polling task, moved into the tenant's cgroup by root (cgroup2 lets only a writer of
# the common ancestor's cgroup.procs move a task out of the root cgroup). It naps between its
# polls, as a runtime's poller does.
su -s /bin/sh alice -c 'echo $$ > /tmp/spinner.pid; while :; do i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done; sleep 0.01; done' &
for i in $(seq 50); do [ -s /tmp/spinner.pid ] && break; sleep 0.1; done
spinner=$(cat /tmp/spinner.pid)
echo $spinner > $T/alice/fn/cgroup.procs
# It joins the tenant (takes a task slot) at its first scheduling there.
for i in $(seq 50); do alice upsched hint fn --tid $spinner --show >/dev/null 2>&1 && break; sleep 0.1; done
upsched_check spinner_joined alice upsched hint fn --tid $spinner --show

# The runtime: a process of alice's that root moves into the tenant's cgroup before it asks
# the daemon for the map (by its cgroup, not only as the owner) and posts SLEEPY through it.
mkfifo /tmp/go
su -s /bin/sh alice -c 'echo $$ > /tmp/runtime.pid; read go < /tmp/go; exec upsched hint fn --tid '$spinner' --sleepy 7 --json' > /tmp/runtime.out 2>&1 &
runtime_shell=$!
for i in $(seq 50); do [ -s /tmp/runtime.pid ] && break; sleep 0.1; done
echo $(cat /tmp/runtime.pid) > $T/alice/fn/cgroup.procs
echo go > /tmp/go
wait $runtime_shell
out=$(cat /tmp/runtime.out)
if echo "$out" | grep -qF '"path": "map"' && [ "$(words)" = "1 7 0 0 0 0 0 0" ]; then
    upsched_pass runtime_in_cgroup_posts_sleepy "$(echo $out)"
else
    upsched_fail runtime_in_cgroup_posts_sleepy "$out / words $(words)"
fi

sleep 0.3
before=$(cpu_ns $spinner)
sleep 0.8
parked_ns=$(( $(cpu_ns $spinner) - before ))
parks=$(stat parks)
if [ "$parks" -gt 0 ] && [ $parked_ns -lt 100000000 ]; then
    upsched_pass sleepy_task_parked "ran $((parked_ns / 1000000)) ms in 800 ms; parks $parks"
else
    upsched_fail sleepy_task_parked "ran $((parked_ns / 1000000)) ms in 800 ms; parks $parks"
fi

alice upsched hint fn --tid $spinner --pending 1 >/dev/null
sleep 0.3
before=$(cpu_ns $spinner)
sleep 0.8
running_ns=$(( $(cpu_ns $spinner) - before ))
releases=$(stat releases)
if [ "$releases" -gt 0 ] && [ $running_ns -gt $((parked_ns * 4)) ] && [ $running_ns -gt 200000000 ]; then
    upsched_pass pending_releases_it "ran $((running_ns / 1000000)) ms in 800 ms after PENDING (parked: $((parked_ns / 1000000)) ms); releases $releases"
else
    upsched_fail pending_releases_it "ran $((running_ns / 1000000)) ms in 800 ms after PENDING (parked: $((parked_ns / 1000000)) ms); releases $releases"
fi

# The notify program, run by alice with the fd the daemon handed out: six rounds of nothing
# pending (the spinner is parked again, its park bound counting per wait), then PENDING with a
# notify right after the store, which finds it releasable unless the host's 2 ms timer came
# first (it does, now and then, in the emulated guest: at least half the rounds are asked).
rounds=""
for round in 1 2 3 4 5 6; do
    # PENDING 0 while SLEEPY (from before): the spinner is parked at its next enqueue.
    alice upsched hint fn --tid $spinner --pending 0 >/dev/null
    sleep 0.3
    parks=$(stat parks); releases=$(stat releases); ran=$(cpu_ns $spinner)
    alice upsched hint fn --tid $spinner --pending 1 --notify >/dev/null
    sleep 0.1
    rounds="$rounds; parks $parks releases $releases before, $(stat parks) $(stat releases) after, ran $(( ($(cpu_ns $spinner) - ran) / 1000000 )) ms"
done
notifies=$(stat notifies)
notify_releases=$(stat notify_releases)
if [ "$notifies" -eq 6 ] && [ "$notify_releases" -ge 3 ] && [ "$(stat parks)" -ge 7 ]; then
    upsched_pass notify_releases_at_once "6 notifies through alice's fd, $notify_releases released the parked spinner$rounds"
else
    upsched_fail notify_releases_at_once "notifies $notifies, releases by notify $notify_releases$rounds"
fi

out=$(alice upsched hint fn --tid $spinner --slow --pending 2 2>&1)
if echo "$out" | grep -qF "by request" && [ "$(words)" = "0 0 2 0 0 0 0 0" ]; then
    upsched_pass slow_path_writes_words "$out"
else
    upsched_fail slow_path_writes_words "$out / words $(words)"
fi

# What a post costs: stores into the mapping against set_hints requests on one connection.
ns_per_post() { "$@" --json | grep '"ns_per_post"' | tr -dc 0-9.; }
map_ns=$(ns_per_post alice upsched hint fn --tid $spinner --pending 3 --bench 1000000)
request_ns=$(ns_per_post alice upsched hint fn --tid $spinner --slow --pending 3 --bench 200)
ratio=$(awk -v m="$map_ns" -v r="$request_ns" 'BEGIN { if (m > 0 && r > m) printf "%.0f", r / m }')
if [ -n "$ratio" ]; then
    upsched_pass store_vs_request_benchmark "map store $map_ns ns, set_hints request $request_ns ns: ratio $ratio"
else
    upsched_fail store_vs_request_benchmark "map store '$map_ns' ns, set_hints request '$request_ns' ns"
fi

before_words=$(words)
refused other_user_refused_the_map "no tenant \"fn\" that uid 1001 owns or whose cgroup holds process" \
    bob upsched hint fn --tid $spinner --sleepy 9
refused other_user_refused_set_hints "no tenant \"fn\" that uid 1001 owns or whose cgroup holds process" \
    bob upsched hint fn --tid $spinner --slow --sleepy 9
after_words=$(words)
if [ "$after_words" = "$before_words" ]; then
    upsched_pass words_unchanged_by_refusals "$after_words"
else
    upsched_fail words_unchanged_by_refusals "before $before_words, after $after_words"
fi
# A daemon that starts after a kill -9 adopts the pinned host and finds the tenant's map through
# the host's pinned hint_maps: the same words.
kill -9 $daemon
wait $daemon 2>/dev/null
start_daemon
adopted_words=$(words)
if [ "$adopted_words" = "$before_words" ] && grep -q '"operation":"start".*"adopted' /tmp/state/audit.jsonl; then
    upsched_pass adopted_host_hands_out_the_same_map "$adopted_words"
else
    upsched_fail adopted_host_hands_out_the_same_map "before $before_words, after the adoption $adopted_words; $(tail -3 /tmp/upschedd.log)"
fi
n=$(grep '"uid":1001' /tmp/state/audit.jsonl | grep '"result":"refused"' | grep -cE '"operation":"(hint_map|set_hints)"')
if [ "$n" -eq 2 ]; then
    upsched_pass refusals_audited "$(grep '"uid":1001' /tmp/state/audit.jsonl | tail -2)"
else
    upsched_fail refusals_audited "$n records: $(cat /tmp/state/audit.jsonl)"
fi

kill $spinner
upsched_check unloaded alice upsched unload fn
upsched_finish
"#;

#[test]
fn the_hint_path_parks_and_releases_a_task_for_its_runtime_and_refuses_others() {
    guest::run_cli_scenario("cli-hints", SCRIPT, Duration::from_secs(300), EXPECTED);
}
