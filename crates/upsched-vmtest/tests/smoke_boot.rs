//! End to end: boot the real sched_ext kernel under QEMU with the static probe and check that
//! every smoke check passes.
//!
//! Without a kernel at hand (no UPSCHED_KERNEL, nothing cached) the test is skipped with a loud
//! message, unless UPSCHED_VM_REQUIRED=1: then it downloads the kernel if needed and fails when
//! anything is missing.

use upsched_vmtest::{guest_binary, smoke};

#[test]
fn smoke_scenario_passes_on_the_real_kernel() {
    let Some(kernel) = upsched_vmtest::testing::kernel_or_skip("the real-kernel VM smoke test")
    else {
        return;
    };

    let probe = guest_binary::guest_probe().unwrap_or_else(|err| panic!("{err:#}"));
    let scenario = smoke::smoke_scenario(&kernel, &probe).unwrap_or_else(|err| panic!("{err:#}"));
    let (names, description) = upsched_vmtest::testing::run_passing(&kernel, &scenario);
    assert_eq!(
        names,
        [
            "kernel_release",
            "sched_ext_state",
            "cgroup2_mounted",
            "bpffs_mounted"
        ],
        "{description}"
    );
}
