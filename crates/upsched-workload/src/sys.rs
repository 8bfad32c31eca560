//! Thin wrappers over the Linux system calls the workloads need. Each returns `io::Result`
//! with the OS error, so callers can add what they were doing.

use std::fs::File;
use std::io;
use std::os::fd::FromRawFd;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A pipe with both ends close-on-exec, so an exec'd command never holds our gates or result
/// channels open. Returns (read end, write end).
pub fn pipe() -> io::Result<(File, File)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for the kernel to fill.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    unsafe { Ok((File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1]))) }
}

/// A connected pair of Unix stream sockets (close-on-exec), as hackbench uses.
pub fn socketpair() -> io::Result<(File, File)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for the kernel to fill.
    check(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair succeeded, so both descriptors are open and owned by nobody else.
    unsafe { Ok((File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1]))) }
}

/// An anonymous in-memory file. A worker writes its result there and the parent reads it after
/// the worker exited: unlike a pipe it never blocks the writer, whatever the result's size.
pub fn memfd(name: &str) -> io::Result<File> {
    let name = std::ffi::CString::new(name).map_err(io::Error::other)?;
    // SAFETY: `name` is a valid NUL-terminated string.
    let fd = check(unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) })?;
    // SAFETY: memfd_create returned a new descriptor we own.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Result of `fork` as seen by the caller.
pub enum Forked {
    Child,
    Parent(libc::pid_t),
}

/// Forks the process.
///
/// # Safety
/// The caller must be single-threaded (as the `upsched-workload` binary is), so that the child
/// does not inherit locks held by threads that do not exist in it.
pub unsafe fn fork() -> io::Result<Forked> {
    // SAFETY: the caller guarantees the process is single-threaded.
    let pid = check(unsafe { libc::fork() })?;
    Ok(if pid == 0 {
        Forked::Child
    } else {
        Forked::Parent(pid)
    })
}

/// Ends a forked child without running the parent's destructors or flushing its stdio buffers
/// a second time.
pub fn exit_child(code: i32) -> ! {
    // SAFETY: _exit is always safe to call.
    unsafe { libc::_exit(code) }
}

/// How a reaped child ended, with its CPU time and context switches from `wait4`.
#[derive(Debug, Clone, Copy)]
pub struct Reaped {
    pub pid: libc::pid_t,
    /// `Ok(code)` for a normal exit, `Err(signal)` for death by signal.
    pub status: Result<i32, i32>,
    pub cpu_usec: u64,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
}

/// Reaps one exited child (`pid` -1 = any), without blocking when `block` is false.
/// `Ok(None)`: nothing exited yet (or no child at all: ECHILD).
pub fn wait_child(pid: libc::pid_t, block: bool) -> io::Result<Option<Reaped>> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for the kernel to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let flags = if block { 0 } else { libc::WNOHANG };
    loop {
        // SAFETY: status and usage are valid out-pointers.
        let ret = unsafe { libc::wait4(pid, &mut status, flags, &mut usage) };
        if ret < 0 {
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ECHILD) => return Ok(None),
                _ => return Err(err),
            }
        }
        if ret == 0 {
            return Ok(None);
        }
        let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
        let exit = if libc::WIFEXITED(status) {
            Ok(libc::WEXITSTATUS(status))
        } else {
            Err(libc::WTERMSIG(status))
        };
        return Ok(Some(Reaped {
            pid: ret,
            status: exit,
            cpu_usec: tv(usage.ru_utime) + tv(usage.ru_stime),
            voluntary_switches: usage.ru_nvcsw as u64,
            involuntary_switches: usage.ru_nivcsw as u64,
        }));
    }
}

pub fn kill(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions; a stale pid only yields ESRCH.
    unsafe { libc::kill(pid, signal) };
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer; the clocks used here always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_MONOTONIC in ns: one clock for the whole system, so parent and children agree.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// CPU time consumed by the calling thread, in ns.
pub fn thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// Sleeps `ns` on CLOCK_MONOTONIC, resuming after signals, like nanosleep but restartable.
pub fn sleep_ns(ns: u64) {
    let mut req = libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    loop {
        let mut rem = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: req and rem are valid pointers.
        let ret = unsafe { libc::clock_nanosleep(libc::CLOCK_MONOTONIC, 0, &req, &mut rem) };
        if ret == libc::EINTR {
            req = rem;
            continue;
        }
        return;
    }
}

/// Number of CPUs online now.
pub fn cpus_online() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as u32
}

/// Sets the nice value of process `pid`.
pub fn set_nice(pid: libc::pid_t, nice: i32) -> io::Result<()> {
    // SAFETY: setpriority has no memory-safety preconditions.
    check(unsafe { libc::setpriority(libc::PRIO_PROCESS, pid as libc::id_t, nice) }).map(|_| ())
}

/// Sets the scheduling policy of `pid` (priority 0: only the non-real-time classes are used).
pub fn set_policy(pid: libc::pid_t, policy: libc::c_int) -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: param is a valid sched_param.
    check(unsafe { libc::sched_setscheduler(pid, policy, &param) }).map(|_| ())
}

/// Restricts `pid` to the given CPUs.
pub fn set_affinity(pid: libc::pid_t, cpus: &[u32]) -> io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        if cpu as usize >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: cpu was checked against the set's size just above.
        unsafe { libc::CPU_SET(cpu as usize, &mut set) };
    }
    // SAFETY: set is a valid cpu_set_t of the size passed.
    check(unsafe { libc::sched_setaffinity(pid, std::mem::size_of_val(&set), &set) }).map(|_| ())
}

/// Asks the kernel to kill the calling child when its parent dies, so that no worker outlives
/// an `upsched-workload` killed with SIGKILL. Exits at once if the parent is already gone.
pub fn die_with_parent(parent: libc::pid_t) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number; getppid has no preconditions.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::getppid() != parent {
            libc::_exit(1);
        }
    }
}

/// Sets the calling thread's timer slack. The default 50 µs slack would otherwise show up as
/// wake-up latency that has nothing to do with the scheduler.
pub fn set_timer_slack(ns: u64) {
    // SAFETY: prctl(PR_SET_TIMERSLACK) takes an integer.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns.max(1) as libc::c_ulong, 0, 0, 0) };
}

/// The signals the parent handles synchronously with `wait_signal`.
pub fn handled_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise the set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGCHLD, libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// Blocks (`true`) or unblocks the handled signals for the calling thread. Blocked, they stay
/// pending until `wait_signal` takes them, so an interrupt can never land between two steps of
/// the cleanup; children unblock them before running.
pub fn block_signals(block: bool) {
    let set = handled_signals();
    let how = if block {
        libc::SIG_BLOCK
    } else {
        libc::SIG_UNBLOCK
    };
    // SAFETY: set is initialised; the old mask is not needed.
    unsafe { libc::pthread_sigmask(how, &set, std::ptr::null_mut()) };
}

/// Waits up to `timeout` for one of the handled signals; returns it, or `None` on timeout.
pub fn wait_signal(timeout: Duration) -> Option<libc::c_int> {
    let set = handled_signals();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: set and ts are valid; no siginfo is requested.
    let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

/// Takes a pending handled signal without waiting.
pub fn take_pending_signal() -> Option<libc::c_int> {
    wait_signal(Duration::ZERO)
}

/// Raises the soft open-file limit to the hard limit: every task holds a few descriptors and
/// the parent holds all of them until the run ends.
pub fn raise_fd_limit() {
    // SAFETY: rlim is a valid out/in pointer.
    unsafe {
        let mut rlim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rlim) == 0 && rlim.rlim_cur < rlim.rlim_max {
            rlim.rlim_cur = rlim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &rlim);
        }
    }
}

/// A word shared between the parent and all children forked after it was created
/// (an anonymous shared mapping): the parent's "stop now" flag for the workers.
pub struct SharedFlag {
    ptr: *mut AtomicU32,
}

impl SharedFlag {
    pub fn new() -> io::Result<Self> {
        // SAFETY: an anonymous shared mapping of one page, checked for failure below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // The mapping is zero-filled, which is a valid AtomicU32 holding 0.
        Ok(Self {
            ptr: ptr.cast::<AtomicU32>(),
        })
    }

    pub fn get(&self) -> &AtomicU32 {
        // SAFETY: ptr points into a live, page-aligned mapping owned by self.
        unsafe { &*self.ptr }
    }
}

impl Drop for SharedFlag {
    fn drop(&mut self) {
        // SAFETY: unmaps the page mapped in `new`; no reference outlives self.
        unsafe { libc::munmap(self.ptr.cast(), 4096) };
    }
}

/// Duplicates `fd` onto `target` in a forked child (before exec).
pub fn dup_onto(fd: libc::c_int, target: libc::c_int) -> io::Result<()> {
    // SAFETY: dup2 has no memory-safety preconditions.
    check(unsafe { libc::dup2(fd, target) }).map(|_| ())
}

/// Puts the calling process into a new process group, so the parent can signal a command and
/// everything it started at once.
pub fn new_process_group() {
    // SAFETY: setpgid(0, 0) has no memory-safety preconditions.
    unsafe { libc::setpgid(0, 0) };
}

/// Reads a whole file descriptor from offset 0 (a memfd written by a child).
pub fn read_all_from_start(file: &mut File) -> io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(0))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}
