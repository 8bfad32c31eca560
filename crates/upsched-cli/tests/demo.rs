//! `upsched demo --vm` end to end: boots the test VM (the sched_ext kernel under QEMU), runs the
//! demo in the guest and checks what it printed: root starts `upschedd` and grants the demo
//! user, that user (uid 1000), not root, loads both policies through the daemon, replaces one
//! under load with no call reaching a default stub, unloads them, and `upschedd --unload` leaves
//! nothing behind.
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
        "guest: created the unprivileged user upsched-demo (uid 1000, gid 1000)",
        "as root: created the cgroups /sys/fs/cgroup/upsched-demo/batch, \
         /sys/fs/cgroup/upsched-demo/interactive and delegated them to upsched-demo",
        "as root: granted upsched-demo in /run/upsched-demo/grants.toml",
        "as root: started `upschedd --socket /run/upsched-demo/upsched.sock",
        "as upsched-demo (uid 1000): upsched load example:wfq --cgroup \
         /sys/fs/cgroup/upsched-demo/batch --level 1 --weight 100 --name batch",
        "-> upschedd loaded tenant \"batch\" for uid 1000 (grant \"upsched-demo\"): policy wfq",
        "-> host scheduler loaded by upschedd at this first load: sched_ext state disabled -> \
         enabled",
        "as upsched-demo (uid 1000): upsched load example:prio --cgroup \
         /sys/fs/cgroup/upsched-demo/interactive --level 2 --weight 100 --name interactive",
        "-> upschedd loaded tenant \"interactive\" for uid 1000 (grant \"upsched-demo\"): policy \
         prio",
        "as upsched-demo (uid 1000): upsched replace batch example:rr",
        "-> upschedd swapped tenant \"batch\"'s policy wfq for rr",
        "default-stub calls before the swap: 0",
        "check: after the swap, upschedd counts 0 calls of batch's tasks that reached a default stub",
        "as upsched-demo (uid 1000): upsched unload interactive",
        "its 2 tasks go on in the default class",
        "as upsched-demo (uid 1000): upsched unload batch",
        "as upsched-demo (uid 1000): upsched list -> 0 tenants",
        "as root: stopped upschedd",
        "ran `upschedd --unload`: ended the host pinned in /sys/fs/bpf/upsched-demo",
        "host scheduler unloaded: sched_ext state enabled -> disabled",
        "no pin left in /sys/fs/bpf/upsched-demo",
        "cgroups removed",
        "default-stub calls 0",
        "demo OK",
        "[vm] guest verdict: demo PASS",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    for (tenant, policy) in [("batch", "wfq"), ("batch", "rr"), ("interactive", "prio")] {
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
    // After the unload, the interactive tenant's rows say default class and it still runs.
    let after_detach = stdout
        .split("upsched unload interactive")
        .nth(1)
        .unwrap_or_default();
    assert!(
        after_detach
            .lines()
            .any(|l| l.contains("interactive") && l.contains("(counted in the default class)")),
        "no default-class row for interactive after the unload\n{text}"
    );
}
