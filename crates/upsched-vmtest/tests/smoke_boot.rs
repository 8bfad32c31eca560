//! End to end: boot the real sched_ext kernel under QEMU with the static probe and check that
//! every smoke check passes.
//!
//! Without a kernel at hand (no UPSCHED_KERNEL, nothing cached) the test is skipped with a loud
//! message, unless UPSCHED_VM_REQUIRED=1: then it downloads the kernel if needed and fails when
//! anything is missing.

use std::io::Write;

use upsched_vmtest::tools::find_tool;
use upsched_vmtest::{guest_binary, kernel, print_event, run_scenario, smoke};

const REQUIRED_ENV: &str = "UPSCHED_VM_REQUIRED";

/// Written with `io::stderr()` directly: libtest captures `eprintln!` of passing tests, and a
/// skip must be seen.
fn skip_loudly(why: &str) {
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !! SKIPPED the real-kernel VM smoke test: {why}.\n\
         !! Run `upsched-vmtest kernel` once (needs network) or set UPSCHED_KERNEL, and set\n\
         !! {REQUIRED_ENV}=1 to make this a failure instead of a skip.\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
}

#[test]
fn smoke_scenario_passes_on_the_real_kernel() {
    let required = std::env::var(REQUIRED_ENV).is_ok_and(|v| v.trim() == "1");

    if let Err(err) = find_tool("qemu-system-x86_64", "apt-get install qemu-system-x86") {
        assert!(!required, "{REQUIRED_ENV}=1 but {err}");
        skip_loudly(&err.to_string());
        return;
    }
    let kernel = match kernel::locate_offline() {
        Ok(Some(kernel)) => kernel,
        Ok(None) if required => kernel::fetch_from_sid()
            .unwrap_or_else(|err| panic!("{REQUIRED_ENV}=1 but no kernel: {err:#}")),
        Ok(None) => {
            skip_loudly("no sched_ext kernel is cached and UPSCHED_KERNEL is not set");
            return;
        }
        Err(err) => panic!("looking for a kernel: {err:#}"),
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
