#!/usr/bin/env python3
"""A libtorrent (libtorrent-rasterbar 2.0, Debian's python3-libtorrent) node for the swarm
bench, configured as the independent checks configure it: 256 KiB pieces, no rate limits,
TCP only (no uTP), several peers per IP allowed, DHT, local discovery, UPnP and NAT-PMP off,
every torrent active.

    tools/lt_node.py make SRC TRACKER_URL TORRENT [hybrid]
                     write a BitTorrent v1 torrent (256 KiB pieces; with `hybrid`, v1+v2 as
                     libtorrent 2.0 makes by default); print its info hash
    tools/lt_node.py seed TORRENT DIR LISTEN_IP DONE_DIR N TIMEOUT [options]
    tools/lt_node.py leech TORRENT DIR LISTEN_IP DONE_DIR N TIMEOUT LINGER [options]

Options:
    --mode lan       libtorrent's default: peers on private networks (10.77.0.0/24 here) are
                     in its local peer class, which ignores the unchoke slots (no choking)
    --mode global    every peer in the global peer class: the choker is active
                     (unchoke_slots_limit, optimistic unchokes, round-robin seeding)
    --set KEY=VALUE  any settings_pack entry, e.g. --set enable_outgoing_utp=true
    --poll SECONDS   poll the torrent's status every SECONDS instead of waiting on alerts
                     (what this tool did before; for measuring its cost only)

A leecher writes "COMPLETE_S T0" to DONE_DIR/<pid>: seconds from its session's start to the
moment libtorrent reports the whole file downloaded and verified, and that start on the
system-wide monotonic clock (so the bench can tell how long the interpreter took to start).
It then seeds until N such files exist or LINGER seconds pass; the seed stops once N
leechers are done. Completion comes from libtorrent's torrent_finished alert, waited for
with a blocking call, so 17 nodes on 2 cores spend no CPU polling.
"""

import argparse
import os
import sys
import time

import libtorrent as lt

PIECE = 256 * 1024
PORT = 6881
# How often a finished leecher or the seed looks at DONE_DIR; completion itself is timed by
# an alert, not by this.
DONE_POLL = 0.25


def settings(ip, mode, overrides):
    s = {
        "listen_interfaces": f"{ip}:{PORT}",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        # TCP only, like tfttp. With uTP on (libtorrent's default) connections go out over
        # uTP first, which runs its congestion control in libtorrent's network thread and
        # throttles TCP beside it (mixed_mode_algorithm).
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "allow_multiple_connections_per_ip": True,
        "upload_rate_limit": 0,
        "download_rate_limit": 0,
        "active_downloads": -1,
        "active_seeds": -1,
        "active_limit": -1,
        "connections_limit": 500,
        "alert_mask": lt.alert.category_t.status_notification
                      | lt.alert.category_t.error_notification,
    }
    for kv in overrides:
        k, _, v = kv.partition("=")
        old = lt.default_settings().get(k)
        if isinstance(old, bool):
            s[k] = v.lower() in ("1", "true", "yes", "on")
        elif isinstance(old, int):
            s[k] = int(v)
        elif isinstance(old, str):
            s[k] = v
        else:
            sys.exit(f"lt_node: unknown setting {k}")
    return s


def session(ip, mode, overrides):
    ses = lt.session(settings(ip, mode, overrides))
    if mode == "global":
        # Replace the default filter (private ranges -> local class, which ignores unchoke
        # slots) with one that puts every address in the global class only.
        f = lt.ip_filter()
        f.add_rule("0.0.0.0", "255.255.255.255", 1 << lt.session.global_peer_class_id)
        ses.set_peer_class_filter(f)
    elif mode != "lan":
        sys.exit(f"lt_node: unknown mode {mode}")
    return ses


def make(src, tracker, out, hybrid=False):
    fs = lt.file_storage()
    lt.add_files(fs, src)
    ct = lt.create_torrent(fs, PIECE, flags=0 if hybrid else lt.create_torrent.v1_only)
    ct.add_tracker(tracker)
    lt.set_piece_hashes(ct, os.path.dirname(os.path.abspath(src)))
    with open(out, "wb") as f:
        f.write(lt.bencode(ct.generate()))
    print(lt.torrent_info(out).info_hash())


def done_count(d):
    return len(os.listdir(d))


def run(role, torrent, save, ip, done_dir, n, timeout, linger, mode, overrides, poll):
    t0 = time.monotonic()
    ses = session(ip, mode, overrides)
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(torrent)
    params.save_path = save
    if role == "seed":
        params.flags |= lt.torrent_flags.seed_mode
    h = ses.add_torrent(params)
    done_at = None
    while time.monotonic() - t0 < timeout:
        finished = False
        if poll:
            time.sleep(poll)
            finished = h.status().is_seeding
        else:
            ses.wait_for_alert(int(DONE_POLL * 1000) if done_at is not None or role == "seed"
                               else 1000)
            for a in ses.pop_alerts():
                if isinstance(a, lt.torrent_finished_alert):
                    finished = True
                elif a.category() & lt.alert.category_t.error_notification:
                    print(f"lt_node: {a.message()}", file=sys.stderr)
        now = time.monotonic() - t0
        if role == "leech" and done_at is None and finished:
            done_at = now
            with open(os.path.join(done_dir, str(os.getpid())), "w") as f:
                f.write(f"{done_at:.6f} {t0:.6f}\n")
        if role == "leech" and done_at is not None:
            if done_count(done_dir) >= n or now - done_at >= linger:
                return 0
        if role == "seed" and done_count(done_dir) >= n:
            return 0
    return 1


def main(argv):
    if argv and argv[0] == "make":
        make(argv[1], argv[2], argv[3], argv[4:] == ["hybrid"])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("role", choices=["seed", "leech"])
    ap.add_argument("torrent")
    ap.add_argument("dir")
    ap.add_argument("ip")
    ap.add_argument("done_dir")
    ap.add_argument("n", type=int)
    ap.add_argument("timeout", type=float)
    ap.add_argument("linger", type=float, nargs="?", default=0.0)
    ap.add_argument("--mode", default="lan")
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--poll", type=float, default=0.0)
    a = ap.parse_args(argv)
    return run(a.role, a.torrent, a.dir, a.ip, a.done_dir, a.n, a.timeout, a.linger, a.mode,
               a.overrides, a.poll)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
