//! vmlinux.h for the BPF host scheduler: the uncompressed vmlinux ELF is taken out of the
//! bzImage, `bpftool` dumps its BTF as C, and the BTF is checked for sched_ext.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::kernel::Kernel;
use crate::tools::{find_tool, progress, run_checked};

const ZSTD_FRAME_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const ELF_MAGIC: [u8; 4] = [0x7f, b'E', b'L', b'F'];
const BPFTOOL_HINT: &str = "apt-get install bpftool";

/// What the kernel's BTF says about sched_ext, for API-generation detection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BtfSummary {
    pub has_sched_ext_ops: bool,
    /// Every `scx_bpf_*` function in the BTF, sorted.
    pub scx_kfuncs: Vec<String>,
}

impl BtfSummary {
    /// Kernels 6.13+ renamed `scx_bpf_dispatch*` to `scx_bpf_dsq_insert*`.
    pub fn api_generation(&self) -> &'static str {
        let has = |name: &str| self.scx_kfuncs.iter().any(|k| k == name);
        match (has("scx_bpf_dsq_insert"), has("scx_bpf_dispatch")) {
            (true, true) => "dsq_insert (6.13+, old scx_bpf_dispatch names still present)",
            (true, false) => "dsq_insert (6.13+)",
            (false, true) => "dispatch (6.12)",
            (false, false) => "unknown (neither scx_bpf_dsq_insert nor scx_bpf_dispatch)",
        }
    }
}

/// The generated header and what was learnt from the BTF.
#[derive(Debug, Clone)]
pub struct VmlinuxArtifacts {
    pub vmlinux: PathBuf,
    pub vmlinux_h: PathBuf,
    pub btf: BtfSummary,
}

/// Finds the compressed kernel in a bzImage. The setup header's `payload_offset` (0x248, relative
/// to the protected-mode code after the `setup_sects` sectors) is exact; scanning for the zstd
/// magic is the fallback for images whose header lacks it.
pub fn zstd_payload(bzimage: &[u8]) -> anyhow::Result<&[u8]> {
    let from_header = (|| {
        if bzimage.get(0x202..0x206)? != b"HdrS" {
            return None;
        }
        let setup_sectors = match *bzimage.get(0x1f1)? {
            0 => 4,
            n => n as usize,
        };
        let offset = u32::from_le_bytes(bzimage.get(0x248..0x24c)?.try_into().ok()?) as usize;
        let start = (setup_sectors + 1) * 512 + offset;
        let payload = bzimage.get(start..)?;
        payload.starts_with(&ZSTD_FRAME_MAGIC).then_some(payload)
    })();
    if let Some(payload) = from_header {
        return Ok(payload);
    }
    bzimage
        .windows(ZSTD_FRAME_MAGIC.len())
        .position(|window| window == ZSTD_FRAME_MAGIC)
        .map(|start| &bzimage[start..])
        .context(
            "no zstd-compressed payload in this bzImage (magic 28 b5 2f fd not found); \
             only zstd kernels are supported for vmlinux extraction",
        )
}

/// Decompresses the first zstd frame of `payload` into `out`. The kernel build appends the
/// uncompressed size after the frame; stopping after one frame ignores it.
pub fn decompress_one_frame(payload: &[u8], out: &mut impl Write) -> anyhow::Result<u64> {
    let mut decoder = zstd::stream::read::Decoder::with_buffer(payload)
        .context("starting zstd decompression")?
        .single_frame();
    std::io::copy(&mut decoder, out).context("decompressing the kernel payload (zstd)")
}

/// Writes the uncompressed vmlinux of `bzimage` to `out_path`.
pub fn extract_vmlinux(bzimage: &Path, out_path: &Path) -> anyhow::Result<()> {
    let image = std::fs::read(bzimage).with_context(|| format!("reading {}", bzimage.display()))?;
    let payload = zstd_payload(&image)?;
    let temp = out_path.with_extension("partial");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&temp)?);
    decompress_one_frame(payload, &mut file)?;
    file.flush()?;
    drop(file);
    let mut magic = [0u8; 4];
    std::fs::File::open(&temp)?.read_exact(&mut magic)?;
    if magic != ELF_MAGIC {
        anyhow::bail!(
            "the decompressed kernel payload of {} is not an ELF file",
            bzimage.display()
        );
    }
    std::fs::rename(&temp, out_path)?;
    Ok(())
}

/// Parses `bpftool btf dump` raw output (`[id] KIND 'name' ...` lines).
pub fn summarize_btf_dump(dump: impl BufRead) -> anyhow::Result<BtfSummary> {
    let mut summary = BtfSummary {
        has_sched_ext_ops: false,
        scx_kfuncs: Vec::new(),
    };
    for line in dump.lines() {
        let line = line.context("reading bpftool output")?;
        let Some((_, rest)) = line.split_once("] ") else {
            continue;
        };
        let mut words = rest.splitn(3, ' ');
        let (Some(kind), Some(quoted)) = (words.next(), words.next()) else {
            continue;
        };
        let name = quoted.trim_matches('\'');
        match kind {
            "STRUCT" if name == "sched_ext_ops" => summary.has_sched_ext_ops = true,
            "FUNC" if name.starts_with("scx_bpf_") => summary.scx_kfuncs.push(name.to_string()),
            _ => {}
        }
    }
    summary.scx_kfuncs.sort();
    summary.scx_kfuncs.dedup();
    Ok(summary)
}

fn btf_summary_of(bpftool: &Path, vmlinux: &Path) -> anyhow::Result<BtfSummary> {
    // The raw dump is ~100 MB of text: stream it instead of collecting it.
    let mut child = Command::new(bpftool)
        .args(["btf", "dump", "file"])
        .arg(vmlinux)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting bpftool")?;
    let stdout = child.stdout.take().context("bpftool stdout")?;
    let summary = summarize_btf_dump(BufReader::new(stdout))?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        anyhow::bail!(
            "`bpftool btf dump file {}` failed: {}",
            vmlinux.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(summary)
}

/// Produces (or re-uses) vmlinux, vmlinux.h and the BTF summary beside a cached kernel; for an
/// `UPSCHED_KERNEL` override they go to `fallback_dir`.
pub fn ensure_vmlinux_h(kernel: &Kernel, fallback_dir: &Path) -> anyhow::Result<VmlinuxArtifacts> {
    let dir = kernel
        .cache_dir
        .clone()
        .unwrap_or_else(|| fallback_dir.to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let vmlinux = dir.join("vmlinux");
    let vmlinux_h = dir.join("vmlinux.h");
    let summary_path = dir.join("btf.json");
    // An override kernel may change between runs at the same path: never trust its old outputs.
    let reusable = kernel.cache_dir.is_some();

    if !(reusable && vmlinux.is_file()) {
        progress(format!(
            "extracting vmlinux from {}",
            kernel.bzimage.display()
        ));
        extract_vmlinux(&kernel.bzimage, &vmlinux)?;
    }
    let bpftool = find_tool("bpftool", BPFTOOL_HINT)?;
    if !(reusable && vmlinux_h.is_file()) {
        progress("generating vmlinux.h with bpftool");
        let output = run_checked(
            Command::new(&bpftool)
                .args(["btf", "dump", "file"])
                .arg(&vmlinux)
                .args(["format", "c"]),
        )?;
        let temp = vmlinux_h.with_extension("h.partial");
        std::fs::write(&temp, &output.stdout)?;
        std::fs::rename(&temp, &vmlinux_h)?;
    }
    let cached_summary = std::fs::read_to_string(&summary_path)
        .ok()
        .filter(|_| reusable)
        .and_then(|text| serde_json::from_str::<BtfSummary>(&text).ok());
    let btf = match cached_summary {
        Some(summary) => summary,
        None => {
            progress("checking the kernel BTF for sched_ext");
            let summary = btf_summary_of(&bpftool, &vmlinux)?;
            std::fs::write(
                &summary_path,
                serde_json::to_string_pretty(&summary)? + "\n",
            )?;
            summary
        }
    };
    if !btf.has_sched_ext_ops {
        anyhow::bail!(
            "the BTF of kernel {} has no `struct sched_ext_ops`: this kernel cannot load a \
             sched_ext scheduler",
            kernel.release
        );
    }
    Ok(VmlinuxArtifacts {
        vmlinux,
        vmlinux_h,
        btf,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_found_through_header_and_by_scanning() {
        let mut image = vec![0u8; 4096];
        image[0x1f1] = 1; // one setup sector: protected-mode code starts at 1024
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x248..0x24c].copy_from_slice(&100u32.to_le_bytes());
        image[1124..1128].copy_from_slice(&ZSTD_FRAME_MAGIC);
        // A decoy magic before the real payload is ignored when the header points elsewhere.
        image[600..604].copy_from_slice(&ZSTD_FRAME_MAGIC);
        assert_eq!(zstd_payload(&image).unwrap().len(), 4096 - 1124);
        image[0x202] = 0; // no header: scanning finds the first magic
        assert_eq!(zstd_payload(&image).unwrap().len(), 4096 - 600);
        assert!(zstd_payload(&[0u8; 64]).is_err());
    }

    #[test]
    fn one_frame_is_decompressed_and_the_size_trailer_ignored() {
        let original = b"\x7fELF and the rest of a kernel".repeat(100);
        let mut payload = zstd::encode_all(&original[..], 3).unwrap();
        payload.extend_from_slice(&(original.len() as u32).to_le_bytes());
        let mut out = Vec::new();
        decompress_one_frame(&payload, &mut out).unwrap();
        assert_eq!(out, original);
        assert!(decompress_one_frame(b"garbage!", &mut Vec::new()).is_err());
    }

    #[test]
    fn btf_dump_summary() {
        let dump = "[1] INT 'int' size=4 bits_offset=0 nr_bits=32 encoding=SIGNED\n\
                    [2] STRUCT 'sched_ext_ops' size=352 vlen=33\n\
                    \t'select_cpu' type_id=3 bits_offset=0\n\
                    [9] FUNC 'scx_bpf_dsq_insert' type_id=8 linkage=static\n\
                    [10] FUNC 'scx_bpf_create_dsq' type_id=8 linkage=static\n\
                    [11] FUNC 'scx_bpf_dsq_insert' type_id=8 linkage=static\n\
                    [12] FUNC_PROTO '(anon)' ret_type_id=0 vlen=0\n";
        let summary = summarize_btf_dump(dump.as_bytes()).unwrap();
        assert!(summary.has_sched_ext_ops);
        assert_eq!(
            summary.scx_kfuncs,
            ["scx_bpf_create_dsq", "scx_bpf_dsq_insert"]
        );
        assert_eq!(summary.api_generation(), "dsq_insert (6.13+)");
        let old = summarize_btf_dump("[5] FUNC 'scx_bpf_dispatch' type_id=1\n".as_bytes()).unwrap();
        assert!(!old.has_sched_ext_ops);
        assert_eq!(old.api_generation(), "dispatch (6.12)");
    }
}
