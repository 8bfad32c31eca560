//! `upsched hint`: posts a thread's hint words into its tenant's hint map (`docs/hints.md`),
//! through the mapping the daemon hands out, or with `--slow` through a `set_hints` request.

use std::process::ExitCode;
use std::time::Instant;

use clap::{ArgGroup, Args};
use serde::Serialize;
use upsched_abi::{HINT_FLAGS, HINT_PENDING, HINT_WAIT_EVENT, HINTF_SLEEPY};
use upsched_broker::client::{Client, ClientError};
use upsched_hints::{HintError, HintMap, Words};

use crate::broker::DaemonArgs;
use crate::failure::failure;

#[derive(Args)]
#[command(group(ArgGroup::new("action").required(true).args(["sleepy", "pending", "clear", "show"])))]
pub struct HintCommand {
    /// The tenant (yours, or one whose cgroup holds this process).
    tenant: String,
    /// The thread whose words to post: a thread of yours that is a member of the tenant.
    #[arg(long)]
    tid: i32,
    /// The thread polls until event EVENT arrives (SLEEPY and the awaited event).
    #[arg(long, value_name = "EVENT")]
    sleepy: Option<u64>,
    /// N events or requests wait for the thread (N > 0 releases it from a park).
    #[arg(long, value_name = "N")]
    pending: Option<u64>,
    /// Every word 0.
    #[arg(long)]
    clear: bool,
    /// Only print the thread's words.
    #[arg(long, conflicts_with = "slow")]
    show: bool,
    /// Through a `set_hints` request instead of the mapping; it writes every word, so the
    /// words not named are 0.
    #[arg(long)]
    slow: bool,
    /// After posting through the mapping, run the tenant's notify program for the thread, so
    /// that the host looks at it now (a parked thread is released, a running SLEEPY one is
    /// preempted and may be parked) instead of at its next timer run or tick.
    #[arg(long, conflicts_with_all = ["slow", "show"])]
    notify: bool,
    /// Post the words ROUNDS times (the requests on one connection) and report the time per
    /// post: what the mapping saves over the request.
    #[arg(long, value_name = "ROUNDS", conflicts_with = "show", value_parser = clap::value_parser!(u64).range(1..))]
    bench: Option<u64>,
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

/// What `--json` prints: the thread's words after the command.
#[derive(Serialize)]
struct Posted<'a> {
    tenant: &'a str,
    tid: i32,
    task_slot: u32,
    /// `map` (stores into the mapping), `map+notify` (and the notify program run) or
    /// `request` (`set_hints`).
    path: &'static str,
    words: Words,
    /// Under `--bench`: the posts made and the mean time of one.
    #[serde(skip_serializing_if = "Option::is_none")]
    posts: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ns_per_post: Option<f64>,
}

pub fn run(command: &HintCommand) -> anyhow::Result<ExitCode> {
    let socket = command.daemon.socket();
    let rounds = command.bench.unwrap_or(1);
    let start;
    let mut posted = if command.slow {
        let mut words = Words::default();
        if let Some(event) = command.sleepy {
            words[HINT_FLAGS as usize] = u64::from(HINTF_SLEEPY);
            words[HINT_WAIT_EVENT as usize] = event;
        }
        if let Some(n) = command.pending {
            words[HINT_PENDING as usize] = n;
        }
        let mut client = Client::connect(&socket).map_err(hint_failure_of_client)?;
        start = Instant::now();
        let mut slot = None;
        for _ in 0..rounds {
            let set = upsched_hints::set_hints(&mut client, &command.tenant, command.tid, words);
            slot = Some(set.map_err(hint_failure)?);
        }
        let slot = slot.expect("at least one round");
        Posted {
            tenant: &command.tenant,
            tid: command.tid,
            task_slot: slot.task_slot,
            path: "request",
            words,
            posts: None,
            ns_per_post: None,
        }
    } else {
        let map = HintMap::open_at(&socket, &command.tenant).map_err(hint_failure)?;
        let thread = map.thread(command.tid).map_err(hint_failure)?;
        start = Instant::now();
        for _ in 0..rounds {
            let thread = std::hint::black_box(&thread);
            if command.clear {
                thread.clear();
            }
            if let Some(event) = command.sleepy {
                thread.sleepy(event);
            }
            if let Some(n) = command.pending {
                thread.pending(n);
            }
            if command.notify {
                thread.notify().map_err(hint_failure)?;
            }
        }
        Posted {
            tenant: &command.tenant,
            tid: command.tid,
            task_slot: thread.task_slot(),
            path: if command.notify { "map+notify" } else { "map" },
            words: thread.words(),
            posts: None,
            ns_per_post: None,
        }
    };
    if command.bench.is_some() {
        posted.posts = Some(rounds);
        posted.ns_per_post = Some(start.elapsed().as_nanos() as f64 / rounds as f64);
    }
    if command.daemon.json {
        println!("{}", serde_json::to_string_pretty(&posted)?);
    } else {
        let words: Vec<String> = posted.words.iter().map(u64::to_string).collect();
        println!(
            "tenant {:?}, thread {} (task slot {}), by {}: words {}",
            posted.tenant,
            posted.tid,
            posted.task_slot,
            posted.path,
            words.join(" ")
        );
        if let (Some(posts), Some(ns)) = (posted.posts, posted.ns_per_post) {
            println!("{posts} posts by {}: {ns:.1} ns each", posted.path);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A refusal is status 1; no daemon, or a map that cannot be used, status 2.
pub(crate) fn hint_failure(error: HintError) -> anyhow::Error {
    match error {
        HintError::Daemon(e) => hint_failure_of_client(e),
        e => failure(2, e),
    }
}

fn hint_failure_of_client(error: ClientError) -> anyhow::Error {
    match error {
        ClientError::Refused(_) => failure(1, error),
        _ => failure(2, error),
    }
}
