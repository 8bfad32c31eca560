//! upschedd, the broker: a root daemon that gives scheduling capabilities to users who are not
//! root (issue 11). This crate holds the grants (`grants`, `docs/grants.md`), the cgroup scope
//! checks (`scope`), the request protocol (`protocol`, `docs/protocol.md`) and the daemon.

pub mod grants;
pub mod protocol;
pub mod scope;
