//! The smoke scenario: proves that the whole chain works on the real kernel (fetch, initramfs,
//! QEMU boot, a static Rust binary in the guest, the line protocol back to the host).

use std::path::Path;

use crate::initramfs::InitramfsSpec;
use crate::kernel::Kernel;
use crate::scenario::Scenario;

pub const PROBE_GUEST_PATH: &str = "/usr/bin/upsched-guest-probe";

/// The smoke scenario for `kernel`, with the static probe binary at `probe`.
pub fn smoke_scenario(kernel: &Kernel, probe: &Path) -> anyhow::Result<Scenario> {
    // An override kernel's release comes from its bzImage header and may be unknown; only check
    // it when known.
    let expect = if kernel.release.contains(' ') {
        String::new()
    } else {
        format!(" --expect-release '{}'", kernel.release)
    };
    let script = format!(
        "#!/bin/sh\n\
         # Smoke scenario: the probe checks kernel, sched_ext sysfs and the mounts.\n\
         {PROBE_GUEST_PATH}{expect}\n"
    );
    let mut initramfs = InitramfsSpec::with_default_busybox(script)?;
    initramfs.add_host_file(probe, PROBE_GUEST_PATH, 0o755);
    Ok(Scenario::new("smoke", initramfs))
}
