//! The request protocol: frames, decoding, refusals, and the fuzz seeds replayed.

use std::io::Read;
use std::path::Path;

use upsched_broker::protocol::{
    AuditArgs, DecodeError, ErrorKind, ErrorReply, FrameError, HostStatus, LoadArgs,
    MAX_MESSAGE_BYTES, Operation, PROTOCOL_VERSION, ReplaceArgs, Reply, Request, Response,
    SetHintsArgs, StatsArgs, TenantArgs, ThreadArgs, decode_request, encode_request, fuzz_decode,
    read_frame, read_frame_with_fd, write_frame, write_frame_with_fd,
};

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, payload).unwrap();
    out
}

fn refused(payload: &str) -> DecodeError {
    decode_request(payload.as_bytes()).expect_err(payload)
}

#[test]
fn requests_round_trip_through_frames() {
    let load = LoadArgs {
        policy: vec![0x7f, b'E', b'L', b'F', 0, 0xff],
        cgroup: "/sys/fs/cgroup/tenants/a".into(),
        level: 1,
        weight: 100,
        name: Some("a".into()),
        slice_min_ns: None,
        slice_max_ns: Some(5_000_000),
        park_max_ns: None,
        watchdog_ns: None,
    };
    for operation in [
        Operation::HostStatus,
        Operation::Whoami,
        Operation::Load(load),
        Operation::Unload(TenantArgs { tenant: "a".into() }),
        Operation::List,
        Operation::Stats(StatsArgs::default()),
        Operation::Stats(StatsArgs {
            tenant: Some("a".into()),
        }),
        Operation::Audit(AuditArgs::default()),
        Operation::Audit(AuditArgs { tail: Some(20) }),
        Operation::HintMap(TenantArgs { tenant: "a".into() }),
        Operation::NotifyProgram(TenantArgs { tenant: "a".into() }),
        Operation::HintSlot(ThreadArgs {
            tenant: "a".into(),
            tid: 42,
        }),
        Operation::SetHints(SetHintsArgs {
            tenant: "a".into(),
            tid: 42,
            words: [1, 7, 0, 0, 0, 0, 0, u64::MAX],
        }),
        Operation::Replace(ReplaceArgs {
            tenant: "a".into(),
            policy: vec![0x7f, b'E', b'L', b'F'],
        }),
    ] {
        let request = Request { id: 7, operation };
        let bytes = framed(&encode_request(&request));
        assert_eq!(
            u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize,
            bytes.len() - 4
        );
        let payload = read_frame(&mut bytes.as_slice()).unwrap();
        assert_eq!(decode_request(&payload), Ok(request));
    }
    let request = decode_request(br#"{"version":1,"id":3,"op":"whoami"}"#).unwrap();
    assert_eq!(
        request,
        Request {
            id: 3,
            operation: Operation::Whoami
        }
    );
    // A replace names its tenant and carries the policy: other arguments are refused.
    let replace = refused(r#"{"version":1,"id":4,"op":"replace","args":{"x":1}}"#);
    assert_eq!(replace.error.kind, ErrorKind::Malformed);
    assert_eq!(
        refused(r#"{"version":1,"id":4,"op":"replace"}"#).error.kind,
        ErrorKind::Malformed
    );
    // The policy travels as hex.
    let load = decode_request(
        br#"{"version":1,"id":4,"op":"load","args":{"policy":"00ff","cgroup":"/x","level":0,"weight":1}}"#,
    );
    let Operation::Load(args) = load.unwrap().operation else {
        panic!()
    };
    assert_eq!(args.policy, [0, 0xff]);
}

#[test]
fn responses_round_trip() {
    let status = Response::ok(
        9,
        Reply::HostStatus(HostStatus {
            sched_ext_state: "enabled".into(),
            root_ops: Some("upsched".into()),
            upsched_host_loaded: true,
            tenants: 0,
            grants_file: "/etc/upsched/grants.toml".into(),
        }),
    );
    let text = String::from_utf8(status.encode()).unwrap();
    assert!(
        text.starts_with(r#"{"version":1,"id":9,"ok":{"reply":"host_status","#),
        "{text}"
    );
    assert_eq!(Response::decode(text.as_bytes()).unwrap(), status);
    let error = Response::error(None, ErrorReply::new(ErrorKind::TooLarge, "big"));
    let text = String::from_utf8(error.encode()).unwrap();
    assert_eq!(
        text,
        r#"{"version":1,"id":null,"error":{"kind":"too_large","message":"big"}}"#
    );
    assert_eq!(Response::decode(text.as_bytes()).unwrap(), error);
}

#[test]
fn malformed_and_wrong_version_requests_are_refused_with_their_kind() {
    let cases: &[(&str, ErrorKind, Option<u64>, &str)] = &[
        ("", ErrorKind::Malformed, None, "not a JSON request object"),
        (
            "[1]",
            ErrorKind::Malformed,
            None,
            "not a JSON request object",
        ),
        (
            "{\"id\":5,\"op\":\"whoami\"}",
            ErrorKind::Malformed,
            Some(5),
            "missing field `version`",
        ),
        (
            "{\"version\":2,\"id\":5,\"op\":\"whoami\"}",
            ErrorKind::Version,
            Some(5),
            "speaks version 1",
        ),
        (
            "{\"version\":0,\"op\":\"whoami\"}",
            ErrorKind::Version,
            None,
            "version 0",
        ),
        (
            "{\"version\":1,\"op\":\"whoami\"}",
            ErrorKind::Malformed,
            None,
            "missing field `id`",
        ),
        (
            "{\"version\":1,\"id\":5}",
            ErrorKind::Malformed,
            Some(5),
            "missing field `op`",
        ),
        (
            "{\"version\":1,\"id\":5,\"op\":\"reboot\"}",
            ErrorKind::UnknownOperation,
            Some(5),
            "known: host_status, whoami",
        ),
        (
            "{\"version\":1,\"id\":5,\"op\":\"whoami\",\"uid\":0}",
            ErrorKind::Malformed,
            Some(5),
            "unknown field `uid`",
        ),
        (
            "{\"version\":1,\"id\":5,\"op\":\"whoami\",\"args\":{}}",
            ErrorKind::Malformed,
            Some(5),
            "takes no arguments",
        ),
        (
            "{\"version\":1,\"id\":5,\"op\":\"whoami\"} x",
            ErrorKind::Malformed,
            None,
            "trailing characters",
        ),
        (
            "{\"version\":1,\"id\":5,\"op\":\"unload\"}",
            ErrorKind::Malformed,
            Some(5),
            "needs `args`",
        ),
        (
            "{\"version\":1,\"id\":5,\"op\":\"load\",\"args\":{\"policy\":\"0g\",\"cgroup\":\"/x\",\"level\":0,\"weight\":1}}",
            ErrorKind::Malformed,
            Some(5),
            "args.policy: not hex at offset 0",
        ),
        (
            "{\"version\":1,\"id\":5,\"op\":\"load\",\"args\":{\"policy\":\"00\",\"cgroup\":\"/x\",\"level\":0}}",
            ErrorKind::Malformed,
            Some(5),
            "missing field `weight`",
        ),
        (
            "{\"version\":1,\"id\":5,\"op\":\"list\",\"args\":{}}",
            ErrorKind::Malformed,
            Some(5),
            "takes no arguments",
        ),
        (
            "{\"version\":1,\"id\":5,\"op\":7}",
            ErrorKind::Malformed,
            Some(5),
            "invalid type",
        ),
    ];
    for (payload, kind, id, message) in cases {
        let e = refused(payload);
        assert_eq!((e.error.kind, e.id), (*kind, *id), "{payload}: {e:?}");
        assert!(e.error.message.contains(message), "{payload}: {e:?}");
    }
}

#[test]
fn nesting_as_deep_as_a_message_allows_neither_overflows_nor_passes() {
    let depth = (MAX_MESSAGE_BYTES as usize - 64) / 2;
    let deep = |op: &str| {
        format!(
            r#"{{"version":1,"id":1,"op":"{op}","args":{}{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    assert!(deep("load").len() <= MAX_MESSAGE_BYTES as usize);
    assert_eq!(refused(&deep("replace")).error.kind, ErrorKind::Malformed);
    assert_eq!(refused(&deep("load")).error.kind, ErrorKind::Malformed);
    assert_eq!(refused(&deep("whoami")).error.kind, ErrorKind::Malformed);
    let unclosed = format!(
        r#"{{"version":1,"id":1,"op":"load","args":{}"#,
        "[".repeat(depth)
    );
    assert_eq!(refused(&unclosed).error.kind, ErrorKind::Malformed);
}

#[test]
fn frames_that_are_truncated_or_too_large_are_refused_before_allocating() {
    assert!(matches!(read_frame(&mut &b""[..]), Err(FrameError::Closed)));
    assert!(matches!(
        read_frame(&mut &b"\0\0"[..]),
        Err(FrameError::Truncated {
            got: 2,
            expected: 4
        })
    ));
    let mut short = 10u32.to_be_bytes().to_vec();
    short.extend_from_slice(b"{}");
    assert!(matches!(
        read_frame(&mut short.as_slice()),
        Err(FrameError::Truncated {
            got: 2,
            expected: 10
        })
    ));
    let over = (MAX_MESSAGE_BYTES + 1).to_be_bytes();
    assert!(
        matches!(read_frame(&mut &over[..]), Err(FrameError::TooLarge(n)) if n == MAX_MESSAGE_BYTES + 1)
    );
    // A frame announcing the largest size allowed but sending only a little holds only that
    // little: the reader is never asked for more than it has.
    struct Trickle(Vec<u8>, usize);
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            assert!(
                buf.len() <= 64 * 1024 + 4,
                "asked to fill {} bytes at once",
                buf.len()
            );
            let n = buf.len().min(self.0.len() - self.1);
            buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
            self.1 += n;
            Ok(n)
        }
    }
    let mut announced = MAX_MESSAGE_BYTES.to_be_bytes().to_vec();
    announced.extend_from_slice(&[b' '; 100]);
    assert!(matches!(
        read_frame(&mut Trickle(announced, 0)),
        Err(FrameError::Truncated { got: 100, .. })
    ));
    // The largest message passes; one byte more is refused on the way out too.
    let largest = vec![b' '; MAX_MESSAGE_BYTES as usize];
    assert_eq!(
        read_frame(&mut framed(&largest).as_slice()).unwrap().len(),
        largest.len()
    );
    let mut sink = Vec::new();
    assert!(write_frame(&mut sink, &vec![0; MAX_MESSAGE_BYTES as usize + 1]).is_err());
    assert!(sink.is_empty());
}

#[test]
fn the_version_is_the_one_documented() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/protocol.md"),
    )
    .unwrap();
    assert!(doc.contains(&format!("`\"version\": {PROTOCOL_VERSION}`")));
    assert!(doc.contains(&format!("{MAX_MESSAGE_BYTES} bytes")));
    use upsched_broker::daemon::{
        DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_USER, DEFAULT_REQUEST_TIMEOUT,
    };
    for (option, default) in [
        (
            "--request-timeout",
            format!("{}", DEFAULT_REQUEST_TIMEOUT.as_secs()) + " s",
        ),
        ("--max-connections", DEFAULT_MAX_CONNECTIONS.to_string()),
        (
            "--max-connections-per-user",
            DEFAULT_MAX_CONNECTIONS_PER_USER.to_string(),
        ),
    ] {
        let said = format!("(`{option}`, {default} by default)");
        assert!(doc.contains(&said), "docs/protocol.md does not say {said}");
    }
    for name in Operation::NAMES {
        assert!(
            doc.contains(&format!("`{name}`")),
            "docs/protocol.md lacks {name}"
        );
    }
}

#[test]
fn decode_request_fuzz_seeds_hold() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    for dir in [
        fuzz.join("seeds/decode_request"),
        fuzz.join("corpus/decode_request"),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            fuzz_decode(&std::fs::read(entry.unwrap().path()).unwrap());
            replayed += 1;
        }
    }
    assert!(replayed >= 20, "only {replayed} seeds");
    // Every outcome the seeds are meant to reach is reached.
    let seed = |name: &str| std::fs::read(fuzz.join("seeds/decode_request").join(name)).unwrap();
    let first = |name: &str| decode_request(&read_frame(&mut seed(name).as_slice()).unwrap());
    assert!(first("whoami").is_ok());
    assert_eq!(
        first("audit_tail").unwrap().operation,
        Operation::Audit(AuditArgs { tail: Some(20) })
    );
    assert_eq!(
        first("wrong_version").unwrap_err().error.kind,
        ErrorKind::Version
    );
    assert_eq!(
        first("unknown_op").unwrap_err().error.kind,
        ErrorKind::UnknownOperation
    );
    assert_eq!(
        first("deep_nesting").unwrap_err().error.kind,
        ErrorKind::Malformed
    );
    assert!(matches!(
        read_frame(&mut seed("oversized").as_slice()),
        Err(FrameError::TooLarge(_))
    ));
}

#[test]
fn set_hints_takes_exactly_the_hint_words() {
    for words in [
        "[1, 7]",
        "[0, 0, 0, 0, 0, 0, 0, 0, 0]",
        "[-1, 0, 0, 0, 0, 0, 0, 0]",
    ] {
        let payload = format!(
            r#"{{"version":1,"id":5,"op":"set_hints","args":{{"tenant":"a","tid":1,"words":{words}}}}}"#
        );
        let refused = refused(&payload);
        assert_eq!(refused.error.kind, ErrorKind::Malformed, "{words}");
        assert_eq!(refused.id, Some(5));
    }
}

#[test]
fn an_fd_travels_with_its_frame() {
    use std::io::{Seek, Write};
    use std::os::fd::AsFd;
    let (daemon, client) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(b"the map").unwrap();
    write_frame_with_fd(&daemon, b"first", file.as_fd()).unwrap();
    write_frame(&mut &daemon, b"second").unwrap();
    let (payload, fd) = read_frame_with_fd(&client).unwrap();
    assert_eq!(payload, b"first");
    let mut passed = std::fs::File::from(fd.expect("the fd came"));
    passed.rewind().unwrap();
    let mut text = String::new();
    passed.read_to_string(&mut text).unwrap();
    assert_eq!(text, "the map");
    // A frame without an fd reads the same way, with none.
    let (payload, fd) = read_frame_with_fd(&client).unwrap();
    assert_eq!((payload.as_slice(), fd.is_none()), (&b"second"[..], true));
    drop(daemon);
    assert!(matches!(
        read_frame_with_fd(&client),
        Err(FrameError::Closed)
    ));
}
