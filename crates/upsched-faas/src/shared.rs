// SPDX-License-Identifier: GPL-2.0-only
//! The memory every process of a run shares: one memfd, mapped shared, holding the run's
//! parameters, each chain's queues (arrivals, and each function's inbox and outbox), the
//! requests' times and each function's accounting. Every field is an atomic, so a zeroed
//! mapping is a valid initial state and no process needs a lock to read another's writes.
//!
//! Queues never wrap: each request enters each queue of its chain exactly once, so a queue
//! holds at most [`MAX_REQUESTS`] items and the arrival process stops at that many.

use std::num::NonZeroUsize;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::FaasError;

/// Requests per chain, in all: the size of every queue and request table.
pub const MAX_REQUESTS: usize = 8192;
/// Chains in one run.
pub const MAX_CHAINS: usize = 32;
/// Runtime threads per function.
pub const MAX_POLLERS: usize = 8;
/// Threads per function process that are accounted: the worker (index 0) and the pollers.
pub const MAX_THREADS: usize = 1 + MAX_POLLERS;
/// Functions per chain (`upsched_sim::faas::FUNCTIONS`).
pub const STAGES: usize = 5;
/// A thread that has no task slot in the tenant (no hints).
pub const NO_SLOT: u32 = u32::MAX;
/// Bytes kept for the run's parameters (JSON).
const PARAMS_BYTES: usize = 4096;
/// Bytes kept for the first error a child reports.
const ERROR_BYTES: usize = 1024;

/// A queue with one producer and any number of consumers, and a futex word its consumers
/// sleep on.
#[repr(C)]
pub struct Queue {
    tail: AtomicU32,
    head: AtomicU32,
    /// Bumped at every push; consumers wait on it.
    seq: AtomicU32,
    sleepers: AtomicU32,
    items: [AtomicU32; MAX_REQUESTS],
    pushed_ns: [AtomicU64; MAX_REQUESTS],
}

impl Queue {
    /// Appends request `request`, pushed at `now_ns`, and wakes one sleeping consumer. Only
    /// one process pushes into a given queue.
    pub fn push(&self, request: u32, now_ns: u64) {
        let t = self.tail.load(Ordering::Relaxed) as usize;
        // Each request enters each queue once and requests are numbered below MAX_REQUESTS.
        let Some(slot) = self.items.get(t) else {
            return;
        };
        slot.store(request, Ordering::Relaxed);
        self.pushed_ns[t].store(now_ns, Ordering::Relaxed);
        self.tail.store(t as u32 + 1, Ordering::Release);
        self.seq.fetch_add(1, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            futex_wake(&self.seq, 1);
        }
    }

    /// Takes the oldest request, with the time it was pushed.
    pub fn take(&self) -> Option<(u32, u64)> {
        loop {
            let h = self.head.load(Ordering::Acquire);
            if h >= self.tail.load(Ordering::Acquire) {
                return None;
            }
            if self
                .head
                .compare_exchange(h, h + 1, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                let h = h as usize;
                return Some((
                    self.items[h].load(Ordering::Relaxed),
                    self.pushed_ns[h].load(Ordering::Relaxed),
                ));
            }
        }
    }

    /// Requests queued now.
    pub fn len(&self) -> u32 {
        let tail = self.tail.load(Ordering::Acquire);
        tail.saturating_sub(self.head.load(Ordering::Acquire))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sleeps until a request is pushed (or `timeout`); returns at once if one is queued.
    pub fn wait(&self, timeout: Duration) {
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let seq = self.seq.load(Ordering::SeqCst);
        if self.is_empty() {
            futex_wait(&self.seq, seq, timeout);
        }
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The futex word the platform sleeps on, rung by whoever fills one of its sources.
#[repr(C)]
pub struct Bell {
    seq: AtomicU32,
    sleepers: AtomicU32,
}

impl Bell {
    pub fn ring(&self) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            futex_wake(&self.seq, i32::MAX);
        }
    }

    /// The ring count now, to pass to [`Bell::wait`] after looking at the sources.
    pub fn count(&self) -> u32 {
        self.seq.load(Ordering::SeqCst)
    }

    /// Sleeps unless the bell rang since `count` was read (or until `timeout`).
    pub fn wait(&self, count: u32, timeout: Duration) {
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        if self.seq.load(Ordering::SeqCst) == count {
            futex_wait(&self.seq, count, timeout);
        }
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One accounted thread of a function process.
#[repr(C)]
pub struct ThreadAccount {
    pub tid: AtomicU32,
    /// Its task slot in the tenant's hint map, [`NO_SLOT`] without hints.
    pub task_slot: AtomicU32,
    /// Its CPU time (`sum_exec_runtime`) when last attributed.
    pub last_cpu_ns: AtomicU64,
    /// CPU attributed to times its function had no pending request, and to the others.
    pub idle_cpu_ns: AtomicU64,
    pub pending_cpu_ns: AtomicU64,
    /// CPU spent polling the inbox (pollers only), from the thread's own CPU clock, in all,
    /// and at the start of the measurement.
    pub poll_cpu_ns: AtomicU64,
    pub poll_base_ns: AtomicU64,
}

/// One function of one chain: its queues, its pending-request state and its accounting.
#[repr(C)]
pub struct FunctionState {
    pub pid: AtomicU32,
    /// Threads published (worker and pollers).
    pub threads_ready: AtomicU32,
    /// Held while the pending state changes and the threads' CPU is attributed.
    lock: AtomicU32,
    /// Requests at this function: pushed into its inbox and not yet passed on by its worker.
    pub in_stage: AtomicU32,
    pub idle_since_ns: AtomicU64,
    pub idle_wall_ns: AtomicU64,
    pub idle_periods: AtomicU64,
    /// Bit `i`: thread `i` took a request from the inbox since the platform last looked (a
    /// platform's runtime API knows which runtime thread fetched an invocation).
    pub taken_by: AtomicU32,
    /// Requests taken from the inbox, and their waits there (push to take).
    pub pickups: AtomicU64,
    pub pickup_sum_ns: AtomicU64,
    pub pickup_max_ns: AtomicU64,
    pub threads: [ThreadAccount; MAX_THREADS],
    pub inbox: Queue,
    pub outbox: Queue,
}

/// What a transition of a function's pending state does to its threads' CPU: the time since
/// the last attribution was spent in the state that ends now.
pub trait CpuReader {
    /// Thread `index`'s CPU time now (ns), if it can be read.
    fn cpu_ns(&mut self, index: usize) -> Option<u64>;
}

impl FunctionState {
    fn locked<T>(&self, f: impl FnOnce() -> T) -> T {
        while self.lock.swap(1, Ordering::Acquire) == 1 {
            std::hint::spin_loop();
        }
        let value = f();
        self.lock.store(0, Ordering::Release);
        value
    }

    fn attribute(&self, threads: usize, cpu: &mut dyn CpuReader, idle: bool) {
        for (i, account) in self.threads.iter().take(threads).enumerate() {
            let Some(now) = cpu.cpu_ns(i) else { continue };
            let last = account.last_cpu_ns.swap(now, Ordering::Relaxed);
            let bucket = if idle {
                &account.idle_cpu_ns
            } else {
                &account.pending_cpu_ns
            };
            bucket.fetch_add(now.saturating_sub(last), Ordering::Relaxed);
        }
    }

    /// The start of the measurement: the function is idle from `now_ns`, its threads' CPU so
    /// far is nobody's.
    pub fn start_measuring(&self, threads: usize, cpu: &mut dyn CpuReader, now_ns: u64) {
        self.locked(|| {
            for (i, account) in self.threads.iter().take(threads).enumerate() {
                if let Some(now) = cpu.cpu_ns(i) {
                    account.last_cpu_ns.store(now, Ordering::Relaxed);
                }
                let polled = account.poll_cpu_ns.load(Ordering::Relaxed);
                account.poll_base_ns.store(polled, Ordering::Relaxed);
            }
            self.idle_since_ns.store(now_ns, Ordering::Relaxed);
        });
    }

    /// A request arrives (before it is pushed into the inbox): an idle period ends.
    pub fn enter(&self, threads: usize, cpu: &mut dyn CpuReader, now_ns: u64) {
        self.locked(|| {
            if self.in_stage.load(Ordering::Relaxed) == 0 {
                self.end_idle(threads, cpu, now_ns);
            }
            self.in_stage.fetch_add(1, Ordering::Relaxed);
        });
    }

    /// A request leaves (after it is pushed into the outbox): with none left, a pending period
    /// ends. Says whether the function is idle now.
    pub fn leave(&self, threads: usize, cpu: &mut dyn CpuReader, now_ns: u64) -> bool {
        self.locked(|| {
            let left = self.in_stage.load(Ordering::Relaxed).saturating_sub(1);
            self.in_stage.store(left, Ordering::Relaxed);
            if left == 0 {
                self.attribute(threads, cpu, false);
                self.idle_since_ns.store(now_ns, Ordering::Relaxed);
            }
            left == 0
        })
    }

    /// The end of the measurement: the current period is attributed.
    pub fn finish(&self, threads: usize, cpu: &mut dyn CpuReader, now_ns: u64) {
        self.locked(|| {
            if self.in_stage.load(Ordering::Relaxed) == 0 {
                self.end_idle(threads, cpu, now_ns);
            } else {
                self.attribute(threads, cpu, false);
            }
        });
    }

    fn end_idle(&self, threads: usize, cpu: &mut dyn CpuReader, now_ns: u64) {
        self.attribute(threads, cpu, true);
        let since = self.idle_since_ns.load(Ordering::Relaxed);
        self.idle_wall_ns
            .fetch_add(now_ns.saturating_sub(since), Ordering::Relaxed);
        self.idle_periods.fetch_add(1, Ordering::Relaxed);
    }

    pub fn picked_up(&self, wait_ns: u64) {
        self.pickups.fetch_add(1, Ordering::Relaxed);
        self.pickup_sum_ns.fetch_add(wait_ns, Ordering::Relaxed);
        self.pickup_max_ns.fetch_max(wait_ns, Ordering::Relaxed);
    }
}

/// One chain: its arrivals, its requests' times and its functions.
#[repr(C)]
pub struct ChainState {
    pub arrived: AtomicU32,
    pub completed: AtomicU32,
    pub arrivals: Queue,
    pub arrival_ns: [AtomicU64; MAX_REQUESTS],
    pub done_ns: [AtomicU64; MAX_REQUESTS],
    pub functions: [FunctionState; STAGES],
}

/// The whole shared region.
#[repr(C)]
pub struct Shared {
    /// Function processes whose threads are all published.
    pub functions_ready: AtomicU32,
    /// Set by the platform once it measures (its start, ns of CLOCK_MONOTONIC).
    pub measuring_since_ns: AtomicU64,
    /// Set by the arrival process when it stops (its stop time).
    pub arrivals_done_ns: AtomicU64,
    /// Arrivals that the bound of requests per chain refused.
    pub arrivals_capped: AtomicU64,
    /// Set by the supervisor: the platform attributes the last periods and says so in
    /// `finished_ns`.
    pub stop: AtomicU32,
    pub finished_ns: AtomicU64,
    /// Rung by the arrival process and the workers: the platform has something to route.
    pub bell: Bell,
    params_len: AtomicU32,
    params: [AtomicU32; PARAMS_BYTES / 4],
    error_len: AtomicU32,
    error: [AtomicU32; ERROR_BYTES / 4],
    pub chains: [ChainState; MAX_CHAINS],
}

fn store_bytes(len: &AtomicU32, words: &[AtomicU32], bytes: &[u8]) -> bool {
    if bytes.len() > words.len() * 4 {
        return false;
    }
    for (word, chunk) in words.iter().zip(bytes.chunks(4)) {
        let mut b = [0u8; 4];
        b[..chunk.len()].copy_from_slice(chunk);
        word.store(u32::from_ne_bytes(b), Ordering::Relaxed);
    }
    len.store(bytes.len() as u32, Ordering::Release);
    true
}

fn load_bytes(len: &AtomicU32, words: &[AtomicU32]) -> Vec<u8> {
    let n = (len.load(Ordering::Acquire) as usize).min(words.len() * 4);
    let mut bytes: Vec<u8> = words
        .iter()
        .flat_map(|w| w.load(Ordering::Relaxed).to_ne_bytes())
        .collect();
    bytes.truncate(n);
    bytes
}

impl Shared {
    pub fn set_params(&self, json: &str) -> Result<(), FaasError> {
        if store_bytes(&self.params_len, &self.params, json.as_bytes()) {
            Ok(())
        } else {
            Err(FaasError::Setup(format!(
                "the run's parameters take {} bytes, more than the {PARAMS_BYTES} kept for them",
                json.len()
            )))
        }
    }

    pub fn params(&self) -> String {
        String::from_utf8_lossy(&load_bytes(&self.params_len, &self.params)).into_owned()
    }

    /// Records `message` unless an error is recorded already (the first one is the cause).
    pub fn fail(&self, message: &str) {
        if self.error_len.load(Ordering::Acquire) == 0 {
            let mut end = message.len().min(ERROR_BYTES);
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            store_bytes(&self.error_len, &self.error, &message.as_bytes()[..end]);
        }
    }

    pub fn error(&self) -> Option<String> {
        let bytes = load_bytes(&self.error_len, &self.error);
        (!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// The shared region, mapped; it stays mapped for the life of the process.
pub struct Region {
    fd: OwnedFd,
    shared: &'static Shared,
}

impl Region {
    /// A new zeroed region in a memfd that children inherit (no close-on-exec).
    pub fn create() -> Result<Region, FaasError> {
        // SAFETY: a NUL-terminated name and no flags.
        let raw = unsafe { libc::memfd_create(c"upsched-faas".as_ptr(), 0) };
        if raw < 0 {
            return Err(FaasError::Setup(format!(
                "memfd_create: {}",
                std::io::Error::last_os_error()
            )));
        }
        // SAFETY: a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let file = std::fs::File::from(fd.try_clone().map_err(setup("dup of the memfd"))?);
        file.set_len(std::mem::size_of::<Shared>() as u64)
            .map_err(setup("sizing the shared memory"))?;
        Self::map(fd)
    }

    /// The region of an inherited memfd.
    pub fn inherit(raw: RawFd) -> Result<Region, FaasError> {
        // SAFETY: F_GETFD only checks that `raw` is open.
        if unsafe { libc::fcntl(raw, libc::F_GETFD) } < 0 {
            return Err(FaasError::Setup(format!(
                "fd {raw} of the shared memory is not open"
            )));
        }
        // SAFETY: the fd was passed to this process for it to own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let size = std::fs::File::from(fd.try_clone().map_err(setup("dup of the memfd"))?)
            .metadata()
            .map_err(setup("the shared memory's size"))?
            .len();
        if size != std::mem::size_of::<Shared>() as u64 {
            return Err(FaasError::Setup(format!(
                "fd {raw} holds {size} bytes, not a shared region of this build"
            )));
        }
        Self::map(fd)
    }

    fn map(fd: OwnedFd) -> Result<Region, FaasError> {
        let len = NonZeroUsize::new(std::mem::size_of::<Shared>())
            .ok_or_else(|| FaasError::Setup("empty shared region".into()))?;
        // SAFETY: a new shared mapping of the whole file, placed by the kernel.
        let base = unsafe {
            map_shared(len.get(), fd.as_fd())
                .map_err(|e| FaasError::Setup(format!("mapping the shared memory: {e}")))?
        };
        // SAFETY: the mapping is page-aligned, as large as `Shared`, zero or written only
        // through atomics (all-zero bytes are valid atomics), and never unmapped.
        let shared = unsafe { &*(base as *const Shared) };
        Ok(Region { fd, shared })
    }

    pub fn shared(&self) -> &'static Shared {
        self.shared
    }

    pub fn fd(&self) -> RawFd {
        use std::os::fd::AsRawFd;
        self.fd.as_raw_fd()
    }
}

/// # Safety
/// `fd` must be a file of at least `len` bytes.
unsafe fn map_shared(len: usize, fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<*mut u8> {
    use std::os::fd::AsRawFd;
    // SAFETY: as the caller promises; the kernel chooses the address.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if base == libc::MAP_FAILED {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(base.cast())
    }
}

fn setup(what: &'static str) -> impl Fn(std::io::Error) -> FaasError {
    move |e| FaasError::Setup(format!("{what}: {e}"))
}

/// Waits on `word` while it holds `expected`, at most `timeout`. Not private: the word is in
/// memory that other processes map.
fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: a valid futex word and timespec; the kernel only reads them.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
        );
    }
}

fn futex_wake(word: &AtomicU32, count: i32) {
    // SAFETY: a valid futex word.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, count);
    }
}

/// CLOCK_MONOTONIC in ns, the clock of every time in the region.
pub fn now_ns() -> u64 {
    let t = upsched_workload::cpu_time(libc::CLOCK_MONOTONIC);
    t.as_nanos() as u64
}
