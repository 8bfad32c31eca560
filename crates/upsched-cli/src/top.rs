//! `upsched top`: the tenants' statistics as the broker daemon reports them (`stats`), refreshed
//! every interval in the terminal; or one frame as plain text (`--once`, or when stdout is not a
//! terminal) and one sample as JSON (`--json`), for scripts.
//!
//! A frame is drawn by one pure function, [`draw`], from a [`View`] that [`view`] computes from
//! two samples (the CPU share is the growth of a tenant's CPU time between them over the time
//! between them): the terminal, the plain text and the tests all draw the same frame.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, Table, Widget};
use serde::Serialize;
use upsched_broker::protocol::{
    EjectedTenant, Operation, Reply, StatsArgs, TenantStats, TenantStatsList,
};

use crate::broker::{DaemonArgs, ask};
use crate::failure::failure;

/// The shortest and longest refresh interval: shorter would keep the daemon busy for a view
/// nobody can read that fast, longer is no longer a live view.
const INTERVAL_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(3600));

/// The width of a plain-text frame: the table's columns and their spacing fit in it.
const PLAIN_WIDTH: u16 = 100;

#[derive(Args)]
pub struct TopCommand {
    /// Time between refreshes; the CPU share is measured over it [100ms..1h].
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    interval: Duration,
    /// Print one frame as plain text and exit (as `top` does when stdout is not a terminal);
    /// it takes two samples, one interval apart.
    #[arg(long)]
    once: bool,
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    let (shortest, longest) = INTERVAL_RANGE;
    if interval < shortest || interval > longest {
        return Err(format!("{text}: the interval lies in 100ms..1h"));
    }
    Ok(interval)
}

/// One answer of the daemon's `stats`, and when it came.
pub struct Sample {
    pub at: Instant,
    pub stats: TenantStatsList,
}

/// One tenant's line of a frame.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TenantRow {
    pub name: String,
    pub owner: u32,
    pub level: u32,
    pub weight: u32,
    /// The tenant's CPU time over the interval in CPUs (1.0: one CPU all the time); none on the
    /// first sample of a tenant, or when its counters started again (a new tenant of the name).
    pub cpu_share: Option<f64>,
    pub nr_tasks: i32,
    pub nr_runnable: i32,
    /// The longest a task of the tenant waited to run, since it was loaded.
    pub wait_max_ns: u64,
    pub parks: u64,
    pub clamps: u64,
    pub ejections: u64,
}

/// What a frame shows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct View {
    /// The time between the two samples the shares were measured over; none with one sample.
    pub interval_ns: Option<u64>,
    pub tenants: Vec<TenantRow>,
    /// The tenants the host's watchdog ejected, most recent last, with why.
    pub ejected: Vec<EjectedTenant>,
}

/// The view of `current`, with CPU shares measured since `previous`.
pub fn view(previous: Option<&Sample>, current: &Sample) -> View {
    let elapsed = previous.map(|p| current.at.saturating_duration_since(p.at));
    let before = |t: &TenantStats| {
        previous?
            .stats
            .tenants
            .iter()
            .find(|p| p.tenant.name == t.tenant.name && p.tenant.slot == t.tenant.slot)
    };
    let tenants = current
        .stats
        .tenants
        .iter()
        .map(|t| {
            let cpu_share = match (before(t), elapsed) {
                (Some(p), Some(elapsed)) if !elapsed.is_zero() => t
                    .counters
                    .cpu_time_ns
                    .checked_sub(p.counters.cpu_time_ns)
                    .map(|grown| grown as f64 / elapsed.as_nanos() as f64),
                _ => None,
            };
            TenantRow {
                name: t.tenant.name.clone(),
                owner: t.tenant.owner,
                level: t.tenant.level,
                weight: t.tenant.weight,
                cpu_share,
                nr_tasks: t.nr_tasks,
                nr_runnable: t.nr_runnable,
                wait_max_ns: t.counters.wait_max_ns,
                parks: t.counters.parks,
                clamps: t.clamps,
                ejections: t.counters.ejections,
            }
        })
        .collect();
    View {
        interval_ns: elapsed.map(|e| u64::try_from(e.as_nanos()).unwrap_or(u64::MAX)),
        tenants,
        ejected: current.stats.ejected.clone(),
    }
}

const COLUMNS: [(&str, u16); 11] = [
    ("TENANT", 16),
    ("UID", 6),
    ("LEVEL", 5),
    ("WEIGHT", 6),
    ("CPU", 7),
    ("TASKS", 5),
    ("RUNNABLE", 8),
    ("MAX WAIT", 11),
    ("PARKS", 7),
    ("CLAMPS", 7),
    ("EJECTIONS", 9),
];

fn ms(ns: u64) -> String {
    format!("{:.3}ms", ns as f64 / 1e6)
}

/// Draws `view` into `area` of `buf`: a title, the tenants' table, and the ejections.
pub fn draw(view: &View, area: Rect, buf: &mut Buffer) {
    let body = view.tenants.len().max(1) as u16 + 1;
    let [title, table, ejected] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(body),
        Constraint::Min(0),
    ])
    .areas(area);
    let over = match view.interval_ns {
        Some(ns) => format!("CPU share over {:.2}s", ns as f64 / 1e9),
        None => "CPU share from the next refresh".into(),
    };
    Paragraph::new(format!(
        "upsched top: {} tenant(s); {over}",
        view.tenants.len()
    ))
    .render(title, buf);
    let right = |text: String| Cell::from(Line::from(text).alignment(Alignment::Right));
    let rows: Vec<Row> = view
        .tenants
        .iter()
        .map(|t| {
            Row::new([
                Cell::from(t.name.clone()),
                right(t.owner.to_string()),
                right(t.level.to_string()),
                right(t.weight.to_string()),
                right(
                    t.cpu_share
                        .map_or("-".into(), |s| format!("{:.1}%", s * 100.0)),
                ),
                right(t.nr_tasks.to_string()),
                right(t.nr_runnable.to_string()),
                right(ms(t.wait_max_ns)),
                right(t.parks.to_string()),
                right(t.clamps.to_string()),
                right(t.ejections.to_string()),
            ])
        })
        .collect();
    let header = Row::new(COLUMNS.map(|(name, _)| {
        if name == "TENANT" {
            Cell::from(name)
        } else {
            right(name.to_string())
        }
    }))
    .style(Style::new().add_modifier(Modifier::BOLD));
    if rows.is_empty() {
        let [head, none] =
            Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(table);
        Table::new(
            Vec::<Row>::new(),
            COLUMNS.map(|(_, w)| Constraint::Length(w)),
        )
        .header(header)
        .render(head, buf);
        Paragraph::new("no tenants").render(none, buf);
    } else {
        Table::new(rows, COLUMNS.map(|(_, w)| Constraint::Length(w)))
            .header(header)
            .render(table, buf);
    }
    let lines: Vec<Line> = view
        .ejected
        .iter()
        .map(|e| {
            Line::from(format!(
                "ejected {} (uid {}): {} (pid {} waited {})",
                e.tenant.name,
                e.tenant.owner,
                e.reason,
                e.pid,
                ms(e.waited_ns)
            ))
        })
        .collect();
    Paragraph::new(lines).render(ejected, buf);
}

/// `view` as plain text: the frame [`draw`] makes, its lines without trailing blanks.
pub fn plain(view: &View) -> String {
    let height = 2 + view.tenants.len().max(1) as u16 + view.ejected.len() as u16;
    let area = Rect::new(0, 0, PLAIN_WIDTH, height);
    let mut buf = Buffer::empty(area);
    draw(view, area, &mut buf);
    let mut text = String::new();
    for y in 0..height {
        let line: String = (0..PLAIN_WIDTH)
            .map(|x| buf.cell((x, y)).map_or(" ", |c| c.symbol()))
            .collect();
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

fn sample(daemon: &DaemonArgs) -> anyhow::Result<Sample> {
    let asked = Instant::now();
    let Reply::Stats(stats) = ask(daemon, Operation::Stats(StatsArgs::default()))? else {
        return Err(failure(1, "upschedd answered stats with another reply"));
    };
    // The daemon read the counters somewhere between the question and the answer: the middle
    // is the best guess of when, so that a slow connection skews the shares least.
    Ok(Sample {
        at: asked + asked.elapsed() / 2,
        stats,
    })
}

pub fn run(command: &TopCommand) -> anyhow::Result<ExitCode> {
    if command.once || command.daemon.json || !std::io::stdout().is_terminal() {
        let first = sample(&command.daemon)?;
        std::thread::sleep(command.interval);
        let view = view(Some(&first), &sample(&command.daemon)?);
        if command.daemon.json {
            println!("{}", serde_json::to_string_pretty(&view)?);
        } else {
            print!("{}", plain(&view));
        }
        return Ok(ExitCode::SUCCESS);
    }
    live(command)
}

/// Gives the terminal back (cooked mode, the main screen) however `live` ends; a panic is
/// covered by the hook `ratatui::try_init` installs.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

fn quits(key: &KeyEvent) -> bool {
    key.kind == KeyEventKind::Press
        && match key.code {
            KeyCode::Char('q') | KeyCode::Esc => true,
            KeyCode::Char('c') => key.modifiers.contains(KeyModifiers::CONTROL),
            _ => false,
        }
}

fn live(command: &TopCommand) -> anyhow::Result<ExitCode> {
    // Asked before the terminal is taken, so that no daemon is said on a usable screen.
    let mut current = sample(&command.daemon)?;
    let mut previous = None;
    let _restore = Restore;
    let mut terminal = ratatui::try_init()?;
    loop {
        let shown = view(previous.as_ref(), &current);
        let redraw = |terminal: &mut ratatui::DefaultTerminal| {
            terminal
                .draw(|frame| {
                    let [main, keys] =
                        Layout::vertical([Constraint::Min(0), Constraint::Length(1)])
                            .areas(frame.area());
                    draw(&shown, main, frame.buffer_mut());
                    Paragraph::new("q, Esc or Ctrl-C quits").render(keys, frame.buffer_mut());
                })
                .map(drop)
        };
        redraw(&mut terminal)?;
        let next = current.at + command.interval;
        loop {
            let left = next.saturating_duration_since(Instant::now());
            if left.is_zero() || !event::poll(left)? {
                break;
            }
            match event::read()? {
                Event::Key(key) if quits(&key) => return Ok(ExitCode::SUCCESS),
                Event::Resize(..) => {
                    redraw(&mut terminal)?;
                }
                _ => {}
            }
        }
        previous = Some(current);
        current = sample(&command.daemon)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use upsched_broker::protocol::TenantView;

    fn stats(name: &str, slot: u32, cpu_time_ns: u64) -> TenantStats {
        let counters = upsched_abi::stats::ClassCounters {
            cpu_time_ns,
            wait_max_ns: 1_234_000,
            parks: 7,
            ejections: 4,
            ..Default::default()
        };
        TenantStats {
            tenant: TenantView {
                name: name.into(),
                owner: 1000,
                grant: "alice".into(),
                policy: "fifo".into(),
                policy_hash: "a".repeat(64),
                cgroup: format!("/sys/fs/cgroup/tenants/alice/{name}"),
                cgroup_id: 42,
                level: 1,
                weight: 100,
                slot,
            },
            nr_tasks: 2,
            nr_runnable: 1,
            clamps: 3,
            default_calls: 0,
            counters,
        }
    }

    fn lines(terminal: &Terminal<TestBackend>) -> Vec<String> {
        let buffer = terminal.backend().buffer();
        (0..buffer.area.height)
            .map(|y| {
                let line: String = (0..buffer.area.width)
                    .map(|x| buffer.cell((x, y)).map_or(" ", |c| c.symbol()))
                    .collect();
                line.trim_end().to_string()
            })
            .collect()
    }

    #[test]
    fn a_frame_shows_each_tenant_with_its_cpu_share_between_two_samples() {
        let at = Instant::now();
        let first = Sample {
            at,
            stats: TenantStatsList {
                tenants: vec![stats("web", 0, 1_000_000_000), stats("batch", 1, 0)],
                ejected: Vec::new(),
            },
        };
        let second = Sample {
            at: at + Duration::from_secs(2),
            stats: TenantStatsList {
                // web ran 1.5 s of the 2 s; batch is new on its slot (another tenant before).
                tenants: vec![stats("web", 0, 2_500_000_000), stats("batch", 2, 100)],
                ejected: vec![EjectedTenant {
                    tenant: stats("slow", 3, 0).tenant,
                    reason: "task waited beyond the watchdog bound".into(),
                    pid: 77,
                    waited_ns: 3_500_000_000,
                }],
            },
        };
        let shown = view(Some(&first), &second);
        assert_eq!(shown.interval_ns, Some(2_000_000_000));
        assert_eq!(shown.tenants[0].cpu_share, Some(0.75));
        assert_eq!(shown.tenants[1].cpu_share, None);

        let mut terminal = Terminal::new(TestBackend::new(100, 7)).unwrap();
        terminal
            .draw(|frame| draw(&shown, frame.area(), frame.buffer_mut()))
            .unwrap();
        let lines = lines(&terminal);
        assert_eq!(lines[0], "upsched top: 2 tenant(s); CPU share over 2.00s");
        assert!(lines[1].starts_with("TENANT"), "{lines:#?}");
        for column in [
            "UID",
            "LEVEL",
            "WEIGHT",
            "CPU",
            "RUNNABLE",
            "MAX WAIT",
            "EJECTIONS",
        ] {
            assert!(lines[1].contains(column), "{lines:#?}");
        }
        let web: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            web,
            [
                "web", "1000", "1", "100", "75.0%", "2", "1", "1.234ms", "7", "3", "4"
            ],
            "{lines:#?}"
        );
        let batch: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(batch[..5], ["batch", "1000", "1", "100", "-"], "{lines:#?}");
        assert_eq!(
            lines[4],
            "ejected slow (uid 1000): task waited beyond the watchdog bound (pid 77 waited 3500.000ms)"
        );
        // The header is bold; the rows are not.
        let buffer = terminal.backend().buffer();
        assert!(buffer[(0, 1)].modifier.contains(Modifier::BOLD));
        assert!(!buffer[(0, 2)].modifier.contains(Modifier::BOLD));
        // The plain text is the same frame.
        let text = plain(&shown);
        let plain_lines: Vec<&str> = text.lines().collect();
        assert_eq!(plain_lines, lines[..5]);
    }

    #[test]
    fn a_first_sample_and_no_tenants_say_so() {
        let only = Sample {
            at: Instant::now(),
            stats: TenantStatsList {
                tenants: Vec::new(),
                ejected: Vec::new(),
            },
        };
        let text = plain(&view(None, &only));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "upsched top: 0 tenant(s); CPU share from the next refresh"
        );
        assert!(lines[1].starts_with("TENANT"), "{text}");
        assert_eq!(lines[2], "no tenants");
    }

    #[test]
    fn q_esc_and_ctrl_c_quit_and_other_keys_do_not() {
        let key = |code, modifiers| KeyEvent::new(code, modifiers);
        assert!(quits(&key(KeyCode::Char('q'), KeyModifiers::NONE)));
        assert!(quits(&key(KeyCode::Esc, KeyModifiers::NONE)));
        assert!(quits(&key(KeyCode::Char('c'), KeyModifiers::CONTROL)));
        assert!(!quits(&key(KeyCode::Char('c'), KeyModifiers::NONE)));
        assert!(!quits(&key(KeyCode::Char('x'), KeyModifiers::NONE)));
    }

    #[test]
    fn the_interval_is_bounded() {
        assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("2h").is_err());
    }
}
