//! The host scheduler's scenarios on the real sched_ext kernel, under QEMU: one boot, one host
//! load, every scenario of `upsched-vm-scenarios all` (see that binary for what each measures).
//!
//! `UPSCHED_VM_ARGS` adds arguments to the guest's `all` command (`--only NAME`, `--repeat N`).
//!
//! Without a kernel at hand (no UPSCHED_KERNEL, nothing cached) or without QEMU the test is
//! skipped with a loud message, unless UPSCHED_VM_REQUIRED=1: then it downloads the kernel if
//! needed and fails when anything is missing.

use std::time::Duration;

use upsched_vmtest::{InitramfsSpec, Scenario, guest_binary};

const RUNNER: &str = "upsched-vm-scenarios";
const RUNNER_GUEST_PATH: &str = "/usr/bin/upsched-vm-scenarios";

/// Every check the guest must report as passed, in order.
const EXPECTED: &[&str] = &[
    "detect",
    "host_load",
    "verifier_rejection_reported",
    "check_rejection_reported",
    "host_alone",
    "weights_1_to_3",
    "levels_and_guard",
    "strict_priority",
    "detach_while_running",
    "replace_under_load",
    "absurd_decisions_clamped",
    "park_forever_bounded",
    "starving_policy_ejected",
    "watchdog_sees_every_waiter",
    "hint_release",
    "yielding_sleepy_parked",
    "lying_sleepy_runs_per_park_bound",
    "notify_release_and_kick",
    "notify_per_tenant",
    "garbage_hints_stay_in_tenant",
    "membership_hooks",
    "differential_admission",
    "kfunc_arguments",
    "ejection_flood_bounded",
    "pinned_under_busy_level",
    "wakeups_decided_at_select",
    "unload",
];

#[test]
fn host_scheduler_scenarios_pass_on_the_real_kernel() {
    let Some(kernel) =
        upsched_vmtest::testing::kernel_or_skip("the host scheduler's real-kernel scenarios")
    else {
        return;
    };

    let runner = guest_binary::build_static_binary(env!("CARGO_PKG_NAME"), RUNNER)
        .unwrap_or_else(|err| panic!("{err:#}"));
    // UPSCHED_VM_ARGS: more arguments for the guest's `all`, e.g. `--only strict_priority
    // --repeat 10` to chase a scenario; then only the checks that ran are expected to pass.
    let extra_args = std::env::var("UPSCHED_VM_ARGS").unwrap_or_default();
    let script = format!("#!/bin/sh\n{RUNNER_GUEST_PATH} all --alone-secs 20 {extra_args}\n");
    let mut files = InitramfsSpec::with_default_busybox(script).unwrap_or_else(|e| panic!("{e:#}"));
    files.add_host_file(&runner, RUNNER_GUEST_PATH, 0o755);
    let mut scenario = Scenario::new("host-scenarios", files);
    scenario.timeout = Duration::from_secs(480);

    let (names, description) = upsched_vmtest::testing::run_passing(&kernel, &scenario);
    if extra_args.trim().is_empty() {
        assert_eq!(names, EXPECTED, "{description}");
    }
}
