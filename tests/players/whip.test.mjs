// WHIP ingest and WHEP playback end to end: headless Chromium publishes its fake camera over
// WebRTC from a page (RTCPeerConnection + fetch, tests/players/whip.html),
// Vela turns it into a live stream, and ffprobe and hls.js read the LL-HLS
// output, and a second page plays it back over WHEP; WHEP also plays an
// RTMP (ffmpeg, no B-frames) source. Also: the WHIP resource's HTTP surface (201, Location, ETag,
// CORS, trickle PATCH preconditions, DELETE), refusals, and the metrics.
//
//   node --test tests/players/whip.test.mjs   (not in scripts/test yet: its LL-HLS case fails, see docs/webrtc.md)
//
// Needs target/release/vela, ffprobe, /usr/bin/chromium and `npm ci` in
// tests/players (scripts/setup). Waits are bounded polls; no wall-clock
// duration is asserted.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';

import {
  Vela, get, launchChromium, makeWatch, makeWorkDir, openPlayerPage, paneDiagnostics, poll, publish,
  startStaticServer, stopGroup, waitForStream,
} from './lib.mjs';

const MIN_MEDIA_S = Number(process.env.VELA_WHIP_MEDIA_S || 8);
const POLL_MS = 250;

let ctx = null;

before(async () => {
  const workDir = makeWorkDir('whip');
  const vela = await Vela.start(workDir);
  const stat = await startStaticServer();
  const browser = await launchChromium({
    extraArgs: [
      '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream',
      // The server's host candidate is 127.0.0.1 (the only address a test may use).
      '--allow-loopback-in-peer-connection',
    ],
  });
  ctx = { workDir, vela, static: stat, browser };
});

after(async () => {
  if (!ctx) return;
  await ctx.browser.close().catch(() => {});
  ctx.static.close();
  await stopGroup(ctx.vela.child);
});

async function publisherPage() {
  const page = await ctx.browser.newPage();
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text().slice(0, 300)}`));
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
  await page.goto(`${ctx.static.url}/whip.html`, { waitUntil: 'load', timeout: 30_000 });
  page.consoleLines = consoleLines;
  return page;
}

async function metric(name) {
  const r = await get(`${ctx.vela.http}/metrics`);
  const line = r.text.split('\n').find((l) => l.startsWith(name));
  return line ? Number(line.split(' ').pop()) : 0;
}

/** Opens whep.html, plays `stream` over WHEP until `frames` pictures are decoded. */
async function whepPlays(stream, frames, diag) {
  const page = await ctx.browser.newPage();
  const lines = [];
  page.on('console', (m) => lines.push(`${m.type()}: ${m.text().slice(0, 300)}`));
  await page.goto(`${ctx.static.url}/whep.html`, { waitUntil: 'load', timeout: 30_000 });
  const res = await page.evaluate((url) => window.whep.play(url), `${ctx.vela.http}/whep/${stream}`);
  assert.equal(res.status, 201, `WHEP POST answered ${res.status}: ${res.body}`);
  assert.match(res.location || '', /^\/whep\/session\/[0-9a-f]{32}$/);
  const more = async () => `--- WHEP viewer ---\n${JSON.stringify(await page.evaluate(() => window.whep.state()))}\n${lines.slice(-20).join('\n')}\n${await diag()}`;
  const st = await poll(`${frames} WHEP frames decoded`, 160, POLL_MS, async () => {
    const s = await page.evaluate(() => window.whep.state());
    return s && s.framesDecoded >= frames && s.width > 0 ? s : null;
  }, more);
  assert.equal(await page.evaluate(() => window.whep.stop()), 200);
  await page.close();
  return st;
}

function ffprobe(url) {
  const r = spawnSync('ffprobe', ['-v', 'error', '-rw_timeout', '10000000', '-print_format', 'json',
    '-show_streams', url], { encoding: 'utf8', timeout: 60_000 });
  try {
    return JSON.parse(r.stdout).streams || [];
  } catch (_) {
    throw new Error(`ffprobe ${url} failed: ${r.stderr}`);
  }
}

describe('WHIP ingest', () => {
  test('refusals cost only the request', async () => {
    const whip = `${ctx.vela.http}/whip`;
    let r = await fetch(whip, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: 'v=0\r\n' });
    assert.equal(r.status, 401, 'POST /whip without a bearer key');
    assert.match(r.headers.get('www-authenticate') || '', /Bearer/);
    assert.equal((await r.json()).error.code, 'unauthorized');
    r = await fetch(`${whip}/k1`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' });
    assert.equal(r.status, 415);
    r = await fetch(`${whip}/a%2Fb`, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: 'v=0\r\n' });
    assert.equal(r.status, 401, 'an invalid open-mode key');
    r = await fetch(`${whip}/k1`, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: 'not sdp at all' });
    assert.equal(r.status, 400);
    assert.equal((await r.json()).error.code, 'bad_sdp');
    // The malformed offer claimed nothing: the key is free again.
    r = await fetch(`${ctx.vela.http}/whip/session/0123`, { method: 'DELETE' });
    assert.equal(r.status, 404);
    r = await fetch(whip, { method: 'OPTIONS', headers: { origin: 'http://example.test', 'access-control-request-method': 'POST' } });
    assert.ok(r.status === 204 || r.status === 200, `OPTIONS ${r.status}`);
    assert.match(r.headers.get('access-control-allow-headers') || '', /authorization/);
    assert.match(r.headers.get('access-control-allow-headers') || '', /if-match/);
  });

  test('Chromium publishes H.264 over WHIP; ffprobe and hls.js read the LL-HLS output', async () => {
    const key = 'whip-chromium';
    const page = await publisherPage();
    const diag = async (extra = '') => [
      `--- publisher state ---\n${JSON.stringify(await page.evaluate(() => window.whip.state()).catch((e) => String(e)))}`,
      `--- publisher console ---\n${page.consoleLines.slice(-30).join('\n')}`,
      `--- vela log ---\n${ctx.vela.logTail(6000)}`,
      extra,
    ].join('\n');

    // Bearer form of the endpoint, from a page on another origin (CORS).
    const res = await page.evaluate(([url, token]) => window.whip.publish(url, { token }), [`${ctx.vela.http}/whip`, key]);
    assert.equal(res.status, 201, `WHIP POST answered ${res.status}: ${res.body}\n${await diag()}`);
    assert.match(res.contentType || '', /application\/sdp/);
    assert.match(res.location || '', /^\/whip\/session\/[0-9a-f]{32}$/);
    assert.match(res.etag || '', /^".+"$/);

    await poll('the peer connection to connect', 120, POLL_MS, async () => {
      const s = await page.evaluate(() => window.whip.state());
      if (s && s.connection === 'failed') throw new Error(`connection failed\n${await diag()}`);
      return s && s.connection === 'connected';
    }, diag);
    const base = ctx.vela.streamBase(key);
    await poll(`${base}/master.m3u8`, 160, POLL_MS, async () => (await get(`${base}/master.m3u8`)).status === 200, diag);

    const streams = ffprobe(`${base}/master.m3u8`);
    const video = streams.find((s) => s.codec_type === 'video');
    assert.ok(video, `no video stream in ${JSON.stringify(streams)}`);
    assert.equal(video.codec_name, 'h264');
    assert.equal(video.width, 640);
    assert.equal(video.height, 360);

    // Keyframes at the segment cadence: Vela asks (PLI), so segments stay
    // near the 2 s target though Chromium would send an IDR far less often.
    const mediaPlaylist = `${base}/v1/index.m3u8`;
    const durations = await poll('three complete segments', 120, POLL_MS, async () => {
      const r = await get(mediaPlaylist);
      const d = [...r.text.matchAll(/#EXTINF:([\d.]+)/g)].map((m) => Number(m[1]));
      return d.length >= 3 ? d : null;
    }, diag);
    for (const d of durations) assert.ok(d >= 1.7 && d <= 2.6, `segment of ${d} s in ${JSON.stringify(durations)}`);
    const st = await page.evaluate(() => window.whip.state());
    assert.ok(st.pliCount > 0, `no keyframe request reached the publisher: ${JSON.stringify(st)}`);

    // hls.js plays it.
    const c = await openPlayerPage(ctx.browser, ctx.static.url, { spec: 'hlsjs:hls', base, velaHttp: ctx.vela.http });
    try {
      const watch = makeWatch({
        diagnostics: async (cc, s) => paneDiagnostics(cc, s, { urls: [mediaPlaylist], logs: { vela: ctx.vela.logTail(4000) } }),
        stallLimitS: 5,
        pollMs: POLL_MS,
      });
      const s = await watch(c, `${MIN_MEDIA_S} s of media`, 4 * (MIN_MEDIA_S * 4 + 40), (snap) => snap.mediaPlayed >= MIN_MEDIA_S);
      assert.equal(s.fatal.length, 0, `hls.js fatal errors: ${s.fatal.join(' | ')}`);
      console.log(`WHIP -> LL-HLS: hls.js played ${s.mediaPlayed.toFixed(1)} s; segments ${JSON.stringify(durations)}; publisher ${JSON.stringify(st)}`);
    } finally {
      await c.close();
    }

    // WHEP plays the WHIP stream back.
    const viewer = await whepPlays(key, 60, diag);
    assert.equal(viewer.width, 640);
    console.log(`WHIP -> WHEP: ${JSON.stringify(viewer)}`);

    // Trickle PATCH: a stale ETag is a failed precondition; an ICE restart is not supported.
    const resource = new URL(res.location, ctx.vela.http).href;
    let r = await fetch(resource, { method: 'PATCH', headers: { 'content-type': 'application/trickle-ice-sdpfrag', 'if-match': '"stale"' }, body: 'a=ice-ufrag:x\r\n' });
    assert.equal(r.status, 412);
    r = await fetch(resource, { method: 'PATCH', headers: { 'content-type': 'application/trickle-ice-sdpfrag', 'if-match': '*' }, body: 'a=ice-ufrag:x\r\na=ice-pwd:yyyyyyyyyyyyyyyyyyyyyy\r\n' });
    assert.equal(r.status, 422);
    r = await fetch(resource, { method: 'PATCH', headers: { 'content-type': 'application/trickle-ice-sdpfrag', 'if-match': res.etag }, body: 'a=candidate:1 1 udp 2122260223 127.0.0.1 9 typ host\r\n' });
    assert.equal(r.status, 204);
    // A second publisher on the live key is refused.
    r = await fetch(`${ctx.vela.http}/whip/${key}`, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: 'v=0\r\n' });
    assert.equal(r.status, 403);

    // DELETE ends the publish cleanly: the playlist ends.
    const ended = await metric('vela_webrtc_sessions_ended_total{cause="delete"}');
    assert.equal(await page.evaluate(() => window.whip.stop()), 200);
    await poll('EXT-X-ENDLIST after DELETE', 80, POLL_MS, async () => (await get(mediaPlaylist)).text.includes('#EXT-X-ENDLIST'), diag);
    assert.equal(await metric('vela_webrtc_sessions_ended_total{cause="delete"}'), ended + 1);
    assert.equal(await metric('vela_webrtc_sessions{state="connected"}'), 0);
    await page.close();
  });
});

describe('WHEP playback', () => {
  test('Chromium plays an RTMP (ffmpeg, no B-frames) stream over WHEP', async () => {
    const key = 'whep-rtmp';
    const pub = publish(ctx.vela.rtmpUrl(key), ctx.workDir);
    try {
      await waitForStream(ctx.vela, key, pub);
      const diag = async () => `--- vela log ---\n${ctx.vela.logTail(5000)}\n--- ffmpeg ---\n${pub.logTail()}`;
      const viewer = await whepPlays(key, 60, diag);
      assert.equal(viewer.width, 1280);
      assert.equal(viewer.height, 720);
      console.log(`RTMP -> WHEP: ${JSON.stringify(viewer)}`);
    } finally {
      await stopGroup(pub);
    }
    const r = await fetch(`${ctx.vela.http}/whep/nothing-here`, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: 'v=0\r\n' });
    assert.equal(r.status, 404);
  });
});
