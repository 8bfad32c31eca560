//! Clients of the broker daemon, `upschedd` (docs/protocol.md): `upsched host status` and
//! `upsched grants show`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use upsched_broker::client::{Client, ClientError};
use upsched_broker::protocol::{GrantView, HostStatus, Operation, Reply, Whoami};

use crate::failure::failure;

#[derive(Args)]
pub struct DaemonArgs {
    /// The daemon's socket (default: $UPSCHED_SOCKET, else /run/upsched/upsched.sock).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Print the daemon's answer as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum HostAction {
    /// Whether the upsched host scheduler runs in the kernel, as the daemon sees it.
    Status(DaemonArgs),
}

#[derive(Subcommand)]
pub enum GrantsAction {
    /// Who the daemon takes you for, and the grants that cover you (docs/grants.md).
    Show(DaemonArgs),
}

impl HostAction {
    pub fn json(&self) -> bool {
        let HostAction::Status(args) = self;
        args.json
    }
}

impl GrantsAction {
    pub fn json(&self) -> bool {
        let GrantsAction::Show(args) = self;
        args.json
    }
}

pub fn host(action: &HostAction) -> anyhow::Result<ExitCode> {
    let HostAction::Status(args) = action;
    let Reply::HostStatus(status) = ask(args, Operation::HostStatus)? else {
        return Err(failure(
            1,
            "upschedd answered host_status with another reply",
        ));
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print_status(&status);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn grants(action: &GrantsAction) -> anyhow::Result<ExitCode> {
    let GrantsAction::Show(args) = action;
    let Reply::Whoami(who) = ask(args, Operation::Whoami)? else {
        return Err(failure(1, "upschedd answered whoami with another reply"));
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&who)?);
    } else {
        print_whoami(&who);
    }
    Ok(ExitCode::SUCCESS)
}

/// One request; no daemon is status 2 (it says how to start one), a refusal status 1.
fn ask(args: &DaemonArgs, operation: Operation) -> anyhow::Result<Reply> {
    let socket = args
        .socket
        .clone()
        .unwrap_or_else(upsched_broker::daemon::default_socket);
    let mut client = Client::connect(&socket).map_err(|e| failure(2, e))?;
    client.call(operation).map_err(|e| match e {
        ClientError::Refused(_) => failure(1, e),
        _ => failure(2, e),
    })
}

fn print_status(status: &HostStatus) {
    println!("sched_ext:  {}", status.sched_ext_state);
    let scheduler = match (&status.root_ops, status.upsched_host_loaded) {
        (Some(name), true) => format!("{name} (the upsched host)"),
        (Some(name), false) => format!("{name} (not upsched's host)"),
        (None, _) => "none".into(),
    };
    println!("scheduler:  {scheduler}");
    println!("tenants:    {}", status.tenants);
    println!("grants:     {}", status.grants_file);
}

fn print_whoami(who: &Whoami) {
    let groups: Vec<_> = who.groups.iter().map(u32::to_string).collect();
    println!(
        "uid {} (gid {}, groups {}), pid {}{}",
        who.uid,
        who.gid,
        if groups.is_empty() {
            "none".into()
        } else {
            groups.join(" ")
        },
        who.pid,
        if who.root {
            ": root, needs no grant"
        } else {
            ""
        }
    );
    if who.grants.is_empty() && !who.root {
        println!(
            "no grant covers you; an administrator gives one in the daemon's grants file (docs/grants.md)"
        );
    }
    for grant in &who.grants {
        print_grant(grant);
    }
}

fn print_grant(g: &GrantView) {
    let time = |ns: u64| humantime::format_duration(Duration::from_nanos(ns)).to_string();
    println!("grant {:?}", g.name);
    println!("  capabilities: {}", g.capabilities.join(", "));
    println!(
        "  scopes:       {}{}",
        g.scopes.join(", "),
        if g.any_owner {
            ""
        } else {
            " (cgroups you own)"
        }
    );
    println!(
        "  at most:      level {}, weight {}, {} tenant(s)",
        g.max_level, g.max_weight, g.max_tenants
    );
    println!(
        "  bounds:       slices {}..{}, park {}, watchdog {}",
        time(g.slice_min_ns),
        time(g.slice_max_ns),
        time(g.park_max_ns),
        time(g.watchdog_max_ns)
    );
}
