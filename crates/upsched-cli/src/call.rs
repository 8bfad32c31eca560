//! `upsched call`: runs one hook of a policy on a fresh instance and prints the outputs, so
//! policy authors can poke a policy without a kernel.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use serde::Serialize;
use upsched_abi::{CTX_SIZE, FIELDS, UpschedCtx};
use upsched_policy::engine::{EngineError, ctx_from_bytes, ctx_to_bytes, sample_ctx};
use upsched_policy::{EngineOptions, FixedKfuncs, LoadedPolicy};

use crate::engine_arg::EngineArg;
use crate::failure::failure;

#[derive(Args)]
// A negative number reaches the value parser, which says what is wrong with it (clap would
// take it for an option and suggest `-- -1`).
#[command(allow_negative_numbers = true)]
pub struct CallArgs {
    /// Policy object (.bpf.o), or example:NAME for a built-in example policy.
    policy: String,
    /// Hook to call, by its name in the ABI (docs/abi.md; an unknown name lists them all).
    hook: String,
    /// Context fields to set, comma-separated: `field=value`. Numbers are decimal or 0x hex,
    /// negative for signed fields; hints as `hints=1:2:3` (from word 0, the rest 0) or
    /// `hints[2]=5`; `verdict` also takes run, park or preempt.
    #[arg(long, value_name = "FIELDS", default_value = "")]
    ctx: String,
    /// Answer of a kfunc, `NAME=VALUE` (repeatable); kfuncs not given answer 0.
    #[arg(long = "kfunc", value_name = "NAME=VALUE")]
    kfuncs: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    engine: EngineArg,
}

#[derive(Serialize)]
struct Outputs {
    key: u64,
    slice_ns: u64,
    target_cpu: i32,
    verdict: String,
    park_until_ns: u64,
}

#[derive(Serialize)]
struct CallReport {
    policy: String,
    hook: String,
    /// Whether the policy implements the hook; when not, the outputs are the host's defaults.
    implemented: bool,
    outputs: Outputs,
    /// Output fields the hook changed from their pre-filled defaults.
    changed: Vec<&'static str>,
}

/// Runs the command. `Err` is a usage error, which main maps to exit status 2; a rejected
/// object or a failed call prints its reason and returns exit status 1.
pub fn run(args: &CallArgs) -> anyhow::Result<ExitCode> {
    let bytes = read_policy(&args.policy)?;
    let hook = upsched_abi::hook(&args.hook).ok_or_else(|| {
        let hooks: Vec<_> = upsched_abi::HOOKS.iter().map(|h| h.name).collect();
        anyhow!("unknown hook `{}` (hooks: {})", args.hook, hooks.join(", "))
    })?;
    let mut ctx = sample_ctx(hook);
    apply_assignments(&mut ctx, &args.ctx)?;
    let mut kfuncs = FixedKfuncs::default();
    for kfunc in upsched_abi::KFUNCS {
        kfuncs.answers.insert(kfunc.name, 0);
    }
    for assignment in &args.kfuncs {
        let (name, value) = assignment
            .split_once('=')
            .ok_or_else(|| anyhow!("--kfunc `{assignment}`: expected NAME=VALUE"))?;
        let kfunc = upsched_abi::kfunc(name.trim())
            .ok_or_else(|| anyhow!("--kfunc: `{name}` is not a kfunc policies may call"))?;
        // A kfunc's answer is a 64-bit register: negative numbers are its two's complement.
        let value = parse_number(value.trim(), 8, true)
            .or_else(|_| parse_number(value.trim(), 8, false))
            .with_context(|| format!("--kfunc {}", kfunc.name))?;
        kfuncs.answers.insert(kfunc.name, value);
    }

    let options = EngineOptions {
        mode: args.engine.mode(),
        ..EngineOptions::default()
    };
    let policy = match LoadedPolicy::load_with_options(&bytes, &options) {
        Ok(policy) => policy,
        Err(EngineError::Rejected { problems }) => {
            let problems: Vec<String> = problems.iter().map(|p| format!("  error: {p}")).collect();
            return Err(failure(
                1,
                format!("{} is rejected:\n{}", args.policy, problems.join("\n")),
            ));
        }
        Err(error) => return Err(failure(1, format!("cannot load {}: {error}", args.policy))),
    };
    let before = ctx;
    policy
        .instantiate()
        .call(hook.name, &mut ctx, &mut kfuncs)
        .map_err(|error| failure(1, error))?;
    let changed = [
        ("key", before.key != ctx.key),
        ("slice_ns", before.slice_ns != ctx.slice_ns),
        ("target_cpu", before.target_cpu != ctx.target_cpu),
        ("verdict", before.verdict != ctx.verdict),
        ("park_until_ns", before.park_until_ns != ctx.park_until_ns),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
    .collect();
    let report = CallReport {
        policy: policy.name().to_string(),
        hook: hook.name.to_string(),
        implemented: policy.implements(hook.name),
        outputs: Outputs {
            key: ctx.key,
            slice_ns: ctx.slice_ns,
            target_cpu: ctx.target_cpu,
            verdict: verdict_name(ctx.verdict),
            park_until_ns: ctx.park_until_ns,
        },
        changed,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn read_policy(policy: &str) -> anyhow::Result<Vec<u8>> {
    if let Some(name) = policy.strip_prefix("example:") {
        let names: Vec<_> = upsched_policies::names().collect();
        return upsched_policies::policy(name)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| {
                anyhow!(
                    "no example policy `{name}` (examples: {})",
                    names.join(", ")
                )
            });
    }
    std::fs::read(Path::new(policy)).with_context(|| format!("cannot read {policy}"))
}

fn verdict_name(verdict: u32) -> String {
    match verdict {
        upsched_abi::VERDICT_RUN => "RUN".into(),
        upsched_abi::VERDICT_PARK => "PARK".into(),
        upsched_abi::VERDICT_PREEMPT => "PREEMPT".into(),
        other => format!("{other} (unknown: the host treats it as RUN)"),
    }
}

fn render(report: &CallReport) -> String {
    let mut out = String::new();
    let _ = write!(out, "{} {}", report.policy, report.hook);
    if !report.implemented {
        out.push_str(" (not implemented: the host's defaults stand)");
    }
    out.push('\n');
    let o = &report.outputs;
    let target = if o.target_cpu == upsched_abi::CPU_ANY {
        format!("{} (any)", o.target_cpu)
    } else {
        o.target_cpu.to_string()
    };
    for (name, value) in [
        ("key", o.key.to_string()),
        ("slice_ns", o.slice_ns.to_string()),
        ("target_cpu", target),
        ("verdict", o.verdict.clone()),
        ("park_until_ns", o.park_until_ns.to_string()),
    ] {
        let mark = if report.changed.contains(&name) {
            "  (changed)"
        } else {
            ""
        };
        let _ = writeln!(out, "  {name:<14}{value}{mark}");
    }
    out
}

/// Fields the command sets itself.
const AUTOMATIC: &[&str] = &["abi_version", "ctx_size", "hook"];

/// Applies `field=value,...` to `ctx`.
fn apply_assignments(ctx: &mut UpschedCtx, assignments: &str) -> anyhow::Result<()> {
    let mut bytes = vec![0u8; CTX_SIZE];
    ctx_to_bytes(ctx, &mut bytes);
    for assignment in assignments.split(',').map(str::trim) {
        if assignment.is_empty() {
            continue;
        }
        let (target, value) = assignment
            .split_once('=')
            .ok_or_else(|| anyhow!("--ctx `{assignment}`: expected field=value"))?;
        let (name, index) = split_index(target.trim())?;
        let field = upsched_abi::field(name).ok_or_else(|| {
            let names: Vec<_> = FIELDS
                .iter()
                .map(|f| f.name)
                .filter(|n| !AUTOMATIC.contains(n))
                .collect();
            anyhow!(
                "--ctx: unknown field `{name}` (fields: {})",
                names.join(", ")
            )
        })?;
        if AUTOMATIC.contains(&field.name) {
            bail!("--ctx: `{}` is set automatically", field.name);
        }
        let element_size = field.size / field.count;
        let value = value.trim();
        let values: Vec<(usize, u64)> = match index {
            Some(index) => {
                if field.count == 1 || index >= field.count {
                    bail!(
                        "--ctx: `{name}[{index}]`: {name} has {} element(s)",
                        field.count
                    );
                }
                vec![(index, parse_value(field, value, element_size)?)]
            }
            None if field.count > 1 => {
                let words: Vec<&str> = value.split(':').collect();
                if words.len() > field.count {
                    bail!(
                        "--ctx: `{name}` takes at most {} values, got {}",
                        field.count,
                        words.len()
                    );
                }
                let mut values = Vec::new();
                for element in 0..field.count {
                    let word = words.get(element).copied().unwrap_or("0");
                    values.push((element, parse_value(field, word, element_size)?));
                }
                values
            }
            None => vec![(0, parse_value(field, value, element_size)?)],
        };
        for (element, value) in values {
            let at = field.offset + element * element_size;
            bytes[at..at + element_size].copy_from_slice(&value.to_le_bytes()[..element_size]);
        }
    }
    *ctx = ctx_from_bytes(&bytes);
    Ok(())
}

/// `hints[2]` -> ("hints", Some(2)); `now_ns` -> ("now_ns", None).
fn split_index(target: &str) -> anyhow::Result<(&str, Option<usize>)> {
    let Some((name, rest)) = target.split_once('[') else {
        return Ok((target, None));
    };
    let index = rest
        .strip_suffix(']')
        .and_then(|i| i.trim().parse().ok())
        .ok_or_else(|| anyhow!("--ctx: `{target}`: expected name[index]"))?;
    Ok((name.trim(), Some(index)))
}

/// The abi.toml name of an integer type: `u64`, `s32`.
fn type_name(size: usize, signed: bool) -> String {
    format!("{}{}", if signed { 's' } else { 'u' }, size * 8)
}

fn parse_value(field: &upsched_abi::FieldInfo, value: &str, size: usize) -> anyhow::Result<u64> {
    let context = || format!("--ctx: field `{}`", field.name);
    if field.name == "verdict" {
        match value.to_ascii_lowercase().as_str() {
            "run" => return Ok(upsched_abi::VERDICT_RUN.into()),
            "park" => return Ok(upsched_abi::VERDICT_PARK.into()),
            "preempt" => return Ok(upsched_abi::VERDICT_PREEMPT.into()),
            _ => {}
        }
        if !value.starts_with(|c: char| c.is_ascii_digit()) {
            bail!(
                "{}: `{value}` is neither run, park, preempt nor a number",
                context()
            );
        }
    }
    parse_number(value, size, field.signed).with_context(context)
}

/// Decimal or 0x hexadecimal; negative only for a signed type (stored in two's complement at
/// `size` bytes). The value must be in the range of the type.
fn parse_number(text: &str, size: usize, signed: bool) -> anyhow::Result<u64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let digits = digits.replace('_', "");
    let magnitude = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => digits.parse::<u64>(),
    }
    .map_err(|_| anyhow!("`{text}` is not a number"))?;
    let bits = size as u32 * 8;
    let unsigned_max = u64::MAX >> (64 - bits);
    let ty = type_name(size, signed);
    let out_of_range = || {
        let (min, max) = if signed {
            (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
        } else {
            (0, unsigned_max as i128)
        };
        anyhow!("`{text}` is out of range for {ty} ({min} to {max})")
    };
    let max = if signed {
        1u64 << (bits - 1)
    } else {
        unsigned_max
    };
    match (negative, signed) {
        (true, false) => Err(out_of_range()),
        (true, true) if magnitude > max => Err(out_of_range()),
        (true, true) => Ok(magnitude.wrapping_neg() & unsigned_max),
        (false, true) if magnitude >= max => Err(out_of_range()),
        (false, _) if magnitude > unsigned_max => Err(out_of_range()),
        (false, _) => Ok(magnitude),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> UpschedCtx {
        sample_ctx(upsched_abi::hook("enqueue").unwrap())
    }

    #[test]
    fn assignments_set_fields_elements_and_arrays() {
        let mut ctx = sample();
        apply_assignments(
            &mut ctx,
            "now_ns=0x10, nice=-5, hints=1:2:3, hints[7]=9, verdict=park, target_cpu=-1",
        )
        .unwrap();
        assert_eq!(ctx.now_ns, 16);
        assert_eq!(ctx.nice, -5);
        assert_eq!(ctx.hints, [1, 2, 3, 0, 0, 0, 0, 9]);
        assert_eq!(ctx.verdict, upsched_abi::VERDICT_PARK);
        assert_eq!(ctx.target_cpu, -1);
        assert_eq!(ctx.abi_version, upsched_abi::ABI_VERSION);
    }

    #[test]
    fn bad_assignments_are_usage_errors() {
        for (input, message) in [
            ("bogus=1", "unknown field `bogus`"),
            ("hook=3", "set automatically"),
            ("nice", "expected field=value"),
            ("pid=4294967296", "out of range for u32 (0 to 4294967295)"),
            (
                "nice=-2147483649",
                "out of range for s32 (-2147483648 to 2147483647)",
            ),
            ("nice=2147483648", "out of range for s32"),
            (
                "now_ns=-5",
                "field `now_ns`: `-5` is out of range for u64 (0 to 18446744073709551615)",
            ),
            (
                "verdict=explode",
                "`explode` is neither run, park, preempt nor a number",
            ),
            ("hints[8]=1", "8 element(s)"),
            ("now_ns[0]=1", "1 element(s)"),
            ("hints=1:2:3:4:5:6:7:8:9", "at most 8"),
            ("weight=ten", "not a number"),
        ] {
            let error = apply_assignments(&mut sample(), input).unwrap_err();
            assert!(format!("{error:#}").contains(message), "{input}: {error:#}");
        }
    }
}
