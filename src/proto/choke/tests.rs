//! The choking table and its policies, on hand-built rows.

use super::bittorrent::BT_SLOTS;
use super::tft::*;
use super::*;

fn me_client() -> Me {
    Me {
        is_origin: false,
        complete: false,
        free_rider: false,
        capacity: Some(1_000_000.0),
        piece_size: 1 << 18,
        send_slots: usize::MAX,
    }
}

fn table(n: usize) -> ChokeTable {
    let mut t = ChokeTable::default();
    for s in 0..n {
        t.open(s, false);
        t.rows[s].interested = true;
    }
    t
}

fn decide(t: &mut ChokeTable, p: Policy, me: Me) -> Vec<usize> {
    let mut changed = Vec::new();
    t.decide(p, me, true, &mut Rng::new(3), &mut changed);
    changed
}

fn me_origin() -> Me {
    Me {
        is_origin: true,
        ..me_client()
    }
}

/// Origin view: ages every row past the newcomer window with the given per-round
/// confirmed uploads (receipts), each vouched for by two receivers.
fn settle_credit(t: &mut ChokeTable, per_round: &[u64]) {
    for _ in 0..NEWCOMER_ROUNDS {
        for (s, &c) in per_round.iter().enumerate() {
            t.rows[s].credit += c;
            t.rows[s].witnessed += c;
        }
        t.end_round(1.0);
    }
}

/// Ages every row past the newcomer window with the given per-round gifts.
fn settle(t: &mut ChokeTable, gifts: &[u64]) {
    for _ in 0..NEWCOMER_ROUNDS {
        for (s, &g) in gifts.iter().enumerate() {
            t.record_down(s, g);
        }
        t.end_round(1.0);
    }
}

#[test]
fn test_unchoke_all_unchokes_interested_only() {
    let mut t = table(2);
    t.rows[0].interested = false;
    assert_eq!(decide(&mut t, Policy::UnchokeAll, me_client()), vec![1]);
    assert!(t.rows[0].choking);
    assert!(!t.rows[1].choking);
}

#[test]
fn test_reopened_slot_starts_clean() {
    let mut t = table(1);
    t.record_up(0, 5);
    t.rows[0].choking = false;
    t.close(0);
    t.open(0, false);
    assert_eq!(t.rows[0].up.total(), 0);
    assert!(t.rows[0].choking);
}

#[test]
fn test_tft_client_splits_in_proportion_to_gifts() {
    let mut t = table(3);
    settle(&mut t, &[300, 100, 0]);
    decide(&mut t, Policy::Tft, me_client());
    let (w0, w1) = (t.rows[0].weight, t.rows[1].weight);
    assert!((w0 / w1 - 3.0).abs() < 1e-9, "{w0} vs {w1}");
    assert!((w0 + w1 - (1.0 - OPTIMISTIC_SHARE)).abs() < 1e-9);
    // The non-giver may only be the optimistic peer, capped: the givers take nothing of our
    // upload yet, so at half of it.
    if t.rows[2].weight > 0.0 {
        assert!(t.rows[2].cap.unwrap() <= 1_000_000.0 * SPARE_TO_NON_GIVERS + 1e-6);
    }
    assert_eq!(t.rows[0].cap, None);
}

#[test]
fn test_tft_seed_gives_helpers_in_proportion_to_what_they_lack() {
    let mut t = table(3);
    // Peer 0 gave most, peer 1 a little, peer 2 nothing.
    settle(&mut t, &[300, 100, 0]);
    t.rows[0].missing = 100;
    t.rows[1].missing = 300;
    t.rows[2].missing = 900;
    let me = Me {
        complete: true,
        ..me_client()
    };
    decide(&mut t, Policy::Tft, me);
    let (w0, w1) = (t.rows[0].weight, t.rows[1].weight);
    assert!((w1 / w0 - 3.0).abs() < 1e-9, "{w0} vs {w1}");
    // Lacking most earns a non-giver nothing beyond the capped optimistic share.
    if t.rows[2].weight > 0.0 {
        assert!(t.rows[2].weight <= OPTIMISTIC_SHARE);
        assert!(t.rows[2].cap.is_some());
    }
}

#[test]
fn test_tft_free_rider_waits_between_optimistic_turns() {
    let mut t = table(2);
    settle(&mut t, &[500, 0]);
    let piece = me_client().piece_size as u64;
    let mut turns = 0;
    for _ in 0..30 {
        decide(&mut t, Policy::Tft, me_client());
        if t.rows[1].weight > 0.0 {
            turns += 1;
            // It takes a piece per turn and never gives anything back.
            t.record_up(1, piece);
            assert!(t.rows[1].cap.is_some(), "a non-giver is always capped");
        }
        t.record_down(0, 500);
        t.end_round(1.0);
    }
    // Newcomer turns until it holds NEWCOMER_PIECES of ours, then one optimistic turn
    // every OPTIMISTIC_RETRY_ROUNDS.
    let most = NEWCOMER_PIECES as usize + 30 / OPTIMISTIC_RETRY_ROUNDS as usize + 1;
    assert!(turns <= most, "{turns} turns");
    assert!(
        turns > NEWCOMER_PIECES as usize,
        "never tried after bootstrap"
    );
}

#[test]
fn test_tft_bootstrap_shares_equally_among_newcomers() {
    let mut t = table(3);
    decide(&mut t, Policy::Tft, me_client());
    assert!((0..3).all(|s| t.rows[s].weight == 1.0 && t.rows[s].cap.is_none()));
}

#[test]
fn test_tft_a_named_peer_gets_nothing_but_for_what_it_gives() {
    // Slot 0 gives; slot 1 is a newcomer the origin named; slot 2 is a plain newcomer.
    let mut t = table(3);
    settle(&mut t, &[1000, 0, 0]);
    t.set_named(1, true);
    for round in 0..3 * OPTIMISTIC_RETRY_ROUNDS {
        let mut changed = Vec::new();
        t.decide(
            Policy::Tft,
            me_client(),
            true,
            &mut Rng::new(round),
            &mut changed,
        );
        assert!(
            t.rows[1].choking,
            "round {round}: neither newcomer nor optimistic"
        );
        assert!(!t.rows[2].choking);
    }
    // Nor is it served by a seed's spare upload.
    let mut seed = me_client();
    seed.complete = true;
    decide(&mut t, Policy::Tft, seed);
    assert!(t.rows[1].choking);
    // What it gives is still answered.
    settle(&mut t, &[1000, 1000, 0]);
    decide(&mut t, Policy::Tft, me_client());
    assert!(!t.rows[1].choking);
}

#[test]
fn test_snubbing_peer_loses_its_share() {
    let mut t = table(2);
    settle(&mut t, &[100, 100]);
    // Peer 1 stops sending while we wait on it.
    for _ in 0..SNUB_ROUNDS {
        t.rows[1].waiting_on = true;
        t.record_down(0, 100);
        t.end_round(1.0);
    }
    assert!(t.rows[1].snubbed);
    decide(&mut t, Policy::Tft, me_client());
    assert!((t.rows[0].weight - (1.0 - OPTIMISTIC_SHARE)).abs() < 1e-9);
}

#[test]
fn test_tft_seed_rewards_past_givers() {
    let mut t = table(2);
    settle(&mut t, &[1000, 0]);
    // A round with no gifts at all: a leecher would have no givers, a seed remembers.
    t.end_round(1.0);
    let mut me = me_client();
    me.complete = true;
    decide(&mut t, Policy::Tft, me);
    assert!(t.rows[0].weight >= 1.0 - OPTIMISTIC_SHARE - 1e-9);
}

#[test]
fn test_free_rider_chokes_everyone() {
    let mut t = table(2);
    let mut me = me_client();
    me.free_rider = true;
    decide(&mut t, Policy::Tft, me);
    assert!(t.rows.iter().all(|r| r.choking));
}

#[test]
fn test_bittorrent_unchokes_top_four_plus_one() {
    let mut t = table(7);
    settle(&mut t, &[0; 7]);
    for s in 0..7 {
        t.rows[s].down.set_rate(s as f64);
    }
    decide(&mut t, Policy::BitTorrent, me_client());
    for s in 3..7 {
        assert!(!t.rows[s].choking, "top-4 slot {s} choked");
    }
    let unchoked = (0..7).filter(|&s| !t.rows[s].choking).count();
    assert_eq!(unchoked, BT_SLOTS + 1);
}

#[test]
fn test_origin_weights_follow_confirmed_contribution() {
    let mut t = table(3);
    let me = me_origin();
    settle_credit(&mut t, &[3_000_000, 1_000_000]);
    decide(&mut t, Policy::Tft, me);
    assert!(t.rows[0].weight > 2.0 * t.rows[1].weight);
    // Client 2 gave nothing but is still served (work conservation), a little.
    assert!(t.rows[2].weight > 0.0 && t.rows[2].weight < 0.05 * t.rows[0].weight);
}

#[test]
fn test_origin_cuts_promise_breaker() {
    let mut t = table(2);
    let me = me_origin();
    settle_credit(&mut t, &[1_000_000, 1_000_000]);
    t.rows[0].promised = 40;
    t.rows[0].kept = 39;
    t.rows[1].promised = 40;
    t.rows[1].kept = 2;
    decide(&mut t, Policy::Tft, me);
    assert!(t.rows[1].weight < 0.1 * t.rows[0].weight, "{:?}", t.rows);
    assert!(t.rows[1].weight > 0.0);
}

#[test]
fn test_origin_newcomer_gets_average_weight() {
    let mut t = table(2);
    let me = me_origin();
    settle_credit(&mut t, &[2_000_000]);
    t.open(1, false);
    t.rows[1].interested = true;
    decide(&mut t, Policy::Tft, me);
    assert!((t.rows[1].weight - t.rows[0].weight).abs() < 1e-6 * t.rows[0].weight);
}

/// An origin of 9 MB/s that has decided once for three clients whose confirmed uploads are
/// 6, 2 and 1 MB a round.
fn origin_of_three_weighted_clients() -> (ChokeTable, Me) {
    let mut t = table(3);
    let me = Me {
        capacity: Some(9_000_000.0),
        ..me_origin()
    };
    settle_credit(&mut t, &[6_000_000, 2_000_000, 1_000_000]);
    decide(&mut t, Policy::Tft, me);
    (t, me)
}

#[test]
fn test_origin_caps_shares_below_equal_so_they_hold_on_a_shared_link() {
    let (t, _) = origin_of_three_weighted_clients();
    let total: f64 = (0..3).map(|s| t.rows[s].weight).sum();
    // The heaviest client runs uncapped and takes what the others leave; the lighter two
    // get exactly their weighted share of the capacity, which TCP alone would not give.
    assert_eq!(t.cap(0), None);
    for s in 1..3 {
        let share = 9_000_000.0 * t.rows[s].weight / total;
        assert!(
            (t.cap(s).unwrap() - share).abs() < 1.0,
            "slot {s}: {:?}",
            t.cap(s)
        );
    }
}

#[test]
fn test_origin_shares_go_to_the_clients_that_ask() {
    let (mut t, me) = origin_of_three_weighted_clients();
    for (s, rate) in [(0, 6e6), (1, 2e6), (2, 1e6)] {
        t.rows[s].up.set_rate(rate);
    }
    // The heaviest client is nearly done and has no request queued: it cannot take its
    // share, so the two that ask split the link by their weights.
    t.rows[0].asking = false;
    decide(&mut t, Policy::Tft, me);
    let (w1, w2) = (t.rows[1].weight, t.rows[2].weight);
    assert_eq!(
        t.cap(1),
        None,
        "the heavier asker takes what the other leaves"
    );
    let share = 9_000_000.0 * w2 / (w1 + w2);
    assert!((t.cap(2).unwrap() - share).abs() < 1.0, "{:?}", t.cap(2));
    // Asking again, it is one of three.
    t.rows[0].asking = true;
    decide(&mut t, Policy::Tft, me);
    let total: f64 = (0..3).map(|s| t.rows[s].weight).sum();
    let share = 9_000_000.0 * t.rows[2].weight / total;
    assert!((t.cap(2).unwrap() - share).abs() < 1.0, "{:?}", t.cap(2));
}

/// An origin of 10 MB/s whose client 1 broke its promise (40 fresh pieces kept by nobody)
/// and never passed a byte on, while client 0, which did, asks for nothing.
fn origin_with_a_lone_promise_breaker() -> (ChokeTable, Me) {
    let me = Me {
        capacity: Some(10_000_000.0),
        ..me_origin()
    };
    let mut t = table(2);
    settle_credit(&mut t, &[1_000_000, 0]);
    t.rows[1].promised = 40;
    t.rows[0].interested = false;
    (t, me)
}

#[test]
fn test_origin_caps_a_non_contributor_even_when_nobody_else_asks() {
    let (mut t, me) = origin_with_a_lone_promise_breaker();
    decide(&mut t, Policy::Tft, me);
    assert!(!t.rows[1].choking, "still served: it may finish, last");
    assert_eq!(t.cap(1), Some(10_000_000.0 * NON_CONTRIBUTOR_SHARE));
    // Receipts that one receiver alone writes (a partner's) do not lift the cap...
    t.rows[1].credit = 50_000_000;
    t.end_round(1.0);
    decide(&mut t, Policy::Tft, me);
    assert_eq!(t.cap(1), Some(10_000_000.0 * NON_CONTRIBUTOR_SHARE));
    // ...a client that passed something on, as two receivers say, keeps a work-conserving
    // share when alone.
    t.rows[1].witnessed = 1;
    decide(&mut t, Policy::Tft, me);
    assert_eq!(t.cap(1), None);
}

#[test]
fn test_origin_names_no_promise_breaker_before_its_receipts_can_arrive() {
    // Two clients on 5 Mbit/s uplinks take fresh pieces from an 80 Mbit/s origin far
    // faster than they can pass them on; in their first rounds no receipt has reached the
    // origin yet. Capping both at 2% then left the origin at 4% of its uplink for a round.
    let me = Me {
        capacity: Some(10_000_000.0),
        ..me_origin()
    };
    let mut t = table(2);
    for s in 0..2 {
        t.rows[s].promised = 260;
        t.rows[s].kept = 40;
        t.rows[s].age = NEWCOMER_ROUNDS - 1;
        t.rows[s].up.record(64 << 20);
    }
    decide(&mut t, Policy::Tft, me);
    assert!(
        (0..2).all(|s| !t.is_named(s) && t.cap(s).is_none()),
        "{:?}",
        t.rows
    );
    // Rounds later, still with nothing passed on that a receiver confirms: a breach.
    t.rows[1].age = NEWCOMER_ROUNDS;
    decide(&mut t, Policy::Tft, me);
    assert!(t.is_named(1));
    assert_eq!(t.cap(1), Some(10_000_000.0 * NON_CONTRIBUTOR_SHARE));
}

#[test]
fn test_origin_names_a_client_that_took_much_and_gave_nothing() {
    let (mut t, me) = origin_with_a_lone_promise_breaker();
    t.rows[1].promised = 0;
    decide(&mut t, Policy::Tft, me);
    assert!(!t.is_named(1), "no breach, and it took little");
    t.rows[1].took_much = true;
    t.rows[1].age = NEWCOMER_ROUNDS - 1;
    decide(&mut t, Policy::Tft, me);
    assert!(!t.is_named(1), "its receipts may not have arrived yet");
    t.rows[1].age = NEWCOMER_ROUNDS;
    t.rows[1].took_much = true;
    decide(&mut t, Policy::Tft, me);
    assert!(
        t.is_named(1),
        "it took much from its peers and gave nothing"
    );
    assert_eq!(
        t.cap(1),
        None,
        "the origin's cap is for a broken promise only"
    );
    // One receiver's confirmation does not end it: a colluding partner can print that.
    t.rows[1].credit = 1;
    decide(&mut t, Policy::Tft, me);
    assert!(t.is_named(1), "one witness lifted it");
    // An upload that two receivers confirm does.
    t.rows[1].witnessed = 1;
    decide(&mut t, Policy::Tft, me);
    assert!(!t.is_named(1));
}

#[test]
fn test_origin_blames_no_broken_promise_while_nobody_else_takes_pieces() {
    // The same client as above, but no other client has announced a piece lately (only
    // seeds, or identities that register and never read, issue 13's hostile load): it
    // could not have passed anything on, so it is served like any client.
    let (mut t, me) = origin_with_a_lone_promise_breaker();
    t.set_others_taking(1, false);
    decide(&mut t, Policy::Tft, me);
    assert!(!t.rows[1].choking);
    assert_eq!(
        t.cap(1),
        None,
        "the only active client takes the whole upload"
    );
}

#[test]
fn test_tft_non_givers_may_have_half_of_what_givers_leave() {
    // Capacity 1 MB/s; the one giver takes 200 kB/s of it.
    let mut t = table(2);
    settle(&mut t, &[500, 0]);
    t.rows[0].up.set_rate(200_000.0);
    decide(&mut t, Policy::Tft, me_client());
    let cap = t.cap(1).expect("a non-giver is capped");
    assert!((cap - 0.5 * 800_000.0).abs() < 1.0, "{cap}");
    // A giver that takes all of it leaves the newcomer its optimistic share only.
    t.rows[0].up.set_rate(1_000_000.0);
    decide(&mut t, Policy::Tft, me_client());
    assert_eq!(t.cap(1), Some(1_000_000.0 * OPTIMISTIC_SHARE));
}

#[test]
fn test_tft_non_givers_take_turns_at_a_useful_rate() {
    // One giver takes all of 1 MB/s: the non-givers' 100 kB/s serves one 256 KiB piece
    // per EXTRA_TURN_SECS to nobody, so one newcomer at a time gets it, the least served.
    let mut t = table(6);
    settle(&mut t, &[500, 0, 0, 0, 0, 0]);
    let piece = me_client().piece_size as u64;
    for (s, pieces) in [(1, 3), (2, 1), (3, 0), (4, 2), (5, 0)] {
        t.record_up(s, pieces * piece);
    }
    t.rows[0].up.set_rate(1_000_000.0);
    decide(&mut t, Policy::Tft, me_client());
    let unchoked: Vec<usize> = (1..6).filter(|&s| t.weight(s) > 0.0).collect();
    assert_eq!(unchoked, vec![3]);
    assert_eq!(t.cap(3), Some(1_000_000.0 * OPTIMISTIC_SHARE));
    // With ten times the capacity, unused, every newcomer gets a turn at once.
    t.rows[0].up.set_rate(0.0);
    let me = Me {
        capacity: Some(10_000_000.0),
        ..me_client()
    };
    decide(&mut t, Policy::Tft, me);
    assert!((1..6).all(|s| t.weight(s) > 0.0));
}

#[test]
fn test_tft_leecher_that_got_nothing_lately_repays_past_givers() {
    // Peers 0 and 1 gave in earlier rounds, nobody in the last one (we wait on our last
    // pieces): they share the givers' part by what they gave over the connection, instead
    // of the upload going to the optimistic peer alone.
    let mut t = table(3);
    settle(&mut t, &[300, 100, 0]);
    t.end_round(1.0);
    t.end_round(1.0);
    decide(&mut t, Policy::Tft, me_client());
    let (w0, w1) = (t.rows[0].weight, t.rows[1].weight);
    assert!((w0 / w1 - 3.0).abs() < 1e-9, "{w0} vs {w1}");
    assert_eq!(t.rows[0].cap, None);
}

#[test]
fn test_tft_seed_spares_its_upload_for_those_furthest_from_done() {
    // A seed of 2 MB/s whose one giver takes 0.9 MB/s: the 1.1 MB/s left serves two 256 KiB
    // pieces per EXTRA_TURN_SECS, so the two non-givers that lack most get it, halved,
    // though all four are past their newcomer pieces and a leecher would give them only
    // optimistic turns.
    let mut t = table(5);
    settle(&mut t, &[500, 0, 0, 0, 0]);
    let piece = me_client().piece_size as u64;
    for (s, missing) in [(1, 10), (2, 50), (3, 30), (4, 40)] {
        t.record_up(s, NEWCOMER_PIECES * piece);
        t.rows[s].missing = missing;
    }
    t.rows[0].up.set_rate(900_000.0);
    let seed = Me {
        complete: true,
        capacity: Some(2_000_000.0),
        ..me_client()
    };
    let served = |t: &ChokeTable| (1..5).filter(|&s| t.weight(s) > 0.0).collect::<Vec<_>>();
    decide(&mut t, Policy::Tft, seed);
    assert_eq!(served(&t), vec![2, 4]);
    assert_eq!(t.cap(2), Some(550_000.0));
    assert!(t.weight(0) > t.weight(2));
    // A peer the origin names gets none of it: the next furthest from done does.
    t.set_named(2, true);
    decide(&mut t, Policy::Tft, seed);
    assert_eq!(served(&t), vec![3, 4]);
}
