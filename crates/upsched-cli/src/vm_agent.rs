// SPDX-License-Identifier: GPL-2.0-only
//! `upsched vm-agent`: the host end of guest/host hints (`docs/guest-host.md`). It holds a VM's
//! tenant hint map, finds the VMM's vCPU threads by their names, reads the guest's reports from
//! the VMM's channel socket and writes the words of that VMM's vCPU threads, nothing else.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use upsched_guest::channel::{Channel, Counters};
use upsched_guest::message::MAX_VCPUS;
use upsched_guest::words::{STORE_ORDER, VcpuWords, VmSettings};
use upsched_hints::{HintMap, ThreadHints};

use crate::broker::DaemonArgs;
use crate::failure::failure;
use crate::hint::hint_failure;

#[derive(Args)]
pub struct VmAgentCommand {
    /// The VM's tenant (yours, or one whose cgroup holds this process); its policy should be
    /// `example:vm`.
    #[arg(long)]
    tenant: String,
    /// The VMM's process id: its vCPU threads (`CPU n/KVM`, `CPU n/TCG`, `fc_vcpu n`) get the
    /// words, no other thread.
    #[arg(long, value_name = "PID")]
    vmm_pid: i32,
    /// The host end of the guest's channel: the Unix stream socket of the VMM's virtio-serial
    /// port (QEMU: `-chardev socket,id=c,path=PATH,server=on,wait=off`).
    #[arg(long, value_name = "PATH")]
    channel: PathBuf,
    /// The guest's halt-poll window: no vCPU that went idle less than this ago is parked.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "200us")]
    halt_poll: Duration,
    /// How long an idle vCPU is parked between two polls: the longest a parked guest waits to
    /// see an interrupt.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "20ms")]
    park: Duration,
    /// Stop after this long (default: when the channel or the VMM goes away, or on SIGTERM).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

/// What the agent did, printed when it stops (`--json`: this document).
#[derive(Serialize)]
struct AgentReport {
    tenant: String,
    vmm_pid: i32,
    /// The vCPU threads' ids, by vCPU index.
    vcpu_tids: Vec<i32>,
    channel: Counters,
    /// Reports whose words were stored.
    posts: u64,
    /// From the read that completed a report to its words stored: the host agent's share of
    /// the hint latency, in ns.
    post_ns_p50: u64,
    post_ns_max: u64,
    stopped_by: &'static str,
}

/// The vCPU index a VMM gives a vCPU thread in its name, if the name is one of a vCPU.
pub fn vcpu_index(comm: &str) -> Option<u16> {
    let number = if let Some(rest) = comm.strip_prefix("CPU ") {
        rest.strip_suffix("/KVM")
            .or_else(|| rest.strip_suffix("/TCG"))?
    } else {
        comm.strip_prefix("fc_vcpu ")?
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    number.parse().ok()
}

/// The vCPU threads of process `pid`, by index: every index from 0 to the highest must have
/// exactly one thread, and there are at most `MAX_VCPUS`.
pub fn vcpu_threads(proc_root: &Path, pid: i32) -> anyhow::Result<Vec<i32>> {
    let tasks = proc_root.join(pid.to_string()).join("task");
    let entries = std::fs::read_dir(&tasks).with_context(|| {
        format!(
            "no process {pid} to read vCPU threads of ({})",
            tasks.display()
        )
    })?;
    let mut found = BTreeMap::new();
    for entry in entries {
        let entry = entry?;
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // A thread that exits while we look has no comm any more: it is no vCPU.
        let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        let Some(index) = vcpu_index(comm.trim_end_matches('\n')) else {
            continue;
        };
        if index >= MAX_VCPUS {
            anyhow::bail!(
                "process {pid}'s thread {tid} is vCPU {index}: at most {MAX_VCPUS} vCPUs"
            );
        }
        if let Some(other) = found.insert(index, tid) {
            anyhow::bail!("process {pid} has two threads named as vCPU {index}: {other} and {tid}");
        }
    }
    if found.is_empty() {
        anyhow::bail!(
            "process {pid} has no vCPU thread (named `CPU n/KVM`, `CPU n/TCG` or `fc_vcpu n`)"
        );
    }
    let highest = found.keys().last().copied().unwrap_or_default();
    if usize::from(highest) + 1 != found.len() {
        anyhow::bail!("process {pid} has vCPU {highest} but not all vCPUs below it");
    }
    Ok(found.into_values().collect())
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn stop_on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

pub fn run(command: &VmAgentCommand) -> anyhow::Result<ExitCode> {
    let settings = VmSettings {
        halt_poll_ns: nonzero_ns(command.halt_poll, "--halt-poll")?,
        park_ns: nonzero_ns(command.park, "--park")?,
    };
    // The VMM names its vCPU threads as it starts them: look for a while.
    let looked = Instant::now();
    let tids = loop {
        match vcpu_threads(Path::new("/proc"), command.vmm_pid) {
            Ok(tids) => break tids,
            Err(_)
                if looked.elapsed() < Duration::from_secs(5)
                    && Path::new(&format!("/proc/{}", command.vmm_pid)).exists() =>
            {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => return Err(failure(2, e)),
        }
    };
    let map = HintMap::open_at(&command.daemon.socket(), &command.tenant).map_err(hint_failure)?;
    // A thread is a member of the tenant from its first scheduling in the tenant's cgroup: a
    // VMM moved there a moment ago may need a little while.
    let asked = Instant::now();
    let threads: Vec<ThreadHints<'_>> = loop {
        match tids.iter().map(|&tid| map.thread(tid)).collect() {
            Ok(threads) => break threads,
            Err(_) if asked.elapsed() < Duration::from_secs(2) => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => return Err(hint_failure(e)),
        }
    };
    let mut stream = UnixStream::connect(&command.channel).map_err(|e| {
        failure(
            2,
            format!(
                "cannot connect to the channel {}: {e}",
                command.channel.display()
            ),
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    // SAFETY: the handler only stores into an atomic.
    unsafe {
        libc::signal(
            libc::SIGTERM,
            stop_on_signal as *const () as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGINT,
            stop_on_signal as *const () as libc::sighandler_t,
        );
    }

    let start = Instant::now();
    let now_ns = || start.elapsed().as_nanos() as u64;
    let nr_vcpus = tids.len() as u16;
    let mut channel = Channel::new(nr_vcpus, now_ns());
    let mut vcpus = vec![VcpuWords::default(); tids.len()];
    let mut post_ns = Vec::new();
    let mut buffer = [0u8; 4096];
    let mut last_check = Instant::now();
    let stopped_by = loop {
        if STOP.load(Ordering::Relaxed) {
            break "signal";
        }
        if command.duration.is_some_and(|d| start.elapsed() >= d) {
            break "duration";
        }
        if last_check.elapsed() >= Duration::from_secs(1) {
            last_check = Instant::now();
            // A vCPU thread that is gone may have its id reused by another process's thread:
            // stop before writing for it.
            if tids
                .iter()
                .any(|tid| !Path::new(&format!("/proc/{}/task/{tid}", command.vmm_pid)).exists())
            {
                break "vmm_exited";
            }
        }
        let n = match stream.read(&mut buffer) {
            Ok(0) => break "channel_closed",
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => return Err(failure(2, format!("reading the channel: {e}"))),
        };
        let read_at = Instant::now();
        for report in channel.ingest(&buffer[..n], now_ns()) {
            let vcpu = usize::from(report.vcpu);
            let words = vcpus[vcpu].apply(&report, settings);
            for index in STORE_ORDER {
                threads[vcpu]
                    .set_word(index, words[index])
                    .map_err(hint_failure)?;
            }
            // Bounded: one sample per accepted report, and reports are rate-limited; keep the
            // most recent million.
            if post_ns.len() < 1_000_000 {
                post_ns.push(read_at.elapsed().as_nanos() as u64);
            }
        }
    };
    post_ns.sort_unstable();
    let report = AgentReport {
        tenant: command.tenant.clone(),
        vmm_pid: command.vmm_pid,
        vcpu_tids: tids,
        channel: channel.counters(),
        posts: post_ns.len() as u64,
        post_ns_p50: post_ns.get(post_ns.len() / 2).copied().unwrap_or(0),
        post_ns_max: post_ns.last().copied().unwrap_or(0),
        stopped_by,
    };
    if command.daemon.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let c = report.channel;
        println!(
            "vm-agent {:?}, VMM {} ({} vCPUs): {} reports posted ({} ns median, {} ns max from read to words); rejected {} (magic {}, version {}, size {}, vcpu {}, reserved {}, stale {}, rate-limited {}); stopped: {}",
            report.tenant,
            report.vmm_pid,
            report.vcpu_tids.len(),
            report.posts,
            report.post_ns_p50,
            report.post_ns_max,
            c.rejected(),
            c.magic,
            c.version,
            c.size,
            c.vcpu,
            c.reserved,
            c.stale,
            c.rate_limited,
            report.stopped_by
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn nonzero_ns(duration: Duration, option: &str) -> anyhow::Result<u64> {
    let ns = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    if ns == 0 || ns > 1_000_000_000 {
        return Err(failure(
            2,
            format!("{option} must be more than 0 and at most 1s"),
        ));
    }
    Ok(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vcpu_threads_are_known_by_the_names_their_vmm_gives_them() {
        assert_eq!(vcpu_index("CPU 0/KVM"), Some(0));
        assert_eq!(vcpu_index("CPU 12/TCG"), Some(12));
        assert_eq!(vcpu_index("fc_vcpu 3"), Some(3));
        for other in [
            "CPU /KVM",
            "CPU 1/kvm",
            "CPU -1/KVM",
            "CPU 1 /TCG",
            "qemu-system-x86",
            "fc_vcpu",
            "fc_vcpu 1x",
            "CPU 99999/KVM",
        ] {
            assert_eq!(vcpu_index(other), None, "{other}");
        }
    }

    fn fake_proc(threads: &[(i32, &str)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for (tid, comm) in threads {
            let dir = root.path().join("7/task").join(tid.to_string());
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("comm"), format!("{comm}\n")).unwrap();
        }
        root
    }

    #[test]
    fn a_vmm_s_vcpus_are_its_named_threads_in_index_order_and_gaps_or_twins_are_refused() {
        let root = fake_proc(&[
            (7, "qemu-system-x86"),
            (9, "CPU 1/TCG"),
            (8, "CPU 0/TCG"),
            (10, "worker"),
        ]);
        assert_eq!(vcpu_threads(root.path(), 7).unwrap(), [8, 9]);
        let gap = fake_proc(&[(8, "CPU 0/KVM"), (9, "CPU 2/KVM")]);
        let error = vcpu_threads(gap.path(), 7).unwrap_err().to_string();
        assert!(
            error.contains("vCPU 2 but not all vCPUs below it"),
            "{error}"
        );
        let twins = fake_proc(&[(8, "CPU 0/KVM"), (9, "CPU 0/KVM")]);
        assert!(
            vcpu_threads(twins.path(), 7)
                .unwrap_err()
                .to_string()
                .contains("two threads")
        );
        let none = fake_proc(&[(7, "firecracker")]);
        assert!(
            vcpu_threads(none.path(), 7)
                .unwrap_err()
                .to_string()
                .contains("no vCPU thread")
        );
        let huge = fake_proc(&[(8, "CPU 1024/KVM")]);
        assert!(
            vcpu_threads(huge.path(), 7)
                .unwrap_err()
                .to_string()
                .contains("at most 1024")
        );
        assert!(
            vcpu_threads(root.path(), 8)
                .unwrap_err()
                .to_string()
                .contains("no process 8")
        );
    }
}
