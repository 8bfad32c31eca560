//! Runs a simulator scenario (`docs/simulator.md`) for real on this machine: one process per
//! task instance, in the scenario's cgroups at its nice values, executing the same phase
//! programs, so that what the kernel's scheduler gives each task can be held against what the
//! simulator predicts for the same file (`docs/fidelity.md`).
//!
//! Processes rather than threads: a scenario's tasks sit in different cgroups, and cgroup v2
//! puts the threads of one process in different groups only in threaded subtrees, which the
//! tenants' cgroups are not. The processes are forked before any thread exists, so each child
//! is an ordinary single-threaded program.
//!
//! Each task measures itself (its CPU time, runnable wait and switch-ins from
//! `/proc/thread-self/schedstat`, its finish time) and writes one line to the parent, which
//! gathers them into a [`RealReport`].

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use upsched_sim::Scenario;
use upsched_sim::rng::Dist;
use upsched_sim::scenario::{EventKind, FOREVER, Op, nice_to_weight};

use crate::{CreatedCgroups, burn_cpu, cpu_time};

/// What one task instance got from the real scheduler.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RealTask {
    /// The instance's name as the simulator's report names it (`NAME`, or `NAME.i`).
    pub name: String,
    /// The scenario's task.
    pub task: String,
    pub cgroup: String,
    pub nice: i32,
    /// CPU time from the start of the run (`sum_exec_runtime`).
    pub cpu_ns: u64,
    /// Time spent runnable but not running from the start of the run (`run_delay`).
    pub wait_ns: u64,
    /// Times the task was switched in from the start of the run (`pcount`): the number of
    /// waits `wait_ns` sums.
    pub switch_ins: u64,
    /// Whether the program ended before the scenario's duration.
    pub finished: bool,
    /// When the program ended, from the start of the run.
    pub finish_ns: Option<u64>,
}

/// The real run of a scenario.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RealReport {
    pub scenario: String,
    /// CPUs online here (the simulator's machine should have as many).
    pub cpus: u32,
    /// Length of the run: the scenario's duration, or less when every task finished earlier
    /// (as the simulator ends a run when nothing is left to happen).
    pub duration_ns: u64,
    pub tasks: Vec<RealTask>,
}

/// The scenario features the real runner does not run, each named; empty when it runs them
/// all.
pub fn unsupported(scenario: &Scenario) -> Vec<String> {
    let mut missing = Vec::new();
    if !scenario.arrivals.is_empty() {
        missing.push("[[arrival]] processes".to_string());
    }
    if !scenario.chains.is_empty() {
        missing.push("[[chain]]s".to_string());
    }
    for event in &scenario.events {
        if event.kind == EventKind::Broadcast {
            missing.push(format!("event {:?}: broadcast events", event.name));
        }
    }
    for task in &scenario.tasks {
        let name = &task.name;
        if task.affinity != 0 {
            missing.push(format!("task {name:?}: cpus (affinity)"));
        }
        if task.weight != nice_to_weight(task.nice) {
            missing.push(format!(
                "task {name:?}: weight {} (the kernel sets weights by nice: give a nice value)",
                task.weight
            ));
        }
        for op in &task.program {
            let feature = match op {
                Op::Run(Dist::Fixed(_)) | Op::Sleep(Dist::Fixed(_)) => continue,
                Op::Run(_) | Op::Sleep(_) => "drawn durations (only fixed ones)",
                Op::Timer(_)
                | Op::Block(_)
                | Op::Signal { .. }
                | Op::Yield
                | Op::LoopBegin { .. }
                | Op::LoopEnd { .. }
                | Op::Fork(_)
                | Op::Exit => continue,
                Op::SpinUntil(_) | Op::SpinThenBlock { .. } => "spin_until",
                Op::SetHint { .. } => "set_hint",
            };
            let line = format!("task {name:?}: {feature}");
            if !missing.contains(&line) {
                missing.push(line);
            }
        }
    }
    missing
}

/// Why a real run could not be made.
#[derive(Debug)]
pub struct RunnerError(String);

impl std::fmt::Display for RunnerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RunnerError {}

fn os_error(what: &str) -> RunnerError {
    RunnerError(format!("{what}: {}", std::io::Error::last_os_error()))
}

/// A pipe, both ends closed on drop.
fn pipe(nonblocking_read: bool) -> Result<(OwnedFd, OwnedFd), RunnerError> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(os_error("pipe"));
    }
    // SAFETY: pipe2 returned two new descriptors that nothing else owns.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    if nonblocking_read {
        // SAFETY: fcntl on a descriptor we own.
        unsafe { libc::fcntl(read.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    }
    Ok((read, write))
}

fn write_all(fd: i32, bytes: &[u8]) -> bool {
    let mut done = 0;
    while done < bytes.len() {
        // SAFETY: the pointer and length describe the rest of `bytes`.
        let n = unsafe { libc::write(fd, bytes[done..].as_ptr().cast(), bytes.len() - done) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        done += n as usize;
    }
    true
}

/// The monotonic clock (`cpu_time` reads any clock), whose absolute values `sleep_until` takes.
fn monotonic() -> Duration {
    cpu_time(libc::CLOCK_MONOTONIC)
}

/// Runs `scenario` here: its cgroups under `cgroup_root` (the cgroup2 mount; groups that
/// exist are used as they are, so tenants can be bound to them first), each task instance a
/// process at its nice value, until every program ended or the scenario's duration passed.
/// Refuses a scenario with features it does not run ([`unsupported`]). The process becomes
/// a child subreaper and reaps every child it has at the end (the forked tasks among them):
/// call it from a process with no other children.
pub fn run(scenario: &Scenario, cgroup_root: &Path) -> Result<RealReport, RunnerError> {
    let missing = unsupported(scenario);
    if !missing.is_empty() {
        return Err(RunnerError(format!(
            "the real runner does not run: {}",
            missing.join("; ")
        )));
    }
    let mut created = CreatedCgroups::default();
    let mut cgroup_dirs = Vec::new();
    for path in &scenario.cgroups {
        let mut dir = cgroup_root.to_path_buf();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            dir.push(part);
            created
                .create(&dir)
                .map_err(|e| RunnerError(e.to_string()))?;
        }
        cgroup_dirs.push(dir);
    }
    let mut events = Vec::new();
    for event in &scenario.events {
        let (read, write) = pipe(true)?;
        let tokens = vec![0u8; event.initial as usize];
        if !write_all(write.as_raw_fd(), &tokens) {
            return Err(os_error("initial tokens"));
        }
        events.push((read, write));
    }
    let (go_read, go_write) = pipe(false)?;
    let (result_read, result_write) = pipe(false)?;

    // Forked tasks are the children's children: as the subreaper the runner reaps them too.
    // SAFETY: a plain prctl on this process.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let procs: Vec<PathBuf> = cgroup_dirs.iter().map(|d| d.join("cgroup.procs")).collect();
    let total: usize = scenario.tasks.iter().map(|t| t.count as usize).sum();
    let mut children = Children::default();
    let mut instances = Vec::new();
    for (spec_index, spec) in scenario.tasks.iter().enumerate() {
        for i in 0..spec.count {
            let name = if spec.count == 1 {
                spec.name.clone()
            } else {
                format!("{}.{i}", spec.name)
            };
            let child = Child {
                index: instances.len(),
                instances: total,
                spec: spec_index,
                go: go_read.as_raw_fd(),
                results: result_write.as_raw_fd(),
                events: events
                    .iter()
                    .map(|(r, w)| (r.as_raw_fd(), w.as_raw_fd()))
                    .collect(),
                procs: procs.clone(),
                t0: Duration::ZERO,
                end: Duration::ZERO,
            };
            // SAFETY: the child takes no lock another thread may hold: it makes system calls
            // and allocates (glibc's fork handlers leave the allocator usable), and exits
            // without returning, by `_exit` even if it panics.
            let pid = unsafe { libc::fork() };
            if pid < 0 {
                return Err(os_error("fork"));
            }
            if pid == 0 {
                drop(go_write);
                let _ =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| child.run(scenario)));
                // SAFETY: ending the child at once, as `Child::run` does.
                unsafe { libc::_exit(1) }
            }
            children.0.push(pid);
            // Tasks of the root group stay in the runner's group (the root when it is run as
            // the fidelity suite runs it), so a scenario without cgroups runs anywhere.
            if scenario.cgroups[spec.cgroup as usize] != "/" {
                let procs = &procs[spec.cgroup as usize];
                std::fs::write(procs, pid.to_string())
                    .map_err(|e| RunnerError(format!("moving into {}: {e}", procs.display())))?;
            }
            instances.push((name, spec_index));
        }
    }
    // Every child waits on `go` for the start time: all start at once, in their cgroups.
    // The results pipe reaches end of file when the last child has exited.
    let t0 = (monotonic().as_nanos() as u64).to_ne_bytes();
    for chunk in instances.chunks(libc::PIPE_BUF / 8) {
        let starts: Vec<u8> = chunk.iter().flat_map(|_| t0).collect();
        if !write_all(go_write.as_raw_fd(), &starts) {
            return Err(os_error("starting the tasks"));
        }
    }
    drop(go_write);
    drop(result_write);
    let mut text = String::new();
    std::fs::File::from(result_read)
        .read_to_string(&mut text)
        .map_err(|e| RunnerError(format!("reading the tasks' results: {e}")))?;
    children.reap();
    // The forked tasks, reparented to the runner as they were orphaned.
    // SAFETY: waiting for any child of this process until there is none.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), 0) } > 0 {}

    let mut tasks: Vec<Option<RealTask>> = vec![None; instances.len()];
    // The forked tasks of each spec share one row, `NAME[*]`, as in the simulator's report.
    let mut forked: Vec<Option<RealTask>> = vec![None; scenario.tasks.len()];
    let mut last_finish = 0;
    let mut all_finished = true;
    for line in text.lines() {
        let fields: Vec<u64> = line.split(' ').filter_map(|f| f.parse().ok()).collect();
        let [index, finished, finish_ns, cpu_ns, wait_ns, switch_ins] = fields[..] else {
            return Err(RunnerError(format!("a task reported {line:?}")));
        };
        let index = index as usize;
        let (name, spec, row) = if let Some((name, spec)) = instances.get(index) {
            (name.clone(), *spec, &mut tasks[index])
        } else if let Some(row) = forked.get_mut(index - instances.len()) {
            let spec = index - instances.len();
            (format!("{}[*]", scenario.tasks[spec].name), spec, row)
        } else {
            return Err(RunnerError(format!("a task reported {line:?}")));
        };
        all_finished &= finished == 1;
        if finished == 1 {
            last_finish = last_finish.max(finish_ns);
        }
        let spec = &scenario.tasks[spec];
        let row = row.get_or_insert_with(|| RealTask {
            name,
            task: spec.name.clone(),
            cgroup: scenario.cgroups[spec.cgroup as usize].clone(),
            nice: spec.nice,
            cpu_ns: 0,
            wait_ns: 0,
            switch_ins: 0,
            finished: true,
            finish_ns: None,
        });
        row.cpu_ns += cpu_ns;
        row.wait_ns += wait_ns;
        row.switch_ins += switch_ins;
        row.finished &= finished == 1;
        // A shared row's finish would be many tasks': only an instance has one.
        if index < instances.len() && finished == 1 {
            row.finish_ns = Some(finish_ns);
        }
    }
    let mut tasks: Vec<RealTask> = tasks
        .into_iter()
        .zip(&instances)
        .map(|(t, (name, _))| t.ok_or_else(|| RunnerError(format!("task {name} reported nothing"))))
        .collect::<Result<_, _>>()?;
    tasks.extend(forked.into_iter().flatten());
    let duration_ns = if all_finished {
        last_finish
    } else {
        scenario.duration
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let failed = created.remove();
    if !failed.is_empty() {
        return Err(RunnerError(format!(
            "cgroups left behind: {}",
            failed.join(", ")
        )));
    }
    Ok(RealReport {
        scenario: scenario.name.clone(),
        cpus,
        duration_ns,
        tasks,
    })
}

/// The children forked so far; killed and reaped if the run fails half way.
#[derive(Default)]
struct Children(Vec<libc::pid_t>);

impl Children {
    fn reap(&mut self) {
        for pid in self.0.drain(..) {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for pid in &self.0 {
            // SAFETY: signalling our own child, which is not reaped yet.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        self.reap();
    }
}

/// One task instance, in its forked process.
struct Child {
    /// The instance's row, or for a forked task `instances + spec`.
    index: usize,
    /// Instances the scenario starts (the rows before those of forked tasks).
    instances: usize,
    spec: usize,
    go: i32,
    results: i32,
    /// Each counter event as a pipe (read end non-blocking): a token is a byte.
    events: Vec<(i32, i32)>,
    /// `cgroup.procs` of each of the scenario's cgroups, for forked tasks of another group.
    procs: Vec<PathBuf>,
    /// The start of the run, and its end.
    t0: Duration,
    end: Duration,
}

impl Child {
    /// Waits for the start, runs the program, reports and exits; never returns.
    fn run(mut self, scenario: &Scenario) -> ! {
        let spec = &scenario.tasks[self.spec];
        // SAFETY: plain system calls on this process.
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, 0, spec.nice);
        }
        // Counted from here, just before the start: what the child spent since the fork
        // (copying the parent's pages on write, costly under emulation) is not the scenario's,
        // while its wait for a CPU once the start is given is.
        let before = schedstat().unwrap_or((0, 0, 0));
        // The start: the parent writes its start time once for each child, 8 bytes that one
        // read takes whole (pipe writes and reads of whole records below PIPE_BUF are not
        // split). A common origin, not each child's first moment on a CPU: a task the policy
        // keeps waiting at the start has waited, and its finish time must say so.
        let mut start_ns = [0u8; 8];
        loop {
            // SAFETY: reading at most 8 bytes into `start_ns`.
            let n = unsafe { libc::read(self.go, start_ns.as_mut_ptr().cast(), 8) };
            if n == 8 {
                break;
            }
            if n == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                // SAFETY: the parent is gone or failed: end the child at once.
                unsafe { libc::_exit(1) }
            }
        }
        self.t0 = Duration::from_nanos(u64::from_ne_bytes(start_ns));
        self.end = self.t0 + Duration::from_nanos(scenario.duration);
        let start = self.t0 + Duration::from_nanos(spec.start);
        let finished = sleep_until(start, self.end) && self.execute(scenario, &spec.program);
        self.report(finished, before)
    }

    /// A task forked by this one (`fork`): a new process of `spec` in its cgroup at its nice
    /// value, which runs its program at once and reports as one of the spec's forked tasks.
    fn fork(&self, scenario: &Scenario, spec: usize) {
        // SAFETY: as the runner's fork: this process is single-threaded.
        let pid = unsafe { libc::fork() };
        if pid != 0 {
            return;
        }
        let run = std::panic::AssertUnwindSafe(|| {
            let task = &scenario.tasks[spec];
            let parent = &scenario.tasks[self.spec];
            if task.cgroup != parent.cgroup {
                let _ = std::fs::write(&self.procs[task.cgroup as usize], "0");
            }
            // SAFETY: a plain system call on this process.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, task.nice) };
            let child = Child {
                index: self.instances + spec,
                spec,
                events: self.events.clone(),
                procs: self.procs.clone(),
                ..*self
            };
            // A new task's counters start at zero: its first wait is the workload's, and so
            // is what the fork costs it.
            let finished = child.execute(scenario, &task.program);
            child.report(finished, (0, 0, 0))
        });
        let _ = std::panic::catch_unwind(run);
        // SAFETY: ending the forked task at once, as `report` does.
        unsafe { libc::_exit(1) }
    }

    /// Writes the task's line (counters since `before`) to the runner and exits.
    fn report(&self, finished: bool, before: (u64, u64, u64)) -> ! {
        let finish = monotonic().saturating_sub(self.t0);
        let after = schedstat().unwrap_or(before);
        let (cpu, wait, switch_ins) = (
            after.0.saturating_sub(before.0),
            after.1.saturating_sub(before.1),
            after.2.saturating_sub(before.2),
        );
        let line = format!(
            "{} {} {} {cpu} {wait} {switch_ins}\n",
            self.index,
            u8::from(finished),
            finish.as_nanos()
        );
        // A line shorter than PIPE_BUF is written at once, not interleaved with others.
        write_all(self.results, line.as_bytes());
        // SAFETY: ending the child without running the parent's exit handlers.
        unsafe { libc::_exit(0) }
    }

    /// Runs the program until its end (true) or the end of the run (false).
    fn execute(&self, scenario: &Scenario, program: &[Op]) -> bool {
        let end = self.end;
        let mut remaining = vec![0u64; program.len()];
        let mut timer_next = None;
        let mut pc = 0;
        while pc < program.len() {
            if monotonic() >= end {
                return false;
            }
            match &program[pc] {
                Op::Run(dist) => {
                    // In bursts of at most 10 ms, so that a long run still stops at `end`.
                    let mut left = fixed(dist);
                    while !left.is_zero() {
                        if monotonic() >= end {
                            return false;
                        }
                        let burst = left.min(Duration::from_millis(10));
                        burn_cpu(burst);
                        left -= burst;
                    }
                }
                Op::Sleep(dist) => {
                    if !sleep_until(monotonic() + fixed(dist), end) {
                        return false;
                    }
                }
                Op::Timer(period) => {
                    // As the simulator: the first use sets the origin; a boundary already
                    // passed continues at once.
                    let next = timer_next.unwrap_or_else(monotonic) + Duration::from_nanos(*period);
                    timer_next = Some(next);
                    if !sleep_until(next, end) {
                        return false;
                    }
                }
                Op::Block(event) => {
                    if !self.take_token(*event as usize, end) {
                        return false;
                    }
                }
                Op::Signal { event, count } => {
                    let tokens = vec![0u8; *count as usize];
                    write_all(self.events[*event as usize].1, &tokens);
                }
                Op::Yield => {
                    // SAFETY: a plain system call.
                    unsafe { libc::sched_yield() };
                }
                Op::LoopBegin { count, end: last } => {
                    if *count == 0 {
                        pc = *last as usize + 1;
                        continue;
                    }
                    remaining[pc] = *count;
                }
                Op::LoopEnd { begin } => {
                    let left = &mut remaining[*begin as usize];
                    if *left != FOREVER {
                        *left -= 1;
                    }
                    if *left > 0 {
                        pc = *begin as usize + 1;
                        continue;
                    }
                }
                Op::Exit => return true,
                Op::Fork(spec) => self.fork(scenario, *spec as usize),
                // Refused by `unsupported` before anything was forked.
                Op::SpinUntil(_) | Op::SpinThenBlock { .. } | Op::SetHint { .. } => return true,
            }
            pc += 1;
        }
        true
    }

    /// Takes one token of `event`, waiting for it until `end`; false when `end` came first.
    fn take_token(&self, event: usize, end: Duration) -> bool {
        let fd = self.events[event].0;
        loop {
            let mut byte = 0u8;
            // SAFETY: reading one byte into `byte` from a non-blocking pipe.
            if unsafe { libc::read(fd, (&raw mut byte).cast(), 1) } == 1 {
                return true;
            }
            // Another waiter may take the byte between the wake-up and the read: then wait
            // again.
            let now = monotonic();
            if now >= end {
                return false;
            }
            let mut poll = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let timeout = (end - now).as_millis().clamp(1, i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut poll, 1, timeout) };
        }
    }
}

/// The duration of a fixed distribution (the others are refused by [`unsupported`]).
fn fixed(dist: &Dist) -> Duration {
    match dist {
        Dist::Fixed(ns) => Duration::from_nanos(*ns),
        _ => Duration::ZERO,
    }
}

/// Sleeps until `until` unless `end` comes first; says whether it reached `until`.
fn sleep_until(until: Duration, end: Duration) -> bool {
    let wake = until.min(end);
    let ts = libc::timespec {
        tv_sec: wake.as_secs() as libc::time_t,
        tv_nsec: wake.subsec_nanos() as libc::c_long,
    };
    // SAFETY: an absolute sleep on the monotonic clock with a valid timespec; EINTR restarts.
    while unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    } == libc::EINTR
    {}
    until < end
}

/// This thread's CPU time, run delay and switch-ins (`/proc/thread-self/schedstat`).
fn schedstat() -> Option<(u64, u64, u64)> {
    let text = std::fs::read_to_string(PathBuf::from("/proc/thread-self/schedstat")).ok()?;
    parse_schedstat(&text)
}

fn parse_schedstat(text: &str) -> Option<(u64, u64, u64)> {
    let mut fields = text.split_whitespace().map(|f| f.parse().ok());
    Some((fields.next()??, fields.next()??, fields.next()??))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(text: &str) -> Scenario {
        upsched_sim::parse_scenario(text, "test.toml").unwrap()
    }

    #[test]
    fn names_every_feature_it_does_not_run() {
        let s = scenario(
            r#"
duration = "1s"
[machine]
cpus = 2
[[event]]
name = "all"
kind = "broadcast"
[[task]]
name = "t"
weight = 1000
cpus = "0"
program = [{ run = { dist = "exponential", mean = "1ms" } }, { spin_until = "all" },
           { set_hint = 0, value = 1 }, { fork = "job" }]
[[task]]
name = "job"
count = 0
program = [{ run = "1ms" }]
[[arrival]]
name = "a"
process = "periodic"
period = "10ms"
spawn = "job"
"#,
        );
        let missing = unsupported(&s);
        assert!(!missing.iter().any(|m| m.contains("job")), "{missing:?}");
        for feature in [
            "[[arrival]]",
            "broadcast",
            "affinity",
            "weight 1000",
            "drawn durations",
            "spin_until",
            "set_hint",
        ] {
            assert!(
                missing.iter().any(|m| m.contains(feature)),
                "{feature}: {missing:?}"
            );
        }
        let err = run(&s, Path::new("/nonexistent")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the real runner does not run: ")
        );
    }

    #[test]
    fn runs_a_ping_pong_pair_and_a_hog_here() {
        // Plain directories stand in for cgroups: moving a process into one fails, so this
        // runs everything in the root group.
        let s = scenario(
            r#"
duration = "5s"
[[event]]
name = "ping"
[[event]]
name = "pong"
[[task]]
name = "ping"
program = [{ loop = 20, body = [{ signal = "ping" }, { block = "pong" }] }]
[[task]]
name = "pong"
program = [{ loop = 20, body = [{ block = "ping" }, { run = "1ms" }, { signal = "pong" }] }]
[[task]]
name = "sleeper"
count = 2
nice = 5
program = [{ loop = 3, body = [{ timer = "10ms" }] }, { run = "5ms" }, { fork = "job" }]
[[task]]
name = "job"
count = 0
nice = 3
program = [{ run = "2ms" }]
"#,
        );
        let report = run(&s, Path::new("/")).unwrap();
        let names: Vec<&str> = report.tasks.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["ping", "pong", "sleeper.0", "sleeper.1", "job[*]"]);
        let jobs = &report.tasks[4];
        assert!(jobs.cpu_ns >= 4_000_000 && jobs.finished, "{jobs:?}");
        assert_eq!((jobs.nice, jobs.finish_ns), (3, None));
        for task in &report.tasks {
            assert!(task.finished, "{task:?}");
        }
        let pong = &report.tasks[1];
        assert!(pong.cpu_ns >= 20_000_000, "{pong:?}");
        let sleeper = &report.tasks[2];
        assert!(sleeper.finish_ns.unwrap() >= 35_000_000, "{sleeper:?}");
        assert_eq!(sleeper.nice, 5);
        assert!(report.duration_ns < 5_000_000_000);
        assert!(report.duration_ns >= sleeper.finish_ns.unwrap());
    }

    #[test]
    fn parses_schedstat() {
        assert_eq!(parse_schedstat("123 456 7\n"), Some((123, 456, 7)));
        assert_eq!(parse_schedstat("123 x 7\n"), None);
        assert_eq!(parse_schedstat(""), None);
    }
}
