//! `run`: creates the cgroups, forks the tasks into them, releases them all at once, waits for
//! the end of the run, stops and reaps everything, removes the cgroups, and builds the report.
//!
//! Tasks are forked processes, one per task: a process can be put into any cgroup v2 group by
//! writing its pid to `cgroup.procs`, which threads cannot without threaded mode.
//!
//! Signals (SIGCHLD, SIGINT, SIGTERM, SIGHUP) are blocked for the whole run and taken with
//! `sigtimedwait`, so an interrupt is handled at a known point and the cleanup (guards below,
//! dropped on every return path) always runs to its end.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::cgroup::{self, CreatedCgroups};
use crate::report::{self, GroupRaw, Report, Role, StoppedBy, TaskRaw, TaskStatus};
use crate::spec::{self, GroupSpec, Kind, Spec, SpecError};
use crate::stats::Samples;
use crate::sys::{self, Forked, Reaped};
use crate::worker::{self, Work};

/// Captured command output kept in the report, at most.
const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// Why a run produced no report.
#[derive(Debug)]
pub enum RunError {
    /// The spec is invalid (exit status 2).
    Spec(SpecError),
    /// Setting up or running failed (exit status 1).
    Failed(String),
    /// A signal asked us to stop (exit status 128 + signal).
    Interrupted(i32),
}

impl RunError {
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Spec(_) => 2,
            RunError::Failed(_) => 1,
            RunError::Interrupted(sig) => (128 + sig).clamp(0, 255) as u8,
        }
    }
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Spec(err) => write!(f, "{err}"),
            RunError::Failed(msg) => f.write_str(msg),
            RunError::Interrupted(sig) => write!(
                f,
                "interrupted by signal {sig}; tasks killed and cgroups removed"
            ),
        }
    }
}

impl std::error::Error for RunError {}

impl From<SpecError> for RunError {
    fn from(err: SpecError) -> Self {
        RunError::Spec(err)
    }
}

fn failed(msg: impl Into<String>) -> RunError {
    RunError::Failed(msg.into())
}

/// One forked task, as the parent tracks it.
struct Slot {
    group: usize,
    index: u64,
    pid: libc::pid_t,
    role: Option<Role>,
    is_exec: bool,
    foreground: bool,
    /// Worker result, or captured command output.
    result_file: Option<File>,
    reaped: Option<Reaped>,
    reaped_at_ns: u64,
    /// We sent SIGTERM to stop a command at the end of the run.
    terminated_by_us: bool,
    /// We sent SIGKILL after the grace time.
    killed_by_us: bool,
}

/// All forked tasks. Dropping it kills and reaps whatever is still running, so no return path
/// leaves a task behind (and the cgroups can be removed after it).
#[derive(Default)]
struct Children {
    slots: Vec<Slot>,
}

impl Children {
    fn kill_running(&mut self, signal: libc::c_int, only_exec: bool) {
        for slot in self.slots.iter_mut().filter(|s| s.reaped.is_none()) {
            if only_exec && !slot.is_exec {
                continue;
            }
            if slot.is_exec {
                // The command's whole process group: a shell loop's children too.
                sys::kill(-slot.pid, signal);
            }
            sys::kill(slot.pid, signal);
            match signal {
                libc::SIGTERM => slot.terminated_by_us = true,
                libc::SIGKILL => slot.killed_by_us = true,
                _ => {}
            }
        }
    }

    /// Reaps every child that has exited, without blocking.
    fn reap_available(&mut self) -> Result<(), RunError> {
        while let Some(reaped) =
            sys::wait_child(-1, false).map_err(|err| failed(format!("wait4: {err}")))?
        {
            let now = sys::monotonic_ns();
            if let Some(slot) = self.slots.iter_mut().find(|s| s.pid == reaped.pid) {
                slot.reaped = Some(reaped);
                slot.reaped_at_ns = now;
            }
        }
        Ok(())
    }

    fn running(&self, foreground_only: bool) -> usize {
        self.slots
            .iter()
            .filter(|s| s.reaped.is_none() && (s.foreground || !foreground_only))
            .count()
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        if self.running(false) == 0 {
            return;
        }
        self.kill_running(libc::SIGKILL, false);
        for slot in self.slots.iter_mut().filter(|s| s.reaped.is_none()) {
            if let Ok(Some(reaped)) = sys::wait_child(slot.pid, true) {
                slot.reaped = Some(reaped);
            }
        }
    }
}

/// Blocks the handled signals for the run and unblocks them afterwards.
struct SignalsBlocked;

impl SignalsBlocked {
    fn new() -> Self {
        sys::block_signals(true);
        SignalsBlocked
    }
}

impl Drop for SignalsBlocked {
    fn drop(&mut self) {
        sys::block_signals(false);
    }
}

/// What a forked child needs to know.
struct ChildPlan<'a> {
    parent: libc::pid_t,
    gate_read: &'a File,
    gate_write_fd: libc::c_int,
    stop: &'a AtomicU32,
    start_delay_ms: u64,
    job: ChildJob<'a>,
}

enum ChildJob<'a> {
    Work {
        work: Work,
        result: &'a File,
    },
    Exec {
        argv: &'a [String],
        stdout: Option<&'a File>,
    },
}

/// Runs `spec` and returns its report. Forks: call it from a single-threaded process (the
/// `upsched-workload` binary is one); in a multi-threaded program, run the binary instead.
/// It reaps any child of the process that exits meanwhile, and blocks SIGCHLD, SIGINT,
/// SIGTERM and SIGHUP while it runs (a pending one ends the run as `Interrupted`).
pub fn run(spec: &Spec) -> Result<Report, RunError> {
    spec::validate(spec)?;
    for (index, group) in spec.groups.iter().enumerate() {
        if let Some(argv) = &group.argv
            && find_program(&argv[0]).is_none()
        {
            return Err(RunError::Spec(SpecError(format!(
                "groups[{index}] ({:?}).argv[0]: {:?} not found (looked in PATH)",
                group.name, argv[0]
            ))));
        }
    }
    sys::raise_fd_limit();
    // Inherited SIGCHLD = SIG_IGN would make the kernel reap our tasks itself, and we would
    // never see them finish.
    // SAFETY: setting a signal disposition to the default has no preconditions.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
    let _signals = SignalsBlocked::new();
    // Declared before `children`, so dropped after it: tasks are killed before their cgroups
    // are removed.
    let mut cgroups = CreatedCgroups::default();
    cgroups.keep = spec.keep_cgroups;
    let group_dirs = prepare_cgroups(spec, &mut cgroups)?;
    let stop = sys::SharedFlag::new().map_err(|err| failed(format!("mmap: {err}")))?;
    let (gate_read, gate_write) = sys::pipe().map_err(|err| failed(format!("pipe: {err}")))?;
    let mut children = Children::default();
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };

    for (gi, group) in spec.groups.iter().enumerate() {
        let tasks = plan_tasks(group)
            .map_err(|err| failed(format!("group {:?}: creating pipes: {err}", group.name)))?;
        for (index, (role, work)) in tasks.into_iter().enumerate() {
            let result_file = if group.kind != Kind::Exec || group.capture_output {
                Some(
                    sys::memfd("upsched-workload-result")
                        .map_err(|err| failed(format!("memfd_create: {err}")))?,
                )
            } else {
                None
            };
            let job = match (&group.argv, work) {
                (Some(argv), _) => ChildJob::Exec {
                    argv,
                    stdout: result_file.as_ref(),
                },
                (None, Some(work)) => ChildJob::Work {
                    work,
                    result: result_file
                        .as_ref()
                        .expect("workers always get a result file"),
                },
                (None, None) => unreachable!("plan_tasks gives work to every non-exec task"),
            };
            let plan = ChildPlan {
                parent,
                gate_read: &gate_read,
                gate_write_fd: std::os::fd::AsRawFd::as_raw_fd(&gate_write),
                stop: stop.get(),
                start_delay_ms: group.start_delay_ms,
                job,
            };
            // SAFETY: this process is single-threaded (documented requirement of `run`).
            let pid = match unsafe { sys::fork() }.map_err(|err| failed(format!("fork: {err}")))? {
                Forked::Child => child_main(plan),
                Forked::Parent(pid) => pid,
            };
            children.slots.push(Slot {
                group: gi,
                index: index as u64,
                pid,
                role,
                is_exec: group.kind == Kind::Exec,
                foreground: group.is_foreground(),
                result_file,
                reaped: None,
                reaped_at_ns: 0,
                terminated_by_us: false,
                killed_by_us: false,
            });
            configure_task(group, group_dirs[gi].as_deref(), pid)?;
        }
    }

    // Usage of each group's own cgroup at the start; shared cgroups are not attributed.
    let own_dirs: Vec<Option<PathBuf>> = group_dirs
        .iter()
        .map(|dir| {
            dir.clone()
                .filter(|d| group_dirs.iter().filter(|o| o.as_ref() == Some(d)).count() == 1)
        })
        .collect();
    let usage_start: Vec<Option<u64>> = own_dirs
        .iter()
        .map(|d| d.as_deref().and_then(cgroup::usage_usec))
        .collect();

    let start_ns = sys::monotonic_ns();
    // Closing our write end of the gate is seen by every task at once (end of file).
    drop(gate_write);
    let deadline_ns = spec.duration_ms.map(|ms| start_ns + ms * 1_000_000);
    let has_foreground = children.slots.iter().any(|s| s.foreground);
    let stopped_by = loop {
        children.reap_available()?;
        if has_foreground && children.running(true) == 0 {
            break StoppedBy::WorkDone;
        }
        let now = sys::monotonic_ns();
        if let Some(deadline) = deadline_ns
            && now >= deadline
        {
            break StoppedBy::Duration;
        }
        let wait = deadline_ns
            .map_or(1_000_000_000, |d| d - now)
            .min(1_000_000_000);
        wait_for_event(Duration::from_nanos(wait))?;
    };
    let end_ns = sys::monotonic_ns();
    let usage_end: Vec<Option<u64>> = own_dirs
        .iter()
        .map(|d| d.as_deref().and_then(cgroup::usage_usec))
        .collect();

    // Stop what still runs: workers through the shared flag, commands with SIGTERM; whatever
    // has not exited after the grace time is killed.
    stop.get().store(1, Ordering::Relaxed);
    children.kill_running(libc::SIGTERM, true);
    let grace_end = sys::monotonic_ns() + spec.grace_ms * 1_000_000;
    loop {
        children.reap_available()?;
        let now = sys::monotonic_ns();
        if children.running(false) == 0 || now >= grace_end {
            break;
        }
        wait_for_event(Duration::from_nanos((grace_end - now).min(100_000_000)))?;
    }
    children.kill_running(libc::SIGKILL, false);
    for slot in children.slots.iter_mut().filter(|s| s.reaped.is_none()) {
        slot.reaped =
            sys::wait_child(slot.pid, true).map_err(|err| failed(format!("wait4: {err}")))?;
    }

    let groups: Vec<GroupRaw> = group_dirs
        .iter()
        .enumerate()
        .map(|(gi, dir)| GroupRaw {
            cgroup: dir.as_ref().map(|d| d.display().to_string()),
            cgroup_usage_usec: match (usage_start[gi], usage_end[gi]) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a)),
                _ => None,
            },
        })
        .collect();
    let tasks: Vec<TaskRaw> = children
        .slots
        .iter_mut()
        .map(|slot| collect_task(slot, start_ns))
        .collect();
    let report = report::build(
        spec,
        &groups,
        &tasks,
        end_ns - start_ns,
        stopped_by,
        sys::cpus_online(),
    );
    drop(children);
    for problem in cgroups.remove() {
        eprintln!("upsched-workload: warning: {problem}");
    }
    Ok(report)
}

/// Waits for a child to exit, a stop signal, or the timeout.
fn wait_for_event(timeout: Duration) -> Result<(), RunError> {
    match sys::wait_signal(timeout) {
        None | Some(libc::SIGCHLD) => Ok(()),
        Some(sig) => Err(RunError::Interrupted(sig)),
    }
}

/// Checks the cgroup2 mount and creates the groups' cgroups; returns each group's directory.
fn prepare_cgroups(
    spec: &Spec,
    cgroups: &mut CreatedCgroups,
) -> Result<Vec<Option<PathBuf>>, RunError> {
    let root = Path::new(&spec.cgroup_root);
    if spec.groups.iter().any(|g| g.cgroup.is_some()) {
        cgroup::check_cgroup2(root).map_err(|err| failed(err.0))?;
    }
    let mut dirs = Vec::new();
    for group in &spec.groups {
        let dir = group.cgroup.as_ref().map(|rel| root.join(rel));
        if let Some(dir) = &dir {
            cgroups.create_all(dir).map_err(|err| failed(err.0))?;
        }
        dirs.push(dir);
    }
    Ok(dirs)
}

/// The tasks of a group: pingpong role and work (None for commands).
type TaskPlan = (Option<Role>, Option<Work>);

fn plan_tasks(group: &GroupSpec) -> std::io::Result<Vec<TaskPlan>> {
    let mut tasks = Vec::new();
    match group.kind {
        Kind::Hog => {
            for _ in 0..group.task_count() {
                let iterations = group.iterations;
                tasks.push((None, Some(Work::Hog { iterations })));
            }
        }
        Kind::Sleeper => {
            for _ in 0..group.task_count() {
                tasks.push((
                    None,
                    Some(Work::Sleeper {
                        run_ns: group.run_us.unwrap_or(0) * 1000,
                        sleep_ns: group.sleep_us.unwrap_or(0) * 1000,
                        cycles: group.cycles,
                        timer_slack_ns: group.timer_slack_ns.unwrap_or(1),
                    }),
                ));
            }
        }
        Kind::Pingpong => {
            let message_bytes = group.message_bytes.unwrap_or(1) as usize;
            for _ in 0..group.pairs.unwrap_or(1) {
                let (there_read, there_write) = sys::pipe()?;
                let (back_read, back_write) = sys::pipe()?;
                tasks.push((
                    Some(Role::Initiator),
                    Some(Work::PingpongInitiator {
                        to_peer: there_write,
                        from_peer: back_read,
                        round_trips: group.round_trips,
                        message_bytes,
                    }),
                ));
                tasks.push((
                    Some(Role::Responder),
                    Some(Work::PingpongResponder {
                        to_peer: back_write,
                        from_peer: there_read,
                        message_bytes,
                    }),
                ));
            }
        }
        Kind::Exec => {
            for _ in 0..group.task_count() {
                tasks.push((None, None));
            }
        }
    }
    Ok(tasks)
}

/// Places a freshly forked task (still waiting at the gate) and sets its scheduling attributes.
fn configure_task(group: &GroupSpec, dir: Option<&Path>, pid: libc::pid_t) -> Result<(), RunError> {
    let name = &group.name;
    if group.kind == Kind::Exec {
        // Also done by the child; doing it here too closes the race with an early kill.
        // SAFETY: setpgid has no memory-safety preconditions.
        unsafe { libc::setpgid(pid, pid) };
    }
    if let Some(dir) = dir {
        cgroup::move_process(dir, pid).map_err(|err| failed(format!("group {name:?}: {err}")))?;
    }
    if let Some(policy) = group.sched_policy {
        sys::set_policy(pid, policy.to_raw()).map_err(|err| {
            failed(format!(
                "group {name:?}: sched_setscheduler({policy:?}) for pid {pid}: {err}{}",
                if policy == spec::SchedPolicy::Ext {
                    " (SCHED_EXT needs a kernel with sched_ext)"
                } else {
                    ""
                }
            ))
        })?;
    }
    if let Some(nice) = group.nice {
        sys::set_nice(pid, nice).map_err(|err| {
            failed(format!(
                "group {name:?}: setpriority(nice {nice}) for pid {pid}: {err}{}",
                if nice < 0 {
                    " (a negative nice needs root or CAP_SYS_NICE)"
                } else {
                    ""
                }
            ))
        })?;
    }
    if let Some(cpus) = &group.cpus {
        sys::set_affinity(pid, cpus).map_err(|err| {
            failed(format!(
                "group {name:?}: sched_setaffinity({cpus:?}) for pid {pid}: {err} \
                 ({} CPUs online)",
                sys::cpus_online()
            ))
        })?;
    }
    Ok(())
}

/// The forked child: waits at the gate, then works or execs. Never returns.
fn child_main(plan: ChildPlan<'_>) -> ! {
    // A panic must not unwind into the parent's code (whose guards would kill its siblings
    // and remove the cgroups from inside a child).
    let code =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| child_body(plan))).unwrap_or(101);
    sys::exit_child(code)
}

fn child_body(plan: ChildPlan<'_>) -> i32 {
    sys::die_with_parent(plan.parent);
    // Our copy of the gate's write end would keep the gate shut for everyone.
    // SAFETY: closes a descriptor this process inherited; the File owning it in the parent's
    // frame is never dropped here (the child leaves with _exit).
    unsafe { libc::close(plan.gate_write_fd) };
    sys::block_signals(false);
    let mut byte = [0u8; 1];
    while let Err(err) = (&mut &*plan.gate_read).read(&mut byte) {
        if err.kind() != std::io::ErrorKind::Interrupted {
            break;
        }
    }
    let delay_end = sys::monotonic_ns() + plan.start_delay_ms * 1_000_000;
    while plan.stop.load(Ordering::Relaxed) == 0 {
        let now = sys::monotonic_ns();
        if now >= delay_end {
            break;
        }
        sys::sleep_ns((delay_end - now).min(10_000_000));
    }
    match plan.job {
        ChildJob::Work { work, result } => {
            // Also when stopped during the start delay: a pingpong initiator must still tell
            // its responder to quit, and the loops check the flag before any work.
            let (outcome, samples) = worker::run_work(work, plan.stop);
            match (&mut &*result).write_all(&worker::encode_result(&outcome, &samples)) {
                Ok(()) => 0,
                Err(_) => 3,
            }
        }
        ChildJob::Exec { argv, stdout } => exec_command(argv, stdout),
    }
}

/// Replaces the child with the command; returns only on failure (exit status 127, as a shell).
fn exec_command(argv: &[String], stdout: Option<&File>) -> i32 {
    use std::os::fd::AsRawFd;
    sys::new_process_group();
    // Rust ignores SIGPIPE; a command expects the default (die on a closed pipe).
    // SAFETY: resetting a signal disposition to the default has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    // Our stdout carries the report: a command writes to the capture file or to stderr.
    let target = stdout.map_or(libc::STDERR_FILENO, |f| f.as_raw_fd());
    if let Err(err) = sys::dup_onto(target, libc::STDOUT_FILENO) {
        eprintln!("upsched-workload: dup2 for {:?}: {err}", argv[0]);
        return 127;
    }
    let c_args: Vec<std::ffi::CString> = argv
        .iter()
        .filter_map(|a| std::ffi::CString::new(a.as_bytes()).ok())
        .collect();
    let mut ptrs: Vec<*const libc::c_char> = c_args.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: ptrs is a NULL-terminated array of valid C strings that outlive the call.
    unsafe { libc::execvp(ptrs[0], ptrs.as_ptr()) };
    eprintln!(
        "upsched-workload: cannot execute {:?}: {}",
        argv[0],
        std::io::Error::last_os_error()
    );
    127
}

/// Finds a program as execvp would: a path with a slash as is, else in PATH.
fn find_program(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.contains('/') {
        let path = PathBuf::from(program);
        return executable(&path).then_some(path);
    }
    let path_var = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into());
    path_var
        .split(':')
        .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(program))
        .find(|p| executable(p))
}

/// Turns what the parent knows about a reaped task into its raw report entry.
fn collect_task(slot: &mut Slot, start_ns: u64) -> TaskRaw {
    let reaped = slot.reaped.unwrap_or(Reaped {
        pid: slot.pid,
        status: Err(libc::SIGKILL),
        cpu_usec: 0,
        voluntary_switches: 0,
        involuntary_switches: 0,
    });
    let mut raw = TaskRaw {
        group: slot.group,
        index: slot.index,
        pid: slot.pid,
        role: slot.role,
        status: TaskStatus::Crashed,
        cpu_usec: reaped.cpu_usec,
        voluntary_switches: reaped.voluntary_switches,
        involuntary_switches: reaped.involuntary_switches,
        finish_ns: None,
        work: 0,
        samples: Samples::new(),
        exit_code: None,
        signal: None,
        output: None,
        error: None,
    };
    let contents = slot
        .result_file
        .as_mut()
        .and_then(|f| sys::read_all_from_start(f).ok());
    if slot.is_exec {
        raw.output = contents.map(|bytes| {
            let mut text =
                String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_OUTPUT_BYTES)]).into_owned();
            if bytes.len() > MAX_OUTPUT_BYTES {
                text.push_str("\n[output truncated]");
            }
            text
        });
        raw.finish_ns = Some(slot.reaped_at_ns.saturating_sub(start_ns));
        match reaped.status {
            _ if slot.killed_by_us => raw.status = TaskStatus::Killed,
            Ok(0) => raw.status = TaskStatus::Finished,
            Ok(code) if slot.terminated_by_us => {
                raw.status = TaskStatus::Stopped;
                raw.exit_code = Some(code);
            }
            Ok(code) => {
                raw.status = TaskStatus::Exited;
                raw.exit_code = Some(code);
            }
            Err(sig) => {
                raw.signal = Some(sig);
                raw.status = if slot.terminated_by_us && sig == libc::SIGTERM {
                    TaskStatus::Stopped
                } else {
                    TaskStatus::Crashed
                };
            }
        }
        return raw;
    }
    if slot.killed_by_us {
        raw.status = TaskStatus::Killed;
        raw.signal = Some(libc::SIGKILL);
        return raw;
    }
    match (
        reaped.status,
        contents.as_deref().and_then(worker::decode_result),
    ) {
        (Ok(0), Some((result, samples))) => {
            raw.work = result.work;
            raw.samples = samples;
            raw.finish_ns = Some(result.end_ns.saturating_sub(start_ns));
            raw.status = match result.error {
                Some(err) => {
                    raw.error = Some(err);
                    TaskStatus::Crashed
                }
                None if result.finished => TaskStatus::Finished,
                None => TaskStatus::Stopped,
            };
        }
        (Ok(code), _) => {
            raw.exit_code = Some(code);
            raw.error = Some(format!("worker exited with status {code} without a result"));
        }
        (Err(sig), _) => {
            raw.signal = Some(sig);
            raw.error = Some(format!("worker killed by signal {sig}"));
        }
    }
    raw
}

/// Measures hog iterations per second of CPU time on this machine, for sizing fixed work.
pub fn calibrate(ms: u64) -> (u64, f64) {
    let start = sys::thread_cpu_ns();
    let mut state = 1u64;
    let mut iterations = 0u64;
    while sys::thread_cpu_ns() - start < ms * 1_000_000 {
        for _ in 0..16 {
            state = worker::hog_iteration(state);
        }
        iterations += 16;
    }
    std::hint::black_box(state);
    let seconds = (sys::thread_cpu_ns() - start) as f64 / 1e9;
    (iterations, iterations as f64 / seconds)
}
