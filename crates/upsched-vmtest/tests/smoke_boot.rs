//! End to end: boot the real sched_ext kernel under QEMU with the static probe and check that
//! every smoke check passes.
//!
//! Without a kernel at hand (no UPSCHED_KERNEL, nothing cached) the test is skipped with a loud
//! message, unless UPSCHED_VM_REQUIRED=1: then it downloads the kernel if needed and fails when
//! anything is missing.

use std::io::Write;

use upsched_vmtest::{guest_binary, print_event, run_scenario, smoke};

#[test]
fn smoke_scenario_passes_on_the_real_kernel() {
    let Some(kernel) = upsched_vmtest::testing::kernel_or_skip("the real-kernel VM smoke test")
    else {
        return;
    };

    let probe = guest_binary::guest_probe().unwrap_or_else(|err| panic!("{err:#}"));
    let scenario = smoke::smoke_scenario(&kernel, &probe).unwrap_or_else(|err| panic!("{err:#}"));
    let report = run_scenario(&kernel, &scenario, &mut print_event)
        .unwrap_or_else(|err| panic!("the harness failed: {err:#}"));
    let description = report.describe();
    let _ = writeln!(std::io::stderr().lock(), "{description}");
    assert!(report.passed(), "{description}");
    let results = &report.final_boot().expect("a boot").console.results;
    let names: Vec<&str> = results.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "kernel_release",
            "sched_ext_state",
            "cgroup2_mounted",
            "bpffs_mounted"
        ]
    );
}
