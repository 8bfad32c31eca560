//! grants.toml: parsing, refusals with file, line and key, and scope checks on real directories.

use std::path::Path;
use std::time::Duration;

use nix::unistd::{Gid, Uid};
use upsched_broker::grants::{Grants, GrantsError, Principal, TenantAsk, TenantBounds};
use upsched_broker::scope::{ResolvedCgroup, ScopeError};

fn grant_file(scope: &str, extra: &str) -> String {
    format!(
        r#"version = 1

[[grant]]
name = "runtimes"
users = ["nobody", 1000]
groups = ["nogroup"]
capabilities = ["sched.order", "hints.read", "time.read"]
scopes = ["{scope}"]
max_level = 3
max_weight = 400
max_tenants = 2
slice_min = "500us"
slice_max = "20ms"
park_max = "100ms"
watchdog_max = "3s"
{extra}
"#
    )
}

fn parse(text: &str) -> Result<Grants, GrantsError> {
    Grants::parse(Path::new("/etc/upsched/grants.toml"), text)
}

fn refusal(text: &str) -> GrantsError {
    parse(text).expect_err("the file must be refused")
}

fn principal(uid: u32, gid: u32, groups: &[u32]) -> Principal {
    Principal {
        uid: Uid::from_raw(uid),
        gid: Gid::from_raw(gid),
        groups: groups.iter().map(|&g| Gid::from_raw(g)).collect(),
    }
}

#[test]
fn a_good_file_parses_into_resolved_grants() {
    let grants = parse(&grant_file("/sys/fs/cgroup/faas//", "")).unwrap();
    let [grant] = grants.grants.as_slice() else {
        panic!("one grant: {grants:?}");
    };
    assert_eq!(grant.name, "runtimes");
    assert_eq!(grant.users, vec![Uid::from_raw(65534), Uid::from_raw(1000)]);
    assert_eq!(grant.groups, vec![Gid::from_raw(65534)]);
    assert_eq!(
        grant.capabilities.iter().copied().collect::<Vec<_>>(),
        ["hints.read", "sched.order", "time.read"]
    );
    assert_eq!(grant.scopes[0].path(), Path::new("/sys/fs/cgroup/faas"));
    assert!(!grant.any_owner);
    assert_eq!(
        (grant.max_level, grant.max_weight, grant.max_tenants),
        (3, 400, 2)
    );
    assert_eq!(
        grant.bounds,
        TenantBounds {
            slice_min: Duration::from_micros(500),
            slice_max: Duration::from_millis(20),
            park_max: Duration::from_millis(100),
            watchdog_max: Duration::from_secs(3),
        }
    );
    // Covered as a user, through the primary group, through a supplementary group; not else.
    assert!(grant.covers(&principal(1000, 1000, &[])));
    assert!(grant.covers(&principal(2000, 65534, &[])));
    assert!(grant.covers(&principal(2000, 2000, &[10, 65534])));
    assert!(!grant.covers(&principal(2000, 2000, &[10])));
    assert_eq!(grants.covering(&principal(2000, 2000, &[10])).count(), 0);
}

#[test]
fn an_empty_file_of_the_right_version_grants_nothing() {
    assert_eq!(parse("version = 1\n").unwrap().grants, vec![]);
}

#[test]
fn every_refusal_names_file_line_and_key() {
    let cases: &[(&str, usize, &str, &str)] = &[
        // (extra text or replacement, line, key, part of the message)
        (
            "max_parks = 3",
            16,
            "grant[0].max_parks",
            "unknown field `max_parks`",
        ),
        (
            "any_owner = \"yes\"",
            16,
            "grant[0].any_owner",
            "invalid type",
        ),
    ];
    for (extra, line, key, message) in cases {
        let e = refusal(&grant_file("/sys/fs/cgroup/faas", extra));
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(*line), *key),
            "{extra}: {e}"
        );
        assert!(e.message.contains(message), "{extra}: {e}");
        assert!(
            e.to_string().starts_with("/etc/upsched/grants.toml:"),
            "{e}"
        );
    }
    // (replaced text, replacement, line, key, part of the message)
    #[rustfmt::skip]
    let replaced: &[(&str, &str, usize, &str, &str)] = &[
        ("version = 1", "version = 2", 1, "version", "reads version 1"),
        ("max_level = 3", "max_level = -1", 9, "grant[0].max_level", "invalid value"),
        ("max_weight = 400", "max_weight = 0", 10, "grant[0].max_weight", "start at 1"),
        ("max_tenants = 2", "max_tenants = 0", 11, "grant[0].max_tenants", "at least 1"),
        ("\"hints.read\"", "\"hints.write\"", 7, "grant[0].capabilities[1]", "unknown capability \"hints.write\""),
        ("\"nobody\"", "\"no-such-user-here\"", 5, "grant[0].users[0]", "no user"),
        ("\"nogroup\"", "\"no-such-group-here\"", 6, "grant[0].groups[0]", "no group"),
        ("\"500us\"", "\"fast\"", 12, "grant[0].slice_min", "not a duration"),
        ("slice_min = \"500us\"", "slice_min = \"30ms\"", 12, "grant[0].slice_min", "slice_min <= slice_max"),
        ("\"100ms\"", "\"3s\"", 14, "grant[0].park_max", "below watchdog_max"),
        ("watchdog_max = \"3s\"", "watchdog_max = \"1h\"", 15, "grant[0].watchdog_max", "longest watchdog"),
        ("/sys/fs/cgroup/faas", "sys/fs/cgroup/faas", 8, "grant[0].scopes[0]", "not an absolute path"),
        ("/sys/fs/cgroup/faas", "/sys/fs/cgroup/faas/../..", 8, "grant[0].scopes[0]", "`..`"),
        ("scopes = [\"/sys/fs/cgroup/faas\"]", "scopes = []", 8, "grant[0].scopes", "at least one cgroup scope"),
        ("watchdog_max = \"3s\"\n", "", 3, "grant[0]", "missing field `watchdog_max`"),
        ("users = [\"nobody\", 1000]\ngroups = [\"nogroup\"]\n", "", 4, "grant[0].users", "at least one user or group"),
        ("users = [\"nobody\", 1000]", "users = [\"nobody\", 1000", 6, "", "expected `]`"),
        ("[[grant]]", "grant = 3", 3, "grant", "invalid type"),
    ];
    for (from, to, line, key, message) in replaced {
        let text = grant_file("/sys/fs/cgroup/faas", "").replacen(from, to, 1);
        assert_ne!(
            text,
            grant_file("/sys/fs/cgroup/faas", ""),
            "{from} not in the file"
        );
        let e = refusal(&text);
        assert_eq!((e.line, e.key.as_str()), (Some(*line), *key), "{to}: {e}");
        assert!(e.message.contains(message), "{to}: {e}");
    }
    let twice = format!(
        "{}{}",
        grant_file("/a", ""),
        grant_file("/b", "").replacen("version = 1", "", 1)
    );
    let e = refusal(&twice);
    assert_eq!((e.line, e.key.as_str()), (Some(20), "grant[1].name"), "{e}");
    let e = Grants::load(Path::new("/nonexistent/grants.toml")).unwrap_err();
    assert_eq!(e.line, None);
    assert!(e.to_string().contains("cannot read"), "{e}");
}

fn ask(level: u32, weight: u32) -> TenantAsk {
    TenantAsk {
        level,
        weight,
        bounds: TenantBounds {
            slice_min: Duration::from_millis(1),
            slice_max: Duration::from_millis(10),
            park_max: Duration::from_millis(50),
            watchdog_max: Duration::from_secs(2),
        },
    }
}

#[test]
fn exceeded_bounds_names_every_one() {
    let grants = parse(&grant_file("/sys/fs/cgroup/faas", "")).unwrap();
    let grant = &grants.grants[0];
    assert_eq!(grant.exceeded_bounds(&ask(3, 400)), Vec::<String>::new());
    let mut greedy = ask(4, 401);
    greedy.bounds = TenantBounds {
        slice_min: Duration::from_micros(100),
        slice_max: Duration::from_millis(21),
        park_max: Duration::from_millis(101),
        watchdog_max: Duration::from_secs(4),
    };
    let exceeded = grant.exceeded_bounds(&greedy);
    assert_eq!(exceeded.len(), 6, "{exceeded:#?}");
    for (said, word) in exceeded.iter().zip([
        "level",
        "weight",
        "slice_min",
        "slice_max",
        "park_max",
        "watchdog",
    ]) {
        assert!(said.starts_with(word), "{said}");
    }
}

/// A scope `scope/` and a sibling `outside/` in a fresh directory, canonical (so that a
/// symlinked temporary directory does not blur what the checks see).
struct Tree {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
}

impl Tree {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        for sub in ["scope/tenant/deep", "outside/other"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        Tree { _dir: dir, root }
    }

    fn grants(&self, extra: &str) -> Grants {
        parse(&grant_file(
            self.root.join("scope").to_str().unwrap(),
            extra,
        ))
        .unwrap()
    }

    fn check(&self, grants: &Grants, path: &str, who: &Principal) -> Result<u64, ScopeError> {
        let cgroup = ResolvedCgroup::open(&self.root.join(path))?;
        grants.grants[0].check_cgroup(&cgroup, who)?;
        Ok(cgroup.id())
    }
}

fn me() -> Principal {
    Principal::from_database(nix::unistd::getuid(), nix::unistd::getgid()).unwrap()
}

#[test]
fn a_cgroup_inside_the_scope_is_accepted_with_its_inode_as_id() {
    let tree = Tree::new();
    let grants = tree.grants("");
    for path in [
        "scope",
        "scope/tenant",
        "scope/tenant/deep",
        "scope/./tenant//",
    ] {
        let id = tree
            .check(&grants, path, &me())
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let canonical = tree.root.join(path).canonicalize().unwrap();
        assert_eq!(
            id,
            std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(canonical).unwrap())
        );
    }
    // Plain directories are not cgroups: the daemon's bind refuses them.
    let plain = ResolvedCgroup::open(&tree.root.join("scope")).unwrap();
    assert!(!plain.on_cgroup2());
    assert!(matches!(
        plain.require_cgroup2(),
        Err(ScopeError::NotCgroup2(_))
    ));
}

#[test]
fn escapes_through_dotdot_symlinks_and_renames_are_refused() {
    let tree = Tree::new();
    let grants = tree.grants("");
    let who = me();
    assert!(matches!(
        tree.check(&grants, "outside/other", &who),
        Err(ScopeError::OutsideScopes { .. })
    ));
    assert!(matches!(
        tree.check(&grants, "scope/tenant/../../outside", &who),
        Err(ScopeError::ParentComponent(_))
    ));
    assert!(matches!(
        ResolvedCgroup::open(Path::new("scope/tenant")),
        Err(ScopeError::NotAbsolute(_))
    ));
    // A sibling whose name starts with the scope's is not inside it.
    std::fs::create_dir(tree.root.join("scope-evil")).unwrap();
    assert!(matches!(
        tree.check(&grants, "scope-evil", &who),
        Err(ScopeError::OutsideScopes { .. })
    ));

    // A symlink inside the scope is judged by where it leads.
    std::os::unix::fs::symlink(
        tree.root.join("outside/other"),
        tree.root.join("scope/escape"),
    )
    .unwrap();
    let e = tree.check(&grants, "scope/escape", &who).unwrap_err();
    assert!(
        matches!(&e, ScopeError::OutsideScopes { cgroup, .. } if cgroup.ends_with("outside/other")),
        "{e}"
    );
    std::os::unix::fs::symlink(
        tree.root.join("scope/tenant"),
        tree.root.join("outside/into"),
    )
    .unwrap();
    tree.check(&grants, "outside/into", &who)
        .expect("a link that leads into the scope");

    // A directory opened inside the scope and then moved out is no longer inside.
    let moving = ResolvedCgroup::open(&tree.root.join("scope/tenant/deep")).unwrap();
    grants.grants[0].check_cgroup(&moving, &who).unwrap();
    std::fs::rename(
        tree.root.join("scope/tenant/deep"),
        tree.root.join("outside/deep"),
    )
    .unwrap();
    let e = grants.grants[0].check_cgroup(&moving, &who).unwrap_err();
    assert!(
        matches!(&e, ScopeError::OutsideScopes { cgroup, .. } if cgroup.ends_with("outside/deep")),
        "{e}"
    );
    // ... and one removed after it was opened names nothing.
    std::fs::remove_dir(tree.root.join("outside/deep")).unwrap();
    assert!(matches!(
        moving.current_path(),
        Err(ScopeError::Moved { .. })
    ));

    assert!(matches!(
        tree.check(&grants, "scope/missing", &who),
        Err(ScopeError::Open { .. })
    ));
    std::fs::write(tree.root.join("scope/file"), "").unwrap();
    assert!(matches!(
        tree.check(&grants, "scope/file", &who),
        Err(ScopeError::NotADirectory(_))
    ));
}

#[test]
fn a_scope_that_does_not_exist_contains_nothing() {
    let tree = Tree::new();
    let grants = parse(&grant_file(tree.root.join("gone").to_str().unwrap(), "")).unwrap();
    assert!(matches!(
        tree.check(&grants, "scope", &me()),
        Err(ScopeError::OutsideScopes { .. })
    ));
}

#[test]
fn another_users_cgroup_is_refused_unless_the_grant_says_any_owner() {
    if !nix::unistd::getuid().is_root() {
        eprintln!("skipped: needs root to give a directory to another user");
        return;
    }
    let tree = Tree::new();
    let theirs = tree.root.join("scope/tenant");
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let user = principal(1000, 1000, &[]);
    let owner = principal(65534, 65534, &[]);
    let grants = tree.grants("");
    let e = tree.check(&grants, "scope/tenant", &user).unwrap_err();
    assert!(
        matches!(
            e,
            ScopeError::NotOwner {
                owner: 65534,
                caller: 1000,
                ..
            }
        ),
        "{e}"
    );
    tree.check(&grants, "scope/tenant", &owner)
        .expect("the owner");
    tree.check(&grants, "scope/tenant", &principal(0, 0, &[]))
        .expect("root");
    tree.check(&tree.grants("any_owner = true"), "scope/tenant", &user)
        .expect("any_owner");
}

#[test]
fn a_grants_file_others_may_write_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grants.toml");
    std::fs::write(&path, "version = 1\n").unwrap();
    let mode = |m| {
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(m)).unwrap()
    };
    mode(0o644);
    Grants::load(&path).expect("owned by us, written by us only");
    for writable in [0o664, 0o646] {
        mode(writable);
        let e = Grants::load(&path).unwrap_err();
        assert!(
            e.message.contains("writable by its group or by others"),
            "{e}"
        );
    }
    if nix::unistd::getuid().is_root() {
        mode(0o644);
        std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
        let e = Grants::load(&path).unwrap_err();
        assert!(e.message.contains("belongs to uid 65534"), "{e}");
    }
}
