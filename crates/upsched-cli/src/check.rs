//! `upsched check`: human and JSON output of the admission checks.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;
use upsched_policy::{CheckReport, EngineStatus, Limits};

#[derive(Args)]
// A negative number reaches the value parser, which says what is wrong with it (clap would
// take it for an option and suggest `-- -1`).
#[command(allow_negative_numbers = true)]
pub struct CheckArgs {
    /// Policy objects (.bpf.o) to check; `example:NAME` names a built-in example policy.
    files: Vec<PathBuf>,
    /// Also check every example policy built into this binary.
    #[arg(long)]
    examples: bool,
    /// Print JSON (an object for one input, an array for several) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Most instructions allowed in one linked hook program.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_insns_per_hook)]
    max_insns: usize,
    /// Most bytes of global data allowed.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_globals_bytes)]
    max_globals: u64,
}

#[derive(Serialize)]
struct FileReport {
    file: String,
    #[serde(flatten)]
    report: CheckReport,
}

pub fn run(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    if args.files.is_empty() && !args.examples {
        bail!(
            "nothing to check: give policy objects (.bpf.o) or --examples (see upsched check --help)"
        );
    }
    let limits = Limits {
        max_insns_per_hook: args.max_insns,
        max_globals_bytes: args.max_globals,
    };
    let mut inputs: Vec<(String, Vec<u8>)> = Vec::new();
    for path in &args.files {
        let name = path.display().to_string();
        let bytes = match name.strip_prefix("example:") {
            Some(example) => upsched_policies::policy(example)
                .with_context(|| {
                    let known: Vec<_> = upsched_policies::names().collect();
                    format!(
                        "no example policy `{example}` (examples: {})",
                        known.join(", ")
                    )
                })?
                .to_vec(),
            None => std::fs::read(path).with_context(|| format!("cannot read {name}"))?,
        };
        inputs.push((name, bytes));
    }
    if args.examples {
        for (name, bytes) in upsched_policies::POLICIES {
            inputs.push((format!("example:{name}"), bytes.to_vec()));
        }
    }

    let reports: Vec<FileReport> = inputs
        .into_iter()
        .map(|(file, bytes)| FileReport {
            file,
            report: upsched_policy::check(&bytes, &limits),
        })
        .collect();
    let all_accepted = reports.iter().all(|r| r.report.accepted);
    if args.json {
        let json = if reports.len() == 1 {
            serde_json::to_string_pretty(&reports[0])
        } else {
            serde_json::to_string_pretty(&reports)
        }?;
        println!("{json}");
    } else {
        for report in &reports {
            print!("{}", render(report));
        }
    }
    Ok(if all_accepted {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}

fn render(file_report: &FileReport) -> String {
    let r = &file_report.report;
    let mut out = String::new();
    let verdict = if r.accepted { "ACCEPTED" } else { "REJECTED" };
    let _ = write!(out, "{}: {verdict}", file_report.file);
    if let Some(policy) = &r.policy {
        let _ = write!(out, "  policy \"{policy}\"");
    }
    if let Some(abi) = r.abi_version {
        let _ = write!(out, ", ABI {abi}");
    }
    if let Some(license) = &r.license {
        let _ = write!(out, ", license {license}");
    }
    out.push('\n');
    for problem in &r.problems {
        let _ = writeln!(out, "  error[{}]: {problem}", kind_name(problem));
    }
    let engine = match r.engine.status {
        EngineStatus::Accepted => "accepted",
        EngineStatus::Rejected => "rejected",
        EngineStatus::NotRun => "not run",
    };
    let _ = writeln!(out, "  engine verifier: {engine}");
    if !r.hooks.is_empty() {
        out.push_str("  hooks:\n");
    }
    for hook in &r.hooks {
        let _ = writeln!(
            out,
            "    {:<11} {} insns ({} linked, {} reachable)  [{} in {}]",
            hook.hook,
            hook.insns,
            hook.linked_insns,
            hook.reachable_insns,
            hook.function,
            hook.section
        );
        let _ = writeln!(out, "      reads:       {}", list(&hook.reads));
        let _ = writeln!(out, "      writes:      {}", list(&hook.writes));
        if !hook.kfuncs.is_empty() {
            let _ = writeln!(out, "      kfuncs:      {}", list(&hook.kfuncs));
        }
        if !hook.subprograms.is_empty() {
            let _ = writeln!(out, "      subprograms: {}", list(&hook.subprograms));
        }
    }
    if !r.globals.is_empty() || r.globals_size > 0 {
        let _ = writeln!(out, "  globals: {} bytes", r.globals_size);
        for global in &r.globals {
            let _ = writeln!(
                out,
                "    {:<24} {:>8} bytes  {}+{}",
                global.name, global.size, global.section, global.offset
            );
        }
    }
    if !r.kfuncs.is_empty() {
        let _ = writeln!(out, "  kfuncs: {}", list(&r.kfuncs));
    }
    if !r.capabilities.is_empty() {
        out.push_str("  capabilities needed:\n");
        for cap in &r.capabilities {
            let _ = writeln!(
                out,
                "    {:<16} {}  ({})",
                cap.name,
                cap.description,
                cap.needed_for.join("; ")
            );
        }
    }
    for warning in &r.warnings {
        let _ = writeln!(out, "  warning[{}]: {warning}", kind_name(warning));
    }
    out
}

fn kind_name(problem: &upsched_policy::Problem) -> String {
    serde_json::to_value(problem.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}
