//! The I/O edge: sockets (socket2 + mio), the mapped files (memmap2), rate limits and the
//! event loop that drives a client's `proto::Node`, or an origin's, one per served file.

pub mod catalog;
mod conn;
mod driver;
mod error;
mod http;
mod inorder;
mod limits;
mod metrics;
mod pacing;
mod probe;
mod ratelimit;
mod router;
pub mod socket;
pub mod storage;
mod swarms;
mod tcpinfo;
pub mod tree;

pub use driver::{
    Driver, Options, Reporter, STOP_SIGNALS, SendfileMode, install_signal_handlers, stop_signal,
    stopped,
};
pub use error::{RunError, StorageError, StorageErrorKind};
// The simulator shares a connection's upload the way the driver does.
pub(crate) use driver::quantum;
pub use limits::{MAX_CONNS_ORIGIN, max_conns_client};
