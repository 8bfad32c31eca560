// SPDX-License-Identifier: GPL-2.0-only
//! Side by side, one boot (`docs/faas.md`, "Kernel and simulator"): the FaaS workload with
//! real processes at several chain counts, up to and past saturation of the guest's 2 vCPUs,
//! under the kernel's own scheduler (no sched_ext), under the host alone (a tenant on an idle
//! cgroup loads it; the workload runs in its default class) and under the host with the
//! `faas` tenant on the workload's tree (runtime hints). Writes the runs to
//! `target/faas-side-by-side/runs.json` and puts them beside the simulator's runs of the same
//! parameters with `upsched faas compare` (table on stdout, plots in that directory).
//!
//! Slow (a few minutes under emulation): `#[ignore]`d. Run it with
//! `flock /work/vm.lock cargo test -p upsched-cli --test vm_faas_side_by_side -- --ignored --nocapture`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

#[path = "support/guest.rs"]
mod guest;

/// Chain counts: one chain needs about a fifth of a CPU of useful work at these costs and
/// twice that with its polling, so the kernel's scheduler saturates the 2 vCPUs at about 4.
const CHAINS: [u32; 5] = [1, 2, 4, 6, 8];
/// Every run's parameters but the chains (the simulator's defaults, 5 s of arrivals).
const ARGS: &str =
    "--rate 10 --seconds 5 --drain 3 --cpu-scale 1 --cgroup-root /sys/fs/cgroup/faas";
const SCHEDULERS: [(&str, &str); 3] = [
    ("linux", "linux"),
    ("host", "host"),
    ("host+faas", "host_faas"),
];

fn script() -> String {
    let mut s = String::from(
        "#!/bin/sh\n. /upsched/lib.sh\n\
         mkdir -p /etc/upsched /tmp/state /sys/fs/cgroup/idle\n\
         printf 'version = 1\\n' > /etc/upsched/grants.toml\n\
         chmod 644 /etc/upsched/grants.toml\n",
    );
    let runs = |s: &mut String, tag: &str, extra: &str| {
        for n in CHAINS {
            writeln!(
                s,
                "upsched_check {tag}_{n} upsched faas run --chains {n} {ARGS} {extra} --json"
            )
            .unwrap();
        }
    };
    runs(&mut s, "linux", "");
    s.push_str(
        "/usr/bin/upschedd --state-dir /tmp/state 2>/tmp/upschedd.log &\n\
         for i in $(seq 100); do [ -S /run/upsched/upsched.sock ] && break; sleep 0.1; done\n\
         upsched_check host_loaded upsched load example:fifo --cgroup /sys/fs/cgroup/idle --name idle\n",
    );
    runs(&mut s, "host", "");
    s.push_str(
        "mkdir -p /sys/fs/cgroup/faas\n\
         upsched_check faas_loaded upsched load example:faas --cgroup /sys/fs/cgroup/faas --name fn --park-max 1s\n",
    );
    runs(&mut s, "host_faas", "--hints runtime --tenant fn");
    s.push_str("upsched_check stats upsched stats fn\nupsched_finish\n");
    s
}

#[test]
#[ignore = "slow: 15 runs of the workload in one boot under emulation"]
fn kernel_and_simulator_side_by_side() {
    let Some(results) = guest::run_cli_guest(
        "faas-side-by-side",
        &script(),
        &[],
        Duration::from_secs(1500),
    ) else {
        return;
    };
    let mut runs = Vec::new();
    for (label, tag) in SCHEDULERS {
        for n in CHAINS {
            let name = format!("{tag}_{n}");
            let detail = &results
                .iter()
                .find(|r| r.name == name)
                .unwrap_or_else(|| panic!("the guest did not report {name}"))
                .detail;
            let report: upsched_faas::Report =
                serde_json::from_str(detail).unwrap_or_else(|e| panic!("{name}: {e}: {detail}"));
            assert!(report.arrived > 0, "{name}: nothing arrived");
            runs.push(json!({ "scheduler": label, "report": report }));
        }
    }
    if let Some(stats) = results.iter().find(|r| r.name == "stats") {
        eprintln!("the faas tenant after its runs: {}", stats.detail);
    }
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/faas-side-by-side");
    std::fs::create_dir_all(&out).unwrap();
    let file = out.join("runs.json");
    std::fs::write(&file, serde_json::to_string(&runs).unwrap()).unwrap();
    let compared = std::process::Command::new(env!("CARGO_BIN_EXE_upsched"))
        .args(["faas", "compare"])
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        compared.status.success(),
        "{}",
        String::from_utf8_lossy(&compared.stderr)
    );
    println!("{}", String::from_utf8_lossy(&compared.stdout));
    eprintln!("runs and plots in {}", out.display());
}
