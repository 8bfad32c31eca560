//! The fidelity suite (`docs/fidelity.md`): the workloads of `crates/upsched-workload/fidelity/`
//! run for real in the test VM by `upsched fidelity run`, under the kernel's own scheduler for
//! the scenarios that name `linux-eevdf` and under the upsched host with the scenario's
//! tenants for those that name `upsched`, in one boot; each real run is then compared with the
//! simulator's run of the same file under that policy, here, and the errors must stay inside
//! the bounds of `upsched_workload::fidelity::Bounds::of` the workload (a regression fence, not a claim that
//! they are zero). The tables are printed (`--nocapture`).
//!
//! Skipped without a kernel or QEMU unless UPSCHED_VM_REQUIRED=1 (`docs/vm-harness.md`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use upsched_sim::Scenario;
use upsched_sim::tenants::PolicySource;
use upsched_workload::fidelity::{Bounds, compare, simulate};
use upsched_workload::runner::RealReport;

#[path = "support/guest.rs"]
mod guest;

const GUEST_DIR: &str = "/upsched/fidelity";

/// The policies whose real runs are made under the upsched host: the mechanism with the
/// scenario's tenants, and its default class alone (the host held by an idle tenant).
const HOST_POLICIES: [&str; 2] = ["upsched", "upsched-default"];

/// The policy of `scenario` run under the host, if it names one.
fn host_policy(scenario: &Scenario) -> Option<&str> {
    scenario
        .policies
        .iter()
        .map(String::as_str)
        .find(|p| HOST_POLICIES.contains(p))
}

/// The suite's workloads, by file name.
fn workloads() -> Vec<(PathBuf, Scenario)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../upsched-workload/fidelity");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let scenario = upsched_sim::load_scenario(&path).unwrap_or_else(|e| panic!("{e}"));
            (path, scenario)
        })
        .collect()
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned()
}

/// The `upsched load` commands of a scenario's tenants, and their names.
fn tenant_loads(scenario: &Scenario) -> Vec<(String, String)> {
    scenario
        .tenants
        .iter()
        .enumerate()
        .map(|(i, tenant)| {
            let config = &tenant.config;
            // The runner starts every task at once, as the tenants are loaded before it:
            // a tenant attached or detached while work runs is not part of the suite.
            assert!(
                config.attach_at == 0 && config.detach_at.is_none(),
                "{}: attach/detach times are not run for real",
                scenario.name
            );
            let PolicySource::Example(policy) = &tenant.policy else {
                panic!("{}: only example policies are in the guest", scenario.name);
            };
            let name = format!("{}-{i}", scenario.name);
            let command = format!(
                "upsched load example:{policy} --cgroup /sys/fs/cgroup{} --level {} --weight {} \
                 --slice-min {}ns --slice-max {}ns --park-max {}ns --watchdog {}ns --name {name}",
                config.cgroup,
                config.level,
                config.weight,
                config.slice_min,
                config.slice_max,
                config.park_max,
                config.watchdog
            );
            (name, command)
        })
        .collect()
}

/// The guest's script: every workload that names `linux-eevdf` under the kernel's scheduler,
/// then the daemon with the host held by an idle tenant (so that workloads without tenants run
/// in the host's default class), then every workload that names a host policy under the host
/// with its tenants loaded around its run. A run reports its JSON as the detail of the check
/// `FILE/POLICY`.
fn script(workloads: &[(PathBuf, Scenario)]) -> String {
    let mut s = String::from("#!/bin/sh\n. /upsched/lib.sh\n");
    for (path, scenario) in workloads {
        if scenario.policies.iter().any(|p| p == "linux-eevdf") {
            let file = file_name(path);
            writeln!(
                s,
                "upsched_check {file}/linux-eevdf upsched fidelity run {GUEST_DIR}/{file}"
            )
            .unwrap();
        }
    }
    s.push_str(
        "mkdir -p /etc/upsched /tmp/state /sys/fs/cgroup/fidelity-idle\n\
         printf 'version = 1\\n' > /etc/upsched/grants.toml\n\
         chmod 644 /etc/upsched/grants.toml\n\
         /usr/bin/upschedd --state-dir /tmp/state 2>/tmp/upschedd.log &\n\
         for i in $(seq 100); do [ -S /run/upsched/upsched.sock ] && break; sleep 0.1; done\n\
         upsched_check host_loaded upsched load example:fifo --cgroup /sys/fs/cgroup/fidelity-idle --name idle\n",
    );
    for (path, scenario) in workloads {
        let Some(policy) = host_policy(scenario) else {
            continue;
        };
        let file = file_name(path);
        let loads = tenant_loads(scenario);
        for tenant in &scenario.tenants {
            writeln!(s, "mkdir -p /sys/fs/cgroup{}", tenant.config.cgroup).unwrap();
        }
        for (name, command) in &loads {
            writeln!(s, "upsched_check {file}/load-{name} {command}").unwrap();
        }
        writeln!(
            s,
            "upsched_check {file}/{policy} upsched fidelity run {GUEST_DIR}/{file}"
        )
        .unwrap();
        for (name, _) in &loads {
            writeln!(
                s,
                "upsched_check {file}/unload-{name} upsched unload {name}"
            )
            .unwrap();
        }
        for tenant in &scenario.tenants {
            writeln!(s, "rmdir /sys/fs/cgroup{}", tenant.config.cgroup).unwrap();
        }
    }
    s.push_str("upsched_finish\n");
    s
}

#[test]
fn the_simulator_stays_within_its_bounds_of_the_real_kernel() {
    let workloads = workloads();
    let extra: Vec<(&Path, String)> = workloads
        .iter()
        .map(|(path, _)| (path.as_path(), format!("{GUEST_DIR}/{}", file_name(path))))
        .collect();
    let Some(results) = guest::run_cli_guest(
        "fidelity",
        &script(&workloads),
        &extra,
        Duration::from_secs(300),
    ) else {
        return;
    };
    let mut violations = Vec::new();
    let mut compared = 0;
    for (path, scenario) in &workloads {
        let kernel = scenario
            .policies
            .iter()
            .any(|p| p == "linux-eevdf")
            .then_some("linux-eevdf");
        for policy in kernel.into_iter().chain(host_policy(scenario)) {
            let check = format!("{}/{policy}", file_name(path));
            let result = results
                .iter()
                .find(|r| r.name == check)
                .unwrap_or_else(|| panic!("the guest did not report {check}"));
            let real: RealReport = serde_json::from_str(&result.detail)
                .unwrap_or_else(|e| panic!("{check}: {e}: {}", result.detail));
            let sim = simulate(scenario, &path.display().to_string(), policy)
                .unwrap_or_else(|e| panic!("{check}: {e}"));
            let comparison = compare(&real, &sim, scenario, Bounds::of(scenario))
                .unwrap_or_else(|e| panic!("{check}: {e}"));
            eprintln!("{}", comparison.table());
            violations.extend(
                comparison
                    .violations()
                    .into_iter()
                    .map(|v| format!("{check}: {v}")),
            );
            compared += 1;
        }
    }
    assert!(compared >= 4, "only {compared} runs compared");
    assert!(
        violations.is_empty(),
        "outside the bounds:\n{}",
        violations.join("\n")
    );
}
