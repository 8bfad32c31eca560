//! Downloading Debian packages from another suite (sid) without touching the system's apt state.
//!
//! The mirror comes from the machine's own apt configuration: the project never names a mirror
//! host. Everything apt writes (lists, caches, the downloaded .debs) goes to directories the
//! caller owns: every path apt would otherwise take from the system (source list, source parts,
//! preferences, lists, caches) is redirected with `-o` options, so the system's apt state is
//! neither read for sources nor written.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::error::HarnessError;
use crate::tools::{find_tool, run_checked};

/// One `deb` source, from either a deb822 stanza or a one-line `sources.list` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptSource {
    pub types: Vec<String>,
    pub uris: Vec<String>,
    pub suites: Vec<String>,
    pub components: Vec<String>,
    /// Keyring path (or inline key block) that signs this archive; reused for the sid suite,
    /// which the same Debian archive key signs.
    pub signed_by: Option<String>,
    pub enabled: bool,
}

/// The Debian archive to take packages from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianMirror {
    pub uri: String,
    pub signed_by: Option<String>,
}

/// Parses deb822 `.sources` text (stanzas separated by blank lines, folded continuation lines).
pub fn parse_deb822_sources(text: &str) -> Vec<AptSource> {
    let mut sources = Vec::new();
    for stanza in split_on_blank_lines(text) {
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in stanza.lines() {
            if line.trim_start().starts_with('#') {
                continue;
            }
            if line.starts_with(' ') || line.starts_with('\t') {
                // Continuation of the previous field (e.g. an inline Signed-By key block).
                if let Some((_, value)) = fields.last_mut() {
                    value.push('\n');
                    value.push_str(line.trim());
                }
                continue;
            }
            if let Some((key, value)) = line.split_once(':') {
                fields.push((key.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        let field = |name: &str| {
            fields
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        let words = |name: &str| -> Vec<String> {
            field(name)
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        let source = AptSource {
            types: words("types"),
            uris: words("uris"),
            suites: words("suites"),
            components: words("components"),
            signed_by: field("signed-by").filter(|v| !v.is_empty()),
            enabled: field("enabled").is_none_or(|v| !v.eq_ignore_ascii_case("no")),
        };
        if !source.types.is_empty() && !source.uris.is_empty() {
            sources.push(source);
        }
    }
    sources
}

/// Splits text on lines that are empty or whitespace-only (deb822 stanza separators).
fn split_on_blank_lines(text: &str) -> Vec<String> {
    let mut stanzas = vec![String::new()];
    for line in text.lines() {
        if line.trim().is_empty() {
            stanzas.push(String::new());
        } else if let Some(current) = stanzas.last_mut() {
            current.push_str(line);
            current.push('\n');
        }
    }
    stanzas.into_iter().filter(|s| !s.is_empty()).collect()
}

/// Parses one-line `sources.list` text: `deb [opt=val ...] uri suite component...`.
pub fn parse_one_line_sources(text: &str) -> Vec<AptSource> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next()?.trim();
            let (kind, rest) = line.split_once(char::is_whitespace)?;
            if kind != "deb" && kind != "deb-src" {
                return None;
            }
            let rest = rest.trim_start();
            let (options, rest) = match rest.strip_prefix('[') {
                Some(after) => {
                    let (options, rest) = after.split_once(']')?;
                    (options, rest)
                }
                None => ("", rest),
            };
            let signed_by = options
                .split_whitespace()
                .find_map(|option| option.strip_prefix("signed-by="))
                .map(str::to_string);
            let mut words = rest.split_whitespace();
            let uri = words.next()?.to_string();
            let suite = words.next()?.to_string();
            Some(AptSource {
                types: vec![kind.to_string()],
                uris: vec![uri],
                suites: vec![suite],
                components: words.map(str::to_string).collect(),
                signed_by,
                enabled: true,
            })
        })
        .collect()
}

/// Picks the Debian archive: an enabled `deb` source with component `main` and a plain release
/// suite (`bookworm`, `trixie`, `stable`, `sid`...). Suites with a dash (`-updates`,
/// `-security`, `-backports`) and security archives are other archives, not the main one.
pub fn find_debian_mirror(sources: &[AptSource]) -> Option<DebianMirror> {
    sources
        .iter()
        .filter(|s| s.enabled && s.types.iter().any(|t| t == "deb"))
        .filter(|s| s.components.iter().any(|c| c == "main"))
        .filter(|s| {
            s.suites
                .iter()
                .any(|suite| !suite.contains('-') && !suite.contains('/'))
        })
        .flat_map(|s| s.uris.iter().map(move |uri| (s, uri)))
        .find(|(_, uri)| {
            let uri = uri.trim_end_matches('/');
            !uri.ends_with("-security") && !uri.starts_with("cdrom:") && !uri.contains("ubuntu")
        })
        .map(|(source, uri)| DebianMirror {
            uri: uri.clone(),
            signed_by: source.signed_by.clone(),
        })
}

/// Reads the system's apt sources (read-only) and returns its Debian archive.
/// `UPSCHED_DEBIAN_MIRROR` overrides the lookup for machines without a Debian source.
pub fn system_debian_mirror() -> Result<DebianMirror, HarnessError> {
    if let Some(uri) = std::env::var("UPSCHED_DEBIAN_MIRROR")
        .ok()
        .filter(|v| !v.is_empty())
    {
        return Ok(DebianMirror {
            uri,
            signed_by: None,
        });
    }
    let mut sources = Vec::new();
    if let Ok(text) = std::fs::read_to_string("/etc/apt/sources.list") {
        sources.extend(parse_one_line_sources(&text));
    }
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            match path.extension().and_then(|e| e.to_str()) {
                Some("sources") => sources.extend(parse_deb822_sources(&text)),
                Some("list") => sources.extend(parse_one_line_sources(&text)),
                _ => {}
            }
        }
    }
    find_debian_mirror(&sources).ok_or(HarnessError::NoDebianMirror)
}

/// Renders a deb822 source for `suite` on `mirror`. deb822 (rather than one-line) keeps an
/// inline `Signed-By` key block intact.
pub fn render_deb822_source(mirror: &DebianMirror, suite: &str) -> String {
    let mut text = format!(
        "Types: deb\nURIs: {}\nSuites: {suite}\nComponents: main\n",
        mirror.uri
    );
    if let Some(signed_by) = &mirror.signed_by {
        let mut lines = signed_by.lines();
        if let Some(first) = lines.next() {
            text.push_str(&format!("Signed-By: {first}\n"));
        }
        for line in lines {
            // deb822 continuation lines start with a space; an empty line inside is written ` .`.
            let line = if line.is_empty() { "." } else { line };
            text.push_str(&format!(" {line}\n"));
        }
    }
    text
}

/// An apt configuration private to one directory: its own source list, lists and caches.
pub struct PrivateApt {
    apt_get: PathBuf,
    apt_cache: PathBuf,
    options: Vec<String>,
}

impl PrivateApt {
    /// Prepares `state_dir` to hold the apt state for `suite` of `mirror`.
    pub fn new(state_dir: &Path, mirror: &DebianMirror, suite: &str) -> anyhow::Result<Self> {
        let apt_get = find_tool("apt-get", "this needs a Debian-based host with apt")?;
        let apt_cache = find_tool("apt-cache", "this needs a Debian-based host with apt")?;
        let lists = state_dir.join("lists");
        let cache = state_dir.join("cache");
        std::fs::create_dir_all(lists.join("partial"))
            .and_then(|()| std::fs::create_dir_all(cache.join("archives/partial")))
            .with_context(|| format!("creating apt state under {}", state_dir.display()))?;
        // The `.sources` extension tells apt the file is deb822.
        let source_file = state_dir.join(format!("{suite}.sources"));
        std::fs::write(&source_file, render_deb822_source(mirror, suite))
            .with_context(|| format!("writing {}", source_file.display()))?;
        let empty_preferences = state_dir.join("preferences");
        std::fs::write(&empty_preferences, "")?;
        let options = [
            format!("Dir::Etc::sourcelist={}", source_file.display()),
            // A directory that does not exist: no system source parts are read.
            "Dir::Etc::sourceparts=-".to_string(),
            // System pinning must not pick the candidate from our private source.
            format!("Dir::Etc::preferences={}", empty_preferences.display()),
            "Dir::Etc::preferencesparts=-".to_string(),
            format!("Dir::State::lists={}", lists.display()),
            format!("Dir::Cache={}", cache.display()),
            // apt's download sandbox user `_apt` cannot write into a caller's directory; the
            // downloads are still verified against the archive's signed Release file.
            "APT::Sandbox::User=root".to_string(),
            // Only the package index is needed, not AppStream metadata or translations.
            "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".to_string(),
            "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false".to_string(),
            "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false".to_string(),
            "Acquire::Languages=none".to_string(),
        ]
        .into_iter()
        .flat_map(|option| ["-o".to_string(), option])
        .collect();
        Ok(Self {
            apt_get,
            apt_cache,
            options,
        })
    }

    /// `apt-get update` against the private source list only.
    pub fn update(&self) -> anyhow::Result<()> {
        run_checked(
            Command::new(&self.apt_get)
                .args(&self.options)
                .args(["-q", "update"]),
        )
        .context("downloading the package index of the Debian archive")?;
        Ok(())
    }

    /// The control record (`apt-cache show`) of the candidate version of `package`.
    pub fn show(&self, package: &str) -> anyhow::Result<String> {
        let output = run_checked(Command::new(&self.apt_cache).args(&self.options).args([
            "show",
            "--no-all-versions",
            package,
        ]))
        .with_context(|| format!("looking up package {package}"))?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Downloads the candidate .debs of `packages` into `dir` and returns their paths.
    pub fn download(&self, packages: &[String], dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
        run_checked(
            Command::new(&self.apt_get)
                .args(&self.options)
                .arg("-q")
                .arg("download")
                .args(packages)
                .current_dir(dir),
        )
        .with_context(|| format!("downloading {}", packages.join(", ")))?;
        let mut debs = Vec::new();
        for package in packages {
            let prefix = format!("{package}_");
            let found = std::fs::read_dir(dir)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
                })
                .with_context(|| format!("apt-get reported success but no {package}_*.deb"))?;
            debs.push(found);
        }
        Ok(debs)
    }
}

/// A field of a Debian control record (`Version`, `Depends`...), single-line fields only.
pub fn control_field<'a>(record: &'a str, name: &str) -> Option<&'a str> {
    record.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// Package names of a `Depends` value, alternatives flattened, version constraints dropped.
pub fn dependency_names(depends: &str) -> Vec<String> {
    depends
        .split([',', '|'])
        .filter_map(|item| item.split_whitespace().next())
        .map(|name| name.split(':').next().unwrap_or(name).to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOKWORM_DEB822: &str = "Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
# http://snapshot.debian.org/archive/debian-security/20250520T000000Z
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";

    #[test]
    fn deb822_picks_the_main_archive_not_security() {
        let sources = parse_deb822_sources(BOOKWORM_DEB822);
        assert_eq!(sources.len(), 2);
        let mirror = find_debian_mirror(&sources).unwrap();
        assert_eq!(mirror.uri, "http://deb.debian.org/debian");
        assert_eq!(
            mirror.signed_by.as_deref(),
            Some("/usr/share/keyrings/debian-archive-keyring.gpg")
        );
    }

    #[test]
    fn deb822_security_listed_first_is_skipped() {
        let text = "Types: deb\nURIs: http://security.example/debian-security\n\
                    Suites: trixie-security\nComponents: main\n\n\
                    Types: deb deb-src\nURIs: https://mirror.example/debian/\n\
                    Suites: trixie trixie-updates\nComponents: main contrib\n";
        let mirror = find_debian_mirror(&parse_deb822_sources(text)).unwrap();
        assert_eq!(mirror.uri, "https://mirror.example/debian/");
        assert_eq!(mirror.signed_by, None);
    }

    #[test]
    fn deb822_disabled_stanza_and_inline_key() {
        let text = "Enabled: no\nTypes: deb\nURIs: http://off.example/debian\nSuites: bookworm\n\
                    Components: main\n\n\
                    Types: deb\nURIs: http://on.example/debian\nSuites: bookworm\n\
                    Components: main\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n";
        let mirror = find_debian_mirror(&parse_deb822_sources(text)).unwrap();
        assert_eq!(mirror.uri, "http://on.example/debian");
        let key = mirror.signed_by.clone().unwrap();
        assert!(key.contains("BEGIN PGP PUBLIC KEY BLOCK"), "{key}");
        let rendered = render_deb822_source(&mirror, "sid");
        assert!(rendered.contains("Suites: sid\n"), "{rendered}");
        assert!(
            rendered.contains(" -----BEGIN PGP PUBLIC KEY BLOCK-----\n"),
            "{rendered}"
        );
    }

    #[test]
    fn one_line_sources_with_options_and_comments() {
        let text = "# comment\n\
                    deb-src http://src.example/debian bookworm main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main non-free # x\n\
                    deb http://m.example/debian-security bookworm-security main\n";
        let sources = parse_one_line_sources(text);
        assert_eq!(sources.len(), 3);
        let mirror = find_debian_mirror(&sources).unwrap();
        assert_eq!(
            mirror,
            DebianMirror {
                uri: "http://m.example/debian".into(),
                signed_by: Some("/k.gpg".into())
            }
        );
    }

    #[test]
    fn no_main_archive_means_none() {
        let text = "deb http://m.example/debian bookworm-backports main\n\
                    deb http://m.example/debian bookworm contrib\n\
                    garbage line\n[\n";
        assert_eq!(find_debian_mirror(&parse_one_line_sources(text)), None);
        assert_eq!(find_debian_mirror(&parse_deb822_sources("::\n\n")), None);
    }

    #[test]
    fn control_record_fields_and_dependencies() {
        let record = "Package: linux-image-cloud-amd64\nVersion: 7.2.13-1\n\
                      Depends: dracut | initramfs-tools (>= 0.120), linux-base-7.2.13+deb14-cloud-amd64 (= 7.2.13-1), linux-binary-7.2.13+deb14-cloud-amd64:amd64\n";
        assert_eq!(control_field(record, "version"), Some("7.2.13-1"));
        assert_eq!(control_field(record, "Missing"), None);
        let deps = dependency_names(control_field(record, "Depends").unwrap());
        assert_eq!(
            deps,
            [
                "dracut",
                "initramfs-tools",
                "linux-base-7.2.13+deb14-cloud-amd64",
                "linux-binary-7.2.13+deb14-cloud-amd64"
            ]
        );
    }
}
