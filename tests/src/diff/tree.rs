//! Whole-tree snapshots of a mounted merged view, their comparison across the two sides,
//! and the candidate's internal inode consistency (readdir d_ino == stat st_ino, stable).

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::outcome::{errno_name, FileType, StatInfo, Value};
use super::sys;

/// Everything observable about one path of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub stat: StatInfo,
    /// Content of regular files.
    pub content: Option<Value>,
    pub link_target: Option<String>,
    /// Visible extended attributes (name -> value).
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// Readdir set of directories.
    pub entries: Option<BTreeSet<(String, u8)>>,
    /// First path (sorted order) of the same inode for multiply-linked non-directories.
    pub link_peer: Option<String>,
    /// Errors met while observing this path.
    pub errors: Vec<String>,
}

/// A snapshot of a whole merged tree.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    pub nodes: BTreeMap<String, Node>,
    /// Internal inconsistencies (d_ino vs st_ino, unstable st_ino) found while walking.
    pub inode_problems: Vec<String>,
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

pub fn xattrs_of(
    dir: BorrowedFd<'_>,
    name: &str,
    errors: &mut Vec<String>,
) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let fd = match sys::openat(dir, name, libc::O_PATH | libc::O_NOFOLLOW, 0) {
        Ok(fd) => fd,
        Err(e) => {
            errors.push(format!("open O_PATH: {}", errno_name(e)));
            return out;
        }
    };
    let p = sys::proc_fd_path(fd.as_fd());
    match sys::listxattr(&p) {
        Ok(names) => {
            for n in names {
                match sys::getxattr(&p, &n) {
                    Ok(v) => {
                        out.insert(n, v);
                    }
                    Err(e) => errors.push(format!("getxattr {n}: {}", errno_name(e))),
                }
            }
        }
        // Symlinks and special files on some filesystems do not support xattrs at all.
        Err(libc::ENOTSUP) => {}
        Err(e) => errors.push(format!("listxattr: {}", errno_name(e))),
    }
    out
}

pub fn observe(dir: BorrowedFd<'_>, name: &str, st: &libc::stat) -> Node {
    let stat = StatInfo::from_stat(st);
    let mut errors = Vec::new();
    let content = (stat.kind == FileType::Reg).then(|| {
        match sys::openat(
            dir,
            name,
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
            0,
        )
        .and_then(|fd| sys::read_to_end(fd.as_fd(), 1 << 24))
        {
            Ok(d) => Value::bytes(&d),
            Err(e) => {
                errors.push(format!("read: {}", errno_name(e)));
                Value::Unit
            }
        }
    });
    let link_target = (stat.kind == FileType::Lnk).then(|| match sys::readlinkat(dir, name) {
        Ok(t) => String::from_utf8_lossy(&t).into_owned(),
        Err(e) => format!("<{}>", errno_name(e)),
    });
    let xattrs = xattrs_of(dir, name, &mut errors);
    Node {
        stat,
        content,
        link_target,
        xattrs,
        entries: None,
        link_peer: None,
        errors,
    }
}

fn walk(dirfd: OwnedFd, path: &str, tree: &mut Tree) {
    let listing_fd = match sys::openat(dirfd.as_fd(), ".", libc::O_RDONLY | libc::O_DIRECTORY, 0) {
        Ok(fd) => fd,
        Err(e) => {
            if let Some(n) = tree.nodes.get_mut(path) {
                n.errors.push(format!("opendir: {}", errno_name(e)));
            }
            return;
        }
    };
    let ents = match sys::readdir(listing_fd) {
        Ok(e) => e,
        Err(e) => {
            if let Some(n) = tree.nodes.get_mut(path) {
                n.errors.push(format!("readdir: {}", errno_name(e)));
            }
            return;
        }
    };
    if let Some(n) = tree.nodes.get_mut(path) {
        n.entries = Some(ents.iter().map(|e| (e.name.clone(), e.d_type)).collect());
        if let Some(dot) = ents.iter().find(|e| e.name == ".") {
            if dot.d_ino != n.stat.ino {
                tree.inode_problems.push(format!(
                    "{:?}: readdir \".\" d_ino {} != st_ino {}",
                    path, dot.d_ino, n.stat.ino
                ));
            }
        }
    }
    for e in ents.iter().filter(|e| e.name != "." && e.name != "..") {
        let child = join(path, &e.name);
        let st = match sys::fstatat(dirfd.as_fd(), &e.name, libc::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(err) => {
                tree.inode_problems.push(format!(
                    "{child:?}: listed by readdir but lstat fails: {}",
                    errno_name(err)
                ));
                continue;
            }
        };
        if e.d_ino != st.st_ino {
            tree.inode_problems.push(format!(
                "{child:?}: readdir d_ino {} != st_ino {}",
                e.d_ino, st.st_ino
            ));
        }
        let node = observe(dirfd.as_fd(), &e.name, &st);
        let is_dir = node.stat.kind == FileType::Dir;
        tree.nodes.insert(child.clone(), node);
        if is_dir {
            match sys::openat(
                dirfd.as_fd(),
                &e.name,
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
            ) {
                Ok(fd) => walk(fd, &child, tree),
                Err(err) => {
                    if let Some(n) = tree.nodes.get_mut(&child) {
                        n.errors.push(format!("open dir: {}", errno_name(err)));
                    }
                }
            }
        }
    }
}

/// Walks the whole tree below `root` (a directory fd of the mount root).
pub fn snapshot(root: BorrowedFd<'_>) -> Tree {
    let mut tree = Tree::default();
    match sys::fstatat(root, "", libc::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => {
            let node = observe(root, ".", &st);
            tree.nodes.insert(String::new(), node);
        }
        Err(e) => {
            tree.inode_problems
                .push(format!("root: stat fails: {}", errno_name(e)));
            return tree;
        }
    }
    match sys::openat(root, "", libc::O_PATH | libc::O_DIRECTORY, 0) {
        Ok(fd) => walk(fd, "", &mut tree),
        Err(e) => tree
            .inode_problems
            .push(format!("root: open fails: {}", errno_name(e))),
    }
    // Hard-link peers: non-directories sharing an inode.
    let mut by_ino: BTreeMap<u64, String> = BTreeMap::new();
    for (p, n) in &tree.nodes {
        if n.stat.kind != FileType::Dir && n.stat.nlink > 1 {
            by_ino.entry(n.stat.ino).or_insert_with(|| p.clone());
        }
    }
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for n in tree.nodes.values() {
        if n.stat.kind != FileType::Dir {
            *counts.entry(n.stat.ino).or_default() += 1;
        }
    }
    for n in tree.nodes.values_mut() {
        if n.stat.kind != FileType::Dir && counts.get(&n.stat.ino).copied().unwrap_or(0) > 1 {
            n.link_peer = by_ino.get(&n.stat.ino).cloned();
        }
    }
    // Stability: a second stat of every path while nothing changes must give the same st_ino.
    for (p, n) in &tree.nodes {
        if let Ok(st) = sys::fstatat(root, p, libc::AT_SYMLINK_NOFOLLOW) {
            if st.st_ino != n.stat.ino {
                tree.inode_problems.push(format!(
                    "{p:?}: st_ino changed between two stats: {} then {}",
                    n.stat.ino, st.st_ino
                ));
            }
        }
    }
    tree
}

/// Differences between the kernel's tree `k` and the candidate's tree `c`.
pub fn tree_diff(k: &Tree, c: &Tree, recent: i64) -> Vec<String> {
    let mut out = Vec::new();
    let paths: BTreeSet<&String> = k.nodes.keys().chain(c.nodes.keys()).collect();
    for p in paths {
        let show = if p.is_empty() {
            "/".to_string()
        } else {
            format!("/{p}")
        };
        match (k.nodes.get(p), c.nodes.get(p)) {
            (Some(a), None) => out.push(format!("{show}: only in kernel tree ({:?})", a.stat.kind)),
            (None, Some(b)) => out.push(format!(
                "{show}: only in candidate tree ({:?})",
                b.stat.kind
            )),
            (Some(a), Some(b)) => {
                for d in a.stat.diff(&b.stat, recent) {
                    out.push(format!("{show}: {d}"));
                }
                if a.stat.kind != b.stat.kind {
                    continue;
                }
                if a.content != b.content {
                    let s =
                        |v: &Option<Value>| v.as_ref().map(|x| x.to_string()).unwrap_or_default();
                    out.push(format!(
                        "{show}: content {} vs {}",
                        s(&a.content),
                        s(&b.content)
                    ));
                }
                if a.link_target != b.link_target {
                    out.push(format!(
                        "{show}: symlink target {:?} vs {:?}",
                        a.link_target, b.link_target
                    ));
                }
                if a.xattrs != b.xattrs {
                    out.push(format!(
                        "{show}: xattrs {} vs {}",
                        show_xattrs(&a.xattrs),
                        show_xattrs(&b.xattrs)
                    ));
                }
                if a.entries != b.entries {
                    let (ea, eb) = (
                        a.entries.clone().unwrap_or_default(),
                        b.entries.clone().unwrap_or_default(),
                    );
                    let only_k: Vec<_> = ea.difference(&eb).collect();
                    let only_c: Vec<_> = eb.difference(&ea).collect();
                    out.push(format!(
                        "{show}: readdir only kernel {only_k:?}, only candidate {only_c:?}"
                    ));
                }
                if a.link_peer != b.link_peer {
                    out.push(format!(
                        "{show}: same inode as {:?} vs {:?}",
                        a.link_peer, b.link_peer
                    ));
                }
                if a.errors != b.errors {
                    out.push(format!("{show}: errors {:?} vs {:?}", a.errors, b.errors));
                }
            }
            (None, None) => {}
        }
    }
    out
}

pub fn show_xattrs(x: &BTreeMap<String, Vec<u8>>) -> String {
    let parts: Vec<String> = x
        .iter()
        .map(|(k, v)| format!("{k}={:?}", String::from_utf8_lossy(v)))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Paths whose st_ino stayed the same between two snapshots of one side.
pub fn ino_kept(before: &Tree, after: &Tree) -> BTreeMap<String, bool> {
    before
        .nodes
        .iter()
        .filter_map(|(p, n)| {
            after.nodes.get(p).map(|m| {
                (
                    p.clone(),
                    m.stat.ino == n.stat.ino && m.stat.kind == n.stat.kind,
                )
            })
        })
        .collect()
}
