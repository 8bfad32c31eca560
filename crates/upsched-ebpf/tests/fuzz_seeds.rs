//! Replays the committed fuzz seeds (and a local fuzzing run's grown corpus, when present)
//! through the same properties the fuzz targets check.

use std::path::Path;

fn replay(target: &str, property: fn(&[u8])) -> usize {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut replayed = 0;
    for dir in [
        fuzz.join("seeds").join(target),
        fuzz.join("corpus").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            property(&std::fs::read(entry.unwrap().path()).unwrap());
            replayed += 1;
        }
    }
    replayed
}

#[test]
fn verify_program_seeds_hold() {
    let replayed = replay(
        "verify_program",
        upsched_ebpf::fuzzing::verified_programs_are_safe,
    );
    assert!(replayed >= 10, "only {replayed} seeds");
}

#[test]
fn interpret_seeds_hold() {
    let replayed = replay("interpret", upsched_ebpf::fuzzing::interpret_arbitrary);
    assert!(replayed >= 10, "only {replayed} seeds");
}

#[test]
fn jit_seeds_hold() {
    let replayed = replay("jit", upsched_jit::fuzzing::jit_matches_interpreter);
    assert!(replayed >= 10, "only {replayed} seeds");
}
