//! A simulator scenario: the swarm's hosts, their links and their conduct, read from JSON
//! (docs/SIMULATOR.md). Parsing checks every field once, so the engine never sees a
//! negative rate or an empty swarm.

use std::fmt;
use std::ops::RangeInclusive;

use serde_json::{Map, Value};

use crate::manifest::{ManifestError, auto_piece_size, piece_count_for};
use crate::proto::{Behaviour, Policy};
use crate::wire::{MAX_PIECE_SIZE, MAX_PIECES, MIN_PIECE_SIZE};

/// A floor under every round trip, seconds: two hosts given `rtt_ms` 0 still pass each
/// message through two kernel stacks and a LAN switch (a few hundred microseconds), and a zero
/// RTT would let a request and its answer cross in no time.
pub const BASE_RTT: f64 = 0.0002;

/// A 1500-byte MTU frame carries 1448 bytes of TCP payload (20 IP + 20 TCP + 12 timestamp
/// option) in 1514 bytes on the wire (Ethernet header counted, as tbf counts it): 95.6%.
pub const TCP_GOODPUT: f64 = 1448.0 / 1514.0;

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
    /// The node's configured upload capacity (`--up-rate`), bytes per second, if any.
    pub up_rate: Option<f64>,
}

/// A checked scenario: the file, the policy every node runs, the origin's link and the
/// clients, with the defaults of docs/SIMULATOR.md filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Size of the shared file in bytes, at least 1.
    pub file_size: u64,
    /// `None`: `manifest::auto_piece_size(file_size)`, as `tfttp serve` chooses.
    pub piece_size: Option<u32>,
    /// Seeds node ids and piece checksums: the same scenario and seed give the same run (default
    /// 1).
    pub seed: u64,
    /// The incentive policy of every node, origin included (default `tft`).
    pub policy: Policy,
    /// The origin's link.
    pub origin: LinkSpec,
    /// The origin's configured upload capacity (`--up-rate`), if any.
    pub origin_up_rate: Option<f64>,
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
fn link(o: &Obj<'_>) -> Result<(LinkSpec, Option<f64>), ScenarioError> {
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
        Some(f) if f.v.as_str() == Some("link") => Some(up),
        Some(f) => Some(f.number(
            false,
            "null, \"link\" or a positive number of bytes per second",
        )?),
        None => None,
    };
    Ok((LinkSpec { up, down, rtt }, up_rate))
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
    const BEHAVE: &str = "honest, free-rider, liar";
    let behave = match o.opt("behave") {
        Some(f) => match f.name("one of \"honest\", \"free-rider\", \"liar\"")? {
            "honest" => Behaviour::Honest,
            "free-rider" => Behaviour::FreeRider,
            "liar" => Behaviour::Liar,
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
mod tests {
    use super::*;
    use serde_json::json;

    /// The example of docs/SIMULATOR.md.
    const EXAMPLE: &str = r#"{
      "file_size": 67108864,
      "piece_size": null,
      "seed": 1,
      "policy": "tft",
      "origin": {"up": 12500000, "down": null, "rtt_ms": 0},
      "clients": [
        {"up": 2500000, "down": 25000000, "arrive_s": 0.0, "leave": "linger",
         "behave": "honest", "rtt_ms": 0, "count": 8}
      ]
    }"#;

    /// The smallest valid scenario, changed by `edit`, then parsed.
    fn with(edit: impl FnOnce(&mut Value)) -> Result<Scenario, ScenarioError> {
        let mut v = json!({
            "file_size": 1_000_000,
            "origin": {"up": 1e6},
            "clients": [{"up": 1e5}],
        });
        edit(&mut v);
        Scenario::from_json(&v.to_string())
    }

    /// The one-line message of a scenario that must be refused.
    #[track_caller]
    fn refused(edit: impl FnOnce(&mut Value)) -> String {
        let msg = with(edit).expect_err("scenario accepted").to_string();
        assert!(!msg.contains('\n'), "message spans lines: {msg}");
        msg
    }

    #[track_caller]
    fn assert_has(msg: &str, want: &str) {
        assert!(msg.contains(want), "{msg:?} lacks {want:?}");
    }

    #[test]
    fn test_example_parses_to_struct() {
        let s = Scenario::from_json(EXAMPLE).unwrap();
        let client = ClientSpec {
            link: LinkSpec {
                up: 2_500_000.0,
                down: Some(25_000_000.0),
                rtt: 0.0,
            },
            arrive: 0.0,
            leave: Leave::Linger,
            behave: Behaviour::Honest,
            up_rate: None,
        };
        let want = Scenario {
            file_size: 64 << 20,
            piece_size: None,
            seed: 1,
            policy: Policy::Tft,
            origin: LinkSpec {
                up: 12_500_000.0,
                down: None,
                rtt: 0.0,
            },
            origin_up_rate: None,
            clients: vec![client; 8],
            goodput: true,
            uplink_queue: true,
            time_limit: DEFAULT_TIME_LIMIT,
        };
        assert_eq!(s, want);
        // 64 MiB / 1024 pieces.
        assert_eq!(s.piece_size_or_auto(), 64 * 1024);
    }

    #[test]
    fn test_absent_optional_keys_take_defaults() {
        let s = with(|_| {}).unwrap();
        assert_eq!(s.piece_size, None);
        assert_eq!(s.seed, 1);
        assert_eq!(s.policy, Policy::Tft);
        assert!(s.goodput);
        assert_eq!(s.time_limit, DEFAULT_TIME_LIMIT);
        assert_eq!(s.origin.down, None);
        assert_eq!(s.origin.rtt, 0.0);
        assert_eq!(s.origin_up_rate, None);
        let c = &s.clients[0];
        assert_eq!(s.clients.len(), 1);
        assert_eq!(c.link.down, None);
        assert_eq!(c.link.rtt, 0.0);
        assert_eq!(c.arrive, 0.0);
        assert_eq!(c.leave, Leave::Linger);
        assert_eq!(c.behave, Behaviour::Honest);
        assert_eq!(c.up_rate, None);
    }

    #[test]
    fn test_null_optional_keys_take_defaults() {
        let nulled = with(|v| {
            for k in ["piece_size", "seed", "policy", "goodput", "time_limit_s"] {
                v[k] = Value::Null;
            }
            for k in ["down", "rtt_ms", "up_rate"] {
                v["origin"][k] = Value::Null;
            }
            for k in [
                "down", "rtt_ms", "up_rate", "arrive_s", "leave", "behave", "count",
            ] {
                v["clients"][0][k] = Value::Null;
            }
        });
        assert_eq!(nulled.unwrap(), with(|_| {}).unwrap());
    }

    #[test]
    fn test_every_key_set_parses() {
        let s = with(|v| {
            *v = json!({
                "file_size": 5_000_000, "piece_size": 20_000, "seed": 7, "policy": "bittorrent",
                "goodput": false, "time_limit_s": 90.5,
                "origin": {"up": 3e6, "down": 4e6, "rtt_ms": 10, "up_rate": 2e6},
                "clients": [{"up": 1e5, "down": 2e5, "rtt_ms": 30.5, "up_rate": 5e4,
                             "arrive_s": 2.5, "leave": "on_complete", "behave": "liar",
                             "count": 2}],
            })
        })
        .unwrap();
        assert_eq!(s.piece_size, Some(20_000));
        assert_eq!(s.piece_size_or_auto(), 20_000);
        assert_eq!(s.seed, 7);
        assert_eq!(s.policy, Policy::BitTorrent);
        assert!(!s.goodput);
        assert_eq!(s.time_limit, 90.5);
        let o = LinkSpec {
            up: 3e6,
            down: Some(4e6),
            rtt: 0.010,
        };
        assert_eq!(s.origin, o);
        assert_eq!(s.origin_up_rate, Some(2e6));
        let c = ClientSpec {
            link: LinkSpec {
                up: 1e5,
                down: Some(2e5),
                rtt: 0.0305,
            },
            arrive: 2.5,
            leave: Leave::OnComplete,
            behave: Behaviour::Liar,
            up_rate: Some(5e4),
        };
        assert_eq!(s.clients, vec![c.clone(), c]);
    }

    #[test]
    fn test_count_expands_in_file_order() {
        let s = with(|v| {
            v["clients"] = json!([
                {"up": 1, "count": 2},
                {"up": 2},
                {"up": 3, "count": 3, "behave": "free-rider"},
            ])
        })
        .unwrap();
        let ups: Vec<f64> = s.clients.iter().map(|c| c.link.up).collect();
        assert_eq!(ups, [1.0, 1.0, 2.0, 3.0, 3.0, 3.0]);
        assert_eq!(s.clients[5].behave, Behaviour::FreeRider);
    }

    #[test]
    fn test_up_rate_link_takes_own_up() {
        let s = with(|v| {
            v["origin"]["up_rate"] = json!("link");
            v["clients"] = json!([{"up": 7e5, "up_rate": "link"}, {"up": 9e5, "up_rate": 1e5}]);
        })
        .unwrap();
        assert_eq!(s.origin_up_rate, Some(1e6));
        assert_eq!(s.clients[0].up_rate, Some(7e5));
        assert_eq!(s.clients[1].up_rate, Some(1e5));
    }

    #[test]
    fn test_up_rate_other_string_rejected() {
        let msg = refused(|v| v["clients"][0]["up_rate"] = json!("fast"));
        assert_has(
            &msg,
            "clients[0].up_rate: must be null, \"link\" or a positive number",
        );
        assert_has(&msg, "got \"fast\"");
    }

    #[test]
    fn test_leave_number_is_after() {
        let s = with(|v| v["clients"][0]["leave"] = json!(12.5)).unwrap();
        assert_eq!(s.clients[0].leave, Leave::After(12.5));
    }

    #[test]
    fn test_leave_zero_rejected() {
        let msg = refused(|v| v["clients"][0]["leave"] = json!(0));
        assert_has(
            &msg,
            "clients[0].leave: must be \"linger\", \"on_complete\" or a positive",
        );
        assert_has(&msg, "got 0");
    }

    #[test]
    fn test_leave_unknown_name_rejected() {
        let msg = refused(|v| v["clients"][0]["leave"] = json!("never"));
        assert_has(
            &msg,
            "clients[0].leave: unknown value \"never\" (linger, on_complete",
        );
    }

    #[test]
    fn test_policy_alias_baseline_accepted() {
        let s = with(|v| v["policy"] = json!("baseline")).unwrap();
        assert_eq!(s.policy, Policy::BitTorrent);
        let s = with(|v| v["policy"] = json!("all")).unwrap();
        assert_eq!(s.policy, Policy::UnchokeAll);
    }

    #[test]
    fn test_policy_unknown_rejected() {
        let msg = refused(|v| v["policy"] = json!("fair"));
        assert_eq!(msg, "policy: unknown value \"fair\" (tft, bittorrent, all)");
    }

    #[test]
    fn test_behave_unknown_rejected() {
        let msg = refused(|v| v["clients"][0]["behave"] = json!("saint"));
        assert_eq!(
            msg,
            "clients[0].behave: unknown value \"saint\" (honest, free-rider, liar)"
        );
    }

    #[test]
    fn test_behave_not_string_rejected() {
        let msg = refused(|v| v["clients"][0]["behave"] = json!(1));
        assert_has(
            &msg,
            "clients[0].behave: must be one of \"honest\", \"free-rider\", \"liar\", got 1",
        );
    }

    #[test]
    fn test_negative_up_rejected() {
        let msg = refused(|v| v["clients"] = json!([{"up": 1}, {"up": 1}, {"up": -5}]));
        assert_eq!(
            msg,
            "clients[2].up: must be a positive number of bytes per second, got -5"
        );
    }

    #[test]
    fn test_zero_or_string_rate_rejected() {
        assert_has(
            &refused(|v| v["origin"]["up"] = json!(0)),
            "origin.up: must be a positive number of bytes per second, got 0",
        );
        assert_has(
            &refused(|v| v["clients"][0]["down"] = json!("10M")),
            "clients[0].down: must be a positive number of bytes per second, got \"10M\"",
        );
        assert_has(
            &refused(|v| v["origin"]["up"] = Value::Null),
            "origin.up: must be a positive number of bytes per second, got null",
        );
    }

    #[test]
    fn test_float_rate_accepted() {
        let s = with(|v| v["clients"][0]["up"] = json!(1.5e6)).unwrap();
        assert_eq!(s.clients[0].link.up, 1.5e6);
    }

    #[test]
    fn test_negative_rtt_or_arrival_rejected() {
        assert_has(
            &refused(|v| v["origin"]["rtt_ms"] = json!(-1)),
            "origin.rtt_ms: must be a number of milliseconds from 0 to 60000, got -1",
        );
        assert_has(
            &refused(|v| v["clients"][0]["arrive_s"] = json!(-0.5)),
            "clients[0].arrive_s: must be a number of seconds, 0 or more, got -0.5",
        );
    }

    #[test]
    fn test_missing_required_keys_rejected() {
        let top = |key: &'static str| {
            refused(move |v| {
                v.as_object_mut().unwrap().remove(key);
            })
        };
        assert_eq!(top("file_size"), "missing key \"file_size\"");
        assert_eq!(top("origin"), "missing key \"origin\"");
        assert_eq!(top("clients"), "missing key \"clients\"");
        let msg = refused(|v| v["clients"] = json!([{"up": 1}, {"down": 1}]));
        assert_eq!(msg, "clients[1]: missing key \"up\"");
        let msg = refused(|v| v["origin"] = json!({}));
        assert_eq!(msg, "origin: missing key \"up\"");
    }

    #[test]
    fn test_empty_clients_rejected() {
        let msg = refused(|v| v["clients"] = json!([]));
        assert_eq!(msg, "clients: must list at least one client");
    }

    #[test]
    fn test_wrong_container_types_rejected() {
        assert_has(
            &refused(|v| v["clients"] = json!({"up": 1})),
            "clients: must be a list of client objects, got {\"up\":1}",
        );
        assert_has(
            &refused(|v| v["clients"] = json!([5])),
            "clients[0]: must be a JSON object, got 5",
        );
        assert_has(
            &refused(|v| v["origin"] = json!("x")),
            "origin: must be a JSON object",
        );
        assert_has(
            &refused(|v| *v = json!([1])),
            "scenario: must be a JSON object",
        );
    }

    #[test]
    fn test_not_json_rejected() {
        let msg = Scenario::from_json("{\"file_size\": 1,")
            .unwrap_err()
            .to_string();
        assert_has(&msg, "not JSON: ");
        assert_has(&msg, "line 1");
    }

    #[test]
    fn test_unknown_key_named_with_path() {
        let msg = refused(|v| v["clients"][0]["arive_s"] = json!(1));
        assert_has(
            &msg,
            "clients[0]: unknown key \"arive_s\" (expected up, down",
        );
        let msg = refused(|v| v["origin"]["behave"] = json!("liar"));
        assert_has(&msg, "origin: unknown key \"behave\"");
        let msg = refused(|v| v["seeed"] = json!(2));
        assert_has(
            &msg,
            "unknown key \"seeed\" (expected file_size, piece_size, seed",
        );
        assert!(msg.starts_with("unknown key"), "{msg}");
    }

    #[test]
    fn test_integer_fields_reject_fraction_sign_and_string() {
        for bad in [json!(1.5), json!(-1), json!("8"), json!(true)] {
            let got = bad.to_string();
            let msg = refused(|v| v["file_size"] = bad.clone());
            assert_eq!(
                msg,
                format!("file_size: must be a whole number of bytes, at least 1, got {got}")
            );
            assert_has(
                &refused(|v| v["seed"] = bad.clone()),
                "seed: must be a whole number",
            );
            assert_has(
                &refused(|v| v["clients"][0]["count"] = bad.clone()),
                "clients[0].count: must be a whole number, at least 1",
            );
            assert_has(
                &refused(|v| v["piece_size"] = bad.clone()),
                "piece_size: must be null or a whole number of bytes",
            );
        }
        assert_has(&refused(|v| v["file_size"] = json!(0)), "got 0");
        assert_has(&refused(|v| v["clients"][0]["count"] = json!(0)), "got 0");
    }

    #[test]
    fn test_integer_fields_accept_whole_floats() {
        let s = with(|v| {
            v["file_size"] = json!(1e6);
            v["clients"][0]["count"] = json!(2.0);
            v["seed"] = json!(u64::MAX);
        })
        .unwrap();
        assert_eq!(s.file_size, 1_000_000);
        assert_eq!(s.clients.len(), 2);
        assert_eq!(s.seed, u64::MAX);
        // Beyond 2^53 a float no longer names one integer.
        assert_has(
            &refused(|v| v["seed"] = json!(1e17)),
            "seed: must be a whole number",
        );
    }

    #[test]
    fn test_too_many_clients_rejected() {
        let msg = refused(|v| {
            v["clients"] = json!([{"up": 1, "count": 600_000}, {"up": 1, "count": 400_001}])
        });
        assert_eq!(
            msg,
            "clients: 1000001 clients once count is expanded; the limit is 1000000"
        );
        // The sum saturates instead of wrapping past the limit.
        let msg = refused(|v| {
            v["clients"] = json!([{"up": 1, "count": u64::MAX}, {"up": 1, "count": 2}])
        });
        assert_has(&msg, &format!("clients: {} clients", u64::MAX));
    }

    #[test]
    fn test_client_limit_reached_accepted() {
        let s = with(|v| v["clients"][0]["count"] = json!(MAX_CLIENTS)).unwrap();
        assert_eq!(s.clients.len() as u64, MAX_CLIENTS);
    }

    #[test]
    fn test_piece_size_out_of_range_rejected() {
        let want = "piece_size: must be null or a whole number of bytes from 16384 to 16777216";
        let msg = refused(|v| v["piece_size"] = json!(MIN_PIECE_SIZE - 1));
        assert_eq!(msg, format!("{want}, got 16383"));
        let msg = refused(|v| v["piece_size"] = json!(MAX_PIECE_SIZE as u64 + 1));
        assert_has(&msg, want);
    }

    #[test]
    fn test_piece_size_limits_accepted() {
        for size in [MIN_PIECE_SIZE, MAX_PIECE_SIZE] {
            let s = with(|v| v["piece_size"] = json!(size)).unwrap();
            assert_eq!(s.piece_size_or_auto(), size);
        }
    }

    #[test]
    fn test_too_many_pieces_rejected() {
        let pieces = MAX_PIECES as u64 + 1;
        let msg = refused(|v| {
            v["file_size"] = json!(pieces * MIN_PIECE_SIZE as u64);
            v["piece_size"] = json!(MIN_PIECE_SIZE);
        });
        assert_eq!(
            msg,
            format!(
                "piece_size: {pieces} pieces is more than {MAX_PIECES}; use a larger piece size"
            )
        );
        // One piece fewer fits.
        let s = with(|v| {
            v["file_size"] = json!(MAX_PIECES as u64 * MIN_PIECE_SIZE as u64);
            v["piece_size"] = json!(MIN_PIECE_SIZE);
        });
        assert!(s.is_ok());
    }

    #[test]
    fn test_file_too_big_for_auto_piece_size_rejected() {
        let max = MAX_PIECES as u64 * MAX_PIECE_SIZE as u64;
        let s = with(|v| v["file_size"] = json!(max)).unwrap();
        assert_eq!(s.piece_size_or_auto(), MAX_PIECE_SIZE);
        let msg = refused(|v| v["file_size"] = json!(max + 1));
        assert_has(&msg, &format!("file_size: must be at most {max} bytes"));
    }

    #[test]
    fn test_time_limit_and_goodput_checked() {
        assert_has(
            &refused(|v| v["time_limit_s"] = json!(0)),
            "time_limit_s: must be a positive number of seconds, got 0",
        );
        assert_has(
            &refused(|v| v["goodput"] = json!(1)),
            "goodput: must be true or false, got 1",
        );
        assert_has(
            &refused(|v| v["uplink_queue"] = json!("yes")),
            "uplink_queue: must be true or false",
        );
        assert_has(
            &refused(|v| v["origin"]["rtt_ms"] = json!(60001)),
            "origin.rtt_ms: must be a number of milliseconds from 0 to 60000",
        );
    }

    #[test]
    fn test_long_value_shortened_in_message() {
        let long = "x".repeat(500);
        let msg = refused(|v| v["clients"][0]["behave"] = json!(long));
        assert_has(&msg, "…");
        assert!(msg.len() < 150, "{msg}");
    }
}
