//! The guest's root file system: busybox, the caller's files, a scenario script and a generated
//! `/init`, written as an uncompressed newc cpio archive.
//!
//! Uncompressed because the kernel unpacks it faster than it would decompress it, and the archive
//! only lives on the host's disk for one boot.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use cpio::newc::{Builder as NewcEntry, ModeFileType};

use crate::protocol::{BOOTED_MARKER, DONE_MARKER, SCENARIO_EXIT_MARKER, TEST_MARKER};
use crate::tools::{find_tool, run_checked};

/// Where the scenario script sits in the guest.
pub const SCENARIO_GUEST_PATH: &str = "/upsched/scenario.sh";
/// Shell helpers a scenario may source (`. /upsched/lib.sh`).
pub const SHELL_LIB_GUEST_PATH: &str = "/upsched/lib.sh";
/// Busybox must be static: the initramfs carries no shared libraries.
pub const DEFAULT_BUSYBOX: &str = "/bin/busybox";

const DIRECTORIES: &[&str] = &[
    "/bin",
    "/sbin",
    "/usr/bin",
    "/usr/sbin",
    "/dev",
    "/proc",
    "/sys",
    "/tmp",
    "/run",
    "/root",
    "/etc",
    "/upsched",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Content {
    Directory,
    HostFile(PathBuf),
    Bytes(Vec<u8>),
    Symlink(String),
    CharDevice { major: u32, minor: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    content: Content,
    permissions: u32,
}

/// Describes the guest's file tree. Later additions at the same path replace earlier ones, so a
/// caller can override any generated file.
#[derive(Debug, Clone)]
pub struct InitramfsSpec {
    nodes: BTreeMap<String, Node>,
    scenario_script: String,
}

impl InitramfsSpec {
    /// A tree with the standard directories, `/dev/console` and the generated `/init`, without
    /// busybox; see [`InitramfsSpec::with_busybox`].
    pub fn new(scenario_script: impl Into<String>) -> Self {
        let mut spec = Self {
            nodes: BTreeMap::new(),
            scenario_script: scenario_script.into(),
        };
        for dir in DIRECTORIES {
            spec.add_directory(dir);
        }
        // The kernel opens /dev/console for /init's stdio before /init can mount devtmpfs; without
        // this node the guest's output would go nowhere.
        spec.insert(
            "/dev/console",
            Content::CharDevice { major: 5, minor: 1 },
            0o600,
        );
        spec
    }

    /// A tree with a static busybox at `/bin/busybox` and a symlink for each of its applets
    /// (taken from `busybox --list-full` on the host, which runs the same binary).
    pub fn with_busybox(
        scenario_script: impl Into<String>,
        busybox: &Path,
    ) -> anyhow::Result<Self> {
        let output = run_checked(Command::new(busybox).arg("--list-full")).with_context(|| {
            format!(
                "listing the applets of {} (a static busybox is needed: apt-get install busybox-static)",
                busybox.display()
            )
        })?;
        let mut spec = Self::new(scenario_script);
        spec.add_host_file(busybox, "/bin/busybox", 0o755);
        for applet in String::from_utf8_lossy(&output.stdout).lines() {
            let applet = applet.trim();
            if applet.is_empty() || applet == "bin/busybox" {
                continue;
            }
            spec.add_symlink(&format!("/{applet}"), "/bin/busybox");
        }
        Ok(spec)
    }

    /// A tree with the host's static busybox.
    pub fn with_default_busybox(scenario_script: impl Into<String>) -> anyhow::Result<Self> {
        let busybox = if Path::new(DEFAULT_BUSYBOX).is_file() {
            PathBuf::from(DEFAULT_BUSYBOX)
        } else {
            find_tool("busybox", "apt-get install busybox-static")?
        };
        Self::with_busybox(scenario_script, &busybox)
    }

    fn insert(&mut self, guest_path: &str, content: Content, permissions: u32) {
        let path = normalize(guest_path);
        if path == "/" {
            // The archive's root is the rootfs itself; it has no entry of its own.
            return;
        }
        // Parents first so the kernel can create the entry when it unpacks the archive.
        let mut parent = Path::new(&path).parent();
        while let Some(dir) = parent {
            let dir_str = dir.to_string_lossy().to_string();
            if dir_str == "/" || dir_str.is_empty() {
                break;
            }
            self.nodes.entry(dir_str).or_insert(Node {
                content: Content::Directory,
                permissions: 0o755,
            });
            parent = dir.parent();
        }
        self.nodes.insert(
            path,
            Node {
                content,
                permissions,
            },
        );
    }

    pub fn add_directory(&mut self, guest_path: &str) -> &mut Self {
        self.insert(guest_path, Content::Directory, 0o755);
        self
    }

    /// Copies a host file (static binary, `.bpf.o`, data) into the guest.
    pub fn add_host_file(&mut self, host_path: &Path, guest_path: &str, mode: u32) -> &mut Self {
        self.insert(guest_path, Content::HostFile(host_path.to_path_buf()), mode);
        self
    }

    pub fn add_bytes(
        &mut self,
        guest_path: &str,
        bytes: impl Into<Vec<u8>>,
        mode: u32,
    ) -> &mut Self {
        self.insert(guest_path, Content::Bytes(bytes.into()), mode);
        self
    }

    pub fn add_symlink(&mut self, guest_path: &str, target: &str) -> &mut Self {
        self.insert(guest_path, Content::Symlink(target.to_string()), 0o777);
        self
    }

    /// Guest paths in archive order.
    pub fn guest_paths(&self) -> Vec<&str> {
        self.nodes.keys().map(String::as_str).collect()
    }

    /// Writes the archive. The scenario script and `/init` are added last so they win over any
    /// caller file at the same path.
    pub fn write_cpio(&self, out: &mut impl Write) -> anyhow::Result<()> {
        let mut nodes = self.nodes.clone();
        for (path, bytes) in [
            (
                SCENARIO_GUEST_PATH.to_string(),
                self.scenario_script.clone().into_bytes(),
            ),
            ("/init".to_string(), init_script().into_bytes()),
            (SHELL_LIB_GUEST_PATH.to_string(), shell_lib().into_bytes()),
        ] {
            nodes.insert(
                path,
                Node {
                    content: Content::Bytes(bytes),
                    permissions: 0o755,
                },
            );
        }
        for (inode, (path, node)) in (1u32..).zip(&nodes) {
            // newc names are relative ("bin/sh"), which is what the kernel's unpacker expects.
            let name = path.trim_start_matches('/');
            let entry = NewcEntry::new(name)
                .ino(inode)
                .uid(0)
                .gid(0)
                .mode(node.permissions & 0o7777);
            match &node.content {
                Content::Directory => {
                    let entry = entry.set_mode_file_type(ModeFileType::Directory).nlink(2);
                    entry.write(&mut *out, 0).finish()?;
                }
                Content::CharDevice { major, minor } => {
                    let entry = entry
                        .set_mode_file_type(ModeFileType::Char)
                        .rdev_major(*major)
                        .rdev_minor(*minor);
                    entry.write(&mut *out, 0).finish()?;
                }
                Content::Symlink(target) => {
                    let entry = entry.set_mode_file_type(ModeFileType::Symlink);
                    write_data(entry, target.as_bytes(), out)?;
                }
                Content::Bytes(bytes) => {
                    write_data(entry.set_mode_file_type(ModeFileType::Regular), bytes, out)?;
                }
                Content::HostFile(host) => {
                    let bytes = std::fs::read(host).with_context(|| {
                        format!("reading {} for guest path {path}", host.display())
                    })?;
                    write_data(entry.set_mode_file_type(ModeFileType::Regular), &bytes, out)?;
                }
            }
        }
        cpio::newc::trailer(&mut *out)?;
        Ok(())
    }

    pub fn write_cpio_file(&self, path: &Path) -> anyhow::Result<()> {
        let file = std::fs::File::create(path)
            .with_context(|| format!("creating initramfs {}", path.display()))?;
        let mut writer = std::io::BufWriter::new(file);
        self.write_cpio(&mut writer)?;
        writer.flush()?;
        Ok(())
    }
}

fn write_data(entry: NewcEntry, bytes: &[u8], out: &mut impl Write) -> anyhow::Result<()> {
    let size = u32::try_from(bytes.len()).context("a file of more than 4 GiB cannot go in cpio")?;
    let mut writer = entry.write(&mut *out, size);
    writer.write_all(bytes)?;
    writer.finish()?;
    Ok(())
}

fn normalize(guest_path: &str) -> String {
    let parts: Vec<&str> = guest_path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// The guest's PID 1. It mounts what the tests need, reports boot, runs the scenario, reports
/// its status and powers off; `poweroff -f` makes QEMU (started with `-no-reboot`) exit.
pub fn init_script() -> String {
    format!(
        r#"#!/bin/sh
# Generated by upsched-vmtest. PID 1 of the test guest.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf
# Optional: not every kernel has them, and no test should fail because they are absent here.
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
# Kernel messages below warning level would interleave with the protocol lines.
echo 4 > /proc/sys/kernel/printk
echo "{BOOTED_MARKER} $(uname -r)"
cd /upsched
/bin/sh {SCENARIO_GUEST_PATH}
echo "{SCENARIO_EXIT_MARKER} $?"
sync
echo "{DONE_MARKER}"
poweroff -f
"#
    )
}

/// Helpers that print protocol lines, so scenario scripts need not repeat the format.
pub fn shell_lib() -> String {
    format!(
        r#"# Generated by upsched-vmtest: helpers for scenario scripts.
# upsched_pass NAME [DETAIL...] / upsched_fail NAME [DETAIL...] / upsched_skip NAME [DETAIL...]
upsched_result() {{
    verdict=$1; name=$2; shift 2
    echo "{TEST_MARKER} $name $verdict $(echo "$*" | tr '\n' ' ')"
}}
upsched_pass() {{ upsched_result PASS "$@"; }}
upsched_fail() {{ upsched_result FAIL "$@"; UPSCHED_FAILED=1; }}
upsched_skip() {{ upsched_result SKIP "$@"; }}
# upsched_check NAME COMMAND [ARGS...]: PASS if the command succeeds; its output is the detail.
upsched_check() {{
    check_name=$1; shift
    if check_output=$("$@" 2>&1); then
        upsched_pass "$check_name" "$check_output"
    else
        upsched_fail "$check_name" "exit $?: $check_output"
    fi
}}
# End a scenario with `upsched_finish`: exits 1 if any check failed.
upsched_finish() {{ exit "${{UPSCHED_FAILED:-0}}"; }}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(archive: &[u8]) -> Vec<(String, u32, Vec<u8>, u32, u32)> {
        let mut reader_input = archive;
        let mut found = Vec::new();
        loop {
            let mut reader = cpio::NewcReader::new(reader_input).unwrap();
            if reader.entry().is_trailer() {
                break;
            }
            let entry = reader.entry();
            let (name, mode, rmaj, rmin) = (
                entry.name().to_string(),
                entry.mode(),
                entry.rdev_major(),
                entry.rdev_minor(),
            );
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut reader, &mut data).unwrap();
            found.push((name, mode, data, rmaj, rmin));
            reader_input = reader.finish().unwrap();
        }
        found
    }

    #[test]
    fn cpio_layout() {
        let dir = tempfile::tempdir().unwrap();
        let host_file = dir.path().join("probe");
        std::fs::write(&host_file, b"\x7fELF probe").unwrap();
        let mut spec = InitramfsSpec::new("echo hello\n");
        spec.add_directory("/")
            .add_host_file(&host_file, "/opt/upsched/bin/probe", 0o755)
            .add_bytes("policies//fifo.bpf.o", b"bpf".to_vec(), 0o644)
            .add_symlink("/bin/sh", "/bin/busybox");
        let mut archive = Vec::new();
        spec.write_cpio(&mut archive).unwrap();
        let entries = entries(&archive);
        let by_name = |name: &str| {
            entries
                .iter()
                .find(|e| e.0 == name)
                .unwrap_or_else(|| panic!("{name} missing from {entries:?}"))
        };
        // Parents are created implicitly and come before their children.
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert!(!names.contains(&""), "{names:?}");
        let opt = names.iter().position(|n| *n == "opt").unwrap();
        let probe = names
            .iter()
            .position(|n| *n == "opt/upsched/bin/probe")
            .unwrap();
        assert!(opt < probe, "{names:?}");
        assert_eq!(by_name("opt/upsched/bin/probe").1, 0o100755);
        assert_eq!(by_name("opt/upsched/bin/probe").2, b"\x7fELF probe");
        assert_eq!(by_name("policies/fifo.bpf.o").1, 0o100644);
        assert_eq!(by_name("bin/sh").1, 0o120777);
        assert_eq!(by_name("bin/sh").2, b"/bin/busybox");
        let console = by_name("dev/console");
        assert_eq!((console.1, console.3, console.4), (0o020600, 5, 1));
        assert_eq!(by_name("proc").1, 0o040755);
        assert_eq!(by_name("upsched/scenario.sh").2, b"echo hello\n");
        let init = String::from_utf8(by_name("init").2.clone()).unwrap();
        assert!(init.contains("mount -t cgroup2 cgroup2 /sys/fs/cgroup"));
        assert!(init.contains("mount -t bpf bpf /sys/fs/bpf"));
        assert!(init.contains("poweroff -f"));
        assert!(init.contains(DONE_MARKER));
        let lib = String::from_utf8(by_name("upsched/lib.sh").2.clone()).unwrap();
        assert!(lib.contains("upsched_check()"), "{lib}");
    }

    #[test]
    fn caller_cannot_lose_init_but_can_replace_files() {
        let mut spec = InitramfsSpec::new("true\n");
        spec.add_bytes("/init", b"bogus".to_vec(), 0o755);
        spec.add_bytes("/etc/x", b"one".to_vec(), 0o644);
        spec.add_bytes("/etc/x", b"two".to_vec(), 0o644);
        let mut archive = Vec::new();
        spec.write_cpio(&mut archive).unwrap();
        let entries = entries(&archive);
        let init = entries.iter().find(|e| e.0 == "init").unwrap();
        assert_ne!(init.2, b"bogus");
        let x: Vec<_> = entries.iter().filter(|e| e.0 == "etc/x").collect();
        assert_eq!(x.len(), 1);
        assert_eq!(x[0].2, b"two");
    }

    #[test]
    fn missing_host_file_is_a_clear_error() {
        let mut spec = InitramfsSpec::new("true\n");
        spec.add_host_file(Path::new("/nonexistent/probe"), "/bin/probe", 0o755);
        let err = spec.write_cpio(&mut Vec::new()).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/probe"), "{err:#}");
    }

    #[test]
    fn busybox_applets_become_symlinks() {
        if !Path::new(DEFAULT_BUSYBOX).is_file() {
            eprintln!("skipping: no {DEFAULT_BUSYBOX} on this host");
            return;
        }
        let spec = InitramfsSpec::with_default_busybox("true\n").unwrap();
        let paths = spec.guest_paths();
        for needed in ["/bin/busybox", "/bin/sh", "/bin/mount", "/sbin/poweroff"] {
            assert!(paths.contains(&needed), "{needed} missing");
        }
    }
}
