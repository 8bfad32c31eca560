// SPDX-License-Identifier: GPL-2.0-only
//! The guest end of guest/host hints (`docs/guest-host.md`): `upsched guest-agent` reads what
//! the guest's scheduler knows about each CPU and reports it on the channel device; the hidden
//! `upsched vmm-emulator` is a "VMM" for the tests: vCPU threads named as QEMU names them that
//! spin like an idle-polling guest and serve requests, and a guest side that reports their
//! state on a real channel socket (or, as a hostile guest, garbage).

use std::io::Write;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::Serialize;
use upsched_guest::message::{MAX_VCPUS, VcpuFlags, VcpuReport};
use upsched_guest::reporter::{Reporter, VcpuState};

use crate::failure::failure;

#[derive(Args)]
pub struct GuestAgentCommand {
    /// The guest end of the channel: a virtio-serial port (`/dev/virtio-ports/NAME`,
    /// `/dev/vportNpM`), or a Unix stream socket (to try the agent without a VM).
    #[arg(long, value_name = "DEV")]
    channel: PathBuf,
    /// How often to read the scheduler's per-CPU counters (`/proc/stat`).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "10ms")]
    interval: Duration,
    /// CPUs whose guest work is latency-sensitive (where the guest pins its latency-critical
    /// service), comma-separated.
    #[arg(long, value_name = "CPUS", value_delimiter = ',')]
    latency_cpus: Vec<u16>,
    /// Stop after this long (default: never).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Print what was sent, when it stops, as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct GuestReport {
    vcpus: usize,
    samples: u64,
    reports_sent: u64,
}

/// Where the reports go: a character device is written, a Unix socket connected to.
fn open_channel(path: &Path) -> anyhow::Result<Box<dyn Write>> {
    let kind = std::fs::metadata(path)
        .with_context(|| format!("no channel {}", path.display()))?
        .file_type();
    if kind.is_socket() {
        return Ok(Box::new(UnixStream::connect(path).with_context(|| {
            format!("cannot connect to the channel {}", path.display())
        })?));
    }
    if !kind.is_char_device() {
        anyhow::bail!(
            "the channel {} is neither a character device nor a socket",
            path.display()
        );
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open the channel {}", path.display()))?;
    Ok(Box::new(file))
}

fn send(channel: &mut dyn Write, reports: &[VcpuReport]) -> anyhow::Result<()> {
    let bytes: Vec<u8> = reports.iter().flat_map(|r| r.encode()).collect();
    channel
        .write_all(&bytes)
        .context("writing to the channel")?;
    channel.flush().context("writing to the channel")
}

/// One CPU's cumulative times from a `/proc/stat` line, in USER_HZ ticks: busy (user, nice,
/// system, irq, softirq, steal) and idle (idle, iowait).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    busy: u64,
    idle: u64,
}

/// The per-CPU lines of `/proc/stat`, by CPU id; at most `MAX_VCPUS` CPUs.
pub fn parse_proc_stat(text: &str) -> anyhow::Result<Vec<CpuTimes>> {
    let mut cpus = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(id) = fields.next().and_then(|name| name.strip_prefix("cpu")) else {
            continue;
        };
        if id.is_empty() {
            continue; // the all-CPUs line
        }
        let id: usize = id
            .parse()
            .with_context(|| format!("bad /proc/stat line {line:?}"))?;
        if id >= usize::from(MAX_VCPUS) || id != cpus.len() {
            anyhow::bail!("/proc/stat line {line:?}: CPUs must be 0.. in order, below {MAX_VCPUS}");
        }
        let values: Vec<u64> = fields
            .take(8)
            .map(|v| {
                v.parse()
                    .with_context(|| format!("bad /proc/stat line {line:?}"))
            })
            .collect::<Result<_, _>>()?;
        let [user, nice, system, idle, iowait, irq, softirq, steal] = values[..] else {
            anyhow::bail!("/proc/stat line {line:?} has fewer than 8 times");
        };
        cpus.push(CpuTimes {
            busy: user + nice + system + irq + softirq + steal,
            idle: idle + iowait,
        });
    }
    if cpus.is_empty() {
        anyhow::bail!("/proc/stat has no per-CPU line");
    }
    Ok(cpus)
}

/// A CPU's state from the change of its times: idle when only idle time grew, busy when only
/// busy time grew, the larger share when both did, and unchanged when neither did (the
/// counters move in ticks of 10 ms: between two ticks nothing is learnt).
pub fn classify(before: CpuTimes, after: CpuTimes, was_idle: bool) -> bool {
    let busy = after.busy.saturating_sub(before.busy);
    let idle = after.idle.saturating_sub(before.idle);
    if busy == 0 && idle == 0 {
        was_idle
    } else {
        idle > busy
    }
}

pub fn guest_agent(command: &GuestAgentCommand) -> anyhow::Result<ExitCode> {
    if command.interval < Duration::from_millis(1) || command.interval > Duration::from_secs(1) {
        return Err(failure(2, "--interval must be between 1ms and 1s"));
    }
    let read = || -> anyhow::Result<Vec<CpuTimes>> {
        parse_proc_stat(&std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?)
    };
    let mut times = read()?;
    let nr = times.len();
    if let Some(cpu) = command.latency_cpus.iter().find(|&&c| usize::from(c) >= nr) {
        return Err(failure(
            2,
            format!("--latency-cpus: the guest has no CPU {cpu} ({nr} CPUs)"),
        ));
    }
    // The guest's idle loop spins with idle=poll; otherwise an idle CPU halts.
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let idle_flag = if cmdline.split_ascii_whitespace().any(|w| w == "idle=poll") {
        VcpuFlags::IDLE_LOOP
    } else {
        VcpuFlags::HALTED
    };
    let mut channel = open_channel(&command.channel).map_err(|e| failure(2, e))?;
    let start = Instant::now();
    let mut reporter = Reporter::new(nr as u16, 0);
    let mut idle = vec![false; nr];
    let mut samples = 0;
    let mut sent = 0;
    while command.duration.is_none_or(|d| start.elapsed() < d) {
        std::thread::sleep(command.interval);
        let now = read()?;
        if now.len() != nr {
            return Err(failure(2, "the guest's number of CPUs changed"));
        }
        samples += 1;
        let states: Vec<VcpuState> = (0..nr)
            .map(|cpu| {
                idle[cpu] = classify(times[cpu], now[cpu], idle[cpu]);
                let latency = command.latency_cpus.contains(&(cpu as u16));
                let bits = match (idle[cpu], latency) {
                    (true, _) => idle_flag,
                    (false, true) => VcpuFlags::LATENCY_SENSITIVE,
                    (false, false) => 0,
                };
                VcpuState {
                    flags: VcpuFlags::new(bits).unwrap_or_default(),
                    runnable: u32::from(!idle[cpu]),
                    faas_pending: 0,
                }
            })
            .collect();
        times = now;
        let reports = reporter.reports(&states, start.elapsed().as_nanos() as u64);
        sent += reports.len() as u64;
        send(&mut *channel, &reports).map_err(|e| failure(2, e))?;
    }
    let report = GuestReport {
        vcpus: nr,
        samples,
        reports_sent: sent,
    };
    if command.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("guest-agent: {nr} vCPUs, {samples} samples, {sent} reports sent");
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Accelerator {
    Tcg,
    Kvm,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GuestKind {
    /// Reports the vCPUs' state, as the guest agent would.
    Agent,
    /// Writes malformed messages, out-of-range vCPUs, replays and a flood, then reports.
    Hostile,
    /// Reports nothing.
    Silent,
}

#[derive(Args)]
pub struct VmmEmulatorCommand {
    /// vCPU threads, named `CPU n/TCG` (or `/KVM`).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    vcpus: u16,
    #[arg(long, value_enum, default_value = "tcg")]
    accel: Accelerator,
    /// Listen on this Unix socket for the host agent, as QEMU's chardev server does.
    #[arg(long, value_name = "PATH")]
    channel: PathBuf,
    #[arg(long, value_enum, default_value = "agent")]
    guest: GuestKind,
    /// Inject a request into vCPU 0 this often (none: the guest only idles).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    request_every: Option<Duration>,
    /// CPU time one request takes.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "1ms")]
    work: Duration,
    /// Run this long, then print the requests' latencies and exit.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Write the process id here once the vCPU threads run.
    #[arg(long, value_name = "PATH")]
    pid_file: Option<PathBuf>,
}

/// One vCPU as the emulated guest sees it.
#[derive(Default)]
struct Vcpu {
    /// When a request was injected (ns since start + 1), 0: none.
    request_at: AtomicU64,
    busy: AtomicBool,
    served: AtomicU32,
}

#[derive(Serialize)]
struct EmulatorReport {
    requests: u64,
    served: u64,
    /// From a request's injection to its vCPU starting on it, µs.
    latency_us_p50: u64,
    latency_us_p99: u64,
    latency_us_max: u64,
    reports_sent: u64,
}

pub fn vmm_emulator(command: &VmmEmulatorCommand) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    let now_ns = move || start.elapsed().as_nanos() as u64;
    let stop = Arc::new(AtomicBool::new(false));
    let vcpus: Arc<Vec<Vcpu>> = Arc::new((0..command.vcpus).map(|_| Vcpu::default()).collect());
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let suffix = match command.accel {
        Accelerator::Tcg => "TCG",
        Accelerator::Kvm => "KVM",
    };
    let mut threads = Vec::new();
    // A spawned thread takes its name itself, as it starts: the listener below waits until
    // every vCPU thread runs under its name.
    let named = Arc::new(std::sync::Barrier::new(usize::from(command.vcpus) + 1));
    for index in 0..usize::from(command.vcpus) {
        let (stop, vcpus, latencies, work, named) = (
            stop.clone(),
            vcpus.clone(),
            latencies.clone(),
            command.work,
            named.clone(),
        );
        threads.push(
            std::thread::Builder::new()
                .name(format!("CPU {index}/{suffix}"))
                .spawn(move || {
                    named.wait();
                    let me = &vcpus[index];
                    while !stop.load(Ordering::Relaxed) {
                        let at = me.request_at.swap(0, Ordering::AcqRel);
                        if at == 0 {
                            // The guest's idle loop: poll for an interrupt.
                            std::hint::spin_loop();
                            continue;
                        }
                        me.busy.store(true, Ordering::Release);
                        let waited = now_ns().saturating_sub(at - 1);
                        latencies
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(waited / 1000);
                        upsched_workload::burn_cpu(work);
                        me.served.fetch_add(1, Ordering::Relaxed);
                        me.busy.store(false, Ordering::Release);
                    }
                })?,
        );
    }
    named.wait();
    if let Some(path) = &command.pid_file {
        std::fs::write(path, format!("{}\n", std::process::id()))?;
    }
    // Listening once the vCPU threads run: a host agent that connects finds them.
    let _ = std::fs::remove_file(&command.channel);
    let listener = UnixListener::bind(&command.channel)
        .with_context(|| format!("cannot listen on {}", command.channel.display()))?;
    // The guest side, on the channel once the host agent connects.
    let reporter_thread = {
        let (stop, vcpus, kind) = (stop.clone(), vcpus.clone(), command.guest);
        std::thread::Builder::new()
            .name("guest-side".into())
            .spawn(move || -> u64 {
                let Ok((mut stream, _)) = listener.accept() else {
                    return 0;
                };
                if kind == GuestKind::Hostile
                    && hostile_writes(&mut stream, vcpus.len() as u16).is_err()
                {
                    return 0;
                }
                let mut reporter = Reporter::new(vcpus.len() as u16, now_ns());
                let mut sent = 0;
                while !stop.load(Ordering::Relaxed) && kind != GuestKind::Silent {
                    let states: Vec<VcpuState> = vcpus
                        .iter()
                        .map(|v| {
                            let busy = v.busy.load(Ordering::Acquire);
                            VcpuState {
                                flags: VcpuFlags::new(if busy { 0 } else { VcpuFlags::IDLE_LOOP })
                                    .unwrap_or_default(),
                                runnable: u32::from(busy),
                                faas_pending: 0,
                            }
                        })
                        .collect();
                    let reports = reporter.reports(&states, now_ns());
                    sent += reports.len() as u64;
                    if send(&mut stream, &reports).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                sent
            })?
    };
    let mut requests = 0;
    let end = start + command.duration;
    while Instant::now() < end {
        match command.request_every {
            Some(every) => {
                std::thread::sleep(every.min(end.saturating_duration_since(Instant::now())));
                if Instant::now() < end {
                    vcpus[0].request_at.store(now_ns() + 1, Ordering::Release);
                    requests += 1;
                }
            }
            None => std::thread::sleep(end.saturating_duration_since(Instant::now())),
        }
    }
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        let _ = thread.join();
    }
    // Unblock a guest side still waiting for the host agent.
    let _ = UnixStream::connect(&command.channel);
    let reports_sent = reporter_thread.join().unwrap_or(0);
    let mut latencies = latencies.lock().unwrap_or_else(|e| e.into_inner()).clone();
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let report = EmulatorReport {
        requests,
        served: vcpus
            .iter()
            .map(|v| u64::from(v.served.load(Ordering::Relaxed)))
            .sum(),
        latency_us_p50: at(0.5),
        latency_us_p99: at(0.99),
        latency_us_max: latencies.last().copied().unwrap_or(0),
        reports_sent,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(ExitCode::SUCCESS)
}

/// What a hostile guest writes before it behaves: bytes with no message, every malformed
/// kind, vCPUs it does not have, a replay, and a flood far over the host's rate.
fn hostile_writes(stream: &mut UnixStream, nr_vcpus: u16) -> std::io::Result<()> {
    // Sequence numbers from just below the wrap, so that the guest's reports after this
    // (from 1 on) are newer again.
    let busy = |seq: u32, vcpu: u16| VcpuReport {
        seq: seq.wrapping_sub(30_000),
        vcpu,
        flags: VcpuFlags::default(),
        runnable: 1000,
        faas_pending: 0,
    };
    let mut bytes = b"GET / HTTP/1.0\r\n\r\n".repeat(8);
    let mut bad_version = busy(1, 0).encode();
    bad_version[4] = 9;
    let mut bad_size = busy(2, 0).encode();
    bad_size[6] = 99;
    let mut reserved = busy(3, 0).encode();
    reserved[15] = 0x80;
    for frame in [
        bad_version,
        bad_size,
        reserved,
        busy(4, nr_vcpus).encode(),
        busy(5, u16::MAX).encode(),
    ] {
        bytes.extend(frame);
    }
    stream.write_all(&bytes)?;
    // Accepted (its own vCPU 0), then replayed: stale.
    stream.write_all(
        &[
            busy(10, 0).encode(),
            busy(10, 0).encode(),
            busy(9, 0).encode(),
        ]
        .concat(),
    )?;
    let flood: Vec<u8> = (11..20_011).flat_map(|seq| busy(seq, 0).encode()).collect();
    stream.write_all(&flood)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  10 0 5 100 1 0 0 0 0 0\ncpu0 4 0 2 50 1 0 0 0 0 0\ncpu1 6 0 3 50 0 0 0 0 0 0\nintr 1\nprocs_running 2\n";

    #[test]
    fn proc_stat_gives_each_cpu_s_busy_and_idle_ticks() {
        assert_eq!(
            parse_proc_stat(STAT).unwrap(),
            [
                CpuTimes { busy: 6, idle: 51 },
                CpuTimes { busy: 9, idle: 50 }
            ]
        );
        for bad in [
            "intr 1\n",
            "cpu0 1 2 3\n",
            "cpu1 1 2 3 4 5 6 7 8\n",
            "cpu0 x 0 0 0 0 0 0 0\n",
            "cpu9999 0 0 0 0 0 0 0 0\n",
        ] {
            assert!(parse_proc_stat(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_cpu_is_idle_when_its_idle_time_grew_more_and_unchanged_between_ticks() {
        let t = |busy, idle| CpuTimes { busy, idle };
        assert!(classify(t(5, 5), t(5, 6), false));
        assert!(!classify(t(5, 5), t(6, 5), true));
        assert!(classify(t(5, 5), t(5, 5), true));
        assert!(!classify(t(5, 5), t(5, 5), false));
        assert!(!classify(t(5, 5), t(7, 6), true));
    }
}
