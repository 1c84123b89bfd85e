/*! Vela analytics plugin: reports playback events of a <video> (played by
 * hls.js, dash.js, Shaka or natively) to Vela's beacon endpoint in batches.
 *
 *   const t = VelaAnalytics.attach(video, {
 *     entryId: '0_abcd1234',          // required
 *     server: 'https://vela.example',  // default: this script's origin
 *     live: false, format: 'hls',
 *     hls: hlsInstance, dash: dashPlayer, shaka: shakaPlayer,  // optional
 *   });
 *   t.detach();
 *
 * Events: view_start, play, pause, seek, buffer_start, buffer_end,
 * rendition, error, heartbeat (every 10 s) and end. Batches are sent every
 * 5 s, at 20 events, and when the page is hidden (sendBeacon). The body is
 * text/plain JSON, so no CORS preflight is needed.
 */
(function (root) {
  'use strict';
  var scriptOrigin = (function () {
    try {
      var s = document.currentScript;
      return s ? new URL(s.src, location.href).origin : location.origin;
    } catch (e) {
      return '';
    }
  })();

  function rid() {
    var a = new Uint8Array(12);
    (root.crypto || {}).getRandomValues ? root.crypto.getRandomValues(a) : a.forEach(function (_, i) { a[i] = Math.random() * 256; });
    return Array.prototype.map.call(a, function (b) { return ('0' + b.toString(16)).slice(-2); }).join('');
  }

  function viewerId() {
    try {
      var v = localStorage.getItem('vela_viewer');
      if (!v) {
        v = rid();
        localStorage.setItem('vela_viewer', v);
      }
      return v;
    } catch (e) {
      return rid();
    }
  }

  function attach(video, opts) {
    opts = opts || {};
    if (!opts.entryId) throw new Error('VelaAnalytics: entryId is required');
    var server = (opts.server || scriptOrigin || '').replace(/\/$/, '');
    var url = server + '/api/v1/analytics/events';
    var player = opts.player || (opts.hls ? 'hls.js' : opts.dash ? 'dash.js' : opts.shaka ? 'shaka' : 'video');
    var session = rid();
    var seq = 0;
    var queue = [];
    var started = Date.now();
    var state = 'idle';
    var buffering = false;
    var seeking = false;
    var played = false;
    var bitrate = null;
    var cleanups = [];

    function duration() {
      var d = video.duration;
      return isFinite(d) && d > 0 && !opts.live ? d : undefined;
    }

    function push(type, extra) {
      var ev = { type: type, seq: seq++, t: Date.now(), position: Math.max(0, video.currentTime || 0) };
      var d = duration();
      if (d) ev.duration = d;
      if (bitrate) ev.bitrate_kbps = bitrate;
      if (extra) for (var k in extra) ev[k] = extra[k];
      queue.push(ev);
      if (queue.length >= 20) flush(false);
    }

    function body(events) {
      return JSON.stringify({
        entry_id: opts.entryId, session_id: session, viewer_id: viewerId(),
        player: player, format: opts.format || 'hls', live: !!opts.live, events: events,
      });
    }

    function flush(leaving) {
      if (!queue.length) return;
      var events = queue.splice(0, 500);
      var data = body(events);
      if (leaving && navigator.sendBeacon) {
        navigator.sendBeacon(url, new Blob([data], { type: 'text/plain' }));
        return;
      }
      fetch(url, { method: 'POST', body: data, keepalive: true, headers: { 'content-type': 'text/plain' } })
        .then(function (r) {
          // Busy or rate-limited: try these events again with the next batch.
          if (r.status === 429 || r.status >= 500) queue = events.concat(queue);
        })
        .catch(function () { queue = events.concat(queue); });
    }

    function on(target, name, fn) {
      target.addEventListener(name, fn);
      cleanups.push(function () { target.removeEventListener(name, fn); });
    }

    on(video, 'playing', function () {
      if (buffering) { buffering = false; push('buffer_end'); }
      if (state !== 'playing') {
        push('play', played ? null : { value_ms: Date.now() - started });
        played = true;
        state = 'playing';
      }
    });
    on(video, 'waiting', function () {
      if (!buffering && !seeking) { buffering = true; push('buffer_start'); }
    });
    on(video, 'pause', function () {
      if (!video.ended && state === 'playing') { state = 'paused'; push('pause'); }
    });
    on(video, 'seeking', function () { seeking = true; push('seek'); });
    on(video, 'seeked', function () { seeking = false; });
    on(video, 'ended', function () { state = 'ended'; push('end'); flush(false); });
    on(video, 'error', function () {
      var e = video.error;
      push('error', { detail: e ? 'media error ' + e.code : 'media error' });
    });
    function hidden() { if (document.visibilityState === 'hidden') flush(true); }
    on(document, 'visibilitychange', hidden);
    on(root, 'pagehide', function () { flush(true); });

    function rendition(kbps, label) {
      if (!kbps || kbps === bitrate) return;
      bitrate = Math.round(kbps);
      push('rendition', { bitrate_kbps: bitrate, detail: label ? String(label).slice(0, 200) : undefined });
    }
    if (opts.hls && root.Hls) {
      var hls = opts.hls;
      var onLevel = function (_, d) {
        var l = hls.levels && hls.levels[d.level];
        if (l) rendition(l.bitrate / 1000, l.height ? l.height + 'p' : '');
      };
      var onErr = function (_, d) { if (d && d.fatal) push('error', { detail: 'hls.js ' + d.type + ' ' + d.details }); };
      hls.on(root.Hls.Events.LEVEL_SWITCHED, onLevel);
      hls.on(root.Hls.Events.ERROR, onErr);
      cleanups.push(function () { hls.off(root.Hls.Events.LEVEL_SWITCHED, onLevel); hls.off(root.Hls.Events.ERROR, onErr); });
    }
    if (opts.dash && root.dashjs) {
      var dp = opts.dash;
      var onQ = function (e) {
        if (e.mediaType !== 'video') return;
        try {
          var rep = e.newRepresentation || (dp.getCurrentRepresentationForType && dp.getCurrentRepresentationForType('video'));
          if (rep && rep.bandwidth) rendition(rep.bandwidth / 1000, rep.height ? rep.height + 'p' : '');
        } catch (x) { /* older dash.js */ }
      };
      var onDErr = function (e) { push('error', { detail: 'dash.js ' + ((e.error && e.error.message) || 'error') }); };
      dp.on(root.dashjs.MediaPlayer.events.QUALITY_CHANGE_RENDERED, onQ);
      dp.on(root.dashjs.MediaPlayer.events.ERROR, onDErr);
      cleanups.push(function () { dp.off(root.dashjs.MediaPlayer.events.QUALITY_CHANGE_RENDERED, onQ); dp.off(root.dashjs.MediaPlayer.events.ERROR, onDErr); });
    }
    if (opts.shaka) {
      var sp = opts.shaka;
      var onA = function () {
        var t = (sp.getVariantTracks() || []).filter(function (v) { return v.active; })[0];
        if (t) rendition(t.bandwidth / 1000, t.height ? t.height + 'p' : '');
      };
      var onSErr = function (e) { push('error', { detail: 'shaka ' + (e.detail && e.detail.code) }); };
      sp.addEventListener('adaptation', onA);
      sp.addEventListener('variantchanged', onA);
      sp.addEventListener('error', onSErr);
      cleanups.push(function () {
        sp.removeEventListener('adaptation', onA);
        sp.removeEventListener('variantchanged', onA);
        sp.removeEventListener('error', onSErr);
      });
    }

    push('view_start');
    var hb = setInterval(function () { if (state !== 'ended') push('heartbeat'); }, 10000);
    var fl = setInterval(function () { flush(false); }, 5000);
    cleanups.push(function () { clearInterval(hb); clearInterval(fl); });

    return {
      session: session,
      flush: function () { flush(false); },
      detach: function () {
        cleanups.forEach(function (f) { f(); });
        cleanups = [];
        flush(true);
      },
    };
  }

  root.VelaAnalytics = { attach: attach };
})(typeof window !== 'undefined' ? window : this);
