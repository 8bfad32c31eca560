//! The workload specification (`run SPEC.json`): parsing and validation. Every error names the
//! field it is about, so a scenario author can fix a spec without reading this code.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Upper bound on the tasks of one run: each task is a process holding a few descriptors, and
/// the guest has 2 vCPUs and 2 GB.
pub const MAX_TASKS: u64 = 1024;
/// Largest pingpong message: up to PIPE_BUF a pipe write is atomic, so one read gets it whole.
pub const MAX_MESSAGE_BYTES: u64 = 4096;
pub const MAX_DURATION_MS: u64 = 7 * 24 * 3600 * 1000;
pub const MAX_GRACE_MS: u64 = 3600 * 1000;
/// Bound of `start_delay_ms`, `run_us` and `sleep_us` (one hour in their unit's terms).
pub const MAX_DELAY_MS: u64 = 3600 * 1000;
pub const MAX_CYCLE_US: u64 = 3600 * 1000 * 1000;

/// The whole spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Free text copied into the report.
    #[serde(default)]
    pub name: Option<String>,
    /// Directory under which the groups' `cgroup` paths are created. Must be on cgroup2.
    #[serde(default = "default_cgroup_root")]
    pub cgroup_root: String,
    /// Length of the measured window. Required when no group has fixed work.
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// How long stopped workers get to report before they are killed.
    #[serde(default = "default_grace_ms")]
    pub grace_ms: u64,
    /// Leave the cgroups this run created in place (e.g. for inspection).
    #[serde(default)]
    pub keep_cgroups: bool,
    pub groups: Vec<GroupSpec>,
}

fn default_cgroup_root() -> String {
    "/sys/fs/cgroup".to_string()
}

fn default_grace_ms() -> u64 {
    2000
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Hog,
    Sleeper,
    Pingpong,
    Exec,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Hog => "hog",
            Kind::Sleeper => "sleeper",
            Kind::Pingpong => "pingpong",
            Kind::Exec => "exec",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchedPolicy {
    Other,
    Batch,
    Idle,
    /// SCHED_EXT (7): needed when a sched_ext scheduler runs in partial-switch mode.
    Ext,
}

impl SchedPolicy {
    pub fn to_raw(self) -> libc::c_int {
        match self {
            SchedPolicy::Other => libc::SCHED_OTHER,
            SchedPolicy::Batch => libc::SCHED_BATCH,
            SchedPolicy::Idle => libc::SCHED_IDLE,
            SchedPolicy::Ext => 7,
        }
    }
}

/// One group of identical tasks. One flat struct for all kinds (rather than a tagged enum) so
/// that a field given to the wrong kind gets an error naming both, not serde's generic one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    pub name: String,
    pub kind: Kind,
    /// Path relative to `cgroup_root`; `null` or absent = stay in the current cgroup.
    #[serde(default)]
    pub cgroup: Option<String>,
    /// Number of tasks (hog, sleeper, exec). Default 1.
    #[serde(default)]
    pub tasks: Option<u64>,
    /// Number of task pairs (pingpong). Default 1.
    #[serde(default)]
    pub pairs: Option<u64>,
    #[serde(default)]
    pub nice: Option<i32>,
    /// CPU affinity of every task of the group.
    #[serde(default)]
    pub cpus: Option<Vec<u32>>,
    #[serde(default)]
    pub sched_policy: Option<SchedPolicy>,
    /// Do not wait for this group's fixed work: the run ends without it.
    #[serde(default)]
    pub background: bool,
    /// Tasks start this long after the run starts.
    #[serde(default)]
    pub start_delay_ms: u64,
    /// hog: fixed work per task, in iterations (see `calibrate`).
    #[serde(default)]
    pub iterations: Option<u64>,
    /// sleeper: CPU time burnt per cycle, µs.
    #[serde(default)]
    pub run_us: Option<u64>,
    /// sleeper: requested sleep per cycle, µs.
    #[serde(default)]
    pub sleep_us: Option<u64>,
    /// sleeper: fixed work per task, in cycles.
    #[serde(default)]
    pub cycles: Option<u64>,
    /// sleeper: timer slack, ns (default 1 so that slack does not pass for scheduling latency).
    #[serde(default)]
    pub timer_slack_ns: Option<u64>,
    /// pingpong: fixed work per pair, in round trips.
    #[serde(default)]
    pub round_trips: Option<u64>,
    /// pingpong: bytes per message (default 1, at most 4096).
    #[serde(default)]
    pub message_bytes: Option<u64>,
    /// exec: the command and its arguments (looked up in PATH).
    #[serde(default)]
    pub argv: Option<Vec<String>>,
    /// exec: put the command's stdout into the report (else it goes to our stderr).
    #[serde(default)]
    pub capture_output: bool,
}

/// A spec error: exit status 2, message names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError(pub String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad spec: {}", self.0)
    }
}

impl std::error::Error for SpecError {}

impl GroupSpec {
    /// Tasks (processes) this group runs.
    pub fn task_count(&self) -> u64 {
        match self.kind {
            Kind::Pingpong => self.pairs.unwrap_or(1) * 2,
            _ => self.tasks.unwrap_or(1),
        }
    }

    /// Whether the group's tasks end by themselves (fixed work or a command).
    pub fn has_fixed_work(&self) -> bool {
        match self.kind {
            Kind::Hog => self.iterations.is_some(),
            Kind::Sleeper => self.cycles.is_some(),
            Kind::Pingpong => self.round_trips.is_some(),
            Kind::Exec => true,
        }
    }

    /// Whether the run waits for this group.
    pub fn is_foreground(&self) -> bool {
        self.has_fixed_work() && !self.background
    }
}

/// Parses and validates a spec from JSON text.
pub fn parse(text: &str) -> Result<Spec, SpecError> {
    let spec: Spec = serde_json::from_str(text).map_err(|err| SpecError(err.to_string()))?;
    validate(&spec)?;
    Ok(spec)
}

/// Checks what the JSON types alone cannot.
pub fn validate(spec: &Spec) -> Result<(), SpecError> {
    let err = |msg: String| Err(SpecError(msg));
    if spec.groups.is_empty() {
        return err("`groups` is empty: give at least one group".into());
    }
    // Bounds keep every ms/µs-to-ns conversion far from overflow.
    if let Some(ms) = spec.duration_ms
        && !(1..=MAX_DURATION_MS).contains(&ms)
    {
        return err(format!(
            "`duration_ms` {ms} is outside 1..={MAX_DURATION_MS} (7 days)"
        ));
    }
    if spec.grace_ms > MAX_GRACE_MS {
        return err(format!(
            "`grace_ms` {} is above {MAX_GRACE_MS} (1 hour)",
            spec.grace_ms
        ));
    }
    if !spec.cgroup_root.starts_with('/') {
        return err(format!(
            "`cgroup_root` must be an absolute path, got {:?}",
            spec.cgroup_root
        ));
    }
    let mut total_tasks = 0u64;
    for (index, group) in spec.groups.iter().enumerate() {
        validate_group(index, group)?;
        if spec.groups[..index].iter().any(|g| g.name == group.name) {
            return err(format!(
                "groups[{index}].name: {:?} is used by an earlier group",
                group.name
            ));
        }
        total_tasks = total_tasks.saturating_add(group.task_count());
    }
    if total_tasks > MAX_TASKS {
        return err(format!(
            "the groups have {total_tasks} tasks in all; at most {MAX_TASKS} are supported"
        ));
    }
    if spec.duration_ms.is_none() && !spec.groups.iter().any(GroupSpec::is_foreground) {
        return err(
            "`duration_ms` is required: no group has fixed work the run could wait for \
             (hog `iterations`, sleeper `cycles`, pingpong `round_trips`, exec)"
                .into(),
        );
    }
    Ok(())
}

fn validate_group(index: usize, g: &GroupSpec) -> Result<(), SpecError> {
    let at = |field: &str| format!("groups[{index}] ({:?}, {}).{field}", g.name, g.kind);
    let fail = |field: &str, msg: &str| Err(SpecError(format!("{}: {msg}", at(field))));
    if g.name.is_empty() {
        return Err(SpecError(format!(
            "groups[{index}].name: must not be empty"
        )));
    }
    // Fields that only make sense for some kinds: reject them elsewhere, a silently ignored
    // field would make a test measure something else than its author meant.
    let only = |field: &str, present: bool, kinds: &[Kind]| -> Result<(), SpecError> {
        if present && !kinds.contains(&g.kind) {
            let names: Vec<String> = kinds.iter().map(Kind::to_string).collect();
            fail(field, &format!("only valid for kind {}", names.join("/")))
        } else {
            Ok(())
        }
    };
    only(
        "tasks",
        g.tasks.is_some(),
        &[Kind::Hog, Kind::Sleeper, Kind::Exec],
    )?;
    only("pairs", g.pairs.is_some(), &[Kind::Pingpong])?;
    only("iterations", g.iterations.is_some(), &[Kind::Hog])?;
    only("run_us", g.run_us.is_some(), &[Kind::Sleeper])?;
    only("sleep_us", g.sleep_us.is_some(), &[Kind::Sleeper])?;
    only("cycles", g.cycles.is_some(), &[Kind::Sleeper])?;
    only(
        "timer_slack_ns",
        g.timer_slack_ns.is_some(),
        &[Kind::Sleeper],
    )?;
    only("round_trips", g.round_trips.is_some(), &[Kind::Pingpong])?;
    only(
        "message_bytes",
        g.message_bytes.is_some(),
        &[Kind::Pingpong],
    )?;
    only("argv", g.argv.is_some(), &[Kind::Exec])?;
    only("capture_output", g.capture_output, &[Kind::Exec])?;

    if g.tasks == Some(0) {
        return fail("tasks", "must be >= 1");
    }
    if g.pairs == Some(0) {
        return fail("pairs", "must be >= 1");
    }
    if g.iterations == Some(0) {
        return fail("iterations", "must be >= 1 (omit it to run until the end)");
    }
    if g.cycles == Some(0) {
        return fail("cycles", "must be >= 1 (omit it to run until the end)");
    }
    if g.round_trips == Some(0) {
        return fail("round_trips", "must be >= 1 (omit it to run until the end)");
    }
    if g.start_delay_ms > MAX_DELAY_MS {
        return fail(
            "start_delay_ms",
            &format!("is above {MAX_DELAY_MS} (1 hour)"),
        );
    }
    for (field, value) in [("run_us", g.run_us), ("sleep_us", g.sleep_us)] {
        if value.is_some_and(|v| v > MAX_CYCLE_US) {
            return fail(field, &format!("is above {MAX_CYCLE_US} (1 hour)"));
        }
    }
    if let Some(nice) = g.nice
        && !(-20..=19).contains(&nice)
    {
        return fail("nice", &format!("{nice} is outside -20..=19"));
    }
    if let Some(cpus) = &g.cpus {
        if cpus.is_empty() {
            return fail("cpus", "must list at least one CPU (omit it for all CPUs)");
        }
        if let Some(cpu) = cpus
            .iter()
            .find(|&&c| c as usize >= libc::CPU_SETSIZE as usize)
        {
            return fail("cpus", &format!("CPU {cpu} is out of range"));
        }
    }
    if g.kind == Kind::Sleeper && g.sleep_us.is_none() {
        return fail("sleep_us", "is required for a sleeper");
    }
    if let Some(bytes) = g.message_bytes
        && !(1..=MAX_MESSAGE_BYTES).contains(&bytes)
    {
        return fail(
            "message_bytes",
            &format!("{bytes} is outside 1..={MAX_MESSAGE_BYTES}"),
        );
    }
    if g.kind == Kind::Exec {
        match &g.argv {
            None => return fail("argv", "is required for exec"),
            Some(argv) if argv.is_empty() => return fail("argv", "must not be empty"),
            Some(argv) if argv.iter().any(|a| a.contains('\0')) => {
                return fail("argv", "an argument contains a NUL byte");
            }
            _ => {}
        }
    }
    if let Some(path) = &g.cgroup {
        if path.is_empty() || path.starts_with('/') {
            return fail(
                "cgroup",
                &format!(
                    "{path:?} must be a non-empty path relative to `cgroup_root` \
                     (use null to stay in the current cgroup)"
                ),
            );
        }
        if path
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return fail(
                "cgroup",
                &format!("{path:?} must not contain empty, `.` or `..` components"),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_of(text: &str) -> String {
        parse(text).unwrap_err().0
    }

    #[test]
    fn full_spec_parses_with_defaults() {
        let spec = parse(
            r#"{"duration_ms": 1000, "groups": [
                {"name": "h", "kind": "hog", "tasks": 2, "nice": 5, "cgroup": "t/a"},
                {"name": "s", "kind": "sleeper", "run_us": 100, "sleep_us": 1000},
                {"name": "p", "kind": "pingpong", "pairs": 2},
                {"name": "e", "kind": "exec", "argv": ["true"], "background": true}
            ]}"#,
        )
        .unwrap();
        assert_eq!(spec.cgroup_root, "/sys/fs/cgroup");
        assert_eq!(spec.grace_ms, 2000);
        assert_eq!(spec.groups[0].task_count(), 2);
        assert_eq!(spec.groups[1].task_count(), 1);
        assert_eq!(spec.groups[2].task_count(), 4);
        assert!(!spec.groups[0].is_foreground());
        assert!(spec.groups[3].has_fixed_work());
        assert!(!spec.groups[3].is_foreground());
        assert_eq!(spec.groups[0].cgroup.as_deref(), Some("t/a"));
    }

    #[test]
    fn fixed_work_needs_no_duration() {
        let spec = parse(r#"{"groups": [{"name": "h", "kind": "hog", "iterations": 10}]}"#);
        assert!(spec.is_ok());
        let err = err_of(r#"{"groups": [{"name": "h", "kind": "hog"}]}"#);
        assert!(err.contains("`duration_ms` is required"), "{err}");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{"groups": []}"#, "`groups` is empty"),
            (
                r#"{"duration_ms": 1, "groups": [{"name": "h", "kind": "hog", "sleep_us": 5}]}"#,
                "groups[0] (\"h\", hog).sleep_us: only valid for kind sleeper",
            ),
            (
                r#"{"duration_ms": 1, "groups": [{"name": "s", "kind": "sleeper"}]}"#,
                "sleep_us: is required",
            ),
            (
                r#"{"duration_ms": 1, "groups": [{"name": "h", "kind": "hog", "nice": 40}]}"#,
                "nice: 40 is outside",
            ),
            (
                r#"{"duration_ms": 1, "groups": [{"name": "h", "kind": "hog", "cgroup": "../x"}]}"#,
                "cgroup: \"../x\" must not contain",
            ),
            (
                r#"{"duration_ms": 1, "groups": [{"name": "h", "kind": "hog", "cgroup": "/abs"}]}"#,
                "relative to `cgroup_root`",
            ),
            (
                r#"{"duration_ms": 1, "groups": [{"name": "e", "kind": "exec"}]}"#,
                "argv: is required",
            ),
            (
                r#"{"duration_ms": 1, "groups": [{"name": "h", "kind": "hog"}, {"name": "h", "kind": "hog"}]}"#,
                "groups[1].name: \"h\" is used",
            ),
            (
                r#"{"duration_ms": 1, "groups": [{"name": "h", "kind": "hogg"}]}"#,
                "unknown variant `hogg`",
            ),
            (
                r#"{"duration_ms": 1, "grups": []}"#,
                "unknown field `grups`",
            ),
            (
                r#"{"duration_ms": 1, "groups": [{"name": "h", "kind": "hog", "tasks": 5000}]}"#,
                "at most 1024",
            ),
            (
                r#"{"duration_ms": 1, "groups": [{"name": "p", "kind": "pingpong", "message_bytes": 0}]}"#,
                "message_bytes: 0 is outside",
            ),
            (r#"{"duration_ms": "x", "groups": []}"#, "invalid type"),
            (
                r#"{"duration_ms": 18446744073709551615, "groups": [{"name": "h", "kind": "hog"}]}"#,
                "`duration_ms` 18446744073709551615 is outside",
            ),
            (
                r#"{"duration_ms": 1, "groups": [{"name": "s", "kind": "sleeper", "sleep_us": 18446744073709551615}]}"#,
                "sleep_us: is above",
            ),
        ];
        for (text, expected) in cases {
            let err = err_of(text);
            assert!(
                err.contains(expected),
                "{text}\n -> {err}\n expected {expected}"
            );
        }
    }
}
