//! The audit log: one JSON line per request, accepted or refused, and per daemon event (a
//! grants reload), in `STATE_DIR/audit.jsonl` and on stderr (the journal under systemd). A
//! user's served read-only requests of one kind are recorded at most once per
//! [`READ_RECORD_INTERVAL`], the next record counting those left out (`upsched top` asks for
//! `stats` every second).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

/// The log file's name in the state directory.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// Bytes of the log read at once, from the end, by [`AuditLog::tail`].
const TAIL_CHUNK: u64 = 64 * 1024;

/// How often one user's served read-only requests of one operation are recorded.
pub const READ_RECORD_INTERVAL: Duration = Duration::from_secs(60);
/// Most (uid, operation) pairs whose last record the log remembers for that; with more users
/// than this asking at once, the rest are recorded every time (memory stays bounded).
const READ_RECORD_KEYS: usize = 4096;

/// A user and a read-only operation.
type ReadKey = (u32, &'static str);

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

impl AuditResult {
    /// Its name in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Ok => "ok",
            AuditResult::Refused => "refused",
            AuditResult::Error => "error",
        }
    }
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
    /// Per (uid, operation): when a served read-only request was last recorded, and how many
    /// have been left out since.
    reads: Mutex<HashMap<ReadKey, (Instant, u64)>>,
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
            reads: Mutex::new(HashMap::new()),
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

    /// Records a served read-only request (`operation`, e.g. `stats`) unless one of the same
    /// user and operation was recorded within [`READ_RECORD_INTERVAL`]; the record that is
    /// written says in its reason how many were left out before it. Refusals go through
    /// [`AuditLog::record`], always.
    pub fn record_read(&self, operation: &'static str, record: &mut AuditRecord) {
        self.record_read_at(operation, record, Instant::now());
    }

    fn record_read_at(&self, operation: &'static str, record: &mut AuditRecord, now: Instant) {
        let left_out = {
            let mut reads = self
                .reads
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let key = (record.uid, operation);
            match reads.get_mut(&key) {
                Some((last, left_out)) if now.duration_since(*last) < READ_RECORD_INTERVAL => {
                    *left_out += 1;
                    return;
                }
                Some(entry) => std::mem::replace(entry, (now, 0)).1,
                None => {
                    if reads.len() >= READ_RECORD_KEYS {
                        reads.retain(|_, (last, _)| {
                            now.duration_since(*last) < READ_RECORD_INTERVAL
                        });
                    }
                    if reads.len() < READ_RECORD_KEYS {
                        reads.insert(key, (now, 0));
                    }
                    0
                }
            }
        };
        if left_out > 0 {
            record.reason = Some(format!(
                "{left_out} more served since this user's previous {operation} record \
                 (one is recorded per {} s)",
                READ_RECORD_INTERVAL.as_secs()
            ));
        }
        self.record(record);
    }

    /// The newest `count` records, oldest first, from at most `max_bytes` of the log's lines:
    /// the log is read backwards from its end, so that its length costs nothing. The flag says
    /// whether older records were left out for `max_bytes`. A line that does not parse (a
    /// write cut short by a crash) is skipped.
    pub fn tail(
        &self,
        count: usize,
        max_bytes: usize,
    ) -> std::io::Result<(Vec<AuditRecord>, bool)> {
        // Under the writers' lock, so that no record is read half written.
        let _writers = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut file = File::open(&self.path)?;
        let mut start = file.metadata()?.len();
        let mut bytes: Vec<u8> = Vec::new();
        let mut newlines = 0;
        // count + 1 line ends: the line before the first of them may have been read in part.
        while start > 0 && newlines <= count && bytes.len() <= max_bytes {
            let step = TAIL_CHUNK.min(start);
            start -= step;
            let mut chunk = vec![0; step as usize];
            file.seek(SeekFrom::Start(start))?;
            file.read_exact(&mut chunk)?;
            newlines += chunk.iter().filter(|&&b| b == b'\n').count();
            chunk.extend_from_slice(&bytes);
            bytes = chunk;
        }
        let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
        // After the last line end, nothing (or a line still being written, had there been no
        // lock); before the first one read, a line the read began inside of.
        lines.pop();
        if start > 0 && !lines.is_empty() {
            lines.remove(0);
        }
        let mut records = Vec::new();
        let mut used = 0;
        let mut size_limited = false;
        for line in lines.iter().rev() {
            if records.len() == count {
                break;
            }
            used += line.len() + 1;
            if used > max_bytes {
                size_limited = true;
                break;
            }
            if let Ok(record) = serde_json::from_slice(line) {
                records.push(record);
            }
        }
        // The read stopped at max_bytes short of the records asked for: older ones exist.
        size_limited |= records.len() < count && start > 0 && newlines <= count;
        records.reverse();
        Ok((records, size_limited))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: usize, reason: &str) -> AuditRecord {
        AuditRecord::now(i as u32, 1, "whoami", AuditResult::Ok, Some(reason.into()))
    }

    #[test]
    fn served_reads_are_recorded_once_per_interval_per_user_and_operation() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), false).unwrap();
        let start = Instant::now();
        let read = |uid, operation, after: Duration| {
            let mut record = AuditRecord::now(uid, 1, operation, AuditResult::Ok, None);
            log.record_read_at(operation, &mut record, start + after);
        };
        let second = Duration::from_secs(1);
        for i in 0..5 {
            read(1000, "stats", second * i);
        }
        read(1001, "stats", second);
        read(1000, "list", second);
        read(1000, "stats", READ_RECORD_INTERVAL + second);
        let (records, _) = log.tail(100, 1 << 20).unwrap();
        let seen: Vec<_> = records
            .iter()
            .map(|r| (r.uid, r.operation.as_str(), r.reason.as_deref()))
            .collect();
        let left_out =
            "4 more served since this user's previous stats record (one is recorded per 60 s)";
        assert_eq!(
            seen,
            [
                (1000, "stats", None),
                (1001, "stats", None),
                (1000, "list", None),
                (1000, "stats", Some(left_out)),
            ]
        );
    }

    #[test]
    fn tail_reads_the_newest_records_across_chunks_and_within_the_byte_bound() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), false).unwrap();
        assert_eq!(log.tail(10, 1 << 20).unwrap(), (vec![], false));
        // About 300 KB: several chunks.
        let padding = "x".repeat(200);
        for i in 0..1500 {
            log.record(&record(i, &padding));
        }
        let uids = |records: &[AuditRecord]| records.iter().map(|r| r.uid).collect::<Vec<_>>();
        let (last, limited) = log.tail(3, 1 << 20).unwrap();
        assert_eq!((uids(&last), limited), (vec![1497, 1498, 1499], false));
        let (all, limited) = log.tail(5000, 1 << 20).unwrap();
        assert_eq!((all.len(), limited), (1500, false));
        assert_eq!(all[0].uid, 0);
        // 10 lines' room: the newest 10 of the 1000 asked, and the answer says it was cut.
        let line = serde_json::to_string(&record(1499, &padding))
            .unwrap()
            .len()
            + 1;
        let (some, limited) = log.tail(1000, 10 * line + line / 2).unwrap();
        assert_eq!((some.len(), limited), (10, true));
        assert_eq!(some[9].uid, 1499);
        // A line cut short by a crash is skipped; the records before it are read.
        std::fs::OpenOptions::new()
            .append(true)
            .open(log.path())
            .unwrap()
            .write_all(b"{\"time\":\"2026-")
            .unwrap();
        let (last, limited) = log.tail(2, 1 << 20).unwrap();
        assert_eq!((uids(&last), limited), (vec![1498, 1499], false));
    }
}
