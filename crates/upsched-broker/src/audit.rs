//! The audit log: one JSON line per request, accepted or refused, and per daemon event (a
//! grants reload), in `STATE_DIR/audit.jsonl` and on stderr (the journal under systemd).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// The log file's name in the state directory.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// One line of the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// RFC 3339, UTC, microseconds.
    pub time: String,
    pub uid: u32,
    pub pid: i32,
    pub operation: String,
    pub tenant: Option<String>,
    pub policy_hash: Option<String>,
    pub result: AuditResult,
    pub reason: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditResult {
    Ok,
    /// The request was not served: not permitted, malformed, not supported, a bound.
    Refused,
    /// The daemon or the kernel failed it.
    Error,
}

impl AuditRecord {
    /// A record stamped now, for no tenant and no policy.
    pub fn now(
        uid: u32,
        pid: i32,
        operation: &str,
        result: AuditResult,
        reason: Option<String>,
    ) -> Self {
        AuditRecord {
            time: humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
            uid,
            pid,
            operation: operation.to_string(),
            tenant: None,
            policy_hash: None,
            result,
            reason,
        }
    }
}

/// The open log.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
    to_stderr: bool,
}

impl AuditLog {
    /// Opens (creating, mode 0700 and 0600) `state_dir/audit.jsonl` for appending.
    pub fn open(state_dir: &Path, to_stderr: bool) -> std::io::Result<Self> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)?;
        let path = state_dir.join(AUDIT_FILE);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)?;
        Ok(AuditLog {
            path,
            file: Mutex::new(file),
            to_stderr,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `record` as one line (one write, so concurrent records never interleave). A
    /// record that cannot be written is reported on stderr; the daemon goes on.
    pub fn record(&self, record: &AuditRecord) {
        let mut line = serde_json::to_string(record).expect("an audit record serializes");
        line.push('\n');
        if self.to_stderr {
            eprint!("upschedd audit: {line}");
        }
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(e) = file.write_all(line.as_bytes()) {
            eprintln!(
                "upschedd: cannot write the audit log {}: {e}",
                self.path.display()
            );
        }
    }
}
