//! Booting a kernel + initramfs under QEMU software emulation, watching its serial console.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::protocol::{BootOutcome, ConsoleSummary, GuestEvent, judge, parse_line};
use crate::tools::{describe, find_tool};

/// After a crash sign, QEMU keeps running for this long so the oops trace reaches the log.
const CRASH_GRACE: Duration = Duration::from_secs(3);

/// How to boot one VM.
#[derive(Debug, Clone)]
pub struct BootConfig {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub cpus: u32,
    pub memory_mib: u32,
    /// Wall-clock limit for the whole boot; QEMU is killed when it runs out.
    pub timeout: Duration,
    /// Appended to the default kernel command line.
    pub extra_cmdline: Vec<String>,
    /// The serial console is copied here, line by line, as it arrives.
    pub console_log: PathBuf,
}

impl BootConfig {
    /// The kernel command line. `panic=-1` reboots at once on a panic, which `-no-reboot` turns
    /// into QEMU exiting; `oops=panic` does the same for an oops instead of leaving a half-dead
    /// guest that would only end at the timeout.
    pub fn cmdline(&self) -> String {
        let mut parts = vec![
            "console=ttyS0".to_string(),
            "panic=-1".to_string(),
            "oops=panic".to_string(),
            "quiet".to_string(),
            "rdinit=/init".to_string(),
        ];
        parts.extend(self.extra_cmdline.iter().cloned());
        parts.join(" ")
    }

    pub fn qemu_command(&self, qemu: &Path) -> Command {
        let mut command = Command::new(qemu);
        command
            // KVM is not usable on the development machines; multi-threaded TCG is.
            .args(["-accel", "tcg,thread=multi", "-cpu", "max"])
            .args(["-smp", &self.cpus.to_string()])
            .args(["-m", &format!("{}M", self.memory_mib)])
            .args(["-nographic", "-no-reboot", "-nic", "none"])
            .arg("-kernel")
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(&self.initramfs)
            .args(["-append", &self.cmdline()]);
        command
    }
}

/// What one boot produced.
#[derive(Debug, Clone)]
pub struct BootReport {
    pub outcome: BootOutcome,
    pub console: ConsoleSummary,
    pub console_log: PathBuf,
    /// From QEMU start to the guest's `UPSCHED-BOOTED` line.
    pub boot_time: Option<Duration>,
    pub total_time: Duration,
}

/// Kills and reaps the QEMU child when dropped, so no path (error, panic) leaves a VM running.
struct QemuGuard(Child);

impl Drop for QemuGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

enum ConsoleMessage {
    Line(String),
    Closed,
}

/// Boots once. `on_event` sees every console line's meaning as it arrives, so results can be
/// printed while the guest runs and survive a later crash.
pub fn boot_once(
    config: &BootConfig,
    on_event: &mut dyn FnMut(&GuestEvent, &str),
) -> anyhow::Result<BootReport> {
    let qemu = find_tool("qemu-system-x86_64", "apt-get install qemu-system-x86")?;
    let mut log = std::io::BufWriter::new(
        std::fs::File::create(&config.console_log)
            .with_context(|| format!("creating console log {}", config.console_log.display()))?,
    );
    let mut command = config.qemu_command(&qemu);
    // stdin must not be a terminal: with -nographic QEMU would switch it to raw mode.
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut guard = QemuGuard(
        command
            .spawn()
            .with_context(|| format!("starting `{}`", describe(&command)))?,
    );
    let stdout = guard.0.stdout.take().context("QEMU stdout")?;
    let stderr = guard.0.stderr.take().context("QEMU stderr")?;

    let (sender, receiver) = mpsc::channel();
    let reader_thread = std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut buffer = Vec::new();
        // read_until + lossy conversion: the console may carry bytes that are not UTF-8.
        while let Ok(n) = reader.read_until(b'\n', &mut buffer) {
            if n == 0 {
                break;
            }
            let line = String::from_utf8_lossy(&buffer).into_owned();
            buffer.clear();
            if sender.send(ConsoleMessage::Line(line)).is_err() {
                return;
            }
        }
        let _ = sender.send(ConsoleMessage::Closed);
    });
    // QEMU's own complaints (bad option, missing file) come on stderr; keep them for the error.
    let stderr_thread = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut text);
        text
    });

    let deadline = started + config.timeout;
    let mut summary = ConsoleSummary::default();
    let mut boot_time = None;
    let mut timed_out = None;
    let mut crash_deadline: Option<Instant> = None;
    let mut console_lines = 0usize;
    loop {
        let now = Instant::now();
        let wait_until = crash_deadline.map_or(deadline, |c| c.min(deadline));
        if now >= wait_until {
            if crash_deadline.is_none_or(|c| c > deadline) {
                timed_out = Some(config.timeout.as_secs());
            }
            break;
        }
        match receiver.recv_timeout(wait_until - now) {
            Ok(ConsoleMessage::Line(line)) => {
                console_lines += 1;
                log.write_all(line.as_bytes())?;
                if !line.ends_with('\n') {
                    log.write_all(b"\n")?;
                }
                log.flush()?;
                let event = parse_line(&line);
                if matches!(event, GuestEvent::Booted { .. }) && boot_time.is_none() {
                    boot_time = Some(started.elapsed());
                }
                if matches!(event, GuestEvent::KernelCrash { .. }) && crash_deadline.is_none() {
                    crash_deadline = Some(Instant::now() + CRASH_GRACE);
                }
                summary.observe(&event);
                on_event(&event, line.trim_end());
            }
            Ok(ConsoleMessage::Closed) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    drop(guard); // kills QEMU if it still runs (timeout or crash grace over)
    let _ = reader_thread.join();
    let qemu_stderr = stderr_thread.join().unwrap_or_default();
    log.flush()?;

    // QEMU stopped without printing a single console line but complaining on stderr: it
    // refused to start (bad option, unreadable kernel). A harness error, not a guest crash.
    let qemu_stderr = qemu_stderr.trim();
    if console_lines == 0 && timed_out.is_none() && !qemu_stderr.is_empty() {
        anyhow::bail!(
            "QEMU failed before the guest printed anything: {qemu_stderr}\ncommand: {}",
            describe(&config.qemu_command(&qemu))
        );
    }
    Ok(BootReport {
        outcome: judge(&summary, timed_out),
        console: summary,
        console_log: config.console_log.clone(),
        boot_time,
        total_time: started.elapsed(),
    })
}
