//! Cgroup scopes: is a requested cgroup inside a subtree a grant names?
//!
//! The answer is about the directory itself, not the string a client sent. A request is opened
//! once (`O_PATH`); its canonical path is the kernel's path of that open directory and its id
//! the directory's inode (on cgroup2, the cgroup id the host binds). A path through `..` is
//! refused outright, one through a symlink is judged by where it leads, and a directory renamed
//! out of its scope after it was opened fails [`ResolvedCgroup::current_path`], which the daemon
//! asks again right before it binds.

use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, fstatfs};
use nix::unistd::Uid;

/// A cgroup subtree a grant names: an absolute path without `.` or `..` components.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupScope {
    path: PathBuf,
}

/// Why a cgroup or scope was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("{0:?} is not an absolute path")]
    NotAbsolute(PathBuf),
    #[error("{0:?} goes through `..`; name the cgroup by its own path")]
    ParentComponent(PathBuf),
    #[error("cannot open cgroup {path:?}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("{0:?} is not a directory")]
    NotADirectory(PathBuf),
    #[error("cgroup {requested:?} was moved or removed since it was opened (now {now:?})")]
    Moved { requested: PathBuf, now: String },
    #[error("cgroup {cgroup:?} is outside every granted scope ({scopes})")]
    OutsideScopes { cgroup: PathBuf, scopes: String },
    #[error("cgroup {cgroup:?} belongs to uid {owner}, not to the caller (uid {caller})")]
    NotOwner {
        cgroup: PathBuf,
        owner: u32,
        caller: u32,
    },
    #[error("{0:?} is not on a cgroup2 file system")]
    NotCgroup2(PathBuf),
}

impl CgroupScope {
    pub fn new(path: &str) -> Result<Self, ScopeError> {
        let path = PathBuf::from(path);
        if !path.is_absolute() {
            return Err(ScopeError::NotAbsolute(path));
        }
        refuse_parent_components(&path)?;
        // Rebuilt from its components, so "/a//b/" and "/a/b" are the same scope.
        Ok(CgroupScope {
            path: path.components().collect(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `cgroup` is this scope or inside it. The scope is resolved now, so a scope that
    /// is (or goes through) a symlink is compared by where it leads; a scope that does not
    /// exist contains nothing.
    pub fn contains(&self, cgroup: &ResolvedCgroup) -> Result<bool, ScopeError> {
        let Ok(scope) = std::fs::canonicalize(&self.path) else {
            return Ok(false);
        };
        Ok(cgroup.current_path()?.starts_with(scope))
    }
}

/// A cgroup directory opened for a request: the open directory, its canonical path when it
/// was opened, its id and its owner.
#[derive(Debug)]
pub struct ResolvedCgroup {
    dir: File,
    path: PathBuf,
    id: u64,
    dev: u64,
    owner: Uid,
    on_cgroup2: bool,
}

impl ResolvedCgroup {
    /// Opens the directory `path` names. `path` must be absolute and free of `..`.
    pub fn open(path: &Path) -> Result<Self, ScopeError> {
        if !path.is_absolute() {
            return Err(ScopeError::NotAbsolute(path.to_path_buf()));
        }
        refuse_parent_components(path)?;
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENOTDIR) => ScopeError::NotADirectory(path.to_path_buf()),
                _ => ScopeError::Open {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                },
            })?;
        let open_error = |reason: String| ScopeError::Open {
            path: path.to_path_buf(),
            reason,
        };
        let meta = dir.metadata().map_err(|e| open_error(e.to_string()))?;
        let on_cgroup2 = fstatfs(dir.as_fd())
            .map_err(|e| open_error(e.to_string()))?
            .filesystem_type()
            == CGROUP2_SUPER_MAGIC;
        let mut resolved = ResolvedCgroup {
            dir,
            path: path.to_path_buf(),
            id: meta.ino(),
            dev: meta.dev(),
            owner: Uid::from_raw(meta.uid()),
            on_cgroup2,
        };
        resolved.path = resolved.current_path()?;
        Ok(resolved)
    }

    /// The canonical path the directory had when it was opened.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory's inode number: on cgroup2, the cgroup id.
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn owner(&self) -> Uid {
        self.owner
    }

    pub fn on_cgroup2(&self) -> bool {
        self.on_cgroup2
    }

    /// Refuses a directory that is not a cgroup2 cgroup (the host binds only those).
    pub fn require_cgroup2(&self) -> Result<(), ScopeError> {
        if self.on_cgroup2 {
            Ok(())
        } else {
            Err(ScopeError::NotCgroup2(self.path.clone()))
        }
    }

    /// The directory's canonical path now, from the open directory itself: the kernel's path
    /// of it, confirmed by looking that path up again and finding the same inode.
    pub fn current_path(&self) -> Result<PathBuf, ScopeError> {
        let fd_link = format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&self.dir)
        );
        let moved = |now: String| ScopeError::Moved {
            requested: self.path.clone(),
            now,
        };
        let now = std::fs::read_link(&fd_link).map_err(|e| moved(e.to_string()))?;
        match std::fs::symlink_metadata(&now) {
            Ok(meta) if meta.ino() == self.id && meta.dev() == self.dev => Ok(now),
            // A removed directory reads as "PATH (deleted)", which names nothing.
            _ => Err(moved(now.display().to_string())),
        }
    }
}

fn refuse_parent_components(path: &Path) -> Result<(), ScopeError> {
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(ScopeError::ParentComponent(path.to_path_buf()));
    }
    Ok(())
}

/// Where process `pid` is: its cgroup2 cgroup (the `0::PATH` line of `/proc/PID/cgroup`, as the
/// daemon's cgroup namespace sees it) as a path below `mount`, the cgroup2 mount point.
pub fn process_cgroup(pid: i32, mount: &Path) -> Result<PathBuf, String> {
    let file = format!("/proc/{pid}/cgroup");
    let text = std::fs::read_to_string(&file).map_err(|e| format!("cannot read {file}: {e}"))?;
    let relative = text
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .ok_or_else(|| format!("process {pid} is in no cgroup2 cgroup"))?;
    let relative = Path::new(relative.trim_start_matches('/'));
    refuse_parent_components(relative).map_err(|e| e.to_string())?;
    Ok(mount.join(relative))
}

/// Whether `cgroup`, a path below the cgroup2 mount `mount`, is the cgroup of id `id` or lies
/// below it. Compared by the ids of it and of its ancestors up to the mount, so that a cgroup
/// renamed since it was bound is still found, and a directory of another file system never is.
pub fn cgroup_within(cgroup: &Path, mount: &Path, id: u64) -> bool {
    let Ok(dev) = std::fs::metadata(mount).map(|m| m.dev()) else {
        return false;
    };
    cgroup
        .ancestors()
        .take_while(|dir| dir.starts_with(mount))
        .any(|dir| std::fs::metadata(dir).is_ok_and(|m| m.ino() == id && m.dev() == dev))
}
