#!/usr/bin/env python3
"""Load and soak tools for Vela's listener hardening (issue 16).

Loopback only, bounded in count and time, stops by itself. Each run starts its
own `vela serve` (target/release/vela unless --vela) on free 127.0.0.1 ports
with a temp data directory and the [limits] the run needs, and every process it
starts is ended by its own pid. Every N seconds it prints the server's RSS,
open file descriptors, tokio tasks (`vela_runtime_alive_tasks`), open
connections, and the canary stream's health.

  hammer.py flood   [--conns 10000] [--kind idle|silent|slow] [--hold 60]
                    [--limits default|bench]
      Opens --conns connections (spread over 127.0.0.2..127.0.0.250 as source
      addresses) and holds them; a probe measures playlist p50/p99 of a normal
      client before and while they are held. `--limits bench` raises the caps
      and timeouts so that all connections stay open (what it costs);
      `--limits default` uses the defaults (what a public server does to them).
  hammer.py rtmpflood [--conns 8000] [--limits bench|default]
      Opens --conns RTMP sessions that do the handshake and `connect`, nothing
      more, and reports what each costs the server (RSS), then RSS after they go.
  hammer.py storm   [--publishers 200] [--duration 300]
      200 RTMP publishers drop their connection and come back in a loop; at the
      end every stream must be live again, and fds/tasks back at the baseline.
  hammer.py soak    [--streams 50] [--duration 3600]
      50 continuous publishers, one HLS player each; the canary player counts
      stalls (no new segment for 3 target durations). RSS at the end is compared
      with RSS at 10 minutes (or at 1/6 of the run when shorter).

The publishers are a small RTMP client here (handshake, connect, createStream,
publish, FLV tags of a fixture made once with ffmpeg: 320x180 15 fps H.264,
plus AAC for the soak), so hundreds of them cost little CPU.
"""

import argparse
import asyncio
import os
import random
import re
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Vela:
    def __init__(self, binary, limits_toml):
        self.dir = tempfile.mkdtemp(prefix="vela-hammer-")
        self.rtmp = free_port()
        self.http = free_port()
        cfg = os.path.join(self.dir, "vela.toml")
        with open(cfg, "w") as f:
            f.write(limits_toml)
        self.log = open(os.path.join(self.dir, "vela.log"), "wb")
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"))
        self.proc = subprocess.Popen(
            [binary, "serve", "--data", os.path.join(self.dir, "data"),
             "--rtmp", f"127.0.0.1:{self.rtmp}", "--http", f"127.0.0.1:{self.http}",
             "--h3", "off", "--config", cfg],
            stdout=subprocess.DEVNULL, stderr=self.log, env=env)
        for _ in range(300):
            try:
                if http_get_sync(self.http, "/healthz")[0] == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise SystemExit(f"vela did not start; log in {self.log.name}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def rss_mb(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")

    def fds(self):
        try:
            return len(os.listdir(f"/proc/{self.proc.pid}/fd"))
        except OSError:
            return -1

    def threads(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("Threads:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return -1

    def metrics(self):
        try:
            status, body = http_get_sync(self.http, "/metrics")
        except OSError:
            return {}
        out = {}
        for line in body.decode(errors="replace").splitlines():
            if line.startswith("#") or " " not in line:
                continue
            k, v = line.rsplit(" ", 1)
            try:
                out[k] = float(v)
            except ValueError:
                pass
        return out

    def sample(self):
        m = self.metrics()
        return {
            "rss_mb": self.rss_mb(),
            "fds": self.fds(),
            "threads": self.threads(),
            "tasks": int(m.get("vela_runtime_alive_tasks", -1)),
            "http_open": int(m.get('vela_connections_open{listener="http"}', 0)),
            "rtmp_open": int(m.get('vela_connections_open{listener="rtmp"}', 0)),
            "publishers": int(m.get("vela_publishers", 0)),
        }


def http_get_sync(port, path, timeout=10):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    if b"transfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    return status, body


async def aget(port, path):
    c = HttpClient(port)
    try:
        return await c.get(path)
    finally:
        c.close()


def dechunk(b):
    out = b""
    while b:
        line, _, rest = b.partition(b"\r\n")
        n = int(line.split(b";")[0] or b"0", 16)
        if n == 0:
            break
        out += rest[:n]
        b = rest[n + 2:]
    return out


# ---------------------------------------------------------------------------
# An async HTTP/1.1 keep-alive client (enough for playlists and segments)
# ---------------------------------------------------------------------------

class HttpClient:
    def __init__(self, port, source=None):
        self.port, self.source = port, source
        self.r = self.w = None

    async def _connect(self):
        kw = {"local_addr": (self.source, 0)} if self.source else {}
        self.r, self.w = await asyncio.open_connection("127.0.0.1", self.port, **kw)

    async def get(self, path, timeout=15):
        for attempt in range(2):
            try:
                if self.w is None:
                    await self._connect()
                return await asyncio.wait_for(self._get(path), timeout)
            except (OSError, asyncio.IncompleteReadError, ValueError, asyncio.TimeoutError):
                self.close()
                if attempt == 1:
                    raise
        raise OSError("unreachable")

    async def _get(self, path):
        self.w.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await self.w.drain()
        head = await self.r.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        h = head.lower()
        m = re.search(rb"content-length: *(\d+)", h)
        if m:
            body = await self.r.readexactly(int(m.group(1)))
        elif b"transfer-encoding: chunked" in h:
            body = b""
            while True:
                line = await self.r.readuntil(b"\r\n")
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    await self.r.readuntil(b"\r\n")
                    break
                body += await self.r.readexactly(n)
                await self.r.readexactly(2)
        else:
            body = b""
        if b"connection: close" in h:
            self.close()
        return status, body

    def close(self):
        if self.w is not None:
            self.w.close()
        self.r = self.w = None


# ---------------------------------------------------------------------------
# FLV fixture and a small RTMP publisher
# ---------------------------------------------------------------------------

def make_fixture(path, audio):
    ffmpeg = shutil.which("ffmpeg")
    if not ffmpeg:
        raise SystemExit("ffmpeg is required (scripts/setup installs it)")
    args = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=15"]
    if audio:
        args += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
    args += ["-t", "20", "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency",
             "-g", "30", "-keyint_min", "30", "-sc_threshold", "0", "-b:v", "300k",
             "-pix_fmt", "yuv420p"]
    args += ["-c:a", "aac", "-b:a", "64k"] if audio else ["-an"]
    args += ["-f", "flv", path]
    subprocess.run(args, check=True)


def read_flv(path):
    """(headers, frames): lists of (type, ts_ms, body); headers are sequence headers."""
    data = open(path, "rb").read()
    off = struct.unpack(">I", data[5:9])[0] + 4
    headers, frames = [], []
    while off + 11 <= len(data):
        t = data[off] & 0x1F
        size = int.from_bytes(data[off + 1:off + 4], "big")
        ts = int.from_bytes(data[off + 4:off + 7], "big") | (data[off + 7] << 24)
        body = data[off + 11:off + 11 + size]
        off += 11 + size + 4
        if t == 9 and len(body) > 1 and body[1] == 0 and body[0] & 0x0F == 7:
            headers.append((t, 0, body))
        elif t == 8 and len(body) > 1 and body[0] >> 4 == 10 and body[1] == 0:
            headers.append((t, 0, body))
        elif t in (8, 9):
            frames.append((t, ts, body))
    return headers, frames


def amf_str(s):
    b = s.encode()
    return b"\x02" + struct.pack(">H", len(b)) + b


def amf_num(n):
    return b"\x00" + struct.pack(">d", n)


CHUNK = 60000


def rtmp_message(csid, type_id, ts, stream_id, body):
    ts_field = min(ts, 0xFFFFFF)
    head = bytes([csid]) + ts_field.to_bytes(3, "big") + len(body).to_bytes(3, "big") \
        + bytes([type_id]) + struct.pack("<I", stream_id)
    if ts_field == 0xFFFFFF:
        head += struct.pack(">I", ts)
    out = [head, body[:CHUNK]]
    for i in range(CHUNK, len(body), CHUNK):
        out.append(bytes([0xC0 | csid]) + (struct.pack(">I", ts) if ts_field == 0xFFFFFF else b""))
        out.append(body[i:i + CHUNK])
    return b"".join(out)


async def read_until(r, needle, timeout=10):
    buf = b""
    end = time.monotonic() + timeout
    while needle not in buf:
        left = end - time.monotonic()
        if left <= 0:
            raise asyncio.TimeoutError()
        chunk = await asyncio.wait_for(r.read(65536), left)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
        buf = buf[-200000:]


async def rtmp_publish(port, key, headers, frames, seconds, stats, ts_base=0, source=None):
    """Publishes `frames` in a loop, paced in real time, for `seconds` (or until
    cancelled); returns the next timestamp base. Raises on a refused publish.
    `source`: the local address (encoders come from many addresses; the
    per-address limit would otherwise cap a run at 64)."""
    kw = {"local_addr": (source, 0)} if source else {}
    r, w = await asyncio.open_connection("127.0.0.1", port, **kw)
    try:
        w.write(b"\x03" + os.urandom(1536))
        s0s1s2 = await asyncio.wait_for(r.readexactly(3073), 10)
        w.write(s0s1s2[1:1537])
        w.write(rtmp_message(2, 1, 0, 0, struct.pack(">I", CHUNK)))
        connect = amf_str("connect") + amf_num(1) + b"\x03" + struct.pack(">H", 3) + b"app" \
            + amf_str("live") + b"\x00\x00\x09"
        w.write(rtmp_message(3, 20, 0, 0, connect))
        await read_until(r, b"NetConnection.Connect.Success")
        w.write(rtmp_message(3, 20, 0, 0, amf_str("createStream") + amf_num(2) + b"\x05"))
        w.write(rtmp_message(4, 20, 0, 1, amf_str("publish") + amf_num(3) + b"\x05"
                             + amf_str(key) + amf_str("live")))
        await read_until(r, b"NetStream.Publish.Start")

        async def drain_reader():
            while await r.read(65536):
                pass
        reader = asyncio.ensure_future(drain_reader())
        try:
            for t, _, body in headers:
                w.write(rtmp_message(6 if t == 9 else 5, t, ts_base, 1, body))
            loop_len = frames[-1][1] + 67
            start = time.monotonic()
            i, base = 0, ts_base
            while time.monotonic() - start < seconds:
                now_ms = (time.monotonic() - start) * 1000 + ts_base
                batch = []
                while frames[i][1] + base <= now_ms:
                    t, ts, body = frames[i]
                    batch.append(rtmp_message(6 if t == 9 else 5, t, ts + base, 1, body))
                    i += 1
                    if i == len(frames):
                        i, base = 0, base + loop_len
                if batch:
                    w.write(b"".join(batch))
                    await w.drain()
                    stats["sent"] = stats.get("sent", 0) + len(batch)
                if reader.done():
                    raise ConnectionError("server closed the publish")
                await asyncio.sleep(0.1)
            return int((time.monotonic() - start) * 1000) + ts_base
        finally:
            reader.cancel()
    finally:
        w.close()


# ---------------------------------------------------------------------------
# Players and the canary
# ---------------------------------------------------------------------------

async def player(port, stream, stop, health=None):
    """Polls the stream's first media playlist every target duration and
    fetches each new segment. `health` (the canary's) records stalls."""
    c = HttpClient(port)
    media_url = None
    seen = set()
    last_new = time.monotonic()
    target = 2.0
    while not stop.is_set():
        try:
            if media_url is None:
                st, body = await c.get(f"/live/{stream}/master.m3u8")
                if st != 200:
                    await asyncio.sleep(1)
                    continue
                uri = next(l for l in body.decode().splitlines() if l and not l.startswith("#"))
                media_url = uri if uri.startswith("/") else f"/live/{stream}/{uri}"
            st, body = await c.get(media_url)
            if st == 200:
                text = body.decode(errors="replace")
                m = re.search(r"#EXT-X-TARGETDURATION:(\d+)", text)
                if m:
                    target = float(m.group(1))
                base = media_url.rsplit("/", 1)[0]
                segs = [l for l in text.splitlines() if l and not l.startswith("#")]
                for s in segs[-3:]:
                    if s not in seen:
                        seen.add(s)
                        st2, seg = await c.get(s if s.startswith("/") else f"{base}/{s}")
                        if st2 == 200 and seg:
                            last_new = time.monotonic()
                            if health is not None:
                                health["segments"] = health.get("segments", 0) + 1
                if len(seen) > 64:
                    seen = set(list(seen)[-32:])
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, StopIteration):
            media_url = None
            if health is not None:
                health["errors"] = health.get("errors", 0) + 1
        gap = time.monotonic() - last_new
        if health is not None and gap > 3 * target and not health.get("in_stall"):
            health["stalls"] = health.get("stalls", 0) + 1
            health["in_stall"] = True
        elif health is not None and gap <= 3 * target:
            health["in_stall"] = False
        try:
            await asyncio.wait_for(stop.wait(), target / 2)
        except asyncio.TimeoutError:
            pass
    c.close()


def fmt_sample(t, s, extra=""):
    return (f"t={t:7.1f}s rss={s['rss_mb']:7.1f}MB fds={s['fds']:6d} tasks={s['tasks']:6d} "
            f"threads={s['threads']:3d} http_open={s['http_open']:6d} rtmp_open={s['rtmp_open']:5d} "
            f"publishers={s['publishers']:4d} {extra}")


async def sampler(vela, stop, every, t0, extra_fn, log):
    while not stop.is_set():
        s = await asyncio.get_running_loop().run_in_executor(None, vela.sample)
        t = time.monotonic() - t0
        log.append((t, s))
        print(fmt_sample(t, s, extra_fn()), flush=True)
        try:
            await asyncio.wait_for(stop.wait(), every)
        except asyncio.TimeoutError:
            pass


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def fixture(tmp, audio):
    path = os.path.join(tmp, "fixture-av.flv" if audio else "fixture-v.flv")
    make_fixture(path, audio)
    return read_flv(path)


# ---------------------------------------------------------------------------
# flood
# ---------------------------------------------------------------------------

async def probe_latency(port, path, n, source="127.0.0.1"):
    c = HttpClient(port, source)
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        st, _ = await c.get(path)
        if st == 200:
            lat.append((time.perf_counter() - t) * 1000)
        await asyncio.sleep(0.02)
    c.close()
    lat.sort()
    if not lat:
        return float("nan"), float("nan")
    return lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]


async def open_conn(port, i, kind, held, failures):
    src = f"127.0.0.{2 + i % 248}"
    try:
        r, w = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, local_addr=(src, 0)), 10)
        if kind == "idle":
            w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            await w.drain()
            await asyncio.wait_for(r.readuntil(b"ok\n"), 10)
        elif kind == "slow":
            w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        held.append((r, w))
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        failures[0] += 1


async def flood(args):
    raise_nofile()
    if args.limits == "bench":
        limits = ("[limits]\nmax_http_connections = 18000\nhttp_per_address = 100000\n"
                  "http_pre_request = 100000\nhttp_header_timeout_s = 3600\nhttp_idle_timeout_s = 3600\n")
    else:
        limits = ""
    vela = Vela(args.vela, limits)
    tmp = tempfile.mkdtemp(prefix="hammer-")
    stop = asyncio.Event()
    try:
        headers, frames = fixture(tmp, audio=False)
        pub_stats = {}
        pub = asyncio.ensure_future(
            rtmp_publish(vela.rtmp, "canary", headers, frames, args.hold + 120, pub_stats))
        for _ in range(100):
            if (await aget(vela.http, "/live/canary/master.m3u8"))[0] == 200:
                break
            await asyncio.sleep(0.2)
        _, master = await aget(vela.http, "/live/canary/master.m3u8")
        uri = next(l for l in master.decode().splitlines() if l and not l.startswith("#"))
        path = uri if uri.startswith("/") else f"/live/canary/{uri}"
        await asyncio.sleep(3)
        idle_p50, idle_p99 = await probe_latency(vela.http, path, args.probes)
        base = await asyncio.get_running_loop().run_in_executor(None, vela.sample)
        print(f"idle server: playlist p50={idle_p50:.2f}ms p99={idle_p99:.2f}ms "
              f"rss={base['rss_mb']:.1f}MB fds={base['fds']}", flush=True)
        held, failures = [], [0]
        t0 = time.monotonic()
        for start in range(0, args.conns, 500):
            await asyncio.gather(*(open_conn(vela.http, i, args.kind, held, failures)
                                   for i in range(start, min(args.conns, start + 500))))
        opened = time.monotonic() - t0
        print(f"opened {len(held)} {args.kind} connections in {opened:.1f}s "
              f"({failures[0]} failed or refused)", flush=True)
        log = []
        samp = asyncio.ensure_future(sampler(vela, stop, 5, t0, lambda: "", log))
        await asyncio.sleep(2)
        p50, p99 = await probe_latency(vela.http, path, args.probes)
        health = (await aget(vela.http, "/healthz"))[0]
        held_s = await asyncio.get_running_loop().run_in_executor(None, vela.sample)
        print(f"while held: playlist p50={p50:.2f}ms p99={p99:.2f}ms (idle {idle_p99:.2f}ms, "
              f"ratio {p99 / idle_p99:.2f}); rss={held_s['rss_mb']:.1f}MB "
              f"(+{held_s['rss_mb'] - base['rss_mb']:.1f}MB); healthz {health}", flush=True)
        remaining = args.hold - (time.monotonic() - t0)
        if remaining > 0:
            await asyncio.sleep(remaining)
        still = 0
        for r, w in held:
            if not r.at_eof() and not w.is_closing():
                try:
                    data = await asyncio.wait_for(r.read(1), 0.001)
                    still += 0 if data == b"" else 1
                except asyncio.TimeoutError:
                    still += 1
                except OSError:
                    pass
        print(f"after {args.hold}s: {still} of {len(held)} connections still open", flush=True)
        for _, w in held:
            w.close()
        held.clear()
        await asyncio.sleep(5)
        end = await asyncio.get_running_loop().run_in_executor(None, vela.sample)
        print(f"released: rss={end['rss_mb']:.1f}MB fds={end['fds']} tasks={end['tasks']}", flush=True)
        await asyncio.sleep(55)
        later = await asyncio.get_running_loop().run_in_executor(None, vela.sample)
        print(f"60s after release: rss={later['rss_mb']:.1f}MB fds={later['fds']} tasks={later['tasks']}",
              flush=True)
        stop.set()
        await samp
        pub.cancel()
    finally:
        stop.set()
        vela.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"server log: {vela.log.name}")


# ---------------------------------------------------------------------------
# rtmpflood: what an unauthenticated RTMP session costs
# ---------------------------------------------------------------------------

async def rtmp_session(port, i, held, failures):
    src = f"127.0.0.{2 + i % 248}"
    try:
        r, w = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, local_addr=(src, 0)), 10)
        w.write(b"\x03" + os.urandom(1536))
        s0s1s2 = await asyncio.wait_for(r.readexactly(3073), 10)
        w.write(s0s1s2[1:1537])
        connect = amf_str("connect") + amf_num(1) + b"\x03" + struct.pack(">H", 3) + b"app" \
            + amf_str("live") + b"\x00\x00\x09"
        w.write(rtmp_message(3, 20, 0, 0, connect))
        await read_until(r, b"NetConnection.Connect.Success")
        held.append((r, w))
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        failures[0] += 1


async def rtmpflood(args):
    raise_nofile()
    limits = ("[limits]\nmax_rtmp_connections = 18000\nmax_http_connections = 100\n"
              "rtmp_per_address = 100000\nrtmp_pre_publish = 100000\n"
              "rtmp_publish_timeout_s = 3600\nrtmp_idle_timeout_s = 3600\n"
              if args.limits == "bench" else "")
    vela = Vela(args.vela, limits)
    loop = asyncio.get_running_loop()
    try:
        base = await loop.run_in_executor(None, vela.sample)
        held, failures = [], [0]
        t0 = time.monotonic()
        for start in range(0, args.conns, 250):
            await asyncio.gather(*(rtmp_session(vela.rtmp, i, held, failures)
                                   for i in range(start, min(args.conns, start + 250))))
        await asyncio.sleep(3)
        s = await loop.run_in_executor(None, vela.sample)
        per = (s["rss_mb"] - base["rss_mb"]) * 1024 / max(1, len(held))
        pre_auth = int(vela.metrics().get('vela_connections_pre_auth{listener="rtmp"}', 0))
        print(f"{len(held)} sessions after handshake + connect ({failures[0]} refused or failed) "
              f"in {time.monotonic() - t0:.1f}s: rss {base['rss_mb']:.1f} -> {s['rss_mb']:.1f}MB "
              f"({per:.1f} KB per session), fds {s['fds']}, tasks {s['tasks']}, "
              f"pre-auth {pre_auth}",
              flush=True)
        for _, w in held:
            w.close()
        held.clear()
        for t in (5, 30, 60):
            await asyncio.sleep(t - (0 if t == 5 else (5 if t == 30 else 30)))
            e = await loop.run_in_executor(None, vela.sample)
            print(f"{t}s after release: rss {e['rss_mb']:.1f}MB fds {e['fds']} tasks {e['tasks']}", flush=True)
    finally:
        vela.stop()
    print(f"server log: {vela.log.name}")


# ---------------------------------------------------------------------------
# storm
# ---------------------------------------------------------------------------

async def storm(args):
    raise_nofile()
    vela = Vela(args.vela, "")
    tmp = tempfile.mkdtemp(prefix="hammer-")
    stop = asyncio.Event()
    try:
        headers, frames = fixture(tmp, audio=False)
        base = await asyncio.get_running_loop().run_in_executor(None, vela.sample)
        print(fmt_sample(0, base, "baseline"), flush=True)
        t0 = time.monotonic()
        counts = {"sessions": 0, "refused": 0, "errors": 0}

        async def publisher(i):
            ts = 0
            rng = random.Random(i)
            while time.monotonic() - t0 < args.duration:
                hold = rng.uniform(5, 20)
                try:
                    ts = await rtmp_publish(vela.rtmp, f"storm{i}", headers, frames,
                                            min(hold, args.duration - (time.monotonic() - t0)),
                                            {}, ts, f"127.0.0.{2 + i % 248}")
                    counts["sessions"] += 1
                except (ConnectionError, asyncio.TimeoutError, OSError, asyncio.IncompleteReadError):
                    counts["errors"] += 1
                await asyncio.sleep(rng.uniform(0.0, 3.0))

        health = {}
        samp_log = []
        samp = asyncio.ensure_future(sampler(
            vela, stop, 10, t0,
            lambda: f"sessions={counts['sessions']} errors={counts['errors']} "
                    f"canary_segments={health.get('segments', 0)} canary_stalls={health.get('stalls', 0)}",
            samp_log))
        canary = asyncio.ensure_future(player(vela.http, "storm0", stop, health))
        pubs = [asyncio.ensure_future(publisher(i)) for i in range(args.publishers)]
        await asyncio.gather(*pubs)
        # Every stream must be live again after its last reconnect.
        live = 0
        for i in range(args.publishers):
            st, _ = await aget(vela.http, f"/live/storm{i}/master.m3u8")
            live += st == 200
        print(f"streams with a playlist right after the storm: {live}/{args.publishers}")
        stop.set()
        await asyncio.gather(samp, canary)
        # The hub keeps vanished streams for reconnect_grace_s (10 s): wait it out.
        await asyncio.sleep(20)
        end = await asyncio.get_running_loop().run_in_executor(None, vela.sample)
        print(fmt_sample(time.monotonic() - t0, end, "after the storm and the reconnect grace"))
        print(f"fds: baseline {base['fds']}, after {end['fds']}; tasks: baseline {base['tasks']}, "
              f"after {end['tasks']}; publish sessions {counts['sessions']}, failed {counts['errors']}")
    finally:
        stop.set()
        vela.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"server log: {vela.log.name}")


# ---------------------------------------------------------------------------
# soak
# ---------------------------------------------------------------------------

async def soak(args):
    raise_nofile()
    vela = Vela(args.vela, "")
    tmp = tempfile.mkdtemp(prefix="hammer-")
    stop = asyncio.Event()
    try:
        headers, frames = fixture(tmp, audio=True)
        t0 = time.monotonic()
        counts = {"restarts": 0}

        async def publisher(i):
            ts = 0
            while not stop.is_set() and time.monotonic() - t0 < args.duration:
                try:
                    ts = await rtmp_publish(vela.rtmp, f"soak{i}", headers, frames,
                                            args.duration - (time.monotonic() - t0), {}, ts,
                                            f"127.0.0.{2 + i % 248}")
                except (ConnectionError, asyncio.TimeoutError, OSError, asyncio.IncompleteReadError):
                    counts["restarts"] += 1
                    await asyncio.sleep(1)

        health = {}
        log = []
        pubs = [asyncio.ensure_future(publisher(i)) for i in range(args.streams)]
        await asyncio.sleep(5)
        players = [asyncio.ensure_future(player(vela.http, f"soak{i}", stop, health if i == 0 else None))
                   for i in range(args.streams)]
        samp = asyncio.ensure_future(sampler(
            vela, stop, args.every, t0,
            lambda: f"canary_segments={health.get('segments', 0)} canary_stalls={health.get('stalls', 0)} "
                    f"canary_errors={health.get('errors', 0)} publisher_restarts={counts['restarts']}",
            log))
        await asyncio.gather(*pubs)
        stop.set()
        await asyncio.gather(samp, *players)
        ref_t = min(600.0, args.duration / 6)
        ref = next((s for t, s in log if t >= ref_t), log[0][1])
        end = log[-1][1]
        print(f"RSS at {ref_t:.0f}s: {ref['rss_mb']:.1f}MB; at the end: {end['rss_mb']:.1f}MB "
              f"({(end['rss_mb'] / ref['rss_mb'] - 1) * 100:+.1f}%); canary stalls {health.get('stalls', 0)}, "
              f"segments {health.get('segments', 0)}; publisher restarts {counts['restarts']}")
    finally:
        stop.set()
        vela.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"server log: {vela.log.name}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vela", default=os.path.join(ROOT, "target", "release", "vela"))
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("flood")
    f.add_argument("--conns", type=int, default=10000)
    f.add_argument("--kind", choices=["idle", "silent", "slow"], default="idle")
    f.add_argument("--hold", type=float, default=60)
    f.add_argument("--probes", type=int, default=300)
    f.add_argument("--limits", choices=["default", "bench"], default="bench")
    rf = sub.add_parser("rtmpflood")
    rf.add_argument("--conns", type=int, default=8000)
    rf.add_argument("--limits", choices=["default", "bench"], default="bench")
    s = sub.add_parser("storm")
    s.add_argument("--publishers", type=int, default=200)
    s.add_argument("--duration", type=float, default=300)
    k = sub.add_parser("soak")
    k.add_argument("--streams", type=int, default=50)
    k.add_argument("--duration", type=float, default=3600)
    k.add_argument("--every", type=float, default=30)
    args = p.parse_args()
    # Bounded by construction; the guard is for a hung run.
    limit = {"flood": args.hold + 300 if args.cmd == "flood" else 0, "rtmpflood": 600,
             "storm": getattr(args, "duration", 0) + 300,
             "soak": getattr(args, "duration", 0) + 300}[args.cmd]
    asyncio.run(asyncio.wait_for({"flood": flood, "rtmpflood": rtmpflood, "storm": storm, "soak": soak}[args.cmd](args), limit))


if __name__ == "__main__":
    main()
