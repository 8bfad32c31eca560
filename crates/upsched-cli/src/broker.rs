//! Clients of the broker daemon, `upschedd` (docs/protocol.md, docs/broker.md): `upsched host
//! status`, `upsched grants show`, the tenant operations `load`, `replace`, `unload`, `list`,
//! `stats`,
//! root's `upsched audit` (`upsched hint` is in `hint.rs`, `upsched top` in `top.rs`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use upsched_broker::audit::AuditRecord;
use upsched_broker::client::{Client, ClientError};
use upsched_broker::protocol::{
    AuditArgs, DEFAULT_AUDIT_TAIL, GrantView, HostStatus, LoadArgs, MAX_AUDIT_TAIL, Operation,
    ReplaceArgs, Reply, StatsArgs, TenantArgs, TenantStats, TenantView, Whoami,
};

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

impl DaemonArgs {
    /// The daemon's socket: `--socket`, else `$UPSCHED_SOCKET`, else the default.
    pub fn socket(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(upsched_broker::daemon::default_socket)
    }
}

#[derive(Args)]
pub struct LoadCommand {
    /// The policy object (a file, or `example:NAME` for a built-in example).
    policy: String,
    /// The cgroup2 directory whose tasks the tenant governs.
    #[arg(long, value_name = "DIR")]
    cgroup: PathBuf,
    /// Chain level (higher levels run first); at most your grant's max_level.
    #[arg(long, default_value_t = 1)]
    level: u32,
    /// Weight among the classes of its level; at most your grant's max_weight.
    #[arg(long, default_value_t = 100)]
    weight: u32,
    /// The tenant's name (default: the name the policy declares).
    #[arg(long)]
    name: Option<String>,
    /// Shortest slice the policy may choose [default: 500us].
    #[arg(long, value_parser = humantime::parse_duration)]
    slice_min: Option<Duration>,
    /// Longest slice the policy may choose [default: 20ms].
    #[arg(long, value_parser = humantime::parse_duration)]
    slice_max: Option<Duration>,
    /// Longest a task may stay parked [default: 100ms].
    #[arg(long, value_parser = humantime::parse_duration)]
    park_max: Option<Duration>,
    /// A task waiting longer than this to run ejects the tenant [default: 3s].
    #[arg(long, value_parser = humantime::parse_duration)]
    watchdog: Option<Duration>,
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

#[derive(Args)]
pub struct ReplaceCommand {
    /// The tenant's name (`upsched list` shows them).
    tenant: String,
    /// The new policy object (a file, or `example:NAME` for a built-in example).
    policy: String,
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

#[derive(Args)]
pub struct TenantCommand {
    /// The tenant's name (`upsched list` shows them).
    tenant: String,
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

#[derive(Args)]
pub struct StatsCommand {
    /// One tenant (default: every tenant you may see).
    tenant: Option<String>,
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

#[derive(Args)]
pub struct AuditCommand {
    /// The newest N records [1..1000].
    #[arg(long, value_name = "N", default_value_t = DEFAULT_AUDIT_TAIL,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_AUDIT_TAIL)))]
    tail: u32,
    #[command(flatten)]
    pub daemon: DaemonArgs,
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

pub fn load(command: &LoadCommand) -> anyhow::Result<ExitCode> {
    let ns = |d: Option<Duration>| d.map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let args = LoadArgs {
        policy: crate::call::read_policy(&command.policy).map_err(|e| failure(2, e))?,
        cgroup: command.cgroup.display().to_string(),
        level: command.level,
        weight: command.weight,
        name: command.name.clone(),
        slice_min_ns: ns(command.slice_min),
        slice_max_ns: ns(command.slice_max),
        park_max_ns: ns(command.park_max),
        watchdog_ns: ns(command.watchdog),
    };
    let Reply::Loaded(tenant) = ask(&command.daemon, Operation::Load(args))? else {
        return Err(failure(1, "upschedd answered load with another reply"));
    };
    let headline = format!("loaded tenant {:?}", tenant.name);
    answer_tenant(&command.daemon, &tenant, &headline, true)
}

/// Prints the tenant a tenant operation answered with: as JSON under `--json`, else
/// `headline` and (with `details`) the tenant's fields.
fn answer_tenant(
    daemon: &DaemonArgs,
    tenant: &TenantView,
    headline: &str,
    details: bool,
) -> anyhow::Result<ExitCode> {
    if daemon.json {
        println!("{}", serde_json::to_string_pretty(tenant)?);
    } else {
        println!("{headline}");
        if details {
            print_tenant(tenant);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn replace(command: &ReplaceCommand) -> anyhow::Result<ExitCode> {
    let operation = Operation::Replace(ReplaceArgs {
        tenant: command.tenant.clone(),
        policy: crate::call::read_policy(&command.policy).map_err(|e| failure(2, e))?,
    });
    let Reply::Replaced(tenant) = ask(&command.daemon, operation)? else {
        return Err(failure(1, "upschedd answered replace with another reply"));
    };
    let headline = format!(
        "tenant {:?} now runs policy {:?}",
        tenant.name, tenant.policy
    );
    answer_tenant(&command.daemon, &tenant, &headline, true)
}

pub fn unload(command: &TenantCommand) -> anyhow::Result<ExitCode> {
    let operation = Operation::Unload(TenantArgs {
        tenant: command.tenant.clone(),
    });
    let Reply::Unloaded(tenant) = ask(&command.daemon, operation)? else {
        return Err(failure(1, "upschedd answered unload with another reply"));
    };
    let headline = format!(
        "unloaded tenant {:?}: its tasks run in the default class",
        tenant.name
    );
    answer_tenant(&command.daemon, &tenant, &headline, false)
}

pub fn list(args: &DaemonArgs) -> anyhow::Result<ExitCode> {
    let Reply::List(list) = ask(args, Operation::List)? else {
        return Err(failure(1, "upschedd answered list with another reply"));
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else if list.tenants.is_empty() {
        println!("no tenants");
    } else {
        for tenant in &list.tenants {
            println!("{}", tenant.name);
            print_tenant(tenant);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn stats(command: &StatsCommand) -> anyhow::Result<ExitCode> {
    let operation = Operation::Stats(StatsArgs {
        tenant: command.tenant.clone(),
    });
    let Reply::Stats(stats) = ask(&command.daemon, operation)? else {
        return Err(failure(1, "upschedd answered stats with another reply"));
    };
    if command.daemon.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else if stats.tenants.is_empty() {
        println!("no tenants");
    } else {
        stats.tenants.iter().for_each(print_stats);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn audit(command: &AuditCommand) -> anyhow::Result<ExitCode> {
    let operation = Operation::Audit(AuditArgs {
        tail: Some(command.tail),
    });
    let Reply::Audit(audit) = ask(&command.daemon, operation)? else {
        return Err(failure(1, "upschedd answered audit with another reply"));
    };
    if command.daemon.json {
        println!("{}", serde_json::to_string_pretty(&audit)?);
    } else {
        audit.records.iter().for_each(print_record);
    }
    if audit.size_limited {
        eprintln!(
            "upsched audit: older records were left out to keep the answer within the \
             protocol's message size (their reasons are long); the log holds them all"
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_record(r: &AuditRecord) {
    let tenant = r
        .tenant
        .as_deref()
        .map(|t| format!(" {t}"))
        .unwrap_or_default();
    let reason = r
        .reason
        .as_deref()
        .map(|t| format!(": {t}"))
        .unwrap_or_default();
    println!(
        "{} uid {} pid {} {}{tenant} {}{reason}",
        r.time,
        r.uid,
        r.pid,
        r.operation,
        r.result.as_str()
    );
}

fn print_tenant(t: &TenantView) {
    println!(
        "  policy {} (sha256 {}), uid {}, grant {:?}",
        t.policy, t.policy_hash, t.owner, t.grant
    );
    println!(
        "  cgroup {} (id {}), level {}, weight {}, slot {}",
        t.cgroup, t.cgroup_id, t.level, t.weight, t.slot
    );
}

fn print_stats(s: &TenantStats) {
    let c = &s.counters;
    let ms = |ns: u64| ns as f64 / 1e6;
    println!(
        "{:<16} tasks {} (runnable {}) enq {} run {} cpu {:.3}s wait max {:.3}ms avg {:.3}ms parks {} releases {} clamps {} ejections {}",
        s.tenant.name,
        s.nr_tasks,
        s.nr_runnable,
        c.enqueues,
        c.dispatches,
        c.cpu_time_ns as f64 / 1e9,
        ms(c.wait_max_ns),
        ms(c.wait_sum_ns.checked_div(c.dispatches).unwrap_or(0)),
        c.parks,
        c.releases,
        s.clamps,
        c.ejections
    );
}

/// One request; no daemon is status 2 (it says how to start one), a refusal status 1.
pub(crate) fn ask(args: &DaemonArgs, operation: Operation) -> anyhow::Result<Reply> {
    let socket = args.socket();
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
