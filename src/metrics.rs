//! The `--metrics` page: a node's counters and state in the Prometheus text exposition
//! format (version 0.0.4, "Exposition formats" in the Prometheus documentation), rendered
//! from the node's read-only accessors as `stats` renders the JSON file. The HTTP side is
//! `net::metrics`. Names are listed in README.md ("Metrics").

use std::fmt::Write as _;
use std::time::Instant;

use hdrhistogram::Histogram;

use crate::proto::Node;
use crate::wire::Role;

/// Upper bounds of the piece-latency histogram's buckets, in seconds: from a piece on a LAN
/// (about a millisecond) to a large piece from a slow peer sharing its upload many ways
/// (the simulator saw 80 s). Prometheus's own default buckets stop at 10 s.
const LATENCY_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// The page's content type, as Prometheus expects it for the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One metric family at a time: `# HELP`, `# TYPE`, then its samples.
struct Page {
    text: String,
}

impl Page {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.text, "{name} {value}");
        } else {
            let _ = writeln!(self.text, "{name}{{{labels}}} {value}");
        }
    }

    /// A family with a single unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, "", value);
    }
}

/// Renders the page for `node`; `connections` is the driver's count of open sockets.
pub fn render(node: &Node, connections: usize, now: Instant) -> String {
    let k = node.counters();
    let (have, total) = node.progress();
    let st = node.peer_states();
    let load = node.load();
    let role = match node.role() {
        Role::Origin => "origin",
        Role::Client => "client",
    };
    let mut p = Page {
        text: String::with_capacity(4096),
    };

    p.family("tfttp_info", "gauge", "Always 1; the labels say what runs.");
    p.sample(
        "tfttp_info",
        &format!(
            "role=\"{role}\",node_id=\"{:016x}\",version=\"{}\"",
            node.node_id(),
            env!("CARGO_PKG_VERSION")
        ),
        1,
    );
    let elapsed = now.saturating_duration_since(node.started_at());
    p.single(
        "tfttp_uptime_seconds",
        "gauge",
        "Seconds since the node started.",
        elapsed.as_secs_f64(),
    );

    // Payload bytes: down by where they came from, up from this node.
    p.family(
        "tfttp_payload_bytes_total",
        "counter",
        "Piece payload bytes: direction=\"down\" verified bytes received by source (origin, \
         peers); direction=\"up\" bytes this node finished sending (source=\"self\").",
    );
    let payload = "tfttp_payload_bytes_total";
    p.sample(
        payload,
        "direction=\"down\",source=\"origin\"",
        k.from_origin,
    );
    p.sample(payload, "direction=\"down\",source=\"peers\"", k.from_peers);
    p.sample(payload, "direction=\"up\",source=\"self\"", k.uploaded);
    p.family(
        "tfttp_discarded_bytes_total",
        "counter",
        "Piece payload bytes received and dropped (a copy already held or arriving elsewhere), \
         by source.",
    );
    let from_origin = k.discarded_from_origin;
    let from_peers = k.discarded.saturating_sub(from_origin);
    p.sample(
        "tfttp_discarded_bytes_total",
        "source=\"origin\"",
        from_origin,
    );
    p.sample(
        "tfttp_discarded_bytes_total",
        "source=\"peers\"",
        from_peers,
    );
    p.single(
        "tfttp_corrupt_pieces_total",
        "counter",
        "Pieces that arrived whole and failed their CRC-32.",
        k.corrupt_pieces,
    );

    // The file.
    p.single(
        "tfttp_file_bytes",
        "gauge",
        "Size of the file (0 until the manifest arrives).",
        node.manifest().map_or(0, |m| m.file_len()),
    );
    p.single(
        "tfttp_pieces",
        "gauge",
        "Pieces in the file (0 until the manifest arrives).",
        total,
    );
    p.single(
        "tfttp_pieces_verified",
        "gauge",
        "Pieces held and verified (all of them on the origin).",
        have,
    );
    p.single(
        "tfttp_complete",
        "gauge",
        "1 once every piece is verified (always 1 on the origin).",
        node.is_complete() as u8,
    );

    // Connections and peers.
    p.single(
        "tfttp_connections",
        "gauge",
        "Open TCP connections of the protocol (the origin's included on a client).",
        connections,
    );
    p.family(
        "tfttp_peers",
        "gauge",
        "Protocol connections by state: origin (a client's link to the origin), handshaking, \
         ready (handshake done), closing.",
    );
    p.sample("tfttp_peers", "state=\"origin\"", st.origin);
    p.sample("tfttp_peers", "state=\"handshaking\"", st.handshaking);
    p.sample("tfttp_peers", "state=\"ready\"", st.ready);
    p.sample("tfttp_peers", "state=\"closing\"", st.closing);
    p.single(
        "tfttp_peer_connections_total",
        "counter",
        "Peer connections whose HELLO was accepted, over the whole run.",
        k.peers_connected,
    );
    p.family(
        "tfttp_choke",
        "gauge",
        "Open connections by choke state: by=\"us\" whether we choke the remote, by=\"remote\" \
         whether it chokes us.",
    );
    p.sample("tfttp_choke", "by=\"us\",state=\"choked\"", st.choked_by_us);
    p.sample(
        "tfttp_choke",
        "by=\"us\",state=\"unchoked\"",
        st.unchoked_by_us,
    );
    p.sample(
        "tfttp_choke",
        "by=\"remote\",state=\"choked\"",
        st.choking_us,
    );
    p.sample(
        "tfttp_choke",
        "by=\"remote\",state=\"unchoked\"",
        st.unchoking_us,
    );
    p.single(
        "tfttp_interesting_peers",
        "gauge",
        "Open connections that have pieces we lack.",
        st.interesting,
    );

    // Requests in flight.
    p.single(
        "tfttp_requests_outstanding",
        "gauge",
        "Our requests not yet answered, over all connections.",
        load.asked,
    );
    p.single(
        "tfttp_requests_queued",
        "gauge",
        "Requests from others queued at this node.",
        load.queued,
    );
    p.single(
        "tfttp_pieces_receiving",
        "gauge",
        "Pieces whose payload is arriving now.",
        load.receiving,
    );
    p.single(
        "tfttp_oldest_request_seconds",
        "gauge",
        "Age of our oldest request still unanswered or arriving.",
        load.oldest_ask.as_secs_f64(),
    );

    // The origin's view of the swarm.
    p.single(
        "tfttp_clients_completed_total",
        "counter",
        "Origin: clients seen to hold every piece.",
        k.clients_completed,
    );
    p.family(
        "tfttp_promises_total",
        "counter",
        "Origin: first copies sent to a client (state=\"made\", each a promise to pass the \
         piece on) and those another client announced without the origin (state=\"kept\").",
    );
    p.sample("tfttp_promises_total", "state=\"made\"", k.promises_made);
    p.sample("tfttp_promises_total", "state=\"kept\"", k.promises_kept);

    latency(&mut p, node.latency());
    p.text
}

/// The per-piece latency as a Prometheus histogram. The node's hdrhistogram keeps values to
/// 2 significant digits, so a bucket's count includes values up to 1% above its bound, and
/// `_sum` is the histogram's mean times its count.
fn latency(p: &mut Page, lat: &Histogram<u64>) {
    let name = "tfttp_piece_latency_seconds";
    p.family(
        name,
        "histogram",
        "Time from requesting a piece to its verification (2 significant digits).",
    );
    let bucket = format!("{name}_bucket");
    for le in LATENCY_BUCKETS {
        let n = if lat.is_empty() {
            0
        } else {
            lat.count_between(0, (le * 1e6) as u64)
        };
        p.sample(&bucket, &format!("le=\"{le}\""), n);
    }
    p.sample(&bucket, "le=\"+Inf\"", lat.len());
    p.sample(
        &format!("{name}_sum"),
        "",
        lat.mean() * lat.len() as f64 / 1e6,
    );
    p.sample(&format!("{name}_count"), "", lat.len());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Config;

    /// The samples of `page` as (name with labels, value).
    fn samples(page: &str) -> Vec<(String, f64)> {
        page.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (k, v) = l.rsplit_once(' ').expect("name value");
                (k.to_string(), v.parse().expect("a number"))
            })
            .collect()
    }

    #[test]
    fn test_fresh_client_page_is_well_formed_with_documented_names() {
        let t0 = Instant::now();
        let node = Node::client(Config::new(Role::Client, 3), t0);
        let page = render(&node, 1, t0);
        let s = samples(&page);
        // Every sample belongs to a family declared before it, and every name has the prefix.
        let mut declared = Vec::new();
        for line in page.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                declared.push(name.to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(name.starts_with("tfttp_"), "{line}");
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suf| name.strip_suffix(suf))
                    .filter(|b| declared.last().is_some_and(|d| d == b))
                    .unwrap_or(name);
                assert_eq!(declared.last().map(String::as_str), Some(base), "{line}");
            }
        }
        for name in [
            "tfttp_payload_bytes_total{direction=\"down\",source=\"origin\"}",
            "tfttp_payload_bytes_total{direction=\"down\",source=\"peers\"}",
            "tfttp_payload_bytes_total{direction=\"up\",source=\"self\"}",
            "tfttp_peers{state=\"ready\"}",
            "tfttp_choke{by=\"us\",state=\"unchoked\"}",
            "tfttp_promises_total{state=\"made\"}",
            "tfttp_piece_latency_seconds_bucket{le=\"+Inf\"}",
            "tfttp_piece_latency_seconds_count",
            "tfttp_complete",
        ] {
            assert_eq!(
                s.iter().find(|(k, _)| k == name).map(|(_, v)| *v),
                Some(0.0),
                "{name} in\n{page}"
            );
        }
        assert_eq!(
            s.iter().find(|(k, _)| k == "tfttp_connections").unwrap().1,
            1.0
        );
    }

    #[test]
    fn test_latency_histogram_counts_each_bucket_cumulatively() {
        // 1 ms, 40 ms, 40 ms, 2 s (microseconds, as the node records them).
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 2).unwrap();
        for us in [1_000, 40_000, 40_000, 2_000_000] {
            h.record(us).unwrap();
        }
        let mut p = Page {
            text: String::new(),
        };
        latency(&mut p, &h);
        let s = samples(&p.text);
        let get = |k: &str| s.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        let b = |le: &str| {
            get(&format!(
                "tfttp_piece_latency_seconds_bucket{{le=\"{le}\"}}"
            ))
        };
        assert_eq!(b("0.001"), Some(1.0));
        assert_eq!(b("0.025"), Some(1.0));
        assert_eq!(b("0.05"), Some(3.0));
        assert_eq!(b("1"), Some(3.0));
        assert_eq!(b("2.5"), Some(4.0));
        assert_eq!(b("+Inf"), Some(4.0));
        assert_eq!(get("tfttp_piece_latency_seconds_count"), Some(4.0));
        let sum = get("tfttp_piece_latency_seconds_sum").unwrap();
        assert!((sum - 2.081).abs() < 0.03, "{sum}");
        let buckets: Vec<f64> = s
            .iter()
            .filter(|(k, _)| k.contains("_bucket"))
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(buckets.len(), LATENCY_BUCKETS.len() + 1);
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn test_origin_page_is_complete_from_the_start() {
        use crate::manifest::Manifest;
        let t0 = Instant::now();
        let m = Manifest::build(&[0u8; 100], 16 * 1024).unwrap();
        let node = Node::origin(Config::new(Role::Origin, 5), m, t0);
        let page = render(&node, 0, t0);
        assert!(page.contains("tfttp_complete 1\n"), "{page}");
        assert!(page.contains("tfttp_file_bytes 100\n"), "{page}");
        assert!(page.contains("role=\"origin\""), "{page}");
    }
}
