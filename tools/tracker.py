#!/usr/bin/env python3
"""A minimal BitTorrent HTTP tracker (BEP 3, compact peer lists per BEP 23) for the swarm
bench where opentracker is not installed (`bench/swarm.py --lt-tracker python`; in *crowd*
libtorrent's times with it are within run-to-run noise of opentracker's): it answers every
announce with all other peers of the torrent. The announce interval
is 2 s instead of the usual 30 min, so peers that arrive during a benchmark lasting seconds
are found as promptly as tfttp's origin names them. Standard library only.

    tools/tracker.py IP PORT
"""

import socket
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

INTERVAL = 2
swarms = {}


def bencode(v):
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, str):
        return bencode(v.encode())
    if isinstance(v, dict):
        return b"d" + b"".join(bencode(k) + bencode(v[k]) for k in sorted(v)) + b"e"
    raise TypeError(type(v))


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(url.query, encoding="latin-1")
        try:
            info_hash = q["info_hash"][0].encode("latin-1")
            peer_id = q["peer_id"][0].encode("latin-1")
            port = int(q["port"][0])
        except (KeyError, ValueError):
            return self.reply({"failure reason": "bad announce"})
        peers = swarms.setdefault(info_hash, {})
        if q.get("event", [""])[0] == "stopped":
            peers.pop(peer_id, None)
        else:
            peers[peer_id] = (self.client_address[0], port)
        compact = b"".join(socket.inet_aton(ip) + p.to_bytes(2, "big")
                           for pid, (ip, p) in peers.items() if pid != peer_id)
        self.reply({"interval": INTERVAL, "min interval": 1, "peers": compact})

    def reply(self, d):
        body = bencode(d)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
