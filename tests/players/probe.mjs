// Diagnostics, by hand: starts vela and a publisher, opens one player pane
// and prints, on the stream's clock (seconds since availabilityStartTime),
// every manifest/segment request the browser makes and the player's state
// once a second. Used to find why a player stalls.
//
//   node tests/players/probe.mjs PANE [SECONDS]     e.g. shaka:dash 15
//   PRE=ms (wait before the player joins), EXTRA='&shaka={...}' (page params)
//   VELA_CONFIG='[drm]\nhls = "aes-128"\ndash = "cenc"' (a --config file's text)
import { Vela, publish, waitForStream, startStaticServer, launchChromium, makeWorkDir, sleep, stopGroup, get } from './lib.mjs';
const spec = process.argv[2] || 'shaka:dash';
const secs = Number(process.argv[3] || 14);
const wd = makeWorkDir('probe');
const st = await startStaticServer();
const vela = await Vela.start(wd, { config: process.env.VELA_CONFIG ? process.env.VELA_CONFIG.replace(/\\n/g, '\n') : null });
const pub = publish(vela.rtmpUrl('p'), wd);
await waitForStream(vela, 'p', pub);
await sleep(Number(process.env.PRE || 4000));
const mpd = await get(`${vela.streamBase('p')}/manifest.mpd`);
const ast = Date.parse(/availabilityStartTime="([^"]+)"/.exec(mpd.text)[1]);
const b = await launchChromium();
const page = await b.newPage();
const t = () => ((Date.now() - ast) / 1000).toFixed(3);
page.on('request', (r) => { if (/seg-|part-|m3u8|mpd|Fragments|\/drm\//.test(r.url())) console.log(`${t()} REQ ${r.url().replace(/^.*\/live\/p\//, '')}`); });
page.on('requestfinished', (r) => { if (/seg-|part-|Fragments/.test(r.url())) console.log(`${t()} FIN ${r.url().replace(/^.*\/live\/p\//, '')}`); });
page.on('console', (m) => console.log(`${t()} console ${m.type()}: ${m.text().slice(0, 300)}`));
await page.goto(`${st.url}/index.html?hideform=1&stream=${encodeURIComponent(vela.streamBase('p'))}&panes=${spec}&anchor=${ast}${process.env.EXTRA || ""}`);
for (let i = 0; i < secs; i++) {
  await sleep(1000);
  const s = (await page.evaluate(() => window.vela.snapshot()))[0];
  console.log(`${t()} ct=${s.currentTime.toFixed(3)} lat=${JSON.stringify(s.latency.slice(-1)[0])} events: ${s.events.slice(-3).join(' / ')}`);
}
await b.close(); await stopGroup(pub); await vela.stop(); st.close();
process.exit(0);
