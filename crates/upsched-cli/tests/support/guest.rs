//! Running the CLI in the test VM: the guest's `upsched` and `upschedd` are this build's,
//! static; a scenario script reports named checks (`docs/vm-harness.md`).

use std::path::Path;
use std::time::Duration;

use upsched_vmtest::protocol::TestResult;
use upsched_vmtest::{InitramfsSpec, Scenario, guest_binary};

/// Boots the guest with `script` (its `@SCHEDULER@` replaced by the host scheduler's name),
/// `/usr/bin/upsched` and `/usr/bin/upschedd`, and asserts that it passes exactly `expected`
/// checks, in order. Skipped without a kernel or QEMU unless UPSCHED_VM_REQUIRED=1.
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
    let script = script.replace("@SCHEDULER@", upsched_kernel::host::SCHEDULER_NAME);
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
