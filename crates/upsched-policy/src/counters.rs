//! How much admission work this thread did: object parses and hook verifications. They let a
//! test see that an object checked once is never parsed or verified again on its way into an
//! engine (`tests/admission.rs`); counting is a thread-local increment.

use std::cell::Cell;

thread_local! {
    static OBJECT_PARSES: Cell<u64> = const { Cell::new(0) };
    static HOOK_VERIFICATIONS: Cell<u64> = const { Cell::new(0) };
}

/// Policy objects this thread has parsed ([`crate::PolicyObject::parse`]).
pub fn object_parses() -> u64 {
    OBJECT_PARSES.with(Cell::get)
}

/// Hook programs this thread has run the engine's verifier on.
pub fn hook_verifications() -> u64 {
    HOOK_VERIFICATIONS.with(Cell::get)
}

pub(crate) fn count_object_parse() {
    OBJECT_PARSES.with(|n| n.set(n.get() + 1));
}

pub(crate) fn count_hook_verification() {
    HOOK_VERIFICATIONS.with(|n| n.set(n.get() + 1));
}
