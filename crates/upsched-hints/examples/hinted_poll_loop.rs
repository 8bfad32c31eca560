// SPDX-License-Identifier: GPL-2.0-only
//! Wrapping an existing polling loop with the hint path (`docs/faas.md`, "Runtime
//! integration").
//!
//! The "existing loop" is a runtime's busy poll of a non-blocking UDP socket on the loopback
//! (the shape of an event loop that spins on its sockets before it sleeps). `HintedPoll` wraps
//! the loop's poll function and posts the thread's words: SLEEPY with the socket's event id
//! when a poll finds nothing (once per empty streak, a store into the mapped hint map), every
//! word cleared when a poll finds work. The sender, the event source, raises the poller's
//! PENDING word after each datagram, as a platform that routes a request would.
//!
//! ```sh
//! # as the owner of tenant "fn" (or from inside its cgroup), with upschedd running:
//! cargo run -p upsched-hints --example hinted_poll_loop -- fn 20
//! ```
//!
//! Exit status: 0 every datagram was received, 1 some were not, 2 the hint path is not there
//! (no daemon, no such tenant, a thread outside it).

use std::net::UdpSocket;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use upsched_hints::{HintMap, ThreadHints};

/// A poll function of an existing runtime, with the hints posted around it.
struct HintedPoll<'m, F> {
    poll: F,
    hints: ThreadHints<'m>,
    /// The event the thread waits for while its polls find nothing.
    event: u64,
    sleepy: bool,
}

impl<'m, T, F: FnMut() -> Option<T>> HintedPoll<'m, F> {
    fn new(hints: ThreadHints<'m>, event: u64, poll: F) -> Self {
        HintedPoll {
            poll,
            hints,
            event,
            sleepy: false,
        }
    }

    /// One poll of the wrapped loop: SLEEPY posted when it starts finding nothing, cleared
    /// when it finds work (a policy may park the thread in between; PENDING releases it).
    fn poll(&mut self) -> Option<T> {
        let work = (self.poll)();
        match (&work, self.sleepy) {
            (Some(_), true) => {
                self.hints.clear();
                self.sleepy = false;
            }
            (None, false) => {
                self.hints.sleepy(self.event);
                self.sleepy = true;
            }
            _ => {}
        }
        work
    }
}

/// The event id this example gives its socket (any non-zero value the policy and the event
/// source agree on).
const SOCKET_EVENT: u64 = 1;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(tenant), count) = (args.next(), args.next()) else {
        eprintln!("usage: hinted_poll_loop TENANT [DATAGRAMS]");
        return ExitCode::from(2);
    };
    let count: u32 = match count.as_deref().map(str::parse).unwrap_or(Ok(10)) {
        Ok(n) if (1..=10_000).contains(&n) => n,
        _ => {
            eprintln!("DATAGRAMS: expected 1-10000");
            return ExitCode::from(2);
        }
    };
    let hint_path = || -> Result<(HintMap, u32), upsched_hints::HintError> {
        let map = HintMap::open(&tenant)?;
        let slot = map.thread(nix::unistd::gettid().as_raw())?.task_slot();
        Ok((map, slot))
    };
    let (map, slot) = match hint_path() {
        Ok(found) => found,
        Err(e) => {
            eprintln!("hinted_poll_loop: {e}");
            return ExitCode::from(2);
        }
    };
    let socket = UdpSocket::bind("127.0.0.1:0").and_then(|s| {
        s.set_nonblocking(true)?;
        Ok(s)
    });
    let (socket, address) = match socket.and_then(|s| Ok((s.local_addr()?, s))) {
        Ok((address, socket)) => (socket, address),
        Err(e) => {
            eprintln!("hinted_poll_loop: a loopback socket: {e}");
            return ExitCode::from(1);
        }
    };
    let received = std::thread::scope(|scope| {
        let map = &map;
        scope.spawn(move || {
            let Ok(sender) = UdpSocket::bind("127.0.0.1:0") else {
                return;
            };
            for i in 0..count {
                std::thread::sleep(Duration::from_millis(20));
                if sender.send_to(&i.to_ne_bytes(), address).is_ok()
                    && let Ok(poller) = map.entry(slot)
                {
                    // The event source's part: the poller has a request waiting.
                    poller.pending(1);
                }
            }
        });
        let Ok(hints) = map.entry(slot) else {
            return 0;
        };
        let mut buf = [0u8; 64];
        let mut loop_ = HintedPoll::new(hints, SOCKET_EVENT, || socket.recv(&mut buf).ok());
        let deadline = Instant::now() + Duration::from_millis(40 * u64::from(count) + 2000);
        let mut received = 0;
        while received < count && Instant::now() < deadline {
            if loop_.poll().is_some() {
                received += 1;
            }
            std::hint::spin_loop();
        }
        loop_.hints.clear();
        received
    });
    println!("received {received} of {count} datagrams");
    if received == count {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
