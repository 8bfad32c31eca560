//! `upsched sdk export`: with the binary alone, a user writes the kit, builds the template
//! policy with `make` (clang-19, the build's flags) and the object passes `upsched check`.

use std::process::Command;

#[test]
fn the_exported_kit_builds_a_policy_that_is_accepted() {
    let upsched = env!("CARGO_BIN_EXE_upsched");
    let dir = std::env::temp_dir().join(format!("upsched-sdk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(upsched)
        .args(["sdk", "export", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    for file in [
        "include/upsched.h",
        "include/upsched_sdk.h",
        "policy.bpf.c",
        "Makefile",
    ] {
        assert!(dir.join(file).is_file(), "{file}");
    }

    let make = Command::new("make")
        .arg("-C")
        .arg(&dir)
        .arg("check")
        .arg(format!("UPSCHED={upsched}"))
        .output()
        .expect("make runs");
    let stdout = String::from_utf8_lossy(&make.stdout);
    assert!(
        make.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&make.stderr)
    );
    assert!(stdout.contains("-O2 -g -target bpf -mcpu=v3"), "{stdout}");
    assert!(
        stdout.contains("policy.bpf.o: ACCEPTED  policy \"policy\""),
        "{stdout}"
    );

    // A second export would overwrite the kit: refused, and the user's edits stay.
    std::fs::write(dir.join("policy.bpf.c"), "/* mine */").unwrap();
    let again = Command::new(upsched)
        .args(["sdk", "export", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("use --force"));
    assert_eq!(
        std::fs::read_to_string(dir.join("policy.bpf.c")).unwrap(),
        "/* mine */"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
