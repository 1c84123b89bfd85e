// Stored media (video on demand) in real players: a `vela serve`, MP4 files
// made by ffmpeg and uploaded through the control plane API
// (`PUT /api/v1/entries/ID/content`), and hls.js, dash.js and Shaka Player
// with their default settings in the system's headless Chromium.
//
//   node --test --test-concurrency=1 tests/players/vod.test.mjs   (scripts/test runs it)
//
// Sources (made at test time with Debian's ffmpeg 5.1): 60 s of testsrc2
// 640x360 at 25 fps, x264 with B-frames (`-bf 3 -g 50`: composition offsets,
// 2 s GOPs), AAC, the moov box at the end of the file; and a shorter one
// with two audio languages (eng, fra). And a recording (live-to-VOD): a live
// entry created with `"recording": true`, published to for 30 s over RTMP by
// ffmpeg (`-re`, testsrc2 640x360 25 fps, x264 veryfast `-g 50`, AAC, FLV;
// `-t 30`, so the publisher stops cleanly), whose `recorded_entry_id` names
// a media entry that is polled (bounded) until `ready`; its expected duration
// is ffprobe's on its `/vod/ID/master.m3u8` (which must be 30 s within 2 s).
//
// Each playback case (hls.js HLS, dash.js DASH, dash.js Smooth, Shaka HLS,
// Shaka DASH) asserts: playback starts at the beginning and currentTime
// advances by playback; the duration the media element reports matches the
// source's (ffprobe) within 0.5 s; a seek to the middle (30 s) resumes
// playback there (within 0.5 s after the target, before it by at most a
// frame) and plays 3 s on; a seek near the end (57 s) resumes and playback
// reaches the end (the `ended` event, or currentTime within 0.5 s of the
// duration); no fatal player error throughout; no stall over 0.5 s while
// playing (the wait for data right after a seek is the seek's, measured and
// printed as "resumed after", not a stall). The recording's case (hls.js
// on its HLS, default settings) asserts the same, with the seek points taken
// from the recording's ffprobe duration D: the middle (D/2) and near the end
// (D - 3 s), to 0.1 s. The two-language cases assert that the player offers
// both languages and plays. The closing `after` prints the table (the seek
// columns: the middle and near-end seeks, whatever their targets) and writes
// target/player-tests/vod-results.json.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  Api, ROOT, Vela, chromiumVersion, get, launchChromium, makeSourceMp4, makeWatch, makeWorkDir,
  openPlayerPage, paneDiagnostics, poll, probeDuration, reportResults, sleep, spawnLogged, startStaticServer,
  tail, velaBinary,
} from './lib.mjs';

const STALL_LIMIT_S = 0.5;
const DURATION_TOLERANCE_S = 0.5;
const POLL_MS = 250;
const START_TRIES = 160; // 40 s of polls: a busy 2-core machine
const PLAY_TRIES = 120; // 30 s for a few seconds of media
const SOURCE_S = 60;
const MIDDLE_S = 30;
const NEAR_END_S = 57;
const RECORDING_S = 30; // what the publisher sends of a recorded live entry
const NEAR_END_BEFORE_S = SOURCE_S - NEAR_END_S; // the near-end seek: this long before the end
const FRAME_S = 1 / 25;

const MANIFESTS = { hls: 'master.m3u8', dash: 'manifest.mpd', mss: 'Manifest' };

const results = [];
let ctx = null;

function vodBase(entry) {
  return `${ctx.vela.http}/vod/${entry.id}`;
}

async function diagnostics(c, s) {
  return paneDiagnostics(c, s, {
    urls: [c.manifestUrl],
    logs: { 'vela log (tail)': ctx.vela.logTail(5000) },
  });
}

const watch = makeWatch({ diagnostics, stallLimitS: STALL_LIMIT_S, pollMs: POLL_MS });

async function openPane(spec, src) {
  const [, format] = spec.split(':');
  const base = vodBase(src.entry);
  const c = await openPlayerPage(ctx.browser, ctx.static.url, { spec, base, velaHttp: ctx.vela.http, params: { vod: '1' } });
  c.manifestUrl = `${base}/${MANIFESTS[format]}`;
  c.src = src;
  return c;
}

const f2 = (x) => (typeof x === 'number' ? x.toFixed(2) : '–');

function record(name, c, s, extra = {}) {
  const r = {
    case: name,
    pane: c.spec,
    entry: c.src.entry.id,
    source_duration_s: +c.src.duration.toFixed(3),
    seek_targets: c.seekTargets,
    player_duration_s: s.duration,
    start_ct: s.startTime,
    media_played_s: +s.mediaPlayed.toFixed(2),
    seeks: s.seeks,
    end_ct: +s.currentTime.toFixed(3),
    ended_event: s.endedEvent,
    stalls: s.stalls.length,
    max_stall_s: +Math.max(s.maxStall, s.maxFreeze).toFixed(3),
    fatal_errors: s.fatal.length,
    nonfatal_errors: s.nonFatalCount || 0,
    nonfatal_samples: [...new Set(s.nonFatal)].slice(0, 5),
    http_errors: c.httpErrors.slice(0, 10),
    requests: c.requests.length,
    ...extra,
  };
  results.push(r);
  console.log(`${name}: duration ${f2(r.player_duration_s)} s (source ${f2(r.source_duration_s)}), ` +
    `seeks ${JSON.stringify(r.seeks)}, end ct ${r.end_ct} (ended event ${r.ended_event}), ` +
    `stalls ${r.stalls} (max ${r.max_stall_s} s), errors ${r.fatal_errors} fatal / ${r.nonfatal_errors} non-fatal`);
  if (r.nonfatal_errors) console.log(`  non-fatal: ${r.nonfatal_samples.join(' | ')}`);
  if (r.http_errors.length) console.log(`  HTTP errors: ${JSON.stringify(r.http_errors)}`);
  return r;
}

/** Records what a failing case measured, then fails. */
async function recordFailure(name, c, e) {
  try {
    const s = await c.snap();
    record(`${name} (FAILED)`, c, s, { failure: String(e.message || e).split('\n')[0] });
  } catch (_) { /* the page is gone */ }
  throw e;
}

/** Seeks the pane to `to` and waits until playback has resumed and played `playS` on. */
async function seekAndPlay(c, to, playS) {
  const n = (await c.snap()).seeks.length;
  await c.evaluate((t) => window.vela.seek(t), to);
  const s = await watch(c, `playback to resume after the seek to ${to} s`, START_TRIES,
    (x) => x.seeks.length > n && !x.seekPending);
  const seek = s.seeks[n];
  assert.ok(seek.resumedAt >= to - FRAME_S - 0.01 && seek.resumedAt <= to + 0.5,
    `${c.spec}: the seek to ${to} s resumed at ${seek.resumedAt} s\n${await diagnostics(c, s)}`);
  if (playS > 0) {
    return watch(c, `${playS} s of playback after the seek to ${to} s`, PLAY_TRIES,
      (x) => x.currentTime >= seek.resumedAt + playS || x.endedEvent || x.ended);
  }
  return s;
}

/**
 * Play from the start, check the duration, seek to the middle, seek near the
 * end, play to the end. `src`: the main upload, or another `{ entry,
 * duration }` with its own seek points.
 */
async function vodCase(name, spec, src = ctx.main, { middle = MIDDLE_S, nearEnd = NEAR_END_S } = {}) {
  const c = await openPane(spec, src);
  c.seekTargets = [middle, nearEnd];
  try {
    let s = await watch(c, 'playback to start', START_TRIES, (x) => x.playing);
    assert.ok(s.startTime < 1, `${spec}: playback started at ${s.startTime} s, not at the beginning`);
    s = await watch(c, '3 s of media from the start', PLAY_TRIES, (x) => x.mediaPlayed >= 3);
    assert.ok(s.currentTime > s.startTime, 'currentTime advanced');
    assert.ok(s.duration != null && Math.abs(s.duration - src.duration) <= DURATION_TOLERANCE_S,
      `${spec}: the player's duration ${s.duration} s, the source's ${src.duration} s\n${await diagnostics(c, s)}`);
    await seekAndPlay(c, middle, 3);
    await seekAndPlay(c, nearEnd, 0);
    s = await watch(c, 'playback to reach the end', PLAY_TRIES,
      (x) => x.endedEvent || x.ended || (x.duration != null && x.currentTime >= x.duration - 0.5));
    // Reaching the end within 0.5 s of it is enough; give `ended` a moment
    // to be recorded.
    for (let i = 0; i < 8 && !s.endedEvent; i++) {
      await sleep(POLL_MS);
      s = await c.snap();
    }
    assert.equal(s.fatal.length, 0, `${spec}: fatal errors ${JSON.stringify(s.fatal)}`);
    assert.ok(s.duration != null && Math.abs(s.duration - src.duration) <= DURATION_TOLERANCE_S,
      `${spec}: the player's duration ${s.duration} s at the end, the source's ${src.duration} s`);
    record(name, c, s);
  } catch (e) {
    await recordFailure(name, c, e);
  } finally {
    await c.close();
  }
}

/** The two-language source: the player offers both languages and plays. */
async function languagesCase(name, spec) {
  const c = await openPane(spec, ctx.langs);
  try {
    await watch(c, 'playback to start', START_TRIES, (x) => x.playing);
    const s = await watch(c, '3 s of media', PLAY_TRIES, (x) => x.mediaPlayed >= 3);
    const tracks = (await c.evaluate(() => window.vela.audioTracks()))[0] || [];
    const langs = [...new Set(tracks.map((t) => String(t).slice(0, 2)))].sort();
    assert.deepEqual(langs, ['en', 'fr'], `${spec}: audio tracks offered ${JSON.stringify(tracks)}\n${await diagnostics(c, s)}`);
    assert.ok(Math.abs(s.duration - ctx.langs.duration) <= DURATION_TOLERANCE_S,
      `${spec}: the player's duration ${s.duration} s, the source's ${ctx.langs.duration} s`);
    record(name, c, s, { audio_tracks: tracks });
  } catch (e) {
    await recordFailure(name, c, e);
  } finally {
    await c.close();
  }
}

/** The entry's HLS, DASH and Smooth manifests answer 200. */
async function manifestsAnswer(entry) {
  for (const m of Object.values(MANIFESTS)) {
    const url = `${ctx.vela.http}/vod/${entry.id}/${m}`;
    const r = await get(url);
    assert.equal(r.status, 200, `GET ${url} answered ${r.status} ${r.error || ''}: ${r.text.slice(0, 300)}\n--- vela log ---\n${ctx.vela.logTail()}`);
  }
}

/**
 * ffmpeg publishing `seconds` of testsrc2 640x360 at 25 fps (x264 veryfast,
 * 2 s GOPs, no B-frame options: x264's defaults) and a 440 Hz sine (AAC) to
 * `url` as FLV, paced by `-re`; it stops by itself after `-t`.
 */
function publishFor(url, seconds) {
  const log = path.join(ctx.workDir, 'ffmpeg-recording.log');
  const args = ['-hide_banner', '-nostdin', '-loglevel', 'warning',
    '-re', '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=25',
    '-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
    '-t', String(seconds), '-map', '0:v', '-map', '1:a',
    '-c:v', 'libx264', '-preset', 'veryfast', '-g', '50', '-pix_fmt', 'yuv420p',
    '-c:a', 'aac', '-f', 'flv', url];
  fs.writeFileSync(path.join(ctx.workDir, 'ffmpeg-recording.cmd'), `ffmpeg ${args.join(' ')}\n`);
  const child = spawnLogged(process.env.VELA_FFMPEG || 'ffmpeg', args, log);
  child.logTail = () => tail(log, 3000);
  return child;
}

/**
 * A recorded live stream: a live entry with `recording: true`, `RECORDING_S`
 * published to it, the publisher's clean stop, then (bounded polls) the live
 * entry's `recorded_entry_id` and that media entry `ready`. Returns `{ entry,
 * duration, live }`, the duration ffprobe's on the entry's HLS.
 */
async function recordLiveStream() {
  const live = await ctx.api.call('POST', '/entries', { json: { type: 'live', name: 'players recording', recording: true } });
  assert.ok(live && live.id && live.stream_key, `a new live entry: ${JSON.stringify(live)}`);
  const pub = publishFor(ctx.vela.rtmpUrl(live.stream_key), RECORDING_S);
  const logs = () => `--- ffmpeg log ---\n${pub.logTail()}\n--- vela log ---\n${ctx.vela.logTail()}`;
  // -re and -t: RECORDING_S of wall time, and more on a busy machine.
  await poll('the publisher to stop after -t', 4 * RECORDING_S + 60, 500, async () => pub.exited, async () => logs());
  assert.equal(pub.exitCode_, 0, `ffmpeg exited ${pub.exitCode_ ?? pub.exitSignal_ ?? pub.spawnError}\n${logs()}`);
  let last = null;
  const id = await poll(`live entry ${live.id} to name its recording`, 150, 200, async () => {
    last = await ctx.api.call('GET', `/entries/${live.id}`);
    return last.recorded_entry_id || null;
  }, async () => `last: ${JSON.stringify(last)}\n${logs()}`);
  await poll(`recording ${id} to be ready`, 300, 200, async () => {
    last = await ctx.api.call('GET', `/entries/${id}`);
    if (last.status === 'error') throw new Error(`recording ${id} went to error: ${JSON.stringify(last)}\n${logs()}`);
    return last.status === 'ready';
  }, async () => `last: ${JSON.stringify(last)}\n${logs()}`);
  const entry = last;
  await manifestsAnswer(entry);
  const duration = probeDuration(`${ctx.vela.http}/vod/${entry.id}/master.m3u8`);
  console.log(`recording ${entry.id} of live entry ${live.id}: ready, ffprobe duration ${duration.toFixed(3)} s ` +
    `(entry duration_s ${entry.duration_s})`);
  assert.ok(Math.abs(duration - RECORDING_S) <= 2,
    `the recording of ${RECORDING_S} s lasts ${duration} s (ffprobe)\n${JSON.stringify(entry)}`);
  return { name: 'recording', entry, duration, live };
}

before(async () => {
  const workDir = makeWorkDir('vod');
  ctx = { workDir };
  velaBinary(); // fails early, with the way out, when it is not built
  console.log(`work dir ${workDir}; ${chromiumVersion()}`);
  ctx.static = await startStaticServer();
  ctx.vela = await Vela.start(workDir);
  ctx.api = new Api(ctx.vela);
  const source = async (name, opts) => {
    const file = makeSourceMp4(workDir, name, opts);
    const entry = await ctx.api.uploadMedia(`players ${name}`, file);
    const duration = probeDuration(file);
    await manifestsAnswer(entry);
    return { name, file, entry, duration };
  };
  ctx.main = await source('main', { seconds: SOURCE_S });
  ctx.langs = await source('langs', { seconds: 12, languages: ['eng', 'fra'] });
  ctx.browser = await launchChromium();
  const page = await ctx.browser.newPage();
  await page.goto(`${ctx.static.url}/index.html`);
  const support = await page.evaluate(() => window.vela.codecSupport());
  await page.close();
  assert.ok(support.mse && support.h264 && support.aac, `this Chromium cannot play H.264/AAC in MSE: ${JSON.stringify(support)}`);
});

after(async () => {
  if (ctx) {
    if (ctx.browser) await ctx.browser.close().catch(() => {});
    if (ctx.vela) await ctx.vela.stop();
    if (ctx.static) ctx.static.close();
  }
  const seek = (i) => (r) => {
    const x = r.seeks && r.seeks[i];
    return x ? `${f2(x.resumedAt)}/${f2(x.resumedAfterS)}` : '–';
  };
  reportResults(
    'VOD playback (durations in s; seek: resumed at currentTime / after seconds of wall time)',
    results,
    process.env.VELA_PLAYER_VOD_RESULTS || path.join(ROOT, 'target', 'player-tests', 'vod-results.json'),
    {},
    [
      ['duration', 8, (r) => f2(r.player_duration_s)],
      ['source', 7, (r) => f2(r.source_duration_s)],
      ['start', 6, (r) => f2(r.start_ct)],
      ['seek mid', 11, seek(0)],
      ['seek end', 11, seek(1)],
      ['end ct', 7, (r) => f2(r.end_ct)],
      ['ended', 6, (r) => (r.ended_event ? 'yes' : 'no')],
      ['stalls', 6, (r) => r.stalls],
      ['max', 6, (r) => f2(r.max_stall_s)],
      ['errors', 7, (r) => `${r.fatal_errors}/${r.nonfatal_errors}`],
    ],
  );
  if (ctx && ctx.workDir && !process.env.VELA_KEEP_TMP) fs.rmSync(ctx.workDir, { recursive: true, force: true });
});

describe('VOD: play, seek to the middle, seek near the end, play to the end', { concurrency: 1 }, () => {
  test('hls.js plays VOD HLS (master.m3u8)', { timeout: 180_000 }, async () => {
    await vodCase('hls.js HLS', 'hlsjs:hls');
  });
  test('dash.js plays static DASH (manifest.mpd)', { timeout: 180_000 }, async () => {
    await vodCase('dash.js DASH', 'dashjs:dash');
  });
  test('dash.js plays VOD Smooth Streaming (Manifest)', { timeout: 180_000 }, async () => {
    await vodCase('dash.js Smooth', 'dashjs:mss');
  });
  test('Shaka Player plays VOD HLS (master.m3u8)', { timeout: 180_000 }, async () => {
    await vodCase('Shaka HLS', 'shaka:hls');
  });
  test('Shaka Player plays static DASH (manifest.mpd)', { timeout: 180_000 }, async () => {
    await vodCase('Shaka DASH', 'shaka:dash');
  });
});

describe('VOD with two audio languages', { concurrency: 1 }, () => {
  test('hls.js offers both languages (HLS)', { timeout: 120_000 }, async () => {
    await languagesCase('hls.js HLS 2 languages', 'hlsjs:hls');
  });
  test('dash.js offers both languages (DASH)', { timeout: 120_000 }, async () => {
    await languagesCase('dash.js DASH 2 languages', 'dashjs:dash');
  });
  test('Shaka offers both languages (HLS)', { timeout: 120_000 }, async () => {
    await languagesCase('Shaka HLS 2 languages', 'shaka:hls');
  });
  test('Shaka offers both languages (DASH)', { timeout: 120_000 }, async () => {
    await languagesCase('Shaka DASH 2 languages', 'shaka:dash');
  });
});

describe('VOD of a recorded live stream', { concurrency: 1 }, () => {
  before(async () => {
    ctx.recorded = await recordLiveStream();
  }, { timeout: 300_000 });

  test('hls.js plays the recording\'s HLS (master.m3u8)', { timeout: 180_000 }, async () => {
    const src = ctx.recorded;
    // The seek points from the recording's duration, as 30 s and 57 s are
    // from the 60 s source's.
    const middle = Math.round(src.duration * 5) / 10;
    const nearEnd = Math.round((src.duration - NEAR_END_BEFORE_S) * 10) / 10;
    await vodCase('hls.js HLS recording', 'hlsjs:hls', src, { middle, nearEnd });
  });
});
