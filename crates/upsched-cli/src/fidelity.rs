//! `upsched fidelity`: a scenario run for real on this machine (`run`), and that run held
//! against the simulator's run of the same file (`compare`); `docs/fidelity.md`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use upsched_workload::fidelity::{Bounds, compare, simulate};
use upsched_workload::runner::{self, RealReport};

use crate::failure::failure;

#[derive(Subcommand)]
pub enum FidelityAction {
    /// Run a scenario for real here and print what each task got, as one line of JSON.
    ///
    /// Each task instance is a process in the scenario's cgroup (created under --cgroup-root
    /// unless it exists) at its nice value, running the same phase program; it reports its CPU
    /// time, runnable wait and switch-ins (from /proc/thread-self/schedstat) and its finish
    /// time. Scenario features the runner does not run are refused, each named. Needs root
    /// for cgroups and negative nice values.
    ///
    /// Exit status: 0 ran, 1 the run failed, 2 bad or unsupported scenario.
    #[command(
        after_help = "Examples:\n  sudo upsched fidelity run crates/upsched-workload/fidelity/hogs.toml > real.json"
    )]
    Run {
        scenario: PathBuf,
        /// The cgroup2 mount the scenario's cgroup paths are under.
        #[arg(long, value_name = "DIR", default_value = "/sys/fs/cgroup")]
        cgroup_root: PathBuf,
    },
    /// Compare a real run's JSON with the simulator's run of the same scenario.
    ///
    /// Prints, per task and cgroup, the CPU share, the mean runnable wait and the finish time
    /// of both with the error of each and its bound, and the finish orders the simulator
    /// states with a margin.
    ///
    /// Exit status: 0 every error within its bound, 1 some outside, 2 bad input.
    #[command(
        after_help = "Examples:\n  upsched fidelity compare crates/upsched-workload/fidelity/hogs.toml --real real.json --policy linux-eevdf"
    )]
    Compare {
        scenario: PathBuf,
        /// The JSON `upsched fidelity run` printed.
        #[arg(long, value_name = "FILE")]
        real: PathBuf,
        /// The simulator's policy: linux-eevdf for the kernel's default scheduler, upsched for
        /// the host with the scenario's tenants.
        #[arg(long, default_value = "linux-eevdf")]
        policy: String,
    },
}

fn load(path: &Path) -> anyhow::Result<upsched_sim::Scenario> {
    upsched_sim::load_scenario(path).map_err(|e| failure(2, e))
}

pub fn run(action: &FidelityAction) -> anyhow::Result<ExitCode> {
    match action {
        FidelityAction::Run {
            scenario,
            cgroup_root,
        } => {
            let loaded = load(scenario)?;
            let missing = runner::unsupported(&loaded);
            if !missing.is_empty() {
                return Err(failure(
                    2,
                    format!(
                        "{}: the real runner does not run: {}",
                        scenario.display(),
                        missing.join("; ")
                    ),
                ));
            }
            let report = runner::run(&loaded, cgroup_root).map_err(|e| failure(1, e))?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(ExitCode::SUCCESS)
        }
        FidelityAction::Compare {
            scenario,
            real,
            policy,
        } => {
            let loaded = load(scenario)?;
            let text = std::fs::read_to_string(real)
                .map_err(|e| failure(2, format!("{}: {e}", real.display())))?;
            let real_report: RealReport = serde_json::from_str(&text)
                .map_err(|e| failure(2, format!("{}: {e}", real.display())))?;
            let file = scenario.display().to_string();
            let sim = simulate(&loaded, &file, policy).map_err(|e| failure(2, e))?;
            let comparison = compare(&real_report, &sim, &loaded, Bounds::of(&loaded))
                .map_err(|e| failure(2, e))?;
            print!("{}", comparison.table());
            let violations = comparison.violations();
            for v in &violations {
                eprintln!("upsched fidelity: outside its bound: {v}");
            }
            Ok(if violations.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
