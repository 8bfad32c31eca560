//! Running the CLI in the test VM: the guest's `upsched` and `upschedd` are this build's,
//! static; a scenario script reports named checks (`docs/vm-harness.md`).

use std::time::Duration;

use upsched_vmtest::{InitramfsSpec, Scenario, guest_binary};

/// Boots the guest with `script` (its `@SCHEDULER@` replaced by the host scheduler's name),
/// `/usr/bin/upsched` and `/usr/bin/upschedd`, and asserts that it passes exactly `expected`
/// checks, in order. Skipped without a kernel or QEMU unless UPSCHED_VM_REQUIRED=1.
pub fn run_cli_scenario(name: &str, script: &str, timeout: Duration, expected: &[&str]) {
    let Some(kernel) = upsched_vmtest::testing::kernel_or_skip(name) else {
        return;
    };
    let build = |package: &str, binary: &str| {
        guest_binary::build_static_binary(package, binary).unwrap_or_else(|e| panic!("{e:#}"))
    };
    let daemon = build("upsched-broker", "upschedd");
    let cli = build(env!("CARGO_PKG_NAME"), "upsched");
    let script = script.replace("@SCHEDULER@", upsched_kernel::host::SCHEDULER_NAME);
    let mut files = InitramfsSpec::with_default_busybox(script).unwrap_or_else(|e| panic!("{e:#}"));
    files.add_host_file(&daemon, "/usr/bin/upschedd", 0o755);
    files.add_host_file(&cli, "/usr/bin/upsched", 0o755);
    let mut scenario = Scenario::new(name, files);
    scenario.timeout = timeout;
    let (names, description) = upsched_vmtest::testing::run_passing(&kernel, &scenario);
    assert_eq!(names, expected, "{description}");
}
