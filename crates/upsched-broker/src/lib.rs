//! upschedd, the broker: a root daemon that gives scheduling capabilities to users who are not
//! root (issue 11). This crate holds the grants (`grants`, `docs/grants.md`), the cgroup scope
//! checks (`scope`), the request protocol (`protocol`, `docs/protocol.md`), the daemon
//! (`daemon`: socket, peers, bounds, audit log), its kernel backend (`tenants`), its records
//! (`state`: the tenants and their policies, from which a restarted daemon adopts the pinned
//! host) and the client the CLI uses (`client`).

pub mod audit;
pub mod client;
pub mod daemon;
pub mod grants;
pub mod peer;
pub mod protocol;
pub mod scope;
pub mod state;
pub mod tenants;
