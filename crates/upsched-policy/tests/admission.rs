//! Admission checks an object once: loading it parses it once and verifies each hook once.

use upsched_policy::counters::{hook_verifications, object_parses};
use upsched_policy::{ExecMode, LoadedPolicy};

/// (parses, verifications) done by `f` on this thread.
fn work<T>(f: impl FnOnce() -> T) -> (T, u64, u64) {
    let (parses, verifications) = (object_parses(), hook_verifications());
    let value = f();
    (
        value,
        object_parses() - parses,
        hook_verifications() - verifications,
    )
}

#[test]
fn loading_parses_once_and_verifies_each_hook_once() {
    for (name, bytes) in upsched_policies::POLICIES {
        let (policy, parses, verifications) = work(|| LoadedPolicy::load(bytes));
        let policy = policy.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(parses, 1, "{name}: parses");
        assert_eq!(
            verifications,
            policy.hooks().count() as u64,
            "{name}: verifications"
        );
    }
}

#[test]
fn an_admitted_policy_loads_without_a_second_parse_or_verification() {
    for (name, bytes) in upsched_policies::POLICIES {
        let (admitted, parses, verifications) =
            work(|| upsched_policy::admit(*bytes, &upsched_policy::Limits::default()));
        let admitted = admitted.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(parses, 1, "{name}: parses at admission");
        assert_eq!(verifications, admitted.hooks().count() as u64, "{name}");
        for mode in [ExecMode::Jit, ExecMode::Interpreter] {
            let (policy, parses, verifications) =
                work(|| LoadedPolicy::from_admitted(&admitted, mode, 1000));
            let policy = policy.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!((parses, verifications), (0, 0), "{name}: work at load");
            assert!(
                policy.hooks().eq(admitted.hooks().map(|h| h.name)),
                "{name}"
            );
        }
    }
}

#[test]
fn admission_keeps_what_the_checks_found() {
    let bytes = upsched_policies::policy("fifo").unwrap();
    let admitted = upsched_policy::admit(bytes, &upsched_policy::Limits::default()).unwrap();
    let report = upsched_policy::check(bytes, &upsched_policy::Limits::default());
    assert_eq!(admitted.bytes(), bytes);
    assert_eq!(Some(admitted.name()), report.policy.as_deref());
    let hooks: Vec<&str> = admitted.hooks().map(|h| h.name).collect();
    let reported: Vec<&str> = report.hooks.iter().map(|h| h.hook.as_str()).collect();
    assert_eq!(hooks, reported);
    let capabilities = |c: &[upsched_policy::check::CapabilityUse]| {
        c.iter().map(|c| c.name.clone()).collect::<Vec<_>>()
    };
    assert_eq!(
        capabilities(admitted.capabilities()),
        capabilities(&report.capabilities)
    );
    // The hash is SHA-256 of the bytes (FIPS 180-2's "abc" vector checks the rendering).
    assert_eq!(
        upsched_policy::ContentHash::of(b"abc").to_string(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(admitted.hash(), upsched_policy::ContentHash::of(bytes));
    let mut other = bytes.to_vec();
    other.push(0);
    assert_ne!(admitted.hash(), upsched_policy::ContentHash::of(&other));
}

#[test]
fn a_refused_object_yields_its_report() {
    let refused =
        upsched_policy::admit(&b"\x7fELF not really"[..], &Default::default()).unwrap_err();
    assert!(!refused.0.accepted);
    assert!(!refused.0.problems.is_empty());
    assert!(
        refused.to_string().starts_with("policy rejected: "),
        "{refused}"
    );
}
