//! `upsched demo --vm` end to end: boots the test VM (the sched_ext kernel under QEMU), runs the
//! demo in the guest and checks what it printed.
//!
//! Without QEMU or a cached kernel (and no UPSCHED_KERNEL) the test is skipped with a loud
//! message, unless UPSCHED_VM_REQUIRED=1: then it downloads the kernel if needed and fails when
//! anything is missing.

use std::io::Write;
use std::process::Command;
use std::time::Instant;

/// The stats rows of `tenant` printed while its policy was attached: (cpu %, line).
fn policy_rows<'a>(text: &'a str, tenant: &str, policy: &str) -> Vec<(f64, &'a str)> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace().skip_while(|w| *w != tenant);
            words.next()?;
            if words.next()? != policy {
                return None;
            }
            words.next()?; // level, "L1"
            let cpu = words.next()?.strip_suffix('%')?.parse().ok()?;
            Some((cpu, line))
        })
        .collect()
}

#[test]
fn demo_runs_in_the_vm() {
    // With UPSCHED_VM_REQUIRED=1 this fetches the kernel the demo then finds in the cache.
    if upsched_vmtest::testing::kernel_or_skip("`upsched demo --vm`").is_none() {
        return;
    }

    let start = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_upsched"))
        .args(["demo", "--vm", "--seconds", "9"])
        .output()
        .expect("upsched runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let text = format!("{stdout}\n--- stderr ---\n{stderr}");
    let _ = writeln!(
        std::io::stderr().lock(),
        "upsched demo --vm took {:.1} s",
        start.elapsed().as_secs_f64()
    );
    assert!(output.status.success(), "exit {:?}\n{text}", output.status);

    for expected in [
        "booting the test VM",
        "[vm] guest booted kernel",
        "host scheduler loaded: sched_ext state disabled -> enabled",
        "attached policy wfq to tenant batch",
        "attached policy prio to tenant interactive",
        "detached policy prio from tenant interactive: its 2 tasks go on in the default class",
        "host scheduler unloaded: sched_ext state enabled -> disabled",
        "cgroups removed",
        "demo OK",
        "[vm] guest verdict: demo PASS",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    for (tenant, policy) in [("batch", "wfq"), ("interactive", "prio")] {
        let rows = policy_rows(&stdout, tenant, policy);
        assert!(
            !rows.is_empty(),
            "no statistics rows for {tenant} under {policy}\n{text}"
        );
        assert!(
            rows.iter().any(|(cpu, _)| *cpu > 0.0),
            "{tenant} got no CPU under {policy}: {rows:?}\n{text}"
        );
    }
    // After the detach, the interactive tenant's rows say default class and it still runs.
    let after_detach = stdout
        .split("detached policy prio")
        .nth(1)
        .unwrap_or_default();
    assert!(
        after_detach
            .lines()
            .any(|l| l.contains("interactive") && l.contains("(counted in the default class)")),
        "no default-class row for interactive after the detach\n{text}"
    );
}
