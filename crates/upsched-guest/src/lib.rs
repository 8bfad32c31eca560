// SPDX-License-Identifier: GPL-2.0-only
//! Guest/host hints (`docs/guest-host.md`): what a virtual machine's guest tells the host about
//! its vCPUs, so that the host's `vm` policy can run vCPUs with guest work first and park or
//! throttle vCPUs whose guest only idles.
//!
//! - [`message`]: the fixed-size, versioned report of one vCPU (`VcpuReport`), its encoder and
//!   its strict decoder.
//! - [`channel`]: the host end of one guest's channel: framing of the byte stream, decoding,
//!   the per-guest token bucket and sequence checks, every rejection counted.
//! - [`words`]: the hint words a report becomes for the vCPU thread (the `vm` policy's words).
//! - [`reporter`]: the guest side's choice of what to send: changes at once, a heartbeat of
//!   every vCPU, all under a rate the host's bucket admits.
//!
//! The guest is untrusted: a report names a vCPU index, never a thread, and the host agent maps
//! indices to the threads of that guest's VMM only.

pub mod channel;
pub mod message;
pub mod reporter;
pub mod words;
