//! Exit codes: what a failure was, told to a script by a number. The typed errors of the
//! library (`RunError`, `FailureKind`, `StorageErrorKind`) are mapped here and nowhere else,
//! and `--help` and the README print the same table.
//!
//! Numbers are small and distinct, as sysexits and curl do; 2 is usage as for every GNU tool,
//! and a signal gives 128 + its number, as a shell reports a process it killed.

use std::fmt;

use tfttp::net::{RunError, StorageError, StorageErrorKind};
use tfttp::proto::{Failure, FailureKind};

/// Why the command failed, as far as a script cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Anything not listed below (the event loop failed, a bug).
    Other,
    /// Bad command line or scenario: nothing was started.
    Usage,
    /// The server's name does not resolve.
    Resolve,
    /// Nothing accepted the connection, or it was lost before the manifest arrived.
    Connect,
    /// The server is not a TFTTP server, speaks another version, refused us (a swarm
    /// secret, a file name) or serves another file than the one asked for.
    Protocol,
    /// The manifest could not be decoded.
    Verify,
    /// A local file or socket: the output exists, no space, no permission, cannot listen.
    LocalIo,
    /// No piece data arrived for `--stall-timeout`.
    Stalled,
    /// A stop signal: SIGINT, SIGTERM, SIGHUP or SIGQUIT (the signal's number).
    Signal(i32),
}

/// Every exit, in the order `--help` lists them.
const TABLE: [Exit; 12] = [
    Exit::Other,
    Exit::Usage,
    Exit::Resolve,
    Exit::Connect,
    Exit::Protocol,
    Exit::Verify,
    Exit::LocalIo,
    Exit::Stalled,
    Exit::Signal(libc::SIGHUP),
    Exit::Signal(libc::SIGINT),
    Exit::Signal(libc::SIGQUIT),
    Exit::Signal(libc::SIGTERM),
];

impl Exit {
    /// The process exit status.
    pub fn code(self) -> i32 {
        match self {
            Exit::Other => 1,
            Exit::Usage => 2,
            Exit::Resolve => 3,
            Exit::Connect => 4,
            Exit::Protocol => 5,
            Exit::Verify => 6,
            Exit::LocalIo => 7,
            Exit::Stalled => 8,
            Exit::Signal(sig) => 128 + sig,
        }
    }

    fn meaning(self) -> &'static str {
        match self {
            Exit::Other => "other failure (event loop error, bug)",
            Exit::Usage => "bad command line or scenario file",
            Exit::Resolve => "cannot resolve the server's name",
            Exit::Connect => "cannot connect (refused, unreachable, lost before the manifest)",
            Exit::Protocol => {
                "not a TFTTP server, other protocol version, refused (secret, name), other file or digest"
            }
            Exit::Verify => "the manifest does not decode",
            Exit::LocalIo => {
                "local file or socket: output exists, disk full, permission, stdout closed"
            }
            Exit::Stalled => "stalled: no piece data for --stall-timeout",
            Exit::Signal(libc::SIGHUP) => "stopped by SIGHUP (terminal closed)",
            Exit::Signal(libc::SIGINT) => "interrupted by SIGINT (Ctrl-C)",
            Exit::Signal(libc::SIGQUIT) => "stopped by SIGQUIT (Ctrl-\\)",
            Exit::Signal(_) => "stopped by SIGTERM",
        }
    }

    /// The table for `--help`, one line per code.
    pub fn help_table() -> String {
        let mut s = String::from("Exit status:\n");
        s.push_str("    0    success (get: the file is complete and in place)\n");
        for e in TABLE {
            s.push_str(&format!("  {:>3}    {}\n", e.code(), e.meaning()));
        }
        s
    }
}

/// A failed command: its exit and the one line a user reads.
#[derive(Debug)]
pub struct Fail {
    pub exit: Exit,
    pub message: String,
}

impl Fail {
    pub fn new(exit: Exit, message: impl Into<String>) -> Fail {
        Fail {
            exit,
            message: message.into(),
        }
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<&Failure> for Exit {
    fn from(f: &Failure) -> Exit {
        match f.kind {
            FailureKind::Unreachable => Exit::Connect,
            FailureKind::NotTftp
            | FailureKind::Incompatible
            | FailureKind::Refused
            | FailureKind::WrongFile => Exit::Protocol,
            FailureKind::BadManifest => Exit::Verify,
            FailureKind::Stalled => Exit::Stalled,
        }
    }
}

impl From<StorageError> for Fail {
    fn from(e: StorageError) -> Fail {
        let exit = match e.kind {
            // Out of order is our bug, not the disk's.
            StorageErrorKind::Order => Exit::Other,
            _ => Exit::LocalIo,
        };
        Fail::new(exit, e.to_string())
    }
}

impl From<RunError> for Fail {
    fn from(e: RunError) -> Fail {
        match e {
            RunError::Failed(f) => Fail::new(Exit::from(&f), f.to_string()),
            RunError::Storage(s) => s.into(),
            RunError::Interrupted => {
                let sig = tfttp::net::stop_signal().unwrap_or(libc::SIGINT);
                Fail::new(Exit::Signal(sig), "interrupted")
            }
            RunError::Io(_) => Fail::new(Exit::Other, e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_codes_are_distinct_and_signals_follow_the_shell() {
        let mut codes: Vec<i32> = TABLE.iter().map(|e| e.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), TABLE.len());
        assert_eq!(Exit::Signal(libc::SIGINT).code(), 130);
        assert_eq!(Exit::Signal(libc::SIGTERM).code(), 143);
        assert_eq!(Exit::Signal(libc::SIGHUP).code(), 129);
        assert_eq!(Exit::Signal(libc::SIGQUIT).code(), 131);
        assert_eq!(Exit::Usage.code(), 2);
    }

    #[test]
    fn test_help_table_lists_every_code() {
        let t = Exit::help_table();
        for e in TABLE {
            assert!(t.contains(&format!("{:>3}    ", e.code())), "{t}");
        }
    }
}
