//! What the CLI's integration tests share: running the `upsched` binary and reading its output.

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs the `upsched` binary built for these tests with `args`.
pub fn upsched(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_upsched"))
        .args(args)
        .output()
        .expect("upsched runs")
}

/// Output bytes as text (lossy: a test wants to see whatever was printed).
#[allow(dead_code)] // not every test file reads output as text
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A fresh directory of this test process for files a test writes; the test removes it.
#[allow(dead_code)] // not every test file writes files
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("upsched-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// Asserts that `out`, the output of `upsched ARGS`, is a usage error (exit status 2) whose
/// message names `expected`.
#[allow(dead_code)] // not every test file checks refusals this way
pub fn assert_refused(args: &[&str], out: &Output, expected: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stderr.contains(expected), "{args:?}: {stderr}");
}
