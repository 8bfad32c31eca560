// SPDX-License-Identifier: GPL-2.0-only
//! `upsched-broker-bench`: the broker's benchmark in the guest (docs/broker.md, "Benchmark";
//! driven by `crates/upsched-cli/tests/vm_broker_bench.rs`). Each mode prints one
//! `UPSCHED-BENCH key=value ...` line per measurement for the driver to read.
//!
//! - `direct`: load+attach, replace and unload of a tenant through `Host` in this process (the
//!   baseline; as root, no daemon running);
//! - `daemon`: the same three operations as `load`, `replace` and `unload` requests to
//!   `upschedd` on one connection (run as the grant holder);
//! - `idle`: the CPU time (utime + stime) a process (the daemon) uses over a span, while this
//!   process sends it a `stats` request every `--poll` (as `upsched top` does) or sends nothing.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use upsched_broker::client::Client;
use upsched_broker::protocol::{LoadArgs, Operation, ReplaceArgs, Reply, StatsArgs, TenantArgs};
use upsched_kernel::{Host, HostConfig, TenantConfig};

#[derive(Parser)]
#[command(name = "upsched-broker-bench", about)]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Clone, clap::Args)]
struct Operations {
    /// The policy a round loads.
    #[arg(long)]
    policy: PathBuf,
    /// The policy a round replaces it by.
    #[arg(long)]
    replacement: PathBuf,
    /// The cgroup of the tenant.
    #[arg(long)]
    cgroup: PathBuf,
    /// Rounds of load, replace, unload.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rounds: u32,
}

#[derive(Subcommand)]
enum Mode {
    /// Through `Host` in this process.
    Direct(Operations),
    /// Through upschedd's socket.
    Daemon {
        #[command(flatten)]
        operations: Operations,
        #[arg(long)]
        socket: PathBuf,
    },
    /// A process's CPU time over a span, with or without stats polling.
    Idle {
        /// The process measured (the daemon).
        #[arg(long)]
        pid: u32,
        #[arg(long, value_parser = humantime::parse_duration)]
        span: Duration,
        /// Send a `stats` request this often to the daemon on `--socket`.
        #[arg(long, value_parser = humantime::parse_duration, requires = "socket")]
        poll: Option<Duration>,
        #[arg(long)]
        socket: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let result = match Args::parse().mode {
        Mode::Direct(operations) => direct(&operations),
        Mode::Daemon { operations, socket } => through_daemon(&operations, &socket),
        Mode::Idle {
            pid,
            span,
            poll,
            socket,
        } => idle(pid, span, poll.zip(socket)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("upsched-broker-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn report(path: &str, operation: &str, round: u32, took: Duration) {
    println!(
        "UPSCHED-BENCH path={path} op={operation} round={round} us={:.1}",
        took.as_secs_f64() * 1e6
    );
}

/// Runs `f` and reports how long it took.
fn timed<T>(
    path: &str,
    operation: &str,
    round: u32,
    f: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let start = Instant::now();
    let value = f()?;
    report(path, operation, round, start.elapsed());
    Ok(value)
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))
}

fn direct(operations: &Operations) -> anyhow::Result<()> {
    let policy = read(&operations.policy)?;
    let replacement = read(&operations.replacement)?;
    let mut host = Host::load(&HostConfig::default())?;
    let config = TenantConfig::new(&operations.cgroup).level(1);
    for round in 0..operations.rounds {
        let handle = timed("direct", "load", round, || {
            Ok(host.admit_and_attach(&policy, &config)?)
        })?;
        timed("direct", "replace", round, || {
            Ok(host.replace(handle, &Host::admit(&replacement)?)?)
        })?;
        timed("direct", "unload", round, || Ok(host.detach(handle)?))?;
    }
    Ok(())
}

fn through_daemon(operations: &Operations, socket: &Path) -> anyhow::Result<()> {
    let policy = read(&operations.policy)?;
    let replacement = read(&operations.replacement)?;
    let mut client = Client::connect(socket)?;
    let name = "bench".to_string();
    for round in 0..operations.rounds {
        let load = Operation::Load(LoadArgs {
            policy: policy.clone(),
            cgroup: operations.cgroup.display().to_string(),
            level: 1,
            weight: 100,
            name: Some(name.clone()),
            slice_min_ns: None,
            slice_max_ns: None,
            park_max_ns: None,
            watchdog_ns: None,
        });
        expect(
            timed("daemon", "load", round, || Ok(client.call(load)?))?,
            "loaded",
        )?;
        let replace = Operation::Replace(ReplaceArgs {
            tenant: name.clone(),
            policy: replacement.clone(),
        });
        expect(
            timed("daemon", "replace", round, || Ok(client.call(replace)?))?,
            "replaced",
        )?;
        let unload = Operation::Unload(TenantArgs {
            tenant: name.clone(),
        });
        expect(
            timed("daemon", "unload", round, || Ok(client.call(unload)?))?,
            "unloaded",
        )?;
    }
    Ok(())
}

fn expect(reply: Reply, want: &str) -> anyhow::Result<()> {
    let matches = matches!(
        (&reply, want),
        (Reply::Loaded(_), "loaded")
            | (Reply::Replaced(_), "replaced")
            | (Reply::Unloaded(_), "unloaded")
    );
    if matches {
        Ok(())
    } else {
        anyhow::bail!("expected a {want} answer, got {reply:?}")
    }
}

/// utime + stime of `pid`, in clock ticks (/proc/PID/stat fields 14 and 15).
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; the fields after its ')' are plain.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow::anyhow!("unreadable /proc/{pid}/stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ')' come field 3 (state) onwards: utime is field 14, stime 15.
    let field = |n: usize| -> anyhow::Result<u64> {
        Ok(fields
            .get(n - 3)
            .ok_or_else(|| anyhow::anyhow!("/proc/{pid}/stat has no field {n}"))?
            .parse()?)
    };
    Ok(field(14)? + field(15)?)
}

fn idle(pid: u32, span: Duration, poll: Option<(Duration, PathBuf)>) -> anyhow::Result<()> {
    // SAFETY: sysconf has no preconditions.
    let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut client = match &poll {
        Some((_, socket)) => Some(Client::connect(socket)?),
        None => None,
    };
    let before = cpu_ticks(pid)?;
    let start = Instant::now();
    let mut requests = 0u64;
    while start.elapsed() < span {
        if let (Some(client), Some((every, _))) = (&mut client, &poll) {
            client.call(Operation::Stats(StatsArgs { tenant: None }))?;
            requests += 1;
            std::thread::sleep(*every);
        } else {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let elapsed = start.elapsed();
    let cpu_s = cpu_ticks(pid)?.saturating_sub(before) as f64 / ticks_per_s;
    println!(
        "UPSCHED-BENCH path=idle polling={} requests={requests} span_s={:.2} cpu_ms={:.1} \
         cpu_percent={:.3}",
        poll.is_some(),
        elapsed.as_secs_f64(),
        cpu_s * 1e3,
        100.0 * cpu_s / elapsed.as_secs_f64()
    );
    Ok(())
}
