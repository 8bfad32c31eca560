//! `upsched host status`, `upsched grants show` and the tenant operations against a real daemon
//! (the broker's own, served on a thread of this test), and without one.

mod support;

use std::path::Path;

use support::{text, upsched};
use upsched_broker::daemon::{Config, Daemon};

/// A daemon on a fresh socket, with `grants` in force; it serves until the test ends.
fn daemon(dir: &Path, grants: &str) -> String {
    std::fs::write(dir.join("grants.toml"), grants).unwrap();
    let socket = dir.join("upsched.sock");
    let mut config = Config::new(&socket, dir.join("grants.toml"), dir.join("state"));
    config.audit_to_stderr = false;
    let daemon = Daemon::new(config).unwrap();
    let listener = daemon.bind().unwrap();
    std::thread::spawn(move || daemon.serve(listener));
    socket.display().to_string()
}

#[test]
fn without_a_daemon_each_says_so_and_how_to_start_one() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("none.sock");
    let socket = socket.to_str().unwrap();
    let commands: [&[&str]; 9] = [
        &["host", "status"],
        &["grants", "show"],
        &["load", "example:fifo", "--cgroup", "/sys/fs/cgroup"],
        &["replace", "web", "example:wfq"],
        &["unload", "web"],
        &["list"],
        &["stats"],
        &["top", "--once"],
        &["audit"],
    ];
    for command in commands {
        let with = |extra: &[&str]| {
            let mut args = command.to_vec();
            args.extend_from_slice(&["--socket", socket]);
            args.extend_from_slice(extra);
            upsched(&args)
        };
        let out = with(&[]);
        assert_eq!(out.status.code(), Some(2));
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!("no upschedd answers on {socket}")),
            "{stderr}"
        );
        assert!(stderr.contains("systemctl start upschedd"), "{stderr}");
        let out = with(&["--json"]);
        assert_eq!(out.status.code(), Some(2));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["error"]["command"], command[0]);
        assert!(
            doc["error"]["message"]
                .as_str()
                .unwrap()
                .contains("upschedd --socket")
        );
    }
}

#[test]
fn host_status_reports_what_the_kernel_says() {
    let dir = tempfile::tempdir().unwrap();
    let socket = daemon(dir.path(), "version = 1\n");
    let out = upsched(&["host", "status", "--socket", &socket, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let state = std::fs::read_to_string("/sys/kernel/sched_ext/state")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unavailable".into());
    assert_eq!(status["sched_ext_state"], state.as_str());
    assert_eq!(status["tenants"], 0);
    let out = upsched(&["host", "status", "--socket", &socket]);
    assert!(
        text(&out.stdout).starts_with(&format!("sched_ext:  {state}\n")),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn grants_show_lists_the_callers_grants() {
    let dir = tempfile::tempdir().unwrap();
    let uid = nix_uid();
    let socket = daemon(
        dir.path(),
        &format!(
            r#"version = 1
[[grant]]
name = "mine"
users = [{uid}]
capabilities = ["sched.order", "time.read"]
scopes = ["/sys/fs/cgroup/mine"]
max_level = 1
max_weight = 150
max_tenants = 3
slice_min = "1ms"
slice_max = "20ms"
park_max = "10ms"
watchdog_max = "2s"
"#
        ),
    );
    let out = upsched(&["grants", "show", "--socket", &socket, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let who: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(who["uid"], uid);
    assert_eq!(who["grants"][0]["name"], "mine");
    assert_eq!(
        who["grants"][0]["capabilities"],
        serde_json::json!(["sched.order", "time.read"])
    );
    let out = upsched(&["grants", "show", "--socket", &socket]);
    let shown = text(&out.stdout);
    assert!(
        shown.contains("grant \"mine\"\n  capabilities: sched.order, time.read\n"),
        "{shown}"
    );
    assert!(
        shown.contains("slices 1ms..20ms, park 10ms, watchdog 2s"),
        "{shown}"
    );
}

fn nix_uid() -> u32 {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() }
}

#[test]
fn tenant_operations_answer_or_refuse_with_the_daemons_reason() {
    let dir = tempfile::tempdir().unwrap();
    let socket = daemon(dir.path(), "version = 1\n");
    let out = upsched(&["list", "--socket", &socket, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["tenants"], serde_json::json!([]));
    let out = upsched(&["stats", "--socket", &socket]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "no tenants\n");
    let out = upsched(&["unload", "web", "--socket", &socket]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no tenant \"web\""),
        "{}",
        text(&out.stderr)
    );
    // A replace of a tenant that does not exist: no such tenant (root), no grant (anyone
    // else); an unreadable policy is the client's own failure.
    let out = upsched(&[
        "replace",
        "web",
        "example:wfq",
        "--socket",
        &socket,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["command"], "replace");
    let reason = doc["error"]["message"].as_str().unwrap();
    let expected = if nix_uid() == 0 {
        "no tenant \"web\""
    } else {
        "holds no grant"
    };
    assert!(reason.contains(expected), "{reason}");
    let out = upsched(&["replace", "web", "example:nope", "--socket", &socket]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // A directory that is not a cgroup is refused before the kernel is asked (as root) or at
    // the permission check (anyone else, who holds no grant here).
    let plain = dir.path().display().to_string();
    let out = upsched(&[
        "load",
        "example:fifo",
        "--cgroup",
        &plain,
        "--socket",
        &socket,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let message = doc["error"]["message"].as_str().unwrap();
    // SAFETY: getuid has no preconditions.
    let expected = if unsafe { libc::getuid() } == 0 {
        "not on a cgroup2 file system"
    } else {
        "holds no grant"
    };
    assert!(message.contains(expected), "{message}");
    let out = upsched(&[
        "load",
        "example:nope",
        "--cgroup",
        &plain,
        "--socket",
        &socket,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no example policy `nope`"));
}

#[test]
fn top_prints_one_frame_when_not_on_a_terminal_and_one_sample_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let socket = daemon(dir.path(), "version = 1\n");
    // stdout is a pipe here: one frame, as with --once.
    let out = upsched(&["top", "--interval", "100ms", "--socket", &socket]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let frame = text(&out.stdout);
    let lines: Vec<&str> = frame.lines().collect();
    assert!(
        lines[0].starts_with("upsched top: 0 tenant(s); CPU share over 0."),
        "{frame}"
    );
    assert!(
        lines[1].starts_with("TENANT") && lines[1].ends_with("EJECTIONS"),
        "{frame}"
    );
    assert_eq!(lines[2..], ["no tenants"], "{frame}");
    let out = upsched(&[
        "top",
        "--once",
        "--interval",
        "100ms",
        "--socket",
        &socket,
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let sample: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        sample["interval_ns"].as_u64().unwrap() >= 100_000_000,
        "{sample}"
    );
    assert_eq!(sample["tenants"], serde_json::json!([]));
    assert_eq!(sample["ejected"], serde_json::json!([]));
    let out = upsched(&["top", "--interval", "0s", "--socket", &socket]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("100ms..1h"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn audit_shows_root_the_newest_records() {
    let dir = tempfile::tempdir().unwrap();
    let socket = daemon(dir.path(), "version = 1\n");
    assert!(
        upsched(&["host", "status", "--socket", &socket])
            .status
            .success()
    );
    let out = upsched(&["audit", "--tail", "1", "--socket", &socket, "--json"]);
    if nix_uid() != 0 {
        assert_eq!(out.status.code(), Some(1));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            doc["error"]["message"]
                .as_str()
                .unwrap()
                .contains("only root may read the audit log"),
            "{doc}"
        );
        return;
    }
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["size_limited"], false);
    assert_eq!(doc["records"].as_array().unwrap().len(), 1, "{doc}");
    assert_eq!(doc["records"][0]["operation"], "host_status");
    let out = upsched(&["audit", "--socket", &socket]);
    let shown = text(&out.stdout);
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 3, "{shown}");
    assert!(lines[0].contains(" start ok: no pinned host"), "{shown}");
    assert!(lines[1].ends_with(" host_status ok"), "{shown}");
    assert!(lines[2].ends_with(" audit ok"), "{shown}");
    let out = upsched(&["audit", "--tail", "1001", "--socket", &socket]);
    assert_eq!(out.status.code(), Some(2));
}
