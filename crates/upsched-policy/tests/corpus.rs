//! Admission checks on the example policies, the C-built corpus and hand-crafted bad bytes.

use upsched_policy::{CheckReport, Limits, ProblemKind, check};

fn check_default(bytes: &[u8]) -> CheckReport {
    check(bytes, &Limits::default())
}

fn example(name: &str) -> &'static [u8] {
    upsched_policies::policy(name).expect("example exists")
}

fn hook<'a>(report: &'a CheckReport, name: &str) -> &'a upsched_policy::check::HookReport {
    report
        .hooks
        .iter()
        .find(|h| h.hook == name)
        .expect("hook present")
}

#[test]
fn every_example_policy_is_accepted() {
    for (name, bytes) in upsched_policies::POLICIES {
        let report = check_default(bytes);
        assert!(report.accepted, "{name}: {:?}", report.problems);
        assert_eq!(report.policy.as_deref(), Some(*name));
        assert_eq!(report.abi_version, Some(upsched_abi::ABI_VERSION));
        assert!(report.warnings.is_empty(), "{name}: {:?}", report.warnings);
    }
}

#[test]
fn fifo_analysis_names_the_fields_it_touches() {
    let report = check_default(example("fifo"));
    let enqueue = hook(&report, "enqueue");
    assert_eq!(enqueue.reads, ["now_ns", "runnable_ns", "slice_max_ns"]);
    assert_eq!(enqueue.writes, ["key", "slice_ns"]);
    assert_eq!(report.hooks.len(), 1);
    let caps: Vec<_> = report
        .capabilities
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        caps,
        ["sched.order", "sched.slice", "task.accounting", "time.read"]
    );
}

#[test]
fn wfq_keeps_per_task_state_in_globals() {
    let report = check_default(example("wfq"));
    let hooks: Vec<_> = report.hooks.iter().map(|h| h.hook.as_str()).collect();
    assert_eq!(hooks, ["enqueue", "running", "stopping", "task_init"]);
    let tasks = report
        .globals
        .iter()
        .find(|g| g.name == "tasks")
        .expect("tasks global");
    assert_eq!(tasks.size, 8 * u64::from(upsched_abi::MAX_TASKS));
    assert_eq!(
        hook(&report, "stopping").reads,
        ["last_runtime_ns", "task_slot", "weight"]
    );
}

#[test]
fn faas_reads_hints_and_decides_verdicts() {
    let report = check_default(example("faas"));
    assert!(
        hook(&report, "enqueue")
            .reads
            .contains(&"hints".to_string())
    );
    assert_eq!(hook(&report, "tick").writes, ["verdict"]);
    assert!(report.capabilities.iter().any(|c| c.name == "hints.read"));
}

#[test]
fn subprograms_are_linked_and_analysed() {
    let report = check_default(upsched_testdata::object("subprog"));
    assert!(report.accepted, "{:?}", report.problems);
    let enqueue = hook(&report, "enqueue");
    assert_eq!(enqueue.subprograms, ["order_by_deadline"]);
    assert!(enqueue.linked_insns > enqueue.insns);
    assert_eq!(enqueue.reads, ["hints"]);
    assert_eq!(enqueue.writes, ["key"]);
}

#[test]
fn allowed_kfunc_is_reported_with_its_capability() {
    let report = check_default(upsched_testdata::object("kfunc_user"));
    assert!(report.accepted, "{:?}", report.problems);
    assert_eq!(report.kfuncs, ["scx_bpf_dsq_nr_queued"]);
    assert!(
        report
            .capabilities
            .iter()
            .any(|c| c.name == "kfunc.dsq_query")
    );
}

/// (object, expected problem, text the message must contain, instruction when located).
const BAD: &[(&str, ProblemKind, &str, Option<usize>)] = &[
    ("no_abi", ProblemKind::MissingAbi, "UPSCHED_POLICY", None),
    ("wrong_abi", ProblemKind::WrongAbi, "ABI version 99", None),
    (
        "unknown_hook",
        ProblemKind::UnknownHook,
        "freplace/upsched_<hook>",
        None,
    ),
    (
        "not_a_hook",
        ProblemKind::NotAHook,
        "not a policy hook",
        None,
    ),
    (
        "bad_proto_ret",
        ProblemKind::BadPrototype,
        "returns a value",
        None,
    ),
    (
        "bad_proto_args",
        ProblemKind::BadPrototype,
        "takes 2 parameters",
        None,
    ),
    (
        "old_layout",
        ProblemKind::BadPrototype,
        "differs from the ABI",
        None,
    ),
    ("helper_call", ProblemKind::HelperCall, "helper #5", Some(2)),
    (
        "bad_kfunc",
        ProblemKind::KfuncNotAllowed,
        "scx_bpf_kick_cpu",
        Some(3),
    ),
    // scx_bpf_dsq_nr_queued with every kind of DSQ id outside its domain (SCX_DSQ_LOCAL).
    (
        "kfunc_dsq_local_on_0",
        ProblemKind::KfuncArgument,
        "(dsq_id, r1) is 0xc000000000000000; it must be SCX_DSQ_LOCAL (0x8000000000000002)",
        Some(3),
    ),
    (
        "kfunc_dsq_local_on_last",
        ProblemKind::KfuncArgument,
        "is not a constant here (it may be any of 0xc000000000000000..=0xffffffffffffffff)",
        Some(6),
    ),
    (
        "kfunc_dsq_local_on_nr_cpus",
        ProblemKind::KfuncArgument,
        "is not a constant here (it may be any of 0xc000000000000000..=0xffffffffffffffff)",
        Some(5),
    ),
    (
        "kfunc_dsq_local_on_invalid",
        ProblemKind::KfuncArgument,
        "argument 1 of scx_bpf_dsq_nr_queued (dsq_id, r1) is 0xc0000000ffffffff; it must be SCX_DSQ_LOCAL",
        Some(3),
    ),
    (
        "kfunc_dsq_global",
        ProblemKind::KfuncArgument,
        "is 0x8000000000000001; it must be SCX_DSQ_LOCAL",
        Some(3),
    ),
    (
        "kfunc_dsq_own_class",
        ProblemKind::KfuncArgument,
        "is not a constant here (it may be any of 0x100..=0x1000000ff)",
        Some(3),
    ),
    (
        "kfunc_dsq_other_tenant",
        ProblemKind::KfuncArgument,
        "is 0x101; it must be SCX_DSQ_LOCAL",
        Some(2),
    ),
    (
        "kfunc_dsq_park",
        ProblemKind::KfuncArgument,
        "is 0x200; it must be SCX_DSQ_LOCAL",
        Some(2),
    ),
    (
        "kfunc_dsq_arbitrary",
        ProblemKind::KfuncArgument,
        "is 0x12345; it must be SCX_DSQ_LOCAL",
        Some(2),
    ),
    (
        "kfunc_dsq_variable",
        ProblemKind::KfuncArgument,
        "is not a constant here (it may be any of 0x0..=0xffffffffffffffff)",
        Some(2),
    ),
    (
        "input_write",
        ProblemKind::InputWrite,
        "input field `pid`",
        Some(2),
    ),
    (
        "variable_write",
        ProblemKind::VariableWrite,
        "variable offset",
        Some(6),
    ),
    (
        "ctx_escape",
        ProblemKind::CtxEscape,
        "context pointer",
        Some(3),
    ),
    (
        "too_many_insns",
        ProblemKind::TooManyInsns,
        "the limit is 4096",
        None,
    ),
    (
        "big_globals",
        ProblemKind::GlobalsTooLarge,
        "2097152 bytes",
        None,
    ),
    ("license_mit", ProblemKind::License, "\"MIT\"", None),
    ("maps", ProblemKind::UnsupportedSection, "maps", None),
    // Objects the kernel or libbpf refuses (issue 9, class 4): the check must refuse them too.
    (
        "stack_chain",
        ProblemKind::EngineVerifier,
        "combined stack size of 3 calls is 576 bytes",
        Some(19),
    ),
    (
        "cross_section_call",
        ProblemKind::MalformedObject,
        "subprograms must be in .text",
        Some(1),
    ),
    (
        "global_no_null_check",
        ProblemKind::EngineVerifier,
        "in global function `set_key`, which the kernel verifies on its own",
        Some(3),
    ),
    (
        "btf_typedef_loop",
        ProblemKind::MalformedBtf,
        "a type loop",
        None,
    ),
    (
        "symtab_entsize",
        ProblemKind::MalformedObject,
        "symbol table entry size (sh_entsize) is 0",
        None,
    ),
];

#[test]
fn every_bad_object_is_rejected_with_its_reason() {
    let names: Vec<_> = upsched_testdata::BAD.iter().map(|(n, _)| *n).collect();
    for (name, _, _, _) in BAD {
        assert!(names.contains(name), "{name} is not built");
    }
    assert_eq!(
        names.len(),
        BAD.len(),
        "every bad object has an expectation"
    );
    for (name, kind, text, insn) in BAD {
        let report = check_default(upsched_testdata::object(name));
        assert!(!report.accepted, "{name} was accepted");
        let found = report.problems.iter().find(|p| p.kind == *kind);
        let problem =
            found.unwrap_or_else(|| panic!("{name}: no {kind:?} in {:?}", report.problems));
        assert!(problem.message.contains(text), "{name}: {problem}");
        assert_eq!(problem.insn, *insn, "{name}: {problem}");
        if insn.is_some() {
            assert_eq!(
                problem.section.as_deref(),
                Some("freplace/upsched_enqueue"),
                "{name}"
            );
        }
    }
}

#[test]
fn limits_are_configurable() {
    let tight = Limits {
        max_insns_per_hook: 4,
        max_globals_bytes: 16,
    };
    let report = check(example("wfq"), &tight);
    let kinds: Vec<_> = report.problems.iter().map(|p| p.kind).collect();
    assert!(kinds.contains(&ProblemKind::TooManyInsns));
    assert!(kinds.contains(&ProblemKind::GlobalsTooLarge));
}

#[test]
fn report_json_is_stable() {
    let a = serde_json::to_string(&check_default(example("edf"))).unwrap();
    let b = serde_json::to_string(&check_default(example("edf"))).unwrap();
    assert_eq!(a, b);
    // Field order is the struct's declaration order: documented and kept.
    assert!(a.starts_with(r#"{"format":1,"accepted":true,"policy":"edf","abi_version":1,"license":"GPL","hooks":[{"hook":"enqueue""#), "{a}");
    assert!(a.ends_with(r#""problems":[],"warnings":[]}"#), "{a}");
}

// ---- hand-crafted bytes -------------------------------------------------------------------

fn only_problem(bytes: &[u8]) -> upsched_policy::Problem {
    let report = check_default(bytes);
    assert!(!report.accepted);
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    report.problems[0].clone()
}

fn u16_at(b: &[u8], at: usize) -> usize {
    u16::from_le_bytes([b[at], b[at + 1]]) as usize
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Offsets of the ELF64 section headers of `b` whose sh_type is `sh_type`.
fn section_headers(b: &[u8], sh_type: u32) -> Vec<usize> {
    let shoff = u64_at(b, 0x28) as usize;
    let entsize = u16_at(b, 0x3a);
    let count = u16_at(b, 0x3c);
    (0..count)
        .map(|i| shoff + i * entsize)
        .filter(|h| u32_at(b, h + 4) == sh_type)
        .collect()
}

#[test]
fn empty_and_non_elf_inputs() {
    assert_eq!(only_problem(b"").kind, ProblemKind::NotElf);
    assert_eq!(
        only_problem(b"#!/bin/sh\necho hi\n").kind,
        ProblemKind::NotElf
    );
}

#[test]
fn wrong_class_endianness_machine_and_type() {
    let fifo = example("fifo");
    let mut elf32 = fifo.to_vec();
    elf32[4] = 1;
    assert!(
        only_problem(&elf32)
            .message
            .contains("64-bit little-endian")
    );
    let mut big_endian = fifo.to_vec();
    big_endian[5] = 2;
    assert!(
        only_problem(&big_endian)
            .message
            .contains("64-bit little-endian")
    );
    let mut x86 = fifo.to_vec();
    x86[18] = 62;
    let problem = only_problem(&x86);
    assert_eq!(problem.kind, ProblemKind::NotBpf);
    assert!(problem.message.contains("machine is 62"), "{problem}");
    let mut executable = fifo.to_vec();
    executable[16] = 2;
    assert!(
        only_problem(&executable)
            .message
            .contains("not a relocatable")
    );
}

#[test]
fn truncated_objects_are_rejected_without_panic() {
    let wfq = example("wfq");
    for len in (0..wfq.len()).step_by(7) {
        let report = check_default(&wfq[..len]);
        assert!(!report.accepted, "truncated to {len} bytes was accepted");
    }
}

#[test]
fn random_bytes_are_rejected_without_panic() {
    // A fixed linear congruential sequence: deterministic noise, with and without ELF magic.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for round in 0..300 {
        let len = (round * 37) % 2048;
        let mut bytes: Vec<u8> = (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 56) as u8
            })
            .collect();
        if round % 2 == 0 && bytes.len() >= 20 {
            bytes[..4].copy_from_slice(b"\x7fELF");
            bytes[4] = 2;
            bytes[5] = 1;
            bytes[18] = 247;
            bytes[19] = 0;
        }
        assert!(!check_default(&bytes).accepted);
    }
}

#[test]
fn huge_section_size_is_rejected() {
    let mut bytes = example("fifo").to_vec();
    const SHT_PROGBITS: u32 = 1;
    let header = section_headers(&bytes, SHT_PROGBITS)[0];
    bytes[header + 32..header + 40].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    let report = check_default(&bytes);
    assert!(!report.accepted);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::MalformedObject),
        "{:?}",
        report.problems
    );
}

#[test]
fn huge_bss_is_rejected_by_size() {
    let mut bytes = example("wfq").to_vec();
    const SHT_NOBITS: u32 = 8;
    let header = section_headers(&bytes, SHT_NOBITS)[0];
    bytes[header + 32..header + 40].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let problem = only_problem(&bytes);
    assert_eq!(problem.kind, ProblemKind::MalformedObject);
    assert!(
        problem.message.contains("beyond any policy limit"),
        "{problem}"
    );
}

#[test]
fn relocation_to_a_missing_symbol_is_rejected() {
    let mut bytes = example("wfq").to_vec();
    const SHT_REL: u32 = 9;
    // The first relocation section applies to code (wfq's task_init loads `tasks`).
    let header = section_headers(&bytes, SHT_REL)[0];
    let entry = u64_at(&bytes, header + 24) as usize;
    let info = u64_at(&bytes, entry + 8);
    let patched = (0xffffu64 << 32) | (info & 0xffff_ffff);
    bytes[entry + 8..entry + 16].copy_from_slice(&patched.to_le_bytes());
    let problem = only_problem(&bytes);
    assert!(problem.message.contains("missing symbol"), "{problem}");
    assert_eq!(problem.insn, Some(4));
}

/// The neighbours of the symtab rule: libbpf requires 16-byte relocation entries too.
#[test]
fn relocation_entry_size_is_checked() {
    let mut bytes = example("wfq").to_vec();
    const SHT_REL: u32 = 9;
    let header = section_headers(&bytes, SHT_REL)[0];
    bytes[header + 0x38..header + 0x40].copy_from_slice(&24u64.to_le_bytes());
    let problem = only_problem(&bytes);
    assert_eq!(problem.kind, ProblemKind::MalformedObject);
    assert!(
        problem
            .message
            .contains("relocation entry size (sh_entsize) is 24"),
        "{problem}"
    );
}

/// Missing BTF and malformed BTF are told apart: only the first asks for `-g`.
#[test]
fn malformed_btf_is_not_reported_as_missing() {
    let report = check_default(upsched_testdata::object("btf_typedef_loop"));
    let problem = report
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::MalformedBtf)
        .expect("a malformed_btf problem");
    assert!(!problem.message.contains("-g"), "{problem}");
    assert!(
        report
            .problems
            .iter()
            .all(|p| p.kind != ProblemKind::MissingBtf),
        "{:?}",
        report.problems
    );

    // An object without a .BTF section (renamed to "BTF" by skipping the dot of its name):
    // missing, compile with -g.
    let mut bytes = example("fifo").to_vec();
    let shoff = u64_at(&bytes, 0x28) as usize;
    let (entsize, count) = (u16_at(&bytes, 0x3a), u16_at(&bytes, 0x3c));
    let names = u64_at(&bytes, shoff + u16_at(&bytes, 0x3e) * entsize + 0x18) as usize;
    let header = (0..count)
        .map(|i| shoff + i * entsize)
        .find(|&h| bytes[names + u32_at(&bytes, h) as usize..].starts_with(b".BTF\0"))
        .expect("a .BTF section");
    let renamed = u32_at(&bytes, header) + 1;
    bytes[header..header + 4].copy_from_slice(&renamed.to_le_bytes());
    let report = check_default(&bytes);
    let missing = report
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::MissingBtf)
        .unwrap_or_else(|| panic!("no missing_btf in {:?}", report.problems));
    assert!(missing.message.contains("compile with -g"), "{missing}");
}

/// Replays the fuzz seeds (our objects, good and bad, and every input that once crashed the
/// checker) and, where a local fuzzing run left one, the fuzzer's grown corpus.
#[test]
fn fuzz_corpus_replays_without_panic() {
    let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut replayed = 0;
    for dir in ["seeds/check_object", "corpus/check_object"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir)) else {
            continue;
        };
        for entry in entries {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            let report = check_default(&bytes);
            assert_eq!(report.accepted, report.problems.is_empty());
            replayed += 1;
        }
    }
    assert!(replayed >= 20, "only {replayed} corpus inputs");
}
