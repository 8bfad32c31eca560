//! What the CLI's integration tests share: running the `upsched` binary and reading its output.

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
