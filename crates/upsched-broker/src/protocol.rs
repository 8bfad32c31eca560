//! The request protocol between `upsched` and `upschedd` (`docs/protocol.md`).
//!
//! A message is a frame: a 4-byte big-endian length, then that many bytes of one UTF-8 JSON
//! object. Each request names the protocol version, an id the response repeats, and an
//! operation. The decoder never panics and allocates no more than the bytes that arrived, and
//! never more than [`MAX_MESSAGE_BYTES`] for one message.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

/// The version this daemon and client speak; a request of another version is answered with a
/// `version` error naming this one.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest message, either way: room for a policy object and the kernel verifier's log.
pub const MAX_MESSAGE_BYTES: u32 = 1 << 20;

/// Bytes of a frame read into memory at once: a frame announcing a large size costs memory
/// only as its bytes arrive.
const READ_CHUNK: u64 = 64 * 1024;

/// What reading one frame can end in besides a message.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection between messages.
    #[error("connection closed")]
    Closed,
    #[error("message truncated: {got} of {expected} bytes")]
    Truncated { got: u64, expected: u64 },
    #[error("message of {0} bytes exceeds the limit of {MAX_MESSAGE_BYTES} bytes")]
    TooLarge(u32),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Reads one frame's payload.
pub fn read_frame(reader: &mut impl Read) -> Result<Vec<u8>, FrameError> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < header.len() {
        match reader.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => {
                return Err(FrameError::Truncated {
                    got: got as u64,
                    expected: 4,
                });
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_be_bytes(header);
    if len > MAX_MESSAGE_BYTES {
        return Err(FrameError::TooLarge(len));
    }
    let expected = u64::from(len);
    let mut payload = Vec::new();
    while (payload.len() as u64) < expected {
        let want = (expected - payload.len() as u64).min(READ_CHUNK);
        let n = reader.by_ref().take(want).read_to_end(&mut payload)?;
        if n == 0 {
            return Err(FrameError::Truncated {
                got: payload.len() as u64,
                expected,
            });
        }
    }
    Ok(payload)
}

/// Writes `payload` as one frame; refuses a payload above [`MAX_MESSAGE_BYTES`].
pub fn write_frame(writer: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    writer.write_all(&frame_header(payload)?)?;
    writer.write_all(payload)?;
    writer.flush()
}

/// Writes `payload` as one frame on `stream` with `fd` passed along (SCM_RIGHTS, attached to
/// the frame's first bytes, which [`read_frame_with_fd`] receives it with).
pub fn write_frame_with_fd(stream: &UnixStream, payload: &[u8], fd: BorrowedFd) -> io::Result<()> {
    let mut frame = frame_header(payload)?.to_vec();
    frame.extend_from_slice(payload);
    let fds = [fd.as_raw_fd()];
    let sent = sendmsg::<()>(
        stream.as_raw_fd(),
        &[io::IoSlice::new(&frame)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    // The fd went with the first bytes; the rest of a frame the socket took only in part
    // follows plainly.
    let mut writer = stream;
    writer.write_all(&frame[sent..])?;
    writer.flush()
}

/// Reads one frame from `stream` and the fd that came with it, if any (every other fd that
/// came is closed).
pub fn read_frame_with_fd(stream: &UnixStream) -> Result<(Vec<u8>, Option<OwnedFd>), FrameError> {
    let mut header = [0u8; 4];
    let mut got = 0;
    let mut fd = None;
    while got < header.len() {
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [io::IoSliceMut::new(&mut header[got..])];
        let message = match recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(message) => message,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e).into()),
        };
        let n = message.bytes;
        for cmsg in message.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                for raw in fds {
                    // SAFETY: the kernel installed `raw` in this process for this message;
                    // nothing else owns it.
                    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                    fd.get_or_insert(owned);
                }
            }
        }
        match n {
            0 if got == 0 => return Err(FrameError::Closed),
            0 => {
                return Err(FrameError::Truncated {
                    got: got as u64,
                    expected: 4,
                });
            }
            n => got += n,
        }
    }
    let payload = read_frame(&mut header.as_slice().chain(stream))?;
    Ok((payload, fd))
}

/// The length header of a frame of `payload`; refuses a payload above [`MAX_MESSAGE_BYTES`].
fn frame_header(payload: &[u8]) -> io::Result<[u8; 4]> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&n| n <= MAX_MESSAGE_BYTES)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "message of {} bytes exceeds the limit of {MAX_MESSAGE_BYTES} bytes",
                    payload.len()
                ),
            )
        })?;
    Ok(len.to_be_bytes())
}

/// A decoded request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub id: u64,
    pub operation: Operation,
}

/// What a client may ask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Is the upsched host scheduler loaded in the kernel?
    HostStatus,
    /// Who the daemon sees, and the grants that cover it.
    Whoami,
    /// Admit a policy object and attach it as a tenant.
    Load(LoadArgs),
    /// Detach a tenant.
    Unload(TenantArgs),
    /// The tenants the caller may see.
    List,
    /// The statistics of one tenant, or of every tenant the caller may see.
    Stats(StatsArgs),
    /// The newest records of the audit log (root only).
    Audit(AuditArgs),
    /// A tenant's hint map: its fd comes with the answer (SCM_RIGHTS), for the caller to map.
    HintMap(TenantArgs),
    /// A tenant's notify program: its fd comes with the answer (SCM_RIGHTS), its key in it;
    /// asked and granted as `hint_map`.
    NotifyProgram(TenantArgs),
    /// The task slot of a thread of the caller's in a tenant: its entry in the hint map.
    HintSlot(ThreadArgs),
    /// Writes a thread's hint words, for a client that cannot map the hint map.
    SetHints(SetHintsArgs),
    /// Swap a tenant's policy for another, atomically (the tenant keeps its cgroup, level,
    /// weight, bounds, members and statistics).
    Replace(ReplaceArgs),
}

/// A `load` request: the policy object and where and how its tenant runs. Bounds left out
/// take the kernel backend's defaults (`TenantConfig::new`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadArgs {
    /// The policy object's bytes, as lower-case hex.
    #[serde(with = "hex_bytes")]
    pub policy: Vec<u8>,
    /// The cgroup2 directory the tenant governs.
    pub cgroup: String,
    pub level: u32,
    pub weight: u32,
    /// The tenant's name (unique in the daemon); default: the policy's declared name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice_min_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice_max_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub park_max_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watchdog_ns: Option<u64>,
}

/// A `replace` request: the tenant and its new policy object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaceArgs {
    pub tenant: String,
    /// The new policy object's bytes, as lower-case hex.
    #[serde(with = "hex_bytes")]
    pub policy: Vec<u8>,
}

/// Names one tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantArgs {
    pub tenant: String,
}

/// A thread of a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThreadArgs {
    pub tenant: String,
    /// The thread's id (a pid as the kernel counts tasks: `gettid()`).
    pub tid: i32,
}

/// A `set_hints` request: a thread of a tenant and all its hint words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetHintsArgs {
    pub tenant: String,
    pub tid: i32,
    pub words: [u64; upsched_abi::NR_HINTS as usize],
}

/// A `stats` request: one tenant, or (none named) every tenant the caller may see.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// The audit records an `audit` request gets unless it says: as many as a terminal shows.
pub const DEFAULT_AUDIT_TAIL: u32 = 50;
/// The most audit records one `audit` answer holds; a larger `tail` gets this many.
pub const MAX_AUDIT_TAIL: u32 = 1000;

/// An `audit` request: the newest `tail` records ([`DEFAULT_AUDIT_TAIL`] if left out, at most
/// [`MAX_AUDIT_TAIL`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<u32>,
}

/// Bytes as lower-case hex in JSON: every byte of an object survives, in a string.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        serializer.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = <&str>::deserialize(deserializer)?;
        if text.len() % 2 != 0 {
            return Err(D::Error::custom("hex of odd length"));
        }
        (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .filter(|pair| pair.bytes().all(|b| b.is_ascii_hexdigit()))
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                    .ok_or_else(|| D::Error::custom(format!("not hex at offset {i}")))
            })
            .collect()
    }
}

impl Operation {
    /// Its name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::HostStatus => "host_status",
            Operation::Whoami => "whoami",
            Operation::Load(_) => "load",
            Operation::Unload(_) => "unload",
            Operation::List => "list",
            Operation::Stats(_) => "stats",
            Operation::Audit(_) => "audit",
            Operation::HintMap(_) => "hint_map",
            Operation::NotifyProgram(_) => "notify_program",
            Operation::HintSlot(_) => "hint_slot",
            Operation::SetHints(_) => "set_hints",
            Operation::Replace(_) => "replace",
        }
    }

    /// Every operation name, for error messages and docs.
    pub const NAMES: [&'static str; 12] = [
        "host_status",
        "whoami",
        "load",
        "unload",
        "replace",
        "list",
        "stats",
        "hint_map",
        "notify_program",
        "hint_slot",
        "set_hints",
        "audit",
    ];

    /// The operation `name` of `payload`, with its arguments. Operations without arguments
    /// refuse any.
    fn decode(name: &str, has_args: bool, payload: &[u8]) -> Result<Self, ArgsError> {
        fn parse<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, ArgsError> {
            let mut deserializer = serde_json::Deserializer::from_slice(payload);
            let wire: WireRequest<IgnoredAny, T> =
                serde_path_to_error::deserialize(&mut deserializer)
                    .map_err(|e| ArgsError::Bad(e.to_string()))?;
            wire.args.ok_or(ArgsError::Missing)
        }
        let none = |op: Operation| {
            if has_args {
                Err(ArgsError::Unexpected)
            } else {
                Ok(op)
            }
        };
        match name {
            "host_status" => none(Operation::HostStatus),
            "whoami" => none(Operation::Whoami),
            "list" => none(Operation::List),
            "load" => parse(payload).map(Operation::Load),
            "unload" => parse(payload).map(Operation::Unload),
            "stats" if has_args => parse(payload).map(Operation::Stats),
            "stats" => Ok(Operation::Stats(StatsArgs::default())),
            "audit" if has_args => parse(payload).map(Operation::Audit),
            "audit" => Ok(Operation::Audit(AuditArgs::default())),
            "hint_map" => parse(payload).map(Operation::HintMap),
            "notify_program" => parse(payload).map(Operation::NotifyProgram),
            "hint_slot" => parse(payload).map(Operation::HintSlot),
            "set_hints" => parse(payload).map(Operation::SetHints),
            "replace" => parse(payload).map(Operation::Replace),
            _ => Err(ArgsError::UnknownOperation),
        }
    }

    /// Its arguments on the wire, if it takes any.
    fn args(&self) -> Option<serde_json::Value> {
        let value = match self {
            Operation::Load(args) => serde_json::to_value(args),
            Operation::Unload(args) => serde_json::to_value(args),
            Operation::Stats(args) if args.tenant.is_some() => serde_json::to_value(args),
            Operation::Audit(args) if args.tail.is_some() => serde_json::to_value(args),
            Operation::HintMap(args) | Operation::NotifyProgram(args) => serde_json::to_value(args),
            Operation::HintSlot(args) => serde_json::to_value(args),
            Operation::SetHints(args) => serde_json::to_value(args),
            Operation::Replace(args) => serde_json::to_value(args),
            _ => return None,
        };
        Some(value.expect("arguments serialize"))
    }
}

/// Why an operation's arguments were refused.
enum ArgsError {
    UnknownOperation,
    Missing,
    Unexpected,
    Bad(String),
}

/// A request as it travels; `args` belongs to the operation.
#[derive(Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    bound(deserialize = "Op: Deserialize<'de>, Args: Deserialize<'de>")
)]
struct WireRequest<Op, Args> {
    version: u32,
    id: u64,
    op: Op,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    args: Option<Args>,
}

/// Why a request could not be decoded, with the id when the request got that far (the
/// response repeats it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub id: Option<u64>,
    pub error: ErrorReply,
}

/// Decodes one request payload.
pub fn decode_request(payload: &[u8]) -> Result<Request, DecodeError> {
    let malformed = |id, message: String| DecodeError {
        id,
        error: ErrorReply::new(ErrorKind::Malformed, message),
    };
    // The version first, so that a request of another version is told so rather than that
    // its fields are wrong.
    #[derive(Deserialize)]
    struct Version {
        version: Option<u32>,
        id: Option<u64>,
    }
    let head: Version = serde_json::from_slice(payload)
        .map_err(|e| malformed(None, format!("not a JSON request object: {e}")))?;
    let Some(version) = head.version else {
        return Err(malformed(head.id, "missing field `version`".into()));
    };
    if version != PROTOCOL_VERSION {
        return Err(DecodeError {
            id: head.id,
            error: ErrorReply::new(
                ErrorKind::Version,
                format!(
                    "protocol version {version}; this daemon speaks version {PROTOCOL_VERSION}"
                ),
            ),
        });
    }
    let wire: WireRequest<String, IgnoredAny> = serde_json::from_slice(payload)
        .map_err(|e| malformed(head.id, format!("bad request: {e}")))?;
    let operation =
        Operation::decode(&wire.op, wire.args.is_some(), payload).map_err(|e| match e {
            ArgsError::UnknownOperation => DecodeError {
                id: Some(wire.id),
                error: ErrorReply::new(
                    ErrorKind::UnknownOperation,
                    format!(
                        "unknown operation {:?} (known: {})",
                        wire.op,
                        Operation::NAMES.join(", ")
                    ),
                ),
            },
            ArgsError::Missing => malformed(
                Some(wire.id),
                format!("operation {:?} needs `args`", wire.op),
            ),
            ArgsError::Unexpected => malformed(
                Some(wire.id),
                format!("operation {:?} takes no arguments", wire.op),
            ),
            ArgsError::Bad(reason) => malformed(
                Some(wire.id),
                format!("bad arguments of {:?}: {reason}", wire.op),
            ),
        })?;
    Ok(Request {
        id: wire.id,
        operation,
    })
}

/// Encodes a request (the client's side).
pub fn encode_request(request: &Request) -> Vec<u8> {
    let wire = WireRequest {
        version: PROTOCOL_VERSION,
        id: request.id,
        op: request.operation.name(),
        args: request.operation.args(),
    };
    serde_json::to_vec(&wire).expect("a request serializes")
}

/// A response: the request's id (none when the request was unreadable) and its outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Response {
    pub version: u32,
    pub id: Option<u64>,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok(Reply),
    Error(ErrorReply),
}

impl Response {
    pub fn ok(id: u64, reply: Reply) -> Self {
        Response {
            version: PROTOCOL_VERSION,
            id: Some(id),
            outcome: Outcome::Ok(reply),
        }
    }

    pub fn error(id: Option<u64>, error: ErrorReply) -> Self {
        Response {
            version: PROTOCOL_VERSION,
            id,
            outcome: Outcome::Error(error),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a response serializes")
    }

    pub fn decode(payload: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(payload)
    }
}

/// The answer to a served operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    HostStatus(HostStatus),
    Whoami(Whoami),
    Loaded(TenantView),
    Unloaded(TenantView),
    /// The tenant as it is after the replace: its new policy's name and hash.
    Replaced(TenantView),
    List(TenantList),
    Stats(TenantStatsList),
    Audit(AuditList),
    /// The tenant's hint map came with this answer as an fd (SCM_RIGHTS).
    HintMap(HintMapLayout),
    /// The tenant's notify program came with this answer as an fd (SCM_RIGHTS).
    NotifyProgram(NotifyProgram),
    HintSlot(HintSlot),
    HintsSet(HintSlot),
}

/// How a tenant's hint map is laid out once mapped: `entries` entries of `words` u64 words
/// each, `stride` bytes apart from offset 0 (`map_bytes` = `entries * stride` in all);
/// `docs/hints.md`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HintMapLayout {
    pub tenant: String,
    pub entries: u32,
    pub stride: u32,
    pub words: u32,
    pub map_bytes: u64,
}

impl HintMapLayout {
    /// The layout of `tenant`'s map on this host (`mechanism.toml`'s hint words, one entry per
    /// task slot).
    pub fn of(tenant: &str) -> Self {
        let stride = upsched_abi::mechanism::HINT_ENTRY_STRIDE as u32;
        HintMapLayout {
            tenant: tenant.to_string(),
            entries: upsched_abi::MAX_TASKS,
            stride,
            words: upsched_abi::NR_HINTS,
            map_bytes: u64::from(upsched_abi::MAX_TASKS) * u64::from(stride),
        }
    }
}

/// A tenant's notify program (`docs/hints.md`): run it with `BPF_PROG_TEST_RUN` and the
/// argument `{task_slot, key}` (`mechanism.toml`'s `upsched_notify_args`); `key` is this
/// tenant's (a new one per attach).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyProgram {
    pub tenant: String,
    pub key: u64,
}

/// Where a thread's hint words are: entry `task_slot` of its tenant's hint map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HintSlot {
    pub tenant: String,
    pub tid: i32,
    pub task_slot: u32,
}

/// The newest audit records, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditList {
    pub records: Vec<crate::audit::AuditRecord>,
    /// Whether older records of those asked for were left out to keep the answer well inside
    /// the message limit (long reasons, such as a kernel verifier's log, take room).
    pub size_limited: bool,
}

/// A tenant as the daemon keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantView {
    pub name: String,
    /// The uid that loaded it.
    pub owner: u32,
    /// The grant it was admitted under (`root` for root's tenants).
    pub grant: String,
    /// The name the policy declared.
    pub policy: String,
    /// SHA-256 of the policy object.
    pub policy_hash: String,
    /// The cgroup's canonical path and id when it was bound.
    pub cgroup: String,
    pub cgroup_id: u64,
    pub level: u32,
    pub weight: u32,
    /// The host's tenant slot.
    pub slot: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantList {
    pub tenants: Vec<TenantView>,
}

/// A tenant and what the host counted for it since its slot was last reset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantStats {
    pub tenant: TenantView,
    /// Tasks the tenant governs now, and how many of them are runnable.
    pub nr_tasks: i32,
    pub nr_runnable: i32,
    /// Decisions the host clamped to the tenant's bounds (the sum of the `clamp_*` counters).
    pub clamps: u64,
    /// Calls that reached a default stub for a hook the policy replaces: 0 unless a replace
    /// let a call fall between two policies (docs/mechanism.md, "Attach and detach").
    #[serde(default)]
    pub default_calls: u32,
    /// The host's counters of the tenant's slot (docs/mechanism.md, "Statistics").
    pub counters: upsched_abi::stats::ClassCounters,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantStatsList {
    pub tenants: Vec<TenantStats>,
    /// The last tenants the host's watchdog ejected (gone from `tenants`), oldest first.
    #[serde(default)]
    pub ejected: Vec<EjectedTenant>,
}

/// A tenant the host's watchdog ejected, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EjectedTenant {
    pub tenant: TenantView,
    /// The host's reason, e.g. that a task waited beyond the watchdog bound.
    pub reason: String,
    /// The task that waited, and how long.
    pub pid: u32,
    pub waited_ns: u64,
}

/// The kernel's scheduler state, as `/sys/kernel/sched_ext` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStatus {
    /// `/sys/kernel/sched_ext/state` (`enabled`, `disabled`, `enabling`, `disabling`), or
    /// `unavailable` on a kernel without sched_ext.
    pub sched_ext_state: String,
    /// The running sched_ext scheduler's name (`/sys/kernel/sched_ext/root/ops`), if any.
    pub root_ops: Option<String>,
    /// Whether that scheduler is upsched's host.
    pub upsched_host_loaded: bool,
    /// Tenants this daemon has attached.
    pub tenants: u32,
    /// The grants file in force.
    pub grants_file: String,
}

/// The caller as the daemon identified it, and what it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Whoami {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups from the system's group database.
    pub groups: Vec<u32>,
    pub pid: i32,
    /// Root needs no grant and may do everything.
    pub root: bool,
    /// The grants that cover the caller, in file order.
    pub grants: Vec<GrantView>,
}

/// One grant as a client sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantView {
    pub name: String,
    pub capabilities: Vec<String>,
    pub scopes: Vec<String>,
    pub any_owner: bool,
    pub max_level: u32,
    pub max_weight: u32,
    pub max_tenants: u32,
    pub slice_min_ns: u64,
    pub slice_max_ns: u64,
    pub park_max_ns: u64,
    pub watchdog_max_ns: u64,
}

impl From<&crate::grants::Grant> for GrantView {
    fn from(g: &crate::grants::Grant) -> Self {
        let ns = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        GrantView {
            name: g.name.clone(),
            capabilities: g.capabilities.iter().map(|c| c.to_string()).collect(),
            scopes: g
                .scopes
                .iter()
                .map(|s| s.path().display().to_string())
                .collect(),
            any_owner: g.any_owner,
            max_level: g.max_level,
            max_weight: g.max_weight,
            max_tenants: g.max_tenants,
            slice_min_ns: ns(g.bounds.slice_min),
            slice_max_ns: ns(g.bounds.slice_max),
            park_max_ns: ns(g.bounds.park_max),
            watchdog_max_ns: ns(g.bounds.watchdog_max),
        }
    }
}

/// A refused or failed request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub kind: ErrorKind,
    pub message: String,
}

impl ErrorReply {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ErrorReply {
            kind,
            message: message.into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Not a request: bad JSON, missing or unknown fields, wrong types.
    Malformed,
    /// Larger than [`MAX_MESSAGE_BYTES`]; the daemon closes the connection.
    TooLarge,
    /// The connection ended inside a message.
    Truncated,
    /// Another protocol version.
    Version,
    UnknownOperation,
    /// The caller's grants do not allow it.
    NotPermitted,
    /// The policy or its tenant parameters were refused (by `upsched check`, the bounds of the
    /// kernel backend, or the kernel verifier, whose log the message carries); nothing changed.
    Rejected,
    /// No such tenant, or not one of the caller's.
    UnknownTenant,
    /// Too many connections, or too many requests of this user at once; retry later.
    Busy,
    /// No complete request arrived in time; the daemon closes the connection.
    Timeout,
    /// The daemon failed (the message says how); nothing was changed.
    Internal,
}

/// The property the `decode_request` fuzz target checks, shared with the seed replay in
/// `cargo test`: any bytes, read as a stream of frames and decoded, give requests or errors,
/// never a panic; every decoded request encodes to a payload that decodes to itself, and every
/// error response encodes and decodes intact.
pub fn fuzz_decode(data: &[u8]) {
    let mut stream = data;
    loop {
        match read_frame(&mut stream) {
            Ok(payload) => check_decoded(&payload),
            Err(FrameError::Closed | FrameError::Truncated { .. }) => break,
            Err(FrameError::TooLarge(len)) => {
                assert!(len > MAX_MESSAGE_BYTES);
                break;
            }
            Err(FrameError::Io(e)) => panic!("reading from memory failed: {e}"),
        }
    }
    // The same bytes as one payload, unframed.
    check_decoded(data);
}

fn check_decoded(payload: &[u8]) {
    match decode_request(payload) {
        Ok(request) => assert_eq!(decode_request(&encode_request(&request)), Ok(request)),
        Err(DecodeError { id, error }) => {
            let response = Response::error(id, error);
            assert_eq!(Response::decode(&response.encode()).ok(), Some(response));
        }
    }
}
