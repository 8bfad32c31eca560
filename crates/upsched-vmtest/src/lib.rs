//! Real-kernel tests for upsched: boot a Debian kernel with sched_ext under QEMU software
//! emulation with an initramfs holding the project's binaries, objects and a scenario script,
//! and read back what the guest reports.
//!
//! ```no_run
//! use std::path::Path;
//! use upsched_vmtest::{InitramfsSpec, Scenario, kernel, print_event, run_scenario};
//!
//! # fn main() -> anyhow::Result<()> {
//! let kernel = kernel::obtain()?; // UPSCHED_KERNEL, the cache, or a download from sid
//! let mut files = InitramfsSpec::with_default_busybox(
//!     "upsched-check && echo 'UPSCHED-TEST loaded PASS' || echo 'UPSCHED-TEST loaded FAIL'\n",
//! )?;
//! files.add_host_file(Path::new("target/static/upsched-check"), "/usr/bin/upsched-check", 0o755);
//! let report = run_scenario(&kernel, &Scenario::new("example", files), &mut print_event)?;
//! println!("{}", report.describe());
//! assert!(report.passed());
//! # Ok(())
//! # }
//! ```
//!
//! See `docs/vm-harness.md` for the cache, the environment variables and the guest protocol.

pub mod apt;
pub mod error;
pub mod guest_binary;
pub mod initramfs;
pub mod kernel;
pub mod protocol;
pub mod qemu;
pub mod scenario;
pub mod smoke;
pub mod testing;
pub mod tools;
pub mod vmlinux;

pub use error::HarnessError;
pub use initramfs::InitramfsSpec;
pub use kernel::Kernel;
pub use protocol::{BootOutcome, GuestEvent, TestResult, Verdict};
pub use scenario::{Scenario, ScenarioReport, print_event, run_scenario};
