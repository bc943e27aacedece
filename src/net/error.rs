//! The driver's errors, by kind: the command line turns each into its line and exit status,
//! and a caller can tell a full disk from a peer's fault without reading text.

use std::fmt;
use std::io;

use crate::proto::Failure;

/// What went wrong with the output file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageErrorKind {
    /// The output already exists; nothing was touched.
    OutputExists,
    /// `OUT.part` could not be created.
    Create,
    /// Another process is downloading to the same output (it holds `OUT.part`'s lock).
    Busy,
    /// The disk has no room for the file (reserving its space or writing it).
    NoSpace,
    /// Reserving, mapping or writing `OUT.part` failed otherwise.
    Write,
    /// The finished `OUT.part` could not be renamed to the output.
    Rename,
    /// A call out of order (a piece before the manifest): a bug, not the disk.
    Order,
}

/// An output-file error: its kind and the line a user reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageError {
    /// What failed.
    pub kind: StorageErrorKind,
    message: String,
}

impl StorageError {
    /// An error of `kind` with its message.
    pub fn new(kind: StorageErrorKind, message: impl Into<String>) -> StorageError {
        StorageError {
            kind,
            message: message.into(),
        }
    }

    /// An error of `kind` (or `NoSpace` if the OS says the disk is full) for `what` failing
    /// with `e`.
    pub(crate) fn io(kind: StorageErrorKind, what: String, e: &io::Error) -> StorageError {
        let kind = if e.raw_os_error() == Some(libc::ENOSPC) {
            StorageErrorKind::NoSpace
        } else {
            kind
        };
        StorageError::new(kind, format!("{what}: {e}"))
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StorageError {}

/// Why `Driver::run` ended without success.
#[derive(Debug)]
pub enum RunError {
    /// The node gave up (`Event::Fatal`).
    Failed(Failure),
    /// The output file failed.
    Storage(StorageError),
    /// A stop signal (`STOP_SIGNALS`: SIGINT, SIGTERM, SIGHUP, SIGQUIT).
    Interrupted,
    /// The event loop itself failed (`poll`).
    Io(io::Error),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Failed(why) => write!(f, "{why}"),
            RunError::Storage(e) => write!(f, "{e}"),
            RunError::Interrupted => f.write_str("interrupted"),
            RunError::Io(e) => write!(f, "poll failed: {e}"),
        }
    }
}

impl std::error::Error for RunError {}

impl From<StorageError> for RunError {
    fn from(e: StorageError) -> RunError {
        RunError::Storage(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_a_full_disk_is_told_apart() {
        let full = io::Error::from_raw_os_error(libc::ENOSPC);
        let e = StorageError::io(StorageErrorKind::Write, "cannot write x".into(), &full);
        assert_eq!(e.kind, StorageErrorKind::NoSpace);
        let denied = io::Error::from_raw_os_error(libc::EACCES);
        let e = StorageError::io(StorageErrorKind::Write, "cannot write x".into(), &denied);
        assert_eq!(e.kind, StorageErrorKind::Write);
        assert!(e.to_string().starts_with("cannot write x: "), "{e}");
    }
}
