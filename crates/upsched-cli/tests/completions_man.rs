//! Shell completions and manual pages come from the same clap definition as the parser, so
//! they name every subcommand and option.

mod support;
use support::upsched;

#[test]
fn completions_are_produced_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = upsched(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        for word in ["sweep", "sdk", "max-tasks"] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
    }
    let out = upsched(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_manual_is_printed_or_written_per_subcommand() {
    let out = upsched(&["man"]);
    assert!(out.status.success());
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH upsched 1"), "{page}");
    assert!(page.contains("upsched\\-sweep(1)"), "{page}");

    let dir = std::env::temp_dir().join(format!("upsched-man-{}", std::process::id()));
    let out = upsched(&["man", "--dir", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let sim = std::fs::read_to_string(dir.join("upsched-sim.1")).unwrap();
    assert!(
        sim.contains(".TH upsched-sim 1") && sim.contains("max\\-tasks"),
        "{sim}"
    );
    assert!(dir.join("upsched-sdk-export.1").is_file());
    assert!(
        !dir.join("upsched-demo-worker.1").exists(),
        "hidden commands have no page"
    );
    let _ = std::fs::remove_dir_all(dir);
}
