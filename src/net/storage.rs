//! Where pieces live: the origin's file mapped read-only, or the client's `OUT.part`, written
//! with `pwrite` (in 64 KiB chunks of each piece, see `conn.rs`) and renamed to `OUT` only
//! once every piece is verified (or, for `--output -`, an unnamed temporary file that stdout
//! is fed from in order, `inorder.rs`).
//! Uploads are written to sockets straight from a read-only mapping of either file.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapOptions, UncheckedAdvice};

use super::error::{StorageError, StorageErrorKind};
use crate::manifest::{self, Manifest};

/// The node's copy of the file, in whichever state its role and progress put it.
pub enum Storage {
    /// Origin: the source file, read-only.
    Source(File, Mmap),
    /// Client before the manifest: `OUT.part` created, size unknown.
    Pending(PartFile),
    /// Client after the manifest: `OUT.part` sized and mapped.
    Part(PartFile, Mmap),
    /// Client after completion: renamed to `OUT`, still open and mapped to serve peers.
    Done(File, Mmap),
    /// Client with `--discard`: pieces are verified and dropped, as iperf3 measures TCP
    /// without a disk. Nothing can be uploaded from it.
    Discard,
    /// Transitional, only inside `prepare` and `finish`.
    Empty,
}

/// The served file's size and change times: a write, a truncation or `touch` changes one of
/// them (ctime even when mtime is set back), so a change is seen within a stats period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceStamp {
    /// Length in bytes.
    pub len: u64,
    /// Last modification, (seconds, nanoseconds) since the epoch.
    pub mtime: (i64, i64),
    /// Last status change, as `mtime`.
    pub ctime: (i64, i64),
}

/// A client's output while it downloads: the open `OUT.part` and the name it gets when done.
pub struct PartFile {
    /// Holds an exclusive `flock` for as long as it is open.
    file: File,
    part: PathBuf,
    /// `None` for the unnamed temporary file behind `--output -`: nothing to rename.
    out: Option<PathBuf>,
}

/// Opens and maps the file an origin serves.
pub fn open_source(path: &Path) -> io::Result<Storage> {
    let file = File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    // SAFETY: the mapping is read-only. If another process truncates the file while we
    // serve it, reads of the lost range fault; tfttp documents that the served file must
    // not change (docs/PROTOCOL.md §9), as every mmap-based server does.
    let map = unsafe { MmapOptions::new().map(&file) }?;
    Ok(Storage::Source(file, map))
}

/// `PATH.part` for the output `PATH`.
pub fn part_path(out: &Path) -> PathBuf {
    let mut p = out.as_os_str().to_owned();
    p.push(".part");
    PathBuf::from(p)
}

/// Renames `from` to `to` unless `to` exists (then `AlreadyExists`). A hard link is created
/// only if the name is free, atomically; where links are not supported, the rename follows
/// a check, which leaves a small window.
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::hard_link(from, to) {
        Ok(()) => std::fs::remove_file(from),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        Err(_) if std::fs::symlink_metadata(to).is_ok() => {
            Err(io::Error::from(io::ErrorKind::AlreadyExists))
        }
        Err(_) => std::fs::rename(from, to),
    }
}

/// The pieces of `m` that lie within the first `upto` bytes of `map` and match their BLAKE3
/// hash: a leftover `OUT.part` is trusted no more than a peer. Pieces past `upto` were not in
/// the leftover (the file was extended with zeros to the manifest's size), so they are
/// fetched, not checked.
fn verified_pieces(map: &[u8], m: &Manifest, upto: u64) -> Vec<u32> {
    (0..m.piece_count())
        .take_while(|&i| m.piece_offset(i) + m.piece_len(i) as u64 <= upto)
        .filter(|&i| {
            let start = m.piece_offset(i) as usize;
            let bytes = &map[start..start + m.piece_len(i) as usize];
            m.verify(i, &manifest::hash(bytes))
        })
        .collect()
}

/// What `prepare` found in `OUT.part` from an earlier run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftover {
    /// The leftover's length before it was sized for the manifest; 0 when there was none
    /// (a fresh download, the temporary file of `--output -`, or a run killed before its
    /// manifest arrived).
    pub bytes: u64,
    /// Its pieces that verify against the manifest, in index order: kept, not fetched.
    pub verified: Vec<u32>,
}

impl Storage {
    /// Creates `OUT.part` for a download. Refuses to touch an existing `OUT`. An existing
    /// `OUT.part` is tfttp's own leftover from an interrupted run: `prepare` keeps the pieces
    /// in it that verify. It is refused if another process holds its lock (two downloads to
    /// one output would truncate each other's pieces), or if it is not a regular file (a
    /// planted symlink is not followed).
    pub fn create_part(out: &Path) -> Result<Storage, StorageError> {
        if out.exists() {
            return Err(StorageError::new(
                StorageErrorKind::OutputExists,
                format!(
                    "{} already exists; remove it or choose another --output",
                    out.display()
                ),
            ));
        }
        let part = part_path(out);
        let create_err = |e: &io::Error| {
            let what = format!("cannot create {}", part.display());
            StorageError::io(StorageErrorKind::Create, what, e)
        };
        // Not truncated yet: only once the lock is ours. O_NOFOLLOW refuses a symlink, and
        // O_NONBLOCK keeps a planted FIFO from blocking the open.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&part)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    StorageError::new(
                        StorageErrorKind::Create,
                        format!(
                            "{} is a symbolic link, which tfttp does not follow; remove it",
                            part.display()
                        ),
                    )
                } else {
                    create_err(&e)
                }
            })?;
        if !file.metadata().map_err(|e| create_err(&e))?.is_file() {
            return Err(StorageError::new(
                StorageErrorKind::Create,
                format!("{} exists and is not a regular file", part.display()),
            ));
        }
        // SAFETY: flock on a descriptor we own; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(StorageError::new(
                StorageErrorKind::Busy,
                format!(
                    "another tfttp is downloading to {} ({} is locked)",
                    out.display(),
                    part.display()
                ),
            ));
        }
        Ok(Storage::Pending(PartFile {
            file,
            part,
            out: Some(out.to_path_buf()),
        }))
    }

    /// Creates the unnamed temporary file that `--output -` downloads into, in `dir` (the
    /// temporary directory): pieces arrive in any order and stdout takes them in order, so
    /// they wait here. It is unlinked at once, so nothing is left behind however the process
    /// ends, and it is never renamed.
    pub fn create_temp(dir: &Path) -> Result<Storage, StorageError> {
        let mut last = None;
        // A name taken by another process (or planted) is skipped: O_EXCL never opens it.
        for attempt in 0..16u32 {
            let part = dir.join(format!(
                "tfttp-stdout-{}-{attempt}.part",
                std::process::id()
            ));
            let opened = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&part);
            match opened {
                Ok(file) => {
                    let _ = std::fs::remove_file(&part);
                    return Ok(Storage::Pending(PartFile {
                        file,
                        part,
                        out: None,
                    }));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some((part, e)),
                Err(e) => {
                    let what = format!("cannot create a temporary file {}", part.display());
                    return Err(StorageError::io(StorageErrorKind::Create, what, &e));
                }
            }
        }
        let (part, e) = last.expect("the loop ran");
        let what = format!("cannot create a temporary file {}", part.display());
        Err(StorageError::io(StorageErrorKind::Create, what, &e))
    }

    /// Sizes and maps `OUT.part` for the manifest, and returns what was already in it: the
    /// pieces of an interrupted run's leftover that verify (resume). A leftover of another
    /// length is checked too: a truncated `OUT.part` keeps the pieces of its prefix, and
    /// another file's holds none that verify (its bytes are overwritten as pieces arrive).
    /// Space is reserved up front: a write into a sparse mapping on a full disk would kill
    /// the process with SIGBUS instead of an error.
    pub fn prepare(&mut self, m: &Manifest) -> Result<Leftover, StorageError> {
        if let Storage::Discard = self {
            return Ok(Leftover::default());
        }
        let Storage::Pending(pf) = std::mem::replace(self, Storage::Empty) else {
            return Err(StorageError::new(
                StorageErrorKind::Order,
                "output prepared twice",
            ));
        };
        let len = m.file_len();
        let leftover = pf.file.metadata().map(|md| md.len()).unwrap_or(0);
        // `reserve` sets the length to the manifest's: a longer leftover is cut, a shorter
        // one extended with zeros; either way its first `min` bytes are what it held.
        if let Err(e) = reserve(&pf.file, len) {
            // Back to what it held (a fresh `.part` to nothing, so `abandon` removes it; a
            // shorter leftover to its pieces), not a sparse file the size of the download.
            let _ = pf.file.set_len(leftover.min(len));
            let what = format!("cannot reserve {len} bytes for {}", pf.part.display());
            let err = StorageError::io(StorageErrorKind::Write, what, &e);
            *self = Storage::Pending(pf);
            return Err(err);
        }
        // SAFETY: the file is ours (created or reopened under our exclusive lock, then
        // sized); nothing else truncates it while the download runs. Writes go through
        // `write_at`, and Linux's page cache keeps the read-only mapping coherent with them.
        match unsafe { MmapOptions::new().len(len as usize).map(&pf.file) } {
            Ok(map) => {
                let verified = verified_pieces(&map, m, leftover.min(len));
                *self = Storage::Part(pf, map);
                Ok(Leftover {
                    bytes: leftover,
                    verified,
                })
            }
            Err(e) => {
                let what = format!("cannot map {}", pf.part.display());
                let err = StorageError::io(StorageErrorKind::Write, what, &e);
                *self = Storage::Pending(pf);
                Err(err)
            }
        }
    }

    /// `OUT.part`, while a download to a named output runs.
    pub fn part_name(&self) -> Option<&Path> {
        match self {
            Storage::Pending(pf) | Storage::Part(pf, _) if pf.out.is_some() => Some(&pf.part),
            _ => None,
        }
    }

    /// Renames `OUT.part` to `OUT`, never over a file that appeared at `OUT` meanwhile; the
    /// mapping stays valid for serving peers.
    pub fn finish(&mut self) -> Result<(), StorageError> {
        if let Storage::Discard = self {
            return Ok(());
        }
        let Storage::Part(pf, map) = std::mem::replace(self, Storage::Empty) else {
            return Err(StorageError::new(
                StorageErrorKind::Order,
                "output finished before it was prepared",
            ));
        };
        let Some(out) = &pf.out else {
            // The temporary file of `--output -`: stdout takes the bytes from the mapping.
            *self = Storage::Done(pf.file, map);
            return Ok(());
        };
        if let Err(e) = rename_no_replace(&pf.part, out) {
            let err = if e.kind() == io::ErrorKind::AlreadyExists {
                StorageError::new(
                    StorageErrorKind::OutputExists,
                    format!(
                        "{} appeared during the download and is left alone; the complete file is {}",
                        out.display(),
                        pf.part.display()
                    ),
                )
            } else {
                let what = format!("cannot rename {} to {}", pf.part.display(), out.display());
                StorageError::io(StorageErrorKind::Rename, what, &e)
            };
            *self = Storage::Part(pf, map);
            return Err(err);
        }
        *self = Storage::Done(pf.file, map);
        Ok(())
    }

    /// After a failure: an `OUT.part` that holds nothing yet is removed; one the manifest
    /// sized is kept, for the next `get` to the same output to resume, and so is an earlier
    /// run's leftover that could not be sized (a full disk): its pieces are still good.
    pub fn abandon(self) {
        if let Storage::Pending(pf) = self
            && pf.out.is_some()
            && pf.file.metadata().is_ok_and(|md| md.len() == 0)
        {
            let _ = std::fs::remove_file(&pf.part);
        }
    }

    /// Origin: what the served file looks like to `stat` now (size, change times), to tell
    /// that it changed while served; `None` for a client's output or if `fstat` fails.
    pub fn source_stamp(&self) -> Option<SourceStamp> {
        use std::os::unix::fs::MetadataExt;
        let Storage::Source(f, _) = self else {
            return None;
        };
        let md = f.metadata().ok()?;
        Some(SourceStamp {
            len: md.len(),
            mtime: (md.mtime(), md.mtime_nsec()),
            ctime: (md.ctime(), md.ctime_nsec()),
        })
    }

    /// Origin: whether `piece` as the served file holds it now still matches `m`: inside the
    /// file's current length (a shrunk file's lost range would fault) and of the manifest's
    /// hash. Reads the whole piece; the driver asks only once the file has changed.
    pub fn piece_matches(&self, m: &Manifest, piece: u32) -> bool {
        let Storage::Source(f, map) = self else {
            return true;
        };
        let (off, len) = (m.piece_offset(piece), m.piece_len(piece) as u64);
        let now_len = f.metadata().map_or(0, |md| md.len()).min(map.len() as u64);
        off + len <= now_len
            && m.verify(
                piece,
                &manifest::hash(&map[off as usize..(off + len) as usize]),
            )
    }

    /// The whole file's bytes, for uploads and verification.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Storage::Source(_, m) | Storage::Part(_, m) | Storage::Done(_, m) => m,
            Storage::Pending(_) | Storage::Discard | Storage::Empty => &[],
        }
    }

    /// Drops this process's page-table references to the mapped file (after the manifest's
    /// hashing pass touched every page). The pages stay in the page cache; only RSS goes down.
    pub fn release_pages(&self) {
        if let Storage::Source(_, m) | Storage::Part(_, m) | Storage::Done(_, m) = self
            && !m.is_empty()
        {
            // SAFETY: MADV_DONTNEED on a shared, read-only file mapping only unmaps pages;
            // the next access faults them back in from the page cache, unchanged.
            let _ = unsafe { m.unchecked_advise(UncheckedAdvice::DontNeed) };
        }
    }

    /// `release_pages` for a range already sent: an origin serving 1,000 clients otherwise
    /// counts every page it ever sent in its RSS.
    pub fn release_range(&self, offset: usize, len: usize) {
        if let Storage::Source(_, m) | Storage::Part(_, m) | Storage::Done(_, m) = self
            && offset + len <= m.len()
            && len > 0
        {
            // SAFETY: as in `release_pages`. The range need not be page-aligned (a custom
            // piece size puts pieces mid-page): memmap2 widens it to whole pages, which at
            // worst unmaps a neighbouring page that its next use faults back in.
            let _ = unsafe { m.unchecked_advise_range(UncheckedAdvice::DontNeed, offset, len) };
        }
    }

    /// The file's descriptor, for `sendfile` (none for the discard sink).
    pub fn fd(&self) -> Option<std::os::unix::io::RawFd> {
        match self {
            Storage::Source(f, _) | Storage::Done(f, _) => Some(f.as_raw_fd()),
            Storage::Part(pf, _) => Some(pf.file.as_raw_fd()),
            _ => None,
        }
    }

    /// Writes received piece bytes (one chunk of a piece) at `offset` of `OUT.part`.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        match self {
            Storage::Part(pf, _) => pf.file.write_all_at(data, offset).map_err(|e| {
                let what = format!("cannot write {}", pf.part.display());
                StorageError::io(StorageErrorKind::Write, what, &e)
            }),
            Storage::Discard => Ok(()),
            _ => Err(StorageError::new(
                StorageErrorKind::Order,
                "received a piece before the output was prepared",
            )),
        }
    }
}

fn reserve(file: &File, len: u64) -> io::Result<()> {
    file.set_len(len)?;
    if len == 0 {
        return Ok(());
    }
    // SAFETY: plain syscall wrapper on a valid, open descriptor.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
    match rc {
        0 => Ok(()),
        // Filesystems without fallocate: the sparse file is the best we can do.
        libc::EOPNOTSUPP | libc::EINVAL => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tfttp-storage-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A served file rewritten in place: the stamp changes and the rewritten piece no longer
    /// matches; after a truncation the lost pieces do not match either (and are not read).
    #[test]
    fn test_source_changed_in_place_is_seen_by_stamp_and_piece_check() {
        let d = tmp("changed");
        let path = d.join("src.bin");
        let data: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let m = Manifest::build(&data, 16 * 1024).unwrap();
        let src = open_source(&path).unwrap();
        let before = src.source_stamp().unwrap();
        assert!((0..4).all(|p| src.piece_matches(&m, p)));
        // File times tick with the kernel's coarse clock (a few ms).
        std::thread::sleep(std::time::Duration::from_millis(30));
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(b"changed", 20_000).unwrap();
        assert_ne!(src.source_stamp().unwrap(), before);
        let now: Vec<bool> = (0..4).map(|p| src.piece_matches(&m, p)).collect();
        assert_eq!(now, vec![true, false, true, true]);
        f.set_len(40_000).unwrap();
        let now: Vec<bool> = (0..4).map(|p| src.piece_matches(&m, p)).collect();
        assert_eq!(now, vec![true, false, false, false]);
        drop(src);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn test_second_download_to_the_same_output_is_refused() {
        let d = tmp("busy");
        let out = d.join("f.bin");
        let data = vec![7u8; 40_000];
        let m = Manifest::build(&data, 16 * 1024).unwrap();
        let mut first = Storage::create_part(&out).unwrap();
        first.prepare(&m).unwrap();
        first.write_at(0, &data).unwrap();
        let e = Storage::create_part(&out).err().unwrap();
        assert_eq!(e.kind, StorageErrorKind::Busy, "{e}");
        // The first download's bytes are untouched (the second did not truncate them).
        assert_eq!(std::fs::read(part_path(&out)).unwrap(), data);
        first.finish().unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), data);
        drop(first);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn test_leftover_part_resumes_with_the_pieces_that_verify() {
        let d = tmp("resume");
        let out = d.join("f.bin");
        let piece = 16 * 1024;
        let data: Vec<u8> = (0..5 * piece).map(|i| (i * 7 % 251) as u8).collect();
        let m = Manifest::build(&data, piece as u32).unwrap();
        let mut first = Storage::create_part(&out).unwrap();
        assert!(first.prepare(&m).unwrap().verified.is_empty());
        // Pieces 0 and 3 written, 1 half written, then the process dies.
        first.write_at(0, &data[..piece]).unwrap();
        first
            .write_at(piece as u64, &data[piece..piece + piece / 2])
            .unwrap();
        first
            .write_at(3 * piece as u64, &data[3 * piece..4 * piece])
            .unwrap();
        drop(first);
        let mut again = Storage::create_part(&out).unwrap();
        let left = again.prepare(&m).unwrap();
        assert_eq!(left.bytes, 5 * piece as u64);
        assert_eq!(left.verified, vec![0, 3]);
        drop(again);
        // Truncated between runs to 2.5 pieces: the whole pieces of its prefix that verify
        // are kept (0; 1 is half written), the rest is fetched.
        std::fs::OpenOptions::new()
            .write(true)
            .open(part_path(&out))
            .unwrap()
            .set_len(5 * piece as u64 / 2)
            .unwrap();
        let mut cut = Storage::create_part(&out).unwrap();
        let left = cut.prepare(&m).unwrap();
        assert_eq!((left.bytes, left.verified), (5 * piece as u64 / 2, vec![0]));
        assert_eq!(cut.bytes().len(), data.len());
        drop(cut);
        // Another file's leftover, longer than this one: none of its pieces verify, and it
        // is cut to this file's length.
        let other: Vec<u8> = data[..2 * piece].iter().map(|b| b ^ 0x5a).collect();
        let other = Manifest::build(&other, piece as u32).unwrap();
        let mut third = Storage::create_part(&out).unwrap();
        let left = third.prepare(&other).unwrap();
        assert_eq!((left.bytes, left.verified), (5 * piece as u64, vec![]));
        assert_eq!(third.bytes().len(), 2 * piece);
        drop(third);
        // A fresh output has no leftover.
        let mut fresh = Storage::create_part(&d.join("g.bin")).unwrap();
        assert_eq!(fresh.prepare(&m).unwrap(), Leftover::default());
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A leftover that cannot be sized (here: it is not prepared at all, as when the disk
    /// is full) is kept by `abandon`; an empty `.part` of a run that never got its manifest
    /// is removed.
    #[test]
    fn test_abandon_keeps_a_leftover_with_bytes_and_removes_an_empty_part() {
        let d = tmp("abandon");
        let out = d.join("f.bin");
        Storage::create_part(&out).unwrap().abandon();
        assert!(!part_path(&out).exists());
        std::fs::write(part_path(&out), b"an earlier run's pieces").unwrap();
        Storage::create_part(&out).unwrap().abandon();
        assert_eq!(
            std::fs::read(part_path(&out)).unwrap(),
            b"an earlier run's pieces"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn test_planted_part_symlink_is_not_followed() {
        let d = tmp("symlink");
        let out = d.join("f.bin");
        let victim = d.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        std::os::unix::fs::symlink(&victim, part_path(&out)).unwrap();
        let e = Storage::create_part(&out).err().unwrap();
        assert_eq!(e.kind, StorageErrorKind::Create, "{e}");
        assert!(e.to_string().contains("is a symbolic link"), "{e}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn test_output_that_appears_meanwhile_is_not_replaced() {
        let d = tmp("appears");
        let out = d.join("f.bin");
        let data = vec![9u8; 20_000];
        let m = Manifest::build(&data, 16 * 1024).unwrap();
        let mut s = Storage::create_part(&out).unwrap();
        s.prepare(&m).unwrap();
        s.write_at(0, &data).unwrap();
        std::fs::write(&out, b"the user's own").unwrap();
        let e = s.finish().err().unwrap();
        assert_eq!(e.kind, StorageErrorKind::OutputExists, "{e}");
        assert_eq!(std::fs::read(&out).unwrap(), b"the user's own");
        // The finished work is kept under the .part name.
        s.abandon();
        assert_eq!(std::fs::read(part_path(&out)).unwrap(), data);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn test_part_renamed_only_on_finish() {
        let d = tmp("finish");
        let out = d.join("f.bin");
        let data = vec![3u8; 40_000];
        let m = Manifest::build(&data, 16 * 1024).unwrap();
        let mut s = Storage::create_part(&out).unwrap();
        s.prepare(&m).unwrap();
        s.write_at(0, &data[..20_000]).unwrap();
        s.write_at(20_000, &data[20_000..]).unwrap();
        assert!(part_path(&out).exists());
        assert!(!out.exists());
        s.finish().unwrap();
        assert!(out.exists() && !part_path(&out).exists());
        assert_eq!(s.bytes(), &data[..]);
        assert_eq!(std::fs::read(&out).unwrap(), data);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn test_temp_file_leaves_no_name_and_finishes_in_place() {
        let d = tmp("temp");
        let data: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        let m = Manifest::build(&data, 16 * 1024).unwrap();
        let mut s = Storage::create_temp(&d).unwrap();
        // Unlinked at once: the directory is empty while the download runs.
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0);
        assert!(s.prepare(&m).unwrap().verified.is_empty());
        s.write_at(16 * 1024, &data[16 * 1024..]).unwrap();
        s.write_at(0, &data[..16 * 1024]).unwrap();
        s.finish().unwrap();
        assert!(matches!(s, Storage::Done(..)));
        assert_eq!(s.bytes(), &data[..]);
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0);
        // A name another process holds is skipped, not opened.
        std::fs::write(
            d.join(format!("tfttp-stdout-{}-0.part", std::process::id())),
            b"theirs",
        )
        .unwrap();
        let t = Storage::create_temp(&d).unwrap();
        t.abandon();
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn test_existing_output_refused() {
        let d = tmp("exists");
        let out = d.join("f.bin");
        std::fs::write(&out, b"keep me").unwrap();
        let e = Storage::create_part(&out).err().unwrap();
        assert_eq!(e.kind, StorageErrorKind::OutputExists);
        assert!(e.to_string().contains("already exists"), "{e}");
        assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn test_unwritable_directory_is_an_error() {
        let e = Storage::create_part(Path::new("/nonexistent-dir/x"))
            .err()
            .unwrap();
        assert_eq!(e.kind, StorageErrorKind::Create);
        assert!(e.to_string().contains("cannot create"), "{e}");
    }

    #[test]
    fn test_empty_file() {
        let d = tmp("empty");
        let out = d.join("e");
        let m = Manifest::build(&[], 16 * 1024).unwrap();
        let mut s = Storage::create_part(&out).unwrap();
        s.prepare(&m).unwrap();
        s.finish().unwrap();
        assert!(s.bytes().is_empty());
        assert_eq!(std::fs::metadata(&out).unwrap().len(), 0);
        let _ = std::fs::remove_dir_all(&d);
    }
}
