//! The text of `perf script` (after `perf sched record`) and of `trace-cmd report`, as events.
//!
//! Both print one event per line: the task in whose context it happened, the CPU, a timestamp in
//! seconds, the event's name and its arguments. They differ in the line's head (`comm pid
//! [cpu] ts: sched:sched_switch:` against `comm-pid [cpu] ts: sched_switch:`) and, where
//! trace-cmd's plugins reformat them, in the arguments of `sched_switch` and `sched_wakeup`
//! (`prev:12 [120] S ==> next:13 [120]` against `prev_comm=prev prev_pid=12 ...`). Both argument
//! styles are read in both formats.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

/// The largest CPU number a trace may name: a bound on what a line can make us allocate.
pub const MAX_CPUS: u32 = 4096;

/// Which tool printed the trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// `perf script` of a `perf sched record` (or `perf record -e 'sched:*'`).
    PerfScript,
    /// `trace-cmd report` of a `trace-cmd record -e sched`.
    TraceCmd,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::PerfScript => "perf script",
            Format::TraceCmd => "trace-cmd report",
        }
    }
}

/// What a task switched out in: the first letter of `prev_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskState {
    /// `R` or `R+`: preempted, still runnable.
    Runnable,
    /// `X` or `Z`: the task is gone.
    Dead,
    /// Anything else (`S`, `D`, `I`, `T`, ...): it waits for a wake-up.
    Sleeping,
}

impl TaskState {
    fn parse(state: &str) -> Option<TaskState> {
        match state.chars().next()? {
            'R' => Some(TaskState::Runnable),
            'X' | 'Z' => Some(TaskState::Dead),
            c if c.is_ascii_alphabetic() => Some(TaskState::Sleeping),
            _ => None,
        }
    }
}

/// One scheduler event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Its line in the text, from 1.
    pub line: usize,
    pub ts_ns: u64,
    pub cpu: u32,
    /// The task in whose context it happened (the waker, for a wake-up).
    pub pid: u32,
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    Switch {
        prev_comm: String,
        prev_pid: u32,
        prev_state: TaskState,
        next_comm: String,
        next_pid: u32,
    },
    /// `sched_waking` (`new: false`), `sched_wakeup` or `sched_wakeup_new` (`new: true`).
    Wakeup {
        comm: String,
        pid: u32,
        new: bool,
    },
    Migrate {
        pid: u32,
        orig_cpu: u32,
        dest_cpu: u32,
    },
    Fork {
        parent_pid: u32,
        child_comm: String,
        child_pid: u32,
    },
    Exec {
        pid: u32,
        filename: String,
    },
    Exit {
        pid: u32,
    },
}

/// A trace, as events in the order of its lines.
#[derive(Clone, Debug)]
pub struct Parsed {
    pub format: Format,
    /// The CPU count its header states (`cpus=N` of trace-cmd, `# nrcpus avail` of perf).
    pub cpus: Option<u32>,
    pub events: Vec<Event>,
    /// Events of other kinds than the scheduler's, by name: read past, not used.
    pub other_events: BTreeMap<String, u64>,
    /// The last line was cut short (a trace copied while being written): left out.
    pub truncated_last_line: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error(
        "not a scheduler trace: line {line} ({excerpt:?}) is neither `perf script` nor `trace-cmd report` output (record with `perf sched record -- CMD` then `perf script`, or `trace-cmd record -e sched -- CMD` then `trace-cmd report`)"
    )]
    UnknownFormat { line: usize, excerpt: String },
    #[error("the trace holds no scheduler events (sched_switch, sched_wakeup, ...)")]
    NoEvents,
    #[error("line {line}: {reason} ({excerpt:?})")]
    Malformed {
        line: usize,
        reason: String,
        excerpt: String,
    },
}

/// The head of a `perf script` line: `comm pid[/tid] [cpu] secs.frac: [period] sys:event: args`.
static PERF_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^\s*(?P<comm>.*?)\s+(?P<pid>-?\d+)(?:/(?P<tid>\d+))?\s+\[(?P<cpu>\d+)\]\s+(?P<ts>\d+\.\d+):\s+(?:\d+\s+)?(?P<sys>\w+):(?P<event>\w+):\s*(?P<args>.*)$",
    )
    .expect("valid regex")
});

/// The head of a `trace-cmd report` line: `comm-pid [cpu] [flags] secs.frac: event: args`.
static TRACE_CMD_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^\s*(?P<comm>.*)-(?P<pid>\d+)\s+(?:\(\s*-?\d+\)\s+)?\[(?P<cpu>\d+)\]\s+(?:[\w.]{4,6}\s+)?(?P<ts>\d+\.\d+):\s+(?P<event>\w+):\s*(?P<args>.*)$",
    )
    .expect("valid regex")
});

/// Where each `key=` of a raw (`key=value key=value`) argument list starts.
static RAW_KEY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:^|\s)(\w+)=").expect("valid regex"));

/// trace-cmd's `sched_switch` plugin: `prev:12 [120] S ==> next:13 [120]`.
static PLUGIN_SWITCH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?P<pc>.*):(?P<pp>\d+) \[-?\d+\] (?P<st>\S+) ==> (?P<nc>.*):(?P<np>\d+) \[-?\d+\]\s*$",
    )
    .expect("valid regex")
});

/// trace-cmd's `sched_wakeup` plugin: `comm:12 [120] [success=1] CPU:001`.
static PLUGIN_WAKEUP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?P<c>.*):(?P<p>\d+) \[-?\d+\](?: success=\d+)?(?: CPU:\d+)?\s*$")
        .expect("valid regex")
});

/// Lines a trace-cmd report prints besides events.
static TRACE_CMD_INFO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:cpus=\d+|version = .*|CPU ?\d+ is empty|CPU\d+ data recorded at .*)$")
        .expect("valid regex")
});

/// The scheduler's events this reads; any other is counted and read past.
pub const SCHED_EVENTS: [&str; 8] = [
    "sched_switch",
    "sched_waking",
    "sched_wakeup",
    "sched_wakeup_new",
    "sched_migrate_task",
    "sched_process_fork",
    "sched_process_exec",
    "sched_process_exit",
];

/// Reads a whole trace. An unknown format, or a malformed scheduler event anywhere but on the
/// last line, is an error naming the line.
pub fn parse(text: &str) -> Result<Parsed, ParseError> {
    let lines: Vec<&str> = text.lines().collect();
    let last_line = lines.iter().rposition(|l| !l.trim().is_empty());
    let mut format = None;
    let mut parsed = Parsed {
        format: Format::PerfScript,
        cpus: None,
        events: Vec::new(),
        other_events: BTreeMap::new(),
        truncated_last_line: false,
    };
    for (index, raw) in lines.iter().enumerate() {
        let line = raw.trim_end();
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        if let Some(cpus) = header_cpus(line) {
            parsed.cpus = Some(cpus);
            continue;
        }
        if line.trim_start().starts_with('#') || TRACE_CMD_INFO.is_match(line.trim()) {
            continue;
        }
        let is_last = Some(index) == last_line;
        let known = match format {
            Some(known) => known,
            None => match detect(line) {
                Some(found) => {
                    format = Some(found);
                    parsed.format = found;
                    found
                }
                None => {
                    return Err(ParseError::UnknownFormat {
                        line: number,
                        excerpt: excerpt(line),
                    });
                }
            },
        };
        match parse_line(known, line, number) {
            Ok(Line::Event(event)) => parsed.events.push(event),
            Ok(Line::Other(name)) => *parsed.other_events.entry(name).or_default() += 1,
            Err(_) if is_last => parsed.truncated_last_line = true,
            Err(reason) => {
                return Err(ParseError::Malformed {
                    line: number,
                    reason,
                    excerpt: excerpt(line),
                });
            }
        }
    }
    if parsed.events.is_empty() {
        return Err(ParseError::NoEvents);
    }
    Ok(parsed)
}

/// The format of a line that is an event of either tool, or None.
fn detect(line: &str) -> Option<Format> {
    if PERF_LINE.is_match(line) {
        Some(Format::PerfScript)
    } else if TRACE_CMD_LINE.is_match(line) {
        Some(Format::TraceCmd)
    } else {
        None
    }
}

/// The CPU count of a header line: trace-cmd's `cpus=2`, perf's `# nrcpus avail : 2`.
fn header_cpus(line: &str) -> Option<u32> {
    let line = line.trim();
    let count = if let Some(rest) = line.strip_prefix("cpus=") {
        rest
    } else {
        line.strip_prefix('#')?
            .trim()
            .strip_prefix("nrcpus avail")?
            .trim()
            .strip_prefix(':')?
    };
    count
        .trim()
        .parse()
        .ok()
        .filter(|&n| n > 0 && n <= MAX_CPUS)
}

enum Line {
    Event(Event),
    Other(String),
}

fn parse_line(format: Format, line: &str, number: usize) -> Result<Line, String> {
    let head = match format {
        Format::PerfScript => PERF_LINE.captures(line),
        Format::TraceCmd => TRACE_CMD_LINE.captures(line),
    }
    .ok_or_else(|| format!("not a line of {} output", format.name()))?;
    let name = &head["event"];
    if format == Format::PerfScript && &head["sys"] != "sched" || !SCHED_EVENTS.contains(&name) {
        let full = match format {
            Format::PerfScript => format!("{}:{name}", &head["sys"]),
            Format::TraceCmd => name.to_string(),
        };
        return Ok(Line::Other(full));
    }
    // perf prints the thread id after a slash when asked for both; the thread is the task.
    let pid = head
        .name("tid")
        .map_or(&head["pid"], |m| m.as_str())
        .parse::<i64>()
        .map_err(|_| "a pid out of range".to_string())?
        .max(0) as u32;
    let cpu: u32 = head["cpu"]
        .parse()
        .ok()
        .filter(|&c| c < MAX_CPUS)
        .ok_or_else(|| format!("a CPU number over {}", MAX_CPUS - 1))?;
    let ts_ns = timestamp_ns(&head["ts"])?;
    let kind = event_kind(name, &head["args"])?;
    Ok(Line::Event(Event {
        line: number,
        ts_ns,
        cpu,
        pid,
        kind,
    }))
}

/// `secs.frac` in nanoseconds, exactly (no floating point on the way).
fn timestamp_ns(text: &str) -> Result<u64, String> {
    let (secs, frac) = text.split_once('.').ok_or("a timestamp without a point")?;
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let secs: u64 = secs.parse().map_err(|_| "a timestamp out of range")?;
    let nanos: u64 = digits.parse().map_err(|_| "a timestamp out of range")?;
    secs.checked_mul(1_000_000_000)
        .and_then(|s| s.checked_add(nanos))
        .ok_or_else(|| "a timestamp out of range".to_string())
}

fn event_kind(name: &str, args: &str) -> Result<EventKind, String> {
    let raw = RawArgs::new(args);
    Ok(match name {
        "sched_switch" => match PLUGIN_SWITCH.captures(args) {
            Some(c) if raw.is_empty() => EventKind::Switch {
                prev_comm: c["pc"].to_string(),
                prev_pid: number(&c["pp"], "prev pid")?,
                prev_state: state(&c["st"])?,
                next_comm: c["nc"].to_string(),
                next_pid: number(&c["np"], "next pid")?,
            },
            _ => EventKind::Switch {
                prev_comm: raw.get("prev_comm")?.to_string(),
                prev_pid: raw.number("prev_pid")?,
                prev_state: state(raw.get("prev_state")?.trim_end_matches("==>").trim())?,
                next_comm: raw.get("next_comm")?.to_string(),
                next_pid: raw.number("next_pid")?,
            },
        },
        "sched_waking" | "sched_wakeup" | "sched_wakeup_new" => {
            let new = name == "sched_wakeup_new";
            match PLUGIN_WAKEUP.captures(args) {
                Some(c) if raw.get("pid").is_err() => EventKind::Wakeup {
                    comm: c["c"].to_string(),
                    pid: number(&c["p"], "pid")?,
                    new,
                },
                _ => EventKind::Wakeup {
                    comm: raw.get("comm")?.to_string(),
                    pid: raw.number("pid")?,
                    new,
                },
            }
        }
        "sched_migrate_task" => EventKind::Migrate {
            pid: raw.number("pid")?,
            orig_cpu: raw.number("orig_cpu")?,
            dest_cpu: raw.number("dest_cpu")?,
        },
        "sched_process_fork" => EventKind::Fork {
            parent_pid: raw.number("pid")?,
            child_comm: raw.get("child_comm")?.to_string(),
            child_pid: raw.number("child_pid")?,
        },
        "sched_process_exec" => EventKind::Exec {
            pid: raw.number("pid")?,
            filename: raw.get("filename")?.to_string(),
        },
        "sched_process_exit" => EventKind::Exit {
            pid: raw.number("pid")?,
        },
        _ => unreachable!("only SCHED_EVENTS reach here"),
    })
}

fn state(text: &str) -> Result<TaskState, String> {
    TaskState::parse(text).ok_or_else(|| format!("an unknown task state {text:?}"))
}

fn number<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{what} {text:?} is not a number in range"))
}

/// `key=value key=value`, where a value runs to the next key (a comm may hold spaces).
struct RawArgs<'a> {
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> RawArgs<'a> {
    fn new(args: &'a str) -> Self {
        let keys: Vec<_> = RAW_KEY.captures_iter(args).collect();
        let pairs = keys
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let key = c.get(1).expect("group 1");
                let end = keys
                    .get(i + 1)
                    .map_or(args.len(), |next| next.get(0).expect("group 0").start());
                (key.as_str(), args[key.end() + 1..end].trim())
            })
            .collect();
        RawArgs { pairs }
    }

    fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    fn get(&self, key: &str) -> Result<&'a str, String> {
        self.pairs
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("no `{key}=`"))
    }

    fn number<T: std::str::FromStr>(&self, key: &str) -> Result<T, String> {
        number(self.get(key)?, key)
    }
}

/// A line shortened for an error message.
fn excerpt(line: &str) -> String {
    const MAX: usize = 120;
    match line.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}...", &line[..end]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_exact() {
        assert_eq!(timestamp_ns("12.5"), Ok(12_500_000_000));
        assert_eq!(timestamp_ns("0.000001"), Ok(1_000));
        assert_eq!(timestamp_ns("1.1234567891"), Ok(1_123_456_789));
        assert!(timestamp_ns("99999999999999999999.0").is_err());
    }

    #[test]
    fn raw_values_may_hold_spaces() {
        let raw = RawArgs::new(
            "prev_comm=Web Content prev_pid=7 prev_prio=120 prev_state=S ==> next_comm=swapper/1 next_pid=0 next_prio=120",
        );
        assert_eq!(raw.get("prev_comm"), Ok("Web Content"));
        assert_eq!(raw.get("prev_state"), Ok("S ==>"));
        assert_eq!(raw.number::<u32>("next_pid"), Ok(0));
    }

    #[test]
    fn both_heads_are_recognised() {
        let perf = "  Web Content  4321 [001]  100.000100: sched:sched_wakeup: comm=a pid=5 prio=120 target_cpu=000";
        let cmd = "  kworker/0:1-12    [000]   100.000100: sched_wakeup:         a:5 [120] CPU:000";
        assert_eq!(detect(perf), Some(Format::PerfScript));
        assert_eq!(detect(cmd), Some(Format::TraceCmd));
        let Ok(Line::Event(e)) = parse_line(Format::PerfScript, perf, 1) else {
            panic!("perf line not parsed");
        };
        assert_eq!((e.pid, e.cpu, e.ts_ns), (4321, 1, 100_000_100_000));
        let Ok(Line::Event(e)) = parse_line(Format::TraceCmd, cmd, 1) else {
            panic!("trace-cmd line not parsed");
        };
        assert_eq!((e.pid, e.cpu), (12, 0));
        assert_eq!(
            e.kind,
            EventKind::Wakeup {
                comm: "a".into(),
                pid: 5,
                new: false
            }
        );
    }
}
