//! The daemon: a Unix socket, one thread per connection under a bound on connections (in all
//! and per user), a deadline per request, the grants (reloadable), and the audit log.
//!
//! Why threads and blocking sockets rather than an async runtime or a poll loop: the requests
//! are few and short, except the loads to come, which spend their time in admission and in the
//! kernel's verifier; a blocked thread per connection keeps a slow load from holding up the
//! status requests of others, with no runtime to add and no state machine per connection.
//! The bounds below make the thread count bounded too.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

use crate::audit::{AuditLog, AuditRecord, AuditResult};
use crate::grants::{Grants, GrantsError};
use crate::peer::Peer;
use crate::protocol::{
    AuditList, DecodeError, ErrorKind, ErrorReply, FrameError, GrantView, HostStatus, LoadArgs,
    MAX_AUDIT_TAIL, MAX_MESSAGE_BYTES, Operation, Reply, Response, TenantList, TenantStatsList,
    Whoami, decode_request, read_frame, write_frame, write_frame_with_fd,
};
use crate::tenants::{BackendError, LoadRequest, Tenants};

/// Where the daemon listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/upsched/upsched.sock";
/// Where it keeps its state (today: the audit log).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/upsched";
/// Where the host scheduler and the tenants' links are pinned (bpffs), unless told.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/upsched";

/// How long a client may take to deliver a request, or to take an answer, unless told.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once, unless told.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
/// Connections one uid may hold at once, unless told.
pub const DEFAULT_MAX_CONNECTIONS_PER_USER: usize = 16;

/// How the daemon runs.
#[derive(Clone, Debug)]
pub struct Config {
    pub socket: PathBuf,
    pub grants: PathBuf,
    pub state_dir: PathBuf,
    /// The bpffs directory of the pinned host (docs/broker.md, "Lifecycle").
    pub pin_dir: PathBuf,
    /// How long a connection may take to deliver a whole request (after it connected or got
    /// its last answer), and to take an answer.
    pub request_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_user: usize,
    /// Also write audit records to stderr.
    pub audit_to_stderr: bool,
}

impl Config {
    pub fn new(
        socket: impl Into<PathBuf>,
        grants: impl Into<PathBuf>,
        state_dir: impl Into<PathBuf>,
    ) -> Self {
        Config {
            socket: socket.into(),
            grants: grants.into(),
            state_dir: state_dir.into(),
            pin_dir: PathBuf::from(DEFAULT_PIN_DIR),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_user: DEFAULT_MAX_CONNECTIONS_PER_USER,
            audit_to_stderr: true,
        }
    }
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Grants(#[from] GrantsError),
    #[error("cannot open the audit log in {dir}: {error}")]
    Audit { dir: PathBuf, error: io::Error },
    #[error("{path}: {reason}")]
    Socket { path: PathBuf, reason: String },
    #[error("{0}")]
    Backend(#[from] BackendError),
}

/// A running daemon's shared state.
pub struct Daemon {
    config: Config,
    grants: RwLock<Arc<Grants>>,
    audit: AuditLog,
    connections: Mutex<Connections>,
    /// The kernel backend; its lock orders loads and unloads (admission runs outside it).
    tenants: Mutex<Tenants>,
    stopping: AtomicBool,
}

#[derive(Default)]
struct Connections {
    total: usize,
    per_uid: HashMap<u32, usize>,
}

/// A connection's place under the bounds; given back when dropped.
struct Slot {
    daemon: Arc<Daemon>,
    uid: u32,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.daemon.lock_connections();
        c.total -= 1;
        if let Some(n) = c.per_uid.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                c.per_uid.remove(&self.uid);
            }
        }
    }
}

impl Daemon {
    /// Reads the grants (a bad file refuses the start), opens the audit log, and starts the
    /// kernel backend: adopting the pinned host and the tenants of the state file, if there are
    /// pins (a disagreement between the two refuses the start).
    pub fn new(config: Config) -> Result<Arc<Self>, StartError> {
        let grants = Grants::load(&config.grants)?;
        let audit = AuditLog::open(&config.state_dir, config.audit_to_stderr).map_err(|error| {
            StartError::Audit {
                dir: config.state_dir.clone(),
                error,
            }
        })?;
        let started = Tenants::start(&config.state_dir, &config.pin_dir);
        let (outcome, reason) = match &started {
            Ok((_, found)) => (AuditResult::Ok, found.clone()),
            Err(e) => (AuditResult::Error, e.to_string()),
        };
        audit.record(&AuditRecord::now(
            nix::unistd::getuid().as_raw(),
            std::process::id() as i32,
            "start",
            outcome,
            Some(reason),
        ));
        let (tenants, _) = started?;
        Ok(Arc::new(Daemon {
            config,
            grants: RwLock::new(Arc::new(grants)),
            audit,
            connections: Mutex::new(Connections::default()),
            tenants: Mutex::new(tenants),
            stopping: AtomicBool::new(false),
        }))
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn grants(&self) -> Arc<Grants> {
        self.grants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Creates the socket (its directory 0755 if missing; the socket 0666, since the grants,
    /// not file modes, decide what a peer may do). A leftover socket that nobody listens on
    /// is replaced; one a daemon answers on, or any other file, refuses the start.
    pub fn bind(&self) -> Result<UnixListener, StartError> {
        let path = &self.config.socket;
        let fail = |reason: String| StartError::Socket {
            path: path.clone(),
            reason,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(|e| fail(format!("cannot create its directory: {e}")))?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                if UnixStream::connect(path).is_ok() {
                    return Err(fail("another daemon is listening on it".into()));
                }
                std::fs::remove_file(path)
                    .map_err(|e| fail(format!("cannot remove the stale socket: {e}")))?;
            }
            Ok(_) => return Err(fail("exists and is not a socket".into())),
            Err(_) => {}
        }
        let listener = UnixListener::bind(path).map_err(|e| fail(format!("cannot listen: {e}")))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
            .map_err(|e| fail(format!("cannot make it reachable: {e}")))?;
        Ok(listener)
    }

    /// Serves `listener` until [`Daemon::stop`].
    pub fn serve(self: &Arc<Self>, listener: UnixListener) {
        for stream in listener.incoming() {
            if self.stopping.load(Ordering::SeqCst) {
                break;
            }
            match stream {
                Ok(stream) => self.accept(stream),
                Err(e) => {
                    eprintln!("upschedd: accept failed: {e}");
                    // Out of file descriptors, most likely: let connections finish.
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    /// Makes [`Daemon::serve`] return (after the connection in progress, if any, is handed on).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the accepting thread.
        let _ = UnixStream::connect(&self.config.socket);
    }

    /// Re-reads the grants file. A refused file leaves the grants in force; a good one replaces
    /// them and withdraws the tenants it no longer covers (detached as by `unload`). Either way
    /// the audit log says what happened: the reload, and each withdrawal with its reason.
    pub fn reload_grants(&self) -> Result<(), GrantsError> {
        let result = Grants::load(&self.config.grants);
        let (outcome, reason) = match &result {
            Ok(grants) => (
                AuditResult::Ok,
                Some(format!("{} grants", grants.grants.len())),
            ),
            Err(e) => (
                AuditResult::Refused,
                Some(format!("kept the grants in force: {e}")),
            ),
        };
        let daemon = (nix::unistd::getuid().as_raw(), std::process::id() as i32);
        self.audit.record(&AuditRecord::now(
            daemon.0,
            daemon.1,
            "reload_grants",
            outcome,
            reason,
        ));
        let grants = Arc::new(result?);
        // Under the backend's lock, which loads hold while they read the grants and judge: a
        // load is either judged against the new grants or judged again here.
        let mut tenants = self.lock_tenants();
        *self.grants.write().unwrap_or_else(|p| p.into_inner()) = grants.clone();
        for withdrawal in tenants.withdraw_uncovered(&grants) {
            let tenant = &withdrawal.tenant;
            let mut reason = format!("tenant of uid {}: {}", tenant.owner, withdrawal.reason);
            let result = match &withdrawal.failure {
                None => AuditResult::Ok,
                Some(failure) => {
                    reason.push_str(&format!("; {failure}"));
                    AuditResult::Error
                }
            };
            let mut record = AuditRecord::now(daemon.0, daemon.1, "withdraw", result, Some(reason));
            record.tenant = Some(tenant.name.clone());
            record.policy_hash = Some(tenant.policy_hash.clone());
            self.audit.record(&record);
        }
        Ok(())
    }

    fn lock_connections(&self) -> std::sync::MutexGuard<'_, Connections> {
        self.connections.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn accept(self: &Arc<Self>, stream: UnixStream) {
        let creds = match getsockopt(&stream, PeerCredentials) {
            Ok(creds) => creds,
            Err(e) => {
                eprintln!("upschedd: cannot identify a peer: {e}");
                return;
            }
        };
        let (uid, pid) = (creds.uid(), creds.pid());
        let busy = {
            let mut c = self.lock_connections();
            let of_user = c.per_uid.get(&uid).copied().unwrap_or(0);
            if c.total >= self.config.max_connections {
                Some(format!(
                    "the daemon serves its maximum of {} connections",
                    self.config.max_connections
                ))
            } else if of_user >= self.config.max_connections_per_user {
                Some(format!(
                    "uid {uid} holds its maximum of {} connections",
                    self.config.max_connections_per_user
                ))
            } else {
                c.total += 1;
                *c.per_uid.entry(uid).or_default() += 1;
                None
            }
        };
        if let Some(reason) = busy {
            self.refuse_connection(&stream, uid, pid, reason);
            return;
        }
        let slot = Slot {
            daemon: self.clone(),
            uid,
        };
        let spawned = std::thread::Builder::new()
            .name(format!("upschedd-{pid}"))
            .spawn(move || {
                let peer = Peer::from_credentials(&creds);
                slot.daemon.serve_connection(&stream, &peer);
                drop(slot);
            });
        if let Err(e) = spawned {
            eprintln!("upschedd: cannot start a connection thread: {e}");
        }
    }

    /// Answers `busy` and closes; the accepting thread writes only this one small frame, which
    /// fits the socket's buffer, so it does not wait on the client.
    fn refuse_connection(&self, stream: &UnixStream, uid: u32, pid: i32, reason: String) {
        self.audit.record(&AuditRecord::now(
            uid,
            pid,
            "connect",
            AuditResult::Refused,
            Some(reason.clone()),
        ));
        let _ = stream.set_write_timeout(Some(self.config.request_timeout));
        let mut writer = stream;
        let _ = write_frame(
            &mut writer,
            &Response::error(None, ErrorReply::new(ErrorKind::Busy, reason)).encode(),
        );
    }

    fn serve_connection(&self, stream: &UnixStream, peer: &Peer) {
        if stream
            .set_write_timeout(Some(self.config.request_timeout))
            .is_err()
        {
            return;
        }
        loop {
            let mut reader = DeadlineReader {
                stream,
                deadline: Instant::now() + self.config.request_timeout,
            };
            let mut fd = None;
            let (response, close) = match read_frame(&mut reader) {
                Ok(payload) => {
                    let (response, passed) = self.handle(peer, &payload);
                    fd = passed;
                    (response, false)
                }
                Err(FrameError::Closed) => return,
                Err(FrameError::TooLarge(len)) => (
                    self.refused(
                        peer,
                        "frame",
                        None,
                        ErrorKind::TooLarge,
                        FrameError::TooLarge(len).to_string(),
                    ),
                    true,
                ),
                Err(e @ FrameError::Truncated { .. }) => {
                    self.refused(peer, "frame", None, ErrorKind::Truncated, e.to_string());
                    return;
                }
                Err(FrameError::Io(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    (
                        self.refused(
                            peer,
                            "frame",
                            None,
                            ErrorKind::Timeout,
                            format!(
                                "no complete request within {:?}",
                                self.config.request_timeout
                            ),
                        ),
                        true,
                    )
                }
                Err(FrameError::Io(e)) => {
                    self.refused(
                        peer,
                        "frame",
                        None,
                        ErrorKind::Truncated,
                        format!("read failed: {e}"),
                    );
                    return;
                }
            };
            let written = match &fd {
                Some(fd) => write_frame_with_fd(stream, &response.encode(), fd.as_fd()),
                None => write_frame(&mut { stream }, &response.encode()),
            };
            if written.is_err() || close {
                return;
            }
        }
    }

    /// Answers one request payload; an fd that goes with the answer comes back beside it.
    fn handle(&self, peer: &Peer, payload: &[u8]) -> (Response, Option<OwnedFd>) {
        let request = match decode_request(payload) {
            Ok(request) => request,
            Err(DecodeError { id, error }) => {
                return (
                    self.refused(peer, "request", id, error.kind, error.message),
                    None,
                );
            }
        };
        let id = request.id;
        let name = request.operation.name();
        if let Err(reason) = self.permission(peer, &request.operation) {
            let refused = self.refused(peer, name, Some(id), ErrorKind::NotPermitted, reason);
            return (refused, None);
        }
        let mut passed = None;
        let mut record = AuditRecord::now(peer.uid(), peer.pid, name, AuditResult::Ok, None);
        // What a client polls (`upsched top`: stats every second); the rest is always recorded.
        let read_only = matches!(
            request.operation,
            Operation::HostStatus | Operation::Whoami | Operation::List | Operation::Stats(_)
        );
        let outcome = match request.operation {
            Operation::HostStatus => Ok(Reply::HostStatus(self.host_status())),
            Operation::Whoami => Ok(Reply::Whoami(self.whoami(peer))),
            Operation::Load(args) => self.load(peer, &args, &mut record).map(Reply::Loaded),
            Operation::Unload(args) => {
                record.tenant = Some(args.tenant.clone());
                let unloaded = self.lock_tenants().unload(peer, &args.tenant);
                unloaded.map(|tenant| {
                    record.policy_hash = Some(tenant.policy_hash.clone());
                    Reply::Unloaded(tenant)
                })
            }
            Operation::List => Ok(Reply::List(TenantList {
                tenants: self.lock_tenants().list(peer),
            })),
            Operation::Stats(args) => {
                record.tenant = args.tenant.clone();
                let mut backend = self.lock_tenants();
                let stats = backend.stats(peer, args.tenant.as_deref());
                stats.map(|tenants| {
                    Reply::Stats(TenantStatsList {
                        tenants,
                        ejected: backend.ejections(peer),
                    })
                })
            }
            Operation::Audit(args) => self.audit_tail(args.tail).map(Reply::Audit),
            Operation::HintMap(args) => {
                record.tenant = Some(args.tenant.clone());
                let map = self.lock_tenants().hint_map(peer, &args.tenant);
                map.map(|(layout, fd)| {
                    passed = Some(fd);
                    Reply::HintMap(layout)
                })
            }
            Operation::NotifyProgram(args) => {
                record.tenant = Some(args.tenant.clone());
                let program = self.lock_tenants().notify_program(peer, &args.tenant);
                program.map(|(program, fd)| {
                    passed = Some(fd);
                    Reply::NotifyProgram(program)
                })
            }
            Operation::HintSlot(args) => {
                record.tenant = Some(args.tenant.clone());
                let slot = self.lock_tenants().hint_slot(peer, &args);
                slot.map(Reply::HintSlot)
            }
            Operation::SetHints(args) => {
                record.tenant = Some(args.tenant.clone());
                let set = self.lock_tenants().set_hints(peer, &args);
                set.map(Reply::HintsSet)
            }
            Operation::Replace(args) => {
                // Admitted outside the backend's lock, as a load's policy; judged and swapped
                // under it.
                record.policy_hash =
                    Some(upsched_policy::ContentHash::of(&args.policy).to_string());
                record.tenant = Some(args.tenant.clone());
                let replaced = crate::tenants::admit_policy(&args.policy).and_then(|policy| {
                    let mut tenants = self.lock_tenants();
                    tenants.replace(peer, &self.grants(), &args.tenant, policy)
                });
                replaced.map(Reply::Replaced)
            }
        };
        match outcome {
            Ok(reply) if read_only => {
                self.audit.record_read(name, &mut record);
                (Response::ok(id, reply), passed)
            }
            Ok(reply) => {
                self.audit.record(&record);
                (Response::ok(id, reply), passed)
            }
            Err(error) => {
                record.result = if error.kind == ErrorKind::Internal {
                    AuditResult::Error
                } else {
                    AuditResult::Refused
                };
                record.reason = Some(error.message.clone());
                self.audit.record(&record);
                (Response::error(Some(id), error), None)
            }
        }
    }

    /// Admits `args` (outside the backend's lock: admission is the slow part), then checks it
    /// against the grants and attaches it under the lock.
    fn load(
        &self,
        peer: &Peer,
        args: &LoadArgs,
        record: &mut AuditRecord,
    ) -> Result<crate::protocol::TenantView, ErrorReply> {
        record.policy_hash = Some(upsched_policy::ContentHash::of(&args.policy).to_string());
        record.tenant = args.name.clone();
        let request = LoadRequest::admit(args)?;
        record.tenant = Some(request.name().to_string());
        // The grants are read under the backend's lock, which a reload holds while it replaces
        // them and withdraws what they no longer cover.
        let mut tenants = self.lock_tenants();
        tenants.load(peer, &self.grants(), request)
    }

    /// The newest `tail` audit records (at most [`MAX_AUDIT_TAIL`]), from no more than half a
    /// message of log lines, so that the answer fits a frame whatever the reasons hold.
    fn audit_tail(&self, tail: Option<u32>) -> Result<AuditList, ErrorReply> {
        let count = tail
            .unwrap_or(crate::protocol::DEFAULT_AUDIT_TAIL)
            .min(MAX_AUDIT_TAIL);
        let (records, size_limited) = self
            .audit
            .tail(count as usize, MAX_MESSAGE_BYTES as usize / 2)
            .map_err(|e| {
                ErrorReply::new(
                    ErrorKind::Internal,
                    format!(
                        "cannot read the audit log {}: {e}",
                        self.audit.path().display()
                    ),
                )
            })?;
        Ok(AuditList {
            records,
            size_limited,
        })
    }

    fn lock_tenants(&self) -> std::sync::MutexGuard<'_, Tenants> {
        self.tenants.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `peer` may ask for `operation` at all: tenants are managed by root and grant
    /// holders, the audit log is root's; everyone may list and read the statistics of their
    /// own tenants, and reach the hints of the tenants they own or run in (the backend
    /// decides which, per tenant).
    fn permission(&self, peer: &Peer, operation: &Operation) -> Result<(), String> {
        if peer.is_root() {
            return Ok(());
        }
        match operation {
            Operation::Load(_) | Operation::Unload(_) | Operation::Replace(_) => {
                let grants = self.grants();
                if grants.covering(&peer.principal).next().is_none() {
                    return Err(format!(
                        "uid {} holds no grant in {} (docs/grants.md says how one is given)",
                        peer.uid(),
                        grants.source.display()
                    ));
                }
                Ok(())
            }
            Operation::Audit(_) => Err("only root may read the audit log".into()),
            Operation::HostStatus
            | Operation::Whoami
            | Operation::List
            | Operation::Stats(_)
            | Operation::HintMap(_)
            | Operation::NotifyProgram(_)
            | Operation::HintSlot(_)
            | Operation::SetHints(_) => Ok(()),
        }
    }

    fn refused(
        &self,
        peer: &Peer,
        operation: &str,
        id: Option<u64>,
        kind: ErrorKind,
        reason: String,
    ) -> Response {
        let result = if kind == ErrorKind::Internal {
            AuditResult::Error
        } else {
            AuditResult::Refused
        };
        self.audit.record(&AuditRecord::now(
            peer.uid(),
            peer.pid,
            operation,
            result,
            Some(reason.clone()),
        ));
        Response::error(id, ErrorReply::new(kind, reason))
    }

    fn host_status(&self) -> HostStatus {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .ok()
                .map(|s| s.trim().to_string())
        };
        let root_ops = read(upsched_kernel::detect::SCHED_EXT_ROOT_OPS).filter(|s| !s.is_empty());
        HostStatus {
            sched_ext_state: read(upsched_kernel::detect::SCHED_EXT_STATE)
                .unwrap_or_else(|| "unavailable".into()),
            upsched_host_loaded: root_ops.as_deref() == Some(upsched_kernel::host::SCHEDULER_NAME),
            root_ops,
            tenants: self.lock_tenants().count() as u32,
            grants_file: self.config.grants.display().to_string(),
        }
    }

    fn whoami(&self, peer: &Peer) -> Whoami {
        let grants = self.grants();
        Whoami {
            uid: peer.uid(),
            gid: peer.principal.gid.as_raw(),
            groups: peer.principal.groups.iter().map(|g| g.as_raw()).collect(),
            pid: peer.pid,
            root: peer.is_root(),
            grants: grants
                .covering(&peer.principal)
                .map(GrantView::from)
                .collect(),
        }
    }
}

/// Reads from a stream until a deadline for the whole message, not per read: a client that
/// trickles a byte at a time is cut off as surely as one that sends nothing.
struct DeadlineReader<'a> {
    stream: &'a UnixStream,
    deadline: Instant,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut stream = self.stream;
        stream.read(buf)
    }
}

/// The socket a client uses: `UPSCHED_SOCKET` if set, else [`DEFAULT_SOCKET`].
pub fn default_socket() -> PathBuf {
    std::env::var_os("UPSCHED_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(DEFAULT_SOCKET).to_path_buf())
}
