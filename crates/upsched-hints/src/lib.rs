//! The hint path for runtimes (`docs/hints.md`): a tenant's hint map, asked of `upschedd`
//! (`hint_map`, the fd comes with the answer) and mapped shared and writable, so that a thread's
//! hint words are posted with plain atomic stores, no syscall; and the slow path, a `set_hints`
//! request, for clients that cannot map memory.
//!
//! ```no_run
//! # fn main() -> Result<(), upsched_hints::HintError> {
//! let map = upsched_hints::HintMap::open("web")?;
//! let me = map.thread(nix::unistd::gettid().as_raw())?;
//! me.sleepy(7); // polling until event 7: the policy may park this thread
//! me.pending(1); // event 7 arrived: a parked thread is released at the host's next look,
//! me.notify()?; // which the tenant's notify program makes now
//! me.clear();
//! # Ok(())
//! # }
//! ```
//!
//! The layout and the words' meanings are those of `include/upsched_hints.h`, which the build
//! checks against `abi.toml`; the constants here come from `upsched-abi`.

use std::ffi::c_void;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};
use upsched_abi::{HINT_FLAGS, HINT_PENDING, HINT_WAIT_EVENT, HINTF_SLEEPY, NR_HINTS};
use upsched_broker::client::{Client, ClientError};
use upsched_broker::protocol::{
    HintMapLayout, HintSlot, NotifyProgram, Operation, Reply, SetHintsArgs, TenantArgs, ThreadArgs,
};

/// A thread's hint words, as many as the ABI has.
pub type Words = [u64; NR_HINTS as usize];

#[derive(Debug, thiserror::Error)]
pub enum HintError {
    #[error("{0}")]
    Daemon(#[from] ClientError),
    #[error("upschedd answered {asked} with another reply")]
    BadAnswer { asked: &'static str },
    #[error("upschedd answered hint_map without the map's fd")]
    NoFd,
    #[error("the hint map's layout {got:?} is not the one this library knows, {expected:?}")]
    Layout {
        got: HintMapLayout,
        expected: HintMapLayout,
    },
    #[error("cannot map the hint map: {0}")]
    Map(nix::Error),
    #[error("task slot {task_slot} is outside the hint map's {entries} entries")]
    NoSuchEntry { task_slot: u32, entries: u32 },
    #[error("word {0} is not a hint word (there are {NR_HINTS})")]
    NoSuchWord(usize),
    #[error("this hint map came without the tenant's notify program")]
    NoNotifier,
    #[error("{0}")]
    Notify(upsched_kernel::HostError),
    #[error(
        "the notify program refused: the tenant is gone (ESTALE) or the task slot is out of range (EINVAL): {0}"
    )]
    NotifyRefused(i32),
}

/// A tenant's hint map, mapped into this process. The mapping is the capability: it reaches
/// that tenant's words, and none once the tenant is gone (the host reads another map then).
pub struct HintMap {
    base: NonNull<c_void>,
    layout: HintMapLayout,
    socket: PathBuf,
    notifier: Option<Notifier>,
}

/// A tenant's notify program (`docs/mechanism.md`, "Notify"): running it makes the host look
/// at the tenant's parked tasks now, and preempt a given running task that is SLEEPY with
/// nothing pending. The fd reaches that tenant only; the key is the tenant's (per attach).
pub struct Notifier {
    program: OwnedFd,
    key: u64,
}

impl Notifier {
    pub fn new(program: OwnedFd, key: u64) -> Self {
        Notifier { program, key }
    }

    /// Runs the program for `task_slot`: one `bpf(BPF_PROG_TEST_RUN)` syscall.
    pub fn notify(&self, task_slot: u32) -> Result<(), HintError> {
        match upsched_kernel::run_notify(self.program.as_fd(), task_slot, self.key) {
            Ok(0) => Ok(()),
            Ok(refused) => Err(HintError::NotifyRefused(refused)),
            Err(err) => Err(HintError::Notify(err)),
        }
    }
}

// SAFETY: the mapping is shared memory that every access reaches through atomics; it stays
// valid until drop, whichever thread drops it.
unsafe impl Send for HintMap {}
// SAFETY: as above; `&HintMap` hands out only atomic access to the words.
unsafe impl Sync for HintMap {}

impl HintMap {
    /// Asks the daemon on its usual socket (`$UPSCHED_SOCKET`, else
    /// `/run/upsched/upsched.sock`) for `tenant`'s hint map and maps it.
    pub fn open(tenant: &str) -> Result<Self, HintError> {
        Self::open_at(&upsched_broker::daemon::default_socket(), tenant)
    }

    /// As [`HintMap::open`], asking the daemon on `socket`.
    pub fn open_at(socket: &Path, tenant: &str) -> Result<Self, HintError> {
        let mut client = Client::connect(socket)?;
        let (reply, fd) = client.call_with_fd(Operation::HintMap(TenantArgs {
            tenant: tenant.to_string(),
        }))?;
        let Reply::HintMap(layout) = reply else {
            return Err(HintError::BadAnswer { asked: "hint_map" });
        };
        let fd = fd.ok_or(HintError::NoFd)?;
        let (reply, program) = client.call_with_fd(Operation::NotifyProgram(TenantArgs {
            tenant: tenant.to_string(),
        }))?;
        let Reply::NotifyProgram(NotifyProgram { key, .. }) = reply else {
            return Err(HintError::BadAnswer {
                asked: "notify_program",
            });
        };
        let notifier = Notifier::new(program.ok_or(HintError::NoFd)?, key);
        Ok(Self::from_fd(&fd, layout, socket)?.with_notifier(notifier))
    }

    /// The map with the tenant's notify program, for [`ThreadHints::notify`] (a map from
    /// [`HintMap::open`] has it already).
    pub fn with_notifier(mut self, notifier: Notifier) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Maps `fd`, a hint map of the layout `layout` that came another way (from the runtime's
    /// supervisor, say), if that layout is the one this library writes; [`HintMap::thread`]
    /// asks the daemon on `socket`. The fd may be closed afterwards: the mapping holds the map.
    pub fn from_fd(fd: &OwnedFd, layout: HintMapLayout, socket: &Path) -> Result<Self, HintError> {
        let expected = HintMapLayout::of(&layout.tenant);
        let len = usize::try_from(layout.map_bytes)
            .ok()
            .and_then(NonZeroUsize::new);
        let Some(len) = len.filter(|_| layout == expected) else {
            return Err(HintError::Layout {
                got: layout,
                expected,
            });
        };
        // SAFETY: a new shared mapping of the map's whole array, placed by the kernel; nothing
        // else in this process refers to it.
        let base = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd,
                0,
            )
        }
        .map_err(HintError::Map)?;
        Ok(HintMap {
            base,
            layout,
            socket: socket.to_path_buf(),
            notifier: None,
        })
    }

    pub fn layout(&self) -> &HintMapLayout {
        &self.layout
    }

    /// The hint words of thread `tid` (of this process's user, a member of the tenant): its
    /// task slot asked of the daemon (`hint_slot`). The slot stays the thread's while it stays
    /// in the tenant.
    pub fn thread(&self, tid: i32) -> Result<ThreadHints<'_>, HintError> {
        let slot = task_slot(&self.socket, &self.layout.tenant, tid)?;
        self.entry(slot.task_slot)
    }

    /// The hint words of task slot `task_slot`.
    pub fn entry(&self, task_slot: u32) -> Result<ThreadHints<'_>, HintError> {
        if task_slot >= self.layout.entries {
            return Err(HintError::NoSuchEntry {
                task_slot,
                entries: self.layout.entries,
            });
        }
        let offset = task_slot as usize * self.layout.stride as usize;
        // SAFETY: the entry lies inside the mapping (checked above against the layout that
        // was mapped), is 8-byte aligned (page-aligned base, stride a multiple of 8) and holds
        // NR_HINTS words; it is only accessed atomically, and lives as long as `self`.
        let words = unsafe { &*self.base.as_ptr().byte_add(offset).cast::<Entry>() };
        Ok(ThreadHints {
            words,
            task_slot,
            notifier: self.notifier.as_ref(),
        })
    }
}

impl Drop for HintMap {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `from_fd`, of this length, unmapped once; no ThreadHints
        // outlives `self`.
        unsafe {
            let _ = munmap(self.base, self.layout.map_bytes as usize);
        }
    }
}

type Entry = [AtomicU64; NR_HINTS as usize];

/// One thread's hint words in a mapped hint map. Stores are atomic (the host reads them at any
/// time); a store the host reads at once is seen at its next decision about the thread.
pub struct ThreadHints<'a> {
    words: &'a Entry,
    task_slot: u32,
    notifier: Option<&'a Notifier>,
}

impl ThreadHints<'_> {
    /// The thread polls until event `event` (non-zero) arrives: a policy may park it. The
    /// event first, so that the host never sees SLEEPY with a stale event.
    pub fn sleepy(&self, event: u64) {
        self.words[HINT_WAIT_EVENT as usize].store(event, Ordering::Relaxed);
        self.words[HINT_FLAGS as usize].fetch_or(u64::from(HINTF_SLEEPY), Ordering::Release);
    }

    /// `n` events or requests wait for the thread; `n > 0` releases it from a park.
    pub fn pending(&self, n: u64) {
        self.words[HINT_PENDING as usize].store(n, Ordering::Release);
    }

    /// Every word 0, the flags first, so that the thread stops being sleepy at once.
    pub fn clear(&self) {
        for word in self.words {
            word.store(0, Ordering::Release);
        }
    }

    /// Word `index` (`upsched_hints.h`'s `UPSCHED_HINT_*`; from `UPSCHED_HINT_FIRST_FREE` on,
    /// the policy's own).
    pub fn word(&self, index: usize) -> Result<u64, HintError> {
        self.words
            .get(index)
            .map(|w| w.load(Ordering::Acquire))
            .ok_or(HintError::NoSuchWord(index))
    }

    pub fn set_word(&self, index: usize, value: u64) -> Result<(), HintError> {
        self.words
            .get(index)
            .map(|w| w.store(value, Ordering::Release))
            .ok_or(HintError::NoSuchWord(index))
    }

    /// All words, as they are now.
    pub fn words(&self) -> Words {
        std::array::from_fn(|i| self.words[i].load(Ordering::Acquire))
    }

    pub fn task_slot(&self) -> u32 {
        self.task_slot
    }

    /// Tells the host to look at this thread's words now, after a store that releases it
    /// (`pending`, `clear`) or that makes it SLEEPY while it runs (the host then preempts it,
    /// so its policy may park it): one syscall; without it the host's timer looks within 2 ms
    /// and a running thread is looked at by its policy's next tick.
    pub fn notify(&self) -> Result<(), HintError> {
        self.notifier
            .ok_or(HintError::NoNotifier)?
            .notify(self.task_slot)
    }
}

/// The task slot of thread `tid` in `tenant` (`hint_slot`), asked of the daemon on `socket`.
pub fn task_slot(socket: &Path, tenant: &str, tid: i32) -> Result<HintSlot, HintError> {
    let reply = Client::connect(socket)?.call(Operation::HintSlot(ThreadArgs {
        tenant: tenant.to_string(),
        tid,
    }))?;
    match reply {
        Reply::HintSlot(slot) => Ok(slot),
        _ => Err(HintError::BadAnswer { asked: "hint_slot" }),
    }
}

/// The slow path: writes every hint word of thread `tid` in `tenant` through a `set_hints`
/// request on `client`'s connection (one round trip to the daemon and a syscall there).
pub fn set_hints(
    client: &mut Client,
    tenant: &str,
    tid: i32,
    words: Words,
) -> Result<HintSlot, HintError> {
    let reply = client.call(Operation::SetHints(SetHintsArgs {
        tenant: tenant.to_string(),
        tid,
        words,
    }))?;
    match reply {
        Reply::HintsSet(slot) => Ok(slot),
        _ => Err(HintError::BadAnswer { asked: "set_hints" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use upsched_abi::HINT_FIRST_FREE;

    /// A file of a hint map's size stands in for the map: the stores and the layout checks are
    /// the same on any shared mapping.
    fn map_of(layout: HintMapLayout) -> Result<(HintMap, std::fs::File), HintError> {
        let file = tempfile::tempfile().unwrap();
        file.set_len(HintMapLayout::of("t").map_bytes).unwrap();
        let fd = OwnedFd::from(file.try_clone().unwrap());
        HintMap::from_fd(&fd, layout, Path::new("/nonexistent")).map(|map| (map, file))
    }

    #[test]
    fn stores_land_in_the_thread_s_entry_with_the_abi_s_meanings() {
        let (map, file) = map_of(HintMapLayout::of("t")).unwrap();
        let thread = map.entry(3).unwrap();
        thread.sleepy(7);
        thread.pending(2);
        thread.set_word(HINT_FIRST_FREE as usize, 42).unwrap();
        assert_eq!(thread.words(), [1, 7, 2, 0, 0, 42, 0, 0]);
        // Entry 3 starts 3 strides into the map, as the kernel lays a mapped array out.
        let mut bytes = vec![0u8; 64];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut bytes, 3 * 64).unwrap();
        let first: [u8; 8] = bytes[..8].try_into().unwrap();
        assert_eq!(u64::from_ne_bytes(first), u64::from(HINTF_SLEEPY));
        assert_eq!(map.entry(2).unwrap().words(), [0; 8]);
        thread.clear();
        assert_eq!(thread.words(), [0; 8]);
        // A map that came without the tenant's notify program cannot notify.
        assert!(matches!(thread.notify(), Err(HintError::NoNotifier)));
    }

    #[test]
    fn a_notify_program_that_is_no_program_is_an_error_not_a_crash() {
        let file = tempfile::tempfile().unwrap();
        let notifier = Notifier::new(OwnedFd::from(file), 1);
        // The kernel refuses the fd (EINVAL for a non-BPF fd, EPERM without privileges).
        assert!(matches!(notifier.notify(0), Err(HintError::Notify(_))));
    }

    #[test]
    fn entries_words_and_layouts_beyond_the_abi_are_refused() {
        let (map, _file) = map_of(HintMapLayout::of("t")).unwrap();
        assert!(matches!(
            map.entry(4096),
            Err(HintError::NoSuchEntry {
                task_slot: 4096,
                entries: 4096
            })
        ));
        let thread = map.entry(4095).unwrap();
        assert!(matches!(thread.word(8), Err(HintError::NoSuchWord(8))));
        assert!(matches!(
            thread.set_word(8, 1),
            Err(HintError::NoSuchWord(8))
        ));
        let mut wider = HintMapLayout::of("t");
        wider.stride = 128;
        assert!(matches!(map_of(wider), Err(HintError::Layout { .. })));
    }
}
