// Encrypted playback in real players: a `vela serve --config` with a `[drm]`
// section, a live ffmpeg publisher, and hls.js, dash.js and Shaka Player in
// the system's headless Chromium (EME with Chromium's ClearKey CDM).
//
//   node --test --test-concurrency=1 tests/players/drm.test.mjs   (scripts/test runs it)
//
// Cases:
// - hls.js plays AES-128 HLS: it fetches the key from the playlist's key URI
//   (`/drm/keys/KID`) itself, across key rotations (`rotate_every = 2`);
// - with rotation, the DASH cases play across a Period per key period (a
//   licence request for each new key) and Shaka's SAMPLE-AES HLS across new
//   EXT-X-KEY/EXT-X-MAP pairs;
// - Shaka Player and dash.js play CENC DASH with ClearKey, and Shaka plays
//   cbcs DASH (a second vela with `dash = "cbcs"`; dash.js too): the players find the
//   licence server in the MPD's `dashif:Laurl` (no licence URL is configured
//   in the page) and POST to `/drm/clearkey/license`; Shaka also plays the
//   SAMPLE-AES HLS (cbcs, KEYFORMAT="identity") of the second vela;
// - with zero keys given to the browser instead of Vela's, hls.js and Shaka
//   fail (the checks can fail).
//
// Each case asserts playback as players.test.mjs does (at least
// VELA_DRM_MEDIA_S = 10 s of media with currentTime advancing, no fatal
// player error, no stall over 0.5 s), and that encryption was really in the
// path: encrypted segment names requested, the key or licence fetched with
// 200, the ClearKey key system selected, `encrypted` events on the video
// element, video frames decoded. Non-fatal player errors are recorded and
// printed. Latency is printed, not asserted. Frames are not compared with the
// source here: with EME the video cannot be read back into a canvas (it is
// blank); tests/drm_e2e.rs checks the decrypted frames with ffmpeg.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  ROOT, Vela, chromiumVersion, fmt, get, latencySummary, launchChromium, makeWatch, makeWorkDir,
  poll, publish, reportResults, sleep, startStaticServer, stopGroup, velaBinary, waitForStream,
} from './lib.mjs';

const MIN_MEDIA_S = Number(process.env.VELA_DRM_MEDIA_S || 10);
const STALL_LIMIT_S = 0.5;
const POLL_MS = 250;
const START_TRIES = 160; // 40 s
const PLAY_TRIES = 4 * (MIN_MEDIA_S * 3 + 30);
const CLEARKEY = 'org.w3.clearkey';

const results = [];
const g = { workDirs: [] }; // static server, browser, EME support

// ---------------------------------------------------------------------------
// A vela with a [drm] configuration and one publisher
// ---------------------------------------------------------------------------

/** A playback token for `stream` from the control plane API (admin session). */
async function playbackToken(vela, stream) {
  const secret = fs.readFileSync(path.join(vela.data, 'admin-secret'), 'utf8').trim();
  const post = async (p, body, bearer) => {
    const r = await fetch(`${vela.http}${p}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(bearer ? { authorization: `Bearer ${bearer}` } : {}) },
      body: JSON.stringify(body),
    });
    const j = await r.json();
    assert.equal(r.status, 200, `POST ${p}: ${JSON.stringify(j)}`);
    return j;
  };
  const session = await post('/api/v1/sessions', { partner_id: 1, secret, role: 'admin' });
  return (await post('/api/v1/playback-tokens', { stream, expiry_s: 3600 }, session.token)).token;
}

/** `token`: the stream requires a playback token (`[playback] require_token`). */
async function startServer(label, config, key, { token = false } = {}) {
  const workDir = makeWorkDir(`drm-${label}`);
  g.workDirs.push(workDir);
  const srv = { label, config, key, workDir };
  srv.vela = await Vela.start(workDir, { config });
  srv.token = token ? await playbackToken(srv.vela, key) : null;
  srv.pub = publish(srv.vela.rtmpUrl(key), workDir);
  await waitForStream(srv.vela, key, srv.pub, srv.token ? `master.m3u8?token=${srv.token}` : 'master.m3u8');
  // Join a running stream (two complete segments), as the clear matrix does.
  const media = `${srv.vela.streamBase(key)}/${srv.token ? `t/${srv.token}/` : ''}v1/index.m3u8`;
  await poll('two complete segments', 100, 200,
    async () => ((await get(media)).text.match(/#EXTINF/g) || []).length >= 2,
    async () => `--- vela log ---\n${srv.vela.logTail()}`);
  return srv;
}

async function stopServer(srv) {
  if (!srv) return;
  await stopGroup(srv.pub);
  await srv.vela.stop();
}

// ---------------------------------------------------------------------------
// A player pane, with the requests it makes to vela
// ---------------------------------------------------------------------------

/**
 * `wrongKeys`: the browser gets zero keys instead of Vela's (the ClearKey
 * licence's `k` and the AES-128 key file are rewritten in flight), for the
 * cases that show the checks fail when decryption does.
 */
async function openPane(srv, spec, { wrongKeys = false } = {}) {
  const [, format] = spec.split(':');
  const base = srv.vela.streamBase(srv.key);
  const query = srv.token ? `?token=${srv.token}` : '';
  const c = {
    spec, srv, console: [], requests: [], httpErrors: [],
    manifestUrl: `${base}/${format === 'hls' ? 'master.m3u8' : 'manifest.mpd'}${query}`,
    mediaPlaylist: format === 'hls' ? `${base}/${srv.token ? `t/${srv.token}/` : ''}v1/index.m3u8` : null,
  };
  c.page = await g.browser.newPage();
  c.page.on('console', (m) => {
    c.console.push(`${m.type()}: ${m.text().slice(0, 500)}`);
    if (c.console.length > 500) c.console.splice(0, 100);
  });
  c.page.on('pageerror', (e) => c.console.push(`pageerror: ${e.message}`));
  c.page.on('response', (r) => {
    const url = r.url();
    if (!url.startsWith(srv.vela.http)) return;
    const e = { method: r.request().method(), path: url.slice(srv.vela.http.length), status: r.status() };
    if (c.requests.length < 5000) c.requests.push(e);
    if (e.status >= 400 && c.httpErrors.length < 50) c.httpErrors.push(e);
  });
  c.page.on('requestfailed', (r) => {
    if (r.url().startsWith(srv.vela.http) && c.httpErrors.length < 50) {
      c.httpErrors.push({ method: r.method(), path: r.url().slice(srv.vela.http.length), status: 0, failure: r.failure() && r.failure().errorText });
    }
  });
  if (wrongKeys) {
    await c.page.route(`${srv.vela.http}/drm/clearkey/license`, async (route) => {
      const r = await route.fetch();
      const j = await r.json();
      for (const k of j.keys || []) k.k = 'AAAAAAAAAAAAAAAAAAAAAA';
      await route.fulfill({ response: r, json: j });
    });
    await c.page.route(`${srv.vela.http}/drm/keys/*`, async (route) => {
      const r = await route.fetch();
      await route.fulfill({ response: r, body: Buffer.alloc(16) });
    });
  }
  // With a token the pane gets the whole manifest URL (player:format=URL).
  const pane = srv.token ? `${spec}=${c.manifestUrl}` : spec;
  let url = `${g.static.url}/index.html?hideform=1&stream=${encodeURIComponent(base)}&panes=${encodeURIComponent(pane)}`;
  if (spec.startsWith('dashjs')) {
    const r = await get(c.manifestUrl);
    const m = /availabilityStartTime="([^"]+)"/.exec(r.text);
    if (m) url += `&anchor=${Date.parse(m[1])}`;
  }
  await c.page.goto(url, { waitUntil: 'load', timeout: 30_000 });
  const n = await c.page.evaluate(() => (window.vela ? window.vela.panes.length : 0));
  assert.equal(n, 1, `the player page did not start its pane (${url})\n${c.console.join('\n')}`);
  c.snap = async () => (await c.page.evaluate(() => window.vela.snapshot()))[0];
  c.quality = async () => c.page.evaluate(() => {
    const q = document.querySelector('video').getVideoPlaybackQuality();
    return { total: q.totalVideoFrames, dropped: q.droppedVideoFrames, corrupted: q.corruptedVideoFrames || 0 };
  });
  return c;
}

async function closePane(c) {
  if (!c || !c.page) return;
  try {
    await c.page.evaluate(() => window.vela && window.vela.stop());
  } catch (_) { /* page gone */ }
  await c.page.close().catch(() => {});
}

async function diagnostics(c, s) {
  const parts = [];
  if (s) {
    parts.push(`--- player state ---\n${JSON.stringify({ ...s, events: undefined, latency: s.latency.slice(-6), nonFatal: s.nonFatal.slice(-10) }, null, 1)}`);
    parts.push(`--- player events (last 60) ---\n${s.events.slice(-60).join('\n')}`);
  }
  if (c.console.length) parts.push(`--- browser console (last 40) ---\n${c.console.slice(-40).join('\n')}`);
  if (c.httpErrors.length) parts.push(`--- failed requests to vela ---\n${c.httpErrors.map((e) => JSON.stringify(e)).join('\n')}`);
  parts.push(`--- requests to vela (last 30) ---\n${c.requests.slice(-30).map((e) => `${e.status} ${e.method} ${e.path}`).join('\n')}`);
  for (const u of [c.manifestUrl, c.mediaPlaylist].filter(Boolean)) {
    const r = await get(u, 3000);
    parts.push(`--- GET ${u} -> ${r.status} ${r.error || ''} ---\n${r.text.slice(0, 4000)}`);
  }
  parts.push(`--- vela log (tail) ---\n${c.srv.vela.logTail(5000)}`);
  parts.push(`--- ffmpeg log ---\n${c.srv.pub.logTail()}`);
  return parts.join('\n');
}

const watch = makeWatch({ diagnostics, stallLimitS: STALL_LIMIT_S, pollMs: POLL_MS });

function record(name, c, s, extra = {}) {
  const lat = latencySummary(s);
  const r = {
    case: name,
    pane: c.spec,
    drm: c.srv.config.trim().split('\n').slice(1).join(', '),
    media_played_s: +s.mediaPlayed.toFixed(2),
    stalls: s.stalls.length,
    max_stall_s: +Math.max(s.maxStall, s.maxFreeze).toFixed(3),
    fatal_errors: s.fatal.length,
    nonfatal_errors: s.nonFatalCount || 0,
    nonfatal_samples: [...new Set(s.nonFatal)].slice(0, 5),
    http_errors: c.httpErrors.slice(0, 5),
    key_system: s.keySystem,
    ...lat,
    ...extra,
  };
  results.push(r);
  console.log(`${name}: media ${r.media_played_s} s, stalls ${r.stalls} (max ${r.max_stall_s} s), ` +
    `errors ${r.fatal_errors} fatal / ${r.nonfatal_errors} non-fatal, key system ${r.key_system || '(none: AES-128 in the player)'}, ` +
    `latency reported ${fmt(lat.reported_median)} (min ${fmt(lat.reported_min)}, max ${fmt(lat.reported_max)}), derived ${fmt(lat.derived_median)}`);
  if (r.nonfatal_errors) console.log(`  non-fatal: ${r.nonfatal_samples.join(' | ')}`);
  if (c.httpErrors.length) console.log(`  failed requests to vela: ${c.httpErrors.slice(0, 5).map((e) => `${e.status} ${e.method} ${e.path}`).join(', ')}`);
  return r;
}

/**
 * Plays `spec` on the server's stream and checks playback, then `check(c, s)`
 * (the encryption-specific assertions).
 */
async function drmCase(name, srv, spec, check) {
  const c = await openPane(srv, spec);
  try {
    await watch(c, 'playback to start', START_TRIES, (s) => s.playing);
    const q0 = await c.quality();
    const s = await watch(c, `${MIN_MEDIA_S} s of media`, PLAY_TRIES, (x) => x.mediaPlayed >= MIN_MEDIA_S);
    const q1 = await c.quality();
    assert.ok(s.currentTime > s.startTime, 'currentTime advanced');
    assert.equal(s.fatal.length, 0);
    // Frames were decoded while the media played (a decryption failure is a
    // decode error or no frames at all).
    const decoded = q1.total - q1.dropped - (q0.total - q0.dropped);
    assert.ok(decoded >= MIN_MEDIA_S * 30 * 0.5,
      `${spec}: only ${decoded} video frames decoded (and not dropped) over ${s.mediaPlayed.toFixed(1)} s of media: ${JSON.stringify({ q0, q1 })}\n${await diagnostics(c, s)}`);
    try {
      await check(c, s);
    } catch (e) {
      e.message += `\n${await diagnostics(c, s)}`;
      throw e;
    }
    record(name, c, s, { frames_decoded: decoded, frames_corrupted: q1.corrupted });
  } catch (e) {
    try {
      record(`${name} (FAILED)`, c, await c.snap(), { failure: String(e.message || e).split('\n')[0] });
    } catch (_) { /* page gone */ }
    throw e;
  } finally {
    await closePane(c);
  }
}

const requested = (c, re, status = 200) => c.requests.filter((r) => re.test(r.path) && r.status === status);

function assertEncryptedMedia(c, ext) {
  const media = c.requests.filter((r) => /\/(seg|part)-[^/]*$/.test(r.path));
  const clear = media.filter((r) => !r.path.includes(`.${ext}.m4s`));
  assert.ok(media.length > 0, `${c.spec}: no media segments requested`);
  assert.deepEqual(clear.map((r) => r.path).slice(0, 5), [], `${c.spec}: media other than .${ext}.m4s requested`);
  assert.ok(requested(c, new RegExp(`\\.${ext}\\.m4s$`)).length > 0, `${c.spec}: no .${ext}.m4s answered 200`);
}

/**
 * Keys rotate (`rotate_every`): the MPD has a Period per key period, each
 * with its own key id, and the player asked for a licence more than once
 * while it played across them.
 */
async function assertRotatingLicences(c) {
  const mpd = (await get(c.manifestUrl)).text;
  const periods = (mpd.match(/<Period /g) || []).length;
  const kids = new Set([...mpd.matchAll(/cenc:default_KID="([^"]+)"/g)].map((m) => m[1]));
  assert.ok(periods >= 2 && kids.size >= 4, `${c.spec}: expected a Period per key period with its own key ids, got ${periods} Periods, ${kids.size} key ids`);
  const lic = requested(c, /^\/drm\/clearkey\/license(\?token=[\w.-]+)?$/);
  assert.ok(lic.length >= 2, `${c.spec}: ${lic.length} licence request(s) across key rotations, expected at least 2`);
}

function assertClearKeyLicence(c, s) {
  assert.equal(s.keySystem, CLEARKEY, `${c.spec}: key system`);
  assert.ok(s.encryptedEvents > 0, `${c.spec}: no 'encrypted' event on the video element`);
  const lic = requested(c, /^\/drm\/clearkey\/license(\?token=[\w.-]+)?$/);
  assert.ok(lic.length > 0 && lic.every((r) => r.method === 'POST'),
    `${c.spec}: no ClearKey licence POST answered 200 (requests: ${JSON.stringify(c.requests.filter((r) => r.path.startsWith('/drm/')))})`);
}

/**
 * A DASH player with Chromium's ClearKey CDM on a rotating `scheme` stream:
 * encrypted media, licences POSTed to the endpoint, one per key period.
 */
async function clearKeyDashCase(name, srv, spec, scheme) {
  assert.ok(g.eme[scheme].ok, `Chromium's ClearKey CDM refuses ${scheme}: ${g.eme[scheme].error}`);
  await drmCase(name, srv, spec, async (c, s) => {
    assertEncryptedMedia(c, scheme);
    assertClearKeyLicence(c, s);
    await assertRotatingLicences(c);
  });
}

// ---------------------------------------------------------------------------

before(async () => {
  velaBinary();
  console.log(chromiumVersion());
  g.static = await startStaticServer();
  g.browser = await launchChromium();
  // EME: Chromium's ClearKey CDM, for cenc and cbcs (asked once, reported).
  const page = await g.browser.newPage();
  await page.goto(`${g.static.url}/index.html`);
  g.eme = await page.evaluate(async (ks) => {
    const out = {};
    for (const scheme of ['cenc', 'cbcs']) {
      const cfg = [{
        initDataTypes: ['cenc'],
        videoCapabilities: [{ contentType: 'video/mp4; codecs="avc1.64001f"', encryptionScheme: scheme }],
        audioCapabilities: [{ contentType: 'audio/mp4; codecs="mp4a.40.2"', encryptionScheme: scheme }],
      }];
      try {
        const a = await navigator.requestMediaKeySystemAccess(ks, cfg);
        await a.createMediaKeys();
        out[scheme] = { ok: true, config: a.getConfiguration() };
      } catch (e) {
        out[scheme] = { ok: false, error: `${e.name}: ${e.message}` };
      }
    }
    return out;
  }, CLEARKEY);
  await page.close();
  console.log(`EME ${CLEARKEY}: cenc ${g.eme.cenc.ok ? 'supported' : g.eme.cenc.error}; cbcs ${g.eme.cbcs.ok ? 'supported' : g.eme.cbcs.error}`);
});

after(async () => {
  if (g.browser) await g.browser.close().catch(() => {});
  if (g.static) g.static.close();
  reportResults(
    'Encrypted playback (latency: median after the first 5 s; reported by the player / derived from the manifest clock)',
    results,
    process.env.VELA_DRM_RESULTS || path.join(ROOT, 'target', 'player-tests', 'drm-results.json'),
    { eme: g.eme },
  );
  if (!process.env.VELA_KEEP_TMP) for (const d of g.workDirs) fs.rmSync(d, { recursive: true, force: true });
});

describe('AES-128 HLS and CENC DASH (hls = "aes-128", dash = "cenc")', { concurrency: 1 }, () => {
  let srv = null;
  before(async () => {
    // rotate_every = 2: a new HLS key every 2 segments (4 s), so that the
    // hls.js case crosses key changes.
    srv = await startServer('cenc', '[drm]\nhls = "aes-128"\ndash = "cenc"\nrotate_every = 2\n', 'enc');
  });
  after(async () => stopServer(srv));

  test('hls.js plays AES-128 HLS, fetching the key from the key URI, across key rotations', { timeout: 240_000 }, async () => {
    const pl = await get(`${srv.vela.streamBase(srv.key)}/v1/index.m3u8`);
    assert.match(pl.text, /#EXT-X-KEY:METHOD=AES-128,URI="\/drm\/keys\/[0-9a-f]{32}"/, pl.text.slice(0, 1500));
    await drmCase('hls.js AES-128 HLS', srv, 'hlsjs:hls', (c, s) => {
      assertEncryptedMedia(c, 'aes');
      assert.ok(s.keysLoaded > 0, 'hls.js loaded no key (KEY_LOADED)');
      const keys = new Set(requested(c, /^\/drm\/keys\/[0-9a-f]{32}$/).map((r) => r.path));
      // 10 s of media span at least two 4 s key periods.
      assert.ok(keys.size >= 2,
        `hls.js fetched ${keys.size} distinct key(s) with 200, expected at least 2 (rotation every 2 segments): ${JSON.stringify(c.requests.filter((r) => r.path.startsWith('/drm/')))}`);
      assert.equal(s.encryptedEvents, 0, 'AES-128 is decrypted by hls.js, not EME');
    });
  });

  test('Shaka Player plays CENC DASH with ClearKey through the licence endpoint (dashif:Laurl)', { timeout: 240_000 }, async () => {
    await clearKeyDashCase('Shaka CENC DASH (ClearKey)', srv, 'shaka:dash', 'cenc');
  });

  test('dash.js plays CENC DASH with ClearKey through the licence endpoint (dashif:Laurl)', { timeout: 240_000 }, async () => {
    await clearKeyDashCase('dash.js CENC DASH (ClearKey)', srv, 'dashjs:dash', 'cenc');
  });

  // The same checks with the wrong keys: the players must fail (a fatal
  // error, or no playback), or the cases above would prove nothing.
  for (const [spec, name] of [['hlsjs:hls', 'hls.js AES-128 HLS'], ['shaka:dash', 'Shaka CENC DASH']]) {
    test(`${name} with a wrong key fails`, { timeout: 120_000 }, async () => {
      const c = await openPane(srv, spec, { wrongKeys: true });
      try {
        let s;
        for (let i = 0; i < START_TRIES; i++) {
          s = await c.snap();
          if (s.fatal.length || s.mediaPlayed >= 3) break;
          await sleep(POLL_MS);
        }
        assert.ok(s.fatal.length > 0 || s.mediaPlayed < 3,
          `${spec} played ${s.mediaPlayed.toFixed(1)} s with zero keys and no fatal error\n${await diagnostics(c, s)}`);
        assert.ok(s.mediaPlayed < 3, `${spec} played ${s.mediaPlayed.toFixed(1)} s with zero keys`);
        console.log(`${name} with zero keys: ${s.fatal.length ? `fatal: ${s.fatal[0].slice(0, 240)}` : 'no playback'}`);
      } finally {
        await closePane(c);
      }
    });
  }
});

describe('cbcs DASH (dash = "cbcs")', { concurrency: 1 }, () => {
  let srv = null;
  before(async () => {
    // rotate_every = 3: a Period per key period in the MPD, and a new
    // EXT-X-KEY and EXT-X-MAP (the init names its key period) in HLS.
    srv = await startServer('cbcs', '[drm]\nhls = "sample-aes"\ndash = "cbcs"\nrotate_every = 3\n', 'enc');
  });
  after(async () => stopServer(srv));

  test('Shaka Player plays cbcs DASH with ClearKey', { timeout: 240_000 }, async () => {
    const mpd = await get(`${srv.vela.streamBase(srv.key)}/manifest.mpd`);
    assert.match(mpd.text, /schemeIdUri="urn:mpeg:dash:mp4protection:2011" value="cbcs"/, mpd.text.slice(0, 2000));
    await clearKeyDashCase('Shaka cbcs DASH (ClearKey)', srv, 'shaka:dash', 'cbcs');
  });

  test('dash.js plays cbcs DASH with ClearKey', { timeout: 240_000 }, async () => {
    await clearKeyDashCase('dash.js cbcs DASH (ClearKey)', srv, 'dashjs:dash', 'cbcs');
  });

  // Not in the issue's list, but the same server: Shaka maps an HLS
  // SAMPLE-AES key with KEYFORMAT="identity" to ClearKey with the key from
  // the key URI. (hls.js cannot play it: its MP4 demuxer does not decrypt
  // SAMPLE-AES, and KEYFORMAT="identity" is not an EME key system to it.)
  //
  // Known intermittent failure (about 1 run in 7 of this describe on a
  // CPU-starved 2-core machine, none seen unloaded): a freeze of just over 1 s
  // that Shaka's stall detector ends (event 'shaka stall detected', a 0.1 s
  // skip), with media buffered past the playhead and every part served 200
  // in time. SourceBuffer traces of such runs show Shaka calling abort() and
  // re-setting an unchanged timestampOffset before appending a part in the
  // middle of a GOP (its `seeked`/`adaptation` path after its start-up seek
  // and gap jumps); Chromium then drops that part's video frames up to the
  // next keyframe (video buffered [29.001-29.334,30.001-…] although parts
  // 14.4 and 14.5 were fetched and appended), which leaves holes that the gap
  // jumper seeks over. The key periods and the server are not in that chain.
  // Not yet understood: why playback then stops with media buffered.
  test('Shaka Player plays SAMPLE-AES HLS (cbcs, KEYFORMAT="identity") with ClearKey', { timeout: 240_000 }, async () => {
    assert.ok(g.eme.cbcs.ok, `Chromium's ClearKey CDM refuses cbcs: ${g.eme.cbcs.error}`);
    const pl = await get(`${srv.vela.streamBase(srv.key)}/v1/index.m3u8`);
    assert.match(pl.text, /#EXT-X-KEY:METHOD=SAMPLE-AES,URI="\/drm\/keys\/[0-9a-f]{32}",KEYFORMAT="identity"/, pl.text.slice(0, 1500));
    await drmCase('Shaka SAMPLE-AES HLS (ClearKey)', srv, 'shaka:hls', (c, s) => {
      assertEncryptedMedia(c, 'cbcs');
      assert.equal(s.keySystem, CLEARKEY, `${c.spec}: key system`);
      const keys = new Set(requested(c, /^\/drm\/keys\/[0-9a-f]{32}$/).map((r) => r.path));
      assert.ok(keys.size >= 2,
        `expected keys of at least two key periods (GET /drm/keys/KID answered 200): ${JSON.stringify(c.requests.filter((r) => r.path.startsWith('/drm/')))}`);
      assert.ok(requested(c, /\/init-\d+\.k\d+\.cbcs\.mp4$/).length >= 2, 'an init segment per key period');
    });
  });
});

// Playback authorisation: the stream requires a signed, expiring token
// (`[playback] require_token`), minted by the control plane API. The players
// get only the manifest URL with `?token=`; every other URL (media
// playlists, segments, the AES-128 key URI, the licence URL in the MPD)
// comes from the manifests, which carry the token on.
describe('with a playback token (require_token = true)', { concurrency: 1 }, () => {
  let srv = null;
  before(async () => {
    srv = await startServer('token', '[playback]\nrequire_token = true\n[drm]\nhls = "aes-128"\ndash = "cenc"\n', 'paid', { token: true });
  });
  after(async () => stopServer(srv));

  test('without the token the stream is refused (401, JSON)', async () => {
    for (const p of ['master.m3u8', 'manifest.mpd', 'v1/index.m3u8']) {
      const r = await get(`${srv.vela.streamBase(srv.key)}/${p}`);
      assert.equal(r.status, 401, `${p}: ${r.text}`);
      assert.equal(JSON.parse(r.text).error.code, 'token_required');
    }
  });

  test('hls.js plays AES-128 HLS with a token', { timeout: 240_000 }, async () => {
    await drmCase('hls.js AES-128 HLS (token)', srv, 'hlsjs:hls', (c, s) => {
      assertEncryptedMedia(c, 'aes');
      assert.ok(s.keysLoaded > 0, 'hls.js loaded no key (KEY_LOADED)');
      assert.ok(c.requests.every((r) => r.path.includes(srv.token)), 'a request without the token');
      assert.ok(requested(c, /^\/drm\/keys\/[0-9a-f]{32}\?token=/).length > 0, 'no key fetched with the token');
    });
  });

  test('Shaka Player plays CENC DASH with ClearKey with a token', { timeout: 240_000 }, async () => {
    assert.ok(g.eme.cenc.ok, `Chromium's ClearKey CDM refuses cenc: ${g.eme.cenc.error}`);
    await drmCase('Shaka CENC DASH (token)', srv, 'shaka:dash', (c, s) => {
      assertEncryptedMedia(c, 'cenc');
      assertClearKeyLicence(c, s);
      assert.ok(c.requests.every((r) => r.path.includes(srv.token) || r.path === '/time'), 'a request without the token');
    });
  });
});
