//! Lower bounds on distributing one file from an origin to a crowd, the yardsticks the
//! demo, the benchmarks and the simulator's report measure a run against.
//!
//! Each takes the file size, the origin's upload and one `(up, down)` per client, in any
//! consistent units (bytes and bytes/s give seconds); `down` `None` is unlimited.

/// A 1500-byte MTU frame carries 1448 bytes of TCP payload (20 IP + 20 TCP + 12 timestamp
/// option) in 1514 bytes on the wire (Ethernet header counted, as tbf counts it): 95.6%. Link
/// rates (`--up-rate`, a scenario's `up`) are wire rates; payload moves at this share of them.
pub const TCP_GOODPUT: f64 = 1448.0 / 1514.0;

/// The payload rate a link of `link_rate` bytes per second carries at [`TCP_GOODPUT`].
pub fn payload_rate(link_rate: u64) -> u64 {
    (link_rate as f64 * TCP_GOODPUT) as u64
}

/// Kumar & Ross (2006): no schedule distributes `file` bytes from an origin uploading
/// `origin_up` to clients with `(up, down)` rates faster than
/// `max(F/u_s, F/d_min, N·F/(u_s + Σu_i))` seconds.
pub fn kumar_ross(file: f64, origin_up: f64, clients: &[(f64, Option<f64>)]) -> f64 {
    if clients.is_empty() {
        return 0.0;
    }
    let n = clients.len() as f64;
    let sum_up: f64 = clients.iter().map(|c| c.0).sum();
    (file / origin_up)
        .max(file / d_min(clients))
        .max(n * file / (origin_up + sum_up))
}

/// Kumar–Ross extended to clients arriving over time: the last completion, measured from
/// `start` (the swarm's first arrival, no later than any receiver's), of `receivers` given
/// as `(arrive, down)`, when the clients upload `clients_up` in all. Three things bound it:
/// every byte leaves the origin once, after `start` (`F/u_s`); receiver `i` cannot finish
/// before `a_i + F/d_i`; and the receivers arriving at or after `t` hold nothing at `t`, so
/// their `k·F` bytes need `k·F/(u_s + Σu)` seconds of every uploader's full rate after `t`.
/// With one arrival time and the receivers' own uploads this is exactly [`kumar_ross`].
pub fn kumar_ross_arrivals(
    file: f64,
    origin_up: f64,
    clients_up: f64,
    start: f64,
    receivers: &[(f64, Option<f64>)],
) -> f64 {
    if receivers.is_empty() {
        return 0.0;
    }
    let first = receivers.iter().map(|c| c.0).fold(start, f64::min);
    let total_up = origin_up + clients_up;
    let mut arrivals: Vec<f64> = receivers.iter().map(|c| c.0 - first).collect();
    arrivals.sort_by(f64::total_cmp);
    let n = arrivals.len();
    let crowd = arrivals
        .iter()
        .enumerate()
        .map(|(k, &a)| a + (n - k) as f64 * file / total_up)
        .fold(0.0, f64::max);
    let own_link = receivers
        .iter()
        .filter_map(|c| c.1.map(|down| c.0 - first + file / down))
        .fold(0.0, f64::max);
    (file / origin_up).max(crowd).max(own_link)
}

/// Client-server time: the origin alone sends every client a copy, so the crowd waits
/// `max(N·F/u_s, F/d_min)` seconds; clients' uploads do not count.
pub fn client_server(file: f64, origin_up: f64, clients: &[(f64, Option<f64>)]) -> f64 {
    if clients.is_empty() {
        return 0.0;
    }
    let n = clients.len() as f64;
    (n * file / origin_up).max(file / d_min(clients))
}

/// The slowest download; infinite when every client's is unlimited.
fn d_min(clients: &[(f64, Option<f64>)]) -> f64 {
    clients
        .iter()
        .filter_map(|c| c.1)
        .fold(f64::INFINITY, f64::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_payload_rate_is_the_goodput_of_a_link() {
        // 100 Mbit/s on the wire carries 95.6 Mbit/s of TCP payload.
        assert_eq!(payload_rate(12_500_000), 11_955_085);
        assert_eq!(payload_rate(0), 0);
    }

    #[test]
    fn test_kumar_ross_picks_the_binding_term() {
        // Origin-bound: one client, a slow origin.
        assert_eq!(kumar_ross(100.0, 10.0, &[(50.0, None)]), 10.0);
        // Download-bound: a slow downlink.
        assert_eq!(kumar_ross(100.0, 100.0, &[(50.0, Some(5.0))]), 20.0);
        // Swarm-bound: 4 clients, total upload 10 + 4·10 = 50 for 400 bytes.
        assert_eq!(kumar_ross(100.0, 10.0, &[(10.0, None); 4]), 10.0);
        assert_eq!(kumar_ross(100.0, 10.0, &[(2.5, None); 4]), 20.0);
    }

    #[test]
    fn test_client_server_ignores_client_uploads() {
        // Origin-bound: 4 copies of 100 bytes at 10 bytes/s, however much clients upload.
        assert_eq!(client_server(100.0, 10.0, &[(1e9, None); 4]), 40.0);
        // Download-bound: a fast origin, one slow downlink.
        assert_eq!(
            client_server(100.0, 1e3, &[(0.0, Some(5.0)), (0.0, None)]),
            20.0
        );
        assert_eq!(client_server(100.0, 10.0, &[]), 0.0);
    }

    #[test]
    fn test_arrivals_bound_is_kumar_ross_at_once_and_counts_late_crowds() {
        // Each client as (arrive, up, down), receiving and uploading.
        let kumar_ross_arrivals = |file, origin_up, c: &[(f64, f64, Option<f64>)]| {
            let up = c.iter().map(|c| c.1).sum();
            let receivers: Vec<(f64, Option<f64>)> = c.iter().map(|c| (c.0, c.2)).collect();
            let start = c.iter().map(|c| c.0).fold(f64::INFINITY, f64::min);
            super::kumar_ross_arrivals(file, origin_up, up, start, &receivers)
        };
        let at_once = [(5.0, 10.0, None), (5.0, 10.0, Some(4.0)), (5.0, 2.5, None)];
        let kr: Vec<(f64, Option<f64>)> = at_once.iter().map(|c| (c.1, c.2)).collect();
        assert_eq!(
            kumar_ross_arrivals(100.0, 10.0, &at_once),
            kumar_ross(100.0, 10.0, &kr)
        );
        // Two early clients, then two arriving at 30 s: those two alone need 200 bytes at
        // the whole swarm's 50 bytes/s after they arrive.
        let late = [
            (0.0, 10.0, None),
            (0.0, 10.0, None),
            (30.0, 10.0, None),
            (30.0, 10.0, None),
        ];
        assert_eq!(kumar_ross_arrivals(100.0, 10.0, &late), 34.0);
        // A slow downlink that arrives last.
        let slow = [(0.0, 10.0, None), (7.0, 10.0, Some(10.0))];
        assert_eq!(kumar_ross_arrivals(100.0, 100.0, &slow), 17.0);
        assert_eq!(kumar_ross_arrivals(100.0, 10.0, &[]), 0.0);
    }

    #[test]
    fn test_arrivals_bound_counts_from_the_swarms_first_arrival() {
        // The receivers arrive at 130 s, after a client that is not one of them (a free
        // rider, or one that left early) arrived at 0: the last completion, counted from
        // 0, cannot come before 130 s plus what the receivers alone need.
        let receivers = [(130.0, Some(10.0)), (140.0, Some(10.0))];
        assert_eq!(
            kumar_ross_arrivals(100.0, 4.0, 20.0, 0.0, &receivers),
            150.0
        );
        assert_eq!(
            kumar_ross_arrivals(100.0, 4.0, 20.0, 130.0, &receivers),
            25.0,
            "counted from the first receiver: the origin's own 25 s"
        );
    }
}
