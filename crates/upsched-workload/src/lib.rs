//! The workload pieces that the demo (`upsched demo`) and the real-kernel scenarios
//! (`upsched-vm-scenarios`) share: burning CPU, creating and removing cgroup v2 groups, and
//! reading a group's CPU usage. Each program starts its own workers (itself, re-executed);
//! this crate holds what their work and their measurements have in common. [`runner`] runs a
//! simulator scenario for real, and [`fidelity`] holds that run against the simulator's
//! (`docs/fidelity.md`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub mod fidelity;
pub mod runner;

/// One unit of CPU work: a chain of dependent integer operations (no memory traffic), short
/// enough (tens of µs natively, several ms under the test VM's emulation) for loops that check
/// a clock between units to stop close to a target of seconds.
pub fn burn_unit() {
    burn(20_000);
}

/// `iterations` dependent integer operations.
fn burn(iterations: u64) {
    let mut x = 1u64;
    for i in 0..iterations {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
    }
}

/// Burns `amount` of this thread's CPU time. In steps of a twentieth of [`burn_unit`]: whole
/// units made a 500 µs burst take 3.8 ms of CPU under the test VM's emulation (the fidelity
/// suite, `docs/fidelity.md`).
pub fn burn_cpu(amount: Duration) {
    let target = cpu_time(libc::CLOCK_THREAD_CPUTIME_ID) + amount;
    while cpu_time(libc::CLOCK_THREAD_CPUTIME_ID) < target {
        burn(1_000);
    }
}

/// Burns CPU until `end` (wall time).
pub fn burn_until(end: Instant) {
    while Instant::now() < end {
        burn_unit();
    }
}

/// CPU time of `clock` (`CLOCK_PROCESS_CPUTIME_ID`, `CLOCK_THREAD_CPUTIME_ID`).
pub fn cpu_time(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// What went wrong with a cgroup, with its path.
#[derive(Debug)]
pub struct CgroupError(String);

impl std::fmt::Display for CgroupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CgroupError {}

/// Creates the cgroup `path` (its parent must exist) unless it exists; says whether it did.
pub fn create_cgroup(path: &Path) -> Result<bool, CgroupError> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(CgroupError(format!(
            "creating cgroup {}: {e}",
            path.display()
        ))),
    }
}

/// The cgroups a program created, removed children first by `remove` or when dropped. Groups
/// that existed before are used as they are and left in place.
#[derive(Debug, Default)]
pub struct CreatedCgroups {
    created: Vec<PathBuf>,
}

impl CreatedCgroups {
    /// Creates the cgroup `path` unless it exists (see [`create_cgroup`]).
    pub fn create(&mut self, path: &Path) -> Result<(), CgroupError> {
        if create_cgroup(path)? {
            self.created.push(path.to_path_buf());
        }
        Ok(())
    }

    /// Removes the created cgroups, children first; their tasks must have been killed. Returns
    /// the ones that could not be removed, with the reason.
    pub fn remove(&mut self) -> Vec<String> {
        let mut failed = Vec::new();
        while let Some(cgroup) = self.created.pop() {
            // A killed task leaves its cgroup asynchronously: rmdir fails with EBUSY until then.
            let mut result = std::fs::remove_dir(&cgroup);
            for _ in 0..50 {
                match &result {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        std::thread::sleep(Duration::from_millis(20));
                        result = std::fs::remove_dir(&cgroup);
                    }
                    _ => break,
                }
            }
            if let Err(e) = result {
                failed.push(format!("{}: {e}", cgroup.display()));
            }
        }
        failed
    }
}

impl Drop for CreatedCgroups {
    fn drop(&mut self) {
        self.remove();
    }
}

/// CPU time used by the tasks of `cgroup` since it was created (`usage_usec` of its
/// `cpu.stat`, present in every cgroup2 group, with or without the cpu controller).
pub fn cgroup_usage(cgroup: &Path) -> Result<Duration, CgroupError> {
    let stat = cgroup.join("cpu.stat");
    let text = std::fs::read_to_string(&stat)
        .map_err(|e| CgroupError(format!("reading {}: {e}", stat.display())))?;
    parse_usage(&text).ok_or_else(|| CgroupError(format!("no usage_usec in {}", stat.display())))
}

/// `usage_usec` of a `cpu.stat` text.
fn parse_usage(cpu_stat: &str) -> Option<Duration> {
    cpu_stat
        .lines()
        .find_map(|line| line.strip_prefix("usage_usec "))
        .and_then(|value| value.trim().parse().ok())
        .map(Duration::from_micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_stat() {
        let text = "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\n";
        assert_eq!(parse_usage(text), Some(Duration::from_micros(123456)));
        assert_eq!(parse_usage("user_usec 1\nusage_usec x\n"), None);
        assert_eq!(parse_usage(""), None);
    }

    #[test]
    fn missing_cpu_stat_names_the_file() {
        let err = cgroup_usage(Path::new("/nonexistent/upsched")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("reading /nonexistent/upsched/cpu.stat: "),
            "{err}"
        );
    }

    #[test]
    fn removes_what_it_created_and_keeps_what_existed() {
        // Plain directories behave as cgroups do for creation and removal.
        let base =
            std::env::temp_dir().join(format!("upsched-workload-test-{}", std::process::id()));
        std::fs::create_dir(&base).unwrap();
        let existing = base.join("existing");
        std::fs::create_dir(&existing).unwrap();
        let mut created = CreatedCgroups::default();
        created.create(&existing).unwrap();
        created.create(&existing.join("child")).unwrap();
        created.create(&base.join("new")).unwrap();
        assert!(created.create(&base.join("no/parent")).is_err());
        assert!(created.remove().is_empty());
        assert!(existing.exists());
        assert!(!existing.join("child").exists());
        assert!(!base.join("new").exists());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn burn_until_stops_at_the_deadline() {
        let end = Instant::now() + Duration::from_millis(20);
        burn_until(end);
        assert!(Instant::now() >= end);
    }
}
