//! Why a client gives up: the kind, for callers that act on it (an exit code, a retry), and
//! the one line a user reads.

use std::fmt;

/// What made a download impossible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Could not reach the origin, or lost it before the manifest arrived.
    Unreachable,
    /// The server does not speak TFTTP (or broke the protocol before the manifest).
    NotTftp,
    /// The origin speaks a protocol version we do not.
    Incompatible,
    /// The origin refused us with an ERROR.
    Refused,
    /// The origin serves another file than the one we started (or its manifest does not
    /// match its file id).
    WrongFile,
    /// The manifest could not be decoded.
    BadManifest,
    /// No piece payload arrived for the stall timeout.
    Stalled,
}

/// A client's reason to give up (`Event::Fatal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong, for a caller that acts on it; `Display` gives the message.
    pub kind: FailureKind,
    message: String,
}

impl Failure {
    /// A failure of `kind` reported to the user as `message`, one line.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}
