//! What posting a hint costs, natively, on the build machine (root: it makes a BPF map):
//!
//! - **map**: a store into a mapped map of the hint maps' exact shape (`ThreadHints::pending`),
//!   the fast path;
//! - **request**: a `set_hints` request to a daemon (`upschedd`'s code, in this process, on a
//!   Unix socket of its own, audit log on) and its answer. Without a host scheduler (this
//!   machine's kernel has no sched_ext) the daemon refuses it, after the same decoding,
//!   tenant lookup and audit record as a served one;
//! - **update**: the map update the daemon makes for a served `set_hints` (one `bpf()` call),
//!   to add to the request for the slow path's whole cost.
//!
//! `cargo bench -p upsched-hints` prints one line per path and the ratio; docs/broker.md
//! ("Hint path benchmark") has the figures.

use std::hint::black_box;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use libbpf_rs::{MapCore, MapFlags};
use upsched_broker::client::{Client, ClientError};
use upsched_broker::daemon::{Config, Daemon};
use upsched_broker::protocol::HintMapLayout;
use upsched_hints::HintMap;

const STORES: u32 = 10_000_000;
const REQUESTS: u32 = 20_000;
const UPDATES: u32 = 200_000;

fn main() {
    if !nix::unistd::getuid().is_root() {
        eprintln!("hint_post: skipped, needs root to make a BPF map");
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let layout = HintMapLayout::of("bench");
    let map = upsched_kernel::host::new_hint_map("hints_bench").expect("a hint map");
    let fd = map.as_fd().try_clone_to_owned().expect("a second fd");
    let socket = dir.path().join("upsched.sock");
    let hints = HintMap::from_fd(&fd, layout, &socket).expect("the map maps");
    let thread = hints.entry(0).expect("entry 0");

    let start = Instant::now();
    for n in 0..STORES {
        black_box(&thread).pending(u64::from(n));
    }
    let store = per(start.elapsed(), STORES);
    assert_eq!(
        thread.word(upsched_abi::HINT_PENDING as usize).ok(),
        Some(u64::from(STORES - 1))
    );

    let value = [0u8; 64];
    let start = Instant::now();
    for _ in 0..UPDATES {
        map.update(&0u32.to_ne_bytes(), black_box(&value), MapFlags::ANY)
            .expect("a map update");
    }
    let update = per(start.elapsed(), UPDATES);

    std::fs::write(dir.path().join("grants.toml"), "version = 1\n").expect("a grants file");
    let mut config = Config::new(
        &socket,
        dir.path().join("grants.toml"),
        dir.path().join("state"),
    );
    config.pin_dir = dir.path().join("pins");
    config.audit_to_stderr = false;
    let daemon = Daemon::new(config).expect("the daemon starts");
    let listener = daemon.bind().expect("the daemon listens");
    let serving = daemon.clone();
    std::thread::spawn(move || serving.serve(listener));
    let mut client = Client::connect(&socket).expect("a connection");
    let start = Instant::now();
    for _ in 0..REQUESTS {
        match upsched_hints::set_hints(&mut client, "bench", 1, [0; 8]) {
            Err(upsched_hints::HintError::Daemon(ClientError::Refused(_))) => {}
            other => panic!("expected the refusal of a daemon without a host, got {other:?}"),
        }
    }
    let request = per(start.elapsed(), REQUESTS);
    daemon.stop();

    println!("map store:          {:>10.1} ns ({STORES} stores)", store);
    println!(
        "set_hints request:  {:>10.1} ns ({REQUESTS} round trips, audited)",
        request
    );
    println!(
        "map update syscall: {:>10.1} ns ({UPDATES} updates)",
        update
    );
    println!(
        "slow path (request + update) / map store: {:.0}",
        (request + update) / store
    );
}

fn per(elapsed: Duration, n: u32) -> f64 {
    elapsed.as_nanos() as f64 / f64::from(n)
}
