// Players over HTTP/3: hls.js (LL-HLS, blocking playlist reloads), dash.js
// (LL-DASH, chunked parts) and Shaka Player (DASH) in headless Chromium fetch a live stream from
// vela's QUIC listener (`--h3`), with vela's self-signed certificate pinned
// by the SPKI hash that vela logs at start-up, as an operator would pin it.
//
//   node --test tests/players/h3.test.mjs   (scripts/test runs it)
//
// Chromium is told to use QUIC for vela's origin from the first request
// (`--origin-to-force-quic-on`): without it, a browser first reaches an
// origin over TCP and moves to HTTP/3 after an `Alt-Svc` answer, which the
// HTTPS test (tests/https_e2e.rs) checks. Every response vela sends to the
// page is checked, through the DevTools protocol, to have come over `h3`.
//
// Needs target/release/vela, ffmpeg (Debian's 5.1), /usr/bin/chromium and
// `npm ci` in tests/players (scripts/setup).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';

import {
  Vela, chromiumVersion, launchChromium, makeWatch, makeWorkDir, openPlayerPage, paneDiagnostics,
  publish, startStaticServer, stopGroup, velaBinary, waitForStream,
} from './lib.mjs';

const MIN_MEDIA_S = 15;
const STALL_LIMIT_S = 0.5;
const POLL_MS = 250;

let ctx = null;

before(async () => {
  const workDir = makeWorkDir('h3');
  ctx = { workDir };
  velaBinary();
  console.log(`work dir ${workDir}; ${chromiumVersion()}`);
  ctx.static = await startStaticServer();
  ctx.vela = await Vela.start(workDir, { h3: true });
  const spki = ctx.vela.spkiSha256();
  assert.ok(spki, `vela logged no spki_sha256 at start\n${ctx.vela.logTail()}`);
  ctx.browser = await launchChromium({ quicOrigins: [`127.0.0.1:${ctx.vela.h3Port}`], spkiPins: [spki] });
  ctx.pub = publish(ctx.vela.rtmpUrl('h3'), workDir);
  await waitForStream(ctx.vela, 'h3', ctx.pub);
});

after(async () => {
  if (ctx) {
    if (ctx.browser) await ctx.browser.close().catch(() => {});
    if (ctx.pub) await stopGroup(ctx.pub);
    if (ctx.vela) await ctx.vela.stop();
    if (ctx.static) ctx.static.close();
    if (ctx.workDir && !process.env.VELA_KEEP_TMP) fs.rmSync(ctx.workDir, { recursive: true, force: true });
  }
});

/**
 * Plays `spec` from vela's HTTP/3 origin for MIN_MEDIA_S of media with no
 * stall over the limit, and returns the protocols of vela's responses.
 */
async function playOverH3(spec) {
  const base = `${ctx.vela.h3}/live/h3`;
  const c = await openPlayerPage(ctx.browser, ctx.static.url, { spec, base, velaHttp: ctx.vela.h3 });
  // Response protocols as Chromium's network stack saw them ("h3", "h2",
  // "http/1.1"): the Resource Timing API hides them from a cross-origin page.
  const protocols = new Map();
  const cdp = await c.page.context().newCDPSession(c.page);
  cdp.on('Network.responseReceived', ({ response }) => {
    if (!response.url.startsWith(ctx.vela.h3)) return;
    protocols.set(response.protocol, (protocols.get(response.protocol) || 0) + 1);
  });
  await cdp.send('Network.enable');
  const diagnostics = async (_c, s) => paneDiagnostics(c, s, { logs: { vela: ctx.vela.logTail(5000) } });
  const watch = makeWatch({ diagnostics, stallLimitS: STALL_LIMIT_S, pollMs: POLL_MS });
  try {
    await watch(c, 'playback to start', 160, (s) => s.playing && s.currentTime > 0);
    const s = await watch(c, `${MIN_MEDIA_S} s of media`, 4 * (MIN_MEDIA_S * 3 + 30), (s) => s.mediaPlayed >= MIN_MEDIA_S);
    assert.equal(s.fatal.length, 0, `${spec}: fatal player errors ${JSON.stringify(s.fatal)}`);
    assert.deepEqual(c.httpErrors, [], `${spec}: failed requests to vela over HTTP/3`);
    const seen = Object.fromEntries(protocols);
    console.log(`${spec} over HTTP/3: media ${s.mediaPlayed.toFixed(1)} s, stalls ${s.stalls.length}, responses by protocol ${JSON.stringify(seen)}`);
    return seen;
  } finally {
    await cdp.detach().catch(() => {});
    await c.close();
  }
}

describe('players over HTTP/3', { concurrency: 1 }, () => {
  test('hls.js plays LL-HLS over HTTP/3 (every response h3)', { timeout: 240_000 }, async () => {
    const seen = await playOverH3('hlsjs:hls');
    assert.ok((seen.h3 || 0) >= 10, `fewer than 10 responses over h3: ${JSON.stringify(seen)}`);
    assert.deepEqual(Object.keys(seen), ['h3'], `responses over other protocols: ${JSON.stringify(seen)}`);
  });

  test('dash.js plays LL-DASH over HTTP/3 (every response h3)', { timeout: 240_000 }, async () => {
    const seen = await playOverH3('dashjs:dash');
    assert.ok((seen.h3 || 0) >= 10, `fewer than 10 responses over h3: ${JSON.stringify(seen)}`);
    assert.deepEqual(Object.keys(seen), ['h3'], `responses over other protocols: ${JSON.stringify(seen)}`);
  });

  test('Shaka Player plays DASH over HTTP/3 (every response h3)', { timeout: 240_000 }, async () => {
    const seen = await playOverH3('shaka:dash');
    assert.ok((seen.h3 || 0) >= 10, `fewer than 10 responses over h3: ${JSON.stringify(seen)}`);
    assert.deepEqual(Object.keys(seen), ['h3'], `responses over other protocols: ${JSON.stringify(seen)}`);
  });
});
