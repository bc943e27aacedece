//! The files an origin serves, by name: each one's path, size, start-up stamp and manifest.
//!
//! Manifests are built once, at start-up, and kept: a manifest is 32 bytes per piece (at most
//! about 32 KiB for a file of up to 16 GiB with the default piece size, `TARGET_PIECES`), and
//! it is what lets `serve` print every file's digest before a client asks and check a file
//! against what it published. What costs memory per file, the `Node`, its tables and the
//! file's mapping, is made only when a client or an HTTP request names the file
//! (`swarms.rs`). Building every manifest at start-up reads every byte once: the start-up
//! time is the hashing time (README "Many files" has the figures).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::PathBuf;

use super::storage::{self, SourceStamp, Storage};
use super::tree::{self, Found};
use crate::manifest::{Manifest, ManifestError, auto_piece_size};

/// One served file.
#[derive(Debug)]
pub struct Entry {
    /// The name a client asks for it by (`None`: a server's only file with a name that is not
    /// UTF-8, asked for by the empty path).
    pub name: Option<String>,
    /// Canonical path, and the canonical directory it must stay inside (`tree.rs`).
    pub path: PathBuf,
    root: PathBuf,
    /// As it was when the manifest was built.
    pub stamp: SourceStamp,
    /// Built at start-up from the file as it was then.
    pub manifest: Manifest,
    /// It changed after start-up (seen by a swarm serving it, or when a swarm was made):
    /// HTTP answers 503 for it and pieces are checked before they are sent.
    pub changed: bool,
}

/// Every served file, in the walk's order.
#[derive(Debug, Default)]
pub struct Catalog {
    entries: Vec<Entry>,
    by_name: HashMap<String, usize>,
}

/// Why a file could not be catalogued.
#[derive(Debug)]
pub enum CatalogError {
    /// The file cannot be opened or mapped.
    Open(PathBuf, io::Error),
    /// Its manifest cannot be built (too many pieces for `--piece-size`).
    Manifest(PathBuf, ManifestError),
}

impl fmt::Display for CatalogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CatalogError::Open(p, e) => write!(f, "cannot open {}: {e}", p.display()),
            CatalogError::Manifest(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

impl std::error::Error for CatalogError {}

/// Pages of a file hashed before they are unmapped: the hashing pass then holds at most
/// this much of the file in the process's RSS, not the whole file (which for a 256 MiB file
/// put the origin's peak RSS at 259 MiB).
const HASH_WINDOW: usize = 32 << 20;

/// The manifest of the mapped `source`, unmapping what is hashed as it goes.
fn hash_file(source: &Storage, piece_size: u32) -> Result<Manifest, ManifestError> {
    let bytes = source.bytes();
    crate::manifest::piece_count_for(bytes.len() as u64, piece_size)?;
    let piece = piece_size as usize;
    // Whole pieces per window, at least one.
    let window = (HASH_WINDOW / piece).max(1) * piece;
    let mut hashes = Vec::with_capacity(bytes.len().div_ceil(piece));
    for (k, w) in bytes.chunks(window).enumerate() {
        hashes.extend(w.chunks(piece).map(crate::manifest::hash));
        source.release_range(k * window, w.len());
    }
    Manifest::from_hashes(bytes.len() as u64, piece_size, hashes)
}

impl Catalog {
    /// Builds the manifest of every file in `files` (`piece_size`, or each file's automatic
    /// one).
    pub fn build(files: Vec<Found>, piece_size: Option<u32>) -> Result<Catalog, CatalogError> {
        let mut c = Catalog::default();
        for f in files {
            let source =
                storage::open_source(&f.path).map_err(|e| CatalogError::Open(f.path.clone(), e))?;
            let size = piece_size.unwrap_or_else(|| auto_piece_size(source.bytes().len() as u64));
            let manifest =
                hash_file(&source, size).map_err(|e| CatalogError::Manifest(f.path.clone(), e))?;
            let stamp = source.source_stamp().ok_or_else(|| {
                CatalogError::Open(f.path.clone(), io::Error::other("cannot stat"))
            })?;
            // Dropping the source unmaps it: nothing of the file stays in this process.
            drop(source);
            let k = c.entries.len();
            if let Some(n) = &f.name {
                c.by_name.insert(n.clone(), k);
            }
            c.entries.push(Entry {
                name: f.name,
                path: f.path,
                root: f.root,
                stamp,
                manifest,
                changed: false,
            });
        }
        Ok(c)
    }

    /// How many files.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if it serves nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The file named `name`, if served.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Entry `k` (an index `find` returned, or below `len`).
    pub fn get(&self, k: usize) -> &Entry {
        &self.entries[k]
    }

    /// Entry `k`, to mark it changed.
    pub fn get_mut(&mut self, k: usize) -> &mut Entry {
        &mut self.entries[k]
    }

    /// Every entry, in the walk's order.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    /// Total bytes served.
    pub fn total_len(&self) -> u64 {
        self.entries.iter().map(|e| e.manifest.file_len()).sum()
    }

    /// Opens and maps file `k` for serving. Refused if its path no longer resolves to itself
    /// inside its directory (a component was replaced by a symlink since start-up).
    pub fn open(&self, k: usize) -> io::Result<Storage> {
        let e = &self.entries[k];
        if !tree::still_inside(&e.root, &e.path) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "its path now leads out of the served directory (a symlink was put in its way)",
            ));
        }
        storage::open_source(&e.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_windowed_hashing_builds_the_same_manifest() {
        let dir = std::env::temp_dir().join(format!("tfttp-catalog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let data: Vec<u8> = (0..(HASH_WINDOW + 40_000))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        std::fs::write(dir.join("f"), &data).unwrap();
        let t = tree::walk(std::slice::from_ref(&dir)).unwrap();
        for size in [16 * 1024, 1 << 20, 16 << 20] {
            let c = Catalog::build(t.files.clone(), Some(size)).unwrap();
            assert_eq!(
                c.get(0).manifest,
                Manifest::build(&data, size).unwrap(),
                "{size}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
