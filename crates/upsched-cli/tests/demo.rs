//! `upsched demo --vm` end to end: boots the test VM (the sched_ext kernel under QEMU), runs the
//! demo in the guest and checks what it printed.
//!
//! Without QEMU or a cached kernel (and no UPSCHED_KERNEL) the test is skipped with a loud
//! message, unless UPSCHED_VM_REQUIRED=1: then it downloads the kernel if needed and fails when
//! anything is missing.

use std::io::Write;
use std::process::Command;
use std::time::Instant;

use upsched_vmtest::kernel;
use upsched_vmtest::tools::find_tool;

const REQUIRED_ENV: &str = "UPSCHED_VM_REQUIRED";

fn skip_loudly(why: &str) {
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !! SKIPPED `upsched demo --vm`: {why}.\n\
         !! Run `upsched-vmtest kernel` once (needs network) or set UPSCHED_KERNEL, and set\n\
         !! {REQUIRED_ENV}=1 to make this a failure instead of a skip.\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
}

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
    let required = std::env::var(REQUIRED_ENV).is_ok_and(|v| v.trim() == "1");
    if let Err(err) = find_tool("qemu-system-x86_64", "apt-get install qemu-system-x86") {
        assert!(!required, "{REQUIRED_ENV}=1 but {err}");
        skip_loudly(&err.to_string());
        return;
    }
    match kernel::locate_offline() {
        Ok(Some(_)) => {}
        // The demo downloads the kernel itself.
        Ok(None) if required => {}
        Ok(None) => {
            skip_loudly("no sched_ext kernel is cached and UPSCHED_KERNEL is not set");
            return;
        }
        Err(err) => panic!("looking for a kernel: {err:#}"),
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
