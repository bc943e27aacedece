//! The `--stats` file: one flat JSON object a node rewrites every second and at exit, so
//! tests, the demo and benchmarks read what happened instead of parsing log lines.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::proto::{Counters, Node};
use crate::wire::Role;

/// The node's upload pace (`--up-rate`), which the event loop knows and the node does not.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pace {
    /// TCP payload bytes per second the upload bucket lets through now: `--up-rate`'s
    /// share for payload, or the pacer's rate; `None` while nothing limits the upload.
    pub rate: Option<f64>,
    /// The uplink's payload rate as the pacer last measured it (`--up-rate auto`), if it did.
    pub capacity: Option<f64>,
    /// The node's own queue delay as the pacer last read it from its receivers' answers
    /// (`--up-rate auto`, docs/PROTOCOL.md §4.10), once any answered.
    pub queue_delay: Option<Duration>,
}

impl Pace {
    /// `"pace_rate":…,"pace_capacity":…,"pace_queue_delay_ms":…`: whole bytes per second,
    /// milliseconds, or `null`.
    fn json_fields(&self) -> String {
        let num = |v: Option<f64>| v.map_or("null".into(), |v| format!("{v:.0}"));
        let ms = self
            .queue_delay
            .map_or("null".into(), |d| format!("{:.3}", d.as_secs_f64() * 1e3));
        format!(
            "\"pace_rate\":{},\"pace_capacity\":{},\"pace_queue_delay_ms\":{ms}",
            num(self.rate),
            num(self.capacity)
        )
    }
}

/// Renders the node's counters as JSON (keys documented in README.md "Stats file").
pub fn to_json(node: &Node, pace: &Pace, now: Instant) -> String {
    let k = node.counters();
    let (have, total) = node.progress();
    let file_bytes = node.manifest().map_or(0, |m| m.file_len());
    let since = |t: Instant| t.saturating_duration_since(node.started_at()).as_secs_f64();
    let complete = match node.completed_at() {
        Some(t) => format!("{:.6}", since(t)),
        None => "null".into(),
    };
    let lat = node.latency();
    let q = |p: f64| {
        if lat.is_empty() {
            0
        } else {
            lat.value_at_quantile(p)
        }
    };
    let role = match node.role() {
        Role::Origin => "origin",
        Role::Client => "client",
    };
    // Client: the origin's connect-back verdict, else `false` once the inference found the
    // port unreachable; `null` when neither said (and on the origin).
    let reachable = match (node.origin_reach_verdict(), node.listen_unreachable()) {
        (Some(v), _) => v.to_string(),
        (None, Some(_)) => "false".into(),
        (None, None) => "null".into(),
    };
    let mut s = String::with_capacity(512);
    let _ = write!(
        s,
        "{{\"role\":\"{role}\",\"node_id\":{},\"file_bytes\":{file_bytes},\
         \"pieces\":{total},\"have_pieces\":{have},\"elapsed_s\":{:.6},\"complete_s\":{complete},\
         \"bytes_from_origin\":{},\"bytes_from_peers\":{},\"bytes_uploaded\":{},\
         \"bytes_discarded\":{},\"bytes_discarded_from_origin\":{},\"corrupt_pieces\":{},\"peers_connected\":{},\
         \"peer_dials_failed\":{},\"listen_reachable\":{reachable},\"clients_completed\":{},\
         \"clients_unreachable\":{},{},\"latency_us\":{{\"count\":{},\"p50\":{},\"p90\":{},\
         \"p99\":{},\"max\":{}}}}}",
        node.node_id(),
        since(now),
        k.from_origin,
        k.from_peers,
        k.uploaded,
        k.discarded,
        k.discarded_from_origin,
        k.corrupt_pieces,
        k.peers_connected,
        k.peer_dials_failed,
        k.clients_completed,
        k.clients_unreachable,
        pace.json_fields(),
        lat.len(),
        q(0.5),
        q(0.9),
        q(0.99),
        if lat.is_empty() { 0 } else { lat.max() },
    );
    s.push('\n');
    s
}

/// The stats of an origin of several files: the counters added up over every file's node,
/// live or dropped (`totals`), how many files it serves and how many have a node now
/// (`live`). `first` gives the node id and the start time.
pub fn many_json(
    first: &Node,
    totals: &Counters,
    files: usize,
    live: usize,
    pace: &Pace,
    now: Instant,
) -> String {
    let elapsed = now
        .saturating_duration_since(first.started_at())
        .as_secs_f64();
    format!(
        "{{\"role\":\"origin\",\"node_id\":{},\"files\":{files},\"live_swarms\":{live},\
         \"elapsed_s\":{elapsed:.6},\"bytes_uploaded\":{},\"clients_completed\":{},\
         \"promises_made\":{},\"promises_kept\":{},\"clients_unreachable\":{},{}}}\n",
        first.node_id(),
        totals.uploaded,
        totals.clients_completed,
        totals.promises_made,
        totals.promises_kept,
        totals.clients_unreachable,
        pace.json_fields(),
    )
}

/// One line of the `--timeline` file: seconds since start, cumulative byte counters, the
/// node's instantaneous load and its upload pace, so a run can be replayed second by second.
pub fn timeline_row(node: &Node, pace: &Pace, now: Instant) -> String {
    let k = node.counters();
    let l = node.load();
    let t = now
        .saturating_duration_since(node.started_at())
        .as_secs_f64();
    format!(
        "{{\"t\":{t:.3},\"have\":{},\"from_origin\":{},\"from_peers\":{},\"uploaded\":{},\
         \"discarded\":{},\"discarded_from_origin\":{},\"asked\":{},\"queued\":{},\
         \"unchoking_us\":{},\"unchoked\":{},\"receiving\":{},\"oldest_ask_s\":{:.3},{}}}\n",
        node.progress().0,
        k.from_origin,
        k.from_peers,
        k.uploaded,
        k.discarded,
        k.discarded_from_origin,
        l.asked,
        l.queued,
        l.unchoking_us,
        l.unchoked,
        l.receiving,
        l.oldest_ask.as_secs_f64(),
        pace.json_fields(),
    )
}

/// Writes via a temporary file and rename, so a reader never sees half a file. Refuses a
/// `path` that exists and is not a regular file: the rename would replace a symlink (such as
/// `/dev/stdout`) or a device with a regular file.
pub fn write_atomic(path: &Path, text: &str) -> io::Result<()> {
    if let Ok(md) = std::fs::symlink_metadata(path)
        && !md.file_type().is_file()
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "exists and is not a regular file; not replaced",
        ));
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_write_atomic_leaves_a_symlink_alone() {
        let dir = std::env::temp_dir().join(format!("tfttp-stats-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (target, link) = (dir.join("log"), dir.join("link"));
        std::fs::write(&target, "old").unwrap();
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(write_atomic(&link, "new").is_err());
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        write_atomic(&dir.join("plain"), "new").unwrap();
        write_atomic(&dir.join("plain"), "newer").unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("plain")).unwrap(), "newer");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn test_timeline_row_is_one_json_line_of_numbers() {
        use crate::proto::{Config, Node};
        let t0 = Instant::now();
        let node = Node::client(Config::new(Role::Client, 3), t0);
        let pace = Pace {
            rate: Some(593_750.4),
            ..Pace::default()
        };
        let row = timeline_row(&node, &pace, t0 + std::time::Duration::from_millis(1500));
        assert!(row.ends_with("}\n") && row.lines().count() == 1, "{row}");
        let v: serde_json::Value = serde_json::from_str(&row).expect("the row is JSON");
        assert_eq!(v["t"], 1.5);
        for key in [
            "have",
            "uploaded",
            "asked",
            "queued",
            "unchoking_us",
            "unchoked",
        ] {
            assert_eq!(v[key], 0, "{key} in {row}");
        }
        assert_eq!(v["pace_rate"], 593_750, "{row}");
        assert!(v["pace_capacity"].is_null(), "{row}");
    }

    #[test]
    fn test_stats_show_the_pace_or_null() {
        use crate::proto::{Config, Node};
        let t0 = Instant::now();
        let node = Node::client(Config::new(Role::Client, 3), t0);
        let parse = |s: String| -> serde_json::Value { serde_json::from_str(&s).expect("JSON") };
        let open = parse(to_json(&node, &Pace::default(), t0));
        for key in ["pace_rate", "pace_capacity", "pace_queue_delay_ms"] {
            assert!(open[key].is_null(), "{key}");
        }
        let paced = Pace {
            rate: Some(475_000.0),
            capacity: Some(500_000.0),
            queue_delay: Some(Duration::from_micros(12_345)),
        };
        let v = parse(to_json(&node, &paced, t0));
        assert_eq!(
            (v["pace_rate"].clone(), v["pace_capacity"].clone()),
            (475_000.into(), 500_000.into())
        );
        assert_eq!(v["pace_queue_delay_ms"], 12.345);
        let many = parse(many_json(&node, node.counters(), 2, 1, &paced, t0));
        assert_eq!(many["pace_rate"], 475_000);
    }
}
