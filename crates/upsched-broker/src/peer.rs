//! Who is on the other end of a connection: the kernel's `SO_PEERCRED`, never the client's
//! word, with supplementary groups from the system's group database.

use std::os::unix::net::UnixStream;

use nix::sys::socket::{UnixCredentials, getsockopt, sockopt::PeerCredentials};
use nix::unistd::{Gid, Uid};

use crate::grants::Principal;

/// A connected client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub pid: i32,
    pub principal: Principal,
}

impl Peer {
    /// The credentials the kernel recorded when `stream`'s peer connected.
    pub fn of(stream: &UnixStream) -> nix::Result<Self> {
        Ok(Self::from_credentials(&getsockopt(
            stream,
            PeerCredentials,
        )?))
    }

    /// The peer of `creds`, with its supplementary groups from the group database (which may
    /// take a while with a network directory; the daemon asks on the connection's own thread).
    /// A user that the database cannot be asked about gets no supplementary groups (so no
    /// grant through them), not an error.
    pub fn from_credentials(creds: &UnixCredentials) -> Self {
        let uid = Uid::from_raw(creds.uid());
        let gid = Gid::from_raw(creds.gid());
        let principal = Principal::from_database(uid, gid).unwrap_or(Principal {
            uid,
            gid,
            groups: Vec::new(),
        });
        Peer {
            pid: creds.pid(),
            principal,
        }
    }

    pub fn uid(&self) -> u32 {
        self.principal.uid.as_raw()
    }

    pub fn is_root(&self) -> bool {
        self.principal.uid.is_root()
    }
}

/// The real uid of process or thread `pid` (`/proc/PID/status`), if it exists.
pub fn process_uid(pid: i32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
