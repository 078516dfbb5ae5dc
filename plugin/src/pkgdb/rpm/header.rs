//! rpm header blobs as the rpmdb stores them (rpm's `headerExport`, read from rpm's
//! `lib/header.c` as facts): big-endian `il` (entry count) and `dl` (data length), `il`
//! 16-byte entries `(tag, type, offset, count)`, then `dl` bytes of data. Strings are
//! NUL-terminated; integers are big-endian. Entries after the immutable region
//! ("dribble", e.g. `INSTALLTID`, `FILESTATES`) replace region entries of the same tag.

use std::collections::HashMap;
use std::path::Path;

use crate::pkgdb::error::{Error, Result};

pub const TAG_SIGMD5: u32 = 261;
pub const TAG_SHA1HEADER: u32 = 269;
pub const TAG_NAME: u32 = 1000;
pub const TAG_VERSION: u32 = 1001;
pub const TAG_RELEASE: u32 = 1002;
pub const TAG_EPOCH: u32 = 1003;
pub const TAG_GROUP: u32 = 1016;
pub const TAG_ARCH: u32 = 1022;
pub const TAG_PROVIDENAME: u32 = 1047;
pub const TAG_REQUIREFLAGS: u32 = 1048;
pub const TAG_REQUIRENAME: u32 = 1049;
pub const TAG_REQUIREVERSION: u32 = 1050;
pub const TAG_CONFLICTNAME: u32 = 1054;
pub const TAG_TRIGGERNAME: u32 = 1066;
pub const TAG_OBSOLETENAME: u32 = 1090;
pub const TAG_PROVIDEFLAGS: u32 = 1112;
pub const TAG_PROVIDEVERSION: u32 = 1113;
pub const TAG_BASENAMES: u32 = 1117;
pub const TAG_DIRNAMES: u32 = 1118;
pub const TAG_INSTALLTID: u32 = 1128;
pub const TAG_RECOMMENDNAME: u32 = 5046;
pub const TAG_SUGGESTNAME: u32 = 5049;
pub const TAG_SUPPLEMENTNAME: u32 = 5052;
pub const TAG_ENHANCENAME: u32 = 5055;
pub const TAG_FILETRIGGERNAME: u32 = 5069;
pub const TAG_FILETRIGGERINDEX: u32 = 5070;
pub const TAG_TRANSFILETRIGGERNAME: u32 = 5079;
pub const TAG_TRANSFILETRIGGERINDEX: u32 = 5080;

/// rpm's data types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Null,
    Char,
    Int8,
    Int16,
    Int32,
    Int64,
    String,
    Bin,
    StringArray,
    I18nString,
}

impl Type {
    fn from_raw(raw: u32) -> Option<Type> {
        Some(match raw {
            0 => Type::Null,
            1 => Type::Char,
            2 => Type::Int8,
            3 => Type::Int16,
            4 => Type::Int32,
            5 => Type::Int64,
            6 => Type::String,
            7 => Type::Bin,
            8 => Type::StringArray,
            9 => Type::I18nString,
            _ => return None,
        })
    }
}

/// One decoded entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Strings(Vec<String>),
    Ints(Vec<u64>),
    Bin(Vec<u8>),
    Null,
}

/// A parsed header; `blob` is kept verbatim for writing back.
#[derive(Debug, Clone)]
pub struct Header {
    pub blob: Vec<u8>,
    entries: HashMap<u32, (Type, Value)>,
}

const HEADER_TAGS_MAX: usize = 0xffff;
const HEADER_DATA_MAX: usize = 0x0fff_ffff;

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

impl Header {
    /// Parses a blob; `file` names the database in errors.
    pub fn parse(blob: Vec<u8>, file: &Path) -> Result<Header> {
        let bad = |offset: usize, reason: String| Error::BadBinary {
            file: file.to_path_buf(),
            offset,
            reason,
        };
        let il =
            be32(&blob, 0).ok_or_else(|| bad(0, "header shorter than 8 bytes".into()))? as usize;
        let dl =
            be32(&blob, 4).ok_or_else(|| bad(4, "header shorter than 8 bytes".into()))? as usize;
        if il == 0 || il > HEADER_TAGS_MAX || dl > HEADER_DATA_MAX {
            return Err(bad(
                0,
                format!("implausible header size (il {il}, dl {dl})"),
            ));
        }
        let data_start = 8 + il * 16;
        if blob.len() != data_start + dl {
            return Err(bad(
                0,
                format!(
                    "header of {} bytes, expected {} (il {il}, dl {dl})",
                    blob.len(),
                    data_start + dl
                ),
            ));
        }
        let data = &blob[data_start..];
        let mut entries = HashMap::new();
        for i in 0..il {
            let at = 8 + i * 16;
            let (Some(tag), Some(ty), Some(off), Some(count)) = (
                be32(&blob, at),
                be32(&blob, at + 4),
                be32(&blob, at + 8),
                be32(&blob, at + 12),
            ) else {
                return Err(bad(at, "truncated entry".into()));
            };
            let ty = Type::from_raw(ty)
                .ok_or_else(|| bad(at + 4, format!("unknown type {ty} of tag {tag}")))?;
            let (off, count) = (off as usize, count as usize);
            if off > dl {
                return Err(bad(
                    at + 8,
                    format!("tag {tag}: offset {off} beyond data ({dl})"),
                ));
            }
            // Region tags (62, 63, 64) describe the header itself: not data we index.
            if (61..=64).contains(&tag) {
                continue;
            }
            let value = decode(data, off, count, ty).ok_or_else(|| {
                bad(
                    data_start + off,
                    format!("tag {tag}: {count} item(s) of {ty:?} overrun the data"),
                )
            })?;
            // Later (dribble) entries replace earlier ones.
            entries.insert(tag, (ty, value));
        }
        Ok(Header { blob, entries })
    }

    pub fn get(&self, tag: u32) -> Option<&Value> {
        self.entries.get(&tag).map(|(_, v)| v)
    }

    pub fn type_of(&self, tag: u32) -> Option<Type> {
        self.entries.get(&tag).map(|(t, _)| *t)
    }

    pub fn strings(&self, tag: u32) -> &[String] {
        match self.get(tag) {
            Some(Value::Strings(s)) => s,
            _ => &[],
        }
    }

    pub fn string(&self, tag: u32) -> Option<&str> {
        self.strings(tag).first().map(String::as_str)
    }

    pub fn ints(&self, tag: u32) -> &[u64] {
        match self.get(tag) {
            Some(Value::Ints(v)) => v,
            _ => &[],
        }
    }

    pub fn name(&self) -> &str {
        self.string(TAG_NAME).unwrap_or("")
    }

    /// `[epoch:]version-release`.
    pub fn evr(&self) -> String {
        let vr = format!(
            "{}-{}",
            self.string(TAG_VERSION).unwrap_or(""),
            self.string(TAG_RELEASE).unwrap_or("")
        );
        match self.ints(TAG_EPOCH).first() {
            Some(e) => format!("{e}:{vr}"),
            None => vr,
        }
    }

    /// rpm's `(none)` for headers without an arch (gpg-pubkey).
    pub fn arch(&self) -> &str {
        self.string(TAG_ARCH).unwrap_or("(none)")
    }

    /// `name-[epoch:]version-release.arch`.
    pub fn nevra(&self) -> String {
        format!("{}-{}.{}", self.name(), self.evr(), self.arch())
    }

    /// SHA1HEADER (the digest of the immutable region), else a digest of the blob.
    pub fn identity(&self) -> String {
        match self.string(TAG_SHA1HEADER) {
            Some(s) => s.to_string(),
            None => crate::chain::sha256_hex(&self.blob),
        }
    }

    /// `(name, flags, version)` of each Requires.
    pub fn requires(&self) -> Vec<(String, u64, String)> {
        self.dependencies(TAG_REQUIRENAME, TAG_REQUIREFLAGS, TAG_REQUIREVERSION)
    }

    /// `(name, flags, version)` of each Provides.
    pub fn provides(&self) -> Vec<(String, u64, String)> {
        self.dependencies(TAG_PROVIDENAME, TAG_PROVIDEFLAGS, TAG_PROVIDEVERSION)
    }

    fn dependencies(&self, names: u32, flags: u32, versions: u32) -> Vec<(String, u64, String)> {
        let (flags, versions) = (self.ints(flags), self.strings(versions));
        self.strings(names)
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    n.clone(),
                    flags.get(i).copied().unwrap_or(0),
                    versions.get(i).cloned().unwrap_or_default(),
                )
            })
            .collect()
    }
}

fn decode(data: &[u8], off: usize, count: usize, ty: Type) -> Option<Value> {
    let ints = |width: usize| -> Option<Value> {
        let bytes = data.get(off..off.checked_add(count.checked_mul(width)?)?)?;
        Some(Value::Ints(
            bytes
                .chunks(width)
                .map(|c| c.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
                .collect(),
        ))
    };
    match ty {
        Type::Null => Some(Value::Null),
        Type::Char | Type::Int8 => ints(1),
        Type::Int16 => ints(2),
        Type::Int32 => ints(4),
        Type::Int64 => ints(8),
        Type::Bin => Some(Value::Bin(data.get(off..off.checked_add(count)?)?.to_vec())),
        Type::String | Type::StringArray | Type::I18nString => {
            let n = if ty == Type::String { 1 } else { count };
            let mut out = Vec::with_capacity(n.min(4096));
            let mut at = off;
            for _ in 0..n {
                let rest = data.get(at..)?;
                let end = rest.iter().position(|&b| b == 0)?;
                out.push(String::from_utf8_lossy(&rest[..end]).into_owned());
                at += end + 1;
            }
            Some(Value::Strings(out))
        }
    }
}

/// Builds a blob from `(tag, type, value)` entries (tests and synthetic databases).
pub fn build(entries: &[(u32, Type, Value)]) -> Vec<u8> {
    let mut index = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    for (tag, ty, value) in entries {
        let width = match ty {
            Type::Int16 => 2,
            Type::Int32 => 4,
            Type::Int64 => 8,
            _ => 1,
        };
        while !data.len().is_multiple_of(width) {
            data.push(0);
        }
        let offset = data.len() as u32;
        let count = match value {
            Value::Strings(s) => {
                for x in s {
                    data.extend_from_slice(x.as_bytes());
                    data.push(0);
                }
                s.len()
            }
            Value::Ints(v) => {
                for x in v {
                    data.extend_from_slice(&x.to_be_bytes()[8 - width..]);
                }
                v.len()
            }
            Value::Bin(b) => {
                data.extend_from_slice(b);
                b.len()
            }
            Value::Null => 0,
        };
        let raw_ty = match ty {
            Type::Null => 0u32,
            Type::Char => 1,
            Type::Int8 => 2,
            Type::Int16 => 3,
            Type::Int32 => 4,
            Type::Int64 => 5,
            Type::String => 6,
            Type::Bin => 7,
            Type::StringArray => 8,
            Type::I18nString => 9,
        };
        for v in [*tag, raw_ty, offset, count as u32] {
            index.extend_from_slice(&v.to_be_bytes());
        }
    }
    let mut blob = Vec::new();
    blob.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    blob.extend_from_slice(&(data.len() as u32).to_be_bytes());
    blob.extend_from_slice(&index);
    blob.extend_from_slice(&data);
    blob
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn sample() -> Vec<u8> {
        build(&[
            (TAG_NAME, Type::String, Value::Strings(vec!["foo".into()])),
            (
                TAG_VERSION,
                Type::String,
                Value::Strings(vec!["1.0".into()]),
            ),
            (TAG_RELEASE, Type::String, Value::Strings(vec!["1".into()])),
            (TAG_EPOCH, Type::Int32, Value::Ints(vec![2])),
            (
                TAG_ARCH,
                Type::String,
                Value::Strings(vec!["noarch".into()]),
            ),
            (
                TAG_REQUIRENAME,
                Type::StringArray,
                Value::Strings(vec!["bar".into(), "rpmlib(X)".into()]),
            ),
            (
                TAG_REQUIREFLAGS,
                Type::Int32,
                Value::Ints(vec![12, 1 << 24]),
            ),
            (TAG_SIGMD5, Type::Bin, Value::Bin(vec![1, 2, 3])),
        ])
    }

    #[test]
    fn parses_built_header() {
        let h = Header::parse(sample(), Path::new("db")).unwrap();
        assert_eq!(h.nevra(), "foo-2:1.0-1.noarch");
        assert_eq!(h.requires()[0], ("bar".into(), 12, String::new()));
        assert_eq!(h.get(TAG_SIGMD5), Some(&Value::Bin(vec![1, 2, 3])));
    }

    #[test]
    fn malformed_headers_are_errors_not_panics() {
        let blob = sample();
        for cut in [0, 3, 8, 20, blob.len() - 1] {
            assert!(
                Header::parse(blob[..cut].to_vec(), Path::new("db")).is_err(),
                "cut {cut}"
            );
        }
        let mut bad = blob.clone();
        bad[8 + 8..8 + 12].copy_from_slice(&0x7fff_0000u32.to_be_bytes()); // offset of entry 0
        let err = Header::parse(bad, Path::new("/r/rpmdb.sqlite"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("/r/rpmdb.sqlite: at byte 16: tag 1000: offset"),
            "{err}"
        );
        // Random corruption never panics.
        let mut rng = crate::pkgdb::testgen::Rng::new(5);
        for _ in 0..2000 {
            let mut b = blob.clone();
            let i = rng.below(b.len());
            b[i] = rng.next() as u8;
            let _ = Header::parse(b, Path::new("db"));
        }
    }
}
