//! How a subcommand fails: one error path for all of them, printed by `main` as a line on
//! stderr or, under `--json`, as the one JSON document on stdout (shape in docs/cli.md).

use std::fmt;

use serde::Serialize;

/// An error that ends the command with `status`. Errors of any other type end it with 2 (a
/// usage error or unreadable input).
#[derive(Debug)]
pub struct Failure {
    pub status: u8,
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Ends the command with `status` and `message`.
pub fn failure(status: u8, message: impl fmt::Display) -> anyhow::Error {
    Failure {
        status,
        message: message.to_string(),
    }
    .into()
}

/// The error object of `--json`: `{"error": {"command", "message", "exit_status"}}`.
#[derive(Serialize)]
struct ErrorDocument<'a> {
    error: ErrorObject<'a>,
}

#[derive(Serialize)]
struct ErrorObject<'a> {
    /// The subcommand (`sim`, `check`, ...), empty when none could be parsed.
    command: &'a str,
    message: &'a str,
    exit_status: u8,
}

/// Prints the error of `command` as text on stderr or as the error object on stdout.
pub fn report(command: &str, status: u8, message: &str, json: bool) {
    if json {
        let document = ErrorDocument {
            error: ErrorObject {
                command,
                message,
                exit_status: status,
            },
        };
        if let Ok(text) = serde_json::to_string_pretty(&document) {
            println!("{text}");
        }
    } else if command.is_empty() {
        eprintln!("upsched: {message}");
    } else {
        eprintln!("upsched {command}: {message}");
    }
}

/// The status and message of an error a command returned.
pub fn status_and_message(error: &anyhow::Error) -> (u8, String) {
    match error.downcast_ref::<Failure>() {
        Some(failure) => (failure.status, failure.message.clone()),
        None => (2, format!("{error:#}")),
    }
}
