//! `upsched`: the command-line entry point of the project.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

mod broker;
mod call;
mod check;
mod demo;
mod demo_daemon;
mod engine_arg;
mod faas;
mod failure;
mod fidelity;
mod guest_agent;
mod hint;
mod limits_arg;
mod sdk;
mod sim;
mod sweep;
mod top;
mod trace;
mod vm_agent;

/// upsched: user-programmable CPU scheduling on Linux sched_ext.
///
/// Tenant scheduling policies are small BPF programs (C, built with clang -target bpf against
/// upsched_sdk.h) that the host scheduler calls at every scheduling event of their tasks.
#[derive(Parser)]
#[command(name = "upsched", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect policy objects and decide whether they may be loaded.
    ///
    /// Prints, per object: policy name, ABI version, hooks with instruction counts, the context
    /// fields each hook reads and writes, kfuncs, subprograms, globals, and the capabilities a
    /// user needs to load it. Rejects objects that break the policy ABI, naming the problem and
    /// the section and instruction where it is.
    ///
    /// Exit status: 0 all accepted, 1 some rejected, 2 usage error or unreadable file.
    #[command(
        after_help = "Examples:\n  upsched check --examples\n  upsched check my_policy.bpf.o --json | jq .hooks"
    )]
    Check(check::CheckArgs),
    /// Run one hook of a policy on the engine and print its outputs (no kernel needed).
    ///
    /// The context starts from sane defaults: a nice-0 task (weight 100) in task slot 0 on CPU
    /// 0 of 4, now_ns 1 s, runnable since now, no hints, tenant_nr_runnable 1, slices 100 µs to
    /// 50 ms, park bound 100 ms, outputs at the host's defaults (key = now_ns, slice_ns 20 ms,
    /// target_cpu -1, verdict RUN, park_until_ns 0); abi_version, ctx_size and hook are set
    /// automatically. --ctx overrides fields.
    ///
    /// Exit status: 0 ran, 1 policy rejected or the call failed, 2 usage error.
    #[command(
        after_help = "Examples:\n  upsched call example:fifo enqueue --ctx 'now_ns=5000000,runnable_ns=1000'\n  upsched call faas.bpf.o enqueue --ctx 'hints=1:0:0' --json\n  upsched call policy.bpf.o enqueue --ctx 'hints[3]=123' --kfunc scx_bpf_dsq_nr_queued=4"
    )]
    Call(call::CallArgs),
    /// Simulate a scenario (TOML or rt-app JSON) under one or more policies.
    ///
    /// Prints a summary per policy: CPU shares, runnable-wait percentiles, switches,
    /// migrations, spin time, utilisation, fairness. The same scenario and seed always give the
    /// same numbers. The format is documented in docs/simulator.md.
    ///
    /// Exit status: 0 ran, 1 a policy broke an invariant, 2 bad scenario or usage.
    #[command(
        after_help = "Examples:\n  upsched sim examples/cpu-weights.toml --policy linux-eevdf --policy upsched-default\n  upsched sim examples/mm1.toml --policy fifo --json | jq '.runs[0].totals.wait'\n  upsched sim examples/interactive.toml --out results/"
    )]
    Sim(sim::SimArgs),
    /// Run a scenario over a grid: one parameter × policies × seeds, on all cores.
    ///
    /// Every run is deterministic (same scenario, policy and seed: same numbers), so the runs
    /// go in parallel threads; the CSV has one row per run in grid order and the chosen
    /// metrics, and the SVG plots one metric against the parameter, one line per policy (mean
    /// over the seeds, min-max band). Every argument and every scenario of the grid is checked
    /// before anything runs. The parameter is one of the built-in FaaS scenario's
    /// (chains, rate, cpus, spin, pollers, ...) or the dotted path of a value in a TOML
    /// scenario (machine.cpus, arrival.NAME.rate, task.0.count, duration).
    ///
    /// Exit status: 0 ran, 1 a run failed (a policy broke an invariant), 2 bad arguments or
    /// scenario.
    #[command(
        after_help = "Examples:\n  upsched sweep faas:duration=20s --param chains=0..50:5 --policy linux-eevdf --policy example:faas --plot idle_ratio\n  upsched sweep examples/mm1.toml --param arrival.0.rate=100,300,500,700,900 --policy fifo --metric wait_p99_ms\n  upsched sweep examples/cpu-weights.toml --param machine.cpus=1,2,4 --seeds 1 --metric fairness"
    )]
    Sweep(sweep::SweepArgs),
    /// The simulator held against a real run of the same scenario (docs/fidelity.md).
    Fidelity {
        #[command(subcommand)]
        action: fidelity::FidelityAction,
    },
    /// The FaaS chain workload with real processes (docs/faas.md).
    Faas {
        #[command(subcommand)]
        action: faas::FaasAction,
    },
    /// Internal: one process of `faas run`'s workload.
    #[command(hide = true)]
    FaasChild(faas::ChildArgs),
    /// Show the host scheduler and two tenant policies at work on a real kernel.
    ///
    /// Goes through the broker as a deployment would: as root it creates two cgroups
    /// (/sys/fs/cgroup/upsched-demo/{batch, interactive}) with a mixed workload (CPU hogs; a
    /// sleeping/waking task plus a hog), delegates them to the unprivileged user upsched-demo,
    /// grants that user what the policies need and starts upschedd (files in /run/upsched-demo,
    /// pins in /sys/fs/bpf/upsched-demo). Then upsched-demo, not root, runs `upsched load` of
    /// wfq (batch, level 1) and prio (interactive, level 2) while the work runs (the first load
    /// makes the daemon load the host scheduler), `upsched stats` every second (CPU share,
    /// enqueues and dispatches per second, longest wait, parks, clamps), `upsched replace` of
    /// batch's wfq by rr under load (no call may reach a default stub), and `upsched unload`
    /// of both. Root then stops the daemon and runs `upschedd --unload` (sched_ext state enabled
    /// -> disabled, no pin left), removes the cgroups and prints a summary. Ctrl-C cleans up too.
    ///
    /// Where it runs: as root on a kernel with sched_ext, on this machine, with upschedd beside
    /// this binary and the user upsched-demo existing (`useradd --system --user-group
    /// upsched-demo`). Anywhere else it boots the test VM (QEMU software emulation, Debian
    /// sid's sched_ext kernel, downloaded and cached on first use; see docs/vm-harness.md) with
    /// static upsched and upschedd in its initramfs, creates the user there, runs `upsched demo
    /// --here` in the guest and streams its output. Outside a source checkout the VM needs both
    /// binaries to be static and side by side (or the workspace to build them).
    ///
    /// Exit status: 0 the demo ran and looked right, 1 it ran but failed (host stopped, a
    /// policy ejected or never ran, a call reached a default stub, a request refused, unload
    /// incomplete), 2 it could not start (not root, no sched_ext with --here, another scheduler
    /// active, no cgroup2, no demo user, no upschedd, no QEMU), 3 the VM crashed or timed out,
    /// 130 interrupted by Ctrl-C (after cleaning up).
    #[command(
        after_help = "Examples:\n  upsched demo                 # here if possible, else in the VM\n  upsched demo --vm --seconds 12\n  sudo upsched demo --here"
    )]
    Demo(demo::DemoArgs),
    /// Internal: one process of the demo's workload.
    #[command(hide = true)]
    DemoWorker(demo::WorkerArgs),
    /// Ask the broker daemon (upschedd) about the host scheduler.
    ///
    /// Exit status: 0 answered, 1 the daemon refused, 2 no daemon answers (the message says how
    /// to start one).
    #[command(
        after_help = "Examples:\n  upsched host status\n  upsched host status --json | jq .sched_ext_state"
    )]
    Host {
        #[command(subcommand)]
        action: broker::HostAction,
    },
    /// Ask the broker daemon (upschedd) what you are granted (docs/grants.md).
    ///
    /// Exit status: 0 answered, 1 the daemon refused, 2 no daemon answers (the message says how
    /// to start one).
    #[command(
        after_help = "Examples:\n  upsched grants show\n  upsched grants show --json | jq '.grants[].capabilities'"
    )]
    Grants {
        #[command(subcommand)]
        action: broker::GrantsAction,
    },
    /// Read scheduler traces recorded on a real machine (`perf sched`, `trace-cmd`).
    Trace {
        #[command(subcommand)]
        action: trace::TraceAction,
    },
    /// Load a policy as a tenant through the broker daemon (upschedd), within your grant.
    ///
    /// The daemon admits the object (the checks of `upsched check`), compares what it needs
    /// and the tenant's parameters with your grant (docs/grants.md), and attaches it; a
    /// refusal names every missing capability and exceeded bound, a kernel verifier rejection
    /// carries the kernel's log. Exit status: 0 loaded, 1 refused, 2 no daemon answers (the
    /// message says how to start one) or the policy cannot be read.
    #[command(
        after_help = "Examples:\n  upsched load example:fifo --cgroup /sys/fs/cgroup/tenants/me/batch --level 1\n  upsched load my.bpf.o --cgroup /sys/fs/cgroup/tenants/me/web --weight 200 --name web --json"
    )]
    Load(broker::LoadCommand),
    /// Swap one of your tenants' policy (root: anyone's) for another, atomically.
    ///
    /// The daemon admits the new object and judges it against your grant as a load of it onto
    /// the tenant's cgroup, level, weight and bounds would be (the tenant counted once); the
    /// host attaches it before it detaches the old one, so that every call of the tenant's tasks
    /// reaches one of the two policies. The tenant keeps its slot, members and statistics.
    /// A refusal or failure leaves the old policy in place. Exit status: 0 replaced, 1 refused
    /// or no such tenant, 2 no daemon answers or the policy cannot be read.
    #[command(
        after_help = "Examples:\n  upsched replace web example:wfq\n  upsched replace web my.bpf.o --json"
    )]
    Replace(broker::ReplaceCommand),
    /// Detach one of your tenants (root: any); its tasks go back to the default class.
    ///
    /// Exit status: 0 unloaded, 1 refused or no such tenant, 2 no daemon answers.
    #[command(after_help = "Examples:\n  upsched unload web")]
    Unload(broker::TenantCommand),
    /// List your tenants (root: all), as the broker daemon keeps them.
    ///
    /// Exit status: 0 answered, 1 refused, 2 no daemon answers.
    #[command(
        after_help = "Examples:\n  upsched list\n  upsched list --json | jq '.tenants[].name'"
    )]
    List(broker::DaemonArgs),
    /// Statistics of your tenants (root: all), or of one, from the host scheduler.
    ///
    /// Exit status: 0 answered, 1 refused or no such tenant, 2 no daemon answers.
    #[command(after_help = "Examples:\n  upsched stats\n  upsched stats web --json")]
    Stats(broker::StatsCommand),
    /// A live view of your tenants (root: all) from the broker daemon's statistics.
    ///
    /// One line per tenant: level, weight, CPU share (its CPU time over the last interval, in
    /// percent of one CPU), tasks and runnable tasks, the longest wait, parks, clamps and
    /// ejections; then the last tenants the host's watchdog ejected, with why. Refreshes every
    /// --interval; q, Esc or Ctrl-C quit. When stdout is not a terminal, or with --once, it
    /// prints one frame as plain text (two samples one interval apart), and with --json that
    /// sample as JSON.
    ///
    /// Exit status: 0 answered (or quit), 1 refused, 2 no daemon answers.
    #[command(
        after_help = "Examples:\n  upsched top\n  upsched top --interval 500ms\n  upsched top --once\n  upsched top --json | jq '.tenants[].cpu_share'"
    )]
    Top(top::TopCommand),
    /// The newest records of the broker daemon's audit log (root only).
    ///
    /// One line per record: time, uid and pid of the caller, operation, tenant, result and
    /// reason (docs/broker.md, "Audit"); --json prints the daemon's answer.
    ///
    /// Exit status: 0 answered, 1 refused (not root), 2 no daemon answers.
    #[command(
        after_help = "Examples:\n  sudo upsched audit\n  sudo upsched audit --tail 200 --json | jq '.records[] | select(.result != \"ok\")'"
    )]
    Audit(broker::AuditCommand),
    /// Post a thread's hint words into its tenant's hint map (docs/hints.md).
    ///
    /// The daemon hands out the tenant's map to its owner and to processes in its cgroup; the
    /// thread must be yours and a member of the tenant. Exit status: 0 posted, 1 refused, 2 no
    /// daemon answers or the map cannot be mapped.
    #[command(
        after_help = "Examples:\n  upsched hint web --tid 4242 --sleepy 7\n  upsched hint web --tid 4242 --pending 1\n  upsched hint web --tid 4242 --clear --slow\n  upsched hint web --tid 4242 --show --json"
    )]
    Hint(hint::HintCommand),
    /// Host agent of guest/host hints: post a VM's vCPU threads' words from its guest's reports.
    ///
    /// Holds the VM's tenant hint map (from the daemon), finds the VMM's vCPU threads by their
    /// names (`CPU n/KVM`, `CPU n/TCG`, `fc_vcpu n` in /proc/PID/task/*/comm), reads the
    /// guest's reports from the VMM's channel socket (docs/guest-host.md) and writes the words
    /// of that VMM's vCPU threads only; malformed reports, vCPUs the VMM does not have, replays
    /// and floods are counted and change nothing. Load the tenant with `example:vm`.
    ///
    /// Exit status: 0 stopped (duration, signal, channel closed or VMM gone), 1 refused by the
    /// daemon, 2 no daemon, no VMM or no channel.
    #[command(
        after_help = "Examples:\n  upsched vm-agent --tenant vms --vmm-pid $(pidof qemu-system-x86_64) --channel /run/vm0/upsched.sock\n  upsched vm-agent --tenant vms --vmm-pid 4242 --channel vm0.sock --halt-poll 50us --park 10ms --duration 60s --json"
    )]
    VmAgent(vm_agent::VmAgentCommand),
    /// Guest agent of guest/host hints: report this guest's per-CPU state to the host.
    ///
    /// Runs inside a Linux guest: reads each CPU's busy and idle time from /proc/stat every
    /// --interval and sends a vCPU's report on the channel when its state changes (and one
    /// vCPU's in turn every 100 ms), at a rate the host's limit admits (docs/guest-host.md).
    ///
    /// Exit status: 0 stopped after --duration, 2 no channel or bad arguments.
    #[command(
        after_help = "Examples:\n  upsched guest-agent --channel /dev/virtio-ports/upsched\n  upsched guest-agent --channel /dev/vport0p1 --interval 5ms --latency-cpus 0"
    )]
    GuestAgent(guest_agent::GuestAgentCommand),
    /// Internal: a "VMM" for the guest/host tests (vCPU threads that idle-poll and serve
    /// requests, and a guest side on a channel socket).
    #[command(hide = true)]
    VmmEmulator(guest_agent::VmmEmulatorCommand),
    /// List or export the example policies built into this binary.
    Examples {
        #[command(subcommand)]
        action: ExamplesAction,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  upsched completions bash > /etc/bash_completion.d/upsched\n  upsched completions zsh > ~/.zfunc/_upsched"
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), or write one per subcommand into DIR.
    #[command(
        after_help = "Examples:\n  upsched man | man -l -\n  upsched man --dir /usr/local/share/man/man1"
    )]
    Man {
        /// Write upsched.1, upsched-sim.1, ... into DIR instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// The kit for writing policies: headers, a template policy and a Makefile.
    #[command(
        after_help = "Examples:\n  upsched sdk export my-policy && make -C my-policy && upsched check my-policy/policy.bpf.o"
    )]
    Sdk {
        #[command(subcommand)]
        action: sdk::SdkAction,
    },
}

#[derive(Subcommand)]
enum ExamplesAction {
    /// Print the example policies' names.
    List {
        /// Print a JSON array of {"name", "bytes"} instead of one name a line.
        #[arg(long)]
        json: bool,
    },
    /// Write every example policy as DIR/<name>.bpf.o.
    Export { dir: PathBuf },
}

fn main() -> ExitCode {
    // A closed stdout (`upsched ... | head -1`) ends the process quietly by SIGPIPE, as it
    // ends perf, bpftool and other Unix tools (status 141 in a shell), instead of a panic in
    // the first print after the reader left. The Rust runtime ignores SIGPIPE; this restores
    // the default before anything, clap's help included, is printed.
    // SAFETY: setting a signal's disposition to its default installs no handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if error.use_stderr() && std::env::args_os().any(|a| a == "--json") => {
            let command = std::env::args().nth(1).unwrap_or_default();
            let message = error.render().to_string();
            failure::report(&command, 2, message.trim_end(), true);
            return ExitCode::from(2);
        }
        Err(error) => error.exit(),
    };
    if let Command::Demo(_) = cli.command {
        // The demo holds a scheduler, cgroups and workers: it must clean up, so a closed
        // stdout only loses its output (`demo::say!`), it does not end the process.
        // SAFETY: as above.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
    }
    let (name, json) = cli.command.name_and_json();
    let result = match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Call(args) => call::run(&args),
        Command::Sim(args) => sim::run(&args),
        Command::Sweep(args) => sweep::run(&args),
        Command::Fidelity { action } => fidelity::run(&action),
        Command::Faas { action } => faas::run(&action),
        Command::FaasChild(args) => faas::child(&args),
        Command::Demo(args) => demo::run(&args),
        Command::DemoWorker(args) => demo::worker(&args),
        Command::Examples { action } => examples(action),
        Command::Host { action } => broker::host(&action),
        Command::Grants { action } => broker::grants(&action),
        Command::Load(command) => broker::load(&command),
        Command::Replace(command) => broker::replace(&command),
        Command::Unload(command) => broker::unload(&command),
        Command::List(args) => broker::list(&args),
        Command::Stats(command) => broker::stats(&command),
        Command::Top(command) => top::run(&command),
        Command::Audit(command) => broker::audit(&command),
        Command::Hint(command) => hint::run(&command),
        Command::VmAgent(command) => vm_agent::run(&command),
        Command::GuestAgent(command) => guest_agent::guest_agent(&command),
        Command::VmmEmulator(command) => guest_agent::vmm_emulator(&command),
        Command::Sdk { action } => sdk::run(&action),
        Command::Trace { action } => trace::run(&action),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "upsched",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir } => man(dir.as_deref()),
    };
    result.unwrap_or_else(|error| {
        let (status, message) = failure::status_and_message(&error);
        failure::report(name, status, &message, json);
        ExitCode::from(status)
    })
}

impl Command {
    /// The subcommand's name and whether it prints JSON (then its errors are JSON too).
    fn name_and_json(&self) -> (&'static str, bool) {
        match self {
            Command::Check(args) => ("check", args.json),
            Command::Call(args) => ("call", args.json),
            Command::Sim(args) => ("sim", args.json),
            Command::Sweep(args) => ("sweep", args.json()),
            Command::Fidelity { .. } => ("fidelity", false),
            Command::Faas { action } => ("faas", action.json()),
            Command::FaasChild(_) => ("faas-child", false),
            Command::Demo(_) => ("demo", false),
            Command::DemoWorker(_) => ("demo-worker", false),
            Command::Sdk { .. } => ("sdk", false),
            Command::Trace { action } => ("trace", action.json()),
            Command::Host { action } => ("host", action.json()),
            Command::Grants { action } => ("grants", action.json()),
            Command::Load(command) => ("load", command.daemon.json),
            Command::Replace(command) => ("replace", command.daemon.json),
            Command::Unload(command) => ("unload", command.daemon.json),
            Command::List(args) => ("list", args.json),
            Command::Stats(command) => ("stats", command.daemon.json),
            Command::Top(command) => ("top", command.daemon.json),
            Command::Audit(command) => ("audit", command.daemon.json),
            Command::Hint(command) => ("hint", command.daemon.json),
            Command::VmAgent(command) => ("vm-agent", command.daemon.json),
            Command::GuestAgent(command) => ("guest-agent", command.json),
            Command::VmmEmulator(_) => ("vmm-emulator", false),
            Command::Completions { .. } => ("completions", false),
            Command::Man { .. } => ("man", false),
            Command::Examples { action } => (
                "examples",
                matches!(action, ExamplesAction::List { json: true }),
            ),
        }
    }
}

fn man(dir: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let command = Cli::command();
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
            clap_mangen::generate_to(command, dir)
                .map_err(|e| anyhow::anyhow!("cannot write into {}: {e}", dir.display()))?;
        }
        None => clap_mangen::Man::new(command).render(&mut std::io::stdout())?,
    }
    Ok(ExitCode::SUCCESS)
}

fn examples(action: ExamplesAction) -> anyhow::Result<ExitCode> {
    match action {
        ExamplesAction::List { json: false } => {
            for name in upsched_policies::names() {
                println!("{name}");
            }
        }
        ExamplesAction::List { json: true } => {
            let list: Vec<_> = upsched_policies::POLICIES
                .iter()
                .map(|(name, bytes)| serde_json::json!({ "name": name, "bytes": bytes.len() }))
                .collect();
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        ExamplesAction::Export { dir } => {
            std::fs::create_dir_all(&dir)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
            for (name, bytes) in upsched_policies::POLICIES {
                let path = dir.join(format!("{name}.bpf.o"));
                std::fs::write(&path, bytes)
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
                println!("{}", path.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
