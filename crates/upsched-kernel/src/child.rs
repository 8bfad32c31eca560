//! Starting child processes inside a cgroup, so that a workload never runs a single instruction
//! of its own outside the tenant that should govern it.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// What the child sets up for itself between fork and exec, besides joining its cgroup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChildSetup {
    /// Nice value to take (0 leaves it alone).
    pub nice: i32,
    /// The child gets SIGKILL when the thread that started it dies, so that a workload never
    /// outlives the tool that runs it.
    pub die_with_parent: bool,
}

/// Makes `command`'s child move itself into `cgroup` (a cgroup2 directory) after the fork and
/// before the exec, then apply `setup`. A failure to join makes `spawn` fail with that error.
/// A path containing a NUL byte is refused here, and `command` is left unchanged.
pub fn join_cgroup_before_exec(
    command: &mut Command,
    cgroup: &Path,
    setup: ChildSetup,
) -> io::Result<()> {
    let procs = CString::new(cgroup.join("cgroup.procs").as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cgroup path {} contains a NUL byte", cgroup.display()),
        )
    })?;
    let ChildSetup {
        nice,
        die_with_parent,
    } = setup;
    // SAFETY: between fork and exec only async-signal-safe system calls are made (prctl, open,
    // write, close, setpriority), on data prepared before the fork; nothing allocates.
    unsafe {
        command.pre_exec(move || {
            if die_with_parent {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            }
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // "0" moves the writing process itself.
            let written = libc::write(fd, b"0".as_ptr().cast(), 1);
            let write_error = io::Error::last_os_error();
            libc::close(fd);
            if written != 1 {
                return Err(write_error);
            }
            if nice != 0 {
                libc::setpriority(libc::PRIO_PROCESS, 0, nice);
            }
            Ok(())
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn a_path_with_nul_is_refused_before_any_spawn() {
        let mut command = Command::new("true");
        let bad = Path::new(OsStr::from_bytes(b"/sys/fs/cgroup/a\0b"));
        let err = join_cgroup_before_exec(&mut command, bad, ChildSetup::default()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("NUL"), "{err}");
        // Nothing was installed: the command still starts normally.
        assert!(command.status().unwrap().success());
    }

    #[test]
    fn joining_a_missing_cgroup_fails_the_spawn() {
        let dir = std::env::temp_dir().join(format!("upsched-no-cgroup-{}", std::process::id()));
        let mut command = Command::new("true");
        join_cgroup_before_exec(&mut command, &dir, ChildSetup::default()).unwrap();
        let err = command.spawn().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    }

    #[test]
    fn the_child_writes_itself_into_cgroup_procs_before_exec() {
        // A plain directory stands in for the cgroup: its cgroup.procs file shows what the
        // child wrote before its exec.
        let dir = std::env::temp_dir().join(format!("upsched-fake-cgroup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cgroup.procs"), b"").unwrap();
        let mut command = Command::new("true");
        join_cgroup_before_exec(&mut command, &dir, ChildSetup::default()).unwrap();
        assert!(command.status().unwrap().success());
        assert_eq!(std::fs::read(dir.join("cgroup.procs")).unwrap(), b"0");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
