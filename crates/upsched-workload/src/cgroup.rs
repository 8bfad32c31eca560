//! cgroup v2: checking the mount, creating the groups' directories, moving processes in, reading
//! CPU usage, and removing what was created.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `f_type` of a cgroup2 file system (linux/magic.h).
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// Errors of this module say what failed and how to fix it where that is known.
#[derive(Debug)]
pub struct CgroupError(pub String);

impl std::fmt::Display for CgroupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CgroupError {}

/// Checks that `root` (or, if it does not exist yet, its nearest existing ancestor) is on a
/// cgroup2 file system.
pub fn check_cgroup2(root: &Path) -> Result<(), CgroupError> {
    let mut probe = root;
    while !probe.exists() {
        probe = match probe.parent() {
            Some(parent) => parent,
            None => break,
        };
    }
    let fs_type = statfs_type(probe)
        .map_err(|err| CgroupError(format!("cannot inspect {}: {err}", probe.display())))?;
    if fs_type != CGROUP2_SUPER_MAGIC {
        let hint = if root.starts_with("/sys/fs/cgroup") {
            ": mount -t cgroup2 none /sys/fs/cgroup".to_string()
        } else {
            String::new()
        };
        return Err(CgroupError(format!(
            "cgroup2 not mounted at {} ({} is not a cgroup2 file system){hint}",
            root.display(),
            probe.display()
        )));
    }
    Ok(())
}

fn statfs_type(path: &Path) -> io::Result<i64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: an all-zero statfs is valid for the kernel to overwrite; c_path is NUL-terminated.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c_path.as_ptr(), &mut buf) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(buf.f_type as i64)
}

/// The cgroup directories one run created, removed (deepest first) when dropped unless kept.
#[derive(Debug, Default)]
pub struct CreatedCgroups {
    created: Vec<PathBuf>,
    pub keep: bool,
}

impl CreatedCgroups {
    /// Creates `path` and any missing ancestors, remembering which ones it created.
    pub fn create_all(&mut self, path: &Path) -> Result<(), CgroupError> {
        let mut missing = Vec::new();
        let mut probe = Some(path);
        while let Some(dir) = probe {
            if dir.exists() {
                break;
            }
            missing.push(dir.to_path_buf());
            probe = dir.parent();
        }
        for dir in missing.into_iter().rev() {
            match std::fs::create_dir(&dir) {
                Ok(()) => self.created.push(dir),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                Err(err) => {
                    return Err(CgroupError(format!(
                        "cannot create cgroup {}: {err}",
                        dir.display()
                    )));
                }
            }
        }
        Ok(())
    }

    pub fn paths(&self) -> &[PathBuf] {
        &self.created
    }

    /// Removes the created cgroups, deepest first. Any process left in them (a command's
    /// descendants) is killed first through `cgroup.kill` where the kernel has it (5.14+).
    pub fn remove(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.keep {
            self.created.clear();
            return problems;
        }
        while let Some(dir) = self.created.pop() {
            let kill = dir.join("cgroup.kill");
            if kill.exists() && populated(&dir) {
                let _ = std::fs::write(&kill, "1");
                // Killed tasks leave the cgroup asynchronously.
                for _ in 0..100 {
                    if !populated(&dir) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            let mut result = std::fs::remove_dir(&dir);
            // rmdir fails with EBUSY while exiting tasks are still being released.
            for _ in 0..50 {
                match &result {
                    Err(err) if err.raw_os_error() == Some(libc::EBUSY) => {
                        std::thread::sleep(Duration::from_millis(20));
                        result = std::fs::remove_dir(&dir);
                    }
                    _ => break,
                }
            }
            if let Err(err) = result
                && err.kind() != io::ErrorKind::NotFound
            {
                problems.push(format!("cannot remove cgroup {}: {err}", dir.display()));
            }
        }
        problems
    }
}

impl Drop for CreatedCgroups {
    fn drop(&mut self) {
        for problem in self.remove() {
            eprintln!("upsched-workload: warning: {problem}");
        }
    }
}

/// Whether the cgroup has live processes (`populated 1` in cgroup.events).
fn populated(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .map(|text| text.lines().any(|l| l.trim() == "populated 1"))
        .unwrap_or(false)
}

/// Moves process `pid` into the cgroup at `dir`.
pub fn move_process(dir: &Path, pid: libc::pid_t) -> Result<(), CgroupError> {
    let procs = dir.join("cgroup.procs");
    std::fs::write(&procs, pid.to_string()).map_err(|err| {
        CgroupError(format!(
            "cannot write cgroup.procs: {}: pid {pid}: {err}",
            procs.display()
        ))
    })
}

/// `usage_usec` from the cgroup's cpu.stat (present in every cgroup2 group, with or without the
/// cpu controller).
pub fn usage_usec(dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
    parse_usage_usec(&text)
}

pub fn parse_usage_usec(cpu_stat: &str) -> Option<u64> {
    cpu_stat.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == "usage_usec").then(|| value.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_stat() {
        let text = "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\n";
        assert_eq!(parse_usage_usec(text), Some(123456));
        assert_eq!(parse_usage_usec("user_usec 1\n"), None);
    }

    #[test]
    fn non_cgroup2_root_is_refused_with_the_mount_hint() {
        let err = check_cgroup2(Path::new("/tmp/no/such/dir")).unwrap_err().0;
        assert!(
            err.contains("cgroup2 not mounted at /tmp/no/such/dir"),
            "{err}"
        );
        // The hint is given for the standard location only.
        if check_cgroup2(Path::new("/sys/fs/cgroup")).is_err() {
            let err = check_cgroup2(Path::new("/sys/fs/cgroup/x")).unwrap_err().0;
            assert!(
                err.ends_with("mount -t cgroup2 none /sys/fs/cgroup"),
                "{err}"
            );
        }
    }
}
