//! Running the CLI in the test VM: the guest's `upsched` and `upschedd` are this build's,
//! static; a scenario script reports named checks (`docs/vm-harness.md`).

use std::path::Path;
use std::time::Duration;

use upsched_vmtest::protocol::TestResult;
use upsched_vmtest::{InitramfsSpec, Scenario, guest_binary};

/// What a broker scenario's script starts with, for its `@BROKER@`: the guest's users, alice
/// (uid 1000) and bob (uid 1001), and shell functions to run a command as one of them, to expect
/// a refusal, to grant alice, and to start the daemon.
const BROKER: &str = r#"printf 'root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/tmp:/bin/sh\nbob:x:1001:1001::/tmp:/bin/sh\n' > /etc/passwd
printf 'root:x:0:\nalice:x:1000:\nbob:x:1001:\n' > /etc/group
# as USER COMMAND ARGS...: busybox su sets the user's gid, groups and uid in the process, then
# execs a shell that runs the command with its arguments as given.
# (`--` keeps su from reading the command's options as its own).
as() { user=$1; shift; su -s /bin/sh -c '"$0" "$@"' -- "$user" "$@"; }
alice() { as alice "$@"; }
bob() { as bob "$@"; }
# refused NAME EXPECTED_TEXT COMMAND...: the command fails (status 1) and says EXPECTED_TEXT.
refused() {
    name=$1; want=$2; shift 2
    out=$("$@" 2>&1); status=$?
    if [ $status -eq 1 ] && echo "$out" | grep -qF -- "$want"; then
        upsched_pass "$name" "$out"
    else
        upsched_fail "$name" "exit $status: $out"
    fi
}
T=/sys/fs/cgroup/tenants
# grant_alice CAPABILITIES PARK_MAX WATCHDOG_MAX [SCOPE [MAX_TENANTS]]: the grants file, one
# grant for alice over SCOPE (default $T/alice) with those capabilities (the items of a TOML
# list) and bounds, and at most MAX_TENANTS (default 1) tenants.
grant_alice() {
    mkdir -p /etc/upsched
    cat > /etc/upsched/grants.toml <<EOF
version = 1
[[grant]]
name = "alice"
users = [1000]
capabilities = [$1]
scopes = ["${4:-$T/alice}"]
max_level = 1
max_weight = 200
max_tenants = ${5:-1}
slice_min = "500us"
slice_max = "20ms"
park_max = "$2"
watchdog_max = "$3"
EOF
    chmod 644 /etc/upsched/grants.toml
}
SOCK=/run/upsched/upsched.sock
# start_daemon: upschedd in the background ($daemon), once it answers (a daemon killed with -9
# leaves its socket behind, which the new one replaces only after it adopted the pinned host)
# or has exited (a refused start).
start_daemon() {
    /usr/bin/upschedd --state-dir /tmp/state 2>>/tmp/upschedd.log &
    daemon=$!
    for i in $(seq 100); do
        upsched host status >/dev/null 2>&1 && break
        kill -0 $daemon 2>/dev/null || break
        sleep 0.1
    done
}
"#;

/// Boots the guest with `script` (its `@SCHEDULER@` replaced by the host scheduler's name, its
/// `@BROKER@` by [`BROKER`]), `/usr/bin/upsched` and `/usr/bin/upschedd`, and asserts that it
/// passes exactly `expected` checks, in order. Skipped without a kernel or QEMU unless
/// UPSCHED_VM_REQUIRED=1.
#[allow(dead_code)] // not every test file checks names only
pub fn run_cli_scenario(name: &str, script: &str, timeout: Duration, expected: &[&str]) {
    if let Some(results) = run_cli_guest(name, script, &[], timeout) {
        let names: Vec<&str> = results.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, expected);
    }
}

/// Boots the guest as [`run_cli_scenario`] does, with `files` (host path, guest path) besides,
/// asserts that it passed, and returns its checks with their details; `None` when skipped.
pub fn run_cli_guest(
    name: &str,
    script: &str,
    extra: &[(&Path, String)],
    timeout: Duration,
) -> Option<Vec<TestResult>> {
    let kernel = upsched_vmtest::testing::kernel_or_skip(name)?;
    let build = |package: &str, binary: &str| {
        guest_binary::build_static_binary(package, binary).unwrap_or_else(|e| panic!("{e:#}"))
    };
    let daemon = build("upsched-broker", "upschedd");
    let cli = build(env!("CARGO_PKG_NAME"), "upsched");
    let script = script
        .replace("@SCHEDULER@", upsched_kernel::host::SCHEDULER_NAME)
        .replace("@BROKER@", BROKER);
    let mut files = InitramfsSpec::with_default_busybox(script).unwrap_or_else(|e| panic!("{e:#}"));
    files.add_host_file(&daemon, "/usr/bin/upschedd", 0o755);
    files.add_host_file(&cli, "/usr/bin/upsched", 0o755);
    for (host, guest) in extra {
        files.add_host_file(host, guest, 0o644);
    }
    let mut scenario = Scenario::new(name, files);
    scenario.timeout = timeout;
    let (results, _) = upsched_vmtest::testing::run_passing_results(&kernel, &scenario);
    Some(results)
}
