// SPDX-License-Identifier: GPL-2.0-only
//! The demo's broker: the unprivileged demo user, the cgroups delegated to it, its grant, the
//! `upschedd` the demo starts as root, and the `upsched` commands the demo runs as that user
//! against it (docs/broker.md). Everything here is set up as a deployment would set it up, in
//! directories of the demo's own (`/run/upsched-demo`, pins in `/sys/fs/bpf/upsched-demo`), so
//! that a daemon of the machine's own is never touched.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::de::DeserializeOwned;
use upsched_broker::client::Client;
use upsched_broker::protocol::Operation;

/// The unprivileged user the demo's tenants belong to.
pub const DEMO_USER: &str = "upsched-demo";
/// The demo's daemon files: socket, grants, state directory, the daemon's log.
const DEMO_DIR: &str = "/run/upsched-demo";
/// Where the demo's daemon pins the host scheduler and its tenants.
pub const DEMO_PIN_DIR: &str = "/sys/fs/bpf/upsched-demo";
/// How long the daemon may take to answer after its start.
const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the daemon may take to stop after SIGTERM before it is killed.
const DAEMON_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The files of a cgroup that systemd's `Delegate=` hands to the delegatee with the directory.
const DELEGATED_FILES: [&str; 3] = ["cgroup.procs", "cgroup.threads", "cgroup.subtree_control"];

/// The demo user, as the user database has it.
#[derive(Clone, Debug)]
pub struct DemoUser {
    pub uid: u32,
    pub gid: u32,
}

impl DemoUser {
    /// Looks the demo user up; a missing user is an error that says how to create it.
    pub fn find() -> anyhow::Result<DemoUser> {
        let user = nix::unistd::User::from_name(DEMO_USER)
            .with_context(|| format!("looking up the user {DEMO_USER}"))?;
        let Some(user) = user else {
            bail!(
                "the demo loads its policies as the unprivileged user {DEMO_USER}, which does not \
                 exist here: create it with `sudo useradd --system --user-group --no-create-home \
                 {DEMO_USER}` (the demo's VM creates it by itself)"
            );
        };
        if user.uid.is_root() {
            bail!("the user {DEMO_USER} is root; the demo needs an unprivileged user");
        }
        Ok(DemoUser {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        })
    }

    /// "upsched-demo (uid 1000)", for the demo's lines.
    pub fn label(&self) -> String {
        format!("{DEMO_USER} (uid {})", self.uid)
    }

    /// Makes `command`'s child drop to this user after everything root must do between fork
    /// and exec (pre-exec steps registered earlier, such as joining a cgroup, run first), and
    /// die with its parent (the kernel clears a parent-death signal when the credentials
    /// change, so it is set after the drop).
    pub fn drop_privileges_before_exec(&self, command: &mut Command) {
        let (uid, gid) = (self.uid, self.gid);
        // SAFETY: between fork and exec only async-signal-safe system calls are made
        // (setgroups, setgid, setuid, prctl) on values copied before the fork.
        unsafe {
            command.pre_exec(move || {
                let groups = [gid];
                if libc::setgroups(1, groups.as_ptr()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                Ok(())
            });
        }
    }

    /// Hands `cgroup` to this user as a delegation does: the directory and its delegated files.
    pub fn delegate(&self, cgroup: &Path) -> anyhow::Result<()> {
        let paths = std::iter::once(cgroup.to_path_buf())
            .chain(DELEGATED_FILES.iter().map(|file| cgroup.join(file)));
        for path in paths {
            match std::os::unix::fs::chown(&path, Some(self.uid), Some(self.gid)) {
                Ok(()) => {}
                // cgroup.threads exists only where threaded cgroups are supported.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && path != cgroup => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("delegating {} to {DEMO_USER}", path.display()));
                }
            }
        }
        Ok(())
    }
}

/// What the demo's grant allows, written as `grants.toml` (docs/grants.md).
pub struct DemoGrant<'a> {
    pub capabilities: &'a [String],
    pub scope: &'a Path,
    pub max_level: u32,
    pub max_weight: u32,
    pub max_tenants: u32,
}

impl DemoGrant<'_> {
    fn toml(&self, user: &DemoUser) -> String {
        let capabilities: Vec<String> =
            self.capabilities.iter().map(|c| format!("{c:?}")).collect();
        format!(
            "# The demo's grant: written by `upsched demo`, removed when it ends.\n\
             version = 1\n\
             [[grant]]\n\
             name = \"{DEMO_USER}\"\n\
             users = [{uid}]\n\
             capabilities = [{capabilities}]\n\
             scopes = [{scope:?}]\n\
             max_level = {max_level}\n\
             max_weight = {max_weight}\n\
             max_tenants = {max_tenants}\n\
             slice_min = \"500us\"\n\
             slice_max = \"20ms\"\n\
             park_max = \"100ms\"\n\
             watchdog_max = \"3s\"\n",
            uid = user.uid,
            capabilities = capabilities.join(", "),
            scope = self.scope.display().to_string(),
            max_level = self.max_level,
            max_weight = self.max_weight,
            max_tenants = self.max_tenants,
        )
    }
}

/// The demo's daemon and its files. Dropping it stops the daemon and ends the pinned host
/// (`upschedd --unload`) if [`DemoDaemon::shut_down`] did not.
pub struct DemoDaemon {
    dir: PathBuf,
    socket: PathBuf,
    state_dir: PathBuf,
    log: PathBuf,
    binary: PathBuf,
    child: Option<Child>,
    shut_down: bool,
}

/// What [`DemoDaemon::shut_down`] did.
pub struct ShutDown {
    /// `upschedd --unload`'s own line.
    pub unload_said: String,
    /// Pins left in the demo's pin directory (none when all went well).
    pub pins_left: Vec<String>,
}

impl DemoDaemon {
    /// The daemon binary beside this one (`cargo build` and `./scripts/main` put both there;
    /// the demo's VM has both in /usr/bin).
    pub fn find_binary() -> anyhow::Result<PathBuf> {
        let exe = std::env::current_exe().context("finding this binary")?;
        let daemon = exe.with_file_name("upschedd");
        if !daemon.is_file() {
            bail!(
                "the demo runs the broker daemon upschedd, which is not beside {}: build it with \
                 `cargo build -p upsched-broker` (./scripts/main builds both)",
                exe.display()
            );
        }
        Ok(daemon)
    }

    /// Refuses to start over a demo's host that is still pinned (a demo killed with SIGKILL
    /// leaves it running), saying how to end it.
    pub fn refuse_leftover_pins() -> anyhow::Result<()> {
        let pinned = std::fs::read_dir(DEMO_PIN_DIR).is_ok_and(|mut d| d.next().is_some());
        if pinned {
            let binary = std::env::current_exe()
                .map(|exe| exe.with_file_name("upschedd"))
                .unwrap_or_else(|_| PathBuf::from("upschedd"));
            bail!(
                "an earlier demo's host scheduler is still pinned in {DEMO_PIN_DIR} (was the demo \
                 killed?): end it with `sudo {} --unload --pin-dir {DEMO_PIN_DIR} --state-dir \
                 {DEMO_DIR}/state --socket {DEMO_DIR}/upsched.sock`",
                binary.display()
            );
        }
        Ok(())
    }

    /// Writes the grants file and starts the daemon (as root, this process's user), once it
    /// answers on its socket.
    pub fn start(
        binary: PathBuf,
        user: &DemoUser,
        grant: &DemoGrant<'_>,
    ) -> anyhow::Result<DemoDaemon> {
        let dir = PathBuf::from(DEMO_DIR);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        set_mode(&dir, 0o755)?;
        let grants = dir.join("grants.toml");
        std::fs::write(&grants, grant.toml(user))
            .with_context(|| format!("writing {}", grants.display()))?;
        set_mode(&grants, 0o644)?;
        let mut daemon = DemoDaemon {
            socket: dir.join("upsched.sock"),
            state_dir: dir.join("state"),
            log: dir.join("upschedd.log"),
            dir,
            binary,
            child: None,
            shut_down: false,
        };
        let log = std::fs::File::create(&daemon.log)
            .with_context(|| format!("creating {}", daemon.log.display()))?;
        let mut command = Command::new(&daemon.binary);
        command
            .arg("--socket")
            .arg(&daemon.socket)
            .arg("--grants")
            .arg(&grants)
            .arg("--state-dir")
            .arg(&daemon.state_dir)
            .arg("--pin-dir")
            .arg(DEMO_PIN_DIR)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            // Its own process group: a Ctrl-C reaches the demo, which stops it in order.
            .process_group(0);
        // SAFETY: only prctl between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", daemon.binary.display()))?;
        daemon.child = Some(child);
        daemon.wait_until_it_answers()?;
        Ok(daemon)
    }

    fn wait_until_it_answers(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + DAEMON_START_TIMEOUT;
        loop {
            if Client::connect(&self.socket)
                .and_then(|mut client| client.call(Operation::HostStatus))
                .is_ok()
            {
                return Ok(());
            }
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!(
                    "upschedd exited at its start ({status}): {}",
                    self.log_tail()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "upschedd did not answer on {} within {} s: {}",
                    self.socket.display(),
                    DAEMON_START_TIMEOUT.as_secs(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn grants(&self) -> PathBuf {
        self.dir.join("grants.toml")
    }

    /// The command line the demo started the daemon with, for its output.
    pub fn command_line(&self) -> String {
        format!(
            "upschedd --socket {} --grants {} --state-dir {} --pin-dir {DEMO_PIN_DIR}",
            self.socket.display(),
            self.grants().display(),
            self.state_dir.display()
        )
    }

    /// The end of the daemon's log (its audit lines and errors), for an error message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(5)..].join("\n");
        format!("last lines of {}:\n{tail}", self.log.display())
    }

    /// Runs `upsched ARGS --json` as `user` against this daemon and reads its JSON answer.
    pub fn as_user<T: DeserializeOwned>(
        &self,
        user: &DemoUser,
        args: &[&str],
    ) -> anyhow::Result<T> {
        let exe = std::env::current_exe().context("finding this binary")?;
        let mut command = Command::new(&exe);
        command
            .args(args)
            .arg("--json")
            .env("UPSCHED_SOCKET", &self.socket)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        user.drop_privileges_before_exec(&mut command);
        let output = command
            .output()
            .with_context(|| format!("running {} as {DEMO_USER}", exe.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            // Under --json the error is an object on stdout.
            let message = serde_json::from_str::<serde_json::Value>(&stdout)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| format!("{}{}", stdout.trim(), stderr.trim()));
            bail!(
                "`upsched {}` as {DEMO_USER} failed ({}): {message}",
                args.join(" "),
                output.status
            );
        }
        serde_json::from_str(&stdout).with_context(|| {
            format!(
                "reading the answer of `upsched {} --json`: {stdout}",
                args.join(" ")
            )
        })
    }

    /// Stops the daemon (SIGTERM leaves the pinned host running), ends the pinned host with
    /// `upschedd --unload` and removes the demo's files.
    pub fn shut_down(&mut self) -> anyhow::Result<ShutDown> {
        self.shut_down = true;
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
        let output = Command::new(&self.binary)
            .arg("--unload")
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--pin-dir")
            .arg(DEMO_PIN_DIR)
            .stdin(Stdio::null())
            .output()
            .context("running upschedd --unload")?;
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .trim_start_matches("upschedd: ")
        .to_string();
        if !output.status.success() {
            bail!("upschedd --unload failed ({}): {said}", output.status);
        }
        let pins_left: Vec<String> = std::fs::read_dir(DEMO_PIN_DIR)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        if pins_left.is_empty() {
            let _ = std::fs::remove_dir(DEMO_PIN_DIR);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(ShutDown {
            unload_said: said,
            pins_left,
        })
    }
}

impl Drop for DemoDaemon {
    fn drop(&mut self) {
        if !self.shut_down {
            let _ = self.shut_down();
        }
    }
}

/// SIGTERM, then SIGKILL if the daemon has not stopped in time.
fn stop_child(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: plain syscall on our own child's pid, not yet reaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + DAEMON_STOP_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}
