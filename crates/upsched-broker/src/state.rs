//! The daemon's records in its state directory: the policy objects of its tenants by content
//! hash (`policies/<sha256>.bpf.o`) and its tenants (`tenants.json`), from which a restarted
//! daemon adopts the tenants its predecessor left pinned (docs/broker.md, "Lifecycle").
//! Files are replaced whole: written under a temporary name, synced, then renamed.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::protocol::TenantView;

/// The tenants' file in the state directory.
pub const TENANTS_FILE: &str = "tenants.json";
/// The policies' directory in the state directory.
pub const POLICIES_DIR: &str = "policies";
/// The version of `tenants.json` this daemon reads and writes.
pub const STATE_VERSION: u32 = 1;
/// Where the kernel names the current boot.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// `tenants.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateFile {
    pub version: u32,
    /// The boot the tenants were attached in: pins do not survive a reboot, and neither do
    /// the tenants of an earlier boot.
    pub boot_id: String,
    pub tenants: Vec<StoredTenant>,
}

/// A tenant as the daemon recorded it: what it reports, and the bounds it was attached with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredTenant {
    pub tenant: TenantView,
    pub slice_min_ns: u64,
    pub slice_max_ns: u64,
    pub slice_default_ns: u64,
    pub park_max_ns: u64,
    pub watchdog_ns: u64,
}

#[derive(Debug, Error)]
pub enum StateError {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error(
        "{path}: not a state file this daemon can read: {message} (nothing was changed; \
         `upschedd --unload` ends the pinned host and clears the tenants)"
    )]
    Malformed { path: PathBuf, message: String },
}

fn io_error(path: &Path, error: impl std::fmt::Display) -> StateError {
    StateError::Io {
        path: path.to_path_buf(),
        message: error.to_string(),
    }
}

/// The current boot's id; empty if the kernel does not say (every boot then looks the same,
/// and the pins decide alone).
pub fn boot_id() -> String {
    std::fs::read_to_string(BOOT_ID)
        .map(|id| id.trim().to_string())
        .unwrap_or_default()
}

/// A policy's content hash as admission gives it: 64 lower-case hex digits (and so a file
/// name with no path in it).
fn is_hash(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Opens `dir`, creating it and its policies' directory (mode 0700) if needed.
    pub fn open(dir: &Path) -> Result<StateDir, StateError> {
        let policies = dir.join(POLICIES_DIR);
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&policies)
            .map_err(|e| io_error(&policies, e))?;
        Ok(StateDir {
            dir: dir.to_path_buf(),
        })
    }

    pub fn tenants_path(&self) -> PathBuf {
        self.dir.join(TENANTS_FILE)
    }

    pub fn policy_path(&self, hash: &str) -> PathBuf {
        self.dir.join(POLICIES_DIR).join(format!("{hash}.bpf.o"))
    }

    /// The state file, `None` if there is none yet. A file that does not parse whole, of
    /// another version, or naming a policy by something other than a hash is refused with
    /// its path and what is wrong where.
    pub fn read(&self) -> Result<Option<StateFile>, StateError> {
        let path = self.tenants_path();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&path, e)),
        };
        let malformed = |message: String| StateError::Malformed {
            path: path.clone(),
            message,
        };
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        let file: StateFile = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            let at = e.path().to_string();
            let inner = e.into_inner();
            if at == "." {
                malformed(inner.to_string())
            } else {
                malformed(format!("at {at}: {inner}"))
            }
        })?;
        deserializer
            .end()
            .map_err(|e| malformed(format!("after the state: {e}")))?;
        if file.version != STATE_VERSION {
            return Err(malformed(format!(
                "version {}, this daemon reads version {STATE_VERSION}",
                file.version
            )));
        }
        if let Some(bad) = file
            .tenants
            .iter()
            .find(|t| !is_hash(&t.tenant.policy_hash))
        {
            return Err(malformed(format!(
                "tenant {:?}: policy_hash {:?} is not a sha256 in hex",
                bad.tenant.name, bad.tenant.policy_hash
            )));
        }
        Ok(Some(file))
    }

    /// Replaces the state file with `tenants` of the current boot, then removes the policy
    /// objects no tenant uses any more.
    pub fn write(&self, tenants: &[StoredTenant]) -> Result<(), StateError> {
        let file = StateFile {
            version: STATE_VERSION,
            boot_id: boot_id(),
            tenants: tenants.to_vec(),
        };
        let mut text =
            serde_json::to_string_pretty(&file).map_err(|e| io_error(&self.tenants_path(), e))?;
        text.push('\n');
        write_atomically(&self.tenants_path(), text.as_bytes())?;
        let policies = self.dir.join(POLICIES_DIR);
        let entries = std::fs::read_dir(&policies).map_err(|e| io_error(&policies, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let used = name
                .strip_suffix(".bpf.o")
                .is_some_and(|hash| tenants.iter().any(|t| t.tenant.policy_hash == hash));
            if !used {
                // A leftover costs only space; the next write tries again.
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Keeps `bytes` as the policy object of hash `hash`.
    pub fn store_policy(&self, hash: &str, bytes: &[u8]) -> Result<(), StateError> {
        let path = self.policy_path(hash);
        if !is_hash(hash) {
            return Err(io_error(&path, "not a sha256 in hex"));
        }
        write_atomically(&path, bytes)
    }
}

/// Writes `path` whole or not at all: a temporary file beside it, synced, renamed over it, and
/// the directory synced so that the rename itself survives a crash.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&temporary, path))
        .and_then(|()| File::open(dir)?.sync_all());
    written.map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        io_error(path, e)
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn stored(name: &str, hash: &str) -> StoredTenant {
        StoredTenant {
            tenant: TenantView {
                name: name.to_string(),
                owner: 1000,
                grant: "alice".to_string(),
                policy: "fifo".to_string(),
                policy_hash: hash.to_string(),
                cgroup: "/sys/fs/cgroup/tenants/alice/web".to_string(),
                cgroup_id: 4242,
                level: 1,
                weight: 100,
                slot: 3,
            },
            slice_min_ns: 500_000,
            slice_max_ns: 20_000_000,
            slice_default_ns: 5_000_000,
            park_max_ns: 100_000_000,
            watchdog_ns: 3_000_000_000,
        }
    }

    const HASH_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const HASH_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn round_trip_and_no_file_yet() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        assert_eq!(state.read().unwrap(), None);
        let tenants = vec![stored("web", HASH_A), stored("batch", HASH_B)];
        state.write(&tenants).unwrap();
        let file = state.read().unwrap().expect("written");
        assert_eq!(file.tenants, tenants);
        assert_eq!(file.version, STATE_VERSION);
        assert_eq!(file.boot_id, boot_id());
    }

    #[test]
    fn a_write_replaces_the_file_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        state.write(&[stored("web", HASH_A)]).unwrap();
        let before = std::fs::metadata(state.tenants_path()).unwrap().ino();
        state.write(&[]).unwrap();
        // A rename puts a new file in place (a write in place would keep the inode).
        let after = std::fs::metadata(state.tenants_path()).unwrap().ino();
        assert_ne!(before, after);
        assert_eq!(state.read().unwrap().unwrap().tenants, []);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        state.write(&[stored("web", HASH_A)]).unwrap();
        // The temporary's name taken by a directory: the write cannot create it.
        let mut temporary = state.tenants_path().into_os_string();
        temporary.push(".tmp");
        std::fs::create_dir(&temporary).unwrap();
        std::fs::write(PathBuf::from(&temporary).join("x"), b"x").unwrap();
        assert!(matches!(state.write(&[]), Err(StateError::Io { .. })));
        assert_eq!(
            state.read().unwrap().unwrap().tenants,
            [stored("web", HASH_A)]
        );
    }

    #[test]
    fn malformed_files_are_refused_with_where_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let good = serde_json::to_value(StateFile {
            version: STATE_VERSION,
            boot_id: boot_id(),
            tenants: vec![stored("web", HASH_A)],
        })
        .unwrap();
        let mut bad_slot = good.clone();
        bad_slot["tenants"][0]["tenant"]["slot"] = "three".into();
        let mut bad_hash = good.clone();
        bad_hash["tenants"][0]["tenant"]["policy_hash"] = "../../etc/passwd".into();
        let mut bad_version = good.clone();
        bad_version["version"] = 2.into();
        let mut unknown = good.clone();
        unknown["tenants"][0]["colour"] = "red".into();
        let cases: Vec<(String, &str)> = vec![
            ("{\"version\": 1, \"boot".to_string(), "EOF"),
            (bad_slot.to_string(), "tenants[0].tenant.slot"),
            (bad_hash.to_string(), "is not a sha256"),
            (bad_version.to_string(), "version 2"),
            (unknown.to_string(), "colour"),
            (format!("{good} {good}"), "after the state"),
        ];
        for (text, want) in cases {
            std::fs::write(state.tenants_path(), &text).unwrap();
            match state.read() {
                Err(StateError::Malformed { message, .. }) => {
                    assert!(message.contains(want), "{want:?} not in {message:?}")
                }
                other => panic!("{text}: {other:?}"),
            }
            // Refused files stay as they were.
            assert_eq!(std::fs::read_to_string(state.tenants_path()).unwrap(), text);
        }
    }

    #[test]
    fn policies_are_kept_by_hash_while_a_tenant_uses_them() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        state.store_policy(HASH_A, b"object a").unwrap();
        state.store_policy(HASH_B, b"object b").unwrap();
        assert!(state.store_policy("../x", b"x").is_err());
        state.write(&[stored("web", HASH_A)]).unwrap();
        assert_eq!(
            std::fs::read(state.policy_path(HASH_A)).unwrap(),
            b"object a"
        );
        assert!(!state.policy_path(HASH_B).exists());
    }
}
