// Analytics, the embed player and the admin console in headless Chromium.
//
//   node --test --test-concurrency=1 tests/players/analytics.test.mjs   (scripts/test runs it)
//
// 1. The embed player: a 120 s MP4 (ffmpeg testsrc2, 640x360, x264 800k,
//    AAC) uploaded to partner 1, played at /embed/ENTRY?autoplay=1 with its
//    default settings (hls.js, the analytics plugin on): 20 s of playback,
//    then the network is throttled (Chrome DevTools Protocol, 40 KB/s) and
//    the player seeks to 80 s, the throttle is lifted after 15 s, and
//    playback runs to the end. The page measures what it played (currentTime
//    advancing while not seeking) and how long it waited for data outside
//    seeks. The reports (after an ETL run) must show 1 play and 1 view for
//    the entry, the viewing time within 6 s of the page's measure, the
//    rebuffering the page saw (see the note at the assertion), and nothing
//    for a second partner.
// 2. The console (/admin/), driven like a person would: sign in with the
//    admin partner's secret, create a live entry whose name holds markup,
//    publish to its stream key with ffmpeg, see it live with its thumbnail
//    on "Live now", open its report with charts. The name must show as text
//    (no element made from it). Screenshots of each page go to
//    target/player-tests/analytics/.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import {
  Api, ROOT, Vela, launchChromium, makeSourceMp4, makeWorkDir, poll, publish, sleep, stopGroup,
} from './lib.mjs';

const OUT = path.join(ROOT, 'target', 'player-tests', 'analytics');
let workDir;
let vela;
let api;
let browser;

before(async () => {
  fs.mkdirSync(OUT, { recursive: true });
  workDir = makeWorkDir('analytics');
  vela = await Vela.start(workDir, { config: '[analytics]\netl_interval_s = 2\n' });
  api = new Api(vela);
  browser = await launchChromium();
});

after(async () => {
  if (browser) await browser.close();
  if (vela) await vela.stop();
});

/** A second partner's admin session token. */
async function otherPartnerToken() {
  const p = await api.call('POST', '/partners', { json: { name: 'someone else' } });
  const r = await fetch(`${vela.http}/api/v1/sessions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ partner_id: p.id, secret: p.secret, role: 'admin', expiry_s: 600 }),
  });
  return (await r.json()).token;
}

async function summaryAs(token, entryId) {
  const r = await fetch(`${vela.http}/api/v1/analytics/summary?entry_id=${entryId}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(r.status, 200);
  return r.json();
}

// Counts what the page plays and waits for, from the media element itself.
const MEASURE = () => {
  window.__m = { played: 0, stalled: 0, last: null, waitingSince: null, seeking: false };
  document.addEventListener('DOMContentLoaded', () => {
    const v = document.querySelector('video');
    const m = window.__m;
    v.addEventListener('seeking', () => { m.seeking = true; m.waitingSince = null; });
    v.addEventListener('seeked', () => { m.seeking = false; m.last = v.currentTime; });
    v.addEventListener('timeupdate', () => {
      if (m.last != null && !m.seeking) {
        const d = v.currentTime - m.last;
        if (d > 0 && d < 1.5) m.played += d;
      }
      m.last = v.currentTime;
    });
    v.addEventListener('waiting', () => { if (!m.seeking && m.played > 0) m.waitingSince = performance.now(); });
    v.addEventListener('playing', () => {
      if (m.waitingSince != null) m.stalled += (performance.now() - m.waitingSince) / 1000;
      m.waitingSince = null;
    });
  });
};

test('the embed player plays, and the reports count one play, the time viewed and the rebuffering', { timeout: 420_000 }, async () => {
  const src = makeSourceMp4(workDir, 'twominutes', { seconds: 120 });
  const entry = await api.uploadMedia('Embed <b>test</b>', src);
  const other = await otherPartnerToken();

  const context = await browser.newContext();
  const page = await context.newPage();
  await page.addInitScript(MEASURE);
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  await page.goto(`${vela.http}/embed/${entry.id}?autoplay=1`);
  assert.equal(await page.title(), 'Embed <b>test</b>', 'the name is text');
  assert.equal(await page.locator('b').count(), 0, 'no element made from the name');

  const time = () => page.evaluate(() => document.querySelector('video').currentTime);
  await poll('playback to pass 20 s', 240, 250, async () => (await time()) >= 20);
  await page.screenshot({ path: path.join(OUT, 'embed-playing.png') });

  // Throttled: the seek's segment and those after it arrive slower than real
  // time. The seek goes past what hls.js has buffered by then (it keeps 30 s
  // ahead by default: a seek to 50 s from 20 s found it buffered and never
  // waited).
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 50, downloadThroughput: 40_000, uploadThroughput: 1_000_000,
  });
  await page.evaluate(() => { document.querySelector('video').currentTime = 80; });
  await sleep(15_000);
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1,
  });
  await poll('playback to reach the end', 480, 250, async () => page.evaluate(() => {
    const v = document.querySelector('video');
    return v.ended || v.currentTime >= v.duration - 0.3;
  }));
  const measured = await page.evaluate(() => window.__m);
  // The plugin sends the end at once; give it its round trip, then leave the
  // page (the rest goes out with sendBeacon).
  await sleep(1000);
  await page.close();
  await context.close();

  let s = null;
  await poll('the report to show the play', 60, 500, async () => {
    await api.call('POST', '/analytics/etl');
    s = await summaryAs(await api.adminToken(), entry.id);
    return s.plays === 1 && Math.abs(s.minutes_viewed * 60 - measured.played) < 6;
  }, async () => `summary: ${JSON.stringify(s)}; page measured ${JSON.stringify(measured)}`);
  console.log(`page: played ${measured.played.toFixed(1)} s, stalled ${measured.stalled.toFixed(1)} s; report: ${JSON.stringify(s)}`);
  assert.equal(s.views, 1, JSON.stringify(s));
  assert.equal(s.unique_viewers, 1);
  assert.ok(measured.played > 50, `the page played ${measured.played} s`);
  // The rebuffering the report shows is what the page saw. (Not asserted to
  // be non-zero: on 2026-12-03 the throttle did not make hls.js wait outside
  // the seek in this run, and waiting inside a seek is not rebuffering; the
  // reports' rebuffering from beacons is checked in tests/analytics_e2e.rs.)
  assert.ok(Math.abs(s.qoe.rebuffer_s - measured.stalled) < 1.5,
    `report rebuffering ${s.qoe.rebuffer_s} s vs the page's ${measured.stalled} s: ${JSON.stringify(s)}`);
  assert.ok(s.qoe.startup_ms_avg > 0, JSON.stringify(s));
  assert.ok(s.qoe.avg_bitrate_kbps > 100, JSON.stringify(s));
  assert.equal(s.drop_off.p100, 1, JSON.stringify(s));
  const theirs = await summaryAs(other, entry.id);
  assert.equal(theirs.plays, 0, `another partner sees nothing: ${JSON.stringify(theirs)}`);
  assert.equal(theirs.views, 0);
});

test('the admin console: sign in, create a live entry, see it live, open its report', { timeout: 300_000 }, async () => {
  const secret = fs.readFileSync(path.join(vela.data, 'admin-secret'), 'utf8').trim();
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${vela.http}/admin/`);
  await page.fill('#partner', '1');
  await page.fill('#secret', secret);
  await page.click('#signin-button');
  await page.waitForSelector('#nav:not([hidden])', { timeout: 20_000 });
  await page.screenshot({ path: path.join(OUT, 'console-signed-in.png') });

  await page.click('#nav-entries');
  const name = 'Console <img src=x onerror=alert(1)> live';
  await page.selectOption('#new-type', 'live');
  await page.fill('#new-name', name);
  await page.click('#create');
  await page.waitForSelector('#stream-key', { timeout: 20_000 });
  assert.equal(await page.textContent('#entry-title'), name, 'the name shows as text');
  assert.equal(await page.locator('#view img').count(), 0, 'no element made from the name');
  const key = (await page.textContent('#stream-key')).trim();
  const id = page.url().split('#entry/')[1];
  assert.ok(key.length > 8 && id, `stream key ${key}, entry ${id}`);
  assert.ok((await page.inputValue('#embed-code')).includes(`/embed/${id}`));
  await page.screenshot({ path: path.join(OUT, 'console-entry.png') });

  const pub = publish(vela.rtmpUrl(key), workDir, { seconds: 60 });
  try {
    await page.click('#nav-live');
    await poll('the entry to show live with a thumbnail', 240, 250, async () => page.evaluate((eid) => {
      const row = document.querySelector(`tr[data-entry="${eid}"]`);
      const img = row && row.querySelector('img.thumb');
      return !!(row && row.classList.contains('live') && img && img.complete && img.naturalWidth > 0);
    }, id), async () => `--- vela log ---\n${vela.logTail()}\n--- ffmpeg ---\n${pub.logTail()}`);
    await page.screenshot({ path: path.join(OUT, 'console-live.png') });

    await page.goto(`${vela.http}/admin/#reports`);
    await page.waitForSelector('#summary', { timeout: 20_000 });
    await page.waitForSelector('#plays-chart[data-ready] canvas', { timeout: 20_000 });
    await page.waitForSelector('#concurrency-chart[data-ready] canvas', { timeout: 20_000 });
    await page.screenshot({ path: path.join(OUT, 'console-reports.png'), fullPage: true });

    await page.goto(`${vela.http}/admin/#health`);
    await page.waitForSelector('#health .card', { timeout: 20_000 });
    await page.screenshot({ path: path.join(OUT, 'console-health.png') });
  } finally {
    await stopGroup(pub);
  }
  assert.deepEqual(errors, [], 'no script errors in the console');
  await context.close();
});
