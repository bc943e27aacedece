#!/usr/bin/env python3
"""A libtorrent (libtorrent-rasterbar, Debian's python3-libtorrent) node for the swarm
bench, configured fairly: no rate limits, several peers per IP and subnet allowed, DHT,
local discovery, UPnP and NAT-PMP off, every torrent active.

    tools/lt_node.py make SRC TRACKER_URL TORRENT       write a torrent (256 KiB pieces)
    tools/lt_node.py seed TORRENT DIR LISTEN_IP DONE_DIR N TIMEOUT
    tools/lt_node.py leech TORRENT DIR LISTEN_IP DONE_DIR N TIMEOUT LINGER

A leecher writes its completion time (seconds from its start) to DONE_DIR/<pid>, then seeds
until N such files exist or LINGER seconds pass; the seed stops once N leechers are done.
"""

import os
import sys
import time

import libtorrent as lt

PIECE = 256 * 1024
PORT = 6881


def session(ip):
    return lt.session({
        "listen_interfaces": f"{ip}:{PORT}",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "allow_multiple_connections_per_ip": True,
        "upload_rate_limit": 0,
        "download_rate_limit": 0,
        "active_downloads": -1,
        "active_seeds": -1,
        "active_limit": -1,
        "connections_limit": 500,
        "alert_mask": 0,
    })


def make(src, tracker, out):
    fs = lt.file_storage()
    lt.add_files(fs, src)
    ct = lt.create_torrent(fs, PIECE)
    ct.add_tracker(tracker)
    lt.set_piece_hashes(ct, os.path.dirname(os.path.abspath(src)))
    with open(out, "wb") as f:
        f.write(lt.bencode(ct.generate()))


def done_count(d):
    return len(os.listdir(d))


def run(role, torrent, save, ip, done_dir, n, timeout, linger=0.0):
    ses = session(ip)
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(torrent)
    params.save_path = save
    if role == "seed":
        params.flags |= lt.torrent_flags.seed_mode
    h = ses.add_torrent(params)
    t0 = time.monotonic()
    done_at = None
    while time.monotonic() - t0 < timeout:
        s = h.status()
        now = time.monotonic() - t0
        if role == "leech" and done_at is None and s.is_seeding:
            done_at = now
            with open(os.path.join(done_dir, str(os.getpid())), "w") as f:
                f.write(f"{done_at:.6f}\n")
        if role == "leech" and done_at is not None:
            if done_count(done_dir) >= n or now - done_at >= linger:
                return 0
        if role == "seed" and done_count(done_dir) >= n:
            return 0
        time.sleep(0.02)
    return 1


if __name__ == "__main__":
    a = sys.argv[1:]
    if a[0] == "make":
        make(a[1], a[2], a[3])
    else:
        linger = float(a[7]) if len(a) > 7 else 0.0
        sys.exit(run(a[0], a[1], a[2], a[3], a[4], int(a[5]), float(a[6]), linger))
