//! `upsched sdk export DIR`: the kit for writing a policy without the source tree: the ABI
//! headers built into this binary, a template policy and a Makefile with the build's flags.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum SdkAction {
    /// Write include/upsched.h, include/upsched_sdk.h, policy.bpf.c (a template) and a
    /// Makefile into DIR; `make` there builds policy.bpf.o with clang-19.
    ///
    /// Refuses to overwrite a file unless --force is given (then nothing else in DIR is
    /// touched). Prints the files written.
    Export {
        dir: PathBuf,
        /// Overwrite files of the same names.
        #[arg(long)]
        force: bool,
    },
}

const TEMPLATE: &str = include_str!("../sdk/policy.bpf.c");
const MAKEFILE: &str = include_str!("../sdk/Makefile.in");

/// The files of the kit, by path relative to the export directory.
fn files() -> Vec<(PathBuf, String)> {
    let mut files: Vec<(PathBuf, String)> = upsched_abi::HEADERS
        .iter()
        .map(|(name, text)| (Path::new("include").join(name), text.to_string()))
        .collect();
    files.push(("policy.bpf.c".into(), TEMPLATE.to_string()));
    let flags = upsched_build::bpf::BPF_CFLAGS.join(" ");
    files.push(("Makefile".into(), MAKEFILE.replace("@CFLAGS@", &flags)));
    files
}

pub fn run(action: &SdkAction) -> anyhow::Result<ExitCode> {
    let SdkAction::Export { dir, force } = action;
    let files = files();
    if !force {
        let existing: Vec<String> = files
            .iter()
            .map(|(path, _)| dir.join(path))
            .filter(|path| path.exists())
            .map(|path| path.display().to_string())
            .collect();
        if !existing.is_empty() {
            bail!(
                "would overwrite {} (use --force to replace them)",
                existing.join(", ")
            );
        }
    }
    for (path, text) in &files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
