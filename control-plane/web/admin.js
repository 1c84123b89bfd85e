// Vela's admin console: a small single-page app over the /api/v1 API.
//
// Security: the session token lives in sessionStorage (gone with the tab)
// and goes out only as an Authorization header, never as a cookie, so a
// cross-site page cannot make requests with it (no CSRF); it expires with
// the session (1 hour), and any 401 signs out. Every value is put into the
// page with textContent or as a property, never as HTML (no XSS), and the
// page's Content-Security-Policy allows scripts from this origin only.
(function () {
  'use strict';
  var KEY = 'vela_session';
  var view = document.getElementById('view');
  var timers = [];

  function session() {
    try {
      var s = JSON.parse(sessionStorage.getItem(KEY) || 'null');
      if (s && s.expires > Date.now()) return s;
    } catch (e) { /* none */ }
    sessionStorage.removeItem(KEY);
    return null;
  }

  function el(tag, attrs) {
    var n = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (k === 'text') n.textContent = attrs[k];
        else if (k === 'on') Object.keys(attrs.on).forEach(function (ev) { n.addEventListener(ev, attrs.on[ev]); });
        else if (k in n && typeof attrs[k] !== 'string') n[k] = attrs[k];
        else n.setAttribute(k, attrs[k]);
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c == null) continue;
      n.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
    }
    return n;
  }

  function clear(n) { while (n.firstChild) n.removeChild(n.firstChild); }

  function api(method, path, body, raw) {
    var s = session();
    if (!s) { signOut('Your session has expired.'); return Promise.reject(new Error('signed out')); }
    var opts = { method: method, headers: { Authorization: 'Bearer ' + s.token } };
    if (raw) { opts.body = raw; }
    else if (body !== undefined) { opts.body = JSON.stringify(body); opts.headers['Content-Type'] = 'application/json'; }
    return fetch('/api/v1' + path, opts).then(function (r) {
      if (r.status === 401) { signOut('Your session has expired.'); throw new Error('unauthorized'); }
      var ct = r.headers.get('content-type') || '';
      var p = ct.indexOf('json') >= 0 ? r.json() : r.text();
      return p.then(function (v) {
        if (!r.ok) throw new Error((v && v.error && v.error.message) || ('HTTP ' + r.status));
        return v;
      });
    });
  }

  function signOut(msg) {
    sessionStorage.removeItem(KEY);
    timers.forEach(clearInterval);
    timers = [];
    document.getElementById('nav').hidden = true;
    document.getElementById('signin').hidden = false;
    document.getElementById('signin-error').textContent = msg || '';
    clear(view);
  }

  document.getElementById('signin-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var err = document.getElementById('signin-error');
    err.textContent = '';
    var body = {
      partner_id: Number(document.getElementById('partner').value),
      secret: document.getElementById('secret').value,
      role: 'admin', expiry_s: 3600,
    };
    fetch('/api/v1/sessions', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) })
      .then(function (r) { return r.json().then(function (v) { return [r, v]; }); })
      .then(function (rv) {
        if (!rv[0].ok) throw new Error((rv[1].error && rv[1].error.message) || 'sign-in failed');
        sessionStorage.setItem(KEY, JSON.stringify({ token: rv[1].token, partner: body.partner_id, expires: Date.now() + 3500 * 1000 }));
        document.getElementById('secret').value = '';
        route();
      })
      .catch(function (e) { err.textContent = e.message; });
  });
  document.getElementById('signout').addEventListener('click', function () { signOut(''); });

  function fail(e) { view.appendChild(el('p', { class: 'error', text: e.message })); }

  function card(k, v) { return el('div', { class: 'card' }, el('div', { class: 'v', text: v }), el('div', { class: 'k', text: k })); }

  function embedCode(id) {
    return '<iframe src="' + location.origin + '/embed/' + id + '" width="640" height="360" allow="autoplay; fullscreen" allowfullscreen></iframe>';
  }

  // ---- Live now ----
  function live() {
    view.appendChild(el('h2', { text: 'Live now' }));
    var table = el('table', { id: 'live-table' });
    view.appendChild(table);
    function refresh() {
      api('GET', '/entries?type=live&page_size=100&sort=-updated_at').then(function (list) {
        clear(table);
        table.appendChild(el('tr', null, el('th', { text: 'Thumbnail' }), el('th', { text: 'Name' }), el('th', { text: 'Status' }),
          el('th', { text: 'Viewers' }), el('th', { text: 'Publish' }), el('th', { text: 'Embed' })));
        list.objects.forEach(function (e) {
          var isLive = e.status === 'live';
          var thumb = isLive ? el('img', { class: 'thumb', alt: 'thumbnail', src: '/thumb/live/' + e.id + '/latest.jpg?t=' + Date.now() }) : el('div', { class: 'thumb' });
          var viewers = el('td', { class: 'viewers', text: '–' });
          var tr = el('tr', { 'data-entry': e.id, class: isLive ? 'live' : 'offline' },
            el('td', null, thumb),
            el('td', null, el('a', { href: '#entry/' + e.id, text: e.name })),
            el('td', { class: isLive ? 'status-live' : '', text: e.status }),
            viewers,
            el('td', null, el('code', { text: e.publish ? e.publish.rtmp || '' : '' })),
            el('td', null, el('a', { href: '/embed/' + e.id, target: '_blank', rel: 'noopener', text: 'open' })));
          table.appendChild(tr);
          if (isLive) {
            api('GET', '/analytics/summary?entry_id=' + e.id).then(function (s) { viewers.textContent = String(s.current_concurrent); }, function () {});
          }
        });
        if (!list.objects.length) table.appendChild(el('tr', null, el('td', { text: 'No live entries yet.' })));
      }, fail);
    }
    refresh();
    timers.push(setInterval(refresh, 5000));
  }

  // ---- Entries ----
  function entries() {
    view.appendChild(el('h2', { text: 'Entries' }));
    var q = el('input', { id: 'search', type: 'search', placeholder: 'Search' });
    var table = el('table', { id: 'entries-table' });
    var type = el('select', { id: 'new-type' }, el('option', { value: 'live', text: 'live' }), el('option', { value: 'media', text: 'media' }));
    var name = el('input', { id: 'new-name', placeholder: 'Name', required: 'required', maxlength: '256' });
    var rec = el('input', { id: 'new-recording', type: 'checkbox' });
    var msg = el('span', { class: 'error' });
    var form = el('form', { id: 'create-form', class: 'row', on: { submit: function (ev) {
      ev.preventDefault();
      var body = { type: type.value, name: name.value };
      if (type.value === 'live') body.recording = rec.checked;
      api('POST', '/entries', body).then(function (e) { location.hash = '#entry/' + e.id; }, function (e) { msg.textContent = e.message; });
    } } }, el('strong', { text: 'New entry' }), type, name, el('label', null, rec, ' record'), el('button', { type: 'submit', id: 'create', text: 'Create' }), msg);
    view.appendChild(form);
    view.appendChild(el('div', { class: 'row' }, q));
    view.appendChild(table);
    function show(list) {
      clear(table);
      table.appendChild(el('tr', null, el('th', { text: 'Name' }), el('th', { text: 'Type' }), el('th', { text: 'Status' }), el('th', { text: 'Created' })));
      list.forEach(function (e) {
        table.appendChild(el('tr', { 'data-entry': e.id },
          el('td', null, el('a', { href: '#entry/' + e.id, text: e.name })),
          el('td', { text: e.type }), el('td', { text: e.status }),
          el('td', { text: new Date(e.created_at * 1000).toLocaleString() })));
      });
    }
    function load() {
      var p = q.value.trim()
        ? api('GET', '/search?q=' + encodeURIComponent(q.value.trim())).then(function (r) { return r.objects.map(function (h) { return h.entry; }); })
        : api('GET', '/entries?page_size=50').then(function (r) { return r.objects; });
      p.then(show, fail);
    }
    var t = null;
    q.addEventListener('input', function () { clearTimeout(t); t = setTimeout(load, 250); });
    load();
  }

  function entry(id) {
    api('GET', '/entries/' + encodeURIComponent(id)).then(function (e) {
      view.appendChild(el('h2', { id: 'entry-title', text: e.name }));
      view.appendChild(el('p', { class: 'muted', text: e.type + ' · ' + e.id + ' · ' + e.status }));
      var name = el('input', { id: 'edit-name', value: e.name, maxlength: '256' });
      var desc = el('textarea', { id: 'edit-description', rows: '3' });
      desc.value = e.description;
      var msg = el('span', { class: 'muted' });
      view.appendChild(el('form', { id: 'edit-form', on: { submit: function (ev) {
        ev.preventDefault();
        api('PATCH', '/entries/' + e.id, { name: name.value, description: desc.value })
          .then(function () { msg.textContent = 'Saved.'; }, function (x) { msg.textContent = x.message; });
      } } }, el('label', null, 'Name ', name), el('label', null, 'Description', desc), el('button', { type: 'submit', text: 'Save' }), msg));
      if (e.type === 'live') {
        view.appendChild(el('h3', { text: 'Publishing' }));
        view.appendChild(el('p', null, 'RTMP: ', el('code', { id: 'rtmp-url', text: e.publish ? e.publish.rtmp : '' })));
        view.appendChild(el('p', null, 'Stream key: ', el('code', { id: 'stream-key', text: e.stream_key || '' })));
        view.appendChild(el('p', { text: 'Recording: ' + (e.recording ? 'on' : 'off') + (e.recorded_entry_id ? ' · latest ' + e.recorded_entry_id : '') }));
      } else {
        var file = el('input', { id: 'upload-file', type: 'file', accept: 'video/*' });
        var up = el('span', { class: 'muted' });
        view.appendChild(el('h3', { text: 'Content' }));
        view.appendChild(el('div', { class: 'row' }, file, el('button', { type: 'button', text: 'Upload', on: { click: function () {
          if (!file.files[0]) return;
          up.textContent = 'Uploading…';
          api('PUT', '/entries/' + e.id + '/content', undefined, file.files[0])
            .then(function () { up.textContent = 'Uploaded.'; }, function (x) { up.textContent = x.message; });
        } } }), up));
      }
      view.appendChild(el('h3', { text: 'Embed code' }));
      var code = el('textarea', { id: 'embed-code', rows: '2', readonly: 'readonly' });
      code.value = embedCode(e.id);
      view.appendChild(code);
      view.appendChild(el('p', null, el('a', { href: '#reports/' + e.id, text: 'Reports for this entry' })));
    }, fail);
  }

  // ---- Reports ----
  function fmt(n, d) { return (Math.round(n * Math.pow(10, d)) / Math.pow(10, d)).toLocaleString(); }

  function chart(target, title, xs, series) {
    if (!window.uPlot) return;
    var opts = {
      title: title, width: Math.min(1100, view.clientWidth - 20), height: 220,
      series: [{}].concat(series.map(function (s, i) { return { label: s.label, stroke: ['#2a6df4', '#e8590c', '#0a7d27'][i % 3], width: 2 }; })),
      axes: [{}, {}],
    };
    new window.uPlot(opts, [xs].concat(series.map(function (s) { return s.data; })), target);
  }

  function download(path, name) {
    api('GET', path).then(function (text) {
      var a = el('a', { href: URL.createObjectURL(new Blob([text], { type: 'text/csv' })), download: name });
      document.body.appendChild(a);
      a.click();
      a.remove();
    }, fail);
  }

  function reports(entryId) {
    view.appendChild(el('h2', { text: entryId ? 'Reports · ' + entryId : 'Reports' }));
    var range = el('select', { id: 'range' }, el('option', { value: '86400', text: 'Last 24 hours' }),
      el('option', { value: '604800', text: 'Last 7 days' }), el('option', { value: '2592000', text: 'Last 30 days' }));
    var body = el('div', { id: 'report' });
    view.appendChild(el('div', { class: 'row' }, range,
      el('button', { type: 'button', text: 'Export CSV', id: 'csv', on: { click: function () { download('/analytics/timeseries?format=csv&' + qs(), 'timeseries.csv'); } } })));
    view.appendChild(body);
    function qs() {
      var now = Math.floor(Date.now() / 1000);
      var s = 'from=' + (now - Number(range.value)) + '&to=' + (now + 1);
      return entryId ? s + '&entry_id=' + encodeURIComponent(entryId) : s;
    }
    function load() {
      clear(body);
      var q = qs();
      api('GET', '/analytics/summary?' + q).then(function (s) {
        body.appendChild(el('div', { class: 'cards', id: 'summary' },
          card('Plays', s.plays), card('Unique viewers', s.unique_viewers), card('Minutes viewed', fmt(s.minutes_viewed, 1)),
          card('Avg. view time (s)', fmt(s.avg_view_time_s, 1)), card('Viewers now', s.current_concurrent), card('Peak viewers', s.peak_concurrent),
          card('Startup (ms)', fmt(s.qoe.startup_ms_avg, 0)), card('Rebuffering', fmt(s.qoe.rebuffer_ratio * 100, 2) + ' %'),
          card('Avg. bitrate (kbit/s)', fmt(s.qoe.avg_bitrate_kbps, 0)), card('Errors', s.qoe.errors),
          card('Reached 25/50/75/100 %', [s.drop_off.p25, s.drop_off.p50, s.drop_off.p75, s.drop_off.p100].map(function (x) { return Math.round(x * 100); }).join(' / ')),
          card('Origin minutes', fmt(s.origin_minutes, 1))));
        var plays = el('div', { class: 'chart', id: 'plays-chart' });
        var conc = el('div', { class: 'chart', id: 'concurrency-chart' });
        var top = el('table', { id: 'top-entries' });
        body.appendChild(plays);
        body.appendChild(conc);
        body.appendChild(el('h3', { text: 'Top entries' }));
        body.appendChild(top);
        api('GET', '/analytics/timeseries?' + q).then(function (r) {
          var xs = r.rows.map(function (x) { return Number(x.key); });
          chart(plays, 'Plays and minutes viewed per hour', xs, [
            { label: 'plays', data: r.rows.map(function (x) { return x.plays; }) },
            { label: 'minutes', data: r.rows.map(function (x) { return x.minutes_viewed; }) },
            { label: 'rebuffer %', data: r.rows.map(function (x) { return x.rebuffer_ratio * 100; }) }]);
          plays.setAttribute('data-ready', '1');
        }, fail);
        api('GET', '/analytics/concurrency?' + q).then(function (r) {
          chart(conc, 'Concurrent viewers', r.points.map(function (p) { return p[0]; }), [{ label: 'viewers', data: r.points.map(function (p) { return p[1]; }) }]);
          conc.setAttribute('data-ready', '1');
        }, fail);
        api('GET', '/analytics/top-entries?' + q).then(function (r) {
          top.appendChild(el('tr', null, el('th', { text: 'Entry' }), el('th', { text: 'Plays' }), el('th', { text: 'Minutes' }), el('th', { text: 'Rebuffering' })));
          r.rows.forEach(function (x) {
            top.appendChild(el('tr', null, el('td', null, el('a', { href: '#reports/' + x.key, text: x.name || x.key })),
              el('td', { text: x.plays }), el('td', { text: fmt(x.minutes_viewed, 1) }), el('td', { text: fmt(x.rebuffer_ratio * 100, 2) + ' %' })));
          });
        }, fail);
      }, fail);
    }
    range.addEventListener('change', load);
    load();
  }

  // ---- Health ----
  function health() {
    view.appendChild(el('h2', { text: 'Server health' }));
    var out = el('div', { class: 'cards', id: 'health' });
    view.appendChild(out);
    function refresh() {
      Promise.all([
        fetch('/healthz').then(function (r) { return r.status; }, function () { return 0; }),
        fetch('/metrics').then(function (r) { return r.text(); }, function () { return ''; }),
      ]).then(function (res) {
        clear(out);
        out.appendChild(card('Health', res[0] === 200 ? 'OK' : 'DOWN (' + res[0] + ')'));
        var want = { vela_live_streams: 'Live streams', vela_http_requests_total: 'HTTP requests', process_resident_memory_bytes: 'Memory (MB)' };
        var sums = {};
        res[1].split('\n').forEach(function (line) {
          if (!line || line[0] === '#') return;
          var name = line.split(/[{ ]/)[0];
          if (want[name]) sums[name] = (sums[name] || 0) + Number(line.split(' ').pop());
        });
        Object.keys(want).forEach(function (k) {
          if (k in sums) out.appendChild(card(want[k], k.indexOf('bytes') > 0 ? fmt(sums[k] / 1048576, 1) : fmt(sums[k], 0)));
        });
      });
    }
    refresh();
    timers.push(setInterval(refresh, 5000));
  }

  function route() {
    timers.forEach(clearInterval);
    timers = [];
    if (!session()) { signOut(''); return; }
    document.getElementById('signin').hidden = true;
    document.getElementById('nav').hidden = false;
    clear(view);
    var h = location.hash.replace(/^#/, '') || 'live';
    var parts = h.split('/');
    ['live', 'entries', 'reports', 'health'].forEach(function (n) {
      document.getElementById('nav-' + n).className = parts[0] === n || (n === 'entries' && parts[0] === 'entry') ? 'active' : '';
    });
    if (parts[0] === 'entries') entries();
    else if (parts[0] === 'entry' && parts[1]) entry(parts[1]);
    else if (parts[0] === 'reports') reports(parts[1]);
    else if (parts[0] === 'health') health();
    else live();
  }

  window.addEventListener('hashchange', route);
  route();
})();
