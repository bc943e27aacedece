//! Scenario files: every key, defaults, and the one-line errors for bad input.

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
        up_rate: UpRate::DEFAULT,
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
        origin_up_rate: UpRate::DEFAULT,
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
    assert_eq!(s.origin_up_rate, UpRate::DEFAULT);
    let c = &s.clients[0];
    assert_eq!(s.clients.len(), 1);
    assert_eq!(c.link.down, None);
    assert_eq!(c.link.rtt, 0.0);
    assert_eq!(c.arrive, 0.0);
    assert_eq!(c.leave, Leave::Linger);
    assert_eq!(c.behave, Behaviour::Honest);
    assert_eq!(c.up_rate, UpRate::DEFAULT);
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
    assert_eq!(s.origin_up_rate, UpRate::Fixed(2_000_000));
    let c = ClientSpec {
        link: LinkSpec {
            up: 1e5,
            down: Some(2e5),
            rtt: 0.0305,
        },
        arrive: 2.5,
        leave: Leave::OnComplete,
        behave: Behaviour::Liar,
        up_rate: UpRate::Fixed(50_000),
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
    assert_eq!(s.origin_up_rate, UpRate::Fixed(1_000_000));
    assert_eq!(s.clients[0].up_rate, UpRate::Fixed(700_000));
    assert_eq!(s.clients[1].up_rate, UpRate::Fixed(100_000));
}

#[test]
fn test_up_rate_auto_and_off_name_the_pacer() {
    let s = with(|v| {
        v["origin"]["up_rate"] = json!("off");
        v["clients"] = json!([{"up": 7e5, "up_rate": "auto"}, {"up": 9e5, "up_rate": null}]);
    })
    .unwrap();
    assert_eq!(s.origin_up_rate, UpRate::Off);
    assert_eq!(s.clients[0].up_rate, UpRate::Auto);
    assert_eq!(s.clients[1].up_rate, UpRate::DEFAULT);
    assert_eq!(UpRate::Auto.told(), None);
}

#[test]
fn test_up_rate_other_string_rejected() {
    let msg = refused(|v| v["clients"][0]["up_rate"] = json!("fast"));
    assert_has(
        &msg,
        "clients[0].up_rate: must be null, \"auto\", \"off\", \"link\" or a positive number",
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
        "clients[0].behave: unknown value \"saint\" (honest, free-rider, liar, colluder)"
    );
}

#[test]
fn test_behave_not_string_rejected() {
    let msg = refused(|v| v["clients"][0]["behave"] = json!(1));
    assert_has(
        &msg,
        "clients[0].behave: must be one of \"honest\", \"free-rider\", \"liar\", \"colluder\", got 1",
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
    let msg =
        refused(|v| v["clients"] = json!([{"up": 1, "count": u64::MAX}, {"up": 1, "count": 2}]));
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
        format!("piece_size: {pieces} pieces is more than {MAX_PIECES}; use a larger piece size")
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
