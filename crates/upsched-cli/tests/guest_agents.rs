// SPDX-License-Identifier: GPL-2.0-only
//! The guest side of guest/host hints on this machine, read through the host's own channel
//! code (`upsched_guest::channel`): `upsched guest-agent` reports every CPU of the machine it
//! runs on; the test VMM (`upsched vmm-emulator`) names its vCPU threads as QEMU does, reports
//! vCPU 0 busy while it serves a request, and as a hostile guest writes every kind of bad
//! message, which the channel rejects and counts. The kernel path is `vm_guest_host.rs`.

use std::io::Read;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use upsched_guest::channel::Channel;
use upsched_guest::message::VcpuReport;

mod support;
use support::{assert_refused, scratch_dir, text, upsched};

fn read_all(mut stream: UnixStream, channel: &mut Channel) -> Vec<VcpuReport> {
    let start = Instant::now();
    let mut reports = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = stream.read(&mut buffer).expect("read the channel");
        if n == 0 {
            return reports;
        }
        reports.extend(channel.ingest(&buffer[..n], start.elapsed().as_nanos() as u64));
    }
}

#[test]
fn the_guest_agent_reports_every_cpu_of_its_machine() {
    let dir = scratch_dir("guest-agent");
    let socket = dir.join("channel.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let agent = Command::new(env!("CARGO_BIN_EXE_upsched"))
        .args([
            "guest-agent",
            "--channel",
            socket.to_str().unwrap(),
            "--duration",
            "300ms",
            "--json",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (stream, _) = listener.accept().unwrap();
    let cpus = std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .count();
    let mut channel = Channel::new(cpus as u16, 0);
    let reports = read_all(stream, &mut channel);
    let out = agent.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["vcpus"], cpus);
    assert_eq!(summary["reports_sent"], reports.len());
    assert_eq!(channel.counters().rejected(), 0, "{:?}", channel.counters());
    for cpu in 0..cpus {
        assert!(
            reports.iter().any(|r| usize::from(r.vcpu) == cpu),
            "no report of CPU {cpu}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_guest_agent_refuses_a_channel_it_cannot_use_and_bad_options() {
    for (args, message) in [
        (
            vec!["--channel", "/nonexistent/port"],
            "no channel /nonexistent/port",
        ),
        (
            vec!["--channel", "/etc/hostname"],
            "neither a character device nor a socket",
        ),
        (
            vec!["--channel", "/dev/null", "--interval", "0s"],
            "--interval must be between",
        ),
        (
            vec!["--channel", "/dev/null", "--latency-cpus", "4096"],
            "the guest has no CPU 4096",
        ),
    ] {
        let out = upsched(&[&["guest-agent"][..], &args].concat());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).contains(message),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

fn emulator(
    dir: &std::path::Path,
    guest: &str,
    extra: &[&str],
) -> (std::process::Child, UnixStream) {
    let socket = dir.join(format!("{guest}.sock"));
    let pid_file = dir.join(format!("{guest}.pid"));
    let child = Command::new(env!("CARGO_BIN_EXE_upsched"))
        .args([
            "vmm-emulator",
            "--channel",
            socket.to_str().unwrap(),
            "--guest",
            guest,
        ])
        .args(["--pid-file", pid_file.to_str().unwrap()])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let stream = loop {
        if let Ok(stream) = UnixStream::connect(&socket) {
            break stream;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the emulator never listened"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    (child, stream)
}

#[test]
fn the_test_vmm_names_its_vcpus_as_qemu_and_reports_a_request_s_vcpu_busy() {
    let dir = scratch_dir("vmm-emulator");
    let (child, stream) = emulator(
        &dir,
        "agent",
        &[
            "--duration",
            "600ms",
            "--request-every",
            "100ms",
            "--work",
            "20ms",
        ],
    );
    let pid = child.id();
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
        .map(|c| c.trim_end().to_string())
        .filter(|c| c.starts_with("CPU "))
        .collect();
    names.sort();
    assert_eq!(names, ["CPU 0/TCG", "CPU 1/TCG"]);
    let mut channel = Channel::new(2, 0);
    let reports = read_all(stream, &mut channel);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(summary["served"].as_u64().unwrap() >= 3, "{summary}");
    assert_eq!(channel.counters().rejected(), 0);
    assert!(
        reports
            .iter()
            .any(|r| r.vcpu == 0 && r.runnable == 1 && !r.idle())
    );
    assert!(reports.iter().any(|r| r.vcpu == 0 && r.idle()));
    assert!(reports.iter().filter(|r| r.vcpu == 1).all(|r| r.idle()));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_hostile_guest_s_bad_messages_are_each_rejected_and_counted() {
    let dir = scratch_dir("vmm-hostile");
    let (child, stream) = emulator(&dir, "hostile", &["--duration", "300ms"]);
    let mut channel = Channel::new(2, 0);
    let reports = read_all(stream, &mut channel);
    assert!(child.wait_with_output().unwrap().status.success());
    let c = channel.counters();
    assert!(
        c.magic >= 1 && c.version == 1 && c.size == 1 && c.reserved == 1,
        "{c:?}"
    );
    assert_eq!((c.vcpu, c.stale), (2, 2), "{c:?}");
    assert!(c.rate_limited > 15_000, "{c:?}");
    assert!(reports.iter().all(|r| r.vcpu < 2));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_host_agent_refuses_bad_settings_a_missing_vmm_and_a_missing_daemon() {
    let dir = scratch_dir("vm-agent");
    let socket = dir.join("none.sock");
    let (child, _stream) = emulator(&dir, "silent", &["--duration", "2s"]);
    let vmm = child.id().to_string();
    let daemon = dir.join("no-daemon.sock");
    let common = [
        "vm-agent",
        "--tenant",
        "vms",
        "--channel",
        socket.to_str().unwrap(),
    ];
    for (args, message) in [
        (
            vec!["--vmm-pid", &vmm, "--halt-poll", "0s"],
            "--halt-poll must be more than 0",
        ),
        (
            vec!["--vmm-pid", &vmm, "--park", "2s"],
            "--park must be more than 0 and at most 1s",
        ),
        (vec!["--vmm-pid", "999999999"], "no process 999999999"),
        (
            vec!["--vmm-pid", &vmm, "--socket", daemon.to_str().unwrap()],
            "no-daemon.sock",
        ),
    ] {
        assert_refused(&args, &upsched(&[&common[..], &args].concat()), message);
    }
    assert!(child.wait_with_output().unwrap().status.success());
    std::fs::remove_dir_all(dir).unwrap();
}
