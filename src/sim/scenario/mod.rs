//! A simulator scenario: the swarm's hosts, their links and their conduct, read from JSON
//! (docs/SIMULATOR.md). Parsing checks every field once, so the engine never sees a
//! negative rate or an empty swarm.

use std::fmt;
use std::ops::RangeInclusive;

use serde_json::{Map, Value};

use crate::manifest::{ManifestError, auto_piece_size, piece_count_for};
pub use crate::proto::UpRate;
use crate::proto::{Behaviour, Policy};
use crate::wire::{MAX_PIECE_SIZE, MAX_PIECES, MIN_PIECE_SIZE};

/// A floor under every round trip, seconds: two hosts given `rtt_ms` 0 still pass each
/// message through two kernel stacks and a LAN switch (a few hundred microseconds), and a zero
/// RTT would let a request and its answer cross in no time.
pub const BASE_RTT: f64 = 0.0002;

pub use crate::bounds::TCP_GOODPUT;

/// Virtual seconds a run lasts unless `time_limit_s` says otherwise. A run need not end on its
/// own (a client whose every source has left waits forever); an hour bounds it and is over 200
/// times the Kumar-Ross minimum of the documented example (16.5 s).
pub const DEFAULT_TIME_LIMIT: f64 = 3600.0;

/// Most clients a scenario may expand to: a mistyped `count` fails here with a message
/// instead of allocating gigabytes of nodes.
pub const MAX_CLIENTS: u64 = 1_000_000;
/// Largest `rtt_ms` a host may have.
pub const MAX_RTT_MS: f64 = 60_000.0;

/// Keys each object may hold; any other key is an error, so a typo cannot silently fall back
/// to a default.
const TOP_KEYS: &[&str] = &[
    "file_size",
    "piece_size",
    "seed",
    "policy",
    "goodput",
    "uplink_queue",
    "time_limit_s",
    "origin",
    "clients",
];
const ORIGIN_KEYS: &[&str] = &["up", "down", "rtt_ms", "up_rate"];
const CLIENT_KEYS: &[&str] = &[
    "up", "down", "rtt_ms", "up_rate", "arrive_s", "leave", "behave", "count",
];

/// Longest quoted value in a message, in characters: keeps the message to one line when the
/// offending value is a whole object.
const MAX_GOT: usize = 40;

/// When a client leaves the swarm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Leave {
    /// The node's normal linger after completing (`Config::linger`), or earlier on SWARM_DONE.
    Linger,
    /// As soon as it has every piece.
    OnComplete,
    /// This many seconds after arriving, complete or not (churn).
    After(f64),
}

/// One host's link: rates in bytes per second before the goodput factor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkSpec {
    /// Upload capacity; always finite and positive.
    pub up: f64,
    /// Download capacity; `None` is unlimited.
    pub down: Option<f64>,
    /// Extra round-trip time of this host in seconds; the RTT between two hosts is the sum of
    /// theirs plus `BASE_RTT`.
    pub rtt: f64,
}

/// One client of a scenario (one per `count` in the file).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientSpec {
    /// Its host's link.
    pub link: LinkSpec,
    /// Seconds after the start.
    pub arrive: f64,
    /// When it leaves the swarm (`leave`; default: lingers as a real client does).
    pub leave: Leave,
    /// How it treats its peers (`behave`: honest, free-rider or liar).
    pub behave: Behaviour,
    /// How the node's upload is paced (`--up-rate`).
    pub up_rate: UpRate,
}

/// A checked scenario: the file, the policy every node runs, the origin's link and the
/// clients, with the defaults of docs/SIMULATOR.md filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Size of the shared file in bytes, at least 1.
    pub file_size: u64,
    /// `None`: `manifest::auto_piece_size(file_size)`, as `tfttp serve` chooses.
    pub piece_size: Option<u32>,
    /// Seeds node ids and piece hashes: the same scenario and seed give the same run (default
    /// 1).
    pub seed: u64,
    /// The incentive policy of every node, origin included (default `tft`).
    pub policy: Policy,
    /// The origin's link.
    pub origin: LinkSpec,
    /// How the origin's upload is paced (`--up-rate`).
    pub origin_up_rate: UpRate,
    /// Clients in file order with `count` expanded.
    pub clients: Vec<ClientSpec>,
    /// Multiply link rates by TCP/IP goodput over a 1500-byte MTU (1448 of 1514 bytes).
    pub goodput: bool,
    /// A saturated uplink delays what leaves it by its full queue (tbf's limit at its
    /// rate), as on the emulated network.
    pub uplink_queue: bool,
    /// Stop the run at this virtual time (seconds) even if clients are still downloading.
    pub time_limit: f64,
}

/// Why a scenario file was refused. Displays as one line that names the field's path
/// (`clients[2].up`), what it must be and what it was.
#[derive(Debug, Clone, PartialEq)]
pub enum ScenarioError {
    /// The text is not JSON: serde_json's message, with its line and column.
    NotJson(String),
    /// A required key is absent from the object at `at` (empty: the top level).
    Missing {
        /// Path of the object, as `clients[2]`.
        at: String,
        /// The key it lacks.
        key: &'static str,
    },
    /// A key the format does not define, most often a typo.
    UnknownKey {
        /// Path of the object, as `clients[2]`; empty for the top level.
        at: String,
        /// The key as written.
        key: String,
        /// The keys that object may hold, for the message.
        known: &'static [&'static str],
    },
    /// A value of the wrong type or out of range; `got` is the value as JSON, shortened.
    Invalid {
        /// Path of the value, as `clients[2].up`.
        path: String,
        /// What it must be, as the message says it (`true or false`).
        must: String,
        /// The value as JSON, cut to `MAX_GOT` characters.
        got: String,
    },
    /// A string that names none of `choices`.
    UnknownName {
        /// Path of the value, as `clients[2].behave`.
        path: String,
        /// The string as JSON, cut to `MAX_GOT` characters.
        got: String,
        /// The names it may be, as the message lists them.
        choices: &'static str,
    },
    /// `clients` is an empty list.
    NoClients,
    /// The clients after expanding `count`, when that is more than MAX_CLIENTS.
    TooManyClients(u64),
    /// The given `piece_size` cuts the file into more pieces than a manifest holds.
    Pieces(ManifestError),
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScenarioError::NotJson(m) => write!(f, "not JSON: {m}"),
            ScenarioError::Missing { at, key } if at.is_empty() => {
                write!(f, "missing key \"{key}\"")
            }
            ScenarioError::Missing { at, key } => write!(f, "{at}: missing key \"{key}\""),
            ScenarioError::UnknownKey { at, key, known } => {
                if !at.is_empty() {
                    write!(f, "{at}: ")?;
                }
                write!(f, "unknown key \"{key}\" (expected {})", known.join(", "))
            }
            ScenarioError::Invalid { path, must, got } => {
                // Only the top-level object itself has an empty path.
                let path = if path.is_empty() { "scenario" } else { path };
                write!(f, "{path}: must be {must}, got {got}")
            }
            ScenarioError::UnknownName { path, got, choices } => {
                write!(f, "{path}: unknown value {got} ({choices})")
            }
            ScenarioError::NoClients => write!(f, "clients: must list at least one client"),
            ScenarioError::TooManyClients(n) => write!(
                f,
                "clients: {n} clients once count is expanded; the limit is {MAX_CLIENTS}"
            ),
            ScenarioError::Pieces(e) => write!(f, "piece_size: {e}"),
        }
    }
}

impl std::error::Error for ScenarioError {}

impl Scenario {
    /// Reads and checks a scenario (docs/SIMULATOR.md, "Scenario file").
    pub fn from_json(text: &str) -> Result<Scenario, ScenarioError> {
        let root: Value =
            serde_json::from_str(text).map_err(|e| ScenarioError::NotJson(e.to_string()))?;
        let top = Obj::new(&root, String::new(), TOP_KEYS)?;

        let file_size = top
            .req("file_size")?
            .whole(1..=u64::MAX, "a whole number of bytes, at least 1")?;
        let piece_size = match top.opt("piece_size") {
            Some(f) => Some(f.whole(
                MIN_PIECE_SIZE as u64..=MAX_PIECE_SIZE as u64,
                &format!(
                    "null or a whole number of bytes from {MIN_PIECE_SIZE} to {MAX_PIECE_SIZE}"
                ),
            )? as u32),
            None => None,
        };
        match piece_size {
            Some(size) => {
                piece_count_for(file_size, size).map_err(ScenarioError::Pieces)?;
            }
            None => {
                // The automatic size is already the largest once the file is this big, so the
                // only remedy is a smaller file.
                if piece_count_for(file_size, auto_piece_size(file_size)).is_err() {
                    let max = MAX_PIECES as u64 * MAX_PIECE_SIZE as u64;
                    return Err(top.req("file_size")?.invalid(&format!(
                        "at most {max} bytes ({MAX_PIECES} pieces of {MAX_PIECE_SIZE})"
                    )));
                }
            }
        }
        let seed = match top.opt("seed") {
            Some(f) => f.whole(0..=u64::MAX, "a whole number, 0 or more")?,
            None => 1,
        };
        let policy = match top.opt("policy") {
            Some(f) => {
                let name = f.name("one of \"tft\", \"bittorrent\", \"all\"")?;
                Policy::parse(name).ok_or_else(|| f.unknown_name("tft, bittorrent, all"))?
            }
            None => Policy::Tft,
        };
        let goodput = match top.opt("goodput") {
            Some(f) => f.v.as_bool().ok_or_else(|| f.invalid("true or false"))?,
            None => true,
        };
        let uplink_queue = match top.opt("uplink_queue") {
            Some(f) => f.v.as_bool().ok_or_else(|| f.invalid("true or false"))?,
            None => true,
        };
        let time_limit = match top.opt("time_limit_s") {
            Some(f) => f.number(false, "a positive number of seconds")?,
            None => DEFAULT_TIME_LIMIT,
        };

        let origin_obj = Obj::new(top.req("origin")?.v, "origin".to_string(), ORIGIN_KEYS)?;
        let (origin, origin_up_rate) = link(&origin_obj)?;

        let list = top.req("clients")?;
        let entries = list
            .v
            .as_array()
            .ok_or_else(|| list.invalid("a list of client objects"))?;
        if entries.is_empty() {
            return Err(ScenarioError::NoClients);
        }
        let mut parsed = Vec::with_capacity(entries.len());
        let mut total: u64 = 0;
        for (i, v) in entries.iter().enumerate() {
            let (spec, count) = client(&Obj::new(v, format!("clients[{i}]"), CLIENT_KEYS)?)?;
            total = total.saturating_add(count);
            parsed.push((spec, count));
        }
        if total > MAX_CLIENTS {
            return Err(ScenarioError::TooManyClients(total));
        }
        let mut clients = Vec::with_capacity(total as usize);
        for (spec, count) in parsed {
            clients.extend(std::iter::repeat_n(spec, count as usize));
        }

        Ok(Scenario {
            file_size,
            piece_size,
            seed,
            policy,
            origin,
            origin_up_rate,
            clients,
            goodput,
            uplink_queue,
            time_limit,
        })
    }

    /// The piece size the run uses: the given one, else what `tfttp serve` would choose.
    pub fn piece_size_or_auto(&self) -> u32 {
        self.piece_size
            .unwrap_or_else(|| auto_piece_size(self.file_size))
    }
}

/// The keys origin and clients share: the link and the configured upload rate.
fn link(o: &Obj<'_>) -> Result<(LinkSpec, UpRate), ScenarioError> {
    const RATE: &str = "a positive number of bytes per second";
    let up = o.req("up")?.number(false, RATE)?;
    let down = match o.opt("down") {
        Some(f) => Some(f.number(false, RATE)?),
        None => None,
    };
    let rtt = match o.opt("rtt_ms") {
        Some(f) => {
            let must = "a number of milliseconds from 0 to 60000";
            let ms = f.number(true, must)?;
            // A minute of extra round trip is beyond any real path, and keeps event times
            // far from overflowing their 64-bit nanoseconds.
            if ms > MAX_RTT_MS {
                return Err(f.invalid(must));
            }
            ms / 1000.0
        }
        None => 0.0,
    };
    let up_rate = match o.opt("up_rate") {
        Some(f) => match f.v.as_str() {
            Some("link") => UpRate::Fixed(whole_rate(up)),
            Some("auto") => UpRate::Auto,
            Some("off") => UpRate::Off,
            _ => UpRate::Fixed(whole_rate(f.number(
                false,
                "null, \"auto\", \"off\", \"link\" or a positive number of bytes per second",
            )?)),
        },
        None => UpRate::DEFAULT,
    };
    Ok((LinkSpec { up, down, rtt }, up_rate))
}

/// A told rate in whole bytes per second, as the command line takes it (at least 1);
/// rounded down, so `"link"` is never above the link.
fn whole_rate(r: f64) -> u64 {
    r.floor().max(1.0) as u64
}

/// One entry of `clients` and its `count`.
fn client(o: &Obj<'_>) -> Result<(ClientSpec, u64), ScenarioError> {
    let (link, up_rate) = link(o)?;
    let arrive = match o.opt("arrive_s") {
        Some(f) => f.number(true, "a number of seconds, 0 or more")?,
        None => 0.0,
    };
    const LEAVE: &str = "\"linger\", \"on_complete\" or a positive number of seconds";
    let leave = match o.opt("leave") {
        Some(f) if f.v.is_number() => Leave::After(f.number(false, LEAVE)?),
        Some(f) => match f.name(LEAVE)? {
            "linger" => Leave::Linger,
            "on_complete" => Leave::OnComplete,
            _ => return Err(f.unknown_name("linger, on_complete, or a number of seconds")),
        },
        None => Leave::Linger,
    };
    const BEHAVE: &str = "honest, free-rider, liar, colluder";
    let behave = match o.opt("behave") {
        Some(f) => match f.name("one of \"honest\", \"free-rider\", \"liar\", \"colluder\"")? {
            "honest" => Behaviour::Honest,
            "free-rider" => Behaviour::FreeRider,
            "liar" => Behaviour::Liar,
            "colluder" => Behaviour::Colluder,
            _ => return Err(f.unknown_name(BEHAVE)),
        },
        None => Behaviour::Honest,
    };
    let count = match o.opt("count") {
        Some(f) => f.whole(1..=u64::MAX, "a whole number, at least 1")?,
        None => 1,
    };
    let spec = ClientSpec {
        link,
        arrive,
        leave,
        behave,
        up_rate,
    };
    Ok((spec, count))
}

/// A JSON object being read, with its path for messages.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    at: String,
}

impl<'a> Obj<'a> {
    /// Checks that `v` is an object holding no key outside `known`.
    fn new(
        v: &'a Value,
        at: String,
        known: &'static [&'static str],
    ) -> Result<Obj<'a>, ScenarioError> {
        let Some(map) = v.as_object() else {
            return Err(Field { v, path: at }.invalid("a JSON object"));
        };
        if let Some(key) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(ScenarioError::UnknownKey {
                at,
                key: key.clone(),
                known,
            });
        }
        Ok(Obj { map, at })
    }

    fn path(&self, key: &str) -> String {
        if self.at.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.at)
        }
    }

    /// A key that must be present; a null value is left for the field's check to refuse.
    fn req(&self, key: &'static str) -> Result<Field<'a>, ScenarioError> {
        match self.map.get(key) {
            Some(v) => Ok(Field {
                v,
                path: self.path(key),
            }),
            None => Err(ScenarioError::Missing {
                at: self.at.clone(),
                key,
            }),
        }
    }

    /// An optional key; null reads as absent, so every optional key can be nulled back to its
    /// default.
    fn opt(&self, key: &str) -> Option<Field<'a>> {
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(Field {
                v,
                path: self.path(key),
            }),
        }
    }
}

/// One value and its path.
struct Field<'a> {
    v: &'a Value,
    path: String,
}

impl Field<'_> {
    fn got(&self) -> String {
        let s = self.v.to_string();
        if s.chars().count() <= MAX_GOT {
            s
        } else {
            let mut short: String = s.chars().take(MAX_GOT).collect();
            short.push('…');
            short
        }
    }

    fn invalid(&self, must: &str) -> ScenarioError {
        ScenarioError::Invalid {
            path: self.path.clone(),
            must: must.to_string(),
            got: self.got(),
        }
    }

    fn unknown_name(&self, choices: &'static str) -> ScenarioError {
        ScenarioError::UnknownName {
            path: self.path.clone(),
            got: self.got(),
            choices,
        }
    }

    /// A finite number, positive or (with `zero_ok`) non-negative.
    fn number(&self, zero_ok: bool, must: &str) -> Result<f64, ScenarioError> {
        match self.v.as_f64() {
            // Adding 0.0 turns -0.0 into 0.0, which would otherwise print as -0 in the output.
            Some(x) if x.is_finite() && (x > 0.0 || (zero_ok && x == 0.0)) => Ok(x + 0.0),
            _ => Err(self.invalid(must)),
        }
    }

    /// A whole number in `range`. `1e6` counts as whole, as it does when written in a rate; a
    /// float beyond 2^53 does not, since it no longer names one integer.
    fn whole(&self, range: RangeInclusive<u64>, must: &str) -> Result<u64, ScenarioError> {
        const EXACT: f64 = (1u64 << 53) as f64;
        let n = match (self.v.as_u64(), self.v.as_f64()) {
            (Some(n), _) => Some(n),
            (None, Some(x)) if (0.0..=EXACT).contains(&x) && x.fract() == 0.0 => Some(x as u64),
            _ => None,
        };
        match n {
            Some(n) if range.contains(&n) => Ok(n),
            _ => Err(self.invalid(must)),
        }
    }

    /// A string; anything else is refused with `must`.
    fn name(&self, must: &str) -> Result<&str, ScenarioError> {
        self.v.as_str().ok_or_else(|| self.invalid(must))
    }
}

#[cfg(test)]
mod tests;
