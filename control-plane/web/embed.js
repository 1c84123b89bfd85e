// The embed player: plays what /embed/ENTRY/state.json says (live while the
// entry is live, then its recording), with the Vela analytics plugin on.
// Query: ?autoplay=1 (muted autoplay), ?muted=1.
(function () {
  'use strict';
  var video = document.getElementById('player');
  var message = document.getElementById('message');
  var entry = video.dataset.entry;
  var params = new URLSearchParams(location.search);
  var current = null;
  var hls = null;
  var shaka = null;
  var tracker = null;
  var poll = null;
  var embed = { entry: entry, state: null, hls: null, tracker: null, switches: 0 };
  window.velaEmbed = embed;

  if (params.get('autoplay') === '1' || params.get('muted') === '1') video.muted = true;

  function say(text) {
    message.textContent = text || '';
    message.hidden = !text;
  }

  function teardown() {
    if (tracker) { tracker.detach(); tracker = null; }
    if (hls) { hls.destroy(); hls = null; }
    if (shaka) { shaka.destroy(); shaka = null; }
    video.removeAttribute('src');
    video.load();
  }

  function fetchState() {
    return fetch('/embed/' + encodeURIComponent(entry) + '/state.json', { cache: 'no-store' })
      .then(function (r) { return r.json(); });
  }

  function loadShaka(cb) {
    if (window.shaka) return cb();
    var s = document.createElement('script');
    s.src = '/assets/shaka-player.compiled.js';
    s.onload = cb;
    document.head.appendChild(s);
  }

  function play(state) {
    var opts = { entryId: state.play_entry, live: state.mode === 'live', server: location.origin };
    if (state.player === 'shaka') {
      opts.format = 'dash';
      loadShaka(function () {
        window.shaka.polyfill.installAll();
        shaka = new window.shaka.Player();
        shaka.configure({ drm: { servers: { 'org.w3.clearkey': location.origin + '/drm/clearkey/license' } } });
        opts.shaka = shaka;
        tracker = VelaAnalytics.attach(video, opts);
        embed.tracker = tracker;
        shaka.attach(video).then(function () { return shaka.load(state.src); })
          .then(start, function (e) { say('cannot play: ' + (e && e.code)); });
      });
      return;
    }
    opts.format = 'hls';
    if (window.Hls && window.Hls.isSupported()) {
      hls = new window.Hls({ lowLatencyMode: state.mode === 'live' });
      opts.hls = hls;
      tracker = VelaAnalytics.attach(video, opts);
      hls.on(window.Hls.Events.ERROR, function (_, d) {
        if (d.fatal) recheck();
      });
      hls.loadSource(state.src);
      hls.attachMedia(video);
      hls.on(window.Hls.Events.MANIFEST_PARSED, start);
    } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
      video.src = state.src;
      opts.player = 'video';
      tracker = VelaAnalytics.attach(video, opts);
      start();
    } else {
      say('This browser cannot play HLS.');
    }
    embed.hls = hls;
    embed.tracker = tracker;
  }

  function start() {
    if (params.get('autoplay') === '1') {
      var p = video.play();
      if (p && p.catch) p.catch(function () { /* needs a click */ });
    }
  }

  function apply(state) {
    embed.state = state;
    document.title = state.name;
    if (current && current.mode === state.mode && current.src === state.src) return;
    teardown();
    current = state;
    embed.switches++;
    if (state.mode === 'live' || state.mode === 'vod') {
      say('');
      play(state);
    } else if (state.mode === 'offline') {
      say('Not started yet');
    } else {
      say('This entry cannot be played.');
    }
  }

  function recheck() {
    fetchState().then(apply, function () { /* try again on the next poll */ });
  }

  // A live stream that ends becomes its recording: poll while live or waiting.
  video.addEventListener('ended', recheck);
  poll = setInterval(function () {
    if (!current || current.mode !== 'vod') recheck();
  }, 5000);
  recheck();
  window.addEventListener('pagehide', function () { clearInterval(poll); });
})();
