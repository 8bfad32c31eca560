//! Runs inside the test guest and checks that the kernel and the guest's mounts are what the
//! upsched VM tests rely on. Prints one `UPSCHED-TEST` line per check; exits 1 if any failed.
//!
//! Usage: upsched-guest-probe [--expect-release <uname -r>]

use std::process::ExitCode;

use upsched_vmtest::protocol::{Verdict, format_test_line};

struct Check {
    name: &'static str,
    result: Result<String, String>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let expected_release = match args.as_slice() {
        [] => None,
        [flag, release] if flag == "--expect-release" => Some(release.clone()),
        _ => {
            eprintln!("usage: upsched-guest-probe [--expect-release <uname -r>]");
            return ExitCode::from(2);
        }
    };
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let checks = [
        Check {
            name: "kernel_release",
            result: check_release(expected_release.as_deref()),
        },
        Check {
            name: "sched_ext_state",
            result: check_sched_ext_state(),
        },
        Check {
            name: "cgroup2_mounted",
            result: check_mount(&mounts, "/sys/fs/cgroup", "cgroup2").and_then(|detail| {
                std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
                    .map(|controllers| format!("{detail}; controllers: {}", controllers.trim()))
                    .map_err(|err| format!("{detail}, but cgroup.controllers unreadable: {err}"))
            }),
        },
        Check {
            name: "bpffs_mounted",
            result: check_mount(&mounts, "/sys/fs/bpf", "bpf"),
        },
    ];
    let mut failed = false;
    for check in checks {
        let (verdict, detail) = match check.result {
            Ok(detail) => (Verdict::Pass, detail),
            Err(detail) => {
                failed = true;
                (Verdict::Fail, detail)
            }
        };
        println!("{}", format_test_line(check.name, verdict, &detail));
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn check_release(expected: Option<&str>) -> Result<String, String> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_err(|err| format!("cannot read /proc/sys/kernel/osrelease: {err}"))?;
    let release = release.trim();
    match expected {
        Some(expected) if expected != release => {
            Err(format!("running {release}, expected {expected}"))
        }
        _ => Ok(release.to_string()),
    }
}

fn check_sched_ext_state() -> Result<String, String> {
    let path = "/sys/kernel/sched_ext/state";
    let state = std::fs::read_to_string(path)
        .map_err(|err| format!("{path} unreadable ({err}): no sched_ext in this kernel?"))?;
    match state.trim() {
        "disabled" => Ok(format!("{path} reads disabled")),
        other => Err(format!(
            "{path} reads {other:?}, expected \"disabled\" before any scheduler is loaded"
        )),
    }
}

/// Finds the file system type mounted at `mount_point` in /proc/self/mounts text.
fn check_mount(mounts: &str, mount_point: &str, fs_type: &str) -> Result<String, String> {
    let found = mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _device = fields.next()?;
            let point = fields.next()?;
            let kind = fields.next()?;
            (point == mount_point).then_some(kind)
        })
        .next_back();
    match found {
        Some(kind) if kind == fs_type => Ok(format!("{fs_type} at {mount_point}")),
        Some(kind) => Err(format!("{mount_point} is {kind}, expected {fs_type}")),
        None => Err(format!("nothing mounted at {mount_point}")),
    }
}
