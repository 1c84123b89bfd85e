// Vela player panes: hls.js, dash.js and Shaka Player on one page, each with
// the same measurements (playback progress, stalls, player errors, live
// latency). Used by index.html (what a person opens to check a stream) and by
// the end-to-end tests (players.test.mjs), which read `window.vela`.
//
// Loaded as a classic script after the players' UMD builds:
//   hls.js  -> window.Hls
//   dash.js -> window.dashjs (+ dash.mss.min.js for Smooth Streaming)
//   Shaka   -> window.shaka
/* global Hls, dashjs, shaka */
(function () {
  'use strict';

  // What each player can play, and the manifest it is pointed to under
  // /live/STREAM/ (or /vod/ENTRY/).
  const FORMATS = {
    hls: 'master.m3u8',
    dash: 'manifest.mpd',
    mss: 'Manifest',
  };
  const PLAYERS = {
    hlsjs: { label: 'hls.js', formats: ['hls'] },
    dashjs: { label: 'dash.js', formats: ['dash', 'mss'] },
    shaka: { label: 'Shaka Player', formats: ['hls', 'dash'] },
  };

  const POLL_MS = 100;
  const LATENCY_MS = 500;
  const STALL_LIMIT_S = 0.5;

  function now() {
    return performance.now();
  }

  // A JSON page parameter (?shaka=, ?dashjs=, ?hlsjs=): player settings for
  // experiments and for the encryption tests (key systems, licence servers).
  function jsonParam(name) {
    const v = new URLSearchParams(location.search).get(name);
    return v ? JSON.parse(v) : null;
  }

  // ?vod=1: stored media (/vod/ENTRY/). The players keep their default
  // settings (no low-latency mode set by the page); seeks are counted apart
  // from stalls (see Pane.seek).
  const VOD = new URLSearchParams(location.search).get('vod') === '1';
  // ?defaults=1: live with every player's own default configuration (no
  // low-latency mode set by the page), as a new user runs them. VOD always.
  const DEFAULTS = VOD || new URLSearchParams(location.search).get('defaults') === '1';

  function errText(e) {
    if (e == null) return String(e);
    if (typeof e === 'string') return e;
    try {
      return JSON.stringify(e, (k, v) => (v instanceof Node || v instanceof Window ? undefined : v)).slice(0, 600);
    } catch (_) {
      return String(e).slice(0, 600);
    }
  }

  class Pane {
    constructor(root, player, format, url) {
      this.player = player;
      this.format = format;
      this.url = url;
      this.root = root;
      this.video = root.querySelector('video');
      this.statusEl = root.querySelector('.status');
      this.logEl = root.querySelector('.log');
      this.impl = null;
      this.stats = {
        player,
        format,
        url,
        supported: null,
        playing: false, // first `playing` with advancing currentTime seen
        firstPlayingAt: null, // performance.now()
        startTime: null, // currentTime when playback started
        currentTime: 0,
        mediaPlayed: 0, // sum of forward currentTime progress since start
        jumps: [], // currentTime jumps (seeks by the player), [from, to]
        waitingCount: 0,
        stalls: [], // {at, duration, ongoing, cause}
        maxStall: 0,
        freezes: [], // currentTime not advancing while not paused/ended (poll based)
        maxFreeze: 0,
        fatal: [],
        nonFatal: [],
        latency: [], // {t (s since start), reported, derived, rate}
        ended: false,
        endedEvent: false,
        paused: null,
        readyState: 0,
        events: [],
        lateTicks: 0,
        // Encryption: the key system the player chose (EME), `encrypted`
        // events of the video element, keys hls.js loaded (AES-128).
        keySystem: null,
        encryptedEvents: 0,
        keysLoaded: 0,
        // VOD: the media element's duration, and the seeks asked of the pane
        // ({to, from, resumedAt (currentTime when playback resumed),
        // resumedAfterS (wall time from the seek to the resumption)}).
        duration: null,
        seeks: [],
        seekPending: false,
      };
      this._waitingAt = null;
      this._lastCt = null;
      this._lastAdvanceAt = null;
      this._lastTick = null;
      this._freezeUncertain = false;
      this._timers = [];
      this._seekAt = null;
    }

    log(msg) {
      const t = ((now() - (window.__velaT0 || 0)) / 1000).toFixed(2);
      const line = `${t} ${msg}`;
      this.stats.events.push(line);
      if (this.stats.events.length > 400) this.stats.events.splice(0, 100);
      if (this.logEl) {
        this.logEl.textContent = this.stats.events.slice(-12).join('\n');
      }
    }

    fatal(what) {
      const s = errText(what);
      this.stats.fatal.push(s);
      this.log(`FATAL ${s}`);
    }

    nonFatal(what) {
      const s = errText(what);
      this.stats.nonFatal.push(s);
      if (this.stats.nonFatal.length > 200) this.stats.nonFatal.splice(0, 50);
      this.stats.nonFatalCount = (this.stats.nonFatalCount || 0) + 1;
      this.log(`error (non-fatal) ${s}`);
    }

    start() {
      const v = this.video;
      v.muted = true;
      v.autoplay = true;
      v.playsInline = true;
      const st = this.stats;
      v.addEventListener('waiting', () => {
        st.waitingCount++;
        // The wait for data after a seek is not a stall (it ends the seek).
        if (st.playing && !st.seekPending && this._waitingAt == null) this._waitingAt = now();
        this.log(`waiting ct=${v.currentTime.toFixed(3)} buffered ${this.bufferedText()}`);
      });
      v.addEventListener('playing', () => {
        this.log(`playing ct=${v.currentTime.toFixed(3)}`);
        this._endWaiting('playing');
      });
      v.addEventListener('ended', () => {
        st.endedEvent = true;
        this.log(`ended ct=${v.currentTime.toFixed(3)}`);
        this._endWaiting('ended');
      });
      v.addEventListener('error', () => {
        const e = v.error;
        this.fatal({ source: 'video', code: e && e.code, message: e && e.message });
      });
      v.addEventListener('seeking', () => this.log(`seeking to ${v.currentTime.toFixed(3)}`));
      // A decoder blocked on a key it does not have (EME): the element stops
      // with media buffered, which reads as a freeze, not a 'waiting' stall.
      v.addEventListener('waitingforkey', () => {
        st.waitingForKey = (st.waitingForKey || 0) + 1;
        this.log(`waitingforkey ct=${v.currentTime.toFixed(3)} buffered ${this.bufferedText()}`);
      });
      v.addEventListener('encrypted', (e) => {
        st.encryptedEvents++;
        if (st.encryptedEvents <= 3) this.log(`encrypted initDataType=${e.initDataType} (${e.initData ? e.initData.byteLength : 0} bytes)`);
      });
      try {
        this.impl = this[`start_${this.player}`]();
      } catch (e) {
        this.fatal({ source: 'setup', message: String(e && e.stack ? e.stack : e) });
      }
      this._timers.push(setInterval(() => this._poll(), POLL_MS));
      this._timers.push(setInterval(() => this._sampleLatency(), LATENCY_MS));
    }

    bufferedText() {
      const r = (tr) => {
        const out = [];
        for (let i = 0; i < tr.length; i++) out.push(`${tr.start(i).toFixed(3)}-${tr.end(i).toFixed(3)}`);
        return out.join(',');
      };
      let s = `[${r(this.video.buffered)}]`;
      try {
        if (this.impl && this.impl.bufferedInfo) {
          const b = this.impl.bufferedInfo();
          const f = (l) => (l || []).map((x) => `${x.start.toFixed(3)}-${x.end.toFixed(3)}`).join(',');
          s += ` video [${f(b.video)}] audio [${f(b.audio)}]`;
        }
      } catch (_) {
        /* diagnostics only */
      }
      return s;
    }

    _endWaiting(cause) {
      if (this._waitingAt != null) {
        const d = (now() - this._waitingAt) / 1000;
        this._recordStall(this._waitingAt, d, cause);
        this._waitingAt = null;
      }
    }

    _recordStall(at, d, cause) {
      const st = this.stats;
      st.stalls.push({ at: +((at - (st.firstPlayingAt || at)) / 1000).toFixed(2), duration: +d.toFixed(3), cause });
      if (d > st.maxStall) st.maxStall = d;
      this.log(`stall ${d.toFixed(3)} s (${cause})`);
    }

    _poll() {
      const v = this.video;
      const st = this.stats;
      const t = now();
      const ct = v.currentTime;
      st.currentTime = ct;
      st.paused = v.paused;
      st.readyState = v.readyState;
      st.ended = v.ended;
      st.bufferedEnd = v.buffered.length ? v.buffered.end(v.buffered.length - 1) : null;
      st.playbackRate = v.playbackRate;
      st.duration = isFinite(v.duration) ? v.duration : null;
      st.ongoingStall = this._waitingAt != null ? (t - this._waitingAt) / 1000 : 0;
      st.frozenFor = st.playing && this._lastAdvanceAt != null ? (t - this._lastAdvanceAt) / 1000 : 0;
      if (this._lastTick != null && t - this._lastTick > 400) {
        // The page's timers ran late (a busy machine): a freeze measured over
        // this gap would be the poller's, not the player's.
        st.lateTicks++;
        this._freezeUncertain = true;
      }
      this._lastTick = t;
      if (!st.playing) {
        // Started: currentTime advancing by playback, not the player's
        // initial seek to the live edge (a jump, or while seeking), which may
        // be followed by buffering before the first frame plays.
        const dt0 = this._lastCt != null ? ct - this._lastCt : 0;
        if (dt0 > 0 && dt0 < 1.0 && !v.paused && !v.seeking) {
          st.playing = true;
          st.firstPlayingAt = t;
          st.startTime = ct;
          this._lastAdvanceAt = t;
          this.log(`playback started at ct=${ct.toFixed(3)}`);
        }
        this._lastCt = ct;
        return;
      }
      const dt = ct - this._lastCt;
      if (st.seekPending) {
        // Until playback resumes after a seek, the wait is the seek's; it
        // resumes when currentTime advances by playback (or playback ends).
        const seek = st.seeks[st.seeks.length - 1];
        if ((dt > 0 && dt < 1.0 && !v.seeking && !v.paused) || v.ended) {
          st.seekPending = false;
          seek.resumedAt = +this._lastCt.toFixed(3);
          seek.resumedAfterS = +((t - this._seekAt) / 1000).toFixed(3);
          this.log(`seek to ${seek.to} resumed at ct=${this._lastCt.toFixed(3)} after ${seek.resumedAfterS} s`);
          if (dt > 0) st.mediaPlayed += dt;
        }
        this._waitingAt = null;
        this._lastAdvanceAt = t;
        this._freezeUncertain = false;
        this._lastCt = ct;
        return;
      }
      if (dt > 0) {
        if (dt > 1.0) {
          // A jump (the player seeking, e.g. to the live edge or over a gap):
          // not media played.
          st.jumps.push([+this._lastCt.toFixed(3), +ct.toFixed(3)]);
        } else {
          st.mediaPlayed += dt;
        }
        const frozen = (t - this._lastAdvanceAt) / 1000;
        if (frozen > STALL_LIMIT_S && !this._freezeUncertain) {
          st.freezes.push({ at: +((this._lastAdvanceAt - st.firstPlayingAt) / 1000).toFixed(2), duration: +frozen.toFixed(3) });
          if (frozen > st.maxFreeze) st.maxFreeze = frozen;
        }
        this._lastAdvanceAt = t;
        this._freezeUncertain = false;
        this._endWaiting('progress');
      } else if (dt < 0) {
        st.jumps.push([+this._lastCt.toFixed(3), +ct.toFixed(3)]);
        this._lastAdvanceAt = t;
      } else if (v.paused || v.ended || st.endedEvent) {
        this._lastAdvanceAt = t;
      }
      this._lastCt = ct;
    }

    _sampleLatency() {
      const st = this.stats;
      if (!st.playing || !this.impl) return;
      let reported = null;
      let derived = null;
      try {
        reported = this.impl.reportedLatency();
        derived = this.impl.derivedLatency();
      } catch (e) {
        this.log(`latency: ${e}`);
      }
      const ok = (x) => (typeof x === 'number' && isFinite(x) ? +x.toFixed(3) : null);
      st.latency.push({
        t: +((now() - st.firstPlayingAt) / 1000).toFixed(2),
        ct: +this.video.currentTime.toFixed(3),
        reported: ok(reported),
        derived: ok(derived),
        rate: this.video.playbackRate,
      });
      if (st.latency.length > 2000) st.latency.splice(0, 500);
      if (this.statusEl) {
        const f = (x) => (x == null ? '–' : `${x.toFixed(2)} s`);
        this.statusEl.textContent =
          `t=${this.video.currentTime.toFixed(1)}  latency ${f(ok(reported))} (derived ${f(ok(derived))})  ` +
          `stalls ${st.stalls.length} (max ${st.maxStall.toFixed(2)} s)  errors ${st.fatal.length} fatal, ${st.nonFatalCount || 0} other` +
          `  rate ${this.video.playbackRate.toFixed(2)}`;
      }
    }

    // --- hls.js -----------------------------------------------------------
    start_hlsjs() {
      if (!Hls.isSupported()) {
        this.stats.supported = false;
        throw new Error('hls.js: MSE not supported');
      }
      this.stats.supported = true;
      // Low-latency mode is hls.js's default; said explicitly (live). VOD
      // and ?defaults=1: the defaults as they are.
      const hls = new Hls({ ...(DEFAULTS ? {} : { lowLatencyMode: true }), ...(jsonParam('hlsjs') || {}) });
      window.__hls = hls;
      hls.on(Hls.Events.ERROR, (_ev, data) => {
        const e = {
          source: 'hls.js',
          type: data.type,
          details: data.details,
          fatal: data.fatal,
          reason: data.reason,
          error: data.error ? String(data.error) : undefined,
          url: data.url || (data.frag && data.frag.url) || (data.context && data.context.url),
          response: data.response ? { code: data.response.code, text: data.response.text } : undefined,
        };
        if (data.fatal) this.fatal(e);
        else this.nonFatal(e);
      });
      hls.on(Hls.Events.MANIFEST_PARSED, (_ev, data) => {
        this.log(`hls.js manifest parsed: ${data.levels.length} level(s)`);
        this.video.play().catch((e) => this.log(`play(): ${e}`));
      });
      hls.on(Hls.Events.LEVEL_UPDATED, (_ev, data) => {
        const d = data.details;
        if (!d.live && !this.stats.endlist) {
          this.stats.endlist = true;
          this.log('hls.js: playlist ended (EXT-X-ENDLIST)');
        }
      });
      hls.on(Hls.Events.BUFFER_EOS, () => this.log('hls.js: BUFFER_EOS'));
      hls.on(Hls.Events.KEY_LOADED, (_ev, data) => {
        this.stats.keysLoaded++;
        const k = data && (data.keyInfo || data.frag);
        const d = k && (k.decryptdata || k.keyInfo);
        if (this.stats.keysLoaded <= 3) this.log(`hls.js key loaded ${(d && d.uri) || ''} method=${(d && d.method) || '?'}`);
      });
      hls.loadSource(this.url);
      hls.attachMedia(this.video);
      return {
        obj: hls,
        reportedLatency: () => hls.latency,
        audioTracks: () => hls.audioTracks.map((t) => t.lang || t.name),
        derivedLatency: () => {
          const d = hls.playingDate;
          return d ? (Date.now() - d.getTime()) / 1000 : null;
        },
        destroy: () => hls.destroy(),
      };
    }

    // --- dash.js ----------------------------------------------------------
    start_dashjs() {
      const player = dashjs.MediaPlayer().create();
      window.__dash = player;
      const ev = dashjs.MediaPlayer.events;
      // Defaults: the target latency comes from the MPD's ServiceDescription
      // and low-latency mode from availabilityTimeComplete="false".
      player.updateSettings({ debug: { logLevel: dashjs.Debug.LOG_LEVEL_WARNING } });
      // ?dashjs={"settings":{...},"protectionData":{"org.w3.clearkey":{"serverURL":"..."}}}
      const extra = jsonParam('dashjs') || {};
      if (extra.settings) player.updateSettings(extra.settings);
      if (extra.protectionData) player.setProtectionData(extra.protectionData);
      // The protection events (dash.js registers their names on
      // MediaPlayer.events only once its protection controller exists).
      player.on(ev.KEY_SYSTEM_SELECTED || 'public_keySystemSelected', (e) => {
        const d = e && e.data;
        this.stats.keySystem = (d && (d.selectedSystemString || (d.keySystem && d.keySystem.systemString))) || 'unknown';
        this.log(`dash.js key system selected: ${this.stats.keySystem}`);
      });
      player.on(ev.LICENSE_REQUEST_COMPLETE || 'public_licenseRequestComplete', (e) => {
        if (e && e.error) this.nonFatal({ source: 'dash.js licence', error: errText(e.error) });
        else this.log('dash.js licence request complete');
      });
      player.on(ev.KEY_ERROR || 'public_keyError', (e) => this.nonFatal({ source: 'dash.js key error', error: errText(e && e.error) }));
      player.on(ev.ERROR, (e) => {
        const err = e && e.error;
        this.fatal({ source: 'dash.js', code: err && err.code, message: err && err.message, data: err && err.data && errText(err.data).slice(0, 200) });
      });
      if (ev.PLAYBACK_ERROR) {
        player.on(ev.PLAYBACK_ERROR, (e) => this.fatal({ source: 'dash.js playback', error: errText(e && e.error) }));
      }
      player.on(ev.MANIFEST_LOADED, (e) => {
        const m = e && e.data;
        const type = m && m.type;
        if (type && type !== this.stats.mpdType) {
          this.log(`dash.js manifest: type=${type}`);
          this.stats.mpdType = type;
        }
      });
      player.on(ev.STREAM_INITIALIZED, () => this.log(`dash.js stream initialized, lowLatency=${player.getLowLatencyModeEnabled ? player.getLowLatencyModeEnabled() : '?'} targetLatency=${player.getTargetLiveDelay ? player.getTargetLiveDelay() : '?'}`));
      player.on(ev.PLAYBACK_ENDED, () => {
        this.stats.playbackEnded = true;
        this.log('dash.js: PLAYBACK_ENDED');
      });
      if (ev.FRAGMENT_LOADING_ABANDONED) {
        player.on(ev.FRAGMENT_LOADING_ABANDONED, (e) => this.log(`dash.js fragment abandoned ${e && e.request && e.request.url}`));
      }
      player.initialize(this.video, this.url, true);
      const mss = this.format === 'mss';
      return {
        obj: player,
        seek: (to) => player.seek(to),
        audioTracks: () => (player.getTracksFor('audio') || []).map((t) => t.lang || t.id),
        reportedLatency: () => {
          const l = player.getCurrentLiveLatency();
          // dash.js's Smooth Streaming parser sets availabilityStartTime to
          // 1970: its latency means something only for a timeline counted
          // from the Unix epoch. Otherwise there is no reported figure.
          if (mss && l > 86400) {
            if (!this._mssNote) {
              this._mssNote = true;
              this.log(`dash.js (MSS) reports latency ${l.toFixed(0)} s: its availabilityStartTime is 1970 and the Smooth timeline is not epoch-based; ignored`);
            }
            return null;
          }
          return l;
        },
        derivedLatency: () => {
          const anchor = Number(new URLSearchParams(location.search).get('anchor'));
          if (anchor) {
            // The wall-clock time of media time 0, given by the page's URL
            // (the test reads it from the MPD's availabilityStartTime).
            return (Date.now() - (anchor + this.video.currentTime * 1000)) / 1000;
          }
          if (mss) {
            // A Smooth manifest has no wall-clock anchor: the page may be told
            // the wall-clock time of media time 0 (the DASH MPD's
            // availabilityStartTime for the same stream, the same packager
            // timeline) with ?anchor=MS.
            const a = Number(new URLSearchParams(location.search).get('anchor'));
            return a ? (Date.now() - (a + this.video.currentTime * 1000)) / 1000 : null;
          }
          // Wall clock minus the wall-clock time at which the media at
          // currentTime was live: availabilityStartTime + period start + t.
          const m = player.getActiveStream && player.getActiveStream();
          const info = m && m.getStreamInfo && m.getStreamInfo();
          const mi = info && info.manifestInfo;
          const ast = mi && mi.availableFrom;
          if (!ast || !(ast instanceof Date) || isNaN(ast.getTime())) return null;
          return (Date.now() - (ast.getTime() + this.video.currentTime * 1000)) / 1000;
        },
        destroy: () => player.destroy(),
      };
    }

    // --- Shaka Player -----------------------------------------------------
    start_shaka() {
      shaka.polyfill.installAll();
      if (!shaka.Player.isBrowserSupported()) {
        this.stats.supported = false;
        throw new Error('Shaka: browser not supported');
      }
      this.stats.supported = true;
      const player = new shaka.Player();
      window.__shaka = player;
      if (!DEFAULTS) player.configure({ streaming: { lowLatencyMode: true } });
      // Experiments: ?shaka={"manifest":{"dash":{"autoCorrectDrift":false}}}
      const extra = jsonParam('shaka');
      if (extra) player.configure(extra);
      player.addEventListener('error', (ev) => {
        const e = ev.detail || {};
        const info = { source: 'shaka', severity: e.severity, category: e.category, code: e.code, data: errText(e.data).slice(0, 300) };
        if (e.severity === 2 /* CRITICAL */) this.fatal(info);
        else this.nonFatal(info);
      });
      player.addEventListener('buffering', (ev) => this.log(`shaka buffering=${ev.buffering}`));
      // Shaka's stall detector: playback stuck for streaming.stallThreshold
      // (1 s) with media buffered ahead; it nudges the playhead forward.
      player.addEventListener('stalldetected', () => this.log(`shaka stall detected ct=${this.video.currentTime.toFixed(3)} buffered ${this.bufferedText()}`));
      const load = async () => {
        await player.attach(this.video);
        await player.load(this.url);
        this.stats.keySystem = player.keySystem() || null;
        this.log(`shaka loaded, live=${player.isLive()}, lowLatency=${player.getConfiguration().streaming.lowLatencyMode}, keySystem=${this.stats.keySystem || 'none'}`);
        this.video.play().catch((e) => this.log(`play(): ${e}`));
      };
      load().catch((e) => {
        const info = { source: 'shaka load', severity: e && e.severity, category: e && e.category, code: e && e.code, message: String(e && e.message), data: errText(e && e.data).slice(0, 300), stack: String((e && e.stack) || '').split('\n').slice(0, 4).join(' | ') };
        this.fatal(info);
      });
      return {
        obj: player,
        reportedLatency: () => player.getStats().liveLatency,
        audioTracks: () => (player.getAudioTracks ? player.getAudioTracks() : []).map((t) => t.language),
        bufferedInfo: () => player.getBufferedInfo(),
        derivedLatency: () => {
          // With ?anchor=MS (the MPD's availabilityStartTime, for DASH):
          // the wall clock against the stream's own clock, independent of
          // Shaka's drift correction, which moves its idea of "now".
          const anchor = Number(new URLSearchParams(location.search).get('anchor'));
          if (anchor) return (Date.now() - (anchor + this.video.currentTime * 1000)) / 1000;
          const d = player.getPlayheadTimeAsDate && player.getPlayheadTimeAsDate();
          return d ? (Date.now() - d.getTime()) / 1000 : null;
        },
        destroy: () => player.destroy(),
      };
    }

    /**
     * Seeks to `to` seconds as a viewer does: dash.js through its API (it
     * also follows the element's `seeking`), hls.js and Shaka by setting the
     * media element's currentTime, which they follow.
     */
    seek(to) {
      const st = this.stats;
      st.seeks.push({ to, from: +this.video.currentTime.toFixed(3), resumedAt: null, resumedAfterS: null });
      st.seekPending = true;
      this._seekAt = now();
      this._waitingAt = null;
      this.log(`seek requested from ct=${this.video.currentTime.toFixed(3)} to ${to}`);
      if (this.impl && this.impl.seek) this.impl.seek(to);
      else this.video.currentTime = to;
    }

    snapshot() {
      const snap = JSON.parse(JSON.stringify(this.stats));
      // Pictures decoded so far: a player that keeps time moving while it
      // loses video (gaps jumped inside each segment) shows up here.
      const q = this.video.getVideoPlaybackQuality ? this.video.getVideoPlaybackQuality() : null;
      snap.videoFrames = q ? q.totalVideoFrames : null;
      return snap;
    }

    stop() {
      this._timers.forEach(clearInterval);
      this._timers = [];
      try {
        if (this.impl) this.impl.destroy();
      } catch (_) {
        /* ignore */
      }
    }
  }

  function paneElement(container, player, format, url) {
    const div = document.createElement('div');
    div.className = 'pane';
    div.dataset.player = player;
    div.dataset.format = format;
    div.innerHTML =
      `<h2>${PLAYERS[player].label} <small>${format.toUpperCase()}</small></h2>` +
      `<video muted playsinline></video><div class="status">…</div><pre class="log"></pre>`;
    const a = document.createElement('a');
    a.href = url;
    a.textContent = url;
    a.className = 'src';
    div.querySelector('h2').after(a);
    container.appendChild(div);
    return div;
  }

  // Starts panes from a list of "player:format" specs against a stream base
  // URL (…/live/STREAM), or full manifest URLs ("player:format=URL").
  function startPanes(container, base, specs) {
    window.__velaT0 = now();
    const panes = [];
    for (const spec of specs) {
      // The URL may carry its own '=' (a ?token= query): split at the first.
      const eq = spec.indexOf('=');
      const pf = eq < 0 ? spec : spec.slice(0, eq);
      const explicitUrl = eq < 0 ? undefined : spec.slice(eq + 1);
      const [player, format] = pf.split(':');
      if (!PLAYERS[player] || !PLAYERS[player].formats.includes(format)) {
        throw new Error(`unknown pane ${spec}; known: ${Object.entries(PLAYERS).map(([p, d]) => d.formats.map((f) => `${p}:${f}`).join(',')).join(',')}`);
      }
      const url = explicitUrl || `${base.replace(/\/+$/, '')}/${FORMATS[format]}`;
      const pane = new Pane(paneElement(container, player, format, url), player, format, url);
      panes.push(pane);
      pane.start();
    }
    return panes;
  }

  window.vela = {
    FORMATS,
    PLAYERS,
    panes: [],
    startPanes(container, base, specs) {
      this.panes = startPanes(container, base, specs);
      return this.panes.length;
    },
    snapshot() {
      return this.panes.map((p) => p.snapshot());
    },
    stop() {
      this.panes.forEach((p) => p.stop());
    },
    seek(to) {
      this.panes.forEach((p) => p.seek(to));
    },
    // The audio tracks (languages) each pane's player offers.
    audioTracks() {
      return this.panes.map((p) => (p.impl && p.impl.audioTracks ? p.impl.audioTracks() : null));
    },
    codecSupport() {
      const ms = window.MediaSource;
      return {
        mse: !!ms,
        h264: !!ms && ms.isTypeSupported('video/mp4; codecs="avc1.64001f"'),
        aac: !!ms && ms.isTypeSupported('audio/mp4; codecs="mp4a.40.2"'),
      };
    },
  };
})();
