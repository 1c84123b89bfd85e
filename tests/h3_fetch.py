#!/usr/bin/env python3
"""An independent HTTP/3 client (aioquic) for Vela's HTTPS/HTTP/3 tests.

    h3_fetch.py --connect 127.0.0.1:PORT --cafile CERT.pem URL OUT [URL OUT ...]

Opens one QUIC connection to --connect (TLS server name: the URLs' host),
GETs each URL over HTTP/3 in turn, writes each body to its OUT file and prints
one JSON line per response ({"url", "status", "bytes", "alpn"}). Exits 1 when a
response is not 200 or anything fails, 2 on bad usage.
"""

import argparse
import asyncio
import json
import sys
from urllib.parse import urlparse

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated


class H3Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.requests = {}

    def quic_event_received(self, event):
        if isinstance(event, ConnectionTerminated):
            for r in self.requests.values():
                if not r["done"].done():
                    r["done"].set_exception(
                        ConnectionError(f"connection closed: {event.reason_phrase}")
                    )
            return
        for ev in self.h3.handle_event(event):
            r = self.requests.get(getattr(ev, "stream_id", None))
            if r is None:
                continue
            if isinstance(ev, HeadersReceived):
                r["headers"].extend(ev.headers)
            elif isinstance(ev, DataReceived):
                r["body"] += ev.data
            if getattr(ev, "stream_ended", False) and not r["done"].done():
                r["done"].set_result(None)

    async def get(self, url, timeout):
        u = urlparse(url)
        path = u.path + ("?" + u.query if u.query else "")
        sid = self._quic.get_next_available_stream_id()
        req = {
            "headers": [],
            "body": bytearray(),
            "done": asyncio.get_running_loop().create_future(),
        }
        self.requests[sid] = req
        self.h3.send_headers(
            sid,
            [
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", u.netloc.encode()),
                (b":path", path.encode()),
                (b"user-agent", b"vela-tests-aioquic"),
            ],
            end_stream=True,
        )
        self.transmit()
        await asyncio.wait_for(req["done"], timeout)
        status = int(dict(req["headers"]).get(b":status", b"0"))
        return status, bytes(req["body"])


async def run(args):
    pairs = list(zip(args.items[::2], args.items[1::2]))
    host = urlparse(pairs[0][0]).hostname
    cfg = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=host)
    cfg.load_verify_locations(args.cafile)
    chost, cport = args.connect.rsplit(":", 1)
    ok = True
    async with connect(chost, int(cport), configuration=cfg, create_protocol=H3Client) as client:
        alpn = client._quic.tls.alpn_negotiated
        for url, out in pairs:
            status, body = await client.get(url, args.timeout)
            with open(out, "wb") as f:
                f.write(body)
            print(json.dumps({"url": url, "status": status, "bytes": len(body), "alpn": alpn}))
            ok = ok and status == 200
    return ok


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--connect", required=True, help="HOST:PORT of the UDP listener")
    p.add_argument("--cafile", required=True, help="PEM certificate to trust")
    p.add_argument("--timeout", type=float, default=20.0)
    p.add_argument("items", nargs="+", help="URL OUT pairs")
    args = p.parse_args()
    if len(args.items) % 2:
        p.error("expected URL OUT pairs")
    try:
        ok = asyncio.run(run(args))
    except Exception as e:  # one line, for the test's failure message
        print(f"h3_fetch: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
