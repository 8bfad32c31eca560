//! The daemon as it runs: the `upschedd` binary on a socket of its own, real clients (root, and
//! a forked child that became uid 65534), real signals.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use upsched_broker::audit::{AuditRecord, AuditResult};
use upsched_broker::client::{Client, ClientError};
use upsched_broker::protocol::{
    AuditArgs, AuditList, ErrorKind, ErrorReply, LoadArgs, MAX_MESSAGE_BYTES, Operation, Outcome,
    ReplaceArgs, Reply, Request, Response, SetHintsArgs, StatsArgs, TenantArgs, TenantList,
    TenantStatsList, ThreadArgs, encode_request, read_frame, write_frame,
};

const NOBODY: u32 = 65534;

fn grant(name: &str, principals: &str) -> String {
    format!(
        r#"
[[grant]]
name = "{name}"
{principals}
capabilities = ["sched.order", "hints.read"]
scopes = ["/sys/fs/cgroup/tenants"]
max_level = 2
max_weight = 200
max_tenants = 1
slice_min = "1ms"
slice_max = "20ms"
park_max = "50ms"
watchdog_max = "2s"
"#
    )
}

/// An `upschedd` of this build in a directory of its own; killed when dropped.
struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
}

impl Daemon {
    fn start(grants: &str, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // The unprivileged client must reach the socket inside.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(dir.path().join("grants.toml"), grants).unwrap();
        let child = Self::command(dir.path(), args)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let daemon = Daemon { child, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(daemon.socket()).is_err() {
            assert!(
                Instant::now() < deadline,
                "upschedd did not start listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    fn command(dir: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_upschedd"));
        command
            .arg("--socket")
            .arg(dir.join("run/upsched.sock"))
            .arg("--grants")
            .arg(dir.join("grants.toml"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            // No host is pinned there: the daemon starts without one.
            .arg("--pin-dir")
            .arg(dir.join("pins"))
            .args(args);
        command
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("run/upsched.sock")
    }

    fn connect(&self) -> UnixStream {
        let stream = UnixStream::connect(self.socket()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream
    }

    /// The audit records of the requests, after the daemon's own record of its start (which
    /// found no pinned host).
    fn audit(&self) -> Vec<AuditRecord> {
        let mut records: Vec<AuditRecord> =
            std::fs::read_to_string(self.dir.path().join("state/audit.jsonl"))
                .unwrap()
                .lines()
                .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
                .collect();
        let start = records.remove(0);
        assert_eq!(
            (start.operation.as_str(), start.result),
            ("start", AuditResult::Ok),
            "{start:?}"
        );
        assert!(
            start
                .reason
                .as_deref()
                .unwrap_or("")
                .contains("no pinned host"),
            "{start:?}"
        );
        records
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn request(operation: Operation, id: u64) -> Vec<u8> {
    encode_request(&Request { id, operation })
}

/// Sends one payload as a frame and reads the answer.
fn exchange(stream: &mut UnixStream, payload: &[u8]) -> Response {
    write_frame(stream, payload).unwrap();
    Response::decode(&read_frame(stream).unwrap()).unwrap()
}

fn load_args(policy: &[u8], cgroup: &str) -> LoadArgs {
    LoadArgs {
        policy: policy.to_vec(),
        cgroup: cgroup.into(),
        level: 1,
        weight: 100,
        name: None,
        slice_min_ns: None,
        slice_max_ns: None,
        park_max_ns: None,
        watchdog_ns: None,
    }
}

fn error_kind(response: &Response) -> ErrorKind {
    match &response.outcome {
        Outcome::Error(e) => e.kind,
        Outcome::Ok(reply) => panic!("expected an error, got {reply:?}"),
    }
}

#[test]
fn host_status_and_whoami_round_trip_and_are_audited() {
    let daemon = Daemon::start(
        &format!("version = 1\n{}", grant("admins", "users = [0]")),
        &[],
    );
    let mut client = Client::connect(&daemon.socket()).unwrap();
    let Reply::HostStatus(status) = client.call(Operation::HostStatus).unwrap() else {
        panic!("not a status");
    };
    // What this kernel says, read here independently of the daemon.
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_string())
    };
    assert_eq!(
        status.sched_ext_state,
        read("/sys/kernel/sched_ext/state").unwrap_or_else(|| "unavailable".into())
    );
    assert_eq!(
        status.root_ops,
        read("/sys/kernel/sched_ext/root/ops").filter(|s| !s.is_empty())
    );
    assert_eq!(
        status.upsched_host_loaded,
        status.root_ops.as_deref() == Some("upsched_host")
    );
    assert_eq!(
        status.grants_file,
        daemon.dir.path().join("grants.toml").display().to_string()
    );

    let Reply::Whoami(me) = client.call(Operation::Whoami).unwrap() else {
        panic!("not whoami");
    };
    assert_eq!(
        (me.uid, me.gid, me.pid),
        (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
            std::process::id() as i32
        )
    );
    assert_eq!(me.root, me.uid == 0);
    let granted: Vec<_> = me.grants.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(granted, if me.uid == 0 { vec!["admins"] } else { vec![] });
    if me.uid == 0 {
        let g = &me.grants[0];
        assert_eq!(
            (g.max_level, g.max_weight, g.max_tenants, g.park_max_ns),
            (2, 200, 1, 50_000_000)
        );
        assert_eq!(g.capabilities, ["hints.read", "sched.order"]);
    }

    // A replace of a tenant nobody loaded: refused before the kernel is asked (root: no such
    // tenant; anyone else: no grant).
    let replace = ReplaceArgs {
        tenant: "nobody-loaded-this".into(),
        policy: policy("fifo").to_vec(),
    };
    match client.call(Operation::Replace(replace)) {
        Err(ClientError::Refused(e)) if nix::unistd::getuid().is_root() => {
            assert_eq!(e.kind, ErrorKind::UnknownTenant, "{e:?}");
        }
        Err(ClientError::Refused(e)) => assert_eq!(e.kind, ErrorKind::NotPermitted, "{e:?}"),
        other => panic!("replace: {other:?}"),
    }
    // No tenant yet: empty lists, not errors.
    assert_eq!(
        client.call(Operation::List).unwrap(),
        Reply::List(TenantList { tenants: vec![] })
    );
    assert_eq!(
        client.call(Operation::Stats(StatsArgs::default())).unwrap(),
        Reply::Stats(TenantStatsList {
            tenants: vec![],
            ejected: vec![]
        })
    );
    let audit = daemon.audit();
    let operations: Vec<_> = audit
        .iter()
        .map(|r| (r.operation.as_str(), r.result))
        .collect();
    assert_eq!(
        &operations[..2],
        [
            ("host_status", AuditResult::Ok),
            ("whoami", AuditResult::Ok)
        ]
    );
    assert_eq!(operations.len(), 5, "{operations:?}");
    let replace = &audit[2];
    assert_eq!(
        (
            replace.operation.as_str(),
            replace.result,
            replace.uid,
            replace.pid
        ),
        ("replace", AuditResult::Refused, me.uid, me.pid)
    );
    assert!(replace.reason.as_deref().unwrap().contains(if me.uid == 0 {
        "no tenant \"nobody-loaded-this\""
    } else {
        "grant"
    }));
    if me.uid == 0 {
        // Admitted before it was refused: the record names the new policy.
        assert_eq!(
            replace.policy_hash.as_deref(),
            Some(
                upsched_policy::ContentHash::of(policy("fifo"))
                    .to_string()
                    .as_str()
            )
        );
        assert_eq!(replace.tenant.as_deref(), Some("nobody-loaded-this"));
    }
    assert!(
        replace.time.ends_with('Z') && replace.time.len() == "2026-01-01T00:00:00.000000Z".len(),
        "{}",
        replace.time
    );
}

/// What a child process saw after it forked, dropped to uid and gid 65534 and no groups, and
/// sent `requests` on its own connection: its pid and the daemon's answers.
fn as_nobody(socket: &Path, requests: &[Vec<u8>]) -> (i32, Vec<Response>) {
    let mut out = Vec::new();
    for payload in requests {
        write_frame(&mut out, payload).unwrap();
    }
    // Everything the child needs is made before the fork: after it, only system calls.
    // SAFETY: zeroed sockaddr_un is valid; the path fits (asserted).
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let path = socket.as_os_str().as_encoded_bytes();
    assert!(path.len() < addr.sun_path.len());
    for (dst, src) in addr.sun_path.iter_mut().zip(path) {
        *dst = *src as libc::c_char;
    }
    let mut answer = vec![0u8; 1 << 20];
    let mut pipe = [0; 2];
    // SAFETY: plain system calls; the child touches only memory allocated before the fork and
    // leaves with _exit.
    unsafe {
        assert_eq!(libc::pipe(pipe.as_mut_ptr()), 0);
        let pid = libc::fork();
        assert!(pid >= 0);
        if pid == 0 {
            libc::close(pipe[0]);
            let fail = |code| libc::_exit(code);
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(NOBODY) != 0
                || libc::setuid(NOBODY) != 0
            {
                fail(10);
            }
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            if fd < 0 || libc::connect(fd, (&raw const addr).cast(), len) != 0 {
                fail(11);
            }
            let mut sent = 0;
            while sent < out.len() {
                let n = libc::write(fd, out.as_ptr().add(sent).cast(), out.len() - sent);
                if n <= 0 {
                    fail(12);
                }
                sent += n as usize;
            }
            libc::shutdown(fd, libc::SHUT_WR);
            let mut got = 0;
            loop {
                let n = libc::read(fd, answer.as_mut_ptr().add(got).cast(), answer.len() - got);
                if n <= 0 {
                    break;
                }
                got += n as usize;
            }
            libc::write(pipe[1], answer.as_ptr().cast(), got);
            libc::_exit(0);
        }
        libc::close(pipe[1]);
        let mut from_child = <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(pipe[0]);
        let mut bytes = Vec::new();
        from_child.read_to_end(&mut bytes).unwrap();
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child status {status:#x}"
        );
        let mut stream = bytes.as_slice();
        let mut responses = Vec::new();
        while let Ok(payload) = read_frame(&mut stream) {
            responses.push(Response::decode(&payload).unwrap());
        }
        (pid, responses)
    }
}

fn root_only(test: &str) -> bool {
    if nix::unistd::getuid().is_root() {
        return true;
    }
    eprintln!("{test}: skipped, needs root to become another user");
    false
}

#[test]
fn an_unprivileged_peer_is_identified_by_the_kernel_and_refused_what_it_lacks() {
    if !root_only("unprivileged peer") {
        return;
    }
    let daemon = Daemon::start(
        &format!("version = 1\n{}", grant("others", "users = [1000]")),
        &[],
    );
    let ops = [
        Operation::Whoami,
        Operation::Load(load_args(b"not an object", "/sys/fs/cgroup")),
        Operation::Audit(AuditArgs::default()),
        Operation::Replace(ReplaceArgs {
            tenant: "web".into(),
            policy: b"not an object".to_vec(),
        }),
    ];
    let mut requests: Vec<_> = ops
        .into_iter()
        .enumerate()
        .map(|(i, op)| request(op, i as u64))
        .collect();
    // Claiming to be root in the request is not a field of the protocol.
    requests.push(br#"{"version":1,"id":9,"op":"whoami","uid":0}"#.to_vec());
    let (pid, responses) = as_nobody(&daemon.socket(), &requests);
    assert_eq!(responses.len(), 5, "{responses:?}");
    let Outcome::Ok(Reply::Whoami(who)) = &responses[0].outcome else {
        panic!("{:?}", responses[0]);
    };
    assert_eq!(
        (who.uid, who.gid, who.pid, who.root),
        (NOBODY, NOBODY, pid, false)
    );
    assert!(who.grants.is_empty(), "{who:?}");
    let kinds: Vec<_> = responses[1..].iter().map(error_kind).collect();
    assert_eq!(
        kinds,
        [
            ErrorKind::NotPermitted,
            ErrorKind::NotPermitted,
            ErrorKind::NotPermitted,
            ErrorKind::Malformed
        ]
    );
    let Outcome::Error(e) = &responses[1].outcome else {
        unreachable!()
    };
    assert!(
        e.message.contains("uid 65534 holds no grant"),
        "{}",
        e.message
    );
    assert_eq!(
        responses.iter().map(|r| r.id).collect::<Vec<_>>(),
        [Some(0), Some(1), Some(2), Some(3), Some(9)]
    );
    let audit = daemon.audit();
    assert!(
        audit.iter().all(|r| r.uid == NOBODY && r.pid == pid),
        "{audit:#?}"
    );
    assert_eq!(audit.len(), 5);

    // A grant through the user's group (the child keeps gid 65534, "nogroup") covers it.
    std::fs::write(
        daemon.dir.path().join("grants.toml"),
        format!("version = 1\n{}", grant("nogroup", "groups = [65534]")),
    )
    .unwrap();
    daemon.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, responses) = as_nobody(
            &daemon.socket(),
            &[
                request(Operation::Whoami, 1),
                request(
                    Operation::Load(load_args(b"not an object", "/sys/fs/cgroup")),
                    2,
                ),
            ],
        );
        let Outcome::Ok(Reply::Whoami(who)) = &responses[0].outcome else {
            panic!()
        };
        if !who.grants.is_empty() {
            assert_eq!(who.grants[0].name, "nogroup");
            // Past the permission check: admission refuses the object.
            assert_eq!(error_kind(&responses[1]), ErrorKind::Rejected);
            break;
        }
        assert!(Instant::now() < deadline, "the reload never took effect");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn root_reads_the_newest_audit_records_and_no_one_else_does() {
    if !root_only("audit") {
        return;
    }
    let daemon = Daemon::start("version = 1\n", &[]);
    let mut client = Client::connect(&daemon.socket()).unwrap();
    client.call(Operation::HostStatus).unwrap();
    client.call(Operation::Whoami).unwrap();
    let audit = |client: &mut Client, tail| match client.call(Operation::Audit(AuditArgs { tail }))
    {
        Ok(Reply::Audit(AuditList {
            records,
            size_limited: false,
        })) => records
            .into_iter()
            .map(|r| (r.operation, r.result))
            .collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    let ok = |op: &str| (op.to_string(), AuditResult::Ok);
    assert_eq!(
        audit(&mut client, Some(2)),
        [ok("host_status"), ok("whoami")]
    );
    // The default tail holds all of these, the daemon's start and the first audit request.
    assert_eq!(
        audit(&mut client, None),
        [ok("start"), ok("host_status"), ok("whoami"), ok("audit")]
    );
    // A larger tail than the daemon serves gets what there is, up to its maximum.
    assert_eq!(audit(&mut client, Some(u32::MAX)).len(), 5);

    let (_, responses) = as_nobody(
        &daemon.socket(),
        &[request(Operation::Audit(AuditArgs { tail: Some(1) }), 1)],
    );
    let refused = match &responses[..] {
        [
            Response {
                outcome: Outcome::Error(e),
                ..
            },
        ] => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(refused.kind, ErrorKind::NotPermitted);
    assert_eq!(refused.message, "only root may read the audit log");
    let last = daemon.audit().pop().unwrap();
    assert_eq!(
        (last.operation.as_str(), last.uid, last.result),
        ("audit", NOBODY, AuditResult::Refused)
    );
}

#[test]
fn the_hints_of_a_tenant_the_peer_neither_owns_nor_runs_in_are_refused_and_audited() {
    if !root_only("hints of others") {
        return;
    }
    let daemon = Daemon::start("version = 1\n", &[]);
    let tenant = || "web".to_string();
    let ops = [
        Operation::HintMap(TenantArgs { tenant: tenant() }),
        Operation::NotifyProgram(TenantArgs { tenant: tenant() }),
        Operation::HintSlot(ThreadArgs {
            tenant: tenant(),
            tid: 1,
        }),
        Operation::SetHints(SetHintsArgs {
            tenant: tenant(),
            tid: 1,
            words: [1, 7, 0, 0, 0, 0, 0, 0],
        }),
    ];
    let requests: Vec<_> = ops
        .into_iter()
        .enumerate()
        .map(|(i, op)| request(op, i as u64))
        .collect();
    let (pid, responses) = as_nobody(&daemon.socket(), &requests);
    assert_eq!(responses.len(), 4, "{responses:?}");
    for response in &responses {
        let e = refusal(response);
        assert_eq!(e.kind, ErrorKind::UnknownTenant, "{e:?}");
        let said =
            format!("no tenant \"web\" that uid {NOBODY} owns or whose cgroup holds process {pid}");
        assert!(e.message.contains(&said), "{}", e.message);
    }
    let audit = daemon.audit();
    let operations: Vec<_> = audit.iter().map(|r| r.operation.as_str()).collect();
    assert_eq!(
        operations,
        ["hint_map", "notify_program", "hint_slot", "set_hints"]
    );
    assert!(
        audit.iter().all(|r| r.result == AuditResult::Refused
            && r.tenant.as_deref() == Some("web")
            && r.pid == pid),
        "{audit:#?}"
    );
}

#[test]
fn a_bad_grants_file_on_sighup_keeps_the_old_grants_and_says_why() {
    let mut daemon = Daemon::start(
        &format!("version = 1\n{}", grant("admins", "users = [0]")),
        &[],
    );
    std::fs::write(
        daemon.dir.path().join("grants.toml"),
        "version = 1\n[[grant]]\nname = 3\n",
    )
    .unwrap();
    daemon.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !daemon
        .audit()
        .iter()
        .any(|r| r.operation == "reload_grants")
    {
        assert!(Instant::now() < deadline, "no reload in the audit log");
        std::thread::sleep(Duration::from_millis(20));
    }
    let reload = daemon
        .audit()
        .into_iter()
        .find(|r| r.operation == "reload_grants")
        .unwrap();
    assert_eq!(reload.result, AuditResult::Refused);
    let reason = reload.reason.unwrap();
    assert!(
        reason.contains("kept the grants in force")
            && reason.contains("grants.toml:3: grant[0].name"),
        "{reason}"
    );
    assert!(daemon.alive());
    let mut client = Client::connect(&daemon.socket()).unwrap();
    let Reply::Whoami(me) = client.call(Operation::Whoami).unwrap() else {
        panic!()
    };
    if me.uid == 0 {
        assert_eq!(me.grants.len(), 1, "the old grant is still in force");
    }
}

#[test]
fn a_bad_grants_file_refuses_the_start_and_a_second_daemon_refuses_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("grants.toml"),
        "version = 1\n[[grant]]\nname = \"x\"\nusers = [0]\n",
    )
    .unwrap();
    let out = Daemon::command(dir.path(), &[]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("grants.toml:2: grant[0]: missing field `capabilities`"),
        "{stderr}"
    );
    assert!(!dir.path().join("run/upsched.sock").exists());

    let check = Daemon::command(dir.path(), &["--check-grants"])
        .output()
        .unwrap();
    assert!(!check.status.success());

    let daemon = Daemon::start("version = 1\n", &[]);
    let second = Daemon::command(daemon.dir.path(), &[]).output().unwrap();
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("another daemon is listening"));
    Client::connect(&daemon.socket())
        .unwrap()
        .call(Operation::HostStatus)
        .unwrap();
}

#[test]
fn sigterm_stops_the_daemon_and_removes_its_socket() {
    let mut daemon = Daemon::start("version = 1\n", &[]);
    daemon.signal(libc::SIGTERM);
    let status = daemon.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!daemon.socket().exists());
    match Client::connect(&daemon.socket()) {
        Err(e @ ClientError::NoDaemon { .. }) => {
            assert!(e.to_string().contains("systemctl start upschedd"), "{e}")
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("connected after the stop"),
    }
}

#[test]
fn malformed_truncated_oversized_and_wrong_version_messages_are_answered_and_the_daemon_stays_up() {
    let mut daemon = Daemon::start("version = 1\n", &[]);
    let mut stream = daemon.connect();
    let cases: &[(&[u8], ErrorKind)] = &[
        (b"not json", ErrorKind::Malformed),
        (br#"{"version":2,"id":1,"op":"whoami"}"#, ErrorKind::Version),
        (
            br#"{"version":1,"id":1,"op":"shutdown"}"#,
            ErrorKind::UnknownOperation,
        ),
        (br#"{"version":1,"id":1}"#, ErrorKind::Malformed),
        (b"", ErrorKind::Malformed),
    ];
    // All on one connection: a bad request does not end it.
    for (payload, kind) in cases {
        let response = exchange(&mut stream, payload);
        assert_eq!(
            error_kind(&response),
            *kind,
            "{}",
            String::from_utf8_lossy(payload)
        );
    }
    assert!(matches!(
        exchange(&mut stream, &request(Operation::Whoami, 5)).outcome,
        Outcome::Ok(Reply::Whoami(_))
    ));

    // Oversized: refused from the header alone, then the connection is closed.
    let mut big = daemon.connect();
    big.write_all(&(MAX_MESSAGE_BYTES + 1).to_be_bytes())
        .unwrap();
    let response = Response::decode(&read_frame(&mut big).unwrap()).unwrap();
    assert_eq!(error_kind(&response), ErrorKind::TooLarge);
    assert!(read_frame(&mut big).is_err(), "closed after too_large");

    // Truncated: the client leaves inside a message.
    let mut cut = daemon.connect();
    cut.write_all(&100u32.to_be_bytes()).unwrap();
    cut.write_all(b"{\"version\"").unwrap();
    drop(cut);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !daemon
        .audit()
        .iter()
        .any(|r| r.reason.as_deref().is_some_and(|s| s.contains("truncated")))
    {
        assert!(
            Instant::now() < deadline,
            "no truncated message in the audit log"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(daemon.alive());
    assert!(matches!(
        exchange(&mut daemon.connect(), &request(Operation::HostStatus, 6)).outcome,
        Outcome::Ok(Reply::HostStatus(_))
    ));
}

#[test]
fn a_silent_or_trickling_client_is_timed_out_while_others_are_served() {
    let daemon = Daemon::start("version = 1\n", &["--request-timeout", "1s"]);
    // Before the connections, so that no timeout can be counted from earlier than this.
    let started = Instant::now();
    let silent = daemon.connect();
    let mut trickling = daemon.connect();
    let trickler = std::thread::spawn(move || {
        // One byte every 200 ms: each read is quick, the message never completes in time.
        let mut framed = Vec::new();
        write_frame(&mut framed, &request(Operation::Whoami, 1)).unwrap();
        for byte in framed {
            if trickling.write_all(&[byte]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        trickling
    });
    // Meanwhile everyone else is served, more than once a timeout's worth of time.
    let mut served = 0;
    while started.elapsed() < Duration::from_millis(800) {
        let mut client = Client::connect(&daemon.socket()).unwrap();
        client.call(Operation::HostStatus).unwrap();
        served += 1;
    }
    assert!(served >= 2, "served {served}");
    let mut silent = silent;
    let response = Response::decode(&read_frame(&mut silent).unwrap()).unwrap();
    assert_eq!(
        (error_kind(&response), response.id),
        (ErrorKind::Timeout, None)
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "timed out before its time"
    );
    assert!(read_frame(&mut silent).is_err(), "closed after the timeout");
    let mut trickling = trickler.join().unwrap();
    // The trickler's own read may see its timeout answer or, if the daemon closed while it was
    // still writing, a broken connection; never an answer to its request.
    if let Ok(payload) = read_frame(&mut trickling) {
        assert_eq!(
            error_kind(&Response::decode(&payload).unwrap()),
            ErrorKind::Timeout
        );
    }
    let timeouts = daemon
        .audit()
        .iter()
        .filter(|r| {
            r.reason
                .as_deref()
                .is_some_and(|s| s.starts_with("no complete request"))
        })
        .count();
    assert_eq!(timeouts, 2);
}

#[test]
fn connections_beyond_the_bounds_are_refused_busy_and_other_users_keep_their_share() {
    let daemon = Daemon::start(
        "version = 1\n",
        &["--max-connections", "4", "--max-connections-per-user", "2"],
    );
    // Holds `n` connections, each proven counted by an answered request. The start-up probe's
    // connection may still hold its slot for a moment: a busy answer then is retried.
    let wait_held = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut held = Vec::new();
        while held.len() < n {
            let mut s = daemon.connect();
            if write_frame(&mut s, &request(Operation::HostStatus, 1)).is_ok()
                && let Ok(payload) = read_frame(&mut s)
                && matches!(Response::decode(&payload).unwrap().outcome, Outcome::Ok(_))
            {
                held.push(s);
            }
            assert!(Instant::now() < deadline, "could not hold {n} connections");
        }
        held
    };
    let held = wait_held(2);
    let mut third = daemon.connect();
    let response = Response::decode(&read_frame(&mut third).unwrap()).unwrap();
    assert_eq!(error_kind(&response), ErrorKind::Busy);
    let Outcome::Error(e) = &response.outcome else {
        unreachable!()
    };
    assert!(
        e.message.contains("holds its maximum of 2 connections"),
        "{}",
        e.message
    );
    if root_only("per-user bound") {
        // Another user is still served while this one is at its bound.
        let (_, responses) = as_nobody(&daemon.socket(), &[request(Operation::Whoami, 1)]);
        assert!(
            matches!(responses[0].outcome, Outcome::Ok(Reply::Whoami(_))),
            "{responses:?}"
        );
    }
    drop(held);
    drop(third);
    // Given back: the same user is served again.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut s = daemon.connect();
        // Until the slots are given back, the daemon may close before the request is written.
        if write_frame(&mut s, &request(Operation::HostStatus, 9)).is_ok()
            && let Ok(payload) = read_frame(&mut s)
            && matches!(Response::decode(&payload).unwrap().outcome, Outcome::Ok(_))
        {
            break;
        }
        assert!(Instant::now() < deadline, "connections never given back");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_hundred_concurrent_clients_are_each_answered_correctly() {
    const CLIENTS: u64 = 100;
    const ROUNDS: u64 = 20;
    let daemon = Daemon::start(
        "version = 1\n",
        &[
            "--max-connections",
            "128",
            "--max-connections-per-user",
            "128",
        ],
    );
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(CLIENTS as usize));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let socket = daemon.socket();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut stream = UnixStream::connect(socket).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(60)))
                    .unwrap();
                barrier.wait();
                for round in 0..ROUNDS {
                    let id = c * 1000 + round;
                    let (payload, want_ok) = match round % 3 {
                        0 => (request(Operation::HostStatus, id), true),
                        1 => (request(Operation::Whoami, id), true),
                        _ => (
                            format!(r#"{{"version":1,"id":{id},"op":"nope"}}"#).into_bytes(),
                            false,
                        ),
                    };
                    let response = exchange(&mut stream, &payload);
                    assert_eq!(response.id, Some(id));
                    match (&response.outcome, round % 3) {
                        (Outcome::Ok(Reply::HostStatus(_)), 0)
                        | (Outcome::Ok(Reply::Whoami(_)), 1) => assert!(want_ok),
                        (Outcome::Error(e), 2) => assert_eq!(e.kind, ErrorKind::UnknownOperation),
                        other => panic!("client {c} round {round}: {other:?}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut daemon = daemon;
    assert!(daemon.alive());
    // Every refusal is recorded; the served reads, all of one uid, once per operation (the
    // daemon records a user's served read-only requests of one kind once a minute).
    let refusals = CLIENTS * (0..ROUNDS).filter(|round| round % 3 == 2).count() as u64;
    let audit = daemon.audit();
    assert_eq!(audit.len() as u64, refusals + 2);
    let served: Vec<_> = audit
        .iter()
        .filter(|r| r.result == AuditResult::Ok)
        .collect();
    assert_eq!(served.len(), 2, "{served:#?}");
}

#[test]
fn the_systemd_unit_gives_the_daemon_the_directories_it_uses_by_default() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/upschedd.service"),
    )
    .unwrap();
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("the unit sets no {key}"))
            .to_string()
    };
    use upsched_broker::daemon::{DEFAULT_SOCKET, DEFAULT_STATE_DIR};
    use upsched_broker::grants::DEFAULT_GRANTS_PATH;
    let under = |base: &str, dir: String| Path::new(base).join(dir);
    assert_eq!(
        under("/run", value("RuntimeDirectory")),
        Path::new(DEFAULT_SOCKET).parent().unwrap()
    );
    assert_eq!(
        under("/var/lib", value("StateDirectory")),
        Path::new(DEFAULT_STATE_DIR)
    );
    assert_eq!(
        under("/etc", value("ConfigurationDirectory")),
        Path::new(DEFAULT_GRANTS_PATH).parent().unwrap()
    );
    assert_eq!(value("ExecStart"), "/usr/local/bin/upschedd");
    assert!(value("ExecReload").contains("-HUP"));
}

/// A cgroup2 mount this test may create cgroups in, if the machine has one.
fn cgroup2_mount() -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mountpoint = left.split_whitespace().nth(4)?;
        (right.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mountpoint))
    })
}

/// Cgroups made for one test, removed (deepest first) when dropped.
struct Cgroups(Vec<PathBuf>);

impl Cgroups {
    fn make(&mut self, path: PathBuf, owner: u32) -> PathBuf {
        std::fs::create_dir(&path).unwrap();
        std::os::unix::fs::chown(&path, Some(owner), Some(owner)).unwrap();
        self.0.push(path.clone());
        path
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for path in self.0.iter().rev() {
            let _ = std::fs::remove_dir(path);
        }
    }
}

fn policy(name: &str) -> &'static [u8] {
    upsched_policies::policy(name).unwrap()
}

fn capabilities_of(name: &str) -> Vec<String> {
    let admitted = upsched_policy::admit(policy(name), &upsched_policy::Limits::default()).unwrap();
    admitted
        .capabilities()
        .iter()
        .map(|c| c.name.clone())
        .collect()
}

fn refusal(response: &Response) -> &ErrorReply {
    match &response.outcome {
        Outcome::Error(e) => e,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_granted_user_is_refused_each_load_its_grant_does_not_allow_with_every_reason() {
    if !root_only("load refusals") {
        return;
    }
    let Some(mount) = cgroup2_mount() else {
        eprintln!("load refusals: skipped, no cgroup2 mount");
        return;
    };
    let base = mount.join(format!("upsched-broker-test-{}", std::process::id()));
    let mut cgroups = Cgroups(Vec::new());
    cgroups.make(base.clone(), 0);
    let scope = cgroups.make(base.join("scope"), 0);
    let mine = cgroups.make(scope.join("mine"), NOBODY);
    let theirs = cgroups.make(scope.join("theirs"), 1000);
    let outside = cgroups.make(base.join("outside"), NOBODY);
    // The grant holds exactly what fifo needs; faas needs more.
    let fifo_caps = capabilities_of("fifo");
    let missing: Vec<_> = capabilities_of("faas")
        .into_iter()
        .filter(|c| !fifo_caps.contains(c))
        .collect();
    assert!(!missing.is_empty(), "faas needs nothing fifo does not");
    let caps: Vec<_> = fifo_caps.iter().map(|c| format!("{c:?}")).collect();
    let daemon = Daemon::start(
        &format!(
            r#"version = 1
[[grant]]
name = "nogroup"
groups = [65534]
capabilities = [{}]
scopes = ["{}"]
max_level = 2
max_weight = 200
max_tenants = 1
slice_min = "500us"
slice_max = "20ms"
park_max = "100ms"
watchdog_max = "3s"
"#,
            caps.join(", "),
            scope.display()
        ),
        &[],
    );
    let link = daemon.dir.path().join("link");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let path = |p: &Path| p.display().to_string();
    let mut too_much = load_args(policy("faas"), &path(&mine));
    too_much.level = 3;
    too_much.weight = 300;
    let through_parent = format!("{}/../../outside", path(&mine));
    let cases: Vec<(LoadArgs, ErrorKind, Vec<String>)> = vec![
        (
            too_much,
            ErrorKind::NotPermitted,
            missing
                .iter()
                .map(|c| format!("capability {c} missing"))
                .chain([
                    "level 3 above the grant's max_level 2".to_string(),
                    "weight 300 above the grant's max_weight 200".to_string(),
                ])
                .collect(),
        ),
        (
            load_args(policy("fifo"), &path(&outside)),
            ErrorKind::NotPermitted,
            vec!["outside every granted scope".into()],
        ),
        (
            load_args(policy("fifo"), &path(&link)),
            ErrorKind::NotPermitted,
            vec!["outside every granted scope".into()],
        ),
        (
            load_args(policy("fifo"), &through_parent),
            ErrorKind::NotPermitted,
            vec!["goes through `..`".into()],
        ),
        (
            load_args(policy("fifo"), &path(&theirs)),
            ErrorKind::NotPermitted,
            vec!["belongs to uid 1000".into()],
        ),
        (
            load_args(b"\x7fELF but not an object", &path(&mine)),
            ErrorKind::Rejected,
            vec!["refused by `upsched check`".into()],
        ),
    ];
    let mut requests: Vec<_> = cases
        .iter()
        .enumerate()
        .map(|(i, (args, _, _))| request(Operation::Load(args.clone()), i as u64))
        .collect();
    requests.push(request(Operation::List, 100));
    let (_, responses) = as_nobody(&daemon.socket(), &requests);
    assert_eq!(responses.len(), cases.len() + 1);
    for ((args, kind, reasons), response) in cases.iter().zip(&responses) {
        let e = refusal(response);
        assert_eq!(e.kind, *kind, "{}: {}", args.cgroup, e.message);
        for reason in reasons {
            assert!(
                e.message.contains(reason.as_str()),
                "{reason:?} not in {}",
                e.message
            );
        }
    }
    assert_eq!(
        responses.last().unwrap().outcome,
        Outcome::Ok(Reply::List(TenantList { tenants: vec![] }))
    );
    // Each refusal is audited with the policy's hash.
    let audit = daemon.audit();
    let loads: Vec<_> = audit.iter().filter(|r| r.operation == "load").collect();
    assert_eq!(loads.len(), cases.len());
    assert!(loads.iter().all(|r| r.result == AuditResult::Refused));
    assert_eq!(
        loads[1].policy_hash.as_deref(),
        Some(
            upsched_policy::ContentHash::of(policy("fifo"))
                .to_string()
                .as_str()
        )
    );

    // A load the grant allows gets past every check to the kernel; where the kernel has no
    // sched_ext the host cannot load, and the failure leaves no tenant behind.
    if upsched_kernel::sched_ext_state().is_none() {
        let (_, responses) = as_nobody(
            &daemon.socket(),
            &[
                request(Operation::Load(load_args(policy("fifo"), &path(&mine))), 1),
                request(Operation::List, 2),
            ],
        );
        let e = refusal(&responses[0]);
        assert_eq!(e.kind, ErrorKind::Internal, "{}", e.message);
        assert!(
            e.message.contains("cannot load the host scheduler"),
            "{}",
            e.message
        );
        assert_eq!(
            responses[1].outcome,
            Outcome::Ok(Reply::List(TenantList { tenants: vec![] }))
        );
    }
}
