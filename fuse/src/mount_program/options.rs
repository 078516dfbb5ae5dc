//! The `-o` option grammar of fuse-overlayfs, as containers-storage and `mount.fuse3` use it.
//!
//! Options are comma separated; double quotes protect commas (`context="a,b"`) and a
//! backslash protects the next character from splitting (`lowerdir=a\:b`, `x\,y`).
//! Values are checked here and parsed straight into the filesystem's [`OverlayConfig`];
//! layer paths are resolved later (see `layers`).

use std::time::Duration;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::{IdRange, OverlayConfig, StackSpec, XattrPermissions};

use super::layers;

/// What the `-o` strings said.
#[derive(Debug, Clone)]
pub struct ParsedOptions {
    /// The filesystem's config. Its stack holds the layer paths as given (escapes
    /// removed, `lowerdir=` top first), resolved later; `allow_other` is set only when an
    /// option asks for it (root's default is added when mounting).
    pub config: OverlayConfig,
    /// Generic `ro`: serve the merged tree read-only even when an upper is given.
    pub read_only: bool,
    /// One line per option that was ignored, for the caller to log.
    pub warnings: Vec<String>,
}

impl Default for ParsedOptions {
    fn default() -> Self {
        let mut config = OverlayConfig::new(StackSpec {
            lowers: Vec::new(),
            upper: None,
            work: None,
        });
        config.allow_other = false;
        Self {
            config,
            read_only: false,
            warnings: Vec::new(),
        }
    }
}

/// fuse-overlayfs options that have no counterpart here: accepted with a warning.
const IGNORED_OVERLAY_OPTIONS: &[&str] = &[
    "threaded",
    "writeback",
    "fast_ino",
    "xino",
    "ino32_t",
    "static_nlink",
    "noxattrs",
    "noacl",
    "plugins",
    "metacopy",
    "userxattr",
    "index",
    "nfs_export",
    // libfuse high-level options that would change what files look like.
    "use_ino",
    "readdir_ino",
    "direct_io",
    "hard_remove",
    "umask",
    "uid",
    "gid",
    "entry_timeout",
    "negative_timeout",
    "attr_timeout",
    "ac_attr_timeout",
];

/// Generic mount and libfuse options that need nothing from us: accepted silently.
const ACCEPTED_GENERIC_OPTIONS: &[&str] = &[
    "rw",
    "defaults",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "nofail",
    "_netdev",
    "async",
    "sync",
    "dirsync",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "lazytime",
    "nolazytime",
    "diratime",
    "nodiratime",
    "mand",
    "nomand",
    "silent",
    "loud",
    "kernel_cache",
    "auto_cache",
    "noauto_cache",
    "max_write",
    "max_read",
    "max_readahead",
    "max_background",
    "congestion_threshold",
    "async_read",
    "sync_read",
    "atomic_o_trunc",
    "big_writes",
    "splice_read",
    "no_splice_read",
    "splice_write",
    "no_splice_write",
    "splice_move",
    "no_splice_move",
    "subtype",
    "blkdev",
    "blksize",
    "debug",
    "clone_fd",
    "max_idle_threads",
    "max_threads",
    "auto_unmount",
    "nonempty",
    "intr",
    "intr_signal",
    "modules",
];

/// Parses every `-o` string in order; later options override earlier ones.
pub fn parse(option_strings: &[String]) -> Result<ParsedOptions> {
    let mut options = ParsedOptions::default();
    for string in option_strings {
        for option in split_options(string)? {
            apply(&mut options, &option)?;
        }
    }
    let stack = &mut options.config.stack;
    if stack.lowers.is_empty() {
        bail!("missing lowerdir=: at least one lower layer is needed");
    }
    if stack.upper.is_some() && stack.work.is_none() {
        bail!("upperdir= given without workdir=");
    }
    if stack.upper.is_none() && stack.work.is_some() {
        stack.work = None;
        options
            .warnings
            .push("workdir= without upperdir= is ignored: the mount is read-only".into());
    }
    Ok(options)
}

/// Splits one `-o` string at commas outside double quotes and not escaped by a backslash.
///
/// Quotes stay in the option (the value parser strips them); a backslash before a comma
/// is removed, any other backslash is kept for the value parser (`lowerdir` uses `\:`).
pub fn split_options(string: &str) -> Result<Vec<String>> {
    let mut options = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    let mut chars = string.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(',') => current.push(','),
                Some(next) => {
                    current.push('\\');
                    current.push(next);
                }
                None => current.push('\\'),
            },
            '"' => {
                in_quotes = !in_quotes;
                current.push('"');
            }
            ',' if !in_quotes => {
                if !current.is_empty() {
                    options.push(std::mem::take(&mut current));
                }
            }
            _ => current.push(c),
        }
    }
    if in_quotes {
        bail!("unbalanced double quote in options {string:?}");
    }
    if !current.is_empty() {
        options.push(current);
    }
    Ok(options)
}

/// Applies one `key[=value]` option.
fn apply(options: &mut ParsedOptions, option: &str) -> Result<()> {
    let (key, value) = match option.split_once('=') {
        Some((key, value)) => (key, Some(value)),
        None => (option, None),
    };
    let need = |value: Option<&str>| -> Result<String> {
        match value {
            Some(v) if !v.is_empty() => Ok(v.to_string()),
            _ => bail!("option {key}= needs a value"),
        }
    };
    let flag = |set: &mut bool, on: bool| -> Result<()> {
        if value.is_some() {
            bail!("option {key} takes no value");
        }
        *set = on;
        Ok(())
    };
    let config = &mut options.config;
    match key {
        "lowerdir" => {
            let lowers = layers::split_lowerdir(&need(value)?)?;
            config.stack.lowers = lowers.into_iter().map(PathBuf::from).collect();
        }
        "upperdir" => config.stack.upper = Some(layers::unescape(&need(value)?).into()),
        "workdir" => config.stack.work = Some(layers::unescape(&need(value)?).into()),
        "context" => config.context = Some(unquote(&need(value)?)?),
        "uidmapping" => config.uid_map = parse_id_map(key, &need(value)?)?,
        "gidmapping" => config.gid_map = parse_id_map(key, &need(value)?)?,
        "squash_to_root" => {
            if value.is_some() {
                bail!("option squash_to_root takes no value");
            }
            config.squash_uid = Some(0);
            config.squash_gid = Some(0);
        }
        "squash_to_uid" => config.squash_uid = Some(parse_id(key, &need(value)?)?),
        "squash_to_gid" => config.squash_gid = Some(parse_id(key, &need(value)?)?),
        "xattr_permissions" => {
            config.xattr_permissions = match need(value)?.as_str() {
                "0" => XattrPermissions::Passthrough,
                "1" => XattrPermissions::Security,
                "2" => XattrPermissions::ContainersUser,
                other => bail!("xattr_permissions={other}: expected 0, 1 or 2"),
            }
        }
        "redirect_dir" => {
            config.redirect_dir = match need(value)?.as_str() {
                "on" => true,
                "off" | "follow" => false,
                other => bail!(
                    "redirect_dir={other}: expected on or off (follow = off; existing \
                     redirects are always followed)"
                ),
            }
        }
        "volatile" => flag(&mut config.fsync, false)?,
        "fsync" => config.fsync = parse_bool(key, &need(value)?)?,
        "timeout" => {
            let timeout = parse_timeout(&need(value)?)?;
            config.entry_timeout = timeout;
            config.attr_timeout = timeout;
        }
        "passthrough" => config.passthrough = parse_bool(key, &need(value)?)?,
        "threads" => {
            let text = need(value)?;
            let threads = text
                .parse::<usize>()
                .ok()
                .filter(|n| *n <= 1024)
                .with_context(|| format!("threads={text}: expected a number from 0 to 1024"))?;
            config.threads = threads;
        }
        "fsname" => config.fs_name = unquote(&need(value)?)?,
        "ro" => flag(&mut options.read_only, true)?,
        "allow_other" | "allow_root" => {
            if value.is_some() {
                bail!("option {key} takes no value");
            }
            config.allow_other = true;
        }
        "default_permissions" => flag(&mut config.default_permissions, true)?,
        "atime" => flag(&mut config.noatime, false)?,
        "noatime" => flag(&mut config.noatime, true)?,
        "dev" => flag(&mut config.nodev, false)?,
        "nodev" => flag(&mut config.nodev, true)?,
        "suid" => flag(&mut config.nosuid, false)?,
        "nosuid" => flag(&mut config.nosuid, true)?,
        "exec" => flag(&mut config.noexec, false)?,
        "noexec" => flag(&mut config.noexec, true)?,
        _ if ACCEPTED_GENERIC_OPTIONS.contains(&key) || key.starts_with("x-") => {}
        _ if IGNORED_OVERLAY_OPTIONS.contains(&key) => options.warnings.push(format!(
            "option {option:?} has no effect in rebasefs, ignored"
        )),
        _ => options
            .warnings
            .push(format!("unknown option {option:?} ignored")),
    }
    Ok(())
}

/// Removes one pair of surrounding double quotes (`"a,b"` -> `a,b`).
fn unquote(value: &str) -> Result<String> {
    match value.strip_prefix('"') {
        Some(inner) => match inner.strip_suffix('"') {
            Some(inner) if !inner.contains('"') => Ok(inner.to_string()),
            _ => bail!("badly quoted value {value:?}"),
        },
        None if value.contains('"') => bail!("badly quoted value {value:?}"),
        None => Ok(value.to_string()),
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => bail!("{key}={value}: expected 0 or 1"),
    }
}

fn parse_id(key: &str, value: &str) -> Result<u32> {
    value
        .parse::<u32>()
        .ok()
        .filter(|id| *id != u32::MAX)
        .with_context(|| format!("{key}={value}: expected a numeric id"))
}

/// Parses `C:H:S[:C:H:S...]` (container id, host id, size) into ranges.
pub fn parse_id_map(key: &str, value: &str) -> Result<Vec<IdRange>> {
    // containers-storage writes each triple with a leading ':' (`uidmapping=:0:1:1000` for
    // `podman run --uidmap 0:1:1000`); fuse-overlayfs skips the empty field, so do we.
    let fields: Vec<&str> = value
        .strip_prefix(':')
        .unwrap_or(value)
        .split(':')
        .collect();
    if !fields.len().is_multiple_of(3) {
        bail!("{key}={value}: expected container:host:size triples separated by ':'");
    }
    let number = |text: &str| -> Result<u64> {
        text.parse::<u32>()
            .map(u64::from)
            .with_context(|| format!("{key}={value}: {text:?} is not a number"))
    };
    let mut ranges = Vec::with_capacity(fields.len() / 3);
    for triple in fields.chunks_exact(3) {
        let (container, host, size) = match triple {
            [c, h, s] => (number(c)?, number(h)?, number(s)?),
            _ => bail!("{key}={value}: incomplete triple"),
        };
        if size == 0 {
            bail!("{key}={value}: a range has size 0");
        }
        let limit = u64::from(u32::MAX) + 1;
        if container + size > limit || host + size > limit {
            bail!("{key}={value}: a range goes past the largest id");
        }
        ranges.push(IdRange {
            // Checked above: both fit in u32.
            container: u32::try_from(container)?,
            host: u32::try_from(host)?,
            size: u32::try_from(size)?,
        });
    }
    let overlaps = |a: &IdRange, b: &IdRange, side: fn(&IdRange) -> u32| {
        let (a0, b0) = (u64::from(side(a)), u64::from(side(b)));
        a0 < b0 + u64::from(b.size) && b0 < a0 + u64::from(a.size)
    };
    for (i, a) in ranges.iter().enumerate() {
        for b in ranges.iter().skip(i + 1) {
            if overlaps(a, b, |r| r.container) || overlaps(a, b, |r| r.host) {
                bail!("{key}={value}: ranges overlap");
            }
        }
    }
    Ok(ranges)
}

/// `timeout=` in seconds, fractions allowed.
fn parse_timeout(value: &str) -> Result<Duration> {
    let seconds: f64 = value
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s >= 0.0 && *s <= 1e9)
        .with_context(|| format!("timeout={value}: expected seconds (0 to 1e9)"))?;
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_one(string: &str) -> Result<ParsedOptions> {
        parse(&[string.to_string()])
    }

    fn ok(string: &str) -> ParsedOptions {
        match parse_one(string) {
            Ok(options) => options,
            Err(error) => panic!("{string:?} should parse: {error:#}"),
        }
    }

    fn paths(paths: &[&str]) -> Vec<PathBuf> {
        paths.iter().map(PathBuf::from).collect()
    }

    /// The entry and attribute cache lifetimes (`timeout=` sets both).
    fn timeouts(options: &ParsedOptions) -> (Duration, Duration) {
        (options.config.entry_timeout, options.config.attr_timeout)
    }

    fn range(container: u32, host: u32, size: u32) -> IdRange {
        IdRange {
            container,
            host,
            size,
        }
    }

    #[test]
    fn splits_plain_options() {
        assert_eq!(
            split_options("a=1,b,,c=x").ok(),
            Some(vec!["a=1".into(), "b".into(), "c=x".into()])
        );
        assert_eq!(split_options("").ok(), Some(Vec::new()));
    }

    #[test]
    fn quotes_protect_commas() {
        assert_eq!(
            split_options("context=\"u:r:t:s0:c1,c2\",ro").ok(),
            Some(vec!["context=\"u:r:t:s0:c1,c2\"".into(), "ro".into()])
        );
        assert!(split_options("context=\"a,b").is_err());
    }

    #[test]
    fn backslash_protects_comma_and_keeps_colon_escape() {
        assert_eq!(
            split_options("lowerdir=a\\,b\\:c,ro").ok(),
            Some(vec!["lowerdir=a,b\\:c".into(), "ro".into()])
        );
    }

    #[test]
    fn containers_storage_read_write_line() {
        let options = ok("lowerdir=l/AAA:l/BBB,upperdir=/s/overlay/id/diff,workdir=/s/overlay/id/work,context=\"system_u:object_r:container_file_t:s0:c1,c2\"");
        let stack = &options.config.stack;
        assert_eq!(stack.lowers, paths(&["l/AAA", "l/BBB"]));
        assert_eq!(stack.upper, Some(PathBuf::from("/s/overlay/id/diff")));
        assert_eq!(stack.work, Some(PathBuf::from("/s/overlay/id/work")));
        assert_eq!(
            options.config.context.as_deref(),
            Some("system_u:object_r:container_file_t:s0:c1,c2")
        );
        assert!(options.warnings.is_empty(), "{:?}", options.warnings);
        let config = &options.config;
        assert!(config.fsync && config.noatime && config.default_permissions);
    }

    #[test]
    fn read_only_line_has_no_upper() {
        let options = ok("lowerdir=/s/overlay/top/diff:/s/overlay/base/diff");
        assert_eq!(options.config.stack.lowers.len(), 2);
        assert_eq!(options.config.stack.upper, None);
        assert_eq!(options.config.stack.work, None);
    }

    #[test]
    fn colon_escapes_in_lowerdir() {
        let options = ok("lowerdir=/a\\:b:/c");
        assert_eq!(options.config.stack.lowers, paths(&["/a:b", "/c"]));
        let options = ok("upperdir=/u\\:1,workdir=/w,lowerdir=/l");
        assert_eq!(options.config.stack.upper, Some(PathBuf::from("/u:1")));
    }

    #[test]
    fn repeated_o_later_wins() {
        let options = parse(&[
            "lowerdir=/a,fsync=0".to_string(),
            "lowerdir=/b,fsync=1,nodev".to_string(),
        ])
        .ok();
        let options = options.as_ref();
        assert_eq!(
            options.map(|o| o.config.stack.lowers.clone()),
            Some(paths(&["/b"]))
        );
        assert_eq!(
            options.map(|o| (o.config.fsync, o.config.nodev)),
            Some((true, true))
        );
    }

    #[test]
    fn id_mappings() {
        let options = ok("lowerdir=/l,uidmapping=0:100000:65536,gidmapping=0:200000:1:1:300000:10");
        assert_eq!(options.config.uid_map, [range(0, 100000, 65536)]);
        assert_eq!(
            options.config.gid_map,
            [range(0, 200000, 1), range(1, 300000, 10)]
        );
        let storage_form = ok("lowerdir=/l,uidmapping=:0:1:1000:1000:2000:10");
        assert_eq!(storage_form.config.uid_map.len(), 2);
        assert!(parse_one("lowerdir=/l,uidmapping=:").is_err());
        assert!(parse_one("lowerdir=/l,uidmapping=0:1").is_err());
        assert!(parse_one("lowerdir=/l,uidmapping=0:1:0").is_err());
        assert!(parse_one("lowerdir=/l,uidmapping=a:1:2").is_err());
        assert!(parse_one("lowerdir=/l,uidmapping=-1:1:2").is_err());
        assert!(parse_one("lowerdir=/l,uidmapping=").is_err());
        assert!(parse_one("lowerdir=/l,uidmapping=4294967295:0:2").is_err());
        assert!(
            parse_one("lowerdir=/l,uidmapping=0:10:5:3:100:5").is_err(),
            "overlap"
        );
        assert!(
            parse_one("lowerdir=/l,uidmapping=0:10:5:5:12:5").is_err(),
            "host overlap"
        );
        assert!(
            ok("lowerdir=/l,uidmapping=0:4294967295:1")
                .config
                .uid_map
                .len()
                == 1
        );
    }

    #[test]
    fn squash_options() {
        let config = ok("lowerdir=/l,squash_to_root").config;
        assert_eq!((config.squash_uid, config.squash_gid), (Some(0), Some(0)));
        let config = ok("lowerdir=/l,squash_to_uid=1000,squash_to_gid=100").config;
        assert_eq!(
            (config.squash_uid, config.squash_gid),
            (Some(1000), Some(100))
        );
        assert!(parse_one("lowerdir=/l,squash_to_uid=x").is_err());
        assert!(parse_one("lowerdir=/l,squash_to_uid=4294967295").is_err());
        assert!(parse_one("lowerdir=/l,squash_to_root=1").is_err());
    }

    #[test]
    fn redirect_dir_values() {
        assert!(ok("lowerdir=/l").config.redirect_dir);
        assert!(ok("lowerdir=/l,redirect_dir=on").config.redirect_dir);
        assert!(!ok("lowerdir=/l,redirect_dir=off").config.redirect_dir);
        assert!(!ok("lowerdir=/l,redirect_dir=follow").config.redirect_dir);
        assert!(ok("lowerdir=/l,redirect_dir=off").warnings.is_empty());
        assert!(parse_one("lowerdir=/l,redirect_dir=nofollow").is_err());
        assert!(parse_one("lowerdir=/l,redirect_dir").is_err());
    }

    #[test]
    fn xattr_permissions_values() {
        for (text, want) in [
            ("0", XattrPermissions::Passthrough),
            ("1", XattrPermissions::Security),
            ("2", XattrPermissions::ContainersUser),
        ] {
            assert_eq!(
                ok(&format!("lowerdir=/l,xattr_permissions={text}"))
                    .config
                    .xattr_permissions,
                want
            );
        }
        assert!(parse_one("lowerdir=/l,xattr_permissions=3").is_err());
        assert!(parse_one("lowerdir=/l,xattr_permissions").is_err());
    }

    #[test]
    fn fsync_and_volatile() {
        assert!(!ok("lowerdir=/l,volatile").config.fsync);
        assert!(!ok("lowerdir=/l,fsync=0").config.fsync);
        assert!(ok("lowerdir=/l,fsync=1").config.fsync);
        assert!(parse_one("lowerdir=/l,fsync=2").is_err());
        assert!(parse_one("lowerdir=/l,volatile=1").is_err());
    }

    #[test]
    fn timeout_values() {
        let zero = Duration::ZERO;
        assert_eq!(timeouts(&ok("lowerdir=/l,timeout=0")), (zero, zero));
        let two_and_a_half = Duration::from_millis(2500);
        assert_eq!(
            timeouts(&ok("lowerdir=/l,timeout=2.5")),
            (two_and_a_half, two_and_a_half)
        );
        let most = Duration::from_secs(1_000_000_000);
        assert_eq!(
            timeouts(&ok("lowerdir=/l,timeout=1000000000")),
            (most, most)
        );
        for bad in ["-1", "x", "nan", "inf", "1e10"] {
            assert!(
                parse_one(&format!("lowerdir=/l,timeout={bad}")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn generic_flags() {
        assert!(
            !ok("lowerdir=/l").config.allow_other,
            "allow_other only when asked"
        );
        let options = ok("lowerdir=/l,rw,nodev,nosuid,noexec,atime,allow_root,default_permissions");
        let config = &options.config;
        assert!(config.nodev && config.nosuid && config.noexec);
        assert!(!config.noatime);
        assert!(config.allow_other);
        assert!(!options.read_only);
        assert!(options.warnings.is_empty(), "{:?}", options.warnings);
        let options = ok("lowerdir=/l,nodev,dev,nosuid,suid,noexec,exec,atime,noatime,ro");
        let config = &options.config;
        assert!(!config.nodev && !config.nosuid && !config.noexec);
        assert!(config.noatime && options.read_only);
        let options = ok("lowerdir=/l,allow_other,fsname=\"my,fs\",relatime,x-systemd.automount,max_write=131072");
        assert!(options.config.allow_other);
        assert_eq!(options.config.fs_name, "my,fs");
        assert!(options.warnings.is_empty(), "{:?}", options.warnings);
        assert!(parse_one("lowerdir=/l,nodev=1").is_err());
    }

    #[test]
    fn unknown_and_unsupported_options_warn() {
        let options = ok("lowerdir=/l,frobnicate=3,xino=off,writeback=1,bogus,uid=5");
        assert_eq!(options.warnings.len(), 5, "{:?}", options.warnings);
        assert!(options.warnings.iter().any(|w| w.contains("frobnicate")));
        assert!(options.warnings.iter().all(|w| !w.contains('\n')));
    }

    #[test]
    fn rebasefs_extensions() {
        let config = ok("lowerdir=/l,passthrough=0,threads=4").config;
        assert!(!config.passthrough);
        assert_eq!(config.threads, 4);
        assert!(parse_one("lowerdir=/l,threads=x").is_err());
        assert!(parse_one("lowerdir=/l,threads=100000").is_err());
    }

    #[test]
    fn structural_errors() {
        assert!(parse_one("upperdir=/u,workdir=/w").is_err(), "no lowerdir");
        assert!(parse_one("lowerdir=").is_err());
        assert!(parse_one("lowerdir=/l,upperdir=/u").is_err(), "no workdir");
        assert!(parse_one("lowerdir=/l,upperdir=").is_err());
        assert!(parse_one("lowerdir=/l,context=\"a").is_err());
        assert!(parse_one("lowerdir=/l,context=a\"b\"").is_err());
        let options = ok("lowerdir=/l,workdir=/w");
        assert_eq!(options.config.stack.work, None);
        assert_eq!(options.warnings.len(), 1);
    }

    #[test]
    fn unquote_rules() {
        assert_eq!(unquote("\"a,b\"").ok().as_deref(), Some("a,b"));
        assert_eq!(unquote("plain").ok().as_deref(), Some("plain"));
        assert!(unquote("\"").is_err());
        assert!(unquote("\"a\"b\"").is_err());
    }
}
