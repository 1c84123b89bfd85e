// Serves the side-by-side player page (hls.js, dash.js, Shaka Player) to
// check a stream by eye:
//
//   (cd tests/players && npm ci)          # once; scripts/setup does it
//   node tests/players/serve.mjs [PORT] [STREAM_BASE_URL]
//
// then open the printed address, e.g.
//   http://127.0.0.1:8099/?stream=http://localhost:8080/live/show
// Panes: ?panes=hlsjs:hls,dashjs:dash,dashjs:mss,shaka:hls,shaka:dash
// Each pane shows the player's live latency, stalls and errors.
import { startStaticServer } from './lib.mjs';

const port = Number(process.argv[2] || process.env.PORT || 8099);
const stream = process.argv[3] || 'http://localhost:8080/live/show';
const host = process.env.HOST || '127.0.0.1';
const server = await startStaticServer(port, host);
console.log(`player page: ${server.url}/?stream=${encodeURIComponent(stream)}`);
console.log('(Ctrl-C to stop)');
