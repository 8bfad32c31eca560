//! `upschedd`: the broker daemon (docs/protocol.md, docs/grants.md).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use nix::sys::signal::{SigSet, Signal};
use upsched_broker::daemon::{Config, DEFAULT_PIN_DIR, DEFAULT_SOCKET, DEFAULT_STATE_DIR, Daemon};
use upsched_broker::grants::{DEFAULT_GRANTS_PATH, Grants};
use upsched_broker::tenants::unload_all;

/// upschedd: loads tenant scheduling policies for users who hold grants.
///
/// It identifies its clients, answers `host status` and what each caller is granted, and loads,
/// unloads, lists and reports tenants within each caller's grants (docs/broker.md). The host
/// scheduler is loaded at the first load and pinned with its tenants, so that they outlive the
/// daemon: a daemon that starts adopts them, and `--unload` ends them. SIGHUP re-reads the
/// grants (a bad file leaves the old grants in force); SIGTERM or SIGINT stop the daemon only.
#[derive(Parser)]
#[command(name = "upschedd", version, about, long_about)]
struct Args {
    /// The socket to listen on.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// The grants file.
    #[arg(long, default_value = DEFAULT_GRANTS_PATH)]
    grants: PathBuf,
    /// The state directory (audit log, tenants.json, the tenants' policies).
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// The bpffs directory where the host scheduler and the tenants' links are pinned.
    #[arg(long, default_value = DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
    /// End the pinned host and its tenants (sched_ext disabled, every task back in the kernel's
    /// fair class), remove the pins and clear the tenants of the state file, then exit. The
    /// daemon must be stopped first.
    #[arg(long, conflicts_with = "check_grants")]
    unload: bool,
    /// How long a client may take to send a whole request, or to take an answer [default: 5s].
    #[arg(long, value_parser = humantime::parse_duration)]
    request_timeout: Option<Duration>,
    /// Connections served at once [default: 64].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4096))]
    max_connections: Option<u32>,
    /// Connections one user may hold at once [default: 16].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4096))]
    max_connections_per_user: Option<u32>,
    /// Check the grants file and exit: 0 if it is good, 1 with the error if not.
    #[arg(long)]
    check_grants: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.check_grants {
        return match Grants::load(&args.grants) {
            Ok(grants) => {
                println!("{}: {} grants", args.grants.display(), grants.grants.len());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("upschedd: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if args.unload {
        // A running daemon would go on with tenants that no longer exist.
        if std::os::unix::net::UnixStream::connect(&args.socket).is_ok() {
            eprintln!(
                "upschedd: a daemon serves {}; stop it first (SIGTERM leaves the tenants running)",
                args.socket.display()
            );
            return ExitCode::FAILURE;
        }
        return match unload_all(&args.state_dir, &args.pin_dir) {
            Ok(done) => {
                println!("upschedd: {done}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("upschedd: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // Before any thread exists, so that every thread inherits the mask and only the signal
    // thread below receives these.
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGHUP, Signal::SIGTERM, Signal::SIGINT] {
        signals.add(signal);
    }
    if let Err(e) = signals.thread_block() {
        eprintln!("upschedd: cannot block signals: {e}");
        return ExitCode::FAILURE;
    }
    let mut config = Config::new(args.socket, args.grants, args.state_dir);
    config.pin_dir = args.pin_dir;
    if let Some(timeout) = args.request_timeout {
        config.request_timeout = timeout;
    }
    if let Some(n) = args.max_connections {
        config.max_connections = n as usize;
    }
    if let Some(n) = args.max_connections_per_user {
        config.max_connections_per_user = n as usize;
    }
    let started =
        Daemon::new(config).and_then(|daemon| daemon.bind().map(|listener| (daemon, listener)));
    let (daemon, listener) = match started {
        Ok(started) => started,
        Err(e) => {
            eprintln!("upschedd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let handler = daemon.clone();
    std::thread::spawn(move || {
        loop {
            match signals.wait() {
                Ok(Signal::SIGHUP) => {
                    if let Err(e) = handler.reload_grants() {
                        eprintln!("upschedd: grants not reloaded: {e}");
                    }
                }
                Ok(_) => {
                    handler.stop();
                    return;
                }
                Err(e) => eprintln!("upschedd: waiting for signals: {e}"),
            }
        }
    });
    eprintln!(
        "upschedd: listening on {} (grants {})",
        daemon.config().socket.display(),
        daemon.config().grants.display()
    );
    daemon.serve(listener);
    let _ = std::fs::remove_file(&daemon.config().socket);
    eprintln!("upschedd: stopped");
    ExitCode::SUCCESS
}
