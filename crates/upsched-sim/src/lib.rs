//! upsched-sim: a deterministic discrete-event simulator of a multicore machine that runs
//! scheduling policies shaped like sched_ext (see [`sched::Scheduler`]).
//!
//! - [`machine`]: CPUs, topology (SMT, LLC, NUMA), costs of switching and migrating.
//! - [`scenario`], [`toml_scenario`], [`rtapp`]: workloads as phase programs of tasks in
//!   cgroups, arrival processes; the TOML format and rt-app JSON import.
//! - [`engine`]: the event loop and the mechanism; [`sched`]: the policy interface and the
//!   built-in policies (`linux-eevdf`, `upsched-default`, `fifo`, `rr`).
//! - [`report`], [`plots`], [`perfetto`]: metrics as JSON/text/CSV, SVG plots, Perfetto traces.
//!
//! The same scenario, policy and seed always give the same results, byte for byte.
//! The format and the model are documented in `docs/simulator.md`.

pub mod chains;
pub mod engine;
pub mod faas;
pub mod machine;
pub mod metrics;
pub mod perfetto;
pub mod plots;
pub mod report;
pub mod rng;
pub mod rtapp;
pub mod scenario;
pub mod sched;
pub mod tenants;
pub mod toml_scenario;
pub mod units;

pub use engine::{RunOptions, RunOutcome, SimError, run, run_builtin};
pub use scenario::Scenario;
pub use toml_scenario::{BUILTIN_POLICIES, ScenarioError, parse_scenario, parse_scenario_on};

/// The built-in scenario `spec` names (`faas[:NAME=VALUE,...]`), or `None` for a file name.
pub fn builtin_scenario(spec: &str) -> Option<Result<Scenario, ScenarioError>> {
    let params = faas::FaasParams::from_spec(spec)?;
    Some(params.map(|p| p.build()).map_err(|message| ScenarioError {
        file: spec.to_string(),
        line: None,
        message,
    }))
}

/// Loads a scenario file: rt-app JSON when the name ends in `.json`, TOML otherwise.
pub fn load_scenario(path: &std::path::Path) -> Result<Scenario, ScenarioError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        file: file.clone(),
        line: None,
        message: format!("cannot read: {e}"),
    })?;
    if path.extension().is_some_and(|e| e == "json") {
        rtapp::import(&text, &file, &rtapp::ImportOptions::default())
    } else {
        parse_scenario(&text, &file)
    }
}
