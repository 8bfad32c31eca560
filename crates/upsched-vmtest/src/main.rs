//! `upsched-vmtest`: fetch a sched_ext kernel, generate vmlinux.h, boot scenarios under QEMU.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use upsched_vmtest::protocol::BootOutcome;
use upsched_vmtest::{InitramfsSpec, Kernel, Scenario, guest_binary, kernel, smoke, vmlinux};
use upsched_vmtest::{print_event, run_scenario};

const AFTER_HELP: &str = "\
Environment:
  UPSCHED_KERNEL=/path/to/bzImage   boot this kernel instead of the cached Debian one (no fetch)
  UPSCHED_VM_TIMEOUT=<seconds>      wall-clock limit of each boot (default 120)
  UPSCHED_GUEST_PROBE=<path>        prebuilt static upsched-guest-probe for `smoke`
  UPSCHED_DEBIAN_MIRROR=<uri>       Debian mirror when apt's configuration has none
  XDG_CACHE_HOME                    cache root (default ~/.cache); kernels in upsched/kernel/
  UPSCHED_VM_REQUIRED=1             (cargo test) fetch a missing kernel and fail instead of skipping

Exit status of smoke and run: 0 all checks passed, 1 a check failed, 2 the guest crashed
(twice: one retry is made), 3 timeout, 4 the harness itself failed (no kernel, no QEMU...).";

/// Boots a Linux kernel with sched_ext under QEMU (software emulation) and runs upsched test
/// scenarios in it.
#[derive(Parser)]
#[command(name = "upsched-vmtest", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Make sure a sched_ext kernel is available and print the path of its bzImage.
    ///
    /// Uses UPSCHED_KERNEL, else the cache, else downloads Debian sid's cloud kernel with a
    /// private apt configuration (the system's apt sources are not changed).
    Kernel {
        /// Ask sid for its newest kernel even if one is cached.
        #[arg(long)]
        refresh: bool,
        /// Record the kernel in kernel.lock.toml as the one the project is tested with.
        #[arg(long)]
        update_lock: bool,
    },
    /// Print the path of vmlinux.h for the kernel (generated with bpftool on first use) and,
    /// on stderr, what its BTF says about sched_ext.
    ///
    /// bookworm's bpftool writes anonymous embedded members: compile BPF code that includes
    /// this header with `-fms-extensions -Wno-microsoft-anon-tag`.
    VmlinuxH,
    /// Boot the kernel with a static probe binary and check the guest: kernel release,
    /// /sys/kernel/sched_ext/state, cgroup2 and bpffs mounts.
    Smoke(VmOptions),
    /// Boot the kernel and run a scenario script with extra files in the initramfs.
    ///
    /// The script runs under busybox sh as root and reports with lines
    /// `UPSCHED-TEST <name> PASS|FAIL|SKIP <detail>`.
    Run {
        /// Scenario script (busybox sh).
        #[arg(long)]
        script: PathBuf,
        /// Extra file as HOST_PATH:GUEST_PATH (repeatable), e.g. target/x/prog:/usr/bin/prog.
        #[arg(long = "file", value_name = "HOST:GUEST")]
        files: Vec<String>,
        /// Name used for the console log.
        #[arg(long, default_value = "run")]
        name: String,
        #[command(flatten)]
        vm: VmOptions,
    },
    /// Write the initramfs a `run` would boot, without booting (for inspection).
    Initramfs {
        #[arg(long)]
        script: PathBuf,
        #[arg(long = "file", value_name = "HOST:GUEST")]
        files: Vec<String>,
        /// Output cpio (newc) file.
        #[arg(long, short)]
        output: PathBuf,
    },
}

#[derive(Args)]
struct VmOptions {
    /// Wall-clock limit of one boot in seconds (UPSCHED_VM_TIMEOUT overrides).
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 2)]
    smp: u32,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 2048)]
    memory: u32,
    /// Do not retry a boot whose guest crashed.
    #[arg(long)]
    no_retry: bool,
}

impl VmOptions {
    fn apply(&self, scenario: &mut Scenario) {
        scenario.timeout = Duration::from_secs(self.timeout);
        scenario.cpus = self.smp;
        scenario.memory_mib = self.memory;
        scenario.retry_on_crash = !self.no_retry;
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("upsched-vmtest: error: {err:#}");
            ExitCode::from(4)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Commands::Kernel {
            refresh,
            update_lock,
        } => {
            let kernel = if refresh {
                if kernel::override_kernel()?.is_some() {
                    anyhow::bail!("--refresh fetches from Debian sid: unset UPSCHED_KERNEL first");
                }
                kernel::fetch_from_sid()?
            } else {
                kernel::obtain()?
            };
            if update_lock {
                let record = kernel.record.as_ref().context(
                    "only a kernel fetched from Debian can be locked, not an UPSCHED_KERNEL override",
                )?;
                kernel::write_lock(&record.into())?;
                eprintln!(
                    "upsched-vmtest: recorded {} in {}",
                    record.release,
                    kernel::LOCK_FILE_PATH
                );
            }
            describe_kernel(&kernel);
            println!("{}", kernel.bzimage.display());
            Ok(ExitCode::SUCCESS)
        }
        Commands::VmlinuxH => {
            let kernel = kernel::obtain()?;
            let fallback = kernel::cache_root()?.join("override-kernel");
            let artifacts = vmlinux::ensure_vmlinux_h(&kernel, &fallback)?;
            eprintln!(
                "upsched-vmtest: kernel {}: struct sched_ext_ops present; kfunc API generation: {}",
                kernel.release,
                artifacts.btf.api_generation()
            );
            eprintln!(
                "upsched-vmtest: scx kfuncs: {}",
                artifacts.btf.scx_kfuncs.join(" ")
            );
            eprintln!(
                "upsched-vmtest: compile BPF including it with -fms-extensions -Wno-microsoft-anon-tag"
            );
            println!("{}", artifacts.vmlinux_h.display());
            Ok(ExitCode::SUCCESS)
        }
        Commands::Smoke(vm) => {
            let kernel = kernel::obtain()?;
            describe_kernel(&kernel);
            let probe = guest_binary::guest_probe()?;
            let mut scenario = smoke::smoke_scenario(&kernel, &probe)?;
            vm.apply(&mut scenario);
            boot_and_report(&kernel, &scenario)
        }
        Commands::Run {
            script,
            files,
            name,
            vm,
        } => {
            let kernel = kernel::obtain()?;
            describe_kernel(&kernel);
            let mut scenario = Scenario::new(name, initramfs_from_args(&script, &files)?);
            vm.apply(&mut scenario);
            boot_and_report(&kernel, &scenario)
        }
        Commands::Initramfs {
            script,
            files,
            output,
        } => {
            initramfs_from_args(&script, &files)?.write_cpio_file(&output)?;
            println!("{}", output.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn describe_kernel(kernel: &Kernel) {
    match &kernel.record {
        Some(record) => eprintln!(
            "upsched-vmtest: kernel {} (Debian {} {}, vmlinuz sha256 {})",
            record.release, record.suite, record.package_version, record.vmlinuz_sha256
        ),
        None => eprintln!(
            "upsched-vmtest: kernel {} from UPSCHED_KERNEL={}",
            kernel.release,
            kernel.bzimage.display()
        ),
    }
}

fn initramfs_from_args(script: &PathBuf, files: &[String]) -> anyhow::Result<InitramfsSpec> {
    let text = std::fs::read_to_string(script)
        .with_context(|| format!("reading scenario script {}", script.display()))?;
    let mut spec = InitramfsSpec::with_default_busybox(text)?;
    for file in files {
        let (host, guest) = file.split_once(':').with_context(|| {
            format!("--file {file}: expected HOST_PATH:GUEST_PATH, e.g. target/prog:/usr/bin/prog")
        })?;
        let host = PathBuf::from(host);
        let metadata = std::fs::metadata(&host)
            .with_context(|| format!("--file {file}: cannot read {}", host.display()))?;
        let executable = std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o111;
        spec.add_host_file(&host, guest, if executable != 0 { 0o755 } else { 0o644 });
    }
    Ok(spec)
}

fn boot_and_report(kernel: &Kernel, scenario: &Scenario) -> anyhow::Result<ExitCode> {
    let report = run_scenario(kernel, scenario, &mut print_event)?;
    println!("{}", report.describe());
    Ok(ExitCode::from(match report.outcome {
        BootOutcome::AllPassed => 0,
        BootOutcome::ScenarioFailed { .. } => 1,
        BootOutcome::GuestCrashed { .. } => 2,
        BootOutcome::TimedOut { .. } => 3,
    }))
}
