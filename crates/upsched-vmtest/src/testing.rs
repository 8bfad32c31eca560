//! For the real-kernel tests of every crate: find the kernel to boot, or skip loudly.

use std::io::Write;

use crate::kernel;
use crate::protocol::TestResult;
use crate::tools::find_tool;
use crate::{Kernel, Scenario, print_event, run_scenario};

/// Set to 1 to make a missing QEMU or kernel fail a test instead of skipping it (and to fetch
/// the kernel when none is cached).
pub const REQUIRED_ENV: &str = "UPSCHED_VM_REQUIRED";

/// The kernel a real-kernel test should boot. Without QEMU or a cached kernel (and no
/// UPSCHED_KERNEL) it prints a loud skip message naming `test` and returns `None`, unless
/// UPSCHED_VM_REQUIRED=1: then it fetches the kernel if needed and panics when anything is
/// missing.
pub fn kernel_or_skip(test: &str) -> Option<Kernel> {
    let required = std::env::var(REQUIRED_ENV).is_ok_and(|v| v.trim() == "1");
    if let Err(err) = find_tool("qemu-system-x86_64", "apt-get install qemu-system-x86") {
        assert!(!required, "{REQUIRED_ENV}=1 but {err}");
        skip_loudly(test, &err.to_string());
        return None;
    }
    match kernel::locate_offline() {
        Ok(Some(kernel)) => Some(kernel),
        Ok(None) if required => Some(
            kernel::fetch_from_sid()
                .unwrap_or_else(|err| panic!("{REQUIRED_ENV}=1 but no kernel: {err:#}")),
        ),
        Ok(None) => {
            skip_loudly(
                test,
                "no sched_ext kernel is cached and UPSCHED_KERNEL is not set",
            );
            None
        }
        Err(err) => panic!("looking for a kernel: {err:#}"),
    }
}

/// Written with `io::stderr()` directly: libtest captures `eprintln!` of passing tests, and a
/// skip must be seen.
fn skip_loudly(test: &str, why: &str) {
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !! SKIPPED {test}: {why}.\n\
         !! Run `upsched-vmtest kernel` once (needs network) or set UPSCHED_KERNEL, and set\n\
         !! {REQUIRED_ENV}=1 to make this a failure instead of a skip.\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
}

/// Runs `scenario` on `kernel`, prints its description to stderr (seen with `--nocapture`, and
/// in the panic message otherwise), panics unless it passed, and returns the names of the
/// checks the guest reported, in order, with the description for further assertions.
pub fn run_passing(kernel: &Kernel, scenario: &Scenario) -> (Vec<String>, String) {
    let (results, description) = run_passing_results(kernel, scenario);
    (results.into_iter().map(|r| r.name).collect(), description)
}

/// [`run_passing`], returning the checks whole: a guest that measures something reports it
/// in their details.
pub fn run_passing_results(kernel: &Kernel, scenario: &Scenario) -> (Vec<TestResult>, String) {
    let report = run_scenario(kernel, scenario, &mut print_event)
        .unwrap_or_else(|err| panic!("the harness failed: {err:#}"));
    let description = report.describe();
    let _ = writeln!(std::io::stderr().lock(), "{description}");
    assert!(report.passed(), "{description}");
    let results = report.final_boot().expect("a boot").console.results.clone();
    (results, description)
}
