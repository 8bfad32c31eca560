//! Admission checks an object once: loading it parses it once and verifies each hook once.

use upsched_policy::LoadedPolicy;
use upsched_policy::counters::{hook_verifications, object_parses};

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
        assert_eq!(verifications, policy.hooks().count() as u64, "{name}: verifications");
    }
}
