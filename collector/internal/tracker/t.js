/* Alumini tracker: page views (single-page apps too) and custom events.
   <script defer src="https://stats.example.com/t.js" data-key="WRITE_KEY"></script>
   Custom events: alumini('Signup', {plan: 'pro'}). */
(function (w, d, n, l) {
  'use strict';
  var s = d.currentScript, a = function (k) { return s && s.getAttribute('data-' + k); };
  var key = a('key'), api = a('api') || new URL('__EVENT_PATH__', s.src).href;
  var last, q = (w.alumini && w.alumini.q) || [];
  // The visitor said no: the opt-out cookie (readable when the collector
  // is served first-party) or, unless the site turned it off, DNT / GPC.
  function off() {
    return /(^|;\s*)alumini_optout=1/.test(d.cookie) ||
      (a('respect-dnt') !== 'false' && (n.doNotTrack == '1' || w.doNotTrack == '1' || n.globalPrivacyControl === true));
  }
  // The event id is made here, so a retry of the same event keeps it.
  function id() {
    var b = w.crypto.getRandomValues(new Uint8Array(16)), h = '';
    for (var i = 0; i < 16; i++) h += (b[i] + 256).toString(16).slice(1);
    return h;
  }
  function cut(v, m) { return (v || '').slice(0, m); }
  function base(e) {
    e.write_key = key; e.event_id = id(); e.url = cut(l.href, 2048);
    e.language = n.language; e.screen_width = screen.width; e.screen_height = screen.height;
    try { e.timezone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (x) {}
    return e;
  }
  // fetch with keepalive outlives the page; a 5xx (Kafka busy) is retried
  // with backoff. text/plain needs no CORS preflight. Without fetch,
  // sendBeacon.
  function send(e, t) {
    if (off()) return;
    var body = JSON.stringify(e);
    if (!w.fetch) { if (n.sendBeacon) n.sendBeacon(api, body); return; }
    fetch(api, { method: 'POST', body: body, keepalive: true, credentials: 'include' }).then(function (r) {
      if (r.status >= 500 && t < 4) setTimeout(function () { send(e, t + 1); }, 500 * Math.pow(2, t));
    }, function () {});
  }
  function pv() {
    var u = l.href;
    if (u === last) return;
    var r = last || d.referrer;
    last = u;
    send(base({ type: 'pageview', referrer: cut(r, 2048), title: cut(d.title, 512) }), 0);
  }
  w.alumini = function (name, props) {
    send(base({ type: 'custom', name: cut(String(name), 200), properties: props }), 0);
  };
  for (var i = 0; i < q.length; i++) w.alumini.apply(w, q[i]);
  if (a('auto') === 'false') return;
  // Single-page apps: the history API and hash changes are navigations.
  ['pushState', 'replaceState'].forEach(function (m) {
    var o = history[m];
    history[m] = function () { var r = o.apply(this, arguments); pv(); return r; };
  });
  w.addEventListener('popstate', pv);
  w.addEventListener('hashchange', pv);
  pv();
})(window, document, navigator, location);
