//! A sweep's runs share each policy: it is parsed and verified once, however many runs and
//! threads use it, and every run still starts from fresh globals.

use std::path::Path;

use upsched_policy::ExecMode;
use upsched_policy::counters::{hook_verifications, object_parses};
use upsched_sim::tenants::{PolicyCache, PolicySource};

#[test]
fn a_policy_is_loaded_once_for_all_threads() {
    let cache = PolicyCache::new(ExecMode::default());
    let fifo = PolicySource::parse("example:fifo", Path::new("")).unwrap();
    let wfq = PolicySource::parse("example:wfq", Path::new("")).unwrap();
    let work: Vec<(u64, u64)> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let (parses, verifications) = (object_parses(), hook_verifications());
                    for _ in 0..5 {
                        for source in [&fifo, &wfq] {
                            let policy = cache.get(source).unwrap();
                            // Each use gets its own instance: fresh globals.
                            drop(policy.instantiate());
                        }
                    }
                    (
                        object_parses() - parses,
                        hook_verifications() - verifications,
                    )
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let parses: u64 = work.iter().map(|w| w.0).sum();
    let verifications: u64 = work.iter().map(|w| w.1).sum();
    let hooks = |name| {
        upsched_policy::LoadedPolicy::load(upsched_policies::policy(name).unwrap())
            .unwrap()
            .hooks()
            .count() as u64
    };
    assert_eq!(parses, 2, "one parse per policy");
    assert_eq!(verifications, hooks("fifo") + hooks("wfq"));
}

#[test]
fn a_refusal_is_kept_too() {
    let path = std::env::temp_dir().join(format!("upsched-cache-{}.bpf.o", std::process::id()));
    std::fs::write(&path, b"\x7fELF not really").unwrap();
    let cache = PolicyCache::new(ExecMode::Interpreter);
    let source = PolicySource::File(path.clone());
    let refusal = cache.get(&source).unwrap_err();
    // The file now holds a good policy, but the cache answers what it found the first time:
    // every run of a sweep sees the same policy.
    std::fs::write(&path, upsched_policies::policy("fifo").unwrap()).unwrap();
    assert_eq!(cache.get(&source).unwrap_err(), refusal);
    assert!(PolicyCache::new(ExecMode::Interpreter).get(&source).is_ok());
    std::fs::remove_file(&path).unwrap();
}
