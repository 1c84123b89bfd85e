// Harness for the player tests: a static server for the player page, a real
// `vela serve` on free loopback ports, ffmpeg publishers, and the system's
// headless Chromium driven by playwright-core.
//
// Every child process is started in its own process group and remembered;
// the groups are killed on normal exit, on SIGINT/SIGTERM and on an uncaught
// error, so a failing or interrupted run leaves nothing behind.
//
// Nothing here asserts a wall-clock duration: waits poll with a bounded number
// of tries and fail with what they waited for and the logs.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '..', '..');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------
// Process groups, cleaned up whatever happens
// ---------------------------------------------------------------------------

const children = new Set();

function killGroup(child, signal) {
  if (!child.pid) return;
  try {
    process.kill(-child.pid, signal);
  } catch (_) {
    /* already gone */
  }
}

function killAll() {
  for (const c of children) killGroup(c, 'SIGKILL');
  children.clear();
}

process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    killAll();
    process.exit(128 + (os.constants.signals[sig] || 1));
  });
}
process.on('uncaughtException', (e) => {
  console.error(e);
  killAll();
  process.exit(1);
});

/** Spawns `cmd` in a new process group with stdout/stderr to `logPath`. */
export function spawnLogged(cmd, args, logPath, env) {
  const fd = fs.openSync(logPath, 'a');
  const child = spawn(cmd, args, {
    detached: true, // own process group: kill(-pid) reaches its children
    stdio: ['ignore', fd, fd],
    env: { ...process.env, ...(env || {}) },
  });
  fs.closeSync(fd);
  children.add(child);
  child.exited = false;
  child.on('exit', (code, signal) => {
    child.exited = true;
    child.exitCode_ = code;
    child.exitSignal_ = signal;
  });
  child.on('error', (e) => {
    child.exited = true;
    child.spawnError = e;
  });
  return child;
}

/** SIGTERM the group, wait (bounded), then SIGKILL. */
export async function stopGroup(child, { signal = 'SIGTERM', tries = 50 } = {}) {
  if (!child) return;
  if (!child.exited) {
    killGroup(child, signal);
    for (let i = 0; i < tries && !child.exited; i++) await sleep(100);
  }
  killGroup(child, 'SIGKILL');
  for (let i = 0; i < 20 && !child.exited; i++) await sleep(50);
  children.delete(child);
}

export function tail(file, max = 6000) {
  try {
    const s = fs.readFileSync(file, 'utf8');
    return s.length > max ? '…' + s.slice(-max) : s;
  } catch (e) {
    return `(cannot read ${file}: ${e.message})`;
  }
}

// ---------------------------------------------------------------------------
// Ports and HTTP
// ---------------------------------------------------------------------------

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** GET with a timeout; never throws: {status, text, headers} or {error}. */
export async function get(url, timeoutMs = 5000) {
  const ac = new AbortController();
  const t = setTimeout(() => ac.abort(), timeoutMs);
  try {
    const r = await fetch(url, { signal: ac.signal, cache: 'no-store' });
    const text = await r.text();
    return { status: r.status, text, headers: Object.fromEntries(r.headers) };
  } catch (e) {
    return { status: 0, error: String(e && e.message ? e.message : e), text: '' };
  } finally {
    clearTimeout(t);
  }
}

/** Polls `f` (async, returns a truthy value when done) `tries` times. */
export async function poll(what, tries, everyMs, f, diag) {
  let last;
  for (let i = 0; i < tries; i++) {
    last = await f();
    if (last) return last;
    await sleep(everyMs);
  }
  const extra = diag ? `\n${await diag()}` : '';
  throw new Error(`gave up waiting for ${what} after ${tries} tries ${everyMs} ms apart${extra}`);
}

// ---------------------------------------------------------------------------
// Static server for the player page and the players' dist files
// ---------------------------------------------------------------------------

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json',
  '.json': 'application/json',
};

/** Serves tests/players/ (page, scripts, node_modules) on 127.0.0.1:port. */
export function startStaticServer(port = 0, host = '127.0.0.1') {
  const server = http.createServer((req, res) => {
    let p;
    try {
      p = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    } catch (_) {
      res.writeHead(400).end();
      return;
    }
    if (p.endsWith('/')) p += 'index.html';
    const file = path.resolve(HERE, '.' + p);
    if (!file.startsWith(HERE + path.sep) || req.method !== 'GET') {
      res.writeHead(403).end();
      return;
    }
    fs.readFile(file, (err, data) => {
      if (err) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
        return;
      }
      res.writeHead(200, {
        'content-type': TYPES[path.extname(file)] || 'application/octet-stream',
        'cache-control': 'no-cache',
      });
      res.end(data);
    });
  });
  return new Promise((resolve, reject) => {
    server.on('error', reject);
    server.listen(port, host, () => {
      const a = server.address();
      server.url = `http://${host}:${a.port}`;
      resolve(server);
    });
  });
}

// ---------------------------------------------------------------------------
// vela
// ---------------------------------------------------------------------------

export function velaBinary() {
  const bin = process.env.VELA_BIN || path.join(ROOT, 'target', 'release', 'vela');
  if (!fs.existsSync(bin)) {
    throw new Error(`${bin} does not exist: build it first with \`cargo build --release --bin vela\` (scripts/test does)`);
  }
  return bin;
}

export function makeWorkDir(label) {
  const base = process.env.VELA_PLAYER_TMP || os.tmpdir();
  return fs.mkdtempSync(path.join(base, `vela-players-${label}-`));
}

export class Vela {
  /**
   * `config`: the text of a TOML file passed with `--config` (e.g. a `[drm]`
   * section); the flags (data, listen addresses) win over it.
   */
  static async start(workDir, { config = null, h3 = false } = {}) {
    let lastErr = '';
    // A port found free may be taken before vela binds it: try new ports.
    for (let attempt = 0; attempt < 3; attempt++) {
      const v = new Vela(workDir, attempt, config);
      v.rtmpPort = await freePort();
      v.httpPort = await freePort();
      // A free TCP port number is very likely free for UDP too; a clash
      // fails the start, and the loop tries other ports.
      if (h3) v.h3Port = await freePort();
      v.spawn();
      try {
        await v.waitHealthy();
        return v;
      } catch (e) {
        lastErr = e.message;
        await v.stop();
      }
    }
    throw new Error(`vela did not start:\n${lastErr}`);
  }

  constructor(workDir, n, config = null) {
    this.workDir = workDir;
    this.data = path.join(workDir, `data-${n}`);
    this.log = path.join(workDir, `vela-${n}.log`);
    this.configFile = null;
    if (config != null) {
      this.configFile = path.join(workDir, `vela-${n}.toml`);
      fs.writeFileSync(this.configFile, config);
    }
  }

  spawn() {
    const env = process.env.RUST_LOG ? {} : { RUST_LOG: 'info' };
    this.child = spawnLogged(
      velaBinary(),
      ['serve', '--data', this.data, '--rtmp', `127.0.0.1:${this.rtmpPort}`, '--http', `127.0.0.1:${this.httpPort}`,
        '--h3', this.h3Port ? `127.0.0.1:${this.h3Port}` : 'off', '--webrtc', '127.0.0.1:0',
        ...(this.configFile ? ['--config', this.configFile] : [])],
      this.log,
      env,
    );
  }

  get http() {
    return `http://127.0.0.1:${this.httpPort}`;
  }

  /** The HTTP/3 origin (`https://127.0.0.1:PORT`), when started with `h3`. */
  get h3() {
    return this.h3Port ? `https://127.0.0.1:${this.h3Port}` : null;
  }

  /** The base64 SPKI SHA-256 of the TLS certificate that vela logged at start. */
  spkiSha256() {
    // The log may be coloured (ANSI escapes) and quotes the value.
    const text = tail(this.log, 1_000_000).replace(/\x1b\[[0-9;]*m/g, '');
    const m = /spki_sha256="?([A-Za-z0-9+/=]+)/.exec(text);
    return m ? m[1] : null;
  }

  rtmpUrl(key) {
    return `rtmp://127.0.0.1:${this.rtmpPort}/live/${key}`;
  }

  streamBase(key) {
    return `${this.http}/live/${key}`;
  }

  logTail(max = 6000) {
    return tail(this.log, max);
  }

  async waitHealthy() {
    await poll('vela /healthz', 300, 100, async () => {
      if (this.child.exited) {
        throw new Error(`vela exited (${this.child.exitCode_ ?? this.child.exitSignal_}) before answering /healthz\n--- vela log ---\n${this.logTail()}`);
      }
      const r = await get(`${this.http}/healthz`, 1000);
      return r.status === 200;
    }, async () => `--- vela log ---\n${this.logTail()}`);
  }

  async stop() {
    await stopGroup(this.child);
  }
}

// ---------------------------------------------------------------------------
// ffmpeg publishers
// ---------------------------------------------------------------------------

let pubCounter = 0;

/** Runs ffmpeg with `args` (the command in ffmpeg-N.cmd, output in ffmpeg-N.log). */
function spawnFfmpeg(args, workDir) {
  const n = pubCounter++;
  const log = path.join(workDir, `ffmpeg-${n}.log`);
  fs.writeFileSync(path.join(workDir, `ffmpeg-${n}.cmd`), `ffmpeg ${args.join(' ')}\n`);
  const child = spawnLogged(process.env.VELA_FFMPEG || 'ffmpeg', args, log);
  child.logPath = log;
  child.logTail = () => tail(log, 3000);
  return child;
}

/**
 * The publisher of the issue: lavfi testsrc2 720p30 and a 440 Hz sine, x264
 * veryfast zerolatency with a 1 s GOP, AAC, live (`-re`), as FLV over RTMP.
 * `seconds` null: runs until stopped.
 */
export function publish(url, workDir, { seconds = null } = {}) {
  const args = ['-hide_banner', '-nostdin', '-loglevel', 'warning',
    '-re', '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=30',
    '-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000'];
  if (seconds != null) args.push('-t', String(seconds));
  args.push('-map', '0:v', '-map', '1:a',
    '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-g', '30', '-keyint_min', '30', '-sc_threshold', '0',
    '-pix_fmt', 'yuv420p', '-b:v', '2500k', '-maxrate', '2500k', '-bufsize', '5000k',
    '-c:a', 'aac', '-b:a', '128k', '-ar', '48000',
    '-flvflags', 'no_duration_filesize', '-f', 'flv', url);
  return spawnFfmpeg(args, workDir);
}

/**
 * Publishes `file` in a loop (`-stream_loop -1`), copied as it is (`-c copy`,
 * no encoding: almost no CPU), live (`-re`), as FLV over RTMP, until stopped:
 * a long-running stream that costs the machine nothing.
 */
export function publishLoop(url, workDir, file) {
  const args = ['-hide_banner', '-nostdin', '-loglevel', 'warning',
    '-re', '-stream_loop', '-1', '-i', file, '-c', 'copy',
    '-flvflags', 'no_duration_filesize', '-f', 'flv', url];
  return spawnFfmpeg(args, workDir);
}

/** Waits (bounded) until the stream's manifest answers 200. */
export async function waitForStream(vela, key, pub, manifest = 'master.m3u8') {
  const url = `${vela.streamBase(key)}/${manifest}`;
  await poll(`${url} to answer 200`, 150, 200, async () => {
    if (pub && pub.exited) {
      throw new Error(`ffmpeg exited (${pub.exitCode_ ?? pub.exitSignal_})\n--- ffmpeg log ---\n${pub.logTail()}\n--- vela log ---\n${vela.logTail()}`);
    }
    const r = await get(url, 3000);
    return r.status === 200;
  }, async () => `--- vela log ---\n${vela.logTail()}\n--- ffmpeg log ---\n${pub ? pub.logTail() : ''}`);
}

// ---------------------------------------------------------------------------
// Chromium
// ---------------------------------------------------------------------------

export const CHROMIUM = process.env.VELA_CHROMIUM || '/usr/bin/chromium';

/**
 * `quicOrigins`: HOST:PORT origins that Chromium reaches over HTTP/3 (QUIC)
 * from the first request (`--origin-to-force-quic-on`), and `spkiPins`: the
 * base64 SHA-256 SPKI hashes of certificates it accepts without a CA (Vela's
 * self-signed one). Without them QUIC is off, as in the other player tests.
 * `extraArgs`: more Chromium flags (e.g. fake media devices for WHIP).
 */
export async function launchChromium({ quicOrigins = [], spkiPins = [], extraArgs = [] } = {}) {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} does not exist: run scripts/setup (installs Debian's chromium)`);
  }
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (e) {
    throw new Error(`playwright-core is not installed: run scripts/setup (npm ci in tests/players): ${e.message}`);
  }
  // playwright-core launches with a fresh temporary --user-data-dir of its
  // own and removes it on close.
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 60_000,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      ...(quicOrigins.length ? [`--origin-to-force-quic-on=${quicOrigins.join(',')}`] : ['--disable-quic']),
      ...(spkiPins.length ? [`--ignore-certificate-errors-spki-list=${spkiPins.join(',')}`] : []),
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--autoplay-policy=no-user-gesture-required',
      '--mute-audio',
      // A page in a background tab or an occluded window must not have its
      // timers throttled: the stall measurement polls every 100 ms.
      '--disable-background-timer-throttling',
      '--disable-renderer-backgrounding',
      '--disable-backgrounding-occluded-windows',
      ...extraArgs,
    ],
  });
}

/** Checks whether Debian's chromium can decode what Vela sends. */
export function chromiumVersion() {
  const r = spawnSync(CHROMIUM, ['--version'], { encoding: 'utf8', timeout: 20_000 });
  return (r.stdout || '').trim();
}

// ---------------------------------------------------------------------------
// Playback checks shared by the player suites
// ---------------------------------------------------------------------------

export function median(xs) {
  const v = xs.filter((x) => typeof x === 'number').sort((a, b) => a - b);
  if (!v.length) return null;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

export function fmt(x) {
  return x == null ? '   –  ' : `${x.toFixed(2)} s`;
}

/** Latency figures from a pane's samples after the first 5 s of playback. */
export function latencySummary(s) {
  const settled = s.latency.filter((x) => x.t >= 5);
  const use = settled.length >= 4 ? settled : s.latency;
  const rep = use.map((x) => x.reported).filter((x) => x != null);
  const der = use.map((x) => x.derived).filter((x) => x != null);
  return {
    reported_median: median(rep),
    reported_min: rep.length ? Math.min(...rep) : null,
    reported_max: rep.length ? Math.max(...rep) : null,
    derived_median: median(der),
    samples: use.length,
  };
}

/**
 * A suite's `watch(c, what, tries, done, { allowStalls })`: polls the pane
 * every `pollMs` until `done(snapshot)`, failing (with `diagnostics(c, s)`)
 * on a fatal player error, on a stall over `stallLimitS` unless stalls are
 * allowed, where they are on playback stuck for `resumeLimitS`, and when the
 * tries run out.
 */
export function makeWatch({ diagnostics, stallLimitS, pollMs, resumeLimitS = Infinity }) {
  return async function watch(c, what, tries, done, { allowStalls = false } = {}) {
    let s;
    for (let i = 0; i < tries; i++) {
      s = await c.snap();
      if (s.fatal.length) {
        assert.fail(`${c.spec}: fatal player error while waiting for ${what}: ${s.fatal.join(' | ')}\n${await diagnostics(c, s)}`);
      }
      if (!allowStalls) {
        const worst = Math.max(s.maxStall, s.ongoingStall || 0, s.maxFreeze);
        if (worst > stallLimitS) {
          assert.fail(`${c.spec}: stall of ${worst.toFixed(3)} s (limit ${stallLimitS} s) while waiting for ${what}; stalls ${JSON.stringify(s.stalls)} freezes ${JSON.stringify(s.freezes)}\n${await diagnostics(c, s)}`);
        }
      }
      if (allowStalls && s.playing && s.frozenFor > resumeLimitS && !s.ended && !s.endedEvent) {
        assert.fail(`${c.spec}: playback stopped for ${s.frozenFor.toFixed(1)} s at currentTime ${s.currentTime.toFixed(3)} (buffered to ${s.bufferedEnd}) while waiting for ${what}\n${await diagnostics(c, s)}`);
      }
      if (done(s)) return s;
      await sleep(pollMs);
    }
    assert.fail(`${c.spec}: gave up waiting for ${what} after ${tries} polls ${pollMs} ms apart\n${await diagnostics(c, s)}`);
  };
}

/**
 * Prints a suite's table under `title` and writes `{ at, ...extra, results }`
 * as JSON to `out`. The columns are latency medians, stalls and errors, or
 * `columns`: `[header, width, (result) => text]` after the case name.
 */
export function reportResults(title, results, out, extra = {}, columns = null) {
  if (!results.length) return;
  console.log(title);
  if (columns) {
    console.log(['case'.padEnd(38), ...columns.map(([h, w]) => h.padStart(w))].join(' '));
    for (const r of results) {
      console.log([r.case.padEnd(38), ...columns.map(([, w, f]) => String(f(r)).padStart(w))].join(' '));
    }
  } else {
    console.log('case                                   reported   derived    stalls  errors(fatal/other)');
    for (const r of results) {
      console.log(`${r.case.padEnd(38)} ${fmt(r.reported_median)}  ${fmt(r.derived_median)}  ${String(r.stalls).padStart(4)}    ${r.fatal_errors}/${r.nonfatal_errors}`);
    }
  }
  try {
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.writeFileSync(out, JSON.stringify({ at: new Date().toISOString(), ...extra, results }, null, 1));
    console.log(`results written to ${out}`);
  } catch (e) {
    console.log(`cannot write ${out}: ${e.message}`);
  }
}

// ---------------------------------------------------------------------------
// Stored media (VOD): a source file, the control plane API, the upload
// ---------------------------------------------------------------------------

/**
 * Makes an MP4 with ffmpeg (Debian's 5.1; VELA_FFMPEG overrides): lavfi
 * testsrc2 and one sine per entry of `languages` (an audio stream each,
 * tagged with that language), x264 with B-frames (`-bf 3`) and a closed GOP of
 * `gop` frames, AAC, the moov box at the end (ffmpeg's default, no faststart).
 * Returns the file's path; fails with ffmpeg's output.
 */
export function makeSourceMp4(workDir, name, {
  seconds = 60, size = '640x360', fps = 25, gop = 50, languages = ['eng'],
} = {}) {
  const out = path.join(workDir, `${name}.mp4`);
  const args = ['-hide_banner', '-nostdin', '-loglevel', 'error', '-y',
    '-f', 'lavfi', '-i', `testsrc2=size=${size}:rate=${fps}`];
  languages.forEach((_, i) => args.push('-f', 'lavfi', '-i', `sine=frequency=${440 + 220 * i}:sample_rate=48000`));
  args.push('-t', String(seconds), '-map', '0:v');
  languages.forEach((_, i) => args.push('-map', `${i + 1}:a`));
  args.push('-c:v', 'libx264', '-preset', 'veryfast', '-profile:v', 'high', '-pix_fmt', 'yuv420p',
    '-bf', '3', '-g', String(gop), '-keyint_min', String(gop), '-sc_threshold', '0', '-b:v', '800k',
    '-c:a', 'aac', '-b:a', '96k', '-ar', '48000', '-ac', '2');
  languages.forEach((lang, i) => args.push(`-metadata:s:a:${i}`, `language=${lang}`));
  args.push(out);
  fs.writeFileSync(path.join(workDir, `${name}.cmd`), `ffmpeg ${args.join(' ')}\n`);
  const r = spawnSync(process.env.VELA_FFMPEG || 'ffmpeg', args, { encoding: 'utf8', timeout: 180_000 });
  if (r.status !== 0) {
    throw new Error(`ffmpeg could not make ${out} (${r.status ?? r.signal ?? r.error}):\n${r.stderr}`);
  }
  return out;
}

/** The duration (s) ffprobe gives for a file's container. */
export function probeDuration(file) {
  const r = spawnSync(process.env.VELA_FFPROBE || 'ffprobe',
    ['-v', 'error', '-show_entries', 'format=duration', '-of', 'default=nw=1:nk=1', file],
    { encoding: 'utf8', timeout: 30_000 });
  const d = Number((r.stdout || '').trim());
  if (r.status !== 0 || !isFinite(d)) throw new Error(`ffprobe ${file}: ${r.status} ${r.stderr}`);
  return d;
}

/**
 * The control plane API of a running vela (`/api/v1`), as the admin of
 * partner 1 (the secret vela writes to DATA/admin-secret).
 */
export class Api {
  constructor(vela) {
    this.vela = vela;
    this.token = null;
  }

  /** `method path` with a JSON body or raw bytes; fails unless 2xx. */
  async call(method, p, { json, body, contentType, auth = true } = {}) {
    const headers = {};
    if (auth) headers.authorization = `Bearer ${await this.adminToken()}`;
    if (json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(json);
    } else if (contentType) {
      headers['content-type'] = contentType;
    }
    const r = await fetch(`${this.vela.http}/api/v1${p}`, { method, headers, body });
    const text = await r.text();
    let j = null;
    try {
      j = text ? JSON.parse(text) : null;
    } catch (_) { /* not JSON: reported below */ }
    assert.ok(r.status >= 200 && r.status < 300, `${method} /api/v1${p} answered ${r.status}: ${text.slice(0, 500)}`);
    return j;
  }

  async adminToken() {
    if (!this.token) {
      const secret = fs.readFileSync(path.join(this.vela.data, 'admin-secret'), 'utf8').trim();
      const s = await this.call('POST', '/sessions',
        { json: { partner_id: 1, secret, role: 'admin', expiry_s: 3600 }, auth: false });
      this.token = s.token;
    }
    return this.token;
  }

  /**
   * Creates a media entry, uploads `file` as its content and waits (bounded)
   * until the entry is `ready`; fails on `error` with its reason. Returns the
   * entry.
   */
  async uploadMedia(name, file) {
    const entry = await this.call('POST', '/entries', { json: { type: 'media', name } });
    assert.equal(entry.status, 'pending', `a new media entry: ${JSON.stringify(entry)}`);
    await this.call('PUT', `/entries/${entry.id}/content`, { body: fs.readFileSync(file), contentType: 'video/mp4' });
    let last = null;
    await poll(`entry ${entry.id} to be ready`, 300, 200, async () => {
      last = await this.call('GET', `/entries/${entry.id}`);
      if (last.status === 'error') throw new Error(`entry ${entry.id} went to error: ${JSON.stringify(last)}\n--- vela log ---\n${this.vela.logTail()}`);
      return last.status === 'ready';
    }, async () => `last: ${JSON.stringify(last)}\n--- vela log ---\n${this.vela.logTail()}`);
    return last;
  }
}

// ---------------------------------------------------------------------------
// A player page in Chromium, with the requests it makes to vela
// ---------------------------------------------------------------------------

/**
 * Opens index.html with one pane: `spec` ("player:format") on the manifest
 * under `base` (…/live/STREAM or …/vod/ENTRY), `params` added to the page's
 * query (e.g. `{ vod: 1 }`). Records the browser's console and the pane's
 * requests to `velaHttp` (`requests`, `httpErrors` for >= 400 and failures).
 * The returned pane has `snap()` (its stats), `evaluate(f, arg)` and `close()`.
 */
export async function openPlayerPage(browser, staticUrl, { spec, base, velaHttp, params = {} }) {
  const c = { spec, base, console: [], requests: [], httpErrors: [] };
  c.page = await browser.newPage();
  c.page.on('console', (m) => {
    c.console.push(`${m.type()}: ${m.text().slice(0, 500)}`);
    if (c.console.length > 500) c.console.splice(0, 100);
  });
  c.page.on('pageerror', (e) => c.console.push(`pageerror: ${e.message}`));
  c.page.on('response', (r) => {
    const url = r.url();
    if (!velaHttp || !url.startsWith(velaHttp)) return;
    const e = { method: r.request().method(), path: url.slice(velaHttp.length), status: r.status() };
    if (c.requests.length < 5000) c.requests.push(e);
    if (e.status >= 400 && c.httpErrors.length < 50) c.httpErrors.push(e);
  });
  c.page.on('requestfailed', (r) => {
    if (velaHttp && r.url().startsWith(velaHttp) && c.httpErrors.length < 50) {
      c.httpErrors.push({ method: r.method(), path: r.url().slice(velaHttp.length), status: 0, failure: r.failure() && r.failure().errorText });
    }
  });
  const q = new URLSearchParams({ hideform: '1', stream: base, panes: spec, ...params });
  const url = `${staticUrl}/index.html?${q}`;
  await c.page.goto(url, { waitUntil: 'load', timeout: 30_000 });
  const n = await c.page.evaluate(() => (window.vela ? window.vela.panes.length : 0));
  assert.equal(n, 1, `the player page did not start its pane (${url})\n${c.console.join('\n')}`);
  c.snap = async () => (await c.page.evaluate(() => window.vela.snapshot()))[0];
  c.evaluate = (f, arg) => c.page.evaluate(f, arg);
  c.close = async () => {
    try {
      await c.page.evaluate(() => window.vela && window.vela.stop());
    } catch (_) { /* page gone */ }
    await c.page.close().catch(() => {});
  };
  return c;
}

/**
 * What to print when a pane's case fails: the player's state and events,
 * the browser's console, the failed and last requests to vela, `urls`
 * fetched again (manifests), and `logs` ({ name: text }).
 */
export async function paneDiagnostics(c, s, { urls = [], logs = {} } = {}) {
  const parts = [];
  if (s) {
    parts.push(`--- player state ---\n${JSON.stringify({ ...s, events: undefined, latency: (s.latency || []).slice(-6), nonFatal: (s.nonFatal || []).slice(-10) }, null, 1)}`);
    parts.push(`--- player events (last 60) ---\n${(s.events || []).slice(-60).join('\n')}`);
  }
  if (c.console.length) parts.push(`--- browser console (last 40) ---\n${c.console.slice(-40).join('\n')}`);
  if (c.httpErrors.length) parts.push(`--- failed requests to vela ---\n${c.httpErrors.map((e) => JSON.stringify(e)).join('\n')}`);
  if (c.requests.length) parts.push(`--- requests to vela (last 30) ---\n${c.requests.slice(-30).map((e) => `${e.status} ${e.method} ${e.path}`).join('\n')}`);
  for (const u of urls) {
    const r = await get(u, 3000);
    parts.push(`--- GET ${u} -> ${r.status} ${r.error || ''} ---\n${r.text.slice(0, 4000)}`);
  }
  for (const [name, text] of Object.entries(logs)) parts.push(`--- ${name} ---\n${text}`);
  return parts.join('\n');
}
