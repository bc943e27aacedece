//! What `serve PATH...` publishes: every regular file named on the command line, and every
//! regular file under each directory named, with the name a client asks for it by
//! (docs/PROTOCOL.md §4.1). A file argument is named by its last component, a file found in a
//! directory by its path relative to that directory (`serve /srv/pub` serves
//! `/srv/pub/iso/a.iso` as `iso/a.iso`).
//!
//! Nothing outside what was named is reachable: a name is a walk down from an argument, so
//! `..` never occurs in one, and a symlink inside a directory is served only if it resolves
//! to a regular file inside that same directory (its target's canonical path starts with the
//! directory's). Symlinks to directories are not descended (that would serve a subtree twice
//! or loop); symlinks out of the tree, dangling symlinks, FIFOs, sockets and devices are
//! skipped, each with a line saying why. An argument itself may be a symlink: the user named
//! it. Entries are visited in byte order of their names, so names come out sorted per
//! directory and a run is repeatable.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::wire::{MAX_PATH_LEN, path_is_safe};

/// One file to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The name a HELLO's path or an HTTP request gives for it; `None` for a file argument
    /// whose name no client can send (not UTF-8, over `MAX_PATH_LEN` bytes): servable only
    /// as a server's only file, by the empty path, as before names were sent.
    pub name: Option<String>,
    /// Its canonical path (symlinks resolved), which is what is opened.
    pub path: PathBuf,
    /// The canonical directory it was found in (the file itself for a file argument): the
    /// file must still resolve to a path inside it when it is opened.
    pub root: PathBuf,
}

/// The walk's result: the files, in the order found, and why others were left out.
#[derive(Debug, Default)]
pub struct Tree {
    /// What to serve.
    pub files: Vec<Found>,
    /// One line per entry skipped (a symlink out of the tree, a FIFO, an unreadable
    /// directory, a name the protocol cannot carry).
    pub skipped: Vec<String>,
}

/// Why the arguments cannot be served at all.
#[derive(Debug)]
pub enum TreeError {
    /// An argument cannot be read (missing, no permission).
    Unreadable(PathBuf, io::Error),
    /// An argument is neither a regular file nor a directory.
    NotServable(PathBuf),
    /// Two arguments give the same name; a client could not tell them apart.
    Duplicate {
        /// The name both would have.
        name: String,
        /// The file found first, and the other.
        first: PathBuf,
        /// See `first`.
        second: PathBuf,
    },
    /// The arguments hold no regular file.
    Empty,
}

impl fmt::Display for TreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TreeError::Unreadable(p, e) => write!(f, "cannot open {}: {e}", p.display()),
            TreeError::NotServable(p) => {
                write!(f, "{} is not a regular file or a directory", p.display())
            }
            TreeError::Duplicate {
                name,
                first,
                second,
            } => write!(
                f,
                "two files would be served as '{name}': {} and {}; serve one of them, or \
                 their parent directories, so that each has its own name",
                first.display(),
                second.display()
            ),
            TreeError::Empty => write!(f, "no regular file to serve in the paths given"),
        }
    }
}

impl std::error::Error for TreeError {}

/// Walks `args` (files and directories, directories recursively) into the files to serve.
pub fn walk(args: &[PathBuf]) -> Result<Tree, TreeError> {
    let mut tree = Tree::default();
    for arg in args {
        let md = std::fs::metadata(arg).map_err(|e| TreeError::Unreadable(arg.clone(), e))?;
        let canon = arg
            .canonicalize()
            .map_err(|e| TreeError::Unreadable(arg.clone(), e))?;
        if md.is_file() {
            let name = (arg.file_name().and_then(|n| n.to_str()))
                .filter(|n| check_name(n).is_ok())
                .map(String::from);
            tree.files.push(Found {
                name,
                path: canon.clone(),
                root: canon,
            });
        } else if md.is_dir() {
            descend(&canon, &canon, "", &mut tree);
        } else {
            return Err(TreeError::NotServable(arg.clone()));
        }
    }
    if tree.files.is_empty() {
        return Err(TreeError::Empty);
    }
    let mut seen: HashMap<&str, &Path> = HashMap::new();
    for f in &tree.files {
        let Some(n) = f.name.as_deref() else { continue };
        if let Some(first) = seen.insert(n, &f.path) {
            return Err(TreeError::Duplicate {
                name: n.to_string(),
                first: first.to_path_buf(),
                second: f.path.clone(),
            });
        }
    }
    Ok(tree)
}

/// Whether `name` can travel in a HELLO (§4.1): at most `MAX_PATH_LEN` bytes, and safe.
fn check_name(name: &str) -> Result<(), String> {
    if name.len() > MAX_PATH_LEN {
        return Err(format!(
            "its name is {} bytes, more than a client can ask for ({MAX_PATH_LEN})",
            name.len()
        ));
    }
    if !path_is_safe(name) {
        return Err("its name is not a path a client can ask for".into());
    }
    Ok(())
}

/// Adds the files under `dir` (canonical, inside `root`), named `prefix` + their name.
fn descend(root: &Path, dir: &Path, prefix: &str, tree: &mut Tree) {
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            tree.skipped
                .push(format!("{}: cannot read the directory: {e}", dir.display()));
            return;
        }
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let skip = |tree: &mut Tree, why: &str| {
            tree.skipped.push(format!("{}: {why}", path.display()));
        };
        let Some(base) = e.file_name().to_str().map(String::from) else {
            skip(tree, "its name is not UTF-8, which a client cannot ask for");
            continue;
        };
        let name = format!("{prefix}{base}");
        let Ok(ft) = e.file_type() else {
            skip(tree, "cannot read its type");
            continue;
        };
        if ft.is_dir() {
            descend(root, &path, &format!("{name}/"), tree);
            continue;
        }
        let target = if ft.is_symlink() {
            match inside(root, &path) {
                Ok(t) => t,
                Err(why) => {
                    skip(tree, &why);
                    continue;
                }
            }
        } else if ft.is_file() {
            path.clone()
        } else {
            skip(tree, "not a regular file");
            continue;
        };
        if let Err(why) = check_name(&name) {
            skip(tree, &why);
            continue;
        }
        tree.files.push(Found {
            name: Some(name),
            path: target,
            root: root.to_path_buf(),
        });
    }
}

/// The canonical target of the symlink `link` if it is a regular file inside `root`.
fn inside(root: &Path, link: &Path) -> Result<PathBuf, String> {
    let target = link
        .canonicalize()
        .map_err(|e| format!("a symlink that does not resolve ({e})"))?;
    if !target.starts_with(root) {
        return Err(format!(
            "a symlink out of the served directory (to {}), not followed",
            target.display()
        ));
    }
    match std::fs::metadata(&target) {
        Ok(md) if md.is_file() => Ok(target),
        Ok(md) if md.is_dir() => Err("a symlink to a directory, not descended".into()),
        Ok(_) => Err("a symlink to something that is not a regular file".into()),
        Err(e) => Err(format!("a symlink whose target cannot be read ({e})")),
    }
}

/// Whether `path` still resolves to itself inside `root` (no component of it became a
/// symlink since the walk): checked again when a file is opened, long after the walk.
pub fn still_inside(root: &Path, path: &Path) -> bool {
    path.canonicalize()
        .is_ok_and(|c| c == path && c.starts_with(root))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let d = std::env::temp_dir().join(format!("tfttp-tree-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Dir(d.canonicalize().unwrap())
        }

        fn file(&self, rel: &str) -> PathBuf {
            let p = self.0.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, rel.as_bytes()).unwrap();
            p
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn names(t: &Tree) -> Vec<&str> {
        t.files.iter().filter_map(|f| f.name.as_deref()).collect()
    }

    #[test]
    fn test_walk_directory_names_files_by_relative_path_sorted() {
        let d = Dir::new("nested");
        d.file("pub/b.bin");
        d.file("pub/a/deep/x.iso");
        d.file("pub/a/y");
        let t = walk(&[d.0.join("pub")]).unwrap();
        assert_eq!(names(&t), ["a/deep/x.iso", "a/y", "b.bin"]);
        assert_eq!(t.files[0].path, d.0.join("pub/a/deep/x.iso"));
        assert_eq!(t.files[0].root, d.0.join("pub"));
        assert!(t.skipped.is_empty(), "{:?}", t.skipped);
    }

    #[test]
    fn test_walk_file_argument_named_by_last_component() {
        let d = Dir::new("filearg");
        let f = d.file("sub/one.bin");
        let t = walk(&[f.clone(), d.0.join("sub/../sub/one.bin")]);
        // The same name twice is refused, whatever path gave it.
        assert!(matches!(t, Err(TreeError::Duplicate { ref name, .. }) if name == "one.bin"));
        let t = walk(std::slice::from_ref(&f)).unwrap();
        assert_eq!(names(&t), ["one.bin"]);
        assert_eq!(t.files[0].root, f);
    }

    #[test]
    fn test_walk_same_name_from_a_file_and_a_directory_is_refused() {
        let d = Dir::new("dup");
        let a = d.file("a/x");
        d.file("b/x");
        let e = walk(&[a, d.0.join("b")]).unwrap_err();
        assert!(
            e.to_string().contains("two files would be served as 'x'"),
            "{e}"
        );
    }

    #[test]
    fn test_walk_symlink_out_of_the_tree_is_skipped_inside_is_followed() {
        let d = Dir::new("links");
        let secret = d.file("secret");
        d.file("pub/real");
        symlink(&secret, d.0.join("pub/escape")).unwrap();
        symlink(d.0.join("pub/real"), d.0.join("pub/alias")).unwrap();
        symlink("../..", d.0.join("pub/up")).unwrap();
        symlink(d.0.join("nowhere"), d.0.join("pub/dangling")).unwrap();
        let t = walk(&[d.0.join("pub")]).unwrap();
        assert_eq!(names(&t), ["alias", "real"]);
        assert_eq!(t.files[0].path, d.0.join("pub/real"));
        let why = t.skipped.join("\n");
        assert!(
            why.contains("escape: a symlink out of the served directory"),
            "{why}"
        );
        assert!(
            why.contains("up: a symlink out of the served directory"),
            "{why}"
        );
        assert!(
            why.contains("dangling: a symlink that does not resolve"),
            "{why}"
        );
    }

    #[test]
    fn test_walk_symlinked_directory_inside_is_not_descended() {
        let d = Dir::new("dirlink");
        d.file("pub/sub/f");
        symlink(d.0.join("pub/sub"), d.0.join("pub/loop")).unwrap();
        let t = walk(&[d.0.join("pub")]).unwrap();
        assert_eq!(names(&t), ["sub/f"]);
        assert!(
            t.skipped[0].contains("a symlink to a directory"),
            "{:?}",
            t.skipped
        );
    }

    #[test]
    fn test_walk_fifo_skipped_and_empty_tree_refused() {
        let d = Dir::new("fifo");
        std::fs::create_dir(d.0.join("pub")).unwrap();
        let fifo = std::ffi::CString::new(d.0.join("pub/pipe").to_str().unwrap()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert!(matches!(walk(&[d.0.join("pub")]), Err(TreeError::Empty)));
        assert!(matches!(
            walk(&[d.0.join("pub/pipe")]),
            Err(TreeError::NotServable(_))
        ));
        assert!(matches!(
            walk(&[d.0.join("missing")]),
            Err(TreeError::Unreadable(..))
        ));
    }

    #[test]
    fn test_walk_overlong_name_skipped_in_a_directory_nameless_as_argument() {
        let d = Dir::new("long");
        let long = "n".repeat(MAX_PATH_LEN - 3);
        d.file(&format!("pub/{long}"));
        let deep = d.file(&format!("pub/abcd/{long}"));
        let t = walk(&[d.0.join("pub")]).unwrap();
        assert_eq!(names(&t), [long.as_str()]);
        assert!(
            t.skipped[0].contains("more than a client can ask for"),
            "{:?}",
            t.skipped
        );
        // Named on the command line, it is still served, by the empty path only.
        let longer = d.0.join("n".repeat(MAX_PATH_LEN + 1));
        std::fs::write(&longer, b"x").unwrap();
        let t = walk(&[longer, deep]).unwrap();
        assert_eq!(t.files[0].name, None);
        assert_eq!(t.files[1].name.as_deref(), Some(long.as_str()));
    }

    #[test]
    fn test_still_inside_sees_a_component_become_a_symlink() {
        let d = Dir::new("swap");
        let f = d.file("pub/sub/f");
        d.file("elsewhere/f");
        let root = d.0.join("pub");
        assert!(still_inside(&root, &f));
        std::fs::remove_dir_all(d.0.join("pub/sub")).unwrap();
        symlink(d.0.join("elsewhere"), d.0.join("pub/sub")).unwrap();
        assert!(!still_inside(&root, &f));
    }
}
