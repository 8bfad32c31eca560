//! `upsched`: the command-line entry point of the project.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod check;

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
    /// List or export the example policies built into this binary.
    Examples {
        #[command(subcommand)]
        action: ExamplesAction,
    },
}

#[derive(Subcommand)]
enum ExamplesAction {
    /// Print the example policies' names.
    List,
    /// Write every example policy as DIR/<name>.bpf.o.
    Export { dir: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Examples { action } => examples(action),
    };
    result.unwrap_or_else(|error| {
        eprintln!("upsched: {error:#}");
        ExitCode::from(2)
    })
}

fn examples(action: ExamplesAction) -> anyhow::Result<ExitCode> {
    match action {
        ExamplesAction::List => {
            for name in upsched_policies::names() {
                println!("{name}");
            }
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
