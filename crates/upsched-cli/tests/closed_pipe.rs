//! Every subcommand that prints, run into a pipe whose reader is gone (`upsched ... | head -1`
//! once head has exited): the process ends quietly by SIGPIPE, as perf and bpftool do, with no
//! panic and no complaint about the pipe (a sweep's progress lines on stderr stay).

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Runs `upsched args` with stdout on a pipe whose read end is already closed; `Err` says how
/// it ended otherwise.
fn into_closed_pipe(args: &[&str]) -> Result<(), String> {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_upsched"))
        .args(args)
        .current_dir(examples_dir())
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("upsched runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let quiet = !stderr.contains("panicked") && !stderr.contains("Broken pipe");
    if out.status.signal() == Some(libc::SIGPIPE) && quiet {
        Ok(())
    } else {
        Err(format!(
            "upsched {args:?}: {}, stderr: {stderr}",
            out.status
        ))
    }
}

#[test]
fn every_printing_subcommand_ends_quietly_on_a_closed_pipe() {
    let out_dir = std::env::temp_dir().join(format!("upsched-closed-pipe-{}", std::process::id()));
    let out_dir = out_dir.to_str().unwrap();
    let basic_trace = format!(
        "{}/../upsched-trace/tests/traces/basic.perf.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    let failures: Vec<String> = [
        &["--help"][..],
        &["--version"],
        &["check", "--examples"],
        &["check", "--examples", "--json"],
        &["call", "example:fifo", "enqueue"],
        &["call", "example:fifo", "enqueue", "--json"],
        &["sim", "cpu-weights.toml", "--duration", "100ms"],
        &["sim", "cpu-weights.toml", "--duration", "100ms", "--json"],
        &[
            "sweep",
            "cpu-weights.toml",
            "--param",
            "machine.cpus=1,2",
            "--seeds",
            "1",
            "--duration",
            "50ms",
            "--out",
            out_dir,
        ],
        &[
            "sweep",
            "cpu-weights.toml",
            "--param",
            "x=1",
            "--metric",
            "help",
        ],
        &["examples", "list"],
        &["examples", "export", out_dir],
        &["examples", "list", "--json"],
        &["completions", "bash"],
        &["man"],
        &["sdk", "export", &format!("{out_dir}/sdk")],
        &["trace", "stats", &basic_trace],
        &["trace", "stats", &basic_trace, "--json"],
        &["trace", "import", &basic_trace],
        &["trace", "replay", &basic_trace],
    ]
    .iter()
    .filter_map(|args| into_closed_pipe(args).err())
    .collect();
    let _ = std::fs::remove_dir_all(out_dir);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
