//! The line protocol between guest and host, and how a guest's console log is judged.
//!
//! The guest prints, on the serial console:
//! - `UPSCHED-BOOTED <kernel release>` when /init starts (boot time is measured up to here);
//! - `UPSCHED-TEST <name> PASS|FAIL|SKIP <detail...>` once per check;
//! - `UPSCHED-SCENARIO-EXIT <status>` when the scenario script returns;
//! - `UPSCHED-DONE` last, just before powering off.
//!
//! Kernel messages share the console and may be glued in front of a protocol line, so markers
//! are searched anywhere in a line, not only at its start.

use std::fmt;

pub const BOOTED_MARKER: &str = "UPSCHED-BOOTED";
pub const TEST_MARKER: &str = "UPSCHED-TEST";
pub const SCENARIO_EXIT_MARKER: &str = "UPSCHED-SCENARIO-EXIT";
pub const DONE_MARKER: &str = "UPSCHED-DONE";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    Skip,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "SKIP",
        })
    }
}

/// One check reported by the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    pub name: String,
    pub verdict: Verdict,
    pub detail: String,
}

/// What one console line means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestEvent {
    Booted {
        release: String,
    },
    Test(TestResult),
    ScenarioExit {
        status: i32,
    },
    Done,
    /// A sign that the guest kernel crashed (oops, panic, BUG, int3 trap...).
    KernelCrash {
        line: String,
    },
    /// A protocol marker with a malformed rest, reported rather than dropped.
    Malformed {
        line: String,
    },
    Other,
}

/// Formats a test line as the guest must print it. Names may not contain spaces; they are
/// replaced so the line stays parseable.
pub fn format_test_line(name: &str, verdict: Verdict, detail: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect();
    let detail = detail.replace(['\n', '\r'], " ");
    format!("{TEST_MARKER} {name} {verdict} {detail}")
        .trim_end()
        .to_string()
}

/// Kernel log fragments that only appear when the guest kernel is going down or broken.
const CRASH_SIGNS: &[&str] = &[
    "Kernel panic",
    "Oops:",
    "BUG: unable to handle",
    "BUG: kernel NULL pointer",
    "general protection fault",
    "int3:",
    "invalid opcode:",
    "kernel BUG at",
    "BUG: soft lockup",
    "Attempted to kill init",
];

pub fn parse_line(raw: &str) -> GuestEvent {
    let line = raw.trim_end_matches(['\r', '\n']);
    if let Some(pos) = line.find(TEST_MARKER) {
        return parse_test(&line[pos + TEST_MARKER.len()..])
            .map(GuestEvent::Test)
            .unwrap_or_else(|| GuestEvent::Malformed {
                line: line.to_string(),
            });
    }
    if let Some(pos) = line.find(SCENARIO_EXIT_MARKER) {
        let rest = line[pos + SCENARIO_EXIT_MARKER.len()..].trim();
        return match rest.parse() {
            Ok(status) => GuestEvent::ScenarioExit { status },
            Err(_) => GuestEvent::Malformed {
                line: line.to_string(),
            },
        };
    }
    if let Some(pos) = line.find(BOOTED_MARKER) {
        return GuestEvent::Booted {
            release: line[pos + BOOTED_MARKER.len()..].trim().to_string(),
        };
    }
    if line.contains(DONE_MARKER) {
        return GuestEvent::Done;
    }
    if CRASH_SIGNS.iter().any(|sign| line.contains(sign)) {
        return GuestEvent::KernelCrash {
            line: line.to_string(),
        };
    }
    GuestEvent::Other
}

fn parse_test(rest: &str) -> Option<TestResult> {
    let mut parts = rest.trim_start().splitn(3, ' ');
    let name = parts.next().filter(|n| !n.is_empty())?;
    let verdict = match parts.next()? {
        "PASS" => Verdict::Pass,
        "FAIL" => Verdict::Fail,
        "SKIP" => Verdict::Skip,
        _ => return None,
    };
    Some(TestResult {
        name: name.to_string(),
        verdict,
        detail: parts.next().unwrap_or("").trim().to_string(),
    })
}

/// Everything learnt from one boot's console.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsoleSummary {
    pub booted_release: Option<String>,
    pub results: Vec<TestResult>,
    pub scenario_exit: Option<i32>,
    pub done: bool,
    pub first_crash_line: Option<String>,
    pub malformed: Vec<String>,
}

impl ConsoleSummary {
    pub fn observe(&mut self, event: &GuestEvent) {
        match event {
            GuestEvent::Booted { release } => self.booted_release = Some(release.clone()),
            GuestEvent::Test(result) => self.results.push(result.clone()),
            GuestEvent::ScenarioExit { status } => self.scenario_exit = Some(*status),
            GuestEvent::Done => self.done = true,
            GuestEvent::KernelCrash { line } => {
                self.first_crash_line.get_or_insert_with(|| line.clone());
            }
            GuestEvent::Malformed { line } => self.malformed.push(line.clone()),
            GuestEvent::Other => {}
        }
    }

    pub fn from_log(log: &str) -> Self {
        let mut summary = Self::default();
        for line in log.lines() {
            summary.observe(&parse_line(line));
        }
        summary
    }
}

/// How one boot ended, judged from its console and from how QEMU stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootOutcome {
    /// Every check passed and the scenario finished cleanly.
    AllPassed,
    /// The guest ran to the end, but a check failed, the script failed, or nothing was checked.
    ScenarioFailed { reasons: Vec<String> },
    /// The guest kernel crashed, or the VM stopped before the scenario said it was done. Under
    /// software emulation this happens now and then for reasons outside the code under test.
    GuestCrashed { reason: String },
    /// The wall-clock limit ran out and QEMU was killed.
    TimedOut { after_secs: u64 },
}

impl BootOutcome {
    pub fn is_pass(&self) -> bool {
        matches!(self, BootOutcome::AllPassed)
    }
}

/// Judges a finished boot. A crash sign wins over everything (a scenario that "passed" on an
/// oopsing kernel proves nothing); then the timeout; then a missing `UPSCHED-DONE`.
pub fn judge(summary: &ConsoleSummary, timed_out_after: Option<u64>) -> BootOutcome {
    if let Some(line) = &summary.first_crash_line {
        return BootOutcome::GuestCrashed {
            reason: format!("guest kernel crashed: {}", line.trim()),
        };
    }
    if let Some(after_secs) = timed_out_after {
        return BootOutcome::TimedOut { after_secs };
    }
    if !summary.done {
        let reason = if summary.booted_release.is_none() {
            "the VM stopped before /init started (no UPSCHED-BOOTED line)"
        } else {
            "the VM stopped before the scenario finished (no UPSCHED-DONE line)"
        };
        return BootOutcome::GuestCrashed {
            reason: reason.to_string(),
        };
    }
    let mut reasons: Vec<String> = summary
        .results
        .iter()
        .filter(|r| r.verdict == Verdict::Fail)
        .map(|r| format!("{} failed: {}", r.name, r.detail))
        .collect();
    reasons.extend(
        summary
            .malformed
            .iter()
            .map(|line| format!("malformed protocol line: {line}")),
    );
    match summary.scenario_exit {
        Some(0) => {}
        Some(status) => reasons.push(format!("the scenario script exited with status {status}")),
        None => reasons.push("the scenario script's exit status was not reported".to_string()),
    }
    if summary.results.is_empty() {
        reasons.push("the scenario reported no UPSCHED-TEST result".to_string());
    }
    if reasons.is_empty() {
        BootOutcome::AllPassed
    } else {
        BootOutcome::ScenarioFailed { reasons }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_lines_parse_with_detail_and_noise() {
        assert_eq!(
            parse_line("UPSCHED-TEST sched_ext_state PASS state is disabled\r\n"),
            GuestEvent::Test(TestResult {
                name: "sched_ext_state".into(),
                verdict: Verdict::Pass,
                detail: "state is disabled".into(),
            })
        );
        // A kernel message glued before the marker.
        assert_eq!(
            parse_line("[    3.1] random: crng initUPSCHED-TEST bpffs FAIL"),
            GuestEvent::Test(TestResult {
                name: "bpffs".into(),
                verdict: Verdict::Fail,
                detail: String::new(),
            })
        );
        assert!(matches!(
            parse_line("UPSCHED-TEST only-a-name"),
            GuestEvent::Malformed { .. }
        ));
        assert!(matches!(
            parse_line("UPSCHED-TEST x MAYBE y"),
            GuestEvent::Malformed { .. }
        ));
    }

    #[test]
    fn markers_and_formatting() {
        assert_eq!(
            parse_line("UPSCHED-BOOTED 7.2.13+deb14-cloud-amd64"),
            GuestEvent::Booted {
                release: "7.2.13+deb14-cloud-amd64".into()
            }
        );
        assert_eq!(
            parse_line("UPSCHED-SCENARIO-EXIT 3"),
            GuestEvent::ScenarioExit { status: 3 }
        );
        assert_eq!(parse_line("UPSCHED-DONE"), GuestEvent::Done);
        assert_eq!(parse_line("just output"), GuestEvent::Other);
        let line = format_test_line("two words", Verdict::Skip, "multi\nline");
        assert_eq!(line, "UPSCHED-TEST two_words SKIP multi line");
        assert!(matches!(parse_line(&line), GuestEvent::Test(_)));
    }

    const PASSING_LOG: &str = "\
[    0.000000] Linux version 7.2.13+deb14-cloud-amd64
UPSCHED-BOOTED 7.2.13+deb14-cloud-amd64
UPSCHED-TEST kernel_release PASS 7.2.13+deb14-cloud-amd64
UPSCHED-TEST sched_ext_state PASS disabled
UPSCHED-SCENARIO-EXIT 0
UPSCHED-DONE
[    4.2] reboot: Power down
";

    #[test]
    fn passing_log_is_all_passed() {
        let summary = ConsoleSummary::from_log(PASSING_LOG);
        assert_eq!(summary.results.len(), 2);
        assert_eq!(judge(&summary, None), BootOutcome::AllPassed);
    }

    #[test]
    fn int3_oops_is_a_crash_even_after_done() {
        let log = format!(
            "{PASSING_LOG}[   12.5] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI\n\
             [   12.5] RIP: 0010:update_rq_clock+0x1/0x30\n"
        );
        let summary = ConsoleSummary::from_log(&log);
        match judge(&summary, None) {
            BootOutcome::GuestCrashed { reason } => assert!(reason.contains("int3"), "{reason}"),
            other => panic!("expected a crash, got {other:?}"),
        }
    }

    #[test]
    fn panic_and_missing_done_are_crashes() {
        let panic_log = "UPSCHED-BOOTED x\n[ 9.1] Kernel panic - not syncing: Fatal exception\n";
        assert!(matches!(
            judge(&ConsoleSummary::from_log(panic_log), None),
            BootOutcome::GuestCrashed { .. }
        ));
        let cut_log = "UPSCHED-BOOTED x\nUPSCHED-TEST a PASS\n";
        match judge(&ConsoleSummary::from_log(cut_log), None) {
            BootOutcome::GuestCrashed { reason } => assert!(reason.contains("UPSCHED-DONE")),
            other => panic!("expected a crash, got {other:?}"),
        }
        match judge(&ConsoleSummary::from_log(""), None) {
            BootOutcome::GuestCrashed { reason } => assert!(reason.contains("/init")),
            other => panic!("expected a crash, got {other:?}"),
        }
    }

    #[test]
    fn timeout_and_failures() {
        let hung = "UPSCHED-BOOTED x\nUPSCHED-TEST a PASS\n";
        assert_eq!(
            judge(&ConsoleSummary::from_log(hung), Some(90)),
            BootOutcome::TimedOut { after_secs: 90 }
        );
        let failed = "UPSCHED-BOOTED x\nUPSCHED-TEST a PASS\nUPSCHED-TEST b FAIL got 3\n\
                      UPSCHED-SCENARIO-EXIT 1\nUPSCHED-DONE\n";
        match judge(&ConsoleSummary::from_log(failed), None) {
            BootOutcome::ScenarioFailed { reasons } => {
                assert_eq!(
                    reasons,
                    [
                        "b failed: got 3",
                        "the scenario script exited with status 1"
                    ]
                );
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        let empty = "UPSCHED-BOOTED x\nUPSCHED-SCENARIO-EXIT 0\nUPSCHED-DONE\n";
        assert!(matches!(
            judge(&ConsoleSummary::from_log(empty), None),
            BootOutcome::ScenarioFailed { .. }
        ));
    }

    #[test]
    fn scheduler_warnings_are_not_crashes() {
        // sched_ext disabling a scheduler is an error exit of the BPF scheduler, not a crash.
        let line = "sched_ext: BPF scheduler \"upsched\" disabled (runnable task stall)";
        assert_eq!(parse_line(line), GuestEvent::Other);
        assert_eq!(
            parse_line("WARNING: CPU: 1 PID: 1 at kernel/x.c:1"),
            GuestEvent::Other
        );
    }
}
