//! How a node is configured (the command line's options, as the core sees them).

use super::*;

/// Default `Config::linger`. Seeds that stay are what lets the slowest clients finish near
/// the swarm's minimum time: in the simulator, 300 clients with uplinks from 5 to 100 Mbit/s
/// took 2.67 times their minimum when seeds left 30 s after completing and 1.63 times with
/// this; the idle rule sends a seed home as soon as nobody downloads from it.
pub const DEFAULT_LINGER: Duration = Duration::from_secs(600);

/// What a node is told at start: its role, identity, peers and policy. `Config::new` gives
/// the command line's defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Origin (serves the file) or client (downloads it).
    pub role: Role,
    /// Our id in HELLO: random per run on the command line, fixed in tests and the simulator. It
    /// seeds the node's RNG, and between two listening clients the smaller id dials.
    pub node_id: u64,
    /// Port we accept peers on, 0 for none.
    pub listen_port: u16,
    /// Client: the origin's address.
    pub server: Option<SocketAddr>,
    /// Client: trade with peers (false = plain client-server download).
    pub use_peers: bool,
    /// Client: stop dialing peers while this many peer connections are open (`--max-peers`);
    /// the driver bounds accepted ones (`max_conns_client`).
    pub max_peers: usize,
    /// Client: the longest it keeps serving peers after completing. It leaves sooner when
    /// the origin says the swarm is done, or once no peer has wanted anything from it for
    /// `LINGER_IDLE`.
    pub linger: Duration,
    /// Client: give up after this long without a byte of piece payload. Verified pieces
    /// alone are the wrong measure: a large last piece from a slow, widely shared peer can
    /// take longer than this while arriving steadily.
    pub stall_timeout: Duration,
    /// Origin: exit once this many clients completed and no connected client is incomplete.
    pub exit_after: Option<u32>,
    /// How upload is shared among peers (`--policy`).
    pub policy: Policy,
    /// Configured upload capacity (`--up-rate`), bytes per second on the wire: the policy
    /// counts payload, `TCP_GOODPUT` of it.
    pub capacity: Option<u64>,
    /// Send a STAMP before each PIECE and keep the receivers' QUEUE_DELAY answers
    /// (docs/PROTOCOL.md §4.10): the pacer's reading of the node's own queue, for
    /// `UpRate::Auto`. Answering STAMPs needs no setting.
    pub stamp_pieces: bool,
    /// Client: how it behaves towards peers (misbehaviour exists to measure the policy).
    pub behaviour: Behaviour,
    /// The swarm key (`--secret-file`): every connection must prove it holds the same one
    /// (AUTH, docs/PROTOCOL.md §4.7) before anything else is exchanged. `None`: the node
    /// neither asks nor answers.
    pub secret: Option<SwarmKey>,
    /// Keys the stream of HELLO nonces. The command line fills it from the OS; the default,
    /// derived from `node_id`, repeats runs exactly (tests, the simulator) but is guessable.
    pub nonce_key: [u8; 32],
    /// Client: the path it asks the origin for in HELLO; empty for the origin's only file.
    pub path: String,
    /// Client: the root digest the manifest must have (`--expect-digest`); otherwise the
    /// download stops before its first piece.
    pub expect_digest: Option<Hash>,
    /// Origin: the name its file answers to in a HELLO's path (besides the empty path).
    pub serve_name: Option<String>,
    /// Origin: how many files the server serves, each with its own node. With more than
    /// one, the empty path names none of them and is refused (docs/PROTOCOL.md §4.1).
    pub served_files: usize,
}

/// A client's conduct. Only `Honest` is for real use; the others let tests and benchmarks
/// measure what the incentive policy does to cheaters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Uploads to peers as the policy decides and reports receipts truthfully.
    Honest,
    /// Downloads, never uploads to peers, and sends no receipts.
    FreeRider,
    /// A free rider that also claims, in its receipts, uploads it never made.
    Liar,
    /// A free rider in a group of identities that vouch for each other: to the origin it
    /// confirms in its receipts that every partner uploaded to it (and it to them) as much
    /// as it has downloaded, and announces with HAVE each piece a partner announces to it.
    /// Partners know each other by `COLLUDER_TAG` in their node ids (real colluders would
    /// agree out of band; the tag spares tests a side channel).
    Colluder,
}

/// The top 16 bits of a colluder's node id (`Behaviour::Colluder`).
const COLLUDER_TAG: u64 = 0xC011 << 48;
const TAG_MASK: u64 = 0xFFFF << 48;

impl Behaviour {
    /// The node id a node of this behaviour uses, from a random or seeded `raw` one:
    /// colluders carry the tag their partners recognise.
    pub fn node_id(self, raw: u64) -> u64 {
        match self {
            Behaviour::Colluder => COLLUDER_TAG | (raw & !TAG_MASK) | 1,
            _ => raw,
        }
    }

    /// Whether `id` is a colluder's (see `node_id`).
    pub fn is_colluder_id(id: u64) -> bool {
        id & TAG_MASK == COLLUDER_TAG
    }

    /// Chokes every peer: free riders, liars and colluders alike.
    pub fn uploads_nothing(self) -> bool {
        self != Behaviour::Honest
    }

    /// Sends RECEIPTs: all but a free rider, which has nothing to gain from them (they
    /// would confirm its peers' uploads and report what it took).
    pub fn sends_receipts(self) -> bool {
        self != Behaviour::FreeRider
    }
}

impl Config {
    /// The defaults: trade with up to 64 peers, linger 30 s, give up after 60 s without
    /// payload, run `Policy::Tft`, no capacity given, honest, no secret, no path.
    pub fn new(role: Role, node_id: u64) -> Config {
        Config {
            role,
            node_id,
            listen_port: 0,
            server: None,
            use_peers: true,
            max_peers: 64,
            linger: DEFAULT_LINGER,
            stall_timeout: Duration::from_secs(60),
            exit_after: None,
            policy: Policy::Tft,
            capacity: None,
            stamp_pieces: false,
            behaviour: Behaviour::Honest,
            secret: None,
            nonce_key: blake3::derive_key("tfttp nonce key for tests", &node_id.to_be_bytes()),
            path: String::new(),
            expect_digest: None,
            serve_name: None,
            served_files: 1,
        }
    }

    /// What `up` (`--up-rate`) tells the node: its capacity if told one, and to stamp its
    /// pieces if it runs the pacer, which reads its queue from the answers. The pacer itself
    /// is the driver's (or the simulator's).
    pub fn set_up_rate(&mut self, up: UpRate) {
        self.capacity = up.told();
        self.stamp_pieces = up == UpRate::Auto;
    }
}

/// What paces a node's upload (`--up-rate`, the simulator's `up_rate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpRate {
    /// `off`: nothing; the sockets take what they can and the link's queue sets the pace.
    Off,
    /// `auto`: the node's `proto::Pacer`, a little below the link as it measures it.
    Auto,
    /// A rate the node is told, bytes per second on the wire: it paces its payload at the
    /// goodput of it, and its policy is told it as its capacity.
    Fixed(u64),
}

impl UpRate {
    /// `off`: on the emulated network `auto` wins where uplinks are slow and costs a few
    /// percent where they are not (README, "The node's own uplink queue").
    pub const DEFAULT: UpRate = UpRate::Off;

    /// The rate the node is told, if any.
    pub fn told(self) -> Option<u64> {
        match self {
            UpRate::Fixed(r) => Some(r),
            UpRate::Off | UpRate::Auto => None,
        }
    }

    /// What a node on an uplink of `link_up` can upload, in the same unit: the link, or the
    /// rate it is told if lower, which it keeps to.
    pub fn cap(self, link_up: f64) -> f64 {
        self.told().map_or(link_up, |r| link_up.min(r as f64))
    }
}
