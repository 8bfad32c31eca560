// SPDX-License-Identifier: GPL-2.0-only
//! The VM scenario (`examples/vm-guests.toml`, docs/guest-host.md) under linux-eevdf and under
//! the `vm` policy: idle-polling vCPUs that post their guest's words burn far less host CPU
//! under `vm`, the colocated hogs get it, and the vCPU that serves requests still runs within
//! about one park time.

use std::path::Path;

mod support;
use support::{text, upsched};

fn task<'a>(run: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    run["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task {name} in {run}"))
}

fn share(run: &serde_json::Value, name: &str) -> f64 {
    task(run, name)["cpu_share"].as_f64().unwrap()
}

#[test]
fn idle_vcpus_give_their_cpu_to_the_hogs_under_the_vm_policy() {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/vm-guests.toml");
    let out = upsched(&[
        "sim",
        scenario.to_str().unwrap(),
        "--policy",
        "linux-eevdf",
        "--policy",
        "example:vm",
        "--duration",
        "2s",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let (eevdf, vm) = (&report["runs"][0], &report["runs"][1]);
    assert_eq!(vm["policy"], "example:vm");
    for idle in ["guest0.vcpu1", "guest1.vcpu1"] {
        // A third of a CPU each under EEVDF (six spinning tasks on two CPUs), a few % under vm.
        assert!(share(eevdf, idle) > 0.3, "{}", share(eevdf, idle));
        assert!(
            share(vm, idle) < share(eevdf, idle) / 5.0,
            "{}",
            share(vm, idle)
        );
    }
    for hog in ["hog.0", "hog.1"] {
        assert!(
            share(vm, hog) > 2.0 * share(eevdf, hog),
            "{}",
            share(vm, hog)
        );
    }
    let stats = &vm["mechanism"]["tenants"][0]["stats"];
    assert!(stats["parks"].as_u64().unwrap() > 0, "{stats}");
    // The request-serving vCPUs wait at most about a park time (20 ms) plus a slice.
    for busy in ["guest0.vcpu0", "guest1.vcpu0"] {
        let max = task(vm, busy)["wait"]["max_ns"].as_u64().unwrap();
        assert!(max < 40_000_000, "{busy} waited up to {max} ns");
    }
}
