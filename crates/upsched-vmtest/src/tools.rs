//! Finding host tools and running them with error messages a user can act on.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::error::HarnessError;

/// Directories searched after `$PATH`: `bpftool` and friends live in `/usr/sbin`, which is not on
/// a normal user's `$PATH` on Debian.
const EXTRA_TOOL_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// Locates an executable by name, or explains how to install it.
pub fn find_tool(name: &str, install_hint: &str) -> Result<PathBuf, HarnessError> {
    let path_dirs = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(EXTRA_TOOL_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| HarnessError::MissingTool {
            tool: name.to_string(),
            install_hint: install_hint.to_string(),
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Runs a command to completion and turns a non-zero exit into an error that shows the command
/// line and the end of its stderr.
pub fn run_checked(command: &mut Command) -> anyhow::Result<Output> {
    let description = describe(command);
    let output = command
        .output()
        .map_err(|err| anyhow::anyhow!("could not start `{description}`: {err}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        anyhow::bail!(
            "`{description}` failed ({}):\n{}",
            output.status,
            tail_lines(&stderr, 20)
        );
    }
    Ok(output)
}

/// A shell-like rendering of a command for messages.
pub fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last `count` lines of `text`.
pub fn tail_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(count);
    lines[start..].join("\n")
}

/// Removes terminal escape sequences and control characters from guest console text before it
/// is shown: SeaBIOS sends "clear screen" sequences over the serial line, which would wipe the
/// user's terminal when a log tail is printed.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI: ESC [ parameters... final byte in '@'..='~'; otherwise ESC + one char.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for next in chars.by_ref() {
                        if ('@'..='~').contains(&next) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Progress lines for long steps go to stderr so stdout stays machine-readable (paths, results).
pub fn progress(message: impl std::fmt::Display) {
    eprintln!("upsched-vmtest: {message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_lines_keeps_the_end() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail_lines("a", 5), "a");
        assert_eq!(tail_lines("", 5), "");
    }

    #[test]
    fn escape_sequences_are_removed() {
        assert_eq!(
            printable("\u{1b}c\u{1b}[?7l\u{1b}[2JUPSCHED-BOOTED x\r\n\tok\u{7}"),
            "UPSCHED-BOOTED x\n\tok"
        );
        assert_eq!(printable("plain"), "plain");
        assert_eq!(printable("dangling\u{1b}"), "dangling");
    }

    #[test]
    fn missing_tool_says_how_to_install() {
        let err = find_tool("surely-not-a-real-tool-name", "apt-get install nothing").unwrap_err();
        assert_eq!(
            err.to_string(),
            "surely-not-a-real-tool-name not found: apt-get install nothing"
        );
    }
}
