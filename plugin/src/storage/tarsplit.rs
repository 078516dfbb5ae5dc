//! A small layer's tar stream and its tar-split, the two things containers-storage needs to
//! serve a layer it did not extract itself (`podman save`/`push` rebuild the tar from the
//! tar-split plus the diff dir).
//!
//! The tar (ustar/GNU headers, numeric owners, no-follow) is built in memory, then split
//! the way tar-split's disassembler does: the raw bytes between file payloads are
//! "segment" entries (type 2, base64 payload), each file is a "file" entry (type 1) naming
//! the path, its size and the CRC-64 (Go's `crc64.ISO`, big-endian) of its content. The
//! result is gzipped JSON lines, `overlay-layers/<id>.tar-split.gz`.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::chain;
use crate::error::{io_err, Error, Result};
use crate::storage::bigdata::base64_std;

/// A layer tar built from a directory.
#[derive(Debug, Clone)]
pub struct LayerTar {
    pub bytes: Vec<u8>,
    /// `sha256:<hex>` of the uncompressed tar: the DiffID.
    pub diff_id: String,
}

/// Tars `dir` (its contents, not the directory itself), entries in name order.
pub fn tar_directory(dir: &Path) -> Result<LayerTar> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Complete);
    let mut paths = Vec::new();
    collect(dir, Path::new(""), &mut paths)?;
    for rel in &paths {
        builder
            .append_path_with_name(dir.join(rel), rel)
            .map_err(io_err(format!("adding {} to a layer tar", rel.display())))?;
    }
    let bytes = builder
        .into_inner()
        .map_err(io_err("finishing a layer tar".to_string()))?;
    let diff_id = format!("sha256:{}", chain::sha256_hex(&bytes));
    Ok(LayerTar { bytes, diff_id })
}

fn collect(root: &Path, rel: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
    let dir = root.join(rel);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map_err(io_err(format!("reading {}", dir.display())))?
        .collect::<std::io::Result<_>>()
        .map_err(io_err(format!("reading {}", dir.display())))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let child = rel.join(entry.file_name());
        out.push(child.clone());
        let kind = entry
            .file_type()
            .map_err(io_err(format!("stat of {}", dir.join(&child).display())))?;
        if kind.is_dir() {
            collect(root, &child, out)?;
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct SplitEntry {
    #[serde(rename = "type")]
    kind: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name_raw: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    payload: Option<String>,
    position: usize,
}

const CRC64_ISO: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_GO_ISO);

/// The gzipped tar-split of `tar` (a complete archive).
pub fn tar_split(tar: &[u8]) -> Result<Vec<u8>> {
    let bad = |reason: String| Error::BadMetadata {
        path: "layer tar".into(),
        reason,
    };
    let mut lines = Vec::new();
    let mut position = 0usize;
    let push = |entry: SplitEntry, lines: &mut Vec<u8>| -> Result<()> {
        serde_json::to_writer(&mut *lines, &entry).map_err(|e| bad(e.to_string()))?;
        lines.push(b'\n');
        Ok(())
    };
    let mut archive = tar::Archive::new(tar);
    let mut done = 0usize;
    for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
        let entry = entry.map_err(|e| bad(e.to_string()))?;
        let start = usize::try_from(entry.raw_file_position()).map_err(|e| bad(e.to_string()))?;
        let size = entry.size();
        let len = usize::try_from(size).map_err(|e| bad(e.to_string()))?;
        let name_bytes = entry.path_bytes().into_owned();
        let segment = tar
            .get(done..start)
            .ok_or_else(|| bad("entry outside the archive".into()))?;
        push(segment_entry(segment, position), &mut lines)?;
        position += 1;
        let content = tar
            .get(start..start + len)
            .ok_or_else(|| bad("entry content outside the archive".into()))?;
        let (name, name_raw) = match String::from_utf8(name_bytes) {
            Ok(name) => (Some(name), None),
            Err(raw) => (None, Some(base64_std(raw.as_bytes()))),
        };
        push(
            SplitEntry {
                kind: 1,
                name,
                name_raw,
                size: (size > 0).then_some(size),
                payload: (size > 0).then(|| base64_std(&CRC64_ISO.checksum(content).to_be_bytes())),
                position,
            },
            &mut lines,
        )?;
        position += 1;
        done = start + len;
    }
    let rest = tar.get(done..).unwrap_or_default();
    push(segment_entry(rest, position), &mut lines)?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&lines)
        .and_then(|()| gz.finish())
        .map_err(io_err("compressing a tar-split".to_string()))
}

fn segment_entry(bytes: &[u8], position: usize) -> SplitEntry {
    SplitEntry {
        kind: 2,
        name: None,
        name_raw: None,
        size: None,
        payload: Some(base64_std(bytes)),
        position,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn crc_is_gos_crc64_iso() {
        // A real containers-storage tar-split: file "d/x" = "x\n" has payload "YVMQAAAAAAA=".
        assert_eq!(
            base64_std(&CRC64_ISO.checksum(b"x\n").to_be_bytes()),
            "YVMQAAAAAAA="
        );
    }

    #[test]
    fn split_reassembles_to_the_tar() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("etc/deep")).unwrap();
        std::fs::write(tmp.path().join("etc/passwd"), "root:x:0:0\n").unwrap();
        std::fs::write(tmp.path().join("etc/.wh.gone"), "").unwrap();
        let long = "n".repeat(150);
        std::fs::write(tmp.path().join("etc/deep").join(&long), "long\n").unwrap();
        let tar = tar_directory(tmp.path()).unwrap();
        let gz = tar_split(&tar.bytes).unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut text)
            .unwrap();
        // Reassemble as tar-split's assembler does: segments verbatim, files from disk.
        let mut out = Vec::new();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            match v["type"].as_u64().unwrap() {
                2 => out.extend(decode64(v["payload"].as_str().unwrap())),
                1 if v["size"].is_u64() => {
                    let path = tmp.path().join(v["name"].as_str().unwrap());
                    out.extend(std::fs::read(path).unwrap());
                }
                _ => {}
            }
        }
        assert_eq!(out, tar.bytes);
        assert!(text.contains("\"name\":\"etc/.wh.gone\""));
        assert!(text.contains(&long));
    }

    fn decode64(s: &str) -> Vec<u8> {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut bits = 0u32;
        let mut n = 0;
        let mut out = Vec::new();
        for c in s.bytes().filter(|c| *c != b'=') {
            bits = (bits << 6) | A.iter().position(|x| *x == c).unwrap() as u32;
            n += 6;
            if n >= 8 {
                n -= 8;
                out.push((bits >> n) as u8);
            }
        }
        out
    }
}
