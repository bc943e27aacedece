//! `--output -`: the verified file to stdout in order, while its pieces arrive in any order.
//! The pieces wait in the node's storage (the unnamed temporary file of
//! `Storage::create_temp`), and after every turn of the loop the contiguous verified prefix
//! is written out as far as the descriptor takes it. A pipe or socket is made nonblocking and
//! polled for writability, so a slow reader never stalls the swarm (the temporary file
//! absorbs the difference); a regular file or a device cannot be polled and is written
//! blocking, at most `TURN` bytes per turn of the loop. Once the last byte is out, the
//! descriptor is pointed at /dev/null, so the reader sees the end of the file while the node
//! goes on serving peers.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use super::storage::Storage;
use crate::proto::Node;

/// The output's token: below the metrics endpoint's range, far above any connection slot.
pub(super) const OUT_TOKEN: Token = Token(super::metrics::FIRST_TOKEN - 1);
/// Most bytes written to an unpollable descriptor per turn of the loop: a few milliseconds
/// of disk, so the sockets are served between writes.
const TURN: usize = 4 << 20;

/// Where the node's verified bytes go in order.
pub(super) struct InOrder {
    /// Our duplicate of the target descriptor; `None` once the end was written.
    file: Option<File>,
    /// The descriptor the user gave (stdout), pointed at /dev/null at the end.
    target: RawFd,
    /// Its status flags before we set `O_NONBLOCK`, restored when done: the open file
    /// description is shared with whoever else writes to the same pipe.
    flags: libc::c_int,
    /// Registered with the poller (a pipe or socket) rather than written blocking.
    polled: bool,
    /// The last write did not hit `WouldBlock` (always true when not polled).
    writable: bool,
    /// The first piece not yet known to be verified.
    next_piece: u32,
    /// End of the verified prefix, and how much of it was written.
    ready: u64,
    written: u64,
}

impl InOrder {
    /// Writes to `target` (stdout) from now on; polled through `registry` if it can be.
    pub(super) fn new(target: RawFd, registry: &Registry) -> io::Result<InOrder> {
        // SAFETY: fcntl on a descriptor the caller says is open; the duplicate is ours.
        let dup = unsafe { libc::fcntl(target, libc::F_DUPFD_CLOEXEC, 3) };
        if dup < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `dup` was just returned by fcntl and nothing else owns it.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(dup) });
        // SAFETY: plain fcntl calls on our open descriptor.
        let flags = unsafe { libc::fcntl(dup, libc::F_GETFL) };
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut out = InOrder {
            file: Some(file),
            target,
            flags,
            polled: false,
            writable: true,
            next_piece: 0,
            ready: 0,
            written: 0,
        };
        // SAFETY: as above.
        if unsafe { libc::fcntl(dup, libc::F_SETFL, flags | libc::O_NONBLOCK) } == 0 {
            // epoll refuses regular files and most devices (EPERM): those are written
            // blocking, which for them costs no more than a disk write.
            let src = &mut SourceFd(&dup);
            if registry
                .register(src, OUT_TOKEN, Interest::WRITABLE)
                .is_ok()
            {
                out.polled = true;
            } else {
                out.restore_flags();
            }
        }
        Ok(out)
    }

    /// The descriptor reported writable.
    pub(super) fn on_writable(&mut self) {
        self.writable = true;
    }

    /// Verified bytes are waiting and the descriptor may take them now.
    pub(super) fn due(&self) -> bool {
        self.file.is_some() && self.writable && self.written < self.ready
    }

    /// Every byte of the complete file was written (and the reader given the end).
    pub(super) fn is_done(&self) -> bool {
        self.file.is_none()
    }

    /// Writes what the node has verified beyond what was written, as far as the descriptor
    /// takes it; gives the reader the end once the whole file is out.
    pub(super) fn pump(
        &mut self,
        node: &Node,
        storage: &Storage,
        registry: &Registry,
    ) -> io::Result<()> {
        let (Some(m), Some(have)) = (node.manifest(), node.have()) else {
            return Ok(());
        };
        if self.file.is_none() {
            return Ok(());
        }
        while self.next_piece < m.piece_count() && have.get(self.next_piece) {
            let i = self.next_piece;
            self.ready = m.piece_offset(i) + m.piece_len(i) as u64;
            self.next_piece += 1;
        }
        let bytes = storage.bytes();
        let mut budget = if self.polled { usize::MAX } else { TURN };
        while self.writable && self.written < self.ready && budget > 0 {
            let (from, to) = (self.written as usize, self.ready as usize);
            let chunk = &bytes[from..to.min(from.saturating_add(budget))];
            let Some(f) = self.file.as_mut() else { break };
            match f.write(chunk) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.written += n as u64;
                    budget -= n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.written == m.file_len() && node.is_complete() {
            self.finish(registry);
        }
        Ok(())
    }

    /// After the loop: writes the rest blocking (the node is done with its sockets).
    pub(super) fn drain(
        &mut self,
        node: &Node,
        storage: &Storage,
        registry: &Registry,
    ) -> io::Result<()> {
        if let Some(f) = &self.file {
            if self.polled {
                let _ = registry.deregister(&mut SourceFd(&f.as_raw_fd()));
                self.polled = false;
            }
            self.restore_flags();
        }
        while self.file.is_some() {
            self.writable = true;
            let before = self.written;
            self.pump(node, storage, registry)?;
            if self.written == before && self.file.is_some() {
                // Nothing more is verified: the download did not complete.
                return Ok(());
            }
        }
        Ok(())
    }

    /// The whole file is out: stop polling, restore the descriptor's flags, and point the
    /// target at /dev/null so that the reader sees the end while the node keeps running.
    fn finish(&mut self, registry: &Registry) {
        let Some(f) = self.file.take() else { return };
        if self.polled {
            let _ = registry.deregister(&mut SourceFd(&f.as_raw_fd()));
        }
        // SAFETY: fcntl on our open descriptor.
        unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFL, self.flags) };
        drop(f);
        if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
            // SAFETY: dup2 onto the target the caller handed us; later writes to it (there
            // should be none) go nowhere instead of to a closed or reused descriptor.
            unsafe { libc::dup2(null.as_raw_fd(), self.target) };
        }
    }

    fn restore_flags(&self) {
        if let Some(f) = &self.file {
            // SAFETY: fcntl on our open descriptor.
            unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFL, self.flags) };
        }
    }
}

impl Drop for InOrder {
    fn drop(&mut self) {
        self.restore_flags();
    }
}
