//! `upsched-host`: load the upsched host scheduler, optionally attach tenant policies, print
//! statistics until SIGINT/SIGTERM, then detach everything.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use upsched_kernel::{Host, HostConfig, TenantConfig, detect, signals};

#[derive(Parser)]
#[command(
    name = "upsched-host",
    about = "Run the upsched host scheduler (sched_ext) and attach tenant policies",
    long_about = "Loads the upsched host scheduler as the system's sched_ext scheduler (all tasks), \
                  attaches the given tenant policies onto its slots, prints statistics, and \
                  detaches everything on SIGINT/SIGTERM or when --seconds have passed. \
                  Needs root (or CAP_BPF + CAP_PERFMON + CAP_SYS_ADMIN) and a kernel with sched_ext."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Report whether this kernel can run the host scheduler.
    Detect,
    /// Load the host scheduler and run until a signal (or --seconds).
    Load {
        /// Stop after this many seconds (default: until SIGINT/SIGTERM).
        #[arg(long)]
        seconds: Option<u64>,
        /// Print statistics every this many seconds (0: only at the end).
        #[arg(long, default_value_t = 5)]
        stats_interval: u64,
        /// Attach a tenant: POLICY:CGROUP[:LEVEL[:WEIGHT]], POLICY being an example policy
        /// name (fifo, rr, prio, wfq, edf, faas) or a path to a .bpf.o. Repeatable.
        #[arg(long = "tenant", value_name = "POLICY:CGROUP[:LEVEL[:WEIGHT]]")]
        tenants: Vec<String>,
        /// Minimum CPU share (per mille) of each lower chain level with work.
        #[arg(long, default_value_t = 50)]
        guard_permille: u32,
    },
}

struct TenantSpec {
    policy: Vec<u8>,
    label: String,
    config: TenantConfig,
}

fn parse_tenant(spec: &str) -> Result<TenantSpec, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    if parts.len() < 2 || parts.len() > 4 {
        return Err(format!(
            "--tenant {spec}: expected POLICY:CGROUP[:LEVEL[:WEIGHT]]"
        ));
    }
    let policy = match upsched_policies::policy(parts[0]) {
        Some(bytes) => bytes.to_vec(),
        None => std::fs::read(parts[0]).map_err(|e| {
            format!(
                "--tenant {spec}: {} is neither an example policy ({}) nor a readable file: {e}",
                parts[0],
                upsched_policies::names().collect::<Vec<_>>().join(", ")
            )
        })?,
    };
    let mut config = TenantConfig::new(PathBuf::from(parts[1]));
    if let Some(level) = parts.get(2) {
        config.level = level
            .parse()
            .map_err(|_| format!("--tenant {spec}: level {level} is not a number"))?;
    }
    if let Some(weight) = parts.get(3) {
        config.weight = weight
            .parse()
            .map_err(|_| format!("--tenant {spec}: weight {weight} is not a number"))?;
    }
    Ok(TenantSpec {
        policy,
        label: parts[0].to_string(),
        config,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Detect => {
            let support = detect::detect();
            println!(
                "sched_ext: {}",
                if support.sched_ext { "yes" } else { "no" }
            );
            if let Some(state) = support.state {
                println!("state: {state}");
            }
            if let Some(ops) = support.active_ops {
                println!("active scheduler: {ops}");
            }
            println!("API generation: {}", support.api);
            if support.sched_ext {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Load {
            seconds,
            stats_interval,
            tenants,
            guard_permille,
        } => match run(seconds, stats_interval, &tenants, guard_permille) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("upsched-host: {message}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run(
    seconds: Option<u64>,
    stats_interval: u64,
    tenants: &[String],
    guard_permille: u32,
) -> Result<(), String> {
    let specs = tenants
        .iter()
        .map(|t| parse_tenant(t))
        .collect::<Result<Vec<_>, _>>()?;
    signals::install();
    let config = HostConfig {
        guard_min_permille: guard_permille,
        ..HostConfig::default()
    };
    let mut host = Host::load(&config).map_err(|e| e.to_string())?;
    println!("upsched-host: host scheduler enabled");
    for spec in &specs {
        let handle = host
            .admit_and_attach(&spec.policy, &spec.config)
            .map_err(|e| format!("attaching {}: {e}", spec.label))?;
        println!(
            "upsched-host: {} attached on slot {} for {} (level {}, weight {})",
            spec.label,
            handle.slot,
            spec.config.cgroup.display(),
            spec.config.level,
            spec.config.weight
        );
    }
    let start = Instant::now();
    let mut last_stats = Instant::now();
    while !signals::stop_requested() {
        if seconds.is_some_and(|s| start.elapsed() >= Duration::from_secs(s)) {
            break;
        }
        host.check_running().map_err(|e| e.to_string())?;
        for ejection in host.poll_ejections().map_err(|e| e.to_string())? {
            println!(
                "upsched-host: tenant {} (slot {}) ejected: {}",
                ejection.policy, ejection.handle.slot, ejection.reason
            );
        }
        if stats_interval > 0 && last_stats.elapsed() >= Duration::from_secs(stats_interval) {
            print!("{}", host.stats().map_err(|e| e.to_string())?.render());
            last_stats = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    print!("{}", host.stats().map_err(|e| e.to_string())?.render());
    drop(host);
    println!("upsched-host: detached");
    Ok(())
}
