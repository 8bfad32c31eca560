//! "Here are the files, here is the scenario script: boot it and tell me what happened."

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::initramfs::InitramfsSpec;
use crate::kernel::{Kernel, cache_root};
use crate::protocol::{BootOutcome, GuestEvent, Verdict};
use crate::qemu::{BootConfig, BootReport, boot_once};
use crate::tools::{printable, progress, tail_lines};

/// Environment variable overriding every scenario's wall-clock limit, in seconds.
pub const TIMEOUT_ENV: &str = "UPSCHED_VM_TIMEOUT";
/// Lines of guest console shown when a scenario fails or the guest crashes.
pub const LOG_TAIL_LINES: usize = 40;

/// A scenario to run in a fresh VM.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Short name, used in log file names.
    pub name: String,
    pub initramfs: InitramfsSpec,
    pub timeout: Duration,
    pub cpus: u32,
    pub memory_mib: u32,
    pub extra_cmdline: Vec<String>,
    /// A guest crash (rare under emulation) is retried once with a new boot.
    pub retry_on_crash: bool,
}

impl Scenario {
    /// Defaults from the platform notes: 2 vCPUs, 2 GiB, 120 s.
    pub fn new(name: impl Into<String>, initramfs: InitramfsSpec) -> Self {
        Self {
            name: name.into(),
            initramfs,
            timeout: Duration::from_secs(120),
            cpus: 2,
            memory_mib: 2048,
            extra_cmdline: Vec::new(),
            retry_on_crash: true,
        }
    }

    /// The timeout after applying `UPSCHED_VM_TIMEOUT`.
    pub fn effective_timeout(&self) -> anyhow::Result<Duration> {
        match std::env::var(TIMEOUT_ENV) {
            Ok(value) if !value.trim().is_empty() => {
                let secs: u64 = value.trim().parse().with_context(|| {
                    format!("{TIMEOUT_ENV}={value} is not a whole number of seconds")
                })?;
                Ok(Duration::from_secs(secs))
            }
            _ => Ok(self.timeout),
        }
    }
}

/// The result of a scenario, after any retry.
#[derive(Debug, Clone)]
pub struct ScenarioReport {
    pub name: String,
    pub kernel_release: String,
    pub outcome: BootOutcome,
    /// Every boot made, in order (two when a crash was retried).
    pub boots: Vec<BootReport>,
}

impl ScenarioReport {
    pub fn passed(&self) -> bool {
        self.outcome.is_pass()
    }

    pub fn final_boot(&self) -> Option<&BootReport> {
        self.boots.last()
    }

    /// Whether the final outcome came from a retried boot.
    pub fn retried(&self) -> bool {
        self.boots.len() > 1
    }

    /// A human-readable account: outcome, and the console tail when something went wrong.
    pub fn describe(&self) -> String {
        let mut text = String::new();
        let attempts = if self.retried() {
            " (after one retry: the first boot crashed)"
        } else {
            ""
        };
        let boot = self.final_boot();
        let timing = boot
            .map(|b| {
                format!(
                    "boot to /init {}, total {:.1} s",
                    b.boot_time
                        .map(|t| format!("{:.1} s", t.as_secs_f64()))
                        .unwrap_or_else(|| "never reached".to_string()),
                    b.total_time.as_secs_f64()
                )
            })
            .unwrap_or_default();
        match &self.outcome {
            BootOutcome::AllPassed => {
                let count = boot.map_or(0, |b| {
                    b.console
                        .results
                        .iter()
                        .filter(|r| r.verdict == Verdict::Pass)
                        .count()
                });
                text.push_str(&format!(
                    "scenario {}: all {count} checks passed on kernel {}{attempts} ({timing})",
                    self.name, self.kernel_release
                ));
            }
            BootOutcome::ScenarioFailed { reasons } => {
                text.push_str(&format!(
                    "scenario {}: FAILED on kernel {}{attempts} ({timing})\n",
                    self.name, self.kernel_release
                ));
                for reason in reasons {
                    text.push_str(&format!("  - {reason}\n"));
                }
            }
            BootOutcome::GuestCrashed { reason } => text.push_str(&format!(
                "scenario {}: GUEST CRASHED on kernel {}{}: {reason} ({timing})\n",
                self.name,
                self.kernel_release,
                if self.retried() {
                    " (retried once, crashed again)"
                } else {
                    ""
                }
            )),
            BootOutcome::TimedOut { after_secs } => text.push_str(&format!(
                "scenario {}: TIMED OUT after {after_secs} s on kernel {} (QEMU killed; raise \
                 {TIMEOUT_ENV} if the scenario is just slow)\n",
                self.name, self.kernel_release
            )),
        }
        if let Some(boot) = boot.filter(|_| !self.passed()) {
            let log = std::fs::read_to_string(&boot.console_log).unwrap_or_default();
            text.push_str(&format!(
                "--- last {LOG_TAIL_LINES} lines of the guest console ({}) ---\n{}\n---",
                boot.console_log.display(),
                tail_lines(&log, LOG_TAIL_LINES)
            ));
        }
        // Guest text (details, crash lines, the log tail) may carry terminal control sequences.
        printable(&text)
    }
}

/// Where console logs go: `${XDG_CACHE_HOME:-~/.cache}/upsched/vm-logs`.
pub fn log_dir() -> anyhow::Result<PathBuf> {
    let dir = cache_root()?.join("vm-logs");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Prints guest events as they arrive, one line each, on stderr.
pub fn print_event(event: &GuestEvent, raw_line: &str) {
    match event {
        GuestEvent::Test(result) => eprintln!(
            "  {}",
            printable(format!("{} {} {}", result.verdict, result.name, result.detail).trim_end())
        ),
        GuestEvent::Booted { release } => progress(format!("guest booted kernel {release}")),
        GuestEvent::KernelCrash { .. } => {
            eprintln!("  guest kernel: {}", printable(raw_line))
        }
        GuestEvent::Malformed { line } => {
            eprintln!("  malformed protocol line: {}", printable(line))
        }
        GuestEvent::ScenarioExit { .. } | GuestEvent::Done | GuestEvent::Other => {}
    }
}

/// Builds the initramfs, boots, and retries once on a guest crash.
pub fn run_scenario(
    kernel: &Kernel,
    scenario: &Scenario,
    on_event: &mut dyn FnMut(&GuestEvent, &str),
) -> anyhow::Result<ScenarioReport> {
    let timeout = scenario.effective_timeout()?;
    let work = tempfile::Builder::new()
        .prefix("upsched-vmtest-")
        .tempdir()
        .context("creating a temporary directory for the initramfs")?;
    let initramfs = work.path().join("initramfs.cpio");
    scenario.initramfs.write_cpio_file(&initramfs)?;
    let logs = log_dir()?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);

    let max_attempts = if scenario.retry_on_crash { 2 } else { 1 };
    let mut boots = Vec::new();
    for attempt in 1..=max_attempts {
        let config = BootConfig {
            kernel: kernel.bzimage.clone(),
            initramfs: initramfs.clone(),
            cpus: scenario.cpus,
            memory_mib: scenario.memory_mib,
            timeout,
            extra_cmdline: scenario.extra_cmdline.clone(),
            console_log: logs.join(format!(
                "{}-{stamp}-{}-boot{attempt}.log",
                scenario.name,
                std::process::id()
            )),
        };
        progress(format!(
            "booting kernel {} under QEMU (TCG, {} vCPUs, {} MiB, timeout {} s), console log {}",
            kernel.release,
            config.cpus,
            config.memory_mib,
            timeout.as_secs(),
            config.console_log.display()
        ));
        let report = boot_once(&config, on_event)?;
        let crashed = matches!(report.outcome, BootOutcome::GuestCrashed { .. });
        if crashed && attempt < max_attempts {
            if let BootOutcome::GuestCrashed { reason } = &report.outcome {
                progress(format!(
                    "{reason}; guest crashes happen now and then under software emulation: \
                     retrying the boot once (log of the crashed boot: {})",
                    report.console_log.display()
                ));
            }
            boots.push(report);
            continue;
        }
        boots.push(report);
        break;
    }
    let outcome = boots
        .last()
        .map(|b| b.outcome.clone())
        .context("no boot was made")?;
    Ok(ScenarioReport {
        name: scenario.name.clone(),
        kernel_release: kernel.release.clone(),
        outcome,
        boots,
    })
}
